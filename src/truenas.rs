//! The TrueNAS middleware client: one multiplexed WebSocket owned by an actor thread, every auth path, jobs,
//! subscriptions, typed errors.
//!
//! Map: `client` (the handle workers use), `actor` (the only owner of the socket), `transport` (DNS/TCP/TLS/
//! WebSocket), `codec` (JSON-RPC and legacy DDP), `ejson`, `auth`, `jobs`, `subscriptions`, `error`.

pub mod actor;
pub mod apps;
pub mod auth;
pub mod client;
pub mod codec;
pub mod ejson;
pub mod error;
pub mod jobs;
pub mod subscriptions;
pub mod transport;

pub use client::{
    Client, ClientSettings, ConnectTarget, JobOptions, JobProgress, ServerInfo, SubEvent, Subscription, WireProtocol,
};
pub use error::TnError;

//! The TrueNAS middleware client: one multiplexed WebSocket owned by an actor thread, every auth path, jobs,
//! subscriptions, typed errors.
//!
//! OWNER: client helper (everything under `truenas/` except `apps.rs`, which the tools helper owns).

pub mod apps;
pub mod client;
pub mod error;

pub use client::{
    Client, ClientSettings, ConnectTarget, JobOptions, JobProgress, ServerInfo, SubEvent, Subscription, WireProtocol,
};
pub use error::TnError;

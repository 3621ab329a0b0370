//! The TrueNAS middleware client: one multiplexed WebSocket owned by an actor thread, every auth path, jobs,
//! subscriptions, typed errors.
//!
//! Map: `client` (the handle workers use), `actor` (the only owner of the socket: intake, deadlines, dispatch),
//! `session` (connect, log in, learn the release), `wire` (socket I/O and keepalive), `jobtable` (the jobs waited
//! for, as plain state), `transport` (the [`Connector`] seam and the DNS/TCP/TLS connector, WebSocket upgrade),
//! `codec` (JSON-RPC and legacy DDP), `types` (shared facts and settings), `ejson`, `auth`, `jobs`,
//! `subscriptions`, `error`. Nothing here imports `sim` or `mcp`: mock mode hands in its own connector.

pub mod actor;
pub mod apps;
pub mod auth;
pub mod client;
pub mod codec;
pub mod ejson;
pub mod error;
pub mod jobs;
pub mod jobtable;
pub mod scram;
pub mod session;
pub mod storage;
pub mod subscriptions;
pub mod transport;
pub mod types;
pub mod wire;

pub use client::{Client, JobOptions, Subscription};
pub use error::TnError;
pub use transport::{ByteStream, Connector, Dial, Stream, TcpConnector};
pub use types::{ClientSettings, JobOutcome, JobProgress, ServerInfo, SubEvent, WireProtocol};

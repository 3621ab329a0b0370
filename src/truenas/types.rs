//! The plain facts and settings every part of the client shares (a leaf: it imports only `error`, config and the
//! clock), so that the actor, the codec, auth, jobs and subscriptions need not import the client handle or each
//! other to name them.

use std::time::Duration;

use serde_json::Value;

use super::error::TnError;
use crate::clock::{self, SharedClock};
use crate::config::Config;

/// Which wire protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireProtocol {
    /// JSON-RPC 2.0 at `/api/current` (25.04+).
    JsonRpc,
    /// Legacy DDP at `/websocket` (24.10).
    Legacy,
}

impl WireProtocol {
    /// The WebSocket path of this protocol.
    pub fn path(self) -> &'static str {
        match self {
            WireProtocol::JsonRpc => "/api/current",
            WireProtocol::Legacy => "/websocket",
        }
    }
}

/// What the client learned while connecting and logging in.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// e.g. "25.04.2" (from `system.info`'s version, brand prefix stripped).
    pub version: String,
    /// (major, minor), e.g. (25, 4); tools adapt params to it.
    pub version_tuple: (u32, u32),
    /// Full URL including path, e.g. "wss://nas.local:443/api/current".
    pub endpoint: String,
    pub protocol: WireProtocol,
    /// "password" or "api_key".
    pub auth_method: String,
    pub username: Option<String>,
    /// Round trip of a `core.ping`-like call, measured at connect.
    pub round_trip: Duration,
    /// The pinned API version the endpoint speaks (`v26.0.0`), or `None` on `/api/current` and the legacy endpoint.
    pub api_version: Option<String>,
}

impl ServerInfo {
    /// Which API the endpoint speaks and why, for `test_connection` and `check`.
    pub fn api_choice(&self) -> String {
        match (self.protocol, &self.api_version) {
            (WireProtocol::Legacy, _) => "legacy DDP, TrueNAS 24.10".to_string(),
            (WireProtocol::JsonRpc, Some(v)) => {
                format!("JSON-RPC 2.0, API {v} pinned: the newest this NAS serves that truenas-mcp is tested with")
            }
            (WireProtocol::JsonRpc, None) => "JSON-RPC 2.0, API current: this NAS serves none of the versions \
                                              truenas-mcp is tested with (v25.04.2, v25.10.5, v26.0.0)"
                .to_string(),
        }
    }
}

/// Job progress as TrueNAS reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobProgress {
    pub job_id: i64,
    pub percent: f64,
    pub description: Option<String>,
}

/// How a `call_job` ended: the job id whenever the server named one (also when the job failed, timed out or the
/// connection was lost after it started), and the result.
#[derive(Debug)]
pub struct JobOutcome {
    pub job_id: Option<i64>,
    pub result: Result<Value, TnError>,
}

/// One event of a subscription.
#[derive(Clone, Debug)]
pub enum SubEvent {
    Added {
        id: Option<Value>,
        fields: Value,
    },
    Changed {
        id: Option<Value>,
        fields: Value,
    },
    Removed {
        id: Option<Value>,
    },
    /// The server ended the subscription (`notify_unsubscribed` / `nosub`), with its error if any, or the
    /// connection was lost. No more events follow.
    Ended(Option<TnError>),
}

/// Everything the client needs from the configuration, and the clock it keeps time with.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub config: Config,
    /// WebSocket ping interval (default 25 s).
    pub keepalive: Duration,
    /// Deadlines, keepalive, back-off, early-event lifetime and abort grace are measured on this clock.
    pub clock: SharedClock,
}

impl ClientSettings {
    /// Settings with the default keepalive (25 s, under nginx's 60 s idle timeout) and the system clock.
    pub fn new(config: Config) -> ClientSettings {
        ClientSettings { config, keepalive: Duration::from_secs(25), clock: clock::system() }
    }
}

//! The cloneable client handle workers use; commands travel to the actor over a channel.
//!
//! OWNER: client helper. The signatures here are the contract the tools rely on.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::error::TnError;
use crate::config::Config;
use crate::mcp::tool::CancelToken;

/// Which wire protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireProtocol {
    /// JSON-RPC 2.0 at `/api/current` (25.04+).
    JsonRpc,
    /// Legacy DDP at `/websocket` (24.10).
    Legacy,
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
}

/// Job progress as TrueNAS reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobProgress {
    pub job_id: i64,
    pub percent: f64,
    pub description: Option<String>,
}

/// Options for [`Client::call_job`].
#[derive(Default)]
pub struct JobOptions {
    /// Job deadline (default: `TRUENAS_JOB_TIMEOUT`).
    pub timeout: Option<Duration>,
    pub progress: Option<Box<dyn Fn(JobProgress) + Send>>,
    /// When set and cancelled, the job is aborted with `core.job_abort` and `TnError::Cancelled` returned.
    pub cancel: Option<CancelToken>,
}

/// How the actor reaches the middleware.
#[derive(Clone)]
pub enum ConnectTarget {
    /// A real NAS (or the simulator) over TCP, with TLS for wss.
    Network,
    /// Mock mode: an in-memory byte pipe to an embedded simulator (real actor, codec and WebSocket framing).
    InMemory(Arc<crate::sim::Simulator>),
}

/// Everything the client needs from the configuration.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub config: Config,
    /// WebSocket ping interval (default 25 s).
    pub keepalive: Duration,
}

/// A cheap cloneable handle to the connection actor. Connection is lazy: no I/O until the first call.
#[derive(Clone)]
pub struct Client {
    _private: (),
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

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    _private: (),
}

impl Subscription {
    /// The next event, or `None` after `timeout` with nothing received.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<SubEvent> {
        let _ = timeout;
        todo!()
    }
}

impl Client {
    /// A client for `config`: mock mode gets an embedded simulator seeded with example apps.
    pub fn from_config(config: &Config) -> Client {
        let _ = config;
        todo!()
    }
    /// A client with an explicit target (tests).
    pub fn new(settings: ClientSettings, target: ConnectTarget) -> Client {
        let _ = (settings, target);
        todo!()
    }
    /// Connect and log in if needed; what we know about the server.
    pub fn server_info(&self) -> Result<ServerInfo, TnError> {
        todo!()
    }
    /// A read-only call (safe to retry after a reconnect). `params` is the positional array.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, TnError> {
        let _ = (method, params);
        todo!()
    }
    /// A call that may change the NAS: never replayed; after a drop the error says the outcome is unknown.
    pub fn call_mutating(&self, method: &str, params: Value) -> Result<Value, TnError> {
        let _ = (method, params);
        todo!()
    }
    /// Call a job method and wait for its final result, streaming progress.
    pub fn call_job(&self, method: &str, params: Value, opts: JobOptions) -> Result<Value, TnError> {
        let _ = (method, params, opts);
        todo!()
    }
    /// Call a job method and return its id without waiting (`wait: false`).
    pub fn start_job(&self, method: &str, params: Value) -> Result<i64, TnError> {
        let _ = (method, params);
        todo!()
    }
    /// The job object (`core.get_jobs` with `id = job_id`), or NotFound.
    pub fn job(&self, job_id: i64) -> Result<Value, TnError> {
        let _ = job_id;
        todo!()
    }
    /// Subscribe to a collection or event source (`app.container_log_follow:{...}`).
    pub fn subscribe(&self, name: &str) -> Result<Subscription, TnError> {
        let _ = name;
        todo!()
    }
}

//! An in-memory TrueNAS middleware (apps, jobs, events, auth, limits) and a WebSocket front for it.
//!
//! Mock mode talks to it through [`MemStream`] (the client's real actor, codec and WebSocket framing run over an
//! in-memory pipe); integration tests and `truenas-mcp simulate` serve it on a TCP port, optionally with TLS.
//!
//! OWNER: simulator helper. The signatures here are the contract the client, tools and tests rely on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Which TrueNAS release to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimVersion {
    V24_10,
    V25_04,
    V25_10,
}

/// An API key the simulator accepts: `"<id>-<secret>"` owned by `username`.
#[derive(Clone, Debug)]
pub struct SimApiKey {
    pub id: u32,
    pub key: String,
    pub username: String,
}

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub version: SimVersion,
    /// (username, password); default `[("mcp-service", "mock-password")]`.
    pub users: Vec<(String, String)>,
    pub api_keys: Vec<SimApiKey>,
    /// Apps pool; `None` = "No pool configured for Docker".
    pub docker_pool: Option<String>,
    /// Start with example apps (a running web app, a stopped media server, a crashed database).
    pub seed_example_apps: bool,
    /// Close a connection after this long without traffic (nginx: 60 s).
    pub idle_timeout: Duration,
    /// PEM certificate chain and PKCS#8 key for wss.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Time each job step takes (deploy progress); small in tests.
    pub job_step: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            version: SimVersion::V25_04,
            users: vec![("mcp-service".into(), "mock-password".into())],
            api_keys: Vec::new(),
            docker_pool: Some("tank".into()),
            seed_example_apps: true,
            idle_timeout: Duration::from_secs(60),
            tls: None,
            job_step: Duration::from_millis(20),
        }
    }
}

/// One end of an in-memory byte pipe (Read + Write, read timeouts like a socket).
pub struct MemStream {
    _private: (),
}

/// The simulated middleware. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Simulator {
    _private: (),
}

/// A running TCP (or TLS) front; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
}

impl Simulator {
    pub fn new(opts: SimOptions) -> Simulator {
        let _ = opts;
        todo!()
    }
    /// Serve on `listen` (e.g. "127.0.0.1:0").
    pub fn serve(&self, listen: &str) -> std::io::Result<SimServer> {
        let _ = listen;
        todo!()
    }
    /// The client end of a new in-memory connection (treated as loopback / secure transport).
    pub fn connect_in_memory(&self) -> MemStream {
        todo!()
    }
    /// Every method call received so far: (method, params) — for schema checks in tests.
    pub fn call_log(&self) -> Vec<(String, Value)> {
        todo!()
    }
}

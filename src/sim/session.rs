//! One client connection as the middleware sees it: dialect, origin, credentials, subscriptions, the outbox its
//! socket thread drains, and the per-socket call limits.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::Sender;
use serde_json::Value;

use super::wire::{Codec, Failure, Protocol};
use super::SimVersion;

/// Where a connection comes from; decides "secure transport" for API keys.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    Memory,
    Tcp { peer: std::net::SocketAddr, local: std::net::SocketAddr },
    Tls { peer: std::net::SocketAddr, local: std::net::SocketAddr },
}

impl Origin {
    pub(crate) fn peer_ip(&self) -> String {
        match self {
            Origin::Memory => "127.0.0.1".into(),
            Origin::Tcp { peer, .. } | Origin::Tls { peer, .. } => peer.ip().to_string(),
        }
    }
    pub(crate) fn local_ip(&self) -> String {
        match self {
            Origin::Memory => "127.0.0.1".into(),
            Origin::Tcp { local, .. } | Origin::Tls { local, .. } => local.ip().to_string(),
        }
    }
}

/// Who is logged in on a session.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Credentials {
    None,
    /// `OTP_REQUIRED` was answered; `auth.login_ex_continue` may finish it.
    OtpPending {
        username: String,
        attempts: u32,
    },
    User {
        username: String,
        method: AuthMethod,
        epoch: i64,
    },
    /// A SCRAM CLIENT_FIRST_MESSAGE was answered; the CLIENT_FINAL_MESSAGE finishes it.
    ScramPending(super::scram::Pending),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    Password,
    ApiKey,
    Token,
}

impl AuthMethod {
    pub(crate) fn credential_type(self) -> &'static str {
        match self {
            AuthMethod::Password => "LOGIN_PASSWORD",
            AuthMethod::ApiKey => "API_KEY",
            AuthMethod::Token => "TOKEN",
        }
    }
}

/// A subscription of this session.
pub(crate) struct Subscription {
    /// What the client gets back from `core.subscribe` (JSON-RPC) or chose itself (`sub` id, DDP).
    pub ident: String,
    /// Full name as subscribed, e.g. `core.get_jobs` or `app.container_log_follow:{...}`.
    pub name: String,
    /// Event sources run in a thread that stops when this is set.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What the socket thread is asked to do.
pub(crate) enum Outgoing {
    Text(String),
    /// End without a close frame (a dropped TCP connection).
    Drop,
}

pub(crate) struct Session {
    pub id: u64,
    pub codec: Codec,
    /// Which API models this endpoint speaks: `/websocket` and `/api/v24.10` adapt to 24.10, a pinned
    /// `/api/v25.04.x` to 25.04, `/api/current` to the release itself.
    pub api: SimVersion,
    pub origin: Origin,
    out: Sender<Outgoing>,
    wake: Box<dyn Fn() + Send + Sync>,
    credentials: Mutex<Credentials>,
    subs: Mutex<Vec<Subscription>>,
    /// `core.set_options({"legacy_jobs": false})` (25.10).
    pub legacy_jobs: AtomicBool,
    /// DDP `connect` done.
    pub ddp_connected: AtomicBool,
    /// Calls admitted (executing + queued).
    pub admitted: AtomicUsize,
    pub closed: AtomicBool,
    /// The half-open epoch this connection was opened in; a newer epoch freezes it.
    pub half_open_epoch: AtomicI64,
}

impl Session {
    pub(crate) fn new(
        id: u64,
        codec: Codec,
        api: SimVersion,
        origin: Origin,
        out: Sender<Outgoing>,
        wake: Box<dyn Fn() + Send + Sync>,
        half_open_epoch: i64,
    ) -> Session {
        Session {
            id,
            codec,
            api,
            origin,
            out,
            wake,
            credentials: Mutex::new(Credentials::None),
            subs: Mutex::new(Vec::new()),
            legacy_jobs: AtomicBool::new(true),
            ddp_connected: AtomicBool::new(false),
            admitted: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            half_open_epoch: AtomicI64::new(half_open_epoch),
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.codec.protocol
    }

    pub(crate) fn push(&self, msg: Outgoing) {
        if self.out.send(msg).is_ok() {
            (self.wake)();
        }
    }

    pub(crate) fn send_text(&self, text: String) {
        self.push(Outgoing::Text(text));
    }

    pub(crate) fn send_result(&self, id: &Value, result: &Value) {
        self.send_text(self.codec.result(id, result));
    }

    pub(crate) fn send_error(&self, id: &Value, failure: &Failure) {
        self.send_text(self.codec.error(id, failure));
    }

    pub(crate) fn send_event(&self, msg: &str, collection: &str, id: Option<&Value>, fields: Option<&Value>) {
        self.send_text(self.codec.event(msg, collection, id, fields));
    }

    pub(crate) fn send_unsubscribed(&self, collection: &str, error: Option<&Failure>) {
        self.send_text(self.codec.unsubscribed(collection, error));
    }

    /// Drop the connection without a close frame.
    pub(crate) fn drop_connection(&self) {
        self.push(Outgoing::Drop);
    }

    pub(crate) fn credentials(&self) -> MutexGuard<'_, Credentials> {
        self.credentials.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn username(&self) -> Option<String> {
        match &*self.credentials() {
            Credentials::User { username, .. } => Some(username.clone()),
            _ => None,
        }
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        matches!(*self.credentials(), Credentials::User { .. })
    }

    pub(crate) fn subs(&self) -> MutexGuard<'_, Vec<Subscription>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribed to a regular event `collection` (or `*`)?
    pub(crate) fn wants(&self, collection: &str) -> bool {
        self.subs().iter().any(|s| s.stop.is_none() && (s.name == collection || s.name == "*"))
    }

    /// End every subscription (logout, close): event-source threads stop.
    pub(crate) fn clear_subscriptions(&self) {
        for s in self.subs().drain(..) {
            if let Some(stop) = s.stop {
                stop.store(true, Ordering::SeqCst);
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

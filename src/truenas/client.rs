//! The cloneable client handle workers use; commands travel to the actor over a channel.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};

use super::actor::{Actor, Command, JobMsg};
use super::error::TnError;
use super::subscriptions::SUBSCRIBER_BUFFER;
use crate::config::{Config, Secret};
use crate::mcp::tool::CancelToken;
use crate::sim::{SimOptions, Simulator};

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

impl ClientSettings {
    /// Settings with the default keepalive (25 s, under nginx's 60 s idle timeout).
    pub fn new(config: Config) -> ClientSettings {
        ClientSettings { config, keepalive: Duration::from_secs(25) }
    }
}

/// A cheap cloneable handle to the connection actor. Connection is lazy: no I/O until the first call.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClientSettings,
    target: ConnectTarget,
    /// The actor's command channel; the actor thread starts on first use (and again if it ever died).
    commands: Mutex<Option<Sender<Command>>>,
    next_token: AtomicU64,
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
    name: String,
    local_id: u64,
    events: Receiver<SubEvent>,
    commands: Sender<Command>,
    ended: AtomicBool,
}

impl Subscription {
    /// The next event, or `None` after `timeout` with nothing received.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<SubEvent> {
        match self.events.recv_timeout(timeout) {
            Ok(ev) => {
                if matches!(ev, SubEvent::Ended(_)) {
                    self.ended.store(true, Ordering::SeqCst);
                }
                Some(ev)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                if self.ended.swap(true, Ordering::SeqCst) {
                    // Already told the caller; behave like a quiet channel rather than spin.
                    std::thread::sleep(timeout);
                    None
                } else {
                    Some(SubEvent::Ended(Some(TnError::ConnectionLost {
                        outcome_unknown: false,
                        detail: "the client's connection thread stopped".into(),
                    })))
                }
            }
        }
    }

    /// The collection or event source this subscription follows.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unsubscribe { local_id: self.local_id });
    }
}

impl Client {
    /// A client for `config`: mock mode gets an embedded simulator seeded with example apps.
    pub fn from_config(config: &Config) -> Client {
        if config.mock {
            let password = config.password.clone().unwrap_or_else(|| Secret::new("mock-password"));
            let sim = Simulator::new(SimOptions {
                users: vec![(config.username.clone(), password.expose().to_string())],
                seed_example_apps: true,
                ..Default::default()
            });
            let mut config = config.clone();
            config.password = Some(password);
            return Client::new(ClientSettings::new(config), ConnectTarget::InMemory(Arc::new(sim)));
        }
        Client::new(ClientSettings::new(config.clone()), ConnectTarget::Network)
    }

    /// A client with an explicit target (tests).
    pub fn new(settings: ClientSettings, target: ConnectTarget) -> Client {
        Client {
            inner: Arc::new(Inner { settings, target, commands: Mutex::new(None), next_token: AtomicU64::new(1) }),
        }
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// The embedded simulator in mock mode.
    pub fn simulator(&self) -> Option<&Arc<Simulator>> {
        match &self.inner.target {
            ConnectTarget::InMemory(sim) => Some(sim),
            ConnectTarget::Network => None,
        }
    }

    /// The actor's command channel, starting the actor on first use.
    fn commands(&self) -> Sender<Command> {
        let mut slot = self.inner.commands.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| self.spawn_actor()).clone()
    }

    fn spawn_actor(&self) -> Sender<Command> {
        let (tx, rx) = unbounded();
        let actor = Actor::new(self.inner.settings.clone(), self.inner.target.clone(), rx);
        std::thread::Builder::new()
            .name("truenas-actor".into())
            .spawn(move || {
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| actor.run())) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    log::error!("the truenas connection thread panicked ({what}); the next call starts a new one");
                }
            })
            .expect("spawning the truenas actor thread");
        tx
    }

    /// Send a command; if the actor died (a bug), start a fresh one and send it there.
    fn send(&self, cmd: Command) -> Result<(), TnError> {
        match self.commands().send(cmd) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::SendError(cmd)) => {
                let fresh = self.spawn_actor();
                *self.inner.commands.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
                fresh.send(cmd).map_err(|_| actor_gone())
            }
        }
    }

    /// How long a caller waits for the actor at most: connecting (twice, for the legacy fallback), logging in and
    /// the call itself, plus slack. The actor enforces the real deadlines; this only guards against a stuck actor.
    fn patience(&self, work: Duration) -> Duration {
        let c = &self.inner.settings.config;
        c.connect_timeout * 2 + c.call_timeout.max(Duration::from_secs(10)) * 2 + work + Duration::from_secs(5)
    }

    fn ask<T>(&self, cmd: Command, rx: Receiver<Result<T, TnError>>, work: Duration) -> Result<T, TnError> {
        self.send(cmd)?;
        match rx.recv_timeout(self.patience(work)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                Err(TnError::Timeout { phase: super::error::TimeoutPhase::Call, after: work })
            }
            Err(RecvTimeoutError::Disconnected) => Err(actor_gone()),
        }
    }

    fn call_with(&self, method: &str, params: Value, mutating: bool) -> Result<Value, TnError> {
        let timeout = self.inner.settings.config.call_timeout;
        let (reply, rx) = bounded(1);
        let cmd = Command::Call { method: method.to_string(), params, mutating, timeout, reply };
        self.ask(cmd, rx, timeout)
    }

    /// Connect and log in if needed; what we know about the server.
    pub fn server_info(&self) -> Result<ServerInfo, TnError> {
        let (reply, rx) = bounded(1);
        self.ask(Command::ServerInfo { reply }, rx, Duration::ZERO)
    }

    /// A read-only call (safe to retry after a reconnect). `params` is the positional array.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, TnError> {
        self.call_with(method, params, false)
    }

    /// A call that may change the NAS: never replayed; after a drop the error says the outcome is unknown.
    pub fn call_mutating(&self, method: &str, params: Value) -> Result<Value, TnError> {
        self.call_with(method, params, true)
    }

    /// Call a job method and wait for its final result, streaming progress.
    pub fn call_job(&self, method: &str, params: Value, opts: JobOptions) -> Result<Value, TnError> {
        let config = &self.inner.settings.config;
        let timeout = opts.timeout.unwrap_or(config.job_timeout);
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        if opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(TnError::Cancelled { job_id: None });
        }
        let (reply, rx) = unbounded();
        let cmd = Command::Job {
            token,
            method: method.to_string(),
            params,
            call_timeout: config.call_timeout,
            timeout,
            reply,
        };
        self.send(cmd)?;
        let give_up = Instant::now() + self.patience(timeout);
        let mut abort_sent = false;
        loop {
            // Wake now and then to notice a cancellation.
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(JobMsg::Started(id)) => log::debug!("{method} started as job {id}"),
                Ok(JobMsg::Progress(p)) => {
                    if let Some(cb) = &opts.progress {
                        cb(p);
                    }
                }
                Ok(JobMsg::Done(result)) => return result,
                Err(RecvTimeoutError::Timeout) => {
                    if !abort_sent && opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                        abort_sent = true;
                        self.send(Command::AbortJob { token })?;
                    }
                    if Instant::now() > give_up {
                        return Err(TnError::Timeout { phase: super::error::TimeoutPhase::Job, after: timeout });
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(actor_gone()),
            }
        }
    }

    /// Call a job method and return its id without waiting (`wait: false`).
    pub fn start_job(&self, method: &str, params: Value) -> Result<i64, TnError> {
        let v = self.call_mutating(method, params)?;
        v.as_i64().ok_or_else(|| TnError::Protocol(format!("{method} returned {v} instead of a job id")))
    }

    /// The job object (`core.get_jobs` with `id = job_id`), or NotFound.
    pub fn job(&self, job_id: i64) -> Result<Value, TnError> {
        let jobs = self.call("core.get_jobs", json!([[["id", "=", job_id]]]))?;
        match jobs {
            Value::Array(mut list) if !list.is_empty() => Ok(list.swap_remove(0)),
            Value::Array(_) => Err(TnError::NotFound(format!(
                "job {job_id} (finished jobs are forgotten after a while, and job ids restart when the middleware \
                 restarts)"
            ))),
            other => Err(TnError::Protocol(format!("core.get_jobs returned {other}"))),
        }
    }

    /// Subscribe to a collection or event source (`app.container_log_follow:{...}`).
    pub fn subscribe(&self, name: &str) -> Result<Subscription, TnError> {
        let local_id = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = bounded(SUBSCRIBER_BUFFER);
        let (reply, rx) = bounded(1);
        let timeout = self.inner.settings.config.call_timeout;
        let cmd = Command::Subscribe { name: name.to_string(), local_id, events: events_tx, timeout, reply };
        let commands = self.commands();
        // Built before asking, so a failure still sends the Unsubscribe that cleans up the actor's side.
        let sub = Subscription { name: name.to_string(), local_id, events, commands, ended: AtomicBool::new(false) };
        self.ask(cmd, rx, timeout)?;
        Ok(sub)
    }
}

fn actor_gone() -> TnError {
    TnError::ConnectionLost { outcome_unknown: true, detail: "the client's connection thread stopped".into() }
}

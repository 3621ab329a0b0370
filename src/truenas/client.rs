//! The cloneable client handle workers use; commands travel to the actor over a channel.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, select, unbounded, Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};

use super::actor::{Actor, Command};
use super::error::{TimeoutPhase, TnError};
use super::jobtable::JobMsg;
use super::subscriptions::SUBSCRIBER_BUFFER;
use super::transport::{Connector, TcpConnector};
use super::types::{ClientSettings, JobOutcome, JobProgress, ServerInfo, SubEvent};
use crate::cancel::CancelToken;

/// Options for [`Client::call_job`].
#[derive(Default)]
pub struct JobOptions {
    /// Job deadline (default: `TRUENAS_JOB_TIMEOUT`).
    pub timeout: Option<Duration>,
    pub progress: Option<Box<dyn Fn(JobProgress) + Send>>,
    /// When set and cancelled, the job is aborted with `core.job_abort` and `TnError::Cancelled` returned.
    pub cancel: Option<CancelToken>,
}

/// A cheap cloneable handle to the connection actor. Connection is lazy: no I/O until the first call.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClientSettings,
    connector: Arc<dyn Connector>,
    /// The actor's command channel; the actor thread starts on first use (and again if it ever died).
    commands: Mutex<Option<Sender<Command>>>,
    next_token: AtomicU64,
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
    /// A client that reaches the NAS the configuration names over the network (DNS, TCP, TLS). Mock mode plugs
    /// the simulator in through [`Client::new`] instead (`sim::client_for`).
    pub fn network(settings: ClientSettings) -> Client {
        Client::new(settings, Arc::new(TcpConnector))
    }

    /// A client that opens its connections through `connector`.
    pub fn new(settings: ClientSettings, connector: Arc<dyn Connector>) -> Client {
        Client {
            inner: Arc::new(Inner { settings, connector, commands: Mutex::new(None), next_token: AtomicU64::new(1) }),
        }
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// The actor's command channel, starting the actor on first use.
    fn commands(&self) -> Sender<Command> {
        let mut slot = self.inner.commands.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| self.spawn_actor()).clone()
    }

    fn spawn_actor(&self) -> Sender<Command> {
        let (tx, rx) = unbounded();
        let actor = Actor::new(self.inner.settings.clone(), Arc::clone(&self.inner.connector), rx);
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
            Err(RecvTimeoutError::Timeout) => Err(TnError::Timeout { phase: TimeoutPhase::Call, after: work }),
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

    /// Call a job method and wait for its final result, streaming progress. The outcome names the job id whenever
    /// the server assigned one, however the job ended.
    pub fn call_job(&self, method: &str, params: Value, opts: JobOptions) -> JobOutcome {
        let config = &self.inner.settings.config;
        let timeout = opts.timeout.unwrap_or(config.job_timeout);
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let failed = |job_id, e| JobOutcome { job_id, result: Err(e) };
        if opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return failed(None, TnError::Cancelled { job_id: None });
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
        if let Err(e) = self.send(cmd) {
            return failed(None, e);
        }
        let give_up = crossbeam_channel::after(self.patience(timeout));
        // Until cancelled, wait on the token too; afterwards only on the actor (which finishes the abort).
        let never = crossbeam_channel::never();
        let mut cancel = opts.cancel.as_ref().map(CancelToken::receiver);
        let mut job_id = None;
        loop {
            select! {
                recv(rx) -> msg => match msg {
                    Ok(JobMsg::Started(id)) => {
                        log::debug!("{method} started as job {id}");
                        job_id = Some(id);
                    }
                    Ok(JobMsg::Progress(p)) => {
                        if let Some(cb) = &opts.progress {
                            cb(p);
                        }
                    }
                    Ok(JobMsg::Done(outcome)) => return outcome,
                    Err(_) => return failed(job_id, actor_gone()),
                },
                recv(cancel.unwrap_or(&never)) -> _ => {
                    cancel = None;
                    if let Err(e) = self.send(Command::AbortJob { token }) {
                        return failed(job_id, e);
                    }
                }
                recv(give_up) -> _ => return failed(job_id, TnError::Timeout { phase: TimeoutPhase::Job, after: timeout }),
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

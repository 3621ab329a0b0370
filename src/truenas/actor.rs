//! The connection actor: the only code that touches the TrueNAS socket.
//!
//! Workers send [`Command`]s over a channel; the actor connects lazily (through [`session::connect`] and the
//! client's [`Connector`]), multiplexes calls by request id (at most [`MAX_ON_WIRE`] outstanding, the rest queued
//! locally), routes job events to the [`JobTable`] and subscription events to the [`Registry`], keeps the connection
//! alive ([`Conn::keepalive`]), notices dead peers and reconnects on demand. This file holds the intake, the
//! deadlines and the dispatch; socket I/O is in `wire`, connecting in `session`, the job state machine in
//! `jobtable`.
//!
//! Time comes from the settings' clock. A connect back-off is a "not before" time, never a sleep: commands that
//! need a connection wait for it in `deferred` while aborts and unsubscribes are still served at once.
//!
//! Longer than most files (~840 lines) on purpose: intake, deadlines, re-login and dispatch all work on the same
//! request tables (`queue`, `in_flight`, `abandoned`), and splitting them would hand those tables around.
//!
//! Waiting strategy (idle CPU ≈ 0 without an async runtime): with nothing outstanding the actor blocks on the
//! command channel (waking only for keepalive or the end of a back-off); with requests outstanding it blocks on the
//! socket with a short read timeout ([`BUSY_TICK`]) and checks the channel between reads.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use log::{debug, info, warn};
use serde_json::{json, Value};

use super::codec::{self, EventKind, Incoming};
use super::error::{AuthFailure, TimeoutPhase, TnError, WireError};
use super::jobtable::{Abort, JobMsg, JobTable};
use super::session::{self, Learned, Session};
use super::subscriptions::{AddOutcome, Registry};
use super::transport::Connector;
use super::types::{ClientSettings, JobOutcome, ServerInfo, SubEvent};
use super::wire::{log_out, lost, Conn, ReadOutcome, BUSY_TICK, DRAIN_TICK};

/// At most this many requests outstanding on the wire (the server admits 20 per socket and rejects the 21st).
pub const MAX_ON_WIRE: usize = 16;
/// Largest request after login.
pub const FRAME_LIMIT_AUTHENTICATED: usize = 64 * 1024;
/// Socket read timeout while only jobs or subscriptions wait for events (fewer wake-ups, commands wait longer).
const WATCH_TICK: Duration = Duration::from_millis(20);
/// Messages handled in one go before the command channel gets a look (a flood of events must not starve calls).
const READ_BATCH: usize = 64;
/// Longest idle sleep when connected (drains stray events, notices a closed socket).
const IDLE_WAIT: Duration = Duration::from_secs(5);
/// After a rate-limited login, do not try again for this long.
const RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A back-off longer than this fails callers at once with the last error instead of making them wait.
const BACKOFF_PATIENCE: Duration = Duration::from_secs(2);

/// A request from a client handle to the actor.
pub enum Command {
    Call {
        method: String,
        params: Value,
        mutating: bool,
        timeout: Duration,
        reply: Sender<Result<Value, TnError>>,
    },
    Job {
        token: u64,
        method: String,
        params: Value,
        call_timeout: Duration,
        timeout: Duration,
        reply: Sender<JobMsg>,
    },
    AbortJob {
        token: u64,
    },
    ServerInfo {
        reply: Sender<Result<ServerInfo, TnError>>,
    },
    Subscribe {
        name: String,
        local_id: u64,
        events: Sender<SubEvent>,
        timeout: Duration,
        reply: Sender<Result<(), TnError>>,
    },
    Unsubscribe {
        local_id: u64,
    },
}

impl Command {
    fn needs_connection(&self) -> bool {
        !matches!(self, Command::AbortJob { .. } | Command::Unsubscribe { .. })
    }

    /// Tell the caller it failed before anything was sent.
    fn fail(self, e: TnError) {
        match self {
            Command::Call { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Command::Job { reply, .. } => {
                let _ = reply.send(JobMsg::Done(JobOutcome { job_id: None, result: Err(e) }));
            }
            Command::ServerInfo { reply } => {
                let _ = reply.send(Err(e));
            }
            Command::Subscribe { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Command::AbortJob { .. } | Command::Unsubscribe { .. } => {}
        }
    }
}

/// What a request on the wire is for.
enum ReqKind {
    Call {
        method: String,
        params: Value,
        mutating: bool,
        timeout: Duration,
        reply: Sender<Result<Value, TnError>>,
        relogged: bool,
    },
    JobStart {
        token: u64,
        relogged: bool,
    },
    JobAbort {
        token: u64,
        job_id: i64,
    },
    Subscribe {
        collection: String,
        timeout: Duration,
    },
    Unsubscribe {
        server_id: String,
    },
}

struct Request {
    kind: ReqKind,
    deadline: Instant,
    /// The login it was sent under (set when written): a 207 for an older login needs no new login.
    epoch: u64,
}

/// Connect-retry state: consecutive failures and when the next attempt may start.
#[derive(Default)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
    last_error: Option<TnError>,
}

/// Whether a connection attempt may start now.
enum Gate {
    Open,
    /// Not yet (a short back-off): callers wait for it.
    Wait,
    /// A long (or rate-limit) back-off: callers get the last error at once.
    Refuse(TnError),
}

pub struct Actor {
    settings: ClientSettings,
    connector: Arc<dyn Connector>,
    commands: Receiver<Command>,
    conn: Option<Conn>,
    /// What earlier connections found out: protocol, pinned API version, reconnect token.
    learned: Learned,
    info: Option<ServerInfo>,
    in_flight: HashMap<String, Request>,
    queue: VecDeque<Request>,
    /// Requests we gave up on that still occupy one of the server's slots until it answers.
    abandoned: HashSet<String>,
    jobs: JobTable,
    subs: Registry,
    /// Requests refused with 207: re-login once, then send them again.
    relogin: Vec<ReqKind>,
    /// Counts successful logins; requests remember the one they were sent under.
    login_epoch: u64,
    backoff: Backoff,
    /// Commands that need a connection, waiting for the back-off to pass.
    deferred: Vec<Command>,
}

impl Actor {
    pub fn new(settings: ClientSettings, connector: Arc<dyn Connector>, commands: Receiver<Command>) -> Actor {
        Actor {
            settings,
            connector,
            commands,
            conn: None,
            learned: Learned::default(),
            info: None,
            in_flight: HashMap::new(),
            queue: VecDeque::new(),
            abandoned: HashSet::new(),
            jobs: JobTable::default(),
            subs: Registry::default(),
            relogin: Vec::new(),
            login_epoch: 0,
            backoff: Backoff::default(),
            deferred: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.settings.clock.now()
    }

    /// The actor loop; returns when every client handle is gone.
    pub fn run(mut self) {
        loop {
            let now = self.now();
            self.expire(now);
            if self.conn.is_none() && self.needs_connection() {
                self.reconnect_for_pending(now);
            }
            self.retry_deferred(now);
            if self.conn.is_some() && self.busy() {
                loop {
                    match self.commands.try_recv() {
                        Ok(cmd) => self.handle(cmd),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return self.shutdown(),
                    }
                }
                self.pump_queue();
                let requests_out = !self.in_flight.is_empty() || !self.queue.is_empty() || !self.abandoned.is_empty();
                self.read_socket(if requests_out { BUSY_TICK } else { WATCH_TICK });
            } else {
                match self.commands.recv_timeout(self.idle_wait(now)) {
                    Ok(cmd) => self.handle(cmd),
                    Err(RecvTimeoutError::Timeout) => self.drain(),
                    Err(RecvTimeoutError::Disconnected) => return self.shutdown(),
                }
            }
            if !self.relogin.is_empty() {
                self.relogin_and_retry();
            }
            self.keepalive(self.now());
            self.pump_queue();
        }
    }

    /// Whether anything waits for the socket.
    fn busy(&self) -> bool {
        !self.in_flight.is_empty()
            || !self.queue.is_empty()
            || !self.abandoned.is_empty()
            || !self.jobs.is_empty()
            || !self.subs.is_empty()
    }

    fn needs_connection(&self) -> bool {
        !self.queue.is_empty() || self.jobs.any_started()
    }

    fn idle_wait(&self, now: Instant) -> Duration {
        let mut wait = match &self.conn {
            Some(conn) => {
                let next = conn.next_keepalive(self.settings.keepalive, self.pong_timeout());
                next.saturating_duration_since(now).min(IDLE_WAIT)
            }
            None => Duration::from_secs(3600),
        };
        if !self.deferred.is_empty() || (self.conn.is_none() && self.needs_connection()) {
            if let Some(not_before) = self.backoff.not_before {
                wait = wait.min(not_before.saturating_duration_since(now));
            }
        }
        if let Some(cap) = self.settings.clock.max_real_wait() {
            wait = wait.min(cap);
        }
        wait.max(Duration::from_millis(1))
    }

    fn pong_timeout(&self) -> Duration {
        self.settings.keepalive.clamp(Duration::from_secs(1), Duration::from_secs(10))
    }

    // ----- commands -------------------------------------------------------------------------------------------

    fn handle(&mut self, cmd: Command) {
        if cmd.needs_connection() {
            match self.ensure_connected() {
                Ok(true) => {}
                Ok(false) => return self.deferred.push(cmd),
                Err(e) => return cmd.fail(e),
            }
        }
        let now = self.now();
        match cmd {
            Command::Call { method, params, mutating, timeout, reply } => {
                let kind = ReqKind::Call { method, params, mutating, timeout, reply, relogged: false };
                self.queue.push_back(Request { kind, deadline: now + timeout, epoch: 0 });
            }
            Command::Job { token, method, params, call_timeout, timeout, reply } => {
                self.jobs.add(token, method, params, reply, now, timeout);
                self.queue.push_back(Request {
                    kind: ReqKind::JobStart { token, relogged: false },
                    deadline: now + call_timeout,
                    epoch: 0,
                });
            }
            Command::AbortJob { token } => self.abort_job(token),
            Command::ServerInfo { reply } => {
                let r =
                    self.info.clone().ok_or_else(|| TnError::Protocol("connected without server information".into()));
                let _ = reply.send(r);
            }
            Command::Subscribe { name, local_id, events, timeout, reply } => {
                if self.subs.add(&name, local_id, events, reply) == AddOutcome::SubscribeOnServer {
                    let kind = ReqKind::Subscribe { collection: name, timeout };
                    self.queue.push_back(Request { kind, deadline: now + timeout, epoch: 0 });
                }
            }
            Command::Unsubscribe { local_id } => {
                if let Some(server_id) = self.subs.remove(local_id) {
                    self.send_unsubscribe(server_id);
                }
            }
        }
    }

    /// Commands that waited for the back-off: try again once it has passed (each gets its own attempt, as if it
    /// had just arrived).
    fn retry_deferred(&mut self, now: Instant) {
        if self.deferred.is_empty() || (self.conn.is_none() && matches!(self.gate(now), Gate::Wait)) {
            return;
        }
        for cmd in std::mem::take(&mut self.deferred) {
            self.handle(cmd);
        }
    }

    fn send_unsubscribe(&mut self, server_id: String) {
        if self.conn.is_some() {
            let deadline = self.now() + self.settings.config.call_timeout;
            self.queue.push_back(Request { kind: ReqKind::Unsubscribe { server_id }, deadline, epoch: 0 });
        }
    }

    fn abort_job(&mut self, token: u64) {
        // A job still waiting for the back-off never reached the NAS: it ends here, without waiting.
        if let Some(pos) = self.deferred.iter().position(|c| matches!(c, Command::Job { token: t, .. } if *t == token))
        {
            return self.deferred.remove(pos).fail(TnError::Cancelled { job_id: None });
        }
        match self.jobs.request_abort(token) {
            Abort::Send(job_id) => {
                let deadline = self.now() + self.settings.config.call_timeout;
                self.queue.push_front(Request { kind: ReqKind::JobAbort { token, job_id }, deadline, epoch: 0 });
            }
            Abort::Nothing => {}
            Abort::NotStarted => {
                // Not sent yet: drop it and nothing happened on the NAS.
                let before = self.queue.len();
                self.queue.retain(|r| !matches!(r.kind, ReqKind::JobStart { token: t, .. } if t == token));
                if self.queue.len() != before {
                    self.jobs.finish(token, Err(TnError::Cancelled { job_id: None }));
                }
                // Otherwise the start is on the wire: the abort goes out when its job id arrives.
            }
        }
    }

    // ----- deadlines ------------------------------------------------------------------------------------------

    fn expire(&mut self, now: Instant) {
        let expired_queue: Vec<Request> = if !self.queue.iter().any(|r| r.deadline <= now) {
            Vec::new()
        } else {
            let (gone, keep): (Vec<Request>, Vec<Request>) = self.queue.drain(..).partition(|r| r.deadline <= now);
            self.queue = keep.into();
            gone
        };
        for r in expired_queue {
            let after = timeout_of(&r.kind, self.settings.config.call_timeout);
            self.fail(r.kind, TnError::Timeout { phase: TimeoutPhase::Call, after });
        }
        let expired: Vec<String> =
            self.in_flight.iter().filter(|(_, r)| r.deadline <= now).map(|(id, _)| id.clone()).collect();
        for id in expired {
            if let Some(r) = self.in_flight.remove(&id) {
                let after = timeout_of(&r.kind, self.settings.config.call_timeout);
                self.fail(r.kind, TnError::Timeout { phase: TimeoutPhase::Call, after });
                self.abandoned.insert(id);
            }
        }
        self.jobs.expire(now);
        if self.conn.is_some() && self.abandoned.len() >= MAX_ON_WIRE {
            self.lose(format!("truenas stopped answering ({} calls timed out)", self.abandoned.len()));
        }
    }

    /// Tell whoever waits for `kind` that it failed with `err`.
    fn fail(&mut self, kind: ReqKind, err: TnError) {
        match kind {
            ReqKind::Call { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            ReqKind::JobStart { token, .. } => self.jobs.finish(token, Err(err)),
            ReqKind::JobAbort { token, .. } => self.jobs.abort_failed(token),
            ReqKind::Subscribe { collection, .. } => self.subs.end(&collection, Some(err)),
            ReqKind::Unsubscribe { .. } => {}
        }
    }

    // ----- connection -----------------------------------------------------------------------------------------

    fn gate(&self, now: Instant) -> Gate {
        match (self.backoff.not_before, &self.backoff.last_error) {
            (Some(not_before), Some(e)) if now < not_before => {
                if not_before - now > BACKOFF_PATIENCE || matches!(e, TnError::RateLimited(_)) {
                    Gate::Refuse(e.clone())
                } else {
                    Gate::Wait
                }
            }
            _ => Gate::Open,
        }
    }

    /// Connected (true), or must wait for the back-off (false).
    fn ensure_connected(&mut self) -> Result<bool, TnError> {
        if let Some(conn) = &self.conn {
            // After a quiet spell, look for a close that is already waiting before sending anything that might
            // change the NAS on a dead socket.
            let quiet = Duration::from_secs(1);
            let clock = &self.settings.clock;
            if clock.elapsed_since(conn.last_rx) > quiet && clock.elapsed_since(conn.last_tx) > quiet {
                self.drain();
            }
        }
        if self.conn.is_some() {
            return Ok(true);
        }
        match self.gate(self.now()) {
            Gate::Open => self.connect().map(|()| true),
            Gate::Wait => Ok(false),
            Gate::Refuse(e) => Err(e),
        }
    }

    /// Reconnect because queued requests or running jobs need it; on failure tell them.
    fn reconnect_for_pending(&mut self, now: Instant) {
        let result = match self.gate(now) {
            Gate::Wait => return,
            Gate::Refuse(e) => Err(e),
            Gate::Open => self.connect(),
        };
        if let Err(e) = result {
            for r in std::mem::take(&mut self.queue) {
                self.fail(r.kind, e.clone());
            }
            self.jobs.fail_started(|id| lost(format!("job {id} was running; reconnecting failed: {e}"), true));
        }
    }

    fn connect(&mut self) -> Result<(), TnError> {
        match session::connect(&self.settings, self.connector.as_ref(), &mut self.learned) {
            Ok(Session { conn, info, stray }) => {
                self.backoff = Backoff::default();
                self.conn = Some(conn);
                self.login_epoch += 1;
                self.info = Some(info);
                for msg in stray {
                    self.on_incoming(msg);
                }
                self.reconcile_jobs();
                Ok(())
            }
            Err(e) => {
                self.conn = None;
                // Slots of a connection that no longer exists.
                self.abandoned.clear();
                let delay = match &e {
                    TnError::RateLimited(_) => RATE_LIMIT_BACKOFF,
                    // No I/O happened: trying again is cheap and cannot hurt the NAS.
                    TnError::NotConfigured(_)
                    | TnError::Auth(AuthFailure::NoCredentials | AuthFailure::InsecureTransportRefused) => {
                        Duration::ZERO
                    }
                    _ => (BACKOFF_START * 2u32.saturating_pow(self.backoff.failures)).min(BACKOFF_MAX),
                };
                self.backoff.failures = self.backoff.failures.saturating_add(1);
                self.backoff.not_before = Some(self.now() + delay);
                self.backoff.last_error = Some(e.clone());
                warn!("connecting to truenas failed: {e}");
                Err(e)
            }
        }
    }

    /// After a reconnect: which of the jobs we were waiting for still exist, and how did they end?
    fn reconcile_jobs(&mut self) {
        let ids = self.jobs.to_reconcile();
        if ids.is_empty() {
            return;
        }
        let found = self.call_sync("core.get_jobs", json!([[["id", "in", ids]]]));
        for token in self.jobs.reconcile(&found) {
            self.abort_job(token);
        }
    }

    /// A call made by the actor itself, waiting for its answer; what arrives meanwhile is dispatched.
    fn call_sync(&mut self, method: &str, params: Value) -> Result<Value, TnError> {
        let timeout = self.settings.config.call_timeout;
        let Some(conn) = self.conn.as_mut() else { return Err(lost("not connected", false)) };
        let id = codec::next_request_id();
        let text = conn.codec.call(&id, method, &params);
        log_out(&text);
        let mut others = Vec::new();
        let result = conn.request_sync(&id, &text, timeout, TimeoutPhase::Call, &mut others);
        for msg in others {
            self.on_incoming(msg);
        }
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(w)) => Err(w.into_tn_error(method)),
            Err(e) => {
                self.after_sync_failure(&id, &e);
                Err(e)
            }
        }
    }

    /// A synchronous request failed: a lost connection is dropped; a timed-out answer still occupies a slot.
    fn after_sync_failure(&mut self, id: &str, e: &TnError) {
        match e {
            TnError::ConnectionLost { detail, .. } => self.lose(detail.clone()),
            TnError::Timeout { .. } => {
                self.abandoned.insert(id.to_string());
            }
            _ => {}
        }
    }

    /// Log in again on this connection after a 207 and resend what was refused (once).
    fn relogin_and_retry(&mut self) {
        let refused = std::mem::take(&mut self.relogin);
        let Some(mut conn) = self.conn.take() else {
            // The connection went away meanwhile: the requests were refused, so sending them later is safe.
            self.requeue_front(refused);
            return;
        };
        info!("truenas session expired; logging in again");
        conn.authenticated = false;
        self.jobs.session_renewed();
        let mut others = Vec::new();
        let login = session::login(&mut conn, &self.settings, &mut self.learned, &mut others);
        if login.is_ok() {
            self.login_epoch += 1;
        }
        let result = login.and_then(|()| session::subscribe_jobs(&mut conn, &self.settings, &mut others));
        self.conn = Some(conn);
        // 207s read while logging in answer requests sent before this login: they go with this re-login instead
        // of causing another one.
        for msg in others {
            self.on_incoming(msg);
        }
        if result.is_ok() {
            self.reconcile_jobs();
        }
        let refused: Vec<ReqKind> = refused.into_iter().chain(std::mem::take(&mut self.relogin)).collect();
        match result {
            Ok(()) => self.requeue_front(refused),
            Err(e) => {
                warn!("logging in again failed: {e}");
                if let TnError::ConnectionLost { detail, .. } = &e {
                    self.lose(detail.clone());
                }
                for kind in refused {
                    self.fail(kind, e.clone());
                }
                // Never keep a connection that is not logged in: nothing queued would ever be sent on it again
                // (every later call would time out). Dropping it makes the next call connect and log in afresh.
                self.lose(format!("logging in again failed: {e}"));
            }
        }
    }

    fn requeue_front(&mut self, kinds: Vec<ReqKind>) {
        let now = self.now();
        for kind in kinds.into_iter().rev() {
            let deadline = now + timeout_of(&kind, self.settings.config.call_timeout);
            self.queue.push_front(Request { kind, deadline, epoch: 0 });
        }
    }

    /// The connection is gone: fail what was on the wire, end subscriptions, keep what was never sent.
    fn lose(&mut self, detail: String) {
        let Some(mut conn) = self.conn.take() else { return };
        warn!("truenas connection lost: {detail}");
        conn.close();
        for (_, r) in std::mem::take(&mut self.in_flight) {
            match r.kind {
                ReqKind::Call { reply, mutating, .. } => {
                    let _ = reply.send(Err(lost(detail.clone(), mutating)));
                }
                ReqKind::JobStart { token, .. } => self.jobs.finish(token, Err(lost(detail.clone(), true))),
                other => self.fail(other, lost(detail.clone(), false)),
            }
        }
        self.abandoned.clear();
        self.subs.end_all(lost(detail.clone(), false));
        self.jobs.connection_lost();
    }

    fn shutdown(mut self) {
        debug!("all client handles dropped; closing the truenas connection");
        if let Some(mut conn) = self.conn.take() {
            conn.close();
        }
        self.subs.end_all(lost("the client was shut down", false));
        for cmd in std::mem::take(&mut self.deferred) {
            cmd.fail(lost("the client was shut down", false));
        }
        self.jobs.fail_all(lost("the client was shut down", true));
    }

    // ----- socket I/O -----------------------------------------------------------------------------------------

    /// Send queued requests while there are free slots.
    fn pump_queue(&mut self) {
        if self.queue.is_empty() || self.conn.as_ref().map_or(true, |c| !c.authenticated) {
            return;
        }
        let mut wrote = false;
        while self.in_flight.len() + self.abandoned.len() < MAX_ON_WIRE {
            let Some(req) = self.queue.pop_front() else { break };
            let id = codec::next_request_id();
            let Some(conn) = self.conn.as_ref() else {
                self.queue.push_front(req);
                break;
            };
            let (text, expects_reply) = match &req.kind {
                ReqKind::Call { method, params, .. } => (conn.codec.call(&id, method, params), true),
                ReqKind::JobStart { token, .. } => match self.jobs.call_of(*token) {
                    Some((method, params)) => (conn.codec.call(&id, method, params), true),
                    None => continue,
                },
                ReqKind::JobAbort { job_id, .. } => (conn.codec.call(&id, "core.job_abort", &json!([job_id])), true),
                ReqKind::Subscribe { collection, .. } => (conn.codec.subscribe(&id, collection), true),
                ReqKind::Unsubscribe { server_id } => conn.codec.unsubscribe(&id, server_id),
            };
            if text.len() > FRAME_LIMIT_AUTHENTICATED {
                self.fail(req.kind, TnError::TooLarge { size: text.len(), limit: FRAME_LIMIT_AUTHENTICATED });
                continue;
            }
            log_out(&text);
            let conn = self.conn.as_mut().expect("checked above");
            if let Err(e) = conn.write(text) {
                // The frame may be partly out: whoever waits for it cannot know whether it arrived.
                self.in_flight.insert(id, req);
                self.lose(e);
                return;
            }
            wrote = true;
            if expects_reply {
                self.in_flight.insert(id, Request { epoch: self.login_epoch, ..req });
            }
        }
        if wrote {
            if let Err(e) = self.conn.as_mut().expect("connected").flush() {
                self.lose(e);
            }
        }
    }

    /// Read and dispatch everything that arrives within `wait` (and what is already buffered).
    fn read_socket(&mut self, wait: Duration) {
        for i in 0..READ_BATCH {
            let Some(conn) = self.conn.as_mut() else { return };
            // Do not block again when a command waits or no answer is outstanding: a caller making one call after
            // another must not wait for a read timeout between them.
            if i > 0 && (!self.commands.is_empty() || (self.in_flight.is_empty() && self.queue.is_empty())) {
                return;
            }
            match conn.read_one(wait) {
                Ok(ReadOutcome::Message(msg)) => {
                    self.on_incoming(msg);
                    self.pump_queue();
                }
                Ok(ReadOutcome::Control) => {}
                Ok(ReadOutcome::Idle) => return,
                Err(e) => return self.lose(e),
            }
        }
    }

    /// Handle whatever is already buffered (stray events, a close frame), without waiting for more.
    fn drain(&mut self) {
        for _ in 0..READ_BATCH {
            let Some(conn) = self.conn.as_mut() else { return };
            match conn.read_one(DRAIN_TICK) {
                Ok(ReadOutcome::Message(msg)) => self.on_incoming(msg),
                Ok(ReadOutcome::Control) => {}
                Ok(ReadOutcome::Idle) => return,
                Err(e) => return self.lose(e),
            }
        }
    }

    fn keepalive(&mut self, now: Instant) {
        let (interval, pong_timeout) = (self.settings.keepalive, self.pong_timeout());
        let Some(conn) = self.conn.as_mut() else { return };
        if let Err(e) = conn.keepalive(now, interval, pong_timeout) {
            self.lose(e);
        }
    }

    // ----- incoming -------------------------------------------------------------------------------------------

    fn on_incoming(&mut self, msg: Incoming) {
        match msg {
            Incoming::Response { id, result } => {
                if self.abandoned.remove(&id) {
                    debug!("late answer to {id}, which already timed out");
                    return;
                }
                match self.in_flight.remove(&id) {
                    Some(req) => self.complete(req.kind, req.epoch, result),
                    None => debug!("answer to unknown request {id}"),
                }
            }
            Incoming::Event { collection, kind, id, fields } => {
                if collection == "core.get_jobs" {
                    self.on_job_event(id.as_ref(), fields.as_ref());
                }
                let event = match kind {
                    EventKind::Added => SubEvent::Added { id, fields: fields.unwrap_or(Value::Null) },
                    EventKind::Changed => SubEvent::Changed { id, fields: fields.unwrap_or(Value::Null) },
                    EventKind::Removed => SubEvent::Removed { id },
                };
                self.subs.fan_out(&collection, &event);
            }
            Incoming::Unsubscribed { collection, error } => {
                let error = error.map(|w| w.into_tn_error(&collection));
                self.subs.end(&collection, error);
            }
            Incoming::ConnectionError(w) => {
                warn!("truenas reported a connection-level error: {}", w.clone().into_tn_error("(unknown call)"))
            }
            Incoming::Connected | Incoming::ConnectFailed(_) => debug!("unexpected DDP handshake message"),
            Incoming::Ignored(what) => debug!("ignored {what}"),
            Incoming::Malformed(why) => warn!("ignoring a message from truenas that cannot be understood: {why}"),
        }
    }

    fn on_job_event(&mut self, id: Option<&Value>, fields: Option<&Value>) {
        let Some(fields) = fields else { return };
        let Some(job_id) = id.and_then(Value::as_i64).or_else(|| fields.get("id").and_then(Value::as_i64)) else {
            return;
        };
        let starting = self.in_flight.values().any(|r| matches!(r.kind, ReqKind::JobStart { .. }));
        let now = self.now();
        self.jobs.on_event(job_id, fields, starting, now);
    }

    /// A 207 for a request sent under an older login: that login was already replaced, so the request is simply
    /// sent again (once) instead of logging in a second time.
    fn refused_by_old_login(&mut self, epoch: u64, kind: ReqKind) {
        if epoch < self.login_epoch {
            self.requeue_front(vec![kind]);
        } else {
            self.relogin.push(kind);
        }
    }

    fn complete(&mut self, kind: ReqKind, epoch: u64, result: Result<Value, WireError>) {
        match kind {
            ReqKind::Call { method, params, mutating, timeout, reply, relogged } => match result {
                Ok(v) => {
                    let _ = reply.send(Ok(v));
                }
                // 207 means the server refused the call before running it, so one retry after a fresh login
                // cannot repeat a change.
                Err(w) if w.is_not_authenticated() && !relogged => self.refused_by_old_login(
                    epoch,
                    ReqKind::Call { method, params, mutating, timeout, reply, relogged: true },
                ),
                Err(w) => {
                    let _ = reply.send(Err(w.into_tn_error(&method)));
                }
            },
            ReqKind::JobStart { token, relogged } => match result {
                Ok(v) => match v.as_i64() {
                    Some(job_id) => {
                        if self.jobs.started(token, job_id) {
                            self.abort_job(token);
                        }
                    }
                    None => self.jobs.finish(token, Err(TnError::Protocol(format!("expected a job id, got {v}")))),
                },
                Err(w) if w.is_not_authenticated() && !relogged => {
                    self.refused_by_old_login(epoch, ReqKind::JobStart { token, relogged: true })
                }
                Err(w) => {
                    let method = self.jobs.method(token);
                    self.jobs.finish(token, Err(w.into_tn_error(&method)));
                }
            },
            // Wait for the job to really end (its ABORTED event) before telling the caller, so that "cancelled"
            // means stopped; the job table gives up waiting after its abort grace.
            ReqKind::JobAbort { token, job_id } => match result {
                Ok(_) => {
                    let now = self.now();
                    self.jobs.abort_accepted(token, now);
                }
                Err(w) => warn!("aborting job {job_id} failed: {}", w.into_tn_error("core.job_abort")),
            },
            ReqKind::Subscribe { collection, .. } => match result {
                Ok(v) => {
                    let server_id = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    if let Some(orphan) = self.subs.confirm(&collection, server_id) {
                        self.send_unsubscribe(orphan);
                    }
                }
                Err(w) => {
                    let e = w.into_tn_error("core.subscribe");
                    self.subs.end(&collection, Some(e));
                }
            },
            ReqKind::Unsubscribe { .. } => {}
        }
    }
}

fn timeout_of(kind: &ReqKind, default: Duration) -> Duration {
    match kind {
        ReqKind::Call { timeout, .. } | ReqKind::Subscribe { timeout, .. } => *timeout,
        _ => default,
    }
}

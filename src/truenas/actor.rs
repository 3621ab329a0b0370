//! The connection actor: the only code that touches the TrueNAS socket.
//!
//! Workers send [`Command`]s over a channel; the actor connects lazily, logs in, multiplexes calls by request id
//! (at most [`MAX_ON_WIRE`] outstanding, the rest queued locally), routes job and subscription events, keeps the
//! connection alive with WebSocket pings, notices dead peers and reconnects on demand.
//!
//! Waiting strategy (idle CPU ≈ 0 without an async runtime): with nothing outstanding the actor blocks on the
//! command channel (waking only for keepalive); with requests outstanding it blocks on the socket with a short read
//! timeout ([`BUSY_TICK`]) and checks the channel between reads.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use log::{debug, info, log_enabled, warn, Level};
use serde_json::{json, Value};
use tungstenite::Message;

use super::auth;
use super::client::{ClientSettings, ConnectTarget, JobProgress, ServerInfo, SubEvent, WireProtocol};
use super::codec::{self, Codec, EventKind, Incoming};
use super::error::{AuthFailure, TimeoutPhase, TnError, WireError};
use super::jobs::{self, JobState};
use super::subscriptions::{AddOutcome, Registry};
use super::transport::{self, Endpoint, OpenError, Socket, Stream};
use crate::config::ApiMode;

/// At most this many requests outstanding on the wire (the server admits 20 per socket and rejects the 21st).
pub const MAX_ON_WIRE: usize = 16;
/// Largest request before login (the server closes the socket on more).
pub const FRAME_LIMIT_ANONYMOUS: usize = 8 * 1024;
/// Largest request after login.
pub const FRAME_LIMIT_AUTHENTICATED: usize = 64 * 1024;
/// Socket read timeout while requests are outstanding: the longest a new command waits to be sent.
const BUSY_TICK: Duration = Duration::from_millis(2);
/// Socket read timeout while only jobs or subscriptions wait for events (fewer wake-ups, commands wait longer).
const WATCH_TICK: Duration = Duration::from_millis(20);
/// Messages handled in one go before the command channel gets a look (a flood of events must not starve calls).
const READ_BATCH: usize = 64;
/// Read timeout used to drain what is already buffered.
const DRAIN_TICK: Duration = Duration::from_millis(1);
/// Longest idle sleep when connected (drains stray events, notices a closed socket).
const IDLE_WAIT: Duration = Duration::from_secs(5);
/// A peer that does not read for this long is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Logins may be slow (failure delays of 1–5 s server-side).
const MIN_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a job event for an unknown job id is kept, waiting for the response naming that id.
const EARLY_EVENT_TTL: Duration = Duration::from_secs(60);
/// How long to wait for a job's ABORTED event after the server accepted `core.job_abort`.
const ABORT_GRACE: Duration = Duration::from_secs(5);
/// After a rate-limited login, do not try again for this long.
const RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Where the simulator is reached in mock mode (never resolved: the bytes go through an in-memory pipe).
pub const MOCK_HOST: &str = "mock.truenas.invalid";

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

/// What the actor tells a `call_job` caller.
pub enum JobMsg {
    Started(i64),
    Progress(JobProgress),
    Done(Result<Value, TnError>),
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

struct JobWaiter {
    method: String,
    params: Value,
    job_id: Option<i64>,
    reply: Sender<JobMsg>,
    deadline: Instant,
    timeout: Duration,
    /// The job object as merged from events.
    state: Value,
    last_progress: Option<JobProgress>,
    cancel_requested: bool,
    abort_sent: bool,
    /// When the server accepted `core.job_abort`; the job's ABORTED event normally follows at once.
    abort_accepted: Option<Instant>,
    /// The connection dropped after the job id was known: check it with `core.get_jobs` after reconnecting.
    needs_reconcile: bool,
    /// Events for this job id received while `needs_reconcile`: applied after the `core.get_jobs` snapshot once the
    /// job is confirmed to be ours (they may be newer than the snapshot), dropped otherwise.
    held_events: Vec<Value>,
}

struct Conn {
    socket: Socket,
    codec: Box<dyn Codec>,
    authenticated: bool,
    read_timeout: Option<Duration>,
    last_rx: Instant,
    last_tx: Instant,
    last_ping: Instant,
    ping_outstanding: Option<Instant>,
}

/// Connect-retry state: consecutive failures and when the next attempt may start.
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
    last_error: Option<TnError>,
}

enum ReadOutcome {
    Message(Incoming),
    Control,
    Idle,
}

pub struct Actor {
    settings: ClientSettings,
    target: ConnectTarget,
    commands: Receiver<Command>,
    conn: Option<Conn>,
    /// The protocol that worked last time (skips the JSON-RPC probe on reconnects to a 24.10 box).
    learned_protocol: Option<WireProtocol>,
    info: Option<ServerInfo>,
    in_flight: HashMap<String, Request>,
    queue: VecDeque<Request>,
    /// Requests we gave up on that still occupy one of the server's slots until it answers.
    abandoned: HashSet<String>,
    jobs: HashMap<u64, JobWaiter>,
    job_tokens: HashMap<i64, u64>,
    /// Job events that arrived before the response carrying their job id.
    early_job_events: HashMap<i64, (Instant, Value)>,
    subs: Registry,
    /// Requests refused with 207: re-login once, then send them again.
    relogin: Vec<ReqKind>,
    /// Counts successful logins; requests remember the one they were sent under.
    login_epoch: u64,
    backoff: Backoff,
}

fn lost(detail: impl Into<String>, outcome_unknown: bool) -> TnError {
    TnError::ConnectionLost { outcome_unknown, detail: detail.into() }
}

impl Actor {
    pub fn new(settings: ClientSettings, target: ConnectTarget, commands: Receiver<Command>) -> Actor {
        Actor {
            settings,
            target,
            commands,
            conn: None,
            learned_protocol: None,
            info: None,
            in_flight: HashMap::new(),
            queue: VecDeque::new(),
            abandoned: HashSet::new(),
            jobs: HashMap::new(),
            job_tokens: HashMap::new(),
            early_job_events: HashMap::new(),
            subs: Registry::default(),
            relogin: Vec::new(),
            login_epoch: 0,
            backoff: Backoff { failures: 0, not_before: None, last_error: None },
        }
    }

    /// The actor loop; returns when every client handle is gone.
    pub fn run(mut self) {
        loop {
            let now = Instant::now();
            self.expire(now);
            if self.conn.is_none() && self.needs_connection() {
                self.reconnect_for_pending();
            }
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
            self.keepalive(Instant::now());
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
        !self.queue.is_empty() || self.jobs.values().any(|w| w.job_id.is_some())
    }

    fn idle_wait(&self, now: Instant) -> Duration {
        let Some(conn) = &self.conn else { return Duration::from_secs(3600) };
        let next_ping = conn.last_ping + self.settings.keepalive;
        let mut wait = next_ping.saturating_duration_since(now).min(IDLE_WAIT);
        if let Some(sent) = conn.ping_outstanding {
            wait = wait.min((sent + self.pong_timeout()).saturating_duration_since(now));
        }
        wait.max(Duration::from_millis(1))
    }

    fn pong_timeout(&self) -> Duration {
        self.settings.keepalive.clamp(Duration::from_secs(1), Duration::from_secs(10))
    }

    // ----- commands -------------------------------------------------------------------------------------------

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Call { method, params, mutating, timeout, reply } => {
                if let Err(e) = self.ensure_connected() {
                    let _ = reply.send(Err(e));
                    return;
                }
                let kind = ReqKind::Call { method, params, mutating, timeout, reply, relogged: false };
                self.queue.push_back(Request { kind, deadline: Instant::now() + timeout, epoch: 0 });
            }
            Command::Job { token, method, params, call_timeout, timeout, reply } => {
                if let Err(e) = self.ensure_connected() {
                    let _ = reply.send(JobMsg::Done(Err(e)));
                    return;
                }
                let now = Instant::now();
                self.jobs.insert(
                    token,
                    JobWaiter {
                        method,
                        params,
                        job_id: None,
                        reply,
                        deadline: now + timeout,
                        timeout,
                        state: Value::Null,
                        last_progress: None,
                        cancel_requested: false,
                        abort_sent: false,
                        abort_accepted: None,
                        needs_reconcile: false,
                        held_events: Vec::new(),
                    },
                );
                self.queue.push_back(Request {
                    kind: ReqKind::JobStart { token, relogged: false },
                    deadline: now + call_timeout,
                    epoch: 0,
                });
            }
            Command::AbortJob { token } => self.abort_job(token),
            Command::ServerInfo { reply } => {
                let r = self.ensure_connected().and_then(|()| {
                    self.info.clone().ok_or_else(|| TnError::Protocol("connected without server information".into()))
                });
                let _ = reply.send(r);
            }
            Command::Subscribe { name, local_id, events, timeout, reply } => {
                if let Err(e) = self.ensure_connected() {
                    let _ = reply.send(Err(e));
                    return;
                }
                if self.subs.add(&name, local_id, events, reply) == AddOutcome::SubscribeOnServer {
                    let kind = ReqKind::Subscribe { collection: name, timeout };
                    self.queue.push_back(Request { kind, deadline: Instant::now() + timeout, epoch: 0 });
                }
            }
            Command::Unsubscribe { local_id } => {
                if let Some(server_id) = self.subs.remove(local_id) {
                    self.send_unsubscribe(server_id);
                }
            }
        }
    }

    fn send_unsubscribe(&mut self, server_id: String) {
        if self.conn.is_some() {
            let deadline = Instant::now() + self.settings.config.call_timeout;
            self.queue.push_back(Request { kind: ReqKind::Unsubscribe { server_id }, deadline, epoch: 0 });
        }
    }

    fn abort_job(&mut self, token: u64) {
        let Some(w) = self.jobs.get_mut(&token) else { return };
        w.cancel_requested = true;
        match w.job_id {
            Some(job_id) if !w.abort_sent => {
                w.abort_sent = true;
                let deadline = Instant::now() + self.settings.config.call_timeout;
                self.queue.push_front(Request { kind: ReqKind::JobAbort { token, job_id }, deadline, epoch: 0 });
            }
            Some(_) => {}
            None => {
                // Not sent yet: drop it and nothing happened on the NAS.
                let before = self.queue.len();
                self.queue.retain(|r| !matches!(r.kind, ReqKind::JobStart { token: t, .. } if t == token));
                if self.queue.len() != before {
                    self.finish_job(token, Err(TnError::Cancelled { job_id: None }));
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
        let aborted: Vec<(u64, Option<i64>)> = self
            .jobs
            .iter()
            .filter(|(_, w)| w.abort_accepted.is_some_and(|at| now.duration_since(at) >= ABORT_GRACE))
            .map(|(t, w)| (*t, w.job_id))
            .collect();
        for (token, job_id) in aborted {
            self.finish_job(token, Err(TnError::Cancelled { job_id }));
        }
        let late: Vec<u64> = self.jobs.iter().filter(|(_, w)| w.deadline <= now).map(|(t, _)| *t).collect();
        for token in late {
            let after = self.jobs[&token].timeout;
            if let Some(id) = self.jobs[&token].job_id {
                warn!("job {id} did not finish within {after:?}; it may still be running on the NAS");
            }
            self.finish_job(token, Err(TnError::Timeout { phase: TimeoutPhase::Job, after }));
        }
        if !self.early_job_events.is_empty() {
            self.early_job_events.retain(|_, (at, _)| now.duration_since(*at) < EARLY_EVENT_TTL);
        }
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
            ReqKind::JobStart { token, .. } => self.finish_job(token, Err(err)),
            ReqKind::JobAbort { token, .. } => {
                if let Some(w) = self.jobs.get_mut(&token) {
                    w.abort_sent = false;
                }
            }
            ReqKind::Subscribe { collection, .. } => self.subs.end(&collection, Some(err)),
            ReqKind::Unsubscribe { .. } => {}
        }
    }

    // ----- connection -----------------------------------------------------------------------------------------

    fn ensure_connected(&mut self) -> Result<(), TnError> {
        if let Some(conn) = &self.conn {
            // After a quiet spell, look for a close that is already waiting before sending anything that might
            // change the NAS on a dead socket.
            if conn.last_rx.elapsed() > Duration::from_secs(1) && conn.last_tx.elapsed() > Duration::from_secs(1) {
                self.drain();
            }
        }
        if self.conn.is_some() {
            return Ok(());
        }
        self.connect()
    }

    /// Reconnect because queued requests or running jobs need it; on failure tell them.
    fn reconnect_for_pending(&mut self) {
        if let Err(e) = self.connect() {
            for r in std::mem::take(&mut self.queue) {
                self.fail(r.kind, e.clone());
            }
            let waiting: Vec<u64> = self.jobs.iter().filter(|(_, w)| w.job_id.is_some()).map(|(t, _)| *t).collect();
            for token in waiting {
                let id = self.jobs[&token].job_id.unwrap_or_default();
                let detail = format!("job {id} was running; reconnecting failed: {e}");
                self.finish_job(token, Err(lost(detail, true)));
            }
        }
    }

    fn connect(&mut self) -> Result<(), TnError> {
        if let Some(not_before) = self.backoff.not_before {
            let now = Instant::now();
            if now < not_before {
                let wait = not_before - now;
                match &self.backoff.last_error {
                    Some(e) if wait > Duration::from_secs(2) || matches!(e, TnError::RateLimited(_)) => {
                        return Err(e.clone())
                    }
                    _ => std::thread::sleep(wait),
                }
            }
        }
        match self.connect_and_login() {
            Ok(()) => {
                self.backoff = Backoff { failures: 0, not_before: None, last_error: None };
                Ok(())
            }
            Err(e) => {
                self.conn = None;
                // Slots of a connection that no longer exists.
                self.abandoned.clear();
                let e = match e {
                    // nginx/middleware close right after the upgrade when the UI allowlist excludes us.
                    TnError::ConnectionLost { detail, .. } if detail.contains("(1008 ") => TnError::Connect {
                        step: super::error::ConnectStep::Upgrade,
                        detail,
                        fix: "TrueNAS refuses this client address: add it to System > General > UI allowlist (or \
                              clear the allowlist)"
                            .into(),
                    },
                    other => other,
                };
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
                self.backoff.not_before = Some(Instant::now() + delay);
                self.backoff.last_error = Some(e.clone());
                warn!("connecting to truenas failed: {e}");
                Err(e)
            }
        }
    }

    fn connect_and_login(&mut self) -> Result<(), TnError> {
        let config = self.settings.config.clone();
        if let ConnectTarget::Network = self.target {
            // Where to connect is the more basic question: ask it before the credentials.
            config.base_url().map_err(|e| TnError::NotConfigured(e.to_string()))?;
        }
        let credential = auth::credential_kind(&config)?;
        let order: Vec<WireProtocol> = match (config.api, self.learned_protocol) {
            (ApiMode::JsonRpc, _) => vec![WireProtocol::JsonRpc],
            (ApiMode::Legacy, _) => vec![WireProtocol::Legacy],
            (ApiMode::Auto, Some(p)) => vec![p],
            // A TRUENAS_URL that names the legacy endpoint says which protocol the operator expects.
            (ApiMode::Auto, None)
                if config.url.as_deref().is_some_and(|u| u.trim_end_matches('/').ends_with("/websocket")) =>
            {
                vec![WireProtocol::Legacy]
            }
            (ApiMode::Auto, None) => vec![WireProtocol::JsonRpc, WireProtocol::Legacy],
        };
        let mut last_err = None;
        let mut opened = None;
        for (i, protocol) in order.iter().enumerate() {
            let path = match protocol {
                WireProtocol::JsonRpc => "/api/current",
                WireProtocol::Legacy => "/websocket",
            };
            match self.open(path, credential) {
                Ok((socket, url)) => {
                    opened = Some((socket, url, *protocol));
                    break;
                }
                Err(OpenError::Http { status, location }) => {
                    let url = self.display_url(path)?;
                    let fallback_possible = i + 1 < order.len() && (matches!(status, 300..=399 | 404));
                    if fallback_possible {
                        info!("{url} answered HTTP {status}: this looks like TrueNAS 24.10, trying /websocket");
                        continue;
                    }
                    last_err = Some(transport::upgrade_refused(&url, status, location.as_deref()));
                    break;
                }
                Err(OpenError::Other(e)) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
        let Some((socket, endpoint_url, protocol)) = opened else {
            return Err(last_err.unwrap_or_else(|| TnError::Protocol("no endpoint to connect to".into())));
        };
        let now = Instant::now();
        self.conn = Some(Conn {
            socket,
            codec: codec::for_protocol(protocol),
            authenticated: false,
            read_timeout: None,
            last_rx: now,
            last_tx: now,
            last_ping: now,
            ping_outstanding: None,
        });
        self.steady_state_timeouts()?;
        debug!("connected to {endpoint_url} ({protocol:?})");

        // DDP needs its own handshake before anything else.
        if let Some(hello) = self.conn.as_ref().and_then(|c| c.codec.handshake()) {
            self.ddp_handshake(hello)?;
        }
        self.login()?;
        let (version, version_tuple, round_trip) = self.learn_version(protocol)?;
        info!("logged in to TrueNAS {version} at {endpoint_url} ({protocol:?}, {})", credential.as_str());
        self.info = Some(ServerInfo {
            version,
            version_tuple,
            endpoint: endpoint_url,
            protocol,
            auth_method: credential.as_str().to_string(),
            username: match credential {
                auth::CredentialKind::Password => Some(config.username.clone()),
                auth::CredentialKind::ApiKey if config.username_explicit => Some(config.username.clone()),
                auth::CredentialKind::ApiKey => None,
            },
            round_trip,
        });
        self.learned_protocol = Some(protocol);
        self.subscribe_jobs()?;
        self.reconcile_jobs();
        Ok(())
    }

    /// The release, from `system.info`, or `system.version` for an account whose roles do not cover
    /// `system.info`; if neither answers, a guess from the protocol (24.10 has only the legacy one).
    fn learn_version(&mut self, protocol: WireProtocol) -> Result<(String, (u32, u32), Duration), TnError> {
        let timeout = self.settings.config.call_timeout;
        let started = Instant::now();
        let raw = match self.call_sync("system.info", json!([]), timeout, TimeoutPhase::Call) {
            Ok(info) => info.get("version").and_then(Value::as_str).map(str::to_string),
            Err(e @ (TnError::ConnectionLost { .. } | TnError::Timeout { .. })) => return Err(e),
            Err(e) => {
                debug!("system.info failed ({e}); asking system.version");
                match self.call_sync("system.version", json!([]), timeout, TimeoutPhase::Call) {
                    Ok(v) => v.as_str().map(str::to_string),
                    Err(e @ (TnError::ConnectionLost { .. } | TnError::Timeout { .. })) => return Err(e),
                    Err(e) => {
                        warn!("cannot learn the TrueNAS version ({e}); assuming the oldest release of this protocol");
                        None
                    }
                }
            }
        };
        let round_trip = started.elapsed();
        let (version, tuple) = parse_version(raw.as_deref().unwrap_or(""));
        if tuple == (0, 0) {
            let guess = match protocol {
                WireProtocol::Legacy => (24, 10),
                WireProtocol::JsonRpc => (25, 4),
            };
            return Ok(("unknown".to_string(), guess, round_trip));
        }
        Ok((version, tuple, round_trip))
    }

    fn display_url(&self, path: &str) -> Result<String, TnError> {
        Ok(match &self.target {
            ConnectTarget::Network => {
                Endpoint::parse(&self.settings.config.base_url().map_err(|e| TnError::NotConfigured(e.to_string()))?)?
                    .url(path)
            }
            ConnectTarget::InMemory(_) => format!("ws://{MOCK_HOST}{path}"),
        })
    }

    /// Open the stream and upgrade it to a WebSocket at `path`.
    fn open(&self, path: &str, credential: auth::CredentialKind) -> Result<(Socket, String), OpenError> {
        let config = &self.settings.config;
        let deadline = Instant::now() + config.connect_timeout;
        match &self.target {
            ConnectTarget::Network => {
                let base = config.base_url().map_err(|e| TnError::NotConfigured(e.to_string()))?;
                let endpoint = Endpoint::parse(&base)?;
                // Checked against every resolved address before connecting, so the key never leaves.
                let api_key = credential == auth::CredentialKind::ApiKey;
                let may_connect = |peer: IpAddr| {
                    if api_key
                        && !transport::api_key_transport_allowed(endpoint.secure, peer, config.allow_insecure_api_key)
                    {
                        Err(TnError::Auth(AuthFailure::InsecureTransportRefused))
                    } else {
                        Ok(())
                    }
                };
                let (stream, _peer): (Stream, IpAddr) =
                    transport::open_stream(&endpoint, config, deadline, &may_connect)?;
                let url = endpoint.url(path);
                let socket = transport::upgrade(stream, &url, deadline, config.connect_timeout)?;
                Ok((socket, url))
            }
            ConnectTarget::InMemory(sim) => {
                let url = format!("ws://{MOCK_HOST}{path}");
                let stream = transport::memory_stream(sim)?;
                let socket = transport::upgrade(stream, &url, deadline, config.connect_timeout)?;
                Ok((socket, url))
            }
        }
    }

    fn steady_state_timeouts(&mut self) -> Result<(), TnError> {
        let conn = self.conn.as_mut().expect("connected");
        conn.socket
            .get_mut()
            .set_timeouts(Some(BUSY_TICK), Some(WRITE_TIMEOUT))
            .map_err(|e| lost(format!("cannot set socket timeouts: {e}"), false))?;
        conn.read_timeout = Some(BUSY_TICK);
        Ok(())
    }

    fn ddp_handshake(&mut self, hello: String) -> Result<(), TnError> {
        self.log_out(&hello);
        self.write_now(&hello, FRAME_LIMIT_ANONYMOUS).map_err(|e| lost(e, false))?;
        let deadline = Instant::now() + self.settings.config.connect_timeout;
        while Instant::now() < deadline {
            match self.read_one(Duration::from_millis(50)) {
                Ok(ReadOutcome::Message(Incoming::Connected)) => return Ok(()),
                Ok(ReadOutcome::Message(Incoming::ConnectFailed(why))) => {
                    return Err(TnError::Protocol(format!("legacy handshake refused: {why}")))
                }
                Ok(ReadOutcome::Message(other)) => debug!("ignoring {other:?} before the DDP handshake finished"),
                Ok(_) => {}
                Err(e) => return Err(lost(e, false)),
            }
        }
        Err(TnError::Timeout { phase: TimeoutPhase::Handshake, after: self.settings.config.connect_timeout })
    }

    /// One login attempt (plus the documented fallback when `auth.login_ex` does not exist).
    fn login(&mut self) -> Result<(), TnError> {
        let protocol = self.conn.as_ref().map(|c| c.codec.protocol()).unwrap_or(WireProtocol::JsonRpc);
        let calls = auth::login_calls(&self.settings.config, protocol)?;
        let timeout = self.settings.config.call_timeout.max(MIN_LOGIN_TIMEOUT);
        let mut calls = calls.into_iter().peekable();
        while let Some(call) = calls.next() {
            let id = codec::next_request_id();
            let text = self.conn.as_ref().expect("connected").codec.call(&id, call.method, &call.params);
            if log_enabled!(Level::Debug) {
                debug!("> {} {} [credentials redacted]", id, call.method);
            }
            match self.request_sync(&id, &text, timeout, TimeoutPhase::Login, false)? {
                Ok(result) => {
                    auth::interpret(call.method, &result).map_err(TnError::Auth)?;
                    if let Some(conn) = self.conn.as_mut() {
                        conn.authenticated = true;
                    }
                    self.login_epoch += 1;
                    return Ok(());
                }
                Err(w) if w.is_method_not_found() && calls.peek().is_some() => {
                    debug!("{} does not exist on this server, falling back", call.method);
                }
                Err(w) => {
                    return Err(match w.into_tn_error(call.method) {
                        // A 207 to a login call means the login was refused.
                        TnError::NotAuthenticated => TnError::Auth(AuthFailure::BadCredentials),
                        other => other,
                    });
                }
            }
        }
        Err(TnError::Protocol("no login method worked".into()))
    }

    fn subscribe_jobs(&mut self) -> Result<(), TnError> {
        let id = codec::next_request_id();
        let text = self.conn.as_ref().expect("connected").codec.subscribe(&id, "core.get_jobs");
        self.log_out(&text);
        match self.request_sync(&id, &text, self.settings.config.call_timeout, TimeoutPhase::Call, true)? {
            Ok(_) => Ok(()),
            Err(w) => Err(w.into_tn_error("core.subscribe")),
        }
    }

    /// After a reconnect: which of the jobs we were waiting for still exist, and how did they end?
    fn reconcile_jobs(&mut self) {
        let pending: Vec<(u64, i64)> = self
            .jobs
            .iter()
            .filter(|(_, w)| w.needs_reconcile)
            .filter_map(|(t, w)| w.job_id.map(|id| (*t, id)))
            .collect();
        if pending.is_empty() {
            return;
        }
        let ids: Vec<i64> = pending.iter().map(|p| p.1).collect();
        let found = self.call_sync(
            "core.get_jobs",
            json!([[["id", "in", ids]]]),
            self.settings.config.call_timeout,
            TimeoutPhase::Call,
        );
        for (token, job_id) in pending {
            let job = match &found {
                Ok(Value::Array(list)) => list.iter().find(|j| j.get("id").and_then(Value::as_i64) == Some(job_id)),
                _ => None,
            };
            let Some(w) = self.jobs.get_mut(&token) else { continue };
            w.needs_reconcile = false;
            let held = std::mem::take(&mut w.held_events);
            match job {
                Some(job)
                    if job.get("method").and_then(Value::as_str) == Some(w.method.as_str())
                        && job.get("arguments").map_or(true, |reported| arguments_match(&w.params, reported)) =>
                {
                    debug!("job {job_id} survived the reconnect");
                    let job = job.clone();
                    self.apply_job_update(token, &job);
                    for fields in held {
                        self.apply_job_update(token, &fields);
                    }
                    if let Some(w) = self.jobs.get_mut(&token) {
                        if w.cancel_requested && !w.abort_sent {
                            self.abort_job(token);
                        }
                    }
                }
                _ => {
                    let detail = match &found {
                        Err(e) => format!("job {job_id} could not be checked after reconnecting: {e}"),
                        Ok(_) => format!("job {job_id} is unknown after reconnecting (the middleware restarted?)"),
                    };
                    self.finish_job(token, Err(lost(detail, true)));
                }
            }
        }
    }

    /// A call made by the actor itself, waiting for its answer.
    fn call_sync(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
        phase: TimeoutPhase,
    ) -> Result<Value, TnError> {
        let id = codec::next_request_id();
        let text = self.conn.as_ref().ok_or_else(|| lost("not connected", false))?.codec.call(&id, method, &params);
        self.log_out(&text);
        match self.request_sync(&id, &text, timeout, phase, true)? {
            Ok(v) => Ok(v),
            Err(w) => Err(w.into_tn_error(method)),
        }
    }

    /// Send `text` and read until the answer to `id` arrives; everything else read meanwhile is dispatched.
    fn request_sync(
        &mut self,
        id: &str,
        text: &str,
        timeout: Duration,
        phase: TimeoutPhase,
        authenticated: bool,
    ) -> Result<Result<Value, WireError>, TnError> {
        let limit = if authenticated { FRAME_LIMIT_AUTHENTICATED } else { FRAME_LIMIT_ANONYMOUS };
        if text.len() > limit {
            return Err(TnError::TooLarge { size: text.len(), limit });
        }
        if let Err(e) = self.write_now(text, limit) {
            self.lose(e.clone());
            return Err(lost(e, false));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                // Its answer would still occupy a slot; count it.
                self.abandoned.insert(id.to_string());
                return Err(TnError::Timeout { phase, after: timeout });
            }
            match self.read_one((deadline - now).min(Duration::from_millis(50))) {
                Ok(ReadOutcome::Message(Incoming::Response { id: rid, result })) if rid == id => return Ok(result),
                Ok(ReadOutcome::Message(other)) => self.on_incoming(other),
                Ok(_) => {}
                Err(e) => {
                    self.lose(e.clone());
                    return Err(lost(e, false));
                }
            }
        }
    }

    /// Log in again on this connection after a 207 and resend what was refused (once).
    fn relogin_and_retry(&mut self) {
        let refused = std::mem::take(&mut self.relogin);
        if self.conn.is_none() {
            // The connection went away meanwhile: the requests were refused, so sending them later is safe.
            for kind in refused.into_iter().rev() {
                let deadline = Instant::now() + timeout_of(&kind, self.settings.config.call_timeout);
                self.queue.push_front(Request { kind, deadline, epoch: 0 });
            }
            return;
        }
        info!("truenas session expired; logging in again");
        if let Some(conn) = self.conn.as_mut() {
            conn.authenticated = false;
        }
        // The server ended the old session's subscriptions: job events sent before we subscribe again are lost, so
        // running jobs are looked up again (and their events held until then), as after a reconnect.
        for w in self.jobs.values_mut() {
            if w.job_id.is_some() {
                w.needs_reconcile = true;
                w.held_events.clear();
            }
        }
        let result = self.login().and_then(|()| self.subscribe_jobs()).map(|()| self.reconcile_jobs());
        // 207s read while logging in answer requests sent before this login: they go with this re-login instead of
        // causing another one.
        let refused: Vec<ReqKind> = refused.into_iter().chain(std::mem::take(&mut self.relogin)).collect();
        match result {
            Ok(()) => {
                for kind in refused.into_iter().rev() {
                    let deadline = Instant::now() + timeout_of(&kind, self.settings.config.call_timeout);
                    self.queue.push_front(Request { kind, deadline, epoch: 0 });
                }
            }
            Err(e) => {
                warn!("logging in again failed: {e}");
                for kind in refused {
                    self.fail(kind, e.clone());
                }
                // Never keep a connection that is not logged in: nothing queued would ever be sent on it again
                // (every later call would time out). Dropping it makes the next call connect and log in afresh.
                self.lose(format!("logging in again failed: {e}"));
            }
        }
    }

    /// The connection is gone: fail what was on the wire, end subscriptions, keep what was never sent.
    fn lose(&mut self, detail: String) {
        let Some(mut conn) = self.conn.take() else { return };
        warn!("truenas connection lost: {detail}");
        // A polite close, but never wait long for a peer that stopped reading.
        let _ = conn.socket.get_mut().set_timeouts(Some(DRAIN_TICK), Some(Duration::from_millis(100)));
        let _ = conn.socket.close(None);
        let _ = conn.socket.flush();
        for (_, r) in std::mem::take(&mut self.in_flight) {
            match r.kind {
                ReqKind::Call { reply, mutating, .. } => {
                    let _ = reply.send(Err(lost(detail.clone(), mutating)));
                }
                ReqKind::JobStart { token, .. } => self.finish_job(token, Err(lost(detail.clone(), true))),
                other => self.fail(other, lost(detail.clone(), false)),
            }
        }
        self.abandoned.clear();
        self.subs.end_all(lost(detail.clone(), false));
        for w in self.jobs.values_mut() {
            if w.job_id.is_some() {
                w.needs_reconcile = true;
                w.abort_sent = false;
                w.held_events.clear();
            }
        }
    }

    fn shutdown(mut self) {
        debug!("all client handles dropped; closing the truenas connection");
        if let Some(conn) = self.conn.as_mut() {
            let _ = conn.socket.get_mut().set_timeouts(Some(DRAIN_TICK), Some(Duration::from_millis(100)));
            let _ = conn.socket.close(None);
            let _ = conn.socket.flush();
        }
        self.conn = None;
        self.subs.end_all(lost("the client was shut down", false));
        for token in self.jobs.keys().copied().collect::<Vec<_>>() {
            self.finish_job(token, Err(lost("the client was shut down", true)));
        }
    }

    // ----- socket I/O -----------------------------------------------------------------------------------------

    fn write_now(&mut self, text: &str, limit: usize) -> Result<(), String> {
        let _ = limit;
        let conn = self.conn.as_mut().ok_or("not connected")?;
        conn.socket.write(Message::Text(text.to_string())).map_err(|e| format!("sending failed: {e}"))?;
        conn.socket.flush().map_err(|e| format!("sending failed: {e}"))?;
        conn.last_tx = Instant::now();
        Ok(())
    }

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
                ReqKind::JobStart { token, .. } => match self.jobs.get(token) {
                    Some(w) => (conn.codec.call(&id, &w.method, &w.params), true),
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
            self.log_out(&text);
            let conn = self.conn.as_mut().expect("checked above");
            if let Err(e) = conn.socket.write(Message::Text(text)) {
                // The frame may be partly out: whoever waits for it cannot know whether it arrived.
                self.in_flight.insert(id, req);
                self.lose(format!("sending failed: {e}"));
                return;
            }
            wrote = true;
            if expects_reply {
                self.in_flight.insert(id, Request { epoch: self.login_epoch, ..req });
            }
        }
        if wrote {
            let conn = self.conn.as_mut().expect("connected");
            conn.last_tx = Instant::now();
            if let Err(e) = conn.socket.flush() {
                self.lose(format!("sending failed: {e}"));
            }
        }
    }

    /// Read and dispatch everything that arrives within `wait` (and what is already buffered).
    fn read_socket(&mut self, wait: Duration) {
        for i in 0..READ_BATCH {
            if self.conn.is_none() {
                return;
            }
            // Do not block again when a command waits or no answer is outstanding: a caller making one call after
            // another must not wait for a read timeout between them.
            if i > 0 && (!self.commands.is_empty() || (self.in_flight.is_empty() && self.queue.is_empty())) {
                return;
            }
            match self.read_one(wait) {
                Ok(ReadOutcome::Message(msg)) => {
                    self.on_incoming(msg);
                    self.pump_queue();
                }
                Ok(ReadOutcome::Control) => {}
                Ok(ReadOutcome::Idle) => return,
                Err(e) => {
                    self.lose(e);
                    return;
                }
            }
        }
    }

    /// Handle whatever is already buffered (stray events, a close frame), without waiting for more.
    fn drain(&mut self) {
        for _ in 0..READ_BATCH {
            if self.conn.is_none() {
                return;
            }
            match self.read_one(DRAIN_TICK) {
                Ok(ReadOutcome::Message(msg)) => self.on_incoming(msg),
                Ok(ReadOutcome::Control) => {}
                Ok(ReadOutcome::Idle) => return,
                Err(e) => return self.lose(e),
            }
        }
    }

    fn read_one(&mut self, wait: Duration) -> Result<ReadOutcome, String> {
        let conn = self.conn.as_mut().ok_or("not connected")?;
        if conn.read_timeout != Some(wait) {
            conn.socket.get_mut().set_read_timeout(Some(wait)).map_err(|e| format!("socket error: {e}"))?;
            conn.read_timeout = Some(wait);
        }
        match conn.socket.read() {
            Ok(msg) => {
                conn.last_rx = Instant::now();
                conn.ping_outstanding = None;
                match msg {
                    Message::Text(text) => {
                        log_in(&text);
                        Ok(ReadOutcome::Message(conn.codec.decode(&text)))
                    }
                    Message::Binary(_) => Ok(ReadOutcome::Message(Incoming::Malformed("a binary frame".into()))),
                    Message::Close(frame) => Err(match frame {
                        Some(f) => format!("the server closed the connection ({} {})", u16::from(f.code), f.reason),
                        None => "the server closed the connection".to_string(),
                    }),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(ReadOutcome::Control),
                }
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(ReadOutcome::Idle)
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Err("the server closed the connection".to_string())
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err("the server closed the connection".to_string())
            }
            Err(e) => Err(format!("{e}")),
        }
    }

    fn keepalive(&mut self, now: Instant) {
        let pong_timeout = self.pong_timeout();
        let Some(conn) = self.conn.as_mut() else { return };
        if let Some(sent) = conn.ping_outstanding {
            if now.duration_since(sent) > pong_timeout {
                let detail = format!("no answer to a keepalive ping within {pong_timeout:?}");
                return self.lose(detail);
            }
        }
        if now.duration_since(conn.last_ping) >= self.settings.keepalive {
            conn.last_ping = now;
            if conn.ping_outstanding.is_none() {
                conn.ping_outstanding = Some(now);
            }
            let sent = match conn.socket.write(Message::Ping(Vec::new())) {
                Ok(()) => conn.socket.flush().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                self.lose(format!("keepalive ping failed: {e}"));
            }
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

    /// A 207 for a request sent under an older login: that login was already replaced, so the request is simply
    /// sent again (once) instead of logging in a second time.
    fn refused_by_old_login(&mut self, epoch: u64, kind: ReqKind) {
        if epoch < self.login_epoch {
            let deadline = Instant::now() + timeout_of(&kind, self.settings.config.call_timeout);
            self.queue.push_front(Request { kind, deadline, epoch: 0 });
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
                    Some(job_id) => self.job_started(token, job_id),
                    None => self.finish_job(token, Err(TnError::Protocol(format!("expected a job id, got {v}")))),
                },
                Err(w) if w.is_not_authenticated() && !relogged => {
                    self.refused_by_old_login(epoch, ReqKind::JobStart { token, relogged: true })
                }
                Err(w) => {
                    let method = self.jobs.get(&token).map(|j| j.method.clone()).unwrap_or_default();
                    self.finish_job(token, Err(w.into_tn_error(&method)));
                }
            },
            // Wait for the job to really end (its ABORTED event) before telling the caller, so that "cancelled"
            // means stopped; `expire` gives up waiting after ABORT_GRACE.
            ReqKind::JobAbort { token, job_id } => match result {
                Ok(_) => {
                    if let Some(w) = self.jobs.get_mut(&token) {
                        w.abort_accepted = Some(Instant::now());
                    }
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

    fn job_started(&mut self, token: u64, job_id: i64) {
        let Some(w) = self.jobs.get_mut(&token) else { return };
        w.job_id = Some(job_id);
        let _ = w.reply.send(JobMsg::Started(job_id));
        self.job_tokens.insert(job_id, token);
        let cancel = w.cancel_requested;
        if let Some((_, early)) = self.early_job_events.remove(&job_id) {
            self.apply_job_update(token, &early);
        }
        if cancel && self.jobs.contains_key(&token) {
            self.abort_job(token);
        }
    }

    fn on_job_event(&mut self, id: Option<&Value>, fields: Option<&Value>) {
        let Some(fields) = fields else { return };
        let Some(job_id) = id.and_then(Value::as_i64).or_else(|| fields.get("id").and_then(Value::as_i64)) else {
            return;
        };
        if let Some(&token) = self.job_tokens.get(&job_id) {
            // Until reconciled after a reconnect, an event for this id may be another job's (ids restart at 1 when
            // the middleware restarts): hold it. It may also be newer than the reconcile's snapshot (the answer to
            // `core.get_jobs` can be overtaken by events), so it is applied after that snapshot, not dropped.
            match self.jobs.get_mut(&token) {
                Some(w) if w.needs_reconcile => w.held_events.push(fields.clone()),
                _ => self.apply_job_update(token, fields),
            }
            return;
        }
        // Possibly a job whose id is still on its way to us: keep it while any job start is outstanding.
        let starting = self.in_flight.values().any(|r| matches!(r.kind, ReqKind::JobStart { .. }));
        if starting {
            let entry = self.early_job_events.entry(job_id).or_insert_with(|| (Instant::now(), json!({})));
            jobs::merge(&mut entry.1, fields);
        }
    }

    fn apply_job_update(&mut self, token: u64, fields: &Value) {
        let Some(w) = self.jobs.get_mut(&token) else { return };
        let Some(job_id) = w.job_id else { return };
        jobs::merge(&mut w.state, fields);
        match jobs::job_state(job_id, &w.state) {
            JobState::Running(Some(p)) => {
                if w.last_progress.as_ref() != Some(&p) {
                    w.last_progress = Some(p.clone());
                    let _ = w.reply.send(JobMsg::Progress(p));
                }
            }
            JobState::Running(None) => {}
            JobState::Finished(result) => self.finish_job(token, result),
            JobState::Aborted => {
                let e = if w.cancel_requested {
                    TnError::Cancelled { job_id: Some(job_id) }
                } else {
                    TnError::JobAborted { job_id }
                };
                self.finish_job(token, Err(e));
            }
        }
    }

    fn finish_job(&mut self, token: u64, result: Result<Value, TnError>) {
        if let Some(w) = self.jobs.remove(&token) {
            if let Some(id) = w.job_id {
                self.job_tokens.remove(&id);
            }
            let _ = w.reply.send(JobMsg::Done(result));
        }
    }

    fn log_out(&self, text: &str) {
        if log_enabled!(Level::Debug) {
            debug!("> {}", crate::redact::frame_for_log(text));
        }
    }
}

/// Whether a job's `arguments` (as `core.get_jobs` reports them) can be the `sent` params: values TrueNAS masks
/// (`********`) and keys only one side has are tolerated, any other difference is not. After a middleware restart job
/// ids start again at 1, so the same id and method alone may be another client's job.
fn arguments_match(sent: &Value, reported: &Value) -> bool {
    match (sent, reported) {
        (_, Value::String(masked)) if masked == "********" => true,
        (Value::Array(a), Value::Array(b)) => a.iter().zip(b).all(|(x, y)| arguments_match(x, y)),
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| b.get(k).map_or(true, |w| arguments_match(v, w))),
        _ => sent == reported,
    }
}

fn log_in(text: &str) {
    if log_enabled!(Level::Debug) {
        debug!("< {}", crate::redact::frame_for_log(text));
    }
}

fn timeout_of(kind: &ReqKind, default: Duration) -> Duration {
    match kind {
        ReqKind::Call { timeout, .. } | ReqKind::Subscribe { timeout, .. } => *timeout,
        _ => default,
    }
}

/// `"TrueNAS-SCALE-24.10.2.4"` → `("24.10.2.4", (24, 10))`.
pub fn parse_version(raw: &str) -> (String, (u32, u32)) {
    let start = raw.find(|c: char| c.is_ascii_digit()).unwrap_or(raw.len());
    let version = raw[start..].trim().to_string();
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (version, (major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_arguments_match_despite_masking_but_not_another_app() {
        let sent = json!([{"app_name": "mine", "custom_compose_config_string": "services: {}", "values": {}}]);
        let cases = [
            (json!([{"app_name": "mine", "custom_compose_config_string": "services: {}", "values": {}}]), true),
            (json!([{"app_name": "mine", "custom_compose_config_string": "********"}]), true),
            (json!([{"app_name": "mine", "custom_compose_config_string": "services: {}", "extra": 1}]), true),
            (json!([{"app_name": "theirs", "custom_compose_config_string": "services: {}"}]), false),
            (json!(["mine"]), false),
        ];
        for (reported, want) in cases {
            assert_eq!(arguments_match(&sent, &reported), want, "{reported}");
        }
    }

    #[test]
    fn versions_lose_their_brand() {
        let cases = [
            ("TrueNAS-SCALE-24.10.2.4", "24.10.2.4", (24, 10)),
            ("TrueNAS-25.04.2.6", "25.04.2.6", (25, 4)),
            ("25.10.0", "25.10.0", (25, 10)),
            ("TrueNAS-SCALE-25.10-MASTER-20250101", "25.10-MASTER-20250101", (25, 10)),
            ("", "", (0, 0)),
        ];
        for (raw, v, t) in cases {
            assert_eq!(parse_version(raw), (v.to_string(), t), "for {raw}");
        }
    }
}

//! An in-memory TrueNAS middleware (apps, jobs, events, auth, limits) and a WebSocket front for it.
//!
//! Mock mode talks to it through [`MemStream`] (the client's real actor, codec and WebSocket framing run over an
//! in-memory pipe); integration tests and `truenas-mcp simulate` serve it on a TCP port, optionally with TLS.
//!
//! # What it imitates
//! - Endpoints: 25.04/25.10 JSON-RPC 2.0 at `/api/current` (and the pinned `/api/vXX.YY.Z` names) plus legacy DDP at
//!   `/websocket`; 24.10 only `/websocket`, and any other path (e.g. `/api/current`) is answered `302` to `/ui/`
//!   like nginx does. Unknown `/api/...` paths on 25.x get `404`.
//! - Auth per release (see [`SimOptions`] for the knobs): 24.10 booleans; 25.04+ `auth.login_ex` response types;
//!   a valid API key used over plain TCP from a non-loopback peer (or any plain TCP peer when
//!   [`SimOptions::treat_plain_tcp_as_remote`] / [`Faults::set_plain_tcp_remote`] is on) is revoked for good and
//!   answered `EXPIRED`. TLS and in-memory connections are secure transports.
//! - Strict params on 25.04/25.10 from the real models in `fixtures/truenas-schemas/` (24.10 uses the 25.04 models
//!   minus `force_remove_custom_app`). Job methods validate inside the job (the job FAILS with
//!   `exc_info.type == "VALIDATION"`).
//! - Jobs: legacy ids by default; on 25.10 `core.set_options({"legacy_jobs": false})` switches the connection to
//!   new-style jobs (the call answers with the job's result, the job id is in `message_ids` of the events).
//!
//! # Conventions of the fake Docker
//! - A service whose `image` contains `crash` ends up with container state `crashed` (the app goes CRASHED) a few
//!   job steps after deploy; one whose image contains `unhealthy` stays `starting` (app stays DEPLOYING). Every
//!   other container becomes `running`. `app.create`/`update`/`start`/`redeploy` return while the app is still
//!   DEPLOYING (as the real one usually does); it settles 3 × `job_step` later (with `app.query` CHANGED events).
//! - Container logs are synthetic and deterministic: line `i` of every container is
//!   `"<LEVEL> [<app>/<service>] line <i>: request handled in <n> ms\n"` with timestamp
//!   `2025-01-01 00:00:00+i s` (Python `str(datetime)` form); [`SimOptions::log_lines`] lines exist per container
//!   (per app override: [`Simulator::set_log_lines`]); following emits one more line every
//!   [`SimOptions::log_follow_interval`] while the container runs. A crashed container's log is
//!   instead what it printed before it died, ending with a fatal error and its exit code ([`apps::crash_log`]);
//!   the stream ends after the tail.
//! - Apps can outlive the process: with [`SimOptions::state_file`] (mock mode's `--mock-state`) they are loaded
//!   from a JSON file at start and saved after every change (`state_file.rs`).
//! - Storage (`storage.rs`): datasets with the ix-apps layout, snapshots with holds and rollback, and a file tree
//!   with owners; `filesystem.stat` finds only what exists there ([`Simulator::write_file`]).
//!
//! # Knobs for tests
//! Start-up behaviour is in [`SimOptions`] (versions, users and keys, OTP/expired/redirect logins, rate limit,
//! idle timeout, job step, log sizes). Runtime faults go through [`Simulator::faults`] ([`Faults`]: latency and
//! jitter, drop after N frames, drop mid-job, never-finishing jobs, garbage frames, expired sessions, half-open
//! sockets, stalled TLS handshakes, plain TCP as remote) and [`Simulator::restart`]. Inspection:
//! [`Simulator::call_log`], [`Simulator::apps`], [`Simulator::jobs`], [`Simulator::connections`],
//! [`Simulator::frames_received`], [`Simulator::rejected_calls`], [`Simulator::peak_in_flight`],
//! [`Simulator::api_key_revoked`].

mod apps;
mod auth;
mod compose_check;
mod events;
mod faults;
mod front;
mod jobs;
mod memory;
mod middleware;
mod query;
mod schema;
mod scram;
mod session;
mod state_file;
mod storage;
mod wire;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

pub use faults::Faults;
pub use front::SimServer;
pub use memory::{MemStream, MemWaker};

use crate::config::{Config, Secret};
use crate::truenas::{Client, ClientSettings, Connector, Dial, Stream, TnError};

/// Where the simulator is reached in mock mode (never resolved: the bytes go through an in-memory pipe).
pub const MOCK_HOST: &str = "mock.truenas.invalid";

/// Which TrueNAS release to imitate (ordered oldest first: `>= V25_10` means "25.10 or newer").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimVersion {
    V24_10,
    V25_04,
    V25_10,
    V26_0,
}

impl SimVersion {
    /// "24.10" / "25.04" / "25.10" / "26.0".
    pub fn parse(s: &str) -> Option<SimVersion> {
        match s.trim() {
            "24.10" => Some(SimVersion::V24_10),
            "25.04" => Some(SimVersion::V25_04),
            "25.10" => Some(SimVersion::V25_10),
            "26.0" => Some(SimVersion::V26_0),
            _ => None,
        }
    }
}

/// An API key the simulator accepts: `"<id>-<secret>"` owned by `username`.
#[derive(Clone, Debug)]
pub struct SimApiKey {
    pub id: u32,
    pub key: String,
    pub username: String,
}

/// Unauthenticated-call rate limiting (per method and peer address; in-memory connections are exempt).
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// More calls than this within `window` are refused (middleware: 20).
    pub max_calls: u32,
    /// middleware: 60 s
    pub window: Duration,
    /// Sleep before answering `EBUSY "Rate Limit Exceeded"` (middleware: 1–10 s).
    pub delay: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { max_calls: 20, window: Duration::from_secs(60), delay: Duration::from_secs(1) }
    }
}

/// Simulator settings. Build with `SimOptions { field: …, ..Default::default() }`.
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
    /// How long an HTTP upgrade or TLS handshake may take before the peer is dropped (default 10 s; tests of
    /// stalled peers shorten it instead of waiting).
    pub handshake_timeout: Duration,
    /// The pace of `app.stats` samples, overriding the `interval` the subscriber asks for (default: theirs, 2 s
    /// unless given); tests shorten it instead of waiting for samples.
    pub stats_interval: Option<Duration>,
    /// PEM certificate chain and PKCS#8 key for wss.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Time each job step takes (deploy progress); small in tests.
    pub job_step: Duration,
    /// Plain TCP peers count as remote (insecure transport) even from loopback: makes API-key revocation testable.
    pub treat_plain_tcp_as_remote: bool,
    pub rate_limit: RateLimit,
    /// Delay before a failed login answers (middleware: 1–2 s).
    pub login_fail_delay: Duration,
    /// Users whose password login answers `OTP_REQUIRED` (24.10 `auth.login` needs the third argument).
    pub otp_users: Vec<String>,
    /// The one OTP code accepted.
    pub otp_code: String,
    /// Users whose password login answers `EXPIRED`.
    pub expired_users: Vec<String>,
    /// When set, every valid login answers `REDIRECT` with these URLs (an HA standby controller).
    pub ha_redirect: Option<Vec<String>>,
    /// Synthetic log lines per container.
    pub log_lines: u64,
    /// Interval of new log lines while following a running container.
    pub log_follow_interval: Duration,
    pub hostname: String,
    /// nginx "HTTPS redirect": a plain-HTTP front answers every upgrade with `307` to `https://host:<port>/…`.
    pub https_redirect_port: Option<u16>,
    /// The UI allowlist excludes every network client: the upgrade succeeds, then the socket closes with 1008.
    pub ui_allowlist_denied: bool,
    /// Users with valid credentials but no API access: 26.0 answers `DENIED`, older releases `AUTH_ERR`.
    pub denied_users: Vec<String>,
    /// API key ids the upgrade to 26.0 revoked (keys it could not convert): they answer like a revoked key.
    pub upgrade_revoked_keys: Vec<u32>,
    /// Apps that need attention: 26.0 reports `action_required: true` and a newer `latest_app_version`.
    pub apps_needing_action: Vec<String>,
    /// The real Docker Compose that validates custom app composes as TrueNAS 25.10.1+ does (`docker compose
    /// config` in the job); default: `$TRUENAS_SIM_COMPOSE`, else `docker-compose` / `docker` on `PATH`.
    pub compose: Option<std::path::PathBuf>,
    /// Mock mode's `--mock-state`: apps are loaded from this JSON file when it exists (instead of the seeds) and
    /// saved to it after every change.
    pub state_file: Option<PathBuf>,
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
            handshake_timeout: Duration::from_secs(10),
            stats_interval: None,
            tls: None,
            job_step: Duration::from_millis(20),
            treat_plain_tcp_as_remote: false,
            rate_limit: RateLimit::default(),
            login_fail_delay: Duration::from_secs(1),
            otp_users: Vec::new(),
            otp_code: "123456".into(),
            expired_users: Vec::new(),
            ha_redirect: None,
            log_lines: 200,
            log_follow_interval: Duration::from_millis(500),
            hostname: "truenas-sim".into(),
            https_redirect_port: None,
            ui_allowlist_denied: false,
            denied_users: Vec::new(),
            upgrade_revoked_keys: Vec::new(),
            apps_needing_action: Vec::new(),
            compose: compose_check::find_compose(),
            state_file: None,
        }
    }
}

/// The simulated middleware. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Simulator {
    mw: Arc<middleware::Middleware>,
}

impl Simulator {
    pub fn new(opts: SimOptions) -> Simulator {
        Simulator { mw: Arc::new(middleware::Middleware::new(opts)) }
    }

    pub fn options(&self) -> &SimOptions {
        &self.mw.opts
    }

    /// The release string `system.info` reports, e.g. "25.04.2.6".
    pub fn release(&self) -> &'static str {
        self.mw.release()
    }

    /// Serve on `listen` (e.g. "127.0.0.1:0"); TLS when `SimOptions::tls` is set.
    pub fn serve(&self, listen: &str) -> std::io::Result<SimServer> {
        let acceptor = match &self.mw.opts.tls {
            None => None,
            Some((cert, key)) => Some(tls_acceptor(cert, key).map_err(|e| std::io::Error::other(format!("{e:#}")))?),
        };
        front::serve(&self.mw, listen, acceptor)
    }

    /// The client end of a new in-memory connection (treated as loopback / secure transport). The client does the
    /// WebSocket handshake over it (e.g. `ws://localhost/api/current`).
    pub fn connect_in_memory(&self) -> MemStream {
        front::connect_in_memory(&self.mw)
    }

    /// Every method call received so far: (method, params) — for schema checks in tests.
    pub fn call_log(&self) -> Vec<(String, Value)> {
        self.mw.state().call_log.clone()
    }

    pub fn clear_call_log(&self) {
        self.mw.state().call_log.clear();
    }

    /// Runtime fault knobs (cloneable; changes apply at once).
    pub fn faults(&self) -> Faults {
        self.mw.faults.clone()
    }

    /// Every app as `app.query` would return it (with `config`).
    pub fn apps(&self) -> Vec<Value> {
        let v = self.mw.version();
        self.mw.state().apps.values().map(|a| a.entry(v, "0.0.0.0", true)).collect()
    }

    /// Every job as `core.get_jobs` would return it.
    pub fn jobs(&self) -> Vec<Value> {
        let v = self.mw.version();
        self.mw.state().jobs.values().map(|j| j.to_value(v)).collect()
    }

    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.mw.sessions().len()
    }

    /// Text/binary frames received over all connections.
    pub fn frames_received(&self) -> u64 {
        self.mw.frames_received.load(Ordering::SeqCst)
    }

    /// Calls refused because 20 were already in flight on their socket.
    pub fn rejected_calls(&self) -> u64 {
        self.mw.rejected_calls.load(Ordering::SeqCst)
    }

    /// The most calls ever in flight at once on one socket (admitted: executing + queued, at most 20).
    pub fn peak_in_flight(&self) -> u64 {
        self.mw.peak_admitted.load(Ordering::SeqCst).min(20)
    }

    /// Whether API key `id` has been revoked (insecure transport).
    pub fn api_key_revoked(&self, id: u32) -> bool {
        self.mw.state().revoked_keys.contains(&id)
    }

    /// Synthetic log length of every container of `app` (e.g. 100 000 for a benchmark).
    pub fn set_log_lines(&self, app: &str, lines: u64) {
        self.mw.state().log_lines.insert(app.to_string(), lines);
    }

    /// Make `line` the newest log line of every container of `app` (what a hostile container could print).
    pub fn plant_log_line(&self, app: &str, line: &str) {
        self.mw.state().planted_log.insert(app.to_string(), line.to_string());
    }

    /// Images of `app` the update cache flags (drives `image_updates_available`, `app.outdated_docker_images`).
    pub fn set_outdated_images(&self, app: &str, images: Vec<String>) {
        if let Some(a) = self.mw.state().apps.get_mut(app) {
            a.outdated_images = images;
        }
    }

    /// Configure (`Some(pool)`) or unconfigure (`None`) Docker's pool at runtime.
    pub fn set_docker_pool(&self, pool: Option<&str>) {
        self.mw.state().docker_pool = pool.map(str::to_string);
    }

    /// A middleware restart: every connection drops, job ids start again at 1, apps are kept.
    pub fn restart(&self) {
        self.mw.restart();
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<native_tls::TlsAcceptor> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("cannot read TLS certificate {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("cannot read TLS key {}", key.display()))?;
    let identity = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem)
        .context("TLS certificate/key not usable (the key must be PKCS#8 PEM: `openssl pkcs8 -topk8 -nocrypt`)")?;
    native_tls::TlsAcceptor::new(identity).context("cannot build the TLS acceptor")
}

/// The client's connector for mock mode: every connection is a fresh in-memory pipe to this simulator, so the
/// client's real actor, codec and WebSocket framing run unchanged.
pub struct MemoryConnector(pub Arc<Simulator>);

impl Connector for MemoryConnector {
    fn url(&self, _config: &Config, path: &str) -> Result<String, TnError> {
        Ok(format!("ws://{MOCK_HOST}{path}"))
    }

    fn open(&self, _dial: &Dial) -> Result<Stream, TnError> {
        Ok(Stream::Other(Box::new(self.0.connect_in_memory())))
    }
}

/// The client `config` asks for: in mock mode one wired to a fresh embedded simulator, otherwise the network one.
pub fn client_for(config: &Config) -> Client {
    if config.mock {
        mock_client(ClientSettings::new(config.clone())).0
    } else {
        Client::network(ClientSettings::new(config.clone()))
    }
}

/// A client on an embedded simulator seeded with example apps, whose only user is the configured one (with the
/// configured password, or "mock-password").
pub fn mock_client(mut settings: ClientSettings) -> (Client, Arc<Simulator>) {
    let password = settings.config.password.clone().unwrap_or_else(|| Secret::new("mock-password"));
    let sim = Arc::new(Simulator::new(SimOptions {
        users: vec![(settings.config.username.clone(), password.expose().to_string())],
        seed_example_apps: true,
        state_file: settings.config.mock_state.clone(),
        // Under the test clock setting a stats sample comes at once instead of after the 2 s the tools ask for.
        stats_interval: crate::clock::test_clock_requested(|k| std::env::var(k).ok())
            .then_some(Duration::from_millis(20)),
        ..Default::default()
    }));
    settings.config.password = Some(password);
    (Client::new(settings, Arc::new(MemoryConnector(Arc::clone(&sim)))), sim)
}

/// Whether mock mode's state file can be used: absent (it will be created) or a state this program saved. Checked
/// at start-up, so a wrong file is a configuration error rather than a simulator that silently forgets.
pub fn check_state_file(path: &std::path::Path) -> anyhow::Result<()> {
    state_file::load(path).map(drop).map_err(anyhow::Error::msg)
}

/// `truenas-mcp simulate --listen 127.0.0.1:PORT [--tls-cert F --tls-key F] [--version 24.10|25.04|25.10|26.0]
/// [--no-pool] [--empty] [--idle-timeout SECS] [--job-step-ms N] [--add-user NAME:PASSWORD]
/// [--add-api-key ID-SECRET] [--plain-tcp-remote]`: prints the URL and credentials on stderr, serves until killed.
/// (`--add-*` because `--username`/`--api-key` are the client's own settings flags.)
pub fn run_cli(args: &[String]) -> anyhow::Result<()> {
    let (listen, opts) = cli_options(args)?;
    let sim = Simulator::new(opts.clone());
    let server = sim.serve(&listen).with_context(|| format!("cannot listen on {listen}"))?;
    let path = if opts.version == SimVersion::V24_10 { "/websocket" } else { "/api/current" };
    let (user, password) = &opts.users[0];
    eprintln!("truenas-mcp simulator (TrueNAS {}) listening on {}", sim.release(), server.url(path));
    eprintln!("  password login: TRUENAS_USERNAME={user} TRUENAS_PASSWORD={password}");
    for k in &opts.api_keys {
        eprintln!(
            "  API key login:  TRUENAS_USERNAME={} TRUENAS_API_KEY=<the key given with --add-api-key {}-…>",
            k.username, k.id
        );
    }
    if opts.docker_pool.is_none() {
        eprintln!("  no pool configured for Docker (--no-pool)");
    }
    loop {
        std::thread::park();
    }
}

/// The listen address and options `simulate` arguments ask for.
pub fn cli_options(args: &[String]) -> anyhow::Result<(String, SimOptions)> {
    let mut opts = SimOptions { job_step: Duration::from_millis(500), ..Default::default() };
    let mut listen = "127.0.0.1:8080".to_string();
    let (mut cert, mut key) = (None, None);
    let mut i = 0;
    let value = |i: &mut usize, flag: &str| -> anyhow::Result<String> {
        *i += 1;
        args.get(*i).cloned().with_context(|| format!("{flag} needs a value"))
    };
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (args[i].clone(), None),
        };
        let take = |i: &mut usize| inline.clone().map(Ok).unwrap_or_else(|| value(i, &flag));
        match flag.as_str() {
            "--listen" => listen = take(&mut i)?,
            "--tls-cert" => cert = Some(PathBuf::from(take(&mut i)?)),
            "--tls-key" => key = Some(PathBuf::from(take(&mut i)?)),
            "--version" => {
                let v = take(&mut i)?;
                opts.version = SimVersion::parse(&v)
                    .with_context(|| format!("unknown --version '{v}' (use 24.10, 25.04, 25.10 or 26.0)"))?;
            }
            "--no-pool" => opts.docker_pool = None,
            "--empty" => opts.seed_example_apps = false,
            "--idle-timeout" => {
                let v = take(&mut i)?;
                opts.idle_timeout =
                    Duration::from_secs(v.parse().with_context(|| format!("bad --idle-timeout '{v}'"))?);
            }
            "--job-step-ms" => {
                let v = take(&mut i)?;
                opts.job_step = Duration::from_millis(v.parse().with_context(|| format!("bad --job-step-ms '{v}'"))?);
            }
            "--add-api-key" => {
                let v = take(&mut i)?;
                let id = v.split_once('-').and_then(|(id, _)| id.parse().ok());
                let Some(id) = id else { bail!("--add-api-key must look like <id>-<secret>, e.g. 1-abc") };
                opts.api_keys.push(SimApiKey { id, key: v, username: opts.users[0].0.clone() });
            }
            "--add-user" => {
                let v = take(&mut i)?;
                let Some((u, p)) = v.split_once(':') else { bail!("--add-user must look like <name>:<password>") };
                opts.users.push((u.to_string(), p.to_string()));
            }
            "--plain-tcp-remote" => opts.treat_plain_tcp_as_remote = true,
            other => bail!("unknown simulate option '{other}' (see truenas-mcp --help)"),
        }
        i += 1;
    }
    match (cert, key) {
        (Some(c), Some(k)) => opts.tls = Some((c, k)),
        (None, None) => {}
        _ => bail!("--tls-cert and --tls-key go together"),
    }
    Ok((listen, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn simulate_arguments() {
        let (listen, o) = cli_options(&args(
            "--listen 127.0.0.1:9 --version 24.10 --no-pool --empty --add-api-key 3-abc --add-user a:b --job-step-ms=5",
        ))
        .unwrap();
        assert_eq!(listen, "127.0.0.1:9");
        assert_eq!(o.version, SimVersion::V24_10);
        assert!(o.docker_pool.is_none() && !o.seed_example_apps);
        assert_eq!(o.api_keys[0].id, 3);
        assert_eq!(o.users[1], ("a".to_string(), "b".to_string()));
        assert_eq!(o.job_step, Duration::from_millis(5));
        assert_eq!(cli_options(&args("--version 26.0")).unwrap().1.version, SimVersion::V26_0);
        for bad in ["--version 23.10", "--tls-cert x", "--bogus", "--add-api-key nodash", "--listen"] {
            assert!(cli_options(&args(bad)).is_err(), "{bad}");
        }
    }
}

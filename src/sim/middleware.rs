//! The simulated middlewared: shared state (apps, jobs, keys, sessions) and method dispatch with the real gates
//! (authentication, rate limiting, strict params), independent of which socket or dialect a call came from.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::apps::App;
use super::faults::Faults;
use super::jobs::Job;
use super::session::{Credentials, Session};
use super::wire::{Failure, Protocol, EBUSY, EINVAL, ENOMETHOD};
use super::{auth, events, jobs, query, schema, SimOptions, SimVersion};

/// Work to run once a call's response is queued.
pub(crate) type AfterReply = Box<dyn FnOnce() + Send>;

/// What a call produced, plus work to run once the response is queued (event sources start streaming only
/// after the client has its subscription id).
pub(crate) struct Reply {
    pub result: Result<Value, Failure>,
    pub after: Option<AfterReply>,
}

impl From<Result<Value, Failure>> for Reply {
    fn from(result: Result<Value, Failure>) -> Reply {
        Reply { result, after: None }
    }
}

pub(crate) struct State {
    pub apps: BTreeMap<String, App>,
    pub jobs: BTreeMap<i64, Job>,
    pub next_job_id: i64,
    pub call_log: Vec<(String, Value)>,
    pub revoked_keys: BTreeSet<u32>,
    /// (method, peer ip) → call times, for unauthenticated rate limiting.
    pub rate: HashMap<(String, String), VecDeque<Instant>>,
    /// token → username
    pub tokens: HashMap<String, String>,
    /// Tokens that work once (26.0 `reconnect_token`s).
    pub single_use_tokens: BTreeSet<String>,
    pub docker_pool: Option<String>,
    /// Synthetic log length per app (lines per container).
    pub log_lines: HashMap<String, u64>,
    /// A line a test planted as the newest log line of every container of an app.
    pub planted_log: HashMap<String, String>,
    /// Running event sources by full `name:args`.
    pub sources: HashMap<String, Arc<events::SourceInstance>>,
    /// Datasets, snapshots and files (`storage.rs`).
    pub storage: super::storage::Storage,
}

pub(crate) struct Middleware {
    pub opts: SimOptions,
    pub faults: Faults,
    state: Mutex<State>,
    sessions: Mutex<BTreeMap<u64, Arc<Session>>>,
    next_session: AtomicU64,
    pub frames_received: AtomicU64,
    /// Calls refused as the 21st concurrent one (`-32000` / ETOOMANYREFS).
    pub rejected_calls: AtomicU64,
    /// Most calls ever admitted at once on one socket.
    pub peak_admitted: AtomicU64,
    pub boot_ms: u64,
    /// Bumped by `restart`; connections of an older generation close.
    pub generation: AtomicU64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The call log keeps at most this many recent calls (long benchmarks must not grow it forever).
const CALL_LOG_MAX: usize = 20_000;

/// Methods callable before login.
fn no_auth_required(version: SimVersion, method: &str) -> bool {
    matches!(
        method,
        "auth.login"
            | "auth.login_ex"
            | "auth.login_ex_continue"
            | "auth.login_with_api_key"
            | "auth.login_with_token"
            | "auth.mechanism_choices"
            | "core.set_options"
    ) || (method == "core.ping" && version >= SimVersion::V25_10)
}

/// Job methods: they return a job id (validation happens inside the job).
pub(crate) fn is_job_method(method: &str) -> bool {
    matches!(
        method,
        "app.create"
            | "app.update"
            | "app.delete"
            | "app.start"
            | "app.stop"
            | "app.redeploy"
            | "app.pull_images"
            | "app.upgrade"
            | "app.convert_to_custom"
            | "core.job_wait"
    ) || super::storage::is_job(method)
}

const METHODS: &[&str] = &[
    "auth.login",
    "auth.login_with_api_key",
    "auth.login_with_token",
    "auth.me",
    "auth.logout",
    "auth.generate_token",
    "core.ping",
    "core.get_jobs",
    "core.job_abort",
    "core.job_wait",
    "core.subscribe",
    "core.unsubscribe",
    "system.info",
    "system.version",
    "system.ready",
    "docker.status",
    "docker.config",
    "app.query",
    "app.get_instance",
    "app.config",
    "app.used_ports",
    "app.container_ids",
    "app.outdated_docker_images",
    "app.available_space",
    "app.ip_choices",
    "app.create",
    "app.update",
    "app.delete",
    "app.start",
    "app.stop",
    "app.redeploy",
    "app.pull_images",
    "app.upgrade",
    "app.convert_to_custom",
];

/// Methods added in 25.04.
const METHODS_25: &[&str] = &["auth.login_ex", "auth.login_ex_continue", "auth.mechanism_choices", "core.set_options"];

/// Methods added in 25.10.
const METHODS_25_10: &[&str] = &["app.used_host_ips"];

impl Middleware {
    pub(crate) fn new(opts: SimOptions) -> Middleware {
        let mut apps = BTreeMap::new();
        if opts.seed_example_apps {
            for mut app in super::apps::example_apps(opts.docker_pool.as_deref().unwrap_or("tank")) {
                app.action_required = opts.apps_needing_action.contains(&app.name);
                apps.insert(app.name.clone(), app);
            }
        }
        let mut opts = opts;
        if let Some(path) = opts.state_file.clone() {
            match super::state_file::load(&path) {
                Ok(Some(saved)) => apps = saved,
                Ok(None) => {}
                // Never overwrite a file that could not be read: this simulator forgets instead.
                Err(e) => {
                    log::warn!("{e}; changes are not saved");
                    opts.state_file = None;
                }
            }
        }
        let faults = Faults::new(opts.treat_plain_tcp_as_remote);
        Middleware {
            state: Mutex::new(State {
                apps,
                jobs: BTreeMap::new(),
                next_job_id: 1,
                call_log: Vec::new(),
                // Keys the upgrade to 26.0 could not convert are revoked from the first boot.
                revoked_keys: if opts.version >= SimVersion::V26_0 {
                    opts.upgrade_revoked_keys.iter().copied().collect()
                } else {
                    BTreeSet::new()
                },
                single_use_tokens: BTreeSet::new(),
                rate: HashMap::new(),
                tokens: HashMap::new(),
                docker_pool: opts.docker_pool.clone(),
                log_lines: HashMap::new(),
                planted_log: HashMap::new(),
                sources: HashMap::new(),
                storage: super::storage::Storage::new(opts.docker_pool.as_deref().unwrap_or("tank")),
            }),
            opts,
            faults,
            sessions: Mutex::new(BTreeMap::new()),
            next_session: AtomicU64::new(1),
            frames_received: AtomicU64::new(0),
            rejected_calls: AtomicU64::new(0),
            peak_admitted: AtomicU64::new(0),
            boot_ms: now_ms(),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn version(&self) -> SimVersion {
        self.opts.version
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn register(&self, s: Arc<Session>) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(s.id, s);
    }

    pub(crate) fn unregister(&self, id: u64) {
        if let Some(s) = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
            s.clear_subscriptions();
        }
    }

    pub(crate) fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub(crate) fn session(&self, id: u64) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    /// Send a regular event to every authenticated session subscribed to `collection`.
    pub(crate) fn broadcast(&self, msg: &str, collection: &str, id: Option<&Value>, fields: Option<&Value>) {
        for s in self.sessions() {
            if s.is_authenticated() && s.wants(collection) {
                s.send_event(msg, collection, id, fields);
            }
        }
    }

    /// An `app.query` event for `name`, the entry shaped for each receiver's API version.
    /// Every change of an app comes through here, so mock mode's state file is saved here too.
    pub(crate) fn app_event(&self, st: &State, msg: &str, name: &str) {
        if let Some(path) = &self.opts.state_file {
            if let Err(e) = super::state_file::save(path, &st.apps) {
                log::warn!("cannot save the mock state to '{}': {e}", path.display());
            }
        }
        let id = Value::String(name.to_string());
        for s in self.sessions() {
            if s.is_authenticated() && s.wants("app.query") {
                let fields = st.apps.get(name).map(|a| a.entry(s.api, "0.0.0.0", false));
                s.send_event(msg, "app.query", Some(&id), if msg == "removed" { None } else { fields.as_ref() });
            }
        }
    }

    pub(crate) fn known_method(&self, method: &str) -> bool {
        METHODS.contains(&method)
            || super::storage::known(self.version(), method)
            || (self.version() != SimVersion::V24_10 && METHODS_25.contains(&method))
            || (self.version() >= SimVersion::V25_10 && METHODS_25_10.contains(&method))
    }

    /// Everything a method call goes through, in the middleware's order.
    pub(crate) fn handle_call(
        self: &Arc<Self>,
        session: &Arc<Session>,
        msg_id: &Value,
        method: &str,
        params: Vec<Value>,
    ) -> Reply {
        log::debug!("sim < {method} (connection {})", session.id);
        {
            let mut st = self.state();
            if st.call_log.len() >= CALL_LOG_MAX {
                st.call_log.drain(..CALL_LOG_MAX / 2);
            }
            st.call_log.push((method.to_string(), Value::Array(params.clone())));
        }
        if let Some(d) = self.faults.latency_for(method) {
            std::thread::sleep(d);
        }
        if let Some(d) = self.faults.jitter() {
            std::thread::sleep(d);
        }
        self.expire_if_asked(session);
        if !self.known_method(method) {
            return Err(Failure::MethodNotFound { method: method.to_string() }).into();
        }
        if session.api < SimVersion::V25_10
            && METHODS_25_10.contains(&method)
            && session.protocol() == Protocol::JsonRpc
        {
            // A pinned older API endpoint knows the method name but not in its version.
            return Err(Failure::call(ENOMETHOD, format!("Method {method:?} not found"))).into();
        }
        let authenticated = session.is_authenticated();
        if !authenticated && !no_auth_required(self.version(), method) {
            return Err(Failure::not_authenticated()).into();
        }
        if !authenticated && method != "core.set_options" {
            if let Err(f) = self.rate_limit(session, method) {
                return Err(f).into();
            }
        }
        if is_job_method(method) {
            return jobs::call_job_method(self, session, msg_id, method, params);
        }
        if let Err(f) = schema::check_params(session.api, method, &params) {
            return Err(f).into();
        }
        self.dispatch(session, method, params)
    }

    fn expire_if_asked(&self, session: &Session) {
        let epoch = self.faults.expire_epoch();
        let mut creds = session.credentials();
        if let Credentials::User { epoch: e, .. } = &*creds {
            if *e < epoch {
                *creds = Credentials::None;
                drop(creds);
                session.clear_subscriptions();
            }
        }
    }

    /// More than `max_calls` unauthenticated calls of one method from one address in the window → EBUSY.
    fn rate_limit(&self, session: &Session, method: &str) -> Result<(), Failure> {
        if matches!(session.origin, super::session::Origin::Memory) {
            return Ok(());
        }
        let rl = &self.opts.rate_limit;
        let over = {
            let mut st = self.state();
            let q = st.rate.entry((method.to_string(), session.origin.peer_ip())).or_default();
            let now = Instant::now();
            while q.front().is_some_and(|t| now.duration_since(*t) > rl.window || self.faults.rate_window_passed(*t)) {
                q.pop_front();
            }
            q.push_back(now);
            q.len() as u32 > rl.max_calls
        };
        if over {
            std::thread::sleep(rl.delay);
            return Err(Failure::call(EBUSY, "Rate Limit Exceeded"));
        }
        Ok(())
    }

    fn dispatch(self: &Arc<Self>, session: &Arc<Session>, method: &str, params: Vec<Value>) -> Reply {
        let v = self.version();
        let arg = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
        let result = match method {
            "auth.login"
            | "auth.login_ex"
            | "auth.login_ex_continue"
            | "auth.login_with_api_key"
            | "auth.login_with_token"
            | "auth.me"
            | "auth.logout"
            | "auth.generate_token"
            | "auth.mechanism_choices" => auth::handle(self, session, method, &params),
            "core.ping" => Ok(json!("pong")),
            "core.set_options" => {
                let opts = arg(0);
                if let Some(l) = opts.get("legacy_jobs").and_then(Value::as_bool) {
                    if v >= SimVersion::V25_10 {
                        session.legacy_jobs.store(l, Ordering::SeqCst);
                    }
                }
                if v >= SimVersion::V25_10 {
                    Ok(json!({"legacy_jobs": session.legacy_jobs.load(Ordering::SeqCst),
                              "private_methods": false, "py_exceptions": false}))
                } else {
                    Ok(Value::Null)
                }
            }
            "core.subscribe" | "core.unsubscribe" => return events::handle(self, session, method, &params),
            "core.get_jobs" => {
                let items: Vec<Value> = self.state().jobs.values().map(|j| j.to_value(v)).collect();
                query::apply(items, &arg(0), &arg(1))
            }
            "core.job_abort" => jobs::abort(self, arg(0).as_i64().unwrap_or(-1)),
            "system.info" => Ok(self.system_info()),
            "system.version" => Ok(Value::String(match v {
                SimVersion::V24_10 => format!("TrueNAS-SCALE-{}", self.release()),
                _ => format!("TrueNAS-{}", self.release()),
            })),
            "system.ready" => Ok(json!(true)),
            "docker.status" => Ok(self.docker_status()),
            "docker.config" => Ok(self.docker_config()),
            "app.query" => self.app_query(session, &arg(0), &arg(1)),
            "app.get_instance" => self.app_get_instance(session, &arg(0), &arg(1)),
            "app.config" => self.with_app(&arg(0), |a| Ok(a.compose.clone())),
            "app.used_ports" => {
                let st = self.state();
                let mut ports: Vec<u64> = st
                    .apps
                    .values()
                    .filter(|a| a.state != super::apps::AppState::Stopped)
                    .flat_map(|a| a.containers.iter().flat_map(|c| c.port_config.iter()))
                    .flat_map(|p| p["host_ports"].as_array().cloned().unwrap_or_default())
                    .filter_map(|hp| hp["host_port"].as_u64())
                    .collect();
                ports.sort_unstable();
                ports.dedup();
                Ok(json!(ports))
            }
            "app.used_host_ips" => {
                let st = self.state();
                let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for a in st.apps.values().filter(|a| a.state != super::apps::AppState::Stopped) {
                    for c in &a.containers {
                        for p in &c.port_config {
                            for hp in p["host_ports"].as_array().into_iter().flatten() {
                                let ip = hp["host_ip"].as_str().unwrap_or("0.0.0.0").to_string();
                                let names = map.entry(ip).or_default();
                                if !names.contains(&a.name) {
                                    names.push(a.name.clone());
                                }
                            }
                        }
                    }
                }
                Ok(json!(map))
            }
            "app.container_ids" => {
                let alive_only = arg(1).get("alive_only").and_then(Value::as_bool).unwrap_or(true);
                self.with_app(&arg(0), |a| {
                    let mut out = serde_json::Map::new();
                    for c in a.containers.iter().filter(|c| !alive_only || c.state == "running") {
                        out.insert(
                            c.id.clone(),
                            json!({"id": c.id, "service_name": c.service_name, "image": c.image, "state": c.state}),
                        );
                    }
                    Ok(Value::Object(out))
                })
            }
            "app.outdated_docker_images" => self.with_app(&arg(0), |a| Ok(json!(a.outdated_images))),
            "app.available_space" => match self.docker_gate() {
                Ok(()) => Ok(json!(1_234_567_890_123u64)),
                Err(f) => Err(f),
            },
            "app.ip_choices" => Ok(json!({"0.0.0.0": "0.0.0.0", "127.0.0.1": "127.0.0.1"})),
            m if super::storage::known(v, m) => super::storage::call(self, m, &params),
            _ => Err(Failure::MethodNotFound { method: method.to_string() }),
        };
        result.into()
    }

    /// The release string `system.info` reports.
    pub(crate) fn release(&self) -> &'static str {
        match self.version() {
            SimVersion::V24_10 => "24.10.2.4",
            SimVersion::V25_04 => "25.04.2.6",
            SimVersion::V25_10 => "25.10.6",
            SimVersion::V26_0 => "26.0.0",
        }
    }

    fn system_info(&self) -> Value {
        let now = now_ms();
        let up = (now - self.boot_ms) as f64 / 1000.0 + 86_400.0;
        json!({
            "version": self.release(),
            "buildtime": {"$date": 1_740_000_000_000u64},
            "hostname": self.opts.hostname,
            "physmem": 34_359_738_368u64,
            "model": "AMD Ryzen 5 5600G with Radeon Graphics",
            "cores": 12,
            "physical_cores": 6,
            "loadavg": [0.12, 0.2, 0.18],
            "uptime": format!("1 day, {:.0} seconds", up - 86_400.0),
            "uptime_seconds": up,
            "system_serial": "SIM0001",
            "system_product": "Simulated TrueNAS",
            "system_product_version": null,
            "license": null,
            "boottime": {"$date": self.boot_ms - 86_400_000},
            "datetime": {"$date": now},
            "timezone": "Etc/UTC",
            "system_manufacturer": "truenas-mcp",
            "ecc_memory": false,
        })
    }

    pub(crate) fn docker_gate(&self) -> Result<(), Failure> {
        if self.state().docker_pool.is_none() {
            return Err(Failure::call(super::wire::EFAULT, "No pool configured for Docker"));
        }
        Ok(())
    }

    fn docker_status(&self) -> Value {
        if self.state().docker_pool.is_some() {
            json!({"status": "RUNNING", "description": "Application(s) are currently running"})
        } else {
            json!({"status": "UNCONFIGURED", "description": "Application(s) are not configured"})
        }
    }

    fn docker_config(&self) -> Value {
        let pool = self.state().docker_pool.clone();
        let mut pools = vec![json!({"base": "172.17.0.0/12", "size": 24})];
        if self.version() != SimVersion::V24_10 {
            pools.push(json!({"base": "fdd0::/48", "size": 64}));
        }
        let mut c = json!({
            "id": 1,
            "pool": pool,
            "dataset": pool.as_ref().map(|p| format!("{p}/ix-apps")),
            "enable_image_updates": true,
            "nvidia": false,
            "address_pools": pools,
        });
        if self.version() != SimVersion::V24_10 {
            c["cidr_v6"] = json!("fdd0::/64");
        }
        if self.version() >= SimVersion::V25_10 {
            c["secure_registry_mirrors"] = json!([]);
            c["insecure_registry_mirrors"] = json!([]);
        }
        c
    }

    fn host_ip(session: &Session, options: &Value) -> String {
        options
            .pointer("/extra/host_ip")
            .and_then(Value::as_str)
            .map(|ip| if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() })
            .unwrap_or_else(|| session.origin.local_ip())
    }

    /// `app.query`; `[]` when Docker has no pool, like the real one.
    pub(crate) fn app_query(&self, session: &Session, filters: &Value, options: &Value) -> Result<Value, Failure> {
        let st = self.state();
        if st.docker_pool.is_none() {
            return query::apply(Vec::new(), filters, options);
        }
        let with_config = options.pointer("/extra/retrieve_config").and_then(Value::as_bool) == Some(true);
        let with_schema = options.pointer("/extra/include_app_schema").and_then(Value::as_bool) == Some(true);
        let host_ip = Self::host_ip(session, options);
        let items: Vec<Value> = st
            .apps
            .values()
            .map(|a| {
                let mut e = a.entry(session.api, &host_ip, with_config);
                if with_schema {
                    e["version_details"] = super::apps::custom_version_details();
                }
                e
            })
            .collect();
        drop(st);
        let mut options = options.clone();
        if let Some(o) = options.as_object_mut() {
            o.remove("extra");
        }
        query::apply(items, filters, &options)
    }

    fn app_get_instance(&self, session: &Session, id: &Value, options: &Value) -> Result<Value, Failure> {
        let Some(name) = id.as_str() else {
            return Err(Failure::invalid("id", "Input should be a valid string", EINVAL));
        };
        let found = self.app_query(session, &json!([["id", "=", name]]), options)?;
        match found.as_array().and_then(|a| a.first()) {
            Some(e) => Ok(e.clone()),
            None => Err(Failure::not_found(format!("App {name} does not exist"))),
        }
    }

    /// Run `f` on an existing app (docker must be configured), else "App <n> does not exist".
    pub(crate) fn with_app<T>(&self, name: &Value, f: impl FnOnce(&App) -> Result<T, Failure>) -> Result<T, Failure> {
        let name = name.as_str().unwrap_or_default();
        let st = self.state();
        match st.apps.get(name).filter(|_| st.docker_pool.is_some()) {
            Some(a) => f(a),
            None => Err(Failure::not_found(format!("App {name} does not exist"))),
        }
    }

    /// Drop every connection, forget jobs (ids restart at 1), keep apps (transient states settle).
    pub(crate) fn restart(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for s in self.sessions() {
            s.drop_connection();
        }
        let mut st = self.state();
        for j in st.jobs.values() {
            j.abort.store(true, Ordering::SeqCst);
        }
        st.jobs.clear();
        st.next_job_id = 1;
        st.tokens.clear();
        for a in st.apps.values_mut() {
            a.generation += 1;
            match a.state {
                super::apps::AppState::Deploying => a.settle(),
                super::apps::AppState::Stopping => a.take_down(),
                _ => {}
            }
        }
    }

    /// Sleep that gives up early when `stop` is set; true if it slept fully.
    pub(crate) fn sleep_unless(stop: &std::sync::atomic::AtomicBool, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }
}

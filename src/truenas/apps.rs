//! Typed `app.*` / `docker.*` calls for the tools, shaped per connected version (reference/schemas).
//!
//! Handlers never build TrueNAS params inline: every method they use has a function (or an [`AppJob`]
//! constructor) here, so the wire shape of each call is decided in one place and checked by tests against the
//! API models of 25.04 and 25.10. Results are parsed leniently: fields a version lacks get defaults.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{Client, JobOptions, Subscription};
use super::error::TnError;
use super::types::{JobOutcome, ServerInfo};

/// The app states TrueNAS reports (`STOPPING` only appears in events; anything newer is kept verbatim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppState {
    Running,
    Deploying,
    Crashed,
    Stopped,
    Stopping,
    Other(String),
}

impl AppState {
    pub fn parse(s: &str) -> AppState {
        match s {
            "RUNNING" => AppState::Running,
            "DEPLOYING" => AppState::Deploying,
            "CRASHED" => AppState::Crashed,
            "STOPPED" => AppState::Stopped,
            "STOPPING" => AppState::Stopping,
            other => AppState::Other(other.to_string()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            AppState::Running => "RUNNING",
            AppState::Deploying => "DEPLOYING",
            AppState::Crashed => "CRASHED",
            AppState::Stopped => "STOPPED",
            AppState::Stopping => "STOPPING",
            AppState::Other(s) => s,
        }
    }
    /// Whether TrueNAS serves container logs in this state (RUNNING, DEPLOYING, CRASHED).
    pub fn has_logs(&self) -> bool {
        matches!(self, AppState::Running | AppState::Deploying | AppState::Crashed)
    }
}

/// One host binding of a published port.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct HostPort {
    #[serde(default)]
    pub host_port: u32,
    #[serde(default)]
    pub host_ip: Option<String>,
}

/// A container port with its host bindings (`active_workloads.used_ports[]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct UsedPort {
    #[serde(default)]
    pub container_port: u32,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
}

/// A mount of a container (`type` is `bind` or `volume`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Mount {
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// One container of an app (`active_workloads.container_details[]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ContainerDetail {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub image: String,
    /// crashed | created | exited | running | starting
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub port_config: Vec<UsedPort>,
    #[serde(default)]
    pub volume_mounts: Vec<Mount>,
}

/// `active_workloads` of an app (all empty when it is stopped).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Workloads {
    #[serde(default)]
    pub containers: u32,
    #[serde(default)]
    pub used_ports: Vec<UsedPort>,
    #[serde(default)]
    pub container_details: Vec<ContainerDetail>,
    #[serde(default)]
    pub volumes: Vec<Mount>,
    #[serde(default)]
    pub images: Vec<String>,
}

/// An app as `app.query` returns it (the fields the tools use).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct AppEntry {
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub custom_app: bool,
    #[serde(default)]
    pub upgrade_available: bool,
    #[serde(default)]
    pub image_updates_available: bool,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub portals: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub active_workloads: Option<Workloads>,
    #[serde(default)]
    pub human_version: Option<String>,
    /// 26.0: the app needs the user's attention (the compose extension `x-action-required`); absent before 26.0.
    #[serde(default)]
    pub action_required: bool,
    /// 26.0: the catalogue version an upgrade would install (null for custom apps).
    #[serde(default)]
    pub latest_app_version: Option<String>,
}

impl AppEntry {
    pub fn app_state(&self) -> AppState {
        AppState::parse(&self.state)
    }
    pub fn workloads(&self) -> Workloads {
        self.active_workloads.clone().unwrap_or_default()
    }
    /// Host ports this app publishes (for the port check of an update, which must not count the app itself).
    pub fn host_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .workloads()
            .used_ports
            .iter()
            .flat_map(|p| p.host_ports.iter().filter_map(|h| u16::try_from(h.host_port).ok()))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// `docker.status`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DockerStatus {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl DockerStatus {
    pub fn is_running(&self) -> bool {
        self.status == "RUNNING"
    }
}

/// `docker.config` (the fields the tools use).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DockerConfig {
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub enable_image_updates: bool,
}

/// `app.delete` options the caller chooses; the wire object is completed per version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteOptions {
    pub remove_images: bool,
    pub remove_ix_volumes: bool,
}

/// A job method of the apps API with its exact params for the connected version.
#[derive(Clone, Debug, PartialEq)]
pub struct AppJob {
    pub method: &'static str,
    pub params: Value,
}

impl AppJob {
    /// `app.create(app_create)`: `payload` is the object `compose::create_payload` built.
    pub fn create(payload: Value) -> AppJob {
        AppJob { method: "app.create", params: json!([payload]) }
    }
    /// `app.update(app_name, update)`: `update` from `compose::update_payload` (always the full compose).
    pub fn update(app_name: &str, update: Value) -> AppJob {
        AppJob { method: "app.update", params: json!([app_name, update]) }
    }
    /// `app.delete(app_name, options)`: options is always an object; `force_remove_custom_app` exists from 25.04
    /// and is set so that a custom app whose compose is broken but which holds no containers, volumes or networks
    /// can still be removed (TrueNAS ignores it otherwise).
    pub fn delete(app_name: &str, options: DeleteOptions, version: (u32, u32)) -> AppJob {
        let mut opts = json!({
            "remove_images": options.remove_images,
            "remove_ix_volumes": options.remove_ix_volumes,
        });
        if version >= (25, 4) {
            opts["force_remove_custom_app"] = json!(true);
        }
        AppJob { method: "app.delete", params: json!([app_name, opts]) }
    }
    pub fn start(app_name: &str) -> AppJob {
        AppJob { method: "app.start", params: json!([app_name]) }
    }
    pub fn stop(app_name: &str) -> AppJob {
        AppJob { method: "app.stop", params: json!([app_name]) }
    }
    pub fn redeploy(app_name: &str) -> AppJob {
        AppJob { method: "app.redeploy", params: json!([app_name]) }
    }
    /// `app.pull_images(app_name, {redeploy})`.
    pub fn pull_images(app_name: &str, redeploy: bool) -> AppJob {
        AppJob { method: "app.pull_images", params: json!([app_name, {"redeploy": redeploy}]) }
    }
}

/// The event source name for the last `tail_lines` lines of one container, unique per call.
///
/// TrueNAS shares one event-source instance per exact `(name, arg string)`, and a second subscriber to a running
/// instance gets no tail replay. The model forbids extra keys, so uniqueness comes from key order and JSON
/// whitespace, chosen from a process-wide counter (24 576 distinct spellings; only concurrent ones must differ).
pub fn log_follow_source(app_name: &str, container_id: &str, tail_lines: u32) -> String {
    static NONCE: AtomicU64 = AtomicU64::new(0);
    let n = NONCE.fetch_add(1, Ordering::Relaxed) % (6 * 16 * 16 * 16);
    let order = (n % 6) as usize;
    let spaces = |k: u64| " ".repeat(((n / 6 / 16u64.pow(k as u32)) % 16) as usize);
    let fields = [
        format!("\"app_name\":{}{}", spaces(0), Value::String(app_name.to_string())),
        format!("\"container_id\":{}{}", spaces(1), Value::String(container_id.to_string())),
        format!("\"tail_lines\":{}{}", spaces(2), tail_lines),
    ];
    const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    let body: Vec<&str> = ORDERS[order].iter().map(|&i| fields[i].as_str()).collect();
    format!("app.container_log_follow:{{{}}}", body.join(","))
}

/// The event source of per-app resource samples, one event every `interval` seconds (TrueNAS minimum 2).
pub fn stats_source(interval: u32) -> String {
    format!("app.stats:{{\"interval\":{}}}", interval.max(2))
}

/// The apps API of one connected NAS.
#[derive(Clone)]
pub struct Apps {
    client: Client,
    info: ServerInfo,
}

impl Apps {
    /// Connect (if needed) and learn the version the calls are shaped for.
    pub fn connect(client: &Client) -> Result<Apps, TnError> {
        let info = client.server_info()?;
        Ok(Apps { client: client.clone(), info })
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    pub fn version(&self) -> (u32, u32) {
        self.info.version_tuple
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn docker_status(&self) -> Result<DockerStatus, TnError> {
        parse(self.client.call("docker.status", json!([]))?)
    }

    pub fn docker_config(&self) -> Result<DockerConfig, TnError> {
        parse(self.client.call("docker.config", json!([]))?)
    }

    /// Every app (custom and catalogue). Empty when Docker is unusable: check [`Apps::docker_status`] first.
    pub fn query_all(&self) -> Result<Vec<AppEntry>, TnError> {
        parse(self.client.call("app.query", json!([]))?)
    }

    /// One app by name, `None` when it does not exist.
    pub fn get(&self, app_name: &str) -> Result<Option<AppEntry>, TnError> {
        let found: Vec<AppEntry> = parse(self.client.call("app.query", json!([[["name", "=", app_name]]]))?)?;
        Ok(found.into_iter().find(|a| a.name == app_name))
    }

    /// The stored compose of a custom app, as the dict TrueNAS keeps (comments gone, keys sorted).
    pub fn config(&self, app_name: &str) -> Result<Value, TnError> {
        self.client.call("app.config", json!([app_name]))
    }

    /// Host ports published by non-stopped apps.
    pub fn used_ports(&self) -> Result<Vec<u16>, TnError> {
        let ports: Vec<i64> = parse(self.client.call("app.used_ports", json!([]))?)?;
        Ok(ports.into_iter().filter_map(|p| u16::try_from(p).ok()).collect())
    }

    /// Image references of the app that the update cache flags as outdated.
    pub fn outdated_images(&self, app_name: &str) -> Result<Vec<String>, TnError> {
        parse(self.client.call("app.outdated_docker_images", json!([app_name]))?)
    }

    /// Run a job and wait for its result (progress and cancellation through `opts`), with its job id.
    pub fn run(&self, job: &AppJob, opts: JobOptions) -> JobOutcome {
        self.client.call_job(job.method, job.params.clone(), opts)
    }

    /// Start a job and return its id without waiting.
    pub fn start(&self, job: &AppJob) -> Result<i64, TnError> {
        self.client.start_job(job.method, job.params.clone())
    }

    /// The job object (`core.get_jobs`).
    pub fn job(&self, job_id: i64) -> Result<Value, TnError> {
        self.client.job(job_id)
    }

    pub fn follow_logs(&self, app_name: &str, container_id: &str, tail_lines: u32) -> Result<Subscription, TnError> {
        self.client.subscribe(&log_follow_source(app_name, container_id, tail_lines))
    }

    pub fn stats(&self, interval: u32) -> Result<Subscription, TnError> {
        self.client.subscribe(&stats_source(interval))
    }
}

fn parse<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, TnError> {
    serde_json::from_value(value).map_err(|e| TnError::Protocol(format!("unexpected answer from TrueNAS: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn log_sources_differ_per_call_and_parse_to_the_same_args() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let s = log_follow_source("web", "abc123", 100);
            let (name, arg) = s.split_once(':').unwrap();
            assert_eq!(name, "app.container_log_follow");
            let v: Value = serde_json::from_str(arg).unwrap();
            assert_eq!(v, json!({"app_name": "web", "container_id": "abc123", "tail_lines": 100}));
            assert!(seen.insert(s.clone()), "repeated spelling {s}");
        }
    }

    #[test]
    fn delete_options_follow_the_version() {
        let o = DeleteOptions { remove_images: true, remove_ix_volumes: false };
        assert_eq!(
            AppJob::delete("x", o, (24, 10)).params,
            json!(["x", {"remove_images": true, "remove_ix_volumes": false}])
        );
        assert_eq!(
            AppJob::delete("x", o, (25, 4)).params,
            json!(["x", {"remove_images": true, "remove_ix_volumes": false, "force_remove_custom_app": true}])
        );
    }

    #[test]
    fn entries_parse_leniently() {
        let e: AppEntry = serde_json::from_value(json!({
            "name": "web", "state": "RUNNING", "custom_app": true, "portals": null, "notes": null,
            "active_workloads": {"containers": 1, "used_ports": [
                {"container_port": 80, "protocol": "tcp", "host_ports": [{"host_port": 8080, "host_ip": "0.0.0.0"},
                                                                           {"host_port": 8080, "host_ip": "::"}]}],
                "container_details": [], "volumes": [], "images": ["nginx:1.27"], "networks": []},
            "extra_field_from_a_newer_version": 1
        }))
        .unwrap();
        assert_eq!(e.app_state(), AppState::Running);
        assert_eq!(e.host_ports(), vec![8080]);
        assert_eq!(AppState::parse("ERROR"), AppState::Other("ERROR".into()));
    }

    /// The API models of 25.04.2 and 25.10.5 (`fixtures/truenas-schemas`), with the LongString compose field the
    /// export flattens to 1024 characters restored.
    fn models() -> Vec<((u32, u32), Value)> {
        [((25, 4), "api-v25.04.2.json"), ((25, 10), "api-v25.10.5.json")]
            .into_iter()
            .map(|(v, f)| {
                let path = format!("{}/fixtures/truenas-schemas/{f}", env!("CARGO_MANIFEST_DIR"));
                let mut m: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
                for method in ["app.create", "app.update"] {
                    for def in m["methods"][method]["args"]["$defs"].as_object_mut().unwrap().values_mut() {
                        if let Some(p) = def["properties"].get_mut("custom_compose_config_string") {
                            p["maxLength"] = json!(2_048_000);
                        }
                    }
                }
                (v, m)
            })
            .collect()
    }

    fn check(models: &Value, method: &str, params: &Value) -> Result<(), String> {
        let schema = &models["methods"][method]["args"];
        let order: Vec<&str> =
            schema["x-positional-order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let params = params.as_array().unwrap();
        assert!(params.len() <= order.len(), "{method}: too many params");
        let named: serde_json::Map<String, Value> =
            order.iter().zip(params).map(|(k, v)| (k.to_string(), v.clone())).collect();
        crate::jsonschema::validate(schema, &Value::Object(named)).map_err(|e| format!("{method} {params:?}: {e:?}"))
    }

    #[test]
    fn every_job_matches_the_api_models() {
        let compose = "services:\n  web:\n    image: nginx:1.27\n".repeat(40);
        let create = json!({"app_name": "web", "custom_app": true, "custom_compose_config_string": compose});
        let update = json!({"custom_compose_config_string": compose});
        for (version, m) in models() {
            let opts = DeleteOptions { remove_images: true, remove_ix_volumes: true };
            for job in [
                AppJob::create(create.clone()),
                AppJob::update("web", update.clone()),
                AppJob::delete("web", opts, version),
                AppJob::start("web"),
                AppJob::stop("web"),
                AppJob::redeploy("web"),
                AppJob::pull_images("web", false),
            ] {
                check(&m, job.method, &job.params).unwrap();
            }
            // The original server's mistake (a bare bool as delete options) is caught by the same check.
            assert!(check(&m, "app.delete", &json!(["web", true])).is_err(), "bool options must not validate");
            for (method, params) in [
                ("app.config", json!(["web"])),
                ("app.used_ports", json!([])),
                ("docker.status", json!([])),
                ("app.outdated_docker_images", json!(["web"])),
            ] {
                check(&m, method, &params).unwrap();
            }
        }
    }

    #[test]
    fn event_source_args_match_the_api_models() {
        let (_, m) = models().pop().unwrap(); // 25.10.5 publishes the event-source models
        for source in [log_follow_source("web", "0123abcd", 100), stats_source(2), stats_source(0)] {
            let (name, arg) = source.split_once(':').unwrap();
            let schema = &m["methods"][format!("event:{name}")]["args"];
            let arg: Value = serde_json::from_str(arg).unwrap();
            assert!(crate::jsonschema::validate(schema, &arg).is_ok(), "{source}");
        }
    }
}

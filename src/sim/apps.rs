//! Custom apps as the middleware reports them: the stored compose, containers derived from it, the app state
//! machine's states, and the `AppEntry` shape per release.
//! Over our usual ~700 lines because each release's `AppEntry` shape, the state machine and the seed apps are one
//! concern: splitting them would scatter the per-release differences a reader compares side by side.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::wire::{Failure, FieldError, EINVAL};
use super::SimVersion;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppState {
    Deploying,
    Running,
    Crashed,
    Stopping,
    Stopped,
}

impl AppState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AppState::Deploying => "DEPLOYING",
            AppState::Running => "RUNNING",
            AppState::Crashed => "CRASHED",
            AppState::Stopping => "STOPPING",
            AppState::Stopped => "STOPPED",
        }
    }
}

/// One container of an app (docker inspect, reduced to what `app.query` shows).
#[derive(Clone, Debug)]
pub(crate) struct Container {
    pub id: String,
    pub service_name: String,
    pub image: String,
    /// crashed | created | exited | running | starting
    pub state: &'static str,
    pub port_config: Vec<Value>,
    pub volume_mounts: Vec<Value>,
}

#[derive(Clone, Debug)]
pub(crate) struct App {
    pub name: String,
    /// The parsed compose dict (anchors expanded, keys sorted) — what `app.config` returns.
    pub compose: Value,
    pub state: AppState,
    pub containers: Vec<Container>,
    pub portals: BTreeMap<String, String>,
    pub notes: Option<String>,
    /// Images the update cache flags (`app.outdated_docker_images`).
    pub outdated_images: Vec<String>,
    /// Bumped on every deploy/stop so a pending settle step can tell it is stale.
    pub generation: u64,
    /// Containers are recreated with new ids on every `up`.
    pub deploy_count: u64,
    /// 26.0 `action_required` (e.g. a configuration migration); set by `SimOptions::apps_needing_action`.
    pub action_required: bool,
}

/// What the convention says a service turns into once its deploy settles.
fn settled_state(image: &str) -> &'static str {
    if image.contains("crash") {
        "crashed"
    } else if image.contains("unhealthy") {
        "starting"
    } else {
        "running"
    }
}

/// `app_state` from container states, in the middleware's precedence order.
pub(crate) fn state_from_containers(containers: &[Container]) -> AppState {
    if containers.iter().any(|c| c.state == "crashed") {
        AppState::Crashed
    } else if containers.iter().any(|c| c.state == "created" || c.state == "starting") {
        AppState::Deploying
    } else if containers.iter().any(|c| c.state == "running") {
        AppState::Running
    } else {
        AppState::Stopped
    }
}

impl App {
    pub(crate) fn new(name: &str, compose: Value) -> App {
        let (portals, notes) = portals_and_notes(&compose);
        App {
            name: name.to_string(),
            compose,
            state: AppState::Stopped,
            containers: Vec::new(),
            portals,
            notes,
            outdated_images: Vec::new(),
            generation: 0,
            deploy_count: 0,
            action_required: false,
        }
    }

    /// `compose up`: fresh containers in `created`/`starting`; the app is DEPLOYING until [`App::settle`].
    pub(crate) fn deploy(&mut self) {
        self.deploy_count += 1;
        self.generation += 1;
        self.containers = containers_from_compose(&self.name, &self.compose, self.deploy_count);
        self.state = AppState::Deploying;
    }

    /// Containers reach their steady state (running, or crashed per the image convention).
    pub(crate) fn settle(&mut self) {
        for c in &mut self.containers {
            c.state = settled_state(&c.image);
        }
        self.state = state_from_containers(&self.containers);
    }

    /// `compose down`: containers and networks are removed.
    pub(crate) fn take_down(&mut self) {
        self.generation += 1;
        self.containers.clear();
        self.state = AppState::Stopped;
    }

    pub(crate) fn images(&self) -> Vec<String> {
        let mut images: Vec<String> = services(&self.compose).map(|(_, s)| image_of(s)).collect();
        images.dedup();
        images
    }

    /// `AppEntry` as `app.query` returns it for `version`.
    pub(crate) fn entry(&self, version: SimVersion, host_ip: &str, with_config: bool) -> Value {
        let mut workloads = Map::new();
        let live = self.state != AppState::Stopped && self.state != AppState::Stopping;
        let containers: &[Container] = if live { &self.containers } else { &[] };
        let mut used_ports: Vec<Value> = Vec::new();
        let mut volumes: Vec<Value> = Vec::new();
        let mut images: Vec<String> = Vec::new();
        let mut host_ips: Vec<String> = Vec::new();
        for c in containers {
            for p in &c.port_config {
                if !used_ports.contains(p) {
                    used_ports.push(p.clone());
                }
                for hp in p["host_ports"].as_array().into_iter().flatten() {
                    if let Some(ip) = hp["host_ip"].as_str() {
                        if !host_ips.iter().any(|h| h == ip) {
                            host_ips.push(ip.to_string());
                        }
                    }
                }
            }
            for v in &c.volume_mounts {
                if !volumes.contains(v) {
                    volumes.push(v.clone());
                }
            }
            if !images.contains(&c.image) {
                images.push(c.image.clone());
            }
        }
        workloads.insert("containers".into(), containers.len().into());
        workloads.insert("used_ports".into(), Value::Array(used_ports));
        if version >= SimVersion::V25_10 {
            workloads.insert("used_host_ips".into(), json!(host_ips));
        }
        workloads.insert(
            "container_details".into(),
            Value::Array(
                containers
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "service_name": c.service_name, "image": c.image,
                               "port_config": c.port_config, "state": c.state, "volume_mounts": c.volume_mounts})
                    })
                    .collect(),
            ),
        );
        workloads.insert("volumes".into(), Value::Array(volumes));
        workloads.insert("images".into(), json!(images));
        if version != SimVersion::V24_10 {
            let networks = if containers.is_empty() { vec![] } else { vec![network(&self.name)] };
            workloads.insert("networks".into(), Value::Array(networks));
        }
        let updates = live && !self.outdated_images.is_empty();
        let portals: Map<String, Value> =
            self.portals.iter().map(|(k, v)| (k.clone(), Value::String(v.replace("0.0.0.0", host_ip)))).collect();
        let mut entry = json!({
            "name": self.name,
            "id": self.name,
            "state": self.state.as_str(),
            "upgrade_available": updates,
            "latest_version": null,
            "image_updates_available": updates,
            "custom_app": true,
            "migrated": false,
            "human_version": "1.0.0_custom",
            "version": "1.0.0",
            "metadata": custom_app_metadata(),
            "active_workloads": Value::Object(workloads),
            "notes": self.notes,
            "portals": portals,
            "version_details": null,
            "config": null,
        });
        if version >= SimVersion::V26_0 {
            entry["action_required"] = json!(self.action_required);
            // Custom apps have no catalog version to compare with.
            entry["latest_app_version"] = Value::Null;
        }
        if with_config {
            entry["config"] = self.compose.clone();
        }
        entry
    }
}

fn custom_app_metadata() -> Value {
    json!({
        "app_version": "custom",
        "capabilities": [],
        "description": "This is a custom app where user can use his/her own docker compose file for deploying services",
        "home": "",
        "host_mounts": [],
        "maintainers": [],
        "name": "custom-app",
        "run_as_context": [],
        "sources": [],
        "title": "Custom App",
        "train": "stable",
        "version": "1.0.0",
    })
}

/// `version_details` of a custom app (`include_app_schema`): the static catalog stub.
pub(crate) fn custom_version_details() -> Value {
    json!({
        "healthy": true,
        "supported": true,
        "healthy_error": null,
        "location": "/mnt/.ix-apps/truenas_catalog/trains/stable/custom-app/1.0.0",
        "last_update": null,
        "required_features": [],
        "human_version": "1.0.0_custom",
        "version": "1.0.0",
        "app_metadata": custom_app_metadata(),
        "schema": {"groups": [], "questions": []},
        "readme": "# Custom App\n",
        "changelog": null,
        "values": {},
    })
}

fn network(app: &str) -> Value {
    json!({
        "Name": format!("ix-{app}_default"),
        "Id": hex_id(&format!("network/{app}"), 0),
        "Labels": {
            "com.docker.compose.network": "default",
            "com.docker.compose.project": format!("ix-{app}"),
            "com.docker.compose.version": "2.32.4",
        },
        "Created": "2025-01-01T00:00:00.000000000Z",
        "Scope": "local",
        "Driver": "bridge",
    })
}

/// A 64-hex-digit id, stable for (seed, n): container ids look like docker's.
pub(crate) fn hex_id(seed: &str, n: u64) -> String {
    let mut out = String::with_capacity(64);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    for _ in 0..4 {
        // splitmix64 steps
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.push_str(&format!("{z:016x}"));
    }
    out
}

fn services(compose: &Value) -> impl Iterator<Item = (&String, &Value)> {
    compose.get("services").and_then(Value::as_object).into_iter().flat_map(|m| m.iter())
}

fn image_of(service: &Value) -> String {
    service.get("image").and_then(Value::as_str).unwrap_or("unknown:latest").to_string()
}

fn containers_from_compose(app: &str, compose: &Value, deploy: u64) -> Vec<Container> {
    services(compose)
        .map(|(name, svc)| {
            let image = image_of(svc);
            let healthcheck = svc.get("healthcheck").is_some();
            Container {
                id: hex_id(&format!("{app}/{name}"), deploy),
                service_name: name.clone(),
                state: if healthcheck || settled_state(&image) == "starting" { "starting" } else { "created" },
                image,
                port_config: ports_of(svc),
                volume_mounts: mounts_of(app, svc),
            }
        })
        .collect()
}

fn used_port(container_port: u64, protocol: &str, host_port: u64, host_ip: Option<&str>) -> Value {
    let host_ports = match host_ip {
        Some(ip) => json!([{"host_port": host_port, "host_ip": ip}]),
        // docker publishes on both families when no address is given
        None => json!([{"host_port": host_port, "host_ip": "0.0.0.0"}, {"host_port": host_port, "host_ip": "::"}]),
    };
    json!({"container_port": container_port, "protocol": protocol, "host_ports": host_ports})
}

fn parse_range(s: &str) -> Option<(u64, u64)> {
    match s.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let p = s.trim().parse().ok()?;
            Some((p, p))
        }
    }
}

/// `ports:` in short (`[ip:]host:container[/proto]`) or long form; bindings without a host port are skipped.
fn ports_of(svc: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in svc.get("ports").and_then(Value::as_array).into_iter().flatten() {
        match p {
            Value::String(s) => {
                let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
                // IPv6 host addresses come in brackets: [::1]:8080:80
                let (ip, rest) = if let Some(r) = spec.strip_prefix('[') {
                    match r.split_once("]:") {
                        Some((ip, rest)) => (Some(ip.to_string()), rest.to_string()),
                        None => (None, spec.to_string()),
                    }
                } else {
                    let parts: Vec<&str> = spec.split(':').collect();
                    match parts.len() {
                        3 => (Some(parts[0].to_string()), format!("{}:{}", parts[1], parts[2])),
                        _ => (None, spec.to_string()),
                    }
                };
                let Some((host, container)) = rest.split_once(':') else { continue };
                let (Some((h0, h1)), Some((c0, _))) = (parse_range(host), parse_range(container)) else { continue };
                for (i, hp) in (h0..=h1).enumerate() {
                    out.push(used_port(c0 + i as u64, proto, hp, ip.as_deref().filter(|i| !i.is_empty())));
                }
            }
            Value::Object(o) => {
                let target = o.get("target").and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok()));
                let published = o.get("published").and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok()));
                let proto = o.get("protocol").and_then(Value::as_str).unwrap_or("tcp");
                if let (Some(t), Some(p)) = (target, published) {
                    out.push(used_port(t, proto, p, o.get("host_ip").and_then(Value::as_str)));
                }
            }
            _ => {}
        }
    }
    out
}

/// `volumes:` in short or long form; binds keep their host path, named volumes live under docker's data root.
fn mounts_of(app: &str, svc: &Value) -> Vec<Value> {
    let named = |name: &str| format!("/mnt/.ix-apps/docker/volumes/ix-{app}_{name}/_data");
    let mut out = Vec::new();
    for v in svc.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (src, dst, mode) = match parts.as_slice() {
                    [dst] => (None, *dst, "rw"),
                    [src, dst] => (Some(*src), *dst, "rw"),
                    [src, dst, mode, ..] => (Some(*src), *dst, if mode.contains("ro") { "ro" } else { "rw" }),
                    [] => continue,
                };
                let (source, kind) = match src {
                    Some(p) if p.starts_with('/') || p.starts_with('.') || p.starts_with('~') => {
                        (p.to_string(), "bind")
                    }
                    Some(name) => (named(name), "volume"),
                    None => (named(&hex_id(dst, 7)[..12]), "volume"),
                };
                out.push(json!({"source": source, "destination": dst, "mode": mode, "type": kind}));
            }
            Value::Object(o) => {
                let kind = o.get("type").and_then(Value::as_str).unwrap_or("volume");
                let dst = o.get("target").and_then(Value::as_str).unwrap_or("");
                let src = o.get("source").and_then(Value::as_str).unwrap_or("");
                let mode = if o.get("read_only").and_then(Value::as_bool) == Some(true) { "ro" } else { "rw" };
                if kind == "tmpfs" {
                    continue;
                }
                let (source, kind) = if kind == "bind" { (src.to_string(), "bind") } else { (named(src), "volume") };
                out.push(json!({"source": source, "destination": dst, "mode": mode, "type": kind}));
            }
            _ => {}
        }
    }
    out
}

/// `x-portals` / `x-notes`; invalid portals drop both, as `apps_validation` does.
fn portals_and_notes(compose: &Value) -> (BTreeMap<String, String>, Option<String>) {
    let notes = compose.get("x-notes").and_then(Value::as_str).map(str::to_string);
    let mut portals = BTreeMap::new();
    for p in compose.get("x-portals").and_then(Value::as_array).into_iter().flatten() {
        let (Some(name), Some(scheme), Some(host), Some(port)) = (
            p.get("name").and_then(Value::as_str),
            p.get("scheme").and_then(Value::as_str),
            p.get("host").and_then(Value::as_str),
            p.get("port").and_then(Value::as_u64),
        ) else {
            return (BTreeMap::new(), None);
        };
        if scheme != "http" && scheme != "https" {
            return (BTreeMap::new(), None);
        }
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        let port = if port == 80 || port == 443 { String::new() } else { format!(":{port}") };
        let path = p.get("path").and_then(Value::as_str).unwrap_or("/");
        portals.insert(name.to_string(), format!("{scheme}://{host}{port}{path}"));
    }
    (portals, notes)
}

/// YAML text → the dict TrueNAS stores (aliases and merge keys expanded; JSON object keys are sorted).
pub(crate) fn parse_compose_yaml(text: &str) -> Result<Value, String> {
    let mut y: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    y.apply_merge().map_err(|e| e.to_string())?;
    Ok(yaml_to_json(y))
}

fn yaml_to_json(y: serde_yaml::Value) -> Value {
    match y {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(seq) => Value::Array(seq.into_iter().map(yaml_to_json).collect()),
        serde_yaml::Value::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        serde_yaml::Value::String(s) => s,
                        other => serde_yaml::to_string(&other).unwrap_or_default().trim().to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        serde_yaml::Value::Tagged(t) => yaml_to_json(t.value),
    }
}

/// `validate_payload` of the custom-app path: exactly one compose source, parseable, (25.10) a mapping with
/// `services`. `schema` is `app_create` or `app_update` (24.10/25.04 always say `app_create` for YAML errors).
/// `real_compose`: real Compose judges the document next (`compose_check`), so the 25.10 imitation of its verdict
/// is skipped.
pub(crate) fn compose_from_payload(
    version: SimVersion,
    data: &Value,
    schema: &str,
    real_compose: bool,
) -> Result<Value, Failure> {
    let dict = data.get("custom_compose_config").filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
    let text = data.get("custom_compose_config_string").and_then(Value::as_str).filter(|s| !s.is_empty());
    let yaml_schema = if version >= SimVersion::V25_10 { schema } else { "app_create" };
    let compose = match (dict, text) {
        (None, None) => {
            return Err(Failure::invalid(&format!("{schema}.custom_compose_config"), "This field is required", EINVAL))
        }
        (Some(_), Some(_)) => {
            return Err(Failure::invalid(
                &format!("{schema}.custom_compose_config_string"),
                "Only one of these fields should be provided",
                EINVAL,
            ))
        }
        (Some(d), None) => d.clone(),
        (None, Some(t)) => parse_compose_yaml(t).map_err(|_| {
            Failure::invalid(&format!("{yaml_schema}.custom_compose_config_string"), "Invalid YAML provided", EINVAL)
        })?,
    };
    if version >= SimVersion::V25_10 && !real_compose {
        let field = if text.is_some() { "custom_compose_config_string" } else { "custom_compose_config" };
        let problem = match compose.as_object() {
            None => Some("top-level object must be a mapping".to_string()),
            Some(o) => match o.get("services") {
                None => Some("no service selected".to_string()),
                Some(Value::Object(s)) => s
                    .iter()
                    .find(|(_, v)| !v.is_object() || (v.get("image").is_none() && v.get("build").is_none()))
                    .map(|(k, _)| format!("service \"{k}\" has neither an image nor a build context specified")),
                Some(_) => Some("services must be a mapping".to_string()),
            },
        };
        if let Some(p) = problem {
            return Err(Failure::validation(vec![FieldError::new(
                format!("{schema}.{field}"),
                format!("Invalid compose configuration: {p}"),
                EINVAL,
            )]));
        }
    }
    Ok(compose)
}

/// The whole log of a container that crashed on start (images containing `crash`): what it printed before it
/// died, ending with the fatal error and the exit code Docker Compose reports. The example database fails on a bad
/// setting in its configuration file, as PostgreSQL does; other images fail the same way in generic words.
pub(crate) fn crash_log(service: &str, image: &str) -> Vec<String> {
    let lines: &[&str] = if image.starts_with("postgres") {
        &[
            "PostgreSQL Database directory appears to contain a database; Skipping initialization",
            "LOG:  invalid value for parameter \"shared_buffers\": \"4GiB\"",
            "HINT:  Valid units for this parameter are \"B\", \"kB\", \"MB\", \"GB\", and \"TB\".",
            "FATAL:  configuration file \"/var/lib/postgresql/data/postgresql.conf\" contains errors",
        ]
    } else {
        &[
            "starting: reading configuration from /config/config.yml",
            "FATAL: /config/config.yml line 3: unknown setting \"listen_adress\" (did you mean \"listen_address\"?)",
        ]
    };
    let mut log: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    log.push(format!("{service} exited with code 1"));
    log
}

/// The example apps of mock mode: a running web app, a stopped media server, a crashed database.
pub(crate) fn example_apps(pool: &str) -> Vec<App> {
    let whoami = format!(
        r#"
services:
  whoami:
    image: traefik/whoami:v1.10
    restart: unless-stopped
    command: ["--port", "8080"]
    ports:
      - "8080:8080"
    healthcheck:
      test: ["CMD", "/whoami", "--help"]
      interval: 30s
x-portals:
  - name: Web UI
    scheme: http
    host: 0.0.0.0
    port: 8080
    path: /
x-notes: |
  A tiny web service that echoes the request. Data lives in /mnt/{pool}/apps/whoami.
"#
    );
    let jellyfin = format!(
        r#"
x-common: &common
  restart: unless-stopped
  environment:
    TZ: Etc/UTC
services:
  jellyfin:
    <<: *common
    image: jellyfin/jellyfin:10.10.3
    user: "568:568"
    ports:
      - "8096:8096"
      - "7359:7359/udp"
    devices:
      - /dev/dri:/dev/dri
    group_add:
      - "107"
    volumes:
      - /mnt/{pool}/apps/jellyfin/config:/config
      - /mnt/{pool}/apps/jellyfin/cache:/cache
      - /mnt/{pool}/media:/media:ro
x-portals:
  - name: Jellyfin
    scheme: http
    host: 0.0.0.0
    port: 8096
    path: /web
"#
    );
    let postgres = format!(
        r#"
services:
  db:
    image: postgres:17-crash-on-start
    restart: "no"
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
      POSTGRES_DB: app
    ports:
      - "127.0.0.1:5432:5432"
    volumes:
      - /mnt/{pool}/apps/postgres/data:/var/lib/postgresql/data
      - pgrun:/var/run/postgresql
volumes:
  pgrun: {{}}
"#
    );
    let mut apps = Vec::new();
    for (name, text, state) in [
        ("whoami", whoami, AppState::Running),
        ("jellyfin", jellyfin, AppState::Stopped),
        ("postgres", postgres, AppState::Crashed),
    ] {
        let compose = parse_compose_yaml(&text).expect("example compose parses");
        let mut app = App::new(name, compose);
        if state != AppState::Stopped {
            app.deploy();
            app.settle();
        }
        if name == "whoami" {
            app.outdated_images = vec!["traefik/whoami:v1.10".into()];
        }
        apps.push(app);
    }
    apps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_becomes_containers_ports_and_mounts() {
        let c = parse_compose_yaml(
            "services:\n  web:\n    image: nginx\n    ports: ['8080:80', '127.0.0.1:8443:443/tcp', '9000', {target: 53, published: 5353, protocol: udp}]\n    volumes: ['/mnt/tank/web:/usr/share/nginx/html:ro', 'data:/data']\n",
        )
        .unwrap();
        let mut app = App::new("web", c);
        app.deploy();
        app.settle();
        assert_eq!(app.state, AppState::Running);
        let e = app.entry(SimVersion::V25_10, "10.0.0.5", false);
        let w = &e["active_workloads"];
        assert_eq!(w["containers"], 1);
        assert_eq!(w["used_ports"].as_array().unwrap().len(), 3);
        assert_eq!(w["used_ports"][1]["host_ports"], json!([{"host_port": 8443, "host_ip": "127.0.0.1"}]));
        assert_eq!(w["volumes"][0]["type"], "bind");
        assert_eq!(w["volumes"][0]["mode"], "ro");
        assert_eq!(w["volumes"][1]["type"], "volume");
        assert_eq!(w["container_details"][0]["id"].as_str().unwrap().len(), 64);
        assert!(w.get("used_host_ips").is_some());
        assert!(app.entry(SimVersion::V25_04, "x", false)["active_workloads"].get("used_host_ips").is_none());
        assert!(app.entry(SimVersion::V24_10, "x", false)["active_workloads"].get("networks").is_none());
    }

    #[test]
    fn crash_convention_and_anchor_expansion() {
        let apps = example_apps("tank");
        let states: Vec<_> = apps.iter().map(|a| (a.name.as_str(), a.state)).collect();
        assert_eq!(
            states,
            vec![("whoami", AppState::Running), ("jellyfin", AppState::Stopped), ("postgres", AppState::Crashed)]
        );
        let jf = &apps[1].compose["services"]["jellyfin"];
        assert_eq!(jf["restart"], "unless-stopped");
        assert_eq!(jf["environment"]["TZ"], "Etc/UTC");
        assert_eq!(
            apps[0].entry(SimVersion::V25_04, "192.168.1.5", false)["portals"]["Web UI"],
            "http://192.168.1.5:8080/"
        );
    }

    #[test]
    fn payload_rules() {
        let v = SimVersion::V25_10;
        let cases = [
            (json!({}), Some("app_create.custom_compose_config")),
            (
                json!({"custom_compose_config": {"services": {"a": {"image": "x"}}}, "custom_compose_config_string": "a: 1"}),
                Some("app_create.custom_compose_config_string"),
            ),
            (
                json!({"custom_compose_config_string": "services: [unclosed"}),
                Some("app_create.custom_compose_config_string"),
            ),
            (json!({"custom_compose_config_string": "version: '3'"}), Some("app_create.custom_compose_config_string")),
            (json!({"custom_compose_config_string": "services:\n  a:\n    image: x\n"}), None),
        ];
        for (data, want) in cases {
            let got = compose_from_payload(v, &data, "app_create", false).err().map(|f| match f {
                Failure::Validation { errors, .. } => errors[0].attribute.clone().unwrap(),
                other => panic!("{other:?}"),
            });
            assert_eq!(got.as_deref(), want, "{data}");
        }
    }
}

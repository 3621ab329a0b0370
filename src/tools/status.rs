//! Read tools: the app list, one app's status, its compose, resource usage, and job status.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::failure::{apps_service_down, connect_to_app, fence, missing_app, read_failed};
use super::logs::{self, ContainerLog};
use super::{Outcome, Tools};
use crate::audit::Outcome as AuditOutcome;
use crate::clock::Clock;
use crate::mcp::tool::{CallContext, CancelToken};
use crate::truenas::apps::{AppEntry, AppState, Apps};
use crate::truenas::SubEvent;

/// The app list as `list_custom_apps` and the `truenas://apps` resource give it.
pub fn app_list(apps: &Apps, status_filter: &str, include_catalog: bool) -> Result<Value, String> {
    let docker = apps.docker_status().map_err(|e| format!("cannot read the apps service status: {e}"))?;
    if !docker.is_running() {
        return Err(apps_service_down(&docker.status, docker.description.as_deref()));
    }
    let all = apps.query_all().map_err(|e| format!("listing apps failed: {e}"))?;
    let wanted: Vec<Value> = all
        .iter()
        .filter(|a| include_catalog || a.custom_app)
        .filter(|a| status_filter == "all" || a.state.eq_ignore_ascii_case(status_filter))
        .map(summary)
        .collect();
    // The apps service is running, or this was an error: its status would say nothing.
    Ok(json!({"apps": wanted, "count": wanted.len()}))
}

/// The published ports, once each: TrueNAS lists a binding on every address once per address family (`0.0.0.0`
/// and `::`), which says the same as no `host_ip` at all; `protocol` only when it is not `tcp`.
fn ports(app: &AppEntry) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for p in app.workloads().used_ports {
        for h in &p.host_ports {
            let mut port = json!({"host_port": h.host_port, "container_port": p.container_port});
            if let Some(ip) = h.host_ip.as_deref().filter(|ip| !matches!(*ip, "" | "0.0.0.0" | "::")) {
                port["host_ip"] = json!(ip);
            }
            if let Some(protocol) = p.protocol.as_deref().filter(|p| *p != "tcp") {
                port["protocol"] = json!(protocol);
            }
            if !out.contains(&port) {
                out.push(port);
            }
        }
    }
    out
}

/// `host->container[/udp]`, once per port.
fn port_text(ports: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in ports {
        let udp = if p["protocol"] == "udp" { "/udp" } else { "" };
        let s = format!("{}->{}{udp}", p["host_port"], p["container_port"]);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// One app of the list. Every model reads this on every turn (Claude Code forwards `structuredContent`), so what
/// is usual is left out: no `ports` or `portals` when there are none, `custom_app` only for a catalogue app,
/// `image_updates_available` and `action_required` only when true.
fn summary(app: &AppEntry) -> Value {
    let mut item = json!({"name": app.name, "state": app.state, "containers": app.workloads().containers});
    let ports = ports(app);
    if !ports.is_empty() {
        item["ports"] = json!(ports);
    }
    if let Some(portals) = app.portals.as_ref().filter(|p| !p.is_empty()) {
        item["portals"] = json!(portals);
    }
    if !app.custom_app {
        item["custom_app"] = json!(false);
    }
    if app.image_updates_available || app.upgrade_available {
        item["image_updates_available"] = json!(true);
    }
    if app.action_required {
        item["action_required"] = json!(true);
    }
    item
}

/// What a 26.0 app that needs attention tells the user.
const ACTION_REQUIRED: &str = "needs attention (action_required): open it in the TrueNAS web UI, Apps";

/// `list_custom_apps` arguments (schema and defaults: `catalogue.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    status_filter: String,
    include_catalog_apps: bool,
}

pub fn list_custom_apps(tools: &Tools, args: ListArgs, _ctx: &CallContext) -> Outcome {
    let filter = args.status_filter.to_ascii_lowercase();
    let include_catalog = args.include_catalog_apps;
    let apps = match tools.apps() {
        Ok(a) => a,
        Err(e) => return read_failed("connecting to TrueNAS", &e),
    };
    let list = match app_list(&apps, &filter, include_catalog) {
        Ok(l) => l,
        Err(e) => return Outcome::error(e),
    };
    let items = list["apps"].as_array().cloned().unwrap_or_default();
    let kind = if include_catalog { "apps" } else { "Custom Apps" };
    let mut text = if items.is_empty() {
        let which = if filter == "all" { String::new() } else { format!(" in state {}", filter.to_uppercase()) };
        format!("No {kind}{which} on the NAS (the apps service is running).")
    } else {
        format!("{} {kind}:", items.len())
    };
    let mut lines = Vec::new();
    for a in &items {
        let ports = port_text(a["ports"].as_array().map(Vec::as_slice).unwrap_or_default());
        let mut line = format!(
            "- {} [{}] {} container(s)",
            a["name"].as_str().unwrap_or(""),
            a["state"].as_str().unwrap_or(""),
            a["containers"]
        );
        if !ports.is_empty() {
            line.push_str(&format!(", ports {}", ports.join(", ")));
        }
        if let Some(p) = a["portals"].as_object().filter(|p| !p.is_empty()) {
            let urls: Vec<&str> = p.values().filter_map(Value::as_str).collect();
            line.push_str(&format!(", portal {}", urls.join(" ")));
        }
        if a["image_updates_available"] == true {
            line.push_str(", image updates available (pull_custom_app_images)");
        }
        if a["action_required"] == true {
            line.push_str(&format!(", {ACTION_REQUIRED}"));
        }
        lines.push(line);
    }
    if !lines.is_empty() {
        // Portal URLs come from the apps' compose files.
        text.push('\n');
        text.push_str(&fence("the app list", &lines.join("\n")));
    }
    Outcome::ok(text, list)
}

fn crash_hint(app: &str) -> String {
    format!(
        "a container exited with an error: read the log lines above, fix the compose with update_custom_app \
         (get_custom_app_config shows the current one), or try redeploy_custom_app if the failure was transient \
         (e.g. a dependency was not ready); get_app_logs for {app} gives more lines"
    )
}

/// The arguments of the tools that read one app: `get_custom_app_status`, `get_custom_app_config`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppArgs {
    app_name: String,
}

pub fn get_custom_app_status(tools: &Tools, args: AppArgs, ctx: &CallContext) -> Outcome {
    let name = args.app_name.as_str();
    let (apps, app) = match connect_to_app(tools, name) {
        Ok(found) => found,
        Err(out) => return out,
    };
    let w = app.workloads();
    let containers: Vec<Value> = w
        .container_details
        .iter()
        .map(|c| json!({"service": c.service_name, "image": c.image, "state": c.state, "id": c.id}))
        .collect();
    let mounts: Vec<Value> = w
        .volumes
        .iter()
        .map(|m| json!({"source": m.source, "destination": m.destination, "mode": m.mode, "type": m.kind}))
        .collect();
    let state = app.app_state();
    let mut crash_logs: Vec<ContainerLog> = Vec::new();
    let hint = match state {
        AppState::Crashed => {
            crash_logs = logs::crashed_container_logs(&apps, &app, 30, tools.clock(), &ctx.cancel);
            Some(crash_hint(name))
        }
        AppState::Deploying => Some(
            "containers are starting or a healthcheck is not passing yet; call again in a moment, or read \
             get_app_logs if it stays DEPLOYING (an unhealthy container keeps an app DEPLOYING)"
                .to_string(),
        ),
        AppState::Stopped => Some(format!("the app is stopped; start_custom_app starts {name}")),
        _ => None,
    };
    let mut text = format!("App {} is {}", app.name, app.state);
    text.push_str(if app.custom_app { " (Custom App)." } else { " (catalogue app)." });
    if app.action_required {
        text.push_str(&format!(" It {ACTION_REQUIRED}."));
    }
    if let Some(v) = app.latest_app_version.as_deref().filter(|_| app.upgrade_available) {
        text.push_str(&format!(" Catalogue version {v} is available."));
    }
    let ports = ports(&app);
    if !ports.is_empty() {
        text.push_str(&format!("\nPorts: {}", port_text(&ports).join(", ")));
    }
    // Container and image names, portal URLs and notes all come from the app's compose: fenced as NAS data.
    let mut reported: Vec<String> =
        w.container_details.iter().map(|c| format!("- {} ({}): {}", c.service_name, c.image, c.state)).collect();
    if let Some(portals) = app.portals.as_ref().filter(|p| !p.is_empty()) {
        let urls: Vec<String> = portals.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        reported.push(format!("Portals: {}", urls.join(", ")));
    }
    if let Some(n) = app.notes.as_deref().filter(|n| !n.is_empty()) {
        reported.push(format!("Notes: {n}"));
    }
    if !reported.is_empty() {
        text.push('\n');
        text.push_str(&fence(&format!("containers, portals and notes of {}", app.name), &reported.join("\n")));
    }
    text.push_str(&logs::render(&crash_logs));
    if let Some(h) = &hint {
        text.push_str(&format!("\nHint: {h}"));
    }
    let structured = json!({
        "name": app.name,
        "state": app.state,
        "custom_app": app.custom_app,
        "containers": containers,
        "ports": ports,
        "mounts": mounts,
        "portals": app.portals.clone().unwrap_or_default(),
        "notes": app.notes,
        "image_updates_available": app.image_updates_available || app.upgrade_available,
        "action_required": app.action_required,
        "crash_logs": logs::to_json(&crash_logs),
        "hint": hint,
    });
    Outcome::ok(text, structured)
}

/// The deployed compose as YAML; masked unless `reveal`.
pub fn deployed_compose_yaml(apps: &Apps, name: &str, reveal: bool) -> Result<String, String> {
    let config = apps.config(name).map_err(|e| format!("reading the compose of '{name}' failed: {e}"))?;
    let shown = if reveal { config } else { crate::compose::mask_secrets(&config) };
    serde_yaml::to_string(&shown).map_err(|e| format!("cannot render the compose of '{name}' as YAML: {e}"))
}

pub fn get_custom_app_config(tools: &Tools, args: AppArgs, _ctx: &CallContext) -> Outcome {
    let name = args.app_name.as_str();
    // The operator's setting alone decides: a model cannot ask for secrets.
    let reveal = tools.config().reveal_secrets;
    let apps = match tools.apps() {
        Ok(a) => a,
        Err(e) => return read_failed("connecting to TrueNAS", &e),
    };
    match apps.get(name) {
        Ok(Some(a)) if !a.custom_app => {
            return Outcome::error(format!(
                "'{name}' is a catalogue app, not a Custom App: its configuration is managed in the TrueNAS web UI"
            ))
        }
        Ok(Some(_)) => {}
        Ok(None) => return missing_app(&apps, name),
        Err(e) => return read_failed(&format!("reading app '{name}'"), &e),
    }
    match deployed_compose_yaml(&apps, name, reveal) {
        Ok(yaml) => {
            let note = if reveal {
                " (secret values in clear: the operator set TRUENAS_REVEAL_SECRETS)"
            } else {
                " (secret-looking values masked as ***; update_custom_app keeps the deployed value of a value sent \
                 back masked)"
            };
            let out = Outcome::ok(
                format!("Deployed compose of {name}{note}:\n{}", fence(&format!("stored compose of {name}"), &yaml)),
                json!({"app_name": name, "compose_yaml": yaml, "secrets_masked": !reveal}),
            );
            // Every reveal is audited (the gate writes the record).
            if reveal {
                out.audit(AuditOutcome::Succeeded).detail("secrets revealed")
            } else {
                out
            }
        }
        Err(e) => Outcome::error(e),
    }
}

/// How long `get_app_stats` waits for a sample, and how often it looks at the cancel token and the clock meanwhile.
const STATS_DEADLINE: Duration = Duration::from_secs(15);
const STATS_POLL: Duration = Duration::from_millis(250);

/// One `app.stats` event (a list of per-app samples); the subscription ends when this returns. The deadline is
/// measured on `clock`.
#[allow(clippy::result_large_err)] // the error is the call's whole answer, built once on a cold path
fn first_stats_sample(apps: &Apps, clock: &dyn Clock, cancel: &CancelToken) -> Result<Value, Outcome> {
    let sub = apps.stats(2).map_err(|e| read_failed("subscribing to app.stats", &e))?;
    let deadline = clock.now() + STATS_DEADLINE;
    let poll = clock.max_real_wait().map_or(STATS_POLL, |most| STATS_POLL.min(most));
    loop {
        if cancel.is_cancelled() {
            return Err(Outcome::error("cancelled before a sample arrived"));
        }
        if clock.now() >= deadline {
            return Err(Outcome::error(
                "no app.stats sample arrived within 15 s; try again (test_connection checks the NAS)",
            ));
        }
        match sub.recv_timeout(poll) {
            Some(SubEvent::Added { fields, .. } | SubEvent::Changed { fields, .. }) => return Ok(fields),
            Some(SubEvent::Ended(err)) => {
                let why = err.map(|e| e.to_string()).unwrap_or_else(|| "the stream ended".into());
                return Err(Outcome::error(format!("app.stats failed: {why}")));
            }
            _ => {}
        }
    }
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// `get_app_stats` arguments: optionally one app.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    app_name: Option<String>,
}

pub fn get_app_stats(tools: &Tools, args: StatsArgs, ctx: &CallContext) -> Outcome {
    let only = args.app_name;
    let apps = match tools.apps() {
        Ok(a) => a,
        Err(e) => return read_failed("connecting to TrueNAS", &e),
    };
    if let Ok(d) = apps.docker_status() {
        if !d.is_running() {
            return Outcome::error(apps_service_down(&d.status, d.description.as_deref()));
        }
    }
    let sample = match first_stats_sample(&apps, tools.clock(), &ctx.cancel) {
        Ok(s) => s,
        Err(out) => return out,
    };
    let rows: Vec<Value> = sample
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| only.as_deref().map_or(true, |n| s["app_name"] == n))
        .map(|s| {
            let nets = s["networks"].as_array().cloned().unwrap_or_default();
            json!({
                "app_name": s["app_name"].as_str().unwrap_or(""),
                "cpu_percent": number(&s["cpu_usage"]),
                "memory_bytes": number(&s["memory"]),
                "network_rx_bytes_per_second": nets.iter().fold(0.0, |t, n| t + number(&n["rx_bytes"])),
                "network_tx_bytes_per_second": nets.iter().fold(0.0, |t, n| t + number(&n["tx_bytes"])),
                "block_read_bytes": number(&s["blkio"]["read"]),
                "block_write_bytes": number(&s["blkio"]["write"]),
            })
        })
        .collect();
    if let Some(n) = &only {
        if rows.is_empty() {
            return Outcome::error(format!(
                "no statistics for app '{n}': it does not exist (list_custom_apps shows the apps)"
            ));
        }
    }
    let mut text = String::from("Resource usage (one sample):");
    for r in &rows {
        text.push_str(&format!(
            "\n- {}: CPU {:.1}%, memory {:.1} MiB, net rx {:.0} B/s tx {:.0} B/s, block read {:.0} B write {:.0} B",
            r["app_name"].as_str().unwrap_or(""),
            number(&r["cpu_percent"]),
            number(&r["memory_bytes"]) / 1_048_576.0,
            number(&r["network_rx_bytes_per_second"]),
            number(&r["network_tx_bytes_per_second"]),
            number(&r["block_read_bytes"]),
            number(&r["block_write_bytes"]),
        ));
    }
    Outcome::ok(text, json!({"apps": rows}))
}

/// `get_job_status` arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobArgs {
    job_id: i64,
}

pub fn get_job_status(tools: &Tools, args: JobArgs, _ctx: &CallContext) -> Outcome {
    let id = args.job_id;
    let job = match tools.client().job(id) {
        Ok(j) => j,
        Err(e) if e.is_not_found() => {
            return Outcome::error(format!(
                "job {id} is unknown to TrueNAS: job ids are reset when the middleware restarts and finished jobs \
                 are forgotten after a while; check the app with get_custom_app_status instead"
            ))
        }
        Err(e) => return read_failed(&format!("reading job {id}"), &e),
    };
    let state = job["state"].as_str().unwrap_or("UNKNOWN").to_string();
    let finished = matches!(state.as_str(), "SUCCESS" | "FAILED" | "ABORTED");
    let error = job["error"].as_str().map(str::to_string);
    let structured = json!({
        "job_id": id,
        "method": job["method"].as_str(),
        "state": state,
        "finished": finished,
        "progress_percent": job["progress"]["percent"].as_f64(),
        "progress_description": job["progress"]["description"].as_str(),
        "result": job.get("result").cloned().unwrap_or(Value::Null),
        "error": error,
    });
    let mut text = format!("Job {id} ({}) is {state}", job["method"].as_str().unwrap_or("unknown method"));
    if let Some(p) = job["progress"]["percent"].as_f64() {
        text.push_str(&format!(", {p:.0}%"));
    }
    // Progress descriptions and errors carry Docker's output (image names, container messages).
    let mut reported = Vec::new();
    if let Some(d) = job["progress"]["description"].as_str().filter(|d| !d.is_empty()) {
        reported.push(format!("Progress: {d}"));
    }
    if let Some(e) = &error {
        reported.push(format!("Error: {e}"));
    }
    if !reported.is_empty() {
        text.push('\n');
        text.push_str(&fence(&format!("progress and error of job {id}"), &reported.join("\n")));
    }
    Outcome::ok(text, structured)
}

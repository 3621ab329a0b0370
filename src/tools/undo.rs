//! Restore points and rollback: before a protected change the deployed compose and a ZFS snapshot of every dataset
//! holding the app's data are recorded on the NAS; `list_app_restore_points` shows them and
//! `rollback_custom_app` puts an app (even a deleted one) back.
//!
//! A restore point is a set of snapshots sharing one name, `truenas-mcp-<app>-<UTC time>`: one of each data
//! dataset, plus one of `<ix-apps>/app_configs` that carries the metadata as ZFS user properties (app, change,
//! time, datasets, and the compose in chunks). Why there: see ARCHITECTURE.md, "Restore points".

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};

use super::deploy::comparable_yaml;
use super::diff;
use super::failure::{change_failed, fence, read_failed};
use super::job::run_job;
use super::lifecycle::{confirm_with_user, Confirmation};
use super::logs::{self, ContainerLog};
use super::settle::{self, Settled};
use super::{Outcome, Tools};
use crate::audit::Outcome as AuditOutcome;
use crate::compose;
use crate::mcp::tool::CallContext;
use crate::truenas::apps::{AppJob, AppState, Apps};
use crate::truenas::storage::{unavailable, Dataset, Snapshot, Storage};

/// The prefix of every snapshot this server takes.
pub const PREFIX: &str = "truenas-mcp-";
const KEY_APP: &str = "truenas-mcp:app";
const KEY_CHANGE: &str = "truenas-mcp:change";
const KEY_TIME: &str = "truenas-mcp:time";
const KEY_DATASETS: &str = "truenas-mcp:datasets";
const KEY_COMPOSE: &str = "truenas-mcp:compose-";
/// ZFS limits a user property value to 8 KiB; the compose is split below that.
const CHUNK: usize = 4000;
/// How long a rollback waits for the app to be RUNNING again.
const ROLLBACK_WAIT: Duration = Duration::from_secs(120);

/// A restore point read back from the NAS.
pub struct RestorePoint {
    pub name: String,
    pub time: String,
    pub change: String,
    /// The deployed compose as JSON text, secrets included (never shown unmasked).
    pub compose: String,
    pub datasets: Vec<String>,
    pub createtxg: u64,
}

impl RestorePoint {
    fn compose_value(&self) -> Value {
        serde_json::from_str(&self.compose).unwrap_or(Value::Null)
    }
}

/// What a protected change reports about its restore point.
pub struct Protected {
    pub summary: Value,
    pub text: String,
}

/// The dataset that carries restore-point metadata: `<pool>/ix-apps/app_configs` (no app can write it).
fn carrier(apps: &Apps) -> Result<String, String> {
    match apps.docker_config() {
        Ok(c) => c
            .dataset
            .map(|d| format!("{d}/app_configs"))
            .ok_or_else(|| "the apps service has no pool, so there is nowhere to keep a restore point".to_string()),
        Err(e) => Err(format!("reading the apps service configuration failed: {e}")),
    }
}

/// The dataset mounted at or above `path` (the longest mountpoint), and whether `path` is that mountpoint.
fn dataset_for<'a>(datasets: &'a [Dataset], path: &str) -> Option<(&'a Dataset, bool)> {
    datasets
        .iter()
        .filter_map(|d| d.mountpoint.as_deref().map(|m| (d, m)))
        .filter(|(_, m)| path == *m || path.starts_with(&format!("{}/", m.trim_end_matches('/'))))
        .max_by_key(|(_, m)| m.len())
        .map(|(d, m)| (d, m == path))
}

/// Absolute host paths bound into the compose's services (`- /data` alone is an anonymous volume, not a bind).
pub fn bind_sources(compose: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for svc in compose.get("services").and_then(Value::as_object).into_iter().flat_map(|s| s.values()) {
        for v in svc.get("volumes").and_then(Value::as_array).into_iter().flatten() {
            let source = match v {
                Value::String(s) => s.split_once(':').map(|(source, _)| source.to_string()),
                Value::Object(o) => o.get("source").and_then(Value::as_str).map(str::to_string),
                _ => None,
            };
            if let Some(s) = source.filter(|s| s.starts_with('/')) {
                let s = s.trim_end_matches('/').to_string();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// The datasets holding the app's data (its ix-volumes and each bind's dataset) and notes on what that means.
fn data_datasets(datasets: &[Dataset], app: &str, compose: &Value, ix_apps: &str) -> (Vec<String>, Vec<String>) {
    let mut chosen: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let mounts = format!("{ix_apps}/app_mounts/{app}");
    for d in datasets.iter().filter(|d| d.name == mounts || d.name.starts_with(&format!("{mounts}/"))) {
        chosen.push(d.name.clone());
    }
    let ix_mount = datasets.iter().find(|d| d.name == ix_apps).and_then(|d| d.mountpoint.clone());
    for source in bind_sources(compose) {
        if ix_mount.as_deref().is_some_and(|m| source.starts_with(m)) && !source.contains("/app_mounts/") {
            notes.push(format!("{source} lives in the apps service's own datasets: not snapshotted"));
            continue;
        }
        match dataset_for(datasets, &source) {
            Some((d, true)) => {
                if !chosen.contains(&d.name) {
                    chosen.push(d.name.clone());
                }
            }
            Some((d, false)) => {
                if !chosen.contains(&d.name) {
                    chosen.push(d.name.clone());
                }
                notes.push(format!(
                    "{source} is a directory inside dataset {}: the snapshot covers all of {} (and rolling back \
                     rolls back all of it)",
                    d.name, d.name
                ));
            }
            None => notes.push(format!("{source} is not on a ZFS dataset: not snapshotted")),
        }
    }
    (chosen, notes)
}

fn snapshot_name(app: &str, time: &str) -> String {
    format!("{PREFIX}{app}-{}", time.replace(['-', ':'], ""))
}

/// Record a restore point of `app` before `change` writes anything: the deployed compose and a held snapshot of
/// each data dataset. `Err`: the answer to give (nothing was changed).
#[allow(clippy::result_large_err)] // the error is the call's whole answer, built once on a cold path
pub fn protect(apps: &Apps, app: &str, change: &str) -> Result<Protected, Outcome> {
    record(apps, app, change).map_err(|why| {
        Outcome::error(format!(
            "{change} of '{app}' was not started: no restore point could be recorded ({why}); nothing was changed. \
             Pass snapshot: false to make the change without a restore point."
        ))
        .audit(AuditOutcome::Failed)
    })
}

fn record(apps: &Apps, app: &str, change: &str) -> Result<Protected, String> {
    let storage = Storage::new(apps.client(), apps.info());
    let fail = |what: &str, e: crate::truenas::TnError| {
        unavailable(&e, "snapshots", apps.info()).unwrap_or_else(|| format!("{what}: {e}"))
    };
    let carrier = carrier(apps)?;
    let ix_apps = carrier.trim_end_matches("/app_configs").to_string();
    let compose = apps.config(app).map_err(|e| fail("reading the deployed compose", e))?;
    let datasets = storage.datasets().map_err(|e| fail("listing datasets", e))?;
    let (data, notes) = data_datasets(&datasets, app, &compose, &ix_apps);
    // One time for the name and the recorded time, so they always agree.
    let time = crate::clock::rfc3339(SystemTime::now());
    let name = snapshot_name(app, &time);
    let text = serde_json::to_string(&compose).map_err(|e| e.to_string())?;
    let mut props = json!({
        KEY_APP: app, KEY_CHANGE: change, KEY_TIME: time,
        KEY_DATASETS: data.join(","),
    });
    let chars: Vec<char> = text.chars().collect();
    for (i, chunk) in chars.chunks(CHUNK).enumerate() {
        props[format!("{KEY_COMPOSE}{i}")] = json!(chunk.iter().collect::<String>());
    }
    let mut taken = Vec::new();
    let mut held_everywhere = true;
    for dataset in data.iter().chain(std::iter::once(&carrier)) {
        let properties = if *dataset == carrier { props.clone() } else { json!({}) };
        let snap = storage
            .create_snapshot(dataset, &name, properties)
            .map_err(|e| fail(&format!("snapshotting {dataset}"), e))?;
        // A hold keeps a retention task from destroying the snapshot under us; without one it is still a restore
        // point, just not a protected one.
        if storage.hold(&snap.id).is_err() {
            held_everywhere = false;
        }
        taken.push(snap.id);
    }
    let data_ids: Vec<&String> = taken.iter().filter(|id| !id.starts_with(&format!("{carrier}@"))).collect();
    let mut text = if data_ids.is_empty() {
        format!("Restore point {name}: the compose was saved; the app has no data datasets to snapshot.")
    } else {
        format!(
            "Restore point {name}: the compose was saved and {} snapshotted{}.",
            data_ids.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            if held_everywhere { " (held)" } else { " (not held: this NAS refused the hold)" }
        )
    };
    for n in &notes {
        text.push_str(&format!(" Note: {n}."));
    }
    let summary = json!({"name": name, "snapshots": data_ids, "held": held_everywhere, "notes": notes});
    Ok(Protected { summary, text })
}

/// The restore points of `app`, newest first, and every snapshot this server took (for space and newer-than).
fn restore_points(
    storage: &Storage,
    carrier: &str,
    app: &str,
) -> Result<(Vec<RestorePoint>, Vec<Snapshot>), crate::truenas::TnError> {
    let all = storage.snapshots(json!([["snapshot_name", "^", PREFIX]]))?;
    let mut points: Vec<RestorePoint> = all
        .iter()
        .filter(|s| s.dataset == carrier && s.property(KEY_APP) == Some(app))
        .map(|s| {
            let mut compose = String::new();
            for i in 0.. {
                match s.property(&format!("{KEY_COMPOSE}{i}")) {
                    Some(c) => compose.push_str(c),
                    None => break,
                }
            }
            RestorePoint {
                name: s.snapshot_name.clone(),
                time: s.property(KEY_TIME).unwrap_or_default().to_string(),
                change: s.property(KEY_CHANGE).unwrap_or_default().to_string(),
                compose,
                datasets: s
                    .property(KEY_DATASETS)
                    .unwrap_or_default()
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect(),
                createtxg: s.createtxg,
            }
        })
        .collect();
    points.sort_by(|a, b| b.createtxg.cmp(&a.createtxg).then(b.name.cmp(&a.name)));
    Ok((points, all))
}

#[allow(clippy::result_large_err)] // the error is the call's whole answer, built once on a cold path
fn connect(tools: &Tools) -> Result<(Apps, Storage, String), Outcome> {
    let apps = tools.apps().map_err(|e| read_failed("connecting to TrueNAS", &e))?;
    let storage = Storage::new(apps.client(), apps.info());
    let carrier = carrier(&apps).map_err(Outcome::error)?;
    Ok((apps, storage, carrier))
}

fn snapshot_failure(apps: &Apps, e: &crate::truenas::TnError) -> Outcome {
    match unavailable(e, "restore points (ZFS snapshots)", apps.info()) {
        Some(s) => Outcome::error(s),
        None => read_failed("reading the restore points", e),
    }
}

/// `list_app_restore_points` arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    app_name: String,
}

pub fn list(tools: &Tools, args: ListArgs, _ctx: &CallContext) -> Outcome {
    let name = args.app_name.as_str();
    let (apps, storage, carrier) = match connect(tools) {
        Ok(c) => c,
        Err(out) => return out,
    };
    let (points, all) = match restore_points(&storage, &carrier, name) {
        Ok(p) => p,
        Err(e) => return snapshot_failure(&apps, &e),
    };
    let today = match apps.get(name) {
        Ok(Some(_)) => apps.config(name).ok(),
        _ => None,
    };
    let mut text = match (&today, points.len()) {
        (_, 0) => format!("'{name}' has no restore points."),
        (Some(_), n) => format!("'{name}' has {n} restore point(s), newest first:"),
        (None, n) => format!("'{name}' does not exist now; {n} restore point(s) can recreate it, newest first:"),
    };
    let mut items = Vec::new();
    for p in &points {
        let snaps: Vec<Value> = p
            .datasets
            .iter()
            .map(|d| {
                let id = format!("{d}@{}", p.name);
                let found = all.iter().find(|s| s.id == id);
                json!({"id": id, "used_bytes": found.map(|s| s.used), "exists": found.is_some()})
            })
            .collect();
        let diff = match &today {
            Some(now) => {
                let d = diff::unified(
                    &comparable_yaml(&p.compose_value()),
                    &comparable_yaml(now),
                    "restore point",
                    "today",
                );
                if d.is_empty() {
                    "(no changes)\n".to_string()
                } else {
                    d
                }
            }
            None => "(the app does not exist today)\n".to_string(),
        };
        text.push_str(&format!("\n- {} ({}, before {}): {} snapshot(s)", p.name, p.time, p.change, snaps.len()));
        for s in &snaps {
            match s["used_bytes"].as_u64() {
                Some(u) => text.push_str(&format!("\n  {} uses {u} bytes", s["id"].as_str().unwrap_or_default())),
                None => text.push_str(&format!("\n  {} is gone", s["id"].as_str().unwrap_or_default())),
            }
        }
        text.push_str(&format!("\n{}", fence(&format!("compose diff, {} → today", p.name), &diff)));
        items.push(json!({"name": p.name, "time": p.time, "change": p.change, "diff": diff, "snapshots": snaps}));
    }
    Outcome::ok(text, json!({"app_name": name, "exists": today.is_some(), "restore_points": items}))
}

/// `rollback_custom_app` arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackArgs {
    app_name: String,
    restore_point: Option<String>,
    include_data: bool,
    confirm: bool,
}

pub fn rollback(tools: &Tools, args: RollbackArgs, ctx: &CallContext) -> Outcome {
    let name = args.app_name.as_str();
    let (apps, storage, carrier) = match connect(tools) {
        Ok(c) => c,
        Err(out) => return out.audit(AuditOutcome::Failed),
    };
    let (points, all) = match restore_points(&storage, &carrier, name) {
        Ok(p) => p,
        Err(e) => return snapshot_failure(&apps, &e).audit(AuditOutcome::Failed),
    };
    let point = match &args.restore_point {
        Some(wanted) => points.iter().find(|p| &p.name == wanted),
        None => points.first(),
    };
    let Some(point) = point else {
        let known: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
        return Outcome::error(format!(
            "'{name}' has no restore point{}; list_app_restore_points shows them ({})",
            args.restore_point.as_deref().map(|r| format!(" named {r}")).unwrap_or_default(),
            if known.is_empty() { "none".into() } else { known.join(", ") }
        ))
        .audit(AuditOutcome::Refused);
    };
    let existing = match apps.get(name) {
        Ok(e) => e,
        Err(e) => return read_failed(&format!("reading '{name}'"), &e).audit(AuditOutcome::Failed),
    };
    let datasets = storage.datasets().unwrap_or_default();
    let gone: Vec<&String> = point.datasets.iter().filter(|d| !datasets.iter().any(|x| &x.name == *d)).collect();
    if !gone.is_empty() {
        return Outcome::error(format!(
            "restore point {} cannot be used: its dataset(s) {} no longer exist",
            point.name,
            gone.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))
        .audit(AuditOutcome::Refused);
    }
    // What a data rollback loses: the newer snapshots of each dataset (destroyed) and what was written since.
    let mut lost = Vec::new();
    let mut plan = Vec::new();
    if args.include_data {
        for d in &point.datasets {
            let id = format!("{d}@{}", point.name);
            let Some(snap) = all.iter().find(|s| s.id == id) else {
                return Outcome::error(format!("the snapshot {id} of restore point {} is gone", point.name))
                    .audit(AuditOutcome::Refused);
            };
            let newer: Vec<Snapshot> = match storage.snapshots(json!([["dataset", "=", d]])) {
                Ok(s) => s.into_iter().filter(|s| s.createtxg > snap.createtxg).collect(),
                Err(e) => return snapshot_failure(&apps, &e).audit(AuditOutcome::Failed),
            };
            lost.push(format!(
                "{d}: everything written since {} ({} bytes changed or deleted since)",
                point.time, snap.used
            ));
            for n in &newer {
                lost.push(format!("{d}: the newer snapshot {} (destroyed)", n.id));
            }
            plan.push((id, newer));
        }
    }
    let action = if existing.is_some() { "put back" } else { "recreated" };
    let summary = format!(
        "Rolling back '{name}' to restore point {} ({}, before {}): the compose is {action}{}.{}",
        point.name,
        point.time,
        point.change,
        if args.include_data { format!(" and {} dataset(s) rolled back", plan.len()) } else { String::new() },
        if lost.is_empty() { String::new() } else { format!("\nThis loses:\n- {}", lost.join("\n- ")) }
    );
    match confirm_with_user(ctx, "confirm_rollback", &format!("{summary}\n\nRoll back '{name}'?"), &format!("Roll back {name}"), args.confirm) {
        Confirmation::Confirmed => {}
        Confirmation::Declined => {
            return Outcome::ok(
                format!("Nothing was rolled back: the user did not confirm rolling back '{name}'."),
                json!({"status": "declined", "app_name": name, "restore_point": point.name, "lost": lost}),
            )
            .audit(AuditOutcome::Declined)
        }
        Confirmation::Asking(out) => return out,
        Confirmation::Required => {
            return Outcome::error_with(
                format!("{summary}\n\nNothing was changed. Ask the user to confirm, then call rollback_custom_app again with confirm: true."),
                json!({"status": "confirmation_required", "app_name": name, "restore_point": point.name, "lost": lost}),
            )
            .audit(AuditOutcome::Refused)
            .detail("confirmation required")
        }
    }
    let was_running = existing.as_ref().is_some_and(|a| a.app_state() != AppState::Stopped);
    let mut job_id = None;
    if args.include_data && was_running {
        let ran = run_job(&apps, &AppJob::stop(name), ctx, (0.0, 20.0), None);
        job_id = ran.job_id;
        if let Err(e) = ran.result {
            return change_failed(job_id, &e, &format!("stopping '{name}' before the data rollback"), name);
        }
    }
    for (id, newer) in &plan {
        for n in newer.iter().filter(|n| n.snapshot_name.starts_with(PREFIX) && n.held) {
            let _ = storage.release(&n.id);
        }
        if let Err(e) = storage.rollback(id, !newer.is_empty()) {
            return change_failed(job_id, &e, &format!("rolling back {id}"), name);
        }
        // A restore point whose data snapshots were destroyed is gone too: drop its metadata snapshot.
        for n in newer.iter().filter(|n| n.snapshot_name.starts_with(PREFIX)) {
            let meta = format!("{carrier}@{}", n.snapshot_name);
            let _ = storage.release(&meta);
            let _ = storage.delete_snapshot(&meta);
        }
    }
    let compose_text = &point.compose;
    let restored = match &existing {
        Some(_) if apps.config(name).ok().as_ref() == Some(&point.compose_value()) => None,
        Some(_) => Some(compose::update_payload(name, compose_text).map(|p| AppJob::update(name, p))),
        None => Some(compose::create_payload(name, compose_text).map(AppJob::create)),
    };
    if let Some(job) = restored {
        let job = match job {
            Ok(j) => j,
            Err(f) => {
                return Outcome::error(format!("the stored compose cannot be sent: {}", f.message))
                    .audit(AuditOutcome::Failed)
            }
        };
        let ran = run_job(&apps, &job, ctx, (20.0, 70.0), None);
        job_id = ran.job_id.or(job_id);
        if let Err(e) = ran.result {
            return change_failed(job_id, &e, &format!("restoring the compose of '{name}'"), name);
        }
    }
    if args.include_data && was_running {
        let ran = run_job(&apps, &AppJob::start(name), ctx, (70.0, 80.0), None);
        if let Err(e) = ran.result {
            return change_failed(ran.job_id, &e, &format!("starting '{name}' after the rollback"), name);
        }
    }
    let stays_stopped = existing.as_ref().is_some_and(|a| a.app_state() == AppState::Stopped);
    let (state, crash_logs) = if stays_stopped {
        (Some("STOPPED".to_string()), Vec::new())
    } else {
        settled(&apps, name, ctx, tools, ROLLBACK_WAIT)
    };
    let message = format!(
        "Rolled back '{name}' to restore point {}: the compose was {action}{}; it is now {}.",
        point.name,
        if args.include_data { format!(" and {} dataset(s) were rolled back", plan.len()) } else { String::new() },
        state.as_deref().unwrap_or("unknown")
    );
    let lost_text = if lost.is_empty() { String::new() } else { format!("\nLost:\n- {}", lost.join("\n- ")) };
    let mut out = json!({"status": "rolled_back", "app_name": name, "restore_point": point.name, "state": state,
        "data_rolled_back": args.include_data, "lost": lost, "job_id": job_id, "message": message});
    if !crash_logs.is_empty() {
        out["crash_logs"] = logs::to_json(&crash_logs);
        return Outcome::error_with(format!("{message}{lost_text}{}", logs::render(&crash_logs)), out)
            .job(job_id)
            .detail("rolled back, but the app crashed");
    }
    Outcome::ok(format!("{message}{lost_text}"), out).job(job_id)
}

/// Wait until the app is RUNNING or CRASHED (with the crashed containers' logs), or `timeout` passes.
pub fn settled(
    apps: &Apps,
    name: &str,
    ctx: &CallContext,
    tools: &Tools,
    timeout: Duration,
) -> (Option<String>, Vec<ContainerLog>) {
    match settle::wait(apps, name, ctx, tools.clock(), timeout, (80.0, 99.0)) {
        Settled::Running(a) => (Some(a.state), Vec::new()),
        Settled::Crashed(a) => {
            let crash = logs::crashed_container_logs(apps, &a, 30, tools.clock(), &ctx.cancel);
            (Some(a.state), crash)
        }
        Settled::Unsettled { state, .. } => (Some(state), Vec::new()),
        Settled::Failed(_) => (None, Vec::new()),
    }
}

/// Put the compose of `point` back (used by `update_app_images` after a failed update); the job id or why not.
pub fn restore_compose(apps: &Apps, name: &str, point_name: &str, ctx: &CallContext) -> Result<Option<i64>, String> {
    let storage = Storage::new(apps.client(), apps.info());
    let carrier = carrier(apps)?;
    let (points, _) = restore_points(&storage, &carrier, name).map_err(|e| e.to_string())?;
    let point = points.iter().find(|p| p.name == point_name).ok_or("the restore point is gone")?;
    let payload = compose::update_payload(name, &point.compose).map_err(|f| f.message)?;
    let ran = run_job(apps, &AppJob::update(name, payload), ctx, (85.0, 95.0), None);
    ran.result.map(|_| ran.job_id).map_err(|e| e.to_string())
}

/// Roll every data dataset of `point_name` back (the app must be stopped); the rolled-back snapshot ids.
pub fn restore_data(apps: &Apps, name: &str, point_name: &str) -> Result<Vec<String>, String> {
    let storage = Storage::new(apps.client(), apps.info());
    let carrier = carrier(apps)?;
    let (points, _) = restore_points(&storage, &carrier, name).map_err(|e| e.to_string())?;
    let point = points.iter().find(|p| p.name == point_name).ok_or("the restore point is gone")?;
    let mut done = Vec::new();
    for d in &point.datasets {
        let id = format!("{d}@{}", point.name);
        storage.rollback(&id, false).map_err(|e| format!("rolling back {id}: {e}"))?;
        done.push(id);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(name: &str, mp: &str) -> Dataset {
        Dataset { name: name.into(), mountpoint: Some(mp.into()), used: 0 }
    }

    #[test]
    fn bind_sources_are_absolute_host_paths_and_never_anonymous_volumes() {
        let compose = json!({"services": {
            "web": {"volumes": ["/mnt/tank/web:/usr/share/nginx/html:ro", "/cache", "named:/data", "./rel:/x"]},
            "db": {"volumes": [{"type": "bind", "source": "/mnt/tank/db/", "target": "/var/lib/db"},
                               "/mnt/tank/web:/again"]},
        }});
        let mut found = bind_sources(&compose);
        found.sort();
        assert_eq!(found, ["/mnt/tank/db", "/mnt/tank/web"]);
    }

    #[test]
    fn binds_resolve_to_their_datasets_and_directories_say_so() {
        let all = [
            ds("tank", "/mnt/tank"),
            ds("tank/apps", "/mnt/tank/apps"),
            ds("tank/apps/db", "/mnt/tank/apps/db"),
            ds("tank/ix-apps", "/mnt/.ix-apps"),
            ds("tank/ix-apps/app_mounts/web", "/mnt/.ix-apps/app_mounts/web"),
        ];
        let compose = json!({"services": {"a": {"volumes": [
            "/mnt/tank/apps/db:/db", {"type": "bind", "source": "/mnt/tank/apps/web/html", "target": "/h"},
            "/etc/localtime:/etc/localtime:ro", "/mnt/.ix-apps/docker/volumes/x:/x", "named:/n"]}}});
        let (chosen, notes) = data_datasets(&all, "web", &compose, "tank/ix-apps");
        assert_eq!(chosen, ["tank/ix-apps/app_mounts/web", "tank/apps/db", "tank/apps"]);
        assert!(notes.iter().any(|n| n.contains("directory inside dataset tank/apps")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("/etc/localtime is not on a ZFS dataset")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("apps service's own datasets")), "{notes:?}");
    }
}

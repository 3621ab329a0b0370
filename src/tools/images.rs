//! Image updates: `check_app_updates` reads what the NAS knows (`app.query`'s update flags and
//! `app.outdated_docker_images`); `update_app_images` records a restore point, pulls, redeploys, waits for health
//! and, when the app does not come back healthy, rolls back to the restore point by itself.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::failure::{change_failed, connect_to_app, read_failed};
use super::job::run_job;
use super::lifecycle::{confirm_with_user, Confirmation};
use super::logs;
use super::undo;
use super::{Outcome, Tools};
use crate::audit::Outcome as AuditOutcome;
use crate::mcp::tool::CallContext;
use crate::truenas::apps::AppJob;

/// `check_app_updates` arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckArgs {
    app_name: Option<String>,
}

pub fn check(tools: &Tools, args: CheckArgs, _ctx: &CallContext) -> Outcome {
    let apps = match tools.apps() {
        Ok(a) => a,
        Err(e) => return read_failed("connecting to TrueNAS", &e),
    };
    let entries = match &args.app_name {
        Some(name) => match connect_to_app(tools, name) {
            Ok((_, app)) => vec![app],
            Err(out) => return out,
        },
        None => match apps.query_all() {
            Ok(all) => all,
            Err(e) => return read_failed("listing the apps", &e),
        },
    };
    let mut items = Vec::new();
    let mut text = String::new();
    for app in &entries {
        let flagged = app.image_updates_available || app.upgrade_available;
        let outdated = if flagged { apps.outdated_images(&app.name).unwrap_or_default() } else { Vec::new() };
        if flagged {
            text.push_str(&format!(
                "\n- {}: newer images are published for {}",
                app.name,
                if outdated.is_empty() { "its images".to_string() } else { outdated.join(", ") }
            ));
        }
        items.push(json!({"app_name": app.name, "state": app.state, "updates_available": flagged,
            "outdated_images": outdated, "images": app.workloads().images}));
    }
    let count = items.iter().filter(|i| i["updates_available"] == true).count();
    let head = if count == 0 {
        "No app has image updates TrueNAS knows of (its daily check fills the cache; stopped apps are never flagged)."
            .to_string()
    } else {
        format!("{count} app(s) have newer images; update_app_images updates one with a way back:")
    };
    Outcome::ok(format!("{head}{text}"), json!({"apps": items, "count": count}))
}

/// `update_app_images` arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    app_name: String,
    timeout_seconds: u64,
    rollback_data: bool,
    confirm: bool,
}

pub fn update(tools: &Tools, args: UpdateArgs, ctx: &CallContext) -> Outcome {
    let name = args.app_name.as_str();
    let (apps, app) = match connect_to_app(tools, name) {
        Ok(found) => found,
        Err(out) => return out.audit(AuditOutcome::Failed),
    };
    if args.rollback_data {
        let question = format!(
            "If '{name}' does not come back healthy after the image update, its data will be rolled back too: \
             everything written after the restore point is lost. Go ahead?"
        );
        match confirm_with_user(ctx, "confirm_image_update", &question, &format!("Update {name}"), args.confirm) {
            Confirmation::Confirmed => {}
            Confirmation::Declined => {
                return Outcome::ok(
                    format!("Nothing was changed: the user did not confirm updating '{name}'."),
                    json!({"status": "declined", "app_name": name}),
                )
                .audit(AuditOutcome::Declined)
            }
            Confirmation::Asking(out) => return out,
            Confirmation::Required => {
                return Outcome::error_with(
                    format!("{question}\nNothing was changed. Ask the user, then call again with confirm: true."),
                    json!({"status": "confirmation_required", "app_name": name}),
                )
                .audit(AuditOutcome::Refused)
                .detail("confirmation required")
            }
        }
    }
    let protected = match undo::protect(&apps, name, "update_app_images") {
        Ok(p) => p,
        Err(out) => return out,
    };
    let point = protected.summary["name"].as_str().unwrap_or_default().to_string();
    let outdated = apps.outdated_images(name).unwrap_or_default();
    let ran = run_job(&apps, &AppJob::pull_images(name, true), ctx, (0.0, 60.0), None);
    let mut job_id = ran.job_id;
    if let Err(e) = ran.result {
        return change_failed(job_id, &e, &format!("pulling the images of '{name}'"), name);
    }
    let timeout = Duration::from_secs(args.timeout_seconds);
    let (state, crash) = undo::settled(&apps, name, ctx, tools, timeout);
    let base = json!({"app_name": name, "previous_state": app.state, "restore_point": protected.summary,
        "images_updated": outdated});
    if state.as_deref() == Some("RUNNING") {
        let message = format!("Updated the images of '{name}'; it is RUNNING. {}", protected.text);
        let mut out = base;
        out["status"] = json!("updated");
        out["state"] = json!(state);
        out["job_id"] = json!(job_id);
        out["message"] = json!(message);
        return Outcome::ok(message, out).job(job_id);
    }
    // Not healthy in time: put the restore point back by ourselves (data only when asked for).
    let why = match state.as_deref() {
        Some("CRASHED") => "it CRASHED".to_string(),
        Some(s) => format!("it was still {s} after {} s", timeout.as_secs()),
        None => "its state could not be read".to_string(),
    };
    let mut steps = Vec::new();
    let mut failure = None;
    if args.rollback_data {
        let stopped = run_job(&apps, &AppJob::stop(name), ctx, (80.0, 85.0), None);
        match stopped.result.map_err(|e| e.to_string()).and_then(|_| undo::restore_data(&apps, name, &point)) {
            Ok(ids) => steps.push(format!("rolled back the data ({})", ids.join(", "))),
            Err(e) => failure = Some(format!("the data rollback failed: {e}")),
        }
    }
    if failure.is_none() {
        match undo::restore_compose(&apps, name, &point, ctx) {
            Ok(id) => {
                job_id = id.or(job_id);
                steps.push("put the previous compose back".into());
            }
            Err(e) => failure = Some(format!("restoring the compose failed: {e}")),
        }
    }
    if failure.is_none() && args.rollback_data {
        if let Err(e) = run_job(&apps, &AppJob::start(name), ctx, (95.0, 97.0), None).result {
            failure = Some(format!("starting it again failed: {e}"));
        }
    }
    let (after, _) = undo::settled(&apps, name, ctx, tools, timeout);
    let message = format!(
        "The image update of '{name}' failed: {why}. {} It is now {}. The pulled images stay on the NAS: a moving \
         tag (e.g. :latest) may still point at them, so pin the previous version or digest to be sure.{}",
        match &failure {
            Some(f) => format!(
                "Rolling back to restore point {point} went wrong: {f}; {}.",
                if steps.is_empty() { "nothing was restored".to_string() } else { steps.join(", ") }
            ),
            None => format!("Rolled back automatically to restore point {point}: {}.", steps.join(", ")),
        },
        after.as_deref().unwrap_or("unknown"),
        logs::render(&crash)
    );
    let mut out = base;
    out["status"] = json!(if failure.is_some() { "rollback_failed" } else { "rolled_back" });
    out["state"] = json!(after);
    out["failed_state"] = json!(state);
    out["job_id"] = json!(job_id);
    out["crash_logs"] = if crash.is_empty() { Value::Array(Vec::new()) } else { logs::to_json(&crash) };
    out["message"] = json!(message);
    Outcome::error_with(message, out).job(job_id).detail(format!("unhealthy after the update ({why}); rolled back"))
}

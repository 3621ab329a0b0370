//! Write tools on an existing app: start, stop, redeploy, pull images, delete (with confirmation).

use serde::Deserialize;
use serde_json::{json, Value};

use std::time::Duration;

use super::failure::{change_failed, connect_to_app};
use super::job::run_job;
use super::logs;
use super::settle;
use super::{Outcome, Tools};
use crate::audit::Outcome as AuditOutcome;
use crate::mcp::tool::{CallContext, Elicitation};
use crate::truenas::apps::{AppEntry, AppJob, AppState, Apps, DeleteOptions};

/// How long start, redeploy and pull wait for the containers to come up before answering.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Stop,
    Redeploy,
    PullImages { redeploy: bool },
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Redeploy => "redeploy",
            Action::PullImages { .. } => "pull_images",
        }
    }
    /// What is under way, for the answer of a call that does not wait ("Starting jellyfin: TrueNAS job 5 …").
    fn under_way(self) -> &'static str {
        match self {
            Action::Start => "Starting",
            Action::Stop => "Stopping",
            Action::Redeploy => "Redeploying",
            Action::PullImages { .. } => "Pulling the images of",
        }
    }
    fn job(self, app: &str) -> AppJob {
        match self {
            Action::Start => AppJob::start(app),
            Action::Stop => AppJob::stop(app),
            Action::Redeploy => AppJob::redeploy(app),
            Action::PullImages { redeploy } => AppJob::pull_images(app, redeploy),
        }
    }
    /// Whether the action (re)creates containers, after which the app needs time to settle.
    fn starts_containers(self) -> bool {
        matches!(self, Action::Start | Action::Redeploy | Action::PullImages { redeploy: true })
    }
    /// Why nothing needs doing, when the app is already where the action would bring it.
    fn already(self, state: &AppState) -> Option<&'static str> {
        match (self, state) {
            (Action::Start, AppState::Running) => Some("already running"),
            (Action::Start, AppState::Deploying) => Some("already starting (DEPLOYING)"),
            (Action::Stop, AppState::Stopped) => Some("already stopped"),
            _ => None,
        }
    }
}

/// The arguments of start, stop and redeploy (schema and defaults: `catalogue.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppJobArgs {
    app_name: String,
    wait: bool,
}

/// `pull_custom_app_images` arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullArgs {
    app_name: String,
    redeploy: bool,
    wait: bool,
    snapshot: bool,
}

pub fn start(tools: &Tools, args: AppJobArgs, ctx: &CallContext) -> Outcome {
    lifecycle(tools, &args.app_name, args.wait, ctx, Action::Start, false)
}

pub fn stop(tools: &Tools, args: AppJobArgs, ctx: &CallContext) -> Outcome {
    lifecycle(tools, &args.app_name, args.wait, ctx, Action::Stop, false)
}

pub fn redeploy(tools: &Tools, args: AppJobArgs, ctx: &CallContext) -> Outcome {
    lifecycle(tools, &args.app_name, args.wait, ctx, Action::Redeploy, false)
}

pub fn pull_images(tools: &Tools, args: PullArgs, ctx: &CallContext) -> Outcome {
    // Only a pull that recreates the containers changes what runs: that one records a restore point first.
    let protect = args.snapshot && args.redeploy;
    lifecycle(tools, &args.app_name, args.wait, ctx, Action::PullImages { redeploy: args.redeploy }, protect)
}

fn lifecycle(tools: &Tools, name: &str, wait: bool, ctx: &CallContext, action: Action, protect: bool) -> Outcome {
    let (apps, app) = match connect_to_app(tools, name) {
        Ok(found) => found,
        Err(out) => return out.audit(AuditOutcome::Failed),
    };
    let previous = app.app_state();
    let mut base = json!({"app_name": name, "action": action.name(), "previous_state": app.state});
    if let Some(why) = action.already(&previous) {
        let message = format!("App {name} is {why}; nothing was done.");
        let mut out = base;
        out["changed"] = json!(false);
        out["state"] = json!(app.state);
        out["job_id"] = Value::Null;
        out["waited"] = json!(false);
        out["message"] = json!(message);
        return Outcome::ok(message, out).detail(why);
    }
    let outdated = match action {
        Action::PullImages { .. } => apps.outdated_images(name).unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut restore_note = String::new();
    if protect {
        match super::undo::protect(&apps, name, "pull_custom_app_images") {
            Ok(r) => {
                base["restore_point"] = r.summary;
                restore_note = format!("\n{}", r.text);
            }
            Err(out) => return out,
        }
    }
    let job = action.job(name);
    if !wait {
        return match apps.start(&job) {
            Ok(id) => {
                let message = format!(
                    "{} {name}: TrueNAS job {id} is running; follow it with get_job_status (job_id {id}).{restore_note}",
                    action.under_way()
                );
                let mut out = base;
                out["changed"] = json!(true);
                out["state"] = json!(app.state);
                out["job_id"] = json!(id);
                out["waited"] = json!(false);
                out["message"] = json!(message);
                Outcome::ok(message, out).audit(AuditOutcome::Started).job(Some(id))
            }
            Err(e) => change_failed(None, &e, &format!("{} of '{name}'", action.name()), name),
        };
    }
    let starts_containers = action.starts_containers();
    let job_span = if starts_containers { (0.0, 80.0) } else { (0.0, 100.0) };
    let ran = run_job(&apps, &job, ctx, job_span, None);
    let job_id = ran.job_id;
    if let Err(e) = ran.result {
        return change_failed(job_id, &e, &format!("{} of '{name}'", action.name()), name);
    }
    // After containers were (re)created, wait a little for them to come up, so the answer can say RUNNING or
    // CRASHED rather than "DEPLOYING"; a healthcheck that never passes is reported as such.
    let (state, crash_logs) = settle::state_after(&apps, name, ctx, tools.clock(), starts_containers, SETTLE_WAIT);
    let mut message = format!(
        "{} of {name} finished (job {}); it was {} and is now {}.",
        match action {
            Action::Start => "Start",
            Action::Stop => "Stop",
            Action::Redeploy => "Redeploy",
            Action::PullImages { .. } => "Image pull",
        },
        job_id.map(|j| j.to_string()).unwrap_or_else(|| "?".into()),
        app.state,
        state.as_deref().unwrap_or("unknown")
    );
    if let Action::PullImages { redeploy } = action {
        if outdated.is_empty() {
            message.push_str(" TrueNAS had not flagged any image as outdated (the update check may not have run).");
        } else {
            message.push_str(&format!(" Images TrueNAS had flagged as outdated: {}.", outdated.join(", ")));
        }
        if !redeploy {
            message.push_str(
                " The containers were not recreated (redeploy: false): redeploy_custom_app uses the new images.",
            );
        }
    }
    match state.as_deref() {
        Some("CRASHED") => message.push_str(
            " The app CRASHED: the failing containers' last log lines follow; fix the compose with update_custom_app \
             (or go back with rollback_custom_app).",
        ),
        Some("DEPLOYING") if starts_containers => message.push_str(&format!(
            " It is still DEPLOYING after {} s (a healthcheck that does not pass keeps it there): check \
             get_custom_app_status and get_app_logs.",
            SETTLE_WAIT.as_secs()
        )),
        _ => {}
    }
    message.push_str(&restore_note);
    let mut out = base;
    out["changed"] = json!(true);
    out["state"] = json!(state);
    out["job_id"] = json!(job_id);
    out["waited"] = json!(true);
    out["message"] = json!(message);
    if matches!(action, Action::PullImages { .. }) {
        out["images_updated"] = json!(outdated);
    }
    if !crash_logs.is_empty() {
        out["crash_logs"] = logs::to_json(&crash_logs);
        return Outcome::error_with(format!("{message}{}", logs::render(&crash_logs)), out)
            .job(job_id)
            .detail("done, but the app crashed");
    }
    Outcome::ok(message, out).job(job_id)
}

/// What a delete removes and what survives, from the stored compose and the live mounts.
fn loss_report(apps: &Apps, app: &AppEntry, delete_volumes: bool, remove_images: bool) -> (Vec<String>, Vec<String>) {
    let mut lost = vec![format!("the app '{}', its containers, networks and stored compose configuration", app.name)];
    let mut survives = Vec::new();
    let mut named: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    if app.custom_app {
        if let Ok(config) = apps.config(&app.name) {
            if let Some(vols) = config.get("volumes").and_then(Value::as_object) {
                named.extend(vols.keys().cloned());
            }
            binds.extend(super::undo::bind_sources(&config));
        }
    }
    for m in app.workloads().volumes {
        if let Some(src) = m.source {
            if m.kind.as_deref() == Some("bind") {
                binds.push(src);
            }
        }
    }
    binds.sort();
    binds.dedup();
    named.sort();
    named.dedup();
    if named.is_empty() {
        lost.push("any named Docker volumes of the app (TrueNAS always removes them: docker compose down -v)".into());
    } else {
        lost.push(format!(
            "the named Docker volumes {} and all data in them (TrueNAS always removes them: docker compose down -v)",
            named.join(", ")
        ));
    }
    if remove_images {
        lost.push("the app's Docker images (they will be pulled again on a new deploy)".into());
    } else {
        survives.push("the app's Docker images (remove_images: false)".into());
    }
    if delete_volumes {
        lost.push("the app's TrueNAS-managed ix-volume datasets (delete_volumes: true)".into());
    }
    if binds.is_empty() {
        survives.push("data in host-path bind mounts (/mnt/...) is never touched by a delete".into());
    } else {
        survives.push(format!("host-path data (never touched by a delete): {}", binds.join(", ")));
    }
    (lost, survives)
}

/// `delete_custom_app` arguments (schema and defaults: `catalogue.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    app_name: String,
    delete_volumes: bool,
    remove_images: bool,
    confirm: bool,
    snapshot: bool,
}

pub fn delete(tools: &Tools, args: DeleteArgs, ctx: &CallContext) -> Outcome {
    let DeleteArgs { app_name, delete_volumes, remove_images, confirm, snapshot } = args;
    let name = app_name.as_str();
    let (apps, app) = match connect_to_app(tools, name) {
        Ok(found) => found,
        Err(out) => return out.audit(AuditOutcome::Failed),
    };
    let (lost, survives) = loss_report(&apps, &app, delete_volumes, remove_images);
    let summary = format!(
        "Deleting app '{name}' ({}) removes:\n{}\nand keeps:\n{}",
        app.state,
        lost.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n"),
        survives.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n"),
    );
    let options = json!({"remove_images": remove_images, "remove_ix_volumes": delete_volumes});
    let answer = |status: &str, message: String, job_id: Option<i64>| {
        json!({"status": status, "app_name": name, "will_be_lost": lost, "survives": survives,
            "options": options, "job_id": job_id, "message": message})
    };
    let question = format!("{summary}\n\nDelete '{name}' permanently?");
    match confirm_with_user(ctx, "confirm_delete", &question, &format!("Delete {name}"), confirm) {
        Confirmation::Confirmed => {}
        Confirmation::Declined => {
            let message = format!("Nothing was deleted: the user did not confirm deleting '{name}'.");
            return Outcome::ok(message.clone(), answer("declined", message, None))
                .audit(AuditOutcome::Declined)
                .detail("the user did not confirm the deletion");
        }
        Confirmation::Asking(out) => return out,
        Confirmation::Required => {
            let message = format!(
                "{summary}\n\nNothing was deleted. Ask the user to confirm deleting '{name}', then call \
                 delete_custom_app again with confirm: true."
            );
            return Outcome::error_with(message.clone(), answer("confirmation_required", message, None))
                .audit(AuditOutcome::Refused)
                .detail("confirmation required");
        }
    }
    let restore = if snapshot {
        match super::undo::protect(&apps, name, "delete_custom_app") {
            Ok(r) => Some(r),
            Err(out) => return out,
        }
    } else {
        None
    };
    let job = AppJob::delete(name, DeleteOptions { remove_images, remove_ix_volumes: delete_volumes }, apps.version());
    let ran = run_job(&apps, &job, ctx, (0.0, 100.0), None);
    if let Err(e) = ran.result {
        return change_failed(ran.job_id, &e, &format!("deleting '{name}'"), name);
    }
    let message = format!(
        "Deleted app '{name}' (job {}).\nRemoved:\n{}\nKept:\n{}",
        ran.job_id.map(|j| j.to_string()).unwrap_or_else(|| "?".into()),
        lost.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n"),
        survives.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n"),
    );
    let mut out = answer("deleted", message.clone(), ran.job_id);
    let message = match restore {
        Some(r) => {
            out["restore_point"] = r.summary;
            format!("{message}\n{}", r.text)
        }
        None => message,
    };
    Outcome::ok(message, out).job(ran.job_id)
}

/// What the user said to a destructive change.
pub(super) enum Confirmation {
    Confirmed,
    Declined,
    /// The question travels to the client first (modern-era elicitation): nothing was changed.
    Asking(Outcome),
    /// The client cannot ask and the call did not carry `confirm: true`.
    Required,
}

/// Ask the user through the client (elicitation) or, when it cannot ask, accept the call's `confirm: true`.
pub(super) fn confirm_with_user(
    ctx: &CallContext,
    key: &str,
    question: &str,
    title: &str,
    confirm: bool,
) -> Confirmation {
    let schema = json!({
        "type": "object",
        "properties": {"confirm": {"type": "boolean", "title": title, "description": format!("Check to confirm: {title}")}},
        "required": ["confirm"],
    });
    match ctx.elicitor.elicit(key, question, schema) {
        Elicitation::Accepted(content) if content.get("confirm").and_then(Value::as_bool) == Some(true) => {
            Confirmation::Confirmed
        }
        Elicitation::Accepted(_) | Elicitation::Declined | Elicitation::Cancelled => Confirmation::Declined,
        Elicitation::InputRequired(out) => Confirmation::Asking(Outcome::from(out).audit(AuditOutcome::NoChange)),
        Elicitation::Unsupported if confirm => Confirmation::Confirmed,
        Elicitation::Unsupported => Confirmation::Required,
    }
}

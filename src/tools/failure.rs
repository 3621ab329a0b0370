//! Turning TrueNAS errors into tool answers that say what happened and what to do next.
//!
//! The one rule that matters most: a change whose outcome is unknown (the connection dropped while it was in
//! flight) is reported as unknown, with the exact tool call that tells whether it happened.

use crate::audit::Outcome;
use crate::mcp::tool::ToolOutput;
use crate::truenas::apps::{AppEntry, Apps};
use crate::truenas::error::TnError;

use super::Change;

/// Connect and read the app `name`; on failure, the answer to give (connection, missing app, apps service down).
pub fn connect_to_app(tools: &super::Tools, name: &str) -> Result<(Apps, AppEntry), ToolOutput> {
    let apps = tools.apps().map_err(|e| read_failed("connecting to TrueNAS", &e))?;
    let app = existing_app(&apps, name)?;
    Ok((apps, app))
}

/// The app `name`, or the answer to give when it is missing (or the apps service is down) or cannot be read.
pub fn existing_app(apps: &Apps, name: &str) -> Result<AppEntry, ToolOutput> {
    match apps.get(name) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(missing_app(apps, name)),
        Err(e) => Err(read_failed(&format!("reading app '{name}'"), &e)),
    }
}

/// A failed read: the error with the tool to run when it is about connection or login.
pub fn read_failed(what: &str, e: &TnError) -> ToolOutput {
    ToolOutput::error(format!("{what} failed: {e}{}", connection_hint(e)))
}

fn connection_hint(e: &TnError) -> &'static str {
    match e {
        TnError::Connect { .. }
        | TnError::Auth(_)
        | TnError::NotAuthenticated
        | TnError::Timeout { .. }
        | TnError::ConnectionLost { .. } => " (test_connection diagnoses connection and login problems)",
        _ => "",
    }
}

/// A failed change: records the audit outcome and says plainly whether the NAS was changed.
pub fn change_failed(change: &mut Change, e: &TnError, what: &str, app: &str) -> ToolOutput {
    let check = format!("call get_custom_app_status for {app}");
    let text = match e {
        TnError::ConnectionLost { outcome_unknown: true, detail } => {
            change.outcome = Some(Outcome::Unknown);
            let job = change.job_id.map(|j| format!(" (or get_job_status for job {j})")).unwrap_or_default();
            format!(
                "OUTCOME UNKNOWN: the connection to TrueNAS dropped while {what} was in flight ({detail}), so it may \
                 or may not have happened; it was not retried. To find out, {check}{job}"
            )
        }
        TnError::Cancelled { job_id } => {
            change.outcome = Some(Outcome::Cancelled);
            if job_id.is_some() {
                change.job_id = *job_id;
            }
            match job_id {
                Some(j) => format!(
                    "cancelled: TrueNAS job {j} ({what}) was aborted; it may have done part of its work, so {check}"
                ),
                None => format!("cancelled before {what} started; nothing was changed"),
            }
        }
        TnError::JobFailed { job_id, error } => {
            change.job_id = Some(*job_id);
            format!("{what} failed: TrueNAS job {job_id} ended with: {error}; {check} to see the app's state")
        }
        TnError::JobAborted { job_id } => {
            change.job_id = Some(*job_id);
            change.outcome = Some(Outcome::Cancelled);
            format!("{what} was aborted on the NAS (job {job_id}); {check}")
        }
        TnError::Timeout { .. } => {
            change.outcome = Some(Outcome::Unknown);
            let job = change.job_id.map(|j| format!(" or get_job_status for job {j}")).unwrap_or_default();
            format!("{what} did not finish in time ({e}); it may still be running on the NAS: {check}{job}")
        }
        _ => format!("{what} failed: {e}{}", connection_hint(e)),
    };
    change.detail = Some(text.chars().take(300).collect());
    ToolOutput::error(text)
}

/// An app that `app.query` did not return: missing, or the apps service is down (then every app looks missing).
pub fn missing_app(apps: &Apps, app: &str) -> ToolOutput {
    match apps.docker_status() {
        Ok(s) if !s.is_running() => ToolOutput::error(apps_service_down(&s.status, s.description.as_deref())),
        _ => ToolOutput::error(format!(
            "app '{app}' does not exist on the NAS; call list_custom_apps to see the apps (names are lowercase)"
        )),
    }
}

/// Why apps are unavailable, with the fix.
pub fn apps_service_down(status: &str, description: Option<&str>) -> String {
    let desc = description.filter(|d| !d.is_empty()).map(|d| format!(" ({d})")).unwrap_or_default();
    format!("the TrueNAS apps service is not running: docker status is {status}{desc}; {}", apps_service_fix(status))
}

/// What to do about a Docker status other than RUNNING.
pub fn apps_service_fix(status: &str) -> &'static str {
    match status {
        "UNCONFIGURED" => "choose a pool for apps in the TrueNAS web UI: Apps > Configuration > Choose Pool",
        "FAILED" => "look at Apps in the TrueNAS web UI (the description says why) and fix or re-select the pool",
        "STOPPED" | "STOPPING" => "start the apps service: Apps > Configuration > Choose Pool (re-select the pool)",
        _ => "wait until the apps service is running (test_connection shows its state) and try again",
    }
}

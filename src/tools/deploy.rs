//! Compose in, app out: `validate_compose`, `deploy_custom_app` and `update_custom_app`.
//!
//! Deploy and update run exactly the validation `validate_compose` runs, with the live ports of the NAS, and refuse
//! on any error finding; nothing a caller passes can weaken the operator's policy.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::diff;
use super::failure::{apps_service_down, change_failed, existing_app, fence, read_failed};
use super::job::run_job;
use super::logs;
use super::settle::{self, Settled};
use super::{Outcome, Tools};
use crate::audit::Outcome as AuditOutcome;
use crate::compose::secrets::MASK;
use crate::compose::{self, Finding, Report, Severity, ValidateInput};
use crate::mcp::tool::CallContext;
use crate::truenas::apps::{AppJob, AppState, Apps};
use crate::truenas::TnError;

mod masked;

/// How long an update of a running app waits for the recreated containers to come up.
const UPDATE_SETTLE_WAIT: Duration = Duration::from_secs(30);

/// Validate with the operator's policy for app `app` (it sets `COMPOSE_PROJECT_NAME`, as TrueNAS does);
/// `used_ports` = other apps' host ports with the app using each (`None`: not checked).
fn validate(
    tools: &Tools,
    app: Option<&str>,
    yaml: &str,
    env: &BTreeMap<String, String>,
    used_ports: Option<&[(u16, String)]>,
) -> Report {
    // The release decides how `include:` is refused; a NAS that cannot be reached leaves it unknown.
    let nas_version =
        tools.nas_configured().then(|| tools.client().server_info().ok()).flatten().map(|i| i.version_tuple);
    let input =
        ValidateInput { yaml, env, used_ports, policy: &tools.config().policy, derive_portals: true, nas_version };
    compose::validate_app(&input, app)
}

/// Host ports of every app but `except`, each with its app (what `app.used_ports` counts, but named), and whether
/// `except` exists: one `app.query`.
fn ports_of_other_apps(apps: &Apps, except: Option<&str>) -> Result<(Vec<(u16, String)>, bool), TnError> {
    let all = apps.query_all()?;
    let exists = except.is_some_and(|name| all.iter().any(|a| a.name == name));
    let used = all
        .iter()
        .filter(|a| Some(a.name.as_str()) != except)
        .flat_map(|a| a.host_ports().into_iter().map(|p| (p, a.name.clone())))
        .collect();
    Ok((used, exists))
}

/// The TrueNAS payload of a clean report, or `None` (a `too-large` finding joins `extra`) when it cannot be sent.
fn payload_for(
    report: &compose::Report,
    extra: &mut Vec<Finding>,
    build: impl FnOnce(&str) -> Result<Value, Finding>,
) -> Option<Value> {
    let rendered = report.rendered.as_deref().filter(|_| !report.has_errors())?;
    match build(rendered) {
        Ok(p) => Some(p),
        Err(f) => {
            extra.push(f);
            None
        }
    }
}

/// The report's findings followed by the ones the tool added.
fn all_findings(report: &Report, extra: Vec<Finding>) -> Vec<Finding> {
    let mut all = report.findings.clone();
    all.extend(extra);
    all
}

/// A finding the tools add themselves (name taken, mask left in place), in the compose engine's shape.
fn tool_finding(rule: &'static str, path: &str, message: String, fix: String) -> Finding {
    Finding { rule, severity: Severity::Error, service: None, path: path.into(), message, fix }
}

/// The upper-case label of a severity in text answers.
fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "ERROR",
        Severity::Warning => "WARNING",
        Severity::Info => "INFO",
    }
}

/// Findings as readable lines, errors first.
fn render_findings<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> String {
    let mut items: Vec<&Finding> = findings.into_iter().collect();
    items.sort_by_key(|f| Reverse(f.severity));
    let mut text = String::new();
    for f in items {
        text.push_str(&format!(
            "\n- {} [{}] {}: {}\n  fix: {}",
            severity_label(f.severity),
            f.rule,
            f.path,
            f.message,
            f.fix,
        ));
    }
    text
}

/// The findings a successful answer repeats in its text: warnings and errors, not the informational ones.
fn render_warnings(findings: &[Finding]) -> String {
    render_findings(findings.iter().filter(|f| f.severity != Severity::Info))
}

/// The rendered compose as a document (the rendered text always parses; `None` when there is none).
fn rendered_value(report: &Report) -> Option<Value> {
    report.rendered.as_deref().and_then(|r| serde_yaml::from_str::<Value>(r).ok())
}

/// A `masked-secret` error when `compose` still carries the mask where a secret goes: sent, it would replace the
/// secret on the NAS with the literal mask text. `update`: the deployed app had no value to keep there.
fn masked_secret_finding(compose: &Value, update: bool) -> Option<Finding> {
    let names = masked::masks_left(compose);
    if names.is_empty() {
        return None;
    }
    let list = names.join(", ");
    let why = if update { " and the deployed app has no value to keep for them" } else { "" };
    Some(tool_finding(
        "masked-secret",
        "compose_yaml",
        format!(
            "{list}: the value is the mask {MASK} shown in place of a secret{why}; sending it would set the secret \
             to the text {MASK}"
        ),
        format!("write the real value of {list} (or pass it through env), or leave it out"),
    ))
}

fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// `validate_compose` arguments (schema and defaults: `catalogue.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateArgs {
    compose_yaml: String,
    env: BTreeMap<String, String>,
    app_name: Option<String>,
}

pub fn validate_compose(tools: &Tools, args: ValidateArgs, _ctx: &CallContext) -> Outcome {
    let ValidateArgs { compose_yaml, env, app_name } = args;
    let yaml = compose_yaml.as_str();
    let app_name = app_name.as_deref();
    let mut app_exists: Option<bool> = None;
    let (used, port_detail): (Option<Vec<(u16, String)>>, String) = if !tools.nas_configured() {
        (
            None,
            "skipped: no NAS is configured (TRUENAS_HOST is not set), so ports used by other apps were not checked"
                .into(),
        )
    } else {
        match tools.apps().and_then(|apps| {
            let (used, exists) = ports_of_other_apps(&apps, app_name)?;
            app_exists = app_name.map(|_| exists);
            Ok(used)
        }) {
            Ok(used) => {
                let d = format!("checked against {} host port(s) used by other apps on the NAS", used.len());
                (Some(used), d)
            }
            Err(e) => (
                None,
                format!("skipped: the NAS could not be reached ({e}), so ports used by other apps were not checked"),
            ),
        }
    };
    let report = validate(tools, app_name, yaml, &env, used.as_deref());
    let valid = !report.has_errors();
    let errors = report.findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = report.findings.iter().filter(|f| f.severity == Severity::Warning).count();
    let mut text = if valid {
        format!("The compose is valid for TrueNAS ({warnings} warning(s)).")
    } else {
        format!("The compose would be REFUSED: {errors} error(s), {warnings} warning(s).")
    };
    if !report.services.is_empty() {
        text.push_str(&format!(" Services: {}.", report.services.join(", ")));
    }
    text.push_str(&format!("\nPort check: {port_detail}."));
    match (app_name, app_exists) {
        (Some(n), Some(true)) => text.push_str(&format!("\nApp '{n}' exists: deploying needs update_custom_app.")),
        (Some(n), Some(false)) => text.push_str(&format!("\nThe name '{n}' is free.")),
        _ => {}
    }
    text.push_str(&render_findings(&report.findings));
    if !report.substitutions.is_empty() {
        let vars: Vec<&str> = report.substitutions.iter().map(|s| s.variable.as_str()).collect();
        text.push_str(&format!("\nSubstituted: {}", vars.join(", ")));
    }
    let structured = json!({
        "valid": valid,
        "substitutions": report.substitutions,
        "unresolved": report.unresolved,
        "services": report.services,
        "published_ports": report.published_ports,
        "port_check": {"checked": used.is_some(), "detail": port_detail},
        "app_exists": app_exists,
        // What would be sent, with secret-looking values masked: tool output never carries secrets.
        "rendered_compose": report.rendered.as_deref().and_then(compose::mask_rendered),
    });
    Outcome::ok(text, structured).findings(report.findings)
}

/// Refuse a write because of findings: error result whose structured content still matches the tool's schema.
fn refused(base: Value, findings: Vec<Finding>, headline: String) -> Outcome {
    let rules: Vec<&str> = findings.iter().filter(|f| f.severity == Severity::Error).map(|f| f.rule).collect();
    let detail = format!("refused by policy: {}", rules.join(", "));
    let text = format!("{headline}{}", render_findings(&findings));
    let mut out = base;
    out["status"] = json!("refused");
    out["message"] = json!(headline);
    Outcome::error_with(text, out).findings(findings).audit(AuditOutcome::Refused).detail(detail)
}

fn docker_gate(apps: &Apps) -> Option<Outcome> {
    match apps.docker_status() {
        Ok(s) if !s.is_running() => Some(Outcome::error(apps_service_down(&s.status, s.description.as_deref()))),
        Ok(_) => None,
        Err(e) => Some(read_failed("reading the apps service status", &e)),
    }
}

/// `deploy_custom_app` arguments (schema and defaults: `catalogue.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployArgs {
    app_name: String,
    compose_yaml: String,
    env: BTreeMap<String, String>,
    auto_start: bool,
    wait_until_healthy: bool,
    timeout_seconds: u64,
    dry_run: bool,
    wait: bool,
    create_host_paths: bool,
}

/// A dry run sends nothing to the NAS, whatever its answer: the audit log records no change.
fn planned_only(dry_run: bool, out: Outcome) -> Outcome {
    if dry_run {
        out.audit(AuditOutcome::NoChange)
    } else {
        out
    }
}

pub fn deploy(tools: &Tools, args: DeployArgs, ctx: &CallContext) -> Outcome {
    let dry_run = args.dry_run;
    planned_only(dry_run, deploy_app(tools, args, ctx))
}

fn deploy_app(tools: &Tools, args: DeployArgs, ctx: &CallContext) -> Outcome {
    let name = args.app_name.as_str();
    let yaml = args.compose_yaml.as_str();
    let env = &args.env;
    let (dry_run, auto_start, wait_healthy, wait) = (args.dry_run, args.auto_start, args.wait_until_healthy, args.wait);
    let timeout = Duration::from_secs(args.timeout_seconds);
    if let Some(why) = compose::app_name_error(name) {
        return Outcome::error(format!("invalid app name '{name}': {why}")).audit(AuditOutcome::Refused);
    }
    let apps = match tools.apps() {
        Ok(a) => a,
        Err(e) => return read_failed("connecting to TrueNAS", &e),
    };
    if let Some(out) = docker_gate(&apps) {
        return out.audit(AuditOutcome::Refused);
    }
    let existing = match apps.get(name) {
        Ok(e) => e,
        Err(e) => return read_failed(&format!("checking whether '{name}' exists"), &e),
    };
    let used = match ports_of_other_apps(&apps, Some(name)) {
        Ok((u, _)) => u,
        Err(e) => return read_failed("reading the ports used by other apps", &e),
    };
    ctx.progress.report(2.0, Some(100.0), Some("validating the compose"));
    let report = validate(tools, Some(name), yaml, env, Some(&used));
    let mut extra = Vec::new();
    extra.extend(rendered_value(&report).and_then(|v| masked_secret_finding(&v, false)));
    if let Some(app) = &existing {
        extra.push(tool_finding(
            "app-exists",
            "app_name",
            format!("an app named '{name}' already exists ({})", app.state),
            format!("use update_custom_app to change '{name}', or choose another app_name"),
        ));
    }
    // Every bind source is looked up on the NAS: missing ones are a warning with the fix, or created below.
    let storage = crate::truenas::storage::Storage::new(apps.client(), apps.info());
    let missing = match rendered_value(&report).map(|v| super::hostpaths::missing(&storage, &v, tools.config())) {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            return read_failed("checking the bind sources on the NAS", &e).audit(AuditOutcome::NoChange);
        }
        None => Vec::new(),
    };
    if !args.create_host_paths {
        extra.extend(super::hostpaths::findings(&missing));
    }
    let payload = payload_for(&report, &mut extra, |rendered| compose::create_payload(name, rendered));
    let findings = all_findings(&report, extra);
    let compose_bytes = report.rendered.as_ref().map(|r| r.len()).unwrap_or(0);
    let base = json!({
        "app_name": name,
        "substitutions": report.substitutions,
        "services": report.services,
        "published_ports": report.published_ports,
        "rendered_compose": report.rendered.as_deref().and_then(compose::mask_rendered),
        "payload": {"method": "app.create", "app_name": name, "custom_app": true, "compose_bytes": compose_bytes},
        "state": null,
        "job_id": null,
    });
    let payload = match payload {
        Some(p) if !has_errors(&findings) => p,
        _ => {
            return refused(base, findings, format!("Deploy of '{name}' REFUSED: fix every error below and try again."))
        }
    };
    if dry_run {
        let mut text = format!(
            "DRY RUN, nothing was created. Plan: app.create of Custom App '{name}' ({compose_bytes} bytes of compose; \
             services {}), then {}.",
            report.services.join(", "),
            if wait_healthy { "wait until it is RUNNING" } else { "return at once" }
        );
        if args.create_host_paths && !missing.is_empty() {
            text.push_str(&format!("\nWould create: {}.", super::hostpaths::plan(&missing).join("; ")));
        }
        text.push_str(&render_findings(&findings));
        let shown = report.rendered.as_deref().and_then(compose::mask_rendered).unwrap_or_default();
        text.push_str(&format!("\nRendered compose (secret values masked):\n{shown}"));
        let mut out = base;
        out["status"] = json!("dry_run");
        if args.create_host_paths {
            out["host_paths_created"] = json!(super::hostpaths::plan(&missing));
        }
        out["message"] = json!(format!("dry run: '{name}' would be created; call again without dry_run to deploy"));
        return Outcome::ok(text, out).findings(findings);
    }
    let mut base = base;
    if args.create_host_paths && !missing.is_empty() {
        match super::hostpaths::create(&storage, &missing) {
            Ok(done) => base["host_paths_created"] = json!(done),
            Err(why) => {
                return Outcome::error(format!(
                    "creating the host paths of '{name}' failed: {why}; the app was not created"
                ))
                .findings(findings)
            }
        }
    }
    let job = AppJob::create(payload);
    if !wait {
        return match apps.start(&job) {
            Ok(id) => {
                let message =
                    format!("Creation of '{name}' started as TrueNAS job {id}; follow it with get_job_status.");
                let mut out = base;
                out["status"] = json!("started");
                out["job_id"] = json!(id);
                out["message"] = json!(message);
                Outcome::ok(message, out).findings(findings).audit(AuditOutcome::Started).job(Some(id))
            }
            Err(e) => change_failed(None, &e, &format!("creating '{name}'"), name),
        };
    }
    let created = run_job(&apps, &job, ctx, (5.0, 85.0), None);
    // The audit line and the answer name the job that created the app.
    let job_id = created.job_id;
    if let Err(e) = created.result {
        return change_failed(job_id, &e, &format!("creating '{name}'"), name);
    }
    let mut out = base;
    out["job_id"] = json!(job_id);
    let warnings = render_warnings(&findings);
    // Every answer from here on is about the created app: its findings and the creating job.
    let answer = |out: Outcome| out.findings(findings.clone()).job(job_id);
    if !auto_start {
        let stop = AppJob::stop(name);
        let stopped = run_job(&apps, &stop, ctx, (85.0, 95.0), None);
        if let Err(e) = stopped.result {
            return change_failed(
                stopped.job_id.or(job_id),
                &e,
                &format!("stopping '{name}' after creating it (auto_start: false)"),
                name,
            );
        }
        let message = format!("Created '{name}' and stopped it (auto_start: false); start it with start_custom_app.");
        out["status"] = json!("stopped");
        out["state"] = json!("STOPPED");
        out["message"] = json!(message);
        return answer(Outcome::ok(format!("{message}{warnings}"), out));
    }
    if !wait_healthy {
        let state = apps.get(name).ok().flatten().map(|a| a.state);
        let message = format!(
            "Created '{name}' (job {}); it is {} — get_custom_app_status shows when it is RUNNING.",
            job_id.map(|j| j.to_string()).unwrap_or_else(|| "?".into()),
            state.as_deref().unwrap_or("starting")
        );
        out["status"] = json!("created");
        out["state"] = json!(state);
        out["message"] = json!(message);
        return answer(Outcome::ok(format!("{message}{warnings}"), out));
    }
    // Wait until RUNNING or CRASHED; an unhealthy container keeps an app DEPLOYING, so the timeout matters.
    let (last_state, cancelled) = match settle::wait(&apps, name, ctx, tools.clock(), timeout, (85.0, 99.0)) {
        Settled::Running(app) => {
            let portals: Vec<String> = app.portals.clone().unwrap_or_default().into_values().collect();
            let message = format!(
                "Deployed '{name}': it is RUNNING ({} container(s)){}.",
                app.workloads().containers,
                if portals.is_empty() { String::new() } else { format!(", open {}", portals.join(" ")) }
            );
            out["status"] = json!("running");
            out["state"] = json!("RUNNING");
            out["message"] = json!(message);
            return answer(Outcome::ok(format!("{message}{warnings}"), out));
        }
        Settled::Crashed(app) => {
            let crash = logs::crashed_container_logs(&apps, &app, 50, tools.clock(), &ctx.cancel);
            let message = format!(
                "'{name}' was created but CRASHED: a container exited with an error. Its last log lines are \
                 below; fix the compose and apply it with update_custom_app (or delete_custom_app to start over)."
            );
            out["status"] = json!("crashed");
            out["state"] = json!("CRASHED");
            out["crash_logs"] = logs::to_json(&crash);
            out["message"] = json!(message);
            return answer(Outcome::error_with(format!("{message}{}", logs::render(&crash)), out))
                .detail("created, then crashed");
        }
        Settled::Failed(output) => {
            // The create job succeeded; only reading the app afterwards failed (e.g. the connection dropped). Saying
            // "failed, retry" here would make the caller deploy again into an app that exists.
            let message = format!(
                "Created '{name}' (job {}), but its state could not be read afterwards ({}); check \
                 get_custom_app_status for {name} instead of deploying again.",
                job_id.map(|j| j.to_string()).unwrap_or_else(|| "?".into()),
                output.text
            );
            out["status"] = json!("created");
            out["state"] = Value::Null;
            out["message"] = json!(message);
            return answer(Outcome::ok(format!("{message}{warnings}"), out));
        }
        Settled::Unsettled { state, cancelled } => (state, cancelled),
    };
    let why = if cancelled {
        "stopped waiting (cancelled); the app itself was created".to_string()
    } else {
        format!("still {last_state} after {} s", timeout.as_secs())
    };
    let message = format!(
        "Created '{name}' but it is not RUNNING yet: {why}. A healthcheck that does not pass keeps an app DEPLOYING; \
         check get_custom_app_status and get_app_logs for {name}."
    );
    out["status"] = json!(if last_state == "STOPPED" { "stopped" } else { "deploying" });
    out["state"] = json!(last_state);
    out["message"] = json!(message);
    answer(Outcome::ok(format!("{message}{warnings}"), out))
}

/// YAML for the diff: both sides go through the same JSON → YAML serialiser with secrets masked, so the diff shows
/// real changes, not formatting, and never a secret.
pub(super) fn comparable_yaml(compose: &Value) -> String {
    serde_yaml::to_string(&compose::mask_secrets(compose)).unwrap_or_default()
}

/// `update_custom_app` arguments (schema and defaults: `catalogue.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    app_name: String,
    compose_yaml: String,
    env: BTreeMap<String, String>,
    dry_run: bool,
    wait: bool,
    snapshot: bool,
}

pub fn update(tools: &Tools, args: UpdateArgs, ctx: &CallContext) -> Outcome {
    let dry_run = args.dry_run;
    planned_only(dry_run, update_app(tools, args, ctx))
}

fn update_app(tools: &Tools, args: UpdateArgs, ctx: &CallContext) -> Outcome {
    let name = args.app_name.as_str();
    let yaml = args.compose_yaml.as_str();
    let env = &args.env;
    let (dry_run, wait) = (args.dry_run, args.wait);
    let apps = match tools.apps() {
        Ok(a) => a,
        Err(e) => return read_failed("connecting to TrueNAS", &e),
    };
    if let Some(out) = docker_gate(&apps) {
        return out.audit(AuditOutcome::Refused);
    }
    let app = match existing_app(&apps, name) {
        Ok(a) => a,
        Err(out) => return out.audit(AuditOutcome::Failed),
    };
    if !app.custom_app {
        return Outcome::error(format!(
            "'{name}' is a catalogue app, not a Custom App: change it in the TrueNAS web UI"
        ))
        .audit(AuditOutcome::Refused);
    }
    let deployed = match apps.config(name) {
        Ok(c) => c,
        Err(e) => return read_failed(&format!("reading the deployed compose of '{name}'"), &e),
    };
    let used = match ports_of_other_apps(&apps, Some(name)) {
        Ok((u, _)) => u,
        Err(e) => return read_failed("reading the ports used by other apps", &e),
    };
    let mut report = validate(tools, Some(name), yaml, env, Some(&used));
    // Values sent back masked (the get_custom_app_config → edit → update round trip) keep their deployed values;
    // the restored document is validated again, as it is what will be sent.
    let mut kept = Vec::new();
    if let Some(restored) = rendered_value(&report).map(|v| masked::restore(&v, &deployed)) {
        if !restored.kept.is_empty() {
            if let Ok(text) = serde_yaml::to_string(&restored.compose) {
                let mut again = validate(tools, Some(name), &text, &BTreeMap::new(), Some(&used));
                again.substitutions = std::mem::take(&mut report.substitutions);
                again.unresolved = std::mem::take(&mut report.unresolved);
                report = again;
                kept = restored.kept;
            }
        }
    }
    let new_value = rendered_value(&report);
    let mut extra = Vec::new();
    extra.extend(new_value.as_ref().and_then(|v| masked_secret_finding(v, true)));
    let payload = payload_for(&report, &mut extra, |rendered| compose::update_payload(name, rendered));
    let findings = all_findings(&report, extra);
    let changed = new_value.as_ref() != Some(&deployed);
    let mut diff_only = match &new_value {
        Some(v) => diff::unified(&comparable_yaml(&deployed), &comparable_yaml(v), "deployed", "new"),
        None => String::new(),
    };
    if changed && diff_only.is_empty() && new_value.is_some() {
        diff_only = "(only secret values differ; they are masked here)\n".into();
    }
    let kept_note = if kept.is_empty() {
        String::new()
    } else {
        format!("(kept the deployed values of {} (sent masked))\n", kept.join(", "))
    };
    let diff_text = format!("{diff_only}{kept_note}");
    let previous = app.app_state();
    let stays_stopped = previous == AppState::Stopped;
    let mut base = json!({
        "app_name": name,
        "diff": diff_text,
        "substitutions": report.substitutions,
        "previous_state": app.state,
        "state": app.state,
        "stays_stopped": stays_stopped,
        "job_id": null,
    });
    let payload = match payload {
        Some(p) if !has_errors(&findings) => p,
        _ => {
            return refused(
                base,
                findings,
                format!("Update of '{name}' REFUSED: fix every error below; nothing was changed."),
            )
        }
    };
    let stopped_note = if stays_stopped {
        format!(" '{name}' is STOPPED and stays stopped after the update (TrueNAS only rewrites the files); start it with start_custom_app.")
    } else {
        String::new()
    };
    // The diff shows the stored compose, which the app's author wrote: fenced like any other NAS text.
    let diff_block = if diff_only.is_empty() {
        format!("\n(no changes)\n{kept_note}")
    } else {
        format!("\n{}\n{kept_note}", fence(&format!("compose diff of {name}, deployed → new"), &diff_only))
    };
    if !changed {
        let message = format!("The new compose of '{name}' is identical to the deployed one; nothing was changed (redeploy_custom_app recreates the containers).");
        let mut out = base;
        out["status"] = json!("unchanged");
        out["message"] = json!(message);
        return Outcome::ok(message, out).findings(findings).audit(AuditOutcome::NoChange);
    }
    if dry_run {
        let message =
            format!("DRY RUN, nothing was changed: app.update of '{name}' would apply this diff.{stopped_note}");
        let text = format!("{message}{}{diff_block}", render_findings(&findings));
        let mut out = base;
        out["status"] = json!("dry_run");
        out["message"] = json!(message);
        return Outcome::ok(text, out).findings(findings);
    }
    // The restore point is recorded before the first write; its note joins every answer from here on.
    let stopped_note = if args.snapshot {
        match super::undo::protect(&apps, name, "update_custom_app") {
            Ok(r) => {
                base["restore_point"] = r.summary;
                format!("{stopped_note}\n{}", r.text)
            }
            Err(out) => return out,
        }
    } else {
        stopped_note
    };
    let job = AppJob::update(name, payload);
    if !wait {
        return match apps.start(&job) {
            Ok(id) => {
                let message = format!(
                    "Update of '{name}' started as TrueNAS job {id}; follow it with get_job_status.{stopped_note}"
                );
                let mut out = base;
                out["status"] = json!("started");
                out["job_id"] = json!(id);
                out["message"] = json!(message);
                Outcome::ok(format!("{message}{diff_block}"), out)
                    .findings(findings)
                    .audit(AuditOutcome::Started)
                    .job(Some(id))
            }
            Err(e) => change_failed(None, &e, &format!("updating '{name}'"), name),
        };
    }
    let job_span = if stays_stopped { (0.0, 100.0) } else { (0.0, 80.0) };
    let ran = run_job(&apps, &job, ctx, job_span, None);
    let job_id = ran.job_id;
    if let Err(e) = ran.result {
        return change_failed(job_id, &e, &format!("updating '{name}'"), name);
    }
    let (state, crash_logs) = settle::state_after(&apps, name, ctx, tools.clock(), !stays_stopped, UPDATE_SETTLE_WAIT);
    let mut message = format!(
        "Updated '{name}' (job {}); it is now {}.{stopped_note}",
        job_id.map(|j| j.to_string()).unwrap_or_else(|| "?".into()),
        state.as_deref().unwrap_or("unknown")
    );
    match state.as_deref() {
        Some("CRASHED") => message.push_str(
            " It CRASHED after the update: the failing containers' last log lines follow; fix the compose and update \
             again.",
        ),
        Some("DEPLOYING") => message.push_str(&format!(
            " It is still DEPLOYING after {} s (a healthcheck that does not pass keeps it there): check \
             get_custom_app_status and get_app_logs.",
            UPDATE_SETTLE_WAIT.as_secs()
        )),
        _ => {}
    }
    let mut out = base;
    out["status"] = json!("updated");
    out["state"] = json!(state);
    out["job_id"] = json!(job_id);
    out["message"] = json!(message);
    if !crash_logs.is_empty() {
        out["crash_logs"] = logs::to_json(&crash_logs);
        return Outcome::error_with(format!("{message}{}{diff_block}", logs::render(&crash_logs)), out)
            .findings(findings)
            .job(job_id)
            .detail("updated, but the app crashed");
    }
    let text = format!("{message}{}{diff_block}", render_findings(&findings));
    Outcome::ok(text, out).findings(findings).job(job_id)
}

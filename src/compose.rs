//! Docker Compose for TrueNAS: parse every syntax form, judge the security policy, convert for `app.create`.
//!
//! The pipeline of [`validate`]: `parse` (size cap, metered alias expansion, merge keys) → `interpolate` (`${VAR}`
//! from the caller's env map) → `model` (a typed view with document paths; `ports`, `volumes`) → `policy` (every
//! rule of `rules`, then the operator's level) → `portals` (optional `x-portals`) → `render` (the YAML text for
//! TrueNAS, `$` escaped) → a size check against one TrueNAS frame (`payload`). The rules judge the interpolated
//! document, which is exactly the document that is rendered and sent: what we judged is what runs.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::config::PolicyConfig;

mod environment;
mod interpolate;
mod model;
mod parse;
mod payload;
mod policy;
mod portals;
mod ports;
mod render;
pub mod rules;
pub mod secrets;
mod spec;
mod volumes;

pub use parse::MAX_INPUT_BYTES;
pub use payload::FRAME_LIMIT;
pub use rules::Rule;
pub use secrets::is_secret_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One policy finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Stable rule id, e.g. "privileged".
    pub rule: &'static str,
    pub severity: Severity,
    pub service: Option<String>,
    /// Path into the document, e.g. `services.web.volumes[2]`.
    pub path: String,
    pub message: String,
    pub fix: String,
}

/// One `${VAR}` substitution performed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Substitution {
    pub variable: String,
    /// "env" (from the caller's env map), "default" (from `${VAR:-default}`) or "alternate" (`${VAR:+alt}`).
    pub source: &'static str,
    /// Where in the document.
    pub path: String,
}

/// A published host port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub service: String,
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// What `validate` needs.
pub struct ValidateInput<'a> {
    pub yaml: &'a str,
    /// Values for `${VAR}` (the `.env` TrueNAS does not have).
    pub env: &'a BTreeMap<String, String>,
    /// Host ports already used on the NAS by *other* apps, each with the app that uses it (findings name it);
    /// `None` = not checked.
    pub used_ports: Option<&'a [(u16, String)]>,
    pub policy: &'a PolicyConfig,
    /// Add `x-portals` for published web ports when the document has none.
    pub derive_portals: bool,
    /// The connected NAS's release (major, minor), e.g. `(26, 0)`; `None` when unknown (no NAS, or not reached).
    /// Rules that differ by release (`include:`) say what holds on it, or on every release when unknown.
    pub nas_version: Option<(u32, u32)>,
}

/// Everything we learned about a compose document.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub substitutions: Vec<Substitution>,
    /// Variables with no value and no default (also reported as `unresolved-variable` findings).
    pub unresolved: Vec<String>,
    /// Service names in document order.
    pub services: Vec<String>,
    /// Host ports with a fixed number, in document order; ranges expand to one entry per port (at most 10 000
    /// entries); ports Docker picks at random (`"80"`, `"127.0.0.1::80"`) are not listed.
    pub published_ports: Vec<PublishedPort>,
    /// The compose text to send to TrueNAS (interpolated, portals added); `None` when the document is unusable.
    /// Present even when there are errors (for previews): deploy only when `!has_errors()`.
    pub rendered: Option<String>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Parse, interpolate and judge a compose document. Never panics; bounded in time and memory: input over
/// [`MAX_INPUT_BYTES`] is refused unread, alias expansion is metered (500 000 nodes, 16 MiB of scalars), nesting
/// is capped, and interpolation pulls in at most 4 MiB of env values. Findings carry the operator's severities.
pub fn validate(input: &ValidateInput<'_>) -> Report {
    validate_app(input, None)
}

/// [`validate`] for the TrueNAS app `app_name`: Compose's `COMPOSE_PROJECT_NAME` is `ix-<app_name>` there (without
/// a name, `ix-app` is assumed and a `project-name-assumed` finding says so when the document uses it).
pub fn validate_app(input: &ValidateInput<'_>, app_name: Option<&str>) -> Report {
    let mut report = Report::default();
    let mut findings = Vec::new();
    let mut doc = match parse::parse(input.yaml) {
        Ok(doc) => doc,
        Err(finding) => {
            findings.push(finding);
            return finish(report, findings, input.policy);
        }
    };
    if !doc.is_mapping() {
        findings.push(rules::NOT_A_MAPPING.at(
            None,
            "",
            format!("the document is {}, not a mapping", describe(&doc)),
            "start the document with `services:`",
        ));
        return finish(report, findings, input.policy);
    }
    let env = environment::with_project_name(input.env, app_name);
    let interpolation = interpolate::interpolate_tree(&mut doc, &env);
    findings.extend(interpolation.findings);
    report.substitutions = interpolation.substitutions;
    report.unresolved = interpolation.unresolved;
    findings.extend(environment::assumed_project_name(&report.substitutions, app_name));
    findings.extend(spec::schema_findings(&doc));

    let Some(root) = doc.as_mapping_mut() else { return finish(report, findings, input.policy) };
    findings.extend(environment::fill_bare_entries(root, input.env, &mut report.substitutions));
    findings.extend(spec::reference_findings(root));
    if let Some(services) = root.get("services").and_then(serde_yaml::Value::as_mapping) {
        report.services = services.keys().map(interpolate::key_text).collect();
    }
    let project = model::read_project(root, &mut findings);
    let cx = policy::Context { policy: input.policy, used_ports: input.used_ports, nas_version: input.nas_version };
    findings.extend(policy::judge(&project, &cx, &mut report.published_ports));
    if input.derive_portals && !root.contains_key("x-portals") {
        let portals = portals::derive_portals(&project);
        if !portals.is_empty() {
            root.insert("x-portals".into(), serde_yaml::Value::Sequence(portals));
        }
    }
    match render::render(&doc) {
        Ok(text) => {
            if let Some(finding) = payload::too_large_for_any_name(&text) {
                findings.push(finding);
            }
            report.rendered = Some(text);
        }
        Err(why) => findings.push(rules::YAML_INVALID.at(None, "", why, "use plain text keys")),
    }
    finish(report, findings, input.policy)
}

/// Most findings one report lists. A 128 KiB document can hold thousands of services, each with findings; an answer
/// must stay bounded (every finding is read by a model), and the first ones say what to fix.
pub const MAX_FINDINGS: usize = 50;

fn finish(mut report: Report, mut findings: Vec<Finding>, policy: &PolicyConfig) -> Report {
    policy::apply_level(&mut findings, policy);
    report.findings = cap_findings(findings);
    report
}

/// The most severe findings first (document order within a severity), at most [`MAX_FINDINGS`]; past the cap each
/// rule that fired again is reported once more with a count, so the verdict (and the rule ids) stay complete.
fn cap_findings(mut findings: Vec<Finding>) -> Vec<Finding> {
    if findings.len() <= MAX_FINDINGS {
        return findings;
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let rest = findings.split_off(MAX_FINDINGS);
    let mut dropped: std::collections::BTreeMap<&'static str, (Finding, usize)> = Default::default();
    for f in rest {
        dropped.entry(f.rule).or_insert_with(|| (f, 0)).1 += 1;
    }
    let mut summaries: Vec<Finding> = dropped
        .into_values()
        .map(|(mut f, n)| {
            f.message = format!("{n} more like this not listed, the first: {}", f.message);
            f
        })
        .collect();
    summaries.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings.extend(summaries);
    findings
}

fn describe(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "empty",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// `None` when `name` is a valid TrueNAS app name (`^[a-z]([-a-z0-9]*[a-z0-9])?$`, 1–40), else why not.
pub fn app_name_error(name: &str) -> Option<String> {
    payload::app_name_error(name)
}

/// The `app.create` argument object, or a `too-large` finding when it would not fit in one 64 KiB frame
/// (or an `app-name-invalid` finding).
pub fn create_payload(app_name: &str, compose: &str) -> Result<Value, Finding> {
    payload::create_payload(app_name, compose)
}

/// The `app.update` second argument (`{custom_compose_config_string}`), or `too-large` (or `app-name-invalid`).
pub fn update_payload(app_name: &str, compose: &str) -> Result<Value, Finding> {
    payload::update_payload(app_name, compose)
}

/// A copy of a compose document (as JSON, e.g. from `app.config`) with secret-looking environment values and URL
/// passwords masked ([`crate::redact::mask_compose`]).
pub fn mask_secrets(compose: &Value) -> Value {
    secrets::mask_secrets(compose)
}

/// [`Report::rendered`] for display: exactly the text sent, except that secret-looking environment values and URL
/// passwords are masked (the values substituted from `env` are masked by the tool layer, which knows them). The
/// masks are put into the sent tree itself, whose `$$` escapes are undone before it is written again (writing
/// escapes them once more), so `$$` stays `$$` and keys keep their order. `None` when the text does not parse, or is
/// larger than one TrueNAS frame: such a rendering cannot be deployed (a finding says so), and showing it would let
/// a small document with anchors make a multi-megabyte answer.
pub fn mask_rendered(rendered: &str) -> Option<String> {
    if rendered.len() > FRAME_LIMIT {
        return None;
    }
    let mut doc: serde_yaml::Value = serde_yaml::from_str(rendered).ok()?;
    let plain = serde_json::to_value(&doc).ok()?;
    let masked = secrets::mask_secrets(&plain);
    if masked == plain {
        return Some(rendered.to_string());
    }
    apply_masks(&mut doc, &masked);
    render::unescape_dollars(&mut doc);
    render::render(&doc).ok()
}

/// Put the strings of `masked` (a masked JSON copy of `doc`) where `doc` differs from them.
fn apply_masks(doc: &mut serde_yaml::Value, masked: &Value) {
    match (doc, masked) {
        (serde_yaml::Value::Mapping(m), Value::Object(o)) => {
            for (k, v) in m.iter_mut() {
                if let Some(mv) = o.get(&interpolate::key_text(k)) {
                    apply_masks(v, mv);
                }
            }
        }
        (serde_yaml::Value::Sequence(items), Value::Array(a)) => {
            for (v, mv) in items.iter_mut().zip(a) {
                apply_masks(v, mv);
            }
        }
        (serde_yaml::Value::Tagged(t), mv) => apply_masks(&mut t.value, mv),
        (v, Value::String(ms)) if v.as_str() != Some(ms.as_str()) => *v = serde_yaml::Value::String(ms.clone()),
        _ => {}
    }
}

//! Docker Compose for TrueNAS: parse every syntax form, judge the security policy, convert for `app.create`.
//!
//! OWNER: compose helper. The signatures here are the contract the tools rely on.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::config::PolicyConfig;

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
    /// Path into the document, e.g. "services.web.volumes[2]".
    pub path: String,
    pub message: String,
    pub fix: String,
}

/// One `${VAR}` substitution performed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Substitution {
    pub variable: String,
    /// "env" (from the caller's env map) or "default" (from `${VAR:-default}`).
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
    /// Host ports already used on the NAS by *other* apps (`app.used_ports`); `None` = not checked.
    pub used_ports: Option<&'a [u16]>,
    pub policy: &'a PolicyConfig,
    /// Add `x-portals` for published web ports when the document has none.
    pub derive_portals: bool,
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
    pub published_ports: Vec<PublishedPort>,
    /// The compose text to send to TrueNAS (interpolated, portals added); `None` when the document is unusable.
    pub rendered: Option<String>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Parse, interpolate and judge a compose document. Never panics; bounded in time and memory.
pub fn validate(input: &ValidateInput<'_>) -> Report {
    let _ = input;
    todo!()
}

/// `None` when `name` is a valid TrueNAS app name (`^[a-z]([-a-z0-9]*[a-z0-9])?$`, 1–40), else why not.
pub fn app_name_error(name: &str) -> Option<String> {
    let _ = name;
    todo!()
}

/// The `app.create` argument object, or a `too-large` finding when it would not fit in one 64 KiB frame.
pub fn create_payload(app_name: &str, compose: &str) -> Result<Value, Finding> {
    let _ = (app_name, compose);
    todo!()
}

/// The `app.update` second argument (`{custom_compose_config_string}`), or `too-large`.
pub fn update_payload(app_name: &str, compose: &str) -> Result<Value, Finding> {
    let _ = (app_name, compose);
    todo!()
}

/// A copy of a compose document (as JSON, e.g. from `app.config`) with secret-looking environment values masked.
pub fn mask_secrets(compose: &Value) -> Value {
    let _ = compose;
    todo!()
}

//! The tool catalogue: one table of tools (name, title, description, schemas, annotations, handler).
//!
//! [`catalog`] is the entry point the CLI uses. [`Tools`] owns what every handler shares: the operator's
//! configuration (read-only mode, writable apps, compose policy), the lazily built TrueNAS client and the audit
//! log. The safety controls live here, in front of the handlers, so no handler can forget them: write tools are
//! hidden and refused in read-only mode, app names outside `TRUENAS_WRITABLE_APPS` (or no app name at all) are
//! refused, and every change is written to the audit log ahead of the handler (`attempted`) and again with its
//! outcome and job id when the handler returns.

mod catalogue;
mod connection;
mod deploy;
mod diff;
mod failure;
mod job;
mod lifecycle;
mod logs;
mod prompt;
mod redacted;
mod resources;
mod settle;
mod status;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::audit::{AuditLog, Outcome};
use crate::config::Config;
use crate::mcp::tool::{
    CallContext, Catalog, CatalogError, PromptDef, PromptMessages, ResourceContents, ResourceDef, ResourceTemplateDef,
    ToolDef, ToolOutput,
};
use crate::redact::Secrets;
use crate::truenas::apps::Apps;
use crate::truenas::{Client, TnError};

pub use catalogue::ToolSpec;

/// The real catalogue for `config` (read-only mode, writable apps, policy, mock mode all come from it).
pub fn catalog(config: &Config) -> Arc<dyn Catalog> {
    Arc::new(Tools::new(config.clone()))
}

/// What audit records call the NAS of `config`: its host, or `simulator` in mock mode.
pub fn nas_label(config: &Config) -> String {
    if config.mock {
        return "simulator".into();
    }
    match config.base_url().ok().and_then(|u| crate::truenas::transport::Endpoint::parse(&u).ok()) {
        Some(e) => e.host,
        None => "(not configured)".into(),
    }
}

/// Everything the handlers share.
pub struct Tools {
    config: Config,
    client: OnceLock<Client>,
    audit: AuditLog,
    specs: Vec<ToolSpec>,
    /// Every value passed through an `env` argument so far: masked in all later output of this server.
    secrets: Arc<Secrets>,
}

/// What a write handler tells the audit log about the change it attempted.
#[derive(Debug, Default)]
pub struct Change {
    pub job_id: Option<i64>,
    /// Set when the output's `is_error` alone does not say it (refused, declined, cancelled, unknown, started).
    pub outcome: Option<Outcome>,
    pub detail: Option<String>,
    /// Nothing was sent to the NAS (dry run, identical compose, a question sent back to the user).
    pub not_attempted: bool,
}

impl Tools {
    pub fn new(config: Config) -> Tools {
        let audit = AuditLog::new(&config.audit, nas_label(&config));
        Tools { audit, specs: catalogue::specs(), config, client: OnceLock::new(), secrets: Arc::default() }
    }

    /// A catalogue that talks through `client` (tests that hold a simulator in-process).
    pub fn with_client(config: Config, client: Client) -> Tools {
        let tools = Tools::new(config);
        let _ = tools.client.set(client);
        tools
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The audit log (opened at start-up by `serve` and `call`, closed by them at exit).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The client, built on first use (no I/O until a call needs the NAS).
    pub fn client(&self) -> &Client {
        self.client.get_or_init(|| crate::sim::client_for(&self.config))
    }

    /// Whether a NAS (or the mock) is configured at all; without one only `validate_compose` can work offline.
    pub fn nas_configured(&self) -> bool {
        self.config.mock || self.config.host.is_some() || self.config.url.is_some()
    }

    /// Connect and get the version-shaped apps API.
    pub fn apps(&self) -> Result<Apps, TnError> {
        Apps::connect(self.client())
    }

    fn spec(&self, name: &str) -> Option<&ToolSpec> {
        self.specs.iter().find(|s| s.def.name == name)
    }

    /// The safety gate in front of every write tool: `None` when the call may go ahead.
    fn refuse_write(&self, tool: &str, args: &Value) -> Option<String> {
        if self.config.read_only {
            return Some(format!(
                "{tool} is disabled: this server runs read-only (TRUENAS_READ_ONLY=true); \
                 the operator must turn read-only off to allow changes"
            ));
        }
        // Fail closed: a write whose app the gate cannot name is not checked against the writable apps, not audited
        // by app, and not allowed.
        let Some(app) = args.get("app_name").and_then(Value::as_str) else {
            return Some(format!(
                "{tool} refused: it needs app_name (a string) naming the app it changes; nothing was changed"
            ));
        };
        if !self.config.app_is_writable(app) {
            return Some(format!(
                "{tool} refused: app '{app}' is not in the writable apps the operator allowed \
                 (TRUENAS_WRITABLE_APPS={}); use an app name matching one of those patterns or ask the operator",
                self.config.writable_apps.join(",")
            ));
        }
        None
    }
}

impl Catalog for Tools {
    fn tools(&self) -> Vec<ToolDef> {
        self.specs.iter().filter(|s| !(s.writes && self.config.read_only)).map(|s| s.def.clone()).collect()
    }

    fn call(&self, name: &str, args: Value, ctx: &CallContext) -> ToolOutput {
        let Some(spec) = self.spec(name) else {
            return ToolOutput::error(format!("unknown tool '{name}' (tools/list shows the available tools)"));
        };
        redacted::remember(&self.secrets, &args);
        let ctx = &redacted::context(ctx, &self.secrets);
        if !spec.writes {
            return redacted::output((spec.handler)(self, &args, ctx, &mut Change::default()), &self.secrets);
        }
        let app = args.get("app_name").and_then(Value::as_str);
        if let Some(reason) = self.refuse_write(name, &args) {
            self.audit.single(name, app, &args, Outcome::Refused, Some(reason.clone()));
            return ToolOutput::error(reason);
        }
        // A dry run never reaches the NAS, so it is not an attempt; every other call is recorded before the handler
        // can send anything, and refused when that record cannot be written.
        let dry_run = spec.def.input_schema.pointer("/properties/dry_run").is_some()
            && args.get("dry_run").and_then(Value::as_bool) == Some(true);
        let attempt = if dry_run {
            None
        } else {
            match self.audit.attempt(name, app, &args) {
                Ok(a) => Some(a),
                Err(why) => {
                    return ToolOutput::error(format!(
                        "{name} refused: the change cannot be recorded in the audit log ({why}); nothing was changed"
                    ))
                }
            }
        };
        let mut change = Change::default();
        let output = redacted::output((spec.handler)(self, &args, ctx, &mut change), &self.secrets);
        let outcome = if change.not_attempted || output.input_required.is_some() {
            Outcome::NoChange
        } else {
            change.outcome.unwrap_or(if output.is_error { Outcome::Failed } else { Outcome::Succeeded })
        };
        if change.detail.is_none() && output.is_error {
            change.detail = Some(output.text.lines().next().unwrap_or("").chars().take(300).collect());
        }
        let detail = change.detail.as_deref().map(|d| self.secrets.mask(d));
        match attempt {
            Some(a) => a.finish(outcome, change.job_id, detail),
            // A dry run that (against its contract) did more than plan still leaves a record.
            None if outcome != Outcome::NoChange => {
                self.audit.single(name, app, &args, outcome, detail);
            }
            None => {}
        }
        output
    }

    fn instructions(&self) -> Option<String> {
        Some(prompt::instructions(&self.config))
    }

    fn resources(&self) -> Vec<ResourceDef> {
        resources::resources()
    }

    fn resource_templates(&self) -> Vec<ResourceTemplateDef> {
        resources::templates()
    }

    fn read_resource(&self, uri: &str) -> Result<Vec<ResourceContents>, CatalogError> {
        match resources::read(self, uri) {
            Ok(contents) => Ok(redacted::resources(contents, &self.secrets)),
            Err(CatalogError::Internal(why)) => Err(CatalogError::Internal(self.secrets.mask(&why))),
            Err(e) => Err(e),
        }
    }

    fn prompts(&self) -> Vec<PromptDef> {
        prompt::prompts()
    }

    fn get_prompt(&self, name: &str, args: &Map<String, Value>) -> Result<PromptMessages, CatalogError> {
        prompt::get(name, args)
    }

    fn complete(&self, reference: &Value, argument: &str, value: &str) -> Vec<String> {
        resources::complete(self, reference, argument, value)
    }
}

/// Typed access to already validated arguments (defaults applied by the server; re-applied here for `call`).
pub(crate) struct Args<'a>(&'a Value);

impl<'a> Args<'a> {
    pub fn str(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).and_then(Value::as_str)
    }
    pub fn app_name(&self) -> &'a str {
        self.str("app_name").unwrap_or("")
    }
    pub fn bool(&self, key: &str, default: bool) -> bool {
        self.0.get(key).and_then(Value::as_bool).unwrap_or(default)
    }
    pub fn u64(&self, key: &str, default: u64) -> u64 {
        self.0.get(key).and_then(Value::as_u64).unwrap_or(default)
    }
    pub fn env(&self) -> BTreeMap<String, String> {
        self.0
            .get("env")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditTarget;
    use serde_json::json;

    fn audit_file(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("truenas-mcp-gate-{}-{tag}/audit.jsonl", std::process::id()))
    }

    #[test]
    fn read_only_hides_and_refuses_write_tools_and_audits_the_attempt() {
        let path = audit_file("ro");
        let mut config = Config::for_tests();
        config.read_only = true;
        config.audit = AuditTarget::File(path.clone());
        let tools = Tools::new(config);
        let listed: Vec<String> = tools.tools().into_iter().map(|t| t.name).collect();
        assert_eq!(listed.len(), 8);
        assert!(listed.iter().all(|n| !tools.spec(n).unwrap().writes));
        let out = tools.call("stop_custom_app", json!({"app_name": "web"}), &CallContext::detached());
        assert!(out.is_error && out.text.contains("TRUENAS_READ_ONLY"), "{}", out.text);
        let line: Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(line["outcome"], "refused", "a refusal by the gate is one record, no attempt");
        assert_eq!(line["tool"], "stop_custom_app");
        assert_eq!(line["app"], "web");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn writable_apps_gate_every_write_tool() {
        let mut config = Config::for_tests();
        config.writable_apps = vec!["test-*".into()];
        let tools = Tools::new(config);
        assert_eq!(tools.tools().len(), 15);
        for spec in tools.specs.iter().filter(|s| s.writes) {
            let name = &spec.def.name;
            let refusal = tools.refuse_write(name, &json!({"app_name": "prod"}));
            assert!(refusal.is_some_and(|r| r.contains("test-*")), "{name}");
            assert!(tools.refuse_write(name, &json!({"app_name": "test-web"})).is_none(), "{name}");
        }
    }

    #[test]
    fn the_gate_fails_closed_without_an_app_name() {
        let path = audit_file("noapp");
        let mut config = Config::for_tests();
        config.audit = AuditTarget::File(path.clone());
        let tools = Tools::new(config);
        for spec in tools.specs.iter().filter(|s| s.writes) {
            let name = &spec.def.name;
            for args in [json!({}), json!({"app_name": 7}), json!({"app_name": null})] {
                let refusal = tools.refuse_write(name, &args);
                assert!(refusal.as_deref().is_some_and(|r| r.contains("needs app_name")), "{name} {args}");
            }
        }
        let out = tools.call("delete_custom_app", json!({"confirm": true}), &CallContext::detached());
        assert!(out.is_error && out.text.contains("needs app_name"), "{}", out.text);
        let line: Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(line["outcome"], "refused");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn arguments_read_with_defaults() {
        let v = json!({"app_name": "web", "lines": 5, "env": {"A": "1", "B": 2}, "dry_run": true});
        let a = Args(&v);
        assert_eq!(a.app_name(), "web");
        assert_eq!(a.u64("lines", 100), 5);
        assert_eq!(a.u64("missing", 100), 100);
        assert!(a.bool("dry_run", false));
        assert!(a.bool("wait", true));
        assert_eq!(a.env(), BTreeMap::from([("A".to_string(), "1".to_string())]));
    }
}

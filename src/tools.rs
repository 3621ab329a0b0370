//! The tool catalogue: one table of tools (name, title, description, schemas, annotations, handler).
//!
//! [`catalog`] is the entry point the CLI uses. [`Tools`] owns what every handler shares: the operator's
//! configuration (read-only mode, writable apps, compose policy), the lazily built TrueNAS client and the audit
//! log. The safety controls live here, in front of the handlers, so no handler can forget them: write tools are
//! hidden and refused in read-only mode, app names outside `TRUENAS_WRITABLE_APPS` (or no app name at all) are
//! refused, and every change is written to the audit log ahead of the handler (`attempted`) and again with its
//! outcome and job id when the handler returns.

mod args;
mod catalogue;
mod connection;
mod deploy;
mod diff;
mod failure;
mod fleet;
mod hostpaths;
mod images;
mod job;
mod lifecycle;
mod logs;
mod outcome;
mod prompt;
mod redacted;
mod resources;
mod settle;
mod status;
mod undo;

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::audit::{AuditLog, Outcome as AuditOutcome};
use crate::clock::{Clock, SharedClock};
use crate::config::Config;
use crate::mcp::tool::{
    CallContext, Catalog, CatalogError, LogLevel, LogSink, PromptDef, PromptMessages, ResourceContents, ResourceDef,
    ResourceTemplateDef, ToolDef, ToolOutput,
};
use crate::redact::Secrets;
use crate::truenas::apps::Apps;
use crate::truenas::{Client, TnError};

pub use catalogue::ToolSpec;
pub use fleet::Fleet;

/// Each tool's `structuredContent` schema by name (kept in code, not published: see `catalogue.rs`).
pub fn output_schemas() -> std::collections::BTreeMap<String, Value> {
    catalogue::specs().into_iter().map(|s| (s.def.name, s.output_schema)).collect()
}
pub use outcome::Outcome;

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
    /// One log for every NAS of the fleet; records carry [`Tools::label`].
    audit: Arc<AuditLog>,
    /// The NAS's name in the fleet (`default` for the environment's one NAS).
    name: String,
    /// What audit records call this NAS: its host, or `name (host)` for an entry of a fleet file.
    label: String,
    /// Whether the NAS comes from a fleet file (refusals then point at the file, not at a variable).
    from_file: bool,
    specs: Vec<ToolSpec>,
    /// Every value passed through an `env` argument so far: masked in all later output of this server.
    secrets: Arc<Secrets>,
    /// The time the settle, health and log loops wait on (a virtual clock in tests).
    clock: SharedClock,
}

impl Tools {
    pub fn new(config: Config) -> Tools {
        let label = nas_label(&config);
        let audit = Arc::new(AuditLog::new(&config.audit, label.clone()));
        Tools {
            audit,
            name: crate::config::fleet::DEFAULT_NAME.into(),
            label,
            from_file: false,
            specs: catalogue::specs(),
            config,
            client: OnceLock::new(),
            secrets: Arc::default(),
            clock: crate::clock::system(),
        }
    }

    /// One NAS of a fleet, sharing the fleet's audit log and secrets.
    fn member(
        entry: &crate::config::fleet::NasEntry,
        from_file: bool,
        audit: Arc<AuditLog>,
        secrets: Arc<Secrets>,
    ) -> Tools {
        let host = nas_label(&entry.config);
        let label = if from_file { format!("{} ({host})", entry.name) } else { host };
        Tools {
            audit,
            name: entry.name.clone(),
            label,
            from_file,
            specs: catalogue::specs(),
            config: entry.config.clone(),
            client: OnceLock::new(),
            secrets,
            clock: crate::clock::system(),
        }
    }

    /// The NAS's name in the fleet.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same catalogue waiting on `clock` instead of the system clock (tests drive time instead of waiting).
    pub fn with_clock(mut self, clock: SharedClock) -> Tools {
        self.clock = clock;
        self
    }

    /// The clock the handlers' waits use.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
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

    /// Check the NAS once (connect, log in, read the apps service: `test_connection`) and send the answer as a log
    /// message, `prefix` first: a bad setting shows in the client while start-up does not wait for the NAS.
    pub(crate) fn report_health(&self, log: &dyn LogSink, prefix: &str) {
        let out = connection::test_connection(self, connection::NoArgs {}, &CallContext::detached());
        let problems = out.structured.as_ref().and_then(|s| s["problems"].as_array()).map_or(0, Vec::len);
        let level = if out.is_error || problems > 0 { LogLevel::Warning } else { LogLevel::Info };
        log.log(level, "truenas", Value::from(self.secrets.mask(&format!("{prefix}{}", out.text))));
    }

    fn spec(&self, name: &str) -> Option<&ToolSpec> {
        self.specs.iter().find(|s| s.def.name == name)
    }

    /// The safety gate in front of every write tool: `None` when the call may go ahead.
    fn refuse_write(&self, tool: &str, args: &Value) -> Option<String> {
        if self.config.read_only && self.from_file {
            return Some(format!(
                "{tool} refused: NAS '{}' is read-only (read_only: true in the fleet file); nothing was changed — \
                 name a writable NAS in `nas`, or the operator must turn read-only off for this one",
                self.name
            ));
        }
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

    fn call(&self, name: &str, mut args: Value, ctx: &CallContext) -> ToolOutput {
        let Some(spec) = self.spec(name) else {
            return ToolOutput::error(format!("unknown tool '{name}' (tools/list shows the available tools)"));
        };
        redacted::remember(&self.secrets, &args);
        let ctx = &redacted::context(ctx, &self.secrets);
        let app = args.get("app_name").and_then(Value::as_str).map(str::to_string);
        let app = app.as_deref();
        if spec.writes {
            if let Some(reason) = self.refuse_write(name, &args) {
                self.audit.single_on(&self.label, name, app, &args, AuditOutcome::Refused, Some(reason.clone()));
                return ToolOutput::error(reason);
            }
        }
        // The server validated and defaulted the arguments already; `Tools` is also called directly (`call`,
        // tests), so the schema's defaults and checks are applied here too before the one typed parse.
        let run = match typed_arguments(spec, &mut args) {
            Ok(run) => run,
            Err(reason) => {
                if spec.writes {
                    self.audit.single_on(&self.label, name, app, &args, AuditOutcome::Refused, Some(reason.clone()));
                }
                return ToolOutput::error(reason);
            }
        };
        // The app-name rule, in words (the schema only bounds the length): a name TrueNAS would refuse is no app.
        if let Some(why) = app.and_then(crate::compose::app_name_error) {
            let reason = format!("invalid app_name: {why}");
            if spec.writes {
                self.audit.single_on(&self.label, name, app, &args, AuditOutcome::Refused, Some(reason.clone()));
            }
            return ToolOutput::error(reason);
        }
        if !spec.writes {
            let outcome = run(self, ctx);
            // A read with something to record (secrets revealed) leaves one record.
            if let Some(audited) = outcome.audit {
                let detail = outcome.audit_detail().map(|d| self.secrets.mask(&d));
                self.audit.single_on(&self.label, name, app, &args, audited, detail);
            }
            return redacted::output(outcome.into_output(), &self.secrets);
        }
        // A dry run never reaches the NAS, so it is not an attempt; every other call is recorded before the handler
        // can send anything, and refused when that record cannot be written.
        let dry_run = spec.def.input_schema.pointer("/properties/dry_run").is_some()
            && args.get("dry_run").and_then(Value::as_bool) == Some(true);
        let attempt = if dry_run {
            None
        } else {
            match self.audit.attempt_on(&self.label, name, app, &args) {
                Ok(a) => Some(a),
                Err(why) => {
                    return ToolOutput::error(format!(
                        "{name} refused: the change cannot be recorded in the audit log ({why}); nothing was changed"
                    ))
                }
            }
        };
        let outcome = run(self, ctx);
        let audited = outcome.audit_outcome();
        let detail = outcome.audit_detail().map(|d| self.secrets.mask(&d));
        let job_id = outcome.job_id;
        let output = redacted::output(outcome.into_output(), &self.secrets);
        match attempt {
            Some(a) => a.finish(audited, job_id, detail),
            // A dry run that (against its contract) did more than plan still leaves a record.
            None if audited != AuditOutcome::NoChange => {
                self.audit.single_on(&self.label, name, app, &args, audited, detail);
            }
            None => {}
        }
        output
    }

    /// One background look at the NAS (connect, log in, read the apps service: `test_connection`) once the client
    /// is ready, sent as a log message: a bad setting shows in the client while start-up does not wait for the NAS.
    fn on_initialized(self: Arc<Self>, log: Arc<dyn LogSink>) {
        if !self.nas_configured() {
            return;
        }
        let spawned =
            std::thread::Builder::new().name("nas-check".into()).spawn(move || self.report_health(log.as_ref(), ""));
        if let Err(e) = spawned {
            log::warn!("the background check of the NAS could not start: {e}");
        }
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

/// The schema's defaults filled into `args`, the schema checked, and the arguments parsed into the handler's
/// struct: the call to run, or why the arguments do not fit.
fn typed_arguments(spec: &ToolSpec, args: &mut Value) -> Result<args::Prepared, String> {
    let name = &spec.def.name;
    crate::jsonschema::apply_defaults(&spec.def.input_schema, args);
    if let Err(errors) = crate::jsonschema::validate(&spec.def.input_schema, args) {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(format!("invalid arguments for tool '{name}': {}", list.join("; ")));
    }
    spec.handler.prepare(args).map_err(|why| format!("invalid arguments for tool '{name}': {why}"))
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
        assert_eq!(listed.len(), 10);
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
        assert_eq!(tools.tools().len(), 19);
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
    fn arguments_that_do_not_fit_the_schema_never_reach_a_handler() {
        let path = audit_file("badargs");
        let mut config = Config::for_tests();
        config.audit = AuditTarget::File(path.clone());
        let tools = Tools::new(config);
        let out = tools.call("get_job_status", json!({"job_id": "seven"}), &CallContext::detached());
        assert!(out.is_error && out.text.starts_with("invalid arguments for tool 'get_job_status'"), "{}", out.text);
        let out = tools.call("stop_custom_app", json!({"app_name": "web", "wait": "yes"}), &CallContext::detached());
        assert!(out.is_error && out.text.contains("wait"), "{}", out.text);
        let line: Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(line["outcome"], "refused", "a write refused for its arguments is one record, no attempt");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

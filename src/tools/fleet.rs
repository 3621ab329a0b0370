//! Several NAS behind one catalogue: [`Fleet`] holds one [`Tools`] per NAS (each with its own lazily connected
//! client, hence its own actor) and routes every call by its `nas` argument.
//!
//! The catalogue does not grow with the fleet: one optional `nas` argument per tool (default: the fleet's default
//! NAS), `nas: "*"` on `list_custom_apps` for every NAS at once. Safety settings stay per NAS: a call is gated by
//! the chosen NAS's own read-only mode and writable apps. A NAS that is down costs only the calls sent to it: every
//! NAS has its own connection, and the all-NAS listing asks them side by side.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{prompt, resources, Tools};
use crate::audit::AuditLog;
use crate::clock::SharedClock;
use crate::config::fleet::Fleet as FleetConfig;
use crate::mcp::tool::{
    CallContext, Catalog, CatalogError, LogLevel, LogSink, ProgressSink, PromptDef, PromptMessages, ResourceContents,
    ResourceDef, ResourceTemplateDef, ToolDef, ToolOutput,
};
use crate::redact::Secrets;

/// The `nas` value that means every NAS (only `list_custom_apps` takes it).
pub const ALL: &str = "*";

/// The query a resource URI names its NAS with when the fleet has several (`truenas://apps?nas=backup`).
const NAS_QUERY: &str = "?nas=";

/// The catalogue of a fleet.
pub struct Fleet {
    members: Vec<Tools>,
    default: usize,
    audit: Arc<AuditLog>,
}

impl Fleet {
    pub fn new(fleet: &FleetConfig) -> Fleet {
        let first = &fleet.default_entry().config;
        let audit = Arc::new(AuditLog::new(&first.audit, super::nas_label(first)));
        let secrets: Arc<Secrets> = Arc::default();
        let members =
            fleet.entries.iter().map(|e| Tools::member(e, fleet.from_file, audit.clone(), secrets.clone())).collect();
        Fleet { members, default: fleet.default, audit }
    }

    /// Every NAS's waits on `clock` (tests drive time instead of waiting).
    pub fn with_clock(mut self, clock: SharedClock) -> Fleet {
        self.members = self.members.into_iter().map(|m| m.with_clock(clock.clone())).collect();
        self
    }

    /// The audit log every NAS writes to (opened at start-up by `serve` and `call`, closed by them at exit).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The NAS named `name`, or an answer saying which names exist.
    fn pick(&self, name: Option<&str>) -> Result<&Tools, String> {
        match name {
            None => Ok(&self.members[self.default]),
            Some(n) => self.members.iter().find(|m| m.name == n).ok_or_else(|| {
                format!("unknown nas '{}' (this server manages: {})", crate::jsonrpc::clip(n), self.names().join(", "))
            }),
        }
    }

    fn names(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }

    fn several(&self) -> bool {
        self.members.len() > 1
    }

    /// `list_custom_apps` on every NAS side by side, grouped by NAS; a NAS that fails is reported, not fatal.
    fn list_everywhere(&self, args: &Value, ctx: &CallContext) -> ToolOutput {
        let results: Vec<(&str, ToolOutput)> = std::thread::scope(|scope| {
            let running: Vec<_> = self
                .members
                .iter()
                .map(|m| (m.name.as_str(), scope.spawn(|| m.call("list_custom_apps", args.clone(), ctx))))
                .collect();
            running
                .into_iter()
                .map(|(n, h)| (n, h.join().unwrap_or_else(|_| ToolOutput::error("internal error listing apps"))))
                .collect()
        });
        let (mut apps, mut unreachable, mut text, mut status) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (nas, out) in results {
            if out.is_error {
                text.push(format!("## {nas}: not reachable\n{}", out.text));
                status.push(format!("{nas}: unreachable"));
                unreachable.push(json!({"nas": nas, "error": out.text}));
                continue;
            }
            text.push(format!("## {nas}\n{}", out.text));
            let s = out.structured.unwrap_or_default();
            status.push(format!("{nas}: {}", s["docker_status"].as_str().unwrap_or("?")));
            for mut app in s["apps"].as_array().cloned().unwrap_or_default() {
                app["nas"] = json!(nas);
                apps.push(app);
            }
        }
        let mut structured = json!({"count": apps.len(), "apps": apps, "docker_status": status.join("; ")});
        if !unreachable.is_empty() {
            structured["unreachable"] = Value::Array(unreachable);
        }
        ToolOutput::ok(text.join("\n\n"), structured)
    }

    /// The NAS a resource URI names (`?nas=` at its end) and the URI without it.
    fn resource_target<'a>(&self, uri: &'a str) -> Result<(&Tools, &'a str), CatalogError> {
        match uri.rsplit_once(NAS_QUERY) {
            Some((base, nas)) => {
                let member = self.pick(Some(nas)).map_err(|_| CatalogError::ResourceNotFound(uri.to_string()))?;
                Ok((member, base))
            }
            None => Ok((&self.members[self.default], uri)),
        }
    }
}

impl Catalog for Fleet {
    /// One background check per configured NAS, each on its own thread (a log message naming its NAS when there are
    /// several): start-up does not wait, and a NAS that is down holds up no other's check.
    fn on_initialized(self: Arc<Self>, log: Arc<dyn LogSink>) {
        for i in (0..self.members.len()).filter(|&i| self.members[i].nas_configured()) {
            let (fleet, log) = (Arc::clone(&self), Arc::clone(&log));
            let spawned = std::thread::Builder::new().name("nas-check".into()).spawn(move || {
                let m = &fleet.members[i];
                let prefix = if fleet.several() { format!("[nas {}] ", m.name) } else { String::new() };
                m.report_health(log.as_ref(), &prefix);
            });
            if let Err(e) = spawned {
                log::warn!("the background check of the NAS could not start: {e}");
            }
        }
    }

    /// Write tools are hidden only when every NAS is read-only: a list cannot differ per NAS, the gate can.
    fn tools(&self) -> Vec<ToolDef> {
        let mut tools = match self.members.iter().find(|m| !m.config.read_only) {
            Some(writable) => writable.tools(),
            None => self.members[self.default].tools(),
        };
        // One NAS needs no choice: its catalogue stays exactly the single-NAS one.
        if self.several() {
            for t in &mut tools {
                t.input_schema["properties"]["nas"] = super::catalogue::nas_argument();
            }
        }
        tools
    }

    fn call(&self, name: &str, mut args: Value, ctx: &CallContext) -> ToolOutput {
        let nas = match args.as_object_mut().and_then(|o| o.remove("nas")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return ToolOutput::error(format!("invalid arguments for tool '{name}': nas must be a string")),
        };
        if nas.as_deref() == Some(ALL) {
            if name != "list_custom_apps" {
                return ToolOutput::error(format!(
                    "nas \"*\" works only with list_custom_apps; name one NAS for {name}: {}",
                    self.names().join(", ")
                ));
            }
            return self.list_everywhere(&args, ctx);
        }
        let member = match self.pick(nas.as_deref()) {
            Ok(m) => m,
            Err(why) => return ToolOutput::error(why),
        };
        if !self.several() {
            return member.call(name, args, ctx);
        }
        // With several NAS, the result and the progress say which one they are about.
        let ctx = named(ctx, &member.name);
        let mut out = member.call(name, args, &ctx);
        out.text = format!("[nas {}] {}", member.name, out.text);
        out
    }

    fn instructions(&self) -> Option<String> {
        let default = &self.members[self.default];
        let mut s = prompt::instructions(&default.config);
        if self.several() {
            let names: Vec<(&str, bool)> = self.members.iter().map(|m| (m.name.as_str(), m.config.read_only)).collect();
            s.push_str(&prompt::fleet_sentence(&names, &default.name));
        }
        Some(s)
    }

    fn resources(&self) -> Vec<ResourceDef> {
        if !self.several() {
            return resources::resources();
        }
        let mut all = Vec::new();
        for m in &self.members {
            for r in resources::resources() {
                all.push(ResourceDef {
                    uri: format!("{}{NAS_QUERY}{}", r.uri, m.name),
                    name: format!("{}-{}", r.name, m.name),
                    title: format!("{} on {}", r.title, m.name),
                    ..r
                });
            }
        }
        all
    }

    fn resource_templates(&self) -> Vec<ResourceTemplateDef> {
        let mut templates = resources::templates();
        if self.several() {
            for t in &mut templates {
                t.uri_template.push_str("{?nas}");
            }
        }
        templates
    }

    fn read_resource(&self, uri: &str) -> Result<Vec<ResourceContents>, CatalogError> {
        let (member, base) = self.resource_target(uri)?;
        let contents = member.read_resource(base)?;
        Ok(contents.into_iter().map(|c| ResourceContents { uri: uri.to_string(), ..c }).collect())
    }

    fn prompts(&self) -> Vec<PromptDef> {
        self.members[self.default].prompts()
    }

    fn get_prompt(&self, name: &str, args: &Map<String, Value>) -> Result<PromptMessages, CatalogError> {
        self.members[self.default].get_prompt(name, args)
    }

    fn complete(&self, reference: &Value, argument: &str, value: &str) -> Vec<String> {
        if argument == "nas" {
            return self.names().into_iter().filter(|n| n.starts_with(value)).map(str::to_string).collect();
        }
        let mut reference = reference.clone();
        if let Some(uri) = reference.get("uri").and_then(Value::as_str).and_then(|u| u.strip_suffix("{?nas}")) {
            reference["uri"] = json!(uri);
        }
        self.members[self.default].complete(&reference, argument, value)
    }
}

/// `ctx` whose progress messages and log lines name the NAS.
fn named(ctx: &CallContext, nas: &str) -> CallContext {
    let nas: Arc<str> = Arc::from(nas);
    CallContext {
        cancel: ctx.cancel.clone(),
        progress: Arc::new(Named { inner: ctx.progress.clone(), nas: nas.clone() }),
        log: Arc::new(Named { inner: ctx.log.clone(), nas }),
        elicitor: ctx.elicitor.clone(),
    }
}

struct Named<T: ?Sized> {
    inner: Arc<T>,
    nas: Arc<str>,
}

impl ProgressSink for Named<dyn ProgressSink> {
    fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let message = message.map(|m| format!("[nas {}] {m}", self.nas));
        self.inner.report(progress, total, message.as_deref());
    }
}

impl LogSink for Named<dyn LogSink> {
    fn log(&self, level: LogLevel, logger: &str, mut data: Value) {
        if let Some(obj) = data.as_object_mut() {
            obj.insert("nas".into(), json!(&*self.nas));
        }
        self.inner.log(level, logger, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fleet::NasEntry;
    use crate::config::Config;

    fn fleet(read_only: &[bool]) -> Fleet {
        let entries = read_only
            .iter()
            .enumerate()
            .map(|(i, ro)| NasEntry { name: format!("n{i}"), config: Config { read_only: *ro, ..Config::for_tests() } })
            .collect();
        Fleet::new(&FleetConfig { entries, default: 0, from_file: true })
    }

    #[test]
    fn write_tools_hide_only_when_every_nas_is_read_only_and_the_gate_refuses_per_nas() {
        let all = Fleet::new(&FleetConfig::single(Config::for_tests())).tools().len();
        assert_eq!(fleet(&[true, false]).tools().len(), all, "the list cannot differ per NAS");
        assert!(fleet(&[true, true]).tools().len() < all);
        let out = fleet(&[true, false]).call("stop_custom_app", json!({"app_name": "web"}), &CallContext::detached());
        assert!(out.is_error && out.text.contains("NAS 'n0' is read-only"), "{}", out.text);
    }

    #[test]
    fn unknown_names_and_stars_are_explained() {
        let f = fleet(&[false, false]);
        let out = f.call("list_custom_apps", json!({"nas": "n9"}), &CallContext::detached());
        assert_eq!(out.text, "unknown nas 'n9' (this server manages: n0, n1)");
        let out = f.call("stop_custom_app", json!({"nas": "*", "app_name": "web"}), &CallContext::detached());
        assert!(out.is_error && out.text.starts_with("nas \"*\" works only with list_custom_apps"), "{}", out.text);
        assert_eq!(f.complete(&json!({"type": "ref/resource"}), "nas", "n"), ["n0", "n1"]);
    }
}

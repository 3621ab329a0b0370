//! `truenas-mcp call` and `truenas-mcp tools`: the tool catalogue from a shell, with the same validation,
//! policy and audit as over MCP.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::config::fleet::Fleet;
use crate::jsonrpc::clip;
use crate::mcp::tool::{CallContext, CancelToken, Catalog, ProgressSink, ToolDef, ToolOutput};

/// The MCP `Tool` object for a definition (as `tools/list` publishes it in the newest revision).
pub fn tool_json(t: &ToolDef) -> Value {
    let mut v = json!({
        "name": t.name,
        "title": t.title,
        "description": t.description,
        "inputSchema": t.input_schema,
        "annotations": {
            "title": t.title,
            "readOnlyHint": t.annotations.read_only,
            "destructiveHint": t.annotations.destructive,
            "idempotentHint": t.annotations.idempotent,
            "openWorldHint": t.annotations.open_world,
        },
    });
    if let Some(o) = &t.output_schema {
        v["outputSchema"] = o.clone();
    }
    v
}

/// `tools [--json]`.
pub fn run_tools(fleet: &Fleet, rest: &[String]) -> Result<ExitCode> {
    let mut as_json = false;
    for a in rest {
        match a.as_str() {
            "--json" => as_json = true,
            "--help" | "-h" => {
                super::out("truenas-mcp tools [--json]\n\nList the tools this configuration publishes (read-only mode hides write tools).\n")?;
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("unknown argument '{other}' for tools (see tools --help)"),
        }
    }
    let tools = crate::tools::Fleet::new(fleet).tools();
    if as_json {
        let list: Vec<Value> = tools.iter().map(tool_json).collect();
        super::out(&format!("{}\n", serde_json::to_string_pretty(&json!({ "tools": list }))?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    for t in &tools {
        let a = t.annotations;
        let kind = if a.read_only {
            "read-only"
        } else if a.destructive {
            "destructive"
        } else {
            "changes the NAS"
        };
        s.push_str(&format!("{} — {} [{kind}]\n", t.name, t.title));
        let first = t.description.split_terminator(". ").next().unwrap_or("").trim_end_matches('.');
        s.push_str(&format!("    {first}.\n"));
        if let Some(props) = t.input_schema.get("properties").and_then(Value::as_object) {
            let required: Vec<&str> = t
                .input_schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (name, p) in props {
                let ty = p.get("type").map(|t| t.to_string().replace('"', "")).unwrap_or_else(|| "any".into());
                let req = if required.contains(&name.as_str()) { ", required" } else { "" };
                let default = p.get("default").map(|d| format!(", default {d}")).unwrap_or_default();
                s.push_str(&format!("      {name} ({ty}{req}{default})\n"));
            }
        }
    }
    s.push_str(&format!("\n{} tools. Run one with: truenas-mcp call <tool> key=value ...\n", tools.len()));
    super::out(&s)?;
    Ok(ExitCode::SUCCESS)
}

const CALL_HELP: &str = "truenas-mcp call <tool> [--nas NAME] [--args JSON | key=value ...] [--json]

Run one tool with the same validation, policy and audit as over MCP.
  key=value     one argument; the value is parsed as JSON when it is valid JSON (numbers, true, {...}),
                otherwise taken as a string; key=@path reads the value from a file (e.g. compose_yaml=@compose.yml)
  --args JSON   all arguments as one JSON object
  --json        print the structured result as JSON instead of text
  --nas NAME    the NAS of the fleet file to run it on (default: the file's default; * lists every NAS)
Progress of long TrueNAS jobs is drawn on stderr; Ctrl-C aborts the running job.
Exit codes: 0 the tool succeeded, 1 it reported an error or a refusal (validate_compose of a refused compose),
2 bad usage or configuration, 130 interrupted (Ctrl-C).
";

/// Parse `key=value` / `--args JSON` into an argument object.
pub fn parse_call_args(rest: &[String]) -> Result<(Map<String, Value>, bool)> {
    let mut args = Map::new();
    let mut as_json = false;
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        if a == "--json" {
            as_json = true;
        } else if a == "--args" || a.starts_with("--args=") {
            let text = match a.strip_prefix("--args=") {
                Some(t) => t.to_string(),
                None => {
                    i += 1;
                    rest.get(i).cloned().context("--args needs a JSON object")?
                }
            };
            let v: Value = serde_json::from_str(&text).context("--args must be a JSON object")?;
            match v {
                Value::Object(m) => args.extend(m),
                _ => bail!("--args must be a JSON object, got {}", clip(&text)),
            }
        } else if let Some((k, v)) = a.split_once('=') {
            if k.is_empty() || k.starts_with('-') {
                bail!("bad argument '{}': expected key=value", clip(a));
            }
            let value = if let Some(path) = v.strip_prefix('@') {
                let read = std::fs::read_to_string(path);
                Value::String(read.with_context(|| format!("cannot read {} for {}", clip(path), clip(k)))?)
            } else {
                serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
            };
            args.insert(k.to_string(), value);
        } else {
            bail!("bad argument '{}': expected key=value, --args JSON or --json (see call --help)", clip(a));
        }
        i += 1;
    }
    Ok((args, as_json))
}

/// `--nas NAME` (or `--nas=NAME`) taken out of `call`'s arguments.
pub fn take_nas(rest: &[String]) -> Result<(Option<String>, Vec<String>)> {
    let (mut nas, mut others) = (None, Vec::new());
    let mut i = 0;
    while i < rest.len() {
        if let Some(v) = rest[i].strip_prefix("--nas=") {
            nas = Some(v.to_string());
        } else if rest[i] == "--nas" {
            i += 1;
            nas = Some(rest.get(i).cloned().context("--nas needs the name of a NAS of the fleet file")?);
        } else {
            others.push(rest[i].clone());
        }
        i += 1;
    }
    Ok((nas, others))
}

/// Draws TrueNAS job progress on stderr.
struct StderrProgress {
    tty: bool,
    last: Mutex<f64>,
}

impl ProgressSink for StderrProgress {
    fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if progress <= *last {
            return;
        }
        *last = progress;
        let pct = match total {
            Some(t) if t > 0.0 => (progress / t * 100.0).clamp(0.0, 100.0),
            _ => progress.clamp(0.0, 100.0),
        };
        let filled = (pct / 5.0) as usize;
        let bar = format!(
            "[{}{}] {:>3.0}% {}",
            "#".repeat(filled),
            ".".repeat(20 - filled.min(20)),
            pct,
            message.unwrap_or("")
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{bar}");
        } else {
            let _ = writeln!(err, "{bar}");
        }
        let _ = err.flush();
    }
}

/// `call <tool> ...`.
pub fn run_call(fleet: &Fleet, rest: &[String]) -> Result<ExitCode> {
    if rest.is_empty() || rest.iter().any(|a| a == "--help" || a == "-h") {
        super::out(CALL_HELP)?;
        return Ok(if rest.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS });
    }
    // `--nas` may come before or after the tool's name.
    let (nas, rest) = take_nas(rest)?;
    let Some(name) = rest.first() else { bail!("call needs the name of a tool (see call --help)") };
    let (mut args, as_json) = parse_call_args(&rest[1..])?;
    if let Some(nas) = &nas {
        if nas != "*" && fleet.get(nas).is_none() {
            bail!("unknown nas '{}' (this server manages: {})", clip(nas), fleet.names());
        }
        // One NAS publishes no `nas` argument: naming it is allowed, and says nothing more.
        if fleet.entries.len() > 1 {
            args.insert("nas".into(), Value::String(nas.clone()));
        }
    }
    let config = &nas.as_deref().and_then(|n| fleet.get(n)).unwrap_or(fleet.default_entry()).config;
    let catalog = Arc::new(crate::tools::Fleet::new(fleet));
    catalog.audit().open().map_err(anyhow::Error::msg)?;
    let tools = catalog.tools();
    let Some(tool) = tools.iter().find(|t| &t.name == name) else {
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        let hint = if config.read_only { " (read-only mode hides write tools)" } else { "" };
        bail!("unknown tool '{}'{hint}; available: {}", clip(name), names.join(", "));
    };
    let mut args = Value::Object(args);
    crate::jsonschema::apply_defaults(&tool.input_schema, &mut args);
    let mut list: Vec<String> = match crate::jsonschema::validate(&tool.input_schema, &args) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| format!("  {e}")).collect(),
    };
    // The app-name rule (the schema bounds only its length), in words, before anything connects.
    if let Some(why) = args.get("app_name").and_then(Value::as_str).and_then(crate::compose::app_name_error) {
        if !list.iter().any(|l| l.starts_with("  app_name")) {
            list.insert(0, format!("  app_name: {why}"));
        }
    }
    if !list.is_empty() {
        bail!("invalid arguments for {name}:\n{}", list.join("\n"));
    }
    let cancel = CancelToken::new();
    install_interrupt(cancel.clone(), catalog.clone());
    let tty = std::io::stderr().is_terminal();
    let mut ctx = CallContext::detached();
    ctx.cancel = cancel;
    ctx.progress = Arc::new(StderrProgress { tty, last: Mutex::new(f64::MIN) });
    let output = catalog.call(name, args, &ctx);
    if tty {
        eprint!("\r\x1b[2K");
    }
    if output.is_error && output.text.contains("websocket upgrade failed") {
        if let Some(problem) = super::check::plain_ws_to_a_tls_port(config) {
            eprintln!("truenas-mcp: {problem}: {}", super::check::TLS_PORT_FIX);
        }
    }
    if as_json {
        let v = output.structured.clone().unwrap_or_else(|| json!({ "text": output.text }));
        super::out(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
    } else {
        super::out(&format!("{}\n", output.text.trim_end()))?;
    }
    Ok(ExitCode::from(exit_code(&output, ctx.cancel.is_cancelled())))
}

/// The exit code of `call`, one rule for every tool (README "Commands", `CALL_HELP`): 0 the tool succeeded; 1 the
/// tool reported an error or a negative verdict (`valid: false`: `validate_compose` of a compose that would be
/// refused); 130 the call was interrupted (Ctrl-C). Bad usage and configuration exit 2 before any tool runs.
fn exit_code(output: &ToolOutput, interrupted: bool) -> u8 {
    let refused = output.structured.as_ref().and_then(|s| s.get("valid")) == Some(&Value::Bool(false));
    if interrupted {
        130
    } else if output.is_error || refused {
        1
    } else {
        0
    }
}

/// Ctrl-C sets the cancel flag (the tool aborts its TrueNAS job); a second Ctrl-C exits at once, recording the
/// change still in flight as unknown.
fn install_interrupt(cancel: CancelToken, tools: Arc<crate::tools::Fleet>) {
    let result = ctrlc::set_handler(move || {
        if cancel.is_cancelled() {
            tools.audit().close();
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: aborting the running job (Ctrl-C again to quit at once)");
        cancel.cancel();
    });
    if let Err(e) = result {
        log::debug!("cannot install the Ctrl-C handler: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn key_values_parse_as_json_or_string() {
        let (args, as_json) =
            parse_call_args(&s(&["lines=50", "app_name=web", "dry_run=true", "env={\"A\":\"1\"}", "--json"])).unwrap();
        assert!(as_json);
        assert_eq!(Value::Object(args), json!({"lines": 50, "app_name": "web", "dry_run": true, "env": {"A": "1"}}));
        let (args, _) = parse_call_args(&s(&["--args", "{\"app_name\":\"x\"}", "lines=3"])).unwrap();
        assert_eq!(Value::Object(args), json!({"app_name": "x", "lines": 3}));
    }

    #[test]
    fn bad_arguments_are_explained() {
        assert!(parse_call_args(&s(&["oops"])).unwrap_err().to_string().contains("expected key=value"));
        assert!(parse_call_args(&s(&["--args", "[1]"])).unwrap_err().to_string().contains("must be a JSON object"));
        assert!(parse_call_args(&s(&["compose_yaml=@/nonexistent/x.yml"]))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }

    #[test]
    fn exit_codes_follow_one_rule_for_every_tool() {
        let refused = ToolOutput::ok("refused", json!({"valid": false, "findings": []}));
        let valid = ToolOutput::ok("valid", json!({"valid": true}));
        assert_eq!(exit_code(&ToolOutput::ok("done", json!({"apps": []})), false), 0);
        assert_eq!(exit_code(&valid, false), 0);
        assert_eq!(exit_code(&refused, false), 1);
        assert_eq!(exit_code(&ToolOutput::error("app not found"), false), 1);
        assert_eq!(exit_code(&ToolOutput::error("aborted"), true), 130);
        assert_eq!(exit_code(&valid, true), 130);
    }

    #[test]
    fn long_arguments_are_quoted_briefly() {
        let long = "z".repeat(200_000);
        for args in [vec![long.clone()], vec![format!("-{long}=1")], vec![format!("--args=\"{long}\"")]] {
            let message = parse_call_args(&args).unwrap_err().to_string();
            assert!(message.len() < 200 && message.contains(" bytes)"), "{}", &message[..200.min(message.len())]);
        }
    }
}

//! The test catalogue: tools that exercise the MCP server (`echo` schema validation, `slow` cancellation, `boom`
//! panics, `progress`, `log`, `confirm` elicitation). Shared by the `it` and `interop` targets.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Map, Value};
use truenas_mcp::mcp::tool::{
    CatalogError, Elicitation, LogLevel, PromptDef, PromptMessages, ResourceContents, ResourceDef, ResourceTemplateDef,
};
use truenas_mcp::mcp::{Annotations, CallContext, Catalog, ToolDef, ToolOutput};

use crate::support::PATIENCE;

/// Tools that exercise the server: `echo` (schema validation), `slow` (cancellation), `boom` (panics),
/// `progress`, `log`, `confirm` (elicitation). Handlers report what they observed on `events`.
pub struct TestCatalog {
    pub events: Mutex<Sender<String>>,
    /// When set, `progress` makes its late report only once the test releases it (after it saw the response).
    pub gate: Option<Receiver<()>>,
}

fn tool(name: &str, input_schema: Value, output_schema: Option<Value>, destructive: bool) -> ToolDef {
    ToolDef {
        name: name.into(),
        title: format!("Test {name}"),
        description: format!("The {name} test tool."),
        input_schema,
        output_schema,
        annotations: Annotations { read_only: !destructive, destructive, idempotent: !destructive, open_world: false },
    }
}

fn object_schema(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

impl TestCatalog {
    fn event(&self, what: impl Into<String>) {
        let _ = self.events.lock().unwrap().send(what.into());
    }
}

impl Catalog for TestCatalog {
    fn tools(&self) -> Vec<ToolDef> {
        vec![
            tool(
                "echo",
                object_schema(
                    json!({
                        "message": {"type": "string", "description": "what to echo", "maxLength": 20},
                        "times": {"type": "integer", "description": "repetitions", "minimum": 1, "maximum": 3, "default": 1},
                    }),
                    &["message"],
                ),
                Some(json!({"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]})),
                false,
            ),
            tool(
                "slow",
                object_schema(json!({"ms": {"type": "integer", "description": "how long", "default": 5000}}), &[]),
                None,
                false,
            ),
            tool("boom", object_schema(json!({}), &[]), None, false),
            tool("progress", object_schema(json!({}), &[]), None, false),
            tool("log", object_schema(json!({}), &[]), None, false),
            tool("confirm", object_schema(json!({}), &[]), None, true),
        ]
    }

    fn call(&self, name: &str, args: Value, ctx: &CallContext) -> ToolOutput {
        match name {
            "echo" => {
                let text = args["message"].as_str().unwrap().repeat(args["times"].as_u64().unwrap() as usize);
                ToolOutput::ok(text.clone(), json!({"echo": text}))
            }
            "slow" => {
                self.event("slow started");
                let until = Instant::now() + Duration::from_millis(args["ms"].as_u64().unwrap());
                while Instant::now() < until {
                    if ctx.cancel.is_cancelled() {
                        self.event("slow cancelled");
                        return ToolOutput::error("cancelled");
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                self.event("slow finished");
                ToolOutput::text("slow done")
            }
            "boom" => panic!("boom"),
            "progress" => {
                for (progress, message) in [(1.0, "one"), (1.0, "dup"), (0.5, "back"), (2.0, "two"), (3.0, "three")] {
                    ctx.progress.report(progress, Some(3.0), Some(message));
                }
                let late = Arc::clone(&ctx.progress);
                let events = self.events.lock().unwrap().clone();
                let gate = self.gate.clone();
                thread::spawn(move || {
                    match gate {
                        Some(gate) => drop(gate.recv_timeout(PATIENCE)),
                        None => thread::sleep(Duration::from_millis(100)),
                    }
                    late.report(10.0, Some(3.0), Some("too late"));
                    let _ = events.send("late progress reported".into());
                });
                ToolOutput::text("progress done")
            }
            "log" => {
                for level in [LogLevel::Debug, LogLevel::Info, LogLevel::Warning, LogLevel::Error] {
                    ctx.log.log(level, "test", json!({"level": level.as_str()}));
                }
                ToolOutput::text("logged")
            }
            "confirm" => {
                let schema =
                    json!({"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]});
                match ctx.elicitor.elicit("confirm_delete", "Delete the app?", schema) {
                    Elicitation::Accepted(content) => {
                        ToolOutput::ok("accepted", json!({"outcome": "accepted", "content": content}))
                    }
                    Elicitation::Declined => ToolOutput::text("declined"),
                    Elicitation::Cancelled => {
                        self.event("confirm cancelled");
                        ToolOutput::text("cancelled")
                    }
                    Elicitation::Unsupported => ToolOutput::text("unsupported"),
                    Elicitation::InputRequired(output) => output,
                }
            }
            other => ToolOutput::error(format!("no tool {other}")),
        }
    }

    fn instructions(&self) -> Option<String> {
        Some("Test server.".into())
    }

    fn resources(&self) -> Vec<ResourceDef> {
        vec![ResourceDef {
            uri: "test://status".into(),
            name: "status".into(),
            title: "Status".into(),
            description: "The status".into(),
            mime_type: "text/plain".into(),
        }]
    }

    fn resource_templates(&self) -> Vec<ResourceTemplateDef> {
        vec![ResourceTemplateDef {
            uri_template: "test://apps/{name}/logs".into(),
            name: "app-logs".into(),
            title: "App logs".into(),
            description: "Logs of an app".into(),
            mime_type: "text/plain".into(),
        }]
    }

    fn read_resource(&self, uri: &str) -> Result<Vec<ResourceContents>, CatalogError> {
        match uri {
            "test://status" => {
                Ok(vec![ResourceContents { uri: uri.into(), mime_type: "text/plain".into(), text: "all good".into() }])
            }
            _ => Err(CatalogError::ResourceNotFound(uri.into())),
        }
    }

    fn prompts(&self) -> Vec<PromptDef> {
        vec![PromptDef {
            name: "diagnose".into(),
            title: "Diagnose".into(),
            description: "Diagnose an app".into(),
            arguments: vec![("app".into(), "the app".into(), true)],
        }]
    }

    fn get_prompt(&self, name: &str, args: &Map<String, Value>) -> Result<PromptMessages, CatalogError> {
        let app = args.get("app").and_then(Value::as_str);
        match (name, app) {
            ("diagnose", Some(app)) => Ok(PromptMessages {
                description: "Diagnose".into(),
                messages: vec![("user".into(), format!("Why is {app} down?"))],
            }),
            ("diagnose", None) => Err(CatalogError::InvalidParams("argument 'app' is required".into())),
            _ => Err(CatalogError::InvalidParams(format!("unknown prompt '{name}'"))),
        }
    }

    fn complete(&self, _reference: &Value, _argument: &str, value: &str) -> Vec<String> {
        ["alpha", "beta", "alpine"].iter().filter(|v| v.starts_with(value)).map(|v| v.to_string()).collect()
    }
}

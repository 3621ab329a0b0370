//! How catalogue items and results look on the wire in each protocol revision: fields a revision does not define
//! are left out, modern results carry `resultType`, cache hints and the server-info stamp.

use serde_json::{json, Map, Value};

use crate::mcp::protocol::{Envelope, Revision, META_SERVER_INFO};
use crate::mcp::tool::{
    PromptDef, PromptMessages, ResourceContents, ResourceDef, ResourceTemplateDef, ToolDef, ToolOutput,
};

pub const SERVER_NAME: &str = "truenas-mcp";
pub const SERVER_TITLE: &str = "TrueNAS Custom Apps";

/// Cache hint for lists that only change with the server's configuration (tools, prompts, templates).
pub const STATIC_LIST_TTL_MS: u64 = 300_000;

/// `serverInfo` / the `Implementation` object.
pub fn server_info(revision: Revision) -> Value {
    let mut info = json!({"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")});
    if revision.has_titles() {
        info["title"] = Value::from(SERVER_TITLE);
    }
    info
}

/// Finish a result for its era: modern results get `resultType` (unless set) and the server-info stamp.
pub fn finish(env: &Envelope, mut result: Value) -> Value {
    if env.is_modern() {
        if let Value::Object(obj) = &mut result {
            obj.entry("resultType").or_insert_with(|| Value::from("complete"));
            let meta = obj.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                meta.entry(META_SERVER_INFO).or_insert_with(|| server_info(env.revision));
            }
        }
    }
    result
}

/// Add the modern cache hints to a cacheable result (no-op in the legacy era).
pub fn cacheable(env: &Envelope, mut result: Value, ttl_ms: u64) -> Value {
    if env.is_modern() {
        result["ttlMs"] = Value::from(ttl_ms);
        result["cacheScope"] = Value::from("private");
    }
    result
}

pub fn tool(revision: Revision, def: &ToolDef) -> Value {
    let mut t = Map::new();
    t.insert("name".into(), Value::from(def.name.as_str()));
    if revision.has_titles() {
        t.insert("title".into(), Value::from(def.title.as_str()));
    }
    t.insert("description".into(), Value::from(def.description.as_str()));
    t.insert("inputSchema".into(), def.input_schema.clone());
    if revision.has_structured_content() {
        if let Some(schema) = &def.output_schema {
            t.insert("outputSchema".into(), schema.clone());
        }
    }
    if revision.has_tool_annotations() {
        t.insert("annotations".into(), annotations(revision, def));
    }
    Value::Object(t)
}

/// The hints that say something: a hint equal to the spec's default (readOnly false, destructive true, idempotent
/// false, openWorld true) is left out, and so are destructive and idempotent on a read-only tool (the spec gives
/// them meaning only for tools that write); the title only where the tool itself has none (2025-03-26).
fn annotations(revision: Revision, def: &ToolDef) -> Value {
    let a = def.annotations;
    let mut out = Map::new();
    if !revision.has_titles() {
        out.insert("title".into(), Value::from(def.title.as_str()));
    }
    if a.read_only {
        out.insert("readOnlyHint".into(), Value::Bool(true));
    } else {
        if !a.destructive {
            out.insert("destructiveHint".into(), Value::Bool(false));
        }
        if a.idempotent {
            out.insert("idempotentHint".into(), Value::Bool(true));
        }
    }
    if !a.open_world {
        out.insert("openWorldHint".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// A `tools/call` result: the text once for the model, the structured content once for the client. The
/// structured result is not repeated as a JSON text block (the spec's SHOULD; see ARCHITECTURE.md): the text
/// carries every fact a model needs, since clients forward only `content` to it. A modern `input_required` output
/// becomes an `InputRequiredResult`.
pub fn call_result(env: &Envelope, output: ToolOutput) -> Value {
    if env.is_modern() {
        if let Some(requests) = output.input_required {
            return json!({"resultType": "input_required", "inputRequests": requests});
        }
    }
    // A result without text (none of ours) still tells the model something.
    let text = match (&output.text, &output.structured) {
        (t, Some(structured)) if t.is_empty() => serde_json::to_string(structured).unwrap_or_default(),
        (t, _) => t.clone(),
    };
    let content = vec![text_block(&text)];
    let mut result = json!({"content": content, "isError": output.is_error});
    if let Some(structured) = output.structured {
        let fits = structured.is_object() || env.revision.structured_content_may_be_any_json();
        if env.revision.has_structured_content() && fits {
            result["structuredContent"] = structured;
        }
    }
    result
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

pub fn resource(revision: Revision, def: &ResourceDef) -> Value {
    let mut r = json!({"uri": def.uri, "name": def.name, "description": def.description, "mimeType": def.mime_type});
    if revision.has_titles() {
        r["title"] = Value::from(def.title.as_str());
    }
    r
}

pub fn resource_template(revision: Revision, def: &ResourceTemplateDef) -> Value {
    let mut r = json!({
        "uriTemplate": def.uri_template, "name": def.name, "description": def.description, "mimeType": def.mime_type,
    });
    if revision.has_titles() {
        r["title"] = Value::from(def.title.as_str());
    }
    r
}

pub fn resource_contents(contents: &[ResourceContents]) -> Value {
    Value::Array(contents.iter().map(|c| json!({"uri": c.uri, "mimeType": c.mime_type, "text": c.text})).collect())
}

pub fn prompt(revision: Revision, def: &PromptDef) -> Value {
    let arguments: Vec<Value> = def
        .arguments
        .iter()
        .map(|(name, description, required)| json!({"name": name, "description": description, "required": required}))
        .collect();
    let mut p = json!({"name": def.name, "description": def.description, "arguments": arguments});
    if revision.has_titles() {
        p["title"] = Value::from(def.title.as_str());
    }
    p
}

pub fn prompt_messages(rendered: &PromptMessages) -> Value {
    let messages: Vec<Value> = rendered
        .messages
        .iter()
        .map(|(role, text)| {
            let role = if role == "assistant" { "assistant" } else { "user" };
            json!({"role": role, "content": text_block(text)})
        })
        .collect();
    json!({"description": rendered.description, "messages": messages})
}

/// At most 100 values per the spec, with `total` and `hasMore` telling the client about the rest.
pub fn completion(values: Vec<String>) -> Value {
    let total = values.len();
    let shown: Vec<String> = values.into_iter().take(100).collect();
    json!({"completion": {"values": shown, "total": total, "hasMore": total > 100}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::tool::Annotations;

    fn def() -> ToolDef {
        ToolDef {
            name: "list_apps".into(),
            title: "List apps".into(),
            description: "Lists apps".into(),
            input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
            output_schema: Some(json!({"type": "object"})),
            annotations: Annotations { read_only: true, destructive: false, idempotent: true, open_world: false },
        }
    }

    fn env(revision: Revision) -> Envelope {
        Envelope { revision, client_capabilities: json!({}), log_level: None }
    }

    #[test]
    fn tool_fields_follow_the_revision() {
        let cases = [
            (Revision::V2024_11_05, vec!["description", "inputSchema", "name"]),
            (Revision::V2025_03_26, vec!["annotations", "description", "inputSchema", "name"]),
            (Revision::V2025_06_18, vec!["annotations", "description", "inputSchema", "name", "outputSchema", "title"]),
            (Revision::V2026_07_28, vec!["annotations", "description", "inputSchema", "name", "outputSchema", "title"]),
        ];
        for (revision, keys) in cases {
            let t = tool(revision, &def());
            let mut got: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
            got.sort_unstable();
            assert_eq!(got, keys, "{revision:?}");
        }
        let a = &tool(Revision::V2025_11_25, &def())["annotations"];
        assert_eq!(
            a,
            &json!({"readOnlyHint": true, "openWorldHint": false}),
            "only hints that differ from the defaults"
        );
        assert_eq!(tool(Revision::V2025_03_26, &def())["annotations"]["title"], "List apps");
        let mut write = def();
        write.annotations = Annotations { read_only: false, destructive: true, idempotent: true, open_world: false };
        let a = &tool(Revision::V2025_11_25, &write)["annotations"];
        assert_eq!(a, &json!({"idempotentHint": true, "openWorldHint": false}));
    }

    #[test]
    fn call_results_by_era() {
        let out = ToolOutput::ok("2 apps", json!({"apps": []}));
        let legacy = call_result(&env(Revision::V2025_03_26), out.clone());
        assert!(legacy.get("structuredContent").is_none());
        assert_eq!(legacy["content"], json!([{"type": "text", "text": "2 apps"}]), "the text once, no JSON copy");
        let modern = finish(&env(Revision::V2026_07_28), call_result(&env(Revision::V2026_07_28), out));
        assert_eq!(modern["structuredContent"], json!({"apps": []}));
        assert_eq!(modern["content"].as_array().unwrap().len(), 1);
        assert_eq!(modern["resultType"], "complete");
        assert_eq!(modern["_meta"][META_SERVER_INFO]["name"], SERVER_NAME);
        let ask = ToolOutput { input_required: Some(json!({"k": {}})), ..ToolOutput::text("confirm") };
        assert_eq!(call_result(&env(Revision::V2026_07_28), ask)["resultType"], "input_required");
    }
}

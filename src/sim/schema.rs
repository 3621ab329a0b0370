//! Strict argument checking with the real TrueNAS API models (25.04.2, 25.10.5 and 26.0.0; made by
//! fixtures/truenas-schemas/generate.py from the middleware source), so the simulator rejects
//! exactly what a real 25.04+ box rejects: unknown keys, wrong types, bad names (`-32602` with `extra`).

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::wire::{Failure, FieldError, EINVAL};
use super::SimVersion;

const V25_04: &str = include_str!("../../fixtures/truenas-schemas/api-v25.04.2.json");
const V25_10: &str = include_str!("../../fixtures/truenas-schemas/api-v25.10.5.json");
const V26_0: &str = include_str!("../../fixtures/truenas-schemas/api-v26.0.0.json");

/// `LongString` fields: the exported models only say 1024, the middleware allows this many characters.
const LONG_STRING_MAX: u64 = 2_048_000;

struct Models {
    v24_10: Map<String, Value>,
    v25_04: Map<String, Value>,
    v25_10: Map<String, Value>,
    v26_0: Map<String, Value>,
}

fn load(text: &str) -> Map<String, Value> {
    let mut doc: Value = serde_json::from_str(text).expect("embedded TrueNAS schema is valid JSON");
    widen_long_strings(&mut doc);
    match doc.get_mut("methods").map(Value::take) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn widen_long_strings(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "custom_compose_config_string" {
                    if let Some(o) = child.as_object_mut() {
                        o.insert("maxLength".into(), LONG_STRING_MAX.into());
                    }
                }
                widen_long_strings(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(widen_long_strings),
        _ => {}
    }
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let v25_04 = load(V25_04);
        let v25_10 = load(V25_10);
        // 24.10 had no `force_remove_custom_app`; otherwise the 25.04 models are close enough for what we call.
        let mut v24_10 = v25_04.clone();
        if let Some(p) = v24_10.get_mut("app.delete").and_then(|m| m.pointer_mut("/args/$defs/AppDelete/properties")) {
            if let Some(o) = p.as_object_mut() {
                o.remove("force_remove_custom_app");
            }
        }
        Models { v24_10, v25_04, v25_10, v26_0: load(V26_0) }
    })
}

/// The `args` model of `method` (or `event:<source>`) for `version`; 25.x falls back to the 25.10 models when the
/// export lacks it (26.0 has every method we call).
fn args_model(version: SimVersion, method: &str) -> Option<&'static Value> {
    let m = models();
    let primary = match version {
        SimVersion::V24_10 => &m.v24_10,
        SimVersion::V25_04 => &m.v25_04,
        SimVersion::V25_10 => &m.v25_10,
        SimVersion::V26_0 => &m.v26_0,
    };
    let args =
        |models: &'static Map<String, Value>| models.get(method).and_then(|e| e.get("args")).filter(|a| a.is_object());
    let fallback = if version == SimVersion::V26_0 { &m.v26_0 } else { &m.v25_10 };
    args(primary).or_else(|| args(fallback))
}

/// Check positional `params` of `method`. Methods without a model pass.
pub(crate) fn check_params(version: SimVersion, method: &str, params: &[Value]) -> Result<(), Failure> {
    let Some(model) = args_model(version, method) else { return Ok(()) };
    let order: Vec<&str> = model
        .get("x-positional-order")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if params.len() > order.len() {
        return Err(Failure::invalid(
            "",
            format!("Too many arguments (expected {}, found {})", order.len(), params.len()),
            EINVAL,
        ));
    }
    let required: Vec<&str> = model
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut errors = Vec::new();
    for (i, name) in order.iter().enumerate() {
        let Some(prop) = model.pointer(&format!("/properties/{name}")) else { continue };
        match params.get(i) {
            Some(value) => errors.extend(check_value(model, prop, value, name)),
            None if required.contains(name) => errors.push(FieldError::new(*name, "Field required", EINVAL)),
            None => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::validation(errors))
    }
}

/// Check the argument object of an event source (`event:app.container_log_follow`); attributes are bare field
/// names, as in `notify_unsubscribed` errors.
pub(crate) fn check_event_args(version: SimVersion, source: &str, args: &Value) -> Result<(), Failure> {
    let Some(model) = args_model(version, &format!("event:{source}")) else { return Ok(()) };
    let errors = check_value(model, model, args, "");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::validation(errors))
    }
}

/// Validate one value against `schema` (resolving `$ref`s in `root`), with pydantic-style attributes and messages.
fn check_value(root: &Value, schema: &Value, value: &Value, prefix: &str) -> Vec<FieldError> {
    let mut schema = schema.clone();
    // A discriminated union: pick the branch like pydantic does, so errors name the tag.
    let mut prefix = prefix.to_string();
    if let (Some(disc), Some(obj)) = (schema.get("discriminator").cloned(), value.as_object()) {
        let prop = disc.get("propertyName").and_then(Value::as_str).unwrap_or("");
        let mapping = disc.get("mapping").and_then(Value::as_object);
        match obj.get(prop).and_then(Value::as_str) {
            Some(tag) => match mapping.and_then(|m| m.get(tag)) {
                Some(target) => {
                    schema = serde_json::json!({"$ref": target});
                    prefix = join(&prefix, tag);
                }
                None => {
                    let tags: Vec<String> =
                        mapping.map(|m| m.keys().map(|k| format!("'{k}'")).collect()).unwrap_or_default();
                    return vec![FieldError::new(
                        prefix,
                        format!(
                            "Input tag '{tag}' found using '{prop}' does not match any of the expected tags: {}",
                            tags.join(", ")
                        ),
                        EINVAL,
                    )];
                }
            },
            None => {
                return vec![FieldError::new(
                    prefix,
                    format!("Unable to extract tag using discriminator '{prop}'"),
                    EINVAL,
                )]
            }
        }
    }
    if let (Some(defs), Some(obj)) = (root.get("$defs"), schema.as_object_mut()) {
        obj.entry("$defs").or_insert_with(|| defs.clone());
    }
    match crate::jsonschema::validate(&schema, value) {
        Ok(()) => Vec::new(),
        Err(errs) => errs
            .into_iter()
            .map(|e| FieldError::new(join(&prefix, &pydantic_path(&e.path)), pydantic_message(&e.message), EINVAL))
            .collect(),
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// `a.b[0]` → `a.b.0` (pydantic `loc` joined by dots).
fn pydantic_path(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

/// The validator's wording → the middleware's (pydantic) wording for the cases clients see.
fn pydantic_message(msg: &str) -> String {
    if msg.starts_with("unknown field") {
        return "Extra inputs are not permitted".into();
    }
    if msg == "is required" {
        return "Field required".into();
    }
    if let Some(rest) = msg.strip_prefix("expected ") {
        let want = rest.split(", got").next().unwrap_or(rest);
        let noun = match want.split(" or ").next().unwrap_or(want) {
            "boolean" => "a valid boolean",
            "integer" => "a valid integer",
            "number" => "a valid number",
            "string" => "a valid string",
            "object" => "a valid dictionary",
            "array" => "a valid list",
            "null" => "None",
            other => return format!("Input should be {other}"),
        };
        return format!("Input should be {noun}");
    }
    if let Some(rest) = msg.strip_prefix("must match the pattern ") {
        let pattern = rest.split(", got").next().unwrap_or(rest);
        return format!("String should match pattern '{pattern}'");
    }
    if let Some(rest) = msg.strip_prefix("must be at most ") {
        if let Some(n) = rest.strip_suffix_chars_long() {
            return format!("String should have at most {n} characters");
        }
        let n = rest.split(',').next().unwrap_or(rest);
        return format!("Input should be less than or equal to {n}");
    }
    if let Some(rest) = msg.strip_prefix("must be at least ") {
        if let Some(n) = rest.strip_suffix_chars_long() {
            let s = if n == "1" { "" } else { "s" };
            return format!("String should have at least {n} character{s}");
        }
        let n = rest.split(',').next().unwrap_or(rest);
        return format!("Input should be greater than or equal to {n}");
    }
    if msg.starts_with("must be ") && msg.contains(", got") {
        // const / enum
        return format!("Input should be {}", msg.trim_start_matches("must be ").split(", got").next().unwrap_or(""));
    }
    msg.to_string()
}

trait CharsLong {
    fn strip_suffix_chars_long(&self) -> Option<&str>;
}

impl CharsLong for str {
    /// "40 characters long, got 41" → "40".
    fn strip_suffix_chars_long(&self) -> Option<&str> {
        let (n, rest) = self.split_once(' ')?;
        rest.starts_with("characters long").then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extra(r: Result<(), Failure>) -> Vec<(Option<String>, String)> {
        match r {
            Ok(()) => vec![],
            Err(Failure::Validation { errors, .. }) => errors.into_iter().map(|e| (e.attribute, e.message)).collect(),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    type Case = (SimVersion, &'static str, Value, Vec<(&'static str, &'static str)>);

    #[test]
    fn strict_models_reject_like_pydantic() {
        let cases: Vec<Case> = vec![
            (SimVersion::V25_04, "app.delete", json!(["x", {"remove_images": true}]), vec![]),
            (
                SimVersion::V25_04,
                "app.delete",
                json!(["x", {"remove_images": "yes"}]),
                vec![("options.remove_images", "Input should be a valid boolean")],
            ),
            (
                SimVersion::V25_04,
                "app.delete",
                json!(["x", {"bogus": 1}]),
                vec![("options.bogus", "Extra inputs are not permitted")],
            ),
            (
                SimVersion::V24_10,
                "app.delete",
                json!(["x", {"force_remove_custom_app": true}]),
                vec![("options.force_remove_custom_app", "Extra inputs are not permitted")],
            ),
            (SimVersion::V25_04, "app.delete", json!(["x", {"force_remove_custom_app": true}]), vec![]),
            (
                SimVersion::V25_10,
                "app.create",
                json!([{"app_name": "Bad_Name", "custom_app": true}]),
                vec![("app_create.app_name", "String should match pattern '^[a-z]([-a-z0-9]*[a-z0-9])?$'")],
            ),
            (SimVersion::V25_10, "app.create", json!([]), vec![("app_create", "Field required")]),
            (SimVersion::V25_10, "app.stop", json!(["a", "b"]), vec![("", "Too many arguments (expected 1, found 2)")]),
            // 25.10 declares a discriminated union: errors name the tag, like pydantic.
            (
                SimVersion::V25_10,
                "auth.login_ex",
                json!([{"mechanism": "PASSWORD_PLAIN", "username": "u"}]),
                vec![("login_data.PASSWORD_PLAIN.password", "Field required")],
            ),
            // 25.04's export is a plain anyOf: the closest branch is reported.
            (
                SimVersion::V25_04,
                "auth.login_ex",
                json!([{"mechanism": "PASSWORD_PLAIN", "username": "u"}]),
                vec![("login_data.password", "Field required")],
            ),
            (
                SimVersion::V25_04,
                "app.create",
                json!([{"app_name": "big", "custom_app": true, "custom_compose_config_string": "x".repeat(5000)}]),
                vec![],
            ),
        ];
        for (version, method, params, want) in cases {
            let got = extra(check_params(version, method, params.as_array().unwrap()));
            let want: Vec<(Option<String>, String)> =
                want.into_iter().map(|(a, m)| (Some(a.to_string()), m.to_string())).collect();
            assert_eq!(got, want, "{method} {params}");
        }
    }

    #[test]
    fn event_source_args_are_checked() {
        let got = extra(check_event_args(SimVersion::V25_04, "app.container_log_follow", &json!({"app_name": "x"})));
        assert_eq!(got, vec![(Some("container_id".to_string()), "Field required".to_string())]);
    }
}

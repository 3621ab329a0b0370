//! A small JSON Schema validator for the subset our tool schemas, the MCP schemas and the TrueNAS API models use.
//!
//! One validator serves three purposes: tool arguments are checked against the published `inputSchema` (one
//! source of truth), tests check `structuredContent` against `outputSchema`, and the simulator applies the real
//! TrueNAS API models strictly. Supported: `$ref` (local), `$defs`/`definitions`, `type`, `properties`,
//! `required`, `additionalProperties`, `patternProperties`, `enum`, `const`, `pattern`, `minimum`/`maximum`
//! (and exclusive forms), `minLength`/`maxLength`, `items`, `prefixItems`, `minItems`/`maxItems`, `anyOf`,
//! `oneOf`, `allOf`, `not`. Unknown keywords (`format`, `title`, `discriminator`, …) are ignored.

use serde_json::{Map, Value};

use crate::jsonrpc::clip;

/// One validation failure: where (dotted path, `(root)` for the whole value) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() { "(root)" } else { &self.path };
        write!(f, "{path}: {}", self.message)
    }
}

/// Deeper than this and the schema is treated as cyclic. Recursion follows the schema, which is ours, and stops
/// here whatever the value's depth.
const MAX_DEPTH: usize = 64;
/// Most failures reported: a value with a million unknown fields gets this many messages, not a million.
pub const MAX_ERRORS: usize = 20;

/// Validate `value` against `schema`; the failures found (the first of each branch), at most [`MAX_ERRORS`]
/// of them plus a last one saying that more were left out.
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<SchemaError>> {
    let mut errors = Vec::new();
    Validator { root: schema }.check(schema, value, "", 0, &mut errors);
    if errors.len() > MAX_ERRORS {
        errors.truncate(MAX_ERRORS);
        errors.push(SchemaError { path: String::new(), message: "further errors not listed".into() });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Validate `value` against `schema`, a subschema of `root` (local `$ref`s resolve against `root`).
pub fn validate_in(root: &Value, schema: &Value, value: &Value) -> Result<(), Vec<SchemaError>> {
    let mut errors = Vec::new();
    Validator { root }.check(schema, value, "", 0, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Fill in `default`s of missing object properties (recursively through `properties` and local `$ref`s).
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    fill_defaults(schema, schema, value, 0)
}

fn fill_defaults(root: &Value, schema: &Value, value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = resolve(root, schema).unwrap_or(schema);
    let (Some(props), Some(obj)) = (schema.get("properties").and_then(Value::as_object), value.as_object_mut()) else {
        return;
    };
    for (name, sub) in props {
        let sub_resolved = resolve(root, sub).unwrap_or(sub);
        if !obj.contains_key(name) {
            if let Some(d) = sub.get("default").or_else(|| sub_resolved.get("default")) {
                obj.insert(name.clone(), d.clone());
            }
        }
        if let Some(v) = obj.get_mut(name) {
            fill_defaults(root, sub, v, depth + 1);
        }
    }
}

/// Follow a local `$ref` (`#`, `#/$defs/X`, `#/definitions/X`, any JSON pointer into the root).
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let r = schema.get("$ref")?.as_str()?;
    let pointer = r.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

struct Validator<'a> {
    root: &'a Value,
}

/// The path of member `key` (clipped: keys are client text and paths end up in error messages).
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        clip(key).into_owned()
    } else {
        format!("{path}.{}", clip(key))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => match v {
            Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => false,
        },
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

/// A value as quoted in an error: a short prefix of its JSON text, whatever was sent.
fn short(v: &Value) -> String {
    clip(&v.to_string()).into_owned()
}

impl Validator<'_> {
    fn check(&self, schema: &Value, value: &Value, path: &str, depth: usize, errors: &mut Vec<SchemaError>) {
        let err = |errors: &mut Vec<SchemaError>, message: String| {
            errors.push(SchemaError { path: path.to_string(), message })
        };
        if depth > MAX_DEPTH {
            err(errors, "schema nesting too deep".into());
            return;
        }
        if errors.len() > MAX_ERRORS {
            return; // enough to report; `validate` says more were left out
        }
        let obj = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return err(errors, "no value is allowed here".into()),
            Value::Object(o) => o,
            _ => return,
        };
        if obj.contains_key("$ref") {
            match resolve(self.root, schema) {
                Some(target) => self.check(target, value, path, depth + 1, errors),
                None => err(errors, format!("unresolvable $ref {}", obj["$ref"])),
            }
        }
        if let Some(t) = obj.get("type") {
            let ok = match t {
                Value::String(s) => is_type(value, s),
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|s| is_type(value, s)),
                _ => true,
            };
            if !ok {
                let want = match t {
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
                    other => other.as_str().unwrap_or("?").to_string(),
                };
                // A type mismatch makes the remaining keywords noise.
                return err(errors, format!("expected {want}, got {}", type_name(value)));
            }
        }
        if let Some(e) = obj.get("enum").and_then(Value::as_array) {
            if !e.iter().any(|x| json_eq(x, value)) {
                let allowed: Vec<String> = e.iter().map(|x| x.to_string()).collect();
                err(errors, format!("must be one of {}, got {}", allowed.join(", "), short(value)));
            }
        }
        if let Some(c) = obj.get("const") {
            if !json_eq(c, value) {
                err(errors, format!("must be {c}, got {}", short(value)));
            }
        }
        match value {
            Value::String(s) => self.check_string(obj, s, path, errors),
            Value::Number(_) => self.check_number(obj, value, path, errors),
            Value::Array(items) => self.check_array(obj, items, path, depth, errors),
            Value::Object(map) => self.check_object(obj, map, path, depth, errors),
            _ => {}
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, value, path, depth + 1, errors);
            }
        }
        if let Some(any) = obj.get("anyOf").and_then(Value::as_array) {
            let mut branch_errors = Vec::new();
            let ok = any.iter().any(|sub| {
                let mut e = Vec::new();
                self.check(sub, value, path, depth + 1, &mut e);
                let pass = e.is_empty();
                branch_errors.push(e);
                pass
            });
            if !ok {
                errors.extend(best_branch(branch_errors, path, "anyOf"));
            }
        }
        if let Some(one) = obj.get("oneOf").and_then(Value::as_array) {
            let mut branch_errors = Vec::new();
            let mut passing = 0;
            for sub in one {
                let mut e = Vec::new();
                self.check(sub, value, path, depth + 1, &mut e);
                if e.is_empty() {
                    passing += 1;
                }
                branch_errors.push(e);
            }
            match passing {
                1 => {}
                0 => errors.extend(best_branch(branch_errors, path, "oneOf")),
                n => err(errors, format!("matches {n} alternatives, expected exactly one")),
            }
        }
        if let Some(not) = obj.get("not") {
            let mut e = Vec::new();
            self.check(not, value, path, depth + 1, &mut e);
            if e.is_empty() {
                err(errors, "matches a forbidden schema".into());
            }
        }
    }

    fn check_string(&self, obj: &Map<String, Value>, s: &str, path: &str, errors: &mut Vec<SchemaError>) {
        let push = |errors: &mut Vec<SchemaError>, message: String| {
            errors.push(SchemaError { path: path.to_string(), message })
        };
        let min = obj.get("minLength").and_then(Value::as_u64);
        let max = obj.get("maxLength").and_then(Value::as_u64);
        if min.is_some() || max.is_some() {
            // Lengths are in characters; one linear count, and none when no bound asks for it.
            let len = s.chars().count() as u64;
            // The first failing bound is the answer: a pattern check on text of the wrong length is wasted work.
            if let Some(min) = min.filter(|&min| len < min) {
                return push(errors, format!("must be at least {min} characters long, got {len}"));
            }
            if let Some(max) = max.filter(|&max| len > max) {
                return push(errors, format!("must be at most {max} characters long, got {len}"));
            }
        }
        if let Some(p) = obj.get("pattern").and_then(Value::as_str) {
            match compiled(p) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => push(errors, format!("must match the pattern {p}, got {:?}", clip(s))),
                Err(e) => push(errors, format!("schema pattern {p} is not supported: {e}")),
            }
        }
    }

    fn check_number(&self, obj: &Map<String, Value>, v: &Value, path: &str, errors: &mut Vec<SchemaError>) {
        let Some(x) = v.as_f64() else { return };
        let push = |errors: &mut Vec<SchemaError>, message: String| {
            errors.push(SchemaError { path: path.to_string(), message })
        };
        if let Some(min) = obj.get("minimum").and_then(Value::as_f64) {
            if x < min {
                push(errors, format!("must be at least {}, got {v}", fmt_num(min)));
            }
        }
        if let Some(max) = obj.get("maximum").and_then(Value::as_f64) {
            if x > max {
                push(errors, format!("must be at most {}, got {v}", fmt_num(max)));
            }
        }
        if let Some(min) = obj.get("exclusiveMinimum").and_then(Value::as_f64) {
            if x <= min {
                push(errors, format!("must be greater than {}, got {v}", fmt_num(min)));
            }
        }
        if let Some(max) = obj.get("exclusiveMaximum").and_then(Value::as_f64) {
            if x >= max {
                push(errors, format!("must be less than {}, got {v}", fmt_num(max)));
            }
        }
    }

    fn check_array(
        &self,
        obj: &Map<String, Value>,
        items: &[Value],
        path: &str,
        depth: usize,
        errors: &mut Vec<SchemaError>,
    ) {
        let n = items.len() as u64;
        if let Some(min) = obj.get("minItems").and_then(Value::as_u64) {
            if n < min {
                errors.push(SchemaError {
                    path: path.into(),
                    message: format!("must have at least {min} items, got {n}"),
                });
            }
        }
        if let Some(max) = obj.get("maxItems").and_then(Value::as_u64) {
            if n > max {
                errors.push(SchemaError {
                    path: path.into(),
                    message: format!("must have at most {max} items, got {n}"),
                });
            }
        }
        let prefix = obj.get("prefixItems").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for (i, item) in items.iter().enumerate() {
            if errors.len() > MAX_ERRORS {
                break;
            }
            let p = format!("{path}[{i}]");
            if let Some(s) = prefix.get(i) {
                self.check(s, item, &p, depth + 1, errors);
            } else {
                match obj.get("items") {
                    // Draft-7 tuple form.
                    Some(Value::Array(tuple)) => {
                        if let Some(s) = tuple.get(i) {
                            self.check(s, item, &p, depth + 1, errors);
                        }
                    }
                    Some(s) => self.check(s, item, &p, depth + 1, errors),
                    None => {}
                }
            }
        }
    }

    fn check_object(
        &self,
        obj: &Map<String, Value>,
        map: &Map<String, Value>,
        path: &str,
        depth: usize,
        errors: &mut Vec<SchemaError>,
    ) {
        if let Some(req) = obj.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    errors.push(SchemaError { path: join(path, r), message: "is required".into() });
                }
            }
        }
        let props = obj.get("properties").and_then(Value::as_object);
        let pattern_props: Vec<(Regex, &Value)> = obj
            .get("patternProperties")
            .and_then(Value::as_object)
            .map(|pp| pp.iter().filter_map(|(k, v)| compiled(k).ok().map(|r| (r, v))).collect())
            .unwrap_or_default();
        for (key, v) in map {
            if errors.len() > MAX_ERRORS {
                break;
            }
            let p = join(path, key);
            let mut matched = false;
            if let Some(s) = props.and_then(|pr| pr.get(key)) {
                matched = true;
                self.check(s, v, &p, depth + 1, errors);
            }
            for (re, s) in &pattern_props {
                if re.is_match(key) {
                    matched = true;
                    self.check(s, v, &p, depth + 1, errors);
                }
            }
            if !matched {
                match obj.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        let known: Vec<&str> =
                            props.map(|pr| pr.keys().map(String::as_str).collect()).unwrap_or_default();
                        let hint =
                            if known.is_empty() { String::new() } else { format!(" (allowed: {})", known.join(", ")) };
                        errors.push(SchemaError { path: p, message: format!("unknown field{hint}") });
                    }
                    Some(s @ Value::Object(_)) => self.check(s, v, &p, depth + 1, errors),
                    _ => {}
                }
            }
        }
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// Numbers compare by value (1 == 1.0), everything else structurally.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Report the alternative that came closest (fewest errors), or a summary when none is close.
fn best_branch(branches: Vec<Vec<SchemaError>>, path: &str, kw: &str) -> Vec<SchemaError> {
    match branches.into_iter().filter(|b| !b.is_empty()).min_by_key(Vec::len) {
        Some(best) if best.len() <= 2 => best,
        _ => vec![SchemaError { path: path.into(), message: format!("does not match any allowed form ({kw})") }],
    }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON Schema `pattern`: an unanchored search (ECMA-262 syntax; the subset our schemas and the TrueNAS models use
// reads the same in `regex-lite`). The engine runs in time linear in the text and without recursion, so a long
// string costs one pass, never stack depth.

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex(regex_lite::Regex);

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, String> {
        regex_lite::Regex::new(pattern).map(Regex).map_err(|e| e.to_string())
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

/// Compiled patterns by source text. Patterns come from schemas (ours and the TrueNAS models), never from input,
/// so the set is small. Compiling the app-name pattern costs about 36 µs (release build), ten times more than
/// matching a name with it, and every tool call and every simulated TrueNAS call is validated.
fn compiled(pattern: &str) -> Result<Regex, String> {
    const MAX_CACHED: usize = 256;
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, Result<Regex, String>>> =
            std::cell::RefCell::default();
    }
    CACHE.with(|cache| {
        if let Some(hit) = cache.borrow().get(pattern) {
            return hit.clone();
        }
        let regex = Regex::new(pattern);
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(pattern.to_string(), regex.clone());
        regex
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn regex_subset() {
        let app = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
        let cases = [
            (app, "a", true),
            (app, "jellyfin", true),
            (app, "my-app-2", true),
            (app, "-bad", false),
            (app, "bad-", false),
            (app, "Bad", false),
            (app, "", false),
            ("^[A-Za-z0-9_.-]{1,128}$", "tools.call_x-1", true),
            ("^[A-Za-z0-9_.-]{1,128}$", "sp ace", false),
            ("ab|cd", "xxcdxx", true),
            ("^(?:ab)+$", "ababab", true),
            ("^(?:ab)+$", "ababa", false),
            ("^\\d{2,3}$", "123", true),
            ("^\\d{2,3}$", "1234", false),
            ("^[^/]+$", "a/b", false),
            ("^(a*)*b$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(Regex::new(p).unwrap().is_match(s), want, "{p} on {s:?}");
        }
        assert!(Regex::new("(abc").is_err());
        assert!(Regex::new("*a").is_err());
    }

    /// Issue 10: a backtracking matcher recursed once per character and overflowed the stack on a 15 000-letter
    /// name. Linear now, at any length, and the pattern is not even tried once a length bound failed.
    #[test]
    fn long_strings_are_matched_in_linear_time_and_lengths_come_first() {
        let app = Regex::new("^[a-z]([-a-z0-9]*[a-z0-9])?$").unwrap();
        let long = "a".repeat(100_000);
        assert!(app.is_match(&long));
        assert!(!app.is_match(&format!("{long}-")));
        let schema = json!({"type": "string", "maxLength": 40, "pattern": "^[a-z]+$"});
        let errs = validate(&schema, &json!(format!("{long}!"))).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].message, "must be at most 40 characters long, got 100001");
        let errs = validate(&json!({"minLength": 2, "maxLength": 1}), &json!("x")).unwrap_err();
        assert_eq!(errs.len(), 1, "the first failing bound only: {errs:?}");
        let errs = validate(&json!({"pattern": "^[a-z]+$"}), &json!(format!("{long}!"))).unwrap_err();
        assert!(errs[0].message.len() < 200, "the text is quoted briefly: {}", errs[0].message);
    }

    /// Many bad members give a bounded list of errors, and a long key is quoted briefly in the path.
    #[test]
    fn errors_are_capped_and_keys_clipped() {
        let schema = json!({"type": "object", "additionalProperties": false, "properties": {"a": {}}});
        let value = Value::Object((0..10_000).map(|i| (format!("k{i}"), json!(1))).collect());
        let errs = validate(&schema, &value).unwrap_err();
        assert_eq!(errs.len(), MAX_ERRORS + 1);
        assert_eq!(errs[MAX_ERRORS].message, "further errors not listed");
        let errs = validate(&schema, &json!({"k".repeat(100_000): 1})).unwrap_err();
        assert!(errs[0].path.len() < 100, "{}", errs[0].path.len());
    }

    #[test]
    fn validates_the_subset_with_precise_paths() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["app_name"],
            "properties": {
                "app_name": {"type": "string", "minLength": 1, "maxLength": 40, "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
                "lines": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
                "mode": {"enum": ["a", "b"]},
                "opts": {"$ref": "#/$defs/Opts"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
            },
            "$defs": {"Opts": {"type": "object", "additionalProperties": false, "properties": {"x": {"type": "boolean"}}}}
        });
        assert!(validate(&schema, &json!({"app_name": "web", "lines": 5, "opts": {"x": true}})).is_ok());
        let cases = [
            (json!({}), "app_name", "is required"),
            (json!({"app_name": "Web"}), "app_name", "must match the pattern"),
            (json!({"app_name": "web", "lines": "5"}), "lines", "expected integer, got string"),
            (json!({"app_name": "web", "lines": 0}), "lines", "must be at least 1"),
            (json!({"app_name": "web", "lines": 1.5}), "lines", "expected integer"),
            (json!({"app_name": "web", "mode": "c"}), "mode", "must be one of"),
            (json!({"app_name": "web", "opts": {"x": 1}}), "opts.x", "expected boolean"),
            (json!({"app_name": "web", "opts": {"y": true}}), "opts.y", "unknown field"),
            (json!({"app_name": "web", "tags": ["a", 1]}), "tags[1]", "expected string"),
            (json!({"app_name": "web", "tags": ["a", "b", "c"]}), "tags", "at most 2 items"),
            (json!({"app_name": "web", "extra": 1}), "extra", "unknown field (allowed: app_name"),
        ];
        for (value, path, msg) in cases {
            let errs = validate(&schema, &value).unwrap_err();
            assert!(errs.iter().any(|e| e.path == path && e.message.contains(msg)), "{value}: {errs:?}");
        }
    }

    #[test]
    fn any_of_one_of_and_defaults() {
        let schema = json!({
            "type": "object",
            "properties": {
                "v": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "o": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]},
                "d": {"type": "object", "default": {}, "properties": {"inner": {"type": "boolean", "default": true}}}
            }
        });
        assert!(validate(&schema, &json!({"v": null, "o": 1})).is_ok());
        assert!(validate(&schema, &json!({"v": 3})).is_err());
        // 20 is both an integer and a number >= 10.
        assert!(validate(&schema, &json!({"o": 20})).unwrap_err()[0].message.contains("exactly one"));
        let mut v = json!({});
        apply_defaults(&schema, &mut v);
        assert_eq!(v, json!({"d": {"inner": true}}));
    }

    #[test]
    fn real_truenas_models_accept_and_reject() {
        let api: Value = serde_json::from_str(include_str!("../fixtures/truenas-schemas/api-v25.04.2.json")).unwrap();
        let args = &api["methods"]["app.delete"]["args"];
        assert!(validate(
            args,
            &json!({"app_name": "x", "options": {"remove_images": true, "remove_ix_volumes": false}})
        )
        .is_ok());
        let errs = validate(args, &json!({"app_name": "x", "options": true})).unwrap_err();
        assert_eq!(errs[0].path, "options", "{errs:?}");
        assert!(validate(args, &json!({"app_name": "x", "options": {"bogus": true}})).is_err());
    }
}

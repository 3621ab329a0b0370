//! A small JSON Schema validator for the subset our tool schemas, the MCP schemas and the TrueNAS API models use.
//!
//! One validator serves three purposes: tool arguments are checked against the published `inputSchema` (one
//! source of truth), tests check `structuredContent` against `outputSchema`, and the simulator applies the real
//! TrueNAS API models strictly. Supported: `$ref` (local), `$defs`/`definitions`, `type`, `properties`,
//! `required`, `additionalProperties`, `patternProperties`, `enum`, `const`, `pattern`, `minimum`/`maximum`
//! (and exclusive forms), `minLength`/`maxLength`, `items`, `prefixItems`, `minItems`/`maxItems`, `anyOf`,
//! `oneOf`, `allOf`, `not`. Unknown keywords (`format`, `title`, `discriminator`, …) are ignored.

use serde_json::{Map, Value};

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

/// Deeper than this and the schema is treated as cyclic.
const MAX_DEPTH: usize = 64;

/// Validate `value` against `schema`; all failures found (the first of each branch).
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<SchemaError>> {
    let mut errors = Vec::new();
    Validator { root: schema }.check(schema, value, "", 0, &mut errors);
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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
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

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
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
        let len = s.chars().count() as u64;
        let push = |errors: &mut Vec<SchemaError>, message: String| {
            errors.push(SchemaError { path: path.to_string(), message })
        };
        if let Some(min) = obj.get("minLength").and_then(Value::as_u64) {
            if len < min {
                push(errors, format!("must be at least {min} characters long, got {len}"));
            }
        }
        if let Some(max) = obj.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                push(errors, format!("must be at most {max} characters long, got {len}"));
            }
        }
        if let Some(p) = obj.get("pattern").and_then(Value::as_str) {
            match Regex::new(p) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => push(errors, format!("must match the pattern {p}, got {}", short(&Value::String(s.into())))),
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
            .map(|pp| pp.iter().filter_map(|(k, v)| Regex::new(k).ok().map(|r| (r, v))).collect())
            .unwrap_or_default();
        for (key, v) in map {
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
// A tiny backtracking regex engine for JSON Schema `pattern` (ECMA-262 subset: literals, `.`, classes with ranges
// and negation, `\d \w \s \D \W \S`, escapes, groups `(...)` / `(?:...)`, `|`, `? * + {m} {m,} {m,n}`, `^ $`).
// Unanchored search as the spec requires. A step budget guards against catastrophic backtracking.

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class(bool, Vec<ClassItem>),
    Group(Vec<Vec<Piece>>),
    Start,
    End,
}

#[derive(Debug, Clone)]
enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

#[derive(Debug, Clone)]
struct Piece {
    node: Node,
    min: usize,
    max: usize,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    alts: Vec<Vec<Piece>>,
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut pos = 0;
        let alts = parse_alts(&chars, &mut pos, 0)?;
        if pos != chars.len() {
            return Err(format!("unexpected ')' at {pos}"));
        }
        Ok(Regex { alts })
    }

    pub fn is_match(&self, text: &str) -> bool {
        let t: Vec<char> = text.chars().collect();
        let mut budget = 200_000usize;
        (0..=t.len()).any(|start| match_alts(&self.alts, &t, start, &mut budget, &mut |_, _| true))
    }
}

fn parse_alts(p: &[char], pos: &mut usize, depth: usize) -> Result<Vec<Vec<Piece>>, String> {
    if depth > 32 {
        return Err("pattern nests too deeply".into());
    }
    let mut alts = vec![Vec::new()];
    while *pos < p.len() {
        let c = p[*pos];
        match c {
            ')' => break,
            '|' => {
                *pos += 1;
                alts.push(Vec::new());
                continue;
            }
            _ => {}
        }
        let node = match c {
            '(' => {
                *pos += 1;
                if p.get(*pos) == Some(&'?') && p.get(*pos + 1) == Some(&':') {
                    *pos += 2;
                }
                let inner = parse_alts(p, pos, depth + 1)?;
                if p.get(*pos) != Some(&')') {
                    return Err("unclosed group".into());
                }
                *pos += 1;
                Node::Group(inner)
            }
            '[' => {
                *pos += 1;
                parse_class(p, pos)?
            }
            '.' => {
                *pos += 1;
                Node::Any
            }
            '^' => {
                *pos += 1;
                Node::Start
            }
            '$' => {
                *pos += 1;
                Node::End
            }
            '\\' => {
                *pos += 1;
                let e = *p.get(*pos).ok_or("trailing backslash")?;
                *pos += 1;
                match escape_class(e) {
                    Some(item) => Node::Class(false, vec![item]),
                    None => Node::Char(escape_char(e)),
                }
            }
            '*' | '+' | '?' | '{' => return Err(format!("nothing to repeat at {}", *pos)),
            _ => {
                *pos += 1;
                Node::Char(c)
            }
        };
        let (min, max) = parse_quantifier(p, pos)?;
        // A lazy marker changes nothing for a yes/no match.
        if p.get(*pos) == Some(&'?') {
            *pos += 1;
        }
        alts.last_mut().expect("at least one alternative").push(Piece { node, min, max });
    }
    Ok(alts)
}

fn parse_quantifier(p: &[char], pos: &mut usize) -> Result<(usize, usize), String> {
    Ok(match p.get(*pos) {
        Some('*') => {
            *pos += 1;
            (0, usize::MAX)
        }
        Some('+') => {
            *pos += 1;
            (1, usize::MAX)
        }
        Some('?') => {
            *pos += 1;
            (0, 1)
        }
        Some('{') => {
            let close = p[*pos..].iter().position(|&c| c == '}').ok_or("unclosed {")? + *pos;
            let body: String = p[*pos + 1..close].iter().collect();
            let num = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("bad repetition {{{body}}}"));
            let r = match body.split_once(',') {
                None => {
                    let n = num(&body)?;
                    (n, n)
                }
                Some((a, "")) => (num(a)?, usize::MAX),
                Some((a, b)) => (num(a)?, num(b)?),
            };
            *pos = close + 1;
            r
        }
        _ => (1, 1),
    })
}

fn escape_class(e: char) -> Option<ClassItem> {
    Some(match e {
        'd' => ClassItem::Digit(true),
        'D' => ClassItem::Digit(false),
        'w' => ClassItem::Word(true),
        'W' => ClassItem::Word(false),
        's' => ClassItem::Space(true),
        'S' => ClassItem::Space(false),
        _ => return None,
    })
}

fn escape_char(e: char) -> char {
    match e {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        other => other,
    }
}

fn parse_class(p: &[char], pos: &mut usize) -> Result<Node, String> {
    let mut negated = false;
    if p.get(*pos) == Some(&'^') {
        negated = true;
        *pos += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(*pos).ok_or("unclosed [")?;
        if c == ']' && !first {
            *pos += 1;
            break;
        }
        first = false;
        *pos += 1;
        let lo = if c == '\\' {
            let e = *p.get(*pos).ok_or("trailing backslash")?;
            *pos += 1;
            if let Some(item) = escape_class(e) {
                items.push(item);
                continue;
            }
            escape_char(e)
        } else {
            c
        };
        if p.get(*pos) == Some(&'-') && p.get(*pos + 1).is_some_and(|&n| n != ']') {
            let mut hi = p[*pos + 1];
            *pos += 2;
            if hi == '\\' {
                hi = escape_char(*p.get(*pos).ok_or("trailing backslash")?);
                *pos += 1;
            }
            items.push(ClassItem::Range(lo, hi));
        } else {
            items.push(ClassItem::Range(lo, lo));
        }
    }
    Ok(Node::Class(negated, items))
}

fn class_has(items: &[ClassItem], c: char) -> bool {
    items.iter().any(|i| match *i {
        ClassItem::Range(a, b) => a <= c && c <= b,
        ClassItem::Digit(pos) => c.is_ascii_digit() == pos,
        ClassItem::Word(pos) => (c.is_ascii_alphanumeric() || c == '_') == pos,
        ClassItem::Space(pos) => c.is_whitespace() == pos,
    })
}

type Cont<'c> = dyn FnMut(usize, &mut usize) -> bool + 'c;

fn match_alts(alts: &[Vec<Piece>], t: &[char], pos: usize, budget: &mut usize, k: &mut Cont<'_>) -> bool {
    alts.iter().any(|seq| match_seq(seq, t, pos, budget, k))
}

fn match_seq(seq: &[Piece], t: &[char], pos: usize, budget: &mut usize, k: &mut Cont<'_>) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match seq.split_first() {
        None => k(pos, budget),
        Some((piece, rest)) => match_repeat(piece, 0, rest, t, pos, budget, k),
    }
}

/// Greedy repetition of `piece` (already matched `count` times), then the rest of the sequence.
fn match_repeat(
    piece: &Piece,
    count: usize,
    rest: &[Piece],
    t: &[char],
    pos: usize,
    budget: &mut usize,
    k: &mut Cont<'_>,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    if count < piece.max {
        let mut more = |next: usize, budget: &mut usize| {
            if next == pos {
                // An empty iteration satisfies any remaining minimum; repeating it again cannot make progress.
                match_seq(rest, t, next, budget, k)
            } else {
                match_repeat(piece, count + 1, rest, t, next, budget, k)
            }
        };
        if match_node(&piece.node, t, pos, budget, &mut more) {
            return true;
        }
    }
    count >= piece.min && match_seq(rest, t, pos, budget, k)
}

fn match_node(node: &Node, t: &[char], pos: usize, budget: &mut usize, k: &mut Cont<'_>) -> bool {
    match node {
        Node::Char(c) => t.get(pos) == Some(c) && k(pos + 1, budget),
        Node::Any => t.get(pos).is_some_and(|&c| c != '\n') && k(pos + 1, budget),
        Node::Class(neg, items) => t.get(pos).is_some_and(|&c| class_has(items, c) != *neg) && k(pos + 1, budget),
        Node::Start => pos == 0 && k(pos, budget),
        Node::End => pos == t.len() && k(pos, budget),
        Node::Group(alts) => match_alts(alts, t, pos, budget, k),
    }
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

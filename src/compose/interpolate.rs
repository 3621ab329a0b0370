//! Compose variable interpolation from the caller's `env` map, standing in for the `.env` TrueNAS does not have.
//!
//! The grammar is Compose's (compose-go `template`): `$$` is a literal `$`; `$NAME` and `${NAME}` substitute;
//! `${NAME:-default}` / `${NAME-default}` fall back when unset-or-empty / unset; `${NAME:?message}` /
//! `${NAME?message}` demand a value; `${NAME:+alt}` / `${NAME+alt}` give `alt` when set-and-non-empty / set.
//! Names are `[A-Za-z_][A-Za-z0-9_]*`; a `$` followed by anything else stays a literal `$`; a malformed `${…}` is an
//! error, as it is for `docker compose config`. Defaults may themselves hold `${…}` (nested, depth-bounded).
//!
//! Like Compose, only scalar string *values* are interpolated, never mapping keys, and only from the given map:
//! never from this process's environment, so nothing is invented. Values taken from `env` are literal text (they
//! are not interpolated again). The renderer later escapes every `$` left in a value as `$$`, because TrueNAS runs
//! `docker compose` on the stored file and would otherwise interpolate it a second time from the middleware's own
//! environment.

use std::collections::{BTreeMap, HashSet};

use serde_yaml::Value;

use crate::jsonrpc::clip;

use super::parse::MAX_DEPTH;
use super::rules;
use super::{Finding, Substitution};

/// Deepest `${A:-${B:-${C}}}` nesting we follow.
const MAX_NESTING: usize = 16;
/// Most bytes of `env` values one document may pull in (a 1 MiB value referenced 30 000 times must not become
/// 30 GB).
pub const MAX_SUBSTITUTED_BYTES: usize = 4 * 1024 * 1024;

/// Most unresolved names and findings one document reports. A 128 KiB file can name 15 000 variables; listing
/// each (a finding with its path and fix, twice in a tool answer) made a 13 MB answer; the first 25 say what to fix.
pub const MAX_REPORTED: usize = 25;
/// Most substitutions one document reports (an entry is small; a real file rarely has more).
pub const MAX_SUBSTITUTIONS: usize = 100;

/// What interpolation did to a document.
#[derive(Debug, Default)]
pub struct Interpolation {
    /// The first [`MAX_SUBSTITUTIONS`] substitutions.
    pub substitutions: Vec<Substitution>,
    /// Variables with no value and no default, each once, in document order (the first [`MAX_REPORTED`]).
    pub unresolved: Vec<String>,
    /// The first [`MAX_REPORTED`] findings, then one per rule that had more, counting them.
    pub findings: Vec<Finding>,
    /// Bytes of `env` values substituted so far.
    substituted_bytes: usize,
    /// Every unresolved name seen (a set, so each occurrence costs O(1), not a scan of the list).
    unresolved_seen: HashSet<String>,
    /// Findings past the cap, by rule: the first one and how many.
    dropped: BTreeMap<&'static str, (Finding, usize)>,
}

impl Interpolation {
    fn push_finding(&mut self, finding: Finding) {
        if self.findings.len() < MAX_REPORTED {
            self.findings.push(finding);
        } else {
            self.dropped.entry(finding.rule).or_insert_with(|| (finding, 0)).1 += 1;
        }
    }

    /// A name without a value, recorded once; whether it was new.
    fn note_unresolved(&mut self, variable: &str) -> bool {
        if self.unresolved_seen.contains(variable) {
            return false;
        }
        self.unresolved_seen.insert(variable.to_string());
        if self.unresolved.len() < MAX_REPORTED {
            self.unresolved.push(variable.to_string());
        }
        true
    }
}

/// Interpolate every string value of `value` in place.
pub fn interpolate_tree(value: &mut Value, env: &BTreeMap<String, String>) -> Interpolation {
    let mut out = Interpolation::default();
    let mut path = String::new();
    walk(value, env, &mut path, None, 0, &mut out);
    // Past the cap, each rule that fired again is reported once more, with a count, so the severity the
    // operator's policy gives that rule still decides the outcome.
    for (_, (mut finding, n)) in std::mem::take(&mut out.dropped) {
        finding.message = format!("{n} more like this not listed, the first: {}", finding.message);
        out.findings.push(finding);
    }
    out
}

fn walk(
    value: &mut Value,
    env: &BTreeMap<String, String>,
    path: &mut String,
    service: Option<&str>,
    depth: usize,
    out: &mut Interpolation,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::String(s) if s.contains('$') => {
            let mut scope = Scope { env, path, service, out };
            if let Some(new) = interpolate_str(s, &mut scope, 0) {
                *s = new;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, env, path, service, depth + 1, out);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            let in_services = depth == 1 && path == "services";
            for (k, v) in map.iter_mut() {
                // Paths are copied into every finding and substitution below them: a long key is clipped once.
                let key = clip(&key_text(k)).into_owned();
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
                let service = if in_services { Some(key.as_str()) } else { service };
                walk(v, env, path, service, depth + 1, out);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, env, path, service, depth + 1, out),
        _ => {}
    }
}

/// A mapping key as text for paths.
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        _ => "?".to_string(),
    }
}

struct Scope<'a> {
    env: &'a BTreeMap<String, String>,
    path: &'a str,
    service: Option<&'a str>,
    out: &'a mut Interpolation,
}

impl Scope<'_> {
    /// The value of `variable` to insert, or nothing once the document has pulled in too much.
    fn take(&mut self, value: &str) -> String {
        let before = self.out.substituted_bytes;
        self.out.substituted_bytes = before.saturating_add(value.len());
        if self.out.substituted_bytes <= MAX_SUBSTITUTED_BYTES {
            return value.to_string();
        }
        if before <= MAX_SUBSTITUTED_BYTES {
            self.out.findings.push(rules::TOO_LARGE.at(
                self.service,
                self.path,
                format!(
                    "interpolation would pull more than {MAX_SUBSTITUTED_BYTES} bytes of env values into the document"
                ),
                "pass shorter values, or reference each long value once",
            ));
        }
        String::new()
    }

    fn record(&mut self, variable: &str, source: &'static str) {
        if self.out.substitutions.len() < MAX_SUBSTITUTIONS {
            self.out.substitutions.push(Substitution {
                variable: clip(variable).into_owned(),
                source,
                path: self.path.to_string(),
            });
        }
    }

    fn unresolved(&mut self, variable: &str) {
        self.out.note_unresolved(variable);
        let variable = clip(variable);
        self.out.push_finding(rules::UNRESOLVED_VARIABLE.at(
            self.service,
            self.path,
            format!(
                "`{variable}` has no value and no default; TrueNAS has no .env file, so it would silently become \
                 an empty string"
            ),
            format!("pass {variable} in the env argument, or write a default: ${{{variable}:-value}}"),
        ));
    }

    fn required(&mut self, variable: &str, message: &str) {
        self.out.note_unresolved(variable);
        let variable = clip(variable);
        let why = if message.is_empty() { "it is marked required".to_string() } else { clip(message).into_owned() };
        self.out.push_finding(rules::REQUIRED_VARIABLE.at(
            self.service,
            self.path,
            format!("`{variable}` has no value: {why}"),
            format!("pass {variable} in the env argument"),
        ));
    }

    fn invalid(&mut self, text: &str, why: &str) {
        self.out.push_finding(rules::INTERPOLATION_INVALID.at(
            self.service,
            self.path,
            format!("invalid interpolation `{}`: {why}", clip(text)),
            "write `${NAME}`, `${NAME:-default}` or `$$` for a literal dollar sign",
        ));
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Index (in `s`) of the `}` closing the `${` that starts at 0, counting nested `${`.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut open = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        } else if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

/// The interpolated text, or `None` when `s` had nothing to substitute.
fn interpolate_str(s: &str, scope: &mut Scope<'_>, nesting: usize) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    let mut changed = false;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push_str(&s[last..i]);
                out.push('$');
                i += 2;
                last = i;
                changed = true;
            }
            Some(b'{') => {
                out.push_str(&s[last..i]);
                changed = true;
                let Some(close) = closing_brace(&s[i..]) else {
                    scope.invalid(&s[i..], "no closing `}`");
                    // Keep the rest as it was; the finding blocks deployment anyway.
                    out.push_str(&s[i..]);
                    return Some(out);
                };
                let inner = &s[i + 2..i + close];
                out.push_str(&braced(inner, &s[i..=i + close], scope, nesting));
                i += close + 1;
                last = i;
            }
            Some(&c) if is_name_start(c) => {
                out.push_str(&s[last..i]);
                changed = true;
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && is_name_char(bytes[end]) {
                    end += 1;
                }
                let name = &s[start..end];
                match scope.env.get(name) {
                    Some(v) => {
                        scope.record(name, "env");
                        let v = scope.take(v);
                        out.push_str(&v);
                    }
                    None => scope.unresolved(name),
                }
                i = end;
                last = i;
            }
            // A lone `$` (end of text, `$5`, `$ `) is literal, as in Compose.
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&s[last..]);
    Some(out)
}

/// The value of one `${inner}`.
fn braced(inner: &str, whole: &str, scope: &mut Scope<'_>, nesting: usize) -> String {
    let bytes = inner.as_bytes();
    if bytes.is_empty() || !is_name_start(bytes[0]) {
        scope.invalid(whole, "a variable name must start with a letter or `_`");
        return String::new();
    }
    let mut end = 1;
    while end < bytes.len() && is_name_char(bytes[end]) {
        end += 1;
    }
    let name = &inner[..end];
    let rest = &inner[end..];
    let value = scope.env.get(name).map(String::as_str);
    let (operator, argument) = if rest.is_empty() {
        ("", "")
    } else if let Some(op) = [":-", ":?", ":+", "-", "?", "+"].into_iter().find(|op| rest.starts_with(op)) {
        (op, &rest[op.len()..])
    } else {
        scope.invalid(whole, "expected `}`, `:-`, `-`, `:?`, `?`, `:+` or `+` after the name");
        return String::new();
    };
    let nested = |argument: &str, scope: &mut Scope<'_>| -> String {
        if nesting >= MAX_NESTING {
            scope.invalid(whole, "nested too deeply");
            return String::new();
        }
        interpolate_str(argument, scope, nesting + 1).unwrap_or_else(|| argument.to_string())
    };
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    match operator {
        "" => match value {
            Some(v) => {
                scope.record(name, "env");
                scope.take(v)
            }
            None => {
                scope.unresolved(name);
                String::new()
            }
        },
        ":-" | "-" => {
            if non_empty || (operator == "-" && set) {
                scope.record(name, "env");
                scope.take(value.unwrap_or_default())
            } else {
                scope.record(name, "default");
                nested(argument, scope)
            }
        }
        ":?" | "?" => {
            if non_empty || (operator == "?" && set) {
                scope.record(name, "env");
                scope.take(value.unwrap_or_default())
            } else {
                scope.required(name, argument);
                String::new()
            }
        }
        _ => {
            // ":+" and "+": the alternate text when the variable is (non-empty and) set, else nothing.
            if non_empty || (operator == "+" && set) {
                scope.record(name, "alternate");
                nested(argument, scope)
            } else {
                String::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, env: &[(&str, &str)]) -> (String, Interpolation) {
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut value = Value::String(text.to_string());
        let out = interpolate_tree(&mut value, &env);
        (value.as_str().unwrap().to_string(), out)
    }

    #[test]
    fn grammar_matches_compose() {
        let env = [("A", "x"), ("EMPTY", ""), ("P", "/mnt/tank")];
        let cases = [
            ("$A", "x"),
            ("${A}", "x"),
            ("pre-$A-post", "pre-x-post"),
            ("$A_B", ""),
            ("${A}_B", "x_B"),
            ("${MISSING:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${MISSING-d}", "d"),
            ("${A:-d}", "x"),
            ("${A:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${MISSING+alt}", ""),
            ("$$A", "$A"),
            ("$${A}", "${A}"),
            ("cost: 5$", "cost: 5$"),
            ("$5 and $ and $-", "$5 and $ and $-"),
            ("${MISSING:-${P}/data}", "/mnt/tank/data"),
            ("${MISSING:-${ALSO:-/x}}", "/x"),
            ("${P}/a:/a", "/mnt/tank/a:/a"),
            ("é$A€", "éx€"),
        ];
        for (text, want) in cases {
            assert_eq!(run(text, &env).0, want, "for {text}");
        }
    }

    #[test]
    fn reports_every_substitution_and_every_unresolved_variable() {
        let (text, out) = run("${A}:${B:-b}:$C:${D:?give D}:${E?}", &[("A", "a")]);
        assert_eq!(text, "a:b:::");
        let subs: Vec<(&str, &str)> = out.substitutions.iter().map(|s| (s.variable.as_str(), s.source)).collect();
        assert_eq!(subs, vec![("A", "env"), ("B", "default")]);
        assert_eq!(out.unresolved, vec!["C", "D", "E"]);
        let rules: Vec<&str> = out.findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, vec!["unresolved-variable", "required-variable", "required-variable"]);
        assert!(out.findings[1].message.contains("give D"), "{}", out.findings[1].message);
    }

    #[test]
    fn malformed_braces_are_findings() {
        for text in ["${}", "${1A}", "${A", "${A:x}", "${A B}", "x${-}"] {
            let (_, out) = run(text, &[("A", "a")]);
            assert_eq!(out.findings.len(), 1, "{text}: {:?}", out.findings);
            assert_eq!(out.findings[0].rule, "interpolation-invalid", "{text}");
        }
    }

    #[test]
    fn substituted_bytes_are_bounded() {
        let big = "x".repeat(1024 * 1024);
        let text = "$A ".repeat(10);
        let (out, interpolation) = run(&text, &[("A", &big)]);
        assert!(out.len() <= MAX_SUBSTITUTED_BYTES + text.len(), "{}", out.len());
        let rules: Vec<&str> = interpolation.findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, vec!["too-large"]);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let text = format!("{}x{}", "${A:-".repeat(10_000), "}".repeat(10_000));
        let (_, out) = run(&text, &[]);
        assert!(out.findings.iter().any(|f| f.rule == "interpolation-invalid"));
    }

    /// 15 000 unset variables: one set lookup each (the list scan was quadratic), and a bounded report.
    #[test]
    fn many_variables_are_reported_up_to_a_cap() {
        let text: String = (0..15_000).map(|i| format!("$V{i} ${{W{i}?}} ")).collect();
        let (_, out) = run(&text, &[]);
        assert_eq!(out.unresolved.len(), MAX_REPORTED);
        assert_eq!(out.findings.len(), MAX_REPORTED + 2, "one summary per rule past the cap");
        let summaries: Vec<&str> = out.findings[MAX_REPORTED..].iter().map(|f| f.message.as_str()).collect();
        assert!(
            summaries[0].starts_with("14988 more like this not listed, the first: `W12` has no value"),
            "{summaries:?}"
        );
        assert!(summaries[1].starts_with("14987 more like this not listed, the first: `V13`"), "{summaries:?}");
        let env = [("A", "x")];
        let (_, out) = run(&"$A".repeat(10_000), &env);
        assert_eq!(out.substitutions.len(), MAX_SUBSTITUTIONS);
    }

    /// A long key or variable name is quoted briefly in paths and messages (paths are copied into every finding).
    #[test]
    fn long_names_are_clipped() {
        let key = "k".repeat(100_000);
        let mut doc: Value = serde_yaml::from_str(&format!("? {key}\n: ${}", "V".repeat(100_000))).unwrap();
        let out = interpolate_tree(&mut doc, &BTreeMap::new());
        assert!(out.findings[0].path.len() < 100 && out.findings[0].message.len() < 300, "{:?}", out.findings[0]);
    }

    #[test]
    fn keys_are_not_interpolated_but_values_are_with_paths() {
        let mut doc: Value = serde_yaml::from_str("services:\n  web:\n    environment:\n      $KEY: $V\n").unwrap();
        let env = BTreeMap::from([("V".to_string(), "v".to_string()), ("KEY".to_string(), "k".to_string())]);
        let out = interpolate_tree(&mut doc, &env);
        assert_eq!(doc["services"]["web"]["environment"]["$KEY"], Value::String("v".into()));
        assert_eq!(out.substitutions[0].path, "services.web.environment.$KEY");
    }
}

//! The YAML text we send to TrueNAS, written so every reader on the way reads back exactly our tree.
//!
//! TrueNAS parses the text with PyYAML (YAML 1.1) before Docker Compose (YAML 1.2) ever sees it, and YAML 1.1 reads
//! plain `yes`/`on`/`no` as booleans, `22:22` as the number 1342, `0755` as octal. So a string is written plain only
//! when it cannot be mistaken for anything else in either version, and double-quoted (with escapes for every
//! character YAML treats as a line break or rejects) otherwise. Every `$` in a value becomes `$$`, because TrueNAS
//! runs `docker compose` on the stored file and Compose would otherwise interpolate it again from the middleware's
//! environment; keys are left alone because Compose never interpolates keys.

use std::fmt::Write;

use serde_yaml::{Mapping, Value};

use super::parse::MAX_DEPTH;

/// The block-style YAML text of `doc`, or why it cannot be written (a mapping key that is itself a collection).
pub fn render(doc: &Value) -> Result<String, String> {
    let mut out = String::with_capacity(4096);
    match doc {
        Value::Mapping(m) if !m.is_empty() => block_mapping(m, 0, 0, &mut out)?,
        other => {
            inline(other, 0, &mut out)?;
            out.push('\n');
        }
    }
    Ok(out)
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => !m.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        _ => false,
    }
}

fn block_mapping(m: &Mapping, level: usize, depth: usize, out: &mut String) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("the document is nested too deeply to write".to_string());
    }
    for (k, v) in m {
        indent(out, level);
        key(k, out)?;
        out.push(':');
        child(v, level, depth, out)?;
    }
    Ok(())
}

/// The value after `key:` or `-`: inline on the same line, or a block below it.
fn child(v: &Value, level: usize, depth: usize, out: &mut String) -> Result<(), String> {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            block_mapping(m, level + 2, depth + 1, out)
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            block_sequence(s, level + 2, depth + 1, out)
        }
        other => {
            out.push(' ');
            inline(other, depth + 1, out)?;
            out.push('\n');
            Ok(())
        }
    }
}

fn block_sequence(items: &[Value], level: usize, depth: usize, out: &mut String) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("the document is nested too deeply to write".to_string());
    }
    for item in items {
        indent(out, level);
        out.push('-');
        if is_block(item) {
            // Write the block one level deeper, then pull its first line up next to the dash: `- key: v`.
            let start = out.len();
            match item {
                Value::Mapping(m) => block_mapping(m, level + 2, depth + 1, out)?,
                Value::Sequence(s) => block_sequence(s, level + 2, depth + 1, out)?,
                _ => unreachable!("is_block only accepts collections"),
            }
            out.replace_range(start..start + level + 2, " ");
        } else {
            out.push(' ');
            inline(item, depth + 1, out)?;
            out.push('\n');
        }
    }
    Ok(())
}

/// A value on one line: scalars, empty collections, tagged values and (inside tags) flow collections.
fn inline(v: &Value, depth: usize, out: &mut String) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("the document is nested too deeply to write".to_string());
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => number(n, out),
        Value::String(s) => string_value(s, out),
        Value::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                inline(item, depth + 1, out)?;
            }
            out.push(']');
        }
        Value::Mapping(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                key(k, out)?;
                out.push_str(": ");
                inline(item, depth + 1, out)?;
            }
            out.push('}');
        }
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b)) {
                return Err(format!("the YAML tag `{tag}` cannot be written back"));
            }
            out.push('!');
            out.push_str(name);
            out.push(' ');
            inline(&tagged.value, depth + 1, out)?;
        }
    }
    Ok(())
}

fn number(n: &serde_yaml::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.is_nan() {
            out.push_str(".nan");
        } else if f.is_infinite() {
            out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
        } else {
            // Rust never writes an exponent here; YAML 1.1 needs the dot to see a float.
            let text = format!("{f}");
            out.push_str(&text);
            if !text.contains('.') {
                out.push_str(".0");
            }
        }
    }
}

fn key(k: &Value, out: &mut String) -> Result<(), String> {
    match k {
        Value::String(s) => {
            if is_plain_safe(s) {
                out.push_str(s);
            } else {
                quoted(s, false, out);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => inline(k, 0, out),
        _ => Err("a mapping key is a collection; Compose only accepts text keys".to_string()),
    }
}

fn string_value(s: &str, out: &mut String) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else {
        quoted(s, true, out);
    }
}

/// Words YAML 1.1 or 1.2 reads as something other than a string.
const SPECIAL_WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"];

/// Whether `s` can be written without quotes and read back as the same string by YAML 1.1 and 1.2.
fn is_plain_safe(s: &str) -> bool {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else { return false };
    if !(first.is_ascii_alphabetic() || first == b'_' || first == b'/') {
        return false;
    }
    if !bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b"_./:@+=,-".contains(&b)) {
        return false;
    }
    if bytes.last() == Some(&b':') {
        return false;
    }
    !SPECIAL_WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// A YAML double-quoted scalar; `$` doubled when `escape_dollars`.
fn quoted(s: &str, escape_dollars: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '$' if escape_dollars => out.push_str("$$"),
            // Printable in YAML and not a line break in YAML 1.1: written as is.
            ' '..='~' => out.push(c),
            '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}'
                if !matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}') =>
            {
                out.push(c)
            }
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
}

/// Undo the `$$` escapes [`render`] wrote into the string values of a document read back from its output, so that
/// writing it again escapes each `$` once, not twice.
pub fn unescape_dollars(v: &mut Value) {
    match v {
        Value::String(s) if s.contains("$$") => *s = s.replace("$$", "$"),
        Value::Sequence(items) => items.iter_mut().for_each(unescape_dollars),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| unescape_dollars(v)),
        Value::Tagged(t) => unescape_dollars(&mut t.value),
        _ => {}
    }
}

/// Whether the plain (unquoted) text of `s` would need quotes; for tests and callers checking output.
#[cfg(test)]
fn needs_quotes(s: &str) -> bool {
    !is_plain_safe(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) -> String {
        let doc: Value = serde_yaml::from_str(text).unwrap();
        let out = render(&doc).unwrap();
        let back: Value = serde_yaml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        // Dollars are doubled on the way out; undo that to compare trees.
        let mut back = back;
        unescape_dollars(&mut back);
        assert_eq!(back, doc, "\n{out}");
        out
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in ["yes", "On", "22:22", "0755", "1e3", "", " x", "x:", "~", "null", "-", "a b", "#x", ".5", "*a", "&a"]
        {
            assert!(needs_quotes(s), "{s:?}");
        }
        for s in ["nginx", "nginx:1.25", "/mnt/tank/data", "ghcr.io/a/b:v1", "KEY=value", "x_y-z"] {
            assert!(!needs_quotes(s), "{s:?}");
        }
    }

    #[test]
    fn documents_round_trip() {
        let out = roundtrip(
            "services:\n  web:\n    image: nginx:1.25\n    ports: ['8080:80', 22:22, 443]\n    privileged: 'yes'\n    \
             environment: {A: $x, B: 'line1\n\n  line2', C: \"\\u2028\\x85\\ufeff\\t\", D: null, E: 1.5, F: true}\n    \
             healthcheck: {test: [CMD, curl, -f, 'http://localhost/']}\n    deploy: {resources: {limits: {cpus: 2.0}}}\n    \
             empty: {}\n    none: []\n    nested: [[1, 2], [], {a: 1, b: [x]}]\n    tagged: !reset []\n    \
             \"on\": 1\n    1: one\n",
        );
        assert!(out.contains("image: nginx:1.25\n"), "{out}");
        assert!(out.contains("- \"22:22\"\n"), "{out}");
        assert!(out.contains("privileged: \"yes\"\n"), "{out}");
        assert!(out.contains("A: \"$$x\"\n"), "{out}");
        assert!(out.contains("cpus: 2.0\n"), "{out}");
    }

    #[test]
    fn collection_keys_are_refused() {
        let doc: Value = serde_yaml::from_str("? [a]\n: 1\n").unwrap();
        assert!(render(&doc).is_err());
    }
}

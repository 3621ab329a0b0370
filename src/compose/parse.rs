//! Compose text to a YAML tree we can trust: input capped, alias expansion metered, merge keys resolved.
//!
//! serde_yaml's own guards stop the classic 9×9 alias bomb ("repetition limit exceeded") and deep nesting
//! ("recursion limit exceeded"), but not a *wide* expansion (one big anchored list referenced thousands of times
//! stays under the repetition limit and still builds billions of nodes). So the tree is built by a visitor that
//! counts every node and every scalar byte it creates and gives up past a budget, which bounds memory and time.
//! Merge keys (`<<: *base`) are resolved here, recursively and in YAML order, because serde_yaml's
//! `apply_merge` leaves a `<<` that arrives through another merge (an anchor that itself merges) unresolved, and a
//! `privileged: true` hidden two anchors deep must not slip past the policy.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

use super::rules;
use super::Finding;

/// Largest compose text we look at: twice what one TrueNAS request can carry (64 KiB), so a commented document
/// still fits, while bounding the YAML scanner. libyaml's scanner costs (tokens × flow depth), and serde_yaml only
/// applies its depth limit after scanning everything; the pre-scan below stops plain deep nesting at once, but
/// decoy `]` inside quoted strings can hide depth from it, and at this cap that worst case stays near a second.
pub const MAX_INPUT_BYTES: usize = 128 * 1024;
/// Unclosed `[` / `{` we tolerate in the cheap pre-scan (serde_yaml itself stops at 128 levels, but only after
/// the scanner has read the whole document, which is slow for hundreds of thousands of levels).
const MAX_FLOW_OPENERS: usize = 1000;
/// Most YAML nodes (after alias expansion) one document may build. A 1000-service file needs about 30 000.
pub const MAX_NODES: usize = 500_000;
/// Most scalar bytes (after alias expansion) one document may build.
pub const MAX_SCALAR_BYTES: usize = 16 * 1024 * 1024;
/// Deepest nesting any of our walks follows; serde_yaml itself stops at 128.
pub const MAX_DEPTH: usize = 160;

/// Parse `text` into a YAML tree with merge keys applied, or the one finding that explains why not.
pub fn parse(text: &str) -> Result<Value, Finding> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(rules::TOO_LARGE.at(
            None,
            "",
            format!("compose text is {} bytes; the limit is {} bytes", text.len(), MAX_INPUT_BYTES),
            "split the application or remove unused services; TrueNAS accepts at most 64 KiB per request",
        ));
    }
    if text.trim().is_empty() {
        return Err(rules::NOT_A_MAPPING.at(None, "", "the document is empty", "start from `services:`"));
    }
    if let Some((line, column)) = flow_nesting_beyond(text, MAX_FLOW_OPENERS) {
        return Err(rules::YAML_INVALID.at(
            None,
            "",
            format!("YAML nesting is too deep: more than {MAX_FLOW_OPENERS} unclosed `[` or `{{` (at line {line} column {column})"),
            "flatten the document; compose files are rarely 10 levels deep",
        ));
    }
    let budget = Budget { nodes: Cell::new(0), bytes: Cell::new(0) };
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let mut value = match (Node { budget: &budget, depth: 0 }).deserialize(deserializer) {
        Ok(v) => v,
        Err(e) => return Err(yaml_error(&e, &budget)),
    };
    if let Err(why) = resolve_merges(&mut value, 0) {
        return Err(rules::YAML_INVALID.at(
            None,
            "",
            why,
            "merge keys (`<<`) must name a mapping or a list of mappings",
        ));
    }
    resolve_compose_tags(&mut value, 0);
    Ok(value)
}

/// Where the count of `[`/`{` not yet closed first exceeds `limit`, counting every bracket (also in strings and
/// comments). It over-counts brackets inside quotes, which only matters for documents no one writes by hand.
fn flow_nesting_beyond(text: &str, limit: usize) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut line_start) = (0usize, 1usize, 0usize);
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some((line, text[line_start..i].chars().count() + 1));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            _ => {}
        }
    }
    None
}

fn yaml_error(e: &serde_yaml::Error, budget: &Budget) -> Finding {
    let text = e.to_string();
    let (message, fix) = if budget.exceeded() || text.contains(BUDGET_MARK) {
        (
            format!(
                "the document expands to more than {MAX_NODES} nodes or {MAX_SCALAR_BYTES} bytes (an alias bomb?); \
                 refused"
            ),
            "write the document out without anchors that are repeated thousands of times",
        )
    } else if text.contains("repetition limit exceeded") {
        (
            "YAML aliases expand too many times (an alias bomb); refused".to_string(),
            "write the document out without nested anchors that multiply",
        )
    } else if text.contains("recursion limit exceeded") {
        (format!("YAML nesting is too deep: {text}"), "flatten the document; compose files are rarely 10 levels deep")
    } else if text.contains("duplicate entry") {
        (format!("YAML has a duplicate key: {text}"), "remove or rename the repeated key")
    } else if text.contains("more than one document") {
        (
            "the text holds more than one YAML document (`---`); send exactly one".to_string(),
            "remove the extra `---` documents",
        )
    } else {
        (format!("YAML does not parse: {text}"), "fix the YAML syntax at the position given")
    };
    let message = match e.location() {
        Some(loc) if !message.contains(" line ") => {
            format!("{message} (at line {} column {})", loc.line(), loc.column())
        }
        _ => message,
    };
    rules::YAML_INVALID.at(None, "", message, fix)
}

const BUDGET_MARK: &str = "expansion budget exceeded";

struct Budget {
    nodes: Cell<usize>,
    bytes: Cell<usize>,
}

impl Budget {
    fn exceeded(&self) -> bool {
        self.nodes.get() > MAX_NODES || self.bytes.get() > MAX_SCALAR_BYTES
    }

    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        self.nodes.set(self.nodes.get() + 1);
        self.bytes.set(self.bytes.get().saturating_add(bytes));
        if self.exceeded() {
            return Err(E::custom(BUDGET_MARK));
        }
        Ok(())
    }
}

/// Builds one `serde_yaml::Value` while charging the budget for every node.
#[derive(Clone, Copy)]
struct Node<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom("recursion limit exceeded"));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.charge(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.charge(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.charge(0)?;
        let child = Node { budget: self.budget, depth: self.depth + 1 };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.charge(0)?;
        let child = Node { budget: self.budget, depth: self.depth + 1 };
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(child)? {
            if mapping.contains_key(&key) {
                let shown = match &key {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                return Err(de::Error::custom(format_args!("duplicate entry with key \"{shown}\"")));
            }
            let value = map.next_value_seed(child)?;
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // serde_yaml presents `!tag value` as an enum whose variant name is the tag.
        self.budget.charge(0)?;
        let (tag, contents): (String, _) = data.variant()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let value = contents.newtype_variant_seed(Node { budget: self.budget, depth: self.depth + 1 })?;
        Ok(Value::Tagged(Box::new(TaggedValue { tag: Tag::new(tag), value })))
    }
}

/// Apply YAML merge keys everywhere: `<<: *a` or `<<: [*a, *b]`, earlier sources winning, keys written in the
/// mapping itself winning over all of them. A merge source is resolved before it is merged, so chains of anchors
/// that merge other anchors flatten completely.
pub fn resolve_merges(value: &mut Value, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("YAML nesting is too deep".to_string());
    }
    match value {
        Value::Mapping(mapping) => {
            if mapping.contains_key("<<") {
                // Rebuild in order: merged keys take the place of `<<`; an explicit key replaces a merged value.
                let original = std::mem::take(mapping);
                // A `!reset` key gives way to a merged value: real Compose (v2.40) keeps what `<<` brings for a key
                // reset in the same mapping (checked with `docker compose config`; see tests/interop/real_compose.rs).
                let is_reset = |v: Option<&Value>| matches!(v, Some(Value::Tagged(t)) if t.tag == "reset");
                for (k, v) in original {
                    if k.as_str() != Some("<<") {
                        if !(is_reset(Some(&v)) && mapping.contains_key(&k)) {
                            mapping.insert(k, v);
                        }
                        continue;
                    }
                    let mut source = v;
                    resolve_merges(&mut source, depth + 1)?;
                    for merged in merge_sources(source)? {
                        for (mk, mv) in merged {
                            if !mapping.contains_key(&mk) || is_reset(mapping.get(&mk)) {
                                mapping.insert(mk, mv);
                            }
                        }
                    }
                }
            }
            for (_, v) in mapping.iter_mut() {
                resolve_merges(v, depth + 1)?;
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for v in items {
                resolve_merges(v, depth + 1)?;
            }
            Ok(())
        }
        Value::Tagged(tagged) => resolve_merges(&mut tagged.value, depth + 1),
        _ => Ok(()),
    }
}

/// Resolve Compose's `!reset` and `!override` tags (after merge keys), so the policy judges the effective document
/// and the text sent to TrueNAS has no tags its YAML loader cannot read. In one document, `key: !reset <anything>`
/// means "back to the default": the key is removed (a value a merge key `<<` brings for it stays, as in real
/// Compose: `resolve_merges` let it win). `key: !override <value>` means "this value, not a merge
/// of it": merge keys are shallow, so the explicit value has already replaced the merged one and only the tag goes.
/// In a list, a `!reset` item is dropped and an `!override` item keeps its value. Other tags are left alone.
fn resolve_compose_tags(value: &mut Value, depth: usize) {
    // parse() already refused anything deeper than MAX_DEPTH while building the tree.
    if depth > MAX_DEPTH {
        return;
    }
    let kind = |v: &Value| match v {
        Value::Tagged(t) if t.tag == "reset" => Some(true),
        Value::Tagged(t) if t.tag == "override" => Some(false),
        _ => None,
    };
    match value {
        Value::Mapping(mapping) => {
            mapping.retain(|_, v| kind(v) != Some(true));
            for (_, v) in mapping.iter_mut() {
                strip_override(v);
                resolve_compose_tags(v, depth + 1);
            }
        }
        Value::Sequence(items) => {
            items.retain(|v| kind(v) != Some(true));
            for v in items.iter_mut() {
                strip_override(v);
                resolve_compose_tags(v, depth + 1);
            }
        }
        Value::Tagged(tagged) => resolve_compose_tags(&mut tagged.value, depth + 1),
        _ => {}
    }
}

/// Replace `!override <value>` (any number of times nested) by `<value>`.
fn strip_override(v: &mut Value) {
    while let Value::Tagged(t) = v {
        if t.tag != "override" {
            return;
        }
        let inner = std::mem::take(&mut t.value);
        *v = inner;
    }
}

/// The mappings a resolved `<<` value merges, in precedence order.
fn merge_sources(source: Value) -> Result<Vec<Mapping>, String> {
    match source {
        Value::Mapping(m) => Ok(vec![m]),
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Mapping(m) => Ok(m),
                _ => Err("a merge key (`<<`) list may only hold mappings".to_string()),
            })
            .collect(),
        _ => Err("a merge key (`<<`) must name a mapping or a list of mappings".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(text: &str) -> Result<Value, String> {
        parse(text).map_err(|f| format!("{}: {}", f.rule, f.message))
    }

    #[test]
    fn merges_resolve_through_chains_of_anchors() {
        let v =
            rule_of("x-a: &a {privileged: true, image: a}\nx-b: &b {<<: *a, image: b}\nservices:\n  web: {<<: *b}\n")
                .unwrap();
        let web = &v["services"]["web"];
        assert_eq!(web["privileged"], Value::Bool(true));
        assert_eq!(web["image"], Value::String("b".into()));
        assert!(web.get("<<").is_none());
    }

    #[test]
    fn merge_lists_take_the_first_source_first() {
        let v = rule_of("x: &x {a: 1}\ny: &y {a: 2, b: 2}\nz:\n  <<: [*x, *y]\n  c: 3\n").unwrap();
        assert_eq!(v["z"]["a"], Value::Number(1.into()));
        assert_eq!(v["z"]["b"], Value::Number(2.into()));
        let keys: Vec<&str> = v["z"].as_mapping().unwrap().keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, vec!["a", "b", "c"], "merged keys take the place of `<<`");
        let v = rule_of("x: &x {a: 1, b: 1}\nz: {b: 2, <<: *x, c: 3, a: 4}\n").unwrap();
        let pairs: Vec<(String, i64)> = v["z"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_string(), v.as_i64().unwrap()))
            .collect();
        let want = vec![("b".to_string(), 2), ("a".to_string(), 4), ("c".to_string(), 3)];
        assert_eq!(pairs, want, "explicit keys win wherever they are written");
    }

    #[test]
    fn errors_become_findings_with_positions() {
        let cases = [
            ("services: [\n", "line"),
            ("a: 1\na: 2\n", "duplicate"),
            ("a: 1\n---\nb: 2\n", "more than one YAML document"),
            ("a: {<<: 5}\n", "merge key"),
            ("   \n", "empty"),
        ];
        for (text, want) in cases {
            let err = rule_of(text).unwrap_err();
            assert!(err.contains(want), "{text:?} gave {err}");
        }
    }

    #[test]
    fn classic_and_wide_alias_bombs_are_refused() {
        let mut bomb =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let refs = vec![format!("*{}", w[0]); 9].join(",");
            bomb.push_str(&format!("{}: &{} [{}]\n", w[1], w[1], refs));
        }
        let err = rule_of(&bomb).unwrap_err();
        assert!(err.starts_with("yaml-invalid"), "{err}");

        // One 2000-element list referenced 2000 times: 4 million nodes from 30 KB of text.
        let mut wide = String::from("big: &big [");
        wide.push_str(&vec!["1"; 2000].join(","));
        wide.push_str("]\nrefs: [");
        wide.push_str(&vec!["*big"; 2000].join(","));
        wide.push_str("]\n");
        let err = rule_of(&wide).unwrap_err();
        assert!(err.contains("expands to more than"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = rule_of(&deep).unwrap_err();
        assert!(err.contains("too deep"), "{err}");
    }

    #[test]
    fn reset_and_override_are_resolved_and_other_tags_kept() {
        let v = rule_of(
            "base: &b {a: 1, b: [1], c: {x: 1}, d: 4}\nz:\n  <<: *b\n  a: !reset null\n  b: !override [2]\n  \
             c: !override {y: 2}\n  e: !reset\n  f: !custom x\n  g: [1, !reset 2, !override 3]\n",
        )
        .unwrap();
        let z = v["z"].as_mapping().unwrap();
        let keys: Vec<&str> = z.keys().filter_map(Value::as_str).collect();
        // As in real Compose v2.40: a key reset beside `<<` keeps the merged value; one with nothing merged goes.
        assert_eq!(keys, vec!["a", "b", "c", "d", "f", "g"]);
        assert_eq!(v["z"]["a"], Value::from(1));
        assert_eq!(v["z"]["b"], serde_yaml::from_str::<Value>("[2]").unwrap());
        assert_eq!(v["z"]["c"], serde_yaml::from_str::<Value>("{y: 2}").unwrap(), "no deep merge under !override");
        assert_eq!(v["z"]["g"], serde_yaml::from_str::<Value>("[1, 3]").unwrap());
        assert!(matches!(&v["z"]["f"], Value::Tagged(t) if t.tag == "custom"));
        let top = rule_of("services: !reset {}\nx: !override 1\n").unwrap();
        assert!(top.get("services").is_none());
        assert_eq!(top["x"], Value::Number(1.into()));
    }
}

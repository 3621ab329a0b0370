//! Secrets that come back masked: `get_custom_app_config` shows `***` where the deployed compose has a value, and
//! an edited compose sent back to `update_custom_app` carries that mask. Sending it would overwrite the real value.
//!
//! The rule is independent of how masking decides what a secret is: a value in the submitted compose that differs
//! from the deployed value at the same place, but equals what [`mask_secrets`] makes of the deployed compose there,
//! is the mask of that value, so the deployed value is kept. That holds for whole-value masks and for partial ones
//! (`postgres://app:***@db/app`). `NAME=value` entries of an `environment` list are matched by name, because an
//! edit may add or reorder entries.

use serde_json::Value;

use crate::compose::mask_secrets;
use crate::compose::secrets::MASK;

/// A submitted compose with the deployed values put back where it carried their mask.
pub struct Restored {
    pub compose: Value,
    /// What was kept: variable names, or document paths outside `environment` (in document order, no repeats).
    pub kept: Vec<String>,
}

/// `submitted` with every masked deployed value restored (see the module documentation).
pub fn restore(submitted: &Value, deployed: &Value) -> Restored {
    let mut compose = submitted.clone();
    let mut kept = Vec::new();
    walk(&mut compose, deployed, &mask_secrets(deployed), "", false, &mut kept);
    Restored { compose, kept }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The name of a `NAME=value` list entry.
fn entry_name(v: &Value) -> Option<&str> {
    v.as_str().and_then(|s| s.split_once('=')).map(|(name, _)| name)
}

fn note(kept: &mut Vec<String>, label: String) {
    if !kept.contains(&label) {
        kept.push(label);
    }
}

/// Restore within `new`; `old` and `masked` are the deployed value and its masked form at the same place. `env`:
/// `new` is an `environment` block, whose entries are labelled by variable name.
fn walk(new: &mut Value, old: &Value, masked: &Value, path: &str, env: bool, kept: &mut Vec<String>) {
    match new {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if let (Some(o), Some(m)) = (old.get(key), masked.get(key)) {
                    let label = if env { key.clone() } else { child(path, key) };
                    walk(value, o, m, &label, key == "environment" && !env, kept);
                }
            }
        }
        Value::Array(items) => {
            let (Some(olds), Some(maskeds)) = (old.as_array(), masked.as_array()) else { return };
            for (i, item) in items.iter_mut().enumerate() {
                // In an environment list, the deployed entry of the same name (masking keeps the list's order).
                let at = match entry_name(item).filter(|_| env) {
                    Some(name) => olds.iter().position(|o| entry_name(o) == Some(name)),
                    None => Some(i),
                };
                let Some(at) = at.filter(|&at| at < olds.len() && at < maskeds.len()) else { continue };
                let label = match entry_name(item).filter(|_| env) {
                    Some(name) => name.to_string(),
                    None => format!("{path}[{i}]"),
                };
                walk(item, &olds[at], &maskeds[at], &label, false, kept);
            }
        }
        leaf => {
            if *leaf != *old && *leaf == *masked {
                *leaf = old.clone();
                note(kept, path.to_string());
            }
        }
    }
}

/// The places in `compose` where the mask stands in a secret position: refusing these is what keeps the mask off
/// the NAS. A position is secret when masking would hide a value there: each string carrying the mask is probed
/// with a stand-in value, and [`mask_secrets`] tells whether it hides that stand-in. A literal `***` where nothing
/// is secret (`TZ: "***"`) is left alone.
pub fn masks_left(compose: &Value) -> Vec<String> {
    let mut probe = compose.clone();
    if !replace_masks(&mut probe) {
        return Vec::new();
    }
    let masked = mask_secrets(&probe);
    let mut found = Vec::new();
    compare(compose, &probe, &masked, "", false, &mut found);
    found
}

/// Stand-in for the mask in a probe: shaped like a credential so any secret detector masks it.
const PROBE: &str = "probe-Secret-0123456789";

/// Replace the mask in every string of `v` by [`PROBE`]; whether there was any.
fn replace_masks(v: &mut Value) -> bool {
    match v {
        Value::String(s) if s.contains(MASK) => {
            *s = s.replace(MASK, PROBE);
            true
        }
        Value::Object(map) => map.values_mut().fold(false, |any, x| replace_masks(x) | any),
        Value::Array(items) => items.iter_mut().fold(false, |any, x| replace_masks(x) | any),
        _ => false,
    }
}

fn compare(original: &Value, probe: &Value, masked: &Value, path: &str, env: bool, found: &mut Vec<String>) {
    match (original, probe, masked) {
        (Value::Object(o), Value::Object(p), Value::Object(m)) => {
            for (key, value) in o {
                if let (Some(pv), Some(mv)) = (p.get(key), m.get(key)) {
                    let label = if env { key.clone() } else { child(path, key) };
                    compare(value, pv, mv, &label, key == "environment" && !env, found);
                }
            }
        }
        (Value::Array(o), Value::Array(p), Value::Array(m)) => {
            for (i, ((value, pv), mv)) in o.iter().zip(p).zip(m).enumerate() {
                let label = match entry_name(value).filter(|_| env) {
                    Some(name) => name.to_string(),
                    None => format!("{path}[{i}]"),
                };
                compare(value, pv, mv, &label, false, found);
            }
        }
        (Value::String(s), _, _) if s.contains(MASK) && probe != masked => note(found, path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployed() -> Value {
        json!({"services": {
            "db": {"image": "postgres:16", "environment": {"POSTGRES_PASSWORD": "hunter2", "TZ": "UTC", "PIN": 1234}},
            "web": {"image": "nginx:1", "environment": ["API_KEY=k3y", "TZ=UTC"]},
        }})
    }

    #[test]
    fn masked_values_are_restored_by_name_and_nothing_else() {
        let mut sent = mask_secrets(&deployed());
        sent["services"]["web"]["image"] = json!("nginx:2");
        // Reordered and extended list: matched by name, not index.
        sent["services"]["web"]["environment"] = json!(["NEW=1", "TZ=UTC", "API_KEY=***"]);
        let r = restore(&sent, &deployed());
        assert_eq!(r.compose["services"]["db"]["environment"]["POSTGRES_PASSWORD"], "hunter2");
        assert_eq!(r.compose["services"]["web"]["environment"], json!(["NEW=1", "TZ=UTC", "API_KEY=k3y"]));
        assert_eq!(r.compose["services"]["web"]["image"], "nginx:2");
        assert_eq!(r.kept, ["POSTGRES_PASSWORD", "API_KEY"]);
        assert!(masks_left(&r.compose).is_empty());
    }

    #[test]
    fn a_new_real_value_is_not_touched() {
        let mut sent = deployed();
        sent["services"]["db"]["environment"]["POSTGRES_PASSWORD"] = json!("changed");
        let r = restore(&sent, &deployed());
        assert_eq!(r.compose, sent);
        assert!(r.kept.is_empty());
    }

    #[test]
    fn masks_in_secret_positions_are_found_and_literal_ones_are_not() {
        let doc = json!({"services": {"a": {
            "environment": {"NEW_SECRET": "***", "TZ": "***"},
            "command": ["echo", "***"],
        }, "b": {"environment": ["REDIS_PASS=***", "NOTE=***"]}}});
        assert_eq!(masks_left(&doc), ["NEW_SECRET", "REDIS_PASS"]);
        assert!(masks_left(&deployed()).is_empty());
    }
}

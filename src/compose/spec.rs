//! What real Compose refuses before it runs anything (`docker compose config`, which TrueNAS 25.10.1+ runs on every
//! custom app it is given): the compose-spec JSON Schema (vendored from compose-go, the loader of Compose v2, in
//! fixtures/compose-spec/ with its license), references to networks, secrets, configs and services that the file
//! does not define, and dependency cycles. Judged on the interpolated document, as Compose judges it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::Value as Json;
use serde_yaml::{Mapping, Value};

use super::interpolate::key_text;
use super::{rules, Finding};

/// The compose-spec schema of compose-go v2.9.1 (the loader of Docker Compose v2.40).
const SCHEMA_TEXT: &str = include_str!("../../fixtures/compose-spec/compose-spec.json");

fn schema() -> &'static Json {
    static SCHEMA: OnceLock<Json> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(SCHEMA_TEXT).expect("the vendored compose-spec schema is JSON"))
}

/// Findings of the compose-spec schema (`compose-schema`), at most [`crate::jsonschema::MAX_ERRORS`].
pub fn schema_findings(doc: &Value) -> Vec<Finding> {
    // A document JSON cannot hold (a null or collection key) was already reported by the model or the renderer.
    let Ok(json) = serde_json::to_value(doc) else { return Vec::new() };
    let Err(errors) = crate::jsonschema::validate(schema(), &json) else { return Vec::new() };
    errors
        .into_iter()
        .map(|e| {
            let service = e.path.strip_prefix("services.").map(|p| p.split(['.', '[']).next().unwrap_or(p));
            rules::COMPOSE_SCHEMA.at(
                service,
                e.path.clone(),
                format!("{e}: the Compose specification does not allow this, and Compose refuses the document"),
                "write the field as the Compose specification defines it (see compose-spec.io), or remove it",
            )
        })
        .collect()
}

/// Names a top-level section (`networks`, `secrets`, …) defines.
fn defined(root: &Mapping, section: &str) -> BTreeSet<String> {
    root.get(section).and_then(Value::as_mapping).map(|m| m.keys().map(key_text).collect()).unwrap_or_default()
}

/// Names a service field refers to: list entries (strings, or mappings with `source`) or mapping keys.
fn names_in(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let name =
                    item.as_str().map(str::to_string).or_else(|| item.get("source")?.as_str().map(str::to_string))?;
                Some((name, format!("[{i}]")))
            })
            .collect(),
        Some(Value::Mapping(m)) => m.keys().map(key_text).map(|k| (k.clone(), format!(".{k}"))).collect(),
        _ => Vec::new(),
    }
}

/// The services a service depends on, as Compose counts them: `depends_on`, `links`, `volumes_from` and
/// `network_mode: service:<x>`, with the path of each.
fn dependencies(service: &Mapping) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match service.get("depends_on") {
        Some(Value::Sequence(items)) => out.extend(
            items.iter().enumerate().filter_map(|(i, d)| Some((d.as_str()?.to_string(), format!("depends_on[{i}]")))),
        ),
        // `required: false` only lets `up` go on without the service; `config` still refuses an undefined one.
        Some(Value::Mapping(m)) => out.extend(m.keys().map(|k| (key_text(k), format!("depends_on.{}", key_text(k))))),
        _ => {}
    }
    if let Some(Value::Sequence(links)) = service.get("links") {
        for (i, link) in links.iter().enumerate() {
            if let Some(l) = link.as_str() {
                out.push((l.split(':').next().unwrap_or(l).to_string(), format!("links[{i}]")));
            }
        }
    }
    if let Some(Value::Sequence(from)) = service.get("volumes_from") {
        for (i, f) in from.iter().enumerate() {
            // `container:<x>` names a container, not a service (judged by `joins-other-container`).
            if let Some(f) = f.as_str().filter(|f| !f.starts_with("container:")) {
                let name = f.strip_prefix("service:").unwrap_or(f);
                out.push((name.split(':').next().unwrap_or(name).to_string(), format!("volumes_from[{i}]")));
            }
        }
    }
    if let Some(target) = service.get("network_mode").and_then(Value::as_str).and_then(|m| m.strip_prefix("service:")) {
        out.push((target.to_string(), "network_mode".into()));
    }
    out
}

/// `undefined-reference` findings (networks, secrets, configs and services a service names but the file does not
/// define; `volumes_from` of an unknown name is `joins-other-container`'s) and `dependency-cycle` findings.
pub fn reference_findings(root: &Mapping) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(services) = root.get("services").and_then(Value::as_mapping) else { return findings };
    let names: BTreeSet<String> = services.keys().map(key_text).collect();
    let mut networks = defined(root, "networks");
    networks.insert("default".into());
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, service) in services {
        let name = key_text(name);
        let Some(service) = service.as_mapping() else { continue };
        for (section, what) in [("networks", "network"), ("secrets", "secret"), ("configs", "config")] {
            let known = if section == "networks" { networks.clone() } else { defined(root, section) };
            for (target, at) in names_in(service.get(section)) {
                if !known.contains(&target) {
                    findings.push(rules::UNDEFINED_REFERENCE.at(
                        Some(&name),
                        format!("services.{name}.{section}{at}"),
                        format!("service \"{name}\" refers to undefined {what} {target}: Compose refuses the document"),
                        format!("declare `{target}` under the top-level `{section}:`, or remove the reference"),
                    ));
                }
            }
        }
        for (target, at) in dependencies(service) {
            if names.contains(&target) {
                graph.entry(name.clone()).or_default().push(target);
            } else if !at.starts_with("volumes_from") {
                findings.push(rules::UNDEFINED_REFERENCE.at(
                    Some(&name),
                    format!("services.{name}.{at}"),
                    format!(
                        "service \"{name}\" depends on undefined service \"{target}\": Compose refuses the document"
                    ),
                    format!("define the service `{target}` in this file, or remove the reference"),
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        let first = cycle[0].clone();
        findings.push(rules::DEPENDENCY_CYCLE.at(
            Some(&first),
            format!("services.{first}"),
            format!("dependency cycle detected: {}: Compose cannot order these services", cycle.join(" -> ")),
            "remove one of the dependencies (depends_on, links, volumes_from, network_mode: service:) in the cycle",
        ));
    }
    findings
}

/// One cycle of `graph` (first node repeated at the end), by depth-first search with colours.
fn find_cycle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, Vec<String>>,
        done: &mut BTreeSet<&'a str>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

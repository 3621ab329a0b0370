//! A typed view of a parsed compose document: just what the rules judge, each item with its document path.
//!
//! Reading is lenient and judging is conservative: a value in an unexpected but understandable shape (a single
//! string where Compose wants a list, a boolean spelled `"yes"`) is read as meant; one that cannot be understood
//! becomes a `field-invalid` finding (Compose would refuse it too) instead of being skipped silently.

use serde_yaml::{Mapping, Value};

use super::interpolate::key_text;
use super::ports::{parse_port, PortBinding};
use super::rules;
use super::volumes::{parse_mount, Mount};
use super::Finding;

/// A value and where it sits in the document (`services.web.volumes[2]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub path: String,
}

/// One environment variable of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvVar {
    pub name: String,
    /// `None` when the value is taken from the environment of `docker compose` (`- NAME` or `NAME: null`).
    pub value: Option<String>,
    pub path: String,
}

/// `extends:` of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct Extends {
    pub service: Option<String>,
    pub file: Option<Located<String>>,
}

/// One service, as far as the rules care.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    pub name: String,
    /// `services.<name>`
    pub path: String,
    pub image: Option<Located<String>>,
    pub build: Option<String>,
    pub extends: Option<Extends>,
    pub privileged: Option<Located<bool>>,
    pub cap_add: Vec<Located<String>>,
    /// `(key, value)` of `pid`, `ipc`, `uts`, `userns_mode`, `cgroup`.
    pub namespaces: Vec<Located<(&'static str, String)>>,
    pub network_mode: Option<Located<String>>,
    /// `volumes_from:` entries as written (`service[:mode]` or `container:name[:mode]`).
    pub volumes_from: Vec<Located<String>>,
    pub ports: Vec<Located<PortBinding>>,
    pub mounts: Vec<Located<Mount>>,
    /// Host side of each `devices:` entry (a path or a CDI name).
    pub devices: Vec<Located<String>>,
    pub device_cgroup_rules: Vec<Located<String>>,
    pub security_opt: Vec<Located<String>>,
    pub user: Option<Located<String>>,
    pub environment: Vec<EnvVar>,
    pub env_files: Vec<Located<String>>,
    /// A memory or CPU limit in any of its spellings.
    pub has_limits: bool,
    pub container_name: Option<Located<String>>,
}

/// The whole document, as far as the rules care.
#[derive(Clone, Debug, Default)]
pub struct Project {
    pub name: Option<Located<String>>,
    pub services: Vec<Service>,
    /// Top-level `volumes:` entries: name, definition and path.
    pub volumes: Vec<(String, Value, String)>,
    /// Top-level `networks:` entries: name, definition and path.
    pub networks: Vec<(String, Value, String)>,
    /// `file:` of top-level `configs:` and `secrets:`.
    pub files: Vec<Located<String>>,
    /// Top-level `include:`: the paths of the files it pulls in (empty when none could be read from it).
    pub include: Option<Located<Vec<String>>>,
}

/// A scalar as text (strings as they are, numbers and booleans printed); `None` for null and collections.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

/// A boolean as a container engine would read it, erring towards `true`: `true`, `yes`, `on`, `y`, `1` in any
/// case are true, `false`, `no`, `off`, `n`, `0`, empty and null are false, and anything else (which Compose would
/// reject) counts as true, so a security flag is never waved through on a spelling we did not foresee.
pub fn flag(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !matches!(s.trim().to_ascii_lowercase().as_str(), "false" | "no" | "off" | "n" | "0" | ""),
        Value::Tagged(t) => flag(&t.value),
        _ => true,
    }
}

/// The files an `include:` names: each entry is a path, or a mapping whose `path` is a path or a list of them.
fn include_paths(include: &Value) -> Vec<String> {
    let entries = match include {
        Value::Sequence(entries) => entries.as_slice(),
        other => std::slice::from_ref(other),
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry.as_mapping().and_then(|m| m.get("path")).unwrap_or(entry) {
            Value::Sequence(list) => paths.extend(list.iter().filter_map(scalar_text)),
            one => paths.extend(scalar_text(one)),
        }
    }
    paths
}

/// Read the typed view out of a document that is known to be a mapping.
pub fn read_project(root: &Mapping, findings: &mut Vec<Finding>) -> Project {
    let mut project = Project::default();
    if let Some(name) = root.get("name") {
        project.name = Some(Located { value: scalar_text(name).unwrap_or_default(), path: "name".into() });
    }
    if let Some(include) = root.get("include") {
        project.include = Some(Located { value: include_paths(include), path: "include".into() });
    }
    for section in ["volumes", "networks"] {
        if let Some(entries) = root.get(section) {
            let Some(entries) = entries.as_mapping() else {
                if !entries.is_null() {
                    findings.push(invalid(None, section, format!("top-level `{section}` must be a mapping")));
                }
                continue;
            };
            for (k, v) in entries {
                let name = key_text(k);
                let entry = (name.clone(), v.clone(), format!("{section}.{name}"));
                if section == "volumes" {
                    project.volumes.push(entry);
                } else {
                    project.networks.push(entry);
                }
            }
        }
    }
    for section in ["configs", "secrets"] {
        if let Some(entries) = root.get(section).and_then(Value::as_mapping) {
            for (k, v) in entries {
                if let Some(file) = v.get("file").and_then(scalar_text) {
                    project.files.push(Located { value: file, path: format!("{section}.{}.file", key_text(k)) });
                }
            }
        }
    }
    match root.get("services") {
        None | Some(Value::Null) => findings.push(rules::NO_SERVICES.at(
            None,
            "services",
            "the document has no `services:`",
            "add a `services:` mapping with at least one service",
        )),
        Some(Value::Mapping(services)) if services.is_empty() => {
            findings.push(rules::NO_SERVICES.at(None, "services", "`services:` is empty", "add at least one service"))
        }
        Some(Value::Mapping(services)) => {
            for (k, v) in services {
                let name = key_text(k);
                let path = format!("services.{name}");
                match v {
                    Value::Mapping(m) => project.services.push(read_service(&name, &path, m, findings)),
                    _ => findings.push(rules::SERVICE_NOT_A_MAPPING.at(
                        Some(&name),
                        &path,
                        format!("service `{name}` is not a mapping"),
                        "write the service as a mapping with at least `image:`",
                    )),
                }
            }
        }
        Some(_) => findings.push(rules::NO_SERVICES.at(
            None,
            "services",
            "`services:` must be a mapping of service names to services",
            "write `services:` as a mapping, e.g. `services: {web: {image: nginx}}`",
        )),
    }
    project
}

fn invalid(service: Option<&str>, path: &str, message: String) -> Finding {
    rules::FIELD_INVALID.at(service, path, message, "write the field as the Compose specification defines it")
}

/// The items of a field that Compose wants as a list, accepting a lone scalar as a one-item list.
fn items(v: &Value) -> Vec<(Option<usize>, &Value)> {
    match v {
        Value::Sequence(items) => items.iter().enumerate().map(|(i, v)| (Some(i), v)).collect(),
        Value::Null => Vec::new(),
        other => vec![(None, other)],
    }
}

fn item_path(path: &str, index: Option<usize>) -> String {
    match index {
        Some(i) => format!("{path}[{i}]"),
        None => path.to_string(),
    }
}

fn read_service(name: &str, path: &str, m: &Mapping, findings: &mut Vec<Finding>) -> Service {
    let mut s = Service { name: name.to_string(), path: path.to_string(), ..Service::default() };
    let svc = Some(name);
    let field = |key: &str| format!("{path}.{key}");
    let text_at = |key: &str| m.get(key).and_then(scalar_text).map(|value| Located { value, path: field(key) });

    s.image = text_at("image");
    if m.contains_key("build") {
        s.build = Some(field("build"));
    }
    if let Some(ext) = m.get("extends") {
        s.extends = Some(match ext {
            Value::Mapping(e) => Extends {
                service: e.get("service").and_then(scalar_text),
                file: e
                    .get("file")
                    .and_then(scalar_text)
                    .map(|value| Located { value, path: format!("{path}.extends.file") }),
            },
            other => Extends { service: scalar_text(other), file: None },
        });
    }
    if let Some(v) = m.get("privileged") {
        s.privileged = Some(Located { value: flag(v), path: field("privileged") });
    }
    let list_of_text = |key: &str, findings: &mut Vec<Finding>| -> Vec<Located<String>> {
        let mut out = Vec::new();
        if let Some(v) = m.get(key) {
            for (i, item) in items(v) {
                let p = item_path(&field(key), i);
                match scalar_text(item) {
                    Some(value) => out.push(Located { value, path: p }),
                    None => findings.push(invalid(svc, &p, format!("`{key}` entries must be strings"))),
                }
            }
        }
        out
    };
    s.cap_add = list_of_text("cap_add", findings);
    s.security_opt = list_of_text("security_opt", findings);
    s.device_cgroup_rules = list_of_text("device_cgroup_rules", findings);
    s.volumes_from = list_of_text("volumes_from", findings);
    for key in ["pid", "ipc", "uts", "userns_mode", "cgroup"] {
        if let Some(value) = m.get(key).and_then(scalar_text) {
            s.namespaces.push(Located { value: (key, value), path: field(key) });
        }
    }
    s.network_mode = text_at("network_mode");
    s.user = text_at("user");
    s.container_name = text_at("container_name");

    if let Some(ports) = m.get("ports") {
        for (i, entry) in items(ports) {
            let p = item_path(&field("ports"), i);
            match parse_port(entry) {
                Ok(binding) => s.ports.push(Located { value: binding, path: p }),
                Err(why) => findings.push(invalid(svc, &p, format!("cannot read port: {why}"))),
            }
        }
    }
    if let Some(volumes) = m.get("volumes") {
        for (i, entry) in items(volumes) {
            let p = item_path(&field("volumes"), i);
            match parse_mount(entry) {
                Ok(mount) => s.mounts.push(Located { value: mount, path: p }),
                Err(why) => findings.push(invalid(svc, &p, format!("cannot read volume: {why}"))),
            }
        }
    }
    if let Some(devices) = m.get("devices") {
        for (i, entry) in items(devices) {
            let p = item_path(&field("devices"), i);
            let host = match entry {
                Value::Mapping(d) => d.get("source").and_then(scalar_text),
                other => scalar_text(other).map(|t| t.split(':').next().unwrap_or_default().to_string()),
            };
            match host {
                Some(value) if !value.is_empty() => s.devices.push(Located { value, path: p }),
                _ => findings.push(invalid(svc, &p, "a device needs a host path".to_string())),
            }
        }
    }
    if let Some(env) = m.get("environment") {
        read_environment(env, &field("environment"), svc, &mut s.environment, findings);
    }
    if let Some(env_file) = m.get("env_file") {
        for (i, entry) in items(env_file) {
            let p = item_path(&field("env_file"), i);
            let file = match entry {
                Value::Mapping(e) => e.get("path").and_then(scalar_text),
                other => scalar_text(other),
            };
            match file {
                Some(value) => s.env_files.push(Located { value, path: p }),
                None => findings.push(invalid(svc, &p, "an `env_file` entry needs a path".to_string())),
            }
        }
    }
    let limits = m.get("deploy").and_then(|d| d.get("resources")).and_then(|r| r.get("limits"));
    let limit_set = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
    s.has_limits = limit_set(limits.and_then(|l| l.get("memory")))
        || limit_set(limits.and_then(|l| l.get("cpus")))
        || limit_set(m.get("mem_limit"))
        || limit_set(m.get("cpus"))
        || limit_set(m.get("cpu_quota"));
    s
}

fn read_environment(
    env: &Value,
    path: &str,
    service: Option<&str>,
    out: &mut Vec<EnvVar>,
    findings: &mut Vec<Finding>,
) {
    match env {
        Value::Mapping(vars) => {
            for (k, v) in vars {
                let name = key_text(k);
                let value = match v {
                    Value::Null => None,
                    other => match scalar_text(other) {
                        Some(t) => Some(t),
                        None => {
                            findings.push(invalid(
                                service,
                                &format!("{path}.{name}"),
                                format!("environment value of `{name}` must be a scalar"),
                            ));
                            continue;
                        }
                    },
                };
                out.push(EnvVar { name: name.clone(), value, path: format!("{path}.{name}") });
            }
        }
        Value::Sequence(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match scalar_text(entry) {
                    Some(text) => {
                        let (name, value) = match text.split_once('=') {
                            Some((n, v)) => (n.to_string(), Some(v.to_string())),
                            None => (text, None),
                        };
                        out.push(EnvVar { name, value, path: p });
                    }
                    None => findings.push(invalid(service, &p, "environment entries must be NAME=value".into())),
                }
            }
        }
        Value::Null => {}
        _ => findings.push(invalid(service, path, "`environment` must be a mapping or a list".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_every_spelling() {
        let truthy = ["true", "True", "yes", "'yes'", "on", "ON", "y", "1", "'true'", "maybe", "[1]"];
        let falsy = ["false", "no", "off", "'0'", "0", "null", "''", "N"];
        for t in truthy {
            assert!(flag(&serde_yaml::from_str(t).unwrap()), "{t}");
        }
        for f in falsy {
            assert!(!flag(&serde_yaml::from_str(f).unwrap()), "{f}");
        }
    }

    #[test]
    fn environment_as_map_or_list() {
        let read = |y: &str| {
            let mut out = Vec::new();
            let mut findings = Vec::new();
            read_environment(&serde_yaml::from_str(y).unwrap(), "e", None, &mut out, &mut findings);
            (out.into_iter().map(|e| (e.name, e.value)).collect::<Vec<_>>(), findings.len())
        };
        let want = vec![("A".to_string(), Some("1".to_string())), ("B".to_string(), None)];
        assert_eq!(read("{A: 1, B: null}"), (want.clone(), 0));
        assert_eq!(read("[A=1, B]"), (want, 0));
        assert_eq!(read("[A=x=y]").0, vec![("A".to_string(), Some("x=y".to_string()))]);
        assert_eq!(read("{A: [1]}").1, 1);
        assert_eq!(read("5").1, 1);
    }
}

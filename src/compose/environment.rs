//! What Compose takes from its own environment, decided before anything is sent: `COMPOSE_PROJECT_NAME` (Compose
//! always sets it; TrueNAS runs every custom app as project `ix-<app>`) and bare `environment:` entries (`[KEY]`,
//! `KEY:` with no value), which Compose fills from the environment it runs in. On TrueNAS that is the middleware's,
//! which has none of the user's variables, so such an entry is filled from the caller's `env` here, or reported:
//! the container would not get the variable.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::interpolate::key_text;
use super::{rules, Finding, Substitution};

/// The app name assumed for `COMPOSE_PROJECT_NAME` when the caller does not say which app the compose is for.
pub const ASSUMED_APP: &str = "app";

/// The variable Compose sets to the project name.
pub const PROJECT_NAME_VAR: &str = "COMPOSE_PROJECT_NAME";

/// `env` with `COMPOSE_PROJECT_NAME` set as TrueNAS sets it (`ix-<app>`; Compose's `-p` wins over any value the
/// caller passes).
pub fn with_project_name(env: &BTreeMap<String, String>, app_name: Option<&str>) -> BTreeMap<String, String> {
    let mut env = env.clone();
    env.insert(PROJECT_NAME_VAR.into(), format!("ix-{}", app_name.unwrap_or(ASSUMED_APP)));
    env
}

/// A `project-name-assumed` finding when the document used `COMPOSE_PROJECT_NAME` and the app is unknown.
pub fn assumed_project_name(substitutions: &[Substitution], app_name: Option<&str>) -> Option<Finding> {
    if app_name.is_some() {
        return None;
    }
    let used = substitutions.iter().find(|s| s.variable == PROJECT_NAME_VAR)?;
    Some(rules::PROJECT_NAME_ASSUMED.at(
        None,
        used.path.clone(),
        format!(
            "COMPOSE_PROJECT_NAME is `ix-<app name>` on TrueNAS; the app name is not known here, so \
             `ix-{ASSUMED_APP}` was assumed"
        ),
        "give the app name (app_name) so that the real project name is used",
    ))
}

/// Fill bare `environment:` entries of every service from `env` (recording the substitution), or report each one
/// that stays empty.
pub fn fill_bare_entries(
    root: &mut Mapping,
    env: &BTreeMap<String, String>,
    substitutions: &mut Vec<Substitution>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(Value::Mapping(services)) = root.get_mut("services") else { return findings };
    for (name, service) in services.iter_mut() {
        let name = key_text(name);
        let Some(environment) = service.as_mapping_mut().and_then(|s| s.get_mut("environment")) else { continue };
        let mut fill = |key: &str, path: String| -> Option<String> {
            match env.get(key) {
                Some(value) => {
                    substitutions.push(Substitution { variable: key.to_string(), source: "env", path });
                    Some(value.clone())
                }
                None => {
                    findings.push(rules::ENVIRONMENT_UNSET.at(
                        Some(&name),
                        path,
                        format!(
                            "`{key}` has no value: Compose takes it from the environment it runs in, and on TrueNAS \
                             that has none of your variables, so the container will not get {key}"
                        ),
                        format!("pass {key} in the env argument, or write `{key}=value`"),
                    ));
                    None
                }
            }
        };
        match environment {
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let Some(key) = item.as_str().filter(|k| !k.contains('=')).map(str::to_string) else { continue };
                    if let Some(value) = fill(&key, format!("services.{name}.environment[{i}]")) {
                        *item = Value::String(format!("{key}={value}"));
                    }
                }
            }
            Value::Mapping(vars) => {
                for (key, value) in vars.iter_mut() {
                    if value.is_null() {
                        let key = key_text(key);
                        if let Some(v) = fill(&key, format!("services.{name}.environment.{key}")) {
                            *value = Value::String(v);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    findings
}

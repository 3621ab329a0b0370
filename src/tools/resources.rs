//! MCP resources: the app list, each app's deployed compose and recent logs, and completion of app names.

use serde_json::Value;

use super::status::{app_list, deployed_compose_yaml};
use super::{logs, Tools};
use crate::mcp::tool::{CancelToken, CatalogError, ResourceContents, ResourceDef, ResourceTemplateDef};

pub const APPS_URI: &str = "truenas://apps";
const COMPOSE_TEMPLATE: &str = "truenas://apps/{name}/compose";
const LOGS_TEMPLATE: &str = "truenas://apps/{name}/logs";
/// Lines per container in the logs resource.
const RESOURCE_LOG_LINES: u32 = 100;

pub fn resources() -> Vec<ResourceDef> {
    vec![ResourceDef {
        uri: APPS_URI.into(),
        name: "apps".into(),
        title: "TrueNAS apps".into(),
        description: "Every app on the NAS (Custom Apps and catalogue apps) with state, containers, ports and \
                      portals, as JSON."
            .into(),
        mime_type: "application/json".into(),
    }]
}

pub fn templates() -> Vec<ResourceTemplateDef> {
    vec![
        ResourceTemplateDef {
            uri_template: COMPOSE_TEMPLATE.into(),
            name: "app-compose".into(),
            title: "Deployed compose of an app".into(),
            description: "The Docker Compose file TrueNAS stores for a Custom App, as YAML, with secret-looking \
                          environment values masked."
                .into(),
            mime_type: "application/yaml".into(),
        },
        ResourceTemplateDef {
            uri_template: LOGS_TEMPLATE.into(),
            name: "app-logs".into(),
            title: "Recent logs of an app".into(),
            description: format!(
                "The last {RESOURCE_LOG_LINES} log lines of each container of a running, deploying or crashed app."
            ),
            mime_type: "text/plain".into(),
        },
    ]
}

/// The resource a URI names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Apps,
    Compose(&'a str),
    Logs(&'a str),
}

fn parse(uri: &str) -> Option<Target<'_>> {
    if uri == APPS_URI {
        return Some(Target::Apps);
    }
    let rest = uri.strip_prefix("truenas://apps/")?;
    let (name, what) = rest.split_once('/')?;
    if crate::compose::app_name_error(name).is_some() {
        return None;
    }
    match what {
        "compose" => Some(Target::Compose(name)),
        "logs" => Some(Target::Logs(name)),
        _ => None,
    }
}

fn internal(e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Internal(e.to_string())
}

pub fn read(tools: &Tools, uri: &str) -> Result<Vec<ResourceContents>, CatalogError> {
    let target = parse(uri).ok_or_else(|| CatalogError::ResourceNotFound(uri.to_string()))?;
    let apps = tools.apps().map_err(|e| internal(format!("cannot reach TrueNAS: {e}")))?;
    let (mime, text) = match target {
        Target::Apps => {
            let list = app_list(&apps, "all", true).map_err(internal)?;
            ("application/json", serde_json::to_string_pretty(&list).map_err(internal)?)
        }
        Target::Compose(name) => {
            match apps.get(name).map_err(internal)? {
                Some(a) if a.custom_app => {}
                _ => return Err(CatalogError::ResourceNotFound(uri.to_string())),
            }
            ("application/yaml", deployed_compose_yaml(&apps, name, false).map_err(internal)?)
        }
        Target::Logs(name) => {
            let app =
                apps.get(name).map_err(internal)?.ok_or_else(|| CatalogError::ResourceNotFound(uri.to_string()))?;
            let text = if app.app_state().has_logs() {
                let tails: Vec<logs::ContainerLog> = app
                    .workloads()
                    .container_details
                    .iter()
                    .map(|c| {
                        logs::container_tail(&apps, name, c, RESOURCE_LOG_LINES, tools.clock(), &CancelToken::new())
                    })
                    .collect();
                format!("{name} is {}{}", app.state, logs::render(&tails))
            } else {
                format!("{name} is {}: a stopped app has no containers and therefore no logs", app.state)
            };
            ("text/plain", text)
        }
    };
    Ok(vec![ResourceContents { uri: uri.to_string(), mime_type: mime.to_string(), text }])
}

/// Completion of `{name}` in the resource templates (and `app_name` of the prompt) from the live app list.
pub fn complete(tools: &Tools, reference: &Value, argument: &str, value: &str) -> Vec<String> {
    let wants_names = match reference.get("type").and_then(Value::as_str) {
        Some("ref/resource") => {
            let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
            argument == "name" && (uri == COMPOSE_TEMPLATE || uri == LOGS_TEMPLATE)
        }
        _ => false,
    };
    if !wants_names {
        return Vec::new();
    }
    let Ok(apps) = tools.apps() else { return Vec::new() };
    let Ok(all) = apps.query_all() else { return Vec::new() };
    let mut names: Vec<String> = all.into_iter().map(|a| a.name).filter(|n| n.starts_with(value)).collect();
    names.sort();
    names.truncate(100);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse() {
        let cases = [
            ("truenas://apps", Some(Target::Apps)),
            ("truenas://apps/web/compose", Some(Target::Compose("web"))),
            ("truenas://apps/my-db/logs", Some(Target::Logs("my-db"))),
            ("truenas://apps/web/secrets", None),
            ("truenas://apps/Web/logs", None),
            ("truenas://apps/../logs", None),
            ("file:///etc/passwd", None),
        ];
        for (uri, want) in cases {
            assert_eq!(parse(uri), want, "{uri}");
        }
    }
}

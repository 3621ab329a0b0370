//! The table of tools: name, title, description, input and output schema, annotations, handler.
//!
//! Descriptions are written for a model that reads them on every turn: what the tool does and when to use it, in as
//! few words as that takes, keeping the guidance that prevents mistakes. Rules shared by several tools (the app-name
//! rule, `wait`, host paths, `${VAR}`) are stated once in the server's instructions (`prompt.rs`); a schema says
//! nothing twice (no "Default: X" next to `default`). The input schema published here is the one that validates the
//! arguments (one source of truth). Output schemas stay here, unpublished (ARCHITECTURE.md says why): tests check
//! every `structuredContent` against them. `benches/catalogue.rs` measures the bytes; a test keeps the budgets.
//! Over our usual ~700 lines on purpose: it is the one table of every tool (one place to read what a model is
//! offered), plus its tests.

use serde_json::{json, Value};

pub use super::args::Handler;
use super::{connection, deploy, images, lifecycle, logs, status, undo};
use crate::mcp::tool::{Annotations, ToolDef};

/// One tool of the catalogue.
pub struct ToolSpec {
    pub def: ToolDef,
    /// The shape of `structuredContent`; not published in `tools/list` (see the module header).
    pub output_schema: Value,
    /// Changes the NAS: hidden in read-only mode, gated by writable apps, audited.
    pub writes: bool,
    pub handler: Handler,
}

/// TrueNAS's own app-name rule (`app.create`'s model); the gate enforces it (`compose::app_name_error`, checked
/// against this pattern in a test) and the instructions state it in words once.
#[cfg(test)]
const APP_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// An app name argument. The schema only bounds its length (checked first, so a hostile name costs nothing); the
/// rule itself is enforced by the gate with an answer in words, and stated once in the instructions, instead of
/// a regex repeated in every tool (19 × 40 bytes a model reads on every turn).
fn app_name() -> Value {
    json!({"type": "string", "maxLength": 40})
}

fn optional_app_name(description: &str) -> Value {
    let mut schema = app_name();
    schema["description"] = Value::from(description);
    schema
}

fn snapshot() -> Value {
    flag("Record a restore point first.", true)
}

fn compose_yaml() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 1_000_000,
        "description": "Docker Compose YAML.",
    })
}

fn env() -> Value {
    json!({
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 65536},
        "maxProperties": 500,
        "default": {},
        "description": "${VAR} values (like .env).",
    })
}

fn flag(description: &str, default: bool) -> Value {
    json!({"type": "boolean", "default": default, "description": description})
}

/// Described once, in the instructions.
fn wait() -> Value {
    json!({"type": "boolean", "default": true})
}

/// The `nas` argument every tool takes when the server manages several NAS (`Fleet` adds it): which NAS, by name.
/// No description (the instructions say it once), so it costs the same few bytes per tool however many NAS there
/// are, and nothing at all with one NAS.
pub fn nas_argument() -> Value {
    json!({"type": "string", "maxLength": crate::config::fleet::NAME_MAX})
}

fn input(properties: Value, required: &[&str]) -> Value {
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn output(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

fn finding() -> Value {
    json!({
        "type": "object",
        "properties": {
            "rule": {"type": "string"},
            "severity": {"type": "string", "enum": ["info", "warning", "error"]},
            "service": nullable("string"),
            "path": {"type": "string"},
            "message": {"type": "string"},
            "fix": {"type": "string"},
        },
        "required": ["rule", "severity", "path", "message", "fix"],
    })
}

fn findings() -> Value {
    json!({"type": "array", "items": finding()})
}

fn substitutions() -> Value {
    json!({"type": "array", "items": {"type": "object", "properties": {
        "variable": {"type": "string"}, "source": {"type": "string"}, "path": {"type": "string"}},
        "required": ["variable", "source", "path"]}})
}

fn published_ports() -> Value {
    json!({"type": "array", "items": {"type": "object", "properties": {
        "service": {"type": "string"}, "host_ip": nullable("string"), "host_port": {"type": "integer"},
        "container_port": {"type": "integer"}, "protocol": {"type": "string"}},
        "required": ["service", "host_port", "container_port", "protocol"]}})
}

fn app_ports() -> Value {
    json!({"type": "array", "items": {"type": "object", "properties": {
        "host_port": {"type": "integer"}, "host_ip": nullable("string"), "container_port": {"type": "integer"},
        "protocol": nullable("string")}, "required": ["host_port", "container_port"]}})
}

fn containers() -> Value {
    json!({"type": "array", "items": {"type": "object", "properties": {
        "service": {"type": "string"}, "image": {"type": "string"}, "state": {"type": "string"},
        "id": {"type": "string"}}, "required": ["service", "image", "state"]}})
}

fn portals() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

fn log_tails() -> Value {
    json!({"type": "array", "items": {"type": "object", "properties": {
        "service": {"type": "string"},
        "container_id": {"type": "string"},
        "lines": {"type": "array", "items": {"type": "object", "properties": {
            "timestamp": nullable("string"), "line": {"type": "string"}}, "required": ["line"]}},
        "truncated": {"type": "boolean"},
        "error": nullable("string")},
        "required": ["service", "container_id", "lines"]}})
}

fn lifecycle_output() -> Value {
    output(
        json!({
            "app_name": {"type": "string"},
            "action": {"type": "string", "enum": ["start", "stop", "redeploy", "pull_images"]},
            "changed": {"type": "boolean", "description": "false when the app was already in the requested state"},
            "previous_state": {"type": "string"},
            "state": nullable("string"),
            "job_id": nullable("integer"),
            "waited": {"type": "boolean"},
            "images_updated": {"type": "array", "items": {"type": "string"}},
            "crash_logs": log_tails(),
            "restore_point": {"type": "object"},
            "message": {"type": "string"},
        }),
        &["app_name", "action", "changed", "previous_state", "message"],
    )
}

const READ: Annotations = Annotations { read_only: true, destructive: false, idempotent: true, open_world: false };

fn tool(
    name: &str,
    title: &str,
    description: &str,
    input_schema: Value,
    output_schema: Value,
    annotations: Annotations,
    handler: Handler,
) -> ToolSpec {
    ToolSpec {
        def: ToolDef {
            name: name.into(),
            title: title.into(),
            description: description.into(),
            input_schema,
            output_schema: None,
            annotations,
        },
        output_schema,
        writes: !annotations.read_only,
        handler,
    }
}

/// Every tool, in publication order.
pub fn specs() -> Vec<ToolSpec> {
    vec![
        tool(
            "test_connection",
            "Test the TrueNAS connection",
            "Log in to TrueNAS and report version, endpoint, login, latency and apps service, with fixes. Use it \
             when a tool cannot connect.",
            input(json!({}), &[]),
            output(
                json!({
                    "connected": {"type": "boolean"},
                    "version": {"type": "string"},
                    "endpoint": {"type": "string"},
                    "protocol": {"type": "string", "enum": ["jsonrpc", "legacy"]},
                    "auth_method": {"type": "string"},
                    "username": nullable("string"),
                    "round_trip_ms": {"type": "number"},
                    "docker": {"type": "object", "properties": {
                        "status": {"type": "string"}, "description": nullable("string"),
                        "pool": nullable("string"), "dataset": nullable("string")}},
                    "problems": {"type": "array", "items": {"type": "object", "properties": {
                        "problem": {"type": "string"}, "fix": {"type": "string"}},
                        "required": ["problem", "fix"]}},
                }),
                &["connected", "problems"],
            ),
            READ,
            Handler::typed(connection::test_connection),
        ),
        tool(
            "list_custom_apps",
            "List apps",
            "List Custom Apps: state, containers, ports, portals, image updates. Says when the apps service is down.",
            input(
                json!({
                    "status_filter": {"type": "string", "enum": ["all", "running", "stopped", "deploying", "crashed"],
                        "default": "all",
                        "description": "Only apps in this state."},
                    "include_catalog_apps": flag("Also list catalogue apps.", false),
                }),
                &[],
            ),
            output(
                json!({
                    // Usual values are left out (see `status::summary`): the flags appear only when they differ.
                    "apps": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "state": {"type": "string"}, "containers": {"type": "integer"},
                        "ports": app_ports(), "portals": portals(), "custom_app": {"const": false},
                        "image_updates_available": {"const": true}, "action_required": {"const": true},
                        "nas": {"type": "string"}},
                        "required": ["name", "state", "containers"], "additionalProperties": false}},
                    "count": {"type": "integer"},
                    // `nas: "*"`: the NAS that could not be listed, each with why.
                    "unreachable": {"type": "array", "items": {"type": "object", "properties": {
                        "nas": {"type": "string"}, "error": {"type": "string"}}, "required": ["nas", "error"]}},
                }),
                &["apps", "count"],
            ),
            READ,
            Handler::typed(status::list_custom_apps),
        ),
        tool(
            "get_custom_app_status",
            "Get an app's status",
            "One app in detail: state, containers, ports, mounts, portals, notes; for a CRASHED app its log \
             tail and next step.",
            input(json!({"app_name": app_name()}), &["app_name"]),
            output(
                json!({
                    "name": {"type": "string"},
                    "state": {"type": "string"},
                    "custom_app": {"type": "boolean"},
                    "containers": containers(),
                    "ports": app_ports(),
                    "mounts": {"type": "array", "items": {"type": "object", "properties": {
                        "source": nullable("string"), "destination": nullable("string"),
                        "mode": nullable("string"), "type": nullable("string")}}},
                    "portals": portals(),
                    "notes": nullable("string"),
                    "image_updates_available": {"type": "boolean"},
                    "crash_logs": log_tails(),
                    "hint": nullable("string"),
                }),
                &["name", "state", "custom_app", "containers", "ports", "mounts", "portals"],
            ),
            READ,
            Handler::typed(status::get_custom_app_status),
        ),
        tool(
            "start_custom_app",
            "Start an app",
            "Start a stopped app and wait for RUNNING; no-op if it is running.",
            input(json!({"app_name": app_name(), "wait": wait()}), &["app_name"]),
            lifecycle_output(),
            Annotations { read_only: false, destructive: false, idempotent: true, open_world: false },
            Handler::typed(lifecycle::start),
        ),
        tool(
            "stop_custom_app",
            "Stop an app",
            "Stop an app (compose down: containers go, volumes and images stay); no-op if stopped.",
            input(json!({"app_name": app_name(), "wait": wait()}), &["app_name"]),
            lifecycle_output(),
            Annotations { read_only: false, destructive: false, idempotent: true, open_world: false },
            Handler::typed(lifecycle::stop),
        ),
        tool(
            "deploy_custom_app",
            "Deploy a new Compose app",
            "Create a NEW Custom App from a Compose file. Checks policy, ports and name first: an error refuses it, \
             with a fix per problem. Run dry_run: true first.",
            input(
                json!({
                    "app_name": app_name(),
                    "compose_yaml": compose_yaml(),
                    "env": env(),
                    "auto_start": flag("false: stop it once created.", true),
                    "wait_until_healthy": flag("Wait for RUNNING or CRASHED.", true),
                    "timeout_seconds": {"type": "integer", "minimum": 10, "maximum": 3600, "default": 300,
                        "description": "Health wait, seconds."},
                    "dry_run": flag("Only check and plan.", false),
                    "wait": wait(),
                    "create_host_paths": flag("Create missing bind sources under the allowed roots, owned by 568:568 \
                        (or the service's user:).", false),
                }),
                &["app_name", "compose_yaml"],
            ),
            output(
                json!({
                    "status": {"type": "string",
                        "enum": ["running", "deploying", "crashed", "stopped", "created", "dry_run", "refused",
                            "started"]},
                    "app_name": {"type": "string"},
                    "findings": findings(),
                    "substitutions": substitutions(),
                    "services": {"type": "array", "items": {"type": "string"}},
                    "published_ports": published_ports(),
                    "rendered_compose": nullable("string"),
                    "payload": {"type": "object", "properties": {
                        "method": {"type": "string"}, "app_name": {"type": "string"},
                        "custom_app": {"type": "boolean"}, "compose_bytes": {"type": "integer"}}},
                    "state": nullable("string"),
                    "job_id": nullable("integer"),
                    "crash_logs": log_tails(),
                    "host_paths_created": {"type": "array", "items": {"type": "string"}},
                    "message": {"type": "string"},
                }),
                &["status", "app_name", "findings", "message"],
            ),
            Annotations { read_only: false, destructive: false, idempotent: false, open_world: false },
            Handler::typed(deploy::deploy),
        ),
        tool(
            "update_custom_app",
            "Update an app's compose",
            "Replace an EXISTING Custom App's whole compose (the deploy's checks apply); shows the diff. Recreates \
             a running app; a STOPPED one stays stopped.",
            input(
                json!({
                    "app_name": app_name(),
                    "compose_yaml": compose_yaml(),
                    "env": env(),
                    "dry_run": flag("Only check and diff.", false),
                    "wait": wait(),
                    "snapshot": snapshot(),
                }),
                &["app_name", "compose_yaml"],
            ),
            output(
                json!({
                    "status": {"type": "string", "enum": ["updated", "unchanged", "dry_run", "refused", "started"]},
                    "app_name": {"type": "string"},
                    "diff": {"type": "string"},
                    "findings": findings(),
                    "substitutions": substitutions(),
                    "previous_state": nullable("string"),
                    "state": nullable("string"),
                    "stays_stopped": {"type": "boolean"},
                    "job_id": nullable("integer"),
                    "restore_point": {"type": "object"},
                    "crash_logs": log_tails(),
                    "message": {"type": "string"},
                }),
                &["status", "app_name", "findings", "message"],
            ),
            Annotations { read_only: false, destructive: true, idempotent: true, open_world: false },
            Handler::typed(deploy::update),
        ),
        tool(
            "delete_custom_app",
            "Delete an app",
            "Permanently delete an app, its containers and named volumes; bind mounts under /mnt survive. Lists \
             what is lost. Needs the user's consent: asked through the client, or confirm: true.",
            input(
                json!({
                    "app_name": app_name(),
                    "delete_volumes": flag("Also delete its ix-volume datasets.", false),
                    "remove_images": flag("Also remove its images.", true),
                    "confirm": flag("Only after the user explicitly agreed.", false),
                    "snapshot": snapshot(),
                }),
                &["app_name"],
            ),
            output(
                json!({
                    "status": {"type": "string", "enum": ["deleted", "declined", "confirmation_required"]},
                    "app_name": {"type": "string"},
                    "will_be_lost": {"type": "array", "items": {"type": "string"}},
                    "survives": {"type": "array", "items": {"type": "string"}},
                    "options": {"type": "object", "properties": {
                        "remove_images": {"type": "boolean"}, "remove_ix_volumes": {"type": "boolean"}}},
                    "job_id": nullable("integer"),
                    "restore_point": {"type": "object"},
                    "message": {"type": "string"},
                }),
                &["status", "app_name", "will_be_lost", "survives", "message"],
            ),
            Annotations { read_only: false, destructive: true, idempotent: true, open_world: false },
            Handler::typed(lifecycle::delete),
        ),
        tool(
            "validate_compose",
            "Validate a Compose file",
            "Check a Compose file against TrueNAS rules and the operator's policy without deploying: findings with \
             fixes (errors block a deploy), substitutions, services, ports.",
            input(
                json!({
                    "compose_yaml": compose_yaml(),
                    "env": env(),
                    "app_name": optional_app_name("Optional: the app it is for."),
                }),
                &["compose_yaml"],
            ),
            output(
                json!({
                    "valid": {"type": "boolean", "description": "true when there is no error finding"},
                    "findings": findings(),
                    "substitutions": substitutions(),
                    "unresolved": {"type": "array", "items": {"type": "string"}},
                    "services": {"type": "array", "items": {"type": "string"}},
                    "published_ports": published_ports(),
                    "port_check": {"type": "object", "properties": {
                        "checked": {"type": "boolean"}, "detail": {"type": "string"}},
                        "required": ["checked", "detail"]},
                    "app_exists": nullable("boolean"),
                    "rendered_compose": nullable("string"),
                }),
                &["valid", "findings", "substitutions", "unresolved", "services", "published_ports", "port_check"],
            ),
            READ,
            Handler::typed(deploy::validate_compose),
        ),
        tool(
            "get_app_logs",
            "Get an app's logs",
            "The last log lines of an app's containers; a STOPPED app has none.",
            input(
                json!({
                    "app_name": app_name(),
                    "lines": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100,
                        "description": "Lines per container."},
                    "service_name": {"type": "string", "minLength": 1, "maxLength": 128,
                        "description": "Optional: one compose service."},
                }),
                &["app_name"],
            ),
            output(
                json!({
                    "app_name": {"type": "string"},
                    "state": {"type": "string"},
                    "containers": log_tails(),
                    "line_count": {"type": "integer"},
                }),
                &["app_name", "state", "containers", "line_count"],
            ),
            READ,
            Handler::typed(logs::get_app_logs),
        ),
        tool(
            "get_custom_app_config",
            "Get an app's compose",
            "A Custom App's deployed compose as YAML (comments gone, secrets as ***). Edit it for \
             update_custom_app: values left masked keep their deployed value.",
            input(json!({"app_name": app_name()}), &["app_name"]),
            output(
                json!({
                    "app_name": {"type": "string"},
                    "compose_yaml": {"type": "string"},
                    "secrets_masked": {"type": "boolean"},
                }),
                &["app_name", "compose_yaml", "secrets_masked"],
            ),
            READ,
            Handler::typed(status::get_custom_app_config),
        ),
        tool(
            "redeploy_custom_app",
            "Redeploy an app",
            "Recreate an app's containers from its stored compose (after editing bind-mount files, or a crash); \
             starts a stopped app. Pulls no images: pull_custom_app_images does.",
            input(json!({"app_name": app_name(), "wait": wait()}), &["app_name"]),
            lifecycle_output(),
            Annotations { read_only: false, destructive: false, idempotent: false, open_world: false },
            Handler::typed(lifecycle::redeploy),
        ),
        tool(
            "pull_custom_app_images",
            "Pull newer images",
            "Pull the latest versions of an app's images; with redeploy, recreate its containers. Names the \
             images TrueNAS flagged as outdated.",
            input(
                json!({
                    "app_name": app_name(),
                    "redeploy": flag("Recreate the containers on the new images.", true),
                    "wait": wait(),
                    "snapshot": snapshot(),
                }),
                &["app_name"],
            ),
            lifecycle_output(),
            Annotations { read_only: false, destructive: false, idempotent: false, open_world: false },
            Handler::typed(lifecycle::pull_images),
        ),
        tool(
            "get_app_stats",
            "Get app resource usage",
            "CPU, memory, network and disk I/O per app: one sample (takes 2 s).",
            input(json!({"app_name": optional_app_name("Optional: only this app.")}), &[]),
            output(
                json!({
                    "apps": {"type": "array", "items": {"type": "object", "properties": {
                        "app_name": {"type": "string"},
                        "cpu_percent": {"type": "number"},
                        "memory_bytes": {"type": "number"},
                        "network_rx_bytes_per_second": {"type": "number"},
                        "network_tx_bytes_per_second": {"type": "number"},
                        "block_read_bytes": {"type": "number"},
                        "block_write_bytes": {"type": "number"}},
                        "required": ["app_name", "cpu_percent", "memory_bytes"]}},
                }),
                &["apps"],
            ),
            READ,
            Handler::typed(status::get_app_stats),
        ),
        tool(
            "get_job_status",
            "Get a TrueNAS job's status",
            "State, progress, result or error of a TrueNAS job (from wait: false).",
            input(
                json!({"job_id": {"type": "integer", "minimum": 1, "maximum": 9_007_199_254_740_991_i64,
                    "description": "Job id a tool returned."}}),
                &["job_id"],
            ),
            output(
                json!({
                    "job_id": {"type": "integer"},
                    "method": nullable("string"),
                    "state": {"type": "string"},
                    "finished": {"type": "boolean"},
                    "progress_percent": nullable("number"),
                    "progress_description": nullable("string"),
                    "result": {},
                    "error": nullable("string"),
                }),
                &["job_id", "state", "finished"],
            ),
            READ,
            Handler::typed(status::get_job_status),
        ),
        tool(
            "list_app_restore_points",
            "List an app's restore points",
            "Restore points of an app (also a deleted one), newest first: time, change, compose diff to today, \
             ZFS snapshots and their space.",
            input(json!({"app_name": app_name()}), &["app_name"]),
            output(json!({"app_name": {"type": "string"}, "restore_points": {"type": "array"}}), &["restore_points"]),
            READ,
            Handler::typed(undo::list),
        ),
        tool(
            "rollback_custom_app",
            "Roll an app back",
            "Put back a restore point's compose (recreates a deleted app); include_data also rolls its datasets \
             back, losing later writes. Needs the user's consent.",
            input(
                json!({
                    "app_name": app_name(),
                    "restore_point": {"type": "string", "minLength": 1, "maxLength": 200,
                        "description": "Optional; the newest if omitted."},
                    "include_data": flag("Also roll its datasets back.", false),
                    "confirm": flag("Only after the user explicitly agreed.", false),
                }),
                &["app_name"],
            ),
            output(json!({"status": {"type": "string"}, "app_name": {"type": "string"}}), &["status", "app_name"]),
            Annotations { read_only: false, destructive: true, idempotent: false, open_world: false },
            Handler::typed(undo::rollback),
        ),
        tool(
            "check_app_updates",
            "Check for image updates",
            "Which apps have newer images, as TrueNAS knows (update flags, outdated images).",
            input(json!({"app_name": optional_app_name("Optional: only this app.")}), &[]),
            output(json!({"apps": {"type": "array"}, "count": {"type": "integer"}}), &["apps", "count"]),
            READ,
            Handler::typed(images::check),
        ),
        tool(
            "update_app_images",
            "Update an app's images safely",
            "Restore point, pull, redeploy, wait for health; if not healthy in time, roll back by itself \
             (data too with rollback_data) and show the crash logs.",
            input(
                json!({
                    "app_name": app_name(),
                    "timeout_seconds": {"type": "integer", "minimum": 10, "maximum": 3600, "default": 300,
                        "description": "Health wait, seconds."},
                    "rollback_data": flag("On failure roll the data back too (asks the user).", false),
                    "confirm": flag("Only after the user explicitly agreed.", false),
                }),
                &["app_name"],
            ),
            output(json!({"status": {"type": "string"}, "app_name": {"type": "string"}}), &["status", "app_name"]),
            Annotations { read_only: false, destructive: true, idempotent: false, open_world: false },
            Handler::typed(images::update),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonschema;

    const ORIGINAL: [&str; 10] = [
        "test_connection",
        "list_custom_apps",
        "get_custom_app_status",
        "start_custom_app",
        "stop_custom_app",
        "deploy_custom_app",
        "update_custom_app",
        "delete_custom_app",
        "validate_compose",
        "get_app_logs",
    ];

    #[test]
    fn nineteen_tools_keep_the_original_names() {
        let specs = specs();
        assert_eq!(specs.len(), 19);
        for name in ORIGINAL {
            assert!(specs.iter().any(|s| s.def.name == name), "{name} missing");
        }
        let mut names: Vec<&str> = specs.iter().map(|s| s.def.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 19, "duplicate names");
    }

    /// Every property of every (nested) object schema has a description or is a plain structural leaf.
    fn check_described(schema: &Value, where_: &str) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let d = v.get("description").and_then(Value::as_str).unwrap_or("");
                // app_name and wait are described once, in the instructions.
                assert!(d.len() > 15 || ["app_name", "wait"].contains(&k.as_str()), "{where_}.{k} lacks a description");
            }
        }
    }

    #[test]
    fn input_schemas_are_strict_described_objects() {
        for s in specs() {
            let schema = &s.def.input_schema;
            assert_eq!(schema["type"], "object", "{}", s.def.name);
            assert_eq!(schema["additionalProperties"], false, "{}", s.def.name);
            check_described(schema, &s.def.name);
            for (k, v) in schema["properties"].as_object().unwrap() {
                let required = schema.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
                if v.get("default").is_none() && !required.iter().any(|r| r == k) {
                    // Optional without default: the description must say what happens when it is absent.
                    let d = v["description"].as_str().unwrap();
                    assert!(d.contains("Default") || d.contains("Optional"), "{}.{k}: {d}", s.def.name);
                }
                if k == "app_name" {
                    assert_eq!(v["maxLength"].as_u64(), Some(40));
                }
            }
            assert!(s.def.title.len() > 5 && s.def.description.len() > 60, "{}", s.def.name);
            assert!(!s.def.annotations.open_world, "{}", s.def.name);
            assert_eq!(s.writes, !s.def.annotations.read_only);
            if s.def.annotations.read_only {
                assert!(!s.def.annotations.destructive, "{}", s.def.name);
            }
        }
    }

    /// What a default says stays in `default`; an abbreviation's full stop cuts a client's one-sentence summary
    /// (the redeploy description used to end at "e.g."); the app-name rule is said once, in the instructions.
    #[test]
    fn descriptions_say_nothing_twice() {
        for s in specs() {
            let published = serde_json::to_string(&(&s.def.description, &s.def.input_schema)).unwrap();
            for repeated in ["Default:", "e.g.", "i.e.", "lowercase letters"] {
                assert!(!published.contains(repeated), "{}: {repeated:?} in {published}", s.def.name);
            }
            assert!(s.def.output_schema.is_none(), "{}: output schemas are not published", s.def.name);
            assert_eq!(s.output_schema["type"], "object", "{}", s.def.name);
        }
    }

    #[test]
    fn defaults_validate_against_their_own_schema() {
        for s in specs() {
            for (k, v) in s.def.input_schema["properties"].as_object().unwrap() {
                if let Some(d) = v.get("default") {
                    assert!(jsonschema::validate(v, d).is_ok(), "{}.{k} default {d}", s.def.name);
                }
            }
        }
    }

    #[test]
    fn app_name_rule_matches_truenas() {
        let schema = app_name();
        let pattern = regex_lite::Regex::new(APP_NAME_PATTERN).unwrap();
        let cases = [
            ("a", true),
            ("nextcloud", true),
            ("my-app2", true),
            ("a1-b2-c3", true),
            ("", false),
            ("1app", false),
            ("-app", false),
            ("app-", false),
            ("App", false),
            ("my_app", false),
            ("my app", false),
            ("a234567890123456789012345678901234567890", true),
            ("a2345678901234567890123456789012345678901", false),
        ];
        for (name, ok) in cases {
            // What the server accepts: the published schema, then the gate's rule.
            let accepted =
                jsonschema::validate(&schema, &json!(name)).is_ok() && crate::compose::app_name_error(name).is_none();
            assert_eq!(accepted, ok, "{name:?}");
            let truenas = pattern.is_match(name) && name.chars().count() <= 40;
            assert_eq!(truenas, ok, "{name:?}: TrueNAS's own pattern");
        }
    }

    #[test]
    fn write_tools_are_exactly_the_changing_ones() {
        let writes: Vec<String> = specs().into_iter().filter(|s| s.writes).map(|s| s.def.name).collect();
        assert_eq!(
            writes,
            [
                "start_custom_app",
                "stop_custom_app",
                "deploy_custom_app",
                "update_custom_app",
                "delete_custom_app",
                "redeploy_custom_app",
                "pull_custom_app_images",
                "rollback_custom_app",
                "update_app_images"
            ]
        );
    }
}

//! The table of tools: name, title, description, input and output schema, annotations, handler.
//!
//! Descriptions are written for a model that must pick the right tool and fill it in correctly; the input schema
//! published here is the one that validates the arguments (one source of truth).

use serde_json::{json, Value};

pub use super::args::Handler;
use super::{connection, deploy, images, lifecycle, logs, status, undo};
use crate::mcp::tool::{Annotations, ToolDef};

/// One tool of the catalogue.
pub struct ToolSpec {
    pub def: ToolDef,
    /// Changes the NAS: hidden in read-only mode, gated by writable apps, audited.
    pub writes: bool,
    pub handler: Handler,
}

/// TrueNAS's own app-name rule (`app.create`'s model).
pub const APP_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

fn app_name(description: &str) -> Value {
    json!({
        "type": "string",
        "pattern": APP_NAME_PATTERN,
        "minLength": 1,
        "maxLength": 40,
        "description": format!("{description} TrueNAS app name: 1-40 characters, lowercase letters, digits and \
            hyphens, starting with a letter and not ending with a hyphen (e.g. \"nextcloud\", \"my-app2\")."),
    })
}

/// A short app-name schema for the newer tools (the catalogue's size is budgeted per tool).
fn app(description: &str) -> Value {
    json!({"type": "string", "pattern": APP_NAME_PATTERN, "minLength": 1, "maxLength": 40, "description": description})
}

fn snapshot() -> Value {
    flag("Record a restore point first (compose and ZFS snapshots of the app's data; see rollback_custom_app).", true)
}

fn compose_yaml() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 1_000_000,
        "description": "The complete Docker Compose file as YAML text (a `services:` mapping; the same text you \
            would put in docker-compose.yaml). Use absolute host paths under /mnt/<pool>/... for bind mounts; \
            there is no project directory or .env file on TrueNAS.",
    })
}

fn env() -> Value {
    json!({
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 65536},
        "maxProperties": 500,
        "default": {},
        "description": "Values for ${VAR} references in the compose file (what a .env file would hold), e.g. \
            {\"TZ\": \"Europe/Berlin\"}. Variables without a value and without a ${VAR:-default} are an error. \
            Default: {} (no variables).",
    })
}

fn flag(description: &str, default: bool) -> Value {
    json!({"type": "boolean", "default": default, "description": format!("{description} Default: {default}.")})
}

fn wait() -> Value {
    flag(
        "Wait for the TrueNAS job to finish (with progress) before answering. false returns the job id at once; \
         follow it with get_job_status.",
        true,
    )
}

fn input(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
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
            output_schema: Some(output_schema),
            annotations,
        },
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
            "Connect and log in to the configured TrueNAS, then report the TrueNAS version, the endpoint and \
             protocol used, the authentication method and user, the round-trip time, and the state of the Docker \
             apps service and its pool. Every problem found comes with a fix. Call this first when another tool \
             reports a connection, login or apps-service problem. Takes no arguments.",
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
            "List the apps on the NAS with their state (RUNNING, DEPLOYING, CRASHED, STOPPED), container count, \
             published ports, web portals and whether image updates are available. By default only Custom Apps \
             (Docker Compose apps) are listed. If the apps service is not running or has no pool, the answer says \
             so instead of returning an empty list.",
            input(
                json!({
                    "status_filter": {"type": "string", "enum": ["all", "running", "stopped", "deploying", "crashed"],
                        "default": "all",
                        "description": "Only apps in this state. Default: \"all\"."},
                    "include_catalog_apps": flag("Also list apps installed from the TrueNAS catalogue.", false),
                }),
                &[],
            ),
            output(
                json!({
                    "apps": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "state": {"type": "string"}, "custom_app": {"type": "boolean"},
                        "containers": {"type": "integer"}, "ports": app_ports(), "portals": portals(),
                        "image_updates_available": {"type": "boolean"}},
                        "required": ["name", "state", "custom_app", "containers", "ports", "portals",
                            "image_updates_available"]}},
                    "count": {"type": "integer"},
                    "docker_status": {"type": "string"},
                }),
                &["apps", "count", "docker_status"],
            ),
            READ,
            Handler::typed(status::list_custom_apps),
        ),
        tool(
            "get_custom_app_status",
            "Get an app's status",
            "Detailed status of one app: state, every container (service, image, state), published ports, mounts, \
             portals and notes. For a CRASHED app it also returns the last log lines of the failed containers and \
             a hint on what to do next. Use list_custom_apps to find app names.",
            input(json!({"app_name": app_name("The app to inspect.")}), &["app_name"]),
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
            "Start a stopped app (docker compose up), wait for the TrueNAS job with progress, then up to 30 s for \
             the app to be RUNNING; a crash returns the failing containers' last log lines. If the app is already \
             running or deploying, nothing is done and the answer says so.",
            input(json!({"app_name": app_name("The app to start."), "wait": wait()}), &["app_name"]),
            lifecycle_output(),
            Annotations { read_only: false, destructive: false, idempotent: true, open_world: false },
            Handler::typed(lifecycle::start),
        ),
        tool(
            "stop_custom_app",
            "Stop an app",
            "Stop a running app (docker compose down: containers and networks are removed, volumes and images are \
             kept) and wait for the TrueNAS job. If the app is already stopped, nothing is done and the answer says \
             so.",
            input(json!({"app_name": app_name("The app to stop."), "wait": wait()}), &["app_name"]),
            lifecycle_output(),
            Annotations { read_only: false, destructive: false, idempotent: true, open_world: false },
            Handler::typed(lifecycle::stop),
        ),
        tool(
            "deploy_custom_app",
            "Deploy a new Compose app",
            "Create a NEW Custom App from a Docker Compose file. The compose is first checked against the \
             operator's security policy (privileged containers, dangerous capabilities, host namespaces, Docker \
             socket, sensitive host paths, port conflicts with other apps, unresolved variables, ...) and the name \
             must be free; any error refuses the deploy and lists each problem with its fix. Use dry_run: true \
             first to see the exact plan without changing anything. Then the app is created (a TrueNAS job with \
             progress) and, with wait_until_healthy, watched until it is RUNNING or CRASHED; on a crash the \
             failing containers' last log lines are returned. To change an existing app use update_custom_app.",
            input(
                json!({
                    "app_name": app_name("Name of the new app (must not exist yet)."),
                    "compose_yaml": compose_yaml(),
                    "env": env(),
                    "auto_start": flag("Leave the app running after creation. false stops it right after \
                        TrueNAS created it (TrueNAS always starts a new app).", true),
                    "wait_until_healthy": flag("After creation, wait until the app is RUNNING or CRASHED \
                        (bounded by timeout_seconds).", true),
                    "timeout_seconds": {"type": "integer", "minimum": 10, "maximum": 3600, "default": 300,
                        "description": "How long wait_until_healthy waits for RUNNING, in seconds (10-3600). \
                            Default: 300."},
                    "dry_run": flag("Only validate and return the exact plan (rendered compose, payload summary, \
                        findings); nothing is created. The NAS is only read (ports in use, name availability).", false),
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
            "Replace the compose file of an EXISTING Custom App. The new compose passes the same policy as a \
             deploy (its own ports do not count as conflicts); the answer shows a unified diff between the \
             deployed compose and the new one. TrueNAS stores the full compose every time (no partial update) and \
             recreates the containers of a running app; a STOPPED app stays stopped (start it with \
             start_custom_app); a running app is watched up to 30 s until RUNNING (a crash returns the log tail). \
             Use dry_run: true to see the diff and findings without changing anything.",
            input(
                json!({
                    "app_name": app_name("The existing app to update."),
                    "compose_yaml": compose_yaml(),
                    "env": env(),
                    "dry_run": flag("Only validate and show the diff; nothing is changed.", false),
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
            "Permanently delete an app. TrueNAS always removes the app's containers and its named Compose volumes \
             (docker compose down -v); data in host-path bind mounts (/mnt/...) survives. The user is asked to \
             confirm through the client when it supports that; otherwise the call must carry confirm: true, which \
             you may only set after the user explicitly agreed to delete this app. The answer first lists what \
             will be lost.",
            input(
                json!({
                    "app_name": app_name("The app to delete."),
                    "delete_volumes": flag("Also delete the app's TrueNAS-managed ix-volume datasets \
                        (remove_ix_volumes).", false),
                    "remove_images": flag("Also remove the app's Docker images.", true),
                    "confirm": flag("Set to true only after the user explicitly confirmed this deletion; used when \
                        the client cannot ask the user itself.", false),
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
            "Check a Docker Compose file against the TrueNAS Custom App rules and the operator's security policy \
             without deploying anything. Returns every finding with its rule id, severity (error blocks a deploy), \
             location and fix, the ${VAR} substitutions made, the services and the published ports. When a NAS is \
             reachable, ports already used by other apps are checked too (otherwise the answer says the live check \
             was skipped); with app_name, the name is checked as well. Works without any NAS.",
            input(
                json!({
                    "compose_yaml": compose_yaml(),
                    "env": env(),
                    "app_name": app_name("Optional: the app this compose is for. A new name is checked for \
                        availability; for an existing app its own ports are not counted as conflicts."),
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
            "The last lines of the container logs of an app (all services, or one service). Works for RUNNING, \
             DEPLOYING and CRASHED apps; a STOPPED app has no containers and therefore no logs (start it first).",
            input(
                json!({
                    "app_name": app_name("The app whose logs to read."),
                    "lines": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100,
                        "description": "How many of the most recent lines to return per container (1-10000). \
                            Default: 100."},
                    "service_name": {"type": "string", "minLength": 1, "maxLength": 128,
                        "description": "Only this compose service (e.g. \"db\"). Default: all services."},
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
            "The deployed compose file of a Custom App as YAML, as TrueNAS stores it (comments are gone and keys \
             sorted). Secret values (passwords, tokens, keys) are masked as *** unless the operator turned on \
             TRUENAS_REVEAL_SECRETS. Use it before update_custom_app to start from what is deployed: a value sent \
             back still masked keeps its deployed value.",
            input(json!({"app_name": app_name("The app whose compose to return.")}), &["app_name"]),
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
            "Recreate an app's containers from its stored compose (TrueNAS app.redeploy), e.g. after changing \
             files in a bind mount or to recover a crashed app, then wait up to 30 s for it to be RUNNING (a crash \
             returns the log tail). Runs even for a stopped app, which then starts. Does not pull newer images: use \
             pull_custom_app_images for that.",
            input(json!({"app_name": app_name("The app to redeploy."), "wait": wait()}), &["app_name"]),
            lifecycle_output(),
            Annotations { read_only: false, destructive: false, idempotent: false, open_world: false },
            Handler::typed(lifecycle::redeploy),
        ),
        tool(
            "pull_custom_app_images",
            "Pull newer images",
            "Pull the latest versions of an app's images (docker compose pull) and, with redeploy (default), \
             recreate the containers on them: the \"update the app to the latest images\" operation. Reports which \
             images TrueNAS had flagged as outdated.",
            input(
                json!({
                    "app_name": app_name("The app whose images to pull."),
                    "redeploy": flag("Recreate the containers with the new images after pulling.", true),
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
            "One sample of CPU, memory, network and block I/O per app (from TrueNAS's app.stats stream; takes \
             about two seconds). Optionally for one app only.",
            input(json!({"app_name": app_name("Only this app. Default: all apps.")}), &[]),
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
            "State, progress, result or error of a TrueNAS job, for operations started with wait: false (their \
             answer contains the job id). States: WAITING, RUNNING, SUCCESS, FAILED, ABORTED.",
            input(
                json!({"job_id": {"type": "integer", "minimum": 1, "maximum": 9_007_199_254_740_991_i64,
                    "description": "The job id a tool returned."}}),
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
            "Restore points of an app (also a deleted one), newest first: time, the change that made it, the \
             compose diff to today and its ZFS snapshots with space used.",
            input(json!({"app_name": app("The app (it may have been deleted).")}), &["app_name"]),
            output(json!({"app_name": {"type": "string"}, "restore_points": {"type": "array"}}), &["restore_points"]),
            READ,
            Handler::typed(undo::list),
        ),
        tool(
            "rollback_custom_app",
            "Roll an app back",
            "Put back the compose of a restore point (recreating a deleted app); include_data also rolls its \
             datasets back, losing what was written since. Needs the user's confirmation.",
            input(
                json!({
                    "app_name": app("The app to roll back."),
                    "restore_point": {"type": "string", "minLength": 1, "maxLength": 200,
                        "description": "Its name. Default: the newest."},
                    "include_data": flag("Also roll the data datasets back.", false),
                    "confirm": flag("true only after the user agreed.", false),
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
            "Which apps have newer images, as TrueNAS knows it (its update flags and outdated images). \
             Optionally for one app.",
            input(json!({"app_name": app("Only this app. Default: all apps.")}), &[]),
            output(json!({"apps": {"type": "array"}, "count": {"type": "integer"}}), &["apps", "count"]),
            READ,
            Handler::typed(images::check),
        ),
        tool(
            "update_app_images",
            "Update an app's images safely",
            "Restore point, pull, redeploy, wait for health; if unhealthy in time, roll back automatically \
             (compose; data too with rollback_data) and report the crash logs.",
            input(
                json!({
                    "app_name": app("The app to update."),
                    "timeout_seconds": {"type": "integer", "minimum": 10, "maximum": 3600, "default": 300,
                        "description": "Health wait in seconds. Default: 300."},
                    "rollback_data": flag("On failure also roll the data back (asks the user).", false),
                    "confirm": flag("true only after the user agreed.", false),
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
                assert!(d.len() > 15, "{where_}.{k} lacks a description");
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
                if v.get("default").is_none() && !schema["required"].as_array().unwrap().iter().any(|r| r == k) {
                    // Optional without default: the description must say what happens when it is absent.
                    let d = v["description"].as_str().unwrap();
                    assert!(d.contains("Default") || d.contains("Optional"), "{}.{k}: {d}", s.def.name);
                }
                if k == "app_name" {
                    assert_eq!(v["pattern"], APP_NAME_PATTERN);
                    assert_eq!((v["minLength"].as_u64(), v["maxLength"].as_u64()), (Some(1), Some(40)));
                }
            }
            assert!(s.def.title.len() > 5 && s.def.description.len() > 80, "{}", s.def.name);
            assert!(!s.def.annotations.open_world, "{}", s.def.name);
            assert_eq!(s.writes, !s.def.annotations.read_only);
            if s.def.annotations.read_only {
                assert!(!s.def.annotations.destructive, "{}", s.def.name);
            }
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
        let schema = app_name("x");
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
            assert_eq!(jsonschema::validate(&schema, &json!(name)).is_ok(), ok, "{name:?}");
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

//! Undo, end to end through the binary against the simulator (24.10 legacy protocol, 25.04, 25.10): restore
//! points before changes, rollback of compose and data, a deleted app recreated, automatic rollback after an
//! unhealthy image update, and bind sources checked and created with the right owner.

use serde_json::{json, Value};
use truenas_mcp::sim::SimVersion;

use super::tools::{check_wire, nas_with, Called, Elicit, Nas, Server};

const VERSIONS: [SimVersion; 4] = [SimVersion::V24_10, SimVersion::V25_04, SimVersion::V25_10, SimVersion::V26_0];
const SECRET: &str = "hunter2-undo-secret";

fn compose(image: &str, port: u16, dir: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports:\n      - \"{port}:80\"\n    environment:\n      \
         DB_PASSWORD: {SECRET}\n    volumes:\n      - {dir}:/data\n"
    )
}

fn ok(c: &Called, what: &str) -> Value {
    assert!(!c.is_error, "{what}: {}", c.text);
    assert!(!c.text.contains(SECRET), "{what} shows the secret: {}", c.text);
    c.structured.clone().unwrap_or_else(|| panic!("{what}: no structured content"))
}

fn deploy(server: &mut Server, app: &str, image: &str, port: u16, dir: &str) {
    let r = server.call(
        "deploy_custom_app",
        json!({"app_name": app, "compose_yaml": compose(image, port, dir), "create_host_paths": true}),
    );
    assert_eq!(ok(&r, "deploy")["status"], "running", "{}", r.text);
}

fn image_of(nas: &Nas, app: &str) -> String {
    let apps = nas.sim.apps();
    let a = apps.iter().find(|a| a["name"] == app).unwrap_or_else(|| panic!("{app} missing"));
    a["config"]["services"]["web"]["image"].as_str().unwrap_or_default().to_string()
}

#[test]
fn update_break_rollback_restores_compose_and_data() {
    for version in VERSIONS {
        let nas = nas_with(version, |o| o.seed_example_apps = false);
        let mut server = Server::start(&nas, &[], Elicit::Unsupported);
        deploy(&mut server, "notes", "nginx:1.27", 18080, "/mnt/tank/apps/notes");
        nas.sim.write_file("/mnt/tank/apps/notes/db.txt", "version one");
        let r = server.call(
            "update_custom_app",
            json!({"app_name": "notes", "compose_yaml": compose("crash:2", 18080, "/mnt/tank/apps/notes")}),
        );
        assert!(r.is_error, "the broken update crashes: {}", r.text);
        let point = r.structured.clone().unwrap()["restore_point"].clone();
        assert_eq!(
            point["snapshots"],
            json!([format!("tank/apps@{}", point["name"].as_str().unwrap())]),
            "{version:?}"
        );
        assert!(r.text.contains("directory inside dataset tank/apps"), "{}", r.text);
        assert!(nas.sim.snapshots().iter().all(|(_, held)| *held), "restore-point snapshots are held");
        nas.sim.write_file("/mnt/tank/apps/notes/db.txt", "corrupted by the broken version");

        let listed = ok(&server.call("list_app_restore_points", json!({"app_name": "notes"})), "list");
        let points = listed["restore_points"].as_array().unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0]["change"], "update_custom_app");
        assert!(points[0]["diff"].as_str().unwrap().contains("crash:2"), "{}", points[0]["diff"]);
        assert!(points[0]["snapshots"][0]["used_bytes"].as_u64().unwrap() > 0, "space used by the snapshot");

        let refused = server.call("rollback_custom_app", json!({"app_name": "notes", "include_data": true}));
        assert!(refused.is_error && refused.text.contains("confirm: true"), "{}", refused.text);
        assert_eq!(image_of(&nas, "notes"), "crash:2", "nothing changed without confirmation");

        let r = server.call("rollback_custom_app", json!({"app_name": "notes", "include_data": true, "confirm": true}));
        let out = ok(&r, "rollback");
        assert_eq!(
            (out["status"].as_str(), out["state"].as_str()),
            (Some("rolled_back"), Some("RUNNING")),
            "{}",
            r.text
        );
        assert_eq!(image_of(&nas, "notes"), "nginx:1.27", "{version:?}: compose back");
        assert_eq!(nas.sim.read_file("/mnt/tank/apps/notes/db.txt").as_deref(), Some("version one"), "data back");
        let audit = server.audit_lines();
        assert!(audit.iter().any(|l| l["tool"] == "rollback_custom_app" && l["outcome"] == "succeeded"), "{audit:?}");
        check_wire(&nas);
    }
}

#[test]
fn a_deleted_app_is_recreated_from_its_restore_point() {
    for version in [SimVersion::V24_10, SimVersion::V25_10, SimVersion::V26_0] {
        let nas = nas_with(version, |o| o.seed_example_apps = false);
        let mut server = Server::start(&nas, &[], Elicit::Accept);
        deploy(&mut server, "wiki", "nginx:1.27", 18081, "/mnt/tank/apps/wiki");
        let r = server.call("delete_custom_app", json!({"app_name": "wiki"}));
        let out = ok(&r, "delete");
        assert_eq!(out["status"], "deleted");
        assert!(out["restore_point"]["name"].as_str().unwrap().starts_with("truenas-mcp-wiki-"), "{out}");
        assert!(nas.sim.apps().is_empty());
        let listed = ok(&server.call("list_app_restore_points", json!({"app_name": "wiki"})), "list");
        assert_eq!(listed["exists"], false);
        let r = server.call("rollback_custom_app", json!({"app_name": "wiki"}));
        let out = ok(&r, "recreate");
        assert_eq!(out["state"], "RUNNING", "{}", r.text);
        assert!(r.text.contains("recreated"), "{}", r.text);
        assert_eq!(image_of(&nas, "wiki"), "nginx:1.27");
        check_wire(&nas);
    }
}

#[test]
fn an_unhealthy_image_update_rolls_back_by_itself() {
    for version in [SimVersion::V25_04, SimVersion::V25_10, SimVersion::V26_0] {
        let nas = nas_with(version, |o| o.seed_example_apps = false);
        let mut server = Server::start(&nas, &[], Elicit::Unsupported);
        deploy(&mut server, "blog", "nginx:1.27", 18082, "/mnt/tank/apps/blog");
        nas.sim.set_outdated_images("blog", vec!["nginx:1.27".into()]);
        let checked = ok(&server.call("check_app_updates", json!({})), "check");
        assert_eq!(checked["count"], 1, "{checked}");
        assert_eq!(checked["apps"][0]["outdated_images"], json!(["nginx:1.27"]));
        nas.sim.break_next_pull("blog");
        let r = server.call("update_app_images", json!({"app_name": "blog", "timeout_seconds": 10}));
        assert!(r.is_error, "{}", r.text);
        let out = r.structured.unwrap();
        assert_eq!(out["status"], "rolled_back", "{}", r.text);
        assert_eq!((out["failed_state"].as_str(), out["state"].as_str()), (Some("CRASHED"), Some("RUNNING")));
        assert!(!out["crash_logs"].as_array().unwrap().is_empty(), "the crashed containers' logs: {}", r.text);
        assert!(r.text.contains("Rolled back automatically"), "{}", r.text);
        check_wire(&nas);
    }
}

#[test]
fn missing_host_paths_are_reported_and_created_with_the_right_owner() {
    let nas = nas_with(SimVersion::V25_10, |o| o.seed_example_apps = false);
    let mut server = Server::start(&nas, &[("TRUENAS_HOST_PATH_DATASETS", "true")], Elicit::Unsupported);
    let yaml = "services:\n  a:\n    image: nginx:1.27\n    volumes:\n      - /mnt/tank/apps/media/x/y:/y\n  \
                b:\n    image: nginx:1.27\n    user: \"1000:1001\"\n    volumes:\n      - /mnt/tank/apps/owned:/o\n";
    let r = server.call("deploy_custom_app", json!({"app_name": "paths", "compose_yaml": yaml, "dry_run": true}));
    let out = ok(&r, "dry run");
    let missing: Vec<&Value> =
        out["findings"].as_array().unwrap().iter().filter(|f| f["rule"] == "host-path-missing").collect();
    assert_eq!(missing.len(), 2, "{}", r.text);
    assert!(missing[0]["fix"].as_str().unwrap().contains("create_host_paths"));
    let r = server.call(
        "deploy_custom_app",
        json!({"app_name": "paths", "compose_yaml": yaml, "dry_run": true, "create_host_paths": true}),
    );
    let out = ok(&r, "dry run with create");
    assert_eq!(out["host_paths_created"].as_array().unwrap().len(), 2, "{}", r.text);
    assert_eq!(nas.sim.owner("/mnt/tank/apps/owned"), None, "a dry run creates nothing");
    let r =
        server.call("deploy_custom_app", json!({"app_name": "paths", "compose_yaml": yaml, "create_host_paths": true}));
    ok(&r, "deploy");
    assert_eq!(nas.sim.owner("/mnt/tank/apps/media/x/y"), Some((568, 568)));
    assert_eq!(nas.sim.owner("/mnt/tank/apps/owned"), Some((1000, 1001)), "the service's user: owns its path");
    assert!(nas.sim.datasets().contains(&"tank/apps/owned".to_string()), "a dataset under a dataset root");
    assert!(!nas.sim.datasets().iter().any(|d| d.ends_with("/y")), "a deeper path is a directory");
    check_wire(&nas);
}

#[test]
fn read_only_and_writable_apps_govern_the_undo_tools() {
    let nas = nas_with(SimVersion::V25_04, |_| {});
    let mut server = Server::start(&nas, &[("TRUENAS_READ_ONLY", "true")], Elicit::Unsupported);
    let names: Vec<String> = server.list_tools().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    assert!(names.contains(&"list_app_restore_points".into()) && names.contains(&"check_app_updates".into()));
    assert!(!names.contains(&"rollback_custom_app".into()) && !names.contains(&"update_app_images".into()));
    drop(server);
    let mut server = Server::start(&nas, &[("TRUENAS_WRITABLE_APPS", "test-*")], Elicit::Unsupported);
    for tool in ["rollback_custom_app", "update_app_images"] {
        let r = server.call(tool, json!({"app_name": "prod", "confirm": true}));
        assert!(r.is_error && r.text.contains("writable apps"), "{tool}: {}", r.text);
    }
}

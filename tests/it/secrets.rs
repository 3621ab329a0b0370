//! Integration tests: a planted secret never leaves the process in clear. The real binary runs in mock mode with
//! every debug log on and an audit file, and each path a secret can take is driven: deploy (dry run, real, refused,
//! broken), validate, the config tool and resource, update (dry run diff, real), job status and progress.

use std::fs::File;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{binary, tempdir, McpPeer};

/// The planted secrets: a secret-looking name, a password inside a URL, and two values supplied through `env`
/// (one under a harmless name: everything passed through `env` counts as secret).
const NAMED: &str = "s3cr3t-NAMED";
const URL: &str = "s3cr3t-URL";
const ENV_TOKEN: &str = "s3cr3t-ENV";
const ENV_PLAIN: &str = "s3cr3t-PLAIN";
const PLANTED: [&str; 4] = [NAMED, URL, ENV_TOKEN, ENV_PLAIN];

fn compose(image: &str) -> String {
    format!(
        "services:\n  db:\n    image: {image}\n    environment:\n      POSTGRES_PASSWORD: {NAMED}\n      \
         DATABASE_URL: postgres://app:{URL}@db/app\n      TOKEN_X: ${{TOKEN_X}}\n      PLAIN: ${{PLAIN}}\n    \
         command: [\"serve\", \"--cache\", \"redis://:{URL}@cache:6379\"]\n    deploy:\n      resources:\n        \
         limits:\n          memory: 256M\n          cpus: \"0.5\"\n"
    )
}

fn env() -> Value {
    json!({"TOKEN_X": ENV_TOKEN, "PLAIN": ENV_PLAIN})
}

/// Where each planted secret shows up in `text` (with a little context), for a readable failure.
fn leaks(place: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for secret in PLANTED {
        for (at, _) in text.match_indices(secret).take(3) {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            let line: String = text[line_start..line_end].chars().take(300).collect();
            found.push(format!("{place}: {secret} in {line}"));
        }
    }
    found
}

fn call(peer: &mut McpPeer, id: i64, name: &str, arguments: Value) -> Value {
    let params = json!({"name": name, "arguments": arguments, "_meta": {"progressToken": format!("p{id}")}});
    let response = peer.request(json!(id), "tools/call", params);
    response.get("result").cloned().unwrap_or_else(|| panic!("{name}: protocol error {response}"))
}

fn text_of(result: &Value) -> String {
    result["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect()
}

/// Every output path, debug logs on: no planted secret in stderr, stdout or the audit file.
#[test]
fn planted_secrets_reach_no_log_output_or_audit_line() {
    let dir = tempdir("secrets");
    let audit = dir.join("audit.jsonl");
    let stderr_path = dir.join("stderr.log");
    let mut command = Command::new(binary());
    command
        .arg("--mock")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug")
        .env("DEBUG_MODE", "true")
        .env("TRUENAS_AUDIT_LOG", &audit)
        .stderr(File::create(&stderr_path).unwrap());
    let mut peer = McpPeer::spawn_command(command);
    peer.initialize("2025-06-18", json!({}));
    let r = peer.request(json!("lvl"), "logging/setLevel", json!({"level": "debug"}));
    assert!(r.get("result").is_some(), "{r}");

    let good = compose("postgres:16");
    let r = call(&mut peer, 1, "validate_compose", json!({"compose_yaml": good, "env": env(), "app_name": "leak"}));
    assert_eq!(r["structuredContent"]["valid"], true, "{r}");
    let r = call(
        &mut peer,
        2,
        "deploy_custom_app",
        json!({"app_name": "leak", "compose_yaml": good, "env": env(), "dry_run": true}),
    );
    assert_eq!(r["structuredContent"]["status"], "dry_run", "{r}");
    let r = call(&mut peer, 3, "deploy_custom_app", json!({"app_name": "leak", "compose_yaml": good, "env": env()}));
    assert_eq!(r["isError"], false, "{r}");
    let create_job = r["structuredContent"]["job_id"].as_i64().unwrap_or_else(|| panic!("no job id: {r}"));
    // Error paths: the name is taken, the policy refuses, the YAML is broken, the app does not exist.
    let r = call(&mut peer, 4, "deploy_custom_app", json!({"app_name": "leak", "compose_yaml": good, "env": env()}));
    assert_eq!(r["isError"], true, "{r}");
    let bad = good.replace("    deploy:", "    privileged: true\n    deploy:");
    let r = call(&mut peer, 5, "deploy_custom_app", json!({"app_name": "leak-bad", "compose_yaml": bad, "env": env()}));
    assert_eq!(r["isError"], true, "{r}");
    let broken =
        format!("services:\n  db: [POSTGRES_PASSWORD: {NAMED}\n  url: postgres://app:{URL}@db/app {ENV_PLAIN}");
    let r = call(
        &mut peer,
        6,
        "deploy_custom_app",
        json!({"app_name": "leak-broken", "compose_yaml": broken, "env": env()}),
    );
    assert_eq!(r["isError"], true, "{r}");
    let r = call(&mut peer, 7, "update_custom_app", json!({"app_name": "nope", "compose_yaml": good, "env": env()}));
    assert_eq!(r["isError"], true, "{r}");

    let r = call(&mut peer, 8, "get_custom_app_config", json!({"app_name": "leak"}));
    let shown = text_of(&r);
    assert!(shown.contains("POSTGRES_PASSWORD") && shown.contains("postgres://app:***@db/app"), "{shown}");
    let r = peer.request(json!(9), "resources/read", json!({"uri": "truenas://apps/leak/compose"}));
    assert!(r.get("result").is_some(), "{r}");
    let r = peer.request(json!(10), "resources/read", json!({"uri": "truenas://apps"}));
    assert!(r.get("result").is_some(), "{r}");

    let newer = compose("postgres:17");
    let r = call(
        &mut peer,
        11,
        "update_custom_app",
        json!({"app_name": "leak", "compose_yaml": newer, "env": env(), "dry_run": true}),
    );
    assert_eq!(r["structuredContent"]["status"], "dry_run", "{r}");
    assert!(r["structuredContent"]["diff"].as_str().is_some_and(|d| d.contains("postgres:17")), "{r}");
    let r = call(
        &mut peer,
        12,
        "update_custom_app",
        json!({"app_name": "leak", "compose_yaml": newer, "env": env(), "wait": false}),
    );
    assert_eq!(r["isError"], false, "{r}");
    let update_job = r["structuredContent"]["job_id"].as_i64().unwrap_or_else(|| panic!("no job id: {r}"));
    for (id, job) in [(13, create_job), (14, update_job)] {
        let r = call(&mut peer, id, "get_job_status", json!({"job_id": job}));
        assert_eq!(r["isError"], false, "{r}");
    }
    let r = call(&mut peer, 15, "get_custom_app_status", json!({"app_name": "leak"}));
    assert_eq!(r["isError"], false, "{r}");

    peer.close_input();
    assert!(peer.wait_exit(Duration::from_secs(20)).is_some(), "the server did not exit");
    let stdout: String = peer.transcript.iter().map(|m| format!("{}\n", m.message)).collect();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    // Mock mode audits to its own file beside the configured one.
    let audit_text = std::fs::read_to_string(dir.join("audit.mock.jsonl")).unwrap_or_default();
    // The paths were really taken: wire frames were logged, progress was reported, changes were audited.
    assert!(stderr.contains("app.create") && stderr.contains("app.update"), "debug logs are missing:\n{stderr}");
    assert!(stdout.contains("notifications/progress"), "no progress was reported");
    assert!(audit_text.contains("deploy_custom_app") && audit_text.contains("update_custom_app"), "{audit_text}");

    let mut found = leaks("stderr", &stderr);
    found.extend(leaks("stdout", &stdout));
    found.extend(leaks("audit", &audit_text));
    assert!(found.is_empty(), "{} leak(s):\n{}", found.len(), found.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

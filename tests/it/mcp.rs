//! Integration tests: the MCP stdio server. Protocol behaviour is checked on the real binary (`--mock`); tool
//! behaviour (cancellation, progress, logging, panics, elicitation) on an in-process server with a test catalogue
//! over a loopback socket. Every test ends by validating everything the server wrote against the MCP schema.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use truenas_mcp::jsonrpc::{ErrorObject, Notification, Request, RequestId, Response};
use truenas_mcp::mcp::{serve_connection, Connection, Message, ServeOptions};

use crate::support::{McpPeer, PATIENCE};
use crate::test_catalog::TestCatalog;

fn test_server(opts: ServeOptions) -> (McpPeer, Receiver<String>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let catalog = Arc::new(TestCatalog { events: Mutex::new(tx), gate: None });
    (McpPeer::in_process(catalog, opts), rx)
}

/// A test server whose `progress` tool holds its late report until the returned sender is used.
fn gated_server() -> (McpPeer, Receiver<String>, Sender<()>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded();
    let catalog = Arc::new(TestCatalog { events: Mutex::new(tx), gate: Some(gate_rx) });
    (McpPeer::in_process(catalog, ServeOptions::default()), rx, gate_tx)
}

fn default_server() -> (McpPeer, Receiver<String>) {
    test_server(ServeOptions::default())
}

fn mock_binary() -> McpPeer {
    McpPeer::spawn_binary(&["--mock"])
}

/// Params carrying the modern (2026-07-28) per-request envelope.
fn modern(mut params: Value, capabilities: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"},
    });
    params
}

fn error_code(response: &Value) -> i64 {
    response["error"]["code"].as_i64().unwrap_or_else(|| panic!("expected an error, got {response}"))
}

fn result(response: &Value) -> &Value {
    response.get("result").unwrap_or_else(|| panic!("expected a result, got {response}"))
}

fn text_of(response: &Value) -> String {
    result(response)["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

fn ping_works(peer: &mut McpPeer, id: i64) {
    let response = peer.request(json!(id), "ping", json!({}));
    assert_eq!(response, json!({"jsonrpc": "2.0", "id": id, "result": {}}));
}

/// Whether the server sent a response (not a request of its own) with this id.
fn answered(peer: &McpPeer, id: i64) -> bool {
    peer.transcript.iter().any(|r| r.message.get("id") == Some(&json!(id)) && r.message.get("method").is_none())
}

fn wait_event(events: &Receiver<String>, expected: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = events.recv_deadline(deadline).unwrap_or_else(|_| panic!("handler never reported '{expected}'"));
        if got == expected {
            return;
        }
    }
}

// ---- lifecycle and eras (real binary) -----------------------------------------------------------------------

#[test]
fn legacy_handshake_echoes_supported_versions_and_falls_back_to_the_newest() {
    let cases = [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("1999-01-01", "2025-11-25"),
        ("2026-07-28", "2025-11-25"),
    ];
    for (asked, served) in cases {
        let mut peer = mock_binary();
        let init = peer.initialize(asked, json!({}));
        assert_eq!(init["protocolVersion"], served, "asked {asked}");
        assert_eq!(init["serverInfo"]["name"], "truenas-mcp");
        assert_eq!(init["serverInfo"].get("title").is_some(), served >= "2025-06-18", "title in {served}");
        assert!(init["capabilities"]["tools"].is_object() && init["capabilities"]["logging"].is_object());
        assert!(init.get("resultType").is_none(), "no resultType in the legacy era");
        let list = peer.request(json!(1), "tools/list", json!({}));
        assert!(result(&list)["tools"].is_array());
        ping_works(&mut peer, 2);
        peer.assert_schema_valid();
    }
}

#[test]
fn ping_works_before_initialize_and_a_second_initialize_is_refused() {
    let mut peer = mock_binary();
    ping_works(&mut peer, 1);
    peer.initialize("2025-06-18", json!({}));
    let again = peer.request(
        json!(2),
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}),
    );
    assert_eq!(error_code(&again), -32600);
    let bad = peer.request(json!(3), "initialize", json!({"capabilities": {}}));
    assert_eq!(error_code(&bad), -32600); // still: already initialized comes first
    peer.assert_schema_valid();

    let mut fresh = mock_binary();
    let bad = fresh.request(json!("i"), "initialize", json!({"capabilities": {}}));
    assert_eq!(error_code(&bad), -32602);
    fresh.assert_schema_valid();
}

#[test]
fn modern_discover_list_and_call_carry_result_type_and_cache_hints() {
    let mut peer = mock_binary();
    let discover = peer.request(json!(1), "server/discover", modern(json!({}), json!({})));
    let r = result(&discover);
    assert_eq!(r["resultType"], "complete");
    assert!(r["supportedVersions"].as_array().unwrap().contains(&json!("2026-07-28")));
    assert!(r["supportedVersions"].as_array().unwrap().contains(&json!("2024-11-05")));
    assert!(r["ttlMs"].is_u64() && r["cacheScope"] == "private");
    assert_eq!(r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "truenas-mcp");
    assert!(r["capabilities"]["tools"].is_object());

    let list = peer.request(json!(2), "tools/list", modern(json!({}), json!({})));
    let r = result(&list);
    assert_eq!(r["resultType"], "complete");
    assert!(r["ttlMs"].is_u64() && r["cacheScope"].is_string() && r["tools"].is_array());

    let call = peer.request(json!(3), "tools/call", modern(json!({"name": "no_such_tool"}), json!({})));
    assert_eq!(error_code(&call), -32602);
    // ping and logging/setLevel do not exist in the modern era
    let ping = peer.request(json!(4), "ping", modern(json!({}), json!({})));
    assert_eq!(error_code(&ping), -32601);
    let missing_caps = peer.request(
        json!(5),
        "tools/list",
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
    );
    assert_eq!(error_code(&missing_caps), -32602);
    peer.assert_schema_valid();
}

#[test]
fn unsupported_modern_version_is_32022_with_the_supported_list() {
    let mut peer = mock_binary();
    let mut params = modern(json!({}), json!({}));
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    for (id, method) in [(1, "server/discover"), (2, "tools/list")] {
        let response = peer.request(json!(id), method, params.clone());
        assert_eq!(error_code(&response), -32022);
        assert_eq!(response["error"]["data"]["requested"], "2099-01-01");
        let supported = response["error"]["data"]["supported"].as_array().unwrap();
        assert!(supported.contains(&json!("2026-07-28")) && supported.contains(&json!("2025-11-25")));
    }
    peer.assert_schema_valid(); // recorded under 2026-07-28: the UnsupportedProtocolVersionError shape
}

#[test]
fn a_client_that_probes_discover_can_fall_back_to_initialize() {
    // A legacy-shaped probe (no envelope) gets a prompt error, never silence; the handshake then works.
    let mut peer = mock_binary();
    let probe = peer.request(json!(1), "server/discover", json!({}));
    assert_eq!(error_code(&probe), -32602);
    let init = peer.initialize("2025-06-18", json!({}));
    assert_eq!(init["protocolVersion"], "2025-06-18");
    ping_works(&mut peer, 2);
    peer.assert_schema_valid();

    // A probe at a version we do not know: -32022 names our versions, including handshake ones, so the client
    // falls back to initialize in the same process.
    let mut peer = mock_binary();
    let mut params = modern(json!({}), json!({}));
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2030-01-01");
    let probe = peer.request(json!(1), "server/discover", params);
    assert_eq!(error_code(&probe), -32022);
    assert_eq!(peer.initialize("2025-11-25", json!({}))["protocolVersion"], "2025-11-25");
    let list = peer.request(json!(2), "tools/list", json!({}));
    assert!(result(&list)["tools"].is_array());
    peer.assert_schema_valid();
}

// ---- malformed input (real binary) --------------------------------------------------------------------------

/// The error code and id a malformed line is answered with; `None` = no answer at all.
type Expected = Option<(i64, Value)>;

#[test]
fn malformed_input_is_answered_and_the_server_keeps_reading() {
    let mut peer = mock_binary();
    peer.initialize("2025-06-18", json!({}));
    // The background check of the NAS reports once; after it, every message here answers the line just sent.
    first_log_message(&mut peer);
    let mut big = vec![b' '; 9 * 1024 * 1024];
    big.extend_from_slice(b"{}\n");
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        ("malformed JSON", b"{\"jsonrpc\": \"2.0\", \"id\": 1,\n".to_vec(), Some((-32700, Value::Null))),
        ("not JSON at all", b"hello\n".to_vec(), Some((-32700, Value::Null))),
        (
            "non-UTF-8 bytes",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}\n".to_vec(),
            Some((-32700, Value::Null)),
        ),
        ("wrong jsonrpc", br#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#.to_vec(), Some((-32600, json!(7)))),
        ("missing jsonrpc", br#"{"id":"s","method":"ping"}"#.to_vec(), Some((-32600, json!("s")))),
        ("null id", br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.to_vec(), Some((-32600, Value::Null))),
        ("fractional id", br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.to_vec(), Some((-32600, Value::Null))),
        ("scalar", b"42".to_vec(), Some((-32600, Value::Null))),
        ("method not a string", br#"{"jsonrpc":"2.0","id":8,"method":5}"#.to_vec(), Some((-32600, json!(8)))),
        ("unknown method", br#"{"jsonrpc":"2.0","id":9,"method":"nope/nope"}"#.to_vec(), Some((-32601, json!(9)))),
        ("unknown notification", br#"{"jsonrpc":"2.0","method":"notifications/nope"}"#.to_vec(), None),
        ("response to nothing", br#"{"jsonrpc":"2.0","id":99,"result":{}}"#.to_vec(), None),
        (
            "cancel of unknown id",
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12345}}"#.to_vec(),
            None,
        ),
        (
            "batch outside 2025-03-26",
            br#"[{"jsonrpc":"2.0","id":10,"method":"ping"}]"#.to_vec(),
            Some((-32600, Value::Null)),
        ),
        ("over-long line", big, Some((-32600, Value::Null))),
        ("blank line", b"   \n".to_vec(), None),
        ("CRLF line end", b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\r\n".to_vec(), None),
        ("byte-order mark", b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}".to_vec(), None),
    ];
    for (i, (label, mut bytes, expected)) in cases.into_iter().enumerate() {
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        peer.send_raw(&bytes);
        if let Some((code, id)) = expected {
            let answer = peer.recv();
            assert_eq!(error_code(&answer), code, "{label}: {answer}");
            assert_eq!(answer["id"], id, "{label}");
            assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{label}");
        }
        // Every case is followed by a working request, and a no-reply case produced nothing before it.
        let ping_id = 1000 + i as i64;
        peer.send(&json!({"jsonrpc": "2.0", "id": ping_id, "method": "ping"}));
        assert_eq!(peer.recv(), json!({"jsonrpc": "2.0", "id": ping_id, "result": {}}), "after {label}");
    }
    peer.assert_schema_valid();
}

#[test]
fn closed_stdout_is_a_clean_exit() {
    let mut peer = mock_binary();
    ping_works(&mut peer, 1);
    peer.close_output();
    thread::sleep(Duration::from_millis(50)); // let our reader thread notice and drop the pipe
    let deadline = Instant::now() + PATIENCE;
    let mut id = 2;
    while peer.child_status().is_none() && Instant::now() < deadline {
        // Writing into a pipe nobody reads: the server's writer gets EPIPE and the server exits.
        peer.send(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
        id += 1;
        thread::sleep(Duration::from_millis(10));
    }
    let status = peer.child_status().expect("the server did not exit after its stdout closed");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn stdin_eof_exits_promptly_with_status_zero() {
    let mut peer = mock_binary();
    peer.initialize("2025-11-25", json!({}));
    ping_works(&mut peer, 1);
    peer.close_input();
    assert_eq!(peer.wait_exit(PATIENCE), Some(true), "exit status 0 after EOF");
    // Promptly: with nothing in flight the server does not wait out its drain timeout. On a clock that never moves
    // that wait could never end, so exiting at all shows it was not taken.
    let opts = ServeOptions { clock: truenas_mcp::clock::ManualClock::new(false), ..ServeOptions::default() };
    let (mut peer, _events) = test_server(opts);
    peer.initialize("2025-11-25", json!({}));
    ping_works(&mut peer, 1);
    peer.close_input();
    assert_eq!(peer.wait_exit(PATIENCE), Some(true), "exit after EOF without waiting for the drain timeout");
    peer.assert_schema_valid();
}

// ---- tools (in-process test catalogue) ----------------------------------------------------------------------

#[test]
fn tools_list_is_ordered_paginated_and_fully_annotated() {
    let (mut peer, _events) = test_server(ServeOptions { page_size: 4, ..ServeOptions::default() });
    peer.initialize("2025-06-18", json!({}));
    let first = peer.request(json!(1), "tools/list", json!({}));
    let tools = result(&first)["tools"].as_array().unwrap().clone();
    let cursor = result(&first)["nextCursor"].as_str().expect("a second page").to_string();
    let second = peer.request(json!(2), "tools/list", json!({"cursor": cursor}));
    assert!(result(&second).get("nextCursor").is_none());
    let names: Vec<&str> =
        tools.iter().chain(result(&second)["tools"].as_array().unwrap()).map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "slow", "boom", "progress", "log", "confirm"]);
    for t in &tools {
        // Only the hints that differ from the spec's defaults are published (wire.rs); every tool here is closed.
        assert_eq!(t["annotations"]["openWorldHint"], false, "{}", t["name"]);
        let read_only = t["annotations"]["readOnlyHint"] == true;
        assert!(read_only || t["annotations"].get("readOnlyHint").is_none(), "{}", t["name"]);
        assert!(t["title"].is_string() && t["inputSchema"]["type"] == "object");
    }
    assert!(tools[0]["outputSchema"].is_object());
    // Same order again (deterministic), and bad cursors are -32602.
    let again = peer.request(json!(3), "tools/list", json!({}));
    assert_eq!(result(&again)["tools"], json!(tools));
    for (id, bad) in [(4, json!("nonsense")), (5, json!(17)), (6, json!("p1.0000000000000000"))] {
        assert_eq!(error_code(&peer.request(json!(id), "tools/list", json!({"cursor": bad}))), -32602);
    }
    peer.assert_schema_valid();
}

#[test]
fn tools_call_validates_arguments_against_the_published_schema() {
    let (mut peer, _events) = default_server();
    peer.initialize("2025-11-25", json!({}));
    let call = |peer: &mut McpPeer, id: i64, args: Value| {
        peer.request(json!(id), "tools/call", json!({"name": "echo", "arguments": args}))
    };

    let ok = call(&mut peer, 1, json!({"message": "hi"}));
    let r = result(&ok);
    assert_eq!(r["isError"], false);
    assert_eq!(r["structuredContent"], json!({"echo": "hi"}), "default times=1 applied");
    assert_eq!(r["content"][0]["text"], "hi");
    assert_eq!(r["content"].as_array().unwrap().len(), 1, "the text once: no JSON copy of structuredContent");

    let cases = [
        (json!({}), "message"),
        (json!({"message": 5}), "message"),
        (json!({"message": "hi", "times": 9}), "times"),
        (json!({"message": "this message is far too long"}), "message"),
        (json!({"message": "hi", "colour": "red"}), "colour"),
    ];
    for (i, (args, field)) in cases.into_iter().enumerate() {
        let response = call(&mut peer, 10 + i as i64, args.clone());
        assert_eq!(result(&response)["isError"], true, "{args}");
        let text = text_of(&response);
        assert!(text.contains(field) && text.contains("echo"), "{args}: {text}");
    }
    let not_object = peer.request(json!(20), "tools/call", json!({"name": "echo", "arguments": [1]}));
    assert_eq!(error_code(&not_object), -32602);
    let unknown = peer.request(json!(21), "tools/call", json!({"name": "nope", "arguments": {}}));
    assert_eq!(error_code(&unknown), -32602);
    let nameless = peer.request(json!(22), "tools/call", json!({"arguments": {}}));
    assert_eq!(error_code(&nameless), -32602);
    peer.assert_schema_valid();
}

#[test]
fn modern_tools_call_with_meta_returns_a_complete_result() {
    let (mut peer, _events) = default_server();
    let response = peer.request(
        json!("m1"),
        "tools/call",
        modern(json!({"name": "echo", "arguments": {"message": "yo", "times": 2}}), json!({})),
    );
    let r = result(&response);
    assert_eq!(r["resultType"], "complete");
    assert_eq!(r["structuredContent"], json!({"echo": "yoyo"}));
    assert_eq!(r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "truenas-mcp");
    peer.assert_schema_valid();
}

#[test]
fn cancellation_stops_the_handler_sends_no_response_and_frees_the_worker() {
    let (mut peer, events) = test_server(ServeOptions { workers: 1, ..ServeOptions::default() });
    peer.initialize("2025-06-18", json!({}));
    peer.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 60000}}}));
    wait_event(&events, "slow started");
    ping_works(&mut peer, 6); // ping is answered while the tool runs
    peer.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "user"}}),
    );
    wait_event(&events, "slow cancelled");
    // The single worker is free again: the next call completes.
    let next = peer.request(json!(7), "tools/call", json!({"name": "echo", "arguments": {"message": "after"}}));
    assert_eq!(text_of(&next), "after");
    ping_works(&mut peer, 8);
    assert!(!answered(&peer, 5), "a cancelled request got a response");
    peer.assert_schema_valid();
}

#[test]
fn progress_is_strictly_increasing_and_stops_with_the_response() {
    let (mut peer, events, gate) = gated_server();
    peer.initialize("2025-06-18", json!({}));
    let response = peer.request(
        json!(1),
        "tools/call",
        json!({"name": "progress", "arguments": {}, "_meta": {"progressToken": "tok"}}),
    );
    assert_eq!(text_of(&response), "progress done");
    let progress: Vec<Value> =
        peer.take_backlog().into_iter().filter(|m| m["method"] == "notifications/progress").collect();
    let values: Vec<f64> = progress.iter().map(|m| m["params"]["progress"].as_f64().unwrap()).collect();
    assert_eq!(values, [1.0, 2.0, 3.0]);
    assert!(progress.iter().all(|m| m["params"]["progressToken"] == "tok" && m["params"]["total"] == 3.0));
    assert_eq!(progress[2]["params"]["message"], "three");
    gate.send(()).unwrap(); // the handler's thread reports again, after the response
    wait_event(&events, "late progress reported");
    ping_works(&mut peer, 2);
    assert!(peer.take_backlog().is_empty(), "a message arrived after the response");

    // Without a progress token, nothing is sent.
    let response = peer.request(json!(3), "tools/call", json!({"name": "progress", "arguments": {}}));
    assert_eq!(text_of(&response), "progress done");
    assert!(peer.take_backlog().is_empty());

    // 2024-11-05 has no progress message field.
    let (mut old, _events) = default_server();
    old.initialize("2024-11-05", json!({}));
    old.request(json!(1), "tools/call", json!({"name": "progress", "arguments": {}, "_meta": {"progressToken": 9}}));
    let progress = old.take_backlog();
    assert_eq!(progress.len(), 3);
    assert!(progress.iter().all(|m| m["params"].get("message").is_none() && m["params"]["progressToken"] == 9));
    peer.assert_schema_valid();
    old.assert_schema_valid();
}

#[test]
fn log_messages_respect_the_level() {
    let (mut peer, _events) = default_server();
    peer.initialize("2025-03-26", json!({}));
    let levels = |peer: &mut McpPeer| -> Vec<String> {
        peer.take_backlog()
            .into_iter()
            .filter(|m| m["method"] == "notifications/message")
            .map(|m| m["params"]["level"].as_str().unwrap().to_string())
            .collect()
    };
    peer.request(json!(1), "tools/call", json!({"name": "log", "arguments": {}}));
    assert_eq!(levels(&mut peer), ["info", "warning", "error"], "default level info");
    assert_eq!(result(&peer.request(json!(2), "logging/setLevel", json!({"level": "warning"}))), &json!({}));
    peer.request(json!(3), "tools/call", json!({"name": "log", "arguments": {}}));
    assert_eq!(levels(&mut peer), ["warning", "error"]);
    peer.request(json!(4), "logging/setLevel", json!({"level": "debug"}));
    peer.request(json!(5), "tools/call", json!({"name": "log", "arguments": {}}));
    assert_eq!(levels(&mut peer), ["debug", "info", "warning", "error"]);
    assert_eq!(error_code(&peer.request(json!(6), "logging/setLevel", json!({"level": "loud"}))), -32602);
    peer.assert_schema_valid();

    // Modern: only with the per-request opt-in, at or above it.
    let (mut peer, _events) = default_server();
    peer.revision = "2026-07-28".into();
    peer.request(json!(1), "tools/call", modern(json!({"name": "log", "arguments": {}}), json!({})));
    assert!(levels(&mut peer).is_empty());
    let mut params = modern(json!({"name": "log", "arguments": {}}), json!({}));
    params["_meta"]["io.modelcontextprotocol/logLevel"] = json!("warning");
    peer.request(json!(2), "tools/call", params);
    assert_eq!(levels(&mut peer), ["warning", "error"]);
    peer.assert_schema_valid();
}

#[test]
fn a_panicking_tool_is_an_internal_error_and_the_server_lives_on() {
    let (mut peer, _events) = test_server(ServeOptions { workers: 1, ..ServeOptions::default() });
    peer.initialize("2025-11-25", json!({}));
    for id in 1..=3 {
        let response = peer.request(json!(id), "tools/call", json!({"name": "boom", "arguments": {}}));
        assert_eq!(error_code(&response), -32603);
        assert!(response["error"]["message"].as_str().unwrap().contains("boom"));
    }
    let after = peer.request(json!(4), "tools/call", json!({"name": "echo", "arguments": {"message": "alive"}}));
    assert_eq!(text_of(&after), "alive");
    peer.assert_schema_valid();
}

#[test]
fn eof_lets_in_flight_work_finish_then_exits() {
    let (mut peer, events) = default_server();
    peer.initialize("2025-06-18", json!({}));
    peer.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 300}}}));
    ping_works(&mut peer, 2); // the call is in flight
    peer.close_input();
    let response = peer.response_to(&json!(1));
    assert_eq!(text_of(&response), "slow done");
    wait_event(&events, "slow finished");
    assert_eq!(peer.wait_exit(Duration::from_secs(1)), Some(true), "exit within a second of the work finishing");
    peer.assert_schema_valid();
}

#[test]
fn duplicate_ids_in_flight_are_refused() {
    let (mut peer, events) = default_server();
    peer.initialize("2025-06-18", json!({}));
    peer.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 60000}}}));
    wait_event(&events, "slow started");
    let dup = peer.request(json!(1), "ping", json!({}));
    assert_eq!(error_code(&dup), -32600);
    peer.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}));
    wait_event(&events, "slow cancelled");
    ping_works(&mut peer, 1); // the id is free again
    peer.assert_schema_valid();
}

#[test]
fn batches_are_processed_in_2025_03_26() {
    let (mut peer, _events) = default_server();
    peer.initialize("2025-03-26", json!({}));
    peer.send(&json!([
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 50}}},
        {"jsonrpc": "2.0", "method": "notifications/nothing"},
        {"jsonrpc": "2.0", "id": "c", "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}},
        {"jsonrpc": "1.0", "id": "d", "method": "ping"},
        {"jsonrpc": "2.0", "id": "e", "method": "nope"},
    ]));
    let answer = peer.recv();
    let items = answer.as_array().unwrap_or_else(|| panic!("expected one batch answer, got {answer}"));
    let mut ids: Vec<&str> = items.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    let by_id = |id: &str| items.iter().find(|m| m["id"] == id).unwrap();
    assert_eq!(text_of(by_id("b")), "slow done");
    assert_eq!(text_of(by_id("c")), "x");
    assert_eq!(error_code(by_id("d")), -32600);
    assert_eq!(error_code(by_id("e")), -32601);
    // Only notifications: no answer at all. Empty batch: -32600.
    peer.send(&json!([{"jsonrpc": "2.0", "method": "notifications/nothing"}]));
    peer.send(&json!([]));
    assert_eq!(error_code(&peer.recv()), -32600);
    ping_works(&mut peer, 1);
    peer.assert_schema_valid();
}

// ---- elicitation --------------------------------------------------------------------------------------------

#[test]
fn legacy_elicitation_asks_the_client_and_routes_the_answer_back() {
    let (mut peer, events) = default_server();
    peer.initialize("2025-06-18", json!({"elicitation": {}}));
    let answers = [
        (json!({"action": "accept", "content": {"confirm": true}}), "accepted"),
        (json!({"action": "decline"}), "declined"),
        (json!({"action": "cancel"}), "cancelled"),
    ];
    for (i, (answer, expected)) in answers.into_iter().enumerate() {
        let id = json!(i + 1);
        peer.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "confirm", "arguments": {}}}));
        let ask = peer.recv();
        assert_eq!(ask["method"], "elicitation/create", "{ask}");
        assert_eq!(ask["params"]["message"], "Delete the app?");
        assert!(ask["params"]["requestedSchema"]["properties"]["confirm"].is_object());
        ping_works(&mut peer, 100 + i as i64); // the main loop stays responsive while the worker waits
        peer.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": answer}));
        let response = peer.response_to(&id);
        assert_eq!(text_of(&response), expected);
    }
    // A client that answers the question with an error has not confirmed anything.
    peer.send(
        &json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "confirm", "arguments": {}}}),
    );
    let ask = peer.recv();
    peer.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "error": {"code": -32603, "message": "no UI"}}));
    assert_eq!(text_of(&peer.response_to(&json!(8))), "cancelled");
    // Cancelling the call while it waits: the server withdraws its question and sends no response.
    while events.try_recv().is_ok() {} // forget the earlier calls' reports
    peer.send(
        &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "confirm", "arguments": {}}}),
    );
    let ask = peer.recv();
    peer.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}));
    let withdrawn = peer.recv();
    assert_eq!(withdrawn["method"], "notifications/cancelled");
    assert_eq!(withdrawn["params"]["requestId"], ask["id"]);
    wait_event(&events, "confirm cancelled");
    ping_works(&mut peer, 10);
    assert!(!answered(&peer, 9), "a cancelled request got a response");
    peer.assert_schema_valid();

    // A client without the capability (or an older revision) is never asked.
    for (version, caps) in [("2025-06-18", json!({})), ("2025-03-26", json!({"elicitation": {}}))] {
        let (mut peer, _events) = default_server();
        peer.initialize(version, caps);
        let response = peer.request(json!(1), "tools/call", json!({"name": "confirm", "arguments": {}}));
        assert_eq!(text_of(&response), "unsupported", "{version}");
        peer.assert_schema_valid();
    }
}

#[test]
fn modern_elicitation_is_an_input_required_round_trip() {
    let (mut peer, _events) = default_server();
    let first = peer.request(
        json!(1),
        "tools/call",
        modern(json!({"name": "confirm", "arguments": {}}), json!({"elicitation": {}})),
    );
    let r = result(&first);
    assert_eq!(r["resultType"], "input_required");
    let ask = &r["inputRequests"]["confirm_delete"];
    assert_eq!(ask["method"], "elicitation/create");
    assert_eq!(ask["params"]["message"], "Delete the app?");
    let retry = modern(
        json!({"name": "confirm", "arguments": {}, "inputResponses": {"confirm_delete": {"action": "accept", "content": {"confirm": true}}}}),
        json!({"elicitation": {}}),
    );
    let second = peer.request(json!(2), "tools/call", retry);
    assert_eq!(result(&second)["resultType"], "complete");
    assert_eq!(result(&second)["structuredContent"]["content"], json!({"confirm": true}));
    let without = peer.request(json!(3), "tools/call", modern(json!({"name": "confirm", "arguments": {}}), json!({})));
    assert_eq!(text_of(&without), "unsupported");
    peer.assert_schema_valid();
}

// ---- resources, prompts, completion -------------------------------------------------------------------------

#[test]
fn resources_prompts_and_completion_are_served_when_the_catalogue_has_them() {
    let (mut peer, _events) = default_server();
    let init = peer.initialize("2025-06-18", json!({}));
    for cap in ["resources", "prompts", "completions"] {
        assert!(init["capabilities"][cap].is_object(), "{cap} declared");
    }
    assert_eq!(init["instructions"], "Test server.");
    let list = peer.request(json!(1), "resources/list", json!({}));
    assert_eq!(result(&list)["resources"][0]["uri"], "test://status");
    let templates = peer.request(json!(2), "resources/templates/list", json!({}));
    assert_eq!(result(&templates)["resourceTemplates"][0]["uriTemplate"], "test://apps/{name}/logs");
    let read = peer.request(json!(3), "resources/read", json!({"uri": "test://status"}));
    assert_eq!(result(&read)["contents"][0]["text"], "all good");
    let missing = peer.request(json!(4), "resources/read", json!({"uri": "test://nope"}));
    assert_eq!(error_code(&missing), -32002);
    let prompts = peer.request(json!(5), "prompts/list", json!({}));
    assert_eq!(result(&prompts)["prompts"][0]["arguments"][0]["required"], true);
    let prompt = peer.request(json!(6), "prompts/get", json!({"name": "diagnose", "arguments": {"app": "plex"}}));
    assert_eq!(result(&prompt)["messages"][0]["content"]["text"], "Why is plex down?");
    let bad_prompt = peer.request(json!(7), "prompts/get", json!({"name": "diagnose"}));
    assert_eq!(error_code(&bad_prompt), -32602);
    let completion = peer.request(
        json!(8),
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "diagnose"}, "argument": {"name": "app", "value": "al"}}),
    );
    assert_eq!(result(&completion)["completion"]["values"], json!(["alpha", "alpine"]));
    peer.assert_schema_valid();

    // Modern list results carry cache hints.
    let modern_list = peer.request(json!(9), "resources/list", modern(json!({}), json!({})));
    assert!(result(&modern_list)["ttlMs"].is_u64() && result(&modern_list)["resultType"] == "complete");
    peer.assert_schema_valid();

    // The real catalogue has them too: declared, and served by the binary.
    let mut binary = mock_binary();
    let init = binary.initialize("2025-06-18", json!({}));
    assert!(init["capabilities"].get("resources").is_some() && init["capabilities"].get("prompts").is_some());
    let listed = binary.request(json!(1), "resources/list", json!({}));
    assert!(result(&listed)["resources"].as_array().is_some_and(|r| !r.is_empty()), "{listed}");
    binary.assert_schema_valid();
}

// ---- robustness -----------------------------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), so the mutated inputs are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Replace one value somewhere in `value` (objects and arrays are walked at random) with an odd one.
fn mutate(value: &mut Value, rng: &mut Rng) {
    let odd = [
        Value::Null,
        json!(1.5),
        json!(-1),
        json!(i64::MAX),
        json!(""),
        json!("x"),
        json!([]),
        json!({}),
        json!(true),
        json!("é\u{0}\u{2028}"),
        json!([[[[[[[[]]]]]]]]),
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
    ];
    match value {
        Value::Object(map) if !map.is_empty() && rng.below(4) != 0 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            if rng.below(5) == 0 {
                map.remove(key);
            } else {
                mutate(map.get_mut(key).unwrap(), rng);
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(items.len());
            mutate(&mut items[i], rng);
        }
        _ => *value = odd[rng.below(odd.len())].clone(),
    }
}

/// Hundreds of mutated requests, notifications and responses (wrong types, missing members, odd ids, truncated
/// lines): the server answers each line with valid JSON or not at all, every answer fits the schema, and a plain
/// request still works at the end.
#[test]
fn mutated_messages_never_break_the_server() {
    let (mut peer, _events) = default_server();
    peer.initialize("2025-06-18", json!({}));
    let corpus = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "a", "times": 2}, "_meta": {"progressToken": "t"}}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"cursor": "p1.0"}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": "debug"}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "test://status"}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "prompts/get", "params": {"name": "diagnose", "arguments": {"app": "x"}}}),
        json!({"jsonrpc": "2.0", "id": 6, "method": "completion/complete", "params": {"ref": {"type": "ref/prompt", "name": "diagnose"}, "argument": {"name": "app", "value": "a"}}}),
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "m"}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
        json!({"jsonrpc": "2.0", "id": 8, "result": {"action": "accept"}}),
        json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..400 {
        let mut message = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut message, &mut rng);
        }
        // Unique ids keep answers apart; mutation may have removed or replaced the id already.
        if message.get("id").is_some_and(Value::is_i64) {
            message["id"] = json!(10_000 + i);
        }
        if message.get("method") == Some(&json!("initialize")) {
            continue;
        }
        let mut line = serde_json::to_vec(&message).unwrap();
        if rng.below(10) == 0 {
            line.truncate(rng.below(line.len())); // a broken line
        }
        line.push(b'\n');
        peer.send_raw(&line);
    }
    ping_works(&mut peer, 99_999);
    let echo =
        peer.request(json!(99_998), "tools/call", json!({"name": "echo", "arguments": {"message": "still here"}}));
    assert_eq!(text_of(&echo), "still here");
    while peer.recv_within(Duration::from_millis(200)).is_some() {}
    peer.assert_schema_valid();
}

/// With debug logging on, every wire message is logged to stderr with secrets masked; stdout stays pure MCP.
#[test]
fn debug_log_shows_the_wire_without_secrets() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::support::binary())
        .arg("--mock")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let secret = "hunter2-do-not-log";
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "no_such_tool", "arguments": {
        "env": {"DB_PASSWORD": secret},
        "compose_yaml": format!("services:\n  db:\n    environment:\n      - POSTGRES_PASSWORD={secret}\n"),
    }}});
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).unwrap();
    writeln!(stdin, "{call}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("< ") && stderr.contains("no_such_tool") && stderr.contains("> "), "{stderr}");
    assert!(!stderr.contains(secret), "a secret reached the log:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("stdout is MCP only")).collect();
    assert_eq!(answers.len(), 2);
    assert_eq!(error_code(&answers[1]), -32602);
}

// ---- golden transcript --------------------------------------------------------------------------------------

/// `actual` matches `expected` where `"*"` matches any value and objects must have exactly the expected members.
fn matches_pattern(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(s), _) if s == "*" => true,
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, v)| a.get(k).is_some_and(|av| matches_pattern(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches_pattern(e, a)),
        _ => expected == actual,
    }
}

/// A whole session through the real binary as newline JSON: `>` lines are sent, `<` lines are the exact answers
/// expected next (`"*"` = any value).
#[test]
fn golden_transcript_through_the_binary() {
    let transcript = r#"
> {"jsonrpc":"2.0","id":"p0","method":"ping"}
< {"jsonrpc":"2.0","id":"p0","result":{}}
> {"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"golden","version":"1"}}}
< {"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":"*","serverInfo":{"name":"truenas-mcp","title":"TrueNAS Custom Apps","version":"*"},"instructions":"*"}}
> {"jsonrpc":"2.0","method":"notifications/initialized"}
> {"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"error"}}
< {"jsonrpc":"2.0","id":2,"result":{}}
> {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope"}}
< {"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"unknown tool 'nope' (tools/list shows the available ones)"}}
> {"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"bogus"}}
< {"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"invalid cursor 'bogus' (use nextCursor from a previous page)"}}
> {"jsonrpc":"2.0","id":5,"method":"frobnicate"}
< {"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"method 'frobnicate' not found"}}
> {"jsonrpc":"2.0","id":6,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}
< {"jsonrpc":"2.0","id":6,"result":{"resultType":"complete","supportedVersions":["2026-07-28","2025-11-25","2025-06-18","2025-03-26","2024-11-05"],"capabilities":"*","instructions":"*","ttlMs":300000,"cacheScope":"private","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"truenas-mcp","title":"TrueNAS Custom Apps","version":"*"}}}}
> {"jsonrpc":"2.0","id":7,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}
< {"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"method 'ping' does not exist in protocol revision 2026-07-28"}}
> {"jsonrpc":"2.0","id":8,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-06-18","io.modelcontextprotocol/clientCapabilities":{}}}}
< {"jsonrpc":"2.0","id":8,"error":{"code":-32022,"message":"*","data":{"supported":["2026-07-28","2025-11-25","2025-06-18","2025-03-26","2024-11-05"],"requested":"2025-06-18"}}}
> {"jsonrpc":"2.0","id":9,"method":"ping"}
< {"jsonrpc":"2.0","id":9,"result":{}}
"#;
    let mut peer = mock_binary();
    peer.revision = "2025-06-18".into();
    for line in transcript.lines().filter(|l| !l.is_empty()) {
        let (direction, json_text) = line.split_at(2);
        let message: Value = serde_json::from_str(json_text).unwrap_or_else(|e| panic!("bad fixture line {line}: {e}"));
        match direction {
            "> " => peer.send(&message),
            "< " => {
                let got = peer.recv();
                assert!(matches_pattern(&message, &got), "expected {message}\n     got {got}");
            }
            _ => panic!("fixture lines start with '> ' or '< ': {line}"),
        }
    }
    peer.close_input();
    assert_eq!(peer.wait_exit(PATIENCE), Some(true));
    assert!(peer.recv_within(Duration::from_millis(100)).is_none(), "nothing after the transcript");
}

/// A 64 MiB line is refused without being held in memory: the server's peak RSS stays far below the line's size.
#[test]
fn an_over_long_line_is_not_buffered() {
    let mut peer = mock_binary();
    ping_works(&mut peer, 1);
    let mut line = vec![b'x'; 64 * 1024 * 1024];
    line.push(b'\n');
    peer.send_raw(&line);
    drop(line);
    let answer = peer.recv();
    assert_eq!(error_code(&answer), -32600);
    assert!(answer["error"]["message"].as_str().unwrap().contains("limit"), "{answer}");
    ping_works(&mut peer, 2);
    let status = std::fs::read_to_string(format!("/proc/{}/status", peer.pid().unwrap())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    assert!(peak_kib < 48 * 1024, "peak RSS {peak_kib} KiB after a 64 MiB line");
    peer.assert_schema_valid();
}

/// With every worker busy and the queue full, a further call is refused at once (not buffered without bound);
/// a call cancelled while queued never runs.
#[test]
fn a_full_queue_refuses_work_and_queued_cancellations_never_run() {
    let (mut peer, events) = test_server(ServeOptions { workers: 1, queue: 1, ..ServeOptions::default() });
    peer.initialize("2025-06-18", json!({}));
    let slow = |id: i64| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 60000}}});
    peer.send(&slow(1));
    wait_event(&events, "slow started"); // 1 occupies the only worker
    peer.send(&slow(2)); // 2 waits in the only queue slot
    let busy = peer.request(json!(3), "tools/call", json!({"name": "echo", "arguments": {"message": "x"}}));
    assert_eq!(error_code(&busy), -32603);
    assert!(busy["error"]["message"].as_str().unwrap().contains("busy"), "{busy}");
    ping_works(&mut peer, 4);
    for id in [2, 1] {
        peer.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}));
    }
    wait_event(&events, "slow cancelled");
    // 2 leaves the queue without running; until then the queue may still be full, so retry while busy.
    let mut id = 5;
    let after = loop {
        let response = peer.request(json!(id), "tools/call", json!({"name": "echo", "arguments": {"message": "free"}}));
        if response.get("error").is_none() || id > 500 {
            break response;
        }
        id += 1;
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(text_of(&after), "free");
    assert!(events.try_recv().is_err(), "the queued, cancelled call ran");
    assert!(!answered(&peer, 1) && !answered(&peer, 2));
    peer.assert_schema_valid();
}

/// Every kind of answer, in every legacy revision, fits that revision's schema (and only uses members it defines).
#[test]
fn every_revision_gets_answers_in_its_own_shape() {
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let (mut peer, _events) = default_server();
        peer.initialize(version, json!({"elicitation": {}}));
        let requests = [
            ("tools/list", json!({})),
            ("tools/call", json!({"name": "echo", "arguments": {"message": "hi"}, "_meta": {"progressToken": 1}})),
            ("tools/call", json!({"name": "echo", "arguments": {}})),
            ("tools/call", json!({"name": "progress", "arguments": {}, "_meta": {"progressToken": "p"}})),
            ("tools/call", json!({"name": "log", "arguments": {}})),
            ("resources/list", json!({})),
            ("resources/templates/list", json!({})),
            ("resources/read", json!({"uri": "test://status"})),
            ("prompts/list", json!({})),
            ("prompts/get", json!({"name": "diagnose", "arguments": {"app": "a"}})),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "diagnose"}, "argument": {"name": "app", "value": ""}}),
            ),
            ("logging/setLevel", json!({"level": "debug"})),
            ("ping", json!({})),
        ];
        for (id, (method, params)) in requests.into_iter().enumerate() {
            let response = peer.request(json!(id + 1), method, params);
            assert!(response.get("result").is_some(), "{version} {method}: {response}");
        }
        // The elicitation request itself (2025-06-18 and later): answer it and check the result too.
        if version >= "2025-06-18" {
            peer.take_backlog(); // progress and log notifications of the calls above
            peer.send(&json!({"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {"name": "confirm", "arguments": {}}}));
            let ask = peer.recv();
            assert_eq!(ask["method"], "elicitation/create", "{version}");
            peer.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "decline"}}));
            assert_eq!(text_of(&peer.response_to(&json!(99))), "declined");
        }
        peer.assert_schema_valid();
    }
}

/// End to end through the binary in mock mode: a real TrueNAS job's progress reaches the client as strictly
/// increasing `notifications/progress` before the response, in both eras.
#[test]
fn real_job_progress_reaches_the_client_in_both_eras() {
    for modern_era in [false, true] {
        let mut peer = mock_binary();
        if !modern_era {
            peer.initialize("2025-06-18", json!({}));
        } else {
            peer.revision = "2026-07-28".into();
        }
        let wrap = |params: Value| if modern_era { modern(params, json!({})) } else { params };
        let list = peer.request(json!(1), "tools/call", wrap(json!({"name": "list_custom_apps", "arguments": {}})));
        let apps = result(&list)["structuredContent"]["apps"].as_array().cloned().unwrap_or_default();
        let stopped = apps
            .iter()
            .find(|a| a["state"] == "STOPPED")
            .unwrap_or_else(|| panic!("the simulator's seed has no STOPPED app to start: {list}"));
        let mut params = wrap(json!({"name": "start_custom_app", "arguments": {"app_name": stopped["name"]}}));
        params["_meta"]["progressToken"] = json!("job");
        let response = peer.request(json!(2), "tools/call", params);
        assert_eq!(result(&response)["isError"], false, "{response}");
        let progress: Vec<f64> = peer
            .take_backlog()
            .iter()
            .filter(|m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == "job")
            .map(|m| m["params"]["progress"].as_f64().unwrap())
            .collect();
        assert!(!progress.is_empty(), "no progress before the response (modern: {modern_era})");
        assert!(progress.windows(2).all(|w| w[0] < w[1]), "not strictly increasing: {progress:?}");
        peer.assert_schema_valid();
    }
}

/// Many overlapping calls with cancellations sprinkled in: every request that was not cancelled gets exactly one
/// response (a result or "busy"), cancelled ones at most one (the cancel may lose the race), none gets two.
#[test]
fn overlapping_calls_and_cancellations_keep_the_books_straight() {
    let (mut peer, _events) = default_server();
    peer.initialize("2025-06-18", json!({}));
    let mut rng = Rng(42);
    let mut cancelled = std::collections::HashSet::new();
    let total = 200;
    for id in 1..=total {
        let params = if id % 3 == 0 {
            json!({"name": "echo", "arguments": {"message": "e"}, "_meta": {"progressToken": id}})
        } else {
            json!({"name": "slow", "arguments": {"ms": rng.below(20)}})
        };
        peer.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}));
        if rng.below(4) == 0 {
            let victim = 1 + rng.below(id as usize) as i64;
            cancelled.insert(victim);
            peer.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": victim}}));
        }
    }
    ping_works(&mut peer, 10_000);
    // Whatever is still running finishes within a few seconds; collect until quiet.
    while peer.recv_within(Duration::from_millis(500)).is_some() {}
    let mut responses = std::collections::HashMap::new();
    for r in &peer.transcript {
        if let (Some(id), None) = (r.message.get("id").and_then(Value::as_i64), r.message.get("method")) {
            *responses.entry(id).or_insert(0) += 1;
        }
    }
    for id in 1..=total {
        let count = responses.get(&id).copied().unwrap_or(0);
        if cancelled.contains(&id) {
            assert!(count <= 1, "cancelled request {id} answered {count} times");
        } else {
            assert_eq!(count, 1, "request {id} answered {count} times");
        }
    }
    peer.assert_schema_valid();
}

// ---- in memory: the server loop over `Connection::memory()`, typed messages, no bytes -----------------------

/// A server on one end of a memory connection; `done` yields its result once `serve_connection` returns.
struct MemoryServer {
    sender: Sender<Message>,
    receiver: Receiver<Message>,
    events: Receiver<String>,
    done: Receiver<anyhow::Result<()>>,
}

fn memory_server() -> MemoryServer {
    let (tx, events) = crossbeam_channel::unbounded();
    let catalog = Arc::new(TestCatalog { events: Mutex::new(tx), gate: None });
    let (server, Connection { sender, receiver }) = Connection::memory();
    let (done_tx, done) = crossbeam_channel::bounded(1);
    thread::spawn(move || done_tx.send(serve_connection(catalog, server, ServeOptions::default())));
    MemoryServer { sender, receiver, events, done }
}

fn typed_request(id: i64, method: &str, params: Value) -> Message {
    Request { id: RequestId::from(id), method: method.into(), params: Some(params) }.into()
}

fn typed_notification(method: &str, params: Value) -> Message {
    Notification { method: method.into(), params: Some(params) }.into()
}

impl MemoryServer {
    fn send(&self, message: Message) {
        self.sender.send(message).expect("the server is listening");
    }

    fn recv(&self) -> Message {
        self.receiver.recv_timeout(PATIENCE).expect("no message from the server within 10 s")
    }

    /// Send a request and return its result, with the messages that came before the response.
    fn call(&self, id: i64, method: &str, params: Value) -> (Value, Vec<Message>) {
        self.send(typed_request(id, method, params));
        let mut before = Vec::new();
        loop {
            match self.recv() {
                Message::Response(Response { id: Some(got), outcome }) if got == RequestId::from(id) => {
                    return (outcome.unwrap_or_else(|e| panic!("request {id} failed: {e}")), before)
                }
                other => before.push(other),
            }
        }
    }

    /// Close the input (drop the client's sender), wait for the server to return, and collect everything it sent
    /// until its end disconnected.
    fn finish(self) -> Vec<Message> {
        let MemoryServer { sender, receiver, done, .. } = self;
        drop(sender);
        let result = done.recv_timeout(PATIENCE).expect("the server did not stop after its input closed");
        result.expect("the server ended with an error");
        receiver.iter().collect()
    }
}

#[test]
fn a_memory_connection_serves_initialize_tools_list_and_a_call() {
    let server = memory_server();
    let (init, _) = server.call(0, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}}));
    assert_eq!(init["protocolVersion"], "2025-06-18");
    assert_eq!(init["instructions"], "Test server.");
    server.send(Notification { method: "notifications/initialized".into(), params: None }.into());

    let (list, _) = server.call(1, "tools/list", json!({}));
    let names: Vec<&str> = list["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "slow", "boom", "progress", "log", "confirm"]);

    let (call, _) = server.call(2, "tools/call", json!({"name": "echo", "arguments": {"message": "hi", "times": 2}}));
    assert_eq!(call["structuredContent"], json!({"echo": "hihi"}));

    // What a reader makes of an unreadable line reaches the loop as `Invalid` and is answered with its error.
    let error = ErrorObject::new(-32700, "parse error: made up by the test");
    server.send(Message::Invalid { id: None, error: error.clone() });
    assert_eq!(server.recv(), Message::Response(Response { id: None, outcome: Err(error) }));

    // Dropping the client's sender is the end of the input: the server returns, and nothing else was sent.
    assert_eq!(server.finish(), []);
}

#[test]
fn a_memory_connection_carries_cancellation_and_progress() {
    let server = memory_server();
    server.call(0, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}}));
    server.send(typed_request(5, "tools/call", json!({"name": "slow", "arguments": {"ms": 60000}})));
    wait_event(&server.events, "slow started");
    server.send(typed_notification("notifications/cancelled", json!({"requestId": 5, "reason": "user"})));
    wait_event(&server.events, "slow cancelled");

    let params = json!({"name": "progress", "arguments": {}, "_meta": {"progressToken": "tok"}});
    let (result, before) = server.call(6, "tools/call", params);
    assert_eq!(result["content"][0]["text"], "progress done");
    let progress: Vec<f64> = before
        .iter()
        .map(|m| match m {
            Message::Notification(n) if n.method == "notifications/progress" => {
                let params = n.params.as_ref().unwrap();
                assert_eq!((&params["progressToken"], &params["total"]), (&json!("tok"), &json!(3.0)));
                params["progress"].as_f64().unwrap()
            }
            other => panic!("only progress precedes the response, got {other:?}"),
        })
        .collect();
    assert_eq!(progress, [1.0, 2.0, 3.0]);
    wait_event(&server.events, "late progress reported"); // after the response: dropped by the closed notifier

    let (pong, _) = server.call(7, "ping", json!({}));
    assert_eq!(pong, json!({}));
    // The cancelled call was never answered, and nothing followed the ping.
    assert_eq!(server.finish(), []);
}

#[test]
fn a_memory_connection_whose_receiver_is_gone_stops_the_server_and_its_calls() {
    let server = memory_server();
    server.send(typed_request(1, "tools/call", json!({"name": "slow", "arguments": {"ms": 60000}})));
    wait_event(&server.events, "slow started");
    let MemoryServer { sender, receiver, events, done } = server;
    drop(receiver); // the client stops listening; the input stays open
    sender.send(typed_request(2, "ping", json!({}))).unwrap();
    // The answer to the ping cannot be delivered, so the server stops without waiting for the call, and asks it to.
    let result = done.recv_timeout(PATIENCE).expect("the server did not stop when its output went away");
    result.expect("a closed output is a clean stop");
    wait_event(&events, "slow cancelled");
}

/// The first `notifications/message` the server sends, waiting for it (other messages are dropped). After
/// `initialized` the binary sends one with the result of its background check of the NAS.
pub fn first_log_message(peer: &mut McpPeer) -> Value {
    let mut seen = peer.take_backlog();
    loop {
        if let Some(i) = seen.iter().position(|m| m["method"] == "notifications/message") {
            return seen.swap_remove(i);
        }
        seen = vec![peer.recv()];
    }
}

/// A server for the binary with `args`, set up as a person would (a password, nothing from the environment).
fn binary_with(args: &[&str]) -> McpPeer {
    let mut command = std::process::Command::new(crate::support::binary());
    command.args(args).env("TRUENAS_PASSWORD", "secret").stderr(std::process::Stdio::inherit());
    for var in ["RUST_LOG", "TRUENAS_URL", "TRUENAS_API_KEY", "TRUENAS_HOST"] {
        command.env_remove(var);
    }
    McpPeer::spawn_command(command)
}

/// Health the client can see: after `initialized` one background check of the NAS arrives as a log message, a
/// warning with the reason and the fix when a setting is wrong (a host that does not resolve), and the server
/// answers meanwhile.
#[test]
fn a_nas_that_does_not_resolve_is_a_warning_log_message_after_initialized() {
    let mut peer = binary_with(&["--host", "nas.invalid"]);
    peer.initialize("2025-06-18", json!({}));
    let listed = peer.request(json!(1), "tools/list", json!({}));
    assert!(!result(&listed)["tools"].as_array().unwrap().is_empty(), "{listed}");
    let log = first_log_message(&mut peer);
    assert_eq!(log["params"]["level"], "warning", "{log}");
    let data = log["params"]["data"].as_str().unwrap();
    assert!(data.to_lowercase().contains("dns") && data.contains("nas.invalid"), "{data}");
    assert!(data.contains("fix: check TRUENAS_HOST"), "{data}");
    assert!(!data.contains("secret"), "{data}");
    peer.assert_schema_valid();
}

/// The same check against the simulator reports what it reached, at `info`.
#[test]
fn a_reachable_nas_is_an_info_log_message_after_initialized() {
    let mut peer = mock_binary();
    peer.initialize("2025-06-18", json!({}));
    let listed = peer.request(json!(1), "tools/list", json!({}));
    assert!(!result(&listed)["tools"].as_array().unwrap().is_empty(), "{listed}");
    let log = first_log_message(&mut peer);
    assert_eq!(log["params"]["level"], "info", "{log}");
    assert!(log["params"]["data"].as_str().unwrap().starts_with("Connected to TrueNAS"), "{log}");
    peer.assert_schema_valid();
}

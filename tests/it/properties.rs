//! Integration tests: properties.
//!
//! Property tests (proptest) of the two parsers that face untrusted input: the MCP line reader + dispatcher with
//! the real tool catalogue (mock mode), fed arbitrary bytes, JSON-ish values and well-formed requests mixed; and the
//! TrueNAS frame codecs of both protocols, whose well-formed messages must decode to exactly what was sent. Then
//! bounded work per input byte: every tool driven through the real binary with strings of 10^3 to 10^6
//! characters, deep nesting, and client text that must never be echoed at length. The
//! compose parser/policy/interpolation properties live in `compose.rs` (compose helper) and the never-panics
//! properties of the codecs in `src/truenas/codec.rs`; they are not repeated here. Case counts are modest on purpose
//! (CI budget); crashers found are kept below as explicit regression cases.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Write};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use truenas_mcp::config::Config;
use truenas_mcp::mcp::{serve_io, ServeOptions};
use truenas_mcp::truenas::codec::{Codec, DdpCodec, EventKind, Incoming, JsonRpcCodec};
use truenas_mcp::truenas::ejson;

use crate::support::{binary, McpPeer};

// ----- the MCP server ---------------------------------------------------------------------------------------------

/// An output that keeps everything written.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<u8>>>);

impl Write for Collected {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run the real catalogue in mock mode over `input` until EOF (and in-flight work) is done; every output line.
fn serve_mock(input: Vec<u8>) -> Vec<Value> {
    let mut config = Config::for_tests();
    config.mock = true;
    let catalog = truenas_mcp::tools::catalog(&config);
    let out = Collected::default();
    let opts = ServeOptions { drain_timeout: Duration::from_secs(30), ..ServeOptions::default() };
    let code = serve_io(catalog, Cursor::new(input), out.clone(), opts);
    assert!(code == ExitCode::SUCCESS, "the server did not exit cleanly");
    let bytes = out.0.lock().unwrap().clone();
    assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "the last output line is unterminated");
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("output line is not JSON ({e}): {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

/// What one input line obliges the server to answer.
#[derive(Debug, PartialEq)]
enum Expect {
    Nothing,
    /// Unparseable: one `-32700` with `id: null`.
    ParseError,
    /// A well-formed request: exactly one response with this id.
    Answer(Value),
    /// Anything else (notifications, odd shapes, batches): no promise beyond valid output.
    Whatever,
}

fn expectation(line: &[u8]) -> Expect {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Expect::Nothing;
    }
    let Ok(text) = std::str::from_utf8(line) else { return Expect::ParseError };
    let Ok(v) = serde_json::from_str::<Value>(text) else { return Expect::ParseError };
    let well_formed = v["jsonrpc"] == "2.0"
        && v["method"].is_string()
        && (v["id"].is_string() || v["id"].is_i64())
        && (v.get("params").is_none() || v["params"].is_object());
    if well_formed {
        Expect::Answer(v["id"].clone())
    } else {
        Expect::Whatever
    }
}

/// Feed `lines` (after an optional handshake) and check the accounting: every output line is JSON, each request
/// answered exactly once, each unparseable line answered `-32700` with `id: null`, no answer to an id never sent.
/// Returns how many obligations (answers and parse errors) were checked.
fn check_lines(lines: &[Vec<u8>], handshake: bool) -> Result<usize, TestCaseError> {
    let mut input = Vec::new();
    if handshake {
        input.extend_from_slice(
            br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"prop","version":"0"}}}"#,
        );
        input.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    }
    let mut wanted: HashMap<String, usize> = HashMap::new();
    let mut parse_errors = 0;
    for line in lines {
        match expectation(line) {
            Expect::Answer(id) => *wanted.entry(id.to_string()).or_default() += 1,
            Expect::ParseError => parse_errors += 1,
            Expect::Nothing | Expect::Whatever => {}
        }
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    let sent_ids: HashSet<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .flat_map(|v| match v {
            Value::Array(items) => items,
            other => vec![other],
        })
        .filter_map(|v| v.get("id").cloned())
        .map(|id| id.to_string())
        .chain(handshake.then(|| "\"init\"".to_string()))
        .collect();
    let output = serve_mock(input);
    let mut answered: HashMap<String, usize> = HashMap::new();
    let mut null_parse_errors = 0;
    for message in output.iter().flat_map(|m| match m {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }) {
        if message.get("method").is_some() {
            continue; // a notification (log message) or a server request
        }
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        if id.is_null() {
            if message["error"]["code"] == -32700 {
                null_parse_errors += 1;
            }
            continue;
        }
        prop_assert!(sent_ids.contains(&id.to_string()), "an answer to id {id} that was never sent: {message}");
        *answered.entry(id.to_string()).or_default() += 1;
    }
    for (id, n) in &wanted {
        // A duplicate id in flight is refused with an error, which is its own answer: one per line sent.
        prop_assert_eq!(answered.get(id).copied().unwrap_or(0), *n, "id {} answered wrongly; output {:?}", id, output);
    }
    prop_assert_eq!(null_parse_errors, parse_errors, "parse errors answered; output {:?}", output);
    Ok(wanted.values().sum::<usize>() + parse_errors)
}

const METHODS: &[&str] = &[
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "initialize",
    "server/discover",
    "no/such/method",
    "notifications/cancelled",
    "",
];

const TOOLS: &[&str] = &[
    "test_connection",
    "list_custom_apps",
    "get_custom_app_status",
    "get_custom_app_config",
    "validate_compose",
    "get_job_status",
    "get_app_stats",
    "stop_custom_app",
    "nonexistent_tool",
];

/// JSON with leaves that sometimes hit real names (apps, levels, URIs) so the dispatcher goes deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(vec![
            "whoami",
            "jellyfin",
            "postgres",
            "debug",
            "info",
            "truenas://apps",
            "",
            "é\u{0}\u{2028}",
            "a-b",
            "services:\n  web:\n    image: nginx\n",
            "${X}",
            "1",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "name",
                        "arguments",
                        "app_name",
                        "uri",
                        "level",
                        "cursor",
                        "compose_yaml",
                        "job_id",
                        "_meta",
                        "progressToken",
                        "ref",
                        "argument",
                        "requestId",
                        "x",
                    ]),
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn params() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        json_value().prop_map(Some),
        (prop::sample::select(TOOLS), json_value()).prop_map(|(name, args)| {
            let args = if args.is_object() { args } else { json!({"app_name": args}) };
            Some(json!({"name": name, "arguments": args}))
        }),
    ]
}

/// One input line: a request, a notification, arbitrary JSON, or arbitrary bytes (never containing `\n`).
fn line(index: usize) -> impl Strategy<Value = Vec<u8>> {
    let request = (prop::sample::select(METHODS), params(), any::<bool>()).prop_map(move |(method, params, id_str)| {
        let id = if id_str { json!(format!("r{index}")) } else { json!(index as i64) };
        let mut m = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            m["params"] = p;
        }
        serde_json::to_vec(&m).unwrap()
    });
    let notification = (prop::sample::select(METHODS), params()).prop_map(|(method, params)| {
        let mut m = json!({"jsonrpc": "2.0", "method": method});
        if let Some(p) = params {
            m["params"] = p;
        }
        serde_json::to_vec(&m).unwrap()
    });
    let any_json = json_value().prop_map(|v| serde_json::to_vec(&v).unwrap());
    let bytes = prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..120);
    let truncated = (json_value(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
        let mut b = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 0, "method": "ping", "params": v})).unwrap();
        b.truncate(cut.index(b.len()));
        b
    });
    prop_oneof![4 => request, 1 => notification, 1 => any_json, 2 => bytes, 1 => truncated]
}

fn lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (1usize..10).prop_flat_map(|n| (0..n).map(line).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever arrives on stdin, after a proper handshake: the server never panics or hangs, writes only JSON
    /// lines, answers every request exactly once and every unparseable line with -32700 / id null.
    #[test]
    fn every_request_answered_exactly_once(input in lines()) {
        check_lines(&input, true)?;
    }

    /// The same without `initialize` first (requests before the handshake still get exactly one answer).
    #[test]
    fn before_the_handshake_too(input in lines()) {
        check_lines(&input, false)?;
    }
}

/// Regression corpus: lines that once looked risky (kept explicit so they run on every build).
#[test]
fn regression_corpus() {
    let cases: Vec<&[u8]> = vec![
        b"",
        b"\r",
        b"\xff\xfe",
        b"{",
        b"null",
        b"[]",
        b"[1,2]",
        b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":\"dup\",\"method\":\"ping\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":\"dup\",\"method\":\"ping\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"get_job_status\",\"arguments\":{\"job_id\":-9223372036854775808}}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"validate_compose\",\"arguments\":{\"compose_yaml\":\"&a [*a]\"}}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"resources/read\",\"params\":{\"uri\":\"truenas://apps/%00\"}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/list\",\"params\":{\"cursor\":\"\\u0000\"}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"initialize\",\"params\":{}}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":11}}",
    ];
    let lines: Vec<Vec<u8>> = cases.iter().map(|c| c.to_vec()).collect();
    // 7 well-formed requests (one id twice) and 2 unparseable lines: the accounting is not vacuous.
    assert_eq!(check_lines(&lines, true).unwrap(), 9);
    assert_eq!(check_lines(&lines, false).unwrap(), 9);
}

// ----- the TrueNAS codecs -----------------------------------------------------------------------------------------

/// JSON the middleware could send as a result: no single-key `$…` objects (those are ejson and get converted).
fn plain_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn request_id() -> impl Strategy<Value = String> {
    "[0-9a-f-]{1,36}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// JSON-RPC: a result, an error and a collection event decode to exactly what was sent.
    #[test]
    fn jsonrpc_frames_round_trip(id in request_id(), value in plain_json(), errno in 1i64..300,
                                 reason in "\\PC{0,40}", collection in "[a-z.]{1,20}", ev in 0usize..3) {
        let ok = json!({"jsonrpc": "2.0", "id": id, "result": value}).to_string();
        prop_assert_eq!(JsonRpcCodec.decode(&ok), Incoming::Response { id: id.clone(), result: Ok(value.clone()) });

        let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": "Method call error",
            "data": {"error": errno, "errname": "EFAULT", "reason": reason, "trace": null, "extra": null}}}).to_string();
        match JsonRpcCodec.decode(&err) {
            Incoming::Response { id: got, result: Err(w) } => {
                prop_assert_eq!(got, id.clone());
                prop_assert_eq!(w.code, Some(-32001));
                prop_assert_eq!(w.errno, Some(errno));
                prop_assert_eq!(w.reason.as_deref(), Some(reason.as_str()));
            }
            other => prop_assert!(false, "{:?}", other),
        }

        let (msg, kind) = [("added", EventKind::Added), ("changed", EventKind::Changed), ("removed", EventKind::Removed)][ev];
        let event = json!({"jsonrpc": "2.0", "method": "collection_update",
            "params": {"msg": msg, "collection": collection, "id": 7, "fields": value}}).to_string();
        prop_assert_eq!(JsonRpcCodec.decode(&event), Incoming::Event {
            collection: collection.clone(), kind, id: Some(json!(7)), fields: Some(value.clone()) });
    }

    /// DDP: the same for the legacy protocol's message shapes.
    #[test]
    fn ddp_frames_round_trip(id in request_id(), value in plain_json(), collection in "[a-z.]{1,20}", ev in 0usize..3) {
        let ok = json!({"msg": "result", "id": id, "result": value}).to_string();
        prop_assert_eq!(DdpCodec.decode(&ok), Incoming::Response { id: id.clone(), result: Ok(value.clone()) });
        let err = json!({"msg": "result", "id": id, "error": {"error": 207, "errname": "ENOTAUTHENTICATED",
            "type": null, "reason": "Not authenticated", "trace": null, "extra": null}}).to_string();
        match DdpCodec.decode(&err) {
            Incoming::Response { id: got, result: Err(w) } => {
                prop_assert_eq!(got, id.clone());
                prop_assert!(w.is_not_authenticated(), "{:?}", w);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        let (msg, kind) = [("added", EventKind::Added), ("changed", EventKind::Changed), ("removed", EventKind::Removed)][ev];
        let event = json!({"msg": msg, "collection": collection, "id": 3, "fields": value}).to_string();
        prop_assert_eq!(DdpCodec.decode(&event), Incoming::Event {
            collection: collection.clone(), kind, id: Some(json!(3)), fields: Some(value.clone()) });
    }

    /// What the client sends is the call it was asked to make (ids, method, positional params), in both protocols.
    #[test]
    fn encoded_calls_carry_exactly_the_call(id in request_id(), method in "[a-z_]{1,10}\\.[a-z_]{1,12}",
                                            params in prop::collection::vec(plain_json(), 0..4)) {
        let params = Value::Array(params);
        let rpc: Value = serde_json::from_str(&JsonRpcCodec.call(&id, &method, &params)).unwrap();
        prop_assert_eq!(rpc, json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let ddp: Value = serde_json::from_str(&DdpCodec.call(&id, &method, &params)).unwrap();
        prop_assert_eq!(ddp, json!({"msg": "method", "id": id, "method": method, "params": params}));
    }

    /// ejson decoding leaves plain JSON alone and turns `$date` wrappers into RFC 3339 strings wherever they are.
    #[test]
    fn ejson_leaves_plain_json_alone(value in plain_json(), ms in 0i64..4_102_444_800_000) {
        prop_assert_eq!(ejson::decode(value.clone()), value.clone());
        let wrapped = json!({"when": {"$date": ms}, "inner": [value, {"$set": [1, 2]}]});
        let decoded = ejson::decode(wrapped);
        let when = decoded["when"].as_str().unwrap_or_default();
        prop_assert!(when.len() >= 20 && when.contains('T'), "{}", when);
        prop_assert_eq!(&decoded["inner"][1], &json!([1, 2]));
    }
}

// ----- bounded work per input byte ---------------------------------------------------------------------------------

/// The most one response line may take when a request carried long client text. Inputs reach 8 MiB (the line
/// limit); an answer that echoes them could reach the same, while everything a tool answers about a long argument
/// (a validation error with a short prefix of it, the simulator's small app data, a compose finding list) fits in a
/// few KiB. 64 KiB leaves room for the largest honest answer and is still far below the 10^5- and 10^6-character
/// strings sent, so an echo cannot hide under it.
const MAX_ANSWER_LINE: usize = 64 * 1024;

/// The compact JSON length of a message (what the server wrote: it writes compact JSON, one message a line).
fn line_len(message: &Value) -> usize {
    serde_json::to_string(message).unwrap().len()
}

fn mock_peer() -> McpPeer {
    let mut peer = McpPeer::spawn_binary(&["--mock"]);
    peer.initialize("2025-06-18", json!({}));
    // The background check of the NAS reports once; after it, every answer follows its request.
    crate::mcp::first_log_message(&mut peer);
    peer
}

fn assert_pings(peer: &mut McpPeer, id: i64) {
    let answer = peer.request(json!(id), "ping", json!({}));
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": id, "result": {}}), "the server stopped answering");
    assert!(peer.child_status().is_none(), "the server exited: {:?}", peer.child_status());
}

/// A valid JSON-RPC response to `id`: version, the id echoed, exactly one of result and error, bounded size.
fn assert_bounded_answer(response: &Value, id: &Value, what: &str) {
    assert_eq!(response["jsonrpc"], "2.0", "{what}");
    assert_eq!(&response["id"], id, "{what}");
    assert!(response.get("result").is_some() != response.get("error").is_some(), "{what}: {response}");
    if let Some(error) = response.get("error") {
        assert!(error["code"].is_i64() && error["message"].is_string(), "{what}: {error}");
    }
    let len = line_len(response);
    assert!(len <= MAX_ANSWER_LINE, "{what}: a {len}-byte answer: {:.300}", response.to_string());
}

/// Issue 10, item 1: a 15 000-letter app name used to overflow the stack in the pattern matcher (exit 134).
#[test]
fn a_15000_letter_app_name_is_refused_and_the_server_lives_on() {
    let mut peer = mock_peer();
    let name = "a".repeat(15_000);
    let answer =
        peer.request(json!(1), "tools/call", json!({"name": "get_custom_app_status", "arguments": {"app_name": name}}));
    assert_eq!(answer["result"]["isError"], true, "{answer:.300}");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("app_name: must be at most 40 characters long, got 15000"), "{text:.300}");
    assert!(!text.contains("pattern"), "the pattern is not checked once a length bound failed: {text:.300}");
    assert!(text.len() < 1024, "{} bytes of error text", text.len());
    assert_pings(&mut peer, 2);
}

/// The same through `truenas-mcp call`: a clean exit 2 with a short error, not an abort.
#[test]
fn call_with_a_130k_letter_app_name_exits_2_with_a_short_error() {
    let arg = format!("app_name={}", "b".repeat(130_000));
    let out = Command::new(binary())
        .args(["call", "get_custom_app_status", &arg])
        .env("MOCK_TRUENAS", "true")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{:?}: {stderr:.300}", out.status);
    assert!(stderr.contains("must be at most 40 characters long, got 130000"), "{stderr:.300}");
    assert!(stderr.len() < 1024, "{} bytes on stderr: {stderr:.300}", stderr.len());
    assert!(out.stdout.is_empty());
}

/// `call` echoes a bad argument or an unknown tool name only as a short prefix.
#[test]
fn call_never_echoes_a_long_argument() {
    let long = "c".repeat(100_000);
    for args in [
        vec![long.clone()],
        vec!["list_custom_apps".into(), long.clone()],
        vec!["list_custom_apps".into(), format!("--args=\"{long}\"")],
    ] {
        let out = Command::new(binary()).arg("call").args(&args).env("MOCK_TRUENAS", "true").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr:.300}");
        assert!(stderr.len() < 2048, "{} bytes on stderr: {stderr:.300}", stderr.len());
        assert!(stderr.contains(" bytes)"), "the error says how much was sent: {stderr:.300}");
    }
}

/// Every place that names client text in an error keeps it to a short prefix (a 4 MiB method name used to come
/// back as a 4 MiB error line).
#[test]
fn client_text_is_echoed_only_as_a_short_prefix() {
    let mut peer = mock_peer();
    let long = "x".repeat(4 * 1024 * 1024);
    let mid = "y".repeat(200_000);
    let modern_meta = |version: &str| {
        json!({"io.modelcontextprotocol/protocolVersion": version,
               "io.modelcontextprotocol/clientCapabilities": {}})
    };
    let cases: Vec<(&str, &str, Value)> = vec![
        ("unknown method", long.as_str(), json!({})),
        ("unknown tool", "tools/call", json!({"name": long, "arguments": {}})),
        ("arguments not an object", "tools/call", json!({"name": "list_custom_apps", "arguments": [mid]})),
        ("unknown resource", "resources/read", json!({"uri": format!("truenas://apps/{long}")})),
        ("unknown prompt", "prompts/get", json!({"name": long})),
        ("prompt argument", "prompts/get", json!({"name": "deploy-compose-app", "arguments": {"app_name": mid}})),
        ("bad cursor", "tools/list", json!({"cursor": long})),
        ("cursor not a string", "tools/list", json!({"cursor": [mid]})),
        ("bad log level", "logging/setLevel", json!({"level": long})),
        ("bad modern version", "tools/list", json!({"_meta": modern_meta(&mid)})),
        (
            "completion",
            "completion/complete",
            json!({"ref": {"type": "ref/resource", "uri": long}, "argument": {"name": "app_name", "value": mid}}),
        ),
    ];
    for (i, (what, method, params)) in cases.into_iter().enumerate() {
        let id = json!(10 + i);
        let answer = peer.request(id.clone(), method, params);
        assert_bounded_answer(&answer, &id, what);
        assert!(line_len(&answer) < 4096, "{what}: {} bytes", line_len(&answer));
    }
    // Malformed envelopes: the offending value is named briefly.
    let malformed = [
        json!({"jsonrpc": mid, "id": 1, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": [mid], "method": "ping"}),
        // Every answer echoes its id: an id as long as the request is refused, not echoed.
        json!({"jsonrpc": "2.0", "id": mid, "method": "ping"}),
    ];
    for (i, line) in malformed.iter().enumerate() {
        peer.send(line);
        let answer = peer.recv();
        assert!(answer["error"]["code"] == -32600, "{answer:.300}");
        assert!(line_len(&answer) < 4096, "malformed envelope {i}: {} bytes", line_len(&answer));
    }
    assert_pings(&mut peer, 99);
}

/// Nesting that follows input length is refused at a fixed depth, never recursed into: 100 000 `[` on a line, a
/// deeply nested tool argument, and deep YAML and `${…}` nesting inside a compose file.
#[test]
fn deep_nesting_is_refused_without_recursion() {
    let mut peer = mock_peer();
    let mut line = "[".repeat(100_000).into_bytes();
    line.push(b'\n');
    peer.send_raw(&line);
    let answer = peer.recv();
    assert_eq!(answer["error"]["code"], -32700, "{answer:.300}");
    assert!(line_len(&answer) < 4096);

    let nested_object = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"validate_compose","arguments":{{"env":{}1{}}}}}}}"#,
        r#"{"a":"#.repeat(100_000),
        "}".repeat(100_000)
    );
    peer.send_raw(format!("{nested_object}\n").as_bytes());
    let answer = peer.recv();
    assert_eq!(answer["error"]["code"], -32700, "{answer:.300}");

    let deep_yaml = format!("services:\n  web:\n    image: {}x{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let deep_interpolation = format!("services:\n  web:\n    image: \"{}x{}\"\n", "${A:-".repeat(900), "}".repeat(900));
    for (i, compose) in [deep_yaml, deep_interpolation].into_iter().enumerate() {
        let id = json!(3 + i);
        let answer = peer.request(
            id.clone(),
            "tools/call",
            json!({"name": "validate_compose", "arguments": {"compose_yaml": compose}}),
        );
        assert_bounded_answer(&answer, &id, "deep compose");
        assert_eq!(answer["result"]["structuredContent"]["valid"], false, "{answer:.300}");
    }
    assert_pings(&mut peer, 9);
}

/// A compose file that names 15 000 different unset variables (as many as fit the compose size limit): linear
/// work and a bounded answer.
#[test]
fn many_unresolved_variables_give_a_bounded_answer() {
    let mut peer = mock_peer();
    let vars: String = (0..15_000).map(|i| format!("$V{i} ")).collect();
    let compose = format!("services:\n  web:\n    image: nginx\n    command: \"{vars}\"\n");
    let answer = peer.request(
        json!(1),
        "tools/call",
        json!({"name": "validate_compose", "arguments": {"compose_yaml": compose}}),
    );
    assert_bounded_answer(&answer, &json!(1), "many unresolved variables");
    assert_pings(&mut peer, 2);
}

/// Pieces of the strings the property below sends: every alphabet a parser or an echo could trip over.
const ALPHABET: &[&str] = &[
    "a", "Z", "7", "-", "_", ".", " ", "$", "{", "}", "${", "(", ")", "[", "]", "\\", "\n", "\r\n", "\t", ":", "'",
    "\"", "#", "&", "*", "!", "%", "é", "日本", "🦀", "\u{2028}", "\u{0}", "\u{feff}",
];

/// `len` characters cycling through `motif`.
fn long_string(motif: &[&str], len: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    for piece in motif.iter().cycle() {
        for c in piece.chars() {
            if n == len {
                return out;
            }
            out.push(c);
            n += 1;
        }
    }
    out
}

/// Arguments that let each tool get past validation (so a long string in one argument reaches the tool's own
/// code): the first enum value, a real app, a small compose file, and `dry_run` where a tool writes.
fn baseline_arguments(schema: &Value) -> Map<String, Value> {
    let mut args = Map::new();
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let value = match (name.as_str(), property["type"].as_str()) {
            (_, Some("string")) if property["enum"].is_array() => property["enum"][0].clone(),
            ("app_name", _) => json!("whoami"),
            ("compose_yaml", _) => json!("services:\n  web:\n    image: nginx:1.27\n"),
            ("dry_run", _) => json!(true),
            _ => continue,
        };
        args.insert(name.clone(), value);
    }
    args
}

/// Stands for the long string in a request line until the escaped string is spliced in.
const SPLICE: &str = "\u{1}long string\u{1}";

/// Every tool of the catalogue, every string argument in turn, strings of 10^3 to 10^6 characters: the server
/// stays alive, answers each call with valid JSON-RPC, and no line it writes exceeds [`MAX_ANSWER_LINE`].
#[test]
fn every_tool_survives_long_strings_in_every_string_argument() {
    let peer = RefCell::new(mock_peer());
    let listed = peer.borrow_mut().request(json!("list"), "tools/list", json!({}));
    let targets: Vec<(String, String, Map<String, Value>)> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|tool| {
            let schema = &tool["inputSchema"];
            let name = tool["name"].as_str().unwrap().to_string();
            let base = baseline_arguments(schema);
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, p)| p["type"] == "string")
                .map(move |(arg, _)| (name.clone(), arg.clone(), base.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(targets.len() >= 15, "the catalogue lost its string arguments: {}", targets.len());
    let next_id = RefCell::new(0i64);
    let drive = |motif: &[&str]| -> Result<(), TestCaseError> {
        let mut peer = peer.borrow_mut();
        for len in [1_000, 10_000, 100_000, 1_000_000] {
            // Escaped once and spliced into each request line: serialising a megabyte through serde_json in a
            // debug build, once per target, was most of this test's time.
            let text = serde_json::to_string(&long_string(motif, len)).unwrap();
            for (tool, arg, base) in &targets {
                let mut args = base.clone();
                args.insert(arg.clone(), json!(SPLICE));
                let id = {
                    let mut n = next_id.borrow_mut();
                    *n += 1;
                    json!(*n)
                };
                let what = format!("{tool}.{arg} with {len} characters of {motif:?}");
                let request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
                let line = request.to_string().replacen(&json!(SPLICE).to_string(), &text, 1) + "\n";
                assert!(line.len() > len, "the long string was not spliced in");
                peer.send_raw(line.as_bytes());
                let answer = peer.response_to(&id);
                assert_bounded_answer(&answer, &id, &what);
                for other in peer.take_backlog() {
                    let len = line_len(&other);
                    prop_assert!(len <= MAX_ANSWER_LINE, "{}: a {}-byte notification", what, len);
                }
            }
        }
        let ping = peer.request(json!("ping"), "ping", json!({}));
        prop_assert_eq!(ping, json!({"jsonrpc": "2.0", "id": "ping", "result": {}}));
        Ok(())
    };
    // Plain letters first: they pass every character class, so a pattern matcher sees the whole string (the
    // backtracking one recursed once per letter). Then mixed alphabets chosen by proptest.
    drive(&["a"]).unwrap();
    drive(&["a", "-", "0"]).unwrap();
    let mixed = prop::collection::vec(prop::sample::select(ALPHABET), 1..16);
    let config = ProptestConfig { cases: 2, failure_persistence: None, ..ProptestConfig::default() };
    proptest::test_runner::TestRunner::new(config).run(&mixed, |motif| drive(&motif)).unwrap();
}

/// A small document whose anchors expand to megabytes is refused as too large, and the answer stays small: the
/// rendering of something that cannot be deployed is not shown.
#[test]
fn an_anchor_expansion_does_not_inflate_the_answer() {
    let items: Vec<String> = (0..1000).map(|i| format!("  - VAR{i}=value-number-{i}-{}", "x".repeat(40))).collect();
    let mut yaml = format!("x-env: &e\n{}\nservices:\n", items.join("\n"));
    for i in 0..60 {
        yaml.push_str(&format!("  s{i}:\n    image: alpine:3\n    environment: *e\n"));
    }
    assert!(yaml.len() < 100_000);
    let out = std::process::Command::new(crate::support::binary())
        .args(["call", "validate_compose", "--json", &format!("compose_yaml={yaml}")])
        .env("TRUENAS_AUDIT_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.len() < 64 * 1024, "{} bytes answer for a {} bytes document", stdout.len(), yaml.len());
    assert!(stdout.contains("too large") || stdout.contains("too-large") || stdout.contains("payload"), "{stdout}");
}

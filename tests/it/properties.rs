//! Integration tests: properties (owned by the proof helper).
//!
//! Property tests (proptest) of the two parsers that face untrusted input: the MCP line reader + dispatcher with
//! the real tool catalogue (mock mode), fed arbitrary bytes, JSON-ish values and well-formed requests mixed; and the
//! TrueNAS frame codecs of both protocols, whose well-formed messages must decode to exactly what was sent. The
//! compose parser/policy/interpolation properties live in `compose.rs` (compose helper) and the never-panics
//! properties of the codecs in `src/truenas/codec.rs`; they are not repeated here. Case counts are modest on purpose
//! (CI budget); crashers found are kept below as explicit regression cases.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value};
use truenas_mcp::config::Config;
use truenas_mcp::mcp::{serve_io, ServeOptions};
use truenas_mcp::truenas::codec::{Codec, DdpCodec, EventKind, Incoming, JsonRpcCodec};
use truenas_mcp::truenas::ejson;

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

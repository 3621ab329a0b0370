//! The two wire protocols behind one interface: JSON-RPC 2.0 (`/api/current`, 25.04+) and legacy DDP
//! (`/websocket`, 24.10). The actor never looks at raw frames; it encodes through [`Codec`] and gets [`Incoming`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::ejson;
use super::error::WireError;
use super::types::WireProtocol;

/// What a collection event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Changed,
    Removed,
}

/// One decoded server message.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// The answer to our request `id` (a call, or a subscription: its result is the server's subscription id).
    Response { id: String, result: Result<Value, WireError> },
    /// `collection_update` / DDP `added|changed|removed`.
    Event { collection: String, kind: EventKind, id: Option<Value>, fields: Option<Value> },
    /// `notify_unsubscribed` / DDP `nosub`: the server ended a subscription, with its error if any.
    Unsubscribed { collection: String, error: Option<WireError> },
    /// An error with no request id (`"id": null`): it concerns the connection, not one call.
    ConnectionError(WireError),
    /// DDP `connected` (handshake done).
    Connected,
    /// DDP `failed` (handshake refused).
    ConnectFailed(String),
    /// Understood and deliberately ignored (DDP `pong`, unknown notifications).
    Ignored(String),
    /// Not JSON or not a message shape we know.
    Malformed(String),
}

/// Encodes requests and decodes server messages for one protocol.
pub trait Codec: Send {
    fn protocol(&self) -> WireProtocol;
    /// The first message after the upgrade, if the protocol has one (DDP `connect`).
    fn handshake(&self) -> Option<String>;
    /// A method call with positional params.
    fn call(&self, id: &str, method: &str, params: &Value) -> String;
    /// Subscribe to a collection; the reply comes back as an [`Incoming::Response`] to `id` whose result is the
    /// server-side subscription id.
    fn subscribe(&self, id: &str, name: &str) -> String;
    /// Unsubscribe `server_id`; the flag says whether the server answers (JSON-RPC does, DDP does not).
    fn unsubscribe(&self, id: &str, server_id: &str) -> (String, bool);
    fn decode(&self, text: &str) -> Incoming;
}

/// The codec for a protocol.
pub fn for_protocol(protocol: WireProtocol) -> Box<dyn Codec> {
    match protocol {
        WireProtocol::JsonRpc => Box::new(JsonRpcCodec),
        WireProtocol::Legacy => Box::new(DdpCodec),
    }
}

/// JSON-RPC 2.0 as served at `/api/current` (reference §1.6).
pub struct JsonRpcCodec;

impl Codec for JsonRpcCodec {
    fn protocol(&self) -> WireProtocol {
        WireProtocol::JsonRpc
    }
    fn handshake(&self) -> Option<String> {
        None
    }
    fn call(&self, id: &str, method: &str, params: &Value) -> String {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": positional(params)}).to_string()
    }
    fn subscribe(&self, id: &str, name: &str) -> String {
        self.call(id, "core.subscribe", &json!([name]))
    }
    fn unsubscribe(&self, id: &str, server_id: &str) -> (String, bool) {
        (self.call(id, "core.unsubscribe", &json!([server_id])), true)
    }
    fn decode(&self, text: &str) -> Incoming {
        let msg = match parse_object(text) {
            Ok(m) => m,
            Err(e) => return Incoming::Malformed(e),
        };
        if let Some(method) = msg.get("method").and_then(Value::as_str) {
            let params = msg.get("params").cloned().unwrap_or(Value::Null);
            return match method {
                "collection_update" => collection_event(&params, params.get("msg").and_then(Value::as_str)),
                "notify_unsubscribed" => unsubscribed(&params),
                other => Incoming::Ignored(format!("notification {other}")),
            };
        }
        let id = match msg.get("id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let result = if let Some(err) = msg.get("error") {
            Err(WireError::from_jsonrpc(err))
        } else if let Some(res) = msg.get("result") {
            Ok(ejson::decode(res.clone()))
        } else {
            return Incoming::Malformed("a response with neither result nor error".into());
        };
        match (id, result) {
            (Some(id), result) => Incoming::Response { id, result },
            (None, Err(e)) => Incoming::ConnectionError(e),
            (None, Ok(_)) => Incoming::Malformed("a result without an id".into()),
        }
    }
}

/// Legacy DDP-style protocol as served at `/websocket` (reference §1.5).
pub struct DdpCodec;

impl Codec for DdpCodec {
    fn protocol(&self) -> WireProtocol {
        WireProtocol::Legacy
    }
    fn handshake(&self) -> Option<String> {
        Some(json!({"msg": "connect", "version": "1", "support": ["1"], "features": []}).to_string())
    }
    fn call(&self, id: &str, method: &str, params: &Value) -> String {
        json!({"msg": "method", "id": id, "method": method, "params": positional(params)}).to_string()
    }
    fn subscribe(&self, id: &str, name: &str) -> String {
        json!({"msg": "sub", "id": id, "name": name}).to_string()
    }
    fn unsubscribe(&self, _id: &str, server_id: &str) -> (String, bool) {
        (json!({"msg": "unsub", "id": server_id}).to_string(), false)
    }
    fn decode(&self, text: &str) -> Incoming {
        let msg = match parse_object(text) {
            Ok(m) => m,
            Err(e) => return Incoming::Malformed(e),
        };
        let kind = msg.get("msg").and_then(Value::as_str).unwrap_or("");
        match kind {
            "result" => {
                let Some(id) = msg.get("id").and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }) else {
                    return match msg.get("error") {
                        Some(e) if !e.is_null() => Incoming::ConnectionError(WireError::from_truenas(e)),
                        _ => Incoming::Malformed("a result without an id".into()),
                    };
                };
                let result = match msg.get("error") {
                    Some(e) if !e.is_null() => Err(WireError::from_truenas(e)),
                    _ => Ok(ejson::decode(msg.get("result").cloned().unwrap_or(Value::Null))),
                };
                Incoming::Response { id, result }
            }
            "ready" => match msg.get("subs").and_then(Value::as_array).and_then(|s| s.first()) {
                // DDP subscriptions are named by the id we chose, so the "server id" is our own.
                Some(Value::String(id)) => Incoming::Response { id: id.clone(), result: Ok(Value::String(id.clone())) },
                _ => Incoming::Malformed("ready without subs".into()),
            },
            "added" | "changed" | "removed" => collection_event(&Value::Object(msg.clone()), Some(kind)),
            "nosub" => unsubscribed(&Value::Object(msg)),
            "connected" => Incoming::Connected,
            "failed" => Incoming::ConnectFailed(format!(
                "the server speaks DDP version {}",
                msg.get("version").and_then(Value::as_str).unwrap_or("?")
            )),
            "pong" | "ping" => Incoming::Ignored(kind.to_string()),
            other => Incoming::Malformed(format!("unknown message kind '{other}'")),
        }
    }
}

fn positional(params: &Value) -> Value {
    match params {
        Value::Null => json!([]),
        Value::Array(_) => params.clone(),
        // The middleware only takes positional params; a single object is the first argument.
        other => json!([other]),
    }
}

fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("a message that is not a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn collection_event(params: &Value, kind: Option<&str>) -> Incoming {
    let kind = match kind {
        Some("added") => EventKind::Added,
        Some("changed") => EventKind::Changed,
        Some("removed") => EventKind::Removed,
        other => return Incoming::Malformed(format!("collection event of unknown kind {other:?}")),
    };
    let Some(collection) = params.get("collection").and_then(Value::as_str) else {
        return Incoming::Malformed("collection event without a collection".into());
    };
    Incoming::Event {
        collection: collection.to_string(),
        kind,
        id: params.get("id").cloned(),
        fields: params.get("fields").cloned().map(ejson::decode),
    }
}

fn unsubscribed(params: &Value) -> Incoming {
    let Some(collection) = params.get("collection").and_then(Value::as_str) else {
        return Incoming::Malformed("unsubscribe notice without a collection".into());
    };
    let error = params.get("error").filter(|e| !e.is_null()).map(WireError::from_truenas);
    Incoming::Unsubscribed { collection: collection.to_string(), error }
}

/// Globally unique request ids: a random per-process prefix and a counter, shaped like a UUID. 25.10 broadcasts
/// other sessions' request ids in job events (`message_ids`), so small integers could be confused with theirs.
pub fn next_request_id() -> String {
    static PREFIX: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (hi, lo) = *PREFIX.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let mut a = RandomState::new().build_hasher();
        a.write_u128(nanos);
        a.write_u32(std::process::id());
        let mut b = RandomState::new().build_hasher();
        b.write_u64(a.finish());
        (a.finish(), b.finish())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_add(lo);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xfff,
        0x8000 | ((n >> 48) & 0x3fff),
        n & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn werr(errno: i64, reason: &str) -> WireError {
        WireError {
            code: Some(-32001),
            message: "Method call error".into(),
            errno: Some(errno),
            errname: Some(if errno == 207 { "ENOTAUTHENTICATED".into() } else { "EFAULT".into() }),
            reason: Some(reason.into()),
            kind: None,
            extra: None,
        }
    }

    #[test]
    fn jsonrpc_decodes_every_message_shape() {
        let cases: Vec<(&str, Incoming)> = vec![
            (
                r#"{"jsonrpc":"2.0","result":{"t":{"$date":0}},"id":"a"}"#,
                Incoming::Response { id: "a".into(), result: Ok(json!({"t": "1970-01-01T00:00:00.000Z"})) },
            ),
            (
                r#"{"jsonrpc":"2.0","result":null,"id":7}"#,
                Incoming::Response { id: "7".into(), result: Ok(Value::Null) },
            ),
            (
                r#"{"jsonrpc":"2.0","id":"b","error":{"code":-32001,"message":"Method call error","data":{"error":207,"errname":"ENOTAUTHENTICATED","reason":"[ENOTAUTHENTICATED] Not authenticated","trace":null,"extra":null}}}"#,
                Incoming::Response { id: "b".into(), result: Err(werr(207, "[ENOTAUTHENTICATED] Not authenticated")) },
            ),
            (
                r#"{"jsonrpc":"2.0","method":"collection_update","params":{"msg":"changed","collection":"core.get_jobs","id":101,"fields":{"state":"RUNNING"}}}"#,
                Incoming::Event {
                    collection: "core.get_jobs".into(),
                    kind: EventKind::Changed,
                    id: Some(json!(101)),
                    fields: Some(json!({"state": "RUNNING"})),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","method":"collection_update","params":{"msg":"removed","collection":"x"}}"#,
                Incoming::Event { collection: "x".into(), kind: EventKind::Removed, id: None, fields: None },
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notify_unsubscribed","params":{"collection":"c:{}","error":null}}"#,
                Incoming::Unsubscribed { collection: "c:{}".into(), error: None },
            ),
            (
                r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Expecting value"},"id":null}"#,
                Incoming::ConnectionError(WireError {
                    code: Some(-32700),
                    message: "Expecting value".into(),
                    errno: None,
                    errname: None,
                    reason: None,
                    kind: None,
                    extra: None,
                }),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"something_new","params":{}}"#,
                Incoming::Ignored("notification something_new".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(JsonRpcCodec.decode(text), want, "for {text}");
        }
        for garbage in ["not json", "[1,2]", r#"{"jsonrpc":"2.0","id":"x"}"#] {
            assert!(matches!(JsonRpcCodec.decode(garbage), Incoming::Malformed(_)), "for {garbage}");
        }
    }

    #[test]
    fn ddp_decodes_every_message_shape() {
        let cases: Vec<(&str, Incoming)> = vec![
            (r#"{"msg":"connected","session":"s"}"#, Incoming::Connected),
            (r#"{"msg":"failed","version":"1"}"#, Incoming::ConnectFailed("the server speaks DDP version 1".into())),
            (
                r#"{"msg":"result","id":"a","result":true}"#,
                Incoming::Response { id: "a".into(), result: Ok(json!(true)) },
            ),
            (
                r#"{"msg":"result","id":"a","error":{"error":207,"errname":"ENOTAUTHENTICATED","type":null,"reason":"Not authenticated","trace":null,"extra":null}}"#,
                Incoming::Response {
                    id: "a".into(),
                    result: Err(WireError { code: None, message: String::new(), ..werr(207, "Not authenticated") }),
                },
            ),
            (r#"{"msg":"ready","subs":["s1"]}"#, Incoming::Response { id: "s1".into(), result: Ok(json!("s1")) }),
            (
                r#"{"msg":"added","collection":"core.get_jobs","id":42,"fields":{"state":"WAITING"}}"#,
                Incoming::Event {
                    collection: "core.get_jobs".into(),
                    kind: EventKind::Added,
                    id: Some(json!(42)),
                    fields: Some(json!({"state": "WAITING"})),
                },
            ),
            (
                r#"{"msg":"removed","collection":"c","id":1}"#,
                Incoming::Event { collection: "c".into(), kind: EventKind::Removed, id: Some(json!(1)), fields: None },
            ),
            (r#"{"msg":"nosub","collection":"c"}"#, Incoming::Unsubscribed { collection: "c".into(), error: None }),
            (r#"{"msg":"pong","id":"x"}"#, Incoming::Ignored("pong".into())),
        ];
        for (text, want) in cases {
            assert_eq!(DdpCodec.decode(text), want, "for {text}");
        }
        assert!(matches!(DdpCodec.decode(r#"{"msg":"weird"}"#), Incoming::Malformed(_)));
    }

    #[test]
    fn encodings_match_the_reference() {
        let rpc = JsonRpcCodec.call("i", "system.info", &Value::Null);
        assert_eq!(
            serde_json::from_str::<Value>(&rpc).unwrap(),
            json!({"jsonrpc":"2.0","id":"i","method":"system.info","params":[]})
        );
        let sub = JsonRpcCodec.subscribe("s", "core.get_jobs");
        assert_eq!(
            serde_json::from_str::<Value>(&sub).unwrap(),
            json!({"jsonrpc":"2.0","id":"s","method":"core.subscribe","params":["core.get_jobs"]})
        );
        let ddp = DdpCodec.call("i", "auth.login", &json!(["u", "p"]));
        assert_eq!(
            serde_json::from_str::<Value>(&ddp).unwrap(),
            json!({"msg":"method","id":"i","method":"auth.login","params":["u","p"]})
        );
        assert_eq!(
            serde_json::from_str::<Value>(&DdpCodec.handshake().unwrap()).unwrap(),
            json!({"msg":"connect","version":"1","support":["1"],"features":[]})
        );
        assert!(!DdpCodec.unsubscribe("x", "s").1);
        assert!(JsonRpcCodec.unsubscribe("x", "s").1);
    }

    proptest::proptest! {
        // Whatever the server (or a proxy in front of it) sends, decoding never panics.
        #[test]
        fn decoding_anything_never_panics(text in ".{0,200}") {
            let _ = JsonRpcCodec.decode(&text);
            let _ = DdpCodec.decode(&text);
        }

        #[test]
        fn decoding_json_shaped_messages_never_panics(
            msg in proptest::sample::select(vec!["result", "ready", "added", "changed", "removed", "nosub", "failed"]),
            id in proptest::option::of("[a-z0-9]{0,8}"),
            num in proptest::num::i64::ANY,
        ) {
            let texts = [
                json!({"msg": msg, "id": id, "subs": [num], "collection": num, "error": num}).to_string(),
                json!({"jsonrpc": "2.0", "id": num, "error": {"code": num, "data": {"extra": [[num]]}}}).to_string(),
                json!({"jsonrpc": "2.0", "method": "collection_update", "params": {"msg": msg, "collection": id}}).to_string(),
            ];
            for t in texts {
                let _ = JsonRpcCodec.decode(&t);
                let _ = DdpCodec.decode(&t);
            }
        }
    }

    #[test]
    fn request_ids_are_unique_and_uuid_shaped() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| next_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        let one = ids.iter().next().unwrap();
        let groups: Vec<usize> = one.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12], "{one}");
    }
}

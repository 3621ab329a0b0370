//! JSON-RPC 2.0 building blocks shared by the MCP side and the TrueNAS side: ids, error objects, classification of
//! incoming values into requests / notifications / responses, and newline framing with a hard length cap.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How many characters of client-sent text an error message may quote.
pub const CLIP_CHARS: usize = 64;

/// Client-sent text as quoted in an error, result or log line: unchanged when short, else its first
/// [`CLIP_CHARS`] characters, `…` and its size, so no answer grows with what was sent (a 4 MiB method name must not
/// come back as a 4 MiB error). Costs at most `CLIP_CHARS` characters of scanning.
pub fn clip(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(CLIP_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len())),
    }
}

/// A request id: an integer or a string, echoed verbatim (`7` and `"7"` are different ids). The representation is
/// private so every string id went through [`RequestId::from_value`] and its length cap.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(IdRepr);

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
enum IdRepr {
    Int(i64),
    Str(String),
}

impl From<i64> for RequestId {
    fn from(id: i64) -> RequestId {
        RequestId(IdRepr::Int(id))
    }
}

/// Longest string id accepted. Every response echoes its id, so an unbounded id would make every answer as long
/// as the request; real clients send numbers or UUIDs.
pub const MAX_ID_BYTES: usize = 256;

impl RequestId {
    /// The id in `value`, if it is a valid one (a string of at most [`MAX_ID_BYTES`] or an integer that fits
    /// `i64`; never null or fractional).
    pub fn from_value(value: &Value) -> Option<RequestId> {
        match value {
            Value::String(s) if s.len() <= MAX_ID_BYTES => Some(RequestId(IdRepr::Str(s.clone()))),
            Value::Number(n) => n.as_i64().map(RequestId::from),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match &self.0 {
            IdRepr::Int(i) => Value::from(*i),
            IdRepr::Str(s) => Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            IdRepr::Int(i) => write!(f, "{i}"),
            IdRepr::Str(s) => write!(f, "{:?}", clip(s)),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

impl ErrorObject {
    pub fn new(code: i64, message: impl Into<String>) -> ErrorObject {
        ErrorObject { code, message: message.into(), data: None }
    }
    pub fn with_data(mut self, data: Value) -> ErrorObject {
        self.data = Some(data);
        self
    }
    pub fn parse_error(message: impl Into<String>) -> ErrorObject {
        ErrorObject::new(PARSE_ERROR, message)
    }
    pub fn invalid_request(message: impl Into<String>) -> ErrorObject {
        ErrorObject::new(INVALID_REQUEST, message)
    }
    pub fn method_not_found(method: &str) -> ErrorObject {
        ErrorObject::new(METHOD_NOT_FOUND, format!("method '{}' not found", clip(method)))
    }
    pub fn invalid_params(message: impl Into<String>) -> ErrorObject {
        ErrorObject::new(INVALID_PARAMS, message)
    }
    pub fn internal(message: impl Into<String>) -> ErrorObject {
        ErrorObject::new(INTERNAL_ERROR, message)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({"code": self.code, "message": self.message}))
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A request: has an id and expects exactly one response.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub method: String,
    pub params: Option<Value>,
}

/// A notification: no id, never answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Option<Value>,
}

/// A response to a request we sent. `id` is `None` when the peer answered with `id: null` (it could not read ours).
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub id: Option<RequestId>,
    pub outcome: Result<Value, ErrorObject>,
}

/// One classified JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request(Request),
    Notification(Notification),
    Response(Response),
}

/// A JSON value that is not a valid JSON-RPC message (answered with `-32600`); `id` is set when one was readable.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidMessage {
    pub id: Option<RequestId>,
    pub reason: String,
}

impl InvalidMessage {
    fn new(id: Option<RequestId>, reason: impl Into<String>) -> InvalidMessage {
        InvalidMessage { id, reason: reason.into() }
    }
    pub fn to_error(&self) -> ErrorObject {
        ErrorObject::invalid_request(format!("invalid request: {}", self.reason))
    }
}

impl Message {
    /// Classify one JSON value (not an array: batches are the caller's business).
    pub fn from_value(value: Value) -> Result<Message, InvalidMessage> {
        let Value::Object(mut obj) = value else {
            return Err(InvalidMessage::new(None, "expected a JSON-RPC 2.0 message object"));
        };
        let raw_id = obj.remove("id");
        let id = raw_id.as_ref().and_then(RequestId::from_value);
        match obj.get("jsonrpc") {
            Some(Value::String(v)) if v == "2.0" => {}
            Some(other) => {
                return Err(InvalidMessage::new(
                    id,
                    format!("\"jsonrpc\" must be \"2.0\", got {}", clip(&other.to_string())),
                ));
            }
            None => return Err(InvalidMessage::new(id, "the \"jsonrpc\": \"2.0\" member is missing")),
        }
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else {
                return Err(InvalidMessage::new(id, "\"method\" must be a string"));
            };
            let params = match obj.remove("params") {
                None | Some(Value::Null) => None,
                Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
                Some(_) => return Err(InvalidMessage::new(id, "\"params\" must be an object")),
            };
            return match raw_id {
                None => Ok(Message::Notification(Notification { method, params })),
                Some(raw) => match id {
                    Some(id) => Ok(Message::Request(Request { id, method, params })),
                    None => Err(InvalidMessage::new(
                        None,
                        format!(
                            "the request id must be a string of at most {MAX_ID_BYTES} bytes or an integer, got {}",
                            clip(&raw.to_string())
                        ),
                    )),
                },
            };
        }
        let result = obj.remove("result");
        let error = obj.remove("error");
        let outcome = match (result, error) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => match serde_json::from_value::<ErrorObject>(error) {
                Ok(e) => Err(e),
                Err(_) => return Err(InvalidMessage::new(id, "\"error\" must be an object with code and message")),
            },
            (Some(_), Some(_)) => return Err(InvalidMessage::new(id, "a response cannot carry both result and error")),
            (None, None) => return Err(InvalidMessage::new(id, "a message needs \"method\", \"result\" or \"error\"")),
        };
        Ok(Message::Response(Response { id, outcome }))
    }
}

/// A success response as a JSON value.
pub fn response(id: &RequestId, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.to_value(), "result": result})
}

/// An error response; `id` is `None` (serialized as `null`) when the request's id could not be read.
pub fn error_response(id: Option<&RequestId>, error: &ErrorObject) -> Value {
    json!({"jsonrpc": "2.0", "id": id.map_or(Value::Null, RequestId::to_value), "error": error.to_value()})
}

/// One newline-delimited frame read by [`read_frame`].
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line (without its `\n` / `\r\n`) is in the caller's buffer.
    Line,
    /// A line longer than the cap: its bytes were read and thrown away, never stored.
    TooLong {
        len: usize,
    },
    Eof,
}

/// Read one `\n`-terminated frame into `line` (cleared first), keeping at most `cap` bytes; a longer line is
/// consumed and reported as [`Frame::TooLong`] without growing the buffer past `cap`.
pub fn read_frame<R: BufRead + ?Sized>(reader: &mut R, cap: usize, line: &mut Vec<u8>) -> io::Result<Frame> {
    line.clear();
    let mut dropped = 0usize;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            // EOF: a final line without a newline still counts; the next call reports Eof.
            if dropped > 0 {
                return Ok(Frame::TooLong { len: dropped });
            }
            if line.is_empty() {
                return Ok(Frame::Eof);
            }
            trim_cr(line);
            return Ok(Frame::Line);
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        if dropped == 0 && line.len() + chunk.len() <= cap {
            // Grow by doubling, but never past the cap (plain doubling could reserve up to twice the cap).
            let needed = line.len() + chunk.len();
            if needed > line.capacity() {
                let target = needed.max(line.capacity().saturating_mul(2)).min(cap);
                line.reserve_exact(target - line.len());
            }
            line.extend_from_slice(chunk);
        } else {
            dropped += line.len() + chunk.len();
            line.clear();
            line.shrink_to(64 * 1024);
        }
        let consumed = newline.map_or(available.len(), |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            if dropped > 0 {
                return Ok(Frame::TooLong { len: dropped });
            }
            trim_cr(line);
            return Ok(Frame::Line);
        }
    }
}

fn trim_cr(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let cases: &[(&str, Result<Message, Option<RequestId>>)] = &[
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
                Ok(Message::Request(Request { id: RequestId::from(7), method: "ping".into(), params: None })),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"7","method":"ping","params":{}}"#,
                Ok(Message::Request(Request {
                    id: RequestId::from_value(&json!("7")).unwrap(),
                    method: "ping".into(),
                    params: Some(json!({})),
                })),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Ok(Message::Notification(Notification { method: "notifications/initialized".into(), params: None })),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"result":{"action":"accept"}}"#,
                Ok(Message::Response(Response {
                    id: Some(RequestId::from(3)),
                    outcome: Ok(json!({"action":"accept"})),
                })),
            ),
            (r#"{"jsonrpc":"1.0","id":4,"method":"ping"}"#, Err(Some(RequestId::from(4)))),
            (r#"{"id":4,"method":"ping"}"#, Err(Some(RequestId::from(4)))),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, Err(None)),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, Err(None)),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, Err(None)),
            (r#"{"jsonrpc":"2.0","id":5,"method":3}"#, Err(Some(RequestId::from(5)))),
            (r#"{"jsonrpc":"2.0","id":5,"method":"x","params":3}"#, Err(Some(RequestId::from(5)))),
            (r#"{"jsonrpc":"2.0","id":5}"#, Err(Some(RequestId::from(5)))),
            (r#"{"jsonrpc":"2.0","id":5,"result":1,"error":{"code":1,"message":"x"}}"#, Err(Some(RequestId::from(5)))),
            (r#"[]"#, Err(None)),
            (r#"42"#, Err(None)),
            (r#""ping""#, Err(None)),
        ];
        for (input, expected) in cases {
            let got = Message::from_value(serde_json::from_str(input).unwrap());
            match (got, expected) {
                (Ok(m), Ok(e)) => assert_eq!(&m, e, "{input}"),
                (Err(m), Err(id)) => assert_eq!(&m.id, id, "{input}"),
                (got, _) => panic!("{input}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn frames_lines_and_caps_length() {
        let input = b"abc\r\n\nthis line is too long\nxyz".to_vec();
        let mut reader = io::BufReader::with_capacity(4, &input[..]);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            let frame = read_frame(&mut reader, 8, &mut line).unwrap();
            assert!(line.capacity() <= 8, "the buffer never grows past the cap");
            seen.push((String::from_utf8(line.clone()).unwrap(), frame));
            if seen.last().unwrap().1 == Frame::Eof {
                break;
            }
        }
        assert_eq!(
            seen,
            vec![
                ("abc".to_string(), Frame::Line),
                (String::new(), Frame::Line),
                (String::new(), Frame::TooLong { len: 21 }),
                ("xyz".to_string(), Frame::Line),
                (String::new(), Frame::Eof),
            ]
        );
    }

    proptest::proptest! {
        /// Whatever the bytes, the cap and the read chunking, frames are exactly the `\n`-separated lines, with
        /// lines longer than the cap reported by length only.
        #[test]
        fn frames_are_the_lines_whatever_the_chunking(
            data in proptest::collection::vec(proptest::prop_oneof![3 => proptest::num::u8::ANY, 1 => proptest::strategy::Just(b'\n')], 0..600),
            cap in 1usize..40,
            chunk in 1usize..50,
        ) {
            let mut expected = Vec::new();
            let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            if pieces.last().is_some_and(|p| p.is_empty()) {
                pieces.pop(); // the text ended with a newline (or was empty)
            }
            for piece in pieces {
                if piece.len() > cap {
                    expected.push((Vec::new(), Frame::TooLong { len: piece.len() }));
                } else {
                    let mut line = piece.to_vec();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    expected.push((line, Frame::Line));
                }
            }
            expected.push((Vec::new(), Frame::Eof));
            let mut reader = io::BufReader::with_capacity(chunk, &data[..]);
            let mut line = Vec::new();
            let mut got = Vec::new();
            loop {
                let frame = read_frame(&mut reader, cap, &mut line).unwrap();
                proptest::prop_assert!(line.capacity() <= cap.max(64 * 1024));
                let done = frame == Frame::Eof;
                got.push((if frame == Frame::Line { line.clone() } else { Vec::new() }, frame));
                if done {
                    break;
                }
            }
            proptest::prop_assert_eq!(got, expected);
        }

        /// Any JSON value classifies without panicking, and a request always has a valid id and a method.
        #[test]
        fn classification_is_total(value in json_value()) {
            let raw = value.clone();
            match Message::from_value(value) {
                Ok(Message::Request(r)) => {
                    proptest::prop_assert_eq!(Some(r.id.to_value()), raw.get("id").cloned());
                    proptest::prop_assert_eq!(raw.get("jsonrpc"), Some(&json!("2.0")));
                }
                Ok(Message::Notification(_)) => proptest::prop_assert!(raw.get("id").is_none()),
                Ok(Message::Response(_)) => proptest::prop_assert!(raw.get("method").is_none()),
                Err(_) => {}
            }
        }
    }

    /// JSON values biased towards JSON-RPC member names and values.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            proptest::sample::select(vec!["2.0", "1.0", "ping", "tools/call", ""]).prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            let names = proptest::sample::select(vec![
                "jsonrpc", "id", "method", "params", "result", "error", "code", "message",
            ]);
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(names.prop_map(String::from), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn clip_keeps_short_text_and_a_prefix_of_long_text() {
        assert_eq!(clip("tools/call"), "tools/call");
        let exact = "é".repeat(CLIP_CHARS);
        assert!(matches!(clip(&exact), Cow::Borrowed(_)));
        let long = format!("{exact}é");
        assert_eq!(clip(&long), format!("{exact}… ({} bytes)", long.len()));
        let huge = "x".repeat(4 << 20);
        assert!(clip(&huge).len() < 100);
        assert!(ErrorObject::method_not_found(&huge).message.len() < 120);
    }

    #[test]
    fn ids_round_trip_verbatim() {
        for v in [json!(7), json!("7"), json!(-1), json!("")] {
            assert_eq!(RequestId::from_value(&v).unwrap().to_value(), v);
        }
        assert_eq!(RequestId::from_value(&json!(u64::MAX)), None);
        assert_eq!(RequestId::from_value(&json!("i".repeat(MAX_ID_BYTES + 1))), None);
    }
}

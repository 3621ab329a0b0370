//! The typed messages that travel over a [`Connection`](crate::mcp::Connection): what the server loop reads and
//! writes instead of bytes, so it does not know whether a pipe, a socket or a test sits on the other side.

use serde_json::{json, Value};

use crate::jsonrpc::{self, ErrorObject, InvalidMessage, Notification, Request, RequestId, Response};

/// One message in either direction. Requests, notifications and responses are the JSON-RPC ones; `Batch` is the
/// 2025-03-26 array form; `Invalid` is what a reader makes of a line that is not a JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request(Request),
    Notification(Notification),
    Response(Response),
    /// A JSON array of messages. Its items are never batches themselves (a nested array is `Invalid`).
    Batch(Vec<Message>),
    /// A line that is not JSON, too long, or JSON that is not JSON-RPC: answered with `error`, echoing `id` when one
    /// was readable (`null` otherwise). Only readers produce it; it has no wire form of its own.
    Invalid {
        id: Option<RequestId>,
        error: ErrorObject,
    },
}

impl From<Request> for Message {
    fn from(request: Request) -> Message {
        Message::Request(request)
    }
}

impl From<Notification> for Message {
    fn from(notification: Notification) -> Message {
        Message::Notification(notification)
    }
}

impl From<Response> for Message {
    fn from(response: Response) -> Message {
        Message::Response(response)
    }
}

impl From<InvalidMessage> for Message {
    fn from(invalid: InvalidMessage) -> Message {
        Message::Invalid { error: invalid.to_error(), id: invalid.id }
    }
}

impl From<jsonrpc::Message> for Message {
    fn from(message: jsonrpc::Message) -> Message {
        match message {
            jsonrpc::Message::Request(r) => r.into(),
            jsonrpc::Message::Notification(n) => n.into(),
            jsonrpc::Message::Response(r) => r.into(),
        }
    }
}

impl Message {
    /// Classify one parsed line: an array is a batch of classified items, anything else one message.
    pub fn from_value(value: Value) -> Message {
        match value {
            Value::Array(items) => Message::Batch(items.into_iter().map(Message::from_item).collect()),
            value => Message::from_item(value),
        }
    }

    /// Classify one value that must be a single message (an array here is invalid, so batches never nest).
    pub fn from_item(value: Value) -> Message {
        jsonrpc::Message::from_value(value).map_or_else(Message::from, Message::from)
    }

    /// The JSON form to write; `None` for [`Message::Invalid`], which only readers produce.
    pub fn to_value(&self) -> Option<Value> {
        Some(match self {
            Message::Request(r) => {
                with_params(json!({"jsonrpc": "2.0", "id": r.id.to_value(), "method": r.method}), &r.params)
            }
            Message::Notification(n) => with_params(json!({"jsonrpc": "2.0", "method": n.method}), &n.params),
            Message::Response(Response { id: Some(id), outcome: Ok(result) }) => jsonrpc::response(id, result.clone()),
            Message::Response(Response { id: None, outcome: Ok(result) }) => {
                json!({"jsonrpc": "2.0", "id": null, "result": result})
            }
            Message::Response(Response { id, outcome: Err(error) }) => jsonrpc::error_response(id.as_ref(), error),
            Message::Batch(items) => Value::Array(items.iter().filter_map(Message::to_value).collect()),
            Message::Invalid { .. } => return None,
        })
    }

    /// A notification with `params`.
    pub fn notification(method: &str, params: Value) -> Message {
        Message::Notification(Notification { method: method.to_string(), params: Some(params) })
    }
}

fn with_params(mut message: Value, params: &Option<Value>) -> Value {
    if let Some(params) = params {
        message["params"] = params.clone();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_classify_into_typed_messages_and_back() {
        let cases = [
            r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{"action":"accept"}}"#,
            r#"{"jsonrpc":"2.0","id":4,"error":{"code":-1,"message":"no"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"}]"#,
        ];
        for line in cases {
            let value: Value = serde_json::from_str(line).unwrap();
            let message = Message::from_value(value.clone());
            assert!(!matches!(message, Message::Invalid { .. }), "{line}: {message:?}");
            assert_eq!(message.to_value(), Some(value), "{line}");
        }
    }

    #[test]
    fn invalid_values_keep_their_readable_id_and_batches_do_not_nest() {
        let message = Message::from_value(json!({"id": 4, "method": "ping"}));
        let Message::Invalid { id, error } = &message else { panic!("{message:?}") };
        assert_eq!((id, error.code), (&Some(RequestId::from(4)), jsonrpc::INVALID_REQUEST));
        assert_eq!(message.to_value(), None);

        let Message::Batch(items) = Message::from_value(json!([[{"jsonrpc": "2.0", "method": "x"}]])) else {
            panic!("an array is a batch")
        };
        assert!(matches!(&items[..], [Message::Invalid { id: None, .. }]), "{items:?}");
    }
}

//! What a running tool call is given: a notifier for progress and log messages (silenced once the response is
//! due) and an elicitor for the call's era (server→client request in the legacy era, `input_required` in the modern).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use serde_json::{json, Map, Value};

use crate::jsonrpc::ErrorObject;
use crate::mcp::msg::Message;
use crate::mcp::protocol::Envelope;
use crate::mcp::tool::{Elicitation, Elicitor, LogLevel, LogSink, ProgressSink, ToolOutput};

/// The legacy session's log threshold, shared with every call (`logging/setLevel` changes it mid-flight).
#[derive(Clone)]
pub struct SessionLogLevel(Arc<AtomicU8>);

impl SessionLogLevel {
    pub fn new(level: LogLevel) -> SessionLogLevel {
        SessionLogLevel(Arc::new(AtomicU8::new(level as u8)))
    }
    pub fn set(&self, level: LogLevel) {
        self.0.store(level as u8, Ordering::SeqCst)
    }
    pub fn get(&self) -> LogLevel {
        LogLevel::ALL[usize::from(self.0.load(Ordering::SeqCst)).min(LogLevel::ALL.len() - 1)]
    }
}

/// Which log messages a call may send.
#[derive(Clone)]
pub enum LogThreshold {
    /// Legacy era: the session level.
    Session(SessionLogLevel),
    /// Modern era: this request's `_meta` opt-in; `None` = nothing.
    Request(Option<LogLevel>),
}

struct NotifierState {
    /// `None` once closed: dropping the sender then lets the connection close even while a handler still runs.
    out: Option<Sender<Message>>,
    last_progress: Option<f64>,
}

/// Sends a call's `notifications/progress` and `notifications/message`; [`CallNotifier::close`] silences it
/// before the response is written, so nothing about a call ever follows its response.
pub struct CallNotifier {
    progress_token: Option<Value>,
    progress_message: bool,
    logs: LogThreshold,
    state: Mutex<NotifierState>,
}

impl CallNotifier {
    pub fn new(
        out: Sender<Message>,
        env: &Envelope,
        progress_token: Option<Value>,
        logs: LogThreshold,
    ) -> CallNotifier {
        CallNotifier {
            progress_token,
            progress_message: env.revision.has_progress_message(),
            logs,
            state: Mutex::new(NotifierState { out: Some(out), last_progress: None }),
        }
    }

    /// No more messages for this call. Returns once any message being sent concurrently is queued.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).out = None;
    }
}

impl ProgressSink for CallNotifier {
    fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let Some(token) = &self.progress_token else { return };
        if !progress.is_finite() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.out.is_none() || state.last_progress.is_some_and(|last| progress <= last) {
            return;
        }
        state.last_progress = Some(progress);
        let mut params = json!({"progressToken": token, "progress": progress});
        if let Some(total) = total.filter(|t| t.is_finite()) {
            params["total"] = Value::from(total);
        }
        if let (Some(message), true) = (message, self.progress_message) {
            params["message"] = Value::from(message);
        }
        if let Some(out) = &state.out {
            let _ = out.send(Message::notification("notifications/progress", params));
        }
    }
}

impl LogSink for CallNotifier {
    fn log(&self, level: LogLevel, logger: &str, data: Value) {
        let threshold = match &self.logs {
            LogThreshold::Session(session) => Some(session.get()),
            LogThreshold::Request(level) => *level,
        };
        if threshold.map_or(true, |t| level < t) {
            return;
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(out) = &state.out else { return };
        let params = json!({"level": level.as_str(), "logger": logger, "data": data});
        let _ = out.send(Message::notification("notifications/message", params));
    }
}

/// A server→client request a worker needs answered; the main loop sends it and routes the reply back.
pub struct Ask {
    pub call: u64,
    pub method: &'static str,
    pub params: Value,
    pub reply: Sender<Result<Value, ErrorObject>>,
}

/// The `elicitation/create` params for a form question.
fn elicitation_params(env: &Envelope, message: &str, schema: Value) -> Value {
    let mut params = json!({"message": message, "requestedSchema": schema});
    if env.revision.has_elicitation_mode() {
        params["mode"] = Value::from("form");
    }
    params
}

/// Read a client's `ElicitResult`.
fn elicitation_outcome(result: &Value) -> Elicitation {
    match result.get("action").and_then(Value::as_str) {
        Some("accept") => Elicitation::Accepted(result.get("content").cloned().unwrap_or_else(|| json!({}))),
        Some("decline") => Elicitation::Declined,
        _ => Elicitation::Cancelled,
    }
}

/// Legacy era: asks with a server→client `elicitation/create` request and blocks until the main loop routes the
/// answer back (or tells it the call was cancelled or the input closed).
pub struct LegacyElicitor<E> {
    pub env: Envelope,
    pub call: u64,
    pub events: Sender<E>,
    pub wrap: fn(Ask) -> E,
}

impl<E: Send + 'static> Elicitor for LegacyElicitor<E> {
    fn elicit(&self, _key: &str, message: &str, schema: Value) -> Elicitation {
        if !self.env.client_can_elicit() {
            return Elicitation::Unsupported;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ask = Ask {
            call: self.call,
            method: "elicitation/create",
            params: elicitation_params(&self.env, message, schema),
            reply: tx,
        };
        if self.events.send((self.wrap)(ask)).is_err() {
            return Elicitation::Cancelled;
        }
        match rx.recv() {
            Ok(Ok(result)) => elicitation_outcome(&result),
            Ok(Err(e)) => {
                log::info!("elicitation did not complete: {e}");
                Elicitation::Cancelled
            }
            Err(_) => Elicitation::Cancelled,
        }
    }
}

/// Modern era: answers from the retried request's `inputResponses`, otherwise asks for them with
/// `input_required` (only if this request's client capabilities include elicitation).
pub struct ModernElicitor {
    pub env: Envelope,
    pub input_responses: Map<String, Value>,
}

impl Elicitor for ModernElicitor {
    fn elicit(&self, key: &str, message: &str, schema: Value) -> Elicitation {
        if let Some(answer) = self.input_responses.get(key) {
            return elicitation_outcome(answer);
        }
        if !self.env.client_can_elicit() {
            return Elicitation::Unsupported;
        }
        let request = json!({"method": "elicitation/create", "params": elicitation_params(&self.env, message, schema)});
        let mut requests = Map::new();
        requests.insert(key.to_string(), request);
        Elicitation::InputRequired(ToolOutput {
            text: message.to_string(),
            input_required: Some(Value::Object(requests)),
            ..Default::default()
        })
    }
}

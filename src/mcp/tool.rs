//! What a tool catalogue gives the MCP server, and what the server gives each tool call.
//!
//! The server is generic over [`Catalog`]: the real catalogue lives in `crate::tools`, tests register their own.
//! Arguments are validated against the published `input_schema` by the server before `call` runs, and schema
//! `default`s are filled in, so handlers can rely on the shape.

use std::sync::Arc;

use serde_json::Value;

/// A tool as published in `tools/list`.
#[derive(Clone, Debug)]
pub struct ToolDef {
    pub name: String,
    pub title: String,
    pub description: String,
    /// JSON Schema (`type: object`, `additionalProperties: false`); the single source of argument validation.
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    pub annotations: Annotations,
}

/// MCP tool annotations; every one is always sent explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

/// The result of a tool call.
#[derive(Clone, Debug, Default)]
pub struct ToolOutput {
    /// Human/model-readable text (first content block).
    pub text: String,
    /// `structuredContent`; must validate against the tool's `output_schema` when one is published.
    pub structured: Option<Value>,
    pub is_error: bool,
    /// Modern era only: the call needs user input first. Map of key → input request (`{"method":
    /// "elicitation/create", "params": {...}}`); the server answers with `resultType: "input_required"`.
    pub input_required: Option<Value>,
}

impl ToolOutput {
    pub fn ok(text: impl Into<String>, structured: Value) -> ToolOutput {
        ToolOutput { text: text.into(), structured: Some(structured), ..Default::default() }
    }
    pub fn text(text: impl Into<String>) -> ToolOutput {
        ToolOutput { text: text.into(), ..Default::default() }
    }
    pub fn error(text: impl Into<String>) -> ToolOutput {
        ToolOutput { text: text.into(), is_error: true, ..Default::default() }
    }
    pub fn error_with(text: impl Into<String>, structured: Value) -> ToolOutput {
        ToolOutput { text: text.into(), structured: Some(structured), is_error: true, ..Default::default() }
    }
}

/// The cancellation token handlers receive (it lives in `crate::cancel`, below both `mcp` and `truenas`).
pub use crate::cancel::CancelToken;

/// Where a handler reports progress. The implementation drops values that do not strictly increase and
/// everything sent after the response; without a `progressToken` it does nothing.
pub trait ProgressSink: Send + Sync {
    fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>);
}

/// Log levels of MCP `notifications/message` (RFC 5424 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    /// The MCP wire name (`"warning"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }

    /// Parse an MCP wire name.
    pub fn parse(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

/// Where a handler sends MCP log messages: filtered by `logging/setLevel` in the legacy era, by the request's
/// `io.modelcontextprotocol/logLevel` opt-in in the modern era (none without it). Never put secrets in them.
pub trait LogSink: Send + Sync {
    fn log(&self, level: LogLevel, logger: &str, data: Value);
}

/// The outcome of asking the user something (MCP elicitation).
#[derive(Clone, Debug)]
pub enum Elicitation {
    /// The user accepted; the submitted content (an object).
    Accepted(Value),
    Declined,
    Cancelled,
    /// The client did not declare the elicitation capability: fall back to an explicit `confirm` argument.
    Unsupported,
    /// Modern era: the question must travel back as `input_required`; return this output from the handler
    /// unchanged (the client retries the call with the answer).
    InputRequired(ToolOutput),
}

/// Asks the user (legacy: server→client `elicitation/create` request; modern: `input_required` round trip).
pub trait Elicitor: Send + Sync {
    /// `key` names the question (stable per tool, e.g. "confirm_delete"); `schema` is the requestedSchema.
    fn elicit(&self, key: &str, message: &str, schema: Value) -> Elicitation;
}

/// Everything the server gives one tool call. Handlers never see JSON-RPC ids.
#[derive(Clone)]
pub struct CallContext {
    pub cancel: CancelToken,
    pub progress: Arc<dyn ProgressSink>,
    pub log: Arc<dyn LogSink>,
    pub elicitor: Arc<dyn Elicitor>,
}

struct Nothing;
impl ProgressSink for Nothing {
    fn report(&self, _: f64, _: Option<f64>, _: Option<&str>) {}
}
impl LogSink for Nothing {
    fn log(&self, _: LogLevel, _: &str, _: Value) {}
}
impl Elicitor for Nothing {
    fn elicit(&self, _: &str, _: &str, _: Value) -> Elicitation {
        Elicitation::Unsupported
    }
}

impl CallContext {
    /// A context that reports nothing and cannot ask the user (tests, the `call` subcommand's base).
    pub fn detached() -> CallContext {
        CallContext {
            cancel: CancelToken::new(),
            progress: Arc::new(Nothing),
            log: Arc::new(Nothing),
            elicitor: Arc::new(Nothing),
        }
    }
}

/// An MCP resource (`resources/list`).
#[derive(Clone, Debug)]
pub struct ResourceDef {
    pub uri: String,
    pub name: String,
    pub title: String,
    pub description: String,
    pub mime_type: String,
}

/// An MCP resource template (`resources/templates/list`), e.g. `truenas://apps/{name}/logs`.
#[derive(Clone, Debug)]
pub struct ResourceTemplateDef {
    pub uri_template: String,
    pub name: String,
    pub title: String,
    pub description: String,
    pub mime_type: String,
}

/// Contents of a read resource (text only).
#[derive(Clone, Debug)]
pub struct ResourceContents {
    pub uri: String,
    pub mime_type: String,
    pub text: String,
}

/// An MCP prompt (`prompts/list`).
#[derive(Clone, Debug)]
pub struct PromptDef {
    pub name: String,
    pub title: String,
    pub description: String,
    /// (name, description, required)
    pub arguments: Vec<(String, String, bool)>,
}

/// A rendered prompt: description + messages as `(role, text)`.
#[derive(Clone, Debug)]
pub struct PromptMessages {
    pub description: String,
    pub messages: Vec<(String, String)>,
}

/// Errors from resource/prompt/completion handlers, mapped by the server to JSON-RPC errors.
#[derive(Clone, Debug)]
pub enum CatalogError {
    /// -32602 (unknown prompt, bad argument) — e.g. resource not found is -32002 in MCP.
    InvalidParams(String),
    /// MCP "resource not found" (-32002).
    ResourceNotFound(String),
    /// -32603 with a message a user can act on.
    Internal(String),
}

/// What a catalogue offers besides tools; decides the capabilities the server declares and the methods it serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offers {
    /// `resources/list`, `resources/templates/list`, `resources/read`.
    pub resources: bool,
    /// `prompts/list`, `prompts/get`.
    pub prompts: bool,
    /// `completion/complete` (for prompt arguments and resource-template variables).
    pub completions: bool,
}

/// A tool catalogue (plus optional resources, prompts and completion). Implemented by `crate::tools` and tests.
pub trait Catalog: Send + Sync + 'static {
    /// The tools in publication order (deterministic).
    fn tools(&self) -> Vec<ToolDef>;
    /// Run a tool. `args` already validated against its input schema with defaults applied.
    fn call(&self, name: &str, args: Value, ctx: &CallContext) -> ToolOutput;
    /// What the catalogue offers besides tools. Called once when the server starts, so it must not do I/O; the
    /// default derives it from `resources()`, `resource_templates()` and `prompts()` being non-empty (override it if
    /// listing those is expensive).
    fn offers(&self) -> Offers {
        let templates = !self.resource_templates().is_empty();
        let prompts = !self.prompts().is_empty();
        Offers { resources: templates || !self.resources().is_empty(), prompts, completions: prompts || templates }
    }
    /// The client finished the legacy handshake (`notifications/initialized`). Background work may start here and
    /// report through `log` (the session's log level applies; silenced once the server stops); it must not block.
    fn on_initialized(self: Arc<Self>, _log: Arc<dyn LogSink>) {}
    /// Server instructions sent at initialize / discover.
    fn instructions(&self) -> Option<String> {
        None
    }
    fn resources(&self) -> Vec<ResourceDef> {
        Vec::new()
    }
    fn resource_templates(&self) -> Vec<ResourceTemplateDef> {
        Vec::new()
    }
    fn read_resource(&self, uri: &str) -> Result<Vec<ResourceContents>, CatalogError> {
        Err(CatalogError::ResourceNotFound(uri.to_string()))
    }
    fn prompts(&self) -> Vec<PromptDef> {
        Vec::new()
    }
    fn get_prompt(&self, name: &str, _args: &serde_json::Map<String, Value>) -> Result<PromptMessages, CatalogError> {
        Err(CatalogError::InvalidParams(format!("unknown prompt '{}'", crate::jsonrpc::clip(name))))
    }
    /// `completion/complete`: `reference` is the `ref` object (`{"type":"ref/resource","uri":…}` or
    /// `{"type":"ref/prompt","name":…}`), `argument` the name being completed, `value` its prefix.
    fn complete(&self, _reference: &Value, _argument: &str, _value: &str) -> Vec<String> {
        Vec::new()
    }
}

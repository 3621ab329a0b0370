//! The main loop: one thread owns all protocol state (session, calls in flight, batches, server→client requests)
//! and reacts to typed messages from its [`Connection`] and a closed set of internal [`Event`]s. Cheap methods are
//! answered inline; catalogue work goes to the pool. It does not know what carries the messages.
//!
//! Longer than our usual file: it is one owner of one state, and splitting its methods would spread that state's
//! invariants (a call's books, its batch, its pending asks) across files.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Map, Value};

use crate::clock::SharedClock;
use crate::jsonrpc::{self, clip, ErrorObject, Notification, Request, RequestId, Response};
use crate::jsonschema::{self, SchemaError};
use crate::mcp::call::{Ask, CallNotifier, LegacyElicitor, LogThreshold, ModernElicitor, SessionLogLevel};
use crate::mcp::connection::Connection;
use crate::mcp::msg::Message;
use crate::mcp::pool::{Job, Outcome, Pool};
use crate::mcp::protocol::{self, fingerprint, modern_envelope, Envelope, Revision, RESOURCE_NOT_FOUND};
use crate::mcp::stdio;
use crate::mcp::tool::{
    CallContext, CancelToken, Catalog, CatalogError, Elicitor, LogLevel, Offers, ToolDef, ToolOutput,
};
use crate::mcp::wire;

/// Tunables of one server run. `Default` is what `serve` uses (apart from `workers`).
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Worker threads running tool calls and other catalogue work.
    pub workers: usize,
    /// Requests that may wait for a worker; beyond `workers + queue` in flight, requests are refused as busy.
    pub queue: usize,
    /// The longest accepted input line in bytes; longer lines are discarded and answered with an error.
    pub max_line: usize,
    /// After the input closes, how long in-flight work may take before the server exits anyway.
    pub drain_timeout: Duration,
    /// The clock the drain is measured on (virtual in tests that drive the binary, see [`crate::clock::TEST_CLOCK_ENV`]).
    pub clock: SharedClock,
    /// Items per page of `tools/list` and the other lists.
    pub page_size: usize,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            workers: 4,
            queue: 64,
            max_line: 8 * 1024 * 1024,
            drain_timeout: Duration::from_secs(10),
            clock: crate::clock::system(),
            page_size: 100,
        }
    }
}

/// What the main loop hears from its own threads (the client speaks through the [`Connection`]).
pub enum Event {
    /// A worker finished a job.
    Done(u64, Outcome),
    /// A worker needs a server→client request answered.
    Ask(Ask),
}

/// How long the exit waits for the writer to flush what is queued.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// Run a server over `input`/`output` (through the stdio threads) until the input closes (and in-flight work
/// finished, bounded by `drain_timeout`) or the output closes. Both are clean exits.
pub fn serve_io(
    catalog: Arc<dyn Catalog>,
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
    opts: ServeOptions,
) -> ExitCode {
    match run(catalog, input, output, opts) {
        Ok(code) => code,
        Err(e) => {
            log::error!("the MCP server could not start: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// [`serve_io`] with start-up failures (thread creation) as errors.
pub(crate) fn run(
    catalog: Arc<dyn Catalog>,
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
    opts: ServeOptions,
) -> anyhow::Result<ExitCode> {
    let (connection, io) = stdio::connect(input, output, opts.max_line)?;
    serve_connection(catalog, connection, opts)?;
    io.finish(FINAL_FLUSH);
    Ok(ExitCode::SUCCESS)
}

/// Serve `catalog` on `connection` until its input disconnects (and in-flight work finished, bounded by
/// `drain_timeout`) or sending fails. On return every sender this server held is dropped, so the other end sees
/// the connection close once the handlers it still runs are told to stop.
pub fn serve_connection(catalog: Arc<dyn Catalog>, connection: Connection, opts: ServeOptions) -> anyhow::Result<()> {
    let (events_tx, events_rx) = crossbeam_channel::unbounded::<Event>();
    let pool = Pool::start(opts.workers, opts.queue, events_tx.clone(), Event::Done)?;
    let Connection { sender, receiver } = connection;
    let mut server = Server::new(catalog, opts, sender, events_tx, pool);
    server.run(&receiver, &events_rx);
    Ok(())
}

/// Where a response goes: straight out, or into a batch answer.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Single,
    Batch(u64),
}

struct Call {
    id: RequestId,
    origin: Origin,
    cancel: CancelToken,
    cancelled: bool,
    notifier: Option<Arc<CallNotifier>>,
}

struct Batch {
    /// Replies still to come (plus one while the batch itself is being read).
    pending: usize,
    replies: Vec<Message>,
}

struct PendingAsk {
    call: u64,
    reply: Sender<Outcome>,
}

struct Session {
    /// The legacy revision negotiated by `initialize`.
    revision: Option<Revision>,
    client_capabilities: Value,
    log_level: SessionLogLevel,
    /// The catalogue's log outside any call (given at `notifications/initialized`), closed when the server stops.
    background_log: Option<Arc<CallNotifier>>,
}

struct Server {
    catalog: Arc<dyn Catalog>,
    tools: Vec<Arc<ToolDef>>,
    tool_index: HashMap<String, usize>,
    tools_fingerprint: u64,
    features: Offers,
    instructions: Option<String>,
    opts: ServeOptions,
    /// The connection's outgoing side; call notifiers hold clones until their call ends.
    out: Sender<Message>,
    /// Set when sending failed: nobody hears us any more.
    output_closed: bool,
    events: Sender<Event>,
    pool: Pool,
    session: Session,
    calls: HashMap<u64, Call>,
    call_ids: HashMap<RequestId, u64>,
    asks: HashMap<RequestId, PendingAsk>,
    batches: HashMap<u64, Batch>,
    next_key: u64,
    input_closed: bool,
}

/// A method's work off the main loop: (catalogue, envelope, params, page size) → result.
type CatalogWork = fn(&dyn Catalog, &Envelope, &Value, usize) -> Outcome;

impl Server {
    fn new(
        catalog: Arc<dyn Catalog>,
        opts: ServeOptions,
        out: Sender<Message>,
        events: Sender<Event>,
        pool: Pool,
    ) -> Server {
        let tools: Vec<Arc<ToolDef>> = catalog.tools().into_iter().map(Arc::new).collect();
        let tool_index = tools.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let tools_fingerprint = fingerprint(tools.iter().map(|t| t.name.as_str()));
        let features = catalog.offers();
        Server {
            instructions: catalog.instructions(),
            catalog,
            tools,
            tool_index,
            tools_fingerprint,
            features,
            opts,
            out,
            output_closed: false,
            events,
            pool,
            session: Session {
                revision: None,
                client_capabilities: json!({}),
                log_level: SessionLogLevel::new(LogLevel::Info),
                background_log: None,
            },
            calls: HashMap::new(),
            call_ids: HashMap::new(),
            asks: HashMap::new(),
            batches: HashMap::new(),
            next_key: 1,
            input_closed: false,
        }
    }

    fn run(&mut self, input: &Receiver<Message>, internal: &Receiver<Event>) {
        let mut drain_until: Option<Instant> = None;
        loop {
            match drain_until {
                None => select! {
                    recv(input) -> message => match message {
                        Ok(message) => self.on_input(message),
                        Err(_) => drain_until = Some(self.on_input_closed()),
                    },
                    recv(internal) -> event => match event { Ok(event) => self.on_event(event), Err(_) => break },
                },
                Some(deadline) => match self.drain_event(internal, deadline) {
                    Some(event) => self.on_event(event),
                    None => {
                        log::warn!(
                            "{} request(s) still running {:?} after the input closed; exiting without them",
                            self.calls.len(),
                            self.opts.drain_timeout
                        );
                        break;
                    }
                },
            }
            if self.output_closed {
                log::debug!("the output closed; stopping with {} request(s) in flight", self.calls.len());
                break;
            }
            if self.input_closed && self.calls.is_empty() {
                break;
            }
        }
        // Whatever still runs will never be answered: ask cooperative handlers to stop, and silence them so their
        // clones of the outgoing sender go and the connection can close.
        for call in self.calls.values() {
            call.cancel.cancel();
            if let Some(notifier) = &call.notifier {
                notifier.close();
            }
        }
        if let Some(log) = &self.session.background_log {
            log.close();
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Done(key, outcome) => self.on_done(key, outcome),
            Event::Ask(ask) => self.on_ask(ask),
        }
    }

    /// The next event before `deadline` on the options' clock. A virtual clock caps each real wait; when nothing
    /// came, the clock is slept to the deadline (which a test advances, or an auto-advancing clock jumps to).
    fn drain_event(&self, internal: &Receiver<Event>, deadline: Instant) -> Option<Event> {
        let clock = &self.opts.clock;
        loop {
            let wait = deadline.saturating_duration_since(clock.now());
            let step = clock.max_real_wait().map_or(wait, |most| wait.min(most));
            match internal.recv_timeout(step) {
                Ok(event) => return Some(event),
                Err(RecvTimeoutError::Timeout) if step < wait => {
                    clock.sleep_until(deadline, &CancelToken::new());
                }
                Err(_) => return None,
            }
        }
    }

    /// The input disconnected: stop asking the client anything and give the calls in flight until the returned
    /// deadline.
    fn on_input_closed(&mut self) -> Instant {
        log::debug!("input closed; finishing {} request(s) in flight", self.calls.len());
        self.input_closed = true;
        self.abort_asks(|_| true, "the client closed its input");
        self.opts.clock.now() + self.opts.drain_timeout
    }

    /// Queue `message` for the client; a failure means the other end is gone, and the loop stops after this event.
    fn send(&mut self, message: impl Into<Message>) {
        if self.out.send(message.into()).is_err() {
            self.output_closed = true;
        }
    }

    fn next_key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    // ---- input ----------------------------------------------------------------------------------------------

    fn on_input(&mut self, message: Message) {
        match message {
            Message::Batch(items) => self.on_batch(items),
            message => self.on_message(message, Origin::Single),
        }
    }

    fn on_batch(&mut self, items: Vec<Message>) {
        if !self.session.revision.is_some_and(Revision::allows_batches) {
            let error = ErrorObject::invalid_request(
                "invalid request: JSON-RPC batches (arrays) are only part of protocol revision 2025-03-26; \
                 send one message per line",
            );
            return self.reply(Origin::Single, None, Err(error));
        }
        if items.is_empty() {
            let error = ErrorObject::invalid_request("invalid request: empty batch");
            return self.reply(Origin::Single, None, Err(error));
        }
        let key = self.next_key();
        self.batches.insert(key, Batch { pending: 1, replies: Vec::new() });
        for item in items {
            self.on_message(item, Origin::Batch(key));
        }
        self.settle_batch(key);
    }

    fn settle_batch(&mut self, key: u64) {
        let Some(batch) = self.batches.get_mut(&key) else { return };
        batch.pending -= 1;
        if batch.pending == 0 {
            let batch = self.batches.remove(&key).expect("batch present");
            if !batch.replies.is_empty() {
                self.send(Message::Batch(batch.replies));
            }
        }
    }

    fn on_message(&mut self, message: Message, origin: Origin) {
        match message {
            Message::Invalid { id, error } => self.reply(origin, id.as_ref(), Err(error)),
            Message::Request(request) => self.on_request(request, origin),
            Message::Notification(notification) => self.on_notification(notification),
            Message::Response(response) => self.on_response(response),
            // Readers never nest batches; a batch sent inside one over a memory connection is an item that is not a
            // message object, answered like a nested array.
            Message::Batch(_) => self.on_message(Message::from_item(Value::Array(Vec::new())), origin),
        }
    }

    fn reply(&mut self, origin: Origin, id: Option<&RequestId>, outcome: Outcome) {
        if outcome.is_ok() && id.is_none() {
            return;
        }
        let message = Message::Response(Response { id: id.cloned(), outcome });
        match origin {
            Origin::Single => self.send(message),
            Origin::Batch(key) => {
                if let Some(batch) = self.batches.get_mut(&key) {
                    batch.replies.push(message);
                }
            }
        }
    }

    fn on_notification(&mut self, notification: Notification) {
        match notification.method.as_str() {
            "notifications/initialized" => self.on_initialized(),
            "notifications/cancelled" => self.on_cancelled(notification.params.as_ref()),
            other => log::debug!("ignoring notification '{other}'"),
        }
    }

    /// Once per session, after `initialize`: hand the catalogue a log for its background work.
    fn on_initialized(&mut self) {
        log::debug!("client initialized");
        if self.session.revision.is_none() || self.session.background_log.is_some() {
            return;
        }
        let logs = LogThreshold::Session(self.session.log_level.clone());
        let log = Arc::new(CallNotifier::new(self.out.clone(), &self.legacy_envelope(), None, logs));
        self.session.background_log = Some(Arc::clone(&log));
        Arc::clone(&self.catalog).on_initialized(log);
    }

    fn on_response(&mut self, response: Response) {
        let pending = response.id.as_ref().and_then(|id| self.asks.remove(id));
        match pending {
            Some(ask) => {
                let _ = ask.reply.send(response.outcome);
            }
            None => log::debug!("ignoring a response to an unknown request id {:?}", response.id),
        }
    }

    fn on_cancelled(&mut self, params: Option<&Value>) {
        let Some(id) = params.and_then(|p| p.get("requestId")).and_then(RequestId::from_value) else {
            return;
        };
        let Some(key) = self.call_ids.remove(&id) else {
            log::debug!("ignoring cancellation of unknown or finished request {id}");
            return;
        };
        if let Some(call) = self.calls.get_mut(&key) {
            log::debug!("cancelling request {id}");
            call.cancelled = true;
            call.cancel.cancel();
            if let Some(notifier) = &call.notifier {
                notifier.close();
            }
        }
        self.abort_asks(|call| call == key, "the tool call was cancelled");
    }

    /// Fail the server→client requests selected by `which` (by call key), telling the client they are void.
    fn abort_asks(&mut self, which: impl Fn(u64) -> bool, reason: &str) {
        let ids: Vec<RequestId> = self.asks.iter().filter(|(_, a)| which(a.call)).map(|(id, _)| id.clone()).collect();
        for id in ids {
            if let Some(ask) = self.asks.remove(&id) {
                let _ = ask.reply.send(Err(ErrorObject::internal(reason)));
                if !self.input_closed {
                    let params = json!({"requestId": id.to_value(), "reason": reason});
                    self.send(Message::notification("notifications/cancelled", params));
                }
            }
        }
    }

    fn on_ask(&mut self, ask: Ask) {
        let live = !self.input_closed && self.calls.get(&ask.call).is_some_and(|c| !c.cancelled);
        if !live {
            let _ = ask.reply.send(Err(ErrorObject::internal("the request is no longer active")));
            return;
        }
        let id = RequestId::from(self.next_key() as i64);
        self.send(Request { id: id.clone(), method: ask.method.to_string(), params: Some(ask.params) });
        self.asks.insert(id, PendingAsk { call: ask.call, reply: ask.reply });
    }

    fn on_done(&mut self, key: u64, outcome: Outcome) {
        let Some(call) = self.calls.remove(&key) else { return };
        if self.call_ids.get(&call.id) == Some(&key) {
            self.call_ids.remove(&call.id);
        }
        if let Some(notifier) = &call.notifier {
            notifier.close();
        }
        self.abort_asks(|c| c == key, "the tool call finished");
        if call.cancelled {
            log::debug!("dropping the response to cancelled request {}", call.id);
        } else {
            self.reply(call.origin, Some(&call.id), outcome);
        }
        if let Origin::Batch(batch) = call.origin {
            self.settle_batch(batch);
        }
    }

    // ---- requests -------------------------------------------------------------------------------------------

    fn on_request(&mut self, request: Request, origin: Origin) {
        if self.call_ids.contains_key(&request.id) {
            let error = ErrorObject::invalid_request(format!(
                "invalid request: id {} is already used by a request in progress",
                request.id
            ));
            return self.reply(origin, Some(&request.id), Err(error));
        }
        if request.method == "initialize" {
            let outcome = self.initialize(request.params.as_ref());
            return self.reply(origin, Some(&request.id), outcome);
        }
        let env = match modern_envelope(request.params.as_ref()) {
            Some(Ok(env)) => env,
            Some(Err(error)) => return self.reply(origin, Some(&request.id), Err(error)),
            None => self.legacy_envelope(),
        };
        let params = request.params.as_ref();
        let modern = env.is_modern();
        let outcome = match request.method.as_str() {
            "ping" | "logging/setLevel" if modern => Err(ErrorObject::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!(
                    "method '{}' does not exist in protocol revision {}",
                    clip(&request.method),
                    env.revision.as_str()
                ),
            )),
            "ping" => Ok(json!({})),
            "logging/setLevel" => self.set_level(params),
            "server/discover" => self.discover(&env),
            "tools/list" => self.list_tools(&env, params),
            "tools/call" => return self.call_tool(request, env, origin),
            "resources/list" if self.features.resources => return self.dispatch(request, env, origin, list_resources),
            "resources/templates/list" if self.features.resources => {
                return self.dispatch(request, env, origin, list_resource_templates)
            }
            "resources/read" if self.features.resources => return self.dispatch(request, env, origin, read_resource),
            "prompts/list" if self.features.prompts => return self.dispatch(request, env, origin, list_prompts),
            "prompts/get" if self.features.prompts => return self.dispatch(request, env, origin, get_prompt),
            "completion/complete" if self.features.completions => return self.dispatch(request, env, origin, complete),
            other => Err(ErrorObject::method_not_found(other)),
        };
        let outcome = outcome.map(|result| wire::finish(&env, result));
        self.reply(origin, Some(&request.id), outcome);
    }

    fn legacy_envelope(&self) -> Envelope {
        Envelope {
            revision: self.session.revision.unwrap_or(Revision::NEWEST_LEGACY),
            client_capabilities: self.session.client_capabilities.clone(),
            log_level: None,
        }
    }

    fn capabilities(&self, revision: Revision) -> Value {
        let mut caps = json!({"tools": {"listChanged": false}, "logging": {}});
        if self.features.prompts {
            caps["prompts"] = json!({"listChanged": false});
        }
        if self.features.resources {
            caps["resources"] = json!({"subscribe": false, "listChanged": false});
        }
        if self.features.completions && revision.has_completions_capability() {
            caps["completions"] = json!({});
        }
        caps
    }

    fn initialize(&mut self, params: Option<&Value>) -> Outcome {
        if self.session.revision.is_some() {
            return Err(ErrorObject::invalid_request(
                "invalid request: initialize was already received; one session per process",
            ));
        }
        let Some(requested) = params.and_then(|p| p.get("protocolVersion")).and_then(Value::as_str) else {
            return Err(ErrorObject::invalid_params(
                "initialize needs params.protocolVersion (a string such as \"2025-11-25\")",
            ));
        };
        let revision = Revision::parse(requested).filter(|r| !r.is_modern()).unwrap_or(Revision::NEWEST_LEGACY);
        let capabilities = params.and_then(|p| p.get("capabilities")).filter(|c| c.is_object());
        self.session.revision = Some(revision);
        self.session.client_capabilities = capabilities.cloned().unwrap_or_else(|| json!({}));
        log::debug!("initialized: client asked for {requested}, serving {}", revision.as_str());
        let mut result = json!({
            "protocolVersion": revision.as_str(),
            "capabilities": self.capabilities(revision),
            "serverInfo": wire::server_info(revision),
        });
        if let Some(instructions) = &self.instructions {
            result["instructions"] = Value::from(instructions.as_str());
        }
        Ok(result)
    }

    fn discover(&self, env: &Envelope) -> Outcome {
        if !env.is_modern() {
            return Err(ErrorObject::invalid_params(format!(
                "server/discover needs the 2026-07-28 request envelope (params._meta with \"{}\" and \"{}\"); \
                 clients of earlier revisions use initialize",
                protocol::META_PROTOCOL_VERSION,
                protocol::META_CLIENT_CAPABILITIES
            )));
        }
        let mut result = json!({
            "supportedVersions": protocol::supported_versions(),
            "capabilities": self.capabilities(env.revision),
        });
        if let Some(instructions) = &self.instructions {
            result["instructions"] = Value::from(instructions.as_str());
        }
        Ok(wire::cacheable(env, result, wire::STATIC_LIST_TTL_MS))
    }

    fn set_level(&mut self, params: Option<&Value>) -> Outcome {
        let level = params.and_then(|p| p.get("level")).unwrap_or(&Value::Null);
        let level = protocol::parse_log_level(level)?;
        self.session.log_level.set(level);
        Ok(json!({}))
    }

    fn list_tools(&self, env: &Envelope, params: Option<&Value>) -> Outcome {
        let cursor = params.and_then(|p| p.get("cursor"));
        let (page, next) = protocol::page(&self.tools, cursor, self.opts.page_size, self.tools_fingerprint)?;
        let tools: Vec<Value> = page.iter().map(|t| wire::tool(env.revision, t)).collect();
        let mut result = json!({"tools": tools});
        if let Some(next) = next {
            result["nextCursor"] = Value::from(next);
        }
        Ok(wire::cacheable(env, result, wire::STATIC_LIST_TTL_MS))
    }

    fn call_tool(&mut self, request: Request, env: Envelope, origin: Origin) {
        let id = request.id;
        let params = request.params.unwrap_or_else(|| json!({}));
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            let error = ErrorObject::invalid_params("tools/call needs params.name (a tool name from tools/list)");
            return self.reply(origin, Some(&id), Err(error));
        };
        let Some(&index) = self.tool_index.get(name) else {
            let error = ErrorObject::invalid_params(format!(
                "unknown tool '{}' (tools/list shows the available ones)",
                clip(name)
            ));
            return self.reply(origin, Some(&id), Err(error));
        };
        let args = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(args @ Value::Object(_)) => args.clone(),
            Some(other) => {
                let error = ErrorObject::invalid_params(format!(
                    "params.arguments must be an object, got {}",
                    clip(&other.to_string())
                ));
                return self.reply(origin, Some(&id), Err(error));
            }
        };
        let progress_token = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
            .cloned();
        let logs = if env.is_modern() {
            LogThreshold::Request(env.log_level)
        } else {
            LogThreshold::Session(self.session.log_level.clone())
        };
        let key = self.next_key();
        let notifier = Arc::new(CallNotifier::new(self.out.clone(), &env, progress_token, logs));
        let elicitor: Arc<dyn Elicitor> = if env.is_modern() {
            let input_responses = params.get("inputResponses").and_then(Value::as_object).cloned().unwrap_or_default();
            Arc::new(ModernElicitor { env: env.clone(), input_responses })
        } else {
            Arc::new(LegacyElicitor { env: env.clone(), call: key, events: self.events.clone(), wrap: Event::Ask })
        };
        let cancel = CancelToken::new();
        let ctx = CallContext { cancel: cancel.clone(), progress: notifier.clone(), log: notifier.clone(), elicitor };
        let tool = Arc::clone(&self.tools[index]);
        let catalog = Arc::clone(&self.catalog);
        let label = format!("tool '{}'", tool.name);
        let run = Box::new(move || {
            if ctx.cancel.is_cancelled() {
                return Ok(Value::Null); // cancelled while queued: nobody will read the answer
            }
            let output = run_tool(catalog.as_ref(), &tool, args, &ctx);
            Ok(wire::finish(&env, wire::call_result(&env, output)))
        });
        self.submit(key, id, origin, label, cancel, Some(notifier), run);
    }

    /// Run catalogue `work` for `request` on the pool.
    fn dispatch(&mut self, request: Request, env: Envelope, origin: Origin, work: CatalogWork) {
        let key = self.next_key();
        let catalog = Arc::clone(&self.catalog);
        let params = request.params.unwrap_or_else(|| json!({}));
        let page_size = self.opts.page_size;
        let label = format!("'{}'", clip(&request.method));
        let run = Box::new(move || work(catalog.as_ref(), &env, &params, page_size).map(|r| wire::finish(&env, r)));
        self.submit(key, request.id, origin, label, CancelToken::new(), None, run);
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        key: u64,
        id: RequestId,
        origin: Origin,
        label: String,
        cancel: CancelToken,
        notifier: Option<Arc<CallNotifier>>,
        run: Box<dyn FnOnce() -> Outcome + Send>,
    ) {
        if self.pool.submit(Job { key, label, run }).is_err() {
            let error = ErrorObject::internal(format!(
                "the server is busy with {} requests; retry when one has finished",
                self.calls.len()
            ));
            return self.reply(origin, Some(&id), Err(error));
        }
        if let Origin::Batch(batch) = origin {
            if let Some(batch) = self.batches.get_mut(&batch) {
                batch.pending += 1;
            }
        }
        self.call_ids.insert(id.clone(), key);
        self.calls.insert(key, Call { id, origin, cancel, cancelled: false, notifier });
    }
}

/// Validate (defaults first) against the published input schema, then call the tool.
fn run_tool(catalog: &dyn Catalog, tool: &ToolDef, mut args: Value, ctx: &CallContext) -> ToolOutput {
    jsonschema::apply_defaults(&tool.input_schema, &mut args);
    if let Err(errors) = jsonschema::validate(&tool.input_schema, &args) {
        return invalid_arguments(&tool.name, &errors);
    }
    catalog.call(&tool.name, args, ctx)
}

/// An `isError` result that names every bad field, so the model can fix its call.
fn invalid_arguments(tool: &str, errors: &[SchemaError]) -> ToolOutput {
    let problems: Vec<String> = errors
        .iter()
        .map(|e| {
            let field = e.path.trim_start_matches('/');
            if field.is_empty() {
                format!("arguments: {}", e.message)
            } else {
                format!("{field}: {}", e.message)
            }
        })
        .collect();
    ToolOutput::error(format!(
        "invalid arguments for tool '{tool}': {}. Fix these and call the tool again (its inputSchema in tools/list \
         describes every field).",
        problems.join("; ")
    ))
}

fn catalog_error(error: CatalogError) -> ErrorObject {
    match error {
        CatalogError::InvalidParams(message) => ErrorObject::invalid_params(message),
        CatalogError::ResourceNotFound(uri) => {
            let uri = clip(&uri);
            ErrorObject::new(RESOURCE_NOT_FOUND, format!("resource not found: {uri}")).with_data(json!({"uri": uri}))
        }
        CatalogError::Internal(message) => ErrorObject::internal(message),
    }
}

fn string_param<'a>(params: &'a Value, name: &str, method: &str) -> Result<&'a str, ErrorObject> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorObject::invalid_params(format!("{method} needs params.{name} (a string)")))
}

fn list_page(
    env: &Envelope,
    params: &Value,
    page_size: usize,
    key: &str,
    items: Vec<(String, Value)>,
    ttl: u64,
) -> Outcome {
    let print = fingerprint(items.iter().map(|(k, _)| k.as_str()));
    let (page, next) = protocol::page(&items, params.get("cursor"), page_size, print)?;
    let mut result = json!({ key: page.into_iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if let Some(next) = next {
        result["nextCursor"] = Value::from(next);
    }
    Ok(wire::cacheable(env, result, ttl))
}

fn list_resources(catalog: &dyn Catalog, env: &Envelope, params: &Value, page_size: usize) -> Outcome {
    let items = catalog.resources().iter().map(|r| (r.uri.clone(), wire::resource(env.revision, r))).collect();
    list_page(env, params, page_size, "resources", items, 0)
}

fn list_resource_templates(catalog: &dyn Catalog, env: &Envelope, params: &Value, page_size: usize) -> Outcome {
    let items = catalog
        .resource_templates()
        .iter()
        .map(|t| (t.uri_template.clone(), wire::resource_template(env.revision, t)))
        .collect();
    list_page(env, params, page_size, "resourceTemplates", items, wire::STATIC_LIST_TTL_MS)
}

fn read_resource(catalog: &dyn Catalog, env: &Envelope, params: &Value, _: usize) -> Outcome {
    let uri = string_param(params, "uri", "resources/read")?;
    let contents = catalog.read_resource(uri).map_err(catalog_error)?;
    Ok(wire::cacheable(env, json!({"contents": wire::resource_contents(&contents)}), 0))
}

fn list_prompts(catalog: &dyn Catalog, env: &Envelope, params: &Value, page_size: usize) -> Outcome {
    let items = catalog.prompts().iter().map(|p| (p.name.clone(), wire::prompt(env.revision, p))).collect();
    list_page(env, params, page_size, "prompts", items, wire::STATIC_LIST_TTL_MS)
}

fn get_prompt(catalog: &dyn Catalog, _: &Envelope, params: &Value, _: usize) -> Outcome {
    let name = string_param(params, "name", "prompts/get")?;
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args.clone(),
        Some(other) => {
            return Err(ErrorObject::invalid_params(format!(
                "params.arguments must be an object, got {}",
                clip(&other.to_string())
            )))
        }
    };
    let rendered = catalog.get_prompt(name, &arguments).map_err(catalog_error)?;
    Ok(wire::prompt_messages(&rendered))
}

fn complete(catalog: &dyn Catalog, _: &Envelope, params: &Value, _: usize) -> Outcome {
    let reference = params.get("ref").filter(|r| r.is_object()).ok_or_else(|| {
        ErrorObject::invalid_params("completion/complete needs params.ref (a ref/prompt or ref/resource object)")
    })?;
    let argument = params.get("argument").unwrap_or(&Value::Null);
    let (Some(name), Some(value)) =
        (argument.get("name").and_then(Value::as_str), argument.get("value").and_then(Value::as_str))
    else {
        return Err(ErrorObject::invalid_params("completion/complete needs params.argument {name, value} (strings)"));
    };
    Ok(wire::completion(catalog.complete(reference, name, value)))
}

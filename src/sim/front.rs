//! The WebSocket front: TCP/TLS listener and in-memory connections, nginx-like routing (302 on 24.10's
//! `/api/current`), per-socket limits (20 calls, 8 KiB / 64 KiB frames, idle timeout), and both wire dialects.
//! Over our usual ~700 lines: listener, routing and the per-socket limits share the connection state; the dialects
//! and per-connection sessions already live in `wire.rs` and `session.rs`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde_json::{json, Value};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::memory::{MemStream, Pipe, PIPE_CAPACITY};
use super::middleware::Middleware;
use super::session::{Origin, Outgoing, Session};
use super::wire::{Codec, Failure, Protocol, EACCES, EINVAL};
use super::{events, SimVersion};

/// Calls that may execute at once per socket; as many again may wait.
const EXECUTING: usize = 10;
const ADMITTED: usize = 20;
const ANON_MAX_CHARS: usize = 8192;
const AUTH_MAX_CHARS: usize = 65536;
/// How often an idle socket thread looks at timers and knobs (at most; a quarter of the idle timeout when that
/// is shorter). Output wakes the thread at once, so this only bounds idle-close and shutdown latency.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// The byte stream under a server-side WebSocket.
pub(crate) enum Stream {
    Mem(MemStream),
    /// Plain TCP: a pump thread moves inbound bytes into `rx`, so reads can be woken when there is output.
    Tcp {
        rx: Arc<Pipe>,
        tx: TcpStream,
        read_timeout: Option<Duration>,
    },
    Tls(Box<native_tls::TlsStream<TcpStream>>),
    /// The request head already read (to answer plain HTTP GETs), replayed to the WebSocket handshake.
    Replay(io::Cursor<Vec<u8>>, Box<Stream>),
}

impl Stream {
    fn set_read_timeout(&mut self, d: Duration) {
        match self {
            Stream::Mem(m) => {
                let _ = m.set_read_timeout(Some(d));
            }
            Stream::Tcp { read_timeout, .. } => *read_timeout = Some(d),
            Stream::Tls(t) => {
                let _ = t.get_ref().set_read_timeout(Some(d));
            }
            Stream::Replay(_, inner) => inner.set_read_timeout(d),
        }
    }

    /// Wakes the socket thread out of a read when output is queued (TLS sockets poll instead).
    fn waker(&self) -> Box<dyn Fn() + Send + Sync> {
        match self {
            Stream::Mem(m) => {
                let w = m.waker();
                Box::new(move || w.wake())
            }
            Stream::Tcp { rx, .. } => {
                let rx = rx.clone();
                Box::new(move || rx.wake())
            }
            Stream::Tls(_) => Box::new(|| {}),
            Stream::Replay(_, inner) => inner.waker(),
        }
    }

    fn polls(&self) -> bool {
        match self {
            Stream::Replay(_, inner) => inner.polls(),
            s => matches!(s, Stream::Tls(_)),
        }
    }

    fn close(&mut self) {
        match self {
            Stream::Mem(m) => m.shutdown(),
            Stream::Tcp { rx, tx, .. } => {
                let _ = tx.shutdown(std::net::Shutdown::Both);
                rx.close_reader();
            }
            Stream::Tls(t) => {
                let _ = t.get_ref().shutdown(std::net::Shutdown::Both);
            }
            Stream::Replay(_, inner) => inner.close(),
        }
    }
}

impl Drop for Stream {
    /// A plain TCP stream's pump thread holds a clone of the socket: without an explicit shutdown, a peer whose
    /// WebSocket handshake failed or timed out (e.g. a slow-loris half request) would keep its socket open forever.
    fn drop(&mut self) {
        if let Stream::Tcp { .. } = self {
            self.close();
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Mem(m) => m.read(buf),
            Stream::Tcp { rx, read_timeout, .. } => rx.read(buf, *read_timeout),
            Stream::Tls(t) => t.read(buf),
            Stream::Replay(head, inner) => match head.read(buf)? {
                0 => inner.read(buf),
                n => Ok(n),
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Mem(m) => m.write(buf),
            Stream::Tcp { tx, .. } => tx.write(buf),
            Stream::Tls(t) => t.write(buf),
            Stream::Replay(_, inner) => inner.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Mem(m) => m.flush(),
            Stream::Tcp { tx, .. } => tx.flush(),
            Stream::Tls(t) => t.flush(),
            Stream::Replay(_, inner) => inner.flush(),
        }
    }
}

fn ws_config() -> WebSocketConfig {
    // aiohttp's hard cap; the middleware's own limits are checked per message.
    WebSocketConfig { max_message_size: Some(4 << 20), max_frame_size: Some(4 << 20), ..Default::default() }
}

/// Start the server side of an in-memory connection; returns the client end.
pub(crate) fn connect_in_memory(mw: &Arc<Middleware>) -> MemStream {
    let (client, server) = MemStream::pair();
    let mw = mw.clone();
    let _ = std::thread::Builder::new().name("sim-mem-conn".into()).spawn(move || {
        serve_connection(mw, Stream::Mem(server), Origin::Memory, Arc::new(AtomicBool::new(false)), "ws")
    });
    client
}

/// A running TCP (or TLS) front; stops (and closes its connections) when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    /// True when the front speaks wss.
    pub tls: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    mw: Arc<Middleware>,
}

impl SimServer {
    /// `ws[s]://addr<path>`, e.g. `url("/api/current")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", if self.tls { "wss" } else { "ws" }, self.addr, path)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Close this front's connections now rather than at their next tick.
        for s in self.mw.sessions() {
            if let Origin::Tcp { local, .. } | Origin::Tls { local, .. } = &s.origin {
                if local.port() == self.addr.port() {
                    s.drop_connection();
                }
            }
        }
    }
}

pub(crate) fn serve(mw: &Arc<Middleware>, listen: &str, tls: Option<native_tls::TlsAcceptor>) -> io::Result<SimServer> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let is_tls = tls.is_some();
    let tls = tls.map(Arc::new);
    let mw_for_drop = mw.clone();
    let (mw, stop2) = (mw.clone(), stop.clone());
    let thread = std::thread::Builder::new().name("sim-accept".into()).spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(tcp) = conn else { continue };
            let (mw, stop, tls) = (mw.clone(), stop2.clone(), tls.clone());
            let _ = std::thread::Builder::new().name("sim-conn".into()).spawn(move || accept_tcp(mw, tcp, tls, stop));
        }
    })?;
    Ok(SimServer { addr, tls: is_tls, stop, thread: Some(thread), mw: mw_for_drop })
}

fn accept_tcp(mw: Arc<Middleware>, tcp: TcpStream, tls: Option<Arc<native_tls::TlsAcceptor>>, stop: Arc<AtomicBool>) {
    let (Ok(peer), Ok(local)) = (tcp.peer_addr(), tcp.local_addr()) else { return };
    let _ = tcp.set_nodelay(true);
    match tls {
        Some(acceptor) => {
            let started = Instant::now();
            while mw.faults.stall_tls() && !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
            let deadline = Instant::now() + mw.opts.handshake_timeout;
            let mut attempt = acceptor.accept(tcp);
            let tls_stream = loop {
                match attempt {
                    Ok(s) => break s,
                    Err(native_tls::HandshakeError::WouldBlock(mid))
                        if Instant::now() < deadline && !stop.load(Ordering::SeqCst) =>
                    {
                        attempt = mid.handshake()
                    }
                    Err(e) => {
                        log::debug!("simulator: TLS handshake with {peer} failed: {e}");
                        return;
                    }
                }
            };
            serve_connection(mw, Stream::Tls(Box::new(tls_stream)), Origin::Tls { peer, local }, stop, "https")
        }
        None => {
            let Ok(reader) = tcp.try_clone() else { return };
            let rx = Pipe::new(PIPE_CAPACITY);
            let pump_rx = rx.clone();
            let _ = std::thread::Builder::new().name("sim-tcp-pump".into()).spawn(move || pump(reader, pump_rx));
            serve_connection(
                mw,
                Stream::Tcp { rx, tx: tcp, read_timeout: None },
                Origin::Tcp { peer, local },
                stop,
                "http",
            )
        }
    }
}

/// Move bytes from the socket into the pipe until either side ends.
fn pump(mut tcp: TcpStream, rx: Arc<Pipe>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut off = 0;
                while off < n {
                    match rx.write(&buf[off..n], None) {
                        Ok(w) => off += w,
                        Err(_) => return,
                    }
                }
            }
        }
    }
    rx.close_writer();
}

/// The versioned API endpoints a release serves besides `/api/current` and `/api/v24.10`: the middleware's
/// `api/v*` directories of that release (25.04.2.6, 25.10.6, 26.0.0-BETA.3); also what `GET /api/versions` lists.
fn api_versions(version: SimVersion) -> &'static [&'static str] {
    const V25_04: [&str; 3] = ["v25.04.0", "v25.04.1", "v25.04.2"];
    match version {
        SimVersion::V24_10 => &[],
        SimVersion::V25_04 => &V25_04,
        SimVersion::V25_10 => &[
            "v25.04.0", "v25.04.1", "v25.04.2", "v25.10.0", "v25.10.1", "v25.10.2", "v25.10.3", "v25.10.4", "v25.10.5",
        ],
        // 26.0.0-BETA.3 was branched before 25.10.5 existed, so it has no v25_10_5 directory.
        SimVersion::V26_0 => {
            &["v25.04.0", "v25.04.1", "v25.04.2", "v25.10.0", "v25.10.1", "v25.10.2", "v25.10.3", "v25.10.4", "v26.0.0"]
        }
    }
}

/// Reads the HTTP request head; a plain (non-upgrade) `GET /api/versions` is answered here like aiohttp's
/// `api_versions_handler` (a JSON list, `json.dumps` spacing). `None` = answered or gone; otherwise the stream
/// with the head to replay to the WebSocket handshake.
fn plain_http(version: SimVersion, mut stream: Stream, stop: &AtomicBool, timeout: Duration) -> Option<Stream> {
    let deadline = Instant::now() + timeout;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < AUTH_MAX_CHARS {
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if Instant::now() >= deadline || stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let path = text.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("");
    if text.starts_with("get ") && path == "/api/versions" && !text.contains("upgrade: websocket") {
        if version == SimVersion::V24_10 {
            return Some(Stream::Replay(io::Cursor::new(head), Box::new(stream)));
        }
        let list: Vec<String> = api_versions(version).iter().map(|v| format!("\"{v}\"")).collect();
        let body = format!("[{}]", list.join(", "));
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes());
        let _ = stream.flush();
        stream.close();
        return None;
    }
    Some(Stream::Replay(io::Cursor::new(head), Box::new(stream)))
}

/// Which dialect a request path gets, or the HTTP answer nginx/aiohttp would give instead.
fn route(
    version: SimVersion,
    path: &str,
    host: &str,
    scheme: &str,
) -> Result<(Protocol, SimVersion), Box<ErrorResponse>> {
    let path = path.split('?').next().unwrap_or(path);
    if path == "/websocket" {
        return Ok((Protocol::Legacy, SimVersion::V24_10));
    }
    if let Some(v) = path.strip_prefix("/api/") {
        let served = version != SimVersion::V24_10 && (v == "current" || v == "v24.10");
        if served || api_versions(version).contains(&v) {
            let api = if v == "v24.10" {
                SimVersion::V24_10
            } else if v.starts_with("v25.04") {
                SimVersion::V25_04
            } else if v.starts_with("v25.10") {
                SimVersion::V25_10
            } else {
                version
            };
            return Ok((Protocol::JsonRpc, api));
        }
        if version != SimVersion::V24_10 {
            let mut r = ErrorResponse::new(Some("404: Not Found".into()));
            *r.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            return Err(Box::new(r));
        }
    }
    // nginx `location /`: rewrite to the web UI.
    let mut r = ErrorResponse::new(Some("<html><body>302 Found</body></html>".into()));
    *r.status_mut() = tungstenite::http::StatusCode::FOUND;
    if let Ok(loc) = format!("{scheme}://{host}/ui/").parse() {
        r.headers_mut().insert("Location", loc);
    }
    Err(Box::new(r))
}

#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature
fn serve_connection(mw: Arc<Middleware>, mut stream: Stream, origin: Origin, stop: Arc<AtomicBool>, scheme: &str) {
    stream.set_read_timeout(Duration::from_millis(100));
    let version = mw.version();
    let Some(stream) = plain_http(version, stream, &stop, mw.opts.handshake_timeout) else { return };
    let mut protocol = None;
    let https_redirect = if scheme == "http" { mw.opts.https_redirect_port } else { None };
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_string();
        if let Some(port) = https_redirect {
            // nginx with "HTTPS redirect" on: `return 307 https://$host:<port>$request_uri`.
            let hostname = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            let mut r = ErrorResponse::new(Some("<html><body>307 Temporary Redirect</body></html>".into()));
            *r.status_mut() = tungstenite::http::StatusCode::TEMPORARY_REDIRECT;
            if let Ok(loc) = format!("https://{hostname}:{port}{}", req.uri()).parse() {
                r.headers_mut().insert("Location", loc);
            }
            return Err(r);
        }
        let p = route(version, req.uri().path(), &host, scheme).map_err(|r| *r)?;
        protocol = Some(p);
        Ok(resp)
    };
    let deadline = Instant::now() + mw.opts.handshake_timeout;
    let mut attempt = tungstenite::accept_hdr_with_config(stream, callback, Some(ws_config()));
    let mut ws = loop {
        match attempt {
            Ok(ws) => break ws,
            Err(HandshakeError::Interrupted(mid)) if Instant::now() < deadline && !stop.load(Ordering::SeqCst) => {
                attempt = mid.handshake()
            }
            Err(e) => {
                log::debug!("simulator: WebSocket handshake failed: {e}");
                return;
            }
        }
    };
    let Some((protocol, api)) = protocol else { return };
    let codec = Codec { protocol, legacy_24_10: version == SimVersion::V24_10 };
    let (out_tx, out_rx) = crossbeam_channel::unbounded();
    let session = Arc::new(Session::new(
        mw.next_session_id(),
        codec,
        api,
        origin,
        out_tx,
        ws.get_ref().waker(),
        mw.faults.half_open_epoch(),
    ));
    if mw.opts.ui_allowlist_denied && !matches!(session.origin, Origin::Memory) {
        // The upgrade succeeds, then the allowlist check closes the socket.
        let reason = "You are not allowed to access this resource";
        let _ = ws.close(Some(CloseFrame { code: CloseCode::from(1008), reason: reason.into() }));
        let _ = ws.flush();
        std::thread::sleep(Duration::from_millis(50));
        ws.get_mut().close();
        return;
    }
    mw.register(session.clone());
    let (task_tx, task_rx) = crossbeam_channel::unbounded::<Task>();
    // Workers end on their own once the task channel closes and their current call is done (a call may be
    // waiting on a job that never finishes, so the connection does not wait for them).
    for i in 0..EXECUTING {
        let (mw, session, rx) = (mw.clone(), session.clone(), task_rx.clone());
        let _ = std::thread::Builder::new().name(format!("sim-call-{i}")).spawn(move || worker(mw, session, rx));
    }
    drop(task_rx);
    let generation = mw.generation.load(Ordering::SeqCst);
    let tick = if ws.get_ref().polls() {
        Duration::from_millis(2)
    } else {
        IDLE_TICK.min(mw.opts.idle_timeout / 4).max(Duration::from_millis(1))
    };
    ws.get_mut().set_read_timeout(tick);
    let mut conn = Connection { mw: mw.clone(), session: session.clone(), tasks: task_tx, last_out: Instant::now() };
    conn.run(&mut ws, &out_rx, &stop, generation, tick);
    session.closed.store(true, Ordering::SeqCst);
    mw.unregister(session.id);
    drop(conn);
    ws.get_mut().close();
}

/// One call waiting for an execution slot.
struct Task {
    /// `None` = a JSON-RPC notification: executed, never answered.
    id: Option<Value>,
    method: String,
    params: Vec<Value>,
}

fn worker(mw: Arc<Middleware>, session: Arc<Session>, tasks: Receiver<Task>) {
    for task in tasks.iter() {
        let msg_id = task.id.clone().unwrap_or(Value::Null);
        let reply = mw.handle_call(&session, &msg_id, &task.method, task.params);
        // Free the slot before answering, so a client that sends its next call on receipt never trips the limit.
        session.admitted.fetch_sub(1, Ordering::SeqCst);
        if let Some(id) = &task.id {
            if mw.faults.take_garbage() {
                session.send_text("}{ not json \u{1}".into());
            }
            match &reply.result {
                Ok(v) => session.send_result(id, v),
                Err(f) => session.send_error(id, f),
            }
        }
        if let Some(after) = reply.after {
            after();
        }
    }
}

struct Connection {
    mw: Arc<Middleware>,
    session: Arc<Session>,
    tasks: Sender<Task>,
    last_out: Instant,
}

enum Flow {
    Continue,
    /// Close with a close frame.
    Close(u16, String),
    /// Drop the socket.
    Drop,
}

impl Connection {
    fn run(
        &mut self,
        ws: &mut WebSocket<Stream>,
        out: &Receiver<Outgoing>,
        stop: &AtomicBool,
        generation: u64,
        tick: Duration,
    ) {
        let idle = self.mw.opts.idle_timeout;
        let mut busy_until = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) || self.mw.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            if self.session.half_open_epoch.load(Ordering::SeqCst) < self.mw.faults.half_open_epoch() {
                // Half-open: keep the socket, never read or answer; nginx still closes it when idle.
                while self.last_out.elapsed() < idle
                    && !stop.load(Ordering::SeqCst)
                    && self.mw.generation.load(Ordering::SeqCst) == generation
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            // Output first: responses and events queued by workers and event sources.
            let mut wrote = false;
            loop {
                match out.try_recv() {
                    Ok(Outgoing::Text(t)) => {
                        wrote = true;
                        if ws.write(Message::Text(t)).is_err() {
                            return;
                        }
                    }
                    Ok(Outgoing::Drop) => return,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if wrote {
                self.last_out = Instant::now();
                busy_until = self.last_out + Duration::from_millis(500);
            }
            match ws.flush() {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if is_tick(&e) => {}
                Err(_) => return,
            }
            if self.last_out.elapsed() >= idle {
                log::debug!("simulator: closing connection {} after {:?} idle", self.session.id, idle);
                return;
            }
            if ws.get_ref().polls() {
                // TLS cannot be woken: poll fast while busy, slowly when quiet.
                let t = if Instant::now() < busy_until { tick } else { Duration::from_millis(50) };
                ws.get_mut().set_read_timeout(t);
            }
            match ws.read() {
                Ok(Message::Text(text)) => {
                    busy_until = Instant::now() + Duration::from_millis(500);
                    match self.on_text(text) {
                        Flow::Continue => {}
                        Flow::Close(code, reason) => return self.close(ws, code, reason),
                        Flow::Drop => return,
                    }
                }
                Ok(Message::Binary(_)) => {
                    self.mw.frames_received.fetch_add(1, Ordering::SeqCst);
                    return self.close(ws, 1003, "Invalid message type".into());
                }
                Ok(Message::Ping(_)) => {
                    // tungstenite queued the pong; it goes out with the next flush and counts as traffic.
                    self.last_out = Instant::now();
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if is_tick(&e) => {}
                Err(tungstenite::Error::Capacity(_)) => {
                    return self.close(ws, 1009, "Max message length is 64 kB".into())
                }
                Err(_) => return,
            }
        }
    }

    fn close(&mut self, ws: &mut WebSocket<Stream>, code: u16, reason: String) {
        let _ = ws.close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }));
        let end = Instant::now() + Duration::from_millis(500);
        // Give the close frame a moment to go out (and the peer's reply to come back).
        while Instant::now() < end {
            match ws.flush() {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if is_tick(&e) => continue,
                Err(_) => return,
            }
            match ws.read() {
                Err(tungstenite::Error::Io(e)) if is_tick(&e) => {}
                Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn on_text(&mut self, text: String) -> Flow {
        self.mw.frames_received.fetch_add(1, Ordering::SeqCst);
        if self.session.half_open_epoch.load(Ordering::SeqCst) < self.mw.faults.half_open_epoch() {
            // Frozen while we were waiting in read: this frame is never processed.
            return Flow::Continue;
        }
        if self.mw.faults.frame_trips_drop() {
            return Flow::Drop;
        }
        let chars = text.chars().count();
        if self.session.is_authenticated() {
            if chars > AUTH_MAX_CHARS {
                return Flow::Close(1009, "Max message length is 64 kB".into());
            }
        } else if chars > ANON_MAX_CHARS {
            return Flow::Close(1007, "Anonymous connection max message length is 8 kB".into());
        }
        match self.session.protocol() {
            Protocol::JsonRpc => self.on_jsonrpc(&text),
            Protocol::Legacy => self.on_ddp(&text),
        }
    }

    /// Admit a call or refuse it as the 21st.
    fn admit(&self, id: Option<Value>, method: String, params: Vec<Value>) {
        let admitted = self.session.admitted.fetch_add(1, Ordering::SeqCst);
        self.mw.peak_admitted.fetch_max(admitted as u64 + 1, Ordering::SeqCst);
        if admitted >= ADMITTED {
            self.session.admitted.fetch_sub(1, Ordering::SeqCst);
            self.mw.rejected_calls.fetch_add(1, Ordering::SeqCst);
            if let Some(id) = id {
                self.session.send_error(&id, &Failure::TooManyCalls);
            }
            return;
        }
        if self.tasks.send(Task { id, method, params }).is_err() {
            self.session.admitted.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn on_jsonrpc(&mut self, text: &str) -> Flow {
        let msg: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.session.send_text(Codec::parse_error(&e.to_string()));
                return Flow::Continue;
            }
        };
        let obj = match msg {
            Value::Object(o) => o,
            Value::Array(_) if self.mw.version() >= SimVersion::V25_10 => {
                self.session.send_text(Codec::parse_error("Batch messages are not supported at this time"));
                return Flow::Continue;
            }
            // 25.04 crashes its handler loop on a batch: the connection drops.
            Value::Array(_) => return Flow::Drop,
            _ => {
                self.session.send_text(Codec::parse_error("Invalid message"));
                return Flow::Continue;
            }
        };
        let id = obj.get("id").cloned();
        let reject = |session: &Session, why: &str| {
            if let Some(id) = &id {
                session.send_error(id, &Failure::InvalidRequest(why.to_string()));
            }
            Flow::Continue
        };
        if let Some(i) = &id {
            if !(i.is_null() || i.is_string() || i.is_i64() || i.is_u64()) {
                self.session.send_error(
                    &Value::Null,
                    &Failure::InvalidRequest("'id' member must be of type null, int or string".into()),
                );
                return Flow::Continue;
            }
        }
        match obj.get("jsonrpc") {
            None => return reject(&self.session, "Missing 'jsonrpc' member"),
            Some(v) if v != "2.0" => return reject(&self.session, "Invalid 'jsonrpc' member"),
            _ => {}
        }
        let method = match obj.get("method").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => return reject(&self.session, "'method' member must be a non-empty string"),
        };
        let params = match obj.get("params") {
            None => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return reject(&self.session, "'params' member must be of type array"),
        };
        self.admit(id, method, params);
        Flow::Continue
    }

    fn on_ddp(&mut self, text: &str) -> Flow {
        let msg: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Flow::Close(1007, "Invalid message".into()),
            Err(e) => return Flow::Close(1007, e.to_string()),
        };
        let kind = msg.get("msg").and_then(Value::as_str).unwrap_or_default();
        if !self.session.ddp_connected.load(Ordering::SeqCst) {
            if kind == "connect" && msg.get("version").and_then(Value::as_str) == Some("1") {
                self.session.ddp_connected.store(true, Ordering::SeqCst);
                let sid = super::apps::hex_id("ddp-session", self.session.id);
                let sid = format!("{}-{}-{}-{}-{}", &sid[0..8], &sid[8..12], &sid[12..16], &sid[16..20], &sid[20..32]);
                self.session.send_text(json!({"msg": "connected", "session": sid}).to_string());
            } else {
                self.session.send_text(json!({"msg": "failed", "version": "1"}).to_string());
            }
            return Flow::Continue;
        }
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        match kind {
            "method" => {
                let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
                let params = match msg.get("params") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a.clone(),
                    Some(_) => {
                        self.session.send_error(&id, &Failure::call(EINVAL, "`params` must be a list."));
                        return Flow::Continue;
                    }
                };
                self.admit(Some(id), method, params);
            }
            "sub" => {
                let name = msg.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let ident = id.as_str().map(str::to_string).unwrap_or_else(|| id.to_string());
                if !self.session.is_authenticated() {
                    self.session.send_error(&id, &Failure::call(EACCES, "Not authorized"));
                    return Flow::Continue;
                }
                match events::subscribe(&self.mw, &self.session, &ident, &name) {
                    Ok(after) => {
                        self.session.send_text(json!({"msg": "ready", "subs": [id]}).to_string());
                        if let Some(after) = after {
                            after();
                        }
                    }
                    Err(f) => self.session.send_error(&id, &f),
                }
            }
            "unsub" => {
                let ident = id.as_str().map(str::to_string).unwrap_or_else(|| id.to_string());
                events::unsubscribe(&self.session, &ident);
            }
            "ping" if self.mw.version() == SimVersion::V24_10 => {
                let mut pong = json!({"msg": "pong"});
                if let Some(i) = msg.get("id") {
                    pong["id"] = i.clone();
                }
                self.session.send_text(pong.to_string());
            }
            _ => {}
        }
        Flow::Continue
    }
}

fn is_tick(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

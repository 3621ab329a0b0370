//! Integration tests: sim (owned by the sim helper).
//!
//! The simulator driven over real sockets on 127.0.0.1 with a plain tungstenite client sending raw frames — no
//! dependency on the project's own TrueNAS client.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use truenas_mcp::sim::{RateLimit, SimApiKey, SimOptions, SimServer, SimVersion, Simulator};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(10);
const USER: &str = "mcp-service";
const PASSWORD: &str = "mock-password";
const KEY: &str = "7-Zq2sGv9x0PpL3mN8bR4tY6wE1uI5oA7sD9fG2hJ4kL6zX8cV0bN3mQ5wE7rT9yU";

trait Transport: Read + Write {
    fn set_timeout(&self, d: Duration);
}
impl Transport for TcpStream {
    fn set_timeout(&self, d: Duration) {
        self.set_read_timeout(Some(d)).unwrap();
    }
}
impl Transport for native_tls::TlsStream<TcpStream> {
    fn set_timeout(&self, d: Duration) {
        self.get_ref().set_read_timeout(Some(d)).unwrap();
    }
}

/// A raw WebSocket client: sends frames, collects everything that is not the awaited response.
struct Raw<S: Transport> {
    ws: WebSocket<S>,
    backlog: VecDeque<Value>,
    next_id: u64,
    legacy: bool,
}

fn options(version: SimVersion) -> SimOptions {
    SimOptions {
        version,
        api_keys: vec![SimApiKey { id: 7, key: KEY.into(), username: USER.into() }],
        job_step: Duration::from_millis(5),
        login_fail_delay: Duration::from_millis(1),
        log_follow_interval: Duration::from_millis(20),
        rate_limit: RateLimit { max_calls: 3, window: Duration::from_secs(60), delay: Duration::from_millis(1) },
        ..Default::default()
    }
}

fn start(opts: SimOptions) -> (Simulator, SimServer) {
    let sim = Simulator::new(opts);
    let server = sim.serve("127.0.0.1:0").unwrap();
    (sim, server)
}

fn connect(server: &SimServer, path: &str) -> Raw<TcpStream> {
    let tcp = TcpStream::connect(server.addr).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{}{path}", server.addr), tcp).unwrap();
    ws.get_ref().set_timeout(WAIT);
    Raw { ws, backlog: VecDeque::new(), next_id: 0, legacy: path == "/websocket" }
}

fn connect_err(server: &SimServer, path: &str) -> tungstenite::Error {
    let tcp = TcpStream::connect(server.addr).unwrap();
    match tungstenite::client(format!("ws://{}{path}", server.addr), tcp) {
        Ok(_) => panic!("handshake to {path} unexpectedly succeeded"),
        Err(tungstenite::HandshakeError::Failure(e)) => e,
        Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("interrupted"),
    }
}

impl<S: Transport> Raw<S> {
    fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string())).unwrap();
    }

    fn send_text(&mut self, t: String) {
        self.ws.send(Message::Text(t)).unwrap();
    }

    /// The next message, or panic after the wait.
    fn recv(&mut self) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        self.recv_wire()
    }

    fn recv_wire(&mut self) -> Value {
        loop {
            match self.ws.read().expect("read") {
                Message::Text(t) => return serde_json::from_str(&t).unwrap_or(Value::String(t)),
                Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    }

    /// The close frame the server sends next (skipping other messages).
    fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return None,
                Err(tungstenite::Error::Protocol(_)) => return None,
                Err(tungstenite::Error::Io(e)) => {
                    assert!(
                        !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                        "no close within the wait"
                    );
                    return None;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> String {
        self.next_id += 1;
        let id = format!("req-{}", self.next_id);
        if self.legacy {
            self.send(json!({"msg": "method", "id": id, "method": method, "params": params}));
        } else {
            self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        }
        id
    }

    /// The response to `id`; everything else goes to the backlog.
    fn response(&mut self, id: &str) -> Value {
        let mut skipped = Vec::new();
        loop {
            let v = match self.backlog.iter().position(|m| m["id"] == id && is_response(m)) {
                Some(i) => self.backlog.remove(i).unwrap(),
                None => self.recv_wire(),
            };
            if v["id"] == id && is_response(&v) {
                self.backlog.extend(skipped);
                return v;
            }
            skipped.push(v);
        }
    }

    /// Full response envelope of a call.
    fn call_raw(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        self.response(&id)
    }

    /// The result of a call that must succeed.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let r = self.call_raw(method, params.clone());
        assert!(r.get("error").is_none(), "{method} {params} failed: {r}");
        r["result"].clone()
    }

    fn login(&mut self) {
        let r = if self.legacy {
            self.call("auth.login", json!([USER, PASSWORD]))
        } else {
            self.call("auth.login_ex", json!([{"mechanism": "PASSWORD_PLAIN", "username": USER, "password": PASSWORD}]))
        };
        assert!(r == json!(true) || r["response_type"] == "SUCCESS", "{r}");
    }

    fn ddp_connect(&mut self) {
        self.send(json!({"msg": "connect", "version": "1", "support": ["1"]}));
        assert_eq!(self.recv()["msg"], "connected");
    }

    /// Wait for the next event matching `pred` (from the backlog first).
    fn event(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let v = self.recv_wire();
            if pred(&v) {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    /// `core.get_jobs` event fields of job `id` until it is finished.
    fn wait_job(&mut self, id: i64) -> Value {
        loop {
            let e = self.event(|m| {
                let p = params_of(m);
                p["collection"] == "core.get_jobs" && p["id"] == id
            });
            let f = params_of(&e)["fields"].clone();
            if ["SUCCESS", "FAILED", "ABORTED"].contains(&f["state"].as_str().unwrap_or("")) {
                return f;
            }
        }
    }
}

fn is_response(m: &Value) -> bool {
    m.get("result").is_some() || m.get("error").is_some()
}

/// The event body in either dialect.
fn params_of(m: &Value) -> Value {
    if m.get("jsonrpc").is_some() {
        m["params"].clone()
    } else {
        m.clone()
    }
}

fn compose(image: &str) -> String {
    format!("services:\n  web:\n    image: {image}\n    ports:\n      - \"18080:80\"\n    volumes:\n      - /mnt/tank/apps/web:/data\n")
}

#[test]
fn jsonrpc_login_system_info_and_app_query() {
    for (version, release) in [(SimVersion::V25_04, "25.04.2.6"), (SimVersion::V25_10, "25.10.6")] {
        let (_sim, server) = start(options(version));
        let mut c = connect(&server, "/api/current");
        let denied = c.call_raw("system.info", json!([]));
        assert_eq!(denied["error"]["code"], -32001);
        assert_eq!(denied["error"]["data"]["error"], 207);
        assert_eq!(denied["error"]["data"]["errname"], "ENOTAUTHENTICATED");
        c.login();
        assert_eq!(c.call("system.info", json!([]))["version"], release);
        let apps = c.call("app.query", json!([[["name", "=", "whoami"]]]));
        assert_eq!(apps.as_array().unwrap().len(), 1);
        assert_eq!(apps[0]["state"], "RUNNING");
        let unknown = c.call_raw("no.such_method", json!([]));
        assert_eq!(unknown["error"], json!({"code": -32601, "message": "Method does not exist"}));
    }
}

#[test]
fn job_added_event_precedes_response_then_progress_and_success() {
    let (sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    c.call("core.subscribe", json!(["core.get_jobs"]));
    let id = c.request(
        "app.create",
        json!([{"app_name": "web", "custom_app": true, "custom_compose_config_string": compose("nginx:1.27")}]),
    );
    // Read the wire in order: the ADDED event must come before our response.
    let first = c.recv_wire();
    assert_eq!(first["method"], "collection_update", "{first}");
    assert_eq!(first["params"]["msg"], "added");
    let job_id = first["params"]["id"].as_i64().unwrap();
    let resp = c.response(&id);
    assert_eq!(resp["result"], job_id);
    let mut percents = Vec::new();
    let done = loop {
        let e = c.event(|m| m["params"]["collection"] == "core.get_jobs" && m["params"]["id"] == job_id);
        let f = e["params"]["fields"].clone();
        percents.push(f["progress"]["percent"].as_i64().unwrap());
        if f["state"] == "SUCCESS" {
            break f;
        }
    };
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert!(percents.contains(&60));
    assert_eq!(done["result"]["state"], "DEPLOYING");
    assert!(done["time_started"]["$date"].is_u64(), "{done}");
    // Settles to RUNNING.
    let deadline = Instant::now() + WAIT;
    loop {
        let a = c.call("app.get_instance", json!(["web"]));
        if a["state"] == "RUNNING" {
            assert_eq!(a["active_workloads"]["used_ports"][0]["host_ports"][0]["host_port"], 18080);
            break;
        }
        assert!(Instant::now() < deadline, "never settled: {a}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(sim.call_log().iter().any(|(m, _)| m == "app.create"));
}

impl Transport for truenas_mcp::sim::MemStream {
    fn set_timeout(&self, _d: Duration) {}
}

#[test]
fn in_memory_connection_speaks_the_same_protocol() {
    let sim = Simulator::new(options(SimVersion::V25_10));
    let mut stream = sim.connect_in_memory();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (ws, _) = tungstenite::client("ws://localhost/api/current", stream).unwrap();
    let mut c = Raw { ws, backlog: VecDeque::new(), next_id: 0, legacy: false };
    c.login();
    assert_eq!(sim.connections(), 1);
    let apps = c.call("app.query", json!([]));
    let states: Vec<(&str, &str)> =
        apps.as_array().unwrap().iter().map(|a| (a["name"].as_str().unwrap(), a["state"].as_str().unwrap())).collect();
    assert_eq!(states, vec![("jellyfin", "STOPPED"), ("postgres", "CRASHED"), ("whoami", "RUNNING")]);
    drop(c);
    let deadline = Instant::now() + WAIT;
    while sim.connections() != 0 {
        assert!(Instant::now() < deadline, "server side never noticed the drop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn legacy_24_10_redirects_api_and_speaks_ddp() {
    let (_sim, server) = start(options(SimVersion::V24_10));
    match connect_err(&server, "/api/current") {
        tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 302);
            let loc = resp.headers().get("location").unwrap().to_str().unwrap();
            assert!(loc.ends_with("/ui/"), "{loc}");
        }
        other => panic!("expected an HTTP 302, got {other}"),
    }
    let mut c = connect(&server, "/websocket");
    // Anything before connect fails.
    c.send(json!({"msg": "method", "id": "x", "method": "core.ping", "params": []}));
    assert_eq!(c.recv(), json!({"msg": "failed", "version": "1"}));
    c.ddp_connect();
    c.send(json!({"msg": "ping", "id": "p1"}));
    assert_eq!(c.recv(), json!({"msg": "pong", "id": "p1"}));
    let denied = c.call_raw("system.info", json!([]));
    assert_eq!(denied["error"]["error"], 207);
    assert_eq!(denied["error"]["reason"], "Not authenticated");
    assert_eq!(c.call("auth.login", json!([USER, "wrong"])), json!(false));
    c.login();
    assert_eq!(c.call("system.version", json!([])), "TrueNAS-SCALE-24.10.2.4");
    assert_eq!(c.call_raw("auth.login_ex", json!([{}]))["error"]["error"], 201);
    // 24.10 has no force_remove_custom_app.
    let r = c.call_raw("app.delete", json!(["whoami", {"force_remove_custom_app": true}]));
    let job = r["result"].as_i64().expect("job id");
    c.send(json!({"msg": "sub", "id": "jobs", "name": "core.get_jobs"}));
    assert_eq!(c.event(|m| m["msg"] == "ready"), json!({"msg": "ready", "subs": ["jobs"]}));
    let got = c.call("core.get_jobs", json!([[["id", "=", job]], {"get": true}]));
    let failed = if got["state"] == "FAILED" { got } else { c.wait_job(job) };
    assert_eq!(failed["exc_info"]["type"], "VALIDATION");
    assert_eq!(failed["exc_info"]["extra"][0][0], "options.force_remove_custom_app");
    // Event-source argument errors end with nosub (before ready).
    c.send(json!({"msg": "sub", "id": "logs", "name": "app.container_log_follow:{\"app_name\": \"whoami\"}"}));
    let nosub = c.event(|m| m["msg"] == "nosub" || m["msg"] == "ready");
    assert_eq!(nosub["msg"], "nosub", "{nosub} {:?}", c.backlog);
    assert_eq!(nosub["error"]["extra"][0][0], "container_id");
}

#[test]
fn jsonrpc_envelope_errors() {
    let (_sim, server) = start(options(SimVersion::V25_10));
    let mut c = connect(&server, "/api/current");
    c.send_text("{not json".into());
    let e = c.recv();
    assert_eq!(e["error"]["code"], -32700);
    assert!(e["id"].is_null());
    c.send(json!([{"jsonrpc": "2.0", "id": 1, "method": "core.ping"}]));
    assert_eq!(c.recv()["error"]["message"], "Batch messages are not supported at this time");
    c.send(json!({"jsonrpc": "2.0", "id": "n", "method": "core.ping", "params": {"a": 1}}));
    assert_eq!(
        c.recv(),
        json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "'params' member must be of type array"}, "id": "n"})
    );
    c.send(json!({"id": "j", "method": "core.ping", "params": []}));
    assert_eq!(c.recv()["error"]["message"], "Missing 'jsonrpc' member");
    // 25.10: core.ping works unauthenticated; set_options returns the options.
    assert_eq!(c.call("core.ping", json!([])), "pong");
    assert_eq!(
        c.call("core.set_options", json!([{"legacy_jobs": false}])),
        json!({"legacy_jobs": false, "private_methods": false, "py_exceptions": false})
    );
}

#[test]
fn strict_params_rejected_with_the_middleware_error_shape() {
    let (_sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    let cases = [
        (
            "app.container_ids",
            json!(["whoami", {"alive_only": "yes"}]),
            "options.alive_only",
            "Input should be a valid boolean",
        ),
        ("app.config", json!([]), "app_name", "Field required"),
        ("app.used_ports", json!([1]), "", "Too many arguments (expected 0, found 1)"),
        ("core.subscribe", json!([{"name": "x"}]), "event", "Input should be a valid string"),
    ];
    for (method, params, attr, msg) in cases {
        let r = c.call_raw(method, params);
        let err = &r["error"];
        assert_eq!(err["code"], -32602, "{method}: {r}");
        assert_eq!(err["message"], "Invalid params");
        assert_eq!(err["data"]["error"], 22);
        assert_eq!(err["data"]["errname"], "EINVAL");
        assert_eq!(err["data"]["extra"], json!([[attr, msg, 22]]), "{method}");
        assert_eq!(err["data"]["reason"], format!("[EINVAL] {attr}: {msg}\n"));
    }
    let missing = c.call_raw("app.get_instance", json!(["nope"]));
    assert_eq!(missing["error"]["code"], -32602);
    assert_eq!(missing["error"]["data"]["extra"], json!([[null, "App nope does not exist", 2]]));
    // Job methods validate inside the job.
    c.call("core.subscribe", json!(["core.get_jobs"]));
    let job = c.call("app.create", json!([{"app_name": "Bad_Name", "custom_app": true, "bogus": 1}]));
    let f = c.wait_job(job.as_i64().unwrap());
    assert_eq!(f["state"], "FAILED");
    assert_eq!(f["exc_info"]["type"], "VALIDATION");
    let attrs: Vec<&str> = f["exc_info"]["extra"].as_array().unwrap().iter().map(|e| e[0].as_str().unwrap()).collect();
    assert_eq!(attrs, vec!["app_create.app_name", "app_create.bogus"]);
}

#[test]
fn app_state_machine_errors_and_stop_start() {
    let (_sim, server) = start(options(SimVersion::V25_10));
    let mut c = connect(&server, "/api/current");
    c.login();
    c.call("core.subscribe", json!(["core.get_jobs"]));
    c.call("core.subscribe", json!(["app.query"]));
    let run = |c: &mut Raw<TcpStream>, method: &str, params: Value| {
        let id = c.call(method, params).as_i64().unwrap();
        c.wait_job(id)
    };
    let dup = run(
        &mut c,
        "app.create",
        json!([{"app_name": "whoami", "custom_app": true, "custom_compose_config": {"services": {"a": {"image": "x"}}}}]),
    );
    assert_eq!(dup["exc_info"]["type"], "CallError");
    assert_eq!(dup["exc_info"]["errno"], 17);
    assert_eq!(dup["error"], "[EEXIST] Application with name whoami already exists");
    let gone = run(&mut c, "app.delete", json!(["ghost", {"remove_images": true}]));
    assert_eq!(gone["exc_info"]["type"], "VALIDATION");
    assert_eq!(gone["exc_info"]["extra"], json!([[null, "App ghost does not exist", 2]]));
    let stop = run(&mut c, "app.stop", json!(["whoami"]));
    assert_eq!(stop["state"], "SUCCESS");
    let stopping =
        c.event(|m| m["params"]["collection"] == "app.query" && m["params"]["fields"]["state"] == "STOPPING");
    assert_eq!(stopping["params"]["id"], "whoami");
    c.event(|m| m["params"]["collection"] == "app.query" && m["params"]["fields"]["state"] == "STOPPED");
    assert_eq!(c.call("app.container_ids", json!(["whoami", {"alive_only": false}])), json!({}));
    // Updating a stopped app keeps it stopped.
    let upd =
        run(&mut c, "app.update", json!(["whoami", {"custom_compose_config_string": compose("traefik/whoami:v1.11")}]));
    assert_eq!(upd["result"]["state"], "STOPPED");
    assert_eq!(c.call("app.config", json!(["whoami"]))["services"]["web"]["image"], "traefik/whoami:v1.11");
    run(&mut c, "app.start", json!(["whoami"]));
    c.event(|m| m["params"]["collection"] == "app.query" && m["params"]["fields"]["state"] == "RUNNING");
    // A crashing image ends CRASHED.
    let created = run(
        &mut c,
        "app.create",
        json!([{"app_name": "boom", "custom_app": true, "custom_compose_config_string": compose("busybox-crash:1")}]),
    );
    assert_eq!(created["state"], "SUCCESS");
    let crashed = c.event(|m| m["params"]["id"] == "boom" && m["params"]["fields"]["state"] == "CRASHED");
    assert_eq!(crashed["params"]["fields"]["active_workloads"]["container_details"][0]["state"], "crashed");
}

#[test]
fn abort_and_new_style_jobs() {
    let (sim, server) = start(options(SimVersion::V25_10));
    let mut c = connect(&server, "/api/current");
    c.login();
    c.call("core.subscribe", json!(["core.get_jobs"]));
    sim.faults().set_never_finish_jobs(true);
    let job = c.call("app.redeploy", json!(["whoami"])).as_i64().unwrap();
    c.event(|m| m["params"]["id"] == job && m["params"]["fields"]["progress"]["percent"].as_i64() >= Some(50));
    assert_eq!(c.call("core.job_abort", json!([job])), Value::Null);
    let f = c.wait_job(job);
    assert_eq!(f["state"], "ABORTED");
    assert!(f["error"].is_null() && f["exception"].is_null() && f["exc_info"].is_null(), "{f}");
    sim.faults().set_never_finish_jobs(false);
    // New-style: the call answers with the job's result; message_ids carries the request id.
    c.call("core.set_options", json!([{"legacy_jobs": false}]));
    let id = c.request("app.stop", json!(["whoami"]));
    let added = c.event(|m| m["params"]["msg"] == "added");
    assert_eq!(added["params"]["fields"]["message_ids"], json!([id]));
    let resp = c.response(&id);
    assert_eq!(resp["result"], Value::Null);
    let bad = c.call_raw("app.stop", json!(["ghost"]));
    assert_eq!(bad["error"]["code"], -32602);
}

#[test]
fn the_21st_concurrent_call_is_refused() {
    let (sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    // Long enough that all 21 are in flight together even on a loaded machine.
    sim.faults().set_latency("system.", Duration::from_millis(800));
    let ids: Vec<String> = (0..21).map(|_| c.request("system.info", json!([]))).collect();
    let last = c.response(&ids[20]);
    assert_eq!(
        last["error"],
        json!({"code": -32000, "message": "Maximum number of concurrent calls (20) has exceeded"})
    );
    for id in &ids[..20] {
        assert!(c.response(id).get("result").is_some());
    }
    assert_eq!((sim.rejected_calls(), sim.peak_in_flight()), (1, 20));
    // The legacy dialect says ETOOMANYREFS.
    let mut d = connect(&server, "/websocket");
    d.ddp_connect();
    d.login();
    let ids: Vec<String> = (0..21).map(|_| d.request("system.info", json!([]))).collect();
    let last = d.response(&ids[20]);
    assert_eq!(last["error"]["error"], 109);
    assert_eq!(last["error"]["errname"], "ETOOMANYREFS");
    assert_eq!(last["error"]["reason"], "Maximum number of concurrent calls (20) has exceeded.");
}

#[test]
fn jitter_completes_calls_out_of_order() {
    let (sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    sim.faults().set_latency_jitter(Duration::from_millis(30));
    let ids: Vec<String> = (0..10).map(|_| c.request("core.ping", json!([]))).collect();
    let mut order = Vec::new();
    while order.len() < ids.len() {
        let m = c.recv();
        order.push(m["id"].as_str().unwrap().to_string());
    }
    assert_ne!(order, ids, "ten calls with 0-30 ms jitter should not all finish in order");
    let mut sorted = order.clone();
    sorted.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sorted, want);
}

#[test]
fn frame_limits_and_binary_frames_close_the_socket() {
    let (_sim, server) = start(options(SimVersion::V25_04));
    let big = |n: usize| json!({"jsonrpc": "2.0", "id": 1, "method": "core.ping", "params": ["x".repeat(n)]});
    let mut anon = connect(&server, "/api/current");
    anon.send(big(9000));
    assert_eq!(anon.expect_close(), Some(1007));
    let mut authed = connect(&server, "/api/current");
    authed.login();
    authed.send(big(9000));
    assert_eq!(authed.recv()["error"]["code"], -32602, "9000 chars is fine after login");
    authed.send(big(70_000));
    assert_eq!(authed.expect_close(), Some(1009));
    let mut bin = connect(&server, "/api/current");
    bin.ws.send(Message::Binary(vec![1, 2, 3])).unwrap();
    assert_eq!(bin.expect_close(), Some(u16::from(CloseCode::Unsupported)));
}

#[test]
fn idle_connections_close_and_pings_keep_them_open() {
    let (_sim, server) = start(SimOptions { idle_timeout: Duration::from_millis(600), ..options(SimVersion::V25_04) });
    let mut pinger = connect(&server, "/api/current");
    let mut idle = connect(&server, "/api/current");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        pinger.ws.send(Message::Ping(vec![1])).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(idle.expect_close(), None, "nginx-style idle close has no close frame");
    assert_eq!(pinger.call("core.set_options", json!([{}])), Value::Null);
}

#[test]
fn api_key_logins_and_revocation_over_insecure_transport() {
    let mut opts = options(SimVersion::V25_04);
    opts.rate_limit.max_calls = 100;
    let (sim, server) = start(opts);
    let mut c = connect(&server, "/api/current");
    let key_login = |c: &mut Raw<TcpStream>, key: &str| {
        c.call("auth.login_ex", json!([{"mechanism": "API_KEY_PLAIN", "username": USER, "api_key": key}]))
    };
    assert_eq!(key_login(&mut c, "7-wrong")["response_type"], "AUTH_ERR");
    assert_eq!(key_login(&mut c, KEY)["response_type"], "SUCCESS", "loopback is a secure transport");
    sim.faults().set_plain_tcp_remote(true);
    let mut remote = connect(&server, "/api/current");
    assert_eq!(remote.call("auth.login_with_api_key", json!([KEY])), json!(false));
    assert!(sim.api_key_revoked(7));
    sim.faults().set_plain_tcp_remote(false);
    assert_eq!(key_login(&mut remote, KEY)["response_type"], "EXPIRED", "revocation is permanent");
    // Password paths.
    let pw = |c: &mut Raw<TcpStream>, p: &str| {
        c.call("auth.login_ex", json!([{"mechanism": "PASSWORD_PLAIN", "username": USER, "password": p}]))
    };
    assert_eq!(pw(&mut remote, "nope"), json!({"response_type": "AUTH_ERR"}));
    let ok = pw(&mut remote, PASSWORD);
    assert_eq!(ok["response_type"], "SUCCESS");
    assert_eq!(ok["user_info"]["privilege"]["roles"], json!({"$set": ["FULL_ADMIN"]}));
}

#[test]
fn unauthenticated_calls_are_rate_limited() {
    let (_sim, server) = start(options(SimVersion::V25_04));
    // The 4th unauthenticated call of a method inside the window (knob: 3).
    let mut anon = connect(&server, "/api/current");
    for _ in 0..3 {
        assert_eq!(anon.call("auth.login", json!([USER, "x"])), json!(false));
    }
    let limited = anon.call_raw("auth.login", json!([USER, "x"]));
    assert_eq!(limited["error"]["data"]["error"], 16);
    assert_eq!(limited["error"]["data"]["reason"], "[EBUSY] Rate Limit Exceeded");
}

#[test]
fn otp_expired_and_redirect_responses() {
    let opts = SimOptions { otp_users: vec![USER.into()], ..options(SimVersion::V25_10) };
    let (_sim, server) = start(opts);
    let mut c = connect(&server, "/api/current");
    let r = c.call("auth.login_ex", json!([{"mechanism": "PASSWORD_PLAIN", "username": USER, "password": PASSWORD}]));
    assert_eq!(r, json!({"response_type": "OTP_REQUIRED", "username": USER}));
    let r = c.call("auth.login_ex_continue", json!([{"mechanism": "OTP_TOKEN", "otp_token": "123456"}]));
    assert_eq!(r["response_type"], "SUCCESS");
    assert_eq!(r["authenticator"], "LEVEL_2");
    for (opts, want) in [
        (
            SimOptions { expired_users: vec![USER.into()], ..options(SimVersion::V25_04) },
            json!({"response_type": "EXPIRED"}),
        ),
        (
            SimOptions { ha_redirect: Some(vec!["10.0.0.2".into()]), ..options(SimVersion::V25_04) },
            json!({"response_type": "REDIRECT", "urls": ["10.0.0.2"]}),
        ),
    ] {
        let (_sim, server) = start(opts);
        let mut c = connect(&server, "/api/current");
        let r =
            c.call("auth.login_ex", json!([{"mechanism": "PASSWORD_PLAIN", "username": USER, "password": PASSWORD}]));
        assert_eq!(r, want);
    }
}

#[test]
fn log_follow_tails_then_follows_and_ends() {
    let (sim, server) = start(options(SimVersion::V25_04));
    sim.set_log_lines("whoami", 1000);
    let mut c = connect(&server, "/api/current");
    c.login();
    let ids = c.call("app.container_ids", json!(["whoami"]));
    let cid = ids.as_object().unwrap().keys().next().unwrap().clone();
    let name =
        format!("app.container_log_follow:{}", json!({"app_name": "whoami", "container_id": cid, "tail_lines": 10}));
    let ident = c.call("core.subscribe", json!([name]));
    let mut lines = Vec::new();
    while lines.len() < 12 {
        let e = c.event(|m| m["params"]["collection"] == name.as_str());
        assert_eq!(e["params"]["msg"], "added");
        lines.push(e["params"]["fields"]["data"].as_str().unwrap().to_string());
    }
    assert!(lines[0].contains("line 990:"), "{}", lines[0]);
    assert!(lines[11].contains("line 1001:"), "follows past the tail: {}", lines[11]);
    c.call("core.unsubscribe", json!([ident]));
    // Stopped app → notify_unsubscribed with the CallError; unknown container → ENOENT.
    let jf = format!("app.container_log_follow:{}", json!({"app_name": "jellyfin", "container_id": "x"}));
    c.call("core.subscribe", json!([jf]));
    let end = c.event(|m| m["method"] == "notify_unsubscribed");
    assert_eq!(end["params"]["collection"], jf.as_str());
    assert_eq!(end["params"]["error"]["reason"], "[EFAULT] Unable to retrieve logs of stopped 'jellyfin' app");
    let wc = format!("app.container_log_follow:{}", json!({"app_name": "whoami", "container_id": "nope"}));
    c.call("core.subscribe", json!([wc]));
    let end = c.event(|m| m["method"] == "notify_unsubscribed");
    assert_eq!(end["params"]["error"]["error"], 2);
    // A crashed container: the tail, then a clean end.
    let pg = c.call("app.container_ids", json!(["postgres", {"alive_only": false}]));
    let pid = pg.as_object().unwrap().keys().next().unwrap().clone();
    let pn =
        format!("app.container_log_follow:{}", json!({"app_name": "postgres", "container_id": pid, "tail_lines": 3}));
    c.call("core.subscribe", json!([pn]));
    let end = c.event(|m| m["method"] == "notify_unsubscribed");
    assert!(end["params"]["error"].is_null());
    let tail: Vec<&Value> = c.backlog.iter().filter(|m| m["params"]["collection"] == pn.as_str()).collect();
    assert_eq!(tail.len(), 3);
}

#[test]
fn tls_front_with_the_test_ca() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let opts = SimOptions {
        tls: Some((fixtures.join("server.pem"), fixtures.join("server.pkcs8.key"))),
        ..options(SimVersion::V25_04)
    };
    let (_sim, server) = start(opts);
    let tls_connect = |ca: &str| {
        let ca = native_tls::Certificate::from_pem(&std::fs::read(fixtures.join(ca)).unwrap()).unwrap();
        let connector = native_tls::TlsConnector::builder().add_root_certificate(ca).build().unwrap();
        let tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        connector.connect("localhost", tcp)
    };
    assert!(tls_connect("other-ca.pem").is_err(), "an unrelated CA must not verify");
    let tls = tls_connect("ca.pem").unwrap();
    let (ws, _) = tungstenite::client(format!("wss://localhost:{}/api/current", server.addr.port()), tls).unwrap();
    let mut c = Raw { ws, backlog: VecDeque::new(), next_id: 0, legacy: false };
    let r = c.call("auth.login_ex", json!([{"mechanism": "API_KEY_PLAIN", "username": USER, "api_key": KEY}]));
    assert_eq!(r["response_type"], "SUCCESS", "TLS is a secure transport");
    assert_eq!(c.call("system.info", json!([]))["version"], "25.04.2.6");
}

/// Whether the server ended the connection: the next read fails with something other than a timeout.
fn is_dropped(c: &mut Raw<TcpStream>) -> bool {
    loop {
        match c.ws.read() {
            Ok(Message::Text(_)) | Ok(Message::Pong(_)) | Ok(Message::Ping(_)) => continue,
            Ok(_) => return true,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn fault_drop_after_frames_and_garbage() {
    let (sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    let before = sim.frames_received();
    sim.faults().drop_after_frames(2);
    assert_eq!(c.call("core.ping", json!([])), "pong");
    c.request("core.ping", json!([]));
    assert!(is_dropped(&mut c), "the 2nd frame drops the connection");
    assert_eq!(sim.frames_received(), before + 2);
    let mut c = connect(&server, "/api/current");
    c.login();
    sim.faults().send_garbage();
    let id = c.request("core.ping", json!([]));
    assert_eq!(c.recv_wire(), Value::String("}{ not json \u{1}".into()));
    assert_eq!(c.response(&id)["result"], "pong");
}

#[test]
fn fault_drop_mid_job_keeps_the_job_running() {
    let (sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    c.call("core.subscribe", json!(["core.get_jobs"]));
    sim.faults().drop_mid_job();
    let job = c.call("app.redeploy", json!(["whoami"])).as_i64().unwrap();
    assert!(is_dropped(&mut c));
    let mut c = connect(&server, "/api/current");
    c.login();
    let deadline = Instant::now() + WAIT;
    loop {
        let j = c.call("core.get_jobs", json!([[["id", "=", job]], {"get": true}]));
        if j["state"] == "SUCCESS" {
            break;
        }
        assert!(Instant::now() < deadline, "job never finished: {j}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn fault_expired_session_and_half_open_socket() {
    let (sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    sim.faults().expire_sessions();
    assert_eq!(c.call_raw("system.info", json!([]))["error"]["data"]["error"], 207);
    c.login();
    assert_eq!(c.call("core.ping", json!([])), "pong");
    sim.faults().half_open_existing();
    c.request("core.ping", json!([]));
    c.ws.get_ref().set_timeout(Duration::from_millis(300));
    assert!(!is_dropped(&mut c), "a half-open socket neither answers nor closes");
    let mut fresh = connect(&server, "/api/current");
    fresh.login();
    assert_eq!(fresh.call("core.ping", json!([])), "pong");
}

#[test]
fn fault_restart_drops_connections_and_resets_job_ids() {
    let (sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    c.call("core.subscribe", json!(["core.get_jobs"]));
    let first = c.call("app.start", json!(["jellyfin"])).as_i64().unwrap();
    c.wait_job(first);
    let second = c.call("app.stop", json!(["jellyfin"])).as_i64().unwrap();
    assert_eq!((first, second), (1, 2));
    c.wait_job(second);
    sim.restart();
    assert!(is_dropped(&mut c));
    let mut c = connect(&server, "/api/current");
    c.login();
    assert_eq!(c.call("core.get_jobs", json!([])), json!([]));
    assert_eq!(c.call("app.start", json!(["jellyfin"])), 1);
    assert_eq!(c.call("app.query", json!([])).as_array().unwrap().len(), 3, "apps survive a restart");
}

#[test]
fn fault_stalled_tls_handshake() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let opts = SimOptions {
        tls: Some((fixtures.join("server.pem"), fixtures.join("server.pkcs8.key"))),
        ..options(SimVersion::V25_04)
    };
    let (sim, server) = start(opts);
    let ca = native_tls::Certificate::from_pem(&std::fs::read(fixtures.join("ca.pem")).unwrap()).unwrap();
    let connector = native_tls::TlsConnector::builder().add_root_certificate(ca).build().unwrap();
    let attempt = || {
        let tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        connector.connect("localhost", tcp).is_ok()
    };
    sim.faults().set_stall_tls_handshake(true);
    assert!(!attempt(), "a stalled handshake must time out");
    sim.faults().set_stall_tls_handshake(false);
    assert!(attempt());
}

#[test]
fn app_stats_events_are_lists_of_app_usage() {
    let (_sim, server) =
        start(SimOptions { stats_interval: Some(Duration::from_millis(20)), ..options(SimVersion::V25_10) });
    let mut c = connect(&server, "/api/current");
    c.login();
    c.call("core.subscribe", json!(["app.stats:{\"interval\": 2}"]));
    let e = c.event(|m| m["method"] == "collection_update");
    let stats = e["params"]["fields"].as_array().unwrap().clone();
    assert_eq!(stats.len(), 3);
    let whoami = stats.iter().find(|s| s["app_name"] == "whoami").unwrap();
    assert!(whoami["memory"].as_u64().unwrap() > 0);
    let jellyfin = stats.iter().find(|s| s["app_name"] == "jellyfin").unwrap();
    assert_eq!(jellyfin["memory"], 0, "stopped apps report zeros");
}

#[test]
fn legacy_endpoint_on_25_04_and_no_pool() {
    let (_sim, server) = start(SimOptions { docker_pool: None, ..options(SimVersion::V25_04) });
    let mut c = connect(&server, "/websocket");
    c.ddp_connect();
    // No DDP pong on 25.04+, and core.ping needs a login there.
    c.send(json!({"msg": "ping", "id": "p"}));
    let denied = c.call_raw("core.ping", json!([]));
    assert_eq!(denied["error"]["reason"], "[ENOTAUTHENTICATED] Not authenticated");
    c.login();
    assert_eq!(c.call("docker.status", json!([]))["status"], "UNCONFIGURED");
    assert!(c.call("docker.config", json!([]))["pool"].is_null());
    assert_eq!(c.call("app.query", json!([])), json!([]));
    c.send(json!({"msg": "sub", "id": "j", "name": "core.get_jobs"}));
    let job = c.call("app.create", json!([{"app_name": "x", "custom_app": true, "custom_compose_config": {"services": {"a": {"image": "nginx"}}}}]));
    let f = c.wait_job(job.as_i64().unwrap());
    assert_eq!(f["error"], "[EFAULT] No pool configured for Docker");
    assert!(c.backlog.iter().all(|m| m["msg"] != "pong"), "no pong on 25.04");
}

#[test]
fn identical_log_subscriptions_share_one_source_without_replaying_the_tail() {
    let (sim, server) = start(options(SimVersion::V25_04));
    sim.set_log_lines("whoami", 50);
    let mut a = connect(&server, "/api/current");
    a.login();
    let cid = a.call("app.container_ids", json!(["whoami"])).as_object().unwrap().keys().next().unwrap().clone();
    let name =
        format!("app.container_log_follow:{}", json!({"app_name": "whoami", "container_id": cid, "tail_lines": 5}));
    a.call("core.subscribe", json!([name]));
    for _ in 0..5 {
        a.event(|m| m["params"]["collection"] == name.as_str());
    }
    let mut b = connect(&server, "/api/current");
    b.login();
    b.call("core.subscribe", json!([name]));
    let first = b.event(|m| m["params"]["collection"] == name.as_str());
    let line = first["params"]["fields"]["data"].as_str().unwrap();
    assert!(!line.contains("line 45:"), "the joiner must not get the tail again: {line}");
    // A different arg string (same meaning, other spacing) is a new instance with its own tail.
    let spaced = name.replace(',', ", ");
    b.call("core.subscribe", json!([spaced]));
    let first = b.event(|m| m["params"]["collection"] == spaced.as_str());
    assert!(first["params"]["fields"]["data"].as_str().unwrap().contains("line 45:"));
}

#[test]
fn pinned_and_legacy_endpoints_use_their_api_models() {
    let (_sim, server) = start(options(SimVersion::V25_10));
    let shapes = [("/api/current", true, true), ("/api/v25.04.2", false, true), ("/websocket", false, false)];
    for (path, host_ips, networks) in shapes {
        let mut c = connect(&server, path);
        if c.legacy {
            c.ddp_connect();
        }
        c.login();
        let w = c.call("app.get_instance", json!(["whoami"]))["active_workloads"].clone();
        assert_eq!(w.get("used_host_ips").is_some(), host_ips, "{path}");
        assert_eq!(w.get("networks").is_some(), networks, "{path}");
    }
    let mut legacy = connect(&server, "/websocket");
    legacy.ddp_connect();
    legacy.login();
    legacy.send(json!({"msg": "sub", "id": "j", "name": "core.get_jobs"}));
    let job = legacy.call("app.delete", json!(["jellyfin", {"force_remove_custom_app": true}])).as_i64().unwrap();
    assert_eq!(legacy.wait_job(job)["exc_info"]["type"], "VALIDATION", "v24.10 models have no force_remove_custom_app");
    assert_eq!(
        connect_err(&server, "/api/v99.1").to_string(),
        "HTTP error: 404 Not Found",
        "unknown API versions are a 404 on 25.x"
    );
}

#[test]
fn read_methods_images_tokens_and_job_wait() {
    let (_sim, server) = start(options(SimVersion::V25_10));
    let mut c = connect(&server, "/api/current");
    c.login();
    c.call("core.subscribe", json!(["core.get_jobs"]));
    assert_eq!(c.call("system.version", json!([])), "TrueNAS-25.10.6");
    assert_eq!(c.call("app.used_ports", json!([])), json!([5432, 8080]), "running and crashed apps, sorted, unique");
    assert_eq!(c.call("app.used_host_ips", json!([]))["127.0.0.1"], json!(["postgres"]));
    let docker = c.call("docker.config", json!([]));
    assert_eq!((docker["pool"].as_str(), docker["dataset"].as_str()), (Some("tank"), Some("tank/ix-apps")));
    assert!(docker.get("cidr_v6").is_some() && docker.get("secure_registry_mirrors").is_some());
    // Anchors and merge keys are expanded in the stored compose.
    let jf = c.call("app.config", json!(["jellyfin"]));
    assert_eq!(jf["services"]["jellyfin"]["environment"]["TZ"], "Etc/UTC");
    assert!(jf["services"]["jellyfin"].get("<<").is_none());
    let with_config = c.call("app.query", json!([[["name", "=", "jellyfin"]], {"extra": {"retrieve_config": true}}]));
    assert_eq!(with_config[0]["config"], jf);
    assert!(c.call("app.query", json!([[["name", "=", "jellyfin"]]]))[0]["config"].is_null());
    let alive = c.call("app.container_ids", json!(["postgres"]));
    assert_eq!(alive, json!({}), "a crashed container is not alive");
    // Outdated images: upgrade pulls and redeploys, then nothing is outdated.
    assert_eq!(c.call("app.outdated_docker_images", json!(["whoami"])), json!(["traefik/whoami:v1.10"]));
    let entry = c.call("app.get_instance", json!(["whoami"]));
    assert_eq!(
        (entry["upgrade_available"].as_bool(), entry["image_updates_available"].as_bool()),
        (Some(true), Some(true))
    );
    let job = c.call("app.upgrade", json!(["whoami"])).as_i64().unwrap();
    let wait = c.call("core.job_wait", json!([job])).as_i64().unwrap();
    let waited = c.wait_job(wait);
    assert_eq!(waited["state"], "SUCCESS");
    assert_eq!(waited["result"]["name"], "whoami");
    assert_eq!(c.call("app.outdated_docker_images", json!(["whoami"])), json!([]));
    let no_upgrade = c.call("app.upgrade", json!(["whoami"])).as_i64().unwrap();
    assert_eq!(c.wait_job(no_upgrade)["error"], "[EFAULT] No upgrade available for 'whoami'");
    let pulled = c.call("app.pull_images", json!(["jellyfin", {"redeploy": false}])).as_i64().unwrap();
    assert_eq!(c.wait_job(pulled)["state"], "SUCCESS");
    assert_eq!(c.call("app.get_instance", json!(["jellyfin"]))["state"], "STOPPED", "no redeploy asked");
    // Tokens survive the connection; logout de-authenticates.
    let token = c.call("auth.generate_token", json!([]));
    assert_eq!(c.call("auth.logout", json!([])), json!(true));
    assert_eq!(c.call_raw("app.query", json!([]))["error"]["data"]["error"], 207);
    let mut d = connect(&server, "/api/current");
    assert_eq!(d.call("auth.login_with_token", json!([token])), json!(true));
    assert_eq!(d.call("auth.me", json!([]))["pw_name"], USER);
    // A pinned 25.04 endpoint does not know 25.10 methods.
    let mut old = connect(&server, "/api/v25.04.2");
    old.login();
    assert_eq!(old.call_raw("app.used_host_ips", json!([]))["error"]["data"]["error"], 201);
}

#[test]
fn dropping_the_server_closes_its_connections() {
    let (sim, server) = start(options(SimVersion::V25_04));
    let mut c = connect(&server, "/api/current");
    c.login();
    assert_eq!(sim.connections(), 1);
    drop(server);
    c.ws.get_ref().set_timeout(Duration::from_secs(3));
    assert!(is_dropped(&mut c));
}

#[test]
fn nginx_https_redirect_and_ui_allowlist() {
    let (_sim, server) = start(SimOptions { https_redirect_port: Some(443), ..options(SimVersion::V25_04) });
    match connect_err(&server, "/api/current") {
        tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 307);
            assert_eq!(resp.headers()["location"], "https://127.0.0.1:443/api/current");
        }
        other => panic!("expected a 307, got {other}"),
    }
    let (_sim, server) = start(SimOptions { ui_allowlist_denied: true, ..options(SimVersion::V25_04) });
    let mut c = connect(&server, "/api/current");
    assert_eq!(c.expect_close(), Some(1008));
}

#[test]
fn hostile_frames_never_break_the_server() {
    let (sim, server) = start(options(SimVersion::V25_10));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let inputs: Vec<String> = vec![
        deep.clone(),
        "null".into(),
        "42".into(),
        "\"str\"".into(),
        "{}".into(),
        json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "core.ping"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1.5, "method": "core.ping"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": ""}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": 7}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "app.query", "params": [null, null, null]}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "app.query", "params": [[["name", "??", 1]]]}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "app.query", "params": [[[1, 2]]]}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "core.get_jobs", "params": ["x", "y"]}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "core.subscribe", "params": ["app.container_log_follow:{{{"]}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "core.subscribe", "params": ["app.stats:[]"]}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "app.create", "params": [{"app_name": "z", "custom_app": true, "custom_compose_config_string": "services:\n  a: [1, 2"}]}).to_string(),
        json!({"jsonrpc": "2.0", "method": "core.job_abort", "params": [99999]}).to_string(),
        json!({"jsonrpc": "2.0", "id": "ü\u{0}", "method": "ünïcode.☃", "params": []}).to_string(),
    ];
    let mut c = connect(&server, "/api/current");
    c.login();
    for input in &inputs {
        c.send_text(input.clone());
        let id = c.request("core.ping", json!([]));
        assert_eq!(c.response(&id)["result"], "pong", "after {}", &input[..input.len().min(80)]);
    }
    let mut d = connect(&server, "/websocket");
    d.ddp_connect();
    d.login();
    for input in [json!({"msg": "method"}), json!({"msg": "sub"}), json!({"msg": "unsub", "id": 5}), json!({"msg": 3})]
    {
        d.send(input.clone());
        let id = d.request("core.ping", json!([]));
        assert_eq!(d.response(&id)["result"], "pong", "after {input}");
    }
    d.send_text(deep);
    assert_eq!(d.expect_close(), Some(1007), "invalid JSON on the legacy endpoint closes the socket");
    let mut e = connect(&server, "/api/current");
    e.login();
    assert_eq!(e.call("core.ping", json!([])), "pong");
    assert!(sim.connections() >= 2);
}

/// A plain HTTP GET (no WebSocket upgrade): (status line, body).
fn http_get(server: &SimServer, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: truenas\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = tcp.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

fn login_ex(c: &mut Raw<TcpStream>, data: Value) -> Value {
    c.call("auth.login_ex", json!([data]))
}

#[test]
fn sim_26_0_validates_calls_against_the_26_models() {
    let (_sim, server) = start(SimOptions { apps_needing_action: vec!["whoami".into()], ..options(SimVersion::V26_0) });
    let mut c = connect(&server, "/api/current");
    // `reconnect_token` exists in the 26.0 login options only.
    let ok = login_ex(
        &mut c,
        json!({"mechanism": "PASSWORD_PLAIN", "username": USER, "password": PASSWORD,
               "login_options": {"reconnect_token": false}}),
    );
    assert_eq!(ok["response_type"], "SUCCESS", "{ok}");
    assert_eq!(c.call("system.version", json!([])), "TrueNAS-26.0.0");
    let bad = c.call_raw("app.container_ids", json!(["whoami", {"alive_only": "yes"}]));
    assert_eq!(bad["error"]["data"]["extra"], json!([["options.alive_only", "Input should be a valid boolean", 22]]));
    assert_eq!(
        c.call_raw("app.config", json!([]))["error"]["data"]["extra"],
        json!([["app_name", "Field required", 22]])
    );
    c.call("core.subscribe", json!(["core.get_jobs"]));
    let job = c.call("app.create", json!([{"app_name": "web2", "custom_app": true, "bogus": 1}]));
    let f = c.wait_job(job.as_i64().unwrap());
    assert_eq!(f["exc_info"]["extra"], json!([["app_create.bogus", "Extra inputs are not permitted", 22]]));
    let job = c.call(
        "app.create",
        json!([{"app_name": "web2", "custom_app": true,
                "custom_compose_config_string": compose("traefik/whoami:v1.10")}]),
    );
    assert_eq!(c.wait_job(job.as_i64().unwrap())["state"], "SUCCESS");
    // 26.0 entry fields, one app flagged as needing attention.
    let whoami = c.call("app.get_instance", json!(["whoami"]));
    assert_eq!((whoami["action_required"].clone(), whoami["latest_app_version"].clone()), (json!(true), Value::Null));
    assert_eq!(c.call("app.get_instance", json!(["web2"]))["action_required"], json!(false));
    // The same option on 25.10 is an unknown key.
    let (_old, old_server) = start(options(SimVersion::V25_10));
    let mut old = connect(&old_server, "/api/current");
    let r = old.call_raw(
        "auth.login_ex",
        json!([{"mechanism": "PASSWORD_PLAIN", "username": USER, "password": PASSWORD,
                "login_options": {"reconnect_token": true}}]),
    );
    assert_eq!(r["error"]["data"]["extra"][0][0], "login_data.PASSWORD_PLAIN.login_options.reconnect_token", "{r}");
}

#[test]
fn api_versions_lists_what_each_release_serves_side_by_side() {
    let bodies = [
        (SimVersion::V25_04, r#"["v25.04.0", "v25.04.1", "v25.04.2"]"#),
        (
            SimVersion::V25_10,
            r#"["v25.04.0", "v25.04.1", "v25.04.2", "v25.10.0", "v25.10.1", "v25.10.2", "v25.10.3", "v25.10.4", "v25.10.5"]"#,
        ),
        (
            SimVersion::V26_0,
            r#"["v25.04.0", "v25.04.1", "v25.04.2", "v25.10.0", "v25.10.1", "v25.10.2", "v25.10.3", "v25.10.4", "v26.0.0"]"#,
        ),
    ];
    for (version, body) in bodies {
        let (_sim, server) = start(options(version));
        assert_eq!(http_get(&server, "/api/versions"), ("HTTP/1.1 200 OK".into(), body.into()), "{version:?}");
    }
    let (_sim, server) = start(options(SimVersion::V26_0));
    // Each versioned endpoint speaks its own models: `reconnect_token` is a 26.0 login option.
    let with_token = json!({"mechanism": "PASSWORD_PLAIN", "username": USER, "password": PASSWORD,
                            "login_options": {"reconnect_token": true}});
    for (path, accepted) in [("/api/v26.0.0", true), ("/api/current", true), ("/api/v25.10.4", false)] {
        let mut c = connect(&server, path);
        let r = c.call_raw("auth.login_ex", json!([with_token]));
        assert_eq!(r.get("error").is_none(), accepted, "{path}: {r}");
    }
    let mut legacy = connect(&server, "/websocket");
    legacy.ddp_connect();
    legacy.login();
    assert_eq!(
        connect_err(&server, "/api/v25.10.5").to_string(),
        "HTTP error: 404 Not Found",
        "26.0.0-BETA.3 has none"
    );
}

#[test]
fn reconnect_token_is_null_unless_asked_and_works_once() {
    let (_sim, server) = start(options(SimVersion::V26_0));
    let pw = |reconnect: bool| {
        json!({"mechanism": "PASSWORD_PLAIN", "username": USER, "password": PASSWORD,
               "login_options": {"reconnect_token": reconnect}})
    };
    let mut c = connect(&server, "/api/current");
    let plain = login_ex(&mut c, pw(false));
    assert_eq!(plain.get("reconnect_token"), Some(&Value::Null), "{plain}");
    let asked = login_ex(&mut c, pw(true));
    let token = asked["reconnect_token"].as_str().expect("a token when asked").to_string();
    let mut again = connect(&server, "/api/current");
    let by_token = json!({"mechanism": "TOKEN_PLAIN", "token": token});
    assert_eq!(login_ex(&mut again, by_token.clone())["response_type"], "SUCCESS");
    assert_eq!(again.call("auth.me", json!([]))["pw_name"], USER);
    let mut third = connect(&server, "/api/current");
    assert_eq!(login_ex(&mut third, by_token)["response_type"], "AUTH_ERR", "single use");
}

#[test]
fn denied_users_and_revoked_keys_answer_per_release() {
    let pw = json!({"mechanism": "PASSWORD_PLAIN", "username": "noapi", "password": "pw"});
    let key = json!({"mechanism": "API_KEY_PLAIN", "username": USER, "api_key": KEY});
    for (version, denied, revoked, scram) in
        [(SimVersion::V26_0, "DENIED", "AUTH_ERR", true), (SimVersion::V25_10, "AUTH_ERR", "EXPIRED", false)]
    {
        let mut opts = options(version);
        opts.users.push(("noapi".into(), "pw".into()));
        opts.denied_users = vec!["noapi".into()];
        opts.rate_limit.max_calls = 100;
        let (sim, server) = start(opts);
        let mut c = connect(&server, "/api/current");
        assert_eq!(login_ex(&mut c, pw.clone()), json!({"response_type": denied}), "{version:?}");
        let mechanisms = c.call("auth.mechanism_choices", json!([]));
        assert_eq!(mechanisms.as_array().unwrap().contains(&json!("SCRAM")), scram, "{version:?}");
        sim.faults().set_plain_tcp_remote(true);
        let mut remote = connect(&server, "/api/current");
        assert_eq!(login_ex(&mut remote, key.clone())["response_type"], "EXPIRED", "the revoking attempt");
        sim.faults().set_plain_tcp_remote(false);
        assert_eq!(login_ex(&mut remote, key.clone())["response_type"], revoked, "{version:?}");
    }
    // Keys the upgrade to 26.0 revoked answer like any revoked key from the first use.
    let (_sim, server) = start(SimOptions { upgrade_revoked_keys: vec![7], ..options(SimVersion::V26_0) });
    let mut c = connect(&server, "/api/current");
    assert_eq!(login_ex(&mut c, key)["response_type"], "AUTH_ERR");
}

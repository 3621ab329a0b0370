//! Integration tests: faults (owned by the proof helper).
//!
//! Every network failure the product promises to survive, injected with the simulator's fault knobs (or, where the
//! simulator cannot misbehave that way, a small fake TrueNAS on loopback), through the real client over real
//! WebSockets and, where it matters to users, through the real binary over MCP. After each fault: a clear error,
//! no hang (every wait is bounded), no lost or duplicated change on the NAS, and the next call works.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use truenas_mcp::clock::ManualClock;
use truenas_mcp::config::{Config, Protocol};
use truenas_mcp::sim::{RateLimit, SimOptions, SimServer, SimVersion, Simulator};
use truenas_mcp::truenas::error::{AuthFailure, TimeoutPhase};
use truenas_mcp::truenas::{Client, ClientSettings, JobOptions, TnError};

use crate::support::McpPeer;

pub const PASSWORD: &str = "faults-password";
/// Only there to turn a hang into a failure; never a speed claim.
pub const HANG: Duration = Duration::from_secs(60);

/// A simulator served over WebSocket on loopback, quick jobs, no example apps unless asked.
pub fn start_sim(tweak: impl FnOnce(&mut SimOptions)) -> (Simulator, SimServer) {
    let mut opts = SimOptions {
        users: vec![("mcp-service".into(), PASSWORD.into())],
        job_step: Duration::from_millis(5),
        seed_example_apps: false,
        login_fail_delay: Duration::from_millis(10),
        ..SimOptions::default()
    };
    tweak(&mut opts);
    let sim = Simulator::new(opts);
    let server = sim.serve("127.0.0.1:0").expect("serve the simulator");
    (sim, server)
}

/// A config pointing at `addr` over plain ws with short deadlines.
pub fn config_for(addr: SocketAddr) -> Config {
    let mut c = Config::for_tests();
    c.host = Some(addr.ip().to_string());
    c.port = addr.port();
    c.protocol = Protocol::Ws;
    c.password = Some(truenas_mcp::config::Secret::new(PASSWORD));
    c.call_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c.job_timeout = Duration::from_secs(20);
    c
}

fn client_with(config: Config, keepalive: Duration) -> Client {
    Client::network(ClientSettings { keepalive, ..ClientSettings::new(config) })
}

fn client(server: &SimServer) -> Client {
    client_with(config_for(server.addr), Duration::from_secs(25))
}

pub(crate) fn compose(image: &str) -> String {
    format!("services:\n  web:\n    image: {image}\n")
}

fn create_params(app: &str) -> Value {
    json!([{"app_name": app, "custom_app": true, "custom_compose_config_string": compose("nginx:1.27")}])
}

pub(crate) fn count_calls(sim: &Simulator, method: &str) -> usize {
    sim.call_log().iter().filter(|(m, _)| m == method).count()
}

fn apps_named(sim: &Simulator, app: &str) -> usize {
    sim.apps().iter().filter(|a| a["name"] == app).count()
}

/// The next call works: a read and a change, each exactly once.
fn next_calls_work(sim: &Simulator, c: &Client, app: &str) {
    let apps = c.call("app.query", json!([])).unwrap_or_else(|e| panic!("the next read failed: {e}"));
    assert!(apps.is_array(), "{apps}");
    let before = count_calls(sim, "app.create");
    c.call_job("app.create", create_params(app), JobOptions::default())
        .result
        .unwrap_or_else(|e| panic!("the next change failed: {e}"));
    assert_eq!(count_calls(sim, "app.create"), before + 1, "the next change was sent once");
    assert_eq!(apps_named(sim, app), 1);
}

/// Poll `ready` until it holds; a hang becomes a failure naming `what` after `HANG`.
pub(crate) fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Move `clock` forward by `total` in 100 ms steps, 5 ms of real time apart (the client's actor looks at a manual
/// clock that often), so that what the client schedules on it happens in order.
fn let_time_pass(clock: &ManualClock, total: Duration) {
    let step = Duration::from_millis(100);
    let mut passed = Duration::ZERO;
    while passed < total {
        clock.advance(step);
        passed += step;
        thread::sleep(Duration::from_millis(5));
    }
}

/// Run `f` on a thread, moving `clock` on in 100 ms steps until it returns (a hang fails the test after `HANG`).
fn while_time_passes<T: Send + 'static>(clock: &ManualClock, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(v) => return v,
            Err(_) if started.elapsed() > HANG => panic!("hung: no answer while time passed"),
            Err(_) => clock.advance(Duration::from_millis(100)),
        }
    }
}

/// Run `f` on a thread; fail the test (instead of hanging) if it does not finish within `limit`.
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let started = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => (v, started.elapsed()),
        Err(_) => panic!("hung: no answer within {limit:?}"),
    }
}

/// (outcome_unknown, detail) of a lost connection; anything else fails the test.
fn as_lost_connection(e: &TnError) -> (bool, String) {
    match e {
        TnError::ConnectionLost { outcome_unknown, detail } => (*outcome_unknown, detail.clone()),
        other => panic!("expected a lost connection, got {other:?}: {other}"),
    }
}

// ----- dropped connections ------------------------------------------------------------------------------------

/// The connection drops while idle (nginx closes it): the change sent afterwards goes out on a new connection,
/// exactly once, and succeeds.
#[test]
fn drop_before_a_job_reconnects_and_sends_the_change_once() {
    let (sim, server) = start_sim(|o| o.idle_timeout = Duration::from_millis(300));
    let clock = ManualClock::new(false);
    let c = Client::network(ClientSettings { clock: clock.clone(), ..ClientSettings::new(config_for(server.addr)) });
    c.call("app.query", json!([])).unwrap();
    let logins = count_calls(&sim, "auth.login_ex");
    // The simulator closes the idle socket without a close frame; then a quiet spell passes on the client's clock
    // (after which the client looks for a waiting close before it sends a change).
    wait_until("the simulator closed the idle socket", || sim.connections() == 0);
    clock.advance(Duration::from_millis(1500));
    let c2 = c.clone();
    let (r, _) =
        bounded(HANG, move || c2.call_job("app.create", create_params("before"), JobOptions::default()).result);
    r.unwrap_or_else(|e| panic!("a change after an idle drop must go through: {e}"));
    assert_eq!(count_calls(&sim, "app.create"), 1);
    assert_eq!(apps_named(&sim, "before"), 1);
    assert_eq!(count_calls(&sim, "auth.login_ex"), logins + 1, "one new login on the new connection");
    next_calls_work(&sim, &c, "before-next");
}

/// The very frame carrying `app.create` trips the drop (the simulator never processes it): the caller is told
/// the outcome is unknown, the change is not re-sent behind its back, and the next calls work.
#[test]
fn drop_as_a_change_is_sent_reports_outcome_unknown_and_never_resends() {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    sim.faults().drop_after_frames(1);
    let c2 = c.clone();
    let (r, _) =
        bounded(HANG, move || c2.call_job("app.create", create_params("dropped"), JobOptions::default()).result);
    let err = r.expect_err("a dropped change cannot succeed");
    let (unknown, _) = as_lost_connection(&err);
    assert!(unknown, "a change in flight has an unknown outcome: {err}");
    let text = err.to_string();
    assert!(text.contains("may or may not") && text.contains("check"), "{text}");
    // A re-send behind the caller's back would go out on the new connection before this read.
    c.call("app.query", json!([])).unwrap();
    assert_eq!(count_calls(&sim, "app.create"), 0, "the tripping frame is never processed, and never re-sent");
    assert_eq!(apps_named(&sim, "dropped"), 0);
    // The same for a plain mutating call (after a read, so the dropped frame is the call and not the re-login).
    sim.faults().drop_after_frames(1);
    let err = c.call_mutating("app.stop", json!(["nothing"])).expect_err("dropped");
    assert!(as_lost_connection(&err).0, "{err}");
    next_calls_work(&sim, &c, "dropped-next");
}

/// A read-only call whose frame is dropped fails with a clear, retryable error (outcome known: nothing changed).
#[test]
fn drop_during_a_read_is_a_clear_retryable_error() {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    sim.faults().drop_after_frames(1);
    let err = c.call("app.query", json!([])).expect_err("dropped");
    let (unknown, _) = as_lost_connection(&err);
    assert!(!unknown, "a read changes nothing: {err}");
    assert!(err.to_string().contains("reconnects automatically"), "{err}");
    next_calls_work(&sim, &c, "read-next");
}

/// The connection drops while a deploy job runs (the job goes on server-side): the client reconnects, finds the
/// job, follows it to the end, and reports its real result. The change happened exactly once.
#[test]
fn drop_during_a_job_follows_the_job_after_reconnecting() {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    sim.faults().drop_mid_job();
    let c2 = c.clone();
    let (r, _) =
        bounded(HANG, move || c2.call_job("app.create", create_params("during"), JobOptions::default()).result);
    r.unwrap_or_else(|e| panic!("the job survived the drop, so its result is known: {e}"));
    assert_eq!(count_calls(&sim, "app.create"), 1, "never re-sent");
    assert!(count_calls(&sim, "core.get_jobs") >= 1, "the job was looked up after reconnecting");
    assert_eq!(apps_named(&sim, "during"), 1);
    next_calls_work(&sim, &c, "during-next");
}

/// The connection drops right after a job finished: the result already delivered stands, and the next call
/// reconnects transparently.
#[test]
fn drop_after_a_job_the_next_call_reconnects() {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call_job("app.create", create_params("after"), JobOptions::default()).result.unwrap();
    sim.restart(); // drops every connection; apps are kept
                   // The first read may go out on the dying socket before the drop is noticed: then it fails as a plain, retryable
                   // lost connection (reads are not replayed automatically); it never hangs and never claims a change.
    let c2 = c.clone();
    let (r, _) = bounded(HANG, move || c2.call("app.query", json!([])));
    if let Err(e) = r {
        assert!(!as_lost_connection(&e).0, "{e}");
    }
    let apps = c.call("app.query", json!([])).unwrap_or_else(|e| panic!("the read after that must reconnect: {e}"));
    assert_eq!(apps.as_array().unwrap().iter().filter(|a| a["name"] == "after").count(), 1);
    assert_eq!(count_calls(&sim, "app.create"), 1);
    next_calls_work(&sim, &c, "after-next");
}

// ----- a NAS that stops answering ------------------------------------------------------------------------------

/// Half-open while a call waits: the keepalive ping goes unanswered and the call fails within the keepalive window
/// (keepalive + pong timeout), long before its own deadline; the next call uses a fresh connection.
#[test]
fn half_open_is_detected_within_the_keepalive_window() {
    let (sim, server) = start_sim(|_| {});
    let mut config = config_for(server.addr);
    config.call_timeout = Duration::from_secs(40);
    let keepalive = Duration::from_millis(500);
    // Deadlines and keepalive on a test clock, moved on while the call waits.
    let clock = ManualClock::new(false);
    let c = Client::network(ClientSettings { keepalive, clock: clock.clone(), ..ClientSettings::new(config) });
    c.call("app.query", json!([])).unwrap();
    sim.faults().half_open_existing();
    thread::sleep(Duration::from_millis(100)); // the connection loop notices the knob at its next tick
    let c2 = c.clone();
    let r = while_time_passes(&clock, move || c2.call("app.query", json!([])));
    // Either the dead peer was noticed before the call was sent (then the call succeeds on a new connection) or the
    // call fails as a lost connection found by the keepalive (keepalive 0.5 s + pong timeout ≥ 1 s); never the
    // 40 s call deadline, which would be a timeout.
    match r {
        Ok(_) => {}
        Err(e) => {
            let (_, detail) = as_lost_connection(&e);
            assert!(detail.contains("keepalive"), "{detail}");
        }
    }
    next_calls_work(&sim, &c, "half-open-next");
}

/// Half-open while idle: the actor's own ping notices, drops the dead socket, and the next call reconnects.
#[test]
fn half_open_while_idle_reconnects_on_the_next_call() {
    let (sim, server) = start_sim(|_| {});
    let clock = ManualClock::new(false);
    let settings = ClientSettings {
        keepalive: Duration::from_millis(300),
        clock: clock.clone(),
        ..ClientSettings::new(config_for(server.addr))
    };
    let c = Client::network(settings);
    c.call("app.query", json!([])).unwrap();
    let logins = count_calls(&sim, "auth.login_ex");
    sim.faults().half_open_existing();
    // Ping after 0.3 s, no pong within 1 s: dropped well before 4 s have passed on the client's clock.
    let_time_pass(&clock, Duration::from_secs(4));
    let c2 = c.clone();
    let (r, _) = bounded(HANG, move || c2.call("app.query", json!([])));
    r.unwrap_or_else(|e| panic!("the dead socket should have been replaced: {e}"));
    assert_eq!(count_calls(&sim, "auth.login_ex"), logins + 1);
}

// ----- garbage, oversized and partial frames --------------------------------------------------------------------

/// A frame that is not JSON before a response: ignored (logged), the call still gets its answer.
#[test]
fn garbage_frame_is_survived() {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    sim.faults().send_garbage();
    let c2 = c.clone();
    let (r, _) = bounded(HANG, move || c2.call("app.query", json!([])));
    match r {
        Ok(v) => assert!(v.is_array()),
        Err(e) => {
            // Dropping the connection on garbage would also be acceptable, if it says so.
            assert!(!as_lost_connection(&e).0, "{e}");
        }
    }
    next_calls_work(&sim, &c, "garbage-next");
}

/// A request larger than TrueNAS accepts is refused locally (the server would close the socket), nothing is sent,
/// and the connection stays usable.
#[test]
fn oversized_request_is_refused_locally() {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    let frames = sim.frames_received();
    let huge = "x".repeat(70_000);
    let err = c.call_mutating("app.create", json!([{"app_name": "huge", "custom_compose_config_string": huge}]));
    match err {
        Err(TnError::TooLarge { size, limit }) => assert!(size > limit, "{size} {limit}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(sim.frames_received(), frames, "nothing went on the wire");
    let err = c
        .call_job(
            "app.create",
            json!([{"app_name": "huge", "custom_app": true, "custom_compose_config_string": "x".repeat(70_000)}]),
            JobOptions::default(),
        )
        .result
        .expect_err("too large");
    assert!(err.to_string().contains("exceeds"), "{err}");
    assert_eq!(sim.frames_received(), frames);
    next_calls_work(&sim, &c, "oversized-next");
}

/// How the fake NAS misbehaves on `core.ping` on its first WebSocket connection.
#[derive(Clone, Copy, PartialEq)]
enum Mischief {
    /// Send the start of a text frame (header announcing 1000 bytes, then 10 of them) and stall.
    PartialFrame,
    /// A frame header announcing 1 GiB (beyond the client's 64 MiB limit), then a few bytes.
    HugeFrame,
}

/// A fake TrueNAS (JSON-RPC) on loopback: logs anyone in, answers `system.info`, `core.subscribe` and `core.ping`,
/// and misbehaves on the first connection's first `core.ping`.
struct FakeNas {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeNas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn fake_nas(mischief: Mischief) -> FakeNas {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (conns, stop2) = (connections.clone(), stop.clone());
    // The mischief goes to the first WebSocket (the client's `GET /api/versions` comes before it).
    let upgraded = Arc::new(AtomicBool::new(false));
    thread::spawn(move || {
        for tcp in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                return;
            }
            let Ok(tcp) = tcp else { continue };
            conns.fetch_add(1, Ordering::SeqCst);
            let (stop, upgraded) = (stop2.clone(), upgraded.clone());
            thread::spawn(move || fake_connection(tcp, mischief, upgraded, stop));
        }
    });
    FakeNas { addr, connections, stop }
}

fn fake_connection(tcp: TcpStream, mischief: Mischief, upgraded: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let Ok(mut ws) = tungstenite::accept(tcp) else { return };
    let mut mischief = (!upgraded.swap(true, Ordering::SeqCst)).then_some(mischief);
    loop {
        let Ok(msg) = ws.read() else { return };
        let tungstenite::Message::Text(text) = msg else { continue };
        let Ok(req) = serde_json::from_str::<Value>(&text) else { return };
        let result = match req["method"].as_str().unwrap_or_default() {
            "auth.login_ex" => json!({"response_type": "SUCCESS"}),
            "system.info" => json!({"version": "25.04.2.6", "hostname": "fake"}),
            "core.ping" => match mischief.take() {
                None => json!("pong"),
                Some(m) => {
                    let mut raw: Vec<u8> = match m {
                        Mischief::PartialFrame => vec![0x81, 126, 0x03, 0xE8],
                        Mischief::HugeFrame => {
                            let mut h = vec![0x81, 127];
                            h.extend_from_slice(&(1u64 << 30).to_be_bytes());
                            h
                        }
                    };
                    raw.extend_from_slice(b"{\"jsonrpc\"");
                    let _ = ws.flush();
                    let _ = ws.get_mut().write_all(&raw);
                    let _ = ws.get_mut().flush();
                    // Stall (slow-loris) until the peer gives up or the test ends.
                    let mut sink = [0u8; 1024];
                    let _ = ws.get_mut().set_read_timeout(Some(Duration::from_millis(50)));
                    let started = Instant::now();
                    while !stop.load(Ordering::SeqCst) && started.elapsed() < HANG {
                        if let Ok(0) = ws.get_mut().read(&mut sink) {
                            return;
                        }
                    }
                    return;
                }
            },
            _ => Value::Null,
        };
        let reply = json!({"jsonrpc": "2.0", "id": req["id"], "result": result});
        if ws.send(tungstenite::Message::Text(reply.to_string())).is_err() {
            return;
        }
    }
}

/// The NAS sends half a frame and stalls (slow-loris against the client): the call ends at its deadline with a
/// timeout, the stalled socket is given up, and the next call works on a new connection.
#[test]
fn partial_frame_from_the_nas_times_out_and_recovers() {
    let nas = fake_nas(Mischief::PartialFrame);
    let mut config = config_for(nas.addr);
    config.call_timeout = Duration::from_secs(1);
    // The call deadline and the keepalive run on a test clock, moved on while a call waits.
    let clock = ManualClock::new(false);
    let c = Client::network(ClientSettings {
        keepalive: Duration::from_millis(500),
        clock: clock.clone(),
        ..ClientSettings::new(config)
    });
    c.server_info().unwrap();
    let c2 = c.clone();
    // Ended by the call deadline or the keepalive (never a hang: `while_time_passes` fails after `HANG`).
    match while_time_passes(&clock, move || c2.call("core.ping", json!([]))) {
        Err(TnError::Timeout { phase: TimeoutPhase::Call, .. }) => {}
        Err(e @ TnError::ConnectionLost { .. }) => assert!(e.to_string().contains("keepalive"), "{e}"),
        other => panic!("expected a timeout or a detected dead peer, got {other:?}"),
    }
    // The stalled connection is abandoned: by the keepalive (no pong arrives behind a partial frame).
    let c3 = c.clone();
    let r = while_time_passes(&clock, move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match c3.call("core.ping", json!([])) {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    assert_eq!(r.unwrap_or_else(|e| panic!("never recovered: {e}")), json!("pong"));
    assert!(nas.connections.load(Ordering::SeqCst) >= 2, "a new connection was opened");
}

/// A frame header announcing 1 GiB: refused at once (no 1 GiB allocation, no wait), clear error, next call works.
#[test]
fn huge_frame_from_the_nas_is_refused() {
    let nas = fake_nas(Mischief::HugeFrame);
    let c = client_with(config_for(nas.addr), Duration::from_secs(25));
    c.server_info().unwrap();
    let c2 = c.clone();
    let (r, _) = bounded(HANG, move || c2.call("core.ping", json!([])));
    let err = r.expect_err("a 1 GiB frame cannot be accepted");
    let (unknown, detail) = as_lost_connection(&err);
    assert!(!unknown, "{err}");
    assert!(!detail.is_empty(), "{err}");
    let c3 = c.clone();
    let (r, _) = bounded(HANG, move || c3.call("core.ping", json!([])));
    assert_eq!(r.unwrap(), json!("pong"));
}

/// A raw TCP peer sends half an HTTP upgrade, another half a WebSocket frame, and both stall (slow-loris against
/// the simulator's front): real clients are served meanwhile, and the stalled peers are closed.
#[test]
fn slow_loris_peers_do_not_block_the_simulator() {
    let (sim, server) = start_sim(|o| {
        o.idle_timeout = Duration::from_millis(500);
        o.handshake_timeout = Duration::from_millis(300);
    });
    let mut half_upgrade = TcpStream::connect(server.addr).unwrap();
    half_upgrade.write_all(b"GET /api/current HTTP/1.1\r\nHost: x\r\nUpgrade: webs").unwrap();
    let (mut ws, _) =
        tungstenite::client(server.url("/api/current"), TcpStream::connect(server.addr).unwrap()).unwrap();
    ws.get_mut().write_all(&[0x81, 0xFE, 0x03, 0xE8, 1, 2, 3, 4, b'{']).unwrap(); // masked, 1000 bytes announced
    let c = client(&server);
    let c2 = c.clone();
    let (r, _) = bounded(HANG, move || c2.call("app.query", json!([])));
    r.unwrap();
    next_calls_work(&sim, &c, "loris-next");
    // The stalled frame's connection is closed by the idle timeout (reads return EOF or an error); our own read
    // timeout running out instead means it was held open.
    let held = |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
    ws.get_mut().set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match ws.get_mut().read(&mut buf) {
            Ok(0) => break,
            Err(e) => {
                assert!(!held(&e), "the stalled frame's connection was never closed");
                break;
            }
            Ok(_) => {}
        }
    }
    half_upgrade.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Closed (or a 4xx) rather than held forever.
    if let Err(e) = half_upgrade.read(&mut buf) {
        assert!(!held(&e), "the half upgrade was held open");
    }
}

// ----- jobs that never finish, sessions that expire, rate limits ----------------------------------------------

/// A job that never finishes ends at the job deadline with a message that says it may still be running; the job is
/// not re-submitted; the next calls work.
#[test]
fn never_finishing_job_hits_the_job_deadline() {
    let (sim, server) = start_sim(|_| {});
    // The job deadline runs on a test clock: the job must not end before it is reached, and ends once it is.
    let clock = ManualClock::new(false);
    let c = Client::network(ClientSettings { clock: clock.clone(), ..ClientSettings::new(config_for(server.addr)) });
    sim.faults().set_never_finish_jobs(true);
    let c2 = c.clone();
    let (tx, ended) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let opts = JobOptions { timeout: Some(Duration::from_secs(1)), ..Default::default() };
        let _ = tx.send(c2.call_job("app.create", create_params("stuck"), opts).result);
    });
    wait_until("the job never started", || sim.jobs().iter().any(|j| j["method"] == "app.create"));
    clock.advance(Duration::from_millis(900));
    assert!(ended.recv_timeout(Duration::from_millis(50)).is_err(), "ended before the job deadline");
    let r = while_time_passes(&clock, move || ended.recv().unwrap());
    match r {
        Err(e @ TnError::Timeout { phase: TimeoutPhase::Job, .. }) => {
            assert!(e.to_string().contains("may still be running"), "{e}")
        }
        other => panic!("expected the job deadline, got {other:?}"),
    }
    assert_eq!(count_calls(&sim, "app.create"), 1);
    sim.faults().set_never_finish_jobs(false);
    next_calls_work(&sim, &c, "stuck-next");
}

/// The session expires: every call refused with 207 triggers exactly one re-login, then each is sent again once;
/// a change refused that way (it never ran) is sent again exactly once.
#[test]
fn expired_session_logs_in_again_exactly_once() {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    let logins = count_calls(&sim, "auth.login_ex");
    sim.faults().expire_sessions();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            thread::spawn(move || c.call("app.query", json!([])))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap_or_else(|e| panic!("a call after expiry failed: {e}"));
    }
    assert_eq!(count_calls(&sim, "auth.login_ex"), logins + 1, "exactly one re-login for eight refused calls");
    sim.faults().expire_sessions();
    c.call_job("app.create", create_params("expired"), JobOptions::default())
        .result
        .unwrap_or_else(|e| panic!("a refused change is safe to send again: {e}"));
    assert_eq!(count_calls(&sim, "auth.login_ex"), logins + 2);
    assert_eq!(apps_named(&sim, "expired"), 1, "created exactly once");
    next_calls_work(&sim, &c, "expired-next");
}

/// The session expires and logging in again is refused (here: rate-limited): the waiting call gets that error,
/// and later calls get a clear error at once instead of each waiting for its deadline on a connection that is no
/// longer logged in.
#[test]
fn failed_re_login_does_not_leave_a_dead_connection() {
    let (sim, server) = start_sim(|o| {
        o.rate_limit = RateLimit { max_calls: 1, window: Duration::from_secs(30), delay: Duration::from_millis(10) };
    });
    // A test clock that never moves: a call that waited for a back-off or a deadline would hang (and fail after
    // `HANG`) instead of answering at once.
    let clock = ManualClock::new(false);
    let c = Client::network(ClientSettings { clock, ..ClientSettings::new(config_for(server.addr)) });
    c.call("app.query", json!([])).unwrap();
    sim.faults().expire_sessions();
    let c2 = c.clone();
    let (r, _) = bounded(HANG, move || c2.call("app.query", json!([])));
    let err = r.expect_err("re-login is rate-limited");
    assert!(matches!(err, TnError::RateLimited(_)), "{err:?}");
    for _ in 0..3 {
        let c2 = c.clone();
        let (r, _) = bounded(HANG, move || c2.call("app.query", json!([])));
        let err = r.expect_err("still rate-limited");
        assert!(!matches!(err, TnError::Timeout { .. }), "a call waited for its deadline on a dead session: {err}");
    }
}

/// Failed logins get rate-limited by the NAS: the error says so, the client backs off instead of hammering the
/// NAS, and a client with good credentials works once the window passed.
#[test]
fn rate_limited_logins_back_off() {
    let (sim, server) = start_sim(|o| {
        o.rate_limit = RateLimit { max_calls: 2, window: Duration::from_secs(3), delay: Duration::from_millis(10) };
    });
    let mut bad = config_for(server.addr);
    bad.password = Some(truenas_mcp::config::Secret::new("wrong"));
    // The back-off after each failed login passes on a test clock, moved on while a call waits.
    let clock = ManualClock::new(false);
    let c = Client::network(ClientSettings { clock: clock.clone(), ..ClientSettings::new(bad) });
    let mut seen = Vec::new();
    for _ in 0..4 {
        let c2 = c.clone();
        let r = while_time_passes(&clock, move || c2.call("app.query", json!([])));
        seen.push(r.expect_err("wrong password"));
    }
    assert!(matches!(seen[0], TnError::Auth(AuthFailure::BadCredentials)), "{:?}", seen[0]);
    let limited = seen.iter().find(|e| matches!(e, TnError::RateLimited(_))).expect("rate limited at some point");
    assert!(limited.to_string().contains("rate-limiting"), "{limited}");
    let attempts = count_calls(&sim, "auth.login_ex");
    assert!(attempts <= 3, "the client hammered the NAS: {attempts} login attempts");
    // A further call does not reach the NAS during the back-off.
    let err = c.call("app.query", json!([])).expect_err("backing off");
    assert!(matches!(err, TnError::RateLimited(_)), "{err:?}");
    assert_eq!(count_calls(&sim, "auth.login_ex"), attempts);
    sim.faults().pass_rate_limit_windows();
    let good = client(&server);
    next_calls_work(&sim, &good, "rate-next");
}

// ----- TLS stalls and restarts ----------------------------------------------------------------------------------

fn tls_fixture(name: &str) -> std::path::PathBuf {
    crate::support::repo_root().join("fixtures/tls").join(name)
}

/// The NAS accepts TCP but never answers the TLS handshake: the connect timeout fires and names the TLS step;
/// once the NAS answers again the next call works.
#[test]
fn tls_handshake_stall_times_out_naming_tls() {
    let (sim, server) = start_sim(|o| o.tls = Some((tls_fixture("server.pem"), tls_fixture("server.pkcs8.key"))));
    let mut config = config_for(server.addr);
    config.host = Some("localhost".into());
    config.protocol = Protocol::Wss;
    config.ca_cert = Some(tls_fixture("ca.pem"));
    let connect_timeout = Duration::from_millis(300);
    config.connect_timeout = connect_timeout;
    let c = client_with(config, Duration::from_secs(25));
    sim.faults().set_stall_tls_handshake(true);
    let c2 = c.clone();
    let (r, _) = bounded(HANG, move || c2.call("app.query", json!([])));
    let err = r.expect_err("the handshake stalls");
    let text = err.to_string();
    assert!(text.contains("tls"), "the error must name the TLS step: {text}");
    assert!(text.contains("timed out"), "{text}");
    // Ended by the connect timeout, not by the call's deadline.
    assert!(
        matches!(err, TnError::Timeout { phase: TimeoutPhase::Handshake, after } if after == connect_timeout),
        "{err:?}"
    );
    sim.faults().set_stall_tls_handshake(false);
    // The back-off after a failed connect is short (≤ 5 s); retry until it passed.
    let c3 = c.clone();
    let (r, _) = bounded(HANG, move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match c3.call("app.query", json!([])) {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    r.unwrap_or_else(|e| panic!("TLS works again: {e}"));
    next_calls_work(&sim, &c, "tls-next");
}

/// A connected client whose `app.create` of `app` is parked at 50 % on the simulator (jobs never finish until the
/// knob is cleared): the simulator, its server, the client, the waiting call and the job id.
#[allow(clippy::type_complexity)]
fn parked_create(app: &str) -> (Simulator, SimServer, Client, thread::JoinHandle<Result<Value, TnError>>, i64) {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    sim.faults().set_never_finish_jobs(true);
    let c2 = c.clone();
    let params = create_params(app);
    let job = thread::spawn(move || c2.call_job("app.create", params, JobOptions::default()).result);
    wait_until("the job never started", || sim.jobs().iter().any(|j| j["method"] == "app.create"));
    let id = sim.jobs().iter().find(|j| j["method"] == "app.create").and_then(|j| j["id"].as_i64()).unwrap();
    (sim, server, c, job, id)
}

/// The middleware restarts while a job runs: job ids start again at 1 and the old job is gone. The caller gets
/// "outcome unknown", never the result of some other job that now has the same id.
#[test]
fn restart_mid_job_is_outcome_unknown_not_a_wrong_answer() {
    let (sim, _server, c, job, _) = parked_create("restarted");
    sim.faults().set_never_finish_jobs(false);
    sim.restart();
    let (r, _) = bounded(HANG, move || job.join().unwrap());
    let err = r.expect_err("the job is gone");
    let (unknown, detail) = as_lost_connection(&err);
    assert!(unknown, "{err}");
    assert!(detail.contains("unknown after reconnecting") || detail.contains("restart"), "{detail}");
    assert_eq!(count_calls(&sim, "app.create"), 1, "not re-sent");
    next_calls_work(&sim, &c, "restart-next");
}

/// Worst case of a restart: before the client reconnects, another client starts a job of the same method that gets
/// the old job's id. The client must not report that other job's result as its own.
#[test]
fn restart_with_a_reused_job_id_is_not_mistaken_for_the_old_job() {
    let (sim, server, c, job, old_id) = parked_create("mine");
    sim.faults().set_never_finish_jobs(false);
    // Hold the first client's reconnect back (its login is slow) while another client creates an app.
    sim.faults().set_latency("system.info", Duration::from_millis(1500));
    sim.restart();
    let mut other = raw_client(&server);
    other.call(
        "auth.login_ex",
        json!([{"mechanism": "PASSWORD_PLAIN", "username": "mcp-service", "password": PASSWORD}]),
    );
    let other_id = other.call("app.create", create_params("theirs"));
    assert_eq!(other_id.as_i64(), Some(old_id), "the test needs the job id to be reused");
    let (r, _) = bounded(HANG, move || job.join().unwrap());
    sim.faults().clear_latency();
    match r {
        Err(e) => assert!(as_lost_connection(&e).0, "{e}"),
        Ok(v) => panic!("the client reported another job's result as its own: {v}"),
    }
    next_calls_work(&sim, &c, "reuse-next");
}

/// A bare JSON-RPC WebSocket client for playing "another client" against the simulator.
pub struct RawClient {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

pub fn raw_client(server: &SimServer) -> RawClient {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(HANG)).unwrap();
    let (ws, _) = tungstenite::client(server.url("/api/current"), tcp).unwrap();
    RawClient { ws, next: 0 }
}

impl RawClient {
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = format!("raw-{}", self.next);
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ws.send(tungstenite::Message::Text(req.to_string())).unwrap();
        loop {
            let msg = self.ws.read().expect("the simulator answers");
            let tungstenite::Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }
}

// ----- through the real binary ----------------------------------------------------------------------------------

/// The flags that point the binary at `server`, logged in as the simulator's service account.
pub fn nas_flags(server: &SimServer) -> Vec<String> {
    let port = server.addr.port().to_string();
    ["--host", "127.0.0.1", "--port", &port, "--protocol", "ws", "--username", "mcp-service", "--password", PASSWORD]
        .map(String::from)
        .to_vec()
}

/// The real binary pointed at `server`, initialized.
pub fn binary_for(server: &SimServer, extra: &[&str]) -> McpPeer {
    let flags = nas_flags(server);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--audit-log", "off"]);
    args.extend_from_slice(extra);
    let mut peer = McpPeer::spawn_binary(&args);
    peer.initialize("2025-06-18", json!({}));
    // The background check of the NAS first: the faults below meet the tool calls, and nothing arrives unasked.
    crate::mcp::first_log_message(&mut peer);
    peer
}

/// One tool call over MCP: (is_error, text).
pub fn tool(peer: &mut McpPeer, id: i64, name: &str, args: Value) -> (bool, String) {
    let r = peer.request(json!(id), "tools/call", json!({"name": name, "arguments": args}));
    let result = r.get("result").unwrap_or_else(|| panic!("{name}: protocol error {r}"));
    let text = result["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect();
    (result["isError"].as_bool().unwrap_or(false), text)
}

/// Through MCP: a deploy whose connection drops mid-job still reports the real outcome, the app exists once, and
/// the next tool call works.
#[test]
fn binary_deploy_survives_a_drop_mid_job() {
    let (sim, server) = start_sim(|_| {});
    let mut peer = binary_for(&server, &[]);
    let (err, text) = tool(&mut peer, 1, "list_custom_apps", json!({}));
    assert!(!err, "{text}");
    sim.faults().drop_mid_job();
    let (err, text) =
        tool(&mut peer, 2, "deploy_custom_app", json!({"app_name": "mid", "compose_yaml": compose("nginx:1.27")}));
    assert!(!err, "{text}");
    assert_eq!(count_calls(&sim, "app.create"), 1);
    assert_eq!(apps_named(&sim, "mid"), 1);
    let (err, text) = tool(&mut peer, 3, "get_custom_app_status", json!({"app_name": "mid"}));
    assert!(!err, "{text}");
}

/// Through MCP: a deploy whose job never finishes ends at TRUENAS_JOB_TIMEOUT saying it may still be running; the
/// server keeps answering.
#[test]
fn binary_deploy_job_deadline_is_reported() {
    let (sim, server) = start_sim(|_| {});
    let mut peer = binary_for(&server, &["--job-timeout", "1"]);
    sim.faults().set_never_finish_jobs(true);
    let (err, text) =
        tool(&mut peer, 1, "deploy_custom_app", json!({"app_name": "slow", "compose_yaml": compose("nginx:1.27")}));
    assert!(err, "{text}");
    assert!(text.contains("did not finish in time") && text.contains("get_custom_app_status"), "{text}");
    assert_eq!(count_calls(&sim, "app.create"), 1);
    sim.faults().set_never_finish_jobs(false);
    let (err, text) = tool(&mut peer, 2, "list_custom_apps", json!({}));
    assert!(!err, "{text}");
}

/// Through MCP: an expired session, a garbage frame and a NAS that stops answering (half-open) each end in a
/// clear answer, never a hang.
#[test]
fn binary_expired_session_garbage_and_half_open() {
    let (sim, server) = start_sim(|_| {});
    let mut peer = binary_for(&server, &["--timeout", "2"]);
    let (err, text) = tool(&mut peer, 1, "list_custom_apps", json!({}));
    assert!(!err, "{text}");
    let logins = count_calls(&sim, "auth.login_ex");
    sim.faults().expire_sessions();
    let (err, text) = tool(&mut peer, 2, "list_custom_apps", json!({}));
    assert!(!err, "{text}");
    assert_eq!(count_calls(&sim, "auth.login_ex"), logins + 1);
    sim.faults().send_garbage();
    let (err, text) = tool(&mut peer, 3, "list_custom_apps", json!({}));
    assert!(!err, "{text}");
    sim.faults().half_open_existing();
    thread::sleep(Duration::from_millis(100));
    let (err, text) = tool(&mut peer, 4, "list_custom_apps", json!({}));
    assert!(err, "{text}");
    // Ended by the 2 s call timeout (and not by anything longer).
    assert!(text.contains("did not answer within 2s"), "{text}");
}

/// The MCP side of slow-loris: half a request line, a pause, then the rest — exactly one answer, and nothing
/// before the line is complete.
#[test]
fn binary_partial_line_then_the_rest() {
    let (_sim, server) = start_sim(|_| {});
    let mut peer = binary_for(&server, &[]);
    peer.send_raw(br#"{"jsonrpc":"2.0","id":"slow","#);
    peer.assert_silent(Duration::from_millis(500));
    peer.send_raw(b"\"method\":\"ping\"}\n");
    let r = peer.recv();
    assert_eq!(r["id"], "slow", "{r}");
    assert!(r.get("result").is_some(), "{r}");
    peer.assert_silent(Duration::from_millis(200));
}

/// Through MCP: the connection drops while `app.create` is being executed by the NAS (it goes on and creates the
/// app). The deploy is reported as OUTCOME UNKNOWN with the call that finds out, the audit log says "unknown", the
/// create is never re-sent, and the next tool calls work and show the app.
#[test]
fn binary_deploy_dropped_in_flight_is_outcome_unknown_and_not_resent() {
    let (sim, server) = start_sim(|_| {});
    let audit = crate::support::tempdir("faults-audit").join("audit.jsonl");
    let audit_arg = audit.display().to_string();
    let port = server.addr.port().to_string();
    let mut peer = McpPeer::spawn_binary(&[
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--protocol",
        "ws",
        "--username",
        "mcp-service",
        "--password",
        PASSWORD,
        "--audit-log",
        &audit_arg,
    ]);
    peer.initialize("2025-06-18", json!({}));
    let (err, text) = tool(&mut peer, 1, "list_custom_apps", json!({}));
    assert!(!err, "{text}");
    // app.create is held in the NAS's execution slot for a while; a second call's frame then trips the drop.
    sim.faults().set_latency("app.create", Duration::from_millis(1500));
    peer.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "deploy_custom_app", "arguments": {"app_name": "inflight", "compose_yaml": compose("nginx:1.27")}}}));
    wait_until("app.create never arrived", || count_calls(&sim, "app.create") > 0);
    sim.faults().drop_after_frames(1);
    peer.send(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "list_custom_apps", "arguments": {}}}));
    let deploy = peer.response_to(&json!(2));
    let text = deploy["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string();
    assert_eq!(deploy["result"]["isError"], true, "{deploy}");
    assert!(text.contains("OUTCOME UNKNOWN") && text.contains("get_custom_app_status"), "{text}");
    let list = peer.response_to(&json!(3));
    assert!(list.get("result").is_some(), "the other call gets an answer too: {list}");
    sim.faults().clear_latency();
    // The NAS finishes the create on its own; the client never sends it again.
    wait_until("the NAS never created the app", || apps_named(&sim, "inflight") > 0);
    let (err, text) = tool(&mut peer, 4, "get_custom_app_status", json!({"app_name": "inflight"}));
    assert!(!err, "{text}");
    // A re-send behind the caller's back would have gone out before this answer.
    assert_eq!(count_calls(&sim, "app.create"), 1, "app.create was re-sent");
    let records: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect();
    assert!(
        records.iter().any(|r| r["tool"] == "deploy_custom_app" && r["outcome"] == "unknown"),
        "audit log: {records:?}"
    );
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}

/// The same promises on every protocol and release: the legacy DDP endpoint of 24.10 and JSON-RPC on 25.04 and
/// 25.10. A job survives a drop, an expired session costs one re-login, a restart is "unknown".
#[test]
fn drops_expiry_and_restart_on_every_release() {
    for version in [SimVersion::V24_10, SimVersion::V25_04, SimVersion::V25_10] {
        let (sim, server) = start_sim(|o| o.version = version);
        let c = client(&server);
        c.call("app.query", json!([])).unwrap_or_else(|e| panic!("{version:?}: {e}"));

        sim.faults().drop_mid_job();
        let c2 = c.clone();
        let (r, _) =
            bounded(HANG, move || c2.call_job("app.create", create_params("survivor"), JobOptions::default()).result);
        r.unwrap_or_else(|e| panic!("{version:?}: the job survived the drop: {e}"));
        assert_eq!(count_calls(&sim, "app.create"), 1, "{version:?}");

        let logins = sim.call_log().iter().filter(|(m, _)| m.starts_with("auth.login")).count();
        sim.faults().expire_sessions();
        c.call("app.query", json!([])).unwrap_or_else(|e| panic!("{version:?}: after expiry: {e}"));
        let after = sim.call_log().iter().filter(|(m, _)| m.starts_with("auth.login")).count();
        assert_eq!(after, logins + 1, "{version:?}: one re-login");

        sim.faults().set_never_finish_jobs(true);
        let c2 = c.clone();
        // The restart comes on an event, not a timer: once the client reports the job parked at 50 %, it has the
        // job id (a restart before that would be the "id never reached us" case).
        let (parked_tx, parked) = crossbeam_channel::unbounded();
        let progress = Box::new(move |p: truenas_mcp::truenas::JobProgress| {
            if p.percent >= 50.0 {
                let _ = parked_tx.send(p.job_id);
            }
        });
        let job = thread::spawn(move || {
            let opts = JobOptions { progress: Some(progress), ..JobOptions::default() };
            c2.call_job("app.create", create_params("lost"), opts).result
        });
        parked.recv_timeout(HANG).unwrap_or_else(|_| panic!("{version:?}: the job never reached 50 %"));
        sim.restart();
        let (r, _) = bounded(HANG, move || job.join().unwrap());
        sim.faults().set_never_finish_jobs(false);
        let err = r.expect_err("the job is gone");
        assert!(as_lost_connection(&err).0, "{version:?}: {err}");
        next_calls_work(&sim, &c, "every-release-next");
    }
}

/// A log stream that loses its connection ends with a clear error at once (no silent stall), and following again
/// works.
#[test]
fn log_follow_ends_clearly_when_the_connection_drops() {
    let (sim, server) = start_sim(|o| {
        o.seed_example_apps = true;
        o.log_follow_interval = Duration::from_millis(50);
    });
    let c = client(&server);
    let app = sim.apps().into_iter().find(|a| a["name"] == "whoami").expect("seeded app");
    let container = app["active_workloads"]["container_details"][0]["id"].as_str().unwrap().to_string();
    let source = truenas_mcp::truenas::apps::log_follow_source("whoami", &container, 5);
    let sub = c.subscribe(&source).unwrap();
    let deadline = Instant::now() + HANG;
    let mut lines = 0;
    while lines < 8 {
        match sub.recv_timeout(Duration::from_secs(5)) {
            Some(truenas_mcp::truenas::SubEvent::Added { .. } | truenas_mcp::truenas::SubEvent::Changed { .. }) => {
                lines += 1
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => assert!(Instant::now() < deadline, "no log lines"),
        }
    }
    sim.restart(); // drops the connection
    let deadline = Instant::now() + HANG;
    let ended = loop {
        match sub.recv_timeout(Duration::from_secs(10)) {
            Some(truenas_mcp::truenas::SubEvent::Ended(e)) => break e,
            Some(_) => {}
            None => panic!("the stream stalled instead of ending"),
        }
        assert!(Instant::now() < deadline, "never ended");
    };
    let e = ended.expect("ended with the reason");
    assert!(matches!(e, TnError::ConnectionLost { .. }), "{e:?}");
    drop(sub);
    let again = c.subscribe(&source).unwrap_or_else(|e| panic!("following again: {e}"));
    assert!(again.recv_timeout(Duration::from_secs(10)).is_some(), "no lines after following again");
}

/// Cancelling a job whose connection just dropped: the abort reaches the job once the client has reconnected and
/// found it, and the caller hears "cancelled" only when the NAS says the job stopped.
#[test]
fn cancel_after_a_drop_aborts_the_surviving_job() {
    let (sim, server) = start_sim(|_| {});
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    sim.faults().set_never_finish_jobs(true); // the job parks at 50 %
    sim.faults().drop_mid_job(); // … and its connection drops when it gets there
    let cancel = truenas_mcp::mcp::tool::CancelToken::new();
    let (c2, cancel2) = (c.clone(), cancel.clone());
    let job = thread::spawn(move || {
        let opts = JobOptions { cancel: Some(cancel2), ..Default::default() };
        c2.call_job("app.create", create_params("cancelled"), opts).result
    });
    wait_until("the job never reached 50 %", || {
        sim.jobs().iter().any(|j| j["method"] == "app.create" && j["progress"]["percent"].as_f64() >= Some(50.0))
    });
    cancel.cancel();
    let (r, _) = bounded(HANG, move || job.join().unwrap());
    match r {
        Err(TnError::Cancelled { job_id: Some(_) }) => {}
        other => panic!("expected a cancelled job, got {other:?}"),
    }
    let states: Vec<Value> =
        sim.jobs().iter().filter(|j| j["method"] == "app.create").map(|j| j["state"].clone()).collect();
    assert_eq!(states, vec![json!("ABORTED")], "the job on the NAS was stopped");
    sim.faults().set_never_finish_jobs(false);
    next_calls_work(&sim, &c, "cancelled-next");
}

/// Several jobs in flight when the connection drops: each is found again and followed to its own result.
#[test]
fn many_jobs_survive_one_drop() {
    let (sim, server) = start_sim(|o| o.job_step = Duration::from_millis(100));
    let c = client(&server);
    c.call("app.query", json!([])).unwrap();
    let logins = count_calls(&sim, "auth.login_ex");
    let names: Vec<String> = (0..6).map(|i| format!("many{i}")).collect();
    let handles: Vec<_> = names
        .iter()
        .map(|n| {
            let (c, n) = (c.clone(), n.clone());
            thread::spawn(move || c.call_job("app.create", create_params(&n), JobOptions::default()).result)
        })
        .collect();
    wait_until("the jobs never started", || {
        sim.jobs().iter().filter(|j| j["method"] == "app.create").count() >= names.len()
    });
    sim.faults().drop_mid_job();
    for h in handles {
        let (r, _) = bounded(HANG, move || h.join().unwrap());
        r.unwrap_or_else(|e| panic!("a job that survived the drop must report its result: {e}"));
    }
    assert_eq!(count_calls(&sim, "auth.login_ex"), logins + 1, "the connection dropped and came back once");
    assert_eq!(count_calls(&sim, "app.create"), names.len(), "none re-sent");
    for n in &names {
        assert_eq!(apps_named(&sim, n), 1, "{n}");
    }
}

/// The session expires while a job runs: the NAS ends the old session's subscriptions, and the job finishes before
/// the client has logged in and subscribed again. The client must look the job up after the re-login rather than
/// wait for an event that was never sent to it.
#[test]
fn job_that_ends_while_the_session_is_renewed_is_not_missed() {
    let (sim, server) = start_sim(|_| {});
    // A test clock that never moves: the job deadline cannot fire, so the job's end must be found.
    let clock = ManualClock::new(false);
    let c = Client::network(ClientSettings { clock, ..ClientSettings::new(config_for(server.addr)) });
    c.call("app.query", json!([])).unwrap();
    sim.faults().set_never_finish_jobs(true);
    let c2 = c.clone();
    let job = thread::spawn(move || {
        let opts = JobOptions { timeout: Some(Duration::from_secs(30)), ..Default::default() };
        c2.call_job("app.create", create_params("renewed"), opts).result
    });
    wait_until("the job never reached 50 %", || {
        sim.jobs().iter().any(|j| j["method"] == "app.create" && j["progress"]["percent"].as_f64() >= Some(50.0))
    });
    // The next call is refused (207), which ends the old session and its subscriptions; the re-login is slow.
    sim.faults().set_latency("auth.login_ex", Duration::from_millis(800));
    sim.faults().expire_sessions();
    let c3 = c.clone();
    let read = thread::spawn(move || c3.call("app.query", json!([])));
    wait_until("no re-login", || count_calls(&sim, "auth.login_ex") >= 2);
    // The job ends now, while nobody is subscribed.
    sim.faults().set_never_finish_jobs(false);
    let (r, _) = bounded(HANG, move || job.join().unwrap());
    r.unwrap_or_else(|e| panic!("the job's end was missed: {e}"));
    read.join().unwrap().unwrap_or_else(|e| panic!("the refused read is sent again after the re-login: {e}"));
    sim.faults().clear_latency();
    next_calls_work(&sim, &c, "renewed-next");
}

//! Integration tests: soak (owned by the proof helper).
//!
//! Hundreds of pipelined tool calls (`SOAK_IT_SCALE=N` for N times as many) through one real server process against the simulator over WebSocket, with
//! random faults injected meanwhile (dropped connections, latency, expired sessions, garbage frames): no crash, every
//! request answered exactly once, memory flat, and the server healthy once the faults stop. Then deploys, stops and
//! deletes under the same storm: every answer matches what happened on the NAS ("done" happened, "failed" did not,
//! only "OUTCOME UNKNOWN" may be either) and no job ran twice. The 100 000-call variant with numbers is
//! `cargo bench --bench system -- soak`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::faults::{start_sim, HANG, PASSWORD};

/// The quick sizes `cargo test` runs; `SOAK_IT_SCALE=N` multiplies them (the long soak with numbers is the bench).
const CALLS: u64 = 800;
const IN_FLIGHT: u64 = 8;

/// The soak tests run one at a time: each one alone loads the 2-core machine, and together with the rest of the suite
/// on more test threads they starved each other's storms and timers.
static SOAK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`SOAK`] for one test (a failed soak test does not poison the others).
fn one_soak_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SOAK.lock().unwrap_or_else(|e| e.into_inner())
}

fn scaled(n: u64) -> u64 {
    n * std::env::var("SOAK_IT_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

/// A small deterministic generator (xorshift): reproducible runs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The tool call number `n` makes: a mix of the cheap read tools and validation.
fn call_for(n: u64) -> Value {
    let (name, args) = match n % 6 {
        0 => ("list_custom_apps", json!({})),
        1 => ("get_custom_app_status", json!({"app_name": "whoami"})),
        2 => ("get_custom_app_config", json!({"app_name": "whoami"})),
        3 => ("validate_compose", json!({"compose_yaml": "services:\n  web:\n    image: nginx:1.27\n"})),
        4 => ("get_custom_app_status", json!({"app_name": "no-such-app"})),
        _ => ("list_custom_apps", json!({"status_filter": "running"})),
    };
    json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": name, "arguments": args}})
}

/// What kind of answer a tool call got.
fn kind_of(response: &Value) -> String {
    if let Some(e) = response.get("error") {
        return format!("protocol error {}", e["code"]);
    }
    let result = &response["result"];
    if result["isError"] != true {
        return "ok".into();
    }
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let kind = if text.contains("does not exist") {
        "not found (expected)"
    } else if text.contains("connection to truenas was lost") {
        "connection lost"
    } else if text.contains("did not answer") {
        "timeout"
    } else if text.contains("not authenticated") {
        "not authenticated"
    } else {
        return format!("other: {}", text.chars().take(160).collect::<String>());
    };
    kind.into()
}

#[test]
fn thousands_of_calls_with_random_faults() {
    let _soak = one_soak_at_a_time();
    let (sim, server) = start_sim(|o| {
        o.seed_example_apps = true;
        // Sessions are expired far more often than any NAS would; do not let the re-logins trip the login limit.
        o.rate_limit.max_calls = u32::MAX;
    });
    let calls = scaled(CALLS);
    let mut child = Command::new(env!("CARGO_BIN_EXE_truenas-mcp"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TRUENAS_HOST", "127.0.0.1")
        .env("TRUENAS_PORT", server.addr.port().to_string())
        .env("TRUENAS_PROTOCOL", "ws")
        .env("TRUENAS_PASSWORD", PASSWORD)
        .env("TRUENAS_AUDIT_LOG", "off")
        .env(truenas_mcp::clock::TEST_CLOCK_ENV, "auto")
        .env("TRUENAS_TIMEOUT", "5")
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn truenas-mcp");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<Value>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    let mut send = |v: &Value| {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        stdin.write_all(&line).expect("the server reads its input");
        stdin.flush().unwrap();
    };
    let init = json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "soak", "version": "0"}}});
    send(&init);
    assert_eq!(rx.recv_timeout(HANG).expect("initialize answered")["id"], "init");
    send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    // Faults, at random, while the calls run.
    let stop = Arc::new(AtomicBool::new(false));
    let faults = sim.faults();
    let stop2 = stop.clone();
    let injector = thread::spawn(move || {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut injected = 0u64;
        while !stop2.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20 + rng.below(60)));
            match rng.below(5) {
                0 => faults.drop_after_frames(1 + rng.below(40)),
                1 => faults.set_latency("", Duration::from_millis(rng.below(4))),
                2 => faults.expire_sessions(),
                3 => faults.send_garbage(),
                _ => faults.set_latency("app.", Duration::from_millis(rng.below(10))),
            }
            injected += 1;
        }
        faults.clear_latency();
        injected
    });

    let mut outstanding: HashSet<u64> = HashSet::new();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let (mut next, mut answered) = (1u64, 0u64);
    let mut rss_warm = 0;
    let started = std::time::Instant::now();
    while answered < calls {
        while next <= calls && outstanding.len() < IN_FLIGHT as usize {
            send(&call_for(next));
            outstanding.insert(next);
            next += 1;
        }
        let msg = rx.recv_timeout(HANG).unwrap_or_else(|_| {
            panic!("hung: {} requests unanswered after {HANG:?}: {:?}", outstanding.len(), outstanding)
        });
        if msg.get("method").is_some() {
            continue; // a notification
        }
        let id = msg["id"].as_u64().unwrap_or_else(|| panic!("a response without a numeric id: {msg}"));
        assert!(outstanding.remove(&id), "response to {id}, which is not outstanding (duplicate?): {msg}");
        *kinds.entry(kind_of(&msg)).or_default() += 1;
        answered += 1;
        if answered == calls / 4 {
            rss_warm = rss_kib(pid);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let injected = injector.join().unwrap();
    let rss_end = rss_kib(pid);
    assert!(child.try_wait().unwrap().is_none(), "the server exited during the soak");
    eprintln!("soak: {calls} calls in {:?}, {injected} faults injected, answers by kind {kinds:?}, RSS {rss_warm} → {rss_end} KiB", started.elapsed());

    // Every answer is a tool result or an expected error; nothing else.
    for kind in kinds.keys() {
        assert!(
            // "not authenticated": refused again after its one re-login, because the storm expired the new session
            // too before the retry arrived — the documented answer to that.
            ["ok", "not found (expected)", "connection lost", "timeout", "not authenticated"].contains(&kind.as_str()),
            "unexpected kind of answer: {kind} (all: {kinds:?})"
        );
    }
    assert!(kinds.get("ok").copied().unwrap_or(0) > calls / 2, "mostly successes expected: {kinds:?}");
    // Memory flat: the last three quarters of the run may not grow the server by more than 8 MiB.
    assert!(rss_warm > 0 && rss_end < rss_warm + 8 * 1024, "RSS grew from {rss_warm} KiB to {rss_end} KiB");

    // Faults off: the server is healthy. A drop armed last (it counts frames down) may still trip once, so look
    // for ten successes in a row.
    let (mut streak, mut id) = (0, calls);
    while streak < 10 {
        id += 1;
        assert!(id < calls + 100, "no ten successes in a row after the faults stopped");
        send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                     "params": {"name": "list_custom_apps", "arguments": {}}}));
        let r = loop {
            let m = rx.recv_timeout(HANG).expect("answered");
            if m["id"] == json!(id) {
                break m;
            }
        };
        streak = if kind_of(&r) == "ok" { streak + 1 } else { 0 };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Deploys under the same fault storm: each app is created at most once (nothing re-sent behind the caller's
/// back), every deploy reported as done exists, and every deploy reported as failed for a known reason does not —
/// only "OUTCOME UNKNOWN" (and a job deadline) may leave either state.
#[test]
fn deploys_under_random_faults_are_never_duplicated_or_misreported() {
    let _soak = one_soak_at_a_time();
    let deploys = scaled(80) as usize;
    let (sim, server) = start_sim(|o| o.rate_limit.max_calls = u32::MAX);
    let mut bin = Binary::start(&server);
    let args: Vec<Value> = (0..deploys)
        .map(|i| {
            json!({"app_name": format!("soak{i}"),
                   "compose_yaml": format!("services:\n  web:\n    image: nginx:1.27\n    ports: [\"{}:80\"]\n", 20_000 + i)})
        })
        .collect();
    // Let jobs whose outcome was unknown finish on the NAS before looking.
    let answers = bin.call_all_in_storm(&sim, 0x2545_F491_4F6C_DD1D, "deploy_custom_app", &args);

    // Jobs, not the call log: a create refused with 207 (expired session) is logged but never ran, and sending
    // that one again is the documented single retry.
    let jobs = sim.jobs();
    let mut summary: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, answer) in answers.iter().enumerate() {
        let app = format!("soak{i}");
        let creates = jobs
            .iter()
            .filter(|j| j["method"] == "app.create" && j["arguments"][0]["app_name"] == app.as_str())
            .count();
        assert!(creates <= 1, "{app}: app.create ran {creates} times");
        let exists = sim.apps().iter().any(|a| a["name"] == app.as_str());
        let (v, text) = verdict(answer);
        match v {
            "done" => assert!(exists, "{app}: reported deployed but does not exist: {text}"),
            "not done" => assert!(!exists, "{app}: reported failed but exists (a lost change): {text}"),
            _ => {}
        }
        *summary.entry(v).or_default() += 1;
    }
    eprintln!("deploys under faults: {summary:?}");
    assert!(summary.get("done").copied().unwrap_or(0) > deploys as u64 / 2, "{summary:?}");
    assert!(bin.child.try_wait().unwrap().is_none(), "the server exited");
}

/// The real binary on pipes, for the storms below.
struct Binary {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    rx: crossbeam_channel::Receiver<Value>,
}

impl Binary {
    fn start(server: &truenas_mcp::sim::SimServer) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_truenas-mcp"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TRUENAS_HOST", "127.0.0.1")
            .env("TRUENAS_PORT", server.addr.port().to_string())
            .env("TRUENAS_PROTOCOL", "ws")
            .env("TRUENAS_PASSWORD", PASSWORD)
            .env("TRUENAS_AUDIT_LOG", "off")
            .env("TRUENAS_TIMEOUT", "5")
            // Settle and health polls skip their pauses (the answers and the NAS's state are what is checked).
            .env(truenas_mcp::clock::TEST_CLOCK_ENV, "auto")
            // SOAK_SERVER_LOG=<file> keeps the server's debug log (for a failure's post-mortem).
            .env("RUST_LOG", if std::env::var_os("SOAK_SERVER_LOG").is_some() { "debug" } else { "error" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(match std::env::var_os("SOAK_SERVER_LOG") {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("create the server log")),
                None => Stdio::null(),
            })
            .spawn()
            .expect("spawn truenas-mcp");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded::<Value>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(serde_json::from_str(&line).expect("JSON")).is_err() {
                    return;
                }
            }
        });
        let mut b = Binary { child, stdin, rx };
        b.send(&json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "soak", "version": "0"}}}));
        assert_eq!(b.rx.recv_timeout(HANG).expect("initialize answered")["id"], "init");
        b.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        b
    }

    fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).unwrap();
        self.stdin.flush().unwrap();
    }

    /// `call_all` (4 in flight) under a fault storm seeded with `seed`; the storm ends with the last answer, then
    /// jobs whose outcome was unknown finish on the NAS before anyone looks.
    fn call_all_in_storm(
        &mut self,
        sim: &truenas_mcp::sim::Simulator,
        seed: u64,
        tool: &str,
        args: &[Value],
    ) -> Vec<Value> {
        let (stop, injector) = storm(sim, seed);
        let answers = self.call_all(tool, args, 4);
        stop.store(true, Ordering::SeqCst);
        injector.join().unwrap();
        crate::faults::wait_until("jobs still running on the NAS", || {
            sim.jobs().iter().all(|j| j["state"] != "RUNNING" && j["state"] != "WAITING")
        });
        answers
    }

    /// Call `tool` once per argument set, `in_flight` at a time; the answers by index.
    fn call_all(&mut self, tool: &str, args: &[Value], in_flight: usize) -> Vec<Value> {
        let mut answers: BTreeMap<u64, Value> = BTreeMap::new();
        let mut outstanding: HashSet<u64> = HashSet::new();
        let mut next = 0usize;
        while answers.len() < args.len() {
            while next < args.len() && outstanding.len() < in_flight {
                let id = next as u64;
                self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": tool, "arguments": args[next]}}));
                outstanding.insert(id);
                next += 1;
            }
            let msg = self.rx.recv_timeout(HANG).unwrap_or_else(|_| {
                panic!(
                    "hung: {tool} {:?} unanswered",
                    outstanding.iter().map(|i| &args[*i as usize]).collect::<Vec<_>>()
                )
            });
            if msg.get("method").is_some() {
                continue;
            }
            let Some(id) = msg.get("id").and_then(Value::as_u64) else { continue };
            assert!(outstanding.remove(&id), "duplicate or unknown response {msg}");
            answers.insert(id, msg);
        }
        answers.into_values().collect()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fault storm (drops, expired sessions, garbage) until the returned flag is set.
fn storm(sim: &truenas_mcp::sim::Simulator, seed: u64) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let faults = sim.faults();
    let sim = sim.clone();
    let handle = thread::spawn(move || {
        let mut rng = Rng(seed);
        while !stop2.load(Ordering::SeqCst) {
            // Paced by the traffic, not the wall clock: a fault every 8..24 frames the simulator receives (about
            // what 20..80 ms gave on an idle machine), so a loaded machine does not see more faults per deploy.
            let next = sim.frames_received() + 8 + rng.below(16);
            while sim.frames_received() < next && !stop2.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(2));
            }
            match rng.below(4) {
                0 | 1 => faults.drop_after_frames(1 + rng.below(12)),
                2 => faults.expire_sessions(),
                _ => faults.send_garbage(),
            }
        }
    });
    (stop, handle)
}

/// How an answer classifies the change: done, not done, or honestly unknown.
fn verdict(answer: &Value) -> (&'static str, String) {
    let result = &answer["result"];
    let text = result["content"][0]["text"].as_str().unwrap_or_default().to_string();
    if result["isError"] != true {
        ("done", text)
    } else if text.contains("OUTCOME UNKNOWN") || text.contains("did not finish in time") {
        ("unknown", text)
    } else {
        ("not done", text)
    }
}

/// Stops, updates and deletes under the fault storm: every answer matches what happened on the NAS, and no job ran twice.
#[test]
fn stops_updates_and_deletes_under_random_faults_match_the_nas() {
    let _soak = one_soak_at_a_time();
    let apps = scaled(30) as usize;
    let (sim, server) = start_sim(|o| o.rate_limit.max_calls = u32::MAX);
    let names: Vec<String> = (0..apps).map(|i| format!("storm{i}")).collect();
    let mut bin = Binary::start(&server);
    // Set-up without faults.
    let creates: Vec<Value> = names
        .iter()
        .map(|n| json!({"app_name": n, "compose_yaml": "services:\n  web:\n    image: nginx:1.27\n"}))
        .collect();
    for a in bin.call_all("deploy_custom_app", &creates, 4) {
        assert_eq!(verdict(&a).0, "done", "{a}");
    }
    let state = |sim: &truenas_mcp::sim::Simulator, n: &str| -> Option<String> {
        sim.apps().iter().find(|a| a["name"] == n).map(|a| a["state"].as_str().unwrap_or_default().to_string())
    };
    let ran = |sim: &truenas_mcp::sim::Simulator, method: &str, n: &str| -> usize {
        sim.jobs().iter().filter(|j| j["method"] == method && j["arguments"][0] == n).count()
    };
    let mut summary: BTreeMap<String, u64> = BTreeMap::new();

    let args: Vec<Value> = names.iter().map(|n| json!({"app_name": n})).collect();
    let stops = bin.call_all_in_storm(&sim, 0x5DEE_CE66_D1CE_4E5B, "stop_custom_app", &args);
    for (n, a) in names.iter().zip(&stops) {
        let (v, text) = verdict(a);
        let s = state(&sim, n);
        match v {
            "done" => assert_eq!(s.as_deref(), Some("STOPPED"), "{n}: reported stopped: {text}"),
            "not done" => assert_eq!(s.as_deref(), Some("RUNNING"), "{n}: reported not stopped: {text}"),
            _ => {}
        }
        assert!(ran(&sim, "app.stop", n) <= 1, "{n}: app.stop ran twice");
        *summary.entry(format!("stop {v}")).or_default() += 1;
    }

    let image = |sim: &truenas_mcp::sim::Simulator, n: &str| -> Option<String> {
        let apps = sim.apps();
        let app = apps.iter().find(|a| a["name"] == n)?;
        app["config"]["services"]["web"]["image"].as_str().map(str::to_string)
    };
    assert_eq!(image(&sim, &names[0]).as_deref(), Some("nginx:1.27"), "{:?}", sim.apps());
    let args: Vec<Value> = names
        .iter()
        .map(|n| json!({"app_name": n, "compose_yaml": "services:\n  web:\n    image: nginx:1.28\n"}))
        .collect();
    let updates = bin.call_all_in_storm(&sim, 0x0F0F_1234_ABCD_5678, "update_custom_app", &args);
    for (n, a) in names.iter().zip(&updates) {
        let (v, text) = verdict(a);
        let now = image(&sim, n);
        match v {
            "done" => assert_eq!(now.as_deref(), Some("nginx:1.28"), "{n}: reported updated: {text}"),
            "not done" => assert_eq!(now.as_deref(), Some("nginx:1.27"), "{n}: reported not updated: {text}"),
            _ => {}
        }
        assert!(ran(&sim, "app.update", n) <= 1, "{n}: app.update ran twice");
        *summary.entry(format!("update {v}")).or_default() += 1;
    }

    let args: Vec<Value> = names.iter().map(|n| json!({"app_name": n, "confirm": true})).collect();
    let deletes = bin.call_all_in_storm(&sim, 0x1234_5678_9ABC_DEF1, "delete_custom_app", &args);
    for (n, a) in names.iter().zip(&deletes) {
        let (v, text) = verdict(a);
        let s = state(&sim, n);
        match v {
            "done" => assert_eq!(s, None, "{n}: reported deleted: {text}"),
            "not done" => assert!(s.is_some(), "{n}: reported not deleted but gone: {text}"),
            _ => {}
        }
        assert!(ran(&sim, "app.delete", n) <= 1, "{n}: app.delete ran twice");
        *summary.entry(format!("delete {v}")).or_default() += 1;
    }
    eprintln!("stops and deletes under faults: {summary:?}");
}

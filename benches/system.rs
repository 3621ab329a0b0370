//! End-to-end benchmarks of the release binary against the simulator: cold start, tool-call throughput, pipelining
//! over one WebSocket, compose validation sizes, log retrieval, idle cost and a 100 000-call soak under faults.
//!
//! `cargo bench --bench system` runs all; `cargo bench --bench system -- NAME [NAME…]` runs some, NAME one of
//! cold-start, overhead, pipelining, compose, logs, idle, soak. Numbers only, no assertions (see BENCHMARKS.md).
//! `SOAK_CALLS` overrides the soak length (default 100 000), `SOAK_FAULTS=0` turns its faults off, `IDLE_SECS` the
//! idle window (default 30), `BENCH_SERVER_LOG=debug` shows the server's log.
//! What benches/mcp.rs (ping rates, sequential mock tools/call, in-process overhead) and benches/client.rs (client
//! overhead over bare tungstenite, 64 concurrent client calls, actor idle CPU) measure is not repeated here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::{json, Value};
use truenas_mcp::compose::MAX_INPUT_BYTES;
use truenas_mcp::sim::{SimOptions, SimServer, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_truenas-mcp");
const PASSWORD: &str = "bench-password";
const HANG: Duration = Duration::from_secs(120);

// ----- plumbing -------------------------------------------------------------------------------------------------

/// The release binary on pipes; a reader thread turns its stdout into JSON values.
struct Server {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next: u64,
    early: HashMap<u64, Value>,
}

impl Server {
    fn spawn(args: &[&str], env: &[(&str, String)]) -> Server {
        let mut cmd = Command::new(BIN);
        // BENCH_SERVER_LOG=debug (or any RUST_LOG filter) shows the server's log on stderr.
        let log = std::env::var("BENCH_SERVER_LOG").ok();
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TRUENAS_AUDIT_LOG", "off")
            .env("RUST_LOG", log.as_deref().unwrap_or("off"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if log.is_some() { Stdio::inherit() } else { Stdio::null() });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn truenas-mcp");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(v) = serde_json::from_str::<Value>(&line) else { return };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Server { child, stdin, rx, next: 0, early: HashMap::new() }
    }

    /// The binary pointed at a simulator over ws://127.0.0.1.
    fn against(server: &SimServer, extra_env: &[(&str, String)]) -> Server {
        let mut env = vec![
            ("TRUENAS_HOST", "127.0.0.1".to_string()),
            ("TRUENAS_PORT", server.addr.port().to_string()),
            ("TRUENAS_PROTOCOL", "ws".to_string()),
            ("TRUENAS_PASSWORD", PASSWORD.to_string()),
        ];
        env.extend(extra_env.iter().cloned());
        let mut s = Server::spawn(&[], &env);
        s.initialize();
        s
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).expect("the server reads");
        self.stdin.flush().unwrap();
    }

    fn send_request(&mut self, method: &str, params: Value) -> u64 {
        self.next += 1;
        let id = self.next;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// The response to `id`; responses to other requests that arrive first are kept for their own `wait`.
    fn wait(&mut self, id: u64) -> Value {
        if let Some(m) = self.early.remove(&id) {
            return m;
        }
        loop {
            let m = self.rx.recv_timeout(HANG).expect("the server answers");
            if m.get("method").is_some() {
                continue; // a notification
            }
            match m["id"].as_u64() {
                Some(got) if got == id => return m,
                Some(other) => {
                    self.early.insert(other, m);
                }
                None => {}
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        self.wait(id)
    }

    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
    }

    fn initialize(&mut self) {
        let r = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}),
        );
        assert!(r.get("result").is_some(), "{r}");
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sim(tweak: impl FnOnce(&mut SimOptions)) -> (Simulator, SimServer) {
    let mut opts = SimOptions {
        users: vec![("mcp-service".into(), PASSWORD.into())],
        job_step: Duration::from_millis(5),
        ..SimOptions::default()
    };
    tweak(&mut opts);
    let sim = Simulator::new(opts);
    let server = sim.serve("127.0.0.1:0").expect("serve the simulator");
    (sim, server)
}

/// The client library pointed at the simulator (for comparisons with the binary).
fn bench_client(server: &SimServer) -> truenas_mcp::truenas::Client {
    let mut config = truenas_mcp::config::Config::for_tests();
    config.host = Some("127.0.0.1".into());
    config.port = server.addr.port();
    config.protocol = truenas_mcp::config::Protocol::Ws;
    config.password = Some(truenas_mcp::config::Secret::new(PASSWORD));
    truenas_mcp::truenas::Client::network(truenas_mcp::truenas::ClientSettings::new(config))
}

/// A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, …).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

// ----- 1. cold start --------------------------------------------------------------------------------------------

const HANDSHAKE: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"#,
    r#""clientInfo":{"name":"bench","version":"0"}}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    "\n",
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    "\n"
);

fn cold_start() {
    println!("== cold start: process start → tools/list response (20 runs each)");
    let configured = [("TRUENAS_HOST", "nas.invalid".to_string()), ("TRUENAS_PASSWORD", "x".to_string())];
    for (label, args, env) in [
        ("configured for a NAS (no I/O before a tool call)", vec![], configured.to_vec()),
        ("--mock", vec!["--mock"], vec![]),
    ] {
        let (mut times, mut hwm, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..20 {
            let started = Instant::now();
            let mut s = Server::spawn(&args, &env);
            s.stdin.write_all(HANDSHAKE.as_bytes()).unwrap();
            s.stdin.flush().unwrap();
            let list = s.wait(2);
            times.push(started.elapsed());
            assert_eq!(list["result"]["tools"].as_array().map_or(0, Vec::len), 15, "{list}");
            hwm.push(status_kib(s.pid(), "VmHWM"));
            rss.push(status_kib(s.pid(), "VmRSS"));
        }
        times.sort();
        println!(
            "  {label}: median {}, min {}, max {}; peak RSS (VmHWM) median {}, max {}; RSS {}",
            ms(percentile(&times, 0.5)),
            ms(times[0]),
            ms(times[times.len() - 1]),
            mib(median_u64(hwm.clone())),
            mib(*hwm.iter().max().unwrap()),
            mib(median_u64(rss)),
        );
    }
}

// ----- 2. tool-call overhead in mock mode -----------------------------------------------------------------------

fn overhead() {
    println!("== tools/call in mock mode (in-memory simulator, real actor/codec/WebSocket framing)");
    let mut s = Server::spawn(&["--mock"], &[]);
    s.initialize();
    let cases = [
        ("get_custom_app_status", json!({"app_name": "whoami"})),
        ("list_custom_apps", json!({})),
        (
            "validate_compose",
            json!({"compose_yaml": "services:\n  web:\n    image: nginx:1.27\n    ports: [\"8088:80\"]\n"}),
        ),
    ];
    for (tool, args) in &cases {
        for _ in 0..100 {
            s.call(tool, args.clone());
        }
        let mut times = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            let r = s.call(tool, args.clone());
            times.push(t.elapsed());
            assert!(r["result"]["isError"] == false, "{r}");
        }
        times.sort();
        println!(
            "  {tool} (2000 sequential): p50 {}, p99 {}, max {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(times[times.len() - 1])
        );
    }
    for in_flight in [4usize, 16, 64] {
        let n = 20_000u64;
        let (mut sent, mut done) = (0u64, 0u64);
        let mut out = HashSet::new();
        let t = Instant::now();
        while done < n {
            while sent < n && out.len() < in_flight {
                let id = s.send_request(
                    "tools/call",
                    json!({"name": "get_custom_app_status", "arguments": {"app_name": "whoami"}}),
                );
                out.insert(id);
                sent += 1;
            }
            let m = s.rx.recv_timeout(HANG).expect("answer");
            if let Some(id) = m["id"].as_u64() {
                if out.remove(&id) {
                    assert!(m["result"]["isError"] == false, "{m}");
                    done += 1;
                }
            }
        }
        let e = t.elapsed();
        println!(
            "  get_custom_app_status, {in_flight} in flight: {:.0} calls/s ({n} calls in {:.2} s)",
            n as f64 / e.as_secs_f64(),
            e.as_secs_f64()
        );
    }
    println!("  server peak RSS after all of that: {}", mib(status_kib(s.pid(), "VmHWM")));
}

// ----- 3. pipelining over one WebSocket -------------------------------------------------------------------------

fn pipelining() {
    /// Bursts per N; the median is reported (single bursts are noisy on a shared machine).
    const RUNS: usize = 9;
    println!("== pipelining: N concurrent tool calls, every TrueNAS call takes 20 ms, the NAS executes 10 at a time");
    let (sim, server) = sim(|_| {});
    let mut s = Server::against(&server, &[]);
    s.call("get_custom_app_status", json!({"app_name": "whoami"})); // connect + log in outside the measurement
    let client = bench_client(&server);
    client.server_info().expect("the client logs in");
    sim.faults().set_latency("", Duration::from_millis(20));
    for n in [10usize, 20, 40, 64] {
        let mut runs = Vec::new();
        let mut wire_calls = 0;
        for _ in 0..RUNS {
            sim.clear_call_log();
            let t = Instant::now();
            let ids: Vec<u64> = (0..n)
                .map(|_| {
                    s.send_request(
                        "tools/call",
                        json!({"name": "get_custom_app_status", "arguments": {"app_name": "whoami"}}),
                    )
                })
                .collect();
            for id in ids {
                let r = s.wait(id);
                assert!(r["result"]["isError"] == false, "{r}");
            }
            runs.push(t.elapsed());
            wire_calls = sim.call_log().len(); // per burst (the log is cleared before each)
        }
        runs.sort();
        let median = runs[runs.len() / 2];
        // Each tool call makes its TrueNAS calls one after another; the ideal keeps all 10 slots busy.
        let per_tool = wire_calls as f64 / n as f64;
        let ideal = Duration::from_millis(20) * wire_calls.div_ceil(10) as u32;
        let ideal = ideal.max(Duration::from_millis((20.0 * per_tool.ceil()) as u64));
        // The same N as plain client calls from N threads (no MCP, no tool): what the connection alone achieves.
        let mut lib_runs = Vec::new();
        for _ in 0..RUNS {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (client, barrier) = (client.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        client.call("app.query", json!([[["name", "=", "whoami"]]])).expect("app.query");
                    })
                })
                .collect();
            barrier.wait();
            let t = Instant::now();
            for h in handles {
                h.join().unwrap();
            }
            lib_runs.push(t.elapsed());
        }
        lib_runs.sort();
        let lib = lib_runs[RUNS / 2];
        println!(
            "  N={n:>3}: median {:>8} ({} TrueNAS calls, {per_tool:.1} per tool call); ideal {:>8} → {:.2}×; \
             the same as {n} bare client calls: {} → {:.2}×",
            ms(median),
            wire_calls,
            ms(ideal),
            median.as_secs_f64() / ideal.as_secs_f64(),
            ms(lib),
            lib.as_secs_f64() / (Duration::from_millis(20) * n.div_ceil(10) as u32).as_secs_f64()
        );
    }
}

// ----- 4. compose validation ------------------------------------------------------------------------------------

/// A compact document (shared limits through an anchor) so that 1000 services stay under the compose input cap.
fn compose_with(services: usize) -> String {
    let mut y = String::from(
        "x-common: &common\n  restart: unless-stopped\n  deploy:\n    resources:\n      limits: {memory: 256M}\n\nservices:\n",
    );
    for i in 0..services {
        y.push_str(&format!(
            "  s{i}:\n    <<: *common\n    image: ex/app{i}:1.{i}\n    ports: [\"{}:80\"]\n    volumes: [\"/mnt/tank/s{i}:/data\"]\n",
            10_000 + i
        ));
    }
    y
}

/// End to end through the binary: JSON-RPC in, schema check of the arguments, validation, live port check against
/// the (mock) NAS, structured result out. The library alone is measured by benches/compose.rs.
fn compose_bench() {
    println!("== validate_compose tool over MCP, mock NAS (includes its app.used_ports check)");
    let mut s = Server::spawn(&["--mock"], &[]);
    s.initialize();
    for services in [10usize, 100, 1000] {
        let yaml = compose_with(services);
        assert!(yaml.len() <= MAX_INPUT_BYTES, "{} bytes is over the input cap", yaml.len());
        let mut times = Vec::new();
        let mut summary = String::new();
        for _ in 0..20 {
            let t = Instant::now();
            let r = s.call("validate_compose", json!({"compose_yaml": yaml}));
            times.push(t.elapsed());
            let sc = &r["result"]["structuredContent"];
            summary = format!(
                "valid {}, {} findings, {} services",
                sc["valid"],
                sc["findings"].as_array().map_or(0, Vec::len),
                sc["services"].as_array().map_or(0, Vec::len)
            );
        }
        times.sort();
        println!(
            "  {services:>4} services ({:>3} KiB; {summary}): median {}, p95 {}",
            yaml.len() / 1024,
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95))
        );
    }
}

// ----- 5. log retrieval -----------------------------------------------------------------------------------------

fn logs() {
    println!("== log retrieval from an app whose container has 100 000 log lines");
    let (sim, server) = sim(|o| o.log_follow_interval = Duration::from_secs(3600));
    sim.set_log_lines("whoami", 100_000);
    let mut s = Server::against(&server, &[]);
    s.call("list_custom_apps", json!({}));
    let hwm0 = status_kib(s.pid(), "VmHWM");
    for lines in [100u64, 1000, 10_000] {
        let t = Instant::now();
        let r = s.call("get_app_logs", json!({"app_name": "whoami", "lines": lines}));
        let e = t.elapsed();
        let got = r["result"]["structuredContent"]["line_count"].as_u64().unwrap_or(0);
        let bytes = serde_json::to_string(&r).map_or(0, |t| t.len());
        println!(
            "  get_app_logs lines={lines:>5}: {} ({got} lines, {} KiB response; includes the 400 ms quiet wait that \
             ends a tail); server VmHWM {}",
            ms(e),
            bytes / 1024,
            mib(status_kib(s.pid(), "VmHWM"))
        );
    }
    println!("  server VmHWM before the log calls {}", mib(hwm0));
    // The whole log through the client library (the tools cap a tail at 10 000 lines).
    let client = bench_client(&server);
    let app = sim.apps().into_iter().find(|a| a["name"] == "whoami").expect("seeded app");
    let container = app["active_workloads"]["container_details"][0]["id"].as_str().unwrap().to_string();
    let hwm_before = status_kib(std::process::id(), "VmHWM");
    let t = Instant::now();
    let sub = client
        .subscribe(&truenas_mcp::truenas::apps::log_follow_source("whoami", &container, 100_000))
        .expect("subscribe");
    let mut n = 0u64;
    while let Some(ev) = sub.recv_timeout(Duration::from_millis(500)) {
        if matches!(ev, truenas_mcp::truenas::SubEvent::Added { .. } | truenas_mcp::truenas::SubEvent::Changed { .. }) {
            n += 1;
        }
        if n == 100_000 {
            break;
        }
    }
    let e = t.elapsed();
    println!(
        "  client subscription streaming all {n} lines: {} ({:.0} lines/s); bench process (client + simulator) \
         VmHWM {} → {}",
        ms(e),
        n as f64 / e.as_secs_f64(),
        mib(hwm_before),
        mib(status_kib(std::process::id(), "VmHWM"))
    );
}

// ----- 6. idle --------------------------------------------------------------------------------------------------

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the comm field: state is f[0], utime f[11], stime f[12].
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Context switches over all threads of `pid`: (voluntary, involuntary).
fn switches(pid: u32) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return total };
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in status.lines() {
            if let Some(v) = l.strip_prefix("voluntary_ctxt_switches:") {
                total.0 += v.trim().parse::<u64>().unwrap_or(0);
            } else if let Some(v) = l.strip_prefix("nonvoluntary_ctxt_switches:") {
                total.1 += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn idle() {
    let secs: u64 = std::env::var("IDLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    println!("== idle: a connected, logged-in server doing nothing for {secs} s (default keepalive 25 s)");
    let (_sim, server) = sim(|_| {});
    let mut s = Server::against(&server, &[]);
    s.call("list_custom_apps", json!({}));
    std::thread::sleep(Duration::from_millis(500));
    let pid = s.pid();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    let (t0, (v0, n0)) = (cpu_ticks(pid), switches(pid));
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, (v1, n1)) = (cpu_ticks(pid), switches(pid));
    let hz = clock_ticks_per_second();
    println!(
        "  CPU (utime+stime) {} ms over {secs} s ({:.4} % of one core); wake-ups {:.2}/s ({} voluntary + {} \
         involuntary context switches over {threads} threads)",
        (t1 - t0) * 1000 / hz,
        (t1 - t0) as f64 * 100.0 / hz as f64 / secs as f64,
        (v1 - v0 + n1 - n0) as f64 / secs as f64,
        v1 - v0,
        n1 - n0
    );
}

// ----- 7. soak --------------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn soak_call(n: u64) -> (&'static str, Value) {
    match n % 6 {
        0 => ("list_custom_apps", json!({})),
        1 => ("get_custom_app_status", json!({"app_name": "whoami"})),
        2 => ("get_custom_app_config", json!({"app_name": "whoami"})),
        3 => ("validate_compose", json!({"compose_yaml": "services:\n  web:\n    image: nginx:1.27\n"})),
        4 => ("get_custom_app_status", json!({"app_name": "no-such-app"})),
        _ => ("list_custom_apps", json!({"status_filter": "running"})),
    }
}

fn kind_of(r: &Value) -> String {
    if let Some(e) = r.get("error") {
        return format!("protocol error {}", e["code"]);
    }
    if r["result"]["isError"] != true {
        return "ok".into();
    }
    let text = r["result"]["content"][0]["text"].as_str().unwrap_or_default();
    for (needle, kind) in [
        ("does not exist", "app not found (expected)"),
        ("connection to truenas was lost", "connection lost"),
        ("did not answer", "timeout"),
        ("not authenticated", "not authenticated after re-login"),
    ] {
        if text.contains(needle) {
            return kind.into();
        }
    }
    format!("other: {}", text.chars().take(120).collect::<String>())
}

fn soak() {
    let calls: u64 = std::env::var("SOAK_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let in_flight = 16usize;
    // SOAK_FAULTS=0: the same load without faults (to tell memory growth from calls apart from growth from faults).
    let with_faults = std::env::var("SOAK_FAULTS").map_or(true, |v| v != "0");
    println!("== soak: {calls} tool calls, {in_flight} in flight, one server process, random faults every 20–80 ms");
    let (sim, server) = sim(|o| {
        o.rate_limit.max_calls = u32::MAX;
        o.log_follow_interval = Duration::from_secs(3600);
    });
    let mut s = Server::against(&server, &[("TRUENAS_TIMEOUT", "5".to_string())]);
    let pid = s.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (faults, stop2) = (sim.faults(), stop.clone());
    let injector = std::thread::spawn(move || {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut counts = BTreeMap::new();
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20 + rng.below(60)));
            if !with_faults {
                continue;
            }
            let kind = match rng.below(5) {
                0 => {
                    faults.drop_after_frames(1 + rng.below(40));
                    "drop"
                }
                1 => {
                    faults.set_latency("", Duration::from_millis(rng.below(4)));
                    "latency"
                }
                2 => {
                    faults.expire_sessions();
                    "expire session"
                }
                3 => {
                    faults.send_garbage();
                    "garbage frame"
                }
                _ => {
                    faults.set_latency("app.", Duration::from_millis(rng.below(10)));
                    "latency"
                }
            };
            *counts.entry(kind).or_insert(0u64) += 1;
        }
        faults.clear_latency();
        counts
    });
    let mut out: HashSet<u64> = HashSet::new();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let (mut sent, mut done) = (0u64, 0u64);
    let t = Instant::now();
    let mut last = Instant::now();
    let mut worst = Duration::ZERO;
    while done < calls {
        while sent < calls && out.len() < in_flight {
            let (tool, args) = soak_call(sent);
            out.insert(s.send_request("tools/call", json!({"name": tool, "arguments": args})));
            sent += 1;
        }
        let m = match s.rx.recv_timeout(HANG) {
            Ok(m) => m,
            Err(_) => {
                println!("  HUNG: {} requests unanswered after {HANG:?}", out.len());
                break;
            }
        };
        let Some(id) = m["id"].as_u64() else { continue };
        if !out.remove(&id) {
            *kinds.entry("DUPLICATE or unknown id".into()).or_default() += 1;
            continue;
        }
        *kinds.entry(kind_of(&m)).or_default() += 1;
        done += 1;
        worst = worst.max(last.elapsed());
        last = Instant::now();
        if done % (calls / 10).max(1) == 0 {
            println!(
                "  {done:>7} calls, {:>6.1} s, {:>6.0} calls/s so far, RSS {}",
                t.elapsed().as_secs_f64(),
                done as f64 / t.elapsed().as_secs_f64(),
                mib(status_kib(pid, "VmRSS"))
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let injected = injector.join().unwrap();
    let alive = s.child.try_wait().ok().flatten().is_none();
    println!(
        "  done: {done}/{calls} answered in {:.1} s ({:.0} calls/s); server alive: {alive}; longest gap between two \
         answers {}; peak RSS {}",
        t.elapsed().as_secs_f64(),
        done as f64 / t.elapsed().as_secs_f64(),
        ms(worst),
        mib(status_kib(pid, "VmHWM"))
    );
    println!("  answers by kind: {kinds:?}");
    println!("  faults injected: {injected:?}");
}

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let all: [(&str, fn()); 7] = [
        ("cold-start", cold_start),
        ("overhead", overhead),
        ("pipelining", pipelining),
        ("compose", compose_bench),
        ("logs", logs),
        ("idle", idle),
        ("soak", soak),
    ];
    for name in &wanted {
        if !all.iter().any(|(n, _)| n == name) {
            eprintln!("unknown benchmark '{name}'; choose from: {}", all.map(|(n, _)| n).join(", "));
            std::process::exit(2);
        }
    }
    println!("binary: {BIN}");
    for (name, run) in all {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            run();
        }
    }
}

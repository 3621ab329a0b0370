//! Benchmark harness (client): prints numbers; run with `cargo bench --bench client`.
//!
//! 1. Per-call overhead: the client's round trip minus a bare tungstenite client's round trip to the same simulator
//!    on loopback (target: under 200 µs median).
//! 2. 64 concurrent calls against 20 ms simulated latency with the server's 10-at-a-time execution (ideal:
//!    7 waves × 20 ms = 140 ms; target within 1.25×).
//! 3. Idle CPU of a connected client over a few seconds (target: effectively zero).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use truenas_mcp::config::{Config, Secret};
use truenas_mcp::sim::{SimOptions, SimServer, Simulator};
use truenas_mcp::truenas::{Client, ClientSettings};
use tungstenite::{Message, WebSocket};

fn serve() -> (Simulator, SimServer) {
    let sim = Simulator::new(SimOptions::default());
    let server = sim.serve("127.0.0.1:0").expect("simulator serves");
    (sim, server)
}

fn client_for(server: &SimServer, keepalive: Duration) -> Client {
    let mut c = Config::for_tests();
    c.url = Some(format!("ws://{}", server.addr));
    c.username = "mcp-service".into();
    c.password = Some(Secret::new("mock-password"));
    Client::network(ClientSettings { keepalive, ..ClientSettings::new(c) })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A bare synchronous client: one request, wait for its answer.
struct Bare {
    ws: WebSocket<TcpStream>,
    n: u64,
}

impl Bare {
    fn connect(server: &SimServer) -> Bare {
        let stream = TcpStream::connect(server.addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let (ws, _) = tungstenite::client::client(server.url("/api/current"), stream).unwrap();
        let mut bare = Bare { ws, n: 0 };
        let r = bare.call(
            "auth.login_ex",
            json!([{"mechanism":"PASSWORD_PLAIN","username":"mcp-service","password":"mock-password"}]),
        );
        assert_eq!(r["result"]["response_type"], "SUCCESS", "{r}");
        bare
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.n += 1;
        let id = format!("bare-{}", self.n);
        let msg = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.ws.send(Message::Text(msg.to_string())).unwrap();
        loop {
            if let Message::Text(t) = self.ws.read().unwrap() {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == json!(id) {
                    return v;
                }
            }
        }
    }
}

fn per_call_overhead() {
    let (_sim, server) = serve();
    let method = "core.ping";
    const N: usize = 3000;

    let mut bare = Bare::connect(&server);
    for _ in 0..200 {
        bare.call(method, json!([]));
    }
    let mut bare_times: Vec<Duration> = (0..N)
        .map(|_| {
            let t = Instant::now();
            bare.call(method, json!([]));
            t.elapsed()
        })
        .collect();

    let client = client_for(&server, Duration::from_secs(25));
    client.server_info().expect("client connects");
    for _ in 0..200 {
        client.call(method, json!([])).unwrap();
    }
    let mut client_times: Vec<Duration> = (0..N)
        .map(|_| {
            let t = Instant::now();
            client.call(method, json!([])).unwrap();
            t.elapsed()
        })
        .collect();
    bare_times.sort();
    client_times.sort();
    let (b50, c50) = (percentile(&bare_times, 0.5), percentile(&client_times, 0.5));
    let (b99, c99) = (percentile(&bare_times, 0.99), percentile(&client_times, 0.99));
    eprintln!("per-call round trip over loopback ({N} sequential {method} calls):");
    eprintln!("  bare tungstenite: median {:8.1} µs   p99 {:8.1} µs", us(b50), us(b99));
    eprintln!("  truenas client:   median {:8.1} µs   p99 {:8.1} µs", us(c50), us(c99));
    eprintln!("  overhead:         median {:8.1} µs   (target < 200 µs)", us(c50.saturating_sub(b50)));
}

fn concurrent_under_latency() {
    let (sim, server) = serve();
    sim.faults().set_latency("system.info", Duration::from_millis(20));
    let client = client_for(&server, Duration::from_secs(25));
    client.server_info().expect("client connects");
    let ideal = Duration::from_millis(140);
    let mut runs = Vec::new();
    for _ in 0..5 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(65));
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let client = client.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    client.call("system.info", json!([])).expect("call");
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        runs.push(t.elapsed());
    }
    runs.sort();
    let best = runs[0];
    let median = runs[runs.len() / 2];
    eprintln!("64 concurrent calls, 20 ms simulated latency, server executes 10 at a time:");
    eprintln!(
        "  median {:.1} ms, best {:.1} ms; ideal 7 × 20 ms = 140 ms → {:.2}× (target ≤ 1.25×)",
        median.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() / ideal.as_secs_f64()
    );
}

/// utime + stime in clock ticks (usually 100/s) of `/proc/self/stat` or one task's stat.
fn cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn actor_tasks() -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let path = entry.path();
            if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "truenas-actor") {
                found.push(path.join("stat").display().to_string());
            }
        }
    }
    found
}

/// CPU time in nanoseconds of a task (`schedstat`, first field), finer than the 10 ms ticks of `stat`.
fn cpu_ns(task_dir: &str) -> Option<u64> {
    std::fs::read_to_string(format!("{task_dir}/schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

fn idle_cpu() {
    let (_sim, server) = serve();
    let before = actor_tasks();
    let client = client_for(&server, Duration::from_secs(25));
    client.server_info().expect("client connects");
    let Some(actor) = actor_tasks().into_iter().find(|t| !before.contains(t)) else {
        eprintln!("idle cpu: cannot find the actor thread in /proc/self/task");
        return;
    };
    let actor_dir = actor.trim_end_matches("/stat").to_string();
    let window = Duration::from_secs(4);
    let measure = |label: &str| {
        let (p0, a0, n0) =
            (cpu_ticks("/proc/self/stat").unwrap_or(0), cpu_ticks(&actor).unwrap_or(0), cpu_ns(&actor_dir));
        std::thread::sleep(window);
        let (p1, a1, n1) =
            (cpu_ticks("/proc/self/stat").unwrap_or(0), cpu_ticks(&actor).unwrap_or(0), cpu_ns(&actor_dir));
        let precise = match (n0, n1) {
            (Some(a), Some(b)) => format!(
                "{:.3} ms ({:.4} % of one core)",
                (b - a) as f64 / 1e6,
                (b - a) as f64 / 1e7 / window.as_secs_f64()
            ),
            _ => "n/a".to_string(),
        };
        eprintln!("idle cpu over {window:?}, {label}:");
        eprintln!(
            "  actor thread: {precise}, {} ticks of 10 ms; whole process (incl. simulator): {} ticks",
            a1.saturating_sub(a0),
            p1.saturating_sub(p0)
        );
    };
    measure("connected and logged in, nothing outstanding");
    // An open subscription makes the actor watch the socket (20 ms read timeout) instead of sleeping.
    let sub = client.subscribe("core.get_jobs").expect("subscribes");
    measure("with one open subscription");
    drop(sub);
    drop(client);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    per_call_overhead();
    concurrent_under_latency();
    idle_cpu();
}

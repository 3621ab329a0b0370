//! Benchmark harness (mcp): prints numbers; run with `cargo bench --bench mcp`.
//!
//! Measures the compiled binary (bench profile = release + symbols) over real pipes:
//! cold start to the `tools/list` response, peak RSS, ping round trips per second, and `tools/call` latency in mock
//! mode; plus the server's own `tools/call` overhead with a no-op tool in-process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use truenas_mcp::mcp::{serve_io, Annotations, CallContext, Catalog, ServeOptions, ToolDef, ToolOutput};

const BIN: &str = env!("CARGO_BIN_EXE_truenas-mcp");

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl Server {
    fn spawn() -> Server {
        let mut child = Command::new(BIN)
            .arg("--mock")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn truenas-mcp");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Server { child, stdin, stdout, line: String::new() }
    }

    fn send(&mut self, text: &str) {
        self.stdin.write_all(text.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn recv(&mut self) -> &str {
        self.line.clear();
        self.stdout.read_line(&mut self.line).unwrap();
        &self.line
    }

    fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(&format!("{}\n", json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})));
        loop {
            let message: Value = serde_json::from_str(self.recv()).unwrap();
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                return message;
            }
        }
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn finish(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

const HANDSHAKE: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    "\n",
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    "\n",
);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn cold_start() {
    let mut times = Vec::new();
    let mut tools = 0;
    for _ in 0..20 {
        let start = Instant::now();
        let mut server = Server::spawn();
        server.send(HANDSHAKE);
        server.recv(); // initialize
        let list: Value = serde_json::from_str(server.recv()).unwrap();
        times.push(start.elapsed());
        tools = list["result"]["tools"].as_array().map_or(0, Vec::len);
        server.finish();
    }
    times.sort();
    println!(
        "cold start to tools/list response ({tools} tools, 20 spawns): median {}, min {}, max {}",
        ms(percentile(&times, 0.5)),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}

fn pings_and_rss() {
    let mut server = Server::spawn();
    server.send(HANDSHAKE);
    server.recv();
    server.recv();
    let rss_after_list = server.peak_rss_kib();
    let n = 20_000u64;
    let start = Instant::now();
    for id in 0..n {
        server.send(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}}\n", id + 10));
        server.recv();
    }
    let elapsed = start.elapsed();
    println!(
        "ping round trips (sequential, one in flight): {:.0}/s ({} per round trip)",
        n as f64 / elapsed.as_secs_f64(),
        ms(elapsed / n as u32)
    );
    // Pipelined: the client writes a burst, the server answers as fast as it reads.
    let burst: String =
        (0..n).map(|id| format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}}\n", id + n + 10)).collect();
    let start = Instant::now();
    let mut stdin = server.stdin.try_clone_for_bench();
    let writer = std::thread::spawn(move || {
        stdin.write_all(burst.as_bytes()).unwrap();
        stdin.flush().unwrap();
        stdin
    });
    for _ in 0..n {
        server.recv();
    }
    let elapsed = start.elapsed();
    let _ = writer.join();
    println!("ping throughput (pipelined burst of {n}): {:.0}/s", n as f64 / elapsed.as_secs_f64());
    let rss = server.peak_rss_kib();
    println!(
        "peak RSS (VmHWM): {} KiB after initialize + tools/list, {} KiB after {} pings",
        rss_after_list.map_or("?".into(), |v| v.to_string()),
        rss.map_or("?".into(), |v| v.to_string()),
        2 * n
    );
    server.finish();
}

/// `tools/call` against the real catalogue in mock mode: the first read-only tool that needs no arguments.
fn tools_call_mock() {
    let mut server = Server::spawn();
    server.send(HANDSHAKE);
    server.recv();
    let list: Value = serde_json::from_str(server.recv()).unwrap();
    let tools = list["result"]["tools"].as_array().cloned().unwrap_or_default();
    let candidate = tools.iter().find(|t| {
        t["annotations"]["readOnlyHint"] == true && t["inputSchema"]["required"].as_array().map_or(true, Vec::is_empty)
    });
    let Some(tool) = candidate else {
        println!("tools/call in mock mode: no read-only tool without required arguments in the catalogue");
        return server.finish();
    };
    let name = tool["name"].as_str().unwrap().to_string();
    let mut times = Vec::new();
    for id in 0..500u64 {
        let start = Instant::now();
        let response = server.request(id + 10, "tools/call", json!({"name": name, "arguments": {}}));
        times.push(start.elapsed());
        assert!(response.get("result").is_some(), "{response}");
    }
    times.sort();
    println!(
        "tools/call '{name}' in mock mode (500 sequential calls): p50 {}, p99 {}",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99))
    );
    server.finish();
}

struct Noop;

impl Catalog for Noop {
    fn tools(&self) -> Vec<ToolDef> {
        vec![ToolDef {
            name: "noop".into(),
            title: "No-op".into(),
            description: "Does nothing.".into(),
            input_schema: json!({"type": "object", "properties": {"n": {"type": "integer", "default": 1}}, "additionalProperties": false}),
            output_schema: Some(json!({"type": "object"})),
            annotations: Annotations { read_only: true, destructive: false, idempotent: true, open_world: false },
        }]
    }
    fn call(&self, _: &str, args: Value, _: &CallContext) -> ToolOutput {
        ToolOutput::ok("ok", args)
    }
}

/// The server's own overhead per `tools/call` (dispatch, validation, worker hop, serialization), in-process.
fn tools_call_overhead() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (socket, _) = listener.accept().unwrap();
    let input = socket.try_clone().unwrap();
    let server = std::thread::spawn(move || serve_io(Arc::new(Noop), input, socket, ServeOptions::default()));
    client.set_nodelay(true).unwrap();
    let mut writer = client.try_clone().unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    let mut times = Vec::new();
    for id in 0..5000 {
        let start = Instant::now();
        writeln!(
            writer,
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"noop","arguments":{{}}}}}}"#
        )
        .unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        times.push(start.elapsed());
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = server.join();
    times.sort();
    println!(
        "tools/call no-op tool in-process over loopback (5000 calls): p50 {}, p99 {}",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99))
    );
}

trait CloneForBench {
    fn try_clone_for_bench(&self) -> std::fs::File;
}

impl CloneForBench for ChildStdin {
    /// A second handle on the same pipe, so a thread can write a burst while this one reads.
    fn try_clone_for_bench(&self) -> std::fs::File {
        use std::os::fd::AsFd;
        std::fs::File::from(self.as_fd().try_clone_to_owned().unwrap())
    }
}

fn main() {
    println!("binary: {BIN}");
    cold_start();
    pings_and_rss();
    tools_call_mock();
    tools_call_overhead();
}

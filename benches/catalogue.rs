//! What a model pays for, in bytes: the `tools/list` catalogue and typical tool results, measured on the real
//! binary in mock mode over stdio. Bytes are deterministic, so the budgets are enforced by a test
//! (`tests/it/tools.rs`, `the_catalogue_and_typical_results_stay_within_their_token_budgets`); this prints the
//! figures for BENCHMARKS.md. Run: `cargo bench --bench catalogue`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_truenas-mcp");

fn len(v: &Value) -> usize {
    serde_json::to_string(v).unwrap().len()
}

fn main() {
    let compose = "services:\n  web:\n    image: nginx:1.27\n    ports: [\"8081:80\"]\n    mem_limit: 512m\n";
    let calls = [
        ("list_custom_apps (3 apps)", json!({"name": "list_custom_apps", "arguments": {}})),
        ("get_custom_app_status", json!({"name": "get_custom_app_status", "arguments": {"app_name": "whoami"}})),
        (
            "deploy_custom_app",
            json!({"name": "deploy_custom_app", "arguments": {"app_name": "web", "compose_yaml": compose}}),
        ),
    ];
    let mut requests = vec![
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    ];
    for (i, (_, params)) in calls.iter().enumerate() {
        requests.push(json!({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": params}));
    }
    let mut child = Command::new(BIN)
        .arg("--mock")
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn truenas-mcp");
    let mut stdin = child.stdin.take().unwrap();
    for r in &requests {
        writeln!(stdin, "{r}").unwrap();
    }
    let mut by_id = std::collections::BTreeMap::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).expect("JSON line");
        if let Some(id) = v.get("id").and_then(Value::as_i64) {
            by_id.insert(id, v);
            if by_id.len() == 2 + calls.len() {
                break;
            }
        }
    }
    drop(stdin);
    let _ = child.wait();

    let instructions = by_id[&1]["result"]["instructions"].as_str().unwrap_or("").len();
    let list = &by_id[&2]["result"];
    let tools = list["tools"].as_array().unwrap();
    println!("tools/list, protocol 2025-06-18, {} tools", tools.len());
    println!("{:<26} {:>8} {:>8} {:>8}", "tool", "n+d+in", "desc", "whole");
    let mut sum = 0;
    for t in tools {
        let core = len(&json!({"name": t["name"], "description": t["description"], "inputSchema": t["inputSchema"]}));
        sum += core;
        let desc = t["description"].as_str().unwrap().len();
        println!("{:<26} {:>8} {:>8} {:>8}", t["name"].as_str().unwrap(), core, desc, len(t));
    }
    println!("average name+description+inputSchema: {} B (budget 500)", sum / tools.len());
    println!("whole tools/list result: {} B (budget 12288)", len(list));
    println!("initialize instructions: {instructions} B (read once per session)");
    println!();
    println!("{:<28} {:>8} {:>12}", "result", "content", "structured");
    for (i, (label, _)) in calls.iter().enumerate() {
        let r = &by_id[&(10 + i as i64)]["result"];
        println!("{:<28} {:>8} {:>12}", label, len(&r["content"]), len(&r["structuredContent"]));
    }
    println!("(content budget: 600 B each)");
}

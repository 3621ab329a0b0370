//! Integration tests: the write-ahead audit log, through the real binary against the simulator.
//!
//! A change writes `attempted` before it reaches the NAS and one outcome record with the same id after; a process
//! that ends before the job does writes `unknown`; an unwritable log is a start-up error; records name the NAS and
//! mock mode writes to its own file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use truenas_mcp::config::SETTINGS;
use truenas_mcp::sim::{SimServer, Simulator};

use crate::faults::{compose, count_calls, start_sim, wait_until, HANG, PASSWORD};
use crate::support::{tempdir, McpPeer};

/// The records of the audit log at `path` (none when it does not exist yet).
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

fn audit_path(label: &str) -> PathBuf {
    tempdir(label).join("audit.jsonl")
}

/// The real binary serving MCP against `server`, auditing to `audit`.
fn serve(server: &SimServer, audit: &Path) -> McpPeer {
    let mut command = Command::new(crate::support::binary());
    // The drain after stdin closes runs on virtual time (the parked job never finishes, so it ends by its deadline).
    command.env_remove("RUST_LOG").env(truenas_mcp::clock::TEST_CLOCK_ENV, "auto").stderr(Stdio::inherit());
    command.args(crate::faults::nas_flags(server)).arg("--audit-log").arg(audit);
    let mut peer = McpPeer::spawn_command(command);
    peer.initialize("2025-06-18", json!({}));
    peer
}

/// Start a deploy whose TrueNAS job parks at 50 % (until aborted or unparked); returns once app.create ran.
fn parked_deploy(sim: &Simulator, peer: &mut McpPeer, id: i64, app: &str) {
    sim.faults().set_never_finish_jobs(true);
    peer.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "deploy_custom_app",
                   "arguments": {"app_name": app, "compose_yaml": compose("nginx:1.27"), "env": {"TZ": "s3cr3t"}}}}));
    wait_until("app.create never reached the NAS", || count_calls(sim, "app.create") > 0);
    wait_until("the job never started", || sim.jobs().iter().any(|j| j["method"] == "app.create"));
}

/// The records of one correlation id, in order.
fn of_id<'a>(records: &'a [Value], id: &Value) -> Vec<&'a Value> {
    records.iter().filter(|r| &r["id"] == id).collect()
}

/// While the job runs on the NAS the `attempted` record is already in the log (tool, app, NAS, redacted
/// arguments, correlation id, time); when it ends, one `succeeded` record with the same id follows.
#[test]
fn attempted_is_written_before_the_change_and_the_outcome_after() {
    let (sim, server) = start_sim(|_| {});
    let audit = audit_path("audit-ahead");
    let mut peer = serve(&server, &audit);
    parked_deploy(&sim, &mut peer, 1, "ahead");
    let during = records(&audit);
    assert_eq!(during.len(), 1, "exactly the attempted record while the job runs: {during:#?}");
    let attempted = &during[0];
    assert_eq!(attempted["outcome"], "attempted", "{attempted}");
    assert_eq!(attempted["tool"], "deploy_custom_app");
    assert_eq!(attempted["app"], "ahead");
    assert_eq!(attempted["nas"], "127.0.0.1");
    assert!(attempted["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{attempted}");
    assert!(attempted["id"].as_str().is_some_and(|i| !i.is_empty()), "{attempted}");
    assert_eq!(attempted["arguments"]["env"], json!({"keys": ["TZ"]}));
    assert!(!attempted.to_string().contains("s3cr3t") && !attempted.to_string().contains("nginx"), "{attempted}");

    sim.faults().set_never_finish_jobs(false);
    let r = peer.response_to(&json!(1));
    assert_eq!(r["result"]["isError"], false, "{r}");
    let after = records(&audit);
    let same = of_id(&after, &attempted["id"]);
    assert_eq!(same.len(), 2, "{after:#?}");
    assert_eq!(same[1]["outcome"], "succeeded");
    assert_eq!(same[1]["nas"], "127.0.0.1");
    assert!(same[1]["job_id"].is_i64(), "{}", same[1]);
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}

/// stdin closes while the deploy's job still runs: after the drain the process exits, and the log holds
/// `attempted` and `unknown` for that change. (core.job_abort is held by the NAS, so the cancellation sent at
/// exit cannot settle the outcome first.)
#[test]
fn stdin_closed_mid_job_leaves_attempted_and_unknown() {
    let (sim, server) = start_sim(|_| {});
    let audit = audit_path("audit-eof");
    let mut peer = serve(&server, &audit);
    sim.faults().set_latency("core.job_abort", Duration::from_secs(60));
    parked_deploy(&sim, &mut peer, 1, "eof");
    peer.close_input();
    assert_eq!(peer.wait_exit(Duration::from_secs(40)), Some(true), "the server exits after its drain");
    let all = records(&audit);
    let outcomes: Vec<&str> = all.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["attempted", "unknown"], "{all:#?}");
    assert_eq!(all[0]["id"], all[1]["id"]);
    assert_eq!(all[1]["tool"], "deploy_custom_app");
    assert_eq!(all[1]["app"], "eof");
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}

/// The client stops reading mid-job: the server exits on the closed output and still writes `unknown`.
#[test]
fn stdout_closed_mid_job_leaves_attempted_and_unknown() {
    let (sim, server) = start_sim(|_| {});
    let audit = audit_path("audit-epipe");
    let mut peer = serve(&server, &audit);
    sim.faults().set_latency("core.job_abort", Duration::from_secs(60));
    parked_deploy(&sim, &mut peer, 1, "epipe");
    peer.close_output();
    let deadline = Instant::now() + HANG;
    let mut id = 2;
    while peer.child_status().is_none() {
        assert!(Instant::now() < deadline, "the server did not exit after its stdout closed");
        // Writing into a pipe nobody reads: the server's writer gets EPIPE and the server exits.
        peer.send(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
        id += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let all = records(&audit);
    let outcomes: Vec<&str> = all.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["attempted", "unknown"], "{all:#?}");
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}

/// The client ends the server with SIGTERM (as MCP clients do on shutdown), or its terminal goes away (SIGHUP),
/// mid-job: `unknown` is still written.
#[test]
fn sigterm_mid_job_leaves_attempted_and_unknown() {
    for signal in ["-TERM", "-HUP"] {
        let (sim, server) = start_sim(|_| {});
        let audit = audit_path("audit-signal");
        let mut peer = serve(&server, &audit);
        sim.faults().set_latency("core.job_abort", Duration::from_secs(60));
        parked_deploy(&sim, &mut peer, 1, "signalled");
        let pid = peer.pid().expect("a server process").to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
        assert_eq!(peer.wait_exit(HANG), Some(false), "the server did not exit on {signal}");
        let all = records(&audit);
        let outcomes: Vec<&str> = all.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["attempted", "unknown"], "{signal}: {all:#?}");
        let _ = std::fs::remove_dir_all(audit.parent().unwrap());
    }
}

/// `call` interrupted twice (the second Ctrl-C quits at once) while its job runs: exit 130, `unknown` logged.
#[test]
fn call_interrupted_mid_job_logs_unknown() {
    let (sim, server) = start_sim(|_| {});
    let audit = audit_path("audit-sigint");
    sim.faults().set_never_finish_jobs(true);
    sim.faults().set_latency("core.job_abort", Duration::from_secs(60));
    let mut child = Command::new(env!("CARGO_BIN_EXE_truenas-mcp"))
        .args(["--host", "127.0.0.1", "--port", &server.addr.port().to_string(), "--protocol", "ws"])
        .args(["call", "deploy_custom_app", "app_name=sigint", &format!("compose_yaml={}", compose("nginx:1.27"))])
        .env("TRUENAS_PASSWORD", PASSWORD)
        .env("TRUENAS_AUDIT_LOG", &audit)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the job never started", || sim.jobs().iter().any(|j| j["method"] == "app.create"));
    let interrupt = || {
        let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -INT failed");
    };
    interrupt();
    // The first Ctrl-C asks the job to abort (the NAS holds that call); the second quits.
    wait_until("the abort never reached the NAS", || count_calls(&sim, "core.job_abort") > 0);
    interrupt();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    let all = records(&audit);
    let outcomes: Vec<&str> = all.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["attempted", "unknown"], "{all:#?}");
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}

/// The binary with a clean environment (none of our settings leak in from the developer's shell).
fn binary(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_truenas-mcp"));
    for s in SETTINGS {
        cmd.env_remove(s.env);
    }
    cmd.env_remove("RUST_LOG").stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// An audit path that cannot be created on any system, even as root: its parent is a regular file.
fn unwritable_audit_path(label: &str) -> (PathBuf, PathBuf) {
    let dir = tempdir(label);
    let file = dir.join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    (dir, file.join("audit.jsonl"))
}

/// `serve` and `call` refuse to start with an audit log they cannot write (exit 2, naming the setting and the
/// fix); nothing reaches the NAS. `check` reports the same as a failed step.
#[test]
fn an_unwritable_audit_log_is_a_start_up_error() {
    let (sim, server) = start_sim(|_| {});
    let (dir, bad) = unwritable_audit_path("audit-bad");
    let bad = bad.display().to_string();
    let port = server.addr.port().to_string();
    let env = [
        ("TRUENAS_HOST", "127.0.0.1"),
        ("TRUENAS_PORT", port.as_str()),
        ("TRUENAS_PROTOCOL", "ws"),
        ("TRUENAS_PASSWORD", PASSWORD),
        ("TRUENAS_AUDIT_LOG", bad.as_str()),
    ];
    for args in [vec!["serve"], vec!["call", "stop_custom_app", "app_name=web"]] {
        let out = binary(&env).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write the audit log") && stderr.contains(&bad), "{args:?}: {stderr}");
        assert!(stderr.contains("TRUENAS_AUDIT_LOG") && stderr.contains("off"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(count_calls(&sim, "app.stop"), 0, "nothing reached the NAS");
    let out = binary(&env).arg("check").output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let line = report.lines().find(|l| l.contains("audit log:")).unwrap_or_else(|| panic!("{report}"));
    assert!(line.starts_with("✗ audit log: cannot write") && line.contains("TRUENAS_AUDIT_LOG"), "{line}");

    let good = audit_path("audit-good");
    let good_text = good.display().to_string();
    let mut env = env;
    env[4] = ("TRUENAS_AUDIT_LOG", good_text.as_str());
    let out = binary(&env).arg("check").output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("✓ audit log: {good_text}")), "{report}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(good.parent().unwrap());
}

/// Mock mode writes to its own file (`.mock` before the extension), and its records name the simulator; the real
/// log stays untouched.
#[test]
fn mock_mode_writes_its_own_file_naming_the_simulator() {
    let audit = audit_path("audit-mock");
    let audit_text = audit.display().to_string();
    let out = binary(&[("TRUENAS_AUDIT_LOG", audit_text.as_str())])
        .args(["--mock", "call", "stop_custom_app", "app_name=whoami"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!audit.exists(), "a mock change landed in the real audit log");
    let mock = audit.with_file_name("audit.mock.jsonl");
    let all = records(&mock);
    let outcomes: Vec<&str> = all.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["attempted", "succeeded"], "{all:#?}");
    assert!(all.iter().all(|r| r["nas"] == "simulator"), "{all:#?}");
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}

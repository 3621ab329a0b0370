//! The Claude Code CLI (`@anthropic-ai/claude-code`, pinned by `.ci/interop-setup`; no account is needed for
//! `claude mcp add/list/get`) registers the server the way the README says and reports it connected; a bad setting
//! is reported as a failure, not as connected.

use std::path::Path;
use std::process::Command;

use crate::external::claude_code;
use crate::support::{binary, repo_root, tempdir};

/// Run `claude <args>` with a private HOME and working directory; returns its combined output.
fn claude(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new(dir.join("node_modules/.bin/claude"))
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("TRUENAS_AUDIT_LOG", "off")
        // run_mcp.sh serves this build instead of building a release binary (see run_mcp.sh).
        .env("TRUENAS_MCP_BINARY", binary())
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .expect("run claude");
    assert!(out.status.success(), "claude {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn claude_code_connects_through_run_mcp_sh_and_sees_a_bad_setting_fail() {
    let Some(dir) = claude_code() else { return };
    let home = tempdir("claude");
    let script = repo_root().join("run_mcp.sh");
    let script = script.to_str().unwrap();
    claude(&dir, &home, &["mcp", "add", "truenas", "--", script, "--mock"]);
    claude(&dir, &home, &["mcp", "add", "broken", "-e", "TRUENAS_URL=not a url", "--", script]);
    let list = claude(&dir, &home, &["mcp", "list"]);
    let line = |name: &str| list.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or_default().to_string();
    assert!(line("truenas").contains("✔ Connected"), "{list}");
    assert!(line("broken").contains("Failed to connect"), "{list}");
    let get = claude(&dir, &home, &["mcp", "get", "truenas"]);
    assert!(get.contains("Connected") && get.contains("--mock"), "{get}");
    let _ = std::fs::remove_dir_all(&home);
}

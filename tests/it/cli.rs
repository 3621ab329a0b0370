//! Integration tests: the command line (check, tools, call, simulate) and the README staying true.

use std::process::Command;

use truenas_mcp::config::SETTINGS;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The settings table in the README lists exactly the settings the program has, with the same defaults.
#[test]
fn readme_settings_table_matches_the_code() {
    let text = readme();
    let start = text.find("<!-- settings-table").expect("settings table marker");
    let end = text.find("<!-- /settings-table -->").expect("settings table end marker");
    let rows: Vec<Vec<String>> = text[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().trim_matches('`').to_string()).collect())
        .collect();
    assert_eq!(rows.len(), SETTINGS.len(), "README rows vs SETTINGS");
    for (row, s) in rows.iter().zip(SETTINGS) {
        assert_eq!(row[0], s.env);
        assert_eq!(row[1], s.flag, "{}", s.env);
        assert_eq!(row[2], s.default, "{}", s.env);
        assert_eq!(row[3], s.help, "{}", s.env);
    }
}

/// `--help` documents every setting, `--version` prints the version; both exit 0.
#[test]
fn help_and_version() {
    let bin = env!("CARGO_BIN_EXE_truenas-mcp");
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for s in SETTINGS {
        assert!(help.contains(s.env) && help.contains(s.flag), "--help lacks {}", s.env);
    }
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("truenas-mcp {}\n", env!("CARGO_PKG_VERSION")));
}

/// A bad setting stops the program with the precise message and exit code 2, before anything else happens.
#[test]
fn bad_settings_are_refused_precisely() {
    let bin = env!("CARGO_BIN_EXE_truenas-mcp");
    let out = Command::new(bin).args(["tools"]).env("TRUENAS_PORT", "abc").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "truenas-mcp: TRUENAS_PORT must be 1-65535, got 'abc'");
    assert!(out.stdout.is_empty());
}

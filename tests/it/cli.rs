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
    for command in ["serve", "check", "tools", "call", "simulate"] {
        let out = Command::new(bin).args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command} --help failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(command), "{command} --help says nothing of it");
    }
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("truenas-mcp {}\n", env!("CARGO_PKG_VERSION")));
}

/// `--help` shows every setting's flag, environment variable, default and help on one line, as defined.
#[test]
fn help_shows_every_setting_with_its_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_truenas-mcp")).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for s in SETTINGS {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", s.flag)))
            .unwrap_or_else(|| panic!("--help has no line for {}:\n{help}", s.flag));
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = if s.switch { 1 } else { 2 };
        assert_eq!(words.get(at - 1), Some(&if s.switch { s.flag } else { "<v>" }), "{line}");
        assert_eq!(words[at], s.env, "{line}");
        assert_eq!(words[at + 1], s.default, "{line}");
        assert_eq!(words[at + 2..].join(" "), s.help, "{line}");
    }
}

/// An unknown rule id in `TRUENAS_COMPOSE_ALLOW` stops every command at start-up with the list of known ids: a typo
/// must not silently allow nothing.
#[test]
fn unknown_compose_allow_rule_ids_are_refused_at_start_up() {
    for command in ["tools", "serve"] {
        let out = binary(&[("TRUENAS_COMPOSE_ALLOW", "privileged, no-such-rule")]).arg(command).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        let want = "truenas-mcp: configuration error: TRUENAS_COMPOSE_ALLOW has an unknown rule id 'no-such-rule' (known: yaml-invalid, ";
        assert!(stderr.starts_with(want) && stderr.contains(", privileged, "), "{command}: {stderr}");
    }
    let out = binary(&[("TRUENAS_COMPOSE_ALLOW", "Privileged,docker-socket")]).arg("tools").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `serve` run by a person at a terminal says in one stderr line what it is, how to try it and how to leave; run
/// by an MCP client (stdin a pipe) it says nothing. The terminal is a real pseudo-terminal (util-linux `script`).
#[test]
fn serve_at_a_terminal_says_what_it_is() {
    use std::io::Write;
    let bin = env!("CARGO_BIN_EXE_truenas-mcp");
    let mut script = Command::new("script");
    for s in SETTINGS {
        script.env_remove(s.env);
    }
    let mut child = script
        .env_remove("RUST_LOG")
        .env("TRUENAS_AUDIT_LOG", "off")
        .args(["-qec", &format!("'{bin}' --mock"), "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the server under a pseudo-terminal");
    // Ctrl-D, as the hint says, ends the session.
    child.stdin.take().unwrap().write_all(b"\x04").unwrap();
    let out = child.wait_with_output().unwrap();
    let terminal = String::from_utf8_lossy(&out.stdout);
    let hints: Vec<&str> = terminal.lines().filter(|l| l.contains("MCP server")).collect();
    assert_eq!(hints.len(), 1, "{terminal}");
    for part in ["stdin/stdout", "truenas-mcp call list_custom_apps --mock", "truenas-mcp tools", "Ctrl-D"] {
        assert!(hints[0].contains(part), "{terminal}");
    }
    assert_eq!(out.status.code(), Some(0), "{terminal}");

    let out = binary(&[("MOCK_TRUENAS", "true")]).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("MCP server"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A bad setting stops the program with the precise message and exit code 2, before anything else happens.
#[test]
fn bad_settings_are_refused_precisely() {
    let bin = env!("CARGO_BIN_EXE_truenas-mcp");
    let out = Command::new(bin).args(["tools"]).env("TRUENAS_PORT", "abc").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("truenas-mcp: configuration error: TRUENAS_PORT must be 1-65535, got 'abc'; {CONFIGURATION_FIX}")
    );
    assert!(out.stdout.is_empty());
}

/// The fix every configuration error ends with.
const CONFIGURATION_FIX: &str =
    "fix it where the server is started (the MCP client's env, or the flag); `truenas-mcp --help` lists every setting";

/// An MCP client shows a server that exits at start-up as "failed to connect" and logs its stderr: the reason is
/// the first line there, said as a configuration error with the fix, before any other warning (here: a password
/// given as a flag), and nothing reaches stdout (the protocol's).
#[test]
fn a_bad_setting_is_the_first_line_on_stderr() {
    let cases = [
        (
            vec![("TRUENAS_URL", "https://nas.local/ui/")],
            "TRUENAS_URL must start with ws:// or wss://, got 'https://nas.local/ui/' (use wss://nas.local)",
        ),
        (vec![("TRUENAS_SSL_VERIFY", "maybe")], "TRUENAS_SSL_VERIFY must be true or false, got 'maybe'"),
        (
            vec![("TRUENAS_MOCK_STATE", "/tmp/x.json")],
            "TRUENAS_MOCK_STATE only applies to mock mode: add --mock (MOCK_TRUENAS=true) or unset it",
        ),
    ];
    for (env, want) in cases {
        let out =
            binary(&env).args(["--password", "hunter2", "serve"]).stdin(std::process::Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert_eq!(first, format!("truenas-mcp: configuration error: {want}; {CONFIGURATION_FIX}"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

// ---- check: one line per step, against the simulator over real sockets ----------------------------------------

use std::path::PathBuf;
use std::time::Duration;

use truenas_mcp::sim::{SimApiKey, SimOptions, Simulator};

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel).display().to_string()
}

/// The binary with a clean environment: none of our settings leak in from the developer's shell.
fn binary(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_truenas-mcp"));
    for s in SETTINGS {
        cmd.env_remove(s.env);
    }
    cmd.env_remove("RUST_LOG").env("TRUENAS_AUDIT_LOG", "off").env("TRUENAS_CONNECT_TIMEOUT", "5");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn check(env: &[(&str, &str)]) -> (i32, String) {
    let out = binary(env).arg("check").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
}

/// `check` against a simulator over plain ws:// on 127.0.0.1, with the given credential settings.
fn check_ws(server: &truenas_mcp::sim::SimServer, credentials: &[(&str, &str)]) -> (i32, String) {
    let port = server.addr.port().to_string();
    let mut env = vec![("TRUENAS_HOST", "127.0.0.1"), ("TRUENAS_PORT", port.as_str()), ("TRUENAS_PROTOCOL", "ws")];
    env.extend_from_slice(credentials);
    check(&env)
}

/// The report line of `step` (the first line starting with ✓/⚠/✗ and the step name).
fn line<'a>(report: &'a str, step: &str) -> &'a str {
    report
        .lines()
        .find(|l| ["✓", "⚠", "✗"].iter().any(|mark| l.starts_with(&format!("{mark} {step}:"))))
        .unwrap_or_else(|| panic!("no {step} line in:\n{report}"))
}

fn sim(opts: SimOptions) -> (Simulator, truenas_mcp::sim::SimServer) {
    let sim = Simulator::new(SimOptions { login_fail_delay: Duration::from_millis(10), ..opts });
    let server = sim.serve("127.0.0.1:0").unwrap();
    (sim, server)
}

#[test]
fn check_passes_against_a_healthy_simulator() {
    let (_sim, server) = sim(SimOptions::default());
    let (code, out) = check_ws(&server, &[("TRUENAS_PASSWORD", "mock-password")]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('✗'), "{out}");
    assert_eq!(
        line(&out, "endpoint"),
        format!(
            "✓ endpoint: ws://127.0.0.1:{}/api/v25.04.2 (JSON-RPC 2.0, API v25.04.2 pinned: the newest this NAS \
             serves that truenas-mcp is tested with)",
            server.addr.port()
        )
    );
    assert!(line(&out, "version").starts_with("✓ version: TrueNAS 25.04.2"), "{out}");
    assert_eq!(line(&out, "apps"), "✓ apps: Docker service RUNNING on pool tank");
    assert!(out.contains("TRUENAS_PASSWORD                 *** (set)"), "{out}");
    assert!(!out.contains("mock-password"), "the password leaked:\n{out}");
}

#[test]
fn check_diagnoses_a_bad_host() {
    let (code, out) = check(&[("TRUENAS_HOST", "nas.does-not-exist.invalid"), ("TRUENAS_PASSWORD", "x")]);
    assert_eq!(code, 1);
    let l = line(&out, "DNS");
    assert!(l.starts_with("✗ DNS: cannot resolve 'nas.does-not-exist.invalid': "), "{l}");
    assert!(l.ends_with("— fix: check TRUENAS_HOST (a hostname or IP address of the NAS)"), "{l}");
}

#[test]
fn check_diagnoses_a_refused_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, out) = check(&[
        ("TRUENAS_HOST", "127.0.0.1"),
        ("TRUENAS_PORT", &port.to_string()),
        ("TRUENAS_PROTOCOL", "ws"),
        ("TRUENAS_PASSWORD", "x"),
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        line(&out, "TCP"),
        format!(
            "✗ TCP: cannot connect to 127.0.0.1:{port} (127.0.0.1:{port}: Connection refused (os error 111)) — fix: \
             check that the NAS is up and TRUENAS_PORT is its web UI port (80 for ws)"
        )
    );
}

fn tls_sim() -> (Simulator, truenas_mcp::sim::SimServer) {
    sim(SimOptions {
        tls: Some((fixture("tls/server.pem").into(), fixture("tls/server.pkcs8.key").into())),
        ..Default::default()
    })
}

#[test]
fn check_explains_an_untrusted_certificate() {
    let (_sim, server) = tls_sim();
    let port = server.addr.port().to_string();
    for ca in [None, Some(fixture("tls/other-ca.pem"))] {
        let mut env =
            vec![("TRUENAS_HOST", "127.0.0.1"), ("TRUENAS_PORT", port.as_str()), ("TRUENAS_PASSWORD", "mock-password")];
        if let Some(ca) = &ca {
            env.push(("TRUENAS_CA_CERT", ca));
        }
        let (code, out) = check(&env);
        assert_eq!(code, 1, "{out}");
        let l = line(&out, "TLS");
        assert!(l.starts_with("✗ TLS: certificate verification failed: "), "{l}");
        assert!(
            l.contains(
                "; the server presents certificate CN=localhost (issued by CN=truenas-mcp test CA), valid until 20"
            ),
            "{l}"
        );
        assert!(
            l.ends_with("and set TRUENAS_CA_CERT=/path/to/it.pem; TRUENAS_SSL_VERIFY=false only as a last resort"),
            "{l}"
        );
        assert!(!out.contains("✓ login"), "must stop before sending credentials:\n{out}");
    }
}

#[test]
fn check_trusts_a_custom_ca() {
    let (_sim, server) = tls_sim();
    let port = server.addr.port().to_string();
    let ca = fixture("tls/ca.pem");
    let (code, out) = check(&[
        ("TRUENAS_HOST", "127.0.0.1"),
        ("TRUENAS_PORT", &port),
        ("TRUENAS_PASSWORD", "mock-password"),
        ("TRUENAS_CA_CERT", &ca),
    ]);
    assert_eq!(code, 0, "{out}");
    let l = line(&out, "TLS");
    assert!(l.starts_with("✓ TLS: certificate CN=localhost (issued by CN=truenas-mcp test CA), valid until 20"), "{l}");
    assert!(l.ends_with("; verified with TRUENAS_CA_CERT"), "{l}");
    assert!(line(&out, "endpoint").starts_with(&format!("✓ endpoint: wss://127.0.0.1:{port}/api/v25.04.2 (")), "{out}");
}

#[test]
fn check_reports_a_wrong_password() {
    let (_sim, server) = sim(SimOptions::default());
    let (code, out) = check_ws(&server, &[("TRUENAS_PASSWORD", "not-the-password")]);
    assert_eq!(code, 1);
    assert_eq!(
        line(&out, "login"),
        "✗ login: truenas login failed: wrong username, password or API key; check TRUENAS_USERNAME and \
         TRUENAS_PASSWORD or TRUENAS_API_KEY"
    );
    assert!(!out.contains("not-the-password"));
}

#[test]
fn check_explains_a_revoked_api_key() {
    let key = "7-rKq2VwH0sT9yXbN4mA";
    let (sim, server) = sim(SimOptions {
        api_keys: vec![SimApiKey { id: 7, key: key.into(), username: "mcp-service".into() }],
        treat_plain_tcp_as_remote: true,
        ..Default::default()
    });
    let (code, out) = check_ws(&server, &[("TRUENAS_USERNAME", "mcp-service"), ("TRUENAS_API_KEY", key)]);
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "login");
    assert!(
        l.starts_with("✗ login: truenas login refused: the account, password or API key has expired or was revoked"),
        "{l}"
    );
    assert!(l.contains("permanently revokes an API key that was ever sent over plain ws://"), "{l}");
    assert!(sim.api_key_revoked(7), "the simulator should have revoked the key");
    assert!(!out.contains("rKq2VwH0sT9yXbN4mA"), "the key leaked:\n{out}");
}

#[test]
fn check_reports_a_missing_apps_pool() {
    let (_sim, server) = sim(SimOptions { docker_pool: None, ..Default::default() });
    let (code, out) = check_ws(&server, &[("TRUENAS_PASSWORD", "mock-password")]);
    assert_eq!(code, 1);
    assert_eq!(
        line(&out, "apps"),
        "✗ apps: no pool configured for apps (Docker is UNCONFIGURED) — fix: in the TrueNAS UI open Apps > \
         Configuration > Choose Pool"
    );
}

/// `check` and `call` print a failed login as their result, once: not also as a logged warning on stderr.
#[test]
fn a_failed_login_is_said_once() {
    let (_sim, server) = sim(SimOptions::default());
    let (code, out, err) = check_with_stderr(&server, &[("TRUENAS_PASSWORD", "not-the-password")]);
    assert_eq!(code, 1);
    assert_eq!(out.matches("wrong username, password or API key").count(), 1, "{out}");
    assert!(!err.contains("login failed"), "said twice, on stderr too:\n{err}");
    let mut env = sim_env(&server);
    env[3].1 = "not-the-password".into();
    let (code, out, err) = call(&env, &["list_custom_apps"]);
    assert_eq!(code, 1);
    assert_eq!(out.matches("wrong username, password or API key").count(), 1, "{out}");
    assert!(!err.contains("login failed"), "said twice, on stderr too:\n{err}");
}

/// Plain `ws://` to the web UI's HTTPS port: not a mysterious upgrade or login failure, but what it is and the fix.
#[test]
fn plain_ws_to_a_tls_port_says_use_wss() {
    let (_sim, server) = tls_sim();
    let port = server.addr.port();
    let (code, out, _) = check_with_stderr(&server, &[("TRUENAS_PASSWORD", "mock-password")]);
    assert_eq!(code, 1);
    assert_eq!(
        line(&out, "endpoint"),
        format!(
            "✗ endpoint: the NAS speaks TLS on port {port}, but the connection used plain ws:// — fix: use wss:// \
             (TRUENAS_PROTOCOL=wss)"
        )
    );
    assert!(!out.contains("✗ login"), "{out}");
    let (code, _, err) = call(&sim_env(&server), &["list_custom_apps"]);
    assert_eq!(code, 1);
    let want =
        format!("truenas-mcp: the NAS speaks TLS on port {port}, but the connection used plain ws://: use wss://");
    assert!(err.contains(&want), "{err}");
    // A plain-ws NAS that refuses for another reason gets no such hint.
    let (_sim, plain) = sim(SimOptions::default());
    let mut env = sim_env(&plain);
    env[3].1 = "not-the-password".into();
    let (_, _, err) = call(&env, &["list_custom_apps"]);
    assert!(!err.contains("speaks TLS"), "{err}");
}

/// TLS without verification works, but `check` says it as a warning with what it means, not as a pass.
#[test]
fn check_warns_when_tls_verification_is_off() {
    let (_sim, server) = tls_sim();
    let port = server.addr.port().to_string();
    let out = binary(&[("TRUENAS_HOST", "127.0.0.1"), ("TRUENAS_PORT", &port), ("TRUENAS_PASSWORD", "mock-password")])
        .args(["--insecure", "check"])
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let l = line(&out, "TLS");
    assert!(l.starts_with("⚠ TLS: certificate CN=localhost"), "{l}");
    assert!(l.contains("NOT verified (TRUENAS_SSL_VERIFY=false, --insecure): anyone on the network path"), "{l}");
    assert!(l.contains("— fix: download the certificate"), "{l}");
    assert!(line(&out, "apps").starts_with('✓'), "a warning does not stop the check:\n{out}");
}

fn check_with_stderr(server: &truenas_mcp::sim::SimServer, credentials: &[(&str, &str)]) -> (i32, String, String) {
    let port = server.addr.port().to_string();
    let mut env = vec![("TRUENAS_HOST", "127.0.0.1"), ("TRUENAS_PORT", port.as_str()), ("TRUENAS_PROTOCOL", "ws")];
    env.extend_from_slice(credentials);
    let out = binary(&env).arg("check").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

// ---- call and tools --------------------------------------------------------------------------------------------

/// Mock mode with a state file remembers between processes: a deploy, then a status call in a new process,
/// sees the app; without the file every call starts from the example apps. A file that is no mock state is a
/// configuration error, never overwritten.
#[test]
fn mock_state_remembers_apps_between_calls() {
    let dir = crate::support::tempdir("mock-state");
    let state = dir.join("mock.json");
    let state_arg = state.display().to_string();
    let mock = [("MOCK_TRUENAS", "true".to_string())];
    let compose = "compose_yaml=services: {web: {image: 'nginx:1.27', mem_limit: 256m, ports: ['8181:80']}}";
    let (code, out, err) = call(&mock, &["deploy_custom_app", "app_name=hello", compose, "--mock-state", &state_arg]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let with_env = [mock[0].clone(), ("TRUENAS_MOCK_STATE", state_arg.clone())];
    let (code, out, err) = call(&with_env, &["get_custom_app_status", "app_name=hello"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("App hello is RUNNING"), "{out}");
    let (code, out, _) = call(&with_env, &["stop_custom_app", "app_name=whoami"]);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = call(&with_env, &["list_custom_apps", "status_filter=all", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let states: Vec<(&str, &str)> = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&("hello", "RUNNING")) && states.contains(&("whoami", "STOPPED")), "{states:?}");
    let (code, _, _) = call(&mock, &["get_custom_app_status", "app_name=hello"]);
    assert_eq!(code, 1, "without the state file the simulator starts afresh");

    let notes = dir.join("notes.json");
    std::fs::write(&notes, "{\"mine\": true}").unwrap();
    let (code, _, err) = call(&mock, &["list_custom_apps", "--mock-state", &notes.display().to_string()]);
    assert_eq!(code, 2);
    assert!(err.starts_with("truenas-mcp: configuration error: the mock state file"), "{err}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "{\"mine\": true}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The crashed example app tells why it crashed, as a person would recognise it: the fatal error, then the exit.
#[test]
fn the_crashed_example_app_shows_its_fatal_error() {
    let (code, out, _) = call(&[("MOCK_TRUENAS", "true".into())], &["get_custom_app_status", "app_name=postgres"]);
    assert_eq!(code, 0, "{out}");
    let fatal = out.find("FATAL:  configuration file \"/var/lib/postgresql/data/postgresql.conf\" contains errors");
    let exit = out.find("db exited with code 1");
    assert!(fatal.is_some() && exit.is_some() && fatal < exit, "{out}");
    assert!(!out.contains("request handled"), "a database that crashed on start served no requests:\n{out}");
}

fn sim_env(server: &truenas_mcp::sim::SimServer) -> Vec<(&'static str, String)> {
    vec![
        ("TRUENAS_HOST", "127.0.0.1".into()),
        ("TRUENAS_PORT", server.addr.port().to_string()),
        ("TRUENAS_PROTOCOL", "ws".into()),
        ("TRUENAS_PASSWORD", "mock-password".into()),
    ]
}

fn call(env: &[(&'static str, String)], args: &[&str]) -> (i32, String, String) {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = binary(&pairs).arg("call").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn call_runs_a_read_tool_readably_and_as_json() {
    let (_sim, server) = sim(SimOptions::default());
    let env = sim_env(&server);
    let (code, out, _) = call(&env, &["list_custom_apps", "status_filter=all"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("whoami") && out.contains("RUNNING") && out.contains("postgres"), "{out}");
    let (code, out, _) = call(&env, &["list_custom_apps", "--json", "--args", r#"{"status_filter":"crashed"}"#]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["apps"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["postgres"], "{v}");
}

#[test]
fn call_deploys_with_progress_on_stderr() {
    let (sim, server) = sim(SimOptions::default());
    let env = sim_env(&server);
    let compose = "services:\n  web:\n    image: nginx:1.27\n    ports: ['8181:80']\n    deploy: {resources: {limits: {memory: 256M}}}\n";
    let dir = std::env::temp_dir().join(format!("truenas-mcp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("compose.yml");
    std::fs::write(&file, compose).unwrap();
    let arg = format!("compose_yaml=@{}", file.display());
    let (code, out, err) = call(&env, &["deploy_custom_app", "app_name=nginx-test", &arg]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.lines().any(|l| l.starts_with('[') && l.contains("%")), "no progress bar on stderr:\n{err}");
    assert!(out.contains("nginx-test"), "{out}");
    assert!(sim.apps().iter().any(|a| a["name"] == "nginx-test"), "the app was not created");
}

#[test]
fn call_refuses_a_dangerous_compose_with_exit_code_1() {
    let (sim, server) = sim(SimOptions::default());
    let env = sim_env(&server);
    let compose = "services:\n  root:\n    image: alpine:3\n    privileged: yes\n    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n";
    let arg = format!("compose_yaml={compose}");
    let (code, out, _) = call(&env, &["deploy_custom_app", "app_name=evil", &arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("privileged") && out.contains("docker-socket"), "{out}");
    assert!(!sim.call_log().iter().any(|(m, _)| m == "app.create"), "nothing may reach the NAS");
}

/// One exit-code rule for every tool: a compose that validates exits 0, one that would be refused exits 1 (the
/// tool's verdict, though the validation itself worked), bad usage exits 2.
#[test]
fn call_validate_compose_exits_1_when_the_compose_would_be_refused() {
    let mock = [("MOCK_TRUENAS", "true".to_string())];
    let good = "compose_yaml=services: {web: {image: 'nginx:1.27', mem_limit: 256m}}";
    let (code, out, err) = call(&mock, &["validate_compose", good]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let refused = "compose_yaml=services: {root: {image: 'alpine:3', privileged: true}}";
    for json in [&[][..], &["--json"][..]] {
        let (code, out, err) = call(&mock, &[&["validate_compose", refused][..], json].concat());
        assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
        assert!(out.contains("REFUSED") || out.contains("\"valid\": false"), "{out}");
    }
    let (code, _, _) = call(&mock, &["validate_compose", "compose_yaml=1", "unknown=1"]);
    assert_eq!(code, 2);
}

#[test]
fn call_reports_bad_arguments_before_connecting() {
    let (code, _, err) = call(&[], &["get_app_logs", "app_name=Bad_Name", "lines=0"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid arguments for get_app_logs"), "{err}");
    // The app-name rule in words (tools::a_bad_app_name_is_explained_in_words), not as a regex.
    assert!(err.contains("app_name: the app name must start") && err.contains("lines: must be at least 1"), "{err}");
    let (code, _, err) = call(&[], &["no_such_tool"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown tool 'no_such_tool'"), "{err}");
}

#[test]
fn tools_lists_the_catalogue_and_hides_writes_when_read_only() {
    let out = binary(&[]).arg("tools").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("deploy_custom_app") && text.contains("get_app_logs"), "{text}");
    let out = binary(&[("TRUENAS_READ_ONLY", "true")]).args(["tools", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"list_custom_apps") && !names.contains(&"deploy_custom_app"), "{names:?}");
}

// ---- the README's commands run, so the documentation cannot rot ------------------------------------------------

/// Commands in the README's `sh` blocks that this test deliberately does not run, and why.
const NOT_RUN: &[(&str, &str)] = &[
    ("./run_mcp.sh --mock", "builds the release binary first; the same server is exercised by every MCP test"),
    ("cargo test", "this is the test suite itself"),
    ("cargo clippy --all-targets -- -D warnings", "run by .ci/run"),
    ("cargo bench", "benchmarks print numbers; see BENCHMARKS.md"),
    (".ci/run", "CI itself"),
    (".ci/interop-setup", "installs the interop tools from PyPI and npm; run by .ci/run"),
    ("claude mcp add", "the interop test claude_code registers the server with the real Claude Code CLI"),
];

fn readme_commands() -> Vec<String> {
    let text = readme();
    let mut cmds = Vec::new();
    let mut in_sh = false;
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            in_sh = !in_sh && l.trim() == "```sh";
            continue;
        }
        if in_sh {
            let cmd = l.split("  #").next().unwrap_or("").trim();
            if !cmd.is_empty() {
                cmds.push(cmd.to_string());
            }
        }
    }
    cmds
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Split `A=1 B=2 truenas-mcp args…` into (env, args after `truenas-mcp`).
fn split_command(cmd: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = Vec::new();
    let mut words = cmd.split_whitespace();
    for w in words.by_ref() {
        if w == "truenas-mcp" {
            break;
        }
        let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("unexpected word '{w}' in README command: {cmd}"));
        env.push((k.to_string(), v.to_string()));
    }
    (env, words.map(String::from).collect())
}

#[test]
fn readme_commands_work() {
    let cmds = readme_commands();
    assert!(cmds.len() >= 8, "README commands not found: {cmds:?}");
    let mut ports = std::collections::BTreeMap::new();
    let mut sims = Vec::new();
    // The chained mock-state examples share one state file: a fresh one here, so every run starts alike.
    let state = crate::support::tempdir("readme").join("truenas-demo.json");
    let mut chained = 0;
    for cmd in &cmds {
        if NOT_RUN.iter().any(|(prefix, _)| cmd.starts_with(prefix)) {
            continue;
        }
        assert!(cmd.contains("truenas-mcp "), "README command neither run nor listed in NOT_RUN: {cmd}");
        // Fixed README ports become free ones; the same README port maps to the same free port.
        let mut cmd = cmd.clone();
        for p in ["8080", "8443"] {
            if cmd.contains(p) {
                let free = *ports.entry(p).or_insert_with(free_port);
                cmd = cmd.replace(p, &free.to_string());
            }
        }
        if cmd.contains("/tmp/truenas-demo.json") {
            chained += 1;
            cmd = cmd.replace("/tmp/truenas-demo.json", &state.display().to_string());
        }
        let (env, args) = split_command(&cmd);
        let mut command = binary(&[]);
        command.current_dir(env!("CARGO_MANIFEST_DIR")).args(&args).envs(env);
        if args.first().map(String::as_str) == Some("simulate") {
            if sims.iter().any(|(a, _): &(Vec<String>, _)| a.iter().any(|x| args.contains(x) && x.starts_with("127.")))
            {
                continue; // same port as an earlier example
            }
            let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
            let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
            let mut first = String::new();
            std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
            assert!(first.contains("listening on"), "{cmd}: {first}");
            sims.push((args.clone(), child));
            continue;
        }
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README command failed: {cmd}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.trim().is_empty(), "README command printed nothing: {cmd}");
    }
    assert!(sims.len() >= 2, "the simulate examples did not run");
    assert!(chained >= 2 && state.exists(), "the chained mock-state examples did not run");
    for (_, mut child) in sims {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Ctrl-C during `call` aborts the running TrueNAS job (not just the local process) and exits 130 (interrupted).
#[test]
fn call_ctrl_c_aborts_the_job() {
    let (sim, server) = sim(SimOptions::default());
    sim.faults().set_never_finish_jobs(true);
    let env = sim_env(&server);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let compose = "compose_yaml=services: {web: {image: 'nginx:1.27', mem_limit: 256m}}";
    let child = binary(&pairs)
        .args(["call", "deploy_custom_app", "app_name=stuck", compose])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the job runs on the "NAS", then interrupt like a terminal does.
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while !sim.jobs().iter().any(|j| j["method"] == "app.create" && j["state"] == "RUNNING") {
        assert!(std::time::Instant::now() < give_up, "the deploy job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted: aborting the running job"));
    let job = sim.jobs().into_iter().find(|j| j["method"] == "app.create").unwrap();
    assert_eq!(job["state"], "ABORTED", "{job}");
    assert!(stdout.to_lowercase().contains("cancel") || stdout.to_lowercase().contains("abort"), "{stdout}");
}

/// `run_mcp.sh` builds first only when the binary is missing, saying so on stderr (stdout belongs to MCP); a binary
/// older than the sources is served at once while a rebuild runs in the background, so a client is never left
/// waiting on a build; it execs the binary with every argument. A stub `cargo` stands in for the build.
#[test]
fn run_mcp_sh_builds_when_missing_rebuilds_in_the_background_and_keeps_stdout_clean() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("truenas-mcp-runsh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("stub")).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/run_mcp.sh"), dir.join("run_mcp.sh")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), "").unwrap();
    std::fs::write(dir.join("Cargo.lock"), "").unwrap();
    std::fs::write(dir.join("src/main.rs"), "").unwrap();
    // The stub "cargo" is noisy on stdout and writes a fake binary that echoes its arguments.
    let stub = "#!/bin/sh\necho 'cargo noise on stdout'\nmkdir -p \"$(dirname \"$5\")/target/release\"\n\
                printf '#!/bin/sh\\necho \"served $*\"\\n' > \"$(dirname \"$5\")/target/release/truenas-mcp\"\n\
                chmod +x \"$(dirname \"$5\")/target/release/truenas-mcp\"\necho built >> \"$(dirname \"$5\")/builds\"\n";
    std::fs::write(dir.join("stub/cargo"), stub).unwrap();
    std::fs::set_permissions(dir.join("stub/cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = || {
        let path = format!("{}:{}", dir.join("stub").display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new(dir.join("run_mcp.sh")).args(["--mock", "a b"]).env("PATH", path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let builds = || std::fs::read_to_string(dir.join("builds")).unwrap_or_default().lines().count();
    let (stdout, stderr) = run();
    assert_eq!(stdout, "served --mock a b\n", "only the server may write to stdout");
    assert!(stderr.contains("building truenas-mcp now") && stderr.contains("cargo noise"), "{stderr}");
    assert_eq!(builds(), 1);
    let (stdout, _) = run();
    assert_eq!((stdout.as_str(), builds()), ("served --mock a b\n", 1), "an up-to-date binary is not rebuilt");
    // The sources change after the build: make the binary an hour older than them.
    let binary = std::fs::File::options().write(true).open(dir.join("target/release/truenas-mcp")).unwrap();
    binary.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
    drop(binary);
    std::fs::write(dir.join("src/main.rs"), "// changed").unwrap();
    let (stdout, stderr) = run();
    assert_eq!(stdout, "served --mock a b\n", "the previous build is served at once");
    assert!(stderr.contains("rebuilding in the background"), "{stderr}");
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while builds() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(builds(), 2, "a source newer than the binary triggers a rebuild");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- secrets from files, not from the command line --------------------------------------------------------------

/// A secret given as a flag sits in the process list: the program says so once on stderr (without the secret) and
/// names the file variants; the file variants are silent and work.
#[test]
fn secret_flags_warn_and_secret_files_work() {
    let (_sim, server) = sim(SimOptions::default());
    let dir = crate::support::tempdir("secret-files");
    let file = dir.join("password");
    std::fs::write(&file, "mock-password\n").unwrap();
    let port = server.addr.port().to_string();
    let base = ["--host", "127.0.0.1", "--port", port.as_str(), "--protocol", "ws"];

    for (flag, value, file_flag, file_env) in [
        ("--password", "mock-password", "--password-file", "TRUENAS_PASSWORD_FILE"),
        ("--api-key", "1-flag-secret-key", "--api-key-file", "TRUENAS_API_KEY_FILE"),
    ] {
        let out = binary(&[]).args(base).args([flag, value, "check"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let warning =
            format!("truenas-mcp: warning: {flag} puts the secret in the process list; use {file_flag} or {file_env}");
        assert_eq!(stderr.matches(&warning).count(), 1, "{stderr}");
        assert!(!stderr.contains(value) && !stdout.contains(value), "the secret was printed:\n{stderr}\n{stdout}");
    }

    let out = binary(&[]).args(base).args(["--password-file", file.to_str().unwrap(), "check"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(line(&stdout, "login").starts_with("✓ login: mcp-service"), "{stdout}");
    assert!(!stdout.contains("mock-password"), "{stdout}");

    let file_text = file.display().to_string();
    let (code, out) = check_ws(&server, &[("TRUENAS_PASSWORD_FILE", file_text.as_str())]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("TRUENAS_PASSWORD_FILE            {file_text}")), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A secret file that cannot be read, or is set together with the value, stops the program with exit 2 and a
/// message naming the setting, never the secret.
#[test]
fn bad_secret_files_are_refused_precisely() {
    let dir = crate::support::tempdir("secret-bad");
    let missing = dir.join("missing");
    let out = binary(&[("TRUENAS_PASSWORD_FILE", missing.to_str().unwrap())]).arg("tools").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "truenas-mcp: configuration error: cannot read TRUENAS_PASSWORD_FILE '{}': ",
            missing.display()
        )),
        "{stderr}"
    );
    let file = dir.join("key");
    std::fs::write(&file, "1-file-secret\n").unwrap();
    let out = binary(&[("TRUENAS_API_KEY", "1-env-secret")])
        .args(["--api-key-file", file.to_str().unwrap(), "tools"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("truenas-mcp: configuration error: set TRUENAS_API_KEY or TRUENAS_API_KEY_FILE, not both; {CONFIGURATION_FIX}")
    );
    let _ = std::fs::remove_dir_all(dir);
}

//! Integration tests: TrueNAS 26.0 and pinned API versions, client side — the real client (and the real binary)
//! against the simulator over loopback WebSocket. Run with `cargo test --test it tn26::`.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use truenas_mcp::config::{Config, Secret};
use truenas_mcp::sim::{SimOptions, SimVersion, Simulator};
use truenas_mcp::truenas::error::AuthFailure;
use truenas_mcp::truenas::{Client, ClientSettings, Connector, Dial, Stream, TcpConnector, TnError};

use super::support::{binary, McpPeer};
use super::truenas::{calls_to, client, config_for, options, serve, KEY, PASSWORD, USER};

/// The network connector, counting the streams it opens (the versions GET and every WebSocket).
struct Counting(Arc<AtomicUsize>);

impl Connector for Counting {
    fn url(&self, config: &Config, path: &str) -> Result<String, TnError> {
        TcpConnector.url(config, path)
    }
    fn open(&self, dial: &Dial) -> Result<Stream, TnError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        TcpConnector.open(dial)
    }
}

/// The network connector, presenting every peer to the API-key transport rule as a remote host on plain TCP
/// (TEST-NET-1), while it really dials the simulator on loopback.
struct AsIfRemote;

impl Connector for AsIfRemote {
    fn url(&self, config: &Config, path: &str) -> Result<String, TnError> {
        TcpConnector.url(config, path)
    }
    fn open(&self, dial: &Dial) -> Result<Stream, TnError> {
        (dial.may_connect)("192.0.2.1".parse().unwrap(), false)?;
        TcpConnector.open(dial)
    }
}

/// The `auth.login_ex` mechanisms the simulator received, in order.
fn mechanisms(sim: &Simulator) -> Vec<String> {
    calls_to(sim, "auth.login_ex").iter().map(|p| p[0]["mechanism"].as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn the_newest_shipped_api_version_is_pinned_per_release() {
    // (release, endpoint, pinned version, streams opened by the first connect)
    let cases = [
        (SimVersion::V25_04, "/api/v25.04.2", Some("v25.04.2"), 2),
        (SimVersion::V25_10, "/api/v25.10.5", Some("v25.10.5"), 2),
        (SimVersion::V26_0, "/api/v26.0.0", Some("v26.0.0"), 2),
        // The GET and /api/current are refused, then the legacy endpoint.
        (SimVersion::V24_10, "/websocket", None, 3),
    ];
    for (version, path, pinned, first_opens) in cases {
        let (sim, server) = serve(options(version));
        let opens = Arc::new(AtomicUsize::new(0));
        let c = Client::new(ClientSettings::new(config_for(&server)), Arc::new(Counting(Arc::clone(&opens))));
        let info = c.server_info().unwrap_or_else(|e| panic!("{version:?}: {e}"));
        assert!(info.endpoint.ends_with(path), "{version:?}: {}", info.endpoint);
        assert_eq!(info.api_version.as_deref(), pinned, "{version:?}");
        assert_eq!(opens.load(Ordering::SeqCst), first_opens, "{version:?}");
        // The choice is cached per target: a reconnect opens one WebSocket on the same endpoint, no second GET.
        sim.faults().drop_after_frames(1);
        let _ = c.call("system.version", json!([]));
        c.call("system.version", json!([])).expect("reconnects");
        assert_eq!(c.server_info().unwrap().endpoint, info.endpoint, "{version:?}");
        assert_eq!(opens.load(Ordering::SeqCst), first_opens + 1, "{version:?}");
    }
}

#[test]
fn a_reconnect_on_26_logs_in_with_the_token_not_the_password() {
    let (sim, server) = serve(options(SimVersion::V26_0));
    let c = client(config_for(&server));
    c.server_info().unwrap();
    let first = calls_to(&sim, "auth.login_ex");
    assert_eq!(first[0][0]["login_options"]["reconnect_token"], true, "{first:?}");
    // Drop the connection twice: each reconnect spends the token the previous login handed out.
    for _ in 0..2 {
        sim.faults().drop_after_frames(1);
        let _ = c.call("system.version", json!([]));
        c.call("system.version", json!([])).expect("reconnects");
    }
    assert_eq!(mechanisms(&sim), ["PASSWORD_PLAIN", "TOKEN_PLAIN", "TOKEN_PLAIN"]);
    let sent =
        sim.call_log().iter().filter(|(m, p)| m.starts_with("auth.") && p.to_string().contains(PASSWORD)).count();
    assert_eq!(sent, 1, "the password crossed the wire once");

    // A NAS that restarted forgot the token: refused, then the password.
    sim.restart();
    let _ = c.call("system.version", json!([]));
    c.call("system.version", json!([])).expect("logs in again after a restart");
    assert_eq!(mechanisms(&sim)[3..], ["TOKEN_PLAIN", "PASSWORD_PLAIN"]);

    // Older APIs do not have the option: never asked there.
    let (old, old_server) = serve(options(SimVersion::V25_10));
    client(config_for(&old_server)).server_info().unwrap();
    assert_eq!(calls_to(&old, "auth.login_ex")[0][0]["login_options"], json!({"user_info": false}));
}

#[test]
fn denied_and_refused_keys_on_26_say_what_happened_and_what_to_do() {
    let mut opts = options(SimVersion::V26_0);
    opts.users.push(("noapi".into(), "pw".into()));
    opts.denied_users = vec!["noapi".into()];
    let (_sim, server) = serve(opts);
    let mut config = config_for(&server);
    config.username = "noapi".into();
    config.password = Some(Secret::new("pw"));
    let err = client(config).server_info().unwrap_err();
    assert!(matches!(err, TnError::Auth(AuthFailure::Denied)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no API access") && msg.contains("role"), "{msg}");

    // A key the upgrade to 26.0 revoked answers AUTH_ERR: the message names revocation and the new key.
    let (_sim, server) = serve(SimOptions { upgrade_revoked_keys: vec![7], ..options(SimVersion::V26_0) });
    let mut config = config_for(&server);
    config.password = None;
    config.api_key = Some(Secret::new(KEY));
    config.username_explicit = true;
    let err = client(config.clone()).server_info().unwrap_err();
    assert!(matches!(err, TnError::Auth(AuthFailure::KeyRefused)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("revoked") && msg.contains("upgrade to 26.0") && msg.contains("create a new API key"),
        "{msg}"
    );
    // On 25.10 a wrong key is just a wrong key.
    let (_sim, server) = serve(options(SimVersion::V25_10));
    let mut config = config_for(&server);
    config.password = None;
    config.api_key = Some(Secret::new("7-wrong"));
    config.username_explicit = true;
    let err = client(config).server_info().unwrap_err();
    assert!(matches!(err, TnError::Auth(AuthFailure::BadCredentials)), "{err:?}");
}

/// One `tools/call` over MCP: (text, structured, isError).
fn call_tool(peer: &mut McpPeer, id: i64, name: &str, arguments: Value) -> (String, Value, bool) {
    let r = peer.request(json!(id), "tools/call", json!({"name": name, "arguments": arguments}));
    let result = r.get("result").unwrap_or_else(|| panic!("{name}: {r}")).clone();
    let text = result["content"][0]["text"].as_str().unwrap_or("").to_string();
    (text, result["structuredContent"].clone(), result["isError"] == true)
}

/// The real binary as an MCP server for the simulator on `port`, logged in with `credential`, initialized.
fn mcp(port: &str, credential: (&str, &str), audit: &std::path::Path) -> McpPeer {
    let mut command = Command::new(binary());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TRUENAS_HOST", "127.0.0.1")
        .env("TRUENAS_PORT", port)
        .env("TRUENAS_PROTOCOL", "ws")
        .env("TRUENAS_USERNAME", USER)
        .env(credential.0, credential.1)
        .env("TRUENAS_AUDIT_LOG", audit)
        .env(truenas_mcp::clock::TEST_CLOCK_ENV, "auto")
        .stderr(Stdio::inherit());
    let mut peer = McpPeer::spawn_command(command);
    peer.initialize("2025-06-18", json!({}));
    peer
}

#[test]
fn the_tools_work_against_26_with_a_password_and_an_api_key() {
    let opts = SimOptions { apps_needing_action: vec!["whoami".into()], ..options(SimVersion::V26_0) };
    let (sim, server) = serve(opts);
    let port = server.addr.port().to_string();
    let credentials: [(&str, &str); 2] = [("TRUENAS_PASSWORD", PASSWORD), ("TRUENAS_API_KEY", KEY)];
    for (i, (var, secret)) in credentials.into_iter().enumerate() {
        let audit = std::env::temp_dir().join(format!("tn26-audit-{}-{i}.jsonl", std::process::id()));
        let mut peer = mcp(&port, (var, secret), &audit);

        let (text, s, err) = call_tool(&mut peer, 1, "test_connection", json!({}));
        assert!(!err && s["problems"] == json!([]), "{text}");
        assert!(text.contains("/api/v26.0.0") && text.contains("API v26.0.0 pinned"), "{text}");
        let (text, s, err) = call_tool(&mut peer, 2, "list_custom_apps", json!({}));
        assert!(!err, "{text}");
        let whoami = s["apps"].as_array().unwrap().iter().find(|a| a["name"] == "whoami").cloned().unwrap();
        assert_eq!(whoami["action_required"], true, "{s}");
        assert!(text.contains("needs attention"), "{text}");
        let (text, s, err) = call_tool(&mut peer, 3, "get_custom_app_status", json!({"app_name": "whoami"}));
        assert!(!err && s["action_required"] == true && text.contains("needs attention"), "{text}");
        for (id, tool, args) in [
            (4, "get_custom_app_config", json!({"app_name": "whoami"})),
            (5, "get_app_logs", json!({"app_name": "whoami", "lines": 3})),
            (6, "get_app_stats", json!({})),
        ] {
            let (text, _, err) = call_tool(&mut peer, id, tool, args);
            assert!(!err, "{tool}: {text}");
        }
        let app = format!("tn26-web{i}");
        let compose = format!("services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"{}:80\"\n", 18090 + i);
        let (text, s, err) =
            call_tool(&mut peer, 7, "deploy_custom_app", json!({"app_name": app, "compose_yaml": compose}));
        assert!(!err && s["status"] == "running", "{text}");
        let _ = std::fs::remove_file(&audit);
    }
    let logins = mechanisms(&sim);
    // 26.0 logs an API key in with SCRAM (two steps), so the key itself is never sent.
    assert!(logins.contains(&"PASSWORD_PLAIN".to_string()) && logins.contains(&"SCRAM".to_string()), "{logins:?}");
    assert!(!logins.contains(&"API_KEY_PLAIN".to_string()), "{logins:?}");
}

#[test]
fn a_compose_the_nas_refuses_is_explained() {
    // A stand-in for the NAS's Compose that refuses everything the way `docker compose config` does.
    let dir = std::env::temp_dir().join(format!("tn26-compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("docker-compose");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'service \"web\" refers to undefined network backend: invalid compose project' >&2\nexit 15\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_sim, server) = serve(SimOptions { compose: Some(fake), ..options(SimVersion::V26_0) });
    let audit = dir.join("audit.jsonl");
    let mut peer = mcp(&server.addr.port().to_string(), ("TRUENAS_PASSWORD", PASSWORD), &audit);
    let compose = "services:\n  web:\n    image: nginx:1.27\n";
    for (id, tool, app) in [(1, "deploy_custom_app", "refused-web"), (2, "update_custom_app", "whoami")] {
        let (text, _, err) = call_tool(&mut peer, id, tool, json!({"app_name": app, "compose_yaml": compose}));
        assert!(err, "{tool}: {text}");
        assert!(text.contains("refers to undefined network backend"), "{tool}: the NAS's message: {text}");
        assert!(text.contains("Our policy had passed it"), "{tool}: our conclusion: {text}");
        assert!(text.contains("Likely fix: declare"), "{tool}: the fix: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn include_is_judged_by_the_connected_release() {
    let compose = "include:\n  - ./db.yaml\nservices:\n  web:\n    image: nginx:1.27\n";
    for (version, said, not_said) in [
        (SimVersion::V26_0, "`./db.yaml` live on the NAS", "does not support"),
        (SimVersion::V25_10, "TrueNAS 25.10 does not support `include:`; 26.0 does", "cannot read"),
    ] {
        let (_sim, server) = serve(options(version));
        let audit = std::env::temp_dir().join(format!("tn26-include-{}-{version:?}.jsonl", std::process::id()));
        let mut peer = mcp(&server.addr.port().to_string(), ("TRUENAS_PASSWORD", PASSWORD), &audit);
        let (text, s, _) = call_tool(&mut peer, 1, "validate_compose", json!({"compose_yaml": compose}));
        assert_eq!(s["valid"], false, "{version:?}: {text}");
        assert!(text.contains(said) && !text.contains(not_said), "{version:?}: {text}");
        assert!(text.contains("inline the included services into this file"), "{version:?}: {text}");
        let _ = std::fs::remove_file(&audit);
    }
}

#[test]
fn an_api_key_over_plain_ws_to_a_remote_host_logs_in_with_scram_on_26_and_never_crosses_the_wire() {
    let opts = SimOptions { treat_plain_tcp_as_remote: true, ..options(SimVersion::V26_0) };
    let (sim, server) = serve(opts);
    let mut config = config_for(&server);
    config.password = None;
    config.api_key = Some(Secret::new(KEY));
    config.username_explicit = true;
    let c = Client::new(ClientSettings::new(config.clone()), Arc::new(AsIfRemote));
    let info = c.server_info().expect("SCRAM logs in over plain ws:// on 26.0");
    assert_eq!(info.auth_method, "api_key");
    c.call("system.version", json!([])).expect("the session is authenticated");
    assert_eq!(mechanisms(&sim), ["SCRAM", "SCRAM"]);
    let steps: Vec<Value> = calls_to(&sim, "auth.login_ex").iter().map(|p| p[0]["scram_type"].clone()).collect();
    assert_eq!(steps, [json!("CLIENT_FIRST_MESSAGE"), json!("CLIENT_FINAL_MESSAGE")]);
    assert!(calls_to(&sim, "auth.login_ex")[0][0]["rfc_str"].as_str().unwrap().starts_with("n,,n=mcp-service:7,r="));
    let secret = KEY.split_once('-').unwrap().1;
    let crossed = sim.call_log().iter().filter(|(_, p)| p.to_string().contains(secret)).count();
    assert_eq!(crossed, 0, "the key crossed the wire: {:?}", sim.call_log());
    assert!(!sim.api_key_revoked(7), "a SCRAM login must not revoke the key");

    // A wrong key is refused, in the words that fit 26.0 (wrong or revoked look alike there).
    config.api_key = Some(Secret::new("7-wrongwrongwrong"));
    let err = Client::new(ClientSettings::new(config.clone()), Arc::new(AsIfRemote)).server_info().unwrap_err();
    assert!(matches!(err, TnError::Auth(AuthFailure::KeyRefused)), "{err:?}");
    assert!(err.to_string().contains("it is wrong or was revoked"), "{err}");
    assert!(!sim.api_key_revoked(7));

    // 25.10 has no SCRAM: the key would be sent as it is, so it is refused before any login call.
    let (old, old_server) = serve(SimOptions { treat_plain_tcp_as_remote: true, ..options(SimVersion::V25_10) });
    let mut config = config_for(&old_server);
    config.password = None;
    config.api_key = Some(Secret::new(KEY));
    config.username_explicit = true;
    let err = Client::new(ClientSettings::new(config), Arc::new(AsIfRemote)).server_info().unwrap_err();
    assert!(matches!(err, TnError::Auth(AuthFailure::InsecureTransportRefused)), "{err:?}");
    assert!(old.call_log().iter().all(|(m, _)| !m.starts_with("auth.")), "{:?}", old.call_log());
    assert!(!old.api_key_revoked(7));
}

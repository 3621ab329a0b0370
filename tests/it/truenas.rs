//! Integration tests: truenas (owned by the truenas helper).
//!
//! The real client against the simulator over real WebSockets on 127.0.0.1 (TLS with the test CA in
//! `fixtures/tls/`), plus mock mode over the in-memory pipe. Run with `cargo test --test it truenas::`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use truenas_mcp::clock::ManualClock;
use truenas_mcp::config::{ApiMode, Config, Secret};
use truenas_mcp::mcp::tool::CancelToken;
use truenas_mcp::sim::{RateLimit, SimApiKey, SimOptions, SimServer, SimVersion, Simulator};
use truenas_mcp::truenas::error::{AuthFailure, ConnectStep, TimeoutPhase};
use truenas_mcp::truenas::{
    ByteStream, Client, ClientSettings, Connector, Dial, JobOptions, Stream, SubEvent, TnError, WireProtocol,
};

pub(super) const USER: &str = "mcp-service";
pub(super) const PASSWORD: &str = "mock-password";
pub(super) const KEY: &str = "7-k3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3y";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls").join(name)
}

pub(super) fn options(version: SimVersion) -> SimOptions {
    SimOptions {
        version,
        api_keys: vec![SimApiKey { id: 7, key: KEY.into(), username: USER.into() }],
        login_fail_delay: Duration::from_millis(20),
        job_step: Duration::from_millis(10),
        // A stats sample at once rather than after the 2 s interval the tools ask for.
        stats_interval: Some(Duration::from_millis(20)),
        ..Default::default()
    }
}

pub(super) fn serve(opts: SimOptions) -> (Simulator, SimServer) {
    let sim = Simulator::new(opts);
    let server = sim.serve("127.0.0.1:0").expect("simulator serves");
    (sim, server)
}

/// A password config pointing at `server` (ws://127.0.0.1:port, or wss://localhost:port for TLS).
pub(super) fn config_for(server: &SimServer) -> Config {
    let mut c = Config::for_tests();
    c.url = Some(if server.tls {
        format!("wss://localhost:{}", server.addr.port())
    } else {
        format!("ws://{}", server.addr)
    });
    c.username = USER.into();
    c.password = Some(Secret::new(PASSWORD));
    c.call_timeout = Duration::from_secs(10);
    c.connect_timeout = Duration::from_secs(5);
    c.job_timeout = Duration::from_secs(20);
    c
}

pub(super) fn client(config: Config) -> Client {
    Client::network(ClientSettings::new(config))
}

pub(super) fn calls_to(sim: &Simulator, method: &str) -> Vec<Value> {
    sim.call_log().into_iter().filter(|(m, _)| m == method).map(|(_, p)| p).collect()
}

fn logins(sim: &Simulator) -> usize {
    sim.call_log().iter().filter(|(m, _)| m.starts_with("auth.login")).count()
}

#[test]
fn construction_does_no_io_and_mock_mode_runs_the_real_stack() {
    // A listening host: constructing must not connect to it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut c = Config::for_tests();
    c.host = Some("127.0.0.1".into());
    c.port = listener.local_addr().unwrap().port();
    let _unused = Client::network(ClientSettings::new(c));
    thread::sleep(Duration::from_millis(50));
    assert!(listener.accept().is_err(), "constructing the client connected");

    let mut c = Config::for_tests();
    c.mock = true;
    let (client, sim) = truenas_mcp::sim::mock_client(ClientSettings::new(c));
    let info = client.server_info().expect("mock mode logs in");
    assert_eq!(info.protocol, WireProtocol::JsonRpc);
    assert_eq!(info.endpoint, "ws://mock.truenas.invalid/api/v25.04.2");
    assert_eq!(info.version_tuple.0, 25);
    let apps = client.call("app.query", json!([])).expect("app.query works in mock mode");
    assert!(apps.as_array().is_some_and(|a| !a.is_empty()), "{apps}");
    assert_eq!(calls_to(&sim, "auth.login_ex").len(), 1);
}

#[test]
fn password_login_per_version_and_protocol() {
    // (version, expected protocol, endpoint path, login method, version tuple)
    let cases = [
        (SimVersion::V24_10, WireProtocol::Legacy, "/websocket", "auth.login", (24, 10)),
        (SimVersion::V25_04, WireProtocol::JsonRpc, "/api/v25.04.2", "auth.login_ex", (25, 4)),
        (SimVersion::V25_10, WireProtocol::JsonRpc, "/api/v25.10.5", "auth.login_ex", (25, 10)),
    ];
    for (version, protocol, path, login, tuple) in cases {
        let (sim, server) = serve(options(version));
        let client = client(config_for(&server));
        let info = client.server_info().unwrap_or_else(|e| panic!("{version:?}: {e}"));
        assert_eq!(info.protocol, protocol, "{version:?}");
        assert!(info.endpoint.ends_with(path), "{version:?}: {}", info.endpoint);
        assert_eq!(info.version_tuple, tuple, "{version:?}");
        assert!(!info.version.starts_with("TrueNAS"), "{}", info.version);
        assert_eq!(info.auth_method, "password");
        assert_eq!(info.username.as_deref(), Some(USER));
        assert_eq!(calls_to(&sim, login).len(), 1, "{version:?}: {:?}", sim.call_log());
        if login == "auth.login_ex" {
            assert_eq!(calls_to(&sim, login)[0][0]["mechanism"], "PASSWORD_PLAIN");
        }
        // Jobs are followed right after login.
        let subs = calls_to(&sim, "core.subscribe");
        if protocol == WireProtocol::JsonRpc {
            assert_eq!(subs, vec![json!(["core.get_jobs"])], "{version:?}");
        }
        let apps = client.call("app.query", json!([])).expect("app.query");
        assert!(apps.as_array().is_some_and(|a| a.len() == 3), "{version:?}: {apps}");
    }
}

#[test]
fn forcing_json_rpc_on_24_10_names_the_fix() {
    let (_sim, server) = serve(options(SimVersion::V24_10));
    let mut c = config_for(&server);
    c.api = ApiMode::JsonRpc;
    let err = client(c).server_info().unwrap_err();
    assert!(matches!(err, TnError::Connect { step: ConnectStep::Upgrade, .. }), "{err:?}");
    assert!(err.to_string().contains("TRUENAS_API"), "{err}");

    // And legacy forced on 25.04 works (the compat endpoint).
    let (_sim, server) = serve(options(SimVersion::V25_04));
    let mut c = config_for(&server);
    c.api = ApiMode::Legacy;
    let info = client(c).server_info().expect("legacy endpoint on 25.04");
    assert_eq!(info.protocol, WireProtocol::Legacy);

    // So does a TRUENAS_URL naming /websocket.
    let mut c = config_for(&server);
    c.url = Some(format!("ws://{}/websocket", server.addr));
    let info = client(c).server_info().expect("legacy endpoint named by the URL");
    assert_eq!(info.protocol, WireProtocol::Legacy);
}

#[test]
fn api_key_login_paths() {
    // (version, username explicit, expected login method)
    let cases = [
        (SimVersion::V25_04, true, "auth.login_ex"),
        (SimVersion::V25_04, false, "auth.login_with_api_key"),
        (SimVersion::V25_10, true, "auth.login_ex"),
        (SimVersion::V24_10, true, "auth.login_with_api_key"),
    ];
    for (version, explicit, method) in cases {
        let (sim, server) = serve(options(version));
        let mut c = config_for(&server);
        c.password = None;
        c.api_key = Some(Secret::new(KEY));
        c.username_explicit = explicit;
        let info = client(c).server_info().unwrap_or_else(|e| panic!("{version:?} {explicit}: {e}"));
        assert_eq!(info.auth_method, "api_key");
        assert_eq!(info.username.is_some(), explicit);
        assert_eq!(calls_to(&sim, method).len(), 1, "{version:?} {explicit}: {:?}", sim.call_log());
        if method == "auth.login_ex" {
            assert_eq!(calls_to(&sim, method)[0][0]["mechanism"], "API_KEY_PLAIN");
            assert_eq!(calls_to(&sim, method)[0][0]["username"], USER);
        }
        assert!(!sim.api_key_revoked(7));
    }
}

#[test]
fn every_auth_failure_has_its_own_message() {
    type Tweak = fn(&mut SimOptions, &mut Config);
    let cases: Vec<(&str, Tweak, AuthFailure, &str)> = vec![
        (
            "wrong password",
            |_, c| c.password = Some(Secret::new("nope")),
            AuthFailure::BadCredentials,
            "TRUENAS_PASSWORD",
        ),
        (
            "wrong api key",
            |_, c| {
                c.password = None;
                c.api_key = Some(Secret::new("7-wrong"));
            },
            AuthFailure::BadCredentials,
            "TRUENAS_API_KEY",
        ),
        ("expired", |o, _| o.expired_users = vec![USER.into()], AuthFailure::Expired, "insecure"),
        ("otp", |o, _| o.otp_users = vec![USER.into()], AuthFailure::OtpRequired, "service account"),
        (
            "ha standby",
            |o, _| o.ha_redirect = Some(vec!["10.0.0.2".into(), "10.0.0.3".into()]),
            AuthFailure::Redirect(vec!["10.0.0.2".into(), "10.0.0.3".into()]),
            "10.0.0.2, 10.0.0.3",
        ),
    ];
    for (name, tweak, want, hint) in cases {
        let mut opts = options(SimVersion::V25_04);
        let mut c = Config::for_tests();
        tweak(&mut opts, &mut c);
        let (_sim, server) = serve(opts);
        let mut config = config_for(&server);
        config.password = c.password.clone().or(config.password);
        if c.api_key.is_some() {
            config.password = None;
            config.api_key = c.api_key.clone();
        }
        let err = client(config).call("app.query", json!([])).unwrap_err();
        match &err {
            TnError::Auth(got) => assert_eq!(got, &want, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        assert!(err.to_string().contains(hint), "{name}: {err}");
    }

    let err = {
        let mut c = Config::for_tests();
        c.host = Some("127.0.0.1".into());
        c.password = None;
        c.api_key = None;
        client(c).call("app.query", json!([])).unwrap_err()
    };
    assert!(matches!(err, TnError::Auth(AuthFailure::NoCredentials)), "{err:?}");
    assert!(err.to_string().contains("TRUENAS_PASSWORD") && err.to_string().contains("TRUENAS_API_KEY"), "{err}");
}

#[test]
fn api_keys_never_travel_over_plain_ws_to_a_remote_host() {
    // 192.0.2.1 is TEST-NET-1: unroutable. The refusal happens before any connection attempt.
    let mut c = Config::for_tests();
    c.url = Some("ws://192.0.2.1:80".into());
    c.password = None;
    c.api_key = Some(Secret::new(KEY));
    // A connection attempt to the unroutable host would end in a connect error, not this refusal.
    let err = client(c.clone()).server_info().unwrap_err();
    assert!(matches!(err, TnError::Auth(AuthFailure::InsecureTransportRefused)), "{err:?}");
    assert!(err.to_string().contains("TRUENAS_ALLOW_INSECURE_API_KEY"), "{err}");

    // With the override the key goes out, and a 25.04 server that sees an insecure transport revokes it.
    let mut opts = options(SimVersion::V25_04);
    opts.treat_plain_tcp_as_remote = true;
    let (sim, server) = serve(opts);
    let mut c = config_for(&server);
    c.password = None;
    c.api_key = Some(Secret::new(KEY));
    c.username_explicit = true;
    c.allow_insecure_api_key = true;
    let err = client(c).server_info().unwrap_err();
    assert!(matches!(err, TnError::Auth(AuthFailure::Expired)), "{err:?}");
    assert!(sim.api_key_revoked(7));
    assert!(err.to_string().contains("create a new key"), "{err}");
}

#[test]
fn rate_limited_logins_back_off_instead_of_looping() {
    let mut opts = options(SimVersion::V25_04);
    opts.rate_limit = RateLimit { max_calls: 1, window: Duration::from_secs(60), delay: Duration::from_millis(10) };
    let (sim, server) = serve(opts);
    let mut c = config_for(&server);
    c.password = Some(Secret::new("nope"));
    let client = client(c);
    let first = client.call("app.query", json!([])).unwrap_err();
    assert!(matches!(first, TnError::Auth(AuthFailure::BadCredentials)), "{first:?}");
    let second = client.call("app.query", json!([])).unwrap_err();
    assert!(matches!(second, TnError::RateLimited(_)), "{second:?}");
    assert!(second.to_string().contains("wait"), "{second}");
    let attempts = logins(&sim);
    // Within the back-off window the client answers from memory and leaves the NAS alone.
    let third = client.call("app.query", json!([])).unwrap_err();
    assert!(matches!(third, TnError::RateLimited(_)), "{third:?}");
    assert_eq!(logins(&sim), attempts);
}

#[test]
fn tls_verification_custom_ca_and_opt_out() {
    let mut opts = options(SimVersion::V25_04);
    opts.tls = Some((fixture("server.pem"), fixture("server.pkcs8.key")));
    let (_sim, server) = serve(opts);
    assert!(server.tls);

    // (description, ca_cert, ssl_verify, expect success)
    let cases = [
        ("system roots only", None, true, false),
        ("the wrong CA", Some(fixture("other-ca.pem")), true, false),
        ("the test CA", Some(fixture("ca.pem")), true, true),
        ("verification off", None, false, true),
    ];
    for (name, ca, verify, ok) in cases {
        let mut c = config_for(&server);
        c.ca_cert = ca;
        c.ssl_verify = verify;
        match client(c).server_info() {
            Ok(info) => {
                assert!(ok, "{name}: connected but should not have");
                assert!(info.endpoint.starts_with("wss://localhost:"), "{}", info.endpoint);
            }
            Err(e) => {
                assert!(!ok, "{name}: {e}");
                assert!(matches!(e, TnError::Connect { step: ConnectStep::Tls, .. }), "{name}: {e:?}");
                let msg = e.to_string();
                assert!(msg.contains("TRUENAS_CA_CERT") && msg.contains("TRUENAS_SSL_VERIFY=false"), "{name}: {msg}");
                assert!(msg.contains("certificate verify failed ("), "names the certificate problem: {msg}");
            }
        }
    }
}

#[test]
fn a_stalled_tls_handshake_times_out_cleanly() {
    let mut opts = options(SimVersion::V25_04);
    opts.tls = Some((fixture("server.pem"), fixture("server.pkcs8.key")));
    let (sim, server) = serve(opts);
    sim.faults().set_stall_tls_handshake(true);
    let mut c = config_for(&server);
    c.ca_cert = Some(fixture("ca.pem"));
    let connect_timeout = Duration::from_millis(500);
    c.connect_timeout = connect_timeout;
    // The back-off runs on a test clock.
    let clock = ManualClock::new(false);
    let client = Client::network(ClientSettings { clock: clock.clone(), ..ClientSettings::new(c) });
    let err = client.server_info().unwrap_err();
    // Bounded by the connect timeout (the error carries which limit ended it).
    assert!(
        matches!(err, TnError::Timeout { phase: TimeoutPhase::Handshake, after } if after == connect_timeout),
        "{err:?}"
    );
    // Once the server answers again, the same client connects (after its short back-off).
    sim.faults().set_stall_tls_handshake(false);
    clock.advance(Duration::from_millis(300));
    client.server_info().expect("connects once TLS answers");
}

#[test]
fn connect_errors_name_the_step() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = Config::for_tests();
    c.url = Some(format!("ws://127.0.0.1:{port}"));
    c.password = Some(Secret::new(PASSWORD));
    let err = client(c).server_info().unwrap_err();
    assert!(matches!(err, TnError::Connect { step: ConnectStep::Tcp, .. }), "{err:?}");
    assert!(err.to_string().contains("TRUENAS_PORT"), "{err}");

    let mut c = Config::for_tests();
    c.url = Some("ws://no-such-host.invalid:80".into());
    c.password = Some(Secret::new(PASSWORD));
    let err = client(c).server_info().unwrap_err();
    assert!(matches!(err, TnError::Connect { step: ConnectStep::Dns, .. }), "{err:?}");
    assert!(err.to_string().contains("TRUENAS_HOST"), "{err}");

    let err = client(Config::for_tests()).server_info().unwrap_err();
    assert!(matches!(err, TnError::NotConfigured(_)), "{err:?}");
    assert!(err.to_string().contains("TRUENAS_HOST"), "{err}");
}

#[test]
fn two_hundred_concurrent_calls_share_one_connection_out_of_order() {
    let (sim, server) = serve(options(SimVersion::V25_04));
    // Different latencies make answers overtake each other.
    sim.faults().set_latency("system.info", Duration::from_millis(30));
    sim.faults().set_latency("app.query", Duration::from_millis(2));
    let client = client(config_for(&server));
    client.server_info().expect("connects");
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            thread::spawn(move || {
                if i % 2 == 0 {
                    let v = client.call("system.info", json!([])).expect("system.info");
                    assert!(v.get("version").is_some(), "{v}");
                } else {
                    let v = client.call("app.query", json!([[["name", "=", "whoami"]]])).expect("app.query");
                    assert_eq!(v[0]["name"], "whoami", "{v}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no call failed");
    }
    assert_eq!(sim.connections(), 1);
    assert_eq!(logins(&sim), 1);
}

#[test]
fn jobs_report_progress_and_results() {
    for version in [SimVersion::V24_10, SimVersion::V25_04, SimVersion::V25_10] {
        let (sim, server) = serve(options(version));
        let client = client(config_for(&server));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let opts = JobOptions {
            progress: Some(Box::new(move |p| sink.lock().unwrap().push(p.percent))),
            ..Default::default()
        };
        let result = client.call_job("app.stop", json!(["whoami"]), opts).result;
        assert!(result.is_ok(), "{version:?}: {result:?}");
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty(), "{version:?}: no progress");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{version:?}: {seen:?}");
        let app = sim.apps().into_iter().find(|a| a["name"] == "whoami").unwrap();
        assert_eq!(app["state"], "STOPPED", "{version:?}");

        // Validation inside the job, and a missing app.
        let err = client.call_job("app.start", json!(["no-such-app"]), JobOptions::default()).result.unwrap_err();
        assert!(err.is_not_found(), "{version:?}: {err:?}");
    }
}

#[test]
fn jobs_finishing_before_their_response_still_complete() {
    let mut opts = options(SimVersion::V25_04);
    opts.job_step = Duration::ZERO;
    let (_sim, server) = serve(opts);
    let client = client(config_for(&server));
    for _ in 0..20 {
        client.call_job("app.stop", json!(["whoami"]), JobOptions::default()).result.expect("stop");
        client.call_job("app.start", json!(["whoami"]), JobOptions::default()).result.expect("start");
    }
}

#[test]
fn cancelling_a_job_aborts_it_on_the_nas() {
    let (sim, server) = serve(options(SimVersion::V25_04));
    sim.faults().set_never_finish_jobs(true);
    let client = client(config_for(&server));
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let opts = JobOptions {
        progress: Some(Box::new(move |p| {
            if p.percent >= 50.0 {
                trigger.cancel();
            }
        })),
        cancel: Some(cancel),
        ..Default::default()
    };
    let err = client.call_job("app.stop", json!(["whoami"]), opts).result.unwrap_err();
    let TnError::Cancelled { job_id: Some(id) } = err else { panic!("{err:?}") };
    assert_eq!(calls_to(&sim, "core.job_abort"), vec![json!([id])]);
    let job = client.job(id).expect("job is known");
    assert_eq!(job["state"], "ABORTED", "{job}");

    // A job deadline: Timeout{Job}.
    let opts = JobOptions { timeout: Some(Duration::from_millis(300)), ..Default::default() };
    let err = client.call_job("app.stop", json!(["whoami"]), opts).result.unwrap_err();
    assert!(matches!(err, TnError::Timeout { phase: TimeoutPhase::Job, .. }), "{err:?}");
}

#[test]
fn a_drop_mid_job_is_reconciled_and_a_restart_reports_outcome_unknown() {
    // Slow steps (and app.delete, which works a step before reaching 50 %): the job id surely reaches us before the
    // job is half done (a drop before that is a different case, `a_drop_under_a_change_is_never_replayed`).
    let mut opts = options(SimVersion::V25_04);
    opts.job_step = Duration::from_millis(150);
    let (sim, server) = serve(opts);
    let client = client(config_for(&server));
    client.server_info().unwrap();
    // The connection drops at 50 %; the job goes on server-side and the client picks up its result.
    sim.faults().drop_mid_job();
    client
        .call_job("app.delete", json!(["postgres"]), JobOptions::default())
        .result
        .expect("reconciled after reconnect");
    assert!(sim.apps().iter().all(|a| a["name"] != "postgres"), "the job really finished");
    assert_eq!(logins(&sim), 2, "one reconnect");
    assert!(!calls_to(&sim, "core.get_jobs").is_empty(), "reconciled with core.get_jobs");

    // A middleware restart forgets the job: the caller learns the outcome is unknown.
    sim.faults().set_never_finish_jobs(true);
    // The restart comes once the client reports the job parked at 50 % (so it has the job id), not on a timer.
    let (parked_tx, parked) = crossbeam_channel::unbounded();
    let restart = {
        let sim = sim.clone();
        thread::spawn(move || {
            parked.recv_timeout(Duration::from_secs(60)).expect("the job never reached 50 %");
            sim.restart();
        })
    };
    let progress = Box::new(move |p: truenas_mcp::truenas::JobProgress| {
        if p.percent >= 50.0 {
            let _ = parked_tx.send(());
        }
    });
    let opts = JobOptions { progress: Some(progress), ..Default::default() };
    let err = client.call_job("app.start", json!(["whoami"]), opts).result.unwrap_err();
    restart.join().unwrap();
    assert!(matches!(err, TnError::ConnectionLost { outcome_unknown: true, .. }), "{err:?}");
    assert!(err.to_string().contains("check the current state"), "{err}");
    sim.faults().set_never_finish_jobs(false);
    // The next call reconnects transparently.
    client.call("app.query", json!([])).expect("transparent reconnect");
}

#[test]
fn a_drop_under_a_change_is_never_replayed() {
    let (sim, server) = serve(options(SimVersion::V25_04));
    let client = client(config_for(&server));
    client.server_info().unwrap();
    let starts_before = calls_to(&sim, "app.start").len();
    // The very next frame the server receives (our call) drops the connection.
    sim.faults().drop_after_frames(1);
    let err = client.call_mutating("app.start", json!(["jellyfin"])).unwrap_err();
    assert!(matches!(err, TnError::ConnectionLost { outcome_unknown: true, .. }), "{err:?}");
    assert!(calls_to(&sim, "app.start").len() <= starts_before + 1, "never replayed");
    // A read call after the drop reconnects and works.
    client.call("app.query", json!([])).expect("reconnects");
    assert!(calls_to(&sim, "app.start").len() <= starts_before + 1, "never replayed");
    assert_eq!(logins(&sim), 2);

    // The same for a job whose id never reached us.
    sim.faults().drop_after_frames(1);
    let err = client.call_job("app.start", json!(["jellyfin"]), JobOptions::default()).result.unwrap_err();
    assert!(matches!(err, TnError::ConnectionLost { outcome_unknown: true, .. }), "{err:?}");

    // A read that is in flight during a drop fails at once with a retryable error.
    sim.faults().drop_after_frames(1);
    let err = client.call("app.query", json!([])).unwrap_err();
    assert!(matches!(err, TnError::ConnectionLost { outcome_unknown: false, .. }), "{err:?}");
    client.call("app.query", json!([])).expect("reconnects again");
}

#[test]
fn keepalive_outlives_the_idle_timeout_and_dead_peers_are_noticed() {
    let mut opts = options(SimVersion::V25_04);
    // The simulator's idle timeout is real time; the client's keepalive runs on a test clock moved on below.
    let idle = Duration::from_millis(300);
    opts.idle_timeout = idle;
    let (sim, server) = serve(opts);
    let keepalive = Duration::from_millis(100);
    let clock = ManualClock::new(false);
    let settings = ClientSettings { keepalive, clock: clock.clone(), ..ClientSettings::new(config_for(&server)) };
    let client = Client::network(settings);
    client.server_info().unwrap();
    // One keepalive interval on the clock every 30 ms for twice the idle timeout in real time (the pong timeout
    // is ten intervals, so a pong read late on a loaded machine is not taken for a dead peer).
    let quiet_since = Instant::now();
    while quiet_since.elapsed() < 2 * idle {
        clock.advance(keepalive);
        thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(sim.connections(), 1, "the pings kept the connection");
    client.call("app.query", json!([])).unwrap();
    assert_eq!(logins(&sim), 1, "no reconnect was needed");

    // A peer that stops answering is dropped by the client after the pong timeout; the next call reconnects.
    sim.faults().half_open_existing();
    for _ in 0..25 {
        clock.advance(keepalive);
        thread::sleep(Duration::from_millis(5));
    }
    // Normally the dead peer is already gone; on a very slow machine the first call may still meet it, and then it
    // must fail as "connection lost" (a read: safe to retry), never hang.
    let mut result = client.call("app.query", json!([]));
    if let Err(TnError::ConnectionLost { outcome_unknown: false, .. }) = result {
        result = client.call("app.query", json!([]));
    }
    result.expect("reconnects after the dead peer");
    assert_eq!(logins(&sim), 2);
}

#[test]
fn oversized_requests_are_refused_locally() {
    let (sim, server) = serve(options(SimVersion::V25_04));
    let client = client(config_for(&server));
    client.server_info().unwrap();
    let frames = sim.frames_received();
    let big = "x".repeat(70 * 1024);
    let err = client
        .call_mutating("app.create", json!([{"app_name": "big", "custom_compose_config_string": big}]))
        .unwrap_err();
    assert!(matches!(err, TnError::TooLarge { limit: 65536, .. }), "{err:?}");
    assert!(err.to_string().contains("65536"), "{err}");
    assert_eq!(sim.frames_received(), frames, "nothing was sent");
    client.call("app.query", json!([])).expect("the connection is still fine");
    assert_eq!(logins(&sim), 1);
}

#[test]
fn garbage_frames_are_skipped() {
    let (sim, server) = serve(options(SimVersion::V25_04));
    let client = client(config_for(&server));
    client.server_info().unwrap();
    sim.faults().send_garbage();
    client.call("app.query", json!([])).expect("the answer after the garbage still arrives");
    assert_eq!(logins(&sim), 1);
}

#[test]
fn an_expired_session_gets_exactly_one_relogin() {
    for version in [SimVersion::V24_10, SimVersion::V25_04] {
        let (sim, server) = serve(options(version));
        let client = client(config_for(&server));
        client.server_info().unwrap();
        sim.faults().expire_sessions();
        let apps = client.call("app.query", json!([])).expect("one transparent re-login");
        assert!(apps.as_array().is_some());
        assert_eq!(logins(&sim), 2, "{version:?}");
        client.call("app.query", json!([])).unwrap();
        assert_eq!(logins(&sim), 2, "{version:?}");
    }
}

#[test]
fn legacy_subscriptions_use_sub_and_ready() {
    let (sim, server) = serve(options(SimVersion::V24_10));
    let client = client(config_for(&server));
    let ids = client.call("app.container_ids", json!(["whoami"])).expect("container ids");
    let container = ids.as_object().and_then(|m| m.keys().next().cloned()).expect("a container");
    let name = format!(
        "app.container_log_follow:{}",
        json!({"app_name": "whoami", "container_id": container, "tail_lines": 3})
    );
    let first = client.subscribe(&name).expect("subscribes");
    let second = client.subscribe(&name).expect("joins");
    for sub in [&first, &second] {
        match sub.recv_timeout(Duration::from_secs(5)) {
            Some(SubEvent::Added { fields, .. }) => assert!(fields.get("data").is_some(), "{fields}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(calls_to(&sim, "core.subscribe").is_empty(), "DDP subscribes with sub, not a method call");
    drop(first);
    drop(second);
    // The connection stays usable after the unsub.
    client.call("app.query", json!([])).expect("still connected");
    assert_eq!(logins(&sim), 1);
}

#[test]
fn subscriptions_fan_out_end_and_unsubscribe() {
    let (sim, server) = serve(options(SimVersion::V25_04));
    let client = client(config_for(&server));
    let ids = client.call("app.container_ids", json!(["whoami"])).expect("container ids");
    let container = ids.as_object().and_then(|m| m.keys().next().cloned()).expect("a container");
    let name = format!(
        "app.container_log_follow:{}",
        json!({"app_name": "whoami", "container_id": container, "tail_lines": 5})
    );
    let first = client.subscribe(&name).expect("subscribes");
    let second = client.subscribe(&name).expect("joins");
    assert_eq!(calls_to(&sim, "core.subscribe").iter().filter(|p| p[0] == json!(name)).count(), 1);
    for sub in [&first, &second] {
        match sub.recv_timeout(Duration::from_secs(5)) {
            Some(SubEvent::Added { fields, .. }) => assert!(fields.get("data").is_some(), "{fields}"),
            other => panic!("{other:?}"),
        }
    }
    drop(first);
    assert!(second.recv_timeout(Duration::from_secs(5)).is_some(), "the other subscriber still gets events");
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(5);
    while calls_to(&sim, "core.unsubscribe").is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(calls_to(&sim, "core.unsubscribe").len(), 1);

    // An event source that fails ends the subscription with the mapped error.
    let bad = format!("app.container_log_follow:{}", json!({"app_name": "jellyfin", "container_id": "nope"}));
    match client.subscribe(&bad) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(sub) => match sub.recv_timeout(Duration::from_secs(5)) {
            Some(SubEvent::Ended(Some(_))) => {}
            other => panic!("{other:?}"),
        },
    }

    // Losing the connection ends live subscriptions.
    let sub = client.subscribe(&name).expect("subscribes again");
    sim.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ended = false;
    while Instant::now() < deadline && !ended {
        ended = matches!(sub.recv_timeout(Duration::from_millis(200)), Some(SubEvent::Ended(_)));
    }
    assert!(ended, "connection loss ends the subscription");
}

/// A scripted middleware for the paths the simulator never takes (no `auth.login_ex`, unknown login answers, a 404
/// on `/api/current`). JSON-RPC at `/api/current`, DDP at `/websocket`; `answer(method, params)` gives the result,
/// `{"error": …}` for an error, or `{"close": 1008}` to close the socket as the UI allowlist does. Records the
/// methods called.
fn scripted(answer: fn(&str, &Value) -> Value, refuse_path: Option<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    use tungstenite::handshake::server::{ErrorResponse, Request, Response};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            thread::spawn(move || {
                let mut path = String::new();
                // The signature is tungstenite's `Callback`; its error type is what it is.
                #[allow(clippy::result_large_err)]
                let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    path = req.uri().path().to_string();
                    if Some(path.as_str()) == refuse_path {
                        return Err(tungstenite::http::Response::builder().status(404).body(None).unwrap());
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else { return };
                let ddp = path == "/websocket";
                while let Ok(msg) = ws.read() {
                    let tungstenite::Message::Text(text) = msg else { continue };
                    let req: Value = serde_json::from_str(&text).unwrap();
                    let reply = if ddp && req["msg"] == "connect" {
                        json!({"msg": "connected", "session": "s"})
                    } else if ddp && req["msg"] == "sub" {
                        json!({"msg": "ready", "subs": [req["id"]]})
                    } else {
                        let method = req["method"].as_str().unwrap_or("").to_string();
                        log.lock().unwrap().push(method.clone());
                        let out = answer(&method, &req["params"]);
                        if out.get("close") == Some(&json!(1008)) {
                            let frame = tungstenite::protocol::CloseFrame {
                                code: tungstenite::protocol::frame::coding::CloseCode::Policy,
                                reason: "You are not allowed to access this resource".into(),
                            };
                            let _ = ws.close(Some(frame));
                            let _ = ws.flush();
                            return;
                        }
                        match (ddp, out.get("error")) {
                            (true, Some(e)) => json!({"msg": "result", "id": req["id"], "error": e}),
                            (true, None) => json!({"msg": "result", "id": req["id"], "result": out}),
                            (false, Some(e)) => json!({"jsonrpc": "2.0", "id": req["id"], "error": e}),
                            (false, None) => json!({"jsonrpc": "2.0", "id": req["id"], "result": out}),
                        }
                    };
                    if ws.send(tungstenite::Message::Text(reply.to_string())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, calls)
}

fn scripted_client(url: &str) -> Client {
    let mut c = Config::for_tests();
    c.url = Some(url.to_string());
    c.username = USER.into();
    c.password = Some(Secret::new(PASSWORD));
    c.connect_timeout = Duration::from_secs(5);
    client(c)
}

#[test]
fn login_falls_back_to_auth_login_when_login_ex_does_not_exist() {
    let (url, calls) = scripted(
        |method, _| match method {
            "auth.login_ex" => json!({"error": {"code": -32601, "message": "Method does not exist"}}),
            "auth.login" => json!(true),
            "system.info" => json!({"version": "TrueNAS-25.04.0"}),
            "core.subscribe" => json!("sub-1"),
            _ => Value::Null,
        },
        None,
    );
    let info = scripted_client(&url).server_info().expect("logs in with auth.login");
    assert_eq!(info.version, "25.04.0");
    assert_eq!(*calls.lock().unwrap(), vec!["auth.login_ex", "auth.login", "system.info", "core.subscribe"]);
}

#[test]
fn an_unknown_login_answer_is_a_failure() {
    let (url, calls) = scripted(
        |method, _| match method {
            "auth.login_ex" => json!({"response_type": "SCRAM_RESPONSE", "scram_type": "SERVER_FIRST_RESPONSE"}),
            _ => Value::Null,
        },
        None,
    );
    let err = scripted_client(&url).server_info().unwrap_err();
    assert!(matches!(&err, TnError::Auth(AuthFailure::Unknown(t)) if t == "SCRAM_RESPONSE"), "{err:?}");
    assert_eq!(*calls.lock().unwrap(), vec!["auth.login_ex"], "one login attempt, no loop");
}

#[test]
fn a_404_on_api_current_falls_back_to_legacy() {
    let (url, calls) = scripted(
        |method, _| match method {
            "auth.login" => json!(true),
            "system.info" => json!({"version": "TrueNAS-SCALE-24.10.2.4"}),
            "app.query" => json!([{"name": "web"}]),
            _ => Value::Null,
        },
        Some("/api/current"),
    );
    let client = scripted_client(&url);
    let info = client.server_info().expect("falls back to /websocket");
    assert_eq!(info.protocol, WireProtocol::Legacy);
    assert_eq!((info.version.as_str(), info.version_tuple), ("24.10.2.4", (24, 10)));
    assert_eq!(client.call("app.query", json!([])).unwrap(), json!([{"name": "web"}]));
    assert_eq!(*calls.lock().unwrap(), vec!["auth.login", "system.info", "app.query"]);
}

#[test]
fn an_account_without_system_info_still_learns_the_version() {
    let (url, calls) = scripted(
        |method, _| match method {
            "auth.login_ex" => json!({"response_type": "SUCCESS", "user_info": null, "authenticator": "LEVEL_1"}),
            "system.info" => json!({"error": {"code": -32001, "message": "Method call error",
                "data": {"error": 13, "errname": "EACCES", "reason": "[EACCES] Not authorized"}}}),
            "system.version" => json!("TrueNAS-25.10.1"),
            "core.subscribe" => json!("sub-1"),
            _ => Value::Null,
        },
        None,
    );
    let info = scripted_client(&url).server_info().expect("connects without system.info");
    assert_eq!((info.version.as_str(), info.version_tuple), ("25.10.1", (25, 10)));
    assert_eq!(*calls.lock().unwrap(), vec!["auth.login_ex", "system.info", "system.version", "core.subscribe"]);
}

#[test]
fn an_allowlist_refusal_names_the_setting() {
    let (url, _calls) = scripted(|_, _| json!({"close": 1008}), None);
    let err = scripted_client(&url).server_info().unwrap_err();
    assert!(matches!(err, TnError::Connect { step: ConnectStep::Upgrade, .. }), "{err:?}");
    assert!(err.to_string().contains("UI allowlist"), "{err}");
}

// ----- the connector seam and the injected clock --------------------------------------------------------------

/// Counts the keepalive pings the client writes (a client ping frame starts with 0x89: FIN + opcode 9).
struct PingCounter {
    inner: truenas_mcp::sim::MemStream,
    pings: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::io::Read for PingCounter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl std::io::Write for PingCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.first() == Some(&0x89) {
            self.pings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl ByteStream for PingCounter {
    fn set_read_timeout(&mut self, read: Option<Duration>) -> std::io::Result<()> {
        self.inner.set_read_timeout(read)
    }
    fn set_write_timeout(&mut self, write: Option<Duration>) -> std::io::Result<()> {
        self.inner.set_write_timeout(write)
    }
}

/// The simulator over the in-memory pipe, counting pings; or, without a simulator, a NAS that cannot be reached.
struct TestConnector {
    sim: Option<Simulator>,
    opens: std::sync::atomic::AtomicUsize,
    pings: Arc<std::sync::atomic::AtomicUsize>,
}

impl Connector for TestConnector {
    fn url(&self, _config: &Config, path: &str) -> Result<String, TnError> {
        Ok(format!("ws://test.invalid{path}"))
    }

    fn open(&self, _dial: &Dial) -> Result<Stream, TnError> {
        self.opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match &self.sim {
            Some(sim) => {
                Ok(Stream::Other(Box::new(PingCounter { inner: sim.connect_in_memory(), pings: self.pings.clone() })))
            }
            None => Err(TnError::Connect {
                step: ConnectStep::Tcp,
                detail: "connection refused".into(),
                fix: "start the NAS".into(),
            }),
        }
    }
}

fn manual_client(sim: Option<Simulator>, clock: &Arc<ManualClock>) -> (Client, Arc<TestConnector>) {
    let connector = Arc::new(TestConnector { sim, opens: Default::default(), pings: Default::default() });
    let mut config = Config::for_tests();
    config.username = USER.into();
    config.password = Some(Secret::new(PASSWORD));
    let settings = ClientSettings { clock: clock.clone(), ..ClientSettings::new(config) };
    (Client::new(settings, connector.clone()), connector)
}

/// Poll `ready` (each look ≤ 5 ms apart); a hang fails the test instead of blocking it.
fn eventually(what: &str, ready: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < give_up, "{what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn keepalive_pings_when_the_injected_clock_says_so() {
    let clock = ManualClock::new(false);
    let (client, connector) = manual_client(Some(Simulator::new(options(SimVersion::V25_04))), &clock);
    client.server_info().expect("logs in over the test connector");
    // The versions GET and the WebSocket.
    let opened = connector.opens.load(std::sync::atomic::Ordering::SeqCst);
    let pings = || connector.pings.load(std::sync::atomic::Ordering::SeqCst);
    clock.advance(Duration::from_secs(24));
    client.call("app.query", json!([])).expect("a call");
    assert_eq!(pings(), 0, "no ping before the 25 s keepalive interval");
    clock.advance(Duration::from_secs(1));
    eventually("no ping after the keepalive interval passed on the clock", || pings() >= 1);
    clock.advance(Duration::from_secs(25));
    eventually("no second ping", || pings() >= 2);
    client.call("app.query", json!([])).expect("the pinged connection still works");
    assert_eq!(connector.opens.load(std::sync::atomic::Ordering::SeqCst), opened, "no reconnect");
}

#[test]
fn backoff_waits_for_the_clock_and_never_holds_up_an_abort() {
    let clock = ManualClock::new(false);
    let (client, connector) = manual_client(None, &clock);
    let opens = || connector.opens.load(std::sync::atomic::Ordering::SeqCst);
    let err = client.call("app.query", json!([])).unwrap_err();
    assert!(matches!(err, TnError::Connect { step: ConnectStep::Tcp, .. }), "{err:?}");
    assert_eq!(opens(), 1);

    // Inside the back-off a call waits for the clock, not for a sleep: nothing is tried until time moves.
    let c2 = client.clone();
    let (tx, waiting) = crossbeam_channel::bounded(1);
    thread::spawn(move || tx.send(c2.call("app.query", json!([]))));
    // A job cancelled meanwhile ends at once, without waiting for the back-off or trying to connect.
    let cancel = CancelToken::new();
    let c3 = client.clone();
    let token = cancel.clone();
    let (jtx, job) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let opts = JobOptions { cancel: Some(token), ..Default::default() };
        jtx.send(c3.call_job("app.stop", json!(["whoami"]), opts))
    });
    assert!(waiting.recv_timeout(Duration::from_millis(50)).is_err(), "the call waits for the back-off");
    cancel.cancel();
    let outcome = job.recv_timeout(Duration::from_secs(20)).expect("the cancelled job ends without the clock moving");
    assert!(matches!(outcome.result, Err(TnError::Cancelled { job_id: None })), "{outcome:?}");
    assert_eq!(opens(), 1, "no attempt while backing off");

    clock.advance(Duration::from_millis(250));
    let second = waiting.recv_timeout(Duration::from_secs(20)).expect("retried once the clock passed the back-off");
    assert!(matches!(second, Err(TnError::Connect { .. })), "{second:?}");
    assert_eq!(opens(), 2, "exactly one retry");
}

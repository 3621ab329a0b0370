//! `truenas-mcp check`: a doctor for the configuration — one line per step, ✓ or ✗ with the fix.
//!
//! DNS, TCP and TLS are probed here step by step (so a failure names its step and the certificate is shown even
//! when verification fails); endpoint detection, login and version come from the real client.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::certificate;
use crate::audit::AuditLog;
use crate::config::fleet::{Fleet, NasEntry};
use crate::config::{AuditTarget, Config, Protocol};
use crate::truenas::error::TnError;
use crate::truenas::transport::{tls_connector, Endpoint};
use crate::truenas::Client;

/// Collects the report lines and whether every step passed.
#[derive(Default)]
struct Report {
    text: String,
    failed: bool,
}

impl Report {
    fn ok(&mut self, step: &str, what: impl AsRef<str>) {
        self.text.push_str(&format!("✓ {step}: {}\n", what.as_ref()));
    }
    fn fail(&mut self, step: &str, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failed = true;
        let fix = fix.as_ref();
        if fix.is_empty() {
            self.text.push_str(&format!("✗ {step}: {}\n", what.as_ref()));
        } else {
            self.text.push_str(&format!("✗ {step}: {} — fix: {fix}\n", what.as_ref()));
        }
    }
    /// A step that works but with a risk the person should know of; it does not fail the check.
    fn warn(&mut self, step: &str, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.text.push_str(&format!("⚠ {step}: {} — fix: {}\n", what.as_ref(), fix.as_ref()));
    }
    fn note(&mut self, line: impl AsRef<str>) {
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }
}

/// Host, port and scheme of the configured endpoint (the client's own parser).
fn host_port(config: &Config) -> Result<(String, u16, Protocol), String> {
    let base = config.base_url().map_err(|e| e.to_string())?;
    let e = Endpoint::parse(&base).map_err(|e| e.to_string())?;
    Ok((e.host, e.port, if e.secure { Protocol::Wss } else { Protocol::Ws }))
}

fn is_loopback_host(host: &str, addrs: &[SocketAddr]) -> bool {
    host == "localhost" || (!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()))
}

fn describe(cert: &certificate::CertSummary) -> String {
    let signer = if cert.self_signed { "self-signed".to_string() } else { format!("issued by {}", cert.issuer) };
    let expired = if cert.not_after_key < certificate::now_key() { " (EXPIRED)" } else { "" };
    format!("certificate {} ({signer}), valid until {}{expired}", cert.subject, cert.not_after)
}

/// TLS handshake (verification as configured); on failure, a second unverified handshake shows the certificate.
fn check_tls(r: &mut Report, config: &Config, host: &str, addr: SocketAddr) -> bool {
    let timeout = config.connect_timeout;
    let handshake = |verify: bool| -> Result<Option<certificate::CertSummary>, String> {
        let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("TCP: {e}"))?;
        // Blocking handshake bounded by socket timeouts (set before TLS; native-tls itself is blocking here).
        tcp.set_read_timeout(Some(timeout)).ok();
        tcp.set_write_timeout(Some(timeout)).ok();
        let mut settings = config.clone();
        settings.ssl_verify = verify && config.ssl_verify;
        let connector = tls_connector(&settings).map_err(|e| e.to_string())?;
        let stream = connector.connect(host, tcp).map_err(|e| match e {
            native_tls::HandshakeError::Failure(e) => e.to_string(),
            native_tls::HandshakeError::WouldBlock(_) => "handshake timed out".to_string(),
        })?;
        let cert = stream.peer_certificate().ok().flatten().and_then(|c| c.to_der().ok());
        Ok(cert.as_deref().and_then(certificate::summarize))
    };
    match handshake(true) {
        Ok(cert) => {
            let desc = cert.as_ref().map(describe).unwrap_or_else(|| "certificate unreadable".into());
            if !config.ssl_verify {
                r.warn(
                    "TLS",
                    format!(
                        "{desc}; NOT verified (TRUENAS_SSL_VERIFY=false, --insecure): anyone on the network path can \
                         pose as the NAS and receive the password or API key"
                    ),
                    "download the certificate (TrueNAS: Credentials > Certificates), set \
                     TRUENAS_CA_CERT=/path/to/it.pem and drop TRUENAS_SSL_VERIFY=false",
                );
            } else {
                let how = if config.ca_cert.is_some() {
                    "verified with TRUENAS_CA_CERT"
                } else {
                    "verified with the system roots"
                };
                r.ok("TLS", format!("{desc}; {how}"));
            }
            true
        }
        Err(why) => {
            let seen = handshake(false).ok().flatten();
            let desc = seen.as_ref().map(|c| format!("; the server presents {}", describe(c))).unwrap_or_default();
            let fix = if seen.is_some() {
                "download the certificate (TrueNAS: Credentials > Certificates) and set TRUENAS_CA_CERT=/path/to/it.pem; \
                 TRUENAS_SSL_VERIFY=false only as a last resort"
            } else {
                "check that TRUENAS_PORT is the HTTPS port of the web UI, or use TRUENAS_PROTOCOL=ws for plain HTTP"
            };
            r.fail("TLS", format!("certificate verification failed: {why}{desc}"), fix);
            false
        }
    }
}

/// What to do when [`plain_ws_to_a_tls_port`] finds TLS.
pub(super) const TLS_PORT_FIX: &str = "use wss:// (TRUENAS_PROTOCOL=wss)";

/// When plain `ws://` could not connect, whether the port speaks TLS (the TrueNAS web UI's HTTPS port answers plain
/// HTTP with an error or a reset, which says nothing of why): the problem in words, or `None` if not so. One TLS
/// handshake without verification, bounded by the connect timeout; only run after a failure.
pub(super) fn plain_ws_to_a_tls_port(config: &Config) -> Option<String> {
    let (host, port, protocol) = host_port(config).ok()?;
    if protocol != Protocol::Ws || config.mock {
        return None;
    }
    let addr = (host.as_str(), port).to_socket_addrs().ok()?.next()?;
    let tcp = TcpStream::connect_timeout(&addr, config.connect_timeout).ok()?;
    tcp.set_read_timeout(Some(config.connect_timeout)).ok()?;
    tcp.set_write_timeout(Some(config.connect_timeout)).ok()?;
    let connector = native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
        .ok()?;
    connector.connect(&host, tcp).ok()?;
    Some(format!("the NAS speaks TLS on port {port}, but the connection used plain ws://"))
}

/// Run every step against the configured NAS (or the embedded simulator).
pub fn run_check(fleet: &Fleet, rest: &[String]) -> Result<ExitCode> {
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        super::out(
            "truenas-mcp check [--nas NAME]\n\nDiagnose the configuration step by step: settings, DNS, TCP, TLS, endpoint, login,\n\
             TrueNAS version and the apps service, for every NAS of the fleet file (or the one --nas names).\n\
             Exit code 0 only when everything works.\n",
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let (nas, others) = super::call::take_nas(rest)?;
    if let Some(other) = others.first() {
        bail!("unknown argument '{}' for check (see check --help)", crate::jsonrpc::clip(other));
    }
    let entries: Vec<&NasEntry> = match &nas {
        Some(n) => vec![fleet.get(n).ok_or_else(|| {
            anyhow::anyhow!("unknown nas '{}' (the fleet has: {})", crate::jsonrpc::clip(n), fleet.names())
        })?],
        None => fleet.entries.iter().collect(),
    };
    let mut failed = false;
    for entry in entries {
        // One NAS (the environment's) reads as before; a fleet names each NAS before its report.
        if fleet.entries.len() > 1 || fleet.from_file {
            super::out(&format!("== nas {} ==\n", entry.name))?;
        }
        let report = diagnose(&entry.config);
        super::out(&report.text)?;
        failed |= report.failed;
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn diagnose(config: &Config) -> Report {
    let mut r = Report::default();
    r.note("settings in effect:");
    for (k, v) in config.effective() {
        r.note(format!("  {k:<32} {v}"));
    }
    // The same start-up check serve and call make: they refuse to start without a writable audit log.
    match &config.audit {
        AuditTarget::Off => r.ok("audit log", "off (TRUENAS_AUDIT_LOG=off): changes are not recorded"),
        AuditTarget::File(path) => match AuditLog::new(&config.audit, "").open() {
            Ok(()) => r.ok("audit log", format!("{} (writable)", path.display())),
            // The message names the setting and the fix.
            Err(e) => r.fail("audit log", e, ""),
        },
    }
    let credential = if config.password.is_some() {
        "a password"
    } else if config.api_key.is_some() {
        "an API key"
    } else {
        "no credential"
    };

    if config.mock {
        let memory = match &config.mock_state {
            Some(path) => format!("; apps kept in {}", path.display()),
            None => "; apps reset on every start (TRUENAS_MOCK_STATE keeps them)".into(),
        };
        r.ok("configuration", format!("mock mode: the embedded TrueNAS simulator, no network{memory}"));
    } else {
        let (host, port, protocol) = match host_port(config) {
            Ok(x) => x,
            Err(e) => {
                r.fail("configuration", e, "");
                return r;
            }
        };
        if config.password.is_none() && config.api_key.is_none() {
            r.fail(
                "configuration",
                "no credential configured",
                "set TRUENAS_PASSWORD (recommended) or TRUENAS_API_KEY",
            );
            return r;
        }
        r.ok(
            "configuration",
            format!("{}://{host}:{port} as {} with {credential}", protocol.as_str(), config.username),
        );
        let started = Instant::now();
        let addrs: Vec<SocketAddr> = match (host.as_str(), port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                r.fail(
                    "DNS",
                    format!("cannot resolve '{host}': {e}"),
                    "check TRUENAS_HOST (a hostname or IP address of the NAS)",
                );
                return r;
            }
        };
        let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        r.ok("DNS", format!("{host} → {} ({} ms)", list.join(", "), started.elapsed().as_millis()));
        let started = Instant::now();
        let mut connected = None;
        let mut last_err = String::new();
        for a in &addrs {
            match TcpStream::connect_timeout(a, config.connect_timeout) {
                Ok(_) => {
                    connected = Some(*a);
                    break;
                }
                Err(e) => last_err = format!("{a}: {e}"),
            }
        }
        let Some(addr) = connected else {
            r.fail(
                "TCP",
                format!("cannot connect to {host}:{port} ({last_err})"),
                format!(
                    "check that the NAS is up and TRUENAS_PORT is its web UI port ({} for {})",
                    if protocol == Protocol::Wss { 443 } else { 80 },
                    protocol.as_str()
                ),
            );
            return r;
        };
        r.ok("TCP", format!("connected to {addr} in {} ms", started.elapsed().as_millis()));
        if protocol == Protocol::Wss && !check_tls(&mut r, config, &host, addr) {
            return r;
        }
        if config.api_key.is_some() && config.password.is_none() {
            if protocol == Protocol::Ws && !is_loopback_host(&host, &addrs) {
                if config.allow_insecure_api_key {
                    r.fail(
                        "API key",
                        "sending the API key over plain ws:// (TRUENAS_ALLOW_INSECURE_API_KEY=true): TrueNAS 25.04+ revokes it permanently",
                        "use TRUENAS_PROTOCOL=wss, or a password",
                    );
                } else {
                    r.fail(
                        "API key",
                        "refusing to send the API key over plain ws:// to a non-loopback host: TrueNAS 25.04+ would revoke it permanently",
                        "use TRUENAS_PROTOCOL=wss (port 443), or TRUENAS_PASSWORD",
                    );
                    return r;
                }
            } else {
                r.ok("API key", "sent only over an encrypted or loopback connection");
            }
        }
    }

    let client = crate::sim::client_for(config);
    let started = Instant::now();
    let info = match client.server_info() {
        Ok(i) => i,
        Err(e @ TnError::Connect { .. }) => {
            match plain_ws_to_a_tls_port(config) {
                Some(hint) => r.fail("endpoint", hint, TLS_PORT_FIX),
                None => r.fail("endpoint", e.to_string(), ""),
            }
            return r;
        }
        Err(e) => {
            r.fail("login", e.to_string(), "");
            return r;
        }
    };
    r.ok("endpoint", format!("{} ({})", info.endpoint, info.api_choice()));
    r.ok(
        "login",
        format!(
            "{} with {} in {} ms",
            info.username.as_deref().unwrap_or("(api key owner)"),
            info.auth_method.replace('_', " "),
            started.elapsed().as_millis()
        ),
    );
    r.ok("version", format!("TrueNAS {} (round trip {:.1} ms)", info.version, info.round_trip.as_secs_f64() * 1000.0));
    check_apps(&mut r, &client);
    r
}

fn check_apps(r: &mut Report, client: &Client) {
    let status = client.call("docker.status", json!([]));
    let pool = client.call("docker.config", json!([])).ok().and_then(|c| c.get("pool").cloned()).unwrap_or(Value::Null);
    match status {
        Ok(s) => {
            let state = s.get("status").and_then(Value::as_str).unwrap_or("UNKNOWN");
            let desc = s.get("description").and_then(Value::as_str).unwrap_or("");
            match (state, pool.as_str()) {
                ("RUNNING", Some(p)) => r.ok("apps", format!("Docker service RUNNING on pool {p}")),
                (_, None) => r.fail(
                    "apps",
                    "no pool configured for apps (Docker is UNCONFIGURED)",
                    "in the TrueNAS UI open Apps > Configuration > Choose Pool",
                ),
                (state, Some(p)) => r.fail(
                    "apps",
                    format!("Docker service is {state} on pool {p}: {desc}"),
                    "check Apps in the TrueNAS UI (the service must be RUNNING)",
                ),
            }
        }
        Err(e) => r.fail("apps", format!("cannot read the apps service status: {e}"), ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_sources(&|_| None, &map).unwrap()
    }

    #[test]
    fn host_port_from_settings() {
        assert_eq!(host_port(&cfg(&[("TRUENAS_HOST", "nas")])).unwrap(), ("nas".into(), 443, Protocol::Wss));
        assert_eq!(
            host_port(&cfg(&[("TRUENAS_URL", "ws://10.1.2.3:81/api/current")])).unwrap(),
            ("10.1.2.3".into(), 81, Protocol::Ws)
        );
        assert_eq!(
            host_port(&cfg(&[("TRUENAS_HOST", "fd00::2"), ("TRUENAS_PORT", "8443")])).unwrap(),
            ("fd00::2".into(), 8443, Protocol::Wss)
        );
        assert!(host_port(&cfg(&[])).unwrap_err().contains("TRUENAS_HOST"));
    }

    #[test]
    fn missing_host_and_credentials_fail_first() {
        let r = diagnose(&cfg(&[]));
        assert!(r.failed);
        assert!(r.text.contains("✗ configuration: no TrueNAS host configured"), "{}", r.text);
        let r = diagnose(&cfg(&[("TRUENAS_HOST", "127.0.0.1")]));
        assert!(r.text.contains("✗ configuration: no credential configured — fix: set TRUENAS_PASSWORD"), "{}", r.text);
        assert!(r.text.contains("TRUENAS_PASSWORD                 (not set)"), "{}", r.text);
    }

    #[test]
    fn report_lines_never_contain_secrets() {
        let r = diagnose(&cfg(&[("TRUENAS_HOST", "nonexistent.invalid"), ("TRUENAS_PASSWORD", "hunter2-secret")]));
        assert!(!r.text.contains("hunter2"), "{}", r.text);
        assert!(r.text.contains("✗ DNS: cannot resolve 'nonexistent.invalid'"), "{}", r.text);
    }
}

//! `test_connection`: connect, log in, and say what works and what to fix.

use serde::Deserialize;
use serde_json::json;

use super::failure::apps_service_fix;
use super::{Outcome, Tools};
use crate::mcp::tool::CallContext;
use crate::truenas::error::{AuthFailure, TnError};
use crate::truenas::WireProtocol;

/// `test_connection` takes no arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

pub fn test_connection(tools: &Tools, _args: NoArgs, _ctx: &CallContext) -> Outcome {
    if !tools.nas_configured() {
        let problem = "no TrueNAS is configured";
        let fix = "set TRUENAS_HOST (and TRUENAS_PASSWORD or TRUENAS_API_KEY), or start the server with --mock to \
                   try the built-in simulator";
        return Outcome::error_with(
            format!("{problem}: {fix}"),
            json!({"connected": false, "problems": [{"problem": problem, "fix": fix}]}),
        );
    }
    let apps = match tools.apps() {
        Ok(a) => a,
        Err(e) => {
            let fix = fix_for(&e);
            let problem = e.to_string();
            return Outcome::error_with(
                format!("cannot connect to TrueNAS: {problem}\nfix: {fix}"),
                json!({"connected": false, "problems": [{"problem": problem, "fix": fix}]}),
            );
        }
    };
    let info = apps.info().clone();
    let mut problems: Vec<(String, String)> = Vec::new();
    if info.endpoint.starts_with("ws://") && !is_loopback(&info.endpoint) && !tools.config().mock {
        problems.push((
            "the connection is not encrypted (ws://): the password travels in clear text".into(),
            "use TRUENAS_PROTOCOL=wss (the default) with TRUENAS_CA_CERT for a self-signed certificate".into(),
        ));
    }
    let mut docker = json!({});
    match apps.docker_status() {
        Ok(s) => {
            if !s.is_running() {
                let desc =
                    s.description.as_deref().filter(|d| !d.is_empty()).map(|d| format!(": {d}")).unwrap_or_default();
                problems.push((
                    format!("the apps service is not running (docker status {}{desc})", s.status),
                    apps_service_fix(&s.status).to_string(),
                ));
            }
            docker["status"] = json!(s.status);
            docker["description"] = json!(s.description);
        }
        Err(e) => problems.push((format!("cannot read docker.status: {e}"), fix_for(&e))),
    }
    match apps.docker_config() {
        Ok(c) => {
            // UNCONFIGURED already says "no pool" with the same fix.
            if c.pool.is_none() && docker["status"] != "UNCONFIGURED" {
                problems.push((
                    "no pool is configured for apps".into(),
                    "choose a pool in the TrueNAS web UI: Apps > Configuration > Choose Pool".into(),
                ));
            }
            docker["pool"] = json!(c.pool);
            docker["dataset"] = json!(c.dataset);
        }
        Err(e) => problems.push((format!("cannot read docker.config: {e}"), fix_for(&e))),
    }
    let protocol = match info.protocol {
        WireProtocol::JsonRpc => "jsonrpc",
        WireProtocol::Legacy => "legacy",
    };
    let round_trip_ms = info.round_trip.as_secs_f64() * 1000.0;
    let mut text = format!(
        "Connected to TrueNAS {} at {} ({}), logged in with {} as {}; round trip {:.1} ms.\nApps service: {} \
         (pool: {}).",
        info.version,
        info.endpoint,
        info.api_choice(),
        info.auth_method,
        info.username.as_deref().unwrap_or("(unknown user)"),
        round_trip_ms,
        docker["status"].as_str().unwrap_or("unknown"),
        docker["pool"].as_str().unwrap_or("none"),
    );
    if problems.is_empty() {
        text.push_str("\nNo problems found.");
    }
    for (p, f) in &problems {
        text.push_str(&format!("\nProblem: {p}\n  fix: {f}"));
    }
    let structured = json!({
        "connected": true,
        "version": info.version,
        "endpoint": info.endpoint,
        "protocol": protocol,
        "auth_method": info.auth_method,
        "username": info.username,
        "round_trip_ms": round_trip_ms,
        "docker": docker,
        "problems": problems.iter().map(|(p, f)| json!({"problem": p, "fix": f})).collect::<Vec<_>>(),
    });
    Outcome::ok(text, structured)
}

fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

/// The concrete next step for a connection or login failure.
fn fix_for(e: &TnError) -> String {
    match e {
        TnError::NotConfigured(_) => "set TRUENAS_HOST (or TRUENAS_URL), or use --mock".into(),
        TnError::Connect { fix, .. } => fix.clone(),
        TnError::Auth(AuthFailure::BadCredentials) => {
            "check TRUENAS_USERNAME and TRUENAS_PASSWORD (or TRUENAS_API_KEY) against the TrueNAS account".into()
        }
        TnError::Auth(AuthFailure::Expired) => "the password or API key expired or was revoked (TrueNAS 25.04+ \
             revokes an API key sent over plain ws://): create a new key and connect with wss://"
            .into(),
        TnError::Auth(AuthFailure::Denied) => {
            "give the account API access in the TrueNAS web UI: a group with a privilege that has a role".into()
        }
        TnError::Auth(AuthFailure::KeyRefused) => {
            "create a new API key (Credentials > Users > API Keys) and set TRUENAS_API_KEY to it; use wss://".into()
        }
        TnError::Auth(AuthFailure::OtpRequired) => {
            "the account uses two-factor authentication: create a service account without 2FA for this server".into()
        }
        TnError::Auth(AuthFailure::NoCredentials) => "set TRUENAS_PASSWORD (or TRUENAS_API_KEY)".into(),
        TnError::Auth(AuthFailure::InsecureTransportRefused) => {
            "use wss:// (TRUENAS_PROTOCOL=wss) for API keys, or a password".into()
        }
        TnError::Auth(AuthFailure::Redirect(to)) => {
            format!("connect to the active controller instead: {}", to.join(", "))
        }
        TnError::NotAuthorized(_) => "give the account the APPS_READ/APPS_WRITE and DOCKER_READ roles".into(),
        TnError::Timeout { .. } => "check that TRUENAS_HOST and TRUENAS_PORT point at the NAS web interface and \
             that no firewall blocks it"
            .into(),
        _ => "run `truenas-mcp check` for a step-by-step diagnosis".into(),
    }
}

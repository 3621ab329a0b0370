//! Connecting: open a byte stream through the [`Connector`], upgrade it to a WebSocket (JSON-RPC first, the legacy
//! endpoint when the server looks like 24.10), log in, learn the release and subscribe to job events. The result is
//! the logged-in connection and the server's facts; the actor decides when to call this (back-off, reconnects).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use log::{debug, info, log_enabled, warn, Level};
use serde_json::{json, Value};

use super::auth;
use super::codec::{self, Incoming};
use super::error::{AuthFailure, ConnectStep, TimeoutPhase, TnError};
use super::transport::{self, Connector, Dial, OpenError, Socket};
use super::types::{ClientSettings, ServerInfo, WireProtocol};
use super::wire::{log_out, lost, Conn, ReadOutcome};
use crate::config::ApiMode;

/// Largest request before login (the server closes the socket on more).
pub const FRAME_LIMIT_ANONYMOUS: usize = 8 * 1024;
/// Logins may be slow (failure delays of 1–5 s server-side).
const MIN_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in connection and what was learned on the way.
pub struct Session {
    pub conn: Conn,
    pub info: ServerInfo,
    /// Messages read while connecting that answer nothing we asked (job events after the subscription): the
    /// actor dispatches them.
    pub stray: Vec<Incoming>,
}

/// Connect and log in. `learned` is the protocol that worked last time (skips the JSON-RPC probe on reconnects to
/// a 24.10 box).
pub fn connect(
    settings: &ClientSettings,
    connector: &dyn Connector,
    learned: Option<WireProtocol>,
) -> Result<Session, TnError> {
    connect_inner(settings, connector, learned).map_err(|e| match e {
        // nginx/middleware close right after the upgrade when the UI allowlist excludes us.
        TnError::ConnectionLost { detail, .. } if detail.contains("(1008 ") => TnError::Connect {
            step: ConnectStep::Upgrade,
            detail,
            fix: "TrueNAS refuses this client address: add it to System > General > UI allowlist (or clear the \
                  allowlist)"
                .into(),
        },
        other => other,
    })
}

fn connect_inner(
    settings: &ClientSettings,
    connector: &dyn Connector,
    learned: Option<WireProtocol>,
) -> Result<Session, TnError> {
    let config = &settings.config;
    // Where to connect is the more basic question: ask it before the credentials.
    connector.url(config, "")?;
    let credential = auth::credential_kind(config)?;
    let order: Vec<WireProtocol> = match (config.api, learned) {
        (ApiMode::JsonRpc, _) => vec![WireProtocol::JsonRpc],
        (ApiMode::Legacy, _) => vec![WireProtocol::Legacy],
        (ApiMode::Auto, Some(p)) => vec![p],
        // A TRUENAS_URL that names the legacy endpoint says which protocol the operator expects.
        (ApiMode::Auto, None)
            if config.url.as_deref().is_some_and(|u| u.trim_end_matches('/').ends_with("/websocket")) =>
        {
            vec![WireProtocol::Legacy]
        }
        (ApiMode::Auto, None) => vec![WireProtocol::JsonRpc, WireProtocol::Legacy],
    };
    let mut last_err = None;
    let mut opened = None;
    for (i, protocol) in order.iter().enumerate() {
        let path = protocol.path();
        match open(settings, connector, path, credential) {
            Ok((socket, url)) => {
                opened = Some((socket, url, *protocol));
                break;
            }
            Err(OpenError::Http { status, location }) => {
                let url = connector.url(config, path)?;
                let fallback_possible = i + 1 < order.len() && (matches!(status, 300..=399 | 404));
                if fallback_possible {
                    info!("{url} answered HTTP {status}: this looks like TrueNAS 24.10, trying /websocket");
                    continue;
                }
                last_err = Some(transport::upgrade_refused(&url, status, location.as_deref()));
                break;
            }
            Err(OpenError::Other(e)) => {
                last_err = Some(e);
                break;
            }
        }
    }
    let Some((socket, endpoint_url, protocol)) = opened else {
        return Err(last_err.unwrap_or_else(|| TnError::Protocol("no endpoint to connect to".into())));
    };
    let mut conn = Conn::new(socket, codec::for_protocol(protocol), settings.clock.clone())?;
    debug!("connected to {endpoint_url} ({protocol:?})");
    let mut stray = Vec::new();

    // DDP needs its own handshake before anything else.
    if let Some(hello) = conn.codec.handshake() {
        ddp_handshake(&mut conn, &hello, config.connect_timeout)?;
    }
    login(&mut conn, settings, &mut stray)?;
    let (version, version_tuple, round_trip) = learn_version(&mut conn, settings, protocol, &mut stray)?;
    info!("logged in to TrueNAS {version} at {endpoint_url} ({protocol:?}, {})", credential.as_str());
    let info = ServerInfo {
        version,
        version_tuple,
        endpoint: endpoint_url,
        protocol,
        auth_method: credential.as_str().to_string(),
        username: match credential {
            auth::CredentialKind::Password => Some(config.username.clone()),
            auth::CredentialKind::ApiKey if config.username_explicit => Some(config.username.clone()),
            auth::CredentialKind::ApiKey => None,
        },
        round_trip,
    };
    subscribe_jobs(&mut conn, settings, &mut stray)?;
    Ok(Session { conn, info, stray })
}

/// Open the stream through the connector and upgrade it to a WebSocket at `path`.
fn open(
    settings: &ClientSettings,
    connector: &dyn Connector,
    path: &str,
    credential: auth::CredentialKind,
) -> Result<(Socket, String), OpenError> {
    let config = &settings.config;
    // Real time: it bounds blocking socket calls.
    let deadline = Instant::now() + config.connect_timeout;
    let api_key = credential == auth::CredentialKind::ApiKey;
    // Checked against every resolved address before connecting, so the key never leaves.
    let may_connect = |peer: IpAddr, secure: bool| {
        if api_key && !transport::api_key_transport_allowed(secure, peer, config.allow_insecure_api_key) {
            Err(TnError::Auth(AuthFailure::InsecureTransportRefused))
        } else {
            Ok(())
        }
    };
    let stream = connector.open(&Dial { config, deadline, may_connect: &may_connect })?;
    let url = connector.url(config, path)?;
    let socket = transport::upgrade(stream, &url, deadline, config.connect_timeout)?;
    Ok((socket, url))
}

fn ddp_handshake(conn: &mut Conn, hello: &str, connect_timeout: Duration) -> Result<(), TnError> {
    log_out(hello);
    conn.send_now(hello).map_err(|e| lost(e, false))?;
    let clock = conn.clock().clone();
    let deadline = clock.now() + connect_timeout;
    while clock.now() < deadline {
        match conn.read_one(Duration::from_millis(50)) {
            Ok(ReadOutcome::Message(Incoming::Connected)) => return Ok(()),
            Ok(ReadOutcome::Message(Incoming::ConnectFailed(why))) => {
                return Err(TnError::Protocol(format!("legacy handshake refused: {why}")))
            }
            Ok(ReadOutcome::Message(other)) => debug!("ignoring {other:?} before the DDP handshake finished"),
            Ok(_) => {}
            Err(e) => return Err(lost(e, false)),
        }
    }
    Err(TnError::Timeout { phase: TimeoutPhase::Handshake, after: connect_timeout })
}

/// One login attempt (plus the documented fallback when `auth.login_ex` does not exist). Also used to renew an
/// expired session on the same connection.
pub fn login(conn: &mut Conn, settings: &ClientSettings, others: &mut Vec<Incoming>) -> Result<(), TnError> {
    let calls = auth::login_calls(&settings.config, conn.codec.protocol())?;
    let timeout = settings.config.call_timeout.max(MIN_LOGIN_TIMEOUT);
    let mut calls = calls.into_iter().peekable();
    while let Some(call) = calls.next() {
        let id = codec::next_request_id();
        let text = conn.codec.call(&id, call.method, &call.params);
        if text.len() > FRAME_LIMIT_ANONYMOUS {
            return Err(TnError::TooLarge { size: text.len(), limit: FRAME_LIMIT_ANONYMOUS });
        }
        if log_enabled!(Level::Debug) {
            debug!("> {} {} [credentials redacted]", id, call.method);
        }
        match conn.request_sync(&id, &text, timeout, TimeoutPhase::Login, others)? {
            Ok(result) => {
                auth::interpret(call.method, &result).map_err(TnError::Auth)?;
                conn.authenticated = true;
                return Ok(());
            }
            Err(w) if w.is_method_not_found() && calls.peek().is_some() => {
                debug!("{} does not exist on this server, falling back", call.method);
            }
            Err(w) => {
                return Err(match w.into_tn_error(call.method) {
                    // A 207 to a login call means the login was refused.
                    TnError::NotAuthenticated => TnError::Auth(AuthFailure::BadCredentials),
                    other => other,
                });
            }
        }
    }
    Err(TnError::Protocol("no login method worked".into()))
}

/// Subscribe to `core.get_jobs` (job progress and results arrive as its events).
pub fn subscribe_jobs(conn: &mut Conn, settings: &ClientSettings, others: &mut Vec<Incoming>) -> Result<(), TnError> {
    let id = codec::next_request_id();
    let text = conn.codec.subscribe(&id, "core.get_jobs");
    log_out(&text);
    match conn.request_sync(&id, &text, settings.config.call_timeout, TimeoutPhase::Call, others)? {
        Ok(_) => Ok(()),
        Err(w) => Err(w.into_tn_error("core.subscribe")),
    }
}

/// A call on a fresh connection, waiting for its answer.
pub fn call_sync(
    conn: &mut Conn,
    method: &str,
    params: Value,
    timeout: Duration,
    others: &mut Vec<Incoming>,
) -> Result<Value, TnError> {
    let id = codec::next_request_id();
    let text = conn.codec.call(&id, method, &params);
    log_out(&text);
    match conn.request_sync(&id, &text, timeout, TimeoutPhase::Call, others)? {
        Ok(v) => Ok(v),
        Err(w) => Err(w.into_tn_error(method)),
    }
}

/// The release, from `system.info`, or `system.version` for an account whose roles do not cover `system.info`; if
/// neither answers, a guess from the protocol (24.10 has only the legacy one).
fn learn_version(
    conn: &mut Conn,
    settings: &ClientSettings,
    protocol: WireProtocol,
    others: &mut Vec<Incoming>,
) -> Result<(String, (u32, u32), Duration), TnError> {
    let timeout = settings.config.call_timeout;
    let clock = conn.clock().clone();
    let started = clock.now();
    let raw = match call_sync(conn, "system.info", json!([]), timeout, others) {
        Ok(info) => info.get("version").and_then(Value::as_str).map(str::to_string),
        Err(e @ (TnError::ConnectionLost { .. } | TnError::Timeout { .. })) => return Err(e),
        Err(e) => {
            debug!("system.info failed ({e}); asking system.version");
            match call_sync(conn, "system.version", json!([]), timeout, others) {
                Ok(v) => v.as_str().map(str::to_string),
                Err(e @ (TnError::ConnectionLost { .. } | TnError::Timeout { .. })) => return Err(e),
                Err(e) => {
                    warn!("cannot learn the TrueNAS version ({e}); assuming the oldest release of this protocol");
                    None
                }
            }
        }
    };
    let round_trip = clock.elapsed_since(started);
    let (version, tuple) = parse_version(raw.as_deref().unwrap_or(""));
    if tuple == (0, 0) {
        let guess = match protocol {
            WireProtocol::Legacy => (24, 10),
            WireProtocol::JsonRpc => (25, 4),
        };
        return Ok(("unknown".to_string(), guess, round_trip));
    }
    Ok((version, tuple, round_trip))
}

/// `"TrueNAS-SCALE-24.10.2.4"` → `("24.10.2.4", (24, 10))`.
pub fn parse_version(raw: &str) -> (String, (u32, u32)) {
    let start = raw.find(|c: char| c.is_ascii_digit()).unwrap_or(raw.len());
    let version = raw[start..].trim().to_string();
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (version, (major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_lose_their_brand() {
        let cases = [
            ("TrueNAS-SCALE-24.10.2.4", "24.10.2.4", (24, 10)),
            ("TrueNAS-25.04.2.6", "25.04.2.6", (25, 4)),
            ("25.10.0", "25.10.0", (25, 10)),
            ("TrueNAS-SCALE-25.10-MASTER-20250101", "25.10-MASTER-20250101", (25, 10)),
            ("", "", (0, 0)),
        ];
        for (raw, v, t) in cases {
            assert_eq!(parse_version(raw), (v.to_string(), t), "for {raw}");
        }
    }
}

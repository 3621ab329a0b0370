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
use crate::config::{ApiMode, Secret};

/// Largest request before login (the server closes the socket on more).
pub const FRAME_LIMIT_ANONYMOUS: usize = 8 * 1024;
/// Logins may be slow (failure delays of 1–5 s server-side).
const MIN_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The API versions whose models we ship (fixtures/truenas-schemas) and test against, newest first: a NAS that
/// serves one of them is spoken to on its versioned endpoint, so a point update that moves `/api/current` does not
/// change the API under us.
pub const PINNED_API_VERSIONS: [&str; 3] = ["v26.0.0", "v25.10.5", "v25.04.2"];

/// What the client remembers about its connection target between connections (the actor keeps one).
#[derive(Clone, Debug, Default)]
pub struct Learned {
    /// The protocol that worked last time (skips the JSON-RPC probe on reconnects to a 24.10 box).
    pub protocol: Option<WireProtocol>,
    /// The JSON-RPC path chosen from `GET /api/versions` (`/api/v26.0.0`, or `/api/current` when none matched).
    pub api_path: Option<String>,
    /// The single-use token the last 26.0 login gave for the next one: a reconnect logs in with it, so the
    /// password or key is not sent again.
    pub reconnect_token: Option<Secret>,
}

impl Learned {
    /// The pinned API version (`v26.0.0`), if any.
    pub fn api_version(&self) -> Option<&str> {
        self.api_path.as_deref().and_then(|p| p.strip_prefix("/api/")).filter(|v| v.starts_with('v'))
    }

    /// 26.0 API or newer: login options `reconnect_token`, response type `DENIED`, `AUTH_ERR` for revoked keys.
    fn api_26(&self) -> bool {
        self.api_path.as_deref().is_some_and(path_is_26)
    }
}

/// Whether a JSON-RPC path names a pinned 26.0 API or newer (`/api/v26.0.0`).
fn path_is_26(path: &str) -> bool {
    path.strip_prefix("/api/v").is_some_and(|v| parse_version(v).1 >= (26, 0))
}

/// The newest of `served` (as `GET /api/versions` lists them) that we ship models for.
pub fn choose_api_version(served: &[String]) -> Option<&'static str> {
    PINNED_API_VERSIONS.into_iter().find(|v| served.iter().any(|s| s == v))
}

/// A logged-in connection and what was learned on the way.
pub struct Session {
    pub conn: Conn,
    pub info: ServerInfo,
    /// Messages read while connecting that answer nothing we asked (job events after the subscription): the
    /// actor dispatches them.
    pub stray: Vec<Incoming>,
}

/// Connect and log in. `learned` is what earlier connections to this target found out (protocol, API version,
/// reconnect token); updated here.
pub fn connect(
    settings: &ClientSettings,
    connector: &dyn Connector,
    learned: &mut Learned,
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
    learned: &mut Learned,
) -> Result<Session, TnError> {
    let config = &settings.config;
    // Where to connect is the more basic question: ask it before the credentials.
    connector.url(config, "")?;
    let credential = auth::credential_kind(config)?;
    let order: Vec<WireProtocol> = match (config.api, learned.protocol) {
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
    let api_path = match (order.first(), &learned.api_path) {
        // The GET sends no credential; a key that only SCRAM would use is vetted once the API is known.
        (Some(WireProtocol::JsonRpc), None) => discover_api_path(
            settings,
            connector,
            credential == auth::CredentialKind::ApiKey && !auth::scram_possible(config),
        )?,
        (_, Some(known)) => known.clone(),
        _ => WireProtocol::JsonRpc.path().to_string(),
    };
    for (i, protocol) in order.iter().enumerate() {
        let path = match protocol {
            WireProtocol::JsonRpc => api_path.as_str(),
            WireProtocol::Legacy => protocol.path(),
        };
        let key_leaves = credential == auth::CredentialKind::ApiKey
            && auth::key_on_wire(config, *protocol, *protocol == WireProtocol::JsonRpc && path_is_26(path));
        match open(settings, connector, path, key_leaves) {
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
    if protocol == WireProtocol::JsonRpc {
        learned.api_path = Some(api_path);
    }
    let mut conn = Conn::new(socket, codec::for_protocol(protocol), settings.clock.clone())?;
    debug!("connected to {endpoint_url} ({protocol:?})");
    let mut stray = Vec::new();

    // DDP needs its own handshake before anything else.
    if let Some(hello) = conn.codec.handshake() {
        ddp_handshake(&mut conn, &hello, config.connect_timeout)?;
    }
    login(&mut conn, settings, learned, &mut stray)?;
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
        api_version: match protocol {
            WireProtocol::JsonRpc => learned.api_version().map(str::to_string),
            WireProtocol::Legacy => None,
        },
    };
    learned.protocol = Some(protocol);
    subscribe_jobs(&mut conn, settings, &mut stray)?;
    Ok(Session { conn, info, stray })
}

/// Which JSON-RPC path to speak: one plain `GET /api/versions` over a stream opened the same way as the WebSocket's
/// (the caller caches the answer per connection target), then the newest version we ship models for, else
/// `/api/current`. Only a failure to open the stream is an error (the WebSocket would fail the same way).
fn discover_api_path(
    settings: &ClientSettings,
    connector: &dyn Connector,
    key_leaves: bool,
) -> Result<String, TnError> {
    let config = &settings.config;
    let deadline = Instant::now() + config.connect_timeout;
    let stream = open_stream(connector, config, deadline, key_leaves)?;
    let base = connector.url(config, "")?;
    let host = base.split_once("://").map_or(base.as_str(), |(_, rest)| rest);
    let served = transport::api_versions(stream, host, deadline);
    let chosen = served.as_deref().and_then(choose_api_version);
    match (&served, chosen) {
        (_, Some(v)) => debug!("the NAS serves API {v}: pinning it"),
        (Some(list), None) => {
            info!("the NAS serves none of the API versions this client ships ({list:?}): using /api/current")
        }
        (None, None) => debug!("GET /api/versions gave no list: using /api/current"),
    }
    Ok(chosen.map_or_else(|| WireProtocol::JsonRpc.path().to_string(), |v| format!("/api/{v}")))
}

/// A byte stream through the connector; when an API key will cross the wire (`key_leaves`: not SCRAM), its transport
/// rule vets every peer address first.
fn open_stream(
    connector: &dyn Connector,
    config: &crate::config::Config,
    deadline: Instant,
    key_leaves: bool,
) -> Result<transport::Stream, TnError> {
    // Checked against every resolved address before connecting, so the key never leaves.
    let may_connect = |peer: IpAddr, secure: bool| {
        if key_leaves && !transport::api_key_transport_allowed(secure, peer, config.allow_insecure_api_key) {
            Err(TnError::Auth(AuthFailure::InsecureTransportRefused))
        } else {
            Ok(())
        }
    };
    connector.open(&Dial { config, deadline, may_connect: &may_connect })
}

/// Open the stream through the connector and upgrade it to a WebSocket at `path`.
fn open(
    settings: &ClientSettings,
    connector: &dyn Connector,
    path: &str,
    key_leaves: bool,
) -> Result<(Socket, String), OpenError> {
    let config = &settings.config;
    // Real time: it bounds blocking socket calls.
    let deadline = Instant::now() + config.connect_timeout;
    let stream = open_stream(connector, config, deadline, key_leaves)?;
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

/// Log in (also used to renew an expired session on the same connection). On a 26.0 API a reconnect logs in with
/// the single-use token the previous login gave, falling back to the configured credential only when the token is
/// refused; every credential login there asks for the next token.
pub fn login(
    conn: &mut Conn,
    settings: &ClientSettings,
    learned: &mut Learned,
    others: &mut Vec<Incoming>,
) -> Result<(), TnError> {
    let tokens = conn.codec.protocol() == WireProtocol::JsonRpc && learned.api_26();
    if let Some(token) = learned.reconnect_token.take().filter(|_| tokens) {
        let call = auth::LoginCall { method: "auth.login_ex", params: auth::token_login(token.expose()) };
        match login_once(conn, settings, &call, others) {
            Ok(Ok(result)) => {
                learned.reconnect_token = auth::reconnect_token(&result);
                conn.authenticated = true;
                return Ok(());
            }
            Ok(Err(why)) => {
                debug!("the reconnect token was refused ({why:?}); logging in with the configured credential")
            }
            Err(e @ (TnError::ConnectionLost { .. } | TnError::Timeout { .. })) => return Err(e),
            Err(e) => debug!("logging in with the reconnect token failed ({e}); using the configured credential"),
        }
    }
    if !auth::key_on_wire(&settings.config, conn.codec.protocol(), tokens) {
        // SCRAM's login options are fixed (no reconnect token): a reconnect runs the exchange again.
        return match auth::scram_login(&settings.config, &mut |call| login_once(conn, settings, call, others))? {
            Ok(_) => {
                conn.authenticated = true;
                Ok(())
            }
            Err(failure) => Err(TnError::Auth(auth::explain(failure, &settings.config, tokens))),
        };
    }
    let calls = auth::login_calls(&settings.config, conn.codec.protocol(), tokens)?;
    let mut calls = calls.into_iter().peekable();
    while let Some(call) = calls.next() {
        match login_once(conn, settings, &call, others) {
            Ok(Ok(result)) => {
                learned.reconnect_token = if tokens { auth::reconnect_token(&result) } else { None };
                conn.authenticated = true;
                return Ok(());
            }
            Ok(Err(failure)) => return Err(TnError::Auth(auth::explain(failure, &settings.config, tokens))),
            Err(TnError::MethodNotFound(_)) if calls.peek().is_some() => {
                debug!("{} does not exist on this server, falling back", call.method);
            }
            Err(e) => return Err(e),
        }
    }
    Err(TnError::Protocol("no login method worked".into()))
}

/// One login call: `Ok(Ok(result))` logged in, `Ok(Err(why))` refused, `Err` did not get an answer that says.
fn login_once(
    conn: &mut Conn,
    settings: &ClientSettings,
    call: &auth::LoginCall,
    others: &mut Vec<Incoming>,
) -> Result<Result<Value, AuthFailure>, TnError> {
    let timeout = settings.config.call_timeout.max(MIN_LOGIN_TIMEOUT);
    let id = codec::next_request_id();
    let text = conn.codec.call(&id, call.method, &call.params);
    if text.len() > FRAME_LIMIT_ANONYMOUS {
        return Err(TnError::TooLarge { size: text.len(), limit: FRAME_LIMIT_ANONYMOUS });
    }
    if log_enabled!(Level::Debug) {
        debug!("> {} {} [credentials redacted]", id, call.method);
    }
    match conn.request_sync(&id, &text, timeout, TimeoutPhase::Login, others)? {
        Ok(result) => Ok(call.interpret(&result).map(|()| result)),
        Err(w) if w.is_method_not_found() => Err(TnError::MethodNotFound(call.method.to_string())),
        Err(w) => match w.into_tn_error(call.method) {
            // A 207 to a login call means the login was refused.
            TnError::NotAuthenticated => Ok(Err(AuthFailure::BadCredentials)),
            other => Err(other),
        },
    }
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

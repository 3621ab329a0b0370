//! Opening the byte stream and the WebSocket: DNS, TCP with a timeout, TLS done by hand with native-tls, then the
//! tungstenite client handshake — each step with its own error saying what to fix.
//!
//! Order matters (design.md, tungstenite pitfalls): timeouts during the handshakes are the remaining connect
//! budget, and the steady-state read/write timeouts are set only once the WebSocket is up.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::debug;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{HandshakeError, WebSocket};

use super::error::{ConnectStep, TimeoutPhase, TnError};
use crate::config::Config;

/// Where to connect, parsed from `Config::base_url()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `wss` (TLS) or `ws`.
    pub secure: bool,
    /// Host name or IP address without brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(base_url: &str) -> Result<Endpoint, TnError> {
        let bad = || TnError::NotConfigured(format!("cannot parse the TrueNAS URL '{base_url}': use wss://host:port"));
        let (scheme, rest) = base_url.split_once("://").ok_or_else(bad)?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "wss" => true,
            "ws" => false,
            _ => return Err(bad()),
        };
        let authority = rest.split('/').next().unwrap_or("");
        let authority = authority.rsplit_once('@').map(|x| x.1).unwrap_or(authority);
        let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
            let (h, after) = stripped.split_once(']').ok_or_else(bad)?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = match port {
            None | Some("") => {
                if secure {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        };
        Ok(Endpoint { secure, host, port })
    }

    /// The WebSocket URL of `path`, e.g. `wss://nas.local:443/api/current`.
    pub fn url(&self, path: &str) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{}://{}:{}{}", if self.secure { "wss" } else { "ws" }, host, self.port, path)
    }
}

/// A byte stream a [`Connector`] may hand over instead of a socket (the simulator's in-memory pipe in mock mode):
/// read and write timeouts behave as a `TcpStream`'s (`WouldBlock`/`TimedOut` when they pass).
pub trait ByteStream: Read + Write + Send {
    fn set_read_timeout(&mut self, read: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&mut self, write: Option<Duration>) -> io::Result<()>;
}

/// The byte stream under the WebSocket.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
    Other(Box<dyn ByteStream>),
}

impl Stream {
    pub fn set_timeouts(&mut self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Plain(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
            Stream::Tls(s) => {
                s.get_ref().set_read_timeout(read)?;
                s.get_ref().set_write_timeout(write)
            }
            Stream::Other(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
        }
    }

    pub fn set_read_timeout(&mut self, read: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_read_timeout(read),
            Stream::Tls(s) => s.get_ref().set_read_timeout(read),
            Stream::Other(s) => s.set_read_timeout(read),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Other(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Other(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Other(s) => s.flush(),
        }
    }
}

/// What the actor asks a [`Connector`] for: a byte stream to the middleware, the WebSocket handshake is the
/// actor's (so every connector gets the same framing, codec and login).
pub struct Dial<'a> {
    pub config: &'a Config,
    /// Where the connect budget ends (real time: it bounds blocking socket calls).
    pub deadline: Instant,
    /// Vets each peer address before anything is sent (the API-key transport rule).
    pub may_connect: &'a dyn Fn(IpAddr, bool) -> Result<(), TnError>,
}

/// The seam between the client and the network (as in ureq): the actor opens every connection through one.
/// [`TcpConnector`] reaches a real NAS; mock mode plugs in the simulator's in-memory pipe from outside.
pub trait Connector: Send + Sync {
    /// The WebSocket URL of `path` (no I/O); errors when the configuration names no usable address.
    fn url(&self, config: &Config, path: &str) -> Result<String, TnError>;

    /// A fresh byte stream to the middleware, opened within `dial.deadline`.
    fn open(&self, dial: &Dial) -> Result<Stream, TnError>;
}

/// DNS, TCP and TLS to the address the configuration names.
#[derive(Debug, Default)]
pub struct TcpConnector;

impl TcpConnector {
    fn endpoint(config: &Config) -> Result<Endpoint, TnError> {
        Endpoint::parse(&config.base_url().map_err(|e| TnError::NotConfigured(e.to_string()))?)
    }
}

impl Connector for TcpConnector {
    fn url(&self, config: &Config, path: &str) -> Result<String, TnError> {
        Ok(TcpConnector::endpoint(config)?.url(path))
    }

    fn open(&self, dial: &Dial) -> Result<Stream, TnError> {
        let endpoint = TcpConnector::endpoint(dial.config)?;
        let may_connect = |peer: IpAddr| (dial.may_connect)(peer, endpoint.secure);
        Ok(open_stream(&endpoint, dial.config, dial.deadline, &may_connect)?.0)
    }
}

/// A WebSocket over any of our streams.
pub type Socket = WebSocket<Stream>;

/// Big responses (multi-MB `*.query` results) must not trip tungstenite's defaults.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig { max_message_size: Some(64 << 20), max_frame_size: Some(64 << 20), ..Default::default() }
}

/// Why opening a WebSocket failed: an HTTP answer to the upgrade (which may mean "try the legacy endpoint") or
/// anything else.
#[derive(Debug)]
pub enum OpenError {
    Http { status: u16, location: Option<String> },
    Other(TnError),
}

impl From<TnError> for OpenError {
    fn from(e: TnError) -> Self {
        OpenError::Other(e)
    }
}

/// DNS + TCP + optional TLS, all within `deadline`. Returns the stream and the peer's address.
/// `may_connect` vets each resolved address first (the API-key transport rule).
pub fn open_stream(
    endpoint: &Endpoint,
    config: &Config,
    deadline: Instant,
    may_connect: &dyn Fn(IpAddr) -> Result<(), TnError>,
) -> Result<(Stream, IpAddr), TnError> {
    let budget = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let total = config.connect_timeout;
    let addrs = resolve(&endpoint.host, endpoint.port, budget())?;
    if addrs.is_empty() {
        return Err(TnError::Connect {
            step: ConnectStep::Dns,
            detail: format!("'{}' resolves to no address", endpoint.host),
            fix: "check TRUENAS_HOST (or TRUENAS_URL), or use the NAS's IP address".into(),
        });
    }
    for addr in &addrs {
        may_connect(addr.ip())?;
    }
    let mut last_err = None;
    let mut tcp = None;
    for addr in &addrs {
        if Instant::now() >= deadline {
            break;
        }
        match TcpStream::connect_timeout(addr, budget()) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = Some((addr, e)),
        }
    }
    let tcp = match tcp {
        Some(t) => t,
        None => {
            return Err(match last_err {
                Some((_, e)) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                    TnError::Timeout { phase: TimeoutPhase::Connect, after: total }
                }
                Some((addr, e)) => TnError::Connect {
                    step: ConnectStep::Tcp,
                    detail: format!("{addr}: {e}"),
                    fix: format!(
                        "check that TrueNAS is up and its web UI listens on port {} (TRUENAS_PORT), and that no \
                         firewall blocks it",
                        endpoint.port
                    ),
                },
                None => TnError::Timeout { phase: TimeoutPhase::Connect, after: total },
            })
        }
    };
    let peer = tcp.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let _ = tcp.set_nodelay(true);
    if !endpoint.secure {
        return Ok((Stream::Plain(tcp), peer));
    }

    let connector = tls_connector(config)?;
    // The handshake may block on reads: bound it by what is left of the connect budget.
    tcp.set_read_timeout(Some(budget())).ok();
    tcp.set_write_timeout(Some(budget())).ok();
    match connector.connect(&endpoint.host, tcp) {
        Ok(tls) => Ok((Stream::Tls(Box::new(tls)), peer)),
        Err(native_tls::HandshakeError::WouldBlock(_)) => {
            Err(TnError::Timeout { phase: TimeoutPhase::Handshake, after: total })
        }
        Err(native_tls::HandshakeError::Failure(e)) => Err(tls_failure(&e.to_string(), endpoint)),
    }
}

/// DNS lookup bounded by `budget`: the system resolver has no timeout of its own, so it runs on a helper thread
/// (left to finish by itself if it hangs). IP literals need no lookup.
fn resolve(host: &str, port: u16, budget: Duration) -> Result<Vec<SocketAddr>, TnError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let name = host.to_string();
    let spawned = std::thread::Builder::new().name("truenas-dns".into()).spawn(move || {
        let _ = tx.send((name.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
    });
    let fix = "check TRUENAS_HOST (or TRUENAS_URL) for typos and that this machine's DNS works, or use the NAS's IP \
               address";
    let answer = match spawned {
        Ok(_) => rx.recv_timeout(budget).map_err(|_| TnError::Connect {
            step: ConnectStep::Dns,
            detail: format!("no answer for '{host}' within {budget:?}"),
            fix: fix.into(),
        })?,
        Err(_) => (host, port).to_socket_addrs().map(|a| a.collect()),
    };
    answer.map_err(|e| TnError::Connect {
        step: ConnectStep::Dns,
        detail: format!("cannot resolve '{host}': {e}"),
        fix: fix.into(),
    })
}

/// The TLS connector the configuration asks for (verification, `TRUENAS_CA_CERT`); also used by `check`.
pub fn tls_connector(config: &Config) -> Result<native_tls::TlsConnector, TnError> {
    let mut builder = native_tls::TlsConnector::builder();
    if !config.ssl_verify {
        builder.danger_accept_invalid_certs(true).danger_accept_invalid_hostnames(true);
    }
    if let Some(path) = &config.ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| TnError::NotConfigured(format!("cannot read TRUENAS_CA_CERT '{}': {e}", path.display())))?;
        let certs = native_tls::Certificate::stack_from_pem(&pem).ok().filter(|c| !c.is_empty()).ok_or_else(|| {
            TnError::NotConfigured(format!(
                "TRUENAS_CA_CERT '{}' holds no PEM certificate: download the certificate from System > \
                     Certificates and point TRUENAS_CA_CERT at the .pem/.crt file",
                path.display()
            ))
        })?;
        for cert in certs {
            builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| TnError::Connect {
        step: ConnectStep::Tls,
        detail: format!("cannot set up TLS: {e}"),
        fix: "check the system's OpenSSL installation".into(),
    })
}

/// Name the certificate problem and the fix.
fn tls_failure(detail: &str, endpoint: &Endpoint) -> TnError {
    let lower = detail.to_ascii_lowercase();
    let fix = if lower.contains("hostname mismatch") || lower.contains("ip address mismatch") {
        format!(
            "the certificate is not issued for '{}': connect by a name or IP the certificate lists, or set \
             TRUENAS_CA_CERT to a certificate that covers it (or, last resort, TRUENAS_SSL_VERIFY=false)",
            endpoint.host
        )
    } else if lower.contains("certificate") || lower.contains("verify") {
        "set TRUENAS_CA_CERT=/path/to/truenas-ca.pem (System > Certificates > download) or, last resort, \
         TRUENAS_SSL_VERIFY=false"
            .to_string()
    } else if lower.contains("wrong version number")
        || lower.contains("unknown protocol")
        || lower.contains("packet length")
    {
        format!(
            "port {} does not speak TLS: use the https port (TRUENAS_PORT=443) or TRUENAS_PROTOCOL=ws for a plain \
             http port",
            endpoint.port
        )
    } else {
        format!("check that port {} is the TrueNAS web UI's https port", endpoint.port)
    };
    TnError::Connect { step: ConnectStep::Tls, detail: format!("{}: {}", endpoint.url(""), tidy_openssl(detail)), fix }
}

/// `error:0A000086:SSL routines:func:certificate verify failed:../file.c:1889: (self-signed certificate)` →
/// `certificate verify failed (self-signed certificate)`: the reason and the certificate problem, not the source
/// location.
fn tidy_openssl(detail: &str) -> String {
    let (stack, verify) = match detail.trim_end().strip_suffix(')').and_then(|d| d.rsplit_once(" (")) {
        Some((stack, verify)) => (stack, Some(verify)),
        None => (detail, None),
    };
    let reason = if stack.starts_with("error:") {
        stack.split(':').nth(4).filter(|r| !r.is_empty()).unwrap_or(stack)
    } else {
        stack
    };
    match verify {
        Some(v) => format!("{reason} ({v})"),
        None => reason.to_string(),
    }
}

/// The WebSocket client handshake for `url` over `stream`, bounded by `deadline`.
pub fn upgrade(
    mut stream: Stream,
    url: &str,
    deadline: Instant,
    connect_timeout: Duration,
) -> Result<Socket, OpenError> {
    let budget = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_timeouts(Some(budget), Some(budget)).map_err(|e| TnError::Connect {
        step: ConnectStep::Upgrade,
        detail: e.to_string(),
        fix: "retry".into(),
    })?;
    match tungstenite::client::client_with_config(url, stream, Some(websocket_config())) {
        Ok((socket, _response)) => Ok(socket),
        Err(HandshakeError::Interrupted(_)) => {
            Err(TnError::Timeout { phase: TimeoutPhase::Handshake, after: connect_timeout }.into())
        }
        Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => Err(OpenError::Http {
            status: resp.status().as_u16(),
            location: resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string),
        }),
        Err(HandshakeError::Failure(tungstenite::Error::Io(e)))
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
        {
            Err(TnError::Timeout { phase: TimeoutPhase::Handshake, after: connect_timeout }.into())
        }
        Err(HandshakeError::Failure(e)) => Err(TnError::Connect {
            step: ConnectStep::Upgrade,
            detail: format!("{url}: {e}"),
            fix: "check that TRUENAS_HOST/TRUENAS_PORT point at the TrueNAS web UI (not another service)".into(),
        }
        .into()),
    }
}

/// The API versions the NAS serves side by side, from a plain `GET /api/versions` on a fresh stream (aiohttp's
/// `api_versions_handler` in the middleware's main.py: a JSON array such as `["v25.04.0", …, "v26.0.0"]`). `None`
/// when the answer is not that (24.10 redirects to the web UI; a proxy may answer anything): the caller then uses
/// `/api/current`.
pub fn api_versions(mut stream: Stream, host: &str, deadline: Instant) -> Option<Vec<String>> {
    let budget = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_timeouts(Some(budget), Some(budget)).ok()?;
    let request =
        format!("GET /api/versions HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    stream.flush().ok()?;
    // A list of version names is small; more than this is not the middleware answering.
    const LIMIT: usize = 64 * 1024;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok());
            if length.is_some_and(|n| answer.len() >= end + 4 + n) {
                break;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if answer.len() + n <= LIMIT => answer.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = String::from_utf8_lossy(&answer[..end]).lines().next().unwrap_or("").to_string();
    if status.split_whitespace().nth(1) != Some("200") {
        debug!("GET /api/versions answered '{status}'");
        return None;
    }
    serde_json::from_slice::<Vec<String>>(&answer[end + 4..]).ok()
}

/// The error for an HTTP answer we will not fall back from.
pub fn upgrade_refused(url: &str, status: u16, location: Option<&str>) -> TnError {
    let fix = match (status, location) {
        (301..=308, Some(loc)) if loc.starts_with("https:") && url.starts_with("ws:") => {
            "the web UI redirects to https: use TRUENAS_PROTOCOL=wss (and the https port, TRUENAS_PORT=443)".to_string()
        }
        (301..=308 | 404, _) => {
            "this endpoint is missing: TrueNAS 24.10 only has /websocket (TRUENAS_API=legacy), 25.04+ has \
             /api/current (TRUENAS_API=jsonrpc); TRUENAS_API=auto tries both"
                .to_string()
        }
        (400, _) if url.starts_with("ws:") => {
            "the port may expect https: use TRUENAS_PROTOCOL=wss (and TRUENAS_PORT=443)".to_string()
        }
        (401 | 403, _) => "the web UI refused this client address; check System > General > UI allowlist".to_string(),
        _ => "check that TRUENAS_HOST/TRUENAS_PORT point at the TrueNAS web UI, not a proxy or another service"
            .to_string(),
    };
    let detail = match location {
        Some(loc) => format!("{url} answered HTTP {status} (redirect to {loc})"),
        None => format!("{url} answered HTTP {status}"),
    };
    TnError::Connect { step: ConnectStep::Upgrade, detail, fix }
}

/// Whether an API key may be sent to `peer` over this transport: TrueNAS 25.04+ revokes keys used over plain
/// `ws://` from a non-loopback address, so we refuse unless the operator explicitly allowed it.
pub fn api_key_transport_allowed(secure_transport: bool, peer: IpAddr, allow_insecure: bool) -> bool {
    secure_transport || peer.is_loopback() || allow_insecure || peer.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let cases = [
            ("wss://nas.local:443", Endpoint { secure: true, host: "nas.local".into(), port: 443 }),
            ("ws://10.0.0.2:81", Endpoint { secure: false, host: "10.0.0.2".into(), port: 81 }),
            ("wss://nas.local", Endpoint { secure: true, host: "nas.local".into(), port: 443 }),
            ("ws://nas.local/api/current", Endpoint { secure: false, host: "nas.local".into(), port: 80 }),
            ("wss://[fd00::1]:8443", Endpoint { secure: true, host: "fd00::1".into(), port: 8443 }),
        ];
        for (url, want) in cases {
            assert_eq!(Endpoint::parse(url).unwrap(), want, "for {url}");
        }
        for bad in ["http://x", "nas.local", "wss://:443", "wss://x:port"] {
            assert!(Endpoint::parse(bad).is_err(), "for {bad}");
        }
        assert_eq!(Endpoint::parse("wss://[fd00::1]:1").unwrap().url("/api/current"), "wss://[fd00::1]:1/api/current");
    }

    #[test]
    fn api_key_transport_decision() {
        let lan: IpAddr = "192.168.1.10".parse().unwrap();
        let lo4: IpAddr = "127.0.0.1".parse().unwrap();
        let lo6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let cases = [
            (true, lan, false, true),
            (false, lan, false, false),
            (false, lan, true, true),
            (false, lo4, false, true),
            (false, lo6, false, true),
            (false, mapped, false, true),
        ];
        for (secure, peer, allow, want) in cases {
            assert_eq!(api_key_transport_allowed(secure, peer, allow), want, "{secure} {peer} {allow}");
        }
    }

    #[test]
    fn tls_failures_name_the_fix() {
        let ep = Endpoint { secure: true, host: "nas".into(), port: 443 };
        let verify = tls_failure("error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (self-signed certificate)", &ep);
        let msg = verify.to_string();
        assert!(msg.contains("TRUENAS_CA_CERT") && msg.contains("TRUENAS_SSL_VERIFY=false"), "{msg}");
        assert!(msg.starts_with("tls handshake failed"), "{msg}");
        assert!(
            msg.contains("certificate verify failed (self-signed certificate)") && !msg.contains("statem"),
            "{msg}"
        );
        let plain = tls_failure("error:0A00010B:SSL routines:ssl3_get_record:wrong version number", &ep).to_string();
        assert!(plain.contains("TRUENAS_PROTOCOL=ws"), "{plain}");
    }

    #[test]
    fn upgrade_refusals_name_the_fix() {
        let m = upgrade_refused("ws://nas:80/api/current", 307, Some("https://nas:443/api/current")).to_string();
        assert!(m.contains("TRUENAS_PROTOCOL=wss") && m.contains("HTTP 307"), "{m}");
        let m = upgrade_refused("wss://nas:443/api/current", 404, None).to_string();
        assert!(m.contains("TRUENAS_API"), "{m}");
    }
}

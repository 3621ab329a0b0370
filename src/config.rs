//! Every setting of the server: its environment variable, its command-line flag, its default and its validation.
//!
//! Settings come from the environment (the names of the original Python server are kept) and are overridden by
//! flags. Secrets are wrapped in [`Secret`] so that `Debug`, `Display` and logs print `***`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

/// A secret string (password, API key). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret itself; call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Ws,
    Wss,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        }
    }
}

/// Which middleware protocol to speak (`TRUENAS_API`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiMode {
    /// Try JSON-RPC at `/api/current`, fall back to legacy DDP at `/websocket` (24.10).
    Auto,
    JsonRpc,
    Legacy,
}

/// Compose policy strictness (`TRUENAS_COMPOSE_POLICY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyLevel {
    Strict,
    Standard,
    Permissive,
}

impl PolicyLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyLevel::Strict => "strict",
            PolicyLevel::Standard => "standard",
            PolicyLevel::Permissive => "permissive",
        }
    }
}

/// Where the audit log goes (`TRUENAS_AUDIT_LOG`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditTarget {
    Off,
    File(PathBuf),
}

/// The compose policy as the operator configured it. Tool arguments never change it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    pub level: PolicyLevel,
    /// Host-path roots binds may use without a warning (normalised, no trailing slash), default `["/mnt"]`.
    pub allowed_host_paths: Vec<String>,
    /// Rule ids downgraded to `info` by the operator (`TRUENAS_COMPOSE_ALLOW`).
    pub allow_rules: Vec<String>,
    /// Host ports the NAS itself serves (`TRUENAS_RESERVED_PORTS`), default 22, 80, 111, 443, 445, 2049, 6000.
    pub reserved_ports: Vec<u16>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            level: PolicyLevel::Standard,
            allowed_host_paths: vec!["/mnt".to_string()],
            allow_rules: Vec::new(),
            reserved_ports: vec![22, 80, 111, 443, 445, 2049, 6000],
        }
    }
}

/// Every setting. Built by [`Config::from_sources`]; passed explicitly, never global.
#[derive(Clone, Debug)]
pub struct Config {
    /// `TRUENAS_HOST`: no default — without it (and without mock mode) tools say which variable to set.
    pub host: Option<String>,
    /// `TRUENAS_URL`: a full `wss://host:port` (path optional) that replaces protocol/host/port.
    pub url: Option<String>,
    /// `TRUENAS_USERNAME`, default `mcp-service`.
    pub username: String,
    /// Whether `TRUENAS_USERNAME` was set explicitly (an API key without a username uses `auth.login_with_api_key`).
    pub username_explicit: bool,
    /// `TRUENAS_PASSWORD`, or the content of `TRUENAS_PASSWORD_FILE`.
    pub password: Option<Secret>,
    /// `TRUENAS_PASSWORD_FILE`: where the password was read from (shown by `check`).
    pub password_file: Option<PathBuf>,
    /// `TRUENAS_API_KEY`, or the content of `TRUENAS_API_KEY_FILE`.
    pub api_key: Option<Secret>,
    /// `TRUENAS_API_KEY_FILE`.
    pub api_key_file: Option<PathBuf>,
    /// `TRUENAS_PORT`, default 443.
    pub port: u16,
    /// `TRUENAS_PROTOCOL`, default `wss`.
    pub protocol: Protocol,
    /// `TRUENAS_SSL_VERIFY`, default true.
    pub ssl_verify: bool,
    /// `TRUENAS_CA_CERT`: a PEM file trusted in addition to the system roots.
    pub ca_cert: Option<PathBuf>,
    /// `TRUENAS_API`: auto | jsonrpc | legacy.
    pub api: ApiMode,
    /// `TRUENAS_ALLOW_INSECURE_API_KEY`: send an API key over plain `ws://` to a non-loopback host anyway.
    pub allow_insecure_api_key: bool,
    /// `TRUENAS_TIMEOUT` (seconds): deadline of one ordinary call, default 30.
    pub call_timeout: Duration,
    /// `TRUENAS_CONNECT_TIMEOUT` (seconds): TCP + TLS + WebSocket handshake, default 10.
    pub connect_timeout: Duration,
    /// `TRUENAS_JOB_TIMEOUT` (seconds): deadline of a job (deploy, pull), default 1200 like compose's own.
    pub job_timeout: Duration,
    /// `DEBUG_MODE`.
    pub debug: bool,
    /// `MOCK_TRUENAS`: run against the embedded simulator.
    pub mock: bool,
    /// `TRUENAS_READ_ONLY`: write tools are neither listed nor callable.
    pub read_only: bool,
    /// `TRUENAS_WRITABLE_APPS`: globs of app names the server may change; empty = all.
    pub writable_apps: Vec<String>,
    /// `TRUENAS_REVEAL_SECRETS`: `get_custom_app_config` shows secret values in clear (each reveal is audited).
    pub reveal_secrets: bool,
    /// `TRUENAS_AUDIT_LOG`.
    pub audit: AuditTarget,
    /// `TRUENAS_COMPOSE_POLICY`, `TRUENAS_ALLOWED_HOST_PATHS`, `TRUENAS_COMPOSE_ALLOW`, `TRUENAS_RESERVED_PORTS`.
    pub policy: PolicyConfig,
}

/// One documented setting: used by `--help`, `check` and the README table test.
pub struct Setting {
    pub env: &'static str,
    pub flag: &'static str,
    /// Whether the flag takes no value (`--mock`).
    pub switch: bool,
    pub default: &'static str,
    pub help: &'static str,
    pub secret: bool,
}

pub const SETTINGS: &[Setting] = &[
    Setting {
        env: "TRUENAS_HOST",
        flag: "--host",
        switch: false,
        default: "(none)",
        help: "TrueNAS hostname or IP address",
        secret: false,
    },
    Setting {
        env: "TRUENAS_URL",
        flag: "--url",
        switch: false,
        default: "(none)",
        help: "full URL such as wss://nas.local:443 (replaces protocol, host and port)",
        secret: false,
    },
    Setting {
        env: "TRUENAS_USERNAME",
        flag: "--username",
        switch: false,
        default: "mcp-service",
        help: "user to log in as (owner of the API key when one is used)",
        secret: false,
    },
    Setting {
        env: "TRUENAS_PASSWORD",
        flag: "--password",
        switch: false,
        default: "(none)",
        help: "password (preferred authentication)",
        secret: true,
    },
    Setting {
        env: "TRUENAS_PASSWORD_FILE",
        flag: "--password-file",
        switch: false,
        default: "(none)",
        help: "file holding the password (trailing newline trimmed); the recommended way",
        secret: false,
    },
    Setting {
        env: "TRUENAS_API_KEY",
        flag: "--api-key",
        switch: false,
        default: "(none)",
        help: "API key (used when no password is set; only over wss://)",
        secret: true,
    },
    Setting {
        env: "TRUENAS_API_KEY_FILE",
        flag: "--api-key-file",
        switch: false,
        default: "(none)",
        help: "file holding the API key (trailing newline trimmed)",
        secret: false,
    },
    Setting {
        env: "TRUENAS_PORT",
        flag: "--port",
        switch: false,
        default: "443",
        help: "WebSocket port",
        secret: false,
    },
    Setting {
        env: "TRUENAS_PROTOCOL",
        flag: "--protocol",
        switch: false,
        default: "wss",
        help: "ws or wss",
        secret: false,
    },
    Setting {
        env: "TRUENAS_SSL_VERIFY",
        flag: "--ssl-verify",
        switch: false,
        default: "true",
        help: "verify the TLS certificate (prefer TRUENAS_CA_CERT to false)",
        secret: false,
    },
    Setting {
        env: "TRUENAS_CA_CERT",
        flag: "--ca-cert",
        switch: false,
        default: "(none)",
        help: "PEM file of a CA (or the self-signed certificate) to trust",
        secret: false,
    },
    Setting {
        env: "TRUENAS_API",
        flag: "--api",
        switch: false,
        default: "auto",
        help: "auto, jsonrpc (/api/current, 25.04+) or legacy (/websocket, 24.10)",
        secret: false,
    },
    Setting {
        env: "TRUENAS_ALLOW_INSECURE_API_KEY",
        flag: "--allow-insecure-api-key",
        switch: true,
        default: "false",
        help: "send an API key over plain ws:// to a non-loopback host (TrueNAS 25.04+ revokes it)",
        secret: false,
    },
    Setting {
        env: "TRUENAS_TIMEOUT",
        flag: "--timeout",
        switch: false,
        default: "30",
        help: "seconds one ordinary call may take",
        secret: false,
    },
    Setting {
        env: "TRUENAS_CONNECT_TIMEOUT",
        flag: "--connect-timeout",
        switch: false,
        default: "10",
        help: "seconds for TCP, TLS and WebSocket handshakes",
        secret: false,
    },
    Setting {
        env: "TRUENAS_JOB_TIMEOUT",
        flag: "--job-timeout",
        switch: false,
        default: "1200",
        help: "seconds a TrueNAS job (deploy, pull) may take",
        secret: false,
    },
    Setting {
        env: "DEBUG_MODE",
        flag: "--debug",
        switch: true,
        default: "false",
        help: "debug logging to stderr (RUST_LOG overrides)",
        secret: false,
    },
    Setting {
        env: "MOCK_TRUENAS",
        flag: "--mock",
        switch: true,
        default: "false",
        help: "use the embedded TrueNAS simulator instead of a NAS",
        secret: false,
    },
    Setting {
        env: "TRUENAS_READ_ONLY",
        flag: "--read-only",
        switch: true,
        default: "false",
        help: "hide and refuse every tool that changes the NAS",
        secret: false,
    },
    Setting {
        env: "TRUENAS_WRITABLE_APPS",
        flag: "--writable-apps",
        switch: false,
        default: "(all)",
        help: "comma-separated globs of app names that may be created, changed or deleted",
        secret: false,
    },
    Setting {
        env: "TRUENAS_REVEAL_SECRETS",
        flag: "--reveal-secrets",
        switch: true,
        default: "false",
        help: "get_custom_app_config shows secret values in clear; every reveal is audited",
        secret: false,
    },
    Setting {
        env: "TRUENAS_AUDIT_LOG",
        flag: "--audit-log",
        switch: false,
        default: "$XDG_STATE_HOME/truenas-mcp/audit.jsonl",
        help: "JSON Lines log of every change, before and after it; off disables; mock mode adds .mock",
        secret: false,
    },
    Setting {
        env: "TRUENAS_COMPOSE_POLICY",
        flag: "--compose-policy",
        switch: false,
        default: "standard",
        help: "strict, standard or permissive",
        secret: false,
    },
    Setting {
        env: "TRUENAS_ALLOWED_HOST_PATHS",
        flag: "--allowed-host-paths",
        switch: false,
        default: "/mnt",
        help: "comma-separated host-path roots binds may use",
        secret: false,
    },
    Setting {
        env: "TRUENAS_COMPOSE_ALLOW",
        flag: "--compose-allow",
        switch: false,
        default: "(none)",
        help: "comma-separated policy rule ids the operator allows (downgraded to info)",
        secret: false,
    },
    Setting {
        env: "TRUENAS_RESERVED_PORTS",
        flag: "--reserved-ports",
        switch: false,
        default: "22,80,111,443,445,2049,6000",
        help: "host ports the NAS itself serves",
        secret: false,
    },
];

/// Parse a boolean the way the original server did, a little more forgiving and with a precise error.
pub fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => bail!("{name} must be true or false, got '{value}'"),
    }
}

fn parse_seconds(name: &str, value: &str) -> Result<Duration> {
    match value.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => bail!("{name} must be a number of seconds between 0 and 86400, got '{value}'"),
    }
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// `TRUENAS_COMPOSE_ALLOW`: rule ids of the compose policy; a typo must not silently allow nothing.
fn compose_allow(value: Option<String>) -> Result<Vec<String>> {
    let ids: Vec<String> = value.map(|v| split_list(&v)).unwrap_or_default();
    for id in &ids {
        if crate::compose::rules::find(&id.to_ascii_lowercase()).is_none() {
            let known: Vec<&str> = crate::compose::rules::ALL.iter().map(|r| r.id).collect();
            bail!("TRUENAS_COMPOSE_ALLOW has an unknown rule id '{id}' (known: {})", known.join(", "));
        }
    }
    Ok(ids)
}

/// Normalise an absolute path lexically: `//` collapsed, `.` dropped, `..` applied, no trailing `/` (except `/`).
pub fn normalize_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A secret given either as a value (`value_env`) or as a file holding it (`file_env`), never both. `trim` is how
/// the value is cleaned; a file additionally loses its trailing newline (what `echo` and editors leave). Errors
/// name the setting and the path, never the content.
fn secret_setting(
    get: &dyn Fn(&str) -> Option<String>,
    value_env: &str,
    file_env: &str,
    trim: fn(&str) -> &str,
) -> Result<(Option<Secret>, Option<PathBuf>)> {
    let value = get(value_env).filter(|v| !trim(v).is_empty());
    let file = get(file_env).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).map(PathBuf::from);
    match (value, file) {
        (Some(_), Some(_)) => bail!("set {value_env} or {file_env}, not both"),
        (Some(v), None) => Ok((Some(Secret::new(trim(&v))), None)),
        (None, None) => Ok((None, None)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {file_env} '{}': {e}", path.display()))?;
            let line = text.strip_suffix('\n').unwrap_or(&text);
            let line = trim(line.strip_suffix('\r').unwrap_or(line));
            if line.is_empty() {
                bail!("{file_env} '{}' is empty", path.display());
            }
            Ok((Some(Secret::new(line)), Some(path)))
        }
    }
}

fn default_audit_path(lookup: &dyn Fn(&str) -> Option<String>) -> AuditTarget {
    let base = lookup("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| lookup("HOME").filter(|s| !s.is_empty()).map(|h| PathBuf::from(h).join(".local/state")));
    match base {
        Some(b) => AuditTarget::File(b.join("truenas-mcp").join("audit.jsonl")),
        None => AuditTarget::Off,
    }
}

/// The mock-mode sibling of an audit path: `.mock` before the extension (`audit.jsonl` → `audit.mock.jsonl`).
fn mock_audit_path(path: &std::path::Path) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.mock.{}", ext.to_string_lossy()),
        None => format!("{stem}.mock"),
    };
    path.with_file_name(name)
}

impl Config {
    /// Settings from the process environment only.
    pub fn from_env() -> Result<Config> {
        Config::from_sources(&|k| std::env::var(k).ok(), &BTreeMap::new())
    }

    /// Settings from `lookup` (the environment) overridden by `overrides` (flags, keyed by env name).
    pub fn from_sources(
        lookup: &dyn Fn(&str) -> Option<String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Config> {
        let get = |k: &str| -> Option<String> { overrides.get(k).cloned().or_else(|| lookup(k)) };
        let nonempty = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let port = match nonempty("TRUENAS_PORT") {
            None => 443,
            Some(v) => match v.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => bail!("TRUENAS_PORT must be 1-65535, got '{v}'"),
            },
        };
        let protocol = match nonempty("TRUENAS_PROTOCOL").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("wss") => Protocol::Wss,
            Some("ws") => Protocol::Ws,
            Some(other) => bail!("TRUENAS_PROTOCOL must be ws or wss, got '{other}'"),
        };
        let api = match nonempty("TRUENAS_API").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("auto") => ApiMode::Auto,
            Some("jsonrpc") | Some("json-rpc") => ApiMode::JsonRpc,
            Some("legacy") | Some("ddp") => ApiMode::Legacy,
            Some(other) => bail!("TRUENAS_API must be auto, jsonrpc or legacy, got '{other}'"),
        };
        let level = match nonempty("TRUENAS_COMPOSE_POLICY").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("standard") => PolicyLevel::Standard,
            Some("strict") => PolicyLevel::Strict,
            Some("permissive") => PolicyLevel::Permissive,
            Some(other) => bail!("TRUENAS_COMPOSE_POLICY must be strict, standard or permissive, got '{other}'"),
        };
        let flag = |k: &str| -> Result<bool> {
            match get(k) {
                None => Ok(false),
                Some(v) => parse_bool(k, &v),
            }
        };
        let ssl_verify = match get("TRUENAS_SSL_VERIFY") {
            None => true,
            Some(v) if v.trim().is_empty() => true,
            Some(v) => parse_bool("TRUENAS_SSL_VERIFY", &v)?,
        };
        let seconds = |k: &str, default: u64| -> Result<Duration> {
            match nonempty(k) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => parse_seconds(k, &v),
            }
        };

        let host = nonempty("TRUENAS_HOST");
        if let Some(h) = &host {
            if h.contains('/') || h.contains(char::is_whitespace) {
                bail!("TRUENAS_HOST must be a hostname or IP address without scheme or path, got '{h}' (use TRUENAS_URL for a full URL)");
            }
        }
        let url = nonempty("TRUENAS_URL");
        if let Some(u) = &url {
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                bail!("TRUENAS_URL must start with ws:// or wss://, got '{u}'");
            }
        }
        let ca_cert = nonempty("TRUENAS_CA_CERT").map(PathBuf::from);
        if let Some(p) = &ca_cert {
            if !p.is_file() {
                bail!("TRUENAS_CA_CERT must name a readable PEM file, got '{}' (not found)", p.display());
            }
        }

        let allowed_host_paths = match nonempty("TRUENAS_ALLOWED_HOST_PATHS") {
            None => vec!["/mnt".to_string()],
            Some(v) => {
                let mut roots = Vec::new();
                for p in split_list(&v) {
                    if !p.starts_with('/') {
                        bail!("TRUENAS_ALLOWED_HOST_PATHS entries must be absolute paths, got '{p}'");
                    }
                    roots.push(normalize_path(&p));
                }
                roots
            }
        };
        let reserved_ports = match nonempty("TRUENAS_RESERVED_PORTS") {
            None => PolicyConfig::default().reserved_ports,
            Some(v) => {
                let mut ports = Vec::new();
                for p in split_list(&v) {
                    match p.parse::<u16>() {
                        Ok(n) if n > 0 => ports.push(n),
                        _ => bail!("TRUENAS_RESERVED_PORTS entries must be ports 1-65535, got '{p}'"),
                    }
                }
                ports
            }
        };
        // A password is taken as typed (spaces may belong to it); an API key never contains whitespace.
        let (password, password_file) = secret_setting(&get, "TRUENAS_PASSWORD", "TRUENAS_PASSWORD_FILE", |v| v)?;
        let (api_key, api_key_file) = secret_setting(&get, "TRUENAS_API_KEY", "TRUENAS_API_KEY_FILE", str::trim)?;
        let mock = flag("MOCK_TRUENAS")?;
        let audit = match nonempty("TRUENAS_AUDIT_LOG") {
            None => default_audit_path(lookup),
            Some(v) if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("none") => AuditTarget::Off,
            Some(v) => AuditTarget::File(PathBuf::from(v)),
        };
        // Changes to the simulator never land among the real ones, whatever path the environment names.
        let audit = match audit {
            AuditTarget::File(p) if mock => AuditTarget::File(mock_audit_path(&p)),
            other => other,
        };

        Ok(Config {
            host,
            url,
            username: nonempty("TRUENAS_USERNAME").unwrap_or_else(|| "mcp-service".to_string()),
            username_explicit: nonempty("TRUENAS_USERNAME").is_some(),
            password,
            password_file,
            api_key,
            api_key_file,
            port,
            protocol,
            ssl_verify,
            ca_cert,
            api,
            allow_insecure_api_key: flag("TRUENAS_ALLOW_INSECURE_API_KEY")?,
            call_timeout: seconds("TRUENAS_TIMEOUT", 30)?,
            connect_timeout: seconds("TRUENAS_CONNECT_TIMEOUT", 10)?,
            job_timeout: seconds("TRUENAS_JOB_TIMEOUT", 1200)?,
            debug: flag("DEBUG_MODE")?,
            mock,
            read_only: flag("TRUENAS_READ_ONLY")?,
            writable_apps: nonempty("TRUENAS_WRITABLE_APPS").map(|v| split_list(&v)).unwrap_or_default(),
            reveal_secrets: flag("TRUENAS_REVEAL_SECRETS")?,
            audit,
            policy: PolicyConfig {
                level,
                allowed_host_paths,
                allow_rules: compose_allow(nonempty("TRUENAS_COMPOSE_ALLOW"))?,
                reserved_ports,
            },
        })
    }

    /// A config for tests and mock mode: no NAS, defaults everywhere, audit off.
    pub fn for_tests() -> Config {
        let mut c = Config::from_sources(&|_| None, &BTreeMap::new()).expect("defaults are valid");
        c.audit = AuditTarget::Off;
        c
    }

    /// The WebSocket base URL (`wss://host:443`) without a path, or an error naming the variable to set.
    pub fn base_url(&self) -> Result<String> {
        if let Some(url) = &self.url {
            // Keep scheme://authority only; the client picks the path (/api/current or /websocket).
            let rest = url.split_once("://").map(|x| x.1).unwrap_or("");
            let authority = rest.split('/').next().unwrap_or("");
            let scheme = url.split_once("://").map(|x| x.0).unwrap_or("wss");
            return Ok(format!("{scheme}://{authority}"));
        }
        match &self.host {
            Some(h) => {
                let host = if h.contains(':') && !h.starts_with('[') { format!("[{h}]") } else { h.clone() };
                Ok(format!("{}://{}:{}", self.protocol.as_str(), host, self.port))
            }
            None => bail!(
                "no TrueNAS host configured: set TRUENAS_HOST (e.g. TRUENAS_HOST=nas.local) or TRUENAS_URL, \
                 or run with MOCK_TRUENAS=true / --mock to use the built-in simulator"
            ),
        }
    }

    /// Whether an app name may be changed by this server (`TRUENAS_WRITABLE_APPS`).
    pub fn app_is_writable(&self, app: &str) -> bool {
        self.writable_apps.is_empty() || self.writable_apps.iter().any(|g| glob_match(g, app))
    }

    /// The settings in effect as `(env name, display value)` pairs, secrets masked.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".to_string());
        let secret = |v: &Option<Secret>| if v.is_some() { "*** (set)".to_string() } else { "(not set)".to_string() };
        let path =
            |v: &Option<PathBuf>| v.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(not set)".into());
        vec![
            ("TRUENAS_HOST", opt(&self.host)),
            ("TRUENAS_URL", opt(&self.url)),
            ("TRUENAS_USERNAME", self.username.clone()),
            ("TRUENAS_PASSWORD", secret(&self.password)),
            ("TRUENAS_PASSWORD_FILE", path(&self.password_file)),
            ("TRUENAS_API_KEY", secret(&self.api_key)),
            ("TRUENAS_API_KEY_FILE", path(&self.api_key_file)),
            ("TRUENAS_PORT", self.port.to_string()),
            ("TRUENAS_PROTOCOL", self.protocol.as_str().to_string()),
            ("TRUENAS_SSL_VERIFY", self.ssl_verify.to_string()),
            ("TRUENAS_CA_CERT", path(&self.ca_cert)),
            ("TRUENAS_API", format!("{:?}", self.api).to_ascii_lowercase()),
            ("TRUENAS_ALLOW_INSECURE_API_KEY", self.allow_insecure_api_key.to_string()),
            ("TRUENAS_TIMEOUT", self.call_timeout.as_secs_f64().to_string()),
            ("TRUENAS_CONNECT_TIMEOUT", self.connect_timeout.as_secs_f64().to_string()),
            ("TRUENAS_JOB_TIMEOUT", self.job_timeout.as_secs_f64().to_string()),
            ("DEBUG_MODE", self.debug.to_string()),
            ("MOCK_TRUENAS", self.mock.to_string()),
            ("TRUENAS_READ_ONLY", self.read_only.to_string()),
            (
                "TRUENAS_WRITABLE_APPS",
                if self.writable_apps.is_empty() { "(all)".into() } else { self.writable_apps.join(",") },
            ),
            ("TRUENAS_REVEAL_SECRETS", self.reveal_secrets.to_string()),
            (
                "TRUENAS_AUDIT_LOG",
                match &self.audit {
                    AuditTarget::Off => "off".into(),
                    AuditTarget::File(p) => p.display().to_string(),
                },
            ),
            ("TRUENAS_COMPOSE_POLICY", self.policy.level.as_str().to_string()),
            ("TRUENAS_ALLOWED_HOST_PATHS", self.policy.allowed_host_paths.join(",")),
            (
                "TRUENAS_COMPOSE_ALLOW",
                if self.policy.allow_rules.is_empty() { "(none)".into() } else { self.policy.allow_rules.join(",") },
            ),
            (
                "TRUENAS_RESERVED_PORTS",
                self.policy.reserved_ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
            ),
        ]
    }
}

/// Shell-style glob with `*` and `?` over the whole string.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_sources(&|_| None, &map)
    }

    #[test]
    fn defaults_match_the_original_server() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.username, "mcp-service");
        assert_eq!(c.port, 443);
        assert_eq!(c.protocol, Protocol::Wss);
        assert!(c.ssl_verify);
        assert!(c.host.is_none());
        assert!(!c.mock);
        assert!(!c.reveal_secrets);
        assert_eq!(c.policy.allowed_host_paths, vec!["/mnt"]);
        assert!(cfg(&[("TRUENAS_REVEAL_SECRETS", "true")]).unwrap().reveal_secrets);
    }

    #[test]
    fn validation_errors_are_precise() {
        let cases = [
            (("TRUENAS_PORT", "abc"), "TRUENAS_PORT must be 1-65535, got 'abc'"),
            (("TRUENAS_PORT", "0"), "TRUENAS_PORT must be 1-65535, got '0'"),
            (("TRUENAS_PORT", "70000"), "TRUENAS_PORT must be 1-65535, got '70000'"),
            (("TRUENAS_PROTOCOL", "http"), "TRUENAS_PROTOCOL must be ws or wss, got 'http'"),
            (("TRUENAS_SSL_VERIFY", "maybe"), "TRUENAS_SSL_VERIFY must be true or false, got 'maybe'"),
            (("MOCK_TRUENAS", "sure"), "MOCK_TRUENAS must be true or false, got 'sure'"),
            (
                ("TRUENAS_COMPOSE_POLICY", "lax"),
                "TRUENAS_COMPOSE_POLICY must be strict, standard or permissive, got 'lax'",
            ),
            (
                ("TRUENAS_ALLOWED_HOST_PATHS", "mnt"),
                "TRUENAS_ALLOWED_HOST_PATHS entries must be absolute paths, got 'mnt'",
            ),
        ];
        for ((k, v), want) in cases {
            let err = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(err == want || (want.ends_with("(known: ") && err.starts_with(want)), "for {k}={v}: {err}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = cfg(&[("TRUENAS_PASSWORD", "hunter2"), ("TRUENAS_API_KEY", "1-abcdef")]).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("abcdef"), "{dbg}");
        let eff = format!("{:?}", c.effective());
        assert!(!eff.contains("hunter2") && !eff.contains("abcdef"), "{eff}");
        assert_eq!(c.password.as_ref().unwrap().expose(), "hunter2");
    }

    /// A file in a fresh temp directory holding `content`.
    fn secret_file(tag: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("truenas-mcp-config-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn secrets_come_from_files_with_the_trailing_newline_trimmed() {
        let pw = secret_file("pw", "  hunter2 with spaces \n");
        let key = secret_file("key", "1-abcdef\r\n");
        let c =
            cfg(&[("TRUENAS_PASSWORD_FILE", pw.to_str().unwrap()), ("TRUENAS_API_KEY_FILE", key.to_str().unwrap())])
                .unwrap();
        assert_eq!(c.password.as_ref().unwrap().expose(), "  hunter2 with spaces ");
        assert_eq!(c.api_key.as_ref().unwrap().expose(), "1-abcdef");
        let shown = format!("{c:?} {:?}", c.effective());
        assert!(!shown.contains("hunter2") && !shown.contains("abcdef"), "{shown}");
        assert!(c.effective().contains(&("TRUENAS_PASSWORD_FILE", pw.display().to_string())));
        let _ = std::fs::remove_dir_all(pw.parent().unwrap());
        let _ = std::fs::remove_dir_all(key.parent().unwrap());
    }

    #[test]
    fn secret_files_fail_precisely_and_never_print_the_secret() {
        let pw = secret_file("both", "hunter2\n");
        let pw_path = pw.to_str().unwrap();
        let err = cfg(&[("TRUENAS_PASSWORD", "hunter2"), ("TRUENAS_PASSWORD_FILE", pw_path)]).unwrap_err().to_string();
        assert_eq!(err, "set TRUENAS_PASSWORD or TRUENAS_PASSWORD_FILE, not both");
        let err = cfg(&[("TRUENAS_API_KEY", "1-abc"), ("TRUENAS_API_KEY_FILE", pw_path)]).unwrap_err().to_string();
        assert_eq!(err, "set TRUENAS_API_KEY or TRUENAS_API_KEY_FILE, not both");

        let missing = pw.with_file_name("missing");
        let err = cfg(&[("TRUENAS_PASSWORD_FILE", missing.to_str().unwrap())]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read TRUENAS_PASSWORD_FILE '{}': ", missing.display())), "{err}");
        let empty = secret_file("empty", "\n");
        let err = cfg(&[("TRUENAS_API_KEY_FILE", empty.to_str().unwrap())]).unwrap_err().to_string();
        assert_eq!(err, format!("TRUENAS_API_KEY_FILE '{}' is empty", empty.display()));
        let _ = std::fs::remove_dir_all(pw.parent().unwrap());
        let _ = std::fs::remove_dir_all(empty.parent().unwrap());
    }

    #[test]
    fn base_url_names_the_missing_variable() {
        let err = cfg(&[]).unwrap().base_url().unwrap_err().to_string();
        assert!(err.contains("TRUENAS_HOST"), "{err}");
        let c = cfg(&[("TRUENAS_HOST", "nas.local"), ("TRUENAS_PORT", "8443")]).unwrap();
        assert_eq!(c.base_url().unwrap(), "wss://nas.local:8443");
        let c = cfg(&[("TRUENAS_URL", "ws://10.0.0.2:81/api/current")]).unwrap();
        assert_eq!(c.base_url().unwrap(), "ws://10.0.0.2:81");
        let c = cfg(&[("TRUENAS_HOST", "fd00::1")]).unwrap();
        assert_eq!(c.base_url().unwrap(), "wss://[fd00::1]:443");
    }

    #[test]
    fn paths_normalise() {
        assert_eq!(normalize_path("/mnt/tank/../../etc"), "/etc");
        assert_eq!(normalize_path("//etc//"), "/etc");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("/../.."), "/");
    }

    #[test]
    fn mock_mode_audits_to_its_own_file() {
        let c = cfg(&[("TRUENAS_AUDIT_LOG", "/var/log/tn/audit.jsonl"), ("MOCK_TRUENAS", "true")]).unwrap();
        assert_eq!(c.audit, AuditTarget::File(PathBuf::from("/var/log/tn/audit.mock.jsonl")));
        let c = cfg(&[("TRUENAS_AUDIT_LOG", "/var/log/tn/audit"), ("MOCK_TRUENAS", "true")]).unwrap();
        assert_eq!(c.audit, AuditTarget::File(PathBuf::from("/var/log/tn/audit.mock")));
        let c = cfg(&[("TRUENAS_AUDIT_LOG", "off"), ("MOCK_TRUENAS", "true")]).unwrap();
        assert_eq!(c.audit, AuditTarget::Off);
        let c = cfg(&[("TRUENAS_AUDIT_LOG", "/var/log/tn/audit.jsonl")]).unwrap();
        assert_eq!(c.audit, AuditTarget::File(PathBuf::from("/var/log/tn/audit.jsonl")));
    }

    #[test]
    fn writable_globs() {
        let c = cfg(&[("TRUENAS_WRITABLE_APPS", "test-*, scratch")]).unwrap();
        assert!(c.app_is_writable("test-web"));
        assert!(c.app_is_writable("scratch"));
        assert!(!c.app_is_writable("jellyfin"));
        assert!(cfg(&[]).unwrap().app_is_writable("anything"));
    }
}

//! Every setting of the server: its environment variable, its command-line flag, its default and its validation.
//!
//! Settings come from the environment (the names of the original Python server are kept) and are overridden by
//! flags. Secrets are wrapped in [`Secret`] so that `Debug`, `Display` and logs print `***`.
//!
//! Each setting is defined once in [`SETTINGS`] (as ripgrep's `flags/defs.rs`): names, documented default, help,
//! parser and display. Parsing, `--help`, `check` and the README table (checked by a test) all read that table,
//! which is why this file is long: about half of it is the table, one entry per setting, kept together on purpose.
//! Rule ids in `TRUENAS_COMPOSE_ALLOW` are kept as given; the compose layer checks them at start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

pub mod fleet;

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
    /// `TRUENAS_CONFIG`: a fleet file naming several NAS (`config/fleet.rs`); replaces the per-NAS settings.
    pub fleet_file: Option<PathBuf>,
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
    /// `TRUENAS_MOCK_STATE`: the file the simulator of mock mode keeps its apps in between runs.
    pub mock_state: Option<PathBuf>,
    /// `TRUENAS_READ_ONLY`: write tools are neither listed nor callable.
    pub read_only: bool,
    /// `TRUENAS_WRITABLE_APPS`: globs of app names the server may change; empty = all.
    pub writable_apps: Vec<String>,
    /// `TRUENAS_REVEAL_SECRETS`: `get_custom_app_config` shows secret values in clear (each reveal is audited).
    pub reveal_secrets: bool,
    /// `TRUENAS_HOST_PATH_DATASETS`: `create_host_paths` makes a missing bind source a dataset when its parent is a
    /// dataset's root (instead of a directory).
    pub host_path_datasets: bool,
    /// `TRUENAS_AUDIT_LOG`.
    pub audit: AuditTarget,
    /// `TRUENAS_COMPOSE_POLICY`, `TRUENAS_ALLOWED_HOST_PATHS`, `TRUENAS_COMPOSE_ALLOW`, `TRUENAS_RESERVED_PORTS`.
    pub policy: PolicyConfig,
}

impl Default for Config {
    /// The typed default of every setting; `documented_defaults_are_the_typed_defaults` checks each against the
    /// default its [`Setting`] documents. The audit log's default depends on the environment (`$XDG_STATE_HOME`),
    /// so [`Config::from_sources`] resolves it; here it is off.
    fn default() -> Self {
        Config {
            fleet_file: None,
            host: None,
            url: None,
            username: "mcp-service".to_string(),
            username_explicit: false,
            password: None,
            password_file: None,
            api_key: None,
            api_key_file: None,
            port: 443,
            protocol: Protocol::Wss,
            ssl_verify: true,
            ca_cert: None,
            api: ApiMode::Auto,
            allow_insecure_api_key: false,
            call_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            job_timeout: Duration::from_secs(1200),
            debug: false,
            mock: false,
            mock_state: None,
            read_only: false,
            writable_apps: Vec::new(),
            reveal_secrets: false,
            host_path_datasets: false,
            audit: AuditTarget::Off,
            policy: PolicyConfig::default(),
        }
    }
}

/// The definition of one setting (as ripgrep's `flags/defs.rs`): its names, its documented default, how a value
/// is read into a [`Config`] and how the value in effect is shown. `--help`, `check`, the README table (checked by
/// a test) and [`Config::from_sources`] all come from [`SETTINGS`], so they cannot disagree.
pub struct Setting {
    pub env: &'static str,
    pub flag: &'static str,
    /// Whether the flag takes no value (`--mock`).
    pub switch: bool,
    /// The default as `--help` and the README show it; the typed default is in `Config::default()`.
    pub default: &'static str,
    pub help: &'static str,
    /// A secret given as a flag is warned about (the process list shows it).
    pub secret: bool,
    /// Reads a value from the environment or a flag into the config; never called with a blank value (blank
    /// means unset). Gets the value untrimmed: a password may begin or end with spaces.
    parse: fn(&mut Config, &str) -> Result<()>,
    /// The value in effect, as `check` prints it (secrets masked).
    show: fn(&Config) -> String,
}

const NOT_SET: &str = "(not set)";

fn show_opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| NOT_SET.into())
}

fn show_path(v: &Option<PathBuf>) -> String {
    v.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| NOT_SET.into())
}

fn show_secret(v: &Option<Secret>) -> String {
    if v.is_some() { "*** (set)" } else { NOT_SET }.to_string()
}

fn show_seconds(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

/// The settings in the order of `--help`, `check` and the README table. A secret's file comes after the secret:
/// reading the file refuses a secret already given.
pub const SETTINGS: &[Setting] = &[
    Setting {
        env: "TRUENAS_CONFIG",
        flag: "--config",
        switch: false,
        default: "(none)",
        help: "YAML fleet file naming several NAS (README: Several NAS); then no per-NAS setting may be set",
        secret: false,
        parse: |c, v| {
            c.fleet_file = Some(PathBuf::from(v.trim()));
            Ok(())
        },
        show: |c| show_path(&c.fleet_file),
    },
    Setting {
        env: "TRUENAS_HOST",
        flag: "--host",
        switch: false,
        default: "(none)",
        help: "TrueNAS hostname or IP address",
        secret: false,
        parse: |c, v| {
            let h = v.trim();
            if h.contains('/') || h.contains(char::is_whitespace) {
                bail!("TRUENAS_HOST must be a hostname or IP address without scheme or path, got '{h}' (use TRUENAS_URL for a full URL)");
            }
            c.host = Some(h.to_string());
            Ok(())
        },
        show: |c| show_opt(&c.host),
    },
    Setting {
        env: "TRUENAS_URL",
        flag: "--url",
        switch: false,
        default: "(none)",
        help: "full URL such as wss://nas.local:443 (replaces protocol, host and port)",
        secret: false,
        parse: |c, v| {
            let u = v.trim();
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                // The web UI's own address is what people paste: name its WebSocket twin.
                let twin = match u.split_once("://").map(|(s, rest)| (s, rest.split('/').next().unwrap_or(""))) {
                    Some(("https", host)) => format!(" (use wss://{host})"),
                    Some(("http", host)) => format!(" (use ws://{host})"),
                    _ => String::new(),
                };
                bail!("TRUENAS_URL must start with ws:// or wss://, got '{u}'{twin}");
            }
            c.url = Some(u.to_string());
            Ok(())
        },
        show: |c| show_opt(&c.url),
    },
    Setting {
        env: "TRUENAS_USERNAME",
        flag: "--username",
        switch: false,
        default: "mcp-service",
        help: "user to log in as (owner of the API key when one is used)",
        secret: false,
        parse: |c, v| {
            c.username = v.trim().to_string();
            c.username_explicit = true;
            Ok(())
        },
        show: |c| c.username.clone(),
    },
    Setting {
        env: "TRUENAS_PASSWORD",
        flag: "--password",
        switch: false,
        default: "(none)",
        help: "password (preferred authentication)",
        secret: true,
        // Taken as typed: spaces may belong to a password.
        parse: |c, v| {
            c.password = Some(Secret::new(v));
            Ok(())
        },
        show: |c| show_secret(&c.password),
    },
    Setting {
        env: "TRUENAS_PASSWORD_FILE",
        flag: "--password-file",
        switch: false,
        default: "(none)",
        help: "file holding the password (trailing newline trimmed); the recommended way",
        secret: false,
        parse: |c, v| {
            let (secret, path) =
                secret_file(c.password.is_some(), "TRUENAS_PASSWORD", "TRUENAS_PASSWORD_FILE", v, |s| s)?;
            (c.password, c.password_file) = (Some(secret), Some(path));
            Ok(())
        },
        show: |c| show_path(&c.password_file),
    },
    Setting {
        env: "TRUENAS_API_KEY",
        flag: "--api-key",
        switch: false,
        default: "(none)",
        help: "API key (used when no password is set; only over wss://)",
        secret: true,
        // An API key never contains whitespace.
        parse: |c, v| {
            c.api_key = Some(Secret::new(v.trim()));
            Ok(())
        },
        show: |c| show_secret(&c.api_key),
    },
    Setting {
        env: "TRUENAS_API_KEY_FILE",
        flag: "--api-key-file",
        switch: false,
        default: "(none)",
        help: "file holding the API key (trailing newline trimmed)",
        secret: false,
        parse: |c, v| {
            let (secret, path) =
                secret_file(c.api_key.is_some(), "TRUENAS_API_KEY", "TRUENAS_API_KEY_FILE", v, str::trim)?;
            (c.api_key, c.api_key_file) = (Some(secret), Some(path));
            Ok(())
        },
        show: |c| show_path(&c.api_key_file),
    },
    Setting {
        env: "TRUENAS_PORT",
        flag: "--port",
        switch: false,
        default: "443",
        help: "WebSocket port",
        secret: false,
        parse: |c, v| {
            c.port = match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => bail!("TRUENAS_PORT must be 1-65535, got '{}'", v.trim()),
            };
            Ok(())
        },
        show: |c| c.port.to_string(),
    },
    Setting {
        env: "TRUENAS_PROTOCOL",
        flag: "--protocol",
        switch: false,
        default: "wss",
        help: "ws or wss",
        secret: false,
        parse: |c, v| {
            c.protocol = match v.trim().to_ascii_lowercase().as_str() {
                "wss" => Protocol::Wss,
                "ws" => Protocol::Ws,
                other => bail!("TRUENAS_PROTOCOL must be ws or wss, got '{other}'"),
            };
            Ok(())
        },
        show: |c| c.protocol.as_str().to_string(),
    },
    Setting {
        env: "TRUENAS_SSL_VERIFY",
        flag: "--ssl-verify",
        switch: false,
        default: "true",
        help: "verify the TLS certificate (prefer TRUENAS_CA_CERT to false)",
        secret: false,
        parse: |c, v| {
            c.ssl_verify = parse_bool("TRUENAS_SSL_VERIFY", v)?;
            Ok(())
        },
        show: |c| c.ssl_verify.to_string(),
    },
    Setting {
        env: "TRUENAS_CA_CERT",
        flag: "--ca-cert",
        switch: false,
        default: "(none)",
        help: "PEM file of a CA (or the self-signed certificate) to trust",
        secret: false,
        parse: |c, v| {
            let p = PathBuf::from(v.trim());
            if !p.is_file() {
                bail!("TRUENAS_CA_CERT must name a readable PEM file, got '{}' (not found)", p.display());
            }
            c.ca_cert = Some(p);
            Ok(())
        },
        show: |c| show_path(&c.ca_cert),
    },
    Setting {
        env: "TRUENAS_API",
        flag: "--api",
        switch: false,
        default: "auto",
        help: "auto, jsonrpc (/api/current, 25.04+) or legacy (/websocket, 24.10)",
        secret: false,
        parse: |c, v| {
            c.api = match v.trim().to_ascii_lowercase().as_str() {
                "auto" => ApiMode::Auto,
                "jsonrpc" | "json-rpc" => ApiMode::JsonRpc,
                "legacy" | "ddp" => ApiMode::Legacy,
                other => bail!("TRUENAS_API must be auto, jsonrpc or legacy, got '{other}'"),
            };
            Ok(())
        },
        show: |c| format!("{:?}", c.api).to_ascii_lowercase(),
    },
    Setting {
        env: "TRUENAS_ALLOW_INSECURE_API_KEY",
        flag: "--allow-insecure-api-key",
        switch: true,
        default: "false",
        help: "send an API key over plain ws:// to a non-loopback host (TrueNAS 25.04+ revokes it)",
        secret: false,
        parse: |c, v| {
            c.allow_insecure_api_key = parse_bool("TRUENAS_ALLOW_INSECURE_API_KEY", v)?;
            Ok(())
        },
        show: |c| c.allow_insecure_api_key.to_string(),
    },
    Setting {
        env: "TRUENAS_TIMEOUT",
        flag: "--timeout",
        switch: false,
        default: "30",
        help: "seconds one ordinary call may take",
        secret: false,
        parse: |c, v| {
            c.call_timeout = parse_seconds("TRUENAS_TIMEOUT", v.trim())?;
            Ok(())
        },
        show: |c| show_seconds(c.call_timeout),
    },
    Setting {
        env: "TRUENAS_CONNECT_TIMEOUT",
        flag: "--connect-timeout",
        switch: false,
        default: "10",
        help: "seconds for TCP, TLS and WebSocket handshakes",
        secret: false,
        parse: |c, v| {
            c.connect_timeout = parse_seconds("TRUENAS_CONNECT_TIMEOUT", v.trim())?;
            Ok(())
        },
        show: |c| show_seconds(c.connect_timeout),
    },
    Setting {
        env: "TRUENAS_JOB_TIMEOUT",
        flag: "--job-timeout",
        switch: false,
        default: "1200",
        help: "seconds a TrueNAS job (deploy, pull) may take",
        secret: false,
        parse: |c, v| {
            c.job_timeout = parse_seconds("TRUENAS_JOB_TIMEOUT", v.trim())?;
            Ok(())
        },
        show: |c| show_seconds(c.job_timeout),
    },
    Setting {
        env: "DEBUG_MODE",
        flag: "--debug",
        switch: true,
        default: "false",
        help: "debug logging to stderr (RUST_LOG overrides)",
        secret: false,
        parse: |c, v| {
            c.debug = parse_bool("DEBUG_MODE", v)?;
            Ok(())
        },
        show: |c| c.debug.to_string(),
    },
    Setting {
        env: "MOCK_TRUENAS",
        flag: "--mock",
        switch: true,
        default: "false",
        help: "use the embedded TrueNAS simulator instead of a NAS",
        secret: false,
        parse: |c, v| {
            c.mock = parse_bool("MOCK_TRUENAS", v)?;
            Ok(())
        },
        show: |c| c.mock.to_string(),
    },
    Setting {
        env: "TRUENAS_MOCK_STATE",
        flag: "--mock-state",
        switch: false,
        default: "(none)",
        help: "mock mode: JSON file the simulator loads its apps from and saves them to after every change",
        secret: false,
        parse: |c, v| {
            c.mock_state = Some(PathBuf::from(v.trim()));
            Ok(())
        },
        show: |c| show_path(&c.mock_state),
    },
    Setting {
        env: "TRUENAS_READ_ONLY",
        flag: "--read-only",
        switch: true,
        default: "false",
        help: "hide and refuse every tool that changes the NAS",
        secret: false,
        parse: |c, v| {
            c.read_only = parse_bool("TRUENAS_READ_ONLY", v)?;
            Ok(())
        },
        show: |c| c.read_only.to_string(),
    },
    Setting {
        env: "TRUENAS_WRITABLE_APPS",
        flag: "--writable-apps",
        switch: false,
        default: "(all)",
        help: "comma-separated globs of app names that may be created, changed or deleted",
        secret: false,
        parse: |c, v| {
            c.writable_apps = split_list(v);
            Ok(())
        },
        show: |c| if c.writable_apps.is_empty() { "(all)".into() } else { c.writable_apps.join(",") },
    },
    Setting {
        env: "TRUENAS_REVEAL_SECRETS",
        flag: "--reveal-secrets",
        switch: true,
        default: "false",
        help: "get_custom_app_config shows secret values in clear; every reveal is audited",
        secret: false,
        parse: |c, v| {
            c.reveal_secrets = parse_bool("TRUENAS_REVEAL_SECRETS", v)?;
            Ok(())
        },
        show: |c| c.reveal_secrets.to_string(),
    },
    Setting {
        env: "TRUENAS_HOST_PATH_DATASETS",
        flag: "--host-path-datasets",
        switch: true,
        default: "false",
        help: "create_host_paths makes a missing bind source a dataset when its parent is a dataset root",
        secret: false,
        parse: |c, v| {
            c.host_path_datasets = parse_bool("TRUENAS_HOST_PATH_DATASETS", v)?;
            Ok(())
        },
        show: |c| c.host_path_datasets.to_string(),
    },
    Setting {
        env: "TRUENAS_AUDIT_LOG",
        flag: "--audit-log",
        switch: false,
        default: "$XDG_STATE_HOME/truenas-mcp/audit.jsonl",
        help: "JSON Lines log of every change, before and after it; off disables; mock mode adds .mock",
        secret: false,
        parse: |c, v| {
            let v = v.trim();
            let off = v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("none");
            c.audit = if off { AuditTarget::Off } else { AuditTarget::File(PathBuf::from(v)) };
            Ok(())
        },
        show: |c| match &c.audit {
            AuditTarget::Off => "off".into(),
            AuditTarget::File(p) => p.display().to_string(),
        },
    },
    Setting {
        env: "TRUENAS_COMPOSE_POLICY",
        flag: "--compose-policy",
        switch: false,
        default: "standard",
        help: "strict, standard or permissive",
        secret: false,
        parse: |c, v| {
            c.policy.level = match v.trim().to_ascii_lowercase().as_str() {
                "standard" => PolicyLevel::Standard,
                "strict" => PolicyLevel::Strict,
                "permissive" => PolicyLevel::Permissive,
                other => bail!("TRUENAS_COMPOSE_POLICY must be strict, standard or permissive, got '{other}'"),
            };
            Ok(())
        },
        show: |c| c.policy.level.as_str().to_string(),
    },
    Setting {
        env: "TRUENAS_ALLOWED_HOST_PATHS",
        flag: "--allowed-host-paths",
        switch: false,
        default: "/mnt",
        help: "comma-separated host-path roots binds may use",
        secret: false,
        parse: |c, v| {
            let mut roots = Vec::new();
            for p in split_list(v) {
                if !p.starts_with('/') {
                    bail!("TRUENAS_ALLOWED_HOST_PATHS entries must be absolute paths, got '{p}'");
                }
                roots.push(normalize_path(&p));
            }
            c.policy.allowed_host_paths = roots;
            Ok(())
        },
        show: |c| c.policy.allowed_host_paths.join(","),
    },
    Setting {
        env: "TRUENAS_COMPOSE_ALLOW",
        flag: "--compose-allow",
        switch: false,
        default: "(none)",
        help: "comma-separated policy rule ids the operator allows (downgraded to info)",
        secret: false,
        // The ids are checked against the rule catalogue by the compose layer at start-up
        // (`compose::rules::check_allowed`): configuration sits below compose and does not know its rules.
        parse: |c, v| {
            c.policy.allow_rules = split_list(v);
            Ok(())
        },
        show: |c| if c.policy.allow_rules.is_empty() { "(none)".into() } else { c.policy.allow_rules.join(",") },
    },
    Setting {
        env: "TRUENAS_RESERVED_PORTS",
        flag: "--reserved-ports",
        switch: false,
        default: "22,80,111,443,445,2049,6000",
        help: "host ports the NAS itself serves",
        secret: false,
        parse: |c, v| {
            let mut ports = Vec::new();
            for p in split_list(v) {
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => ports.push(n),
                    _ => bail!("TRUENAS_RESERVED_PORTS entries must be ports 1-65535, got '{p}'"),
                }
            }
            c.policy.reserved_ports = ports;
            Ok(())
        },
        show: |c| c.policy.reserved_ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
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

/// A secret read from the file `value` names (`file_env`), refused when the secret itself (`value_env`) is also
/// given. `trim` is how the secret is cleaned; the file additionally loses its trailing newline (what `echo` and
/// editors leave). Errors name the setting and the path, never the content.
fn secret_file(
    already_given: bool,
    value_env: &str,
    file_env: &str,
    value: &str,
    trim: fn(&str) -> &str,
) -> Result<(Secret, PathBuf)> {
    if already_given {
        bail!("set {value_env} or {file_env}, not both");
    }
    let path = PathBuf::from(value.trim());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {file_env} '{}': {e}", path.display()))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = trim(line.strip_suffix('\r').unwrap_or(line));
    if line.is_empty() {
        bail!("{file_env} '{}' is empty", path.display());
    }
    Ok((Secret::new(line), path))
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

    /// Settings from `lookup` (the environment) overridden by `overrides` (flags, keyed by env name): the typed
    /// defaults, then every [`Setting`] given a value that is not blank, in table order.
    pub fn from_sources(
        lookup: &dyn Fn(&str) -> Option<String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Config> {
        let mut config = Config { audit: default_audit_path(lookup), ..Config::default() };
        for s in SETTINGS {
            let value = overrides.get(s.env).cloned().or_else(|| lookup(s.env));
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                (s.parse)(&mut config, &v)?;
            }
        }
        if config.mock_state.is_some() && !config.mock {
            bail!("TRUENAS_MOCK_STATE only applies to mock mode: add --mock (MOCK_TRUENAS=true) or unset it");
        }
        // Changes to the simulator never land among the real ones, whatever path the environment names.
        if let AuditTarget::File(p) = &config.audit {
            if config.mock {
                config.audit = AuditTarget::File(mock_audit_path(p));
            }
        }
        Ok(config)
    }

    /// A config for tests and mock mode: no NAS, defaults everywhere, audit off.
    pub fn for_tests() -> Config {
        Config::default()
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
        SETTINGS.iter().map(|s| (s.env, (s.show)(self))).collect()
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

    /// The default each definition documents (`--help`, README) is the typed default the program uses.
    #[test]
    fn documented_defaults_are_the_typed_defaults() {
        let state = |k: &str| (k == "XDG_STATE_HOME").then(|| "/state".to_string());
        let typed = Config::from_sources(&state, &BTreeMap::new()).unwrap();
        for s in SETTINGS {
            let shown = (s.show)(&typed);
            let documented = s.default.replace("$XDG_STATE_HOME", "/state");
            let same = shown == documented || (documented == "(none)" && shown == NOT_SET);
            assert!(same, "{}: documented default {documented:?}, typed default shows {shown:?}", s.env);
        }
        let mut flags: Vec<&str> = SETTINGS.iter().flat_map(|s| [s.env, s.flag]).collect();
        flags.sort();
        flags.dedup();
        assert_eq!(flags.len(), 2 * SETTINGS.len(), "every env name and flag is defined once");
    }

    /// Every definition parses what it shows: `check` prints values a person can paste back.
    #[test]
    fn every_setting_reads_back_what_it_shows() {
        let c = cfg(&[("TRUENAS_HOST", "nas.local"), ("TRUENAS_TIMEOUT", "2.5"), ("TRUENAS_WRITABLE_APPS", "a-*,b")])
            .unwrap();
        for s in SETTINGS.iter().filter(|s| !s.secret && !s.env.ends_with("_FILE") && s.env != "TRUENAS_CA_CERT") {
            let shown = (s.show)(&c);
            if shown == NOT_SET {
                continue;
            }
            let mut again = Config::default();
            (s.parse)(&mut again, &shown).unwrap_or_else(|e| panic!("{}={shown}: {e}", s.env));
            assert_eq!((s.show)(&again), shown, "{}", s.env);
        }
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
                ("TRUENAS_URL", "https://nas.local/ui/"),
                "TRUENAS_URL must start with ws:// or wss://, got 'https://nas.local/ui/' (use wss://nas.local)",
            ),
            (
                ("TRUENAS_MOCK_STATE", "/tmp/state.json"),
                "TRUENAS_MOCK_STATE only applies to mock mode: add --mock (MOCK_TRUENAS=true) or unset it",
            ),
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

//! The one error type the rest of the program sees from TrueNAS. Messages say what to do next; never secrets.

use std::fmt;
use std::time::Duration;

/// One entry of a TrueNAS validation error (`extra[i]` = `[attribute, message, errno]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationItem {
    pub attribute: String,
    pub message: String,
    pub errno: i64,
}

/// Which connection step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectStep {
    Dns,
    Tcp,
    Tls,
    Upgrade,
}

/// Which phase timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    Handshake,
    Login,
    Call,
    Job,
}

/// Why a login failed.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthFailure {
    /// AUTH_ERR (or `false` from `auth.login`): wrong user, password or key.
    BadCredentials,
    /// EXPIRED: expired account/password/key, or an API key revoked for use over an insecure transport.
    Expired,
    /// DENIED (26.0): the credentials are valid but the account has no API access.
    Denied,
    /// AUTH_ERR for an API key on 26.0, where a revoked key answers so: wrong, revoked, or not converted on upgrade.
    KeyRefused,
    /// OTP_REQUIRED: the account has two-factor auth; a service account without 2FA is needed.
    OtpRequired,
    /// REDIRECT: HA standby controller; log in to one of these instead.
    Redirect(Vec<String>),
    /// We refused to send the credential (API key over plain ws:// to a non-loopback host).
    InsecureTransportRefused,
    /// No password and no API key configured.
    NoCredentials,
    /// A response_type we do not know.
    Unknown(String),
}

/// Errors from the TrueNAS client. `Display` gives a message a user can act on.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TnError {
    /// Configuration prevents connecting (e.g. no TRUENAS_HOST); the message names the variable.
    NotConfigured(String),
    Connect {
        step: ConnectStep,
        detail: String,
        fix: String,
    },
    Auth(AuthFailure),
    /// -32602 / `type: VALIDATION` (also from a failed job).
    Validation(Vec<ValidationItem>),
    /// ENOENT (`extra[i][2] == 2`), e.g. "App x does not exist".
    NotFound(String),
    /// 207 after the one automatic re-login also failed.
    NotAuthenticated,
    /// EACCES: the account lacks a role (APPS_WRITE, …).
    NotAuthorized(String),
    /// EBUSY "Rate Limit Exceeded" (unauthenticated calls): wait and retry later.
    RateLimited(String),
    /// -32601 / ENOMETHOD.
    MethodNotFound(String),
    /// -32001 and other call errors: errno, errname, reason.
    Call {
        errno: i64,
        errname: String,
        reason: String,
    },
    /// A job ended FAILED with a non-validation error.
    JobFailed {
        job_id: i64,
        error: String,
    },
    /// A job ended ABORTED.
    JobAborted {
        job_id: i64,
    },
    /// The caller cancelled; the job (if any) was aborted.
    Cancelled {
        job_id: Option<i64>,
    },
    Timeout {
        phase: TimeoutPhase,
        after: Duration,
    },
    /// The connection dropped. `outcome_unknown`: the call may have changed the NAS and was not replayed.
    ConnectionLost {
        outcome_unknown: bool,
        detail: String,
    },
    /// A request larger than the server accepts (8 KiB before login, 64 KiB after); refused locally.
    TooLarge {
        size: usize,
        limit: usize,
    },
    /// The server said something we cannot understand.
    Protocol(String),
}

impl TnError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, TnError::NotFound(_))
    }
}

impl ConnectStep {
    fn name(self) -> &'static str {
        match self {
            ConnectStep::Dns => "dns lookup",
            ConnectStep::Tcp => "tcp connect",
            ConnectStep::Tls => "tls handshake",
            ConnectStep::Upgrade => "websocket upgrade",
        }
    }
}

impl fmt::Display for TnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: &Duration| {
            let s = d.as_secs_f64();
            if s >= 1.0 && s.fract() == 0.0 {
                format!("{s:.0}s")
            } else {
                format!("{s:.1}s")
            }
        };
        match self {
            TnError::NotConfigured(msg) => f.write_str(msg),
            TnError::Connect { step, detail, fix } => write!(f, "{} failed: {detail}; {fix}", step.name()),
            TnError::Auth(failure) => match failure {
                AuthFailure::BadCredentials => f.write_str(
                    "truenas login failed: wrong username, password or API key; check TRUENAS_USERNAME and \
                     TRUENAS_PASSWORD or TRUENAS_API_KEY",
                ),
                AuthFailure::Expired => f.write_str(
                    "truenas login refused: the account, password or API key has expired or was revoked; \
                     TrueNAS 25.04+ permanently revokes an API key that was ever sent over plain ws:// (insecure \
                     transport), so create a new key (Credentials > Users > API Keys), connect with wss:// \
                     (TRUENAS_PROTOCOL=wss) and set TRUENAS_API_KEY to the new key",
                ),
                AuthFailure::Denied => f.write_str(
                    "truenas accepted the credentials but the account has no API access (DENIED): in the TrueNAS \
                     web UI give it a role, e.g. add it to a group that has a privilege with the APPS_WRITE and \
                     DOCKER_READ roles (Credentials > Groups > Privileges), then try again",
                ),
                AuthFailure::KeyRefused => f.write_str(
                    "truenas refused the API key: it is wrong or was revoked (TrueNAS 26.0 answers both alike); \
                     26.0 revokes a key that was ever sent over plain ws://, and the upgrade to 26.0 revoked every \
                     key it could not convert to its new key storage; create a new API key (Credentials > Users > \
                     API Keys), connect with wss:// and set TRUENAS_API_KEY to the new key",
                ),
                AuthFailure::OtpRequired => f.write_str(
                    "truenas login needs a two-factor code, which an unattended server cannot give; create a \
                     service account without two-factor authentication for truenas-mcp and set TRUENAS_USERNAME \
                     to it (or use that account's API key)",
                ),
                AuthFailure::Redirect(urls) => write!(
                    f,
                    "this TrueNAS controller is the HA standby and refuses logins; point TRUENAS_HOST at the \
                     active controller: {}",
                    if urls.is_empty() { "(the server named none)".to_string() } else { urls.join(", ") }
                ),
                AuthFailure::InsecureTransportRefused => f.write_str(
                    "refusing to send the API key over plain ws:// to a non-loopback host: TrueNAS 25.04+ revokes \
                     a key used over an insecure transport; use wss:// (TRUENAS_PROTOCOL=wss, TRUENAS_PORT=443) \
                     or, on 24.10 and at your own risk, TRUENAS_ALLOW_INSECURE_API_KEY=true (on 26.0, setting \
                     TRUENAS_USERNAME to the key's owner logs in with SCRAM, which never sends the key)",
                ),
                AuthFailure::NoCredentials => f.write_str(
                    "no truenas credentials configured: set TRUENAS_PASSWORD (with TRUENAS_USERNAME) or \
                     TRUENAS_API_KEY",
                ),
                AuthFailure::Unknown(kind) => write!(
                    f,
                    "truenas login answered '{kind}', which this client does not support (a newer TrueNAS \
                     release?); log in with a password or an API key of an account without extra \
                     authentication steps"
                ),
            },
            TnError::Validation(items) => {
                f.write_str("truenas rejected the request: ")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    if item.attribute.is_empty() {
                        write!(f, "{}", item.message)?;
                    } else {
                        write!(f, "{}: {}", item.attribute, item.message)?;
                    }
                }
                if items.is_empty() {
                    f.write_str("invalid parameters")?;
                }
                f.write_str(" (fix these fields and retry)")
            }
            TnError::NotFound(what) => write!(f, "not found on truenas: {what}"),
            TnError::NotAuthenticated => f.write_str(
                "truenas says the session is not authenticated even after logging in again; check that the \
                 account is enabled and its password or API key is still valid",
            ),
            TnError::NotAuthorized(reason) => write!(
                f,
                "truenas refused: not authorized ({reason}); give the account in TRUENAS_USERNAME a role that \
                 allows this (e.g. APPS_WRITE for app changes, or full admin)"
            ),
            TnError::RateLimited(reason) => write!(
                f,
                "truenas is rate-limiting logins from this address ({reason}); not retrying — wait a minute, \
                 check the credentials, then try again"
            ),
            TnError::MethodNotFound(method) => write!(
                f,
                "truenas does not know the method {method}; this TrueNAS release may not support it (supported: \
                 24.10, 25.04, 25.10)"
            ),
            TnError::Call { errno, errname, reason } => {
                if *errno == 109 {
                    write!(
                        f,
                        "truenas refused the call: too many concurrent calls on one connection ({reason}); retry \
                         in a moment"
                    )
                } else {
                    write!(f, "truenas call failed: {reason} ({errname}, errno {errno})")
                }
            }
            TnError::JobFailed { job_id, error } => {
                write!(f, "truenas job {job_id} failed: {error} (the full log is under Jobs in the web UI)")
            }
            TnError::JobAborted { job_id } => write!(
                f,
                "truenas job {job_id} was aborted on the NAS (web UI or another client); run it again if it is \
                 still needed"
            ),
            TnError::Cancelled { job_id: Some(id) } => write!(
                f,
                "cancelled; truenas job {id} was asked to abort — check the app's state before retrying, work \
                 already done may remain"
            ),
            TnError::Cancelled { job_id: None } => f.write_str("cancelled before anything was sent to truenas"),
            TnError::Timeout { phase, after } => match phase {
                TimeoutPhase::Connect => write!(
                    f,
                    "connecting to truenas timed out after {}; check TRUENAS_HOST/TRUENAS_PORT and any firewall, \
                     or raise TRUENAS_CONNECT_TIMEOUT",
                    secs(after)
                ),
                TimeoutPhase::Handshake => write!(
                    f,
                    "the tls/websocket handshake with truenas timed out after {}; check that TRUENAS_PORT is the \
                     web UI port and TRUENAS_PROTOCOL matches it (wss for https, ws for http)",
                    secs(after)
                ),
                TimeoutPhase::Login => write!(
                    f,
                    "truenas did not answer the login within {}; the NAS may be overloaded, retry later",
                    secs(after)
                ),
                TimeoutPhase::Call => write!(
                    f,
                    "truenas did not answer within {}; the NAS may be busy — retry, or raise TRUENAS_TIMEOUT",
                    secs(after)
                ),
                TimeoutPhase::Job => write!(
                    f,
                    "the truenas job did not finish within {}; it may still be running on the NAS — check its \
                     state before retrying, or raise TRUENAS_JOB_TIMEOUT",
                    secs(after)
                ),
            },
            TnError::ConnectionLost { outcome_unknown: true, detail } => write!(
                f,
                "the connection to truenas was lost ({detail}) while a change was in progress; it may or may not \
                 have been applied — check the current state before retrying"
            ),
            TnError::ConnectionLost { outcome_unknown: false, detail } => {
                write!(f, "the connection to truenas was lost ({detail}); retry — the client reconnects automatically")
            }
            TnError::TooLarge { size, limit } => write!(
                f,
                "request of {size} bytes exceeds the {limit}-byte message limit of truenas (which would close the \
                 connection); make it smaller, e.g. a shorter compose file"
            ),
            TnError::Protocol(detail) => write!(
                f,
                "unexpected reply from truenas: {detail}; check that TRUENAS_HOST/TRUENAS_URL point at the web UI \
                 of TrueNAS SCALE 24.10 or newer"
            ),
        }
    }
}

impl std::error::Error for TnError {}

/// A raw TrueNAS error as it came over the wire, before it is mapped to a [`TnError`].
///
/// JSON-RPC wraps the TrueNAS error object in `data` (with `code`/`message` around it); DDP sends the TrueNAS error
/// object itself. Both end up here.
#[derive(Clone, Debug, PartialEq)]
pub struct WireError {
    /// JSON-RPC error code (`None` on DDP).
    pub code: Option<i64>,
    /// JSON-RPC `message` (empty on DDP).
    pub message: String,
    pub errno: Option<i64>,
    pub errname: Option<String>,
    pub reason: Option<String>,
    /// `type` (`"VALIDATION"` for validation errors on DDP).
    pub kind: Option<String>,
    pub extra: Option<serde_json::Value>,
}

pub const ENOENT: i64 = 2;
pub const EACCES: i64 = 13;
pub const EBUSY: i64 = 16;
pub const ETOOMANYREFS: i64 = 109;
pub const ENOMETHOD: i64 = 201;
pub const ENOTAUTHENTICATED: i64 = 207;

impl WireError {
    /// From a JSON-RPC `error` member.
    pub fn from_jsonrpc(err: &serde_json::Value) -> WireError {
        let data = err.get("data").filter(|d| d.is_object());
        let mut w =
            data.map(WireError::from_truenas).unwrap_or_else(|| WireError::from_truenas(&serde_json::Value::Null));
        w.code = err.get("code").and_then(serde_json::Value::as_i64);
        w.message = err.get("message").and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        w
    }

    /// From a TrueNAS error object (`{error, errname, type, reason, trace, extra}`).
    pub fn from_truenas(err: &serde_json::Value) -> WireError {
        let s = |k: &str| err.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
        WireError {
            code: None,
            message: String::new(),
            errno: err.get("error").and_then(serde_json::Value::as_i64),
            errname: s("errname"),
            reason: s("reason"),
            kind: s("type"),
            extra: err.get("extra").filter(|e| !e.is_null()).cloned(),
        }
    }

    pub fn is_not_authenticated(&self) -> bool {
        self.errno == Some(ENOTAUTHENTICATED)
    }

    pub fn is_method_not_found(&self) -> bool {
        self.code == Some(-32601) || self.errno == Some(ENOMETHOD)
    }

    /// The reason without the `[ERRNAME] ` prefix the middleware adds.
    fn plain_reason(&self) -> String {
        let r = self.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| self.message.clone());
        let r = r.trim();
        let r = match r.strip_prefix('[').and_then(|x| x.split_once("] ")) {
            Some((name, rest)) if name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') => {
                rest
            }
            _ => r,
        };
        r.trim().to_string()
    }

    /// Map to the one error type the rest of the program sees. `method` names the call for messages.
    pub fn into_tn_error(self, method: &str) -> TnError {
        if self.is_method_not_found() {
            return TnError::MethodNotFound(method.to_string());
        }
        let items = validation_items(self.extra.as_ref());
        let validation = self.code == Some(-32602) || self.kind.as_deref() == Some("VALIDATION");
        if validation || (!items.is_empty() && self.code.is_none()) {
            if let Some(nf) = items.iter().find(|i| i.errno == ENOENT) {
                return TnError::NotFound(nf.message.clone());
            }
            if !items.is_empty() {
                return TnError::Validation(items);
            }
            if validation {
                return TnError::Validation(vec![ValidationItem {
                    attribute: String::new(),
                    message: self.plain_reason(),
                    errno: self.errno.unwrap_or(22),
                }]);
            }
        }
        match (self.code, self.errno) {
            (_, Some(ENOTAUTHENTICATED)) => TnError::NotAuthenticated,
            (_, Some(EACCES)) => TnError::NotAuthorized(self.plain_reason()),
            (_, Some(EBUSY)) if self.plain_reason().to_ascii_lowercase().contains("rate limit") => {
                TnError::RateLimited(self.plain_reason())
            }
            (_, Some(ENOENT)) => TnError::NotFound(self.plain_reason()),
            (Some(-32000), _) | (_, Some(ETOOMANYREFS)) => {
                TnError::Call { errno: ETOOMANYREFS, errname: "ETOOMANYREFS".into(), reason: self.plain_reason() }
            }
            (Some(code @ (-32700 | -32600 | -32603)), None) => {
                TnError::Protocol(format!("error {code} '{}' for {method}", self.message))
            }
            (_, errno) => TnError::Call {
                errno: errno.unwrap_or(0),
                errname: self.errname.clone().unwrap_or_else(|| "EUNKNOWN".into()),
                reason: self.plain_reason(),
            },
        }
    }
}

/// `extra` = `[[attribute, message, errno], …]` (anything else yields nothing).
pub fn validation_items(extra: Option<&serde_json::Value>) -> Vec<ValidationItem> {
    let Some(serde_json::Value::Array(rows)) = extra else { return Vec::new() };
    rows.iter()
        .filter_map(|row| {
            let row = row.as_array()?;
            Some(ValidationItem {
                attribute: row.first().and_then(serde_json::Value::as_str).unwrap_or("").to_string(),
                message: row.get(1).and_then(serde_json::Value::as_str)?.to_string(),
                errno: row.get(2).and_then(serde_json::Value::as_i64).unwrap_or(22),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rpc(v: serde_json::Value) -> TnError {
        WireError::from_jsonrpc(&v).into_tn_error("app.create")
    }

    #[test]
    fn wire_errors_map_per_the_reference_table() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!({"code":-32601,"message":"Method does not exist"}), "MethodNotFound(\"app.create\")"),
            (
                json!({"code":-32001,"message":"Method call error","data":{"error":201,"errname":"ENOMETHOD","reason":"[ENOMETHOD] Method 'x' not found"}}),
                "MethodNotFound(\"app.create\")",
            ),
            (
                json!({"code":-32602,"message":"Invalid params","data":{"error":22,"errname":"EINVAL","reason":"[EINVAL] app_create.app_name: Field required\n","extra":[["app_create.app_name","Field required",22]]}}),
                "Validation([ValidationItem { attribute: \"app_create.app_name\", message: \"Field required\", errno: 22 }])",
            ),
            (
                json!({"code":-32602,"message":"Invalid params","data":{"error":22,"errname":"EINVAL","reason":"[ENOENT] None: App x does not exist","extra":[[null,"App x does not exist",2]]}}),
                "NotFound(\"App x does not exist\")",
            ),
            (
                json!({"code":-32001,"message":"Method call error","data":{"error":207,"errname":"ENOTAUTHENTICATED","reason":"[ENOTAUTHENTICATED] Not authenticated"}}),
                "NotAuthenticated",
            ),
            (
                json!({"code":-32001,"message":"Method call error","data":{"error":13,"errname":"EACCES","reason":"[EACCES] Not authorized"}}),
                "NotAuthorized(\"Not authorized\")",
            ),
            (
                json!({"code":-32001,"message":"Method call error","data":{"error":16,"errname":"EBUSY","reason":"[EBUSY] Rate Limit Exceeded"}}),
                "RateLimited(\"Rate Limit Exceeded\")",
            ),
            (
                json!({"code":-32001,"message":"Method call error","data":{"error":16,"errname":"EBUSY","reason":"[EBUSY] Device busy"}}),
                "Call { errno: 16, errname: \"EBUSY\", reason: \"Device busy\" }",
            ),
            (
                json!({"code":-32000,"message":"Maximum number of concurrent calls (20) has exceeded"}),
                "Call { errno: 109, errname: \"ETOOMANYREFS\", reason: \"Maximum number of concurrent calls (20) has exceeded\" }",
            ),
            (
                json!({"code":-32001,"message":"Method call error","data":{"error":14,"errname":"EFAULT","reason":"[EFAULT] Something failed"}}),
                "Call { errno: 14, errname: \"EFAULT\", reason: \"Something failed\" }",
            ),
            (
                json!({"code":-32001,"message":"Method call error","data":{"error":2,"errname":"ENOENT","reason":"[ENOENT] Container not found"}}),
                "NotFound(\"Container not found\")",
            ),
            (json!({"code":-32700,"message":"Expecting value"}), "Protocol(\"error -32700 'Expecting value' for app.create\")"),
        ];
        for (input, want) in cases {
            assert_eq!(format!("{:?}", rpc(input.clone())), want, "for {input}");
        }
    }

    #[test]
    fn legacy_errors_map_too() {
        let cases = vec![
            (
                json!({"error":11,"errname":"EAGAIN","type":"VALIDATION","reason":"x","extra":[["app_name","Required",22]]}),
                "Validation([ValidationItem { attribute: \"app_name\", message: \"Required\", errno: 22 }])",
            ),
            (json!({"error":207,"errname":"ENOTAUTHENTICATED","type":null,"reason":"Not authenticated"}), "NotAuthenticated"),
            (
                json!({"error":109,"errname":"ETOOMANYREFS","reason":"Maximum number of concurrent calls (20) has exceeded."}),
                "Call { errno: 109, errname: \"ETOOMANYREFS\", reason: \"Maximum number of concurrent calls (20) has exceeded.\" }",
            ),
            (json!({"error":201,"errname":"ENOMETHOD","reason":"[ENOMETHOD] Method 'login_ex' not found in 'auth'"}), "MethodNotFound(\"app.create\")"),
        ];
        for (input, want) in cases {
            assert_eq!(
                format!("{:?}", WireError::from_truenas(&input).into_tn_error("app.create")),
                want,
                "for {input}"
            );
        }
    }

    #[test]
    fn every_message_is_lowercase_actionable_and_has_no_final_period() {
        let all = vec![
            TnError::NotConfigured("no TrueNAS host configured: set TRUENAS_HOST".into()),
            TnError::Connect {
                step: ConnectStep::Tls,
                detail: "certificate verify failed".into(),
                fix: "set TRUENAS_CA_CERT".into(),
            },
            TnError::Auth(AuthFailure::BadCredentials),
            TnError::Auth(AuthFailure::Expired),
            TnError::Auth(AuthFailure::Denied),
            TnError::Auth(AuthFailure::KeyRefused),
            TnError::Auth(AuthFailure::OtpRequired),
            TnError::Auth(AuthFailure::Redirect(vec!["10.0.0.2".into()])),
            TnError::Auth(AuthFailure::InsecureTransportRefused),
            TnError::Auth(AuthFailure::NoCredentials),
            TnError::Auth(AuthFailure::Unknown("SCRAM_RESPONSE".into())),
            TnError::Validation(vec![ValidationItem { attribute: "a".into(), message: "b".into(), errno: 22 }]),
            TnError::NotFound("App x does not exist".into()),
            TnError::NotAuthenticated,
            TnError::NotAuthorized("Not authorized".into()),
            TnError::RateLimited("Rate Limit Exceeded".into()),
            TnError::MethodNotFound("app.x".into()),
            TnError::Call { errno: 14, errname: "EFAULT".into(), reason: "boom".into() },
            TnError::Call { errno: 109, errname: "ETOOMANYREFS".into(), reason: "too many".into() },
            TnError::JobFailed { job_id: 3, error: "boom".into() },
            TnError::JobAborted { job_id: 3 },
            TnError::Cancelled { job_id: Some(3) },
            TnError::Cancelled { job_id: None },
            TnError::Timeout { phase: TimeoutPhase::Connect, after: Duration::from_secs(10) },
            TnError::Timeout { phase: TimeoutPhase::Handshake, after: Duration::from_secs(10) },
            TnError::Timeout { phase: TimeoutPhase::Login, after: Duration::from_secs(10) },
            TnError::Timeout { phase: TimeoutPhase::Call, after: Duration::from_millis(1500) },
            TnError::Timeout { phase: TimeoutPhase::Job, after: Duration::from_secs(1200) },
            TnError::ConnectionLost { outcome_unknown: true, detail: "eof".into() },
            TnError::ConnectionLost { outcome_unknown: false, detail: "eof".into() },
            TnError::TooLarge { size: 70000, limit: 65536 },
            TnError::Protocol("garbage".into()),
        ];
        for e in all {
            let msg = e.to_string();
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(!msg.contains("{") && msg.len() > 20, "{msg}");
            let first = msg.chars().next().unwrap();
            assert!(!first.is_uppercase() || msg.starts_with("TrueNAS"), "{msg}");
        }
        assert_eq!(
            TnError::Timeout { phase: TimeoutPhase::Call, after: Duration::from_millis(1500) }.to_string(),
            "truenas did not answer within 1.5s; the NAS may be busy — retry, or raise TRUENAS_TIMEOUT"
        );
    }
}

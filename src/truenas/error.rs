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

impl fmt::Display for TnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // OWNER: client helper — make every message actionable.
        write!(f, "{self:?}")
    }
}

impl std::error::Error for TnError {}

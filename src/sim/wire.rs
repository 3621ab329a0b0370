//! The two wire dialects the middleware speaks (JSON-RPC 2.0 and legacy DDP) and its error objects, so every
//! other part of the simulator deals in results and [`Failure`]s only.

use serde_json::{json, Value};

/// Which dialect a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    JsonRpc,
    Legacy,
}

pub(crate) const ENOENT: i64 = 2;
pub(crate) const EAGAIN: i64 = 11;
pub(crate) const EACCES: i64 = 13;
pub(crate) const EFAULT: i64 = 14;
pub(crate) const EBUSY: i64 = 16;
pub(crate) const EEXIST: i64 = 17;
pub(crate) const EINVAL: i64 = 22;
pub(crate) const EOPNOTSUPP: i64 = 95;
pub(crate) const ETOOMANYREFS: i64 = 109;
pub(crate) const ENOMETHOD: i64 = 201;
pub(crate) const ENOTAUTHENTICATED: i64 = 207;

pub(crate) fn errname(errno: i64) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        11 => "EAGAIN",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        22 => "EINVAL",
        95 => "EOPNOTSUPP",
        109 => "ETOOMANYREFS",
        110 => "ETIMEDOUT",
        201 => "ENOMETHOD",
        207 => "ENOTAUTHENTICATED",
        _ => "EUNKNOWN",
    }
}

/// One entry of a TrueNAS `ValidationErrors`: attribute (None = `null`), message, errno.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FieldError {
    pub attribute: Option<String>,
    pub message: String,
    pub errno: i64,
}

impl FieldError {
    pub(crate) fn new(attribute: impl Into<String>, message: impl Into<String>, errno: i64) -> FieldError {
        FieldError { attribute: Some(attribute.into()), message: message.into(), errno }
    }
}

/// Why a call failed, in TrueNAS terms.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Failure {
    /// `ValidationErrors` (`single` = a lone `ValidationError` such as `InstanceNotFound`).
    Validation { errors: Vec<FieldError>, single: bool },
    /// `CallError(message, errno)`.
    Call { errno: i64, message: String },
    /// The method is not in the API.
    MethodNotFound { method: String },
    /// More than 20 calls in flight on one socket.
    TooManyCalls,
    /// A malformed request envelope (`-32600`).
    InvalidRequest(String),
}

impl Failure {
    pub(crate) fn call(errno: i64, message: impl Into<String>) -> Failure {
        Failure::Call { errno, message: message.into() }
    }
    pub(crate) fn validation(errors: Vec<FieldError>) -> Failure {
        Failure::Validation { errors, single: false }
    }
    pub(crate) fn invalid(attribute: &str, message: impl Into<String>, errno: i64) -> Failure {
        Failure::validation(vec![FieldError::new(attribute, message, errno)])
    }
    /// `InstanceNotFound`: a single validation error with a null attribute and ENOENT.
    pub(crate) fn not_found(message: impl Into<String>) -> Failure {
        Failure::Validation {
            errors: vec![FieldError { attribute: None, message: message.into(), errno: ENOENT }],
            single: true,
        }
    }
    pub(crate) fn not_authenticated() -> Failure {
        Failure::call(ENOTAUTHENTICATED, "Not authenticated")
    }

    /// `str(exc)` as the middleware renders it (job `error` field, `reason`).
    pub(crate) fn reason(&self) -> String {
        match self {
            Failure::Validation { errors, .. } => {
                let mut s = String::new();
                for e in errors {
                    let attr = e.attribute.as_deref().unwrap_or("None");
                    s.push_str(&format!("[{}] {attr}: {}\n", errname(e.errno), e.message));
                }
                s
            }
            Failure::Call { errno, message } => format!("[{}] {message}", errname(*errno)),
            Failure::MethodNotFound { method } => {
                let (service, name) = method.rsplit_once('.').unwrap_or(("", method));
                format!("[ENOMETHOD] Method '{name}' not found in '{service}'")
            }
            Failure::TooManyCalls => "Maximum number of concurrent calls (20) has exceeded.".into(),
            Failure::InvalidRequest(m) => m.clone(),
        }
    }

    fn class(&self) -> &'static str {
        match self {
            Failure::Validation { single: true, .. } => "InstanceNotFound",
            Failure::Validation { .. } => "ValidationErrors",
            _ => "CallError",
        }
    }

    fn trace(&self) -> Value {
        let reason = self.reason();
        json!({
            "class": self.class(),
            "frames": [],
            "formatted": format!("Traceback (most recent call last):\n  File \"middlewared/main.py\", in call_method\n{}: {}\n", self.class(), reason.trim_end()),
            "repr": format!("{}({:?})", self.class(), reason.trim_end()),
        })
    }

    fn extra(&self) -> Value {
        match self {
            Failure::Validation { errors, .. } => errors_extra(errors),
            _ => Value::Null,
        }
    }

    /// The TrueNAS error dict (`data` of a JSON-RPC error, `error` of a legacy result).
    pub(crate) fn error_dict(&self, protocol: Protocol, legacy_24_10: bool) -> Value {
        match self {
            Failure::Validation { errors, single } => {
                let errno = match protocol {
                    Protocol::JsonRpc => EINVAL,
                    Protocol::Legacy if *single => errors.first().map(|e| e.errno).unwrap_or(EINVAL),
                    Protocol::Legacy => EAGAIN,
                };
                json!({"error": errno, "errname": errname(errno), "type": "VALIDATION", "reason": self.reason(),
                       "trace": self.trace(), "extra": self.extra()})
            }
            Failure::Call { errno, message } if legacy_24_10 && (*errno == ENOTAUTHENTICATED || *errno == EACCES) => {
                // 24.10 sends auth errors without exc_info.
                json!({"error": errno, "errname": errname(*errno), "type": null, "reason": message,
                       "trace": null, "extra": null})
            }
            Failure::Call { errno, .. } => json!({"error": errno, "errname": errname(*errno), "type": null,
                "reason": self.reason(), "trace": self.trace(), "extra": null}),
            Failure::MethodNotFound { .. } => json!({"error": ENOMETHOD, "errname": "ENOMETHOD", "type": null,
                "reason": self.reason(), "trace": self.trace(), "extra": null}),
            Failure::TooManyCalls => json!({"error": ETOOMANYREFS, "errname": "ETOOMANYREFS", "type": null,
                "reason": self.reason(), "trace": null, "extra": null}),
            Failure::InvalidRequest(m) => json!({"error": EINVAL, "errname": "EINVAL", "type": null,
                "reason": m, "trace": null, "extra": null}),
        }
    }

    /// `exc_info` of a failed job.
    pub(crate) fn exc_info(&self) -> Value {
        match self {
            Failure::Validation { errors, .. } => json!({"repr": self.trace()["repr"], "type": "VALIDATION",
                "errno": errors.first().map(|e| e.errno), "extra": errors_extra(errors)}),
            Failure::Call { errno, .. } => json!({"repr": self.trace()["repr"], "type": "CallError",
                "errno": errno, "extra": null}),
            other => json!({"repr": other.trace()["repr"], "type": "CallError", "errno": EFAULT, "extra": null}),
        }
    }

    pub(crate) fn formatted_trace(&self) -> String {
        self.trace()["formatted"].as_str().unwrap_or_default().to_string()
    }
}

fn errors_extra(errors: &[FieldError]) -> Value {
    Value::Array(errors.iter().map(|e| json!([e.attribute, e.message, e.errno])).collect())
}

/// Encodes server → client messages in one dialect.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Codec {
    pub protocol: Protocol,
    /// 24.10 quirks (auth errors without trace).
    pub legacy_24_10: bool,
}

impl Codec {
    pub(crate) fn result(&self, id: &Value, result: &Value) -> String {
        match self.protocol {
            Protocol::JsonRpc => json!({"jsonrpc": "2.0", "result": result, "id": id}).to_string(),
            Protocol::Legacy => json!({"msg": "result", "id": id, "result": result}).to_string(),
        }
    }

    pub(crate) fn error(&self, id: &Value, failure: &Failure) -> String {
        match self.protocol {
            Protocol::JsonRpc => {
                let (code, message, data) = match failure {
                    Failure::Validation { .. } => {
                        (-32602, "Invalid params", Some(failure.error_dict(self.protocol, false)))
                    }
                    Failure::Call { .. } => {
                        (-32001, "Method call error", Some(failure.error_dict(self.protocol, false)))
                    }
                    Failure::MethodNotFound { .. } => (-32601, "Method does not exist", None),
                    Failure::TooManyCalls => (-32000, "Maximum number of concurrent calls (20) has exceeded", None),
                    Failure::InvalidRequest(m) => {
                        return json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": m}, "id": id}).to_string()
                    }
                };
                let mut err = json!({"code": code, "message": message});
                if let Some(d) = data {
                    err["data"] = d;
                }
                json!({"jsonrpc": "2.0", "error": err, "id": id}).to_string()
            }
            Protocol::Legacy => {
                json!({"msg": "result", "id": id, "error": failure.error_dict(self.protocol, self.legacy_24_10)})
                    .to_string()
            }
        }
    }

    /// `collection_update` (JSON-RPC) or `added|changed|removed` (DDP).
    pub(crate) fn event(&self, msg: &str, collection: &str, id: Option<&Value>, fields: Option<&Value>) -> String {
        let mut body = json!({"msg": msg, "collection": collection});
        if let Some(id) = id {
            body["id"] = id.clone();
        }
        if let Some(f) = fields {
            body["fields"] = f.clone();
        }
        match self.protocol {
            Protocol::JsonRpc => json!({"jsonrpc": "2.0", "method": "collection_update", "params": body}).to_string(),
            Protocol::Legacy => body.to_string(),
        }
    }

    /// `notify_unsubscribed` (JSON-RPC) or `nosub` (DDP; no `error` key on a clean end).
    pub(crate) fn unsubscribed(&self, collection: &str, error: Option<&Failure>) -> String {
        match self.protocol {
            Protocol::JsonRpc => {
                let err = error.map(|f| f.error_dict(self.protocol, false)).unwrap_or(Value::Null);
                json!({"jsonrpc": "2.0", "method": "notify_unsubscribed",
                       "params": {"collection": collection, "error": err}})
                .to_string()
            }
            Protocol::Legacy => {
                let mut body = json!({"msg": "nosub", "collection": collection});
                if let Some(f) = error {
                    body["error"] = f.error_dict(self.protocol, self.legacy_24_10);
                }
                body.to_string()
            }
        }
    }

    /// A connection-level JSON-RPC error (`id: null`): parse errors, batches.
    pub(crate) fn parse_error(message: &str) -> String {
        json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": message}, "id": null}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_error_has_the_middleware_shape() {
        let f = Failure::invalid("app_create.app_name", "Field required", EINVAL);
        let codec = Codec { protocol: Protocol::JsonRpc, legacy_24_10: false };
        let v: Value = serde_json::from_str(&codec.error(&json!(9), &f)).unwrap();
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["message"], "Invalid params");
        assert_eq!(v["error"]["data"]["error"], 22);
        assert_eq!(v["error"]["data"]["reason"], "[EINVAL] app_create.app_name: Field required\n");
        assert_eq!(v["error"]["data"]["extra"], json!([["app_create.app_name", "Field required", 22]]));
    }

    #[test]
    fn legacy_errors_use_errno_rules() {
        let codec = Codec { protocol: Protocol::Legacy, legacy_24_10: true };
        let cases = [
            (Failure::invalid("a", "b", EINVAL), 11),
            (Failure::not_found("App x does not exist"), 2),
            (Failure::not_authenticated(), 207),
            (Failure::TooManyCalls, 109),
        ];
        for (f, errno) in cases {
            let v: Value = serde_json::from_str(&codec.error(&json!("x"), &f)).unwrap();
            assert_eq!(v["error"]["error"], errno, "{f:?}");
        }
        let v: Value = serde_json::from_str(&codec.error(&json!("x"), &Failure::not_authenticated())).unwrap();
        assert_eq!(v["error"]["reason"], "Not authenticated");
        assert!(v["error"]["trace"].is_null());
    }
}

//! Which login call to make for the configured credential and protocol, and what its answer means.
//!
//! Password: `auth.login_ex` PASSWORD_PLAIN on JSON-RPC (25.04+), falling back to `auth.login` when the method does
//! not exist; `auth.login` on legacy DDP (24.10). API key: `auth.login_ex` API_KEY_PLAIN with the username when one
//! was configured explicitly, else `auth.login_with_api_key` (which looks the owner up); on a 26.0 API an API key
//! with its owner named logs in with SCRAM-SHA-512 instead ([`super::scram`]), so the key never crosses the wire
//! and may be used over plain ws:// (passwords stay PASSWORD_PLAIN: 26.0's SCRAM covers API keys only). Reference §2.

use serde_json::{json, Value};

use super::error::{AuthFailure, TnError};
use super::types::WireProtocol;
use crate::config::{Config, Secret};

/// The configured credential kind, as reported in `ServerInfo::auth_method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    Password,
    ApiKey,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Password => "password",
            CredentialKind::ApiKey => "api_key",
        }
    }
}

/// Which credential we will use (a password wins over an API key, as the settings document).
pub fn credential_kind(config: &Config) -> Result<CredentialKind, TnError> {
    if config.password.is_some() {
        Ok(CredentialKind::Password)
    } else if config.api_key.is_some() {
        Ok(CredentialKind::ApiKey)
    } else {
        Err(TnError::Auth(AuthFailure::NoCredentials))
    }
}

/// One login call: method and positional params (which hold the secret: never log them).
#[derive(Debug, PartialEq)]
pub struct LoginCall {
    pub method: &'static str,
    pub params: Value,
}

/// The login calls to try, in order; the second is used only if the first does not exist on the server.
/// `reconnect_token`: ask for a single-use token for the next login (a 26.0 option; older APIs refuse the key).
pub fn login_calls(config: &Config, protocol: WireProtocol, reconnect_token: bool) -> Result<Vec<LoginCall>, TnError> {
    let user = config.username.as_str();
    let options = login_options(reconnect_token);
    Ok(match credential_kind(config)? {
        CredentialKind::Password => {
            let password = config.password.as_ref().map(|s| s.expose()).unwrap_or_default();
            let plain = LoginCall { method: "auth.login", params: json!([user, password]) };
            match protocol {
                WireProtocol::JsonRpc => vec![
                    LoginCall {
                        method: "auth.login_ex",
                        params: json!([{
                            "mechanism": "PASSWORD_PLAIN",
                            "username": user,
                            "password": password,
                            "login_options": options
                        }]),
                    },
                    plain,
                ],
                WireProtocol::Legacy => vec![plain],
            }
        }
        CredentialKind::ApiKey => {
            let key = config.api_key.as_ref().map(|s| s.expose()).unwrap_or_default();
            let lookup = LoginCall { method: "auth.login_with_api_key", params: json!([key]) };
            match (protocol, config.username_explicit) {
                (WireProtocol::JsonRpc, true) => vec![
                    LoginCall {
                        method: "auth.login_ex",
                        params: json!([{
                            "mechanism": "API_KEY_PLAIN",
                            "username": user,
                            "api_key": key,
                            "login_options": options
                        }]),
                    },
                    lookup,
                ],
                _ => vec![lookup],
            }
        }
    })
}

/// Whether logging in sends the API key itself. SCRAM does not: on a 26.0 API, over JSON-RPC, with the key's owner
/// named (the exchange names `<user>:<key id>`) and the key in its `<id>-<secret>` form.
pub fn key_on_wire(config: &Config, protocol: WireProtocol, api_26: bool) -> bool {
    !(api_26 && protocol == WireProtocol::JsonRpc && scram_key(config).is_some())
}

/// Whether a SCRAM login is possible for this configuration on some API (before the NAS's version is known).
pub fn scram_possible(config: &Config) -> bool {
    config.api != crate::config::ApiMode::Legacy && scram_key(config).is_some()
}

/// The configured API key as (id, secret) when it may be used with SCRAM (an API key credential, owner named).
fn scram_key(config: &Config) -> Option<(u32, &str)> {
    let key = config.api_key.as_ref().filter(|_| config.password.is_none() && config.username_explicit)?;
    super::scram::split_key(key.expose())
}

/// The result of one login call: `Ok(Ok(result))` accepted, `Ok(Err(why))` refused, `Err` no answer that says.
pub type LoginAnswer = Result<Result<Value, AuthFailure>, TnError>;

/// Log in with SCRAM-SHA-512 (call only when [`key_on_wire`] is false): client-first, server-first, client-final,
/// server-final, through `ask` (which sends one login call). The server's signature is checked, so a server that
/// does not know the key cannot pretend to have accepted it.
pub fn scram_login(config: &Config, ask: &mut dyn FnMut(&LoginCall) -> LoginAnswer) -> LoginAnswer {
    let Some((id, secret)) = scram_key(config) else {
        return Err(TnError::Protocol("SCRAM needs an API key of the form <id>-<secret> and its owner".into()));
    };
    let mut exchange = super::scram::Exchange::start(&config.username, id).map_err(TnError::Protocol)?;
    let step = |scram_type: &str, rfc_str: String| LoginCall {
        method: "auth.login_ex",
        params: json!([{"mechanism": "SCRAM", "scram_type": scram_type, "rfc_str": rfc_str}]),
    };
    let first = match ask(&step("CLIENT_FIRST_MESSAGE", exchange.client_first()))? {
        Ok(answer) => answer,
        refused => return Ok(refused),
    };
    let server_first = scram_message(&first, "SERVER_FIRST_RESPONSE")?;
    let final_message = exchange.client_final(server_first, secret).map_err(TnError::Protocol)?;
    let last = match ask(&step("CLIENT_FINAL_MESSAGE", final_message))? {
        Ok(answer) => answer,
        refused => return Ok(refused),
    };
    if !exchange.server_verified(scram_message(&last, "SERVER_FINAL_RESPONSE")?) {
        return Err(TnError::Protocol(
            "the NAS's SCRAM signature is wrong: the server does not know the key (a man in the middle?)".into(),
        ));
    }
    Ok(Ok(last))
}

/// The `rfc_str` of a `SCRAM_RESPONSE` of the expected type.
fn scram_message<'a>(answer: &'a Value, scram_type: &str) -> Result<&'a str, TnError> {
    let got = answer.get("scram_type").and_then(Value::as_str);
    match answer.get("rfc_str").and_then(Value::as_str) {
        Some(rfc) if got == Some(scram_type) => Ok(rfc),
        _ => Err(TnError::Protocol(format!("expected a SCRAM {scram_type}, got {answer}"))),
    }
}

/// `user_info` is not needed (it is large); `reconnect_token` only where the API has it.
fn login_options(reconnect_token: bool) -> Value {
    if reconnect_token {
        json!({"user_info": false, "reconnect_token": true})
    } else {
        json!({"user_info": false})
    }
}

/// The `auth.login_ex` params of a reconnect with a token (which asks for the next one).
pub fn token_login(token: &str) -> Value {
    json!([{"mechanism": "TOKEN_PLAIN", "token": token, "login_options": login_options(true)}])
}

/// The single-use token a successful 26.0 login handed out, if it did.
pub fn reconnect_token(result: &Value) -> Option<Secret> {
    result.get("reconnect_token").and_then(Value::as_str).filter(|t| !t.is_empty()).map(Secret::new)
}

/// A refusal in the words that fit the credential and API: on 26.0 an API key that is refused may have been
/// revoked (a revoked key answers `AUTH_ERR` there, not `EXPIRED`), which the user must hear.
pub fn explain(failure: AuthFailure, config: &Config, api_26: bool) -> AuthFailure {
    let key = matches!(credential_kind(config), Ok(CredentialKind::ApiKey));
    match failure {
        AuthFailure::BadCredentials if key && api_26 => AuthFailure::KeyRefused,
        other => other,
    }
}

impl LoginCall {
    /// What the answer to this call means: [`interpret`], except that a SCRAM step's `SCRAM_RESPONSE` is the
    /// exchange going on (for [`scram_login`] to read).
    pub fn interpret(&self, result: &Value) -> Result<(), AuthFailure> {
        let scram = self.params[0]["mechanism"] == "SCRAM";
        if scram && result.get("response_type").and_then(Value::as_str) == Some("SCRAM_RESPONSE") {
            return Ok(());
        }
        interpret(self.method, result)
    }
}

/// What a login answer means: `Ok(())` for success, else why it failed.
pub fn interpret(method: &str, result: &Value) -> Result<(), AuthFailure> {
    if method != "auth.login_ex" {
        return match result {
            Value::Bool(true) => Ok(()),
            Value::Bool(false) | Value::Null => Err(AuthFailure::BadCredentials),
            other => Err(AuthFailure::Unknown(format!("unexpected answer {other}"))),
        };
    }
    let kind = result.get("response_type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "SUCCESS" => Ok(()),
        "AUTH_ERR" => Err(AuthFailure::BadCredentials),
        "DENIED" => Err(AuthFailure::Denied),
        "EXPIRED" => Err(AuthFailure::Expired),
        "OTP_REQUIRED" => Err(AuthFailure::OtpRequired),
        "REDIRECT" => Err(AuthFailure::Redirect(
            result
                .get("urls")
                .and_then(Value::as_array)
                .map(|u| u.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
        )),
        "" => Err(AuthFailure::Unknown(format!("a result without response_type: {result}"))),
        other => Err(AuthFailure::Unknown(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(password: Option<&str>, key: Option<&str>, explicit_user: bool) -> Config {
        let mut c = Config::for_tests();
        c.password = password.map(Secret::new);
        c.api_key = key.map(Secret::new);
        c.username = "admin".into();
        c.username_explicit = explicit_user;
        c
    }

    fn methods(c: &Config, p: WireProtocol) -> Vec<&'static str> {
        login_calls(c, p, false).unwrap().iter().map(|l| l.method).collect()
    }

    #[test]
    fn the_login_call_follows_credential_protocol_and_username() {
        use WireProtocol::*;
        let cases = [
            (config(Some("pw"), None, false), JsonRpc, vec!["auth.login_ex", "auth.login"]),
            (config(Some("pw"), None, false), Legacy, vec!["auth.login"]),
            (config(Some("pw"), Some("1-k"), true), JsonRpc, vec!["auth.login_ex", "auth.login"]),
            (config(None, Some("1-k"), true), JsonRpc, vec!["auth.login_ex", "auth.login_with_api_key"]),
            (config(None, Some("1-k"), false), JsonRpc, vec!["auth.login_with_api_key"]),
            (config(None, Some("1-k"), true), Legacy, vec!["auth.login_with_api_key"]),
        ];
        for (c, p, want) in cases {
            assert_eq!(methods(&c, p), want, "{:?} {:?}", c.api_key.is_some(), p);
        }
        let calls = login_calls(&config(None, Some("1-k"), true), JsonRpc, false).unwrap();
        assert_eq!(
            calls[0].params,
            json!([{"mechanism":"API_KEY_PLAIN","username":"admin","api_key":"1-k","login_options":{"user_info":false}}])
        );
        let calls = login_calls(&config(Some("pw"), None, false), Legacy, false).unwrap();
        assert_eq!(calls[0].params, json!(["admin", "pw"]));
        assert_eq!(
            login_calls(&config(None, None, false), JsonRpc, false).unwrap_err().to_string(),
            TnError::Auth(AuthFailure::NoCredentials).to_string()
        );
    }

    #[test]
    fn every_response_type_is_understood() {
        let cases = [
            ("auth.login_ex", json!({"response_type":"SUCCESS","user_info":null,"authenticator":"LEVEL_1"}), Ok(())),
            ("auth.login_ex", json!({"response_type":"AUTH_ERR"}), Err(AuthFailure::BadCredentials)),
            ("auth.login_ex", json!({"response_type":"EXPIRED"}), Err(AuthFailure::Expired)),
            ("auth.login_ex", json!({"response_type":"DENIED"}), Err(AuthFailure::Denied)),
            (
                "auth.login_ex",
                json!({"response_type":"OTP_REQUIRED","username":"admin"}),
                Err(AuthFailure::OtpRequired),
            ),
            (
                "auth.login_ex",
                json!({"response_type":"REDIRECT","urls":["10.0.0.2","10.0.0.3"]}),
                Err(AuthFailure::Redirect(vec!["10.0.0.2".into(), "10.0.0.3".into()])),
            ),
            (
                "auth.login_ex",
                json!({"response_type":"SCRAM_RESPONSE"}),
                Err(AuthFailure::Unknown("SCRAM_RESPONSE".into())),
            ),
            ("auth.login", json!(true), Ok(())),
            ("auth.login", json!(false), Err(AuthFailure::BadCredentials)),
            ("auth.login_with_api_key", json!(false), Err(AuthFailure::BadCredentials)),
        ];
        for (method, result, want) in cases {
            assert_eq!(interpret(method, &result), want, "for {method} {result}");
        }
    }
}

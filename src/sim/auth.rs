//! Login the way each release does it: 24.10 booleans, 25.04+ `auth.login_ex` response types, the permanent
//! revocation of an API key used over an insecure transport, and 26.0's `DENIED`, `AUTH_ERR` for a revoked key and
//! single-use `reconnect_token`s (plugins/auth.py, plugins/auth_/login_ex_impl.py of 26.0.0-BETA.3), and 26.0's
//! SCRAM-SHA-512 for API keys ([`super::scram`]).

use std::sync::Arc;

use serde_json::{json, Value};

use super::middleware::Middleware;
use super::session::{AuthMethod, Credentials, Origin, Session};
use super::wire::{Failure, EINVAL, EOPNOTSUPP};
use super::SimVersion;

const MAX_OTP_ATTEMPTS: u32 = 3;

/// What `login_ex` decided.
enum Outcome {
    Success(String, AuthMethod, &'static str),
    AuthErr,
    Expired,
    /// Valid credentials, no API access (26.0).
    Denied,
    OtpRequired(String),
    Redirect(Vec<String>),
}

pub(crate) fn handle(
    mw: &Arc<Middleware>,
    session: &Arc<Session>,
    method: &str,
    params: &[Value],
) -> Result<Value, Failure> {
    let legacy = mw.version() == SimVersion::V24_10;
    let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or_default().to_string();
    match method {
        "auth.login" => {
            let (user, password) = (s(0), s(1));
            let otp = params.get(2).and_then(Value::as_str).map(str::to_string);
            let outcome = match password_outcome(mw, &user, &password) {
                Outcome::OtpRequired(u) => match otp {
                    Some(code) if code == mw.opts.otp_code => Outcome::Success(u, AuthMethod::Password, "LEVEL_2"),
                    _ => Outcome::AuthErr,
                },
                o => o,
            };
            Ok(succeeded(mw, session, outcome))
        }
        "auth.login_with_api_key" => {
            let key = s(0);
            let outcome = if legacy {
                match find_key(mw, &key) {
                    Some((_, username)) if !mw.state().revoked_keys.contains(&key_id(&key).unwrap_or(0)) => {
                        Outcome::Success(username, AuthMethod::ApiKey, "LEVEL_1")
                    }
                    _ => Outcome::AuthErr,
                }
            } else {
                // 25.04+: looks up the owner and delegates to login_ex, so it revokes too.
                let username = mw
                    .opts
                    .api_keys
                    .iter()
                    .find(|k| Some(k.id) == key_id(&key))
                    .map(|k| k.username.clone())
                    .unwrap_or_default();
                api_key_outcome(mw, session, &username, &key)
            };
            Ok(succeeded(mw, session, outcome))
        }
        "auth.login_with_token" => {
            let outcome = token_outcome(mw, &s(0));
            Ok(succeeded(mw, session, outcome))
        }
        "auth.login_ex" | "auth.login_ex_continue" => {
            let data = params.first().cloned().unwrap_or(Value::Null);
            let field = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let user_info = data.pointer("/login_options/user_info").and_then(Value::as_bool).unwrap_or(true);
            let mut scram_final = None;
            let outcome = match field("mechanism").as_str() {
                "SCRAM" if mw.version() >= SimVersion::V26_0 => {
                    match super::scram::step(mw, session, &field("scram_type"), &field("rfc_str"))? {
                        super::scram::Step::Respond(answer) => return Ok(answer),
                        super::scram::Step::Refused => Outcome::AuthErr,
                        super::scram::Step::Proved { username, server_final } => {
                            scram_final = Some(server_final);
                            let success = Outcome::Success(username.clone(), AuthMethod::ApiKey, "LEVEL_1");
                            api_access(mw, &username, success)
                        }
                    }
                }
                "PASSWORD_PLAIN" => password_outcome(mw, &field("username"), &field("password")),
                "API_KEY_PLAIN" => api_key_outcome(mw, session, &field("username"), &field("api_key")),
                "TOKEN_PLAIN" => token_outcome(mw, &field("token")),
                "OTP_TOKEN" => {
                    let pending = session.credentials().clone();
                    match pending {
                        Credentials::OtpPending { username, attempts } => {
                            if field("otp_token") == mw.opts.otp_code {
                                Outcome::Success(username, AuthMethod::Password, "LEVEL_2")
                            } else if attempts + 1 < MAX_OTP_ATTEMPTS {
                                *session.credentials() =
                                    Credentials::OtpPending { username: username.clone(), attempts: attempts + 1 };
                                return Ok(json!({"response_type": "OTP_REQUIRED", "username": username}));
                            } else {
                                Outcome::AuthErr
                            }
                        }
                        _ => return Err(Failure::call(EINVAL, "OTP_TOKEN: no authentication in progress")),
                    }
                }
                other => return Err(Failure::call(EOPNOTSUPP, format!("{other}: mechanism is not supported"))),
            };
            let otp = field("mechanism") == "OTP_TOKEN";
            let mut resp = finish(mw, session, outcome);
            // A SCRAM login that succeeds answers with the server's signature, not SUCCESS.
            if let Some(server_final) = scram_final.filter(|_| resp["response_type"] == "SUCCESS") {
                return Ok(server_final);
            }
            if resp["response_type"] == "SUCCESS" && !user_info {
                resp["user_info"] = Value::Null;
            }
            if resp["response_type"] == "SUCCESS" && mw.version() >= SimVersion::V26_0 {
                // A one-time-password login may not create tokens.
                let wanted = data.pointer("/login_options/reconnect_token").and_then(Value::as_bool) == Some(true);
                resp["reconnect_token"] =
                    if wanted && !otp { json!(reconnect_token(mw, session)) } else { Value::Null };
            }
            Ok(resp)
        }
        "auth.mechanism_choices" if mw.version() >= SimVersion::V26_0 => {
            Ok(json!(["API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN", "SCRAM"]))
        }
        "auth.mechanism_choices" => Ok(json!(["API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN"])),
        "auth.me" => {
            let creds = session.credentials().clone();
            match creds {
                Credentials::User { username, method, .. } => Ok(user_info(&username, method)),
                _ => Err(Failure::not_authenticated()),
            }
        }
        "auth.logout" => {
            *session.credentials() = Credentials::None;
            session.clear_subscriptions();
            Ok(json!(true))
        }
        "auth.generate_token" => {
            let username = session.username().unwrap_or_default();
            let token = super::apps::hex_id(&format!("token/{username}/{}", session.id), super::middleware::now_ms());
            mw.state().tokens.insert(token.clone(), username);
            Ok(json!(token))
        }
        _ => Err(Failure::MethodNotFound { method: method.to_string() }),
    }
}

fn key_id(key: &str) -> Option<u32> {
    key.split_once('-').and_then(|(id, _)| id.parse().ok())
}

/// (id, username) of a configured key whose secret matches.
fn find_key(mw: &Middleware, key: &str) -> Option<(u32, String)> {
    mw.opts.api_keys.iter().find(|k| k.key == key).map(|k| (k.id, k.username.clone()))
}

fn password_outcome(mw: &Middleware, username: &str, password: &str) -> Outcome {
    let ok = mw.opts.users.iter().any(|(u, p)| u == username && p == password);
    if !ok {
        return Outcome::AuthErr;
    }
    if let Some(urls) = &mw.opts.ha_redirect {
        return Outcome::Redirect(urls.clone());
    }
    if mw.opts.expired_users.iter().any(|u| u == username) {
        return Outcome::Expired;
    }
    if mw.opts.otp_users.iter().any(|u| u == username) {
        return Outcome::OtpRequired(username.to_string());
    }
    api_access(mw, username, Outcome::Success(username.to_string(), AuthMethod::Password, "LEVEL_1"))
}

/// A user without API access: 26.0 says `DENIED`; older releases give no hint (`AUTH_ERR`).
fn api_access(mw: &Middleware, username: &str, success: Outcome) -> Outcome {
    if !mw.opts.denied_users.iter().any(|u| u == username) {
        success
    } else if mw.version() >= SimVersion::V26_0 {
        Outcome::Denied
    } else {
        Outcome::AuthErr
    }
}

/// `auth.generate_token(ttl, {}, match_origin=true, single_use=true)` for the session's user.
fn reconnect_token(mw: &Middleware, session: &Session) -> String {
    let username = session.username().unwrap_or_default();
    let token = super::apps::hex_id(&format!("reconnect/{username}/{}", session.id), super::middleware::now_ms());
    let mut st = mw.state();
    st.tokens.insert(token.clone(), username);
    st.single_use_tokens.insert(token.clone());
    token
}

/// A valid key over an insecure transport is revoked for good and answered EXPIRED; later uses of a revoked key
/// answer EXPIRED on 25.x and AUTH_ERR on 26.0.
fn api_key_outcome(mw: &Middleware, session: &Session, username: &str, key: &str) -> Outcome {
    let Some((id, owner)) = find_key(mw, key) else { return Outcome::AuthErr };
    if owner != username {
        return Outcome::AuthErr;
    }
    if mw.state().revoked_keys.contains(&id) {
        return if mw.version() >= SimVersion::V26_0 { Outcome::AuthErr } else { Outcome::Expired };
    }
    if let Some(urls) = &mw.opts.ha_redirect {
        return Outcome::Redirect(urls.clone());
    }
    if !secure_transport(mw, session) {
        mw.state().revoked_keys.insert(id);
        log::warn!("simulator: API key {id} revoked: attempt to use over an insecure transport");
        return Outcome::Expired;
    }
    let success = Outcome::Success(owner.clone(), AuthMethod::ApiKey, "LEVEL_1");
    api_access(mw, &owner, success)
}

fn token_outcome(mw: &Middleware, token: &str) -> Outcome {
    let mut st = mw.state();
    let user = if st.single_use_tokens.remove(token) { st.tokens.remove(token) } else { st.tokens.get(token).cloned() };
    match user {
        Some(u) => Outcome::Success(u, AuthMethod::Token, "LEVEL_1"),
        None => Outcome::AuthErr,
    }
}

/// `ConnectionOrigin.secure_transport`: TLS (X-Https), local (memory), or loopback TCP — unless the knob says
/// plain TCP counts as remote.
pub(crate) fn secure_transport(mw: &Middleware, session: &Session) -> bool {
    match &session.origin {
        Origin::Memory | Origin::Tls { .. } => true,
        Origin::Tcp { peer, .. } => peer.ip().is_loopback() && !mw.faults.plain_tcp_remote(),
    }
}

/// Apply the outcome to the session (after the failure delay) and build the `login_ex` response.
/// The boolean logins (`auth.login`, `auth.login_with_api_key`, `auth.login_with_token`).
fn succeeded(mw: &Middleware, session: &Session, outcome: Outcome) -> Value {
    Value::Bool(finish(mw, session, outcome)["response_type"] == "SUCCESS")
}

fn finish(mw: &Middleware, session: &Session, outcome: Outcome) -> Value {
    match outcome {
        Outcome::Success(username, method, level) => {
            *session.credentials() =
                Credentials::User { username: username.clone(), method, epoch: mw.faults.expire_epoch() };
            json!({"response_type": "SUCCESS", "user_info": user_info(&username, method), "authenticator": level})
        }
        Outcome::AuthErr => {
            std::thread::sleep(mw.opts.login_fail_delay);
            json!({"response_type": "AUTH_ERR"})
        }
        Outcome::Expired => json!({"response_type": "EXPIRED"}),
        Outcome::Denied => json!({"response_type": "DENIED"}),
        Outcome::OtpRequired(username) => {
            *session.credentials() = Credentials::OtpPending { username: username.clone(), attempts: 0 };
            json!({"response_type": "OTP_REQUIRED", "username": username})
        }
        Outcome::Redirect(urls) => json!({"response_type": "REDIRECT", "urls": urls}),
    }
}

fn user_info(username: &str, method: AuthMethod) -> Value {
    json!({
        "pw_name": username,
        "pw_gecos": username,
        "pw_dir": format!("/home/{username}"),
        "pw_shell": "/usr/bin/zsh",
        "pw_uid": 3000,
        "pw_gid": 3000,
        "grouplist": [3000, 544],
        "sid": null,
        "source": "LOCAL",
        "local": true,
        "attributes": {},
        "two_factor_config": {"secret_configured": false},
        "privilege": {
            "roles": {"$set": ["FULL_ADMIN"]},
            "allowlist": [{"method": "*", "resource": "*"}],
            "web_shell": false,
        },
        "account_attributes": ["LOCAL", if method == AuthMethod::ApiKey { "API_KEY" } else { "PASSWORD" }],
    })
}

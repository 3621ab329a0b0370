//! The server side of 26.0's SCRAM-SHA-512 login for API keys (plugins/auth_/login_ex_impl.py `login_ex_scram`, the
//! middleware's scram_authentication.rst): CLIENT_FIRST_MESSAGE `n,,n=<user>:<key id>,r=<nonce>` is answered with
//! `r=<nonce+ours>,s=<salt>,i=<iterations>`, CLIENT_FINAL_MESSAGE `c=biws,r=<nonce>,p=<proof>` with `v=<signature>`
//! once the proof checks out. Only the proof crosses the wire, so a key used this way over plain TCP is not revoked.

use serde_json::{json, Value};

use super::middleware::Middleware;
use super::session::{Credentials, Session};
use super::wire::{Failure, EINVAL};
use crate::truenas::scram::{self, attribute, base64_decode, base64_encode, Keys, KEY_LEN};

/// The lowest count the NAS accepts (it uses 500 000): every simulated login runs PBKDF2 on both sides, and the
/// count changes the cost, not the exchange.
const ITERATIONS: u32 = 50_000;

/// An exchange between its two messages, kept on the session.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pending {
    username: String,
    key_id: u32,
    /// `client-first-bare,server-first`: the start of the AuthMessage both sides sign.
    signed_so_far: String,
    nonce: String,
}

/// What a SCRAM step decided.
pub(crate) enum Step {
    /// Answer with this (SERVER_FIRST_RESPONSE).
    Respond(Value),
    /// The credentials are wrong (or the key is revoked): `AUTH_ERR`.
    Refused,
    /// The proof is right: `username` is logged in with its key, and the answer is this SERVER_FINAL_RESPONSE.
    Proved { username: String, server_final: Value },
}

pub(crate) fn step(mw: &Middleware, session: &Session, scram_type: &str, rfc_str: &str) -> Result<Step, Failure> {
    match scram_type {
        "CLIENT_FIRST_MESSAGE" => Ok(first(mw, session, rfc_str)),
        "CLIENT_FINAL_MESSAGE" => {
            let pending = std::mem::replace(&mut *session.credentials(), Credentials::None);
            let Credentials::ScramPending(pending) = pending else {
                return Err(Failure::call(EINVAL, "SCRAM authentication is not in progress"));
            };
            Ok(last(mw, &pending, rfc_str))
        }
        other => Err(Failure::call(EINVAL, format!("{other}: invalid SCRAM type"))),
    }
}

fn first(mw: &Middleware, session: &Session, rfc_str: &str) -> Step {
    // Channel binding (`p=…`) cannot be honoured over the simulator's transports: AUTH_ERR, as on plain ws://.
    let Some(bare) = rfc_str.strip_prefix("n,,") else { return Step::Refused };
    let (Some(name), Some(client_nonce)) = (attribute(bare, 'n'), attribute(bare, 'r')) else { return Step::Refused };
    let Some((username, key_id)) = name.rsplit_once(':').and_then(|(u, id)| Some((u, id.parse::<u32>().ok()?))) else {
        return Step::Refused;
    };
    let username = username.replace("=2C", ",").replace("=3D", "=");
    let owned = mw.opts.api_keys.iter().any(|k| k.id == key_id && k.username == username);
    if !owned || mw.state().revoked_keys.contains(&key_id) {
        return Step::Refused;
    }
    let nonce = format!("{client_nonce}{}", base64_encode(format!("sim-{}-{key_id}", session.id).as_bytes()));
    let server_first = format!("r={nonce},s={},i={ITERATIONS}", base64_encode(&salt(key_id)));
    let signed_so_far = format!("{bare},{server_first}");
    *session.credentials() = Credentials::ScramPending(Pending { username, key_id, signed_so_far, nonce });
    Step::Respond(
        json!({"response_type": "SCRAM_RESPONSE", "scram_type": "SERVER_FIRST_RESPONSE", "rfc_str": server_first}),
    )
}

fn last(mw: &Middleware, pending: &Pending, rfc_str: &str) -> Step {
    let Some((without_proof, proof)) = rfc_str.rsplit_once(",p=") else { return Step::Refused };
    let unbound = attribute(without_proof, 'c') == Some("biws");
    let proof: Option<[u8; KEY_LEN]> = base64_decode(proof).and_then(|p| p.try_into().ok());
    let (Some(proof), true) = (proof, unbound && attribute(without_proof, 'r') == Some(pending.nonce.as_str())) else {
        return Step::Refused;
    };
    let Some(key) = mw.opts.api_keys.iter().find(|k| k.id == pending.key_id) else { return Step::Refused };
    // What the NAS stores for the key: StoredKey and ServerKey, never the key.
    let Some((_, secret)) = scram::split_key(&key.key) else { return Step::Refused };
    let Keys { stored_key, server_key, .. } = scram::keys(secret, &salt(pending.key_id), ITERATIONS);
    let auth_message = format!("{},{without_proof}", pending.signed_so_far);
    let client_key = scram::xor(&proof, &scram::hmac(&stored_key, auth_message.as_bytes()));
    if !scram::same(&sha512(&client_key), &stored_key) {
        return Step::Refused;
    }
    let signature = base64_encode(&scram::hmac(&server_key, auth_message.as_bytes()));
    Step::Proved {
        username: pending.username.clone(),
        server_final: json!({
            "response_type": "SCRAM_RESPONSE",
            "scram_type": "SERVER_FINAL_RESPONSE",
            "rfc_str": format!("v={signature}"),
        }),
    }
}

fn sha512(bytes: &[u8]) -> [u8; KEY_LEN] {
    use sha2::Digest;
    sha2::Sha512::digest(bytes).into()
}

/// The key's salt (16 bytes, fixed per key as the NAS stores one per key).
fn salt(key_id: u32) -> [u8; 16] {
    let mut salt = *b"truenas-sim-salt";
    salt[..4].copy_from_slice(&key_id.to_be_bytes());
    salt
}

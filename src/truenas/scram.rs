//! SCRAM-SHA-512 (RFC 5802) as TrueNAS 26.0 speaks it for API keys: `auth.login_ex` with mechanism `SCRAM`, a
//! CLIENT_FIRST_MESSAGE (`n,,n=<user>:<key id>,r=<nonce>`), the server's `r=<nonce>,s=<salt>,i=<iterations>`, a
//! CLIENT_FINAL_MESSAGE (`c=biws,r=<nonce>,p=<proof>`) and the server's `v=<signature>`, which we check. The key
//! itself never crosses the wire, only a proof that we hold it (docs/source/accounts/scram_authentication.rst and
//! plugins/auth_/login_ex_impl.py of the middleware). No channel binding: it is optional on the NAS, and the GS2
//! header says we do not use it. The primitives are shared with the simulator's server side.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha512};

/// SHA-512 output size.
pub const KEY_LEN: usize = 64;
/// The GS2 header of an exchange without channel binding, and `c=` of the final message (its base64).
const GS2_HEADER: &str = "n,,";
/// Iteration counts the NAS uses lie in 50 000–5 000 000 (the middleware's own client refuses others); more would let
/// a forged server-first make us spin, fewer would make a captured proof cheap to attack.
const ITERATIONS: std::ops::RangeInclusive<u32> = 50_000..=5_000_000;

/// The SCRAM keys derived from a secret (RFC 5802 §3).
pub struct Keys {
    pub client_key: [u8; KEY_LEN],
    pub stored_key: [u8; KEY_LEN],
    pub server_key: [u8; KEY_LEN],
}

/// SaltedPassword = PBKDF2-HMAC-SHA512(secret, salt, iterations); ClientKey, StoredKey and ServerKey from it.
pub fn keys(secret: &str, salt: &[u8], iterations: u32) -> Keys {
    let mut salted = [0u8; KEY_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(secret.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; KEY_LEN] = Sha512::digest(client_key).into();
    Keys { client_key, stored_key, server_key: hmac(&salted, b"Server Key") }
}

pub fn hmac(key: &[u8], message: &[u8]) -> [u8; KEY_LEN] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// `a XOR b` (the proof is ClientKey XOR ClientSignature, and the server undoes it the same way).
pub fn xor(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Equal without an early exit, so the time taken says nothing about where a forged signature differs.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of attribute `name` in a comma-separated SCRAM message (`r=…,s=…,i=…`).
pub fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

/// RFC 5802 `saslname`: `=` and `,` are escaped, because both delimit the message.
fn sasl_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// A TrueNAS API key `<id>-<secret>`: the id names the key in the exchange, the secret is what PBKDF2 stretches.
pub fn split_key(key: &str) -> Option<(u32, &str)> {
    let (id, secret) = key.split_once('-')?;
    Some((id.parse().ok()?, secret))
}

/// A client in the middle of one exchange.
pub struct Exchange {
    client_first_bare: String,
    nonce: String,
    /// Set by [`Exchange::client_final`]: the server signature the final answer must carry.
    expected: Option<[u8; KEY_LEN]>,
}

impl Exchange {
    /// Start an exchange for `username`'s key `key_id`; `Err` only when the OS has no random numbers to give.
    pub fn start(username: &str, key_id: u32) -> Result<Exchange, String> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| format!("no random numbers for the SCRAM nonce: {e}"))?;
        let nonce = base64_encode(&bytes);
        let client_first_bare = format!("n={}:{key_id},r={nonce}", sasl_name(username));
        Ok(Exchange { client_first_bare, nonce, expected: None })
    }

    /// The CLIENT_FIRST_MESSAGE.
    pub fn client_first(&self) -> String {
        format!("{GS2_HEADER}{}", self.client_first_bare)
    }

    /// The CLIENT_FINAL_MESSAGE answering the server's first message, proving we hold `secret`.
    pub fn client_final(&mut self, server_first: &str, secret: &str) -> Result<String, String> {
        let nonce = attribute(server_first, 'r').ok_or("the server's SCRAM message has no nonce")?;
        // The server extends our nonce; anything else is a replay or a forgery.
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's SCRAM nonce does not extend ours".into());
        }
        let salt = attribute(server_first, 's')
            .and_then(base64_decode)
            .ok_or("the server's SCRAM message has no readable salt")?;
        let iterations: u32 = attribute(server_first, 'i')
            .and_then(|i| i.parse().ok())
            .ok_or("the server's SCRAM message has no iteration count")?;
        if !ITERATIONS.contains(&iterations) {
            return Err(format!("the server asks for {iterations} SCRAM iterations, outside 50000-5000000"));
        }
        let keys = keys(secret, &salt, iterations);
        let without_proof = format!("c={},r={nonce}", base64_encode(GS2_HEADER.as_bytes()));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let proof = xor(&keys.client_key, &hmac(&keys.stored_key, auth_message.as_bytes()));
        self.expected = Some(hmac(&keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", base64_encode(&proof)))
    }

    /// Whether the SERVER_FINAL_RESPONSE proves the server knows the key too (mutual authentication).
    pub fn server_verified(&self, server_final: &str) -> bool {
        let signature = attribute(server_final, 'v').and_then(base64_decode);
        matches!((&self.expected, signature), (Some(want), Some(got)) if same(want, &got))
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (SCRAM's encoding of nonces, salts, proofs and signatures).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes of standard, padded base64; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { ALPHABET.iter().position(|&a| a == c)? as u32 };
            n |= v << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_the_rfc_vectors() {
        // RFC 4648 §10.
        for (plain, coded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64_encode(plain.as_bytes()), coded);
            assert_eq!(base64_decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_encode(b"n,,"), "biws");
        for bad in ["Zg=", "Z===", "Zm9v!A==", "===="] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_proof_follows_rfc_5802_and_the_server_signature_is_checked() {
        let mut ex = Exchange::start("ad,min", 7).unwrap();
        let first = ex.client_first();
        assert!(first.starts_with("n,,n=ad=2Cmin:7,r="), "{first}");
        let nonce = attribute(&first, 'r').unwrap().to_string();
        let server_first = format!("r={nonce}srv,s={},i=50000", base64_encode(b"0123456789abcdef"));
        let fin = ex.client_final(&server_first, "secret").unwrap();
        // The server's side of the same computation: recover ClientKey from the proof and hash it.
        let k = keys("secret", b"0123456789abcdef", 50_000);
        let without_proof = format!("c=biws,r={nonce}srv");
        assert!(fin.starts_with(&format!("{without_proof},p=")), "{fin}");
        let auth = format!("{},{server_first},{without_proof}", &first[3..]);
        let proof: [u8; KEY_LEN] = base64_decode(attribute(&fin, 'p').unwrap()).unwrap().try_into().unwrap();
        let client_key = xor(&proof, &hmac(&k.stored_key, auth.as_bytes()));
        assert_eq!(<[u8; KEY_LEN]>::from(Sha512::digest(client_key)), k.stored_key);
        let v = base64_encode(&hmac(&k.server_key, auth.as_bytes()));
        assert!(ex.server_verified(&format!("v={v}")));
        assert!(!ex.server_verified("v=AAAA"));
        // A server that does not extend our nonce, or asks for absurd work, is refused.
        let mut ex = Exchange::start("u", 1).unwrap();
        assert!(ex.client_final("r=other,s=AAAA,i=50000", "s").is_err());
        let n = attribute(&ex.client_first(), 'r').unwrap().to_string();
        assert!(ex.client_final(&format!("r={n}x,s=AAAA,i=999999999"), "s").unwrap_err().contains("iterations"));
    }
}

//! The one place that decides what is secret and how it is hidden, for every output path: logs at any level, tool
//! text, structured content, resources, audit records and errors.
//!
//! Three kinds of secret: values under a secret-looking name ([`is_secret_name`]: `DB_PASSWORD`, `api_key`),
//! passwords inside URLs (`postgres://app:PW@db/app`), and literal values known to be secret ([`Secrets`]: every
//! value supplied through a tool's `env` argument). Logs go further ([`for_log`]): a compose document or an `env`
//! map is never logged, only its size and keys. This module sits below every other one and imports none of them.

use std::borrow::Cow;
use std::sync::{OnceLock, RwLock};

use serde_json::{json, Map, Value};

/// The text that replaces a secret.
pub const MASK: &str = "***";

/// Known secret values shorter than this are not masked: masking "1" or "yes" everywhere would hide everything.
pub const MIN_SECRET_LEN: usize = 4;

/// Whether a variable or member named `name` looks like it holds a secret (`DB_PASSWORD`, `API_TOKEN`,
/// `SECRET_KEY_BASE`, `AWS_SECRET_ACCESS_KEY`, `SSH_KEY`, `REDIS_PASS`, `api-key`). Names ending in `_FILE` hold a
/// path to the secret, not the secret, and are not secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.trim().to_ascii_uppercase().replace('-', "_");
    if upper.ends_with("_FILE") || upper.is_empty() {
        return false;
    }
    const INSIDE: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "SECRET",
        "TOKEN",
        "APIKEY",
        "API_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
        "AUTHORIZATION",
    ];
    const ENDING: &[&str] = &["_KEY", "_PASS", "_PWD", "_AUTH"];
    const WHOLE: &[&str] = &["KEY", "PASS", "PWD", "AUTH"];
    INSIDE.iter().any(|w| upper.contains(w))
        || ENDING.iter().any(|w| upper.ends_with(w))
        || WHOLE.iter().any(|w| upper == *w)
}

/// `text` with the password of every URL masked: `postgres://app:PW@db/app` → `postgres://app:***@db/app`,
/// `redis://:PW@cache` → `redis://:***@cache`. Works inside free text and `NAME=value` lines; a URL with a user
/// and no password (`ssh://git@host`) is kept.
pub fn mask_url_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme_ok = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric());
        let after = at + 3;
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        if !scheme_ok {
            continue;
        }
        // The authority ends where the path, query or fragment starts, or where the URL ends in free text.
        let end = rest.find(|c: char| "/?#\"'`<>\\".contains(c) || c.is_whitespace()).unwrap_or(rest.len());
        let authority = &rest[..end];
        let Some(userinfo_end) = authority.rfind('@') else { continue };
        let Some(colon) = authority[..userinfo_end].find(':') else { continue };
        out.push_str(&authority[..=colon]);
        out.push_str(MASK);
        rest = &rest[userinfo_end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `text` with the value of each line that assigns to a secret-looking name masked (`DB_PASSWORD=x`,
/// `api_key: x`, `- TOKEN=x`), and URL passwords masked.
pub fn mask_text(text: &str) -> String {
    let text = mask_url_credentials(text);
    let lower = text.to_ascii_lowercase();
    if !["pass", "secret", "token", "key", "auth", "credential", "pwd"].iter().any(|w| lower.contains(w)) {
        return text.into_owned();
    }
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            let Some(at) = line.find(['=', ':']) else { return line.to_string() };
            let (name, rest) = line.split_at(at);
            let name_only = name.trim_start_matches([' ', '\t', '-', '"', '\'']).trim_end_matches(['"', '\'']);
            let value = rest[1..].trim();
            if is_secret_name(name_only) && !value.is_empty() && value != MASK {
                format!("{name}{} {MASK}", &rest[..1])
            } else {
                line.to_string()
            }
        })
        .collect();
    lines.join("\n")
}

/// A copy of a compose document (as JSON) fit to show: the values of secret-looking environment variables are
/// masked in both the mapping and the `NAME=value` list form, and every URL password anywhere in the document.
pub fn mask_compose(compose: &Value) -> Value {
    let mut out = compose.clone();
    mask_urls_in(&mut out);
    let Some(services) = out.get_mut("services").and_then(Value::as_object_mut) else { return out };
    for service in services.values_mut() {
        let Some(env) = service.get_mut("environment") else { continue };
        match env {
            Value::Object(vars) => {
                for (name, value) in vars.iter_mut() {
                    if is_secret_name(name) && !value.is_null() {
                        *value = Value::String(MASK.to_string());
                    }
                }
            }
            Value::Array(entries) => {
                for entry in entries.iter_mut() {
                    if let Some((name, _)) = entry.as_str().and_then(|e| e.split_once('=')) {
                        if is_secret_name(name) {
                            *entry = Value::String(format!("{name}={MASK}"));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn mask_urls_in(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(masked) = mask_url_credentials(text) {
                *text = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_urls_in),
        Value::Object(map) => map.values_mut().for_each(mask_urls_in),
        _ => {}
    }
}

/// A set of literal values known to be secret (everything supplied through `env`), masked wherever they appear.
/// Shared by threads; holds at most [`Secrets::CAPACITY`] values (the oldest are forgotten first).
#[derive(Debug, Default)]
pub struct Secrets {
    values: RwLock<Vec<String>>,
}

impl Secrets {
    pub const CAPACITY: usize = 512;

    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Remember `values` (those shorter than [`MIN_SECRET_LEN`] are ignored).
    pub fn remember<'a>(&self, values: impl IntoIterator<Item = &'a str>) {
        let mut known = self.values.write().unwrap_or_else(|p| p.into_inner());
        for value in values.into_iter().filter(|v| v.chars().count() >= MIN_SECRET_LEN && *v != MASK) {
            if !known.iter().any(|k| k == value) {
                known.push(value.to_string());
            }
        }
        let excess = known.len().saturating_sub(Self::CAPACITY);
        known.drain(..excess);
    }

    /// Remember every value of an `env` argument (a map of names to strings).
    pub fn remember_env(&self, env: Option<&Value>) {
        if let Some(map) = env.and_then(Value::as_object) {
            self.remember(map.values().filter_map(Value::as_str));
        }
    }

    /// `text` with every known value and every URL password masked.
    pub fn mask(&self, text: &str) -> String {
        let text = mask_url_credentials(text);
        let known = self.values.read().unwrap_or_else(|p| p.into_inner());
        if known.is_empty() || !known.iter().any(|k| text.contains(k.as_str())) {
            return text.into_owned();
        }
        // Longest first, so a value that contains another is masked whole.
        let mut by_length: Vec<&String> = known.iter().collect();
        by_length.sort_by_key(|k| std::cmp::Reverse(k.len()));
        let mut out = text.into_owned();
        for value in by_length {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }

    /// [`Secrets::mask`] applied to every string (not the member names) of `value`.
    pub fn mask_value(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                let masked = self.mask(text);
                if masked != *text {
                    *text = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.mask_value(v)),
            _ => {}
        }
    }
}

/// Every value supplied through `env` in this process, for the logs (which outlive any one call and see frames no
/// tool handler can mask, such as the NAS echoing a compose back).
pub fn log_secrets() -> &'static Secrets {
    static LOG_SECRETS: OnceLock<Secrets> = OnceLock::new();
    LOG_SECRETS.get_or_init(Secrets::new)
}

/// Members whose value is a compose document (text or object): logged as its size only.
const COMPOSE_MEMBERS: &[&str] =
    &["compose_yaml", "custom_compose_config_string", "custom_compose_config", "rendered_compose"];
/// The prefix of the ZFS user properties a restore point keeps its compose in (`tools/undo.rs`).
const COMPOSE_PROPERTY_PREFIX: &str = "truenas-mcp:compose-";
/// Members whose value is a set of environment variables: logged as its names only.
const ENV_MEMBERS: &[&str] = &["env", "environment"];
/// Secret-looking member names that are not secrets (MCP's correlation id for progress).
const NOT_SECRET_MEMBERS: &[&str] = &["progressToken"];

/// The log form of a JSON value: a compose document becomes `"(compose, 1234 bytes)"`, an `env` or `environment`
/// map becomes `{"keys": [A, B]}`, text holding a compose document becomes its size, secret-looking members become
/// `***`, and every other string is masked by [`mask_text`] and [`log_secrets`].
pub fn log_value(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.get("services").is_some_and(Value::is_object) => compose_summary(value),
        Value::Object(map) => {
            let mut out = Map::new();
            for (name, member) in map {
                let compose_member =
                    COMPOSE_MEMBERS.contains(&name.as_str()) || name.starts_with(COMPOSE_PROPERTY_PREFIX);
                let shown = if compose_member && !member.is_null() {
                    compose_summary(member)
                } else if ENV_MEMBERS.contains(&name.as_str()) && !member.is_null() {
                    env_summary(member)
                } else if is_secret_name(name)
                    && !NOT_SECRET_MEMBERS.contains(&name.as_str())
                    && !member.is_null()
                    && !member.is_object()
                    && !member.is_array()
                {
                    json!(MASK)
                } else {
                    log_value(member)
                };
                out.insert(name.clone(), shown);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(log_value).collect()),
        Value::String(text) if holds_compose(text) => {
            json!(format!("(text with a compose document, {} bytes)", text.len()))
        }
        Value::String(text) => json!(log_secrets().mask(&mask_text(text))),
        other => other.clone(),
    }
}

fn holds_compose(text: &str) -> bool {
    text.starts_with("services:") || text.contains("\nservices:")
}

fn compose_summary(compose: &Value) -> Value {
    match compose {
        Value::String(text) => json!(format!("(compose, {} bytes)", text.len())),
        Value::Object(map) => {
            let services: Vec<&str> = map
                .get("services")
                .and_then(Value::as_object)
                .map(|s| s.keys().map(String::as_str).collect())
                .unwrap_or_default();
            json!(format!("(compose, {} bytes, services: {})", compose.to_string().len(), services.join(", ")))
        }
        other => json!(format!("(compose, {} bytes)", other.to_string().len())),
    }
}

fn env_summary(env: &Value) -> Value {
    let keys: Vec<&str> = match env {
        Value::Object(map) => map.keys().map(String::as_str).collect(),
        Value::Array(entries) => {
            entries.iter().filter_map(Value::as_str).map(|e| e.split_once('=').map_or(e, |(name, _)| name)).collect()
        }
        other => return json!(format!("({} bytes)", other.to_string().len())),
    };
    json!({"keys": keys})
}

/// The longest log line a message becomes; the rest is replaced by its size.
const MAX_LOG_LINE: usize = 2000;

/// One message for the debug log: [`log_value`], as one line of at most [`MAX_LOG_LINE`] bytes.
pub fn for_log(message: &Value) -> String {
    shorten(log_value(message).to_string())
}

/// One wire frame (text that is usually JSON) for the debug log, like [`for_log`].
pub fn frame_for_log(frame: &str) -> String {
    match serde_json::from_str::<Value>(frame) {
        Ok(message) => for_log(&message),
        Err(_) if holds_compose(frame) => format!("(text with a compose document, {} bytes)", frame.len()),
        Err(_) => shorten(log_secrets().mask(&mask_text(frame))),
    }
}

fn shorten(line: String) -> String {
    if line.len() <= MAX_LOG_LINE {
        return line;
    }
    let mut cut = MAX_LOG_LINE;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &line[..cut], line.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in ["DB_PASSWORD", "password", "MYSQL_ROOT_PASSWD", "API_TOKEN", "SECRET_KEY_BASE", "SSH_KEY", "KEY"] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["api-key", "api_key", "private_key", "Authorization", "credentials", "REDIS_PASS"] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["TZ", "PUID", "DB_PASSWORD_FILE", "KEYBOARD", "MONKEY_BUSINESS", "PATH", "author", ""] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn url_passwords_are_masked_anywhere() {
        let cases = [
            ("postgres://app:PW@db/app", "postgres://app:***@db/app"),
            ("redis://:PW@host", "redis://:***@host"),
            ("DATABASE_URL=mysql://u:p@ss@db:3306/x?ssl=1", "DATABASE_URL=mysql://u:***@db:3306/x?ssl=1"),
            (
                "use amqp://guest:guest@mq:5672/ and https://x.org/a",
                "use amqp://guest:***@mq:5672/ and https://x.org/a",
            ),
            ("ssh://git@github.com/x", "ssh://git@github.com/x"),
            ("http://host:8080/path@x", "http://host:8080/path@x"),
            ("\"u\": \"s3://k:v@b\"", "\"u\": \"s3://k:***@b\""),
            ("no url :// here", "no url :// here"),
        ];
        for (text, want) in cases {
            assert_eq!(mask_url_credentials(text), want, "{text}");
        }
    }

    #[test]
    fn assignments_to_secret_names_are_masked() {
        let text = "POSTGRES_PASSWORD=hunter2\n  - API_TOKEN=abc\n  api_key: \"x\"\nTZ=UTC\nDB_PASSWORD_FILE=/run/s";
        assert_eq!(
            mask_text(text),
            "POSTGRES_PASSWORD= ***\n  - API_TOKEN= ***\n  api_key: ***\nTZ=UTC\nDB_PASSWORD_FILE=/run/s"
        );
    }

    #[test]
    fn compose_documents_are_masked_by_name_and_url() {
        let doc = json!({
            "services": {
                "db": {"environment": {"POSTGRES_PASSWORD": "hunter2", "TZ": "UTC", "X_TOKEN": null,
                                       "DATABASE_URL": "postgres://app:pw1@db/app"}},
                "app": {"environment": ["API_KEY=abc", "TZ=UTC", "SECRET"], "image": "x",
                        "command": ["--cache", "redis://:pw2@cache"]},
                "odd": "not a mapping"
            },
            "x-notes": "kept"
        });
        let masked = mask_compose(&doc);
        assert_eq!(masked["services"]["db"]["environment"]["POSTGRES_PASSWORD"], "***");
        assert_eq!(masked["services"]["db"]["environment"]["TZ"], "UTC");
        assert_eq!(masked["services"]["db"]["environment"]["X_TOKEN"], Value::Null);
        assert_eq!(masked["services"]["db"]["environment"]["DATABASE_URL"], "postgres://app:***@db/app");
        assert_eq!(masked["services"]["app"]["environment"], json!(["API_KEY=***", "TZ=UTC", "SECRET"]));
        assert_eq!(masked["services"]["app"]["command"], json!(["--cache", "redis://:***@cache"]));
        assert_eq!(masked["x-notes"], "kept");
        for secret in ["hunter2", "pw1", "pw2"] {
            assert!(!masked.to_string().contains(secret), "{secret}");
        }
    }

    #[test]
    fn known_values_are_masked_longest_first_and_short_ones_ignored() {
        let secrets = Secrets::new();
        secrets.remember_env(Some(&json!({"A": "abcd", "B": "abcdefgh", "C": "1", "D": 5})));
        assert_eq!(secrets.mask("x abcdefgh y abcd z 1"), "x *** y *** z 1");
        let mut value = json!({"abcd": ["abcd", {"k": "pre-abcdefgh"}], "n": 1});
        secrets.mask_value(&mut value);
        assert_eq!(value, json!({"abcd": ["***", {"k": "pre-***"}], "n": 1}));
        assert_eq!(secrets.mask("mysql://u:pw@db"), "mysql://u:***@db");
    }

    #[test]
    fn logs_show_sizes_and_keys_never_compose_or_env_values() {
        let compose = "services:\n  db:\n    environment:\n      PLAIN: v4lue\n";
        let message = json!({
            "id": 1,
            "params": {
                "_meta": {"progressToken": "p1"},
                "arguments": {"app_name": "db", "compose_yaml": compose, "env": {"PLAIN": "v4lue", "B": "x"}},
                "frame": [{"custom_compose_config_string": compose}],
                "config": {"services": {"db": {"environment": ["PLAIN=v4lue"]}}},
                "environment": ["PLAIN=v4lue", "TZ"],
                "api_key": "1-abcdef",
                "text": "Deployed:\nservices:\n  db: {}\n",
                "note": "DB_PASSWORD=hunter2 via postgres://u:pw@db"
            }
        });
        let logged = for_log(&message);
        for secret in ["v4lue", "1-abcdef", "hunter2", ":pw@"] {
            assert!(!logged.contains(secret), "{secret} leaked: {logged}");
        }
        let shown: Value = serde_json::from_str(&logged).unwrap();
        let p = &shown["params"];
        assert_eq!(p["arguments"]["compose_yaml"], format!("(compose, {} bytes)", compose.len()));
        assert_eq!(p["arguments"]["env"], json!({"keys": ["B", "PLAIN"]}));
        assert_eq!(p["arguments"]["app_name"], "db");
        assert_eq!(p["frame"][0]["custom_compose_config_string"], format!("(compose, {} bytes)", compose.len()));
        assert!(p["config"].as_str().is_some_and(|c| c.starts_with("(compose, ") && c.ends_with("services: db)")));
        assert_eq!(p["environment"], json!({"keys": ["PLAIN", "TZ"]}));
        assert_eq!(p["_meta"]["progressToken"], "p1");
        assert_eq!(p["api_key"], "***");
        assert!(p["text"].as_str().is_some_and(|t| t.starts_with("(text with a compose document")));
        assert_eq!(p["note"], "DB_PASSWORD= ***");
    }

    #[test]
    fn frames_are_logged_masked_and_short() {
        let login = r#"{"method":"auth.login_ex","params":[{"mechanism":"API_KEY_PLAIN","username":"u","api_key":"1-SECRET","password":"hunter2","token":"tok"}]}"#;
        let shown = frame_for_log(login);
        assert!(!shown.contains("SECRET") && !shown.contains("hunter2") && !shown.contains("tok\""), "{shown}");
        assert!(shown.contains("API_KEY_PLAIN") && shown.contains("\"u\""), "{shown}");
        let long = format!(r#"{{"result":"{}"}}"#, "é".repeat(3000));
        assert!(frame_for_log(&long).ends_with("bytes)"));
        log_secrets().remember(["frame-only-s3cret"]);
        assert_eq!(frame_for_log("not json: frame-only-s3cret"), "not json: ***");
    }
}

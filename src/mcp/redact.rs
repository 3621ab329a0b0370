//! Redaction of wire messages for the debug log: tool arguments and results can carry secrets (compose
//! `environment:` values, passwords, API keys), and secrets never go to logs.

use serde_json::Value;

/// Member names whose values are never logged.
const SECRET_WORDS: &[&str] =
    &["password", "passwd", "secret", "token", "apikey", "api_key", "api-key", "credential", "private_key", "auth"];

fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// `message` as one log line with secret-looking members and `NAME=value` / `name: value` assignments masked.
pub fn for_log(message: &Value) -> String {
    let mut copy = message.clone();
    redact(&mut copy);
    serde_json::to_string(&copy).unwrap_or_default()
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, member) in map.iter_mut() {
                if is_secret_name(name) && !member.is_object() && !member.is_array() && !member.is_null() {
                    *member = Value::from("***");
                } else {
                    redact(member);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text) => {
            if let Some(masked) = redact_text(text) {
                *text = masked;
            }
        }
        _ => {}
    }
}

/// Mask the value of each line that assigns to a secret-looking name (`DB_PASSWORD=x`, `api_key: x`,
/// `- TOKEN=x`); `None` if nothing needed masking.
fn redact_text(text: &str) -> Option<String> {
    if !SECRET_WORDS.iter().any(|w| text.to_ascii_lowercase().contains(w)) {
        return None;
    }
    let masked: Vec<String> = text
        .split('\n')
        .map(|line| {
            let Some(at) = line.find(['=', ':']) else { return line.to_string() };
            let (name, rest) = line.split_at(at);
            if is_secret_name(name) && rest.len() > 1 && !rest[1..].trim().is_empty() {
                format!("{name}{} ***", &rest[..1])
            } else {
                line.to_string()
            }
        })
        .collect();
    Some(masked.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_and_the_rest_kept() {
        let message = json!({
            "params": {
                "name": "deploy_custom_app",
                "arguments": {
                    "app_name": "db",
                    "env": {"DB_PASSWORD": "hunter2", "PORT": "5432"},
                    "api_key": "1-abcdef",
                    "compose_yaml": "services:\n  db:\n    environment:\n      - POSTGRES_PASSWORD=hunter2\n      POSTGRES_USER: app\n      API_TOKEN: \"s3cr3t\"\n",
                }
            }
        });
        let logged = for_log(&message);
        for secret in ["hunter2", "1-abcdef", "s3cr3t"] {
            assert!(!logged.contains(secret), "{secret} leaked: {logged}");
        }
        for kept in ["deploy_custom_app", "5432", "POSTGRES_USER: app", "app_name"] {
            assert!(logged.contains(kept), "{kept} lost: {logged}");
        }
    }
}

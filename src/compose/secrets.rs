//! Which environment variables hold secrets, and a masked copy of a compose document for output.
//!
//! TrueNAS stores a custom app's compose in clear text and returns it from `app.config`; anything we echo back to a
//! model or a log goes through [`mask_secrets`] first.

use serde_json::Value;

/// Whether an environment variable named `name` looks like it holds a secret (`DB_PASSWORD`, `API_TOKEN`,
/// `SECRET_KEY_BASE`, `AWS_SECRET_ACCESS_KEY`, `SSH_KEY`, `REDIS_PASS`). Names ending in `_FILE` hold a path to
/// the secret, not the secret, and are not masked.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.trim().to_ascii_uppercase();
    if upper.ends_with("_FILE") || upper.is_empty() {
        return false;
    }
    const INSIDE: &[&str] =
        &["PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "APIKEY", "API_KEY", "PRIVATE_KEY", "CREDENTIAL"];
    const ENDING: &[&str] = &["_KEY", "_PASS", "_PWD", "_AUTH"];
    const WHOLE: &[&str] = &["KEY", "PASS", "PWD", "AUTH"];
    INSIDE.iter().any(|w| upper.contains(w))
        || ENDING.iter().any(|w| upper.ends_with(w))
        || WHOLE.iter().any(|w| upper == *w)
}

/// The text that replaces a secret value.
pub const MASK: &str = "***";

/// A copy of a compose document (as JSON) with the values of secret-looking environment variables replaced by
/// `***`, in both the mapping and the `NAME=value` list form. Everything else is kept as is.
pub fn mask_secrets(compose: &Value) -> Value {
    let mut out = compose.clone();
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_names() {
        for n in ["DB_PASSWORD", "password", "MYSQL_ROOT_PASSWD", "API_TOKEN", "SECRET_KEY_BASE", "SSH_KEY", "KEY"] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["TZ", "PUID", "DB_PASSWORD_FILE", "KEYBOARD", "MONKEY_BUSINESS", "PATH", ""] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn masks_both_environment_forms() {
        let doc = json!({
            "services": {
                "db": {"environment": {"POSTGRES_PASSWORD": "hunter2", "TZ": "UTC", "X_TOKEN": null}},
                "app": {"environment": ["API_KEY=abc", "TZ=UTC", "SECRET"], "image": "x"},
                "odd": "not a mapping"
            },
            "x-notes": "kept"
        });
        let masked = mask_secrets(&doc);
        assert_eq!(masked["services"]["db"]["environment"]["POSTGRES_PASSWORD"], "***");
        assert_eq!(masked["services"]["db"]["environment"]["TZ"], "UTC");
        assert_eq!(masked["services"]["db"]["environment"]["X_TOKEN"], Value::Null);
        assert_eq!(masked["services"]["app"]["environment"], json!(["API_KEY=***", "TZ=UTC", "SECRET"]));
        assert_eq!(masked["x-notes"], "kept");
        assert!(!masked.to_string().contains("hunter2"));
    }
}

//! The `app.create` / `app.update` arguments for a custom app, and whether they fit in one TrueNAS frame.
//!
//! After login the middleware closes the socket (code 1009, no error reply) on any text frame longer than 65536
//! characters, so an oversized compose must be refused here with a clear finding. We measure the whole JSON-RPC
//! request as serde_json writes it, in bytes (never fewer than the characters the middleware counts), with a
//! 36-character request id; the legacy DDP envelope is one byte shorter, so one check covers both protocols.

use serde_json::{json, Value};

use super::rules;
use super::Finding;

/// Longest request frame TrueNAS accepts after login.
pub const FRAME_LIMIT: usize = 65536;
/// Longest TrueNAS app name.
pub const APP_NAME_MAX: usize = 40;

const REQUEST_ID_PLACEHOLDER: &str = "00000000-0000-0000-0000-000000000000";

/// `None` when `name` is a valid TrueNAS app name (`^[a-z]([-a-z0-9]*[a-z0-9])?$`, 1–40 characters), else why not.
pub fn app_name_error(name: &str) -> Option<String> {
    let count = name.chars().count();
    if count == 0 {
        return Some("the app name is empty".to_string());
    }
    if count > APP_NAME_MAX {
        return Some(format!("the app name is {count} characters long; TrueNAS allows at most {APP_NAME_MAX}"));
    }
    let first = name.chars().next().unwrap_or(' ');
    if !first.is_ascii_lowercase() {
        return Some(format!("the app name must start with a lowercase letter a-z, not `{first}`"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Some(format!(
            "the app name may only hold lowercase letters, digits and `-`; `{}` is not allowed",
            bad.escape_default()
        ));
    }
    if name.ends_with('-') {
        return Some("the app name must not end with `-`".to_string());
    }
    None
}

/// Bytes of the JSON-RPC request carrying `params` to `method`, as serde_json writes it.
pub fn frame_size(method: &str, params: &Value) -> usize {
    let frame = json!({"jsonrpc": "2.0", "id": REQUEST_ID_PLACEHOLDER, "method": method, "params": params});
    serde_json::to_vec(&frame).map(|v| v.len()).unwrap_or(usize::MAX)
}

/// One limit, and how far over it the compose is: the user can act on "cut N bytes", not on a request size.
fn too_large(size: usize, compose: &str) -> Finding {
    let over = size - FRAME_LIMIT;
    rules::TOO_LARGE.at(
        None,
        "",
        format!(
            "the compose is {} bytes, {over} bytes more than fits in one TrueNAS request (at most {FRAME_LIMIT} \
             bytes, the request around the compose included)",
            compose.len()
        ),
        format!(
            "shorten the compose by at least {over} bytes: remove long inline scripts, values or unused services, \
             or split the application into several apps"
        ),
    )
}

fn name_finding(app_name: &str) -> Option<Finding> {
    app_name_error(app_name).map(|why| {
        rules::APP_NAME_INVALID.at(
            None,
            "app_name",
            why,
            "use 1-40 lowercase letters, digits and `-`, starting with a letter and not ending with `-` (e.g. `my-app`)",
        )
    })
}

/// The single `app.create` argument for a custom app, or why it cannot be sent.
pub fn create_payload(app_name: &str, compose: &str) -> Result<Value, Finding> {
    if let Some(f) = name_finding(app_name) {
        return Err(f);
    }
    let args = json!({"app_name": app_name, "custom_app": true, "custom_compose_config_string": compose});
    let size = frame_size("app.create", &json!([args]));
    if size > FRAME_LIMIT {
        return Err(too_large(size, compose));
    }
    Ok(args)
}

/// The second `app.update` argument (`{custom_compose_config_string}`), or why it cannot be sent.
pub fn update_payload(app_name: &str, compose: &str) -> Result<Value, Finding> {
    if let Some(f) = name_finding(app_name) {
        return Err(f);
    }
    let update = json!({"custom_compose_config_string": compose});
    let size = frame_size("app.update", &json!([app_name, update]));
    if size > FRAME_LIMIT {
        return Err(too_large(size, compose));
    }
    Ok(update)
}

/// The `too-large` finding `validate` reports when `compose` cannot be created under any app name.
pub fn too_large_for_any_name(compose: &str) -> Option<Finding> {
    match create_payload("a", compose) {
        Err(f) if f.rule == rules::TOO_LARGE.id => Some(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_follow_truenas() {
        let forty = "a".repeat(40);
        for ok in ["a", "abc123", "abcd-1232", "a-b", "a--b", "a1", forty.as_str()] {
            assert_eq!(app_name_error(ok), None, "{ok}");
        }
        let forty_one = "a".repeat(41);
        for bad in ["", "1a", "-a", "a-", "A", "aB", "a_b", "a.b", "a b", "é", "a\n", forty_one.as_str()] {
            assert!(app_name_error(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn frame_size_is_the_exact_serialised_length() {
        let args = json!({"app_name": "web", "custom_app": true, "custom_compose_config_string": "a\"b\n"});
        let want =
            format!(r#"{{"id":"{REQUEST_ID_PLACEHOLDER}","jsonrpc":"2.0","method":"app.create","params":[{args}]}}"#);
        assert_eq!(frame_size("app.create", &json!([args])), want.len());
    }

    #[test]
    fn the_limit_counts_the_envelope_and_escapes() {
        // Find the largest compose that fits, byte-exact, then one more byte must not.
        let base = frame_size(
            "app.create",
            &json!([{"app_name": "web", "custom_app": true, "custom_compose_config_string": ""}]),
        );
        let fits = "x".repeat(FRAME_LIMIT - base);
        assert!(create_payload("web", &fits).is_ok());
        let over = "x".repeat(FRAME_LIMIT - base + 1);
        assert_eq!(create_payload("web", &over).unwrap_err().rule, "too-large");
        // Newlines and quotes take two bytes each inside the JSON string.
        let escaped = "\n".repeat((FRAME_LIMIT - base) / 2 + 1);
        assert_eq!(create_payload("web", &escaped).unwrap_err().rule, "too-large");
        let update_base = frame_size("app.update", &json!(["web", {"custom_compose_config_string": ""}]));
        assert!(update_payload("web", &"x".repeat(FRAME_LIMIT - update_base)).is_ok());
        assert!(update_payload("web", &"x".repeat(FRAME_LIMIT - update_base + 1)).is_err());
    }

    #[test]
    fn too_large_names_one_limit_and_how_much_to_cut() {
        let base = frame_size(
            "app.create",
            &json!([{"app_name": "web", "custom_app": true, "custom_compose_config_string": ""}]),
        );
        let over = "x".repeat(FRAME_LIMIT - base + 10);
        let f = create_payload("web", &over).unwrap_err();
        let numbers: Vec<&str> = f.message.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()).collect();
        assert_eq!(numbers, [over.len().to_string().as_str(), "10", "65536"], "{}", f.message);
        assert!(f.fix.contains("10 bytes"), "{}", f.fix);
    }
}

//! Masked copies of compose documents for output; the rules live in [`crate::redact`], the one redaction module.
//!
//! TrueNAS stores a custom app's compose in clear text and returns it from `app.config`; anything we echo back to a
//! model or a log goes through [`mask_secrets`] first.

use serde_json::Value;

pub use crate::redact::{is_secret_name, MASK};

/// A copy of a compose document (as JSON) with the values of secret-looking environment variables replaced by
/// `***` (mapping and `NAME=value` list forms) and every URL password masked ([`crate::redact::mask_compose`]).
pub fn mask_secrets(compose: &Value) -> Value {
    crate::redact::mask_compose(compose)
}

//! A small JSON Schema validator for the subset our tool schemas and the TrueNAS API models use.
//!
//! OWNER: lead.

use serde_json::Value;

/// One validation failure: where (`/app_name`, "args.options.remove_images") and why.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

/// Validate `value` against `schema` (supports $ref/$defs, type, properties, required, additionalProperties,
/// enum, const, pattern, minimum/maximum, minLength/maxLength, items, minItems/maxItems, anyOf, oneOf, allOf).
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<SchemaError>> {
    let _ = (schema, value);
    todo!()
}

/// Fill in `default`s of missing object properties (recursively through `properties`).
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    let _ = (schema, value);
    todo!()
}

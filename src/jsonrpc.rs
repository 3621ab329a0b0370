//! JSON-RPC 2.0 building blocks shared by the MCP side and the TrueNAS side.
//!
//! OWNER: MCP helper (may extend; keep `RequestId` and `ErrorObject` stable).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request id: an integer or a string, echoed verbatim (`7` and `"7"` are different ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Int(i64),
    Str(String),
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

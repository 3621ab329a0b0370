//! Protocol revisions and what each one allows, the per-request era envelope, and opaque list cursors.

use serde_json::{json, Map, Value};

use crate::jsonrpc::{clip, ErrorObject};
use crate::mcp::tool::LogLevel;

/// `-32022`: the request's protocol version (modern `_meta`) is not one we serve.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// MCP "resource not found".
pub const RESOURCE_NOT_FOUND: i64 = -32002;

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// A protocol revision we speak. Ordered oldest to newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Revision {
    V2024_11_05,
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

impl Revision {
    /// Every revision, newest first (the order we advertise them in).
    pub const ALL: [Revision; 5] = [
        Revision::V2026_07_28,
        Revision::V2025_11_25,
        Revision::V2025_06_18,
        Revision::V2025_03_26,
        Revision::V2024_11_05,
    ];
    /// What `initialize` answers when the client asks for a version we do not know.
    pub const NEWEST_LEGACY: Revision = Revision::V2025_11_25;

    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2024_11_05 => "2024-11-05",
            Revision::V2025_03_26 => "2025-03-26",
            Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    pub fn parse(version: &str) -> Option<Revision> {
        Revision::ALL.into_iter().find(|r| r.as_str() == version)
    }

    /// Stateless, per-request `_meta` envelope, `resultType` on results (no handshake).
    pub fn is_modern(self) -> bool {
        self >= Revision::V2026_07_28
    }
    /// Tool annotations (`readOnlyHint`, …) exist.
    pub fn has_tool_annotations(self) -> bool {
        self >= Revision::V2025_03_26
    }
    /// `title` on tools, prompts, resources and the implementation info.
    pub fn has_titles(self) -> bool {
        self >= Revision::V2025_06_18
    }
    /// `outputSchema` on tools and `structuredContent` on results.
    pub fn has_structured_content(self) -> bool {
        self >= Revision::V2025_06_18
    }
    /// Only from 2026-07-28 may `structuredContent` be something other than an object.
    pub fn structured_content_may_be_any_json(self) -> bool {
        self.is_modern()
    }
    /// `notifications/progress` carries a `message`.
    pub fn has_progress_message(self) -> bool {
        self >= Revision::V2025_03_26
    }
    /// The `completions` server capability exists (the method itself is older).
    pub fn has_completions_capability(self) -> bool {
        self >= Revision::V2025_03_26
    }
    /// Server→client `elicitation/create`.
    pub fn has_elicitation(self) -> bool {
        self >= Revision::V2025_06_18
    }
    /// Elicitation params carry `mode: "form"`.
    pub fn has_elicitation_mode(self) -> bool {
        self >= Revision::V2025_11_25
    }
    /// JSON-RPC batches (arrays) are part of exactly one revision.
    pub fn allows_batches(self) -> bool {
        self == Revision::V2025_03_26
    }
}

/// The versions we support, newest first, as JSON strings.
pub fn supported_versions() -> Value {
    Value::Array(Revision::ALL.iter().map(|r| Value::from(r.as_str())).collect())
}

/// How one request is to be served: its revision and, for the modern era, its own envelope.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub revision: Revision,
    /// The client's capabilities (from `initialize` in the legacy era, from this request's `_meta` in the modern).
    pub client_capabilities: Value,
    /// Modern era: the per-request log opt-in (`None` = send no log messages for this request).
    pub log_level: Option<LogLevel>,
}

impl Envelope {
    pub fn is_modern(&self) -> bool {
        self.revision.is_modern()
    }

    pub fn client_can_elicit(&self) -> bool {
        self.revision.has_elicitation() && self.client_capabilities.get("elicitation").is_some_and(Value::is_object)
    }
}

/// The modern envelope of a request, if it carries one (the protocol-version key alone decides, as the
/// reserved prefix never appears in legacy traffic); `Some(Err)` when it is malformed or names a version we lack.
pub fn modern_envelope(params: Option<&Value>) -> Option<Result<Envelope, ErrorObject>> {
    let meta = params?.get("_meta")?.as_object()?;
    let version = meta.get(META_PROTOCOL_VERSION)?;
    Some(parse_modern_envelope(meta, version))
}

fn parse_modern_envelope(meta: &Map<String, Value>, version: &Value) -> Result<Envelope, ErrorObject> {
    let Some(version) = version.as_str() else {
        return Err(ErrorObject::invalid_params(format!("params._meta[\"{META_PROTOCOL_VERSION}\"] must be a string")));
    };
    let revision = Revision::parse(version).filter(|r| r.is_modern()).ok_or_else(|| unsupported_version(version))?;
    let client_capabilities = match meta.get(META_CLIENT_CAPABILITIES) {
        Some(caps @ Value::Object(_)) => caps.clone(),
        Some(_) => {
            return Err(ErrorObject::invalid_params(format!(
                "params._meta[\"{META_CLIENT_CAPABILITIES}\"] must be an object"
            )))
        }
        None => {
            return Err(ErrorObject::invalid_params(format!(
                "params._meta is missing the required key \"{META_CLIENT_CAPABILITIES}\" (use {{}} for none)"
            )))
        }
    };
    let log_level = match meta.get(META_LOG_LEVEL) {
        None | Some(Value::Null) => None,
        Some(level) => Some(parse_log_level(level)?),
    };
    Ok(Envelope { revision, client_capabilities, log_level })
}

/// `-32022`. `supported` lists the handshake versions too: clients such as the Python SDK read them as "fall back to
/// initialize" rather than "incompatible".
pub fn unsupported_version(requested: &str) -> ErrorObject {
    let names: Vec<&str> = Revision::ALL.iter().map(|r| r.as_str()).collect();
    let message = match Revision::parse(requested) {
        Some(legacy) if !legacy.is_modern() => format!(
            "protocol version '{requested}' is negotiated with initialize, not sent per request; the per-request \
             envelope takes {}",
            Revision::V2026_07_28.as_str()
        ),
        _ => format!("unsupported protocol version '{}' (supported: {})", clip(requested), names.join(", ")),
    };
    ErrorObject::new(UNSUPPORTED_PROTOCOL_VERSION, message)
        .with_data(json!({"supported": supported_versions(), "requested": clip(requested)}))
}

/// A log level name from the wire; `-32602` listing the valid names otherwise.
pub fn parse_log_level(value: &Value) -> Result<LogLevel, ErrorObject> {
    value.as_str().and_then(LogLevel::parse).ok_or_else(|| {
        let names: Vec<&str> = LogLevel::ALL.iter().map(|l| l.as_str()).collect();
        let value = clip(&value.to_string()).into_owned();
        ErrorObject::invalid_params(format!("invalid log level {value} (expected one of: {})", names.join(", ")))
    })
}

/// Opaque pagination cursors: an offset bound to a fingerprint of the list, so a cursor from another list (or a
/// list that changed) is rejected instead of silently skipping items.
pub struct Cursor;

impl Cursor {
    pub fn encode(offset: usize, fingerprint: u64) -> String {
        format!("p{offset:x}.{fingerprint:016x}")
    }

    /// The offset encoded in `cursor`, checked against the current list; `-32602` for anything else.
    pub fn decode(cursor: &str, fingerprint: u64, len: usize) -> Result<usize, ErrorObject> {
        let bad = || {
            ErrorObject::invalid_params(format!(
                "invalid cursor '{}' (use nextCursor from a previous page)",
                clip(cursor)
            ))
        };
        let (offset, print) = cursor.strip_prefix('p').and_then(|c| c.split_once('.')).ok_or_else(bad)?;
        let offset = usize::from_str_radix(offset, 16).map_err(|_| bad())?;
        let print = u64::from_str_radix(print, 16).map_err(|_| bad())?;
        if print != fingerprint || offset == 0 || offset > len {
            return Err(bad());
        }
        Ok(offset)
    }
}

/// FNV-1a over the item keys: cheap, stable across runs.
pub fn fingerprint<'a>(keys: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for key in keys {
        for byte in key.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// One page of `items` starting at the cursor, plus the next cursor.
pub fn page<T: Clone>(
    items: &[T],
    cursor: Option<&Value>,
    page_size: usize,
    fingerprint: u64,
) -> Result<(Vec<T>, Option<String>), ErrorObject> {
    let start = match cursor {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => Cursor::decode(c, fingerprint, items.len())?,
        Some(other) => {
            return Err(ErrorObject::invalid_params(format!(
                "cursor must be a string, got {}",
                clip(&other.to_string())
            )))
        }
    };
    let end = (start + page_size.max(1)).min(items.len());
    let next = (end < items.len()).then(|| Cursor::encode(end, fingerprint));
    Ok((items[start..end].to_vec(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_round_trip_and_order() {
        for r in Revision::ALL {
            assert_eq!(Revision::parse(r.as_str()), Some(r));
        }
        assert_eq!(Revision::parse("2025-01-01"), None);
        assert!(Revision::V2024_11_05 < Revision::V2026_07_28);
        assert!(Revision::V2025_03_26.allows_batches());
        assert!(!Revision::V2025_06_18.allows_batches());
    }

    #[test]
    fn pages_walk_the_list_and_reject_foreign_cursors() {
        let items: Vec<u32> = (0..5).collect();
        let fp = fingerprint(["a", "b"]);
        let (first, next) = page(&items, None, 2, fp).unwrap();
        assert_eq!(first, vec![0, 1]);
        let (second, next) = page(&items, Some(&Value::from(next.unwrap())), 2, fp).unwrap();
        assert_eq!(second, vec![2, 3]);
        let (third, next) = page(&items, Some(&Value::from(next.unwrap())), 2, fp).unwrap();
        assert_eq!((third, next), (vec![4], None));
        for bad in [json!("p2.0"), json!("garbage"), json!(""), json!(3), json!(Cursor::encode(9, fp))] {
            assert_eq!(page(&items, Some(&bad), 2, fp).unwrap_err().code, -32602, "{bad}");
        }
    }

    #[test]
    fn modern_envelope_checks() {
        let ok = json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {"elicitation": {}}}});
        let env = modern_envelope(Some(&ok)).unwrap().unwrap();
        assert!(env.is_modern() && env.client_can_elicit() && env.log_level.is_none());
        let legacy = json!({"_meta": {"progressToken": 1}});
        assert!(modern_envelope(Some(&legacy)).is_none());
        let unknown = json!({"_meta": {META_PROTOCOL_VERSION: "2099-01-01", META_CLIENT_CAPABILITIES: {}}});
        let err = modern_envelope(Some(&unknown)).unwrap().unwrap_err();
        assert_eq!(err.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(err.data.unwrap()["requested"], "2099-01-01");
        let missing = json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28"}});
        assert_eq!(modern_envelope(Some(&missing)).unwrap().unwrap_err().code, -32602);
    }
}

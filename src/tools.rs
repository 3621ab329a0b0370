//! The tool catalogue: one table of tools (name, title, description, schemas, annotations, handler).
//!
//! OWNER: tools helper. `catalog` is the entry point the CLI uses.

use std::sync::Arc;

use serde_json::Value;

use crate::config::Config;
use crate::mcp::tool::{CallContext, Catalog, ToolDef, ToolOutput};

/// The real catalogue for `config` (read-only mode, writable apps, policy, mock mode all come from it).
pub fn catalog(config: &Config) -> Arc<dyn Catalog> {
    let _ = config;
    Arc::new(Empty)
}

/// Placeholder until the tools land: publishes nothing.
struct Empty;

impl Catalog for Empty {
    fn tools(&self) -> Vec<ToolDef> {
        Vec::new()
    }
    fn call(&self, name: &str, _args: Value, _ctx: &CallContext) -> ToolOutput {
        ToolOutput::error(format!("unknown tool '{name}'"))
    }
}

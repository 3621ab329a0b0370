//! The MCP server: stdio threads, the main loop, dispatch, protocol eras, progress, cancellation, logging.
//!
//! OWNER: MCP helper. The public surface other modules rely on lives in [`tool`] (the catalogue trait and the
//! per-call context) and in [`serve`].

pub mod tool;

pub use tool::{Annotations, CallContext, Catalog, ToolDef, ToolOutput};

/// Run the MCP server on stdin/stdout until stdin closes. Returns the process exit code.
pub fn serve(catalog: std::sync::Arc<dyn Catalog>, workers: usize) -> anyhow::Result<std::process::ExitCode> {
    let _ = (catalog, workers);
    todo!("mcp::serve")
}

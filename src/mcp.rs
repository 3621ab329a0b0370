//! The MCP server: stdio threads, the main loop, dispatch, protocol eras, progress, cancellation, logging.
//!
//! Threads: `mcp-reader` (the only reader of the input) → main loop (all protocol state) → `mcp-worker-N` (tool
//! calls, under `catch_unwind`) ; `mcp-writer` is the only writer of the output.

mod call;
mod pool;
mod protocol;
mod server;
mod stdio;
pub mod tool;
mod wire;

use std::process::ExitCode;
use std::sync::Arc;

pub use server::{serve_io, ServeOptions};
pub use tool::{Annotations, CallContext, Catalog, ToolDef, ToolOutput};

/// Run the MCP server on stdin/stdout until stdin closes. Returns the process exit code.
pub fn serve(catalog: Arc<dyn Catalog>, workers: usize) -> anyhow::Result<ExitCode> {
    let opts = ServeOptions { workers, ..ServeOptions::default() };
    server::run(catalog, std::io::stdin(), std::io::stdout(), opts)
}

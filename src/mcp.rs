//! The MCP server: a connection of typed messages, the main loop, dispatch, protocol eras, progress, cancellation,
//! logging.
//!
//! Threads: `mcp-reader` (the only reader of the input) → [`Connection`] → main loop (all protocol state) →
//! `mcp-worker-N` (tool calls, under `catch_unwind`); `mcp-writer` is the only writer of the output. The main loop
//! sees only the [`Connection`]; the stdio threads are one way to make one, [`Connection::memory`] another.

mod call;
mod connection;
mod msg;
mod pool;
mod protocol;
mod server;
pub mod stdio;
pub mod tool;
mod wire;

use std::process::ExitCode;
use std::sync::Arc;

pub use connection::Connection;
pub use msg::Message;
pub use server::{serve_connection, serve_io, ServeOptions};
pub use tool::{Annotations, CallContext, Catalog, ToolDef, ToolOutput};

/// Run the MCP server on stdin/stdout until stdin closes. Returns the process exit code.
pub fn serve(catalog: Arc<dyn Catalog>, opts: ServeOptions) -> anyhow::Result<ExitCode> {
    server::run(catalog, std::io::stdin(), std::io::stdout(), opts)
}

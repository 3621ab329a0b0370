//! Interoperability tests: real clients and independent judges from other ecosystems drive the real binary —
//! the official MCP Python SDK, the MCP Inspector CLI, the Claude Code CLI, and the Python `jsonschema` package
//! as a second judge of the MCP schemas. Their tools are installed, pinned, by `.ci/interop-setup` (run by
//! `.ci/run`); without them each test prints one line saying how to get them and passes, unless
//! `TRUENAS_MCP_INTEROP=require` (set by `.ci/run`) makes a missing tool a failure.

#[path = "../it/mcp_schema.rs"]
mod mcp_schema;
#[path = "../it/support.rs"]
mod support;
#[path = "../it/test_catalog.rs"]
mod test_catalog;

mod claude_code;
mod external;
mod inspector;
mod judges;
mod nas_job;
mod real_compose;
mod sdk;

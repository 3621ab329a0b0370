//! truenas-mcp: an MCP server that deploys and manages Docker Compose "Custom Apps" on TrueNAS SCALE.
//!
//! See `ARCHITECTURE.md` for the bird's-eye view. Module map:
//! `mcp` (stdio JSON-RPC server), `tools` (the tool catalogue), `truenas` (the middleware client),
//! `compose` (parse, policy, conversion), `sim` (an in-memory TrueNAS for mock mode and tests),
//! `config` (every setting), `audit` (the change log), `cli` (subcommands), `redact` (what is secret and how
//! every output path hides it).
#![forbid(unsafe_code)]
#![deny(clippy::print_stdout)]

pub mod audit;
pub mod cancel;
pub mod cli;
pub mod clock;
pub mod compose;
pub mod config;
pub mod jsonrpc;
pub mod jsonschema;
pub mod mcp;
pub mod redact;
pub mod sim;
pub mod tools;
pub mod truenas;

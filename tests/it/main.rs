//! Integration tests: one binary, one module per area. Everything talks real protocols on loopback or pipes.

mod audit;
mod cli;
mod compose;
mod faults;
mod fleet;
mod mcp;
mod mcp_schema;
mod properties;
mod secrets;
mod sim;
mod soak;
mod support;
mod test_catalog;
mod test_time;
mod tn26;
mod tools;
mod truenas;
mod undo;

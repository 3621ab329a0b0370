//! Integration tests: one binary, one module per area. Everything talks real protocols on loopback or pipes.

mod cli;
mod compose;
mod mcp;
mod sim;
mod support;
mod tools;
mod truenas;

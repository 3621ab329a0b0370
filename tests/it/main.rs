//! Integration tests: one binary, one module per area. Everything talks real protocols on loopback or pipes.

mod audit;
mod cli;
mod compose;
mod faults;
mod inspector;
mod mcp;
mod properties;
mod sim;
mod soak;
mod support;
mod tools;
mod truenas;

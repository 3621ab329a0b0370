//! The `truenas-mcp` binary: a thin shell around `truenas_mcp::cli`.
#![forbid(unsafe_code)]
#![deny(clippy::print_stdout)]

fn main() -> std::process::ExitCode {
    truenas_mcp::cli::main()
}

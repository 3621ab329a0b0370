//! Command line: `serve` (default), `check`, `tools`, `call`, `simulate`; flags mirror the environment.
//!
//! OWNER: lead.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}

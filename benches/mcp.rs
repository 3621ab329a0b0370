//! Benchmark harness (mcp): prints numbers; run with `cargo bench --bench mcp`.

fn main() {}

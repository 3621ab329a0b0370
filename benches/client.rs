//! Benchmark harness (client): prints numbers; run with `cargo bench --bench client`.

fn main() {}

//! Benchmark harness (compose): prints numbers; run with `cargo bench --bench compose`.

fn main() {}

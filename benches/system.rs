//! End-to-end benchmarks (cold start, pipelining, logs, idle, soak): `cargo bench --bench system`.

fn main() {}

//! Benchmark harness (compose): prints numbers; run with `cargo bench --bench compose`.
//!
//! Measures `compose::validate` (parse, interpolate, judge, render) on generated documents of 10, 100 and 1000
//! services (target: 1000 under 50 ms), and how fast hostile documents (alias bombs, deep nesting) are refused.
//! Numbers go to stderr, one line each.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use truenas_mcp::compose::{validate, Report, ValidateInput, MAX_INPUT_BYTES};
use truenas_mcp::config::PolicyConfig;

/// A document of `services` services, each with an image, a published port, a bind whose root comes from
/// interpolation, and limits shared through an anchor and merge key. Compact enough that 1000 services fit under
/// the input cap (`MAX_INPUT_BYTES`, 128 KiB): that is already twice what one TrueNAS request can carry.
fn document(services: usize) -> String {
    let mut doc = String::from(
        "x-common: &common\n  restart: unless-stopped\n  deploy:\n    resources:\n      limits: {memory: 512M, cpus: \"1\"}\n\nservices:\n",
    );
    for i in 0..services {
        let port = 10_000 + i;
        doc.push_str(&format!(
            "  s{i}:\n    <<: *common\n    image: ex/app{i}:1.{i}\n    ports: [\"{port}:80\"]\n    volumes: [\"${{ROOT}}/s{i}:/data\"]\n"
        ));
    }
    doc
}

fn run(yaml: &str, env: &BTreeMap<String, String>, policy: &PolicyConfig, used: &[(u16, String)]) -> Report {
    validate(&ValidateInput { yaml, env, used_ports: Some(used), policy, derive_portals: true, nas_version: None })
}

/// Best and median of `rounds` runs of `f`.
fn time(rounds: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn alias_bomb(levels: usize, width: usize) -> String {
    let mut bomb = format!("a0: &a0 [{}]\n", vec!["\"lol\""; width].join(","));
    for level in 1..levels {
        bomb.push_str(&format!("a{level}: &a{level} [{}]\n", vec![format!("*a{}", level - 1); width].join(",")));
    }
    bomb
}

fn main() {
    let policy = PolicyConfig::default();
    let env: BTreeMap<String, String> =
        [("ROOT", "/mnt/tank/apps")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let used: Vec<(u16, String)> = (40_000..40_100).map(|p| (p, format!("app{p}"))).collect();

    eprintln!("compose::validate on generated documents (release build, best / median):");
    for services in [10usize, 100, 1000] {
        let yaml = document(services);
        let report = run(&yaml, &env, &policy, &used);
        assert_eq!(report.services.len(), services);
        let unexpected: Vec<&str> = report.findings.iter().map(|f| f.rule).filter(|r| *r != "too-large").collect();
        assert!(unexpected.is_empty(), "generated document has findings: {unexpected:?}");
        let rounds = if services >= 1000 { 30 } else { 200 };
        let (best, median) = time(rounds, || {
            black_box(run(black_box(&yaml), &env, &policy, &used));
        });
        eprintln!(
            "  {services:>5} services  {:>7} KiB  best {:>9.3?}  median {:>9.3?}  ({} findings, {} substitutions)",
            yaml.len() / 1024,
            best,
            median,
            report.findings.len(),
            report.substitutions.len()
        );
    }

    eprintln!("hostile documents (each must be refused):");
    let mut hostile: Vec<(String, String)> = Vec::new();
    for (levels, width) in [(9usize, 9usize), (10, 10), (12, 12), (20, 20)] {
        let nominal = (width as f64).powi(levels as i32);
        hostile.push((
            format!("alias bomb {levels} levels x {width} (nominal {nominal:.1e} nodes)"),
            alias_bomb(levels, width),
        ));
    }
    // One big anchored list referenced many times: under serde_yaml's repetition limit, stopped by our node budget.
    for (items, refs) in [(3_000usize, 3_000usize), (8_000, 20_000)] {
        let wide = format!("big: &big [{}]\nrefs: [{}]\n", vec!["1"; items].join(","), vec!["*big"; refs].join(","));
        hostile.push((
            format!("wide alias {items} items x {refs} refs (nominal {:.1e} nodes)", (items * refs) as f64),
            wide,
        ));
    }
    let cap = MAX_INPUT_BYTES - 64;
    hostile.push((
        format!("flow nesting, {} levels", cap / 2),
        format!("x: {}{}", "[".repeat(cap / 2), "]".repeat(cap / 2)),
    ));
    let decoy = "[\"]\", ";
    let levels = (cap - 16) / (decoy.len() + 1);
    hostile.push((
        format!("flow nesting with decoy closers, {levels} levels (worst case at the input cap)"),
        format!("x: {}{}", decoy.repeat(levels), "]".repeat(levels)),
    ));
    hostile.push(("input over the cap".to_string(), "#".repeat(MAX_INPUT_BYTES + 1)));
    for (name, yaml) in &hostile {
        let mut verdict = String::new();
        let (best, median) = time(3, || {
            let report = run(yaml, &env, &policy, &used);
            assert!(report.has_errors(), "{name} was not refused");
            verdict = report.findings[0].message.chars().take(70).collect();
        });
        eprintln!(
            "  {name}: {} KiB input, refused in best {best:.3?} median {median:.3?}\n      ({verdict}…)",
            yaml.len() / 1024
        );
    }
}

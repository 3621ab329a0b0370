//! Integration tests: the suite itself does not wait for time (issue 11). A text check over `tests/it/*.rs`: no
//! `sleep(` longer than 100 ms and no assertion on `elapsed()`, apart from the few listed in [`KNOWN`] (debt, each
//! to be turned into a wait on an event; the list only shrinks). BENCHMARKS.md: speed is measured, never asserted.

use std::time::Duration;

/// The longest sleep a test may take.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Offenders that predate this check, as `file: trimmed line`; remove an entry when its line is fixed.
const KNOWN: &[&str] = &[];

/// The duration a `sleep(Duration::from_…(N))` on `line` asks for, if it is written that way.
fn sleep_duration(line: &str) -> Option<Duration> {
    let after = &line[line.find("sleep(")? + "sleep(".len()..];
    let (unit, rest) = ["from_secs(", "from_millis(", "from_micros(", "from_nanos("]
        .iter()
        .find_map(|u| after.find(u).map(|i| (*u, &after[i + u.len()..])))?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '_').filter(|c| *c != '_').collect();
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "from_secs(" => Duration::from_secs(n),
        "from_millis(" => Duration::from_millis(n),
        "from_micros(" => Duration::from_micros(n),
        _ => Duration::from_nanos(n),
    })
}

/// The offending lines of one source file, as `file: trimmed line`.
fn offenders(file: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.trim();
        if code.starts_with("//") {
            continue;
        }
        let long_sleep = sleep_duration(code).is_some_and(|d| d > MAX_SLEEP);
        // `took` is what `faults::bounded` measures on the wall clock.
        let timed_assert = code.contains("assert")
            && (code.contains("elapsed()") || code.contains("took <") || code.contains("took >"));
        if long_sleep || timed_assert {
            found.push(format!("{file}: {code}"));
        }
    }
    found
}

#[test]
fn no_test_sleeps_long_or_asserts_on_elapsed_time() {
    let dir = crate::support::repo_root().join("tests/it");
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "test_time.rs" {
            continue; // this file names the offences it looks for
        }
        found.extend(offenders(&name, &std::fs::read_to_string(path).unwrap()));
    }
    let mut known: Vec<&str> = KNOWN.to_vec();
    let mut new = Vec::new();
    for f in &found {
        match known.iter().position(|k| k == f) {
            Some(i) => {
                known.remove(i);
            }
            None => new.push(f.clone()),
        }
    }
    assert!(new.is_empty(), "tests that wait for time (wait on an event, or drive a test clock):\n{}", new.join("\n"));
    assert!(known.is_empty(), "fixed (remove from KNOWN in tests/it/test_time.rs):\n{}", known.join("\n"));
}

#[test]
fn the_check_catches_a_planted_long_sleep_and_a_timed_assertion() {
    let planted = "fn t() {\n    std::thread::sleep(Duration::from_secs(1));\n    thread::sleep(Duration::from_millis(100));\n    // thread::sleep(Duration::from_secs(9)) in a comment\n    assert!(started.elapsed() < Duration::from_secs(9));\n    assert!(took < Duration::from_secs(4));\n    thread::sleep(Duration::from_millis(1_500));\n}\n";
    assert_eq!(
        offenders("planted.rs", planted),
        [
            "planted.rs: std::thread::sleep(Duration::from_secs(1));",
            "planted.rs: assert!(started.elapsed() < Duration::from_secs(9));",
            "planted.rs: assert!(took < Duration::from_secs(4));",
            "planted.rs: thread::sleep(Duration::from_millis(1_500));",
        ]
    );
}

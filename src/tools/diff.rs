//! A small unified line diff (longest common subsequence), to show what an update changes.
//!
//! Compose files are small; the quadratic table is bounded by [`MAX_CELLS`], beyond which the diff degrades to
//! "everything removed, everything added" rather than using unbounded memory.

const CONTEXT: usize = 3;
const MAX_CELLS: usize = 4_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Keep,
    Remove,
    Add,
}

/// The edit script from `a` to `b`: (op, index in a, index in b).
fn edit_script(a: &[&str], b: &[&str]) -> Vec<(Op, usize, usize)> {
    // Common prefix and suffix are cheap and make the table small for typical edits.
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<(Op, usize, usize)> = (0..prefix).map(|i| (Op::Keep, i, i)).collect();
    let (n, m) = (am.len(), bm.len());
    if (n + 1).saturating_mul(m + 1) > MAX_CELLS {
        ops.extend((0..n).map(|i| (Op::Remove, prefix + i, prefix)));
        ops.extend((0..m).map(|j| (Op::Add, prefix + n, prefix + j)));
    } else {
        // lcs[i][j] = LCS length of am[i..] and bm[j..]
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push((Op::Keep, prefix + i, prefix + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                // Removals before additions, as diff(1) prints them.
                ops.push((Op::Remove, prefix + i, prefix + j));
                i += 1;
            } else {
                ops.push((Op::Add, prefix + i, prefix + j));
                j += 1;
            }
        }
    }
    let (a_end, b_end) = (a.len() - suffix, b.len() - suffix);
    ops.extend((0..suffix).map(|k| (Op::Keep, a_end + k, b_end + k)));
    ops
}

/// A unified diff of `old` → `new` with 3 lines of context; empty when they are equal.
pub fn unified(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = edit_script(&a, &b);
    if ops.iter().all(|(op, _, _)| *op == Op::Keep) {
        return String::new();
    }
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    let changed: Vec<usize> =
        ops.iter().enumerate().filter(|(_, (op, _, _))| *op != Op::Keep).map(|(k, _)| k).collect();
    // Group changes whose context windows touch into hunks.
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k + 1 < changed.len() && changed[k + 1] <= end + 2 * CONTEXT + 1 {
            k += 1;
            end = changed[k];
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_start = hunk.first().map(|h| h.1).unwrap_or(0);
        let b_start = hunk.first().map(|h| h.2).unwrap_or(0);
        let a_len = hunk.iter().filter(|h| h.0 != Op::Add).count();
        let b_len = hunk.iter().filter(|h| h.0 != Op::Remove).count();
        let pos = |startpos: usize, len: usize| if len == 0 { startpos } else { startpos + 1 };
        out.push_str(&format!("@@ -{},{a_len} +{},{b_len} @@\n", pos(a_start, a_len), pos(b_start, b_len)));
        for (op, i, j) in hunk {
            match op {
                Op::Keep => out.push_str(&format!(" {}\n", a[*i])),
                Op::Remove => out.push_str(&format!("-{}\n", a[*i])),
                Op::Add => out.push_str(&format!("+{}\n", b[*j])),
            }
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "old", "new"), "");
        assert_eq!(unified("", "", "old", "new"), "");
    }

    #[test]
    fn table_of_small_diffs() {
        let cases = [
            ("a\nb\nc\n", "a\nB\nc\n", "--- o\n+++ n\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"),
            ("", "x\n", "--- o\n+++ n\n@@ -0,0 +1,1 @@\n+x\n"),
            ("x\n", "", "--- o\n+++ n\n@@ -1,1 +0,0 @@\n-x\n"),
            ("a\nb\n", "a\nb\nc\n", "--- o\n+++ n\n@@ -1,2 +1,3 @@\n a\n b\n+c\n"),
        ];
        for (old, new, want) in cases {
            assert_eq!(unified(old, new, "o", "n"), want, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l2\n", "L2\n").replace("l18\n", "L18\n");
        let d = unified(&old, &new, "o", "n");
        assert_eq!(d.matches("@@ ").count(), 2, "{d}");
        assert!(d.contains("@@ -1,5 +1,5 @@\n l1\n-l2\n+L2\n l3\n l4\n l5\n"), "{d}");
        assert!(d.contains("@@ -15,6 +15,6 @@\n l15\n l16\n l17\n-l18\n+L18\n l19\n l20\n"), "{d}");
    }

    #[test]
    fn applying_the_script_reproduces_the_new_text() {
        let cases = [
            ("services:\n  web:\n    image: nginx:1\n", "services:\n  web:\n    image: nginx:2\n    ports: [80]\n"),
            ("a\nb\nc\nd\ne\n", "e\nd\nc\nb\na\n"),
            ("x\ny\n", "y\nx\ny\nx\n"),
        ];
        for (old, new) in cases {
            let a: Vec<&str> = old.lines().collect();
            let b: Vec<&str> = new.lines().collect();
            let rebuilt: Vec<&str> = edit_script(&a, &b)
                .into_iter()
                .filter(|(op, _, _)| *op != Op::Remove)
                .map(|(op, i, j)| if op == Op::Keep { a[i] } else { b[j] })
                .collect();
            assert_eq!(rebuilt, b);
            let kept: Vec<&str> =
                edit_script(&a, &b).into_iter().filter(|(op, _, _)| *op != Op::Add).map(|(_, i, _)| a[i]).collect();
            assert_eq!(kept, a);
        }
    }

    /// Apply a unified diff to `old` (what `patch` would do), trusting only the hunk headers and line prefixes.
    fn apply(old: &str, diff: &str) -> String {
        let a: Vec<&str> = old.lines().collect();
        let mut out: Vec<String> = Vec::new();
        let mut next = 0usize; // index into a of the next line not yet copied
        for line in diff.lines().skip(2) {
            if let Some(h) = line.strip_prefix("@@ -") {
                let (old_start, old_len) = h.split(' ').next().unwrap().split_once(',').unwrap();
                let (start, len): (usize, usize) = (old_start.parse().unwrap(), old_len.parse().unwrap());
                let begin = if len == 0 { start } else { start - 1 };
                out.extend(a[next..begin].iter().map(|l| l.to_string()));
                next = begin;
            } else if let Some(l) = line.strip_prefix('+') {
                out.push(l.to_string());
            } else if let Some(l) = line.strip_prefix('-') {
                assert_eq!(a[next], l, "removed line does not match");
                next += 1;
            } else if let Some(l) = line.strip_prefix(' ') {
                assert_eq!(a[next], l, "context line does not match");
                out.push(l.to_string());
                next += 1;
            }
        }
        out.extend(a[next..].iter().map(|l| l.to_string()));
        out.iter().map(|l| format!("{l}\n")).collect()
    }

    proptest::proptest! {
        /// The edit script keeps exactly the old lines and produces exactly the new ones, and the diff is empty
        /// only for equal texts.
        #[test]
        fn scripts_transform_old_into_new(a in proptest::collection::vec("[abc]", 0..25),
                                          b in proptest::collection::vec("[abc]", 0..25)) {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let b: Vec<&str> = b.iter().map(String::as_str).collect();
            let script = edit_script(&a, &b);
            let new: Vec<&str> =
                script.iter().filter(|s| s.0 != Op::Remove).map(|&(op, i, j)| if op == Op::Keep { a[i] } else { b[j] }).collect();
            let old: Vec<&str> = script.iter().filter(|s| s.0 != Op::Add).map(|s| a[s.1]).collect();
            proptest::prop_assert_eq!(new, b.clone());
            proptest::prop_assert_eq!(old, a.clone());
            let text = |v: &[&str]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
            let diff = unified(&text(&a), &text(&b), "o", "n");
            proptest::prop_assert_eq!(diff.is_empty(), a == b);
            if !diff.is_empty() {
                proptest::prop_assert_eq!(apply(&text(&a), &diff), text(&b));
            }
        }
    }
}

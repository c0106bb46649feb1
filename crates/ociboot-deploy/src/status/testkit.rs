//! Test helpers for the status output, shared by this crate's unit tests and the CLI's
//! `tests/status_output.rs` (which includes this file by path): snapshot files compared with a
//! readable line diff (`OCIBOOT_UPDATE_SNAPSHOTS=1` rewrites them), and a small reader for the
//! block YAML that `status` writes, so the YAML can be compared with the JSON as values.
//!
//! Only std and serde_json: no snapshot or YAML crate.

#![allow(dead_code)]

use std::path::Path;

use serde_json::{Map, Value};

/// The environment variable that makes [`assert_snapshot`] write instead of compare.
pub const UPDATE_VAR: &str = "OCIBOOT_UPDATE_SNAPSHOTS";

/// Compare `actual` with the snapshot file at `path`; with `OCIBOOT_UPDATE_SNAPSHOTS=1`,
/// write it instead. A mismatch panics with a line diff and the way to accept the change.
pub fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "snapshot {}: {e}\nCreate it with {UPDATE_VAR}=1 and review it.\n--- actual ---\n{actual}",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "snapshot {} differs (- snapshot, + actual):\n{}\n\
             If the change is intended, rerun with {UPDATE_VAR}=1 and review the diff of the file.",
            path.display(),
            line_diff(&expected, actual)
        );
    }
}

/// A unified-style line diff (longest common subsequence; snapshots are small), with two
/// lines of context around each change.
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 3).min(ops.len());
        ops[lo..hi].iter().any(|(c, _)| *c != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if near(k) {
            if skipped {
                out.push_str("  …\n");
                skipped = false;
            }
            let shown = match line.strip_suffix('\n') {
                Some(l) => l.to_string(),
                None => format!("{line}⏎(no newline at end)"),
            };
            out.push_str(&format!("{c} {shown}\n"));
        } else {
            skipped = true;
        }
    }
    out
}

/// Read the block YAML written by `status --format yaml` into a JSON value: mappings
/// (`key: value`, `key:` then a deeper block or a `- ` sequence at the same indentation),
/// sequences, `{}`, `[]`, and scalars (`null`, booleans, integers, JSON double-quoted strings,
/// plain strings). Anything else panics with the line.
pub fn yaml_to_value(yaml: &str) -> Value {
    let mut lines: Vec<String> = yaml.lines().map(str::to_string).collect();
    assert!(
        yaml.is_empty() || yaml.ends_with('\n'),
        "YAML must end with a newline"
    );
    for l in &lines {
        assert!(!l.trim().is_empty(), "blank line in YAML:\n{yaml}");
        assert!(!l.contains('\t'), "tab in YAML: {l:?}");
    }
    let mut i = 0;
    let v = block(&mut lines, &mut i, 0);
    assert_eq!(
        i,
        lines.len(),
        "unread YAML from line {}: {:?}",
        i + 1,
        lines.get(i)
    );
    v
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn block(lines: &mut [String], i: &mut usize, indent: usize) -> Value {
    let first = &lines[*i];
    assert_eq!(indent_of(first), indent, "bad indentation: {first:?}");
    if first[indent..].starts_with("- ") {
        sequence(lines, i, indent)
    } else {
        mapping(lines, i, indent)
    }
}

fn sequence(lines: &mut [String], i: &mut usize, indent: usize) -> Value {
    let mut items = Vec::new();
    while *i < lines.len()
        && indent_of(&lines[*i]) == indent
        && lines[*i][indent..].starts_with("- ")
    {
        let rest = lines[*i][indent + 2..].to_string();
        if is_entry(&rest) || rest.starts_with("- ") {
            // `- key: v` opens a mapping (or `- - x` a sequence) two columns deeper.
            lines[*i] = format!("{}{rest}", " ".repeat(indent + 2));
            items.push(block(lines, i, indent + 2));
        } else {
            items.push(scalar(&rest));
            *i += 1;
        }
    }
    Value::Array(items)
}

/// `key: value` or `key:`, as opposed to a scalar (plain scalars never hold `": "` nor end in
/// `:`; quoted ones start with `"`).
fn is_entry(s: &str) -> bool {
    !s.starts_with('"') && (s.contains(": ") || s.ends_with(':'))
}

fn mapping(lines: &mut [String], i: &mut usize, indent: usize) -> Value {
    let mut m = Map::new();
    while *i < lines.len() && indent_of(&lines[*i]) == indent {
        let line = lines[*i][indent..].to_string();
        assert!(is_entry(&line), "expected `key: value`: {line:?}");
        let (key, value) = match line.split_once(": ") {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (line.trim_end_matches(':').to_string(), None),
        };
        *i += 1;
        let v = match value {
            Some(v) => scalar(&v),
            None => {
                let next = lines.get(*i).map(|l| indent_of(l));
                match next {
                    Some(n) if n > indent => block(lines, i, n),
                    Some(n) if n == indent && lines[*i][n..].starts_with("- ") => {
                        sequence(lines, i, n)
                    }
                    _ => panic!("`{key}:` with nothing under it"),
                }
            }
        };
        assert!(m.insert(key.clone(), v).is_none(), "duplicate key {key}");
    }
    Value::Object(m)
}

fn scalar(s: &str) -> Value {
    match s {
        "null" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "{}" => Value::Object(Map::new()),
        "[]" => Value::Array(Vec::new()),
        _ if s.starts_with('"') => serde_json::from_str(s)
            .unwrap_or_else(|e| panic!("bad double-quoted scalar {s:?}: {e}")),
        _ if s.parse::<i64>().is_ok() => Value::from(s.parse::<i64>().unwrap()),
        _ => {
            assert!(
                !s.is_empty() && !s.starts_with(['[', '{', '\'', '&', '*', '!', '|', '>', '#']),
                "unexpected plain scalar {s:?}"
            );
            Value::String(s.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_blocks_and_sequences() {
        let y = "a:\n  b: 1\n  c: \"x: y\"\nd:\n- e: true\n  f: null\n- plain\ng: {}\nh: []\n";
        let v = yaml_to_value(y);
        assert_eq!(
            v,
            serde_json::json!({"a": {"b": 1, "c": "x: y"}, "d": [{"e": true, "f": null}, "plain"],
                "g": {}, "h": []})
        );
    }

    #[test]
    fn diff_shows_changed_lines() {
        let d = line_diff("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(d, "  a\n- b\n+ B\n  c\n");
    }
}

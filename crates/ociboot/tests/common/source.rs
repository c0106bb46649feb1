//! The workspace's own sources, read at test time: the files of each crate, Rust code with its
//! comments and string contents blanked out (so braces and parentheses can be matched), and
//! the failpoint names the code can reach.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::repo_root;

/// The crate directories, `crates/*`, sorted.
pub fn crate_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    v.sort();
    v
}

/// Every file under `dir`, recursively, sorted; none if `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// The `.rs` files under `crates/*/<sub>` with their text.
pub fn rust_files(sub: &str) -> Vec<(PathBuf, String)> {
    crate_dirs()
        .iter()
        .flat_map(|c| files_under(&c.join(sub)))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// A path relative to the repository, for messages.
pub fn rel(p: &Path) -> String {
    p.strip_prefix(repo_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// Rust code with comments and the contents of string and char literals replaced by spaces
/// (byte offsets are kept), and the string literals found, by offset of their opening quote.
pub struct Code {
    pub skeleton: String,
    pub strings: Vec<(usize, String)>,
}

impl Code {
    pub fn lex(src: &str) -> Code {
        let b = src.as_bytes();
        let mut out = b.to_vec();
        let mut strings = Vec::new();
        let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
            for c in &mut out[from..to] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
        };
        let mut i = 0;
        while i < b.len() {
            let ident_before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            if b[i..].starts_with(b"//") {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            } else if b[i..].starts_with(b"/*") {
                let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                blank(&mut out, i, end);
                i = end;
            } else if b[i] == b'r' && !ident_before && matches!(b.get(i + 1), Some(b'"' | b'#')) {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = src[open + 1..]
                    .find(&close)
                    .map_or(b.len(), |n| open + 1 + n);
                strings.push((open, src[open + 1..end].to_string()));
                blank(&mut out, open + 1, end);
                i = end + close.len();
            } else if b[i] == b'"' {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                strings.push((i, src[i + 1..j.min(b.len())].to_string()));
                blank(&mut out, i + 1, j.min(b.len()));
                i = j + 1;
            } else if b[i] == b'\'' {
                // A char literal ('x', '\n', '\u{..}'), or else a lifetime.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    src[i + 2..].find('\'').map(|n| i + 2 + n)
                } else {
                    let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 1 + ch)
                };
                if let Some(end) = end {
                    blank(&mut out, i + 1, end);
                    i = end + 1;
                } else {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        Code {
            skeleton: String::from_utf8(out).unwrap(),
            strings,
        }
    }

    /// The offset just past the bracket matching the one at `open`.
    pub fn matching(&self, open: usize) -> usize {
        let b = self.skeleton.as_bytes();
        let (o, c) = match b[open] {
            b'(' => (b'(', b')'),
            b'{' => (b'{', b'}'),
            b'[' => (b'[', b']'),
            x => panic!("no bracket at {open}: {:?}", x as char),
        };
        let mut depth = 0;
        for (i, &x) in b.iter().enumerate().skip(open) {
            if x == o {
                depth += 1;
            } else if x == c {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
        }
        b.len()
    }

    /// Offsets of `name(` where `name` is a whole identifier.
    pub fn calls(&self, name: &str) -> Vec<usize> {
        let s = &self.skeleton;
        let pat = format!("{name}(");
        s.match_indices(&pat)
            .map(|(i, _)| i)
            .filter(|&i| {
                !s[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
            .collect()
    }

    /// Functions with a body: (name, parameter names, body span).
    pub fn functions(&self) -> Vec<(String, Vec<String>, std::ops::Range<usize>)> {
        let s = &self.skeleton;
        let mut v = Vec::new();
        for (i, _) in s.match_indices("fn ") {
            if s[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let rest = &s[i + 3..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let Some(open) = s[i..].find('(').map(|n| i + n) else {
                continue;
            };
            let close = self.matching(open);
            let params = s[open + 1..close - 1]
                .split(',')
                .filter_map(|p| p.split_once(':'))
                .map(|(pat, _)| pat.trim().trim_start_matches("mut ").to_string())
                .collect();
            let Some(body) = s[close..].find(['{', ';']).map(|n| close + n) else {
                continue;
            };
            if s.as_bytes()[body] == b'{' {
                v.push((name, params, body..self.matching(body)));
            }
        }
        v
    }
}

/// Whether a string literal looks like a failpoint name: `word-word…`, lower case.
fn kebab(s: &str) -> bool {
    s.contains('-')
        && s.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Every failpoint name the libraries can reach, found in `crates/*/src`: the string given to
/// `failpoint::hit("…")`, or to a function that passes one of its parameters on to `hit` (such
/// as a `write_entries(…, "install-entries-synced")`), transitively. A `hit` whose argument is
/// neither a literal nor a parameter of its function cannot be followed: that panics, so the
/// list is never silently short.
pub fn failpoint_names() -> BTreeSet<String> {
    let files: Vec<(PathBuf, Code)> = rust_files("src")
        .into_iter()
        .map(|(p, t)| (p, Code::lex(&t)))
        .collect();
    let mut sinks: BTreeSet<String> = ["hit".to_string()].into();
    let mut names = BTreeSet::new();
    loop {
        let before = sinks.len();
        for (path, code) in &files {
            let fns = code.functions();
            for sink in sinks.clone() {
                for call in code.calls(&sink) {
                    let s = &code.skeleton;
                    if s[..call].trim_end().ends_with("fn") {
                        continue;
                    }
                    let args = call + sink.len()..code.matching(call + sink.len());
                    let found: Vec<&String> = code
                        .strings
                        .iter()
                        .filter(|(at, lit)| args.contains(at) && kebab(lit))
                        .map(|(_, lit)| lit)
                        .collect();
                    if !found.is_empty() {
                        names.extend(found.into_iter().cloned());
                        continue;
                    }
                    let words: BTreeSet<&str> = s[args.clone()]
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .collect();
                    let outer = fns
                        .iter()
                        .filter(|(_, _, body)| body.contains(&call))
                        .min_by_key(|(_, _, body)| body.len());
                    match outer {
                        Some((f, params, _)) if params.iter().any(|p| words.contains(&**p)) => {
                            sinks.insert(f.clone());
                        }
                        _ if sink == "hit" => panic!(
                            "{}: cannot tell which failpoint `hit{}` names",
                            rel(path),
                            &s[args]
                        ),
                        _ => {}
                    }
                }
            }
        }
        if sinks.len() == before {
            break;
        }
    }
    names
}

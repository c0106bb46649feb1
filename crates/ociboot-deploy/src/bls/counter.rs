//! UAPI boot counting in entry file names, and the order systemd-boot (252) sorts entries in.
//!
//! An entry file `NAME+LEFT[-DONE].conf` is counted: at each try the loader renames it to
//! `LEFT-1`/`DONE+1` before booting it, and `systemd-bless-boot good` renames it to `NAME.conf`
//! once `boot-complete.target` is reached. An entry with no tries left sorts after all others,
//! so the loader falls back by itself. In 252 the entry id includes the counter, so nothing
//! may name an entry file (no `default`): the order is the entries' `sort-key` and `version`.

use std::cmp::Ordering;

use super::Entry;

/// The tries of a counted entry, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Tries left; 0 means the loader gave up on the entry.
    pub left: u32,
    /// Tries made.
    pub done: u32,
}

impl Counter {
    /// A fresh counter with `tries` tries.
    pub fn fresh(tries: u32) -> Counter {
        Counter {
            left: tries,
            done: 0,
        }
    }

    /// The loader gave up on this entry: no tries left.
    pub fn given_up(&self) -> bool {
        self.left == 0
    }
}

/// The most tries an entry is given (the counter is in a FAT file name).
pub const MAX_TRIES: u32 = 99;

/// The sort key of every entry ociboot writes.
pub const SORT_KEY: &str = "ociboot";

/// The base name (no counter, no `.conf`) of a deployment's (`<stateroot>/<id>`) entry file.
pub fn base_name(key: &str) -> String {
    format!("ociboot-{}", key.replacen('/', "-", 1))
}

/// The entry file of a deployment with this counter: `ociboot-<stateroot>-<id>[+L[-D]].conf`.
pub fn file_name(key: &str, counter: Option<Counter>) -> String {
    let base = base_name(key);
    match counter {
        None => format!("{base}.conf"),
        Some(Counter { left, done: 0 }) => format!("{base}+{left}.conf"),
        Some(Counter { left, done }) => format!("{base}+{left}-{done}.conf"),
    }
}

/// An entry file name split into its base and counter: `None` for a name that is not one of
/// ociboot's entries (`ociboot-*.conf`).
pub fn split_name(name: &str) -> Option<(&str, Option<Counter>)> {
    let stem = name.strip_suffix(".conf")?;
    if !stem.starts_with("ociboot-") {
        return None;
    }
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    if let Some((base, tail)) = stem.rsplit_once('+') {
        let counter = match tail.split_once('-') {
            None => number(tail).map(|left| Counter { left, done: 0 }),
            Some((l, d)) => number(l)
                .zip(number(d))
                .map(|(left, done)| Counter { left, done }),
        };
        if let Some(c) = counter {
            return Some((base, Some(c)));
        }
    }
    Some((stem, None))
}

/// systemd-boot's order of ociboot's entries (all share [`SORT_KEY`]): entries with no tries
/// left last, then by version, highest first, then by file name, highest first.
pub fn loader_order(a: &(String, Entry), b: &(String, Entry)) -> Ordering {
    let bad = |e: &Entry| e.counter.is_some_and(|c| c.given_up());
    bad(&a.1)
        .cmp(&bad(&b.1))
        .then(b.1.version.cmp(&a.1.version))
        .then_with(|| b.0.cmp(&a.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_counters() {
        let k = "default/abc.0";
        assert_eq!(file_name(k, None), "ociboot-default-abc.0.conf");
        assert_eq!(
            file_name(k, Some(Counter::fresh(3))),
            "ociboot-default-abc.0+3.conf"
        );
        let c = Counter { left: 2, done: 1 };
        assert_eq!(file_name(k, Some(c)), "ociboot-default-abc.0+2-1.conf");
        for c in [
            None,
            Some(Counter::fresh(3)),
            Some(c),
            Some(Counter::fresh(0)),
        ] {
            let n = file_name(k, c);
            assert_eq!(split_name(&n), Some(("ociboot-default-abc.0", c)), "{n}");
        }
        assert_eq!(
            split_name("ociboot-default-abc.0+0-3.conf"),
            Some(("ociboot-default-abc.0", Some(Counter { left: 0, done: 3 })))
        );
        // Not a counter: part of the name.
        assert_eq!(split_name("ociboot-a+b.conf"), Some(("ociboot-a+b", None)));
        assert_eq!(
            split_name("ociboot-a+1-.conf"),
            Some(("ociboot-a+1-", None))
        );
        assert_eq!(split_name("debian-6.1.conf"), None);
        assert_eq!(split_name("ociboot-a.conf.tmp"), None);
    }
}

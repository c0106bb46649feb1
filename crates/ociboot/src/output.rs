//! Small formatting helpers for people.

/// 1234567 -> "1.2 MB" (decimal units, as podman shows sizes).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `sha256:0123456789ab…` shortened to 12 hex digits.
pub fn short_digest(d: &impl std::fmt::Display) -> String {
    let s = d.to_string();
    let hex = s.strip_prefix("sha256:").unwrap_or(&s);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::human_size(999), "999 B");
        assert_eq!(super::human_size(1_500_000), "1.5 MB");
    }
}

//! PAX extended header records, parsed strictly: each record is exactly `LEN KEY=VALUE\n`
//! where LEN (decimal) counts the whole record, the key is not empty, and the records fill the
//! header (NUL padding after the last one allowed, as both GNU tar and Python's tarfile read
//! it). The values ociboot uses are checked here too: sizes, ids and times are plain decimal
//! numbers that fit, paths are not empty and hold no NUL, and no key comes twice.

/// One record: key and value.
pub type Record<'a> = (&'a [u8], &'a [u8]);

/// Split `data` into records; see the module documentation.
pub fn records(data: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let mut out: Vec<Record<'_>> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest[0] == 0 {
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            return Err(format!(
                "PAX record at offset {pos}: NUL before the records end"
            ));
        }
        let bad = |m: &str| Err(format!("PAX record at offset {pos}: {m}"));
        let Some(sp) = rest.iter().take(21).position(|&b| b == b' ') else {
            return bad("no length");
        };
        let digits = &rest[..sp];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return bad("the length is not a decimal number");
        }
        let len = digits.iter().try_fold(0usize, |n, &d| {
            n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        });
        let Some(len) = len else {
            return bad("the length overflows");
        };
        // "LEN k=\n": the length, a space, a key of one byte at least, '=', the newline.
        if len < sp + 4 {
            return bad("the length is too small for a record");
        }
        if len > rest.len() {
            return bad("the record runs past the end of the header");
        }
        if rest[len - 1] != b'\n' {
            return bad("the record does not end with a newline where its length says");
        }
        let body = &rest[sp + 1..len - 1];
        let Some(eq) = body.iter().position(|&b| b == b'=') else {
            return bad("no '=' in the record");
        };
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        if key.is_empty() {
            return bad("empty key");
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!(
                "PAX key {:?} comes twice",
                String::from_utf8_lossy(key)
            ));
        }
        out.push((key, value));
        pos += len;
    }
    Ok(out)
}

/// A decimal number of at most `max`: digits only (no sign, space or exponent).
pub fn decimal(key: &[u8], v: &[u8], max: u64) -> Result<u64, String> {
    let n = if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        None
    } else {
        v.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    };
    match n {
        Some(n) if n <= max => Ok(n),
        _ => Err(format!(
            "PAX {}={:?}: not a decimal number up to {max}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(&v[..v.len().min(40)])
        )),
    }
}

/// A time: decimal seconds, optionally a fraction (`123.456`); the whole seconds. Negative
/// times and exponents are refused.
pub fn time(key: &[u8], v: &[u8]) -> Result<i64, String> {
    let (secs, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    if let Some(f) = frac {
        if f.is_empty() || !f.iter().all(u8::is_ascii_digit) {
            return decimal(key, v, 0).map(|_| 0);
        }
    }
    decimal(key, secs, i64::MAX as u64).map(|n| n as i64)
}

/// A path value: not empty, no NUL.
pub fn path<'a>(key: &[u8], v: &'a [u8]) -> Result<&'a [u8], String> {
    if v.is_empty() || v.contains(&0) {
        return Err(format!(
            "PAX {} is empty or holds a NUL",
            String::from_utf8_lossy(key)
        ));
    }
    Ok(v)
}

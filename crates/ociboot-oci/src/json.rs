//! JSON from hostile sources: a nesting limit checked before parsing, and descriptions of
//! parse errors that never repeat what the document holds.
//!
//! serde_json limits recursion to 128 levels only for values it builds: a field a type does
//! not know is skipped without a limit, so a manifest with a 100 000-deep unknown field parses
//! fine and then breaks whoever reads it again as a `serde_json::Value` (`image inspect`).
//! Every document is therefore measured first and refused beyond [`MAX_JSON_DEPTH`].

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::text::sanitize;

/// The deepest nesting of arrays and objects accepted in a manifest, index, config or auth
/// file (a top-level object is depth 1). Real documents stay below 10; the limit is half of
/// serde_json's recursion limit, so whatever is accepted can be read again as a `Value`.
pub const MAX_JSON_DEPTH: usize = 64;

/// `Ok` when `bytes` nest arrays and objects at most [`MAX_JSON_DEPTH`] deep; otherwise an
/// [`Error::Invalid`] naming `what` (e.g. `IMAGE: manifest DIGEST`). Brackets inside strings do
/// not count; malformed JSON is left for the parser to report.
pub fn check_depth(bytes: &[u8], what: &str) -> Result<()> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(Error::Invalid(format!(
                        "{what}: JSON nested more than {MAX_JSON_DEPTH} levels deep (at byte \
                         {offset}); refused"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parse a document from a registry or an image after [`check_depth`]. A parse error is
/// `{what}: {problem}: {serde's message}`, the message made printable by [`sanitize`].
pub fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str, problem: &str) -> Result<T> {
    check_depth(bytes, what)?;
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid(format!("{what}: {problem}: {}", sanitize(&e.to_string()))))
}

/// What is wrong with a document, saying where but never quoting it: serde_json's messages
/// repeat the value they did not expect (`invalid type: string "dXNlcjpwYXNz"`), which in an
/// auth file or a token response is a secret.
pub fn describe_without_values(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Syntax => "not valid JSON",
        Category::Eof => "JSON that ends too early",
        Category::Data => "a value of the wrong type or shape",
        Category::Io => "unreadable",
    };
    format!("{kind} (line {}, column {})", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth() {
        assert!(check_depth(nested(MAX_JSON_DEPTH).as_bytes(), "d").is_ok());
        let e = check_depth(nested(MAX_JSON_DEPTH + 1).as_bytes(), "img: manifest x")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("img: manifest x: JSON nested more than 64"),
            "{e}"
        );
        assert!(check_depth(nested(100_000).as_bytes(), "d").is_err());
        // Brackets in strings, escaped quotes, and unbalanced closers do not count.
        let s = format!(
            r#"{{"a":"{}\"{}","b":"\\"}}]]]]"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(check_depth(s.as_bytes(), "d").is_ok());
        let v: serde_json::Value = serde_json::from_str(&nested(MAX_JSON_DEPTH)).unwrap();
        assert!(v.is_array());
    }

    #[test]
    fn errors_do_not_quote() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            a: u32,
        }
        let e = serde_json::from_str::<S>(r#"{"a":"hunter2"}"#).unwrap_err();
        assert!(e.to_string().contains("hunter2"));
        let d = describe_without_values(&e);
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("line 1"), "{d}");
        let e = parse::<S>(b"{\"a\":\"\x1b[2J\"}", "img: config c", "malformed config")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("img: config c: malformed config: "), "{e}");
        assert!(!e.contains('\u{1b}'), "{e}");
    }
}

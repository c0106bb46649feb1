//! Text that comes from a registry or an image document (error bodies, media types, platform
//! names, realms), made safe to put in an error message or a log line: control characters and
//! invisible formatting characters are written as `\u{…}` escapes, and the length is capped.

/// The most bytes of remote text one message carries (escapes included).
pub const MAX_REMOTE_TEXT: usize = 512;

/// Characters that are not control characters but change how a terminal shows what follows
/// them: bidirectional overrides and isolates, zero-width characters, the byte order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// `s` with every control character (C0, DEL, C1: escape sequences, newlines, bells) and every
/// invisible formatting character escaped as `\u{1b}`, cut to at most [`MAX_REMOTE_TEXT`]
/// bytes at a character boundary, a cut marked with how many bytes were left out.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_REMOTE_TEXT));
    for (i, c) in s.char_indices() {
        let escaped;
        let piece = if c.is_control() || is_invisible_format(c) {
            escaped = format!("\\u{{{:x}}}", u32::from(c));
            escaped.as_str()
        } else {
            let end = i + c.len_utf8();
            &s[i..end]
        };
        if out.len() + piece.len() > MAX_REMOTE_TEXT {
            out.push_str(&format!("… ({} more bytes)", s.len() - i));
            break;
        }
        out.push_str(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_caps() {
        assert_eq!(sanitize("plain text: ok"), "plain text: ok");
        assert_eq!(
            sanitize("a\u{1b}[31mb\r\nc\u{7}\u{9b}\u{202e}d"),
            "a\\u{1b}[31mb\\u{d}\\u{a}c\\u{7}\\u{9b}\\u{202e}d"
        );
        assert_eq!(sanitize("über"), "über");
        let long = "é".repeat(1000);
        let s = sanitize(&long);
        assert!(s.len() <= MAX_REMOTE_TEXT + 32, "{}", s.len());
        assert!(s.ends_with("(1488 more bytes)"), "{s}");
        let s = sanitize(&"\u{1b}".repeat(1000));
        assert!(
            s.len() <= MAX_REMOTE_TEXT + 32 && !s.contains('\u{1b}'),
            "{s}"
        );
    }
}

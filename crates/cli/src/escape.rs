//! Text that came from the network, made safe to show on a terminal.
//!
//! File names and messages from peers may hold anything UTF-8 allows:
//! escape sequences that move the cursor, rewrite the window title (OSC) or
//! ring the bell, carriage returns and newlines that overwrite or forge
//! lines, and bidirectional overrides that show `gpj.exe` as `exe.jpg`.
//! Every such string passes through [`escape`] before it is printed; the
//! JSON output is escaped by its encoder instead.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: the C0 controls, DEL,
/// the C1 controls, the line and paragraph separators, and the Unicode
/// bidirectional formatting characters (marks, embeddings, overrides and
/// isolates).
pub(crate) fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `s` with every unsafe character (see [`is_unsafe`]) written as an escape:
/// `\n`, `\r` and `\t`, `\x1b` for the other C0 controls and DEL, and
/// `\u{202e}` for the rest. Any other text is returned as it is, so
/// ordinary names print unchanged.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for a path (shown lossily when it is not UTF-8).
pub(crate) fn path(p: &std::path::Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(
            escape("a\u{1b}]0;title\u{7}\r\nb\tc\0d\u{7f}"),
            r"a\x1b]0;title\x07\r\nb\tc\x00d\x7f"
        );
        assert_eq!(escape("\u{85}x\u{9b}31m"), r"\u{85}x\u{9b}31m");
        assert_eq!(escape("\u{202e}gpj.exe"), r"\u{202e}gpj.exe");
        assert_eq!(
            escape("\u{2066}\u{2069}\u{200e}\u{200f}\u{061c}\u{2028}\u{2029}"),
            r"\u{2066}\u{2069}\u{200e}\u{200f}\u{61c}\u{2028}\u{2029}"
        );
    }

    #[test]
    fn ordinary_text_is_unchanged_and_borrowed() {
        for s in [
            "music/a b.ogg",
            "Cloud - Cloud models.png",
            "ça, 日本語, emoji 🎵",
            r"back\slash",
            "",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn no_control_character_survives() {
        let all: String = (0u32..=0x3000).filter_map(char::from_u32).collect();
        let e = escape(&all);
        assert!(!e.chars().any(is_unsafe));
        assert!(!e.chars().any(char::is_control));
    }
}

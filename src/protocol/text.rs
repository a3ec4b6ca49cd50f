//! Making peer-controlled text safe to show: one escaper for every terminal line, log record,
//! error message and window label that can carry a name, message, reason, kind or note a
//! peer chose.
//!
//! A peer's string may hold terminal control sequences (ESC `\x1b]52;c;…\x07` writes the
//! clipboard of many terminals, `\x1b[2J` clears the screen, the 8-bit CSI U+009B does the
//! same on some), bidirectional controls that make `exe.txt` read as `txt.exe`, and line
//! breaks that forge extra log or output lines. [`escape_line`] turns every such character
//! into a visible `\u{..}` escape (`\n`, `\r` and `\t` as `\n`, `\r`, `\t`):
//!
//! - C0 controls U+0000–U+001F, DEL U+007F and the C1 controls U+0080–U+009F (CSI U+009B,
//!   NEL U+0085 among them);
//! - bidirectional controls: ALM U+061C, LRM/RLM U+200E/U+200F, the embeddings and
//!   overrides U+202A–U+202E, the isolates U+2066–U+2069;
//! - the line and paragraph separators U+2028 and U+2029.
//!
//! Everything else (Chinese, emoji, combining marks) passes unchanged. Backslashes are kept
//! as they are, so escaping is idempotent: text escaped at the source (an error message) and
//! again on the way out (the logger) reads the same as text escaped once. The price is that
//! a peer can type a literal `\u{1b}` that looks like an escaped ESC; it can still never send
//! a real one.
//!
//! [`escape_note`] is the variant for notes, where a line break is part of the message: each
//! `\n` becomes a real line break followed by an indent, so a multi-line note stays readable
//! and no line of it can start flush left like a line of Ferry's own; `\r` and everything
//! else are escaped as above.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for characters that must never reach a terminal (or a label) as they are.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() // C0, DEL and C1 (U+0080..=U+009F)
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` on one line with every unsafe character (see the module docs) made a visible
/// escape. Borrows when there is nothing to escape.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    escape(text, None)
}

/// Like [`escape_line`], but each `\n` becomes a line break followed by `indent`.
pub fn escape_note<'a>(text: &'a str, indent: &str) -> Cow<'a, str> {
    escape(text, Some(indent))
}

fn escape<'a>(text: &'a str, newline_indent: Option<&str>) -> Cow<'a, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match (c, newline_indent) {
            ('\n', Some(indent)) => {
                out.push('\n');
                out.push_str(indent);
            }
            ('\n', None) => out.push_str("\\n"),
            ('\r', _) => out.push_str("\\r"),
            ('\t', _) => out.push_str("\\t"),
            (c, _) if is_unsafe_char(c) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            (c, _) => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` trimmed and cut to at most `max` bytes at a character boundary (for bounded
/// fields a peer or this device fills, such as a device name in a beacon).
pub fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["plain text, 你好", "C:\\temp", "emoji 🚢 e\u{301}", ""] {
            assert!(matches!(escape_line(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn terminal_sequences_become_visible() {
        assert_eq!(
            escape_line("\u{1b}]52;c;SGVsbG8=\u{7}"),
            "\\u{1b}]52;c;SGVsbG8=\\u{7}"
        );
        assert_eq!(escape_line("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(escape_line("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape_line("del\u{7f}"), "del\\u{7f}");
        assert_eq!(escape_line("nel\u{85}"), "nel\\u{85}");
        assert_eq!(escape_line("two\nlines\r\n\tx"), "two\\nlines\\r\\n\\tx");
    }

    #[test]
    fn bidi_controls_and_separators_become_visible() {
        assert_eq!(escape_line("evil\u{202E}txt.exe"), "evil\\u{202e}txt.exe");
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}',
        ] {
            let out = escape_line(&format!("a{c}b")).into_owned();
            assert_eq!(out, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
    }

    #[test]
    fn notes_keep_their_line_breaks_indented() {
        assert_eq!(
            escape_note("one\ntwo\r\n\u{1b}[2J", "    "),
            "one\n    two\\r\n    \\u{1b}[2J"
        );
        assert_eq!(escape_note("a\u{2028}b", "  "), "a\\u{2028}b");
    }

    proptest! {
        #[test]
        fn nothing_unsafe_survives_and_escaping_is_idempotent(text in any::<String>()) {
            let once = escape_line(&text);
            prop_assert!(!once.chars().any(is_unsafe_char), "{:?}", once);
            let twice = escape_line(&once).into_owned();
            prop_assert_eq!(twice, once.clone().into_owned());
            let note = escape_note(&text, "  ");
            prop_assert!(!note.chars().any(|c| c != '\n' && is_unsafe_char(c)));
            prop_assert_eq!(note.lines().count().max(1), text.split('\n').count().max(1));
        }
    }
}

//! Text from users, agents and models shown where it could mislead: a file name with a
//! newline forges a log line, one with U+202E reverses what a terminal shows, one with an
//! escape sequence drives the terminal itself. Everything that prints such text — the daemon's
//! log, the tables of `avix client` — passes it through [`escape`] first.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a log or a terminal as it is: control characters (C0, DEL,
/// C1) and the invisible format characters that reorder or hide text (bidirectional
/// overrides and isolates, zero-width characters, the byte-order mark).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}')
}

/// `s` with every unsafe character written as an escape (`\n`, `\t`, `\r`, `\u{202e}`).
/// Backslashes are left as they are, so ordinary text reads unchanged.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`escape`], but keeps line breaks and tabs: for multi-line text shown as text (an
/// agent's answer, a log line's message), where only what could drive or fool the terminal
/// must go.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && c != '\t' && is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert!(matches!(escape("plain name.txt"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{001b}[31mred");
        assert_eq!(
            escape("zero\u{200b}width\u{7f}"),
            "zero\\u{200b}width\\u{007f}"
        );
        assert_eq!(escape("héllo wörld ✓"), "héllo wörld ✓");
        assert_eq!(
            escape(&escape("a\u{202e}\n")),
            escape("a\u{202e}\n"),
            "idempotent"
        );
        assert_eq!(
            escape_lines("two\nlines\tand \u{1b}]0;title\u{7}"),
            "two\nlines\tand \\u{001b}]0;title\\u{0007}"
        );
    }
}

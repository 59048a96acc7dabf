//! Making hostile text safe to print on a terminal.

/// Bidirectional overrides and isolates: they reorder what a terminal shows ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with control characters (ANSI escapes, newlines, BEL, C1 codes, bidirectional
/// overrides…) shown as escapes, so nothing a container writes can move the cursor, reorder
/// the text or forge a line.
pub(crate) fn escape_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_only() {
        assert_eq!(escape_for_terminal("plain /bin/sh é"), "plain /bin/sh é");
        assert_eq!(
            escape_for_terminal("a\u{1b}[31mred\nb\u{7}"),
            "a\\u{1b}[31mred\\nb\\u{7}"
        );
        assert_eq!(
            escape_for_terminal("x\u{9b}2J\u{202e}gnp.exe\u{0}"),
            "x\\u{9b}2J\\u{202e}gnp.exe\\u{0}"
        );
    }
}

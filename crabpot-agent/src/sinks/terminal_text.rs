//! Making hostile text safe to print on a terminal.

/// `text` with control characters (ANSI escapes, newlines, BEL…) shown as escapes, so
/// nothing a container writes can move the cursor or forge a line.
pub fn escape_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
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
    }
}

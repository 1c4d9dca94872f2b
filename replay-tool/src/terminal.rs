//! Printing text that users wrote (messages, names) to an administrator's terminal: control
//! characters are shown escaped, so a message cannot move the cursor, recolour the screen or
//! rewrite what was printed before it.

/// `text` with every control character (C0, DEL, C1) and the bidirectional overrides written
/// as escapes (`\u{1b}`), everything else as is.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for character in text.chars() {
        let bidi_control = matches!(character, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if character.is_control() || bidi_control {
            shown.extend(character.escape_unicode());
        } else {
            shown.push(character);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("plain æøå <b>"), "plain æøå <b>");
        assert_eq!(printable("\u{1b}[2Jgone"), "\\u{1b}[2Jgone");
        assert_eq!(printable("line\nbreak\ttab"), "line\\u{a}break\\u{9}tab");
        assert_eq!(printable("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
    }
}

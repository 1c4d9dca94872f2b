//! Length limits on what people send: generous enough for every real use (the simulator's
//! names are "First Last" and its tweets at most 140 characters), small enough that no
//! request can make the server store, index or hash megabytes.
//!
//! They apply to new input at the front doors (registration, posting), not inside the
//! aggregates: history — an import of the original's database, which had no limits — is
//! accepted as it was written. Counted in characters (Unicode scalar values), as people
//! count them, not in bytes.

/// The longest username.
pub const MAX_USERNAME_CHARS: usize = 100;
/// The longest email address: the most SMTP can deliver to (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// The longest password. Far beyond any passphrase; argon2 hashes any length in the same
/// time, so this bounds only what a request may carry.
pub const MAX_PASSWORD_CHARS: usize = 1_024;
/// The longest message.
pub const MAX_MESSAGE_CHARS: usize = 1_000;

/// Whether `text` has more than `max` characters.
pub fn exceeds(text: &str, max: usize) -> bool {
    // A text of at most `max` bytes has at most `max` characters: the common case needs
    // no counting.
    text.len() > max && text.chars().count() > max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_are_counted_not_bytes() {
        assert!(!exceeds("", 0));
        assert!(exceeds("a", 0));
        assert!(!exceeds("abc", 3));
        assert!(exceeds("abcd", 3));
        // Three characters, nine bytes.
        assert!(!exceeds("日本語", 3));
        assert!(exceeds("日本語!", 3));
    }
}

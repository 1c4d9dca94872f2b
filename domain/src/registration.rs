//! Registration input rules and the password-hash type.
//!
//! The checks run in the order the original MiniTwit ran them, and the first failure wins;
//! their messages are the ones the simulator and the original's users see.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{self, MAX_EMAIL_CHARS, MAX_PASSWORD_CHARS, MAX_USERNAME_CHARS};

/// Why a registration was refused. The `Display` texts are part of the public contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("You have to enter a username")]
    MissingUsername,
    #[error("A username can have at most {MAX_USERNAME_CHARS} characters")]
    UsernameTooLong,
    /// PostgreSQL cannot store the NUL character in text, so no name may hold it.
    #[error("A username cannot contain the NUL character")]
    UnstorableUsername,
    #[error("You have to enter a valid email address")]
    InvalidEmail,
    #[error("An email address can have at most {MAX_EMAIL_CHARS} characters")]
    EmailTooLong,
    #[error("You have to enter a password")]
    MissingPassword,
    #[error("A password can have at most {MAX_PASSWORD_CHARS} characters")]
    PasswordTooLong,
    #[error("The two passwords do not match")]
    PasswordsDiffer,
    #[error("The username is already taken")]
    UsernameTaken,
    #[error("This username is reserved by the site")]
    ReservedUsername,
}

/// Names a new account may not take, compared without regard to ASCII case: the site's own
/// top-level pages and listeners (a user named `public` would have their timeline at the
/// public timeline's address), names that look like the site speaking, and the prefix under
/// which accounts that hold such a name from before this rule (imported from the original)
/// stay reachable.
pub const RESERVED_USERNAMES: [&str; 27] = [
    "about",
    "account",
    "add_message",
    "admin",
    "api",
    "chat",
    "favicon.ico",
    "fllws",
    "health",
    "help",
    "latest",
    "login",
    "logout",
    "messages",
    "metrics",
    "msgs",
    "openapi.json",
    "public",
    "register",
    "robots.txt",
    "search",
    "settings",
    "simulator",
    "static",
    "support",
    "system",
    "users",
];

/// Whether `username` is one of the [`RESERVED_USERNAMES`].
pub fn is_reserved(username: &str) -> bool {
    RESERVED_USERNAMES
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(username))
}

/// Checks the parts of a new registration that need nothing but the input itself: each
/// field's own rule, then its length limit (see [`crate::limits`]), field by field.
///
/// Whether the username is taken is the aggregate's business (see [`crate::user`]); callers
/// may check it earlier to avoid hashing a password for nothing. Reserved names are refused
/// here, for new accounts, and not by the aggregate, which also records the accounts of the
/// original's databases with the names they had.
pub fn validate(username: &str, email: &str, password: &str) -> Result<(), RegistrationError> {
    validate_username(username)?;
    if is_reserved(username) {
        return Err(RegistrationError::ReservedUsername);
    }
    if limits::exceeds(username, MAX_USERNAME_CHARS) {
        return Err(RegistrationError::UsernameTooLong);
    }
    validate_new_email(email)?;
    validate_new_password(password)
}

/// The rules for an email address someone gives now, at registration or as a change.
pub fn validate_new_email(email: &str) -> Result<(), RegistrationError> {
    validate_email(email)?;
    if limits::exceeds(email, MAX_EMAIL_CHARS) {
        return Err(RegistrationError::EmailTooLong);
    }
    Ok(())
}

/// The rules for a password someone chooses now, at registration or as a change.
pub fn validate_new_password(password: &str) -> Result<(), RegistrationError> {
    if password.is_empty() {
        return Err(RegistrationError::MissingPassword);
    }
    if limits::exceeds(password, MAX_PASSWORD_CHARS) {
        return Err(RegistrationError::PasswordTooLong);
    }
    Ok(())
}

/// The browser form's checks: [`validate`], then that the password was typed the same twice
/// (the form asks for it twice; the simulator's API does not).
pub fn validate_with_repeat(
    username: &str,
    email: &str,
    password: &str,
    password_repeated: &str,
) -> Result<(), RegistrationError> {
    validate(username, email, password)?;
    if password != password_repeated {
        return Err(RegistrationError::PasswordsDiffer);
    }
    Ok(())
}

pub(crate) fn validate_username(username: &str) -> Result<(), RegistrationError> {
    if username.is_empty() {
        Err(RegistrationError::MissingUsername)
    } else if !is_storable(username) {
        Err(RegistrationError::UnstorableUsername)
    } else {
        Ok(())
    }
}

/// The original accepted any address containing `@`; so do we, to accept what it accepted
/// (but for NUL, which could not be stored).
pub(crate) fn validate_email(email: &str) -> Result<(), RegistrationError> {
    if email.contains('@') && is_storable(email) {
        Ok(())
    } else {
        Err(RegistrationError::InvalidEmail)
    }
}

/// Whether `text` can be stored as PostgreSQL text, which refuses only the NUL character.
/// A name that cannot be stored cannot belong to anyone, so lookups of it can answer "no
/// such user" without asking the database (which would fail on it).
pub fn is_storable(text: &str) -> bool {
    !text.contains('\0')
}

/// A password hash in PHC string format (or a legacy format the server can verify).
///
/// A distinct type so a plain password cannot be passed where a hash belongs, and so that
/// `Debug` output — and with it every log line — never shows the hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps an already computed hash.
    pub fn new(hash: String) -> Self {
        Self(hash)
    }

    /// The hash string, for verification.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failing_rule_wins() {
        assert_eq!(
            validate("", "", ""),
            Err(RegistrationError::MissingUsername)
        );
        assert_eq!(validate("a", "", ""), Err(RegistrationError::InvalidEmail));
        assert_eq!(
            validate("a\0b", "", ""),
            Err(RegistrationError::UnstorableUsername)
        );
        assert_eq!(
            validate("a", "a@b\0", "x"),
            Err(RegistrationError::InvalidEmail)
        );
        assert_eq!(
            validate("a", "no-at-sign", "x"),
            Err(RegistrationError::InvalidEmail)
        );
        assert_eq!(
            validate("a", "a@b", ""),
            Err(RegistrationError::MissingPassword)
        );
        assert_eq!(validate("Roger Histand", "r@h", "\\\"'{<"), Ok(()));
    }

    #[test]
    fn new_accounts_cannot_take_the_sites_own_names_in_any_case() {
        for name in [
            "public",
            "Public",
            "LOGIN",
            "static",
            "users",
            "openapi.json",
        ] {
            assert_eq!(
                validate(name, "a@b", "pw"),
                Err(RegistrationError::ReservedUsername),
                "{name}"
            );
        }
        for name in ["publics", "public ", "my login", "ståtic"] {
            assert_eq!(validate(name, "a@b", "pw"), Ok(()), "{name}");
        }
    }

    #[test]
    fn each_field_is_limited_after_its_own_rule() {
        let at_limit = |max: usize| "é".repeat(max);
        let over = |max: usize| "x".repeat(max + 1);
        let (name, email, password) = (
            at_limit(MAX_USERNAME_CHARS),
            format!("{}@b", at_limit(MAX_EMAIL_CHARS - 2)),
            at_limit(MAX_PASSWORD_CHARS),
        );
        assert_eq!(validate(&name, &email, &password), Ok(()));
        assert_eq!(
            validate(&over(MAX_USERNAME_CHARS), "", ""),
            Err(RegistrationError::UsernameTooLong)
        );
        assert_eq!(
            validate(&name, &over(MAX_EMAIL_CHARS), ""),
            Err(RegistrationError::InvalidEmail),
            "an address without @ is invalid before it is long"
        );
        assert_eq!(
            validate(&name, &format!("{}@b", over(MAX_EMAIL_CHARS - 2)), ""),
            Err(RegistrationError::EmailTooLong)
        );
        assert_eq!(
            validate(&name, &email, &over(MAX_PASSWORD_CHARS)),
            Err(RegistrationError::PasswordTooLong)
        );
        assert_eq!(
            RegistrationError::UsernameTooLong.to_string(),
            "A username can have at most 100 characters"
        );
    }

    #[test]
    fn the_repeated_password_is_checked_after_the_password_itself() {
        assert_eq!(
            validate_with_repeat("a", "a@b", "", "x"),
            Err(RegistrationError::MissingPassword)
        );
        assert_eq!(
            validate_with_repeat("a", "a@b", "x", "y"),
            Err(RegistrationError::PasswordsDiffer)
        );
        assert_eq!(
            validate_with_repeat("", "a@b", "x", "y"),
            Err(RegistrationError::MissingUsername)
        );
        assert_eq!(validate_with_repeat("a", "a@b", "x", "x"), Ok(()));
    }

    #[test]
    fn messages_are_the_originals() {
        assert_eq!(
            RegistrationError::MissingUsername.to_string(),
            "You have to enter a username"
        );
        assert_eq!(
            RegistrationError::InvalidEmail.to_string(),
            "You have to enter a valid email address"
        );
        assert_eq!(
            RegistrationError::MissingPassword.to_string(),
            "You have to enter a password"
        );
        assert_eq!(
            RegistrationError::PasswordsDiffer.to_string(),
            "The two passwords do not match"
        );
        assert_eq!(
            RegistrationError::UsernameTaken.to_string(),
            "The username is already taken"
        );
    }

    #[test]
    fn password_hash_is_redacted_in_debug_output() {
        let hash = PasswordHash::new("$argon2id$v=19$secret".into());
        assert!(!format!("{hash:?}").contains("secret"));
    }
}

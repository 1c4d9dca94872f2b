//! MiniTwit's write model: aggregates, commands, events and the rules between them.
//!
//! This crate does no I/O. Anything impure — the clock, identifiers, whether another user
//! exists, password hashing — is decided outside and arrives in a command or through
//! [`UserDirectory`], so every rule here can be tested with plain values.
//!
//! Layout:
//! - [`user`] — the `User` aggregate, keyed by username, owning whom that user follows and
//!   blocks.
//! - [`message`] — the `Message` aggregate, one per posted message, owning its flag state.
//! - [`conversation`] — the `Conversation` aggregate, one per pair of users, owning their
//!   private messages and read marks; [`contacts`] — the port and policy deciding who may
//!   message whom.
//! - [`registration`] — the checks on registration input, shared by every front door.
//! - [`limits`] — the length limits on new input.
//! - [`directory`] — the port through which aggregates ask whether a username is registered.
//! - [`upcasting`] — how stored events of older versions are read as the current version.
//! - [`personal_data`] — which fields of the events are personal, and whose key seals them.
//!
//! Depends on no other crate of the workspace and on no I/O crate (no database driver, HTTP
//! or logging back end; `.ci/run` checks this): everything else stands on it.

#![forbid(unsafe_code)]

pub mod contacts;
pub mod conversation;
pub mod directory;
pub mod limits;
pub mod message;
pub mod personal_data;
pub mod registration;
#[cfg(test)]
mod testing;
pub mod upcasting;
pub mod user;

pub use contacts::{ChatPolicy, ChatServices, ContactBook, Standing};
pub use conversation::{
    conversation_id, partner_in, Conversation, ConversationCommand, ConversationError,
    ConversationEvent,
};
pub use directory::{Directory, DirectoryError, UserDirectory};
pub use message::{Message, MessageCommand, MessageError, MessageEvent, Moderation};
pub use personal_data::PersonalData;
pub use registration::{PasswordHash, RegistrationError};
pub use user::{User, UserCommand, UserError, UserEvent};

//! The port through which aggregates learn whether a username is registered.
//!
//! Following someone or posting as someone needs to know about *another* aggregate (the
//! followee, the author). cqrs-es commits one aggregate at a time, so the check is a read
//! through this trait; the server implements it on the event store itself, which is always
//! current, rather than on a projected view that may lag.

use std::sync::Arc;

use async_trait::async_trait;

/// Looks up registered usernames.
#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// Whether `username` (exact, case-sensitive) has registered.
    async fn is_registered(&self, username: &str) -> Result<bool, DirectoryError>;
}

/// The directory could not answer; the command fails without emitting anything.
///
/// The two kinds let the caller tell a client "try again shortly" (the store is down or
/// restarting) apart from a failure that retrying will not cure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Its store cannot be reached right now.
    #[error("the user directory cannot be reached: {0}")]
    Unreachable(String),
    /// It failed in some other way.
    #[error("the user directory failed: {0}")]
    Failed(String),
}

/// The services handed to every aggregate's `handle`.
pub type Directory = Arc<dyn UserDirectory>;

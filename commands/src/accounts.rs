//! What both front doors — the simulator's API and the browser pages — do with user
//! accounts: registering and signing in. One place, so the two cannot drift apart.

use std::sync::Arc;

use chrono::Utc;
use domain::registration::{self, RegistrationError};
use domain::{PasswordHash, UserCommand, UserDirectory as _, UserError};
use projections::ReadModels;

use crate::bus::{CommandBus, CommandError};
use crate::context::CommandContext;
use crate::directory::EventStoreDirectory;
use crate::passwords::{PasswordHasher, Verification};

/// A registration as a front door received it.
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub password: String,
    /// The password typed a second time, where the front door asks for it (the browser
    /// form does, the simulator's API does not).
    pub password_repeated: Option<String>,
}

/// Why a sign-in failed. The texts are the original's, shown on the login form.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("Invalid username")]
    UnknownUser,
    #[error("Invalid password")]
    WrongPassword,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Registers and authenticates users.
#[derive(Clone)]
pub struct Accounts {
    commands: Arc<CommandBus>,
    directory: EventStoreDirectory,
    reads: ReadModels,
    hasher: PasswordHasher,
}

impl Accounts {
    pub fn new(
        commands: Arc<CommandBus>,
        directory: EventStoreDirectory,
        reads: ReadModels,
        hasher: PasswordHasher,
    ) -> Self {
        Self {
            commands,
            directory,
            reads,
            hasher,
        }
    }

    /// Checks the input in the original's order (first failure wins), hashes the password
    /// and registers the user. Answers once the views include the new user.
    pub async fn register(
        &self,
        account: NewAccount,
        context: &CommandContext,
    ) -> Result<(), CommandError<UserError>> {
        let NewAccount {
            username,
            email,
            password,
            password_repeated,
        } = account;
        let valid = match &password_repeated {
            Some(repeated) => {
                registration::validate_with_repeat(&username, &email, &password, repeated)
            }
            None => registration::validate(&username, &email, &password),
        };
        valid.map_err(refused)?;
        // Checked before hashing so a duplicate costs a lookup, not 19 MiB and tens of ms;
        // the aggregate still decides, should two registrations of one name race.
        if self
            .directory
            .is_registered(&username)
            .await
            .map_err(|err| CommandError::Rejected(UserError::Directory(err)))?
        {
            return Err(refused(RegistrationError::UsernameTaken));
        }
        let password_hash = self.hasher.hash(password).await?;
        let command = UserCommand::Register {
            username: username.clone(),
            email,
            password_hash,
            registered_at: context.received_at,
        };
        self.commands.user(&username, command, context).await
    }

    /// Checks `password` against `username`'s stored hash. A hash in an outdated scheme
    /// (werkzeug's, from a migrated MiniTwit, or argon2 with older parameters) is replaced by
    /// a current one through a `PasswordHashUpgraded` event; failing that only costs a log
    /// line, never the sign-in.
    pub async fn sign_in(
        &self,
        username: &str,
        password: String,
        context: &CommandContext,
    ) -> Result<(), SignInError> {
        let account = self
            .reads
            .account(username)
            .await
            .map_err(|err| SignInError::Failed(err.into()))?
            .ok_or(SignInError::UnknownUser)?;
        let stored = PasswordHash::new(account.password_hash);
        match self.hasher.verify(password.clone(), stored).await? {
            Verification::Mismatch => Err(SignInError::WrongPassword),
            Verification::Match { needs_upgrade } => {
                if needs_upgrade {
                    if let Err(err) = self.upgrade_hash(username, password, context).await {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            "could not upgrade a password hash; it stays as it was"
                        );
                    }
                }
                Ok(())
            }
        }
    }

    async fn upgrade_hash(
        &self,
        username: &str,
        password: String,
        context: &CommandContext,
    ) -> anyhow::Result<()> {
        let password_hash = self.hasher.rehash(password).await?;
        let command = UserCommand::UpgradePasswordHash {
            password_hash,
            upgraded_at: Utc::now(),
        };
        self.commands
            .user(username, command, context)
            .await
            .map_err(|err| anyhow::anyhow!("upgrading the password hash: {err}"))?;
        metrics::counter!("minitwit_password_hash_upgrades_total").increment(1);
        Ok(())
    }
}

fn refused(refusal: RegistrationError) -> CommandError<UserError> {
    CommandError::Rejected(UserError::Registration(refusal))
}

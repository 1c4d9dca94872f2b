//! What the front doors — the simulator's API and the browser pages — do with user accounts:
//! registering and signing in, and (the browser's settings) changing the password or email
//! and deleting the account. One place, so the doors cannot drift apart.

use std::sync::Arc;

use chrono::Utc;
use domain::registration::{self, RegistrationError};
use domain::{PasswordHash, UserCommand, UserDirectory as _, UserError};
use projections::ReadModels;

use crate::bus::{CommandBus, CommandError};
use crate::context::CommandContext;
use crate::directory::EventStoreDirectory;
use crate::forgetting::{self, ForgetError, Forgetting};
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

/// Why a change to an account was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountChangeError {
    /// The password given to confirm the change is not the account's.
    #[error("Your current password is not correct")]
    WrongPassword,
    /// The new value breaks a rule (the texts are the registration form's).
    #[error(transparent)]
    Invalid(#[from] RegistrationError),
    #[error(transparent)]
    Command(#[from] CommandError<UserError>),
    #[error(transparent)]
    Forgetting(#[from] ForgetError),
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

    /// Replaces `username`'s password with `new_password` (typed twice), once `current`
    /// proves it is them. Ending their other sessions is the caller's (the browser's) part.
    pub async fn change_password(
        &self,
        username: &str,
        current: String,
        new_password: String,
        repeated: &str,
        context: &CommandContext,
    ) -> Result<(), AccountChangeError> {
        self.confirm(username, current).await?;
        registration::validate_new_password(&new_password)?;
        if new_password != repeated {
            return Err(RegistrationError::PasswordsDiffer.into());
        }
        let password_hash = self.hasher.hash(new_password).await?;
        let command = UserCommand::ChangePassword {
            password_hash,
            changed_at: context.received_at,
        };
        Ok(self.commands.user(username, command, context).await?)
    }

    /// Replaces `username`'s email address.
    pub async fn change_email(
        &self,
        username: &str,
        email: String,
        context: &CommandContext,
    ) -> Result<(), AccountChangeError> {
        registration::validate_new_email(&email)?;
        let command = UserCommand::ChangeEmail {
            email,
            changed_at: context.received_at,
        };
        Ok(self.commands.user(username, command, context).await?)
    }

    /// Deletes `username`'s account, once `password` proves it is them: they are forgotten
    /// (see [`crate::forgetting`]).
    pub async fn delete(
        &self,
        username: &str,
        password: String,
        context: &CommandContext,
    ) -> Result<Forgetting, AccountChangeError> {
        self.confirm(username, password).await?;
        Ok(forgetting::forget(&self.commands, username, context).await?)
    }

    /// Checks that `password` is `username`'s.
    async fn confirm(&self, username: &str, password: String) -> Result<(), AccountChangeError> {
        let account = self
            .reads
            .account(username)
            .await
            .map_err(anyhow::Error::from)?
            .ok_or(AccountChangeError::WrongPassword)?;
        let stored = PasswordHash::new(account.password_hash);
        match self.hasher.verify(password, stored).await? {
            Verification::Match { .. } => Ok(()),
            Verification::Mismatch => Err(AccountChangeError::WrongPassword),
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

//! Property tests of the `User` aggregate: random histories of registrations, follows,
//! unfollows, blocks, unblocks, hash upgrades, password and email changes and forgetting — of oneself, of others, of nobody, with hostile names and
//! addresses, while the directory is sometimes down — checked step by step against a
//! reference model (see [`crate::testing`] for what each step must satisfy).

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::testing::{self, check_history, FakeDirectory, ReferenceModel, REGISTERED_ELSEWHERE};

/// What a user's accepted commands imply: whether, and as whom, it registered, and whom it
/// follows and blocks.
#[derive(Debug, Default)]
struct UserModel {
    username: Option<String>,
    following: BTreeSet<String>,
    blocked: BTreeSet<String>,
    forgotten: bool,
}

impl UserModel {
    fn require_registered(&self) -> Result<(), UserError> {
        match self.username {
            Some(_) if !self.forgotten => Ok(()),
            _ => Err(UserError::NotRegistered),
        }
    }
}

/// Whether the directory vouches for `followee`.
fn look_up(directory: &FakeDirectory, followee: &str) -> Result<(), UserError> {
    if directory.answer(followee)? {
        Ok(())
    } else {
        Err(UserError::UnknownOtherUser(followee.to_owned()))
    }
}

impl ReferenceModel for UserModel {
    type Aggregate = User;

    fn expect(
        &mut self,
        command: &UserCommand,
        directory: &FakeDirectory,
    ) -> Result<Vec<UserEvent>, UserError> {
        let event = match command.clone() {
            UserCommand::Register {
                username,
                email,
                password_hash,
                registered_at,
            } => {
                if self.username.is_some() {
                    return Err(RegistrationError::UsernameTaken.into());
                }
                if username.is_empty() {
                    return Err(RegistrationError::MissingUsername.into());
                }
                if username.contains('\0') {
                    return Err(RegistrationError::UnstorableUsername.into());
                }
                if !email.contains('@') || email.contains('\0') {
                    return Err(RegistrationError::InvalidEmail.into());
                }
                directory.register(&username);
                self.username = Some(username.clone());
                UserEvent::UserRegistered {
                    username,
                    email,
                    password_hash,
                    registered_at,
                }
            }
            UserCommand::Follow {
                followee,
                followed_at,
            } => {
                self.require_registered()?;
                if self.following.contains(&followee) {
                    return Ok(vec![]);
                }
                look_up(directory, &followee)?;
                self.following.insert(followee.clone());
                UserEvent::UserFollowed {
                    followee,
                    followed_at,
                }
            }
            UserCommand::Unfollow {
                followee,
                unfollowed_at,
            } => {
                self.require_registered()?;
                if !self.following.remove(&followee) {
                    look_up(directory, &followee)?;
                    return Ok(vec![]);
                }
                UserEvent::UserUnfollowed {
                    followee,
                    unfollowed_at,
                }
            }
            UserCommand::Block {
                blocked,
                blocked_at,
            } => {
                self.require_registered()?;
                if self.username.as_ref() == Some(&blocked) {
                    return Err(UserError::CannotBlockSelf);
                }
                if self.blocked.contains(&blocked) {
                    return Ok(vec![]);
                }
                look_up(directory, &blocked)?;
                self.blocked.insert(blocked.clone());
                UserEvent::UserBlocked {
                    blocked,
                    blocked_at,
                }
            }
            UserCommand::Unblock {
                unblocked,
                unblocked_at,
            } => {
                self.require_registered()?;
                if !self.blocked.remove(&unblocked) {
                    look_up(directory, &unblocked)?;
                    return Ok(vec![]);
                }
                UserEvent::UserUnblocked {
                    unblocked,
                    unblocked_at,
                }
            }
            UserCommand::UpgradePasswordHash {
                password_hash,
                upgraded_at,
            } => {
                self.require_registered()?;
                UserEvent::PasswordHashUpgraded {
                    password_hash,
                    upgraded_at,
                }
            }
            UserCommand::ChangePassword {
                password_hash,
                changed_at,
            } => {
                self.require_registered()?;
                UserEvent::PasswordChanged {
                    password_hash,
                    changed_at,
                }
            }
            UserCommand::ChangeEmail { email, changed_at } => {
                self.require_registered()?;
                if !email.contains('@') || email.contains('\0') {
                    return Err(RegistrationError::InvalidEmail.into());
                }
                UserEvent::EmailChanged { email, changed_at }
            }
            UserCommand::Forget { forgotten_at } => {
                if self.username.is_none() {
                    return Err(UserError::NotRegistered);
                }
                if std::mem::replace(&mut self.forgotten, true) {
                    return Ok(vec![]);
                }
                self.following.clear();
                self.blocked.clear();
                UserEvent::UserForgotten { forgotten_at }
            }
        };
        Ok(vec![event])
    }

    fn state(&self) -> User {
        User {
            username: self.username.clone(),
            following: self.following.clone(),
            blocked: self.blocked.clone(),
            forgotten: self.forgotten,
        }
    }
}

/// Addresses: anything at all, or anything around an `@`.
fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => testing::hostile_text(),
        3 => (testing::hostile_text(), testing::hostile_text())
            .prop_map(|(local, domain)| format!("{local}@{domain}")),
    ]
}

/// Hashes come from our own hasher or an imported database, never from a request, and the
/// aggregate only carries them: PHC-string characters are enough.
fn password_hash() -> impl Strategy<Value = PasswordHash> {
    "[$a-zA-Z0-9=,+/.-]{0,100}".prop_map(PasswordHash::new)
}

fn user_command() -> impl Strategy<Value = UserCommand> {
    prop_oneof![
        2 => (testing::username(), email(), password_hash(), testing::instant()).prop_map(
            |(username, email, password_hash, registered_at)| UserCommand::Register {
                username,
                email,
                password_hash,
                registered_at,
            }
        ),
        4 => (testing::username(), testing::instant()).prop_map(|(followee, followed_at)| {
            UserCommand::Follow { followee, followed_at }
        }),
        4 => (testing::username(), testing::instant()).prop_map(|(followee, unfollowed_at)| {
            UserCommand::Unfollow { followee, unfollowed_at }
        }),
        2 => (testing::username(), testing::instant()).prop_map(|(blocked, blocked_at)| {
            UserCommand::Block { blocked, blocked_at }
        }),
        2 => (testing::username(), testing::instant()).prop_map(|(unblocked, unblocked_at)| {
            UserCommand::Unblock { unblocked, unblocked_at }
        }),
        1 => (password_hash(), testing::instant()).prop_map(|(password_hash, upgraded_at)| {
            UserCommand::UpgradePasswordHash { password_hash, upgraded_at }
        }),
        1 => (password_hash(), testing::instant()).prop_map(|(password_hash, changed_at)| {
            UserCommand::ChangePassword { password_hash, changed_at }
        }),
        1 => (email(), testing::instant()).prop_map(|(email, changed_at)| {
            UserCommand::ChangeEmail { email, changed_at }
        }),
        1 => testing::instant().prop_map(|forgotten_at| UserCommand::Forget { forgotten_at }),
    ]
}

proptest! {
    // Enough to reach every branch many times over while `cargo test -p domain` stays quick.
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_user_history_folds_to_the_state_its_commands_imply(
        history in testing::history(user_command())
    ) {
        check_history(UserModel::default(), FakeDirectory::with(REGISTERED_ELSEWHERE), history)?;
    }
}

//! The `User` aggregate: one stream per username, holding registration, follows and blocks.
//!
//! The aggregate id is the username itself, exactly as typed (spaces and all). That makes
//! registration unique through the event store's own optimistic-concurrency key: two
//! concurrent registrations of one name both try to write sequence 1 of the same stream,
//! and only one can. The stream grows with follows and unfollows only; messages live in
//! their own aggregate so a prolific user's stream stays short.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::directory::{Directory, DirectoryError};
use crate::registration::{self, PasswordHash, RegistrationError};

/// What can be asked of a user.
#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    /// Create the account. The password arrives already hashed.
    Register {
        username: String,
        email: String,
        password_hash: PasswordHash,
        registered_at: DateTime<Utc>,
    },
    /// Start following `followee`. Following someone already followed changes nothing.
    Follow {
        followee: String,
        followed_at: DateTime<Utc>,
    },
    /// Stop following `followee`. Unfollowing someone not followed changes nothing.
    Unfollow {
        followee: String,
        unfollowed_at: DateTime<Utc>,
    },
    /// Stop `blocked` from sending private messages to this user. Blocking someone already
    /// blocked changes nothing.
    Block {
        blocked: String,
        blocked_at: DateTime<Utc>,
    },
    /// Let `unblocked` send private messages again. Unblocking someone not blocked changes
    /// nothing.
    Unblock {
        unblocked: String,
        unblocked_at: DateTime<Utc>,
    },
    /// Replace the stored password hash with one in the current scheme. Sent after a
    /// successful login with a hash from an older scheme (e.g. one migrated from werkzeug),
    /// so that the old, weaker hash stops being the one that guards the account.
    UpgradePasswordHash {
        password_hash: PasswordHash,
        upgraded_at: DateTime<Utc>,
    },
    /// Set a new password the user chose (already hashed).
    ChangePassword {
        password_hash: PasswordHash,
        changed_at: DateTime<Utc>,
    },
    /// Replace the email address. The state holds no personal data (see
    /// [`crate::personal_data`]), so a change to the same address is recorded like any other.
    ChangeEmail {
        email: String,
        changed_at: DateTime<Utc>,
    },
    /// Forget the user: the account ends for good and its name stays reserved. What erases
    /// their personal data is the deletion of their data key, outside the log; this records
    /// that it happened. Forgetting a forgotten user changes nothing.
    Forget { forgotten_at: DateTime<Utc> },
}

impl UserCommand {
    /// A stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Follow { .. } => "follow",
            Self::Unfollow { .. } => "unfollow",
            Self::Block { .. } => "block",
            Self::Unblock { .. } => "unblock",
            Self::UpgradePasswordHash { .. } => "upgrade_password_hash",
            Self::ChangePassword { .. } => "change_password",
            Self::ChangeEmail { .. } => "change_email",
            Self::Forget { .. } => "forget_user",
        }
    }
}

/// What happened to a user. Stored names and versions never change; a changed payload gets
/// a new version and an upcaster (see [`crate::upcasting`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered {
        username: String,
        email: String,
        password_hash: PasswordHash,
        registered_at: DateTime<Utc>,
    },
    UserFollowed {
        followee: String,
        followed_at: DateTime<Utc>,
    },
    UserUnfollowed {
        followee: String,
        unfollowed_at: DateTime<Utc>,
    },
    PasswordHashUpgraded {
        password_hash: PasswordHash,
        upgraded_at: DateTime<Utc>,
    },
    UserBlocked {
        blocked: String,
        blocked_at: DateTime<Utc>,
    },
    UserUnblocked {
        unblocked: String,
        unblocked_at: DateTime<Utc>,
    },
    PasswordChanged {
        password_hash: PasswordHash,
        changed_at: DateTime<Utc>,
    },
    EmailChanged {
        email: String,
        changed_at: DateTime<Utc>,
    },
    /// Holds no personal data: only that the user was forgotten, and when.
    UserForgotten { forgotten_at: DateTime<Utc> },
}

impl UserEvent {
    /// The current payload version of every user event.
    pub const VERSION: &'static str = "1.0";
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
            Self::UserFollowed { .. } => "UserFollowed",
            Self::UserUnfollowed { .. } => "UserUnfollowed",
            Self::PasswordHashUpgraded { .. } => "PasswordHashUpgraded",
            Self::UserBlocked { .. } => "UserBlocked",
            Self::UserUnblocked { .. } => "UserUnblocked",
            Self::PasswordChanged { .. } => "PasswordChanged",
            Self::EmailChanged { .. } => "EmailChanged",
            Self::UserForgotten { .. } => "UserForgotten",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        Self::VERSION.to_owned()
    }
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// The acting user has not registered.
    #[error("unknown user")]
    NotRegistered,
    /// The other user a command names (to follow, unfollow, block or unblock) has not
    /// registered.
    #[error("unknown user {0:?}")]
    UnknownOtherUser(String),
    #[error("You cannot block yourself")]
    CannotBlockSelf,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// The state a user's commands are decided on.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    username: Option<String>,
    /// Whether the user was forgotten: the stream then takes no more commands.
    #[serde(default)]
    forgotten: bool,
    following: BTreeSet<String>,
    /// Absent from snapshots taken before blocking existed.
    #[serde(default)]
    blocked: BTreeSet<String>,
}

impl User {
    /// Whether `followee` is currently followed.
    pub fn follows(&self, followee: &str) -> bool {
        self.following.contains(followee)
    }

    /// Whether `other` is currently blocked.
    pub fn blocks(&self, other: &str) -> bool {
        self.blocked.contains(other)
    }

    /// Whether the user registered and has not been forgotten: who may act and be acted on.
    pub fn is_active(&self) -> bool {
        self.username.is_some() && !self.forgotten
    }

    /// Whether the user was forgotten.
    pub fn is_forgotten(&self) -> bool {
        self.forgotten
    }

    /// A forgotten user is as unknown as one who never registered, except that the name
    /// stays taken.
    fn require_registered(&self) -> Result<(), UserError> {
        if self.is_active() {
            Ok(())
        } else {
            Err(UserError::NotRegistered)
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = Directory;

    async fn handle(
        &mut self,
        command: UserCommand,
        directory: &Directory,
        sink: &EventSink<Self>,
    ) -> Result<(), UserError> {
        match command {
            UserCommand::Register {
                username,
                email,
                password_hash,
                registered_at,
            } => {
                if self.username.is_some() {
                    return Err(RegistrationError::UsernameTaken.into());
                }
                registration::validate_username(&username)?;
                registration::validate_email(&email)?;
                let event = UserEvent::UserRegistered {
                    username,
                    email,
                    password_hash,
                    registered_at,
                };
                sink.write(event, self).await;
            }
            UserCommand::Follow {
                followee,
                followed_at,
            } => {
                self.require_registered()?;
                if self.follows(&followee) {
                    return Ok(());
                }
                if !directory.is_registered(&followee).await? {
                    return Err(UserError::UnknownOtherUser(followee));
                }
                let event = UserEvent::UserFollowed {
                    followee,
                    followed_at,
                };
                sink.write(event, self).await;
            }
            UserCommand::Unfollow {
                followee,
                unfollowed_at,
            } => {
                self.require_registered()?;
                if !self.follows(&followee) {
                    // The simulator unfollows people it never followed, over a thousand times
                    // per run; that is a success with nothing to record — once the followee is
                    // known to exist, because an unknown one is still a 404.
                    return if directory.is_registered(&followee).await? {
                        Ok(())
                    } else {
                        Err(UserError::UnknownOtherUser(followee))
                    };
                }
                let event = UserEvent::UserUnfollowed {
                    followee,
                    unfollowed_at,
                };
                sink.write(event, self).await;
            }
            UserCommand::Block {
                blocked,
                blocked_at,
            } => {
                self.require_registered()?;
                if self.username.as_deref() == Some(blocked.as_str()) {
                    return Err(UserError::CannotBlockSelf);
                }
                if self.blocks(&blocked) {
                    return Ok(());
                }
                if !directory.is_registered(&blocked).await? {
                    return Err(UserError::UnknownOtherUser(blocked));
                }
                let event = UserEvent::UserBlocked {
                    blocked,
                    blocked_at,
                };
                sink.write(event, self).await;
            }
            UserCommand::Unblock {
                unblocked,
                unblocked_at,
            } => {
                self.require_registered()?;
                if !self.blocks(&unblocked) {
                    return if directory.is_registered(&unblocked).await? {
                        Ok(())
                    } else {
                        Err(UserError::UnknownOtherUser(unblocked))
                    };
                }
                let event = UserEvent::UserUnblocked {
                    unblocked,
                    unblocked_at,
                };
                sink.write(event, self).await;
            }
            UserCommand::UpgradePasswordHash {
                password_hash,
                upgraded_at,
            } => {
                self.require_registered()?;
                let event = UserEvent::PasswordHashUpgraded {
                    password_hash,
                    upgraded_at,
                };
                sink.write(event, self).await;
            }
            UserCommand::ChangePassword {
                password_hash,
                changed_at,
            } => {
                self.require_registered()?;
                let event = UserEvent::PasswordChanged {
                    password_hash,
                    changed_at,
                };
                sink.write(event, self).await;
            }
            UserCommand::ChangeEmail { email, changed_at } => {
                self.require_registered()?;
                registration::validate_email(&email)?;
                let event = UserEvent::EmailChanged { email, changed_at };
                sink.write(event, self).await;
            }
            UserCommand::Forget { forgotten_at } => {
                if self.username.is_none() {
                    return Err(UserError::NotRegistered);
                }
                if self.forgotten {
                    return Ok(());
                }
                sink.write(UserEvent::UserForgotten { forgotten_at }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserRegistered { username, .. } => self.username = Some(username),
            UserEvent::UserForgotten { .. } => {
                self.forgotten = true;
                self.following.clear();
                self.blocked.clear();
            }
            UserEvent::UserFollowed { followee, .. } => {
                self.following.insert(followee);
            }
            UserEvent::UserUnfollowed { followee, .. } => {
                self.following.remove(&followee);
            }
            UserEvent::UserBlocked { blocked, .. } => {
                self.blocked.insert(blocked);
            }
            UserEvent::UserUnblocked { unblocked, .. } => {
                self.blocked.remove(&unblocked);
            }
            // The hash is not needed to decide any command; the accounts view keeps it.
            UserEvent::PasswordHashUpgraded { .. }
            | UserEvent::PasswordChanged { .. }
            | UserEvent::EmailChanged { .. } => {}
        }
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::testing::FakeDirectory;

    fn framework() -> TestFramework<User> {
        TestFramework::with(FakeDirectory::with(["b", "c"]) as Directory)
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn registered(name: &str) -> UserEvent {
        UserEvent::UserRegistered {
            username: name.into(),
            email: format!("{name}@example.org"),
            password_hash: PasswordHash::new("$argon2id$x".into()),
            registered_at: at(),
        }
    }

    fn followed(followee: &str) -> UserEvent {
        UserEvent::UserFollowed {
            followee: followee.into(),
            followed_at: at(),
        }
    }

    fn follow(followee: &str) -> UserCommand {
        UserCommand::Follow {
            followee: followee.into(),
            followed_at: at(),
        }
    }

    fn unfollow(followee: &str) -> UserCommand {
        UserCommand::Unfollow {
            followee: followee.into(),
            unfollowed_at: at(),
        }
    }

    fn register(name: &str, email: &str) -> UserCommand {
        UserCommand::Register {
            username: name.into(),
            email: email.into(),
            password_hash: PasswordHash::new("$argon2id$x".into()),
            registered_at: at(),
        }
    }

    #[test]
    fn registering_a_new_name_records_it() {
        framework()
            .given_no_previous_events()
            .when(register("Roger Histand", "Roger Histand@example.org"))
            .then_expect_events(vec![registered("Roger Histand")]);
    }

    #[test]
    fn registering_a_taken_name_is_refused() {
        framework()
            .given(vec![registered("a")])
            .when(register("a", "a@example.org"))
            .then_expect_error(RegistrationError::UsernameTaken.into());
    }

    #[test]
    fn registering_without_a_valid_email_is_refused() {
        framework()
            .given_no_previous_events()
            .when(register("a", "nope"))
            .then_expect_error(RegistrationError::InvalidEmail.into());
    }

    fn forget() -> UserCommand {
        UserCommand::Forget { forgotten_at: at() }
    }

    fn forgotten() -> UserEvent {
        UserEvent::UserForgotten { forgotten_at: at() }
    }

    #[test]
    fn forgetting_is_recorded_once_and_ends_the_account_but_not_the_name() {
        framework()
            .given(vec![registered("a")])
            .when(forget())
            .then_expect_events(vec![forgotten()]);
        framework()
            .given(vec![registered("a"), forgotten()])
            .when(forget())
            .then_expect_events(vec![]);
        framework()
            .given(vec![registered("a"), forgotten()])
            .when(follow("b"))
            .then_expect_error(UserError::NotRegistered);
        framework()
            .given(vec![registered("a"), forgotten()])
            .when(register("a", "a@example.org"))
            .then_expect_error(RegistrationError::UsernameTaken.into());
        framework()
            .given_no_previous_events()
            .when(forget())
            .then_expect_error(UserError::NotRegistered);
    }

    #[test]
    fn a_new_email_must_be_an_address_and_a_new_password_is_recorded() {
        let changed_at = at();
        framework()
            .given(vec![registered("a")])
            .when(UserCommand::ChangeEmail {
                email: "new@example.org".into(),
                changed_at,
            })
            .then_expect_events(vec![UserEvent::EmailChanged {
                email: "new@example.org".into(),
                changed_at,
            }]);
        framework()
            .given(vec![registered("a")])
            .when(UserCommand::ChangeEmail {
                email: "no address".into(),
                changed_at,
            })
            .then_expect_error(RegistrationError::InvalidEmail.into());
        let password_hash = PasswordHash::new("$argon2id$new".into());
        framework()
            .given(vec![registered("a")])
            .when(UserCommand::ChangePassword {
                password_hash: password_hash.clone(),
                changed_at,
            })
            .then_expect_events(vec![UserEvent::PasswordChanged {
                password_hash,
                changed_at,
            }]);
    }

    fn block(other: &str) -> UserCommand {
        UserCommand::Block {
            blocked: other.into(),
            blocked_at: at(),
        }
    }

    fn unblock(other: &str) -> UserCommand {
        UserCommand::Unblock {
            unblocked: other.into(),
            unblocked_at: at(),
        }
    }

    fn blocked(other: &str) -> UserEvent {
        UserEvent::UserBlocked {
            blocked: other.into(),
            blocked_at: at(),
        }
    }

    #[test]
    fn blocking_records_a_registered_user_once_and_unblocking_undoes_it() {
        framework()
            .given(vec![registered("a")])
            .when(block("b"))
            .then_expect_events(vec![blocked("b")]);
        framework()
            .given(vec![registered("a"), blocked("b")])
            .when(block("b"))
            .then_expect_events(vec![]);
        framework()
            .given(vec![registered("a"), blocked("b")])
            .when(unblock("b"))
            .then_expect_events(vec![UserEvent::UserUnblocked {
                unblocked: "b".into(),
                unblocked_at: at(),
            }]);
        framework()
            .given(vec![registered("a")])
            .when(unblock("b"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn blocking_nobody_or_oneself_is_refused() {
        for command in [block("nobody"), unblock("nobody")] {
            framework()
                .given(vec![registered("a")])
                .when(command)
                .then_expect_error(UserError::UnknownOtherUser("nobody".into()));
        }
        framework()
            .given(vec![registered("b")])
            .when(block("b"))
            .then_expect_error(UserError::CannotBlockSelf);
        framework()
            .given_no_previous_events()
            .when(block("b"))
            .then_expect_error(UserError::NotRegistered);
    }

    #[test]
    fn a_snapshot_from_before_blocking_still_loads() {
        let old: User = serde_json::from_value(serde_json::json!({
            "username": "a",
            "following": ["b"]
        }))
        .unwrap();
        assert!(old.follows("b") && !old.blocks("b"));
    }

    #[test]
    fn following_a_registered_user_records_it_once() {
        framework()
            .given(vec![registered("a")])
            .when(follow("b"))
            .then_expect_events(vec![followed("b")]);
        framework()
            .given(vec![registered("a"), followed("b")])
            .when(follow("b"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn following_an_unknown_user_is_refused() {
        framework()
            .given(vec![registered("a")])
            .when(follow("nobody"))
            .then_expect_error(UserError::UnknownOtherUser("nobody".into()));
    }

    #[test]
    fn an_unregistered_user_cannot_follow() {
        framework()
            .given_no_previous_events()
            .when(follow("b"))
            .then_expect_error(UserError::NotRegistered);
    }

    #[test]
    fn unfollowing_records_it_and_unfollowing_again_is_a_no_op() {
        framework()
            .given(vec![registered("a"), followed("b")])
            .when(unfollow("b"))
            .then_expect_events(vec![UserEvent::UserUnfollowed {
                followee: "b".into(),
                unfollowed_at: at(),
            }]);
        framework()
            .given(vec![registered("a")])
            .when(unfollow("c"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn unfollowing_an_unknown_user_is_refused() {
        framework()
            .given(vec![registered("a")])
            .when(unfollow("nobody"))
            .then_expect_error(UserError::UnknownOtherUser("nobody".into()));
    }

    #[test]
    fn following_yourself_is_allowed() {
        TestFramework::<User>::with(FakeDirectory::with(["a"]) as Directory)
            .given(vec![registered("a")])
            .when(follow("a"))
            .then_expect_events(vec![followed("a")]);
    }

    #[test]
    fn a_registered_user_can_upgrade_the_password_hash() {
        let upgraded_at = at();
        let password_hash = PasswordHash::new("$argon2id$new".into());
        framework()
            .given(vec![registered("a")])
            .when(UserCommand::UpgradePasswordHash {
                password_hash: password_hash.clone(),
                upgraded_at,
            })
            .then_expect_events(vec![UserEvent::PasswordHashUpgraded {
                password_hash,
                upgraded_at,
            }]);
    }

    #[test]
    fn an_unregistered_user_has_no_password_to_upgrade() {
        framework()
            .given_no_previous_events()
            .when(UserCommand::UpgradePasswordHash {
                password_hash: PasswordHash::new("$argon2id$new".into()),
                upgraded_at: at(),
            })
            .then_expect_error(UserError::NotRegistered);
    }

    /// The stored JSON is a contract with every event already in the log: this pins it.
    #[test]
    fn user_events_keep_their_wire_format() {
        let json = serde_json::to_value(registered("a")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"UserRegistered": {
                "username": "a",
                "email": "a@example.org",
                "password_hash": "$argon2id$x",
                "registered_at": "2026-11-25T12:00:00Z"
            }})
        );
        let json = serde_json::to_value(followed("b")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"UserFollowed": {"followee": "b", "followed_at": "2026-11-25T12:00:00Z"}})
        );
        let upgraded = UserEvent::PasswordHashUpgraded {
            password_hash: PasswordHash::new("$argon2id$y".into()),
            upgraded_at: at(),
        };
        assert_eq!(
            serde_json::to_value(&upgraded).unwrap(),
            serde_json::json!({"PasswordHashUpgraded": {
                "password_hash": "$argon2id$y",
                "upgraded_at": "2026-11-25T12:00:00Z"
            }})
        );
        assert_eq!(upgraded.event_type(), "PasswordHashUpgraded");
        assert_eq!(followed("b").event_type(), "UserFollowed");
        assert_eq!(followed("b").event_version(), "1.0");
    }
}

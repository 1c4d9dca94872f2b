//! People's data in the log, for an administrator: forgetting a person, listing what the log
//! holds of them (`audit`), and sealing the personal fields that older builds stored in
//! plain text.
//!
//! **Plain text from before sealing.** Events written before personal fields were sealed
//! hold them in plain text, and so may events that an older replica writes during a rolling
//! update. `migrate` seals them all with their people's keys (making keys where needed), in
//! place: the one rewrite of the log this tool does, which changes how a field is stored
//! and not what it says; the events keep their identity, and a rebuild reads the same. A
//! forgotten person's plain-text fields are erased instead, and `forget` does that for its
//! person before it returns, so nothing of a forgotten person stays readable, whenever it
//! was written.

use std::fmt;
use std::io::{BufRead as _, IsTerminal as _, Write as _};

use chrono::Utc;
use commands::forgetting::{self, ForgetError, Forgetting};
use commands::CommandContext;
use database::event_log::{self, StoredEvent};
use database::keyring::{self, KeyError};
use database::sealing::{self, EventIdentity};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

use crate::admin::Admin;
use crate::terminal::printable;

/// Events sealed per statement batch.
const SEALING_BATCH: i64 = 1000;

/// How a `forget` ended.
pub enum Forgot {
    /// Forgotten now (or finished, after an interrupted forgetting).
    Done(Forgetting, SealedPlaintext),
    /// There is nobody by that name.
    Unknown,
}

/// Forgets `username` (see [`commands::forgetting`]), then erases whatever of theirs is
/// still in plain text.
pub async fn forget(admin: &Admin, username: &str) -> anyhow::Result<Forgot> {
    let commands = admin.commands(Duration::ZERO).await?;
    let context = CommandContext {
        request_id: Some(format!("minitwit-replay-forget-{}", Uuid::now_v7())),
        received_at: Utc::now(),
        latest: None,
    };
    let forgetting = match forgetting::forget(&commands, username, &context).await {
        Ok(forgetting) => forgetting,
        Err(ForgetError::UnknownUser(_)) => return Ok(Forgot::Unknown),
        Err(err) => return Err(err.into()),
    };
    let sealed = seal_plaintext(admin, Some(username)).await?;
    Ok(Forgot::Done(forgetting, sealed))
}

/// Asks on the terminal whether `username` is to be forgotten; without a terminal, refuses
/// (the caller must say `--yes`).
pub fn confirm_forgetting(username: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    anyhow::ensure!(
        stdin.is_terminal(),
        "not on a terminal: pass --yes to forget {} without being asked",
        printable(username)
    );
    let mut stderr = std::io::stderr();
    write!(
        stderr,
        "Forget {}? Their email, passwords and everything they wrote become unreadable for \
         good, and their account ends. Type the username to confirm: ",
        printable(username)
    )?;
    stderr.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(answer.trim_end_matches(['\r', '\n']) == username)
}

impl fmt::Display for Forgot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => write!(f, "there is no such user"),
            Self::Done(forgetting, sealed) => {
                write!(
                    f,
                    "forgotten: {} (their key {}); {} messages removed, {} conversations \
                     without their texts",
                    if forgetting.key_deleted {
                        "key deleted"
                    } else {
                        "no key was left"
                    },
                    if forgetting.key_deleted {
                        "is gone"
                    } else {
                        "was gone already"
                    },
                    forgetting.messages,
                    forgetting.conversations
                )?;
                if sealed.erased > 0 {
                    write!(f, "; {} fields in plain text erased", sealed.erased)?;
                }
                Ok(())
            }
        }
    }
}

/// What sealing the plain-text personal fields did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SealedPlaintext {
    /// Events whose fields were sealed.
    pub sealed: u64,
    /// Fields of forgotten people, erased.
    pub erased: u64,
}

/// Seals every personal field still in plain text (only `person`'s, if given), or erases
/// it where its person was forgotten (see the module's doc). Sealing needs the master key;
/// erasing does not.
pub async fn seal_plaintext(
    admin: &Admin,
    person: Option<&str>,
) -> anyhow::Result<SealedPlaintext> {
    let personal: Vec<(&str, &str)> = domain::personal_data::PERSONAL_FIELDS
        .iter()
        .map(|(event_type, fields)| (*event_type, fields[0]))
        .collect();
    let mut done = SealedPlaintext::default();
    let mut after = 0;
    loop {
        let events = event_log::plaintext_personal_events(
            &admin.pool,
            &personal,
            person,
            after,
            SEALING_BATCH,
        )
        .await?;
        let Some(last) = events.last() else {
            return Ok(done);
        };
        after = last.position.global_position;
        let mut tx = admin.pool.begin().await?;
        for mut event in events {
            let (fields, subject) = projections::person::personal_fields(&event)?;
            if person.is_some_and(|person| person != subject) {
                continue;
            }
            let identity = EventIdentity {
                aggregate_type: &event.aggregate_type,
                aggregate_id: &event.aggregate_id,
                sequence: event.sequence,
            };
            // `None`: the person was forgotten, and their fields are erased instead.
            let key = match admin.keys.key_for_sealing(&subject).await {
                Ok(key) => Some(key),
                Err(KeyError::Forgotten(_)) => None,
                Err(KeyError::NoMasterKey)
                    if keyring::is_forgotten(&admin.pool, &subject).await? =>
                {
                    None
                }
                Err(err) => return Err(err.into()),
            };
            match key {
                Some(key) => {
                    sealing::seal_fields(&mut event.payload, identity, fields, &subject, &key);
                    done.sealed += 1;
                }
                None => {
                    sealing::erase_fields(&mut event.payload, fields, &subject);
                    done.erased += fields.len() as u64;
                }
            }
            event_log::reseal_payload(&mut *tx, event.position.global_position, &event.payload)
                .await?;
        }
        tx.commit().await?;
    }
}

/// One line of an audit: an event of the person's, with its personal fields shown or hidden.
pub struct AuditLine {
    pub event: StoredEvent,
    /// Its personal fields, which are shown only when revealed.
    pub personal: &'static [&'static str],
    pub revealed: bool,
}

/// What the log holds of `username`, in log order: their own stream, their messages' and
/// their part of their conversations. With `reveal`, the personal fields opened (a forgotten
/// person's read empty).
pub async fn audit(admin: &Admin, username: &str, reveal: bool) -> anyhow::Result<Audit> {
    let mut events: Vec<StoredEvent> = projections::person::events_of(&admin.pool, username)
        .await?
        .into_iter()
        .filter(|event| projections::person::concerns(event, username))
        .collect();
    if reveal {
        admin.keys.open_events(&mut events).await?;
    }
    let lines = events
        .into_iter()
        .map(|event| {
            let (personal, _) = projections::person::personal_fields(&event)?;
            Ok(AuditLine {
                event,
                personal,
                revealed: reveal,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Audit {
        forgotten: keyring::is_forgotten(&admin.pool, username).await?,
        lines,
    })
}

/// A person's events, as [`audit`] found them.
pub struct Audit {
    /// Whether the person was forgotten: their personal fields cannot be revealed.
    pub forgotten: bool,
    pub lines: Vec<AuditLine>,
}

impl fmt::Display for AuditLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let event = &self.event;
        let request = event
            .metadata
            .get("request_id")
            .and_then(Value::as_str)
            .unwrap_or("-");
        let mut fields = event
            .payload
            .get(&event.event_type)
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(body) = fields.as_object_mut() {
            for field in self.personal {
                if let Some(value) = body.get_mut(*field) {
                    if !self.revealed {
                        *value = Value::String("<personal>".to_owned());
                    }
                }
            }
        }
        write!(
            f,
            "{}\t{}\t{}\t{}\t{}\t{}",
            event.position.global_position,
            event
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            printable(request),
            event.event_type,
            printable(&event.aggregate_id),
            printable(&fields.to_string())
        )
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "position\trecorded at\trequest\ttype\tstream\tfields")?;
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        if self.forgotten {
            writeln!(
                f,
                "(forgotten: their key is deleted, so their personal fields cannot be read)"
            )?;
        }
        Ok(())
    }
}

//! Executing commands: cqrs-es on our [`AggregateStore`], with conflict retries and
//! read-your-writes.
//!
//! cqrs-es runs with no inline queries but a counter: the views are built by the catch-up
//! projectors instead (see the `projections` crate). A command costs two round trips in the
//! common case: reading what its cached aggregate has missed, and the append that commits
//! its events (with the simulator's `latest`) and returns their place in the log. Then this
//! module waits — boundedly — until every view fed by the stream has applied the stream's
//! newest event, so a client that writes and then reads sees its write. Waiting on the
//! stream's newest event rather than on "the event just written" also covers commands that
//! wrote nothing (following someone already followed): the state they confirmed is visible
//! too.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use database::event_log::{self, LogPosition, StoredEvent};
use database::keyring::Keyring;
use database::outage;
use domain::{
    ChatPolicy, ChatServices, Conversation, ConversationCommand, ConversationError, Directory,
    Message, MessageCommand, MessageError, PersonalData, User, UserCommand, UserError,
};
use projections::Progress;
use rand::Rng;
use sqlx::PgPool;

use crate::context::CommandContext;
use crate::directory::EventStoreDirectory;
use crate::store::{report_commit, AggregateStore};

type Cqrs<A> = CqrsFramework<A, AggregateStore<A>>;

/// The namespace of message ids derived from idempotency keys.
const IDEMPOTENT_POSTS: uuid::Uuid =
    uuid::Uuid::from_u128(0x6d1f_9b62_40c3_4d0e_8a57_3c2e_91b4_07fa);

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused it; nothing was written.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept winning the race for the stream, through every retry.
    #[error("the command kept conflicting with concurrent writes")]
    Conflict,
    /// The store could not be reached (see [`database::outage`]). The command may or may not
    /// have been committed: only the store knows, once it is back.
    #[error("the event store cannot be reached")]
    Unavailable(#[source] anyhow::Error),
    /// The store failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// How commands are executed.
#[derive(Debug, Clone, Copy)]
pub struct CommandSettings {
    /// Retries after an optimistic-concurrency conflict.
    pub retries: u32,
    /// The read-your-writes bound. Zero: do not wait at all (bulk imports by the admin tool,
    /// which may run with no server projecting).
    pub read_your_writes_timeout: Duration,
    /// Whom users may send private messages to.
    pub chat_policy: ChatPolicy,
    /// How many events the aggregates kept between commands may hold, per aggregate type.
    pub cached_events: u64,
}

/// Sends commands to aggregates.
pub struct CommandBus {
    users: Cqrs<User>,
    messages: Cqrs<Message>,
    /// The message framework's store, shared with it: posts declare their new streams.
    message_store: AggregateStore<Message>,
    conversations: Cqrs<Conversation>,
    directory: EventStoreDirectory,
    keys: Keyring,
    pool: PgPool,
    progress: Progress,
    settings: CommandSettings,
}

impl CommandBus {
    /// A bus writing through `pool`, sealing personal data with `keys`, and waiting on
    /// `progress`.
    pub fn new(pool: PgPool, keys: Keyring, progress: Progress, settings: CommandSettings) -> Self {
        let users = AggregateStore::new(pool.clone(), keys.clone(), settings.cached_events);
        let message_store = AggregateStore::new(pool.clone(), keys.clone(), settings.cached_events);
        let contacts = EventStoreDirectory::new(pool.clone(), users.clone());
        let directory: Directory = Arc::new(contacts.clone());
        let chat = ChatServices {
            contacts: Arc::new(contacts.clone()),
            policy: settings.chat_policy,
        };
        Self {
            directory: contacts,
            users: framework(users, directory.clone()),
            messages: framework(message_store.clone(), directory),
            message_store,
            conversations: framework(
                AggregateStore::new(pool.clone(), keys.clone(), settings.cached_events),
                chat,
            ),
            keys,
            pool,
            progress,
            settings,
        }
    }

    /// The directory the commands check names and standings with, sharing their caches.
    pub fn directory(&self) -> &EventStoreDirectory {
        &self.directory
    }

    /// Whom users may send private messages to: the pages offer a message box by it.
    pub fn chat_policy(&self) -> ChatPolicy {
        self.settings.chat_policy
    }

    /// The data keys the commands seal personal data with.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The pool the commands write through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Executes `command` on the user `username`.
    pub async fn user(
        &self,
        username: &str,
        command: UserCommand,
        context: &CommandContext,
    ) -> Result<(), CommandError<UserError>> {
        if !domain::registration::is_storable(username) {
            // No stream can have this id, and loading one would make the database fail.
            return Err(CommandError::Rejected(match command {
                UserCommand::Register { .. } => {
                    UserError::Registration(domain::RegistrationError::UnstorableUsername)
                }
                _ => UserError::NotRegistered,
            }));
        }
        let name = command.name();
        self.execute(&self.users, username, name, command, context)
            .await
    }

    /// Posts `content` as `author`: a new `Message` aggregate.
    ///
    /// With an `idempotency_key` (the simulator's `latest`, which numbers its actions), the
    /// message id derives from the key, the author and the content, so the same request sent
    /// again — a client or load balancer retrying after a lost answer — finds its message
    /// already posted and succeeds without posting it twice. Without one, a fresh
    /// time-ordered id.
    pub async fn post_message(
        &self,
        author: String,
        content: String,
        idempotency_key: Option<&str>,
        context: &CommandContext,
    ) -> Result<(), CommandError<MessageError>> {
        let message_id = match idempotency_key {
            Some(key) => uuid::Uuid::new_v5(
                &IDEMPOTENT_POSTS,
                format!("{key}\n{author}\n{content}").as_bytes(),
            ),
            None => uuid::Uuid::now_v7(),
        }
        .to_string();
        let command = MessageCommand::Post {
            author,
            content,
            posted_at: context.received_at,
        };
        // A new id's stream is empty, unless this very post was sent before (the same
        // idempotency key): then the append finds the stream taken and the post is decided
        // again on what the stream holds.
        self.message_store.expect_new(&message_id);
        match self.message(&message_id, command, context).await {
            Err(CommandError::Rejected(MessageError::AlreadyPosted))
                if idempotency_key.is_some() =>
            {
                self.settle_stream(Message::TYPE, &message_id).await;
                Ok(())
            }
            result => result,
        }
    }

    /// Executes `command` on the message `message_id`.
    pub async fn message(
        &self,
        message_id: &str,
        command: MessageCommand,
        context: &CommandContext,
    ) -> Result<(), CommandError<MessageError>> {
        if !domain::registration::is_storable(message_id) {
            // No stream can have this id, and loading one would make the database fail.
            return Err(CommandError::Rejected(MessageError::UnknownMessage));
        }
        let name = command.name();
        self.execute(&self.messages, message_id, name, command, context)
            .await
    }

    /// Executes `command` on the conversation between its sender or reader and `partner`.
    pub async fn conversation(
        &self,
        partner: &str,
        command: ConversationCommand,
        context: &CommandContext,
    ) -> Result<(), CommandError<ConversationError>> {
        let user = match &command {
            ConversationCommand::Send { sender, .. } => sender,
            ConversationCommand::MarkRead { reader, .. } => reader,
            ConversationCommand::ForgetParticipant { participant, .. } => participant,
        };
        if !domain::registration::is_storable(user) || !domain::registration::is_storable(partner) {
            // No stream can have this id, and loading one would make the database fail.
            return Err(CommandError::Rejected(ConversationError::NotAParticipant));
        }
        let conversation_id = domain::conversation_id(user, partner);
        let name = command.name();
        self.execute(
            &self.conversations,
            &conversation_id,
            name,
            command,
            context,
        )
        .await
    }

    /// Executes `command` (called `name`), counting it by outcome.
    #[tracing::instrument(name = "command", skip_all, fields(aggregate = A::TYPE, command = name, id = aggregate_id))]
    async fn execute<A>(
        &self,
        cqrs: &Cqrs<A>,
        aggregate_id: &str,
        name: &'static str,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Aggregate + Clone,
        A::Command: Clone,
        A::Event: PersonalData,
    {
        let result = self.commit(cqrs, aggregate_id, command, context).await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Conflict) => "conflict",
            Err(CommandError::Unavailable(_)) => "unavailable",
            Err(CommandError::Failed(_)) => "error",
        };
        metrics::counter!(
            "minitwit_commands_total",
            "aggregate" => A::TYPE, "command" => name, "outcome" => outcome
        )
        .increment(1);
        result
    }

    /// Commits `command`, retrying conflicts, then waits (boundedly) for the views.
    async fn commit<A>(
        &self,
        cqrs: &Cqrs<A>,
        aggregate_id: &str,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Aggregate + Clone,
        A::Command: Clone,
        A::Event: PersonalData,
    {
        let latest = context.latest.as_ref();
        let mut attempt = 0;
        let report = loop {
            let (result, report) = report_commit(
                latest.map(|latest| latest.value()),
                cqrs.execute_with_metadata(aggregate_id, command.clone(), context.event_metadata()),
            )
            .await;
            match result {
                Ok(()) => break report,
                Err(AggregateError::AggregateConflict) if attempt < self.settings.retries => {
                    attempt += 1;
                    metrics::counter!("minitwit_command_retries_total", "aggregate" => A::TYPE)
                        .increment(1);
                    // Exponential backoff with full jitter, so that the writers that collided
                    // spread out instead of colliding again: up to 4, 8, 16, 32, 64 ms.
                    let pause = rand::rng().random_range(1..=2_u64 << attempt.min(10));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(AggregateError::AggregateConflict) => return Err(CommandError::Conflict),
                Err(AggregateError::UserError(refusal)) => {
                    return Err(CommandError::Rejected(refusal))
                }
                // The store boxes the driver's error itself, so it can be looked at.
                Err(
                    AggregateError::DatabaseConnectionError(cause)
                    | AggregateError::UnexpectedError(cause),
                ) if outage::is_unreachable(cause.as_ref()) => {
                    return Err(CommandError::Unavailable(anyhow::anyhow!(
                        "executing a {} command: {cause}",
                        A::TYPE
                    )))
                }
                Err(other) => {
                    return Err(CommandError::Failed(anyhow::anyhow!(
                        "executing a {} command: {other}",
                        A::TYPE
                    )))
                }
            }
        };
        if !report.appended.is_empty() {
            if let Some(latest) = latest {
                latest.mark_stored();
            }
        }
        if let Some(newest) = report.newest {
            self.settle(A::TYPE, newest, report.appended).await;
        }
        Ok(())
    }

    /// Waits, within the bound, until the views include the newest event of the stream
    /// `aggregate_type`/`aggregate_id`, looked up in the store (for a command that found its
    /// work done already without reading the stream through the cache).
    async fn settle_stream(&self, aggregate_type: &str, aggregate_id: &str) {
        if self.settings.read_your_writes_timeout.is_zero() {
            return;
        }
        match event_log::newest_in_stream(&self.pool, aggregate_type, aggregate_id).await {
            Ok(Some(newest)) => self.settle(aggregate_type, newest, Vec::new()).await,
            Ok(None) => {}
            Err(err) => read_your_writes_failed(&anyhow::Error::from(err)),
        }
    }

    /// Waits, within the bound, until the views fed by `aggregate_type` include `position`,
    /// the newest event of a stream the command wrote (`appended`, its events) or found as
    /// it wanted. The command is committed: from here on nothing may turn it into an error,
    /// or the client would retry a write that happened (and post a tweet twice).
    async fn settle(
        &self,
        aggregate_type: &str,
        position: LogPosition,
        appended: Vec<StoredEvent>,
    ) {
        // The local projectors of this stream need not wait for the notification's round
        // trip, nor read back what was just written.
        if appended.is_empty() {
            self.progress.announce_appended(aggregate_type, position);
        } else {
            self.progress.hand_over(aggregate_type, appended);
        }
        if self.settings.read_your_writes_timeout.is_zero() {
            return;
        }
        let applied = self
            .progress
            .wait_until_applied(
                aggregate_type,
                position,
                self.settings.read_your_writes_timeout,
            )
            .await;
        match applied {
            Ok(true) => {}
            Ok(false) => {
                metrics::counter!("minitwit_read_your_writes_timeouts_total").increment(1);
                tracing::warn!(
                    position = position.global_position,
                    "views did not catch up within the read-your-writes bound; answering anyway"
                );
            }
            Err(err) => read_your_writes_failed(&anyhow::Error::from(err)),
        }
    }
}

/// Counts and logs a wait for the views that could not be carried out; the write stands.
fn read_your_writes_failed(err: &anyhow::Error) {
    metrics::counter!("minitwit_read_your_writes_failures_total").increment(1);
    tracing::warn!(
        error = format!("{err:#}"),
        "could not wait for the views; answering anyway"
    );
}

fn framework<A>(store: AggregateStore<A>, services: A::Services) -> Cqrs<A>
where
    A: Aggregate + Clone,
    A::Event: PersonalData,
{
    CqrsFramework::new(store, vec![Box::new(EventCounter)], services)
}

/// Counts the events each committed command appended, by type. A cqrs-es query, which
/// cqrs-es calls with exactly those events once they are committed (and only then).
struct EventCounter;

#[async_trait::async_trait]
impl<A: Aggregate> cqrs_es::Query<A> for EventCounter {
    async fn dispatch(&self, _aggregate_id: &str, events: &[cqrs_es::EventEnvelope<A>]) {
        use cqrs_es::DomainEvent as _;
        for event in events {
            metrics::counter!(
                "minitwit_events_appended_total",
                "aggregate" => A::TYPE, "event" => event.payload.event_type()
            )
            .increment(1);
        }
    }
}

//! The read side: catch-up projectors over the global event log, and the queries that read
//! what they build.
//!
//! Layout:
//! - [`log`] — the log's rows (read by [`database::event_log`]) decoded as the domain's
//!   events, upcast to their current versions.
//! - [`projection`] — the [`Projection`] trait each view implements, the schema and lock
//!   names of a projection's versions, and the [`VersionState`]s a version goes through; a
//!   leaf, so that what runs projections and what tracks them need not import each other.
//! - [`projector`] — the generic catch-up loop — below the transaction horizon, in
//!   `(transaction_id, global_position)` order, one locked transaction per batch with a
//!   compare-and-set checkpoint.
//! - [`accounts`] — users and follows.
//! - [`timeline`] — messages, shaped for the public, per-user and "my" timelines.
//! - [`conversations`] — private messages, read marks and inboxes; [`blocks`] — who blocks
//!   whom.
//! - [`progress`] — every replica's view of which version of each projection it reads and how
//!   far each has got, kept current by LISTEN/NOTIFY, so a request can wait until its own
//!   write is visible.
//! - [`supervisor`] — a server's projectors, on the active versions, moving to rebuilt ones.
//! - [`maintenance`] — the admin tool's side of versions: status, rebuild and switch, verify,
//!   prune.
//! - [`queries`] — the named read queries the HTTP layer calls, and timeline paging;
//!   [`chat_queries`] — those of private messages; [`timeline_cache`] — the newest pages of
//!   timelines kept per replica, keyed by the checkpoints of the views they read, which
//!   [`view_marks`] probes once for all the reads waiting at that moment.
//! - [`person`] — one person's own data, from the log: their download and the admin tool's
//!   audit.
//! - [`live`] — the timeline changes each checkpoint move brings, broadcast to live pages;
//!   [`chat_live`] — the same for private messages.
//!
//! Depends on `domain` and `database` only; never on the command side (`commands`, which waits
//! on [`Progress`] here for read-your-writes), nor on `api` or any HTTP crate.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod blocks;
pub mod chat_live;
pub mod chat_queries;
pub mod conversations;
pub mod live;
pub mod log;
pub mod maintenance;
pub mod person;
pub mod progress;
pub mod projection;
pub mod projector;
pub mod queries;
pub mod supervisor;
pub mod timeline;
pub mod timeline_cache;
pub mod timelines;
pub mod view_marks;

use std::sync::Arc;

pub use chat_live::{ChatFeed, ChatUpdate};
pub use chat_queries::{ConversationPage, InboxEntry, LaterPage, PrivateMessage};
pub use database::event_log::{LogPosition, StoredEvent};
pub use live::{LiveFeed, LiveUpdate};
pub use progress::{Progress, ProgressListener};
pub use projection::{Projection, VersionState, ViewChange};
pub use projector::{Projector, ProjectorSettings};
pub use queries::{Account, ModeratedMessage, ProfileRelation, ReadModels};
pub use supervisor::Supervisor;
pub use timelines::{TimelineCursor, TimelineEntry, TimelineScope, TimelineWindow};

/// Every projection the server runs, at its current version.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(accounts::Accounts),
        Arc::new(timeline::Timeline),
        Arc::new(conversations::Conversations),
        Arc::new(blocks::Blocks),
    ]
}

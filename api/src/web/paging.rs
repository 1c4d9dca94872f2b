//! Keyset paging of the timelines: which page a URL asks for, and reading that page.
//!
//! A page shows [`PAGE_SIZE`] messages. "older" links `?before=<cursor of its last message>`
//! and "newer" links `?after=<cursor of its first>`, so paging stays put while people post.
//! The pages ([`super::timelines`]) and their live streams ([`super::live`]) read the same
//! query.

use projections::{TimelineCursor, TimelineEntry, TimelineScope, TimelineWindow};
use serde::Deserialize;

use super::error::WebError;
use super::WebState;

/// Messages per page, as the original.
pub const PAGE_SIZE: i64 = 30;

/// Which page of a timeline: `?before=` (older) or `?after=` (newer) a cursor.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    before: Option<String>,
    after: Option<String>,
}

impl PageQuery {
    /// The window of the timeline this query asks for; an unreadable cursor is a 400.
    pub fn window(&self) -> Result<TimelineWindow, WebError> {
        let parse = |text: &str| {
            text.parse::<TimelineCursor>()
                .map_err(|err| WebError::BadRequest(format!("Unreadable page link: {err}.")))
        };
        Ok(match (&self.before, &self.after) {
            (Some(before), _) => TimelineWindow::OlderThan(parse(before)?),
            (None, Some(after)) => TimelineWindow::NewerThan(parse(after)?),
            (None, None) => TimelineWindow::Newest,
        })
    }

    /// The cursor after which a live stream should start (see [`super::live`]).
    pub fn after(&self) -> Result<Option<TimelineCursor>, WebError> {
        match self.window()? {
            TimelineWindow::NewerThan(cursor) => Ok(Some(cursor)),
            _ => Ok(None),
        }
    }
}

/// One page of entries, and where the neighbouring pages start.
pub struct Paged {
    pub entries: Vec<TimelineEntry>,
    /// Set when there are newer entries: the cursor the "newer" link starts after.
    pub newer: Option<TimelineCursor>,
    /// Set when there are older entries: the cursor the "older" link starts before.
    pub older: Option<TimelineCursor>,
    /// Whether this is the newest page (the one that updates live).
    pub newest_page: bool,
}

impl Paged {
    /// Reads the page of `scope` in `window`, plus one entry telling whether there is more
    /// beyond it.
    pub async fn load(
        state: &WebState,
        scope: TimelineScope<'_>,
        window: TimelineWindow,
    ) -> Result<Self, WebError> {
        let mut entries = state.reads.timeline(scope, window, PAGE_SIZE + 1).await?;
        let full = entries.len() > PAGE_SIZE as usize;
        let (newer, newest_page) = match window {
            TimelineWindow::Newest => {
                entries.truncate(PAGE_SIZE as usize);
                (None, true)
            }
            TimelineWindow::OlderThan(cursor) => {
                entries.truncate(PAGE_SIZE as usize);
                // Something newer exists: at least the entry the cursor came from.
                (
                    Some(entries.first().map_or(cursor, TimelineEntry::cursor)),
                    false,
                )
            }
            TimelineWindow::NewerThan(_) if !full => {
                // Less than a page above the cursor: that is the newest page, shown whole.
                return Box::pin(Self::load(state, scope, TimelineWindow::Newest)).await;
            }
            TimelineWindow::NewerThan(_) => {
                // The entries nearest the cursor make the page; the newest one read lies
                // beyond it, on a newer page still.
                entries.remove(0);
                (entries.first().map(TimelineEntry::cursor), false)
            }
        };
        let older = match window {
            TimelineWindow::NewerThan(_) => last_cursor(&entries),
            _ if full => last_cursor(&entries),
            _ => None,
        };
        Ok(Self {
            entries,
            newer,
            older,
            newest_page,
        })
    }
}

fn last_cursor(entries: &[TimelineEntry]) -> Option<TimelineCursor> {
    entries.last().map(TimelineEntry::cursor)
}

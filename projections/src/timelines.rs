//! What a timeline read is about and what it returns: the entries, the cursor that orders
//! and pages them, whose messages a timeline shows and which stretch of it is read. A leaf,
//! shared by the queries and the cache of their newest pages.

use std::fmt;
use std::str::FromStr;

/// One message as timelines show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub message_id: String,
    pub author: String,
    /// The author's email (for the avatar); empty if the accounts view has not caught up
    /// with the author's registration yet.
    pub author_email: String,
    pub content: String,
    /// Unix time in seconds.
    pub pub_date: i64,
    /// The message's position in the event log.
    pub position: i64,
}

impl TimelineEntry {
    /// This entry's place in every timeline that shows it.
    pub fn cursor(&self) -> TimelineCursor {
        TimelineCursor {
            pub_date: self.pub_date,
            position: self.position,
        }
    }
}

/// A message's sort key in the timelines: newest `pub_date` first, then the newest log
/// position. Written `<pub_date>.<position>` in URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimelineCursor {
    pub pub_date: i64,
    pub position: i64,
}

impl TimelineCursor {
    /// A cursor before every message: everything is newer than it.
    pub const BEFORE_ALL: Self = Self {
        pub_date: i64::MIN,
        position: i64::MIN,
    };
}

impl fmt::Display for TimelineCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pub_date, self.position)
    }
}

/// A cursor that is not `<integer>.<integer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a timeline cursor is written <pub_date>.<position>")]
pub struct InvalidCursor;

impl FromStr for TimelineCursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (pub_date, position) = text.split_once('.').ok_or(InvalidCursor)?;
        Ok(Self {
            pub_date: pub_date.parse().map_err(|_| InvalidCursor)?,
            position: position.parse().map_err(|_| InvalidCursor)?,
        })
    }
}

/// Whose messages a timeline shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineScope<'a> {
    /// Everyone's.
    Public,
    /// One author's.
    Author(&'a str),
    /// A user's own and those of everyone the user follows ("my timeline").
    Personal(&'a str),
}

/// Which stretch of a timeline to read. Whatever the stretch, entries come back newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineWindow {
    /// The newest entries.
    Newest,
    /// The entries just older than the cursor (the next page down).
    OlderThan(TimelineCursor),
    /// The entries just newer than the cursor (the page above, or what arrived since).
    NewerThan(TimelineCursor),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_their_url_form() {
        let cursor = TimelineCursor {
            pub_date: 1_764_000_000,
            position: 42,
        };
        assert_eq!(cursor.to_string(), "1764000000.42");
        assert_eq!("1764000000.42".parse(), Ok(cursor));
        assert_eq!("-5.0".parse::<TimelineCursor>().unwrap().pub_date, -5);
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in [
            "",
            "12",
            "12.",
            ".3",
            "a.b",
            "1.2.3",
            "1 .2",
            "99999999999999999999.1",
        ] {
            assert_eq!(bad.parse::<TimelineCursor>(), Err(InvalidCursor), "{bad:?}");
        }
    }

    #[test]
    fn cursors_order_as_timelines_do() {
        let earlier = TimelineCursor {
            pub_date: 10,
            position: 99,
        };
        let later_second = TimelineCursor {
            pub_date: 11,
            position: 1,
        };
        let same_second_later_in_log = TimelineCursor {
            pub_date: 10,
            position: 100,
        };
        assert!(earlier < later_second);
        assert!(earlier < same_second_later_in_log);
    }
}

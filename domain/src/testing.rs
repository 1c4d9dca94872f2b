//! What the aggregates' unit and property tests share: a fake user directory that can be
//! told who exists and made to fail, strategies for hostile input, and the runner that drives
//! an aggregate through a generated history and checks every step against a reference model.
//!
//! The runner handles each command the way cqrs-es does — on the state folded from the
//! events so far, with a fresh `EventSink` — and then requires that:
//! - the outcome is exactly the one the model predicts (the events, or the refusal);
//! - a refused command wrote no event and left the state as it was;
//! - folding the emitted events gives the state the model holds;
//! - every emitted event can be stored (no NUL anywhere in its JSON, which PostgreSQL's
//!   `jsonb` refuses) and reads back identical through the upcasters, as the log is read.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use crate::directory::{Directory, DirectoryError, UserDirectory};
use crate::upcasting;

/// A user directory holding a set of registered names, which can be switched off to simulate
/// the event store being unreachable.
pub(crate) struct FakeDirectory {
    registered: Mutex<BTreeSet<String>>,
    answering: AtomicBool,
}

impl FakeDirectory {
    /// A directory in which exactly `names` are registered.
    pub(crate) fn with<'a>(names: impl IntoIterator<Item = &'a str>) -> Arc<Self> {
        Arc::new(Self {
            registered: Mutex::new(names.into_iter().map(str::to_owned).collect()),
            answering: AtomicBool::new(true),
        })
    }

    /// Records that `name` has registered from now on.
    pub(crate) fn register(&self, name: &str) {
        self.registered.lock().unwrap().insert(name.to_owned());
    }

    /// The answer to "is `name` registered?" right now; reference models ask it too.
    pub(crate) fn answer(&self, name: &str) -> Result<bool, DirectoryError> {
        if self.answering.load(Ordering::Relaxed) {
            Ok(self.registered.lock().unwrap().contains(name))
        } else {
            Err(DirectoryError::Unreachable(
                "the test directory is switched off".into(),
            ))
        }
    }

    fn set_answering(&self, answering: bool) {
        self.answering.store(answering, Ordering::Relaxed);
    }
}

#[async_trait]
impl UserDirectory for FakeDirectory {
    async fn is_registered(&self, username: &str) -> Result<bool, DirectoryError> {
        self.answer(username)
    }
}

/// Names that are registered in the directory of every property test, besides whatever the
/// aggregate under test registers itself.
pub(crate) const REGISTERED_ELSEWHERE: [&str; 3] = ["alice", "Roger Histand", "ünï cødé 💥"];

/// Names that are never registered but look like ones that are: a command naming one must
/// be refused as naming nobody.
const LOOKALIKE_NAMES: [&str; 4] = ["Alice", "alice ", "Roger  Histand", ""];

/// Inputs chosen to break careless handling of text: markup, SQL, bidi overrides, combining
/// and joined characters, an escaped NUL that is not one, and control characters.
const HOSTILE_TEXTS: [&str; 12] = [
    "",
    " ",
    "\0",
    "@",
    "<script>alert(1)</script>",
    "'; DROP TABLE events; --",
    "\u{202e}txet desrever",
    "e\u{301}\u{301}\u{301}",
    "👩\u{200d}💻",
    "\\u0000",
    "\r\n\t\u{7}",
    "%00",
];

/// Any text an attacker could send: the hostile list, random characters from the whole of
/// Unicode, text with a NUL inside, and text hundreds of kilobytes long.
pub(crate) fn hostile_text() -> BoxedStrategy<String> {
    let random = || proptest::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter);
    prop_oneof![
        3 => select(&HOSTILE_TEXTS[..]).prop_map(str::to_owned),
        4 => random(),
        1 => (random(), random()).prop_map(|(before, after)| format!("{before}\0{after}")),
        1 => (select(vec!['x', 'é', '💥', '\0']), 10_000..100_000usize)
            .prop_map(|(c, count)| c.to_string().repeat(count)),
    ]
    .boxed()
}

/// A username as a command names it: mostly one of a few recurring names, registered or not,
/// so that a history follows, unfollows and posts as the same people again and again;
/// otherwise anything.
pub(crate) fn username() -> BoxedStrategy<String> {
    prop_oneof![
        2 => select(&REGISTERED_ELSEWHERE[..]).prop_map(str::to_owned),
        2 => select(&LOOKALIKE_NAMES[..]).prop_map(str::to_owned),
        1 => hostile_text(),
    ]
    .boxed()
}

/// Any instant chrono can represent, to the nanosecond.
pub(crate) fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let seconds = DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp();
    (seconds, 0..1_000_000_000u32).prop_map(|(seconds, nanoseconds)| {
        DateTime::from_timestamp(seconds, nanoseconds).expect("within chrono's range")
    })
}

/// One step of a generated history: a command, and whether the directory answers while it
/// is handled (it is off one step in ten).
#[derive(Debug, Clone)]
pub(crate) struct Step<C> {
    pub(crate) command: C,
    pub(crate) directory_answers: bool,
}

/// Histories of up to 40 steps of `command`.
pub(crate) fn history<C: Debug + Clone>(
    command: impl Strategy<Value = C>,
) -> impl Strategy<Value = Vec<Step<C>>> {
    let step =
        (command, proptest::bool::weighted(0.9)).prop_map(|(command, directory_answers)| Step {
            command,
            directory_answers,
        });
    proptest::collection::vec(step, 1..40)
}

type Outcome<A> = Result<Vec<<A as Aggregate>::Event>, <A as Aggregate>::Error>;

/// An independent statement of what an aggregate's commands mean, written without its code.
pub(crate) trait ReferenceModel {
    type Aggregate: Aggregate<Services = Directory, Command: Clone + Debug, Error: PartialEq>
        + Clone
        + PartialEq
        + Debug;

    /// The outcome `command` must have had, given the commands accepted before it and what
    /// `directory` knew; an accepted command is recorded in the model (and, if it registers
    /// someone, in the directory).
    fn expect(
        &mut self,
        command: &<Self::Aggregate as Aggregate>::Command,
        directory: &FakeDirectory,
    ) -> Outcome<Self::Aggregate>;

    /// The aggregate state the accepted commands imply.
    fn state(&self) -> Self::Aggregate;
}

/// Drives a fresh aggregate through `history` and checks every step against `model` (see the
/// module documentation for what is checked).
pub(crate) fn check_history<M: ReferenceModel>(
    mut model: M,
    directory: Arc<FakeDirectory>,
    history: Vec<Step<<M::Aggregate as Aggregate>::Command>>,
) -> Result<(), TestCaseError> {
    // The aggregates await nothing but the fake directory, which is always ready, so a
    // single-threaded runtime without drivers is enough.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let services: Directory = directory.clone();
    let mut state = M::Aggregate::default();
    for Step {
        command,
        directory_answers,
    } in history
    {
        directory.set_answering(directory_answers);
        let mut handled = state.clone();
        let sink = EventSink::default();
        let decision = runtime.block_on(handled.handle(command.clone(), &services, &sink));
        let written = runtime.block_on(sink.collect());

        // Asked while the directory is still as `handle` found it.
        let expected = model.expect(&command, &directory);
        match decision {
            Ok(()) => prop_assert_eq!(Ok(written.clone()), expected),
            Err(refusal) => {
                prop_assert_eq!(Err(refusal), expected);
                prop_assert!(written.is_empty(), "a refused command wrote {written:?}");
            }
        }
        for event in written {
            check_storable_and_readable::<M::Aggregate>(&event)?;
            state.apply(event);
        }
        prop_assert_eq!(&state, &model.state(), "after {:?}", command);
        // `handle` applies what it writes to itself as it goes (through the sink); that state
        // must agree with the fold, and so be untouched after a refusal.
        prop_assert_eq!(&handled, &state, "handle's own state after {:?}", command);
    }
    Ok(())
}

/// Requires that `event` can be written to the event store and read back unchanged, the way
/// postgres-es writes it and every reader of the log reads it.
fn check_storable_and_readable<A: Aggregate>(event: &A::Event) -> Result<(), TestCaseError> {
    let payload = serde_json::to_value(event).map_err(failure)?;
    prop_assert!(
        !holds_nul(&payload),
        "PostgreSQL cannot store {}",
        event.event_type()
    );
    let text = serde_json::to_string(&payload).map_err(failure)?;
    let stored: Value = serde_json::from_str(&text).map_err(failure)?;
    let row = SerializedEvent::new(
        "the-aggregate".into(),
        1,
        A::TYPE.into(),
        event.event_type(),
        event.event_version(),
        stored,
        Value::Object(Default::default()),
    );
    let read = upcasting::upcast(row, &upcasting::upcasters());
    let envelope = EventEnvelope::<A>::try_from(read).map_err(failure)?;
    prop_assert_eq!(&envelope.payload, event);
    Ok(())
}

/// Fails the test case with `error`'s message.
pub(crate) fn failure(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

/// Whether any string (or object key) anywhere in `json` holds the NUL character.
fn holds_nul(json: &Value) -> bool {
    match json {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

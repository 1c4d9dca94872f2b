//! What an administrator sees of people and of the past: `audit` lists exactly a person's
//! events — their own stream, their messages', their part of their conversations and not
//! their partners' — with time and request, personal fields hidden unless revealed, and
//! empty once the person is forgotten; `as-of` shows a timeline as it stood at a log
//! position or a time, hand-computed here for every step of a history, without touching the
//! live views; and `forget` asks before it acts, repeats harmlessly and names an unknown user.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use test_support::app::spawn_app;
use test_support::sim_client::assert_no_content;
use test_support::views::{await_projections_at_head, schema_rows};
use test_support::web_client::{Page, WebClient};

use crate::tool::{run, run_ok};

const ALICE_EMAIL: &str = "alice.audited@example.org";
const ALICE_FIRST: &str = "alice's first post";
const ALICE_SECOND: &str = "alice's second post";
const BOBS_POST: &str = "bob's own post";
const WHISPER: &str = "alice whispers to bob";
const ANSWER: &str = "bob answers alice";
const BOB_TO_CAROL: &str = "bob writes to carol only";

/// The stream id of alice and bob's conversation (see `domain::conversation_id`).
const ALICE_AND_BOB: &str = r#"["alice","bob"]"#;

/// The audit's last line for a forgotten person.
const FORGOTTEN_NOTE: &str =
    "(forgotten: their key is deleted, so their personal fields cannot be read)";

/// The position of the newest event in the log: the point just after the last step.
async fn head(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(pool)
        .await
        .expect("reading the head of the log")
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("counting events")
}

/// The id of the message whose content is `content`, and when it was posted.
async fn posted(pool: &PgPool, content: &str) -> (String, DateTime<Utc>) {
    let event = test_support::log::opened_events(pool, "MessagePosted")
        .await
        .into_iter()
        .find(|posted| posted.fields["content"] == content)
        .expect("the message is in the log");
    let posted_at = event.fields["posted_at"]
        .as_str()
        .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
        .expect("a posting time")
        .with_timezone(&Utc);
    (event.aggregate_id, posted_at)
}

/// A browser signed in as `name` (password `pw`).
async fn signed_in(app_web_url: &str, name: &str) -> WebClient {
    let client = WebClient::new(app_web_url);
    client.login(name, "pw").await.assert_redirected_to("/");
    client
}

/// Sends a private message over the chat's route, requiring it accepted; returns the
/// request id the server gave the request (echoed in `x-request-id`).
async fn send_private(from: &WebClient, to: &str, content: &str) -> String {
    let sent = from
        .post_json(&format!("/chat/with/{to}"), &json!({ "content": content }))
        .await;
    sent.assert_status(StatusCode::NO_CONTENT);
    request_id(&sent)
}

fn request_id(page: &Page) -> String {
    page.header("x-request-id")
        .expect("the server echoes the request id")
        .to_owned()
}

/// One line of an audit, by column.
#[derive(Debug)]
struct AuditRow {
    position: i64,
    recorded_at: String,
    request: String,
    event_type: String,
    stream: String,
    fields: Value,
}

/// An audit's output: its rows, and the whole text, for what must appear nowhere in it.
struct Audit {
    rows: Vec<AuditRow>,
    text: String,
}

impl Audit {
    fn kinds(&self) -> Vec<(&str, &str)> {
        self.rows
            .iter()
            .map(|row| (row.event_type.as_str(), row.stream.as_str()))
            .collect()
    }

    /// The row of type `event_type` on `stream` (the only one).
    #[track_caller]
    fn row(&self, event_type: &str, stream: &str) -> &AuditRow {
        let mut found = self
            .rows
            .iter()
            .filter(|row| row.event_type == event_type && row.stream == stream);
        let row = found
            .next()
            .unwrap_or_else(|| panic!("no {event_type} on {stream}:\n{}", self.text));
        assert!(found.next().is_none(), "two {event_type} on {stream}");
        row
    }

    /// The private message of `sender` on alice and bob's conversation.
    #[track_caller]
    fn private_message_of(&self, sender: &str) -> &AuditRow {
        self.rows
            .iter()
            .find(|row| row.event_type == "PrivateMessageSent" && row.fields["sender"] == sender)
            .unwrap_or_else(|| panic!("no private message of {sender}:\n{}", self.text))
    }
}

/// `minitwit-replay audit USERNAME [--reveal]`, parsed; the header and, for a forgotten
/// person, the closing note are checked and left out of the rows.
async fn audit(url: &str, username: &str, reveal: bool) -> Audit {
    let mut args = vec!["audit", username];
    if reveal {
        args.push("--reveal");
    }
    let text = run_ok(url, &args).await;
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("position\trecorded at\trequest\ttype\tstream\tfields"),
        "the header first:\n{text}"
    );
    let rows = lines
        .filter(|line| *line != FORGOTTEN_NOTE)
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            assert_eq!(columns.len(), 6, "six columns: {line:?}");
            AuditRow {
                position: columns[0].parse().expect("a position"),
                recorded_at: columns[1].to_owned(),
                request: columns[2].to_owned(),
                event_type: columns[3].to_owned(),
                stream: columns[4].to_owned(),
                fields: serde_json::from_str(columns[5]).expect("the fields as JSON"),
            }
        })
        .collect();
    Audit { rows, text }
}

/// When each event was recorded, by position, as the log holds it.
async fn recorded_times(pool: &PgPool) -> BTreeMap<i64, DateTime<Utc>> {
    sqlx::query_as::<_, (i64, DateTime<Utc>)>("SELECT global_position, recorded_at FROM events")
        .fetch_all(pool)
        .await
        .expect("reading the log's times")
        .into_iter()
        .collect()
}

#[tokio::test]
async fn an_audit_lists_exactly_the_persons_events_with_times_requests_and_hidden_fields() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("alice", ALICE_EMAIL, "pw", None).await);
    assert_no_content(sim.register("bob", "bob@example.org", "pw", None).await);
    assert_no_content(sim.register("carol", "carol@example.org", "pw", None).await);
    assert_no_content(sim.tweet("alice", ALICE_FIRST, None).await);
    assert_no_content(sim.tweet("alice", ALICE_SECOND, None).await);
    assert_no_content(sim.tweet("bob", BOBS_POST, None).await);
    assert_no_content(sim.follow("alice", "bob", None).await);
    assert_no_content(sim.follow("bob", "alice", None).await);
    assert_no_content(sim.follow("carol", "bob", None).await);
    let alice = signed_in(&app.web_url, "alice").await;
    let bob = signed_in(&app.web_url, "bob").await;
    let whisper_request = send_private(&alice, "bob", WHISPER).await;
    let answer_request = send_private(&bob, "alice", ANSWER).await;
    for (reader, partner) in [(&bob, "alice"), (&alice, "bob")] {
        reader
            .post_json(&format!("/chat/with/{partner}/read"), &json!({"up_to": 2}))
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
    send_private(&bob, "carol", BOB_TO_CAROL).await;
    let (first, _) = posted(&app.db.pool, ALICE_FIRST).await;
    let (second, _) = posted(&app.db.pool, ALICE_SECOND).await;
    run_ok(
        &app.db.url,
        &["flag", &first, "--reason", "spam", "--by", "mo"],
    )
    .await;

    let hidden = audit(&app.db.url, "alice", false).await;
    // Bob's side of the conversation is his: his read marks and his following alice are not
    // hers; his other conversations and posts are not hers either. His message to her is.
    assert!(
        !hidden.rows.iter().any(|row| row.fields["reader"] == "bob"),
        "bob's read marks listed:\n{}",
        hidden.text
    );
    assert!(
        !hidden
            .rows
            .iter()
            .any(|row| row.stream == "bob" || row.stream.contains("carol")),
        "bob's stream or conversation with carol listed:\n{}",
        hidden.text
    );
    let answer = hidden.private_message_of("bob");
    assert_eq!(answer.fields["recipient"], "alice");
    assert_eq!(answer.stream, ALICE_AND_BOB);
    let expected = [
        ("UserRegistered", "alice"),
        ("MessagePosted", first.as_str()),
        ("MessagePosted", second.as_str()),
        ("UserFollowed", "alice"),
        ("PrivateMessageSent", ALICE_AND_BOB),
        ("PrivateMessageSent", ALICE_AND_BOB),
        ("ConversationRead", ALICE_AND_BOB),
        ("MessageFlagged", first.as_str()),
    ];
    assert_eq!(hidden.kinds(), expected, "{}", hidden.text);
    assert!(
        hidden
            .rows
            .windows(2)
            .all(|pair| pair[0].position < pair[1].position),
        "in log order:\n{}",
        hidden.text
    );
    // Each row is the event at its position, with the time the log recorded it.
    let times = recorded_times(&app.db.pool).await;
    for row in &hidden.rows {
        let recorded = times[&row.position].to_rfc3339_opts(SecondsFormat::Millis, true);
        assert_eq!(row.recorded_at, recorded, "{row:?}");
    }

    // Personal fields are hidden, the rest shown as recorded.
    let registered = hidden.row("UserRegistered", "alice");
    assert_eq!(registered.fields["username"], "alice");
    assert_eq!(registered.fields["email"], "<personal>");
    assert_eq!(registered.fields["password_hash"], "<personal>");
    for id in [&first, &second] {
        let post = hidden.row("MessagePosted", id);
        assert_eq!(post.fields["author"], "alice");
        assert_eq!(post.fields["content"], "<personal>");
    }
    assert_eq!(
        hidden.private_message_of("alice").fields["content"],
        "<personal>"
    );
    assert_eq!(answer.fields["content"], "<personal>");
    assert_eq!(
        hidden.row("UserFollowed", "alice").fields["followee"],
        "bob"
    );
    let read = hidden.row("ConversationRead", ALICE_AND_BOB);
    assert_eq!(
        (&read.fields["reader"], &read.fields["up_to"]),
        (&json!("alice"), &json!(2))
    );
    assert_eq!(
        hidden.row("MessageFlagged", &first).fields["moderation"],
        json!({"moderator": "mo", "reason": "spam"})
    );
    for secret in [
        ALICE_EMAIL,
        ALICE_FIRST,
        ALICE_SECOND,
        WHISPER,
        ANSWER,
        BOBS_POST,
        BOB_TO_CAROL,
    ] {
        assert!(
            !hidden.text.contains(secret),
            "{secret:?} shown:\n{}",
            hidden.text
        );
    }

    // Requests: the id the server gave each HTTP request (a UUID, echoed to the client),
    // the tool's own for its decisions.
    assert_eq!(hidden.private_message_of("alice").request, whisper_request);
    assert_eq!(answer.request, answer_request);
    for row in hidden
        .rows
        .iter()
        .filter(|row| row.event_type != "MessageFlagged")
    {
        assert!(
            uuid::Uuid::parse_str(&row.request).is_ok(),
            "an HTTP request's id: {row:?}"
        );
    }
    assert_ne!(
        hidden.row("MessagePosted", &first).request,
        hidden.row("MessagePosted", &second).request,
        "each request its own id"
    );
    assert!(
        hidden
            .row("MessageFlagged", &first)
            .request
            .starts_with("minitwit-replay-"),
        "{}",
        hidden.text
    );

    let revealed = audit(&app.db.url, "alice", true).await;
    assert_eq!(revealed.kinds(), expected, "{}", revealed.text);
    let registered = revealed.row("UserRegistered", "alice");
    assert_eq!(registered.fields["email"], ALICE_EMAIL);
    let hash = registered.fields["password_hash"].as_str().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert_eq!(
        revealed.row("MessagePosted", &first).fields["content"],
        ALICE_FIRST
    );
    assert_eq!(
        revealed.row("MessagePosted", &second).fields["content"],
        ALICE_SECOND
    );
    assert_eq!(
        revealed.private_message_of("alice").fields["content"],
        WHISPER
    );
    assert_eq!(revealed.private_message_of("bob").fields["content"], ANSWER);
    for elsewhere in [BOBS_POST, BOB_TO_CAROL] {
        assert!(!revealed.text.contains(elsewhere), "{}", revealed.text);
    }
    assert!(!revealed.text.contains(FORGOTTEN_NOTE));

    run_ok(&app.db.url, &["forget", "alice", "--yes"]).await;
    let forgotten = audit(&app.db.url, "alice", true).await;
    let mut after_forgetting = expected.to_vec();
    after_forgetting.extend([
        ("UserForgotten", "alice"),
        ("MessageRemoved", first.as_str()),
        ("MessageRemoved", second.as_str()),
        ("ParticipantForgotten", ALICE_AND_BOB),
    ]);
    assert_eq!(forgotten.kinds(), after_forgetting, "{}", forgotten.text);
    assert_eq!(
        forgotten.text.lines().last(),
        Some(FORGOTTEN_NOTE),
        "{}",
        forgotten.text
    );
    // Her key is gone: what it sealed reads empty. Bob's answer was sealed with his key.
    let registered = forgotten.row("UserRegistered", "alice");
    assert_eq!(registered.fields["email"], "");
    assert_eq!(registered.fields["password_hash"], "");
    for id in [&first, &second] {
        assert_eq!(forgotten.row("MessagePosted", id).fields["content"], "");
    }
    assert_eq!(forgotten.private_message_of("alice").fields["content"], "");
    assert_eq!(
        forgotten.private_message_of("bob").fields["content"],
        ANSWER
    );
    for secret in [ALICE_EMAIL, ALICE_FIRST, ALICE_SECOND, WHISPER] {
        assert!(
            !forgotten.text.contains(secret),
            "{secret:?}:\n{}",
            forgotten.text
        );
    }
    assert_eq!(
        forgotten.row("ParticipantForgotten", ALICE_AND_BOB).fields["participant"],
        "alice"
    );
    for row in &forgotten.rows[expected.len()..] {
        assert!(
            row.request.starts_with("minitwit-replay-forget-"),
            "the tool's forgetting: {row:?}"
        );
    }
    app.stop().await;
}

/// The state of the live views: every projection version's checkpoint row, the rows of
/// every table of every version's schema, and the log's size.
async fn live_state(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let versions: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT projection, version, row_to_json(c)::text FROM projection_checkpoints AS c \
         ORDER BY projection, version",
    )
    .fetch_all(pool)
    .await
    .expect("reading the projection versions");
    let mut state = BTreeMap::new();
    state.insert(
        "events".to_owned(),
        vec![event_count(pool).await.to_string()],
    );
    state.insert(
        "checkpoints".to_owned(),
        versions.iter().map(|(_, _, row)| row.clone()).collect(),
    );
    for (projection, version, _) in &versions {
        let schema = projections::projection::schema_name(projection, *version);
        for (table, rows) in schema_rows(pool, &schema).await {
            state.insert(format!("{schema}.{table}"), rows);
        }
    }
    state
}

/// A message as `as-of` lists it.
struct Listed {
    position: i64,
    posted_at: DateTime<Utc>,
    author: &'static str,
    content: &'static str,
}

impl Listed {
    fn line(&self) -> String {
        self.line_with(self.content)
    }

    fn line_with(&self, content: &str) -> String {
        format!(
            "{}\t{}\t{}\t{content}\n",
            self.position,
            self.posted_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.author
        )
    }
}

/// The listing of `messages`, in the order given.
fn listing(messages: &[&Listed]) -> String {
    if messages.is_empty() {
        return "(no messages)\n".to_owned();
    }
    messages.iter().map(|message| message.line()).collect()
}

#[tokio::test]
async fn as_of_shows_each_timeline_as_it_stood_at_a_position_or_a_time() {
    let app = spawn_app().await;
    let sim = app.client();
    let pool = &app.db.pool;
    for name in ["alice", "bob"] {
        assert_no_content(
            sim.register(name, &format!("{name}@example.org"), "pw", None)
                .await,
        );
    }
    let registered = head(pool).await;
    // Each post is one event, so the head after it is its position.
    let post = |author: &'static str, content: &'static str| {
        let sim = sim.clone();
        async move {
            assert_no_content(sim.tweet(author, content, None).await);
            let position = head(pool).await;
            let (id, posted_at) = posted(pool, content).await;
            (
                id,
                Listed {
                    position,
                    posted_at,
                    author,
                    content,
                },
            )
        }
    };
    let (a1_id, a1) = post("alice", "a1").await;
    let (_, b1) = post("bob", "b1").await;
    // A time between two steps, whole seconds from both, as the log records them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, a2) = post("alice", "a2").await;
    assert_no_content(sim.follow("bob", "alice", None).await);
    let followed = head(pool).await;
    run_ok(&app.db.url, &["flag", &a1_id, "--reason", "spam"]).await;
    let flagged = head(pool).await;
    assert_no_content(sim.unfollow("bob", "alice", None).await);
    let unfollowed = head(pool).await;
    run_ok(&app.db.url, &["unflag", &a1_id, "--reason", "appeal"]).await;
    let unflagged = head(pool).await;

    await_projections_at_head(pool, Duration::from_secs(30)).await;
    let live_before = live_state(pool).await;

    let as_of = |at: String, timeline: &'static str| {
        let url = app.db.url.clone();
        async move { run_ok(&url, &["as-of", &at, timeline]).await }
    };
    let [registered, after_a1, after_b1, after_a2, followed, flagged, unfollowed, unflagged] = [
        registered,
        a1.position,
        b1.position,
        a2.position,
        followed,
        flagged,
        unfollowed,
        unflagged,
    ]
    .map(|position| position.to_string());
    let between_in_utc = between.to_rfc3339_opts(SecondsFormat::Millis, true);
    let between_elsewhere = between
        .with_timezone(&FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339();
    let long_before = "2000-01-01T00:00:00Z";
    // At, timeline, the listing, and why.
    let cases: [(&str, &str, &[&Listed], &str); 19] = [
        (&registered, "public", &[], "nothing posted yet"),
        (&after_a1, "public", &[&a1], "through a1 itself"),
        (&after_b1, "public", &[&b1, &a1], "newest first"),
        (&after_b1, "own:bob", &[&b1], "bob follows nobody"),
        (&after_a2, "own:bob", &[&b1], "before following alice"),
        (&after_a2, "user:alice", &[&a2, &a1], "alice's only"),
        (&followed, "own:bob", &[&a2, &b1, &a1], "bob follows alice"),
        (&followed, "own:alice", &[&a2, &a1], "she follows nobody"),
        (&flagged, "own:bob", &[&a2, &b1], "a1 flagged"),
        (&flagged, "public", &[&a2, &b1], "a1 flagged"),
        (&flagged, "user:alice", &[&a2], "a1 flagged"),
        (&followed, "public", &[&a2, &b1, &a1], "before the flag"),
        (&unfollowed, "own:bob", &[&b1], "unfollowed"),
        (&unfollowed, "public", &[&a2, &b1], "still flagged"),
        (&unflagged, "public", &[&a2, &b1, &a1], "unflagged"),
        (&unflagged, "own:bob", &[&b1], "still unfollowed"),
        (&between_in_utc, "public", &[&b1, &a1], "between b1 and a2"),
        (&between_elsewhere, "user:alice", &[&a1], "at +02:00"),
        (long_before, "public", &[], "before the log began"),
    ];
    for (at, timeline, expected, why) in cases {
        let shown = as_of(at.to_owned(), timeline).await;
        assert_eq!(shown, listing(expected), "as-of {at} {timeline}: {why}");
    }
    let newest = run_ok(
        &app.db.url,
        &["as-of", &unflagged, "public", "--limit", "1"],
    )
    .await;
    assert_eq!(newest, listing(&[&a2]), "--limit 1: the newest only");

    // Built in the tool's process: the views, their versions and the log are as they were.
    assert_eq!(
        live_state(pool).await,
        live_before,
        "as-of changed the live views"
    );

    // Once alice is forgotten her texts cannot be read, even as of before.
    run_ok(&app.db.url, &["forget", "alice", "--yes"]).await;
    let removed = "(removed: the author was forgotten)";
    assert_eq!(
        as_of(followed, "public").await,
        [a2.line_with(removed), b1.line(), a1.line_with(removed)].concat(),
    );
    assert_eq!(
        as_of(head(pool).await.to_string(), "public").await,
        listing(&[&b1]),
        "her messages are removed now"
    );
    app.stop().await;
}

#[tokio::test]
async fn as_of_refuses_a_timeline_or_point_it_cannot_read_with_a_usage_error() {
    let app = spawn_app().await;
    let cases = [
        (
            ["as-of", "1", "everyone"],
            "is not a timeline: say public, user:NAME or own:NAME",
        ),
        (["as-of", "1", "user:"], "is not a timeline"),
        (["as-of", "1", "follows:bob"], "is not a timeline"),
        (
            ["as-of", "yesterday", "public"],
            "is neither a log position nor an RFC 3339 time",
        ),
        (
            ["as-of", "2026-13-01T00:00:00Z", "public"],
            "is neither a log position",
        ),
    ];
    for (args, message) in cases {
        let output = run(&app.db.url, &args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "clap's usage error: {args:?}: {stderr}"
        );
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing listed");
    }
    app.stop().await;
}

/// A position that no event has — past the head, or in a gap that a failed insert left in
/// the identity sequence, as every optimistic-concurrency conflict does — is not the empty
/// log: it is refused, naming the position, or read as the log through it; never listed as
/// "(no messages)" while the messages before it stand.
#[tokio::test]
async fn as_of_a_position_no_event_has_does_not_show_an_empty_timeline() {
    let app = spawn_app().await;
    let sim = app.client();
    let pool = &app.db.pool;
    assert_no_content(sim.register("alice", "alice@example.org", "pw", None).await);
    assert_no_content(sim.tweet("alice", "before the gap", None).await);
    // A second registration event of alice's stream collides on its key, as a losing
    // concurrent writer does, and burns the next position.
    let collision = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) \
         SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
                metadata FROM events WHERE aggregate_id = 'alice' AND sequence = 1",
    )
    .execute(pool)
    .await;
    assert!(collision.is_err(), "the stream's key refuses the copy");
    let gap = head(pool).await + 1;
    assert_no_content(sim.tweet("alice", "after the gap", None).await);
    assert!(head(pool).await > gap, "the gap lies inside the log");

    let past_head = head(pool).await + 10;
    for (position, readable, unreadable) in [
        (gap, "before the gap", Some("after the gap")),
        (past_head, "after the gap", None),
    ] {
        let position = position.to_string();
        let output = run(&app.db.url, &["as-of", &position, "public"]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.success() {
            assert!(
                stdout.contains(readable),
                "as-of {position}: the log through it: {stdout}"
            );
            if let Some(later) = unreadable {
                assert!(!stdout.contains(later), "as-of {position}: {stdout}");
            }
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains(&position),
                "as-of {position}: refused, naming the position: {stderr}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn forget_needs_yes_without_a_terminal_repeats_harmlessly_and_names_an_unknown_user() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("alice", "alice@example.org", "pw", None).await);
    let pool = &app.db.pool;
    let before = event_count(pool).await;

    // The tool's stdin is not a terminal here: nobody can be asked, so nothing is done.
    let unasked = run(&app.db.url, &["forget", "alice"]).await;
    assert!(!unasked.status.success());
    let stderr = String::from_utf8_lossy(&unasked.stderr);
    assert!(stderr.contains("--yes"), "says how to go ahead: {stderr}");
    assert_eq!(event_count(pool).await, before, "nothing recorded");
    assert_no_content(sim.tweet("alice", "still mine", None).await);
    let before = event_count(pool).await;

    let forgot = run_ok(&app.db.url, &["forget", "alice", "--yes"]).await;
    assert!(
        forgot.starts_with("alice: forgotten: key deleted"),
        "{forgot}"
    );
    let forgotten_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = 'alice' AND event_type = 'UserForgotten'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(forgotten_events, 1);
    let after = event_count(pool).await;
    assert!(after > before);

    // Again: it finishes what may be left, and nothing is left, so nothing is recorded.
    let again = run_ok(&app.db.url, &["forget", "alice", "--yes"]).await;
    assert!(
        again.starts_with("alice: forgotten: no key was left"),
        "{again}"
    );
    assert_eq!(event_count(pool).await, after);

    let unknown = run(&app.db.url, &["forget", "nobody", "--yes"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stdout).trim(),
        "nobody: there is no such user"
    );
    assert_eq!(
        event_count(pool).await,
        after,
        "nothing recorded for nobody"
    );
    app.stop().await;
}

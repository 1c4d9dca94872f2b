//! `minitwit-replay import-legacy`: original ITU-MiniTwit SQLite databases, generated here
//! with the original's schema, imported by the real binary into a running server's database,
//! then checked through the server's own front doors — the web login with the old passwords,
//! and the simulator API's timelines and follow lists.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;
use sqlx::PgPool;

use test_support::app::spawn_app;
use test_support::database::TestDatabase;
use test_support::sim_client::{follow_names, SimClient};
use test_support::web_client::WebClient;

use crate::tool::{run, run_ok, scratch_path};

/// Real werkzeug hashes, as the original stored them, with the passwords they were made from:
/// werkzeug 3.1.8's `generate_password_hash(password, method=...)`, e.g.
/// `python3 -c 'from werkzeug.security import generate_password_hash as g;
/// print(g("hunter2", method="pbkdf2:sha256:1000"))'`. Few rounds and a small scrypt cost, so
/// a debug build checks them quickly. The last is werkzeug 2.2.3's `method="sha1"`, the
/// original's default, which the course's 2026 hand-out holds and werkzeug 2.3 on cannot read.
const ACCOUNTS: [(&str, &str); 5] = [
    ("default", "pbkdf2:sha256:1000$5I32iPzJaCs968NY$9ffc7f84b53731823121ee2352864abe91ffaa9c856f1f081d9a11924e4594b3"),
    ("hunter2", "pbkdf2:sha256:1000$Th9HXVzZudPYyUvb$689343099dcfc8e554f03d2f0dac201c65a843943e589c6b611ed5038428021d"),
    ("æøå secret", "pbkdf2:sha256:1000$pwQVXK6gVnWLQIeH$59c8554176efbfe9db1d9de172d464c793bd6ca70aabee365807982902d71192"),
    ("scrypt pw", "scrypt:1024:8:1$QaYSX7087zB7MqnJ$98007b2c7615a24fbefd9d8b1b161878a14f5f83d5bfc2670d33eed3bb451d0a4d3f55f8325c426e557b47a54a895141dabf37be1690b443ec741a500823027f"),
    ("sha1 pw", "sha1$ZkE7O2EABMSQTEra$446d29f6943c34b8422ae786000bf5de18f9d725"),
];

/// The generated database's users, `user_id` 1 to 20. "1337" is stored as an integer (the
/// original's `string` columns have NUMERIC affinity) and must come back as the name.
const NAMES: [&str; 20] = [
    "Roger Histand",
    "Jürgen Möller",
    "Åse Ødegård",
    "李小龙",
    "Zoë O'Brien",
    "1337",
    "Mary \"Typhoid\" Mallon",
    "<b>not bold</b>",
    "Ελένη Παπαδοπούλου",
    "Дмитрий",
    "José María",
    "emoji 🐦 bird",
    "a  double  space",
    "Søren Kierkegaard",
    "O'Neil & Sons",
    "حسن",
    "trailing space ",
    "Ünïcödé",
    "日本語 ユーザー",
    // A name new accounts may no longer take (it is the public timeline's address): an
    // imported account keeps it, with its pages under /users.
    "public",
];

/// Generated messages with these ids are the importable ones.
const MESSAGES: i64 = 200;

/// A `user` row.
#[derive(Clone)]
struct User {
    id: i64,
    username: String,
    email: String,
    pw_hash: String,
}

/// A `message` row.
#[derive(Clone)]
struct Message {
    id: i64,
    author: i64,
    text: String,
    pub_date: Option<i64>,
    flagged: bool,
}

/// The rows of an original MiniTwit database.
#[derive(Clone)]
struct LegacyDb {
    users: Vec<User>,
    /// `(who_id, whom_id)`, in insertion order.
    follows: Vec<(i64, i64)>,
    messages: Vec<Message>,
}

fn user(id: i64, username: &str, email: &str) -> User {
    User {
        id,
        username: username.to_owned(),
        email: email.to_owned(),
        pw_hash: ACCOUNTS[id as usize % ACCOUNTS.len()].1.to_owned(),
    }
}

fn message(id: i64, author: i64, text: &str, pub_date: i64) -> Message {
    Message {
        id,
        author,
        text: text.to_owned(),
        pub_date: Some(pub_date),
        flagged: false,
    }
}

impl LegacyDb {
    /// Twenty good users, two the import must skip (no `@` in the email; a second "Åse
    /// Ødegård"); follows with duplicates and a self-follow; 200 good messages with HTML,
    /// quotes, non-ASCII, numbers and nothing as text, dates out of id order and some equal,
    /// every 13th flagged; and rows naming nobody, a skipped user, no date, or a NUL.
    fn generated() -> Self {
        let mut users: Vec<User> = (1..)
            .zip(NAMES)
            .map(|(id, name)| user(id, name, &format!("user{id}@example.org")))
            .collect();
        users.push(user(21, "no email", "nobody.example.org"));
        users.push(user(22, NAMES[2], "second@example.org"));

        let mut follows = vec![(1, 1)];
        for who in 1..=20 {
            for step in [3, 7, 11] {
                if (who + step) % 4 != 0 {
                    follows.push((who, (who * step) % 20 + 1));
                }
            }
        }
        follows.extend([(2, 9), (7, 10), (1, 1), (5, 999), (21, 1)]);

        let decorations = [
            "<b>bold</b> & <script>alert(1)</script>",
            "\"double\" and 'single' quotes",
            "æøå ÆØÅ 😀 — ünïcödé",
            "plain text",
        ];
        let mut messages = Vec::new();
        let mut previous_date = 0;
        for id in 1..=MESSAGES {
            let author = (id * 7) % 20 + 1;
            let text = match id {
                _ if id % 50 == 0 => (id * 1000 + 7).to_string(),
                _ if id % 67 == 0 => String::new(),
                _ => format!("message {id}: {}", decorations[id as usize % 4]),
            };
            // Dates scattered over the ids (919 and 1000 are coprime), every tenth equal to
            // the one before.
            let pub_date = if id % 10 == 0 {
                previous_date
            } else {
                1_300_000_000 + (id * 919) % 1000 * 37
            };
            previous_date = pub_date;
            messages.push(Message {
                flagged: id % 13 == 0,
                ..message(id, author, &text, pub_date)
            });
        }
        messages.extend([
            message(201, 999, "by a deleted user", 1_300_000_000),
            message(202, 21, "by the user without email", 1_300_000_000),
            message(203, 22, "by the second Åse", 1_300_000_000),
            Message {
                pub_date: None,
                ..message(204, 1, "undated", 0)
            },
            message(205, 2, "nul\0byte", 1_300_000_000),
        ]);
        Self {
            users,
            follows,
            messages,
        }
    }

    /// Writes the database with the original's schema to a new file.
    fn write(&self) -> PathBuf {
        let path = scratch_path("legacy-import", "minitwit.db");
        let db = Connection::open(&path).expect("creating the legacy database");
        db.execute_batch(
            "create table user (user_id integer primary key autoincrement,
                 username string not null, email string not null, pw_hash string not null);
             create table follower (who_id integer, whom_id integer);
             create table message (message_id integer primary key autoincrement,
                 author_id integer not null, text string not null, pub_date integer,
                 flagged integer);",
        )
        .expect("creating the original's tables");
        for user in &self.users {
            db.execute(
                "insert into user (user_id, username, email, pw_hash) values (?1, ?2, ?3, ?4)",
                (user.id, &user.username, &user.email, &user.pw_hash),
            )
            .expect("inserting a user");
        }
        for follow in &self.follows {
            db.execute(
                "insert into follower (who_id, whom_id) values (?1, ?2)",
                *follow,
            )
            .expect("inserting a follow");
        }
        for message in &self.messages {
            db.execute(
                "insert into message (message_id, author_id, text, pub_date, flagged) \
                 values (?1, ?2, ?3, ?4, ?5)",
                (
                    message.id,
                    message.author,
                    &message.text,
                    message.pub_date,
                    i64::from(message.flagged),
                ),
            )
            .expect("inserting a message");
        }
        path
    }

    fn name(&self, id: i64) -> &str {
        &self.users[id as usize - 1].username
    }

    /// The good users' `(name, password)`.
    fn accounts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.users
            .iter()
            .filter(|user| user.id <= 20)
            .map(|user| (user.username.as_str(), password_of(&user.pw_hash)))
    }

    /// The importable follows, duplicates collapsed, in first-seen order.
    fn distinct_follows(&self) -> Vec<(i64, i64)> {
        let mut seen = HashSet::new();
        self.follows
            .iter()
            .copied()
            .filter(|&(who, whom)| who <= 20 && whom <= 20 && seen.insert((who, whom)))
            .collect()
    }

    /// Rows repeating an earlier row's pair.
    fn duplicate_follows(&self) -> usize {
        let mut seen = HashSet::new();
        self.follows
            .iter()
            .filter(|&&pair| !seen.insert(pair))
            .count()
    }

    /// Whom user `who` follows, by name, in the order followed.
    fn followees(&self, who: i64) -> Vec<String> {
        self.distinct_follows()
            .into_iter()
            .filter(|&(follower, _)| follower == who)
            .map(|(_, whom)| self.name(whom).to_owned())
            .collect()
    }

    /// The importable messages that are not flagged: `(author, text, pub_date)`, newest
    /// first, equal dates in reverse id order — the original's order, reversed.
    fn visible(&self) -> Vec<(String, String, i64)> {
        let mut visible: Vec<&Message> = self
            .messages
            .iter()
            .filter(|message| message.id <= MESSAGES && !message.flagged)
            .collect();
        visible.sort_by_key(|message| std::cmp::Reverse((message.pub_date, message.id)));
        visible
            .into_iter()
            .map(|message| {
                (
                    self.name(message.author).to_owned(),
                    message.text.clone(),
                    message.pub_date.expect("a dated message"),
                )
            })
            .collect()
    }

    fn flagged(&self) -> usize {
        let flagged = |message: &&Message| message.id <= MESSAGES && message.flagged;
        self.messages.iter().filter(flagged).count()
    }
}

fn password_of(pw_hash: &str) -> &'static str {
    let (password, _) = ACCOUNTS
        .iter()
        .find(|(_, hash)| *hash == pw_hash)
        .expect("a fixture hash");
    password
}

async fn import(database_url: &str, path: &Path) -> String {
    let path = path.to_str().expect("a UTF-8 path");
    run_ok(database_url, &["import-legacy", path]).await
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("counting events")
}

/// Waits until every serving projection has applied every event it reads (the tool wrote
/// without waiting for the views).
async fn wait_until_projected(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for projection in projections::all() {
        loop {
            let caught_up: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM projection_checkpoints c \
                 WHERE c.projection = $1 AND c.state = 'active' AND NOT EXISTS ( \
                     SELECT 1 FROM events e WHERE e.aggregate_type = $2 \
                       AND (e.transaction_id, e.global_position) > (c.last_tx, c.last_position)))",
            )
            .bind(projection.name())
            .bind(projection.aggregate_type())
            .fetch_one(pool)
            .await
            .expect("reading a checkpoint");
            if caught_up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never caught up",
                projection.name()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A message listing as `(user, content, pub_date)`, in order.
fn listed(body: &Value) -> Vec<(String, String, i64)> {
    body.as_array()
        .expect("a message listing")
        .iter()
        .map(|message| {
            (
                message["user"].as_str().expect("user").to_owned(),
                message["content"].as_str().expect("content").to_owned(),
                message["pub_date"].as_i64().expect("pub_date"),
            )
        })
        .collect()
}

async fn public_timeline(client: &SimClient) -> Vec<(String, String, i64)> {
    listed(&client.public_msgs(Some(-1), None).await.unwrap().body)
}

async fn user_timeline(client: &SimClient, user: &str) -> Vec<(String, String, i64)> {
    let reply = client.user_msgs(user, Some(-1), None).await.unwrap();
    assert!(reply.status.is_success(), "{user:?}: {reply:?}");
    listed(&reply.body)
}

async fn followees(client: &SimClient, user: &str) -> Vec<String> {
    let reply = client.follows(user, Some(-1), None).await.unwrap();
    assert!(reply.status.is_success(), "{user:?}: {reply:?}");
    follow_names(&reply.body)
}

#[tokio::test]
async fn a_legacy_database_imports_with_its_passwords_timelines_and_follows() {
    let app = spawn_app().await;
    let legacy = LegacyDb::generated();
    let path = legacy.write();

    let started = Instant::now();
    let report = import(&app.db.url, &path).await;
    eprintln!("{report}\n(the whole command: {:?})", started.elapsed());

    let distinct_follows = legacy.distinct_follows().len();
    let duplicates = legacy.duplicate_follows();
    for line in [
        "users: 20 imported, 0 already present, 2 skipped".to_owned(),
        format!(
            "follows: {distinct_follows} imported, 0 already present, 2 skipped; {duplicates} \
             duplicates collapsed"
        ),
        format!(
            "messages: {MESSAGES} imported, 0 already present, 5 skipped; {} flagged",
            legacy.flagged()
        ),
        "  user 21: You have to enter a valid email address".to_owned(),
        "  user 22: user 3 has the same username".to_owned(),
        "whom_id 999 is no user_id in the user table".to_owned(),
        "who_id 21 names a user that was skipped".to_owned(),
        "  message 201: author_id 999 is no user_id in the user table".to_owned(),
        "  message 202: author_id 21 names a user that was skipped".to_owned(),
        "  message 203: author_id 22 names a user that was skipped".to_owned(),
        "  message 204: pub_date is NULL".to_owned(),
        "  message 205: A message cannot contain the NUL character".to_owned(),
    ] {
        assert!(report.contains(&line), "{line:?} in:\n{report}");
    }
    assert!(
        report.contains(&path.display().to_string()),
        "names the source"
    );

    wait_until_projected(&app.db.pool).await;
    // Old passwords, checked against the werkzeug hashes (pbkdf2, scrypt, and the pre-2.3
    // sha1 of the last).
    for name in ["Roger Histand", "Jürgen Möller", "Åse Ødegård", "李小龙"] {
        let (_, password) = legacy
            .accounts()
            .find(|(user, _)| *user == name)
            .expect("a good user");
        WebClient::new(&app.web_url)
            .login(name, password)
            .await
            .assert_contains("You were logged in");
    }

    let client = app.client();
    let visible = legacy.visible();
    assert_eq!(public_timeline(&client).await, visible);
    for (id, name) in (1..).zip(NAMES) {
        let own: Vec<_> = visible
            .iter()
            .filter(|(author, _, _)| author == name)
            .cloned()
            .collect();
        assert_eq!(
            user_timeline(&client, name).await,
            own,
            "{name:?}'s timeline"
        );
        assert_eq!(
            followees(&client, name).await,
            legacy.followees(id),
            "{name:?}'s follows"
        );
    }
    // The account named like the public timeline keeps its name and has its pages under
    // /users, where the timelines link to; a new account cannot take such a name.
    let reserved = legacy.accounts().find(|(user, _)| *user == "public");
    let (_, password) = reserved.expect("an account named public");
    let browser = WebClient::new(&app.web_url);
    browser
        .login("public", password)
        .await
        .assert_contains("You were logged in");
    let own = browser.get("/users/public").await;
    own.assert_contains("public's Timeline");
    // Each message's text begins with its number, which no escaping changes.
    for (_, text, _) in visible.iter().filter(|(author, _, _)| author == "public") {
        if let Some((number, _)) = text.split_once(':') {
            own.assert_contains(&format!("{number}:"));
        }
    }
    assert!(
        visible.iter().any(|(author, _, _)| author == "public"),
        "the account has messages to show"
    );
    WebClient::new(&app.web_url)
        .get("/public")
        .await
        .assert_contains("href=\"/users/public\"");
    let taken = client
        .register("Public", "p@example.org", "pw", None)
        .await
        .unwrap();
    assert_eq!(taken.status, reqwest::StatusCode::BAD_REQUEST, "{taken:?}");

    let flagged: Vec<&str> = legacy
        .messages
        .iter()
        .filter(|message| message.flagged)
        .map(|message| message.text.as_str())
        .collect();
    assert!(!flagged.is_empty());
    assert!(public_timeline(&client)
        .await
        .iter()
        .all(|(_, text, _)| !flagged.contains(&text.as_str())));
}

#[tokio::test]
async fn importing_the_same_database_again_adds_no_event() {
    let db = TestDatabase::create().await;
    let legacy = LegacyDb::generated();
    let path = legacy.write();
    import(&db.url, &path).await;
    let events = event_count(&db.pool).await;
    assert!(events > 0);

    let again = import(&db.url, &path).await;

    assert_eq!(event_count(&db.pool).await, events, "{again}");
    let (follows, duplicates) = (legacy.distinct_follows().len(), legacy.duplicate_follows());
    for line in [
        "users: 0 imported, 20 already present, 2 skipped".to_owned(),
        format!(
            "follows: 0 imported, {follows} already present, 2 skipped; {duplicates} duplicates"
        ),
        format!("messages: 0 imported, {MESSAGES} already present, 5 skipped; 0 flagged"),
    ] {
        assert!(again.contains(&line), "{line:?} in:\n{again}");
    }
}

/// An import that stopped halfway (here: one of an older copy with half the messages and
/// follows, and no flags yet) is finished by importing the whole file; what people and
/// moderators changed since — an unfollow, an unflag — stays as they left it.
#[tokio::test]
async fn a_reimport_finishes_an_earlier_one_and_keeps_later_changes() {
    let app = spawn_app().await;
    let client = app.client();
    let full = LegacyDb::generated();
    let mut half = full.clone();
    half.follows.truncate(full.follows.len() / 2);
    half.messages.retain(|message| message.id <= MESSAGES / 2);
    for message in &mut half.messages {
        message.flagged = false;
    }
    import(&app.db.url, &half.write()).await;
    wait_until_projected(&app.db.pool).await;

    // A follow undone since, and a message a moderator flagged and then showed again.
    let (who, whom) = half.distinct_follows()[3];
    let (who, whom) = (full.name(who), full.name(whom));
    let reply = client.unfollow(who, whom, None).await.unwrap();
    assert!(reply.status.is_success(), "{reply:?}");
    let shown = full
        .messages
        .iter()
        .find(|message| message.flagged && message.id <= MESSAGES / 2)
        .expect("a flagged message in the first half");
    let author = full.name(shown.author);
    let listing: Value = serde_json::from_str(
        &run_ok(
            &app.db.url,
            &["messages", "--author", author, "--limit", "1000", "--json"],
        )
        .await,
    )
    .unwrap();
    let shown_id = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|listed| listed["text"] == shown.text.as_str())
        .expect("the message is listed")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for decision in ["flag", "unflag"] {
        run_ok(&app.db.url, &[decision, &shown_id]).await;
    }

    let report = import(&app.db.url, &full.write()).await;

    let follows = full.distinct_follows().len();
    let followed_before = half.distinct_follows().len();
    let half_messages = MESSAGES / 2;
    for line in [
        "users: 0 imported, 20 already present, 2 skipped".to_owned(),
        format!(
            "follows: {} imported, {followed_before} already present,",
            follows - followed_before
        ),
        format!(
            "messages: {half_messages} imported, {half_messages} already present, 5 skipped; \
             {} flagged",
            full.flagged() - 1
        ),
    ] {
        assert!(report.contains(&line), "{line:?} in:\n{report}");
    }
    wait_until_projected(&app.db.pool).await;
    let mut visible = full.visible();
    let shown_at = visible
        .iter()
        .position(|(_, _, date)| *date < shown.pub_date.unwrap())
        .unwrap_or(visible.len());
    visible.insert(
        shown_at,
        (
            author.to_owned(),
            shown.text.clone(),
            shown.pub_date.unwrap(),
        ),
    );
    assert_eq!(public_timeline(&client).await, visible);
    assert!(!followees(&client, who).await.contains(&whom.to_owned()));
}

/// A name someone registered on the new server before the import is theirs: the legacy user
/// of that name is skipped, and nothing of theirs is attached to the other account.
#[tokio::test]
async fn a_name_taken_by_another_account_is_not_merged_into_it() {
    let app = spawn_app().await;
    let client = app.client();
    let reply = client
        .register("alice", "alice@new.example", "new password", None)
        .await
        .unwrap();
    assert!(reply.status.is_success(), "{reply:?}");
    let legacy = LegacyDb {
        users: vec![
            user(1, "alice", "alice@old.example"),
            user(2, "bob", "bob@old.example"),
        ],
        follows: vec![(2, 1), (1, 2)],
        messages: vec![
            message(1, 1, "legacy alice", 1_300_000_000),
            message(2, 2, "legacy bob", 1_300_000_001),
        ],
    };

    let report = import(&app.db.url, &legacy.write()).await;

    for line in [
        "users: 1 imported, 0 already present, 1 skipped",
        "follows: 0 imported, 0 already present, 2 skipped; 0 duplicates collapsed",
        "messages: 1 imported, 0 already present, 1 skipped",
        "user 1: the username belongs to another account, not imported from this row",
    ] {
        assert!(report.contains(line), "{line:?} in:\n{report}");
    }
    wait_until_projected(&app.db.pool).await;
    assert_eq!(
        public_timeline(&client).await,
        [("bob".to_owned(), "legacy bob".to_owned(), 1_300_000_001)]
    );
    assert!(followees(&client, "alice").await.is_empty());
}

#[tokio::test]
async fn unreadable_sources_fail_clearly_and_import_nothing() {
    let db = TestDatabase::create().await;
    let missing = scratch_path("legacy-import", "missing.db");
    let text_file = scratch_path("legacy-import", "notes.txt");
    std::fs::write(&text_file, "These are notes, not a database.\n".repeat(40)).unwrap();
    let other_schema = scratch_path("legacy-import", "other.db");
    Connection::open(&other_schema)
        .unwrap()
        .execute_batch("create table user (user_id integer primary key, username string);")
        .unwrap();

    for (path, problem) in [
        (&missing, "No such file or directory"),
        (&text_file, "is not an SQLite database"),
        (
            &other_schema,
            "is not an ITU-MiniTwit database: it has no table follower, no table message",
        ),
    ] {
        let path = path.to_str().unwrap();
        let output = run(&db.url, &["import-legacy", path]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{path}: {stderr}");
        assert!(
            stderr.contains(path) && stderr.contains(problem),
            "{path}: {problem:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(event_count(&db.pool).await, 0);
}

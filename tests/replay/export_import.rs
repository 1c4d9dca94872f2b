//! `minitwit-replay export` and `import`: a log exported from one database and imported into a
//! fresh one must be the same events in the same order — byte for byte in the json columns,
//! and in the order the projectors read — and must project to the same views; bad input and a
//! non-empty store are refused without writing anything; new events follow the imported ones.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use replay_tool::export::{export_to, import_from, MAX_LINE_BYTES};
use serde_json::{json, Value};
use sqlx::PgPool;

use test_support::app::{spawn_app, spawn_app_on};
use test_support::database::TestDatabase;
use test_support::sim_client::{assert_no_content, authored};
use test_support::views::{append_message_event, schema_rows};

use crate::tool::{command, run, run_ok, scratch_path};

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Every event of `pool`, every column but `transaction_id` (json columns as their stored
/// text), in log order.
async fn log_rows(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT json_build_array(global_position, recorded_at, aggregate_type, aggregate_id, \
                sequence, event_type, event_version, payload, metadata)::text \
         FROM events ORDER BY transaction_id, global_position",
    )
    .fetch_all(pool)
    .await
    .expect("reading the log")
}

/// The positions of `pool`'s events, in log order.
async fn positions_in_log_order(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY transaction_id, global_position",
    )
    .fetch_all(pool)
    .await
    .expect("reading positions")
}

/// Every row of every table of the active view versions, as sorted JSON texts, by
/// `projection.table`.
async fn view_rows(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let active: Vec<(String, i32)> = sqlx::query_as(
        "SELECT projection, version FROM projection_checkpoints WHERE state = 'active'",
    )
    .fetch_all(pool)
    .await
    .expect("reading the active versions");
    let mut views = BTreeMap::new();
    for (projection, version) in active {
        let schema = projections::projection::schema_name(&projection, version);
        for (table, rows) in schema_rows(pool, &schema).await {
            views.insert(format!("{projection}.{table}"), rows);
        }
    }
    views
}

/// The identity sequence's last value (none before its first use).
async fn sequence_value(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT pg_sequence_last_value(pg_get_serial_sequence('events', 'global_position')::regclass)",
    )
    .fetch_one(pool)
    .await
    .expect("reading the identity sequence")
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("counting events")
}

/// Inserts an event with the json columns' text exactly as given.
async fn insert_event(
    pool: &PgPool,
    aggregate_id: &str,
    sequence: i64,
    (event_type, event_version): (&str, &str),
    payload: &str,
    metadata: &str,
) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('message', $1, $2, $3, $4, $5::json, $6::json)",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .bind(event_type)
    .bind(event_version)
    .bind(payload)
    .bind(metadata)
    .execute(pool)
    .await
    .expect("inserting an event");
}

/// Waits until `query` (one boolean) holds on `pool`.
async fn eventually(pool: &PgPool, query: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !sqlx::query_scalar::<_, bool>(query)
        .fetch_one(pool)
        .await
        .expect("polling")
    {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_exported_log_imports_as_the_same_events_in_the_same_order_and_views() {
    let source = spawn_app().await;
    let sim = source.client();
    let users = ["alice", "Bob Smith", "Jürgen Ærø", "小明 🐦"];
    for (n, user) in users.iter().enumerate() {
        let email = format!("u{n}@example.org");
        assert_no_content(sim.register(user, &email, "pw", None).await);
    }
    let messages = [
        (0, "<b>bold</b> & <script>alert(1)</script>"),
        (1, "\"double\", 'single' and `back` quotes"),
        (2, "line one\nline two\r\nline three"),
        (3, "emoji 🎉👍🏽, Ünïcödé, 日本語, עברית"),
        (0, "tab\there, backslash \\ and a literal \\u0041"),
        (1, ""),
    ];
    for (author, content) in messages {
        assert_no_content(sim.tweet(users[author], content, None).await);
    }
    for (who, whom) in [(0, 1), (0, 2), (0, 3), (1, 0), (2, 3)] {
        assert_no_content(sim.follow(users[who], users[whom], None).await);
    }
    assert_no_content(sim.unfollow(users[0], users[2], None).await);
    assert_no_content(sim.unfollow(users[2], users[3], None).await);
    assert_no_content(sim.follow(users[2], users[3], None).await);

    let flagged = test_support::log::opened_events(&source.db.pool, "MessagePosted")
        .await
        .into_iter()
        .find(|posted| posted.fields["content"] == messages[0].1)
        .expect("the message is in the log")
        .aggregate_id;
    insert_event(
        &source.db.pool,
        &flagged,
        2,
        ("MessageFlagged", "2.0"),
        r#"{"MessageFlagged": {"flagged_at": "2026-11-27T12:00:00Z", "moderation": {"moderator": "a", "reason": "b"}}}"#,
        "{}",
    )
    .await;
    let flag_projected = format!(
        "SELECT coalesce(bool_or(flagged), false) FROM timeline_v1.messages \
         WHERE message_id = '{flagged}'"
    );
    eventually(&source.db.pool, &flag_projected, "the flag is projected").await;
    assert_no_content(sim.tweet(users[1], "after the flag", None).await);

    // Exported while the server runs.
    let file = scratch_path("export-import", "log.jsonl");
    let exported = run_ok(&source.db.url, &["export", arg(&file)]).await;
    let events = event_count(&source.db.pool).await;
    assert!(
        exported.contains(&format!("exported {events} events")),
        "{exported}"
    );
    let target = TestDatabase::create().await;
    let imported = run_ok(&target.url, &["import", arg(&file)]).await;
    assert!(
        imported.contains(&format!("imported {events} events")),
        "{imported}"
    );

    let source_log = log_rows(&source.db.pool).await;
    assert_eq!(source_log.len() as i64, events);
    assert_eq!(log_rows(&target.pool).await, source_log);

    // The personal fields open once the keys follow, which exports do not hold.
    let keys = scratch_path("export-import", "keys.jsonl");
    run_ok(&source.db.url, &["export-keys", arg(&keys)]).await;
    let imported = run_ok(&target.url, &["import-keys", arg(&keys)]).await;
    assert!(imported.contains("imported"), "{imported}");

    run_ok(&target.url, &["rebuild", "--all"]).await;
    let source_views = view_rows(&source.db.pool).await;
    assert_eq!(
        source_views.keys().collect::<Vec<_>>(),
        [
            "accounts.follows",
            "accounts.users",
            "blocks.blocks",
            "conversations.forgotten_participants",
            "conversations.inbox",
            "conversations.private_messages",
            "conversations.read_marks",
            "timeline.messages"
        ]
    );
    assert_eq!(source_views["accounts.users"].len(), users.len());
    assert_eq!(source_views["accounts.follows"].len(), 4);
    assert_eq!(source_views["timeline.messages"].len(), messages.len() + 1);
    assert!(source_views["timeline.messages"]
        .iter()
        .any(|row| row.contains(&flagged) && row.contains(r#""flagged":true"#)));
    assert_eq!(view_rows(&target.pool).await, source_views);
    source.stop().await;
}

#[tokio::test]
async fn positions_that_go_down_in_log_order_keep_their_order() {
    let source = TestDatabase::create().await;
    // The early transaction takes its id first...
    let mut early = source.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *early)
        .await
        .unwrap();
    // ...another appends and commits...
    let mut late = source.pool.begin().await.unwrap();
    append_message_event(&mut late, "late-1", "a", "committed first").await;
    append_message_event(&mut late, "late-2", "a", "committed first").await;
    late.commit().await.unwrap();
    // ...and only then does the early one take its positions.
    append_message_event(&mut early, "early-1", "a", "committed last").await;
    append_message_event(&mut early, "early-2", "a", "committed last").await;
    early.commit().await.unwrap();
    let mut conn = source.pool.acquire().await.unwrap();
    append_message_event(&mut conn, "after", "a", "after both").await;
    drop(conn);
    let order = positions_in_log_order(&source.pool).await;
    assert_eq!(order, [3, 4, 1, 2, 5], "the log order goes down a position");

    let file = scratch_path("export-import", "log.jsonl");
    let exported = export_to(&source.pool, &file).await.unwrap();
    assert_eq!(exported.events.count, 5);
    let target = TestDatabase::create().await;
    let imported = import_from(&target.pool, &file).await.unwrap();
    assert_eq!(imported.events.count, 5);
    assert_eq!(imported.events.positions, Some((1, 5)));
    assert_eq!(
        imported.transactions, 2,
        "one more where the position goes down"
    );

    assert_eq!(positions_in_log_order(&target.pool).await, order);
    assert_eq!(log_rows(&target.pool).await, log_rows(&source.pool).await);
}

/// Transaction ids from a cluster that is further along than this one would lie in this
/// one's future, where projectors never read; the import must not keep them.
#[tokio::test]
async fn events_from_a_cluster_with_later_transaction_ids_are_projected() {
    let source = TestDatabase::create().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata, transaction_id) \
         VALUES ('message', 'from-the-future', 1, 'MessagePosted', '1.0', $1::json, '{}', \
                 (pg_current_xact_id()::text::bigint + 1000000000)::text::xid8)",
    )
    .bind(r#"{"MessagePosted": {"author": "a", "content": "hello", "posted_at": "2026-11-27T12:00:00Z"}}"#)
    .execute(&source.pool)
    .await
    .unwrap();
    let file = scratch_path("export-import", "log.jsonl");
    export_to(&source.pool, &file).await.unwrap();
    let target = TestDatabase::create().await;
    import_from(&target.pool, &file).await.unwrap();

    let in_the_future: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events \
         WHERE transaction_id >= pg_snapshot_xmax(pg_current_snapshot())",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert_eq!(
        in_the_future, 0,
        "no imported event is in this cluster's future"
    );
    tokio::time::timeout(
        Duration::from_secs(60),
        run_ok(&target.url, &["rebuild", "--all"]),
    )
    .await
    .expect("the rebuild reaches every imported event");
    // The rebuild's version, which it made the active one.
    let timeline = projections::maintenance::active_version(&target.pool, "timeline")
        .await
        .unwrap()
        .expect("an active timeline");
    let content: String = sqlx::query_scalar(&format!(
        "SELECT content FROM {}.messages WHERE message_id = 'from-the-future'",
        projections::projection::schema_name("timeline", timeline)
    ))
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert_eq!(content, "hello");
}

#[tokio::test]
async fn json_text_comes_back_byte_for_byte() {
    const SPACED: &str = r#"{ "MessagePosted" : {"posted_at":"2026-11-27T12:00:00Z",   "content":"caf\u00e9 \ud83c\udf89 \"q\" \\ \/", "author":"a"} }"#;
    const ODD_KEYS: &str = r#"{"z":1,"a":[1, 2.50, 1e3, -0, true, null],"dup":1,"dup":2}"#;
    const AROUND: &str = "\n  {\"MessagePosted\": {\"author\": \"a\", \"content\": \"b\", \"posted_at\": \"2026-11-27T12:00:00Z\"}}\t";
    const BROKEN_LINES: &str = "{\r\n\"a\": 1\r\n}";
    let stored = [
        (SPACED, ODD_KEYS),
        (AROUND, BROKEN_LINES),
        ("[]", "null"),
        (r#""just a string""#, " {} "),
    ];
    let source = TestDatabase::create().await;
    for (n, (payload, metadata)) in stored.iter().enumerate() {
        insert_event(
            &source.pool,
            &format!("m{n}"),
            1,
            ("MessagePosted", "1.0"),
            payload,
            metadata,
        )
        .await;
    }

    let file = scratch_path("export-import", "log.jsonl");
    run_ok(&source.url, &["export", arg(&file)]).await;
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        lines.len(),
        stored.len(),
        "after `latest`, one line per event:\n{text}"
    );
    assert!(
        lines[0].contains(&format!(
            r#""payload" : {SPACED}, "metadata" : {ODD_KEYS}}}"#
        )),
        "embedded as stored: {}",
        lines[0]
    );
    let second: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["payload_text"], AROUND, "{}", lines[1]);
    assert_eq!(second["metadata_text"], BROKEN_LINES, "{}", lines[1]);

    let target = TestDatabase::create().await;
    run_ok(&target.url, &["import", arg(&file)]).await;
    let texts: Vec<(String, String)> = sqlx::query_as(
        "SELECT payload::text, metadata::text FROM events ORDER BY transaction_id, global_position",
    )
    .fetch_all(&target.pool)
    .await
    .unwrap();
    let expected: Vec<(String, String)> = stored
        .iter()
        .map(|(payload, metadata)| (payload.to_string(), metadata.to_string()))
        .collect();
    assert_eq!(texts, expected);
    assert_eq!(log_rows(&target.pool).await, log_rows(&source.pool).await);
}

#[tokio::test]
async fn an_import_into_a_store_with_events_is_refused_and_changes_nothing() {
    let source = TestDatabase::create().await;
    let mut conn = source.pool.acquire().await.unwrap();
    for n in 0..3 {
        append_message_event(&mut conn, &format!("m{n}"), "a", "exported").await;
    }
    drop(conn);
    let file = scratch_path("export-import", "log.jsonl");
    run_ok(&source.url, &["export", arg(&file)]).await;

    let target = TestDatabase::create().await;
    let mut conn = target.pool.acquire().await.unwrap();
    append_message_event(&mut conn, "already-there", "b", "kept").await;
    drop(conn);
    let log_before = log_rows(&target.pool).await;
    let sequence_before = sequence_value(&target.pool).await;

    let output = run(&target.url, &["import", arg(&file)]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused");
    assert!(stderr.contains("the event store is not empty"), "{stderr}");
    assert_eq!(log_rows(&target.pool).await, log_before);
    assert_eq!(sequence_value(&target.pool).await, sequence_before);
}

#[tokio::test]
async fn a_bad_file_is_refused_with_its_line_number_and_nothing_is_imported() {
    let source = TestDatabase::create().await;
    let mut conn = source.pool.acquire().await.unwrap();
    for n in 0..5 {
        append_message_event(&mut conn, &format!("m{n}"), "a", &format!("message {n}")).await;
    }
    drop(conn);
    let file = scratch_path("export-import", "log.jsonl");
    // Even over a file anyone could read, the export is its owner's alone: it holds
    // password hashes and private messages.
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    export_to(&source.pool, &file).await.unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export's permissions: {mode:o}");
    let text = std::fs::read_to_string(&file).unwrap();
    // The events' lines, without the first (`latest`): the bad files below are made of
    // them alone, as a file from before that line was, which imports too.
    let good: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(good.len(), 5);
    let edited = |line: usize, edit: &dyn Fn(&mut Value)| {
        let mut value: Value = serde_json::from_str(good[line]).unwrap();
        edit(&mut value);
        value.to_string()
    };
    let last_tx = serde_json::from_str::<Value>(good[4]).unwrap()["transaction_id"]
        .as_i64()
        .unwrap();

    let target = TestDatabase::create().await;
    let endless = "x".repeat(MAX_LINE_BYTES + 1);
    let cases: [(&str, Vec<String>, &str); 8] = [
        (
            "bad JSON on line 3",
            vec![
                good[0].into(),
                good[1].into(),
                r#"{"global_position": 3,"#.into(),
                good[3].into(),
            ],
            "line 3: EOF while parsing",
        ),
        (
            "a missing field",
            vec![
                good[0].into(),
                edited(1, &|line| {
                    drop(line.as_object_mut().unwrap().remove("sequence"))
                }),
            ],
            "line 2: missing field `sequence`",
        ),
        (
            "a field of the wrong type",
            vec![
                good[0].into(),
                good[1].into(),
                edited(2, &|line| line["recorded_at"] = json!(12)),
            ],
            "line 3: invalid type: integer `12`",
        ),
        (
            "a line over the limit",
            vec![good[0].into(), endless],
            "line 2: longer than 1048576 bytes",
        ),
        (
            "a field no export has",
            vec![edited(0, &|line| line["extra"] = json!(true))],
            "line 1: unknown field `extra`",
        ),
        (
            "lines out of log order",
            vec![good[0].into(), good[2].into(), good[1].into()],
            "line 3: out of log order",
        ),
        (
            "a position twice",
            vec![
                good[0].into(),
                good[1].into(),
                good[2].into(),
                edited(1, &|line| {
                    line["transaction_id"] = json!(last_tx + 1);
                    line["aggregate_id"] = json!("another");
                }),
            ],
            "line 4: the same global_position as line 2",
        ),
        (
            "a stream version twice",
            vec![
                good[0].into(),
                good[1].into(),
                edited(0, &|line| {
                    line["transaction_id"] = json!(last_tx + 1);
                    line["global_position"] = json!(99);
                }),
            ],
            "line 3: the same (aggregate_type, aggregate_id, sequence) as line 1",
        ),
    ];
    for (case, lines, expected) in cases {
        let bad = scratch_path("export-import", "bad.jsonl");
        std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
        let output = run(&target.url, &["import", arg(&bad)]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{case}: refused");
        assert!(stderr.contains(expected), "{case}: {stderr}");
        assert_eq!(
            event_count(&target.pool).await,
            0,
            "{case}: nothing imported"
        );
        assert_eq!(
            sequence_value(&target.pool).await,
            None,
            "{case}: sequence untouched"
        );
    }

    // The store is still empty, and the good file imports.
    run_ok(&target.url, &["import", arg(&file)]).await;
    assert_eq!(log_rows(&target.pool).await, log_rows(&source.pool).await);
}

#[tokio::test]
async fn an_empty_log_exports_as_its_first_line_alone_and_imports_as_nothing() {
    let source = TestDatabase::create().await;
    let file = scratch_path("export-import", "log.jsonl");
    let exported = run_ok(&source.url, &["export", arg(&file)]).await;
    assert!(exported.starts_with("exported 0 events to "), "{exported}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"simulator_latest\":null}\n"
    );

    let target = TestDatabase::create().await;
    let imported = run_ok(&target.url, &["import", arg(&file)]).await;
    assert!(
        imported.starts_with("imported 0 events from "),
        "{imported}"
    );
    assert_eq!(event_count(&target.pool).await, 0);
    assert_eq!(sequence_value(&target.pool).await, None);
}

/// With the log on stdout, nothing else may go there: the summary belongs on stderr.
#[tokio::test]
async fn export_to_stdout_pipes_into_import_from_stdin() {
    let source = TestDatabase::create().await;
    let mut conn = source.pool.acquire().await.unwrap();
    for n in 0..3 {
        append_message_event(&mut conn, &format!("m{n}"), "a", "piped\nthrough").await;
    }
    drop(conn);
    let target = TestDatabase::create().await;

    let mut export = command(&source.url)
        .args(["export", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the export");
    let pipe: Stdio = export
        .stdout
        .take()
        .expect("the export's stdout")
        .try_into()
        .expect("a pipe");
    let import = command(&target.url)
        .args(["import", "-"])
        .stdin(pipe)
        .output()
        .await
        .expect("running the import");
    let export = export.wait_with_output().await.expect("the export");
    let import_stderr = String::from_utf8_lossy(&import.stderr);
    assert!(
        export.status.success(),
        "export: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(import.status.success(), "import: {import_stderr}");
    assert!(
        String::from_utf8_lossy(&import.stdout).contains("imported 3 events"),
        "{import_stderr}"
    );
    assert_eq!(log_rows(&target.pool).await, log_rows(&source.pool).await);
}

#[tokio::test]
async fn events_appended_after_an_import_follow_the_imported_ones() {
    let source = TestDatabase::create().await;
    // Positions far from where a fresh store's sequence starts.
    sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'global_position'), 1000)")
        .execute(&source.pool)
        .await
        .unwrap();
    let mut conn = source.pool.acquire().await.unwrap();
    for n in 0..3 {
        append_message_event(&mut conn, &format!("m{n}"), "a", &format!("imported {n}")).await;
    }
    drop(conn);
    let file = scratch_path("export-import", "log.jsonl");
    let exported = run_ok(&source.url, &["export", arg(&file)]).await;
    assert!(
        exported.contains("exported 3 events (positions 1001–1003)"),
        "{exported}"
    );

    let target = TestDatabase::create().await;
    run_ok(&target.url, &["import", arg(&file)]).await;
    let app = spawn_app_on(target).await;
    let sim = app.client();
    assert_no_content(sim.register("newcomer", "n@example.org", "pw", None).await);
    assert_no_content(sim.tweet("newcomer", "after the import", None).await);

    let new_positions: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE global_position > 1003 ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        new_positions.len(),
        2,
        "both new events follow the imported ones"
    );
    assert_eq!(event_count(&app.db.pool).await, 5);
    assert_eq!(
        positions_in_log_order(&app.db.pool).await[..3],
        [1001, 1002, 1003]
    );
    // The server projected the imported events too.
    let public = sim.public_msgs(Some(10), None).await.unwrap();
    let mut contents: Vec<String> = authored(&public.body)
        .into_iter()
        .map(|(_, content)| content)
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        ["after the import", "imported 0", "imported 1", "imported 2"]
    );
    app.stop().await;
}

//! Several server processes on one database: each serves reads and writes correctly, and
//! each event is projected exactly once whichever replica's projector takes it.

use reqwest::StatusCode;
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::{authored, follow_names};
use test_support::views::assert_views_equal_a_rebuild;

use crate::MINITWIT;

#[tokio::test]
async fn two_servers_on_one_database_read_each_others_writes() {
    let db = TestDatabase::create().await;
    let first = ServerProcess::start(MINITWIT, &db.server_url).await;
    let second = ServerProcess::start(MINITWIT, &db.server_url).await;
    let (one, two) = (first.client(), second.client());

    for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let via = if i % 2 == 0 { &one } else { &two };
        assert_eq!(
            via.register(name, "x@x", "x", None).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
    }
    // Registering on one replica what the other already has is refused by the log itself.
    let duplicate = two.register("a", "x@x", "x", None).await.unwrap();
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);

    // Every write through one replica is visible at once through the other.
    for i in 0..20 {
        let (writer, reader) = if i % 2 == 0 {
            (&one, &two)
        } else {
            (&two, &one)
        };
        let content = format!("message {i}");
        assert_eq!(
            writer.tweet("a", &content, Some(i)).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
        let newest = reader.user_msgs("a", Some(1), None).await.unwrap();
        assert_eq!(authored(&newest.body), [("a".to_owned(), content)]);
        assert_eq!(reader.latest().await.unwrap(), i, "latest is shared");

        let target = ["b", "c", "d"][(i % 3) as usize];
        assert_eq!(
            writer.follow("a", target, None).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
        assert!(
            follow_names(&reader.follows("a", None, None).await.unwrap().body)
                .contains(&target.to_owned())
        );
        assert_eq!(
            writer.unfollow("a", target, None).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
        assert!(
            !follow_names(&reader.follows("a", None, None).await.unwrap().body)
                .contains(&target.to_owned())
        );
    }

    // Concurrent writes through both replicas at once.
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let client = if i % 2 == 0 { one.clone() } else { two.clone() };
            let author = ["b", "c", "d"][i % 3];
            tokio::spawn(async move { client.tweet(author, &format!("burst {i}"), None).await })
        })
        .collect();
    for writer in writers {
        assert_eq!(
            writer.await.unwrap().unwrap().status,
            StatusCode::NO_CONTENT
        );
    }

    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'message'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let projected: i64 = sqlx::query_scalar("SELECT count(*) FROM timeline_v1.messages")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        (events, projected),
        (60, 60),
        "each message projected exactly once"
    );
    first.terminate().await;
    second.terminate().await;
    assert_views_equal_a_rebuild(&db.pool).await;
}

/// Each replica keeps the aggregates of its last commands. A replica whose kept state of a
/// stream is stale — the other replica wrote to the stream since — must decide on the
/// stream's current state: following someone the other replica unfollowed meanwhile is a
/// new follow, not "already followed", and unfollowing someone it followed is not "never
/// followed". Sequential steps alternate between the replicas and are checked against a
/// model after each one; a concurrent burst through both follows, and the views end equal
/// to a rebuild, with the stream's sequence unbroken.
#[tokio::test]
async fn replicas_decide_on_the_current_state_of_a_stream_the_other_wrote() {
    let db = TestDatabase::create().await;
    let first = ServerProcess::start(MINITWIT, &db.server_url).await;
    let second = ServerProcess::start(MINITWIT, &db.server_url).await;
    let replicas = [first.client(), second.client()];
    let targets = ["b", "c", "d"];
    for name in ["a", "b", "c", "d"] {
        assert_eq!(
            replicas[0]
                .register(name, "x@x", "x", None)
                .await
                .unwrap()
                .status,
            StatusCode::NO_CONTENT
        );
    }

    // Both replicas hold "a" after these two, each with its own view of the stream.
    let mut model = std::collections::BTreeSet::new();
    for (step, replica) in replicas.iter().enumerate() {
        let target = targets[step];
        assert_eq!(
            replica.follow("a", target, None).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
        model.insert(target);
    }
    // A fixed walk over follow and unfollow, the replica changing every step, so that each
    // command lands where the stream was last written by the other one.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..60 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let target = targets[(state % 3) as usize];
        let (writer, reader) = (&replicas[step % 2], &replicas[(step + 1) % 2]);
        let following = model.contains(target);
        // Mostly the opposite of the current state (a change), sometimes the same (a
        // repeat, which a stale state would get wrong in the other direction).
        let follow = if state.is_multiple_of(4) {
            following
        } else {
            !following
        };
        let reply = if follow {
            writer.follow("a", target, None).await.unwrap()
        } else {
            writer.unfollow("a", target, None).await.unwrap()
        };
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "step {step}");
        if follow {
            model.insert(target);
        } else {
            model.remove(target);
        }
        let mut seen = follow_names(&reader.follows("a", None, None).await.unwrap().body);
        seen.sort();
        let expected: Vec<String> = model.iter().map(|name| (*name).to_owned()).collect();
        assert_eq!(
            seen, expected,
            "step {step}: the other replica's view of a's follows"
        );
    }

    // Concurrent commands on the one stream through both replicas: conflicts are retried on
    // the stream's current state, and none is lost or applied twice.
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let client = replicas[i % 2].clone();
            let target = targets[i % 3];
            tokio::spawn(async move {
                if i % 4 < 2 {
                    client.follow("a", target, None).await
                } else {
                    client.unfollow("a", target, None).await
                }
            })
        })
        .collect();
    for command in burst {
        assert_eq!(
            command.await.unwrap().unwrap().status,
            StatusCode::NO_CONTENT
        );
    }
    let sequences: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = 'user' AND aggregate_id = 'a' \
         ORDER BY sequence",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let unbroken: Vec<i64> = (1..=sequences.len() as i64).collect();
    assert_eq!(sequences, unbroken, "a's stream has no gap and no repeat");
    first.terminate().await;
    second.terminate().await;
    assert_views_equal_a_rebuild(&db.pool).await;
}

/// Each replica keeps the newest page of each timeline while the views under it stand
/// still (the timeline cache). A write acknowledged by one replica must show in the very
/// next read on the other, though that replica holds the page from before the write and may
/// not have heard of the write yet: every timeline — the API's and the pages' — is read on
/// the second replica, the write made on the first, and the timelines read again at once.
#[tokio::test]
async fn a_write_on_one_replica_shows_at_once_in_the_other_replicas_cached_timelines() {
    let db = TestDatabase::create().await;
    let writer = ServerProcess::start(MINITWIT, &db.server_url).await;
    let reader = ServerProcess::start(MINITWIT, &db.server_url).await;
    let (write, read) = (writer.client(), reader.client());
    for name in ["author", "fan"] {
        assert_eq!(
            write.register(name, "x@x", "x", None).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
    }
    let pages = reqwest::Client::new();
    let page = |path: &str| {
        let (pages, url) = (pages.clone(), format!("{}{path}", reader.web_url));
        async move {
            let reply = pages.get(url).send().await.unwrap();
            assert_eq!(reply.status(), StatusCode::OK);
            reply.text().await.unwrap()
        }
    };
    for i in 0..15 {
        // The reader's caches hold every timeline as it stands before the write.
        read.public_msgs(Some(20), None).await.unwrap();
        read.user_msgs("author", Some(20), None).await.unwrap();
        page("/public").await;
        page("/author").await;

        let content = format!("cached {i}");
        assert_eq!(
            write.tweet("author", &content, None).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
        let public = read.public_msgs(Some(20), None).await.unwrap();
        assert_eq!(
            authored(&public.body).first(),
            Some(&("author".to_owned(), content.clone())),
            "write {i}: GET /msgs on the other replica"
        );
        let own = read.user_msgs("author", Some(20), None).await.unwrap();
        assert_eq!(
            authored(&own.body).first(),
            Some(&("author".to_owned(), content.clone())),
            "write {i}: GET /msgs/author on the other replica"
        );
        assert!(
            page("/public").await.contains(&content),
            "write {i}: /public on the other replica"
        );
        assert!(
            page("/author").await.contains(&content),
            "write {i}: /author on the other replica"
        );
    }
    writer.terminate().await;
    reader.terminate().await;
}

/// A user forgotten through one replica is unknown to the other at once: the other had
/// remembered the name as registered, and the forgetting's notification makes it let go.
#[tokio::test]
async fn a_user_forgotten_on_one_replica_is_unknown_on_the_other() {
    let db = TestDatabase::create().await;
    let first = ServerProcess::start(MINITWIT, &db.server_url).await;
    let second = ServerProcess::start(MINITWIT, &db.server_url).await;
    let (one, two) = (first.client(), second.client());
    for name in ["alice", "carol"] {
        let registered = one.register(name, "x@x", "pw", None).await.unwrap();
        assert_eq!(registered.status, StatusCode::NO_CONTENT);
    }
    // The second replica looks alice up, and remembers that she is registered.
    for change in ["follow", "unfollow"] {
        let reply = if change == "follow" {
            two.follow("carol", "alice", None).await
        } else {
            two.unfollow("carol", "alice", None).await
        };
        assert_eq!(reply.unwrap().status, StatusCode::NO_CONTENT, "{change}");
    }

    let alice = test_support::web_client::WebClient::new(&first.web_url);
    alice.login("alice", "pw").await;
    alice
        .post("/settings/delete", &[("password", "pw")])
        .await
        .assert_contains("Your account was deleted");
    // The notification travels between the replicas through PostgreSQL: moments.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let follow = two.follow("carol", "alice", None).await.unwrap();
    assert_eq!(follow.status, StatusCode::NOT_FOUND, "{:?}", follow.body);
}

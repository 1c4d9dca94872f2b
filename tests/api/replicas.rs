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
    let first = ServerProcess::start(MINITWIT, &db.url).await;
    let second = ServerProcess::start(MINITWIT, &db.url).await;
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

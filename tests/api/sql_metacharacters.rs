//! SQL metacharacters in every field the simulator API takes — usernames in paths and
//! bodies, emails, passwords, messages, follow targets, `latest` and `no` — are data, never
//! SQL: each is stored and read back byte for byte, nothing else changes, and the store is
//! intact afterwards. A statement spliced together from input would fail one of these
//! (a quote ends a string, a `;` starts a statement, `%`/`_` widen a LIKE, `$1` shifts a
//! parameter, a backslash escapes).

use reqwest::StatusCode;
use test_support::app::spawn_app;
use test_support::sim_client::{authored, follow_names};
use test_support::views::assert_views_equal_a_rebuild;

/// Names that break out of a naive query in one way or another.
const HOSTILE_NAMES: [&str; 8] = [
    "Robert'); DROP TABLE events;--",
    "x' OR '1'='1",
    "quote\"double",
    "back\\slash",
    "percent%_under",
    "$1 $2::text",
    "semi;colon -- comment /* c */",
    "E'\\x00' || chr(39)",
];

#[tokio::test]
async fn sql_metacharacters_in_every_field_are_stored_and_read_back_as_data() {
    let app = spawn_app().await;
    let sim = app.client();
    for (index, name) in HOSTILE_NAMES.iter().enumerate() {
        let reply = sim
            .register(
                name,
                &format!("{name}@x'; DELETE FROM events;--.org"),
                "pw'; UPDATE users SET pwd = '",
                Some(index as i64 + 1),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "registering {name:?}");
    }
    // The same names again: taken, exactly, and only these (no pattern matched more).
    let again = sim
        .register(HOSTILE_NAMES[1], "a@b", "p", None)
        .await
        .unwrap();
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.body["error_msg"], "The username is already taken");
    let lookalike = sim.user_msgs("percentX_under", None, None).await.unwrap();
    assert_eq!(
        lookalike.status,
        StatusCode::NOT_FOUND,
        "`%` must not match like a pattern"
    );

    for name in HOSTILE_NAMES {
        let content = format!("{name} says '; TRUNCATE messages; SELECT '$1");
        let posted = sim.tweet(name, &content, None).await.unwrap();
        assert_eq!(
            posted.status,
            StatusCode::NO_CONTENT,
            "tweeting as {name:?}"
        );
        let listing = sim.user_msgs(name, None, None).await.unwrap();
        assert_eq!(authored(&listing.body), vec![(name.to_owned(), content)]);
    }

    let follower = HOSTILE_NAMES[0];
    for followee in &HOSTILE_NAMES[1..] {
        let reply = sim.follow(follower, followee, None).await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "following {followee:?}"
        );
    }
    let unfollowed = sim
        .unfollow(follower, HOSTILE_NAMES[4], None)
        .await
        .unwrap();
    assert_eq!(unfollowed.status, StatusCode::NO_CONTENT);
    let follows = sim.follows(follower, None, None).await.unwrap();
    let expected: Vec<String> = HOSTILE_NAMES[1..]
        .iter()
        .filter(|name| **name != HOSTILE_NAMES[4])
        .map(|name| (*name).to_owned())
        .collect();
    assert_eq!(follow_names(&follows.body), expected);

    // Not integers, so not stored: `latest` keeps the last number sent.
    for latest in ["1; DROP TABLE simulator_latest", "1' OR '1'='1", "$1"] {
        let reply = sim
            .send(
                reqwest::Method::GET,
                &format!(
                    "/msgs?latest={}",
                    test_support::sim_client::percent_encode(latest)
                ),
                true,
                None,
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(sim.latest().await.unwrap(), HOSTILE_NAMES.len() as i64);
    // A `no` that is not a number is the default, not an error or an injection.
    let listing = sim
        .send(
            reqwest::Method::GET,
            "/msgs?no=1%3B%20SELECT%201",
            true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(listing.status, StatusCode::OK);
    assert_eq!(authored(&listing.body).len(), HOSTILE_NAMES.len());

    // Every event is in the log, and the views are what the log says.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let expected_events = HOSTILE_NAMES.len() * 2 + (HOSTILE_NAMES.len() - 1) + 1;
    assert_eq!(events, expected_events as i64);
    assert_views_equal_a_rebuild(&app.db.pool).await;
}

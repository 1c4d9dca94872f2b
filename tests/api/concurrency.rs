//! Many clients at once on overlapping users: every acknowledged command's event is in the
//! log exactly once, nothing fails with a 5xx, and the views equal a rebuild from the log.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use test_support::app::spawn_app;
use test_support::sim_client::{assert_no_content, follow_names, SimClient};
use test_support::views::assert_views_equal_a_rebuild;

const CLIENTS: usize = 16;
const ROUNDS: usize = 15;
/// Followers are shared: four clients act as each of them at the same time, so their
/// commands race for the same stream and exercise the conflict retries.
const FOLLOWERS: usize = 4;

/// Whether client `c` ends following its followee: half of each follower's clients do.
fn ends_following(c: usize) -> bool {
    (c / FOLLOWERS).is_multiple_of(2)
}

fn user(i: usize) -> String {
    format!("user {i}")
}

/// One write of a client, acting as its follower.
enum Write<'a> {
    Tweet(&'a str),
    Follow(&'a str),
    Unfollow(&'a str),
}

/// Sends a write until it is acknowledged. A 409 (the command lost every retry against
/// the other clients) is an honest refusal, and this client tries again, as a person would;
/// anything else but 204 fails the test.
async fn acknowledged(sim: &SimClient, follower: &str, write: Write<'_>, conflicts: &mut usize) {
    loop {
        let reply = match write {
            Write::Tweet(content) => sim.tweet(follower, content, None).await,
            Write::Follow(followee) => sim.follow(follower, followee, None).await,
            Write::Unfollow(followee) => sim.unfollow(follower, followee, None).await,
        }
        .expect("the server answers");
        match reply.status {
            StatusCode::NO_CONTENT => return,
            StatusCode::CONFLICT => *conflicts += 1,
            other => panic!("write failed with {other}: {:?}", reply.body),
        }
    }
}

#[tokio::test]
async fn concurrent_clients_on_overlapping_users_lose_and_duplicate_nothing() {
    let app = spawn_app().await;
    let sim = app.client();
    for i in 0..FOLLOWERS * 2 {
        assert_no_content(sim.register(&user(i), "x@x", "x", None).await);
    }

    // Client c acts as follower c % 4 on followee 4 + c / 4: the pair is its own, the
    // follower's stream is shared with three other clients.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let sim = SimClient::new(&app.base_url);
            tokio::spawn(async move {
                let (follower, followee) = (user(c % FOLLOWERS), user(FOLLOWERS + c / FOLLOWERS));
                let mut conflicts = 0;
                for round in 0..ROUNDS {
                    let content = format!("client {c} round {round}");
                    acknowledged(&sim, &follower, Write::Tweet(&content), &mut conflicts).await;
                    acknowledged(&sim, &follower, Write::Follow(&followee), &mut conflicts).await;
                    acknowledged(&sim, &follower, Write::Unfollow(&followee), &mut conflicts).await;
                }
                if ends_following(c) {
                    acknowledged(&sim, &follower, Write::Follow(&followee), &mut conflicts).await;
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for client in clients {
        conflicts += client.await.expect("client task");
    }
    println!("409s retried by clients: {conflicts}");

    // Each acknowledged tweet is in the log exactly once.
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for posted in test_support::log::opened_events(&app.db.pool, "MessagePosted").await {
        let content = posted.fields["content"].as_str().unwrap().to_owned();
        *counted.entry(content).or_default() += 1;
    }
    assert_eq!(counted.len(), CLIENTS * ROUNDS);
    assert!(
        counted.values().all(|&n| n == 1),
        "a tweet was stored twice"
    );

    // Each client's follow pair changed exactly as often as it asked.
    let changes: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, event_type, count(*) FROM events \
         WHERE event_type IN ('UserFollowed', 'UserUnfollowed') GROUP BY 1, 2",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    for (follower, kind, n) in changes {
        let clients = (0..CLIENTS).filter(|c| user(c % FOLLOWERS) == follower);
        let expected: usize = match kind.as_str() {
            "UserFollowed" => clients
                .map(|c| ROUNDS + usize::from(ends_following(c)))
                .sum(),
            _ => clients.count() * ROUNDS,
        };
        assert_eq!(n as usize, expected, "{kind} events of {follower}");
    }

    // The views say what the clients did.
    for f in 0..FOLLOWERS {
        let expected: Vec<String> = (0..CLIENTS)
            .filter(|&c| c % FOLLOWERS == f && ends_following(c))
            .map(|c| user(FOLLOWERS + c / FOLLOWERS))
            .collect();
        let mut listed = follow_names(&sim.follows(&user(f), None, None).await.unwrap().body);
        listed.sort();
        assert_eq!(listed, expected, "follows of {}", user(f));
        let messages = sim.user_msgs(&user(f), Some(-1), None).await.unwrap();
        assert_eq!(
            messages.body.as_array().unwrap().len(),
            ROUNDS * CLIENTS / FOLLOWERS
        );
    }
    assert_views_equal_a_rebuild(&app.db.pool).await;
    app.stop().await;
}

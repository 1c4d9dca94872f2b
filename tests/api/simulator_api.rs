//! The simulator API's contract, endpoint by endpoint (`spec/simulator-api.md`).

use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::app::spawn_app;
use test_support::sim_client::{assert_no_content, authored, follow_names};

/// The course's own API test sequence, re-expressed: registrations, a tweet read back, follows
/// and an unfollow, with `latest` tracking every request.
#[tokio::test]
async fn the_course_api_test_sequence_passes() {
    let app = spawn_app().await;
    let sim = app.client();

    assert_eq!(sim.latest().await.unwrap(), -1, "latest before any update");

    for (latest, name) in [(1, "a"), (2, "b"), (3, "c"), (4, "test")] {
        let reply = sim
            .register(name, &format!("{name}@{name}"), "foo", Some(latest))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "register {name}");
        assert_eq!(reply.body, serde_json::Value::Null, "204 has no body");
        assert_eq!(sim.latest().await.unwrap(), latest);
    }

    let reply = sim.tweet("a", "Blub!", Some(5)).await.unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(sim.latest().await.unwrap(), 5);

    let reply = sim.user_msgs("a", Some(20), Some(6)).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        authored(&reply.body),
        [("a".to_owned(), "Blub!".to_owned())]
    );
    assert!(reply.body[0]["pub_date"].is_i64(), "pub_date is an integer");
    assert_eq!(sim.latest().await.unwrap(), 6);

    let reply = sim.public_msgs(Some(20), Some(7)).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(authored(&reply.body).contains(&("a".to_owned(), "Blub!".to_owned())));
    assert_eq!(sim.latest().await.unwrap(), 7);

    for (latest, target) in [(8, "b"), (9, "c")] {
        let reply = sim.follow("a", target, Some(latest)).await.unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    let reply = sim.follows("a", Some(20), Some(10)).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(follow_names(&reply.body), ["b", "c"]);

    let reply = sim.unfollow("a", "b", Some(11)).await.unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = sim.follows("a", Some(20), Some(12)).await.unwrap();
    assert_eq!(follow_names(&reply.body), ["c"]);
    assert_eq!(sim.latest().await.unwrap(), 12);
    app.stop().await;
}

#[tokio::test]
async fn registration_errors_come_in_the_originals_order_and_words() {
    let app = spawn_app().await;
    let sim = app.client();
    let cases = [
        (("", "a@a", "x"), "You have to enter a username"),
        (("a", "", "x"), "You have to enter a valid email address"),
        (
            ("a", "no-at-sign", "x"),
            "You have to enter a valid email address",
        ),
        (("a", "a@a", ""), "You have to enter a password"),
    ];
    for ((username, email, pwd), message) in cases {
        let reply = sim.register(username, email, pwd, None).await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.body, json!({"status": 400, "error_msg": message}));
    }
    assert_eq!(
        sim.register("a", "a@a", "x", None).await.unwrap().status,
        StatusCode::NO_CONTENT
    );
    let reply = sim.register("a", "other@a", "y", None).await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error_msg"], "The username is already taken");

    let missing_key = sim
        .send(
            Method::POST,
            "/register",
            false,
            Some(r#"{"email": "a@a", "pwd": "x"}"#),
        )
        .await
        .unwrap();
    assert_eq!(missing_key.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing_key.body["error_msg"],
        "You have to enter a username"
    );
    app.stop().await;
}

#[tokio::test]
async fn protected_endpoints_refuse_other_credentials_with_403_but_still_store_latest() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("a", "a@a", "x", None).await);
    let forbidden =
        json!({"status": 403, "error_msg": "You are not authorized to use this resource!"});
    let requests = [
        (Method::GET, "/msgs?latest=101", None),
        (Method::GET, "/msgs/a?latest=102", None),
        (
            Method::POST,
            "/msgs/a?latest=103",
            Some(r#"{"content": "x"}"#),
        ),
        (Method::GET, "/fllws/a?latest=104", None),
        (
            Method::POST,
            "/fllws/a?latest=105",
            Some(r#"{"follow": "a"}"#),
        ),
    ];
    for (method, path, body) in requests {
        let reply = sim.send(method, path, false, body).await.unwrap();
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(reply.body, forbidden);
        let expected: i64 = path.rsplit('=').next().unwrap().parse().unwrap();
        assert_eq!(
            sim.latest().await.unwrap(),
            expected,
            "latest stored before the 403"
        );
    }
    let wrong_password = reqwest::Client::new()
        .get(format!("{}/msgs", app.base_url))
        .header("Authorization", "Basic c2ltdWxhdG9yOndyb25n")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_password.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn unknown_users_are_404_before_any_body_check() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("a", "a@a", "x", None).await);
    let not_found = [
        sim.user_msgs("ghost", None, Some(1)).await.unwrap(),
        sim.follows("ghost", None, Some(2)).await.unwrap(),
        sim.tweet("ghost", "boo", Some(3)).await.unwrap(),
        sim.follow("ghost", "a", Some(4)).await.unwrap(),
        sim.follow("a", "ghost", Some(5)).await.unwrap(),
        sim.unfollow("a", "ghost", Some(6)).await.unwrap(),
        sim.send(
            Method::POST,
            "/msgs/ghost?latest=7",
            true,
            Some("{not json"),
        )
        .await
        .unwrap(),
        sim.send(Method::POST, "/fllws/ghost?latest=8", true, Some("{}"))
            .await
            .unwrap(),
    ];
    for reply in not_found {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{:?}", reply.body);
        assert_eq!(reply.body["status"], 404);
        assert!(reply.body["error_msg"].is_string());
    }
    assert_eq!(
        sim.latest().await.unwrap(),
        8,
        "latest stored before the 404"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_never_500() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("a", "a@a", "x", None).await);
    let bodies = [
        "",
        "{not json",
        "[]",
        "null",
        "42",
        r#"{"content": 5}"#,
        r#"{"text": "x"}"#,
    ];
    for body in bodies {
        let reply = sim
            .send(Method::POST, "/msgs/a", true, Some(body))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "tweet body {body:?}");
        assert_eq!(reply.body["status"], 400);
    }
    for body in [
        "",
        "{not json",
        "{}",
        r#"{"follow": 1}"#,
        r#"{"something": "a"}"#,
    ] {
        let reply = sim
            .send(Method::POST, "/fllws/a", true, Some(body))
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "follow body {body:?}"
        );
    }
    for body in [
        "",
        "{not json",
        r#"{"username": 1, "email": "a@a", "pwd": "x"}"#,
    ] {
        let reply = sim
            .send(Method::POST, "/register", false, Some(body))
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "register body {body:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_nul_character_postgres_cannot_store_is_a_clear_4xx_never_a_500() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("a", "a@a", "x", None).await);
    let register = sim.register("nul\0name", "n@n", "x", None).await.unwrap();
    assert_eq!(
        register.body,
        json!({"status": 400, "error_msg": "A username cannot contain the NUL character"})
    );
    let email = sim.register("b", "b@b\0", "x", None).await.unwrap();
    assert_eq!(
        email.body["error_msg"],
        "You have to enter a valid email address"
    );
    let tweet = sim.tweet("a", "nul\0content", None).await.unwrap();
    assert_eq!(
        tweet.body,
        json!({"status": 400, "error_msg": "A message cannot contain the NUL character"})
    );
    assert_eq!(
        sim.follow("a", "nul\0name", None).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    let user = "nul\0name";
    assert_eq!(
        sim.user_msgs(user, None, None).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sim.follows(user, None, None).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sim.tweet(user, "x", None).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sim.follow(user, "a", None).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn follows_are_idempotent_and_unfollowing_a_stranger_succeeds() {
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["a", "Roger Histand", "Ærø Ødegård"] {
        assert_no_content(sim.register(name, "x@x", "x", None).await);
    }
    for _ in 0..2 {
        let reply = sim.follow("a", "Roger Histand", None).await.unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        sim.follow("a", "a", None).await.unwrap().status,
        StatusCode::NO_CONTENT,
        "self-follow is allowed"
    );
    let reply = sim.unfollow("a", "Ærø Ødegård", None).await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::NO_CONTENT,
        "unfollowing someone not followed"
    );
    let both = sim
        .send(
            Method::POST,
            "/fllws/Roger%20Histand",
            true,
            Some(r#"{"follow": "a", "unfollow": "a"}"#),
        )
        .await
        .unwrap();
    assert_eq!(both.status, StatusCode::NO_CONTENT);
    assert_eq!(
        follow_names(&sim.follows("a", None, None).await.unwrap().body),
        ["Roger Histand", "a"]
    );
    assert_eq!(
        follow_names(&sim.follows("Roger Histand", None, None).await.unwrap().body),
        ["a"],
        "follow wins over unfollow"
    );
    assert_eq!(
        follow_names(&sim.follows("a", Some(1), None).await.unwrap().body),
        ["Roger Histand"],
        "no limits the list"
    );
    app.stop().await;
}

#[tokio::test]
async fn listings_are_newest_first_and_honour_no() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("Roger Histand", "r@h", "x", None).await);
    assert_no_content(sim.register("b", "b@b", "x", None).await);
    let contents: Vec<String> = (0..5)
        .map(|i| format!("<b>message {i}</b> — «ünïcode»"))
        .collect();
    for (i, content) in contents.iter().enumerate() {
        let author = if i % 2 == 0 { "Roger Histand" } else { "b" };
        assert_eq!(
            sim.tweet(author, content, None).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        sim.tweet("b", "", None).await.unwrap().status,
        StatusCode::NO_CONTENT,
        "empty content is accepted"
    );

    let all = sim.public_msgs(None, None).await.unwrap();
    let listed: Vec<String> = authored(&all.body)
        .into_iter()
        .map(|(_, content)| content)
        .collect();
    let mut expected = contents.clone();
    expected.push(String::new());
    expected.reverse();
    assert_eq!(
        listed, expected,
        "newest first, ties broken by write order, content raw"
    );

    let roger = sim.user_msgs("Roger Histand", None, None).await.unwrap();
    assert_eq!(authored(&roger.body).len(), 3);
    assert!(authored(&roger.body)
        .iter()
        .all(|(user, _)| user == "Roger Histand"));

    let count = |reply: test_support::sim_client::Reply| reply.body.as_array().unwrap().len();
    assert_eq!(count(sim.public_msgs(Some(2), None).await.unwrap()), 2);
    assert_eq!(count(sim.public_msgs(Some(0), None).await.unwrap()), 0);
    assert_eq!(
        count(sim.public_msgs(Some(-1), None).await.unwrap()),
        6,
        "negative means all allowed"
    );
    let not_a_number = sim
        .send(Method::GET, "/msgs?no=abc", true, None)
        .await
        .unwrap();
    assert_eq!(not_a_number.status, StatusCode::OK);
    assert_eq!(not_a_number.body.as_array().unwrap().len(), 6);
    let none_yet = sim.user_msgs("b", Some(0), None).await.unwrap();
    assert_eq!(none_yet.status, StatusCode::OK);
    assert_eq!(none_yet.body, json!([]));
    app.stop().await;
}

#[tokio::test]
async fn latest_ignores_minus_one_and_non_integers() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("a", "a@a", "x", Some(10)).await);
    for path in [
        "/msgs?latest=-1",
        "/msgs?latest=abc",
        "/msgs?latest=1.5",
        "/msgs",
    ] {
        sim.send(Method::GET, path, true, None).await.unwrap();
        assert_eq!(sim.latest().await.unwrap(), 10, "{path}");
    }
    sim.send(Method::GET, "/msgs?latest=-7", true, None)
        .await
        .unwrap();
    assert_eq!(
        sim.latest().await.unwrap(),
        -7,
        "other negatives are stored"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_that_lands_in_event_metadata() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .post(format!("{}/register", app.base_url))
        .header("x-request-id", "trace-me-42")
        .body(r#"{"username": "a", "email": "a@a", "pwd": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let metadata: serde_json::Value = sqlx::query_scalar("SELECT metadata FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(metadata["request_id"], "trace-me-42");
    let generated = reqwest::get(format!("{}/latest", app.base_url))
        .await
        .unwrap();
    assert!(!generated.headers()["x-request-id"].is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_retried_tweet_with_the_same_latest_is_posted_once() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("a", "a@a", "x", None).await);
    // A load balancer retrying after a lost answer sends the very same request again.
    for _ in 0..3 {
        let reply = sim.tweet("a", "once", Some(41)).await.unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    // Another action (another `latest`), or other content, is another message; and -1,
    // like no `latest` at all, names no action.
    assert_no_content(sim.tweet("a", "once", Some(42)).await);
    assert_no_content(sim.tweet("a", "twice", Some(42)).await);
    assert_no_content(sim.tweet("a", "again", Some(-1)).await);
    assert_no_content(sim.tweet("a", "again", Some(-1)).await);
    let listing = sim.user_msgs("a", None, None).await.unwrap();
    assert_eq!(
        authored(&listing.body),
        [
            ("a".to_owned(), "again".to_owned()),
            ("a".to_owned(), "again".to_owned()),
            ("a".to_owned(), "twice".to_owned()),
            ("a".to_owned(), "once".to_owned()),
            ("a".to_owned(), "once".to_owned()),
        ]
    );
    app.stop().await;
}

/// A username that does not percent-decode to UTF-8 is refused with the API's JSON error
/// body (axum's own refusal is plain text), after `latest` is stored and credentials checked.
#[tokio::test]
async fn an_undecodable_username_is_a_400_with_the_error_body() {
    let app = spawn_app().await;
    let sim = app.client();
    for (method, path, latest) in [
        (Method::GET, "/msgs/%FF", 11),
        (Method::POST, "/msgs/%C3%28", 12),
        (Method::GET, "/fllws/a%FEb", 13),
        (Method::POST, "/fllws/%FF", 14),
    ] {
        let body = (method == Method::POST).then_some(r#"{"content": "x", "follow": "a"}"#);
        let reply = sim
            .send(
                method.clone(),
                &format!("{path}?latest={latest}"),
                true,
                body,
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert_eq!(
            reply.body["status"], 400,
            "{method} {path}: {:?}",
            reply.body
        );
        assert!(reply.body["error_msg"].is_string(), "{method} {path}");
        assert_eq!(sim.latest().await.unwrap(), latest, "{method} {path}");

        let refused = sim.send(method.clone(), path, false, body).await.unwrap();
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {path}");
    }
}

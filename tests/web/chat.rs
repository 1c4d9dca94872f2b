//! Private messages over the chat's JSON routes: two users talk, their inboxes and unread
//! counts follow, a third user can neither read nor write their conversation, blocks (both
//! ways, confirmed first) and the policy hold, nothing private reaches a timeline or the
//! simulator API, and a rebuild of the views reproduces every conversation.

use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::app::{spawn_app, spawn_app_with, TestApp};
use test_support::views::assert_views_equal_a_rebuild;
use test_support::web_client::{Page, WebClient};

/// A signed-in browser of `app`, as `name`.
pub(crate) async fn signed_in(app: &TestApp, name: &str) -> WebClient {
    let client = WebClient::new(&app.web_url);
    client.register_and_login(name, "secret").await;
    client
}

pub(crate) async fn send(from: &WebClient, to: &str, content: &str) -> Page {
    from.post_json(&format!("/chat/with/{to}"), &json!({ "content": content }))
        .await
}

fn contents(conversation: &Value) -> Vec<&str> {
    conversation["messages"]
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|message| message["content"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn two_users_talk_and_nobody_else_can_read_or_write_their_conversation() {
    let app = spawn_app().await;
    let alice = signed_in(&app, "alice").await;
    let bob = signed_in(&app, "bob").await;
    let carol = signed_in(&app, "carol").await;
    // Under the default policy one follow is enough, in either direction.
    bob.post("/alice/follow", &[])
        .await
        .assert_redirected_to("/alice");

    assert_eq!(
        send(&alice, "bob", "hi bob").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&bob, "alice", "hi alice <3").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&alice, "bob", "how are you?").await.status,
        StatusCode::NO_CONTENT
    );

    let conversation = bob.get("/chat/with/alice").await.json();
    assert_eq!(
        contents(&conversation),
        ["how are you?", "hi alice <3", "hi bob"]
    );
    assert_eq!(conversation["messages"][0]["number"], 3);
    assert_eq!(conversation["messages"][0]["sender"], "alice");
    assert_eq!(alice.get("/chat/with/bob").await.json(), conversation);

    let inbox = bob.get("/chat/inbox").await.json();
    assert_eq!(inbox["unread"], 2, "alice's two messages");
    assert_eq!(inbox["conversations"][0]["partner"], "alice");
    assert_eq!(inbox["conversations"][0]["last"]["content"], "how are you?");
    assert_eq!(alice.get("/chat/inbox").await.json()["unread"], 1);

    let read = bob
        .post_json("/chat/with/alice/read", &json!({"up_to": 3}))
        .await;
    assert_eq!(read.status, StatusCode::NO_CONTENT);
    assert_eq!(bob.get("/chat/inbox").await.json()["unread"], 0);
    assert_eq!(alice.get("/chat/inbox").await.json()["unread"], 1);

    // Carol is in neither end: she reads only her own (empty) conversations, and what she
    // sends goes to a conversation of her own, which the policy refuses anyway.
    assert_eq!(
        contents(&carol.get("/chat/with/alice").await.json()),
        Vec::<&str>::new()
    );
    assert_eq!(
        contents(&carol.get("/chat/with/bob").await.json()),
        Vec::<&str>::new()
    );
    assert_eq!(
        carol.get("/chat/inbox").await.json()["conversations"],
        json!([])
    );
    let intrusion = send(&carol, "alice", "let me in").await;
    assert_eq!(intrusion.status, StatusCode::FORBIDDEN);
    let marking = carol
        .post_json("/chat/with/alice/read", &json!({"up_to": 1}))
        .await;
    assert_eq!(marking.status, StatusCode::NOT_FOUND);
    assert_eq!(contents(&alice.get("/chat/with/bob").await.json()).len(), 3);

    // No session, no chat.
    let stranger = WebClient::new(&app.web_url);
    assert_eq!(
        stranger.get("/chat/inbox").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&stranger, "alice", "hi").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Private messages are on no timeline and in no simulator listing.
    for page in ["/public", "/alice", "/bob", "/"] {
        alice.get(page).await.assert_lacks("how are you?");
    }
    let listing = app.client().public_msgs(None, None).await.unwrap();
    assert!(!listing.body.to_string().contains("how are you?"));

    assert_views_equal_a_rebuild(&app.db.pool).await;
}

#[tokio::test]
async fn a_block_is_confirmed_then_cuts_both_ways_without_telling_the_blocked_until_lifted() {
    let app = spawn_app().await;
    let alice = signed_in(&app, "alice").await;
    let bob = signed_in(&app, "bob").await;
    bob.post("/alice/follow", &[])
        .await
        .assert_redirected_to("/alice");
    assert_eq!(
        send(&bob, "alice", "first").await.status,
        StatusCode::NO_CONTENT
    );

    // "Block user" leads to a page that says what a block does; that page blocks nobody.
    let bobs_page = alice.get("/bob").await;
    bobs_page.assert_contains(r#"<a class="block" href="/bob/block">Block user</a>"#);
    let confirmation = alice.get("/bob/block").await;
    confirmation.assert_status(StatusCode::OK);
    confirmation.assert_contains(
        "Block bob? They will not be able to message you, and you will not be able to message \
         them.",
    );
    confirmation
        .assert_contains(r#"<form class="confirm-block" method="post" action="/bob/block">"#);
    assert_eq!(
        send(&bob, "alice", "still open").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        alice.get("/alice/block").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        alice.get("/nobody/block").await.status,
        StatusCode::NOT_FOUND
    );

    alice
        .post("/bob/block", &[])
        .await
        .assert_contains("You have blocked &#34;bob&#34;: neither of you can message the other");
    alice.get("/bob/block").await.assert_redirected_to("/bob");
    let blocked = send(&bob, "alice", "second").await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    let refusal = blocked.json();
    assert_eq!(
        refusal["error_msg"],
        "You cannot send messages to this user"
    );
    // The blocked user is told exactly what a stranger is.
    let carol = signed_in(&app, "carol").await;
    assert_eq!(send(&carol, "alice", "hello").await.json(), refusal);
    // Nor does any page tell bob: he is offered what he was before the block.
    let alices_page = bob.get("/alice").await;
    alices_page.assert_contains(">Send a message</a>");
    alices_page.assert_lacks("blocked");
    bob.get("/messages/alice")
        .await
        .assert_contains("<textarea id=\"chat-box\"");
    // The block cuts both ways: alice cannot write to bob either, and is told why.
    let blocking = send(&alice, "bob", "from alice").await;
    assert_eq!(blocking.status, StatusCode::FORBIDDEN);
    assert_eq!(
        blocking.json()["error_msg"],
        "You have blocked this user; unblock them to write to them"
    );
    // Her pages say so instead of offering to write.
    let bobs_page = alice.get("/bob").await;
    bobs_page.assert_contains("You have blocked this user: neither of you can message the other.");
    bobs_page.assert_lacks("Send a message");
    bobs_page.assert_lacks("Block user");
    let conversation = alice.get("/messages/bob").await;
    conversation.assert_contains("You have blocked bob: neither of you can message the other.");
    conversation.assert_lacks("<textarea");
    let refused_form = alice
        .post("/messages/bob", &[("content", "by the form")])
        .await;
    assert_eq!(refused_form.status, StatusCode::FORBIDDEN);

    alice
        .post("/bob/unblock", &[])
        .await
        .assert_redirected_to("/bob");
    assert_eq!(
        send(&bob, "alice", "third").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&alice, "bob", "from alice").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        contents(&alice.get("/chat/with/bob").await.json()),
        ["from alice", "third", "still open", "first"]
    );
    assert_eq!(
        alice.post("/alice/block", &[]).await.status,
        StatusCode::BAD_REQUEST,
        "nobody blocks themselves"
    );
}

#[tokio::test]
async fn bad_messages_and_unknown_people_get_clear_errors() {
    let app =
        spawn_app_with(|config| config.chat_policy = api::config::ChatPolicySetting::Anyone).await;
    let alice = signed_in(&app, "alice").await;
    signed_in(&app, "bob").await;
    // Strangers may talk under `anyone`.
    assert_eq!(
        send(&alice, "bob", "hello stranger").await.status,
        StatusCode::NO_CONTENT
    );
    let cases = [
        (
            "nobody",
            "hi",
            StatusCode::NOT_FOUND,
            "Unknown user: nobody",
        ),
        (
            "alice",
            "hi",
            StatusCode::BAD_REQUEST,
            "You cannot send a message to yourself",
        ),
        (
            "bob",
            "  ",
            StatusCode::BAD_REQUEST,
            "You have to write a message",
        ),
        (
            "bob",
            &"x".repeat(1_001),
            StatusCode::BAD_REQUEST,
            "A message can have at most 1000 characters",
        ),
    ];
    for (to, content, status, message) in cases {
        let reply = send(&alice, to, content).await;
        assert_eq!(reply.status, status, "{message}");
        assert_eq!(reply.json()["error_msg"], message);
    }
    let garbled = alice
        .post_json("/chat/with/bob", &json!({"text": "wrong field"}))
        .await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);
    let beyond = alice
        .post_json("/chat/with/bob/read", &json!({"up_to": 9}))
        .await;
    assert_eq!(beyond.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        alice.get("/chat/with/bob?before=x").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_long_conversation_pages_by_message_number_without_gaps() {
    let app =
        spawn_app_with(|config| config.chat_policy = api::config::ChatPolicySetting::Anyone).await;
    let alice = signed_in(&app, "alice").await;
    signed_in(&app, "bob").await;
    for n in 1..=120 {
        assert_eq!(
            send(&alice, "bob", &format!("message {n}")).await.status,
            StatusCode::NO_CONTENT
        );
    }
    let mut seen = Vec::new();
    let mut path = "/chat/with/bob".to_owned();
    loop {
        let page = alice.get(&path).await.json();
        seen.extend(contents(&page).into_iter().map(str::to_owned));
        match page["older"].as_i64() {
            Some(before) => path = format!("/chat/with/bob?before={before}"),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=120).rev().map(|n| format!("message {n}")).collect();
    assert_eq!(seen, expected);

    // The pages: the newest (71 to 120) has the box and leads up; each older one leads up
    // and back down, and has no box.
    let earlier = |before: u32| format!(r#"<a rel="next" href="/messages/bob?before={before}">"#);
    let newest = alice.get("/messages/bob").await;
    newest.assert_contains(&earlier(71));
    newest.assert_contains("<textarea");
    newest.assert_lacks("later messages");
    let middle = alice.get("/messages/bob?before=71").await;
    middle.assert_contains("message 21<");
    middle.assert_contains("message 70<");
    middle.assert_contains(&earlier(21));
    middle.assert_contains(r#"<a rel="prev" href="/messages/bob">later messages &darr;</a>"#);
    middle.assert_lacks("<textarea");
    middle.assert_lacks("data-chat=");
    let first = alice.get("/messages/bob?before=21").await;
    first.assert_contains("message 1<");
    first.assert_lacks("earlier messages");
    first.assert_contains(
        r#"<a rel="prev" href="/messages/bob?before=71">later messages &darr;</a>"#,
    );
}

/// Every chat route, and the document describing them: (method, path template).
const CHAT_OPERATIONS: [(&str, &str); 6] = [
    ("get", "/chat/inbox"),
    ("get", "/chat/live"),
    ("get", "/chat/with/{partner}"),
    ("post", "/chat/with/{partner}"),
    ("post", "/chat/with/{partner}/read"),
    ("get", "/chat/openapi.json"),
];

#[tokio::test]
async fn the_chat_routes_are_described_by_their_own_document_and_all_served() {
    let app = spawn_app().await;
    let document: Value = reqwest::get(format!("{}/chat/openapi.json", app.web_url))
        .await
        .unwrap()
        .json()
        .await
        .expect("the document is JSON");
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let scheme = &document["components"]["securitySchemes"]["browser_session"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "cookie");
    assert_eq!(scheme["name"], "minitwit_session");
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.push((method.clone(), path.clone()));
            if path != "/chat/openapi.json" {
                assert_eq!(
                    operation["security"],
                    json!([{"browser_session": []}]),
                    "{method} {path}"
                );
                assert!(operation["responses"]["401"].is_object(), "{method} {path}");
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = CHAT_OPERATIONS
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // Each is served: signed in, none is the router's 404 or 405.
    let alice = signed_in(&app, "alice").await;
    signed_in(&app, "bob").await;
    for (method, path) in CHAT_OPERATIONS {
        if path == "/chat/live" {
            continue; // a stream that never ends; the browser suites open it
        }
        let path = path.replace("{partner}", "bob");
        let page = match method {
            "get" => alice.get(&path).await,
            _ => alice.post_json(&path, &json!({})).await,
        };
        assert!(
            page.status != StatusCode::METHOD_NOT_ALLOWED
                && !(page.status == StatusCode::NOT_FOUND && page.body.contains("no such page")),
            "{method} {path}: {} {}",
            page.status,
            page.body
        );
    }
}

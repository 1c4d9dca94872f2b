//! Chat in real headless Chromium: two people in two browsers see each other's messages and
//! their unread counts change without reloading, and a message sent through one server
//! replica reaches a browser connected to another. A screenshot of a conversation goes to
//! `target/test-artifacts/screenshots/chat.png` (the README shows it).

use std::time::Duration;

use serde_json::{json, Value};
use test_support::app::spawn_app;
use test_support::browser::Browser;
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::{assert_no_content, SimClient};
use test_support::web_client::WebClient;

use crate::MINITWIT;

/// How long a browser may take to show what the server already did.
pub(crate) const SHOWN_WITHIN: Duration = Duration::from_secs(10);

/// Registers `names` (password `pw`) and makes the first follow the rest: under the default
/// policy, one follow lets two people talk.
pub(crate) async fn people(sim: &SimClient, names: &[&str]) {
    for name in names {
        assert_no_content(
            sim.register(name, &format!("{name}@example.org"), "pw", None)
                .await,
        );
    }
    for other in &names[1..] {
        assert_no_content(sim.follow(names[0], other, None).await);
    }
}

/// A browser signed in as `name` on the site at `site`.
pub(crate) async fn browser_of(site: &str, name: &str) -> Browser {
    let browser = Browser::start().await;
    browser.goto(&format!("{site}/login")).await;
    browser.fill_inputs_in_order(&[name, "pw"]).await;
    browser.press_enter_on_input(0).await;
    browser.wait_for(".flashes", SHOWN_WITHIN).await;
    browser
}

/// Marks the page, so that a later check can tell it was not reloaded.
async fn mark_page(browser: &Browser) {
    browser
        .client()
        .execute("window.notReloaded = true; return null;", Vec::new())
        .await
        .expect("marking the page");
}

async fn assert_not_reloaded(browser: &Browser) {
    let marked = browser
        .client()
        .execute("return window.notReloaded === true;", Vec::new())
        .await
        .expect("reading the mark");
    assert_eq!(marked, Value::Bool(true), "the page was reloaded");
}

/// Types `text` into the conversation's box and presses Enter, as a person would.
pub(crate) async fn type_and_send(browser: &Browser, text: &str) {
    let box_ = browser
        .wait_for("form.chatbox textarea", SHOWN_WITHIN)
        .await;
    box_.send_keys(text).await.expect("typing");
    box_.send_keys(&char::from(fantoccini::key::Key::Enter).to_string())
        .await
        .expect("pressing Enter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_in_two_browsers_see_each_others_messages_arrive_live() {
    let app = spawn_app().await;
    people(&app.client(), &["ada", "grace"]).await;
    let site = &app.web_url;
    let ada = browser_of(site, "ada").await;
    let grace = browser_of(site, "grace").await;

    // Grace watches her inbox; Ada opens the conversation from Grace's page.
    grace.goto(&format!("{site}/messages")).await;
    grace
        .wait_for("ul[data-chat-inbox] li.empty", SHOWN_WITHIN)
        .await;
    mark_page(&grace).await;
    ada.goto(&format!("{site}/grace")).await;
    ada.click("div.chatstatus a").await;
    ada.wait_for("ol[data-chat]", SHOWN_WITHIN).await;
    mark_page(&ada).await;

    type_and_send(&ada, "Hello Grace! <b>not bold</b>").await;
    ada.wait_for_text(
        "ol.chat li.mine",
        "Hello Grace! <b>not bold</b>",
        SHOWN_WITHIN,
    )
    .await;
    // Grace's inbox shows the conversation, one unread, and so does her navigation.
    grace
        .wait_for_text("ul[data-chat-inbox] li", "Hello Grace!", SHOWN_WITHIN)
        .await;
    grace.wait_for_text("span.unread", "1", SHOWN_WITHIN).await;
    assert_not_reloaded(&grace).await;

    // Grace opens it (which reads it) and answers.
    grace.click("ul[data-chat-inbox] li a").await;
    grace
        .wait_for_text("ol.chat li.theirs", "Hello Grace!", SHOWN_WITHIN)
        .await;
    assert_eq!(
        grace.texts_of("nav span.unread").await,
        [""],
        "read, so hidden"
    );
    mark_page(&grace).await;
    type_and_send(&grace, "Hi Ada, nice to meet you").await;
    ada.wait_for_text("ol.chat li.theirs", "nice to meet you", SHOWN_WITHIN)
        .await;
    grace
        .wait_for_text("ol.chat li.mine", "nice to meet you", SHOWN_WITHIN)
        .await;
    assert_not_reloaded(&ada).await;
    assert_not_reloaded(&grace).await;
    // Ada has the conversation open and visible: the answer is read at once.
    let deadline = std::time::Instant::now() + SHOWN_WITHIN;
    loop {
        let read_up_to: Option<i64> = sqlx::query_scalar(
            "SELECT up_to FROM conversations_v2.read_marks WHERE reader = 'ada'",
        )
        .fetch_optional(&app.db.pool)
        .await
        .unwrap();
        if read_up_to == Some(2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ada's page did not mark the answer read (mark: {read_up_to:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The markup in Ada's message stayed text.
    assert!(grace.texts_of("ol.chat b").await.is_empty());
    // The deliveries and the two open streams show in the metrics.
    let metrics = reqwest::get(format!("{}/metrics", app.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{metrics}"))
    };
    assert!(value("minitwit_chat_delivery_seconds_count") >= 2.0);
    assert!(value("minitwit_chat_streams") >= 2.0);
    ada.screenshot("chat").await;

    // A refused message says why, in the page, and loses nothing typed.
    let status = app
        .client()
        .unfollow("ada", "grace", None)
        .await
        .unwrap()
        .status;
    assert!(status.is_success());
    type_and_send(&ada, "are you there?").await;
    let error = ada
        .wait_for_text(
            ".chat-error",
            "You cannot send messages to this user",
            SHOWN_WITHIN,
        )
        .await;
    assert!(!error.is_empty());
    let kept = ada
        .client()
        .execute(
            "return document.querySelector('form.chatbox textarea').value;",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(kept, json!("are you there?"));

    ada.close().await;
    grace.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_one_replica_reaches_a_browser_on_another() {
    let db = TestDatabase::create().await;
    let writer = ServerProcess::start(MINITWIT, &db.server_url).await;
    let reader = ServerProcess::start(MINITWIT, &db.server_url).await;
    people(&writer.client(), &["ada", "grace"]).await;
    let ada = browser_of(&reader.web_url, "ada").await;
    ada.goto(&format!("{}/messages/grace", reader.web_url))
        .await;
    ada.wait_for("ol[data-chat] li.empty", SHOWN_WITHIN).await;
    mark_page(&ada).await;

    let grace = WebClient::new(&writer.web_url);
    grace.login("grace", "pw").await.assert_redirected_to("/");
    for n in 1..=3 {
        let text = format!("through the other replica {n}");
        let sent = grace
            .post_json("/chat/with/ada", &json!({ "content": text }))
            .await;
        assert!(sent.status.is_success(), "{}", sent.body);
        ada.wait_for_text("ol.chat li.theirs", &text, SHOWN_WITHIN)
            .await;
    }
    assert_not_reloaded(&ada).await;
    ada.close().await;
    writer.terminate().await;
    reader.terminate().await;
}

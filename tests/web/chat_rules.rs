//! The chat tells its rules before they bite, in real headless Chromium where the page's
//! script is involved: the box's label, keys and length limit, refusals that say why and do
//! not linger, a long conversation opening at its newest message with older pages around
//! it, inbox avatars that fall back when Gravatar is out of reach, and blocking — confirmed
//! first, and quieter than following. Over HTTP: a box and "Send a message" are offered
//! only where a message would be taken, and saying why elsewhere.

use fantoccini::elements::Element;
use fantoccini::key::Key;
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::app::{spawn_app, spawn_app_with};
use test_support::browser::Browser;
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

use crate::chat::{send, signed_in};
use crate::chat_live::{browser_of, people, type_and_send, SHOWN_WITHIN};

/// What the pages say where the policy does not let their viewer write.
const POLICY_RULE: &str = "You can message people you follow or who follow you.";

/// Polls `script` until it returns `true`, failing with `what` after [`SHOWN_WITHIN`].
async fn wait_until_true(browser: &Browser, script: &str, what: &str) {
    let deadline = std::time::Instant::now() + SHOWN_WITHIN;
    while browser.evaluate(script).await != Value::Bool(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn is_displayed(element: &Element) -> bool {
    element.is_displayed().await.expect("asking whether shown")
}

/// The font weight and size (px) the first element matching `css` is shown in.
async fn weight_and_size(browser: &Browser, css: &str) -> (f64, f64) {
    let script = format!(
        "const style = getComputedStyle(document.querySelector({css:?}));
         return [Number(style.fontWeight), parseFloat(style.fontSize)];"
    );
    let shown = browser.evaluate(&script).await;
    let number = |index: usize| {
        shown[index]
            .as_f64()
            .unwrap_or_else(|| panic!("{css}'s font: {shown}"))
    };
    (number(0), number(1))
}

/// Whether the whole of the first element matching `css` is inside the window.
async fn in_view(browser: &Browser, css: &str) -> bool {
    let script = format!(
        "const box = document.querySelector({css:?}).getBoundingClientRect();
         return box.top >= 0 && box.bottom <= window.innerHeight;"
    );
    browser.evaluate(&script).await == Value::Bool(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_box_tells_its_keys_its_limit_and_why_a_message_is_refused_until_one_is_sent() {
    let app = spawn_app().await;
    people(&app.client(), &["ada", "grace"]).await;
    let site = &app.web_url;
    let ada = browser_of(site, "ada").await;
    ada.goto(&format!("{site}/messages/grace")).await;
    ada.wait_for("ol[data-chat]", SHOWN_WITHIN).await;
    let box_ = ada.wait_for("form.chatbox textarea", SHOWN_WITHIN).await;

    // The label names the box: clicking it puts the cursor there.
    ada.click("form.chatbox label").await;
    assert_eq!(
        ada.evaluate("return document.activeElement.tagName;").await,
        json!("TEXTAREA"),
        "clicking \"Message to grace\" focuses the box"
    );
    // The keys are told beside the box, and do what they say.
    ada.wait_for_text(
        "form.chatbox p",
        "Enter sends; Shift+Enter starts a new line.",
        SHOWN_WITHIN,
    )
    .await;
    let error = ada.wait_for("form.chatbox .chat-error", SHOWN_WITHIN).await;
    assert!(
        !is_displayed(&error).await,
        "no error before anything is sent"
    );

    // Only spaces: refused, saying why, rather than nothing happening.
    type_and_send(&ada, "   ").await;
    ada.wait_for_text(".chat-error", "You have to write a message", SHOWN_WITHIN)
        .await;
    assert!(is_displayed(&error).await);

    // A message of two lines is then sent, and the refusal no longer shows.
    box_.clear().await.expect("clearing the box");
    let shift_enter = format!(
        "{}{}{}",
        char::from(Key::Shift),
        char::from(Key::Enter),
        char::from(Key::Null)
    );
    box_.send_keys(&format!("first line{shift_enter}second line"))
        .await
        .expect("typing two lines");
    assert!(
        ada.texts_of("ol.chat li.mine").await.is_empty(),
        "Shift+Enter sent nothing"
    );
    box_.send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("pressing Enter");
    let sent = ada
        .wait_for_text("ol.chat li.mine", "second line", SHOWN_WITHIN)
        .await;
    assert!(sent.starts_with("first line\nsecond line"), "{sent:?}");
    wait_until_true(
        &ada,
        "return document.querySelector('form.chatbox textarea').value === '';",
        "the box is emptied",
    )
    .await;
    assert!(
        !is_displayed(&error).await,
        "a refusal stays on screen after a message was sent"
    );

    // Near the limit, what is left is shown, and told to screen readers once typing pauses.
    let counter = ada.wait_for("form.chatbox .chat-count", SHOWN_WITHIN).await;
    box_.send_keys(&"x".repeat(899)).await.expect("typing");
    assert!(!is_displayed(&counter).await, "no count far from the limit");
    box_.send_keys(&"x".repeat(51)).await.expect("typing");
    ada.wait_for_text(".chat-count", "50 characters left", SHOWN_WITHIN)
        .await;
    wait_until_true(
        &ada,
        "return document.querySelector('form.chatbox [role=status]').textContent
             === '50 characters left';",
        "the count is announced",
    )
    .await;
    box_.send_keys(&"x".repeat(60)).await.expect("typing");
    ada.wait_for_text(".chat-count", "0 characters left", SHOWN_WITHIN)
        .await;
    assert_eq!(
        ada.evaluate("return document.querySelector('form.chatbox textarea').value.length;")
            .await,
        json!(1_000)
    );

    // A refusal by the policy says why too, and goes once a message is sent again.
    box_.clear().await.expect("clearing the box");
    let sim = app.client();
    assert_no_content(sim.unfollow("ada", "grace", None).await);
    type_and_send(&ada, "are you there?").await;
    ada.wait_for_text(
        ".chat-error",
        "You cannot send messages to this user",
        SHOWN_WITHIN,
    )
    .await;
    assert_no_content(sim.follow("ada", "grace", None).await);
    box_.send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("sending again");
    ada.wait_for_text("ol.chat li.mine", "are you there?", SHOWN_WITHIN)
        .await;
    wait_until_true(
        &ada,
        "return document.querySelector('form.chatbox textarea').value === '';",
        "the box is emptied",
    )
    .await;
    assert!(!is_displayed(&error).await, "the refusal went");
    ada.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_opens_at_its_newest_message_with_older_pages_around_it() {
    let app =
        spawn_app_with(|config| config.chat_policy = api::config::ChatPolicySetting::Anyone).await;
    let site = &app.web_url;
    let alice = signed_in(&app, "alice").await;
    signed_in(&app, "bob").await;
    for n in 1..=60 {
        let sent = send(&alice, "bob", &format!("message {n}")).await;
        sent.assert_status(StatusCode::NO_CONTENT);
    }
    let bob = Browser::start().await;
    bob.goto(&format!("{site}/login")).await;
    bob.fill_inputs_in_order(&["bob", "secret"]).await;
    bob.press_enter_on_input(0).await;
    bob.wait_for(".flashes", SHOWN_WITHIN).await;

    bob.goto(&format!("{site}/messages/alice")).await;
    bob.wait_for_text("ol.chat li:last-child", "message 60", SHOWN_WITHIN)
        .await;
    wait_until_true(&bob, "return window.scrollY > 0;", "the page scrolled down").await;
    assert!(
        in_view(&bob, "ol.chat li:last-child").await,
        "the newest message"
    );
    assert!(in_view(&bob, "form.chatbox textarea").await, "the box");
    assert!(!in_view(&bob, "ol.chat li:first-child").await);

    // Up to the older page, which leads back down.
    bob.click("a[rel=next]").await;
    bob.wait_for_text("ol.chat li:first-child", "message 1", SHOWN_WITHIN)
        .await;
    assert_eq!(
        bob.texts_of("ol.chat li:last-child p").await,
        ["message 10"]
    );
    assert!(bob.texts_of("form.chatbox").await.is_empty(), "no box");
    assert_eq!(bob.text_of("a[rel=prev]").await, "later messages ↓");
    bob.click("a[rel=prev]").await;
    bob.wait_for("form.chatbox textarea", SHOWN_WITHIN).await;
    assert!(bob.current_url().await.ends_with("/messages/alice"));
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_avatars_refreshed_live_fall_back_when_gravatar_is_out_of_reach() {
    // Gravatar (the default) is out of reach here, as for anyone behind a blocker.
    let app = spawn_app().await;
    people(&app.client(), &["ada", "grace"]).await;
    let site = &app.web_url;
    let grace = browser_of(site, "grace").await;
    grace.goto(&format!("{site}/messages")).await;
    grace
        .wait_for("ul[data-chat-inbox] li.empty", SHOWN_WITHIN)
        .await;

    let ada = WebClient::new(site);
    ada.login("ada", "pw").await.assert_redirected_to("/");
    for text in ["first, live", "second, live"] {
        send(&ada, "grace", text)
            .await
            .assert_status(StatusCode::NO_CONTENT);
        grace
            .wait_for_text("ul[data-chat-inbox] li", text, SHOWN_WITHIN)
            .await;
        wait_until_true(
            &grace,
            "const avatars = [...document.querySelectorAll('ul[data-chat-inbox] img')];
             return avatars.length > 0
                 && avatars.every(img => img.complete && img.naturalWidth > 0);",
            "the inbox's avatars show",
        )
        .await;
    }
    grace.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_is_confirmed_first_and_offered_more_quietly_than_following() {
    let app = spawn_app().await;
    // Grace follows Ada: Ada may write to her, and does not follow her.
    people(&app.client(), &["grace", "ada"]).await;
    let site = &app.web_url;
    let ada = browser_of(site, "ada").await;
    ada.goto(&format!("{site}/grace")).await;
    let follow = ada.wait_for("div.followstatus button", SHOWN_WITHIN).await;
    assert_eq!(follow.text().await.unwrap(), "Follow user");
    ada.wait_for_text("div.chatstatus a", "Send a message", SHOWN_WITHIN)
        .await;

    // "Block user" is there, but quieter than "Follow user": lighter and smaller.
    let (follow_weight, follow_size) = weight_and_size(&ada, "div.followstatus button").await;
    let (block_weight, block_size) = weight_and_size(&ada, "div.chatstatus a.block").await;
    assert!(
        block_weight < follow_weight,
        "weight: block {block_weight}, follow {follow_weight}"
    );
    assert!(
        block_size < follow_size,
        "size: block {block_size}px, follow {follow_size}px"
    );

    // One click only asks.
    ada.click("div.chatstatus a.block").await;
    let question = ada.text_of("form.confirm-block").await;
    assert!(
        question.contains(
            "Block grace? They will not be able to message you, and you will not be able to \
             message them."
        ),
        "{question}"
    );
    ada.click("form.confirm-block a").await;
    ada.wait_for_text("div.chatstatus a", "Send a message", SHOWN_WITHIN)
        .await;

    // Confirmed, the block is made; neither may write to the other now.
    ada.click("div.chatstatus a.block").await;
    ada.click("form.confirm-block button").await;
    ada.wait_for_text(
        ".flashes",
        "You have blocked \"grace\": neither of you can message the other",
        SHOWN_WITHIN,
    )
    .await;
    let status = ada.text_of("div.chatstatus").await;
    assert!(
        status.contains("You have blocked this user") && !status.contains("Send a message"),
        "{status}"
    );
    ada.goto(&format!("{site}/messages/grace")).await;
    ada.wait_for_text(
        "p.chat-closed",
        "You have blocked grace: neither of you can message the other.",
        SHOWN_WITHIN,
    )
    .await;
    assert!(ada.texts_of("form.chatbox").await.is_empty());
    ada.close().await;
}

#[tokio::test]
async fn the_pages_offer_to_write_only_where_a_message_would_be_taken() {
    let app = spawn_app().await;
    let alice = signed_in(&app, "alice").await;
    let bob = signed_in(&app, "bob").await;
    let carol = signed_in(&app, "carol").await;
    bob.post("/alice/follow", &[])
        .await
        .assert_redirected_to("/alice");

    // Bob follows Alice, so each may write to the other.
    for (client, other) in [(&bob, "alice"), (&alice, "bob")] {
        let page = client.get(&format!("/{other}")).await;
        page.assert_contains(&format!(
            r#"<a href="/messages/{other}">Send a message</a>"#
        ));
        page.assert_lacks(POLICY_RULE);
        let conversation = client.get(&format!("/messages/{other}")).await;
        conversation.assert_contains("No messages yet. Say hello!");
        conversation.assert_contains(r#"<label for="chat-box">"#);
        conversation.assert_contains(r#"<textarea id="chat-box""#);
    }
    // Carol is a stranger to Alice: offered nothing to write in, and told why.
    let page = carol.get("/alice").await;
    page.assert_lacks("Send a message");
    page.assert_contains(POLICY_RULE);
    let conversation = carol.get("/messages/alice").await;
    conversation.assert_contains("<em>No messages yet.</em>");
    conversation.assert_lacks("<textarea");
    conversation.assert_contains(POLICY_RULE);

    // Nobody writes to themselves: that address leads to the inbox, saying so.
    let own = alice.get("/messages/alice").await;
    own.assert_redirected_to("/messages");
    own.assert_contains("You cannot send a message to yourself");
    own.assert_lacks("<textarea");

    // Where anyone may write to anyone, strangers are offered it too.
    let open = spawn_app_with(|config| {
        config.chat_policy = api::config::ChatPolicySetting::Anyone;
    })
    .await;
    signed_in(&open, "alice").await;
    let carol = signed_in(&open, "carol").await;
    carol
        .get("/alice")
        .await
        .assert_contains(r#"<a href="/messages/alice">Send a message</a>"#);
    carol
        .get("/messages/alice")
        .await
        .assert_contains("No messages yet. Say hello!");
}

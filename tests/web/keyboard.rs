//! The site with the keyboard alone, in real headless Chromium: signing in, sharing a message,
//! following someone, and opening and answering a conversation take nothing but Tab,
//! Shift+Tab, Enter and typing — never a click — and wherever the focus lands, a person can
//! see it.

use std::time::Duration;

use fantoccini::key::Key;
use serde_json::json;
use test_support::app::spawn_app;
use test_support::browser::{Browser, Focused};
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

/// How long a browser may take to show what the server already did.
const SHOWN_WITHIN: Duration = Duration::from_secs(10);

/// More Tab presses than any page here needs to reach anything on it.
const MOST_PRESSES: usize = 60;

/// Which way the focus is moved.
#[derive(Clone, Copy)]
enum Direction {
    /// Tab.
    Forward,
    /// Shift+Tab.
    Back,
}

/// Moves the focus with Tab (or Shift+Tab) until it is on an element `wanted` accepts, and
/// returns that element; every element the focus passes must show that it has it.
async fn tab_to(
    browser: &Browser,
    direction: Direction,
    what: &str,
    wanted: impl Fn(&Focused) -> bool,
) -> Focused {
    let mut passed = Vec::new();
    for _ in 0..MOST_PRESSES {
        match direction {
            Direction::Forward => browser.press(Key::Tab).await,
            Direction::Back => browser.press_with_shift(Key::Tab).await,
        }
        let Some(focused) = browser.focused().await else {
            // Past the last element (or before the first) the focus leaves the page for the
            // browser's own controls; the next press brings it back.
            continue;
        };
        assert!(
            focused.is_visible(),
            "on the way to {what}, the focus is on {focused:?}, where a person cannot see it"
        );
        if wanted(&focused) {
            return focused;
        }
        passed.push(format!("{} {:?}", focused.tag, focused.text));
    }
    panic!("{what} is not reached with {MOST_PRESSES} presses; the focus went to {passed:?}");
}

/// Presses Enter where the focus is and waits for the page at `path` to show `heading`.
async fn enter_and_wait_for(browser: &Browser, site: &str, path: &str, heading: &str) {
    browser.press(Key::Enter).await;
    let deadline = std::time::Instant::now() + SHOWN_WITHIN;
    while browser.current_url().await != format!("{site}{path}") {
        assert!(
            std::time::Instant::now() < deadline,
            "Enter did not lead to {path} within {SHOWN_WITHIN:?}; the page is {}",
            browser.current_url().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.wait_for_text("h2", heading, SHOWN_WITHIN).await;
}

/// The focused element, which must be there and visible: where a page put the focus itself.
async fn focus_on_arrival(browser: &Browser) -> Focused {
    let focused = browser
        .focused()
        .await
        .expect("the page puts the focus somewhere");
    assert!(
        focused.is_visible(),
        "the focus cannot be seen: {focused:?}"
    );
    focused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_alone_signs_in_shares_follows_and_answers_a_conversation() {
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["ada", "grace"] {
        assert_no_content(
            sim.register(name, &format!("{name}@example.org"), "pw", None)
                .await,
        );
    }
    assert_no_content(
        sim.tweet("ada", "Notes on the analytical engine", None)
            .await,
    );
    // Ada follows Grace, so she may write to her, and does.
    assert_no_content(sim.follow("ada", "grace", None).await);
    let ada = WebClient::new(&app.web_url);
    ada.login("ada", "pw").await.assert_redirected_to("/");
    ada.post_json(
        "/chat/with/grace",
        &json!({ "content": "Are you free on Monday?" }),
    )
    .await
    .assert_status(reqwest::StatusCode::NO_CONTENT);
    let site = &app.web_url;
    let browser = Browser::start().await;
    browser.goto(&format!("{site}/public")).await;

    // Sign in: from the navigation to the form, whose first field has the focus already.
    tab_to(
        &browser,
        Direction::Forward,
        "the sign-in link",
        |focused| focused.tag == "a" && focused.text == "sign in",
    )
    .await;
    enter_and_wait_for(&browser, site, "/login", "Sign In").await;
    let username = focus_on_arrival(&browser).await;
    assert_eq!(username.text, "Username:", "{username:?}");
    browser.type_text("grace").await;
    tab_to(&browser, Direction::Forward, "the password", |focused| {
        focused.text == "Password:"
    })
    .await;
    browser.type_text("pw").await;
    enter_and_wait_for(&browser, site, "/", "My Timeline").await;
    assert_eq!(browser.text_of(".flashes").await, "You were logged in");

    // Share a message.
    tab_to(&browser, Direction::Forward, "the message box", |focused| {
        focused.text == "What's on your mind grace?"
    })
    .await;
    browser.type_text("Typed without a mouse").await;
    browser.press(Key::Enter).await;
    browser
        .wait_for_text(".flashes", "Your message was recorded", SHOWN_WITHIN)
        .await;
    browser
        .wait_for_text("ul.messages li", "Typed without a mouse", SHOWN_WITHIN)
        .await;

    // Follow Ada: to the public timeline, to her page from her message, and her button.
    tab_to(
        &browser,
        Direction::Forward,
        "the public timeline link",
        |focused| focused.text == "public timeline",
    )
    .await;
    enter_and_wait_for(&browser, site, "/public", "Public Timeline").await;
    tab_to(
        &browser,
        Direction::Forward,
        "Ada's name on her message",
        |focused| focused.tag == "a" && focused.text == "ada",
    )
    .await;
    enter_and_wait_for(&browser, site, "/ada", "ada's Timeline").await;
    tab_to(
        &browser,
        Direction::Forward,
        "the follow button",
        |focused| focused.text == "Follow user",
    )
    .await;
    browser.press(Key::Enter).await;
    browser
        .wait_for_text(".flashes", "You are now following \"ada\"", SHOWN_WITHIN)
        .await;
    browser
        .wait_for_text(
            ".followstatus",
            "You are currently following this user.",
            SHOWN_WITHIN,
        )
        .await;

    // Open Ada's message from the inbox, and answer: the box is the last thing on the page
    // but its button, so it is quickest reached backwards.
    tab_to(
        &browser,
        Direction::Forward,
        "the messages link",
        |focused| focused.text.starts_with("messages"),
    )
    .await;
    enter_and_wait_for(&browser, site, "/messages", "Messages").await;
    tab_to(
        &browser,
        Direction::Forward,
        "the conversation with Ada",
        |focused| focused.text.contains("Are you free on Monday?"),
    )
    .await;
    enter_and_wait_for(&browser, site, "/messages/ada", "ada · Messages").await;
    browser
        .wait_for_text("ol.chat li.theirs", "Are you free on Monday?", SHOWN_WITHIN)
        .await;
    tab_to(&browser, Direction::Back, "the message box", |focused| {
        focused.tag == "textarea"
    })
    .await;
    browser.type_text("Yes, Monday suits me").await;
    browser.press(Key::Enter).await;
    browser
        .wait_for_text("ol.chat li.mine", "Yes, Monday suits me", SHOWN_WITHIN)
        .await;
    // The box is ready for the next message, with the focus still in it.
    let after = focus_on_arrival(&browser).await;
    assert_eq!(after.tag, "textarea", "{after:?}");
    assert_eq!(
        ada.get("/chat/with/grace").await.json()["messages"][0]["content"],
        "Yes, Monday suits me"
    );
    browser.close().await;
    app.stop().await;
}

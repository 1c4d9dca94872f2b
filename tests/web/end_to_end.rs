//! End to end in a real headless Chromium: sign up the way the course's UI test does, sign
//! in, share a message, follow someone, and watch a message posted elsewhere arrive without
//! a reload. Screenshots of the main pages go to `target/test-artifacts/screenshots/`.

use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::Value;
use test_support::app::spawn_app;
use test_support::browser::Browser;
use test_support::sim_client::assert_no_content;

/// How long the browser may take to show what the server already did.
const SHOWN_WITHIN: Duration = Duration::from_secs(10);

/// Whether every avatar on the page has loaded an image (none shows broken).
async fn all_avatars_loaded(browser: &Browser) -> bool {
    let loaded = browser
        .evaluate(
            "return [...document.querySelectorAll('ul.messages img')]
                 .every(img => img.complete && img.naturalWidth > 0);",
        )
        .await;
    loaded == Value::Bool(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_signs_up_shares_follows_and_sees_a_message_arrive_live() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(
        sim.register("Ada Lovelace", "ada@example.com", "pw", None)
            .await,
    );
    assert_no_content(
        sim.tweet("Ada Lovelace", "Notes on the analytical engine", None)
            .await,
    );
    let site = &app.web_url;
    let browser = Browser::start().await;

    // Sign up as the course's UI test does: the page's inputs in order, Enter on the fifth.
    browser.goto(&format!("{site}/register")).await;
    browser.wait_for(".actions", SHOWN_WITHIN).await;
    browser.screenshot("sign-up").await;
    let inputs = browser
        .client()
        .find_all(Locator::Css("input"))
        .await
        .expect("the form's inputs");
    assert_eq!(inputs.len(), 5, "four fields and the button");
    for (input, value) in inputs
        .iter()
        .zip(["Me", "me@some.where", "secure123", "secure123"])
    {
        input.send_keys(value).await.expect("typing");
    }
    inputs[4]
        .send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("pressing Enter");
    browser.wait_for(".flashes", SHOWN_WITHIN).await;
    assert_eq!(
        browser.text_of(".flashes").await,
        "You were successfully registered and can login now"
    );
    assert!(browser.current_url().await.ends_with("/login"));
    browser.screenshot("sign-in-after-sign-up").await;

    // Sign in.
    browser.fill_inputs_in_order(&["Me", "secure123"]).await;
    browser.press_enter_on_input(1).await;
    browser
        .wait_for_text(".flashes", "You were logged in", SHOWN_WITHIN)
        .await;
    assert_eq!(browser.text_of("h2").await, "My Timeline");

    // Share a message: it is on the page the redirect lands on.
    browser
        .client()
        .find(Locator::Css("input[name=text]"))
        .await
        .expect("the twitbox")
        .send_keys("Hello from a real browser <3")
        .await
        .expect("typing");
    browser.click("input[value=Share]").await;
    browser
        .wait_for_text(".flashes", "Your message was recorded", SHOWN_WITHIN)
        .await;
    browser
        .wait_for_text(
            "ul.messages li",
            "Hello from a real browser <3",
            SHOWN_WITHIN,
        )
        .await;
    browser.screenshot("my-timeline").await;

    // Follow another user: found on the public timeline, followed from their page.
    browser.goto(&format!("{site}/public")).await;
    browser.click("a[href='/Ada%20Lovelace']").await;
    browser
        .wait_for_text(
            ".followstatus",
            "You are not yet following this user.",
            SHOWN_WITHIN,
        )
        .await;
    browser.click("button.follow").await;
    browser
        .wait_for_text(
            ".flashes",
            "You are now following \"Ada Lovelace\"",
            SHOWN_WITHIN,
        )
        .await;
    browser
        .wait_for_text(
            ".followstatus",
            "You are currently following this user.",
            SHOWN_WITHIN,
        )
        .await;
    assert!(browser.current_url().await.ends_with("/Ada%20Lovelace"));
    browser.screenshot("user-timeline").await;

    // My timeline, left open: a message Ada posts elsewhere appears without a reload.
    browser.goto(&format!("{site}/")).await;
    browser
        .wait_for_text(
            "ul.messages",
            "Notes on the analytical engine",
            SHOWN_WITHIN,
        )
        .await;
    browser
        .evaluate("window.stillTheSamePage = true; return null;")
        .await;
    assert_no_content(
        sim.tweet("Ada Lovelace", "A message posted elsewhere", None)
            .await,
    );
    let arrived = browser
        .wait_for_text("ul.messages li", "A message posted elsewhere", SHOWN_WITHIN)
        .await;
    assert!(arrived.contains("Ada Lovelace"), "{arrived}");
    assert_eq!(
        browser
            .evaluate("return window.stillTheSamePage === true;")
            .await,
        Value::Bool(true),
        "the message arrived without a reload"
    );
    let order = browser.texts_of("ul.messages li").await;
    assert!(
        order[0].contains("A message posted elsewhere"),
        "newest first: {order:?}"
    );
    // Gravatar is out of reach here: every avatar fell back to the server's identicon.
    wait_until(|| all_avatars_loaded(&browser), "all avatars loaded").await;
    browser.screenshot("my-timeline-live-update").await;

    browser.goto(&format!("{site}/public")).await;
    wait_until(|| all_avatars_loaded(&browser), "all avatars loaded").await;
    browser.screenshot("public-timeline").await;
    browser.close().await;

    // The same page on a phone.
    let phone = Browser::start_phone().await;
    phone.goto(&format!("{site}/public")).await;
    phone.wait_for("ul.messages li", SHOWN_WITHIN).await;
    let fits = phone
        .evaluate("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await;
    assert_eq!(fits, Value::Bool(true), "no sideways scrolling on a phone");
    phone.screenshot("public-timeline-phone").await;
    phone.close().await;
    app.stop().await;
}

/// Polls `condition` until it holds, failing after a while.
async fn wait_until<F, Fut>(condition: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

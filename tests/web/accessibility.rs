//! Pages everyone can use, checked in real headless Chromium: axe-core's audit (WCAG 2.1 A
//! and AA, and its best practices) finds nothing serious or critical on any page, signed out
//! and signed in, on a desktop and on a phone; and what a screen reader is handed — new
//! messages announced politely where they arrive, unread counts read as "3 unread" — holds
//! as the counts change live.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;
use test_support::accessibility::{accessible_node, audit};
use test_support::app::{spawn_app, TestApp};
use test_support::browser::Browser;
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

/// How long a browser may take to show what the server already did.
const SHOWN_WITHIN: Duration = Duration::from_secs(10);

/// The person whose pages are audited signed in.
const VIEWER: &str = "grace";

/// Someone with messages and a conversation with the viewer, whom the viewer follows.
const FRIEND: &str = "ada";

/// Someone the viewer has nothing to do with yet.
const STRANGER: &str = "hopper";

/// The pages a visitor reaches signed out: the timelines, the forms, and error pages (a 404,
/// a 400, and the signed-in pages, which are a 401 to a visitor).
const SIGNED_OUT_PAGES: [&str; 9] = [
    "/public",
    "/ada",
    "/login",
    "/register",
    "/nobody-by-this-name",
    "/public?before=unreadable",
    "/messages",
    "/messages/ada",
    "/settings",
];

/// The pages a signed-in user reaches: the three timelines (a followed user's, a stranger's,
/// their own), the inbox, conversations (one with messages, one empty), blocking, settings,
/// and an error page.
const SIGNED_IN_PAGES: [&str; 11] = [
    "/",
    "/public",
    "/ada",
    "/hopper",
    "/grace",
    "/messages",
    "/messages/ada",
    "/messages/hopper",
    "/hopper/block",
    "/settings",
    "/nobody-by-this-name",
];

/// Registers the three people; the viewer follows the friend, both have posted, and the
/// friend has written to the viewer, who answered once. Returns the friend's session, for
/// writing more.
async fn neighbourhood(app: &TestApp) -> WebClient {
    let sim = app.client();
    for name in [VIEWER, FRIEND, STRANGER] {
        assert_no_content(
            sim.register(name, &format!("{name}@example.org"), "pw", None)
                .await,
        );
    }
    assert_no_content(
        sim.tweet(FRIEND, "Notes on the analytical engine", None)
            .await,
    );
    assert_no_content(sim.tweet(VIEWER, "Found a moth in the relay", None).await);
    assert_no_content(sim.follow(VIEWER, FRIEND, None).await);
    let friend = signed_in(app, FRIEND).await;
    let viewer = signed_in(app, VIEWER).await;
    send(&friend, VIEWER, "Hello Grace, how is the compiler going?").await;
    send(&viewer, FRIEND, "Nearly there!").await;
    send(&friend, VIEWER, "Tell me when it runs.").await;
    friend
}

/// A session of `name` (password `pw`), outside any browser.
async fn signed_in(app: &TestApp, name: &str) -> WebClient {
    let client = WebClient::new(&app.web_url);
    client.login(name, "pw").await.assert_redirected_to("/");
    client
}

/// A private message from `from`'s session to `to`.
async fn send(from: &WebClient, to: &str, content: &str) {
    from.post_json(&format!("/chat/with/{to}"), &json!({ "content": content }))
        .await
        .assert_status(reqwest::StatusCode::NO_CONTENT);
}

/// Signs `browser` in as `name` (password `pw`) through the sign-in form.
async fn sign_in(browser: &Browser, site: &str, name: &str) {
    browser.goto(&format!("{site}/login")).await;
    browser.fill_inputs_in_order(&[name, "pw"]).await;
    browser.press_enter_on_input(1).await;
    browser
        .wait_for_text(".flashes", "You were logged in", SHOWN_WITHIN)
        .await;
}

/// Audits the page `browser` shows, adding what keeps people from using it to `findings`
/// under the page's `name`.
async fn audit_page(browser: &Browser, name: &str, findings: &mut String) {
    let serious: Vec<_> = audit(browser)
        .await
        .into_iter()
        .filter(|violation| violation.is_serious())
        .collect();
    if !serious.is_empty() {
        let _ = writeln!(findings, "\n{name}:");
        for violation in serious {
            let _ = writeln!(findings, "  {violation}");
        }
    }
}

/// Audits every page, signed out and then signed in as the viewer, in `browser`; panics
/// listing each serious or critical violation, page by page.
async fn audit_every_page(browser: Browser, width: &str) {
    let app = spawn_app().await;
    neighbourhood(&app).await;
    let site = &app.web_url;
    let mut findings = String::new();

    for path in SIGNED_OUT_PAGES {
        browser.goto(&format!("{site}{path}")).await;
        audit_page(&browser, &format!("{path}, signed out"), &mut findings).await;
    }
    // A refused sign-in: the form again, with the reason.
    browser.goto(&format!("{site}/login")).await;
    browser.fill_inputs_in_order(&[VIEWER, "wrong"]).await;
    browser.press_enter_on_input(1).await;
    browser.wait_for("div.error", SHOWN_WITHIN).await;
    audit_page(&browser, "/login, a wrong password", &mut findings).await;

    sign_in(&browser, site, VIEWER).await;
    for path in SIGNED_IN_PAGES {
        browser.goto(&format!("{site}{path}")).await;
        audit_page(&browser, &format!("{path}, signed in"), &mut findings).await;
    }
    browser.close().await;
    app.stop().await;
    assert!(
        findings.is_empty(),
        "axe-core found serious or critical accessibility violations at {width} width:{findings}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_has_a_serious_accessibility_violation_on_a_desktop() {
    audit_every_page(Browser::start().await, "desktop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_has_a_serious_accessibility_violation_on_a_phone() {
    audit_every_page(Browser::start_phone().await, "phone (390 px)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_messages_are_announced_politely_and_unread_counts_read_as_words() {
    let app = spawn_app().await;
    let friend = neighbourhood(&app).await;
    let site = &app.web_url;
    let browser = Browser::start().await;
    sign_in(&browser, site, VIEWER).await;

    // The timeline is a polite live region: what arrives in it is read out, after whatever
    // the person is listening to.
    let timeline = accessible_node(&browser, "ul.messages").await;
    assert_eq!(
        (timeline.role.as_str(), timeline.live.as_deref()),
        ("list", Some("polite")),
        "the timeline: {timeline:?}"
    );
    assert_no_content(
        app.client()
            .tweet(FRIEND, "A message that arrives live", None)
            .await,
    );
    browser
        .wait_for_text(
            "ul.messages li",
            "A message that arrives live",
            SHOWN_WITHIN,
        )
        .await;

    // Two unread messages: the navigation's link says so in words, not as a bare number.
    let messages_link = "nav a[href='/messages']";
    wait_for_name(&browser, messages_link, "messages 2 unread").await;
    // One more arrives while the page is open: the words follow.
    send(&friend, VIEWER, "Are you there?").await;
    wait_for_name(&browser, messages_link, "messages 3 unread").await;

    // The inbox says it of the conversation too.
    browser.goto(&format!("{site}/messages")).await;
    wait_for_name_where(
        &browser,
        "ul[data-chat-inbox] li a",
        "… 3 unread …",
        |name| name.contains("3 unread"),
    )
    .await;

    // Open, the conversation is read: nothing unread is left to say. New messages in it
    // are announced politely too.
    browser.goto(&format!("{site}/messages/{FRIEND}")).await;
    let chat = accessible_node(&browser, "ol.chat").await;
    assert_eq!(
        (chat.role.as_str(), chat.live.as_deref()),
        ("list", Some("polite")),
        "the conversation: {chat:?}"
    );
    wait_for_name(&browser, messages_link, "messages").await;
    browser.close().await;
    app.stop().await;
}

/// Waits until the accessible name of the element `css` is `name` (names change live).
async fn wait_for_name(browser: &Browser, css: &str, name: &str) {
    wait_for_name_where(browser, css, name, |read| read == name).await;
}

/// Waits until the accessible name of `css` satisfies `wanted` (described as `expected`): a
/// page just loaded may still be replacing what it shows (the inbox refreshes its list).
async fn wait_for_name_where(
    browser: &Browser,
    css: &str,
    expected: &str,
    wanted: impl Fn(&str) -> bool,
) {
    let deadline = std::time::Instant::now() + SHOWN_WITHIN;
    loop {
        let node = accessible_node(browser, css).await;
        if wanted(&node.name) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} is read as {:?}, not {expected:?}, after {SHOWN_WITHIN:?}: {node:?}",
            node.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

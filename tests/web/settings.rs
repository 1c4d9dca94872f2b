//! A signed-in user's settings: a new password ends their other sessions and replaces the old
//! one (a wrong current password or a refused new one changes nothing); a new email shows on
//! the page and in the download, an invalid one is refused; the download holds exactly what
//! they wrote and did; deleting takes the password and a form of our own, and leaves the name
//! taken; and, in real headless Chromium, a deleted account's messages leave the timelines
//! and its texts its partner's conversation, while the partner's own stay.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::app::{spawn_app, TestApp};
use test_support::browser::Browser;
use test_support::sim_client::assert_no_content;
use test_support::web_client::{Page, WebClient};

const PASSWORD: &str = "old secret";
const NEW_PASSWORD: &str = "new secret";

const PASSWORD_CHANGED: &str = "Your password was changed, and you were signed out everywhere else";
const EMAIL_CHANGED: &str = "Your email address was changed";
const ACCOUNT_DELETED: &str = "Your account was deleted, and everything you wrote with it";

/// How long a browser may take to show what the server already did.
const SHOWN_WITHIN: Duration = Duration::from_secs(10);

/// A browser-like client of `app`, registered and signed in as `name` with [`PASSWORD`].
async fn signed_in(app: &TestApp, name: &str) -> WebClient {
    let client = WebClient::new(&app.web_url);
    client.register_and_login(name, PASSWORD).await;
    client
}

async fn change_password(client: &WebClient, current: &str, new: &str, repeated: &str) -> Page {
    client
        .post(
            "/settings/password",
            &[
                ("current", current),
                ("password", new),
                ("password2", repeated),
            ],
        )
        .await
}

/// Whether a fresh client signs in as `name` with `password` (a refused sign-in shows the
/// form again instead of sending them on to their timeline).
async fn signs_in(app: &TestApp, name: &str, password: &str) -> bool {
    let page = WebClient::not_following_redirects(&app.web_url)
        .login(name, password)
        .await;
    page.status.is_redirection() && page.header("location") == Some("/")
}

/// The signed-in user's data, as the settings page's download link gives it.
async fn download(client: &WebClient) -> Value {
    let file = client.get("/settings/data").await;
    file.assert_status(StatusCode::OK);
    file.json()
}

async fn send(from: &WebClient, to: &str, content: &str) {
    let sent = from
        .post_json(&format!("/chat/with/{to}"), &json!({ "content": content }))
        .await;
    sent.assert_status(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_new_password_signs_out_the_other_sessions_and_replaces_the_old_one() {
    let app = spawn_app().await;
    let here = signed_in(&app, "ada").await;
    let elsewhere = WebClient::new(&app.web_url);
    elsewhere
        .login("ada", PASSWORD)
        .await
        .assert_redirected_to("/");

    let changed = change_password(&here, PASSWORD, NEW_PASSWORD, NEW_PASSWORD).await;
    changed.assert_redirected_to("/settings");
    changed.assert_contains(PASSWORD_CHANGED);

    // Whoever might have learnt the old password is out at their next request...
    let signed_out = elsewhere.get("/").await;
    signed_out.assert_redirected_to("/public");
    signed_out.assert_contains("<a href=\"/login\">sign in</a>");
    // ...but the session that made the change goes on.
    here.get("/").await.assert_contains("sign out [ada]");
    assert!(!signs_in(&app, "ada", PASSWORD).await, "the old password");
    assert!(
        signs_in(&app, "ada", NEW_PASSWORD).await,
        "the new password"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_current_password_or_a_refused_new_one_changes_nothing() {
    let app = spawn_app().await;
    let here = signed_in(&app, "ada").await;
    let elsewhere = WebClient::new(&app.web_url);
    elsewhere
        .login("ada", PASSWORD)
        .await
        .assert_redirected_to("/");

    // (current, new, repeated): past the first, the current password is right and the new
    // one is what is wrong, with the registration form's words.
    let refusals = [
        (
            ("not my password", NEW_PASSWORD, NEW_PASSWORD),
            "Your current password is not correct",
        ),
        (
            (PASSWORD, NEW_PASSWORD, "new secreet"),
            "The two passwords do not match",
        ),
        ((PASSWORD, "", ""), "You have to enter a password"),
    ];
    for ((current, new, repeated), error) in refusals {
        let refused = change_password(&here, current, new, repeated).await;
        refused.assert_status(StatusCode::OK);
        refused.assert_contains(error);
        refused.assert_lacks(PASSWORD_CHANGED);
    }

    elsewhere.get("/").await.assert_contains("sign out [ada]");
    assert!(signs_in(&app, "ada", PASSWORD).await, "the old password");
    assert!(
        !signs_in(&app, "ada", NEW_PASSWORD).await,
        "the refused one"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_new_email_shows_on_the_page_and_in_the_download_and_an_invalid_one_is_refused() {
    let app = spawn_app().await;
    let ada = signed_in(&app, "ada").await;
    ada.get("/settings")
        .await
        .assert_contains("value=\"ada@example.com\"");

    let changed = ada
        .post("/settings/email", &[("email", "ada@new.example")])
        .await;
    changed.assert_redirected_to("/settings");
    changed.assert_contains(EMAIL_CHANGED);
    changed.assert_contains("value=\"ada@new.example\"");
    assert_eq!(download(&ada).await["email"], "ada@new.example");

    // No `@`, and markup that would break out of the field were it not escaped.
    let refused = ada
        .post("/settings/email", &[("email", "\"><b>ada.new.example")])
        .await;
    refused.assert_status(StatusCode::OK);
    refused.assert_contains("You have to enter a valid email address");
    refused.assert_lacks(EMAIL_CHANGED);
    // The page shows again what was typed, to correct it; the account kept the last good one.
    refused.assert_contains("value=\"&#34;&gt;&lt;b&gt;ada.new.example\"");
    refused.assert_lacks("<b>ada.new.example");
    ada.get("/settings")
        .await
        .assert_contains("value=\"ada@new.example\"");
    assert_eq!(download(&ada).await["email"], "ada@new.example");
    app.stop().await;
}

#[tokio::test]
async fn deleting_takes_the_password_a_same_site_form_and_leaves_the_name_taken() {
    let app = spawn_app().await;
    let ada = signed_in(&app, "ada").await;
    ada.add_message("still here").await;

    let wrong = ada
        .post("/settings/delete", &[("password", "not my password")])
        .await;
    wrong.assert_status(StatusCode::OK);
    wrong.assert_contains("Your current password is not correct");
    wrong.assert_lacks(ACCOUNT_DELETED);
    // Another site's page, with Ada's cookie, the right password even, changes nothing.
    let cookie = ada.cookie_header(&app.web_url);
    let forger = WebClient::new(&app.web_url)
        .with_header("cookie", &cookie)
        .with_header("sec-fetch-site", "cross-site");
    let forgeries = [
        ("/settings/delete", vec![("password", PASSWORD)]),
        ("/settings/email", vec![("email", "attacker@evil.example")]),
        (
            "/settings/password",
            vec![
                ("current", PASSWORD),
                ("password", "attacker's"),
                ("password2", "attacker's"),
            ],
        ),
    ];
    for (path, form) in &forgeries {
        let forged = forger.post(path, form).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{path}");
    }
    ada.get("/public").await.assert_contains("still here");
    assert_eq!(download(&ada).await["email"], "ada@example.com");
    assert!(signs_in(&app, "ada", PASSWORD).await);

    // Signed out, there is nothing to see or download.
    let stranger = WebClient::not_following_redirects(&app.web_url);
    for path in ["/settings", "/settings/data"] {
        let page = stranger.get(path).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{path}");
        page.assert_lacks("ada@example.com");
    }

    let deleted = ada
        .post("/settings/delete", &[("password", PASSWORD)])
        .await;
    deleted.assert_redirected_to("/public");
    deleted.assert_contains(ACCOUNT_DELETED);
    deleted.assert_contains("<a href=\"/login\">sign in</a>");
    deleted.assert_lacks("still here");
    assert_eq!(
        ada.get("/settings").await.status,
        StatusCode::UNAUTHORIZED,
        "signed out"
    );
    WebClient::new(&app.web_url)
        .login("ada", PASSWORD)
        .await
        .assert_contains("Invalid username");
    // Nobody can take the name and pose as Ada.
    WebClient::new(&app.web_url)
        .register("ada", "impostor", None, None)
        .await
        .assert_contains("The username is already taken");
    app.stop().await;
}

/// Texts that a careless encoder would change: markup and entities, every kind of quote and
/// a backslash, letters beyond ASCII, and emoji made of several code points.
const TRICKY_POSTS: [&str; 3] = [
    "<script>alert(\"pwned\")</script> & <b>bold</b> &amp; &lt;",
    "It's \"quoted\", 'single', `backticked` and \\ backslashed",
    "Grüße aus Köln — naïve café, 日本語, עברית, 🦀👩‍💻🏳️‍🌈",
];

/// Private messages: the same hazards, and whitespace around and inside, which a chat box
/// keeps.
const TRICKY_PRIVATE: [&str; 3] = [
    "  <i>between us</i> & \"nobody else\"\n\tsecond line  ",
    "Ça va? 😀 </textarea><script>",
    "{\"looks\": \"like JSON\"}",
];

/// `value` as the RFC 3339 time it must be (compared as text, times with different numbers
/// of fractional digits would sort wrongly).
fn time(value: &Value) -> DateTime<FixedOffset> {
    let text = value.as_str().unwrap_or_else(|| panic!("a time: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|err| panic!("{text}: {err}"))
}

/// A private message's who and what, without its time.
fn copy(from: &str, to: &str, content: &str) -> Value {
    json!({"from": from, "to": to, "content": content, "removed": false})
}

/// `copies` without their times, which the test cannot know, once checked to be in order.
fn without_times(copies: &Value) -> Vec<Value> {
    let copies = copies.as_array().expect("a list of private messages");
    let times: Vec<DateTime<FixedOffset>> = copies
        .iter()
        .map(|message| time(&message["sent_at"]))
        .collect();
    assert!(times.is_sorted(), "oldest first: {times:?}");
    copies
        .iter()
        .map(|message| {
            let mut message = message.clone();
            message.as_object_mut().unwrap().remove("sent_at");
            message
        })
        .collect()
}

#[tokio::test]
async fn the_download_holds_exactly_what_the_user_wrote_and_did() {
    let app = spawn_app().await;
    let writer = signed_in(&app, "writer").await;
    let friend = signed_in(&app, "friend").await;
    let fan = signed_in(&app, "fan").await;
    signed_in(&app, "passer-by").await;
    signed_in(&app, "pest").await;

    for text in TRICKY_POSTS {
        writer.add_message(text).await;
    }
    friend.add_message("the friend's own message").await;
    for followee in ["friend", "passer-by"] {
        writer
            .post(&format!("/{followee}/follow"), &[])
            .await
            .assert_redirected_to(&format!("/{followee}"));
    }
    writer
        .post("/passer-by/unfollow", &[])
        .await
        .assert_redirected_to("/passer-by");
    writer
        .post("/pest/block", &[])
        .await
        .assert_redirected_to("/pest");
    // A follow in either direction lets two people talk: the writer follows the friend, the
    // fan follows the writer.
    fan.post("/writer/follow", &[])
        .await
        .assert_redirected_to("/writer");
    send(&writer, "friend", TRICKY_PRIVATE[0]).await;
    send(&friend, "writer", TRICKY_PRIVATE[1]).await;
    send(&writer, "friend", TRICKY_POSTS[2]).await;
    send(&fan, "writer", TRICKY_PRIVATE[2]).await;

    let file = writer.get("/settings/data").await;
    file.assert_status(StatusCode::OK);
    assert_eq!(file.header("content-type"), Some("application/json"));
    let disposition = file.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment;"),
        "a file to save, not a page: {disposition}"
    );
    let data = file.json();

    let mut fields: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "blocking",
            "email",
            "following",
            "messages",
            "password_changed_at",
            "private_messages",
            "registered_at",
            "username",
        ],
        "no password hash, nothing else"
    );
    assert_eq!(data["username"], "writer");
    assert_eq!(data["email"], "writer@example.com");
    let registered_at = time(&data["registered_at"]);
    assert_eq!(data["password_changed_at"], Value::Null);
    let following: Vec<&String> = data["following"].as_object().unwrap().keys().collect();
    assert_eq!(following, ["friend"], "the unfollowed passer-by is gone");
    assert!(time(&data["following"]["friend"]) > registered_at);
    assert_eq!(data["blocking"], json!(["pest"]));

    let messages = data["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages
        .iter()
        .map(|message| message["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, TRICKY_POSTS, "the writer's own, oldest first");
    let posted: Vec<DateTime<FixedOffset>> = messages
        .iter()
        .map(|message| time(&message["posted_at"]))
        .collect();
    assert!(
        posted.is_sorted() && posted[0] > registered_at,
        "{posted:?}"
    );
    assert!(messages.iter().all(|message| message["flagged"] == false));
    let ids: BTreeSet<&str> = messages
        .iter()
        .map(|message| message["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), TRICKY_POSTS.len(), "each message its own id");

    let partners: Vec<&String> = data["private_messages"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(partners, ["fan", "friend"]);
    assert_eq!(
        without_times(&data["private_messages"]["friend"]),
        [
            copy("writer", "friend", TRICKY_PRIVATE[0]),
            copy("friend", "writer", TRICKY_PRIVATE[1]),
            copy("writer", "friend", TRICKY_POSTS[2]),
        ]
    );
    assert_eq!(
        without_times(&data["private_messages"]["fan"]),
        [copy("fan", "writer", TRICKY_PRIVATE[2])]
    );
    // The friend's own download has the same conversation, to the instant.
    assert_eq!(
        download(&friend).await["private_messages"]["writer"],
        data["private_messages"]["friend"]
    );
    app.stop().await;
}

/// A browser signed in as `name` (password `pw`) on the site at `site`.
async fn browser_of(site: &str, name: &str) -> Browser {
    let browser = Browser::start().await;
    browser.goto(&format!("{site}/login")).await;
    browser.fill_inputs_in_order(&[name, "pw"]).await;
    browser.press_enter_on_input(1).await;
    browser
        .wait_for_text(".flashes", "You were logged in", SHOWN_WITHIN)
        .await;
    browser
}

/// Types `text` into the input `css` (emptied first) and submits its form with the button
/// labelled `button`.
async fn submit(browser: &Browser, css: &str, text: &str, button: &str) {
    let input = browser.wait_for(css, SHOWN_WITHIN).await;
    input.clear().await.expect("emptying the input");
    input.send_keys(text).await.expect("typing");
    browser
        .click(&format!("input[type=submit][value='{button}']"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_changes_their_email_and_deletes_their_account_in_a_real_browser() {
    const PUBLIC_WORDS: &str = "Ada's last public words";
    const ADAS_SECRET: &str = "Ada's secret, soon forgotten";
    const GRACES_ANSWER: &str = "Grace's answer, which stays hers";
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["ada", "grace"] {
        assert_no_content(
            sim.register(name, &format!("{name}@example.org"), "pw", None)
                .await,
        );
    }
    assert_no_content(sim.tweet("ada", PUBLIC_WORDS, None).await);
    assert_no_content(sim.follow("grace", "ada", None).await);
    let ada_elsewhere = WebClient::new(&app.web_url);
    ada_elsewhere
        .login("ada", "pw")
        .await
        .assert_redirected_to("/");
    send(&ada_elsewhere, "grace", ADAS_SECRET).await;
    let grace_elsewhere = WebClient::new(&app.web_url);
    grace_elsewhere
        .login("grace", "pw")
        .await
        .assert_redirected_to("/");
    send(&grace_elsewhere, "ada", GRACES_ANSWER).await;
    let site = &app.web_url;

    // Before: Grace has Ada's message in her timeline and a way to unfollow her on Ada's
    // page, and Ada sees her own message.
    let grace = browser_of(site, "grace").await;
    grace
        .wait_for_text("ul.messages li", PUBLIC_WORDS, SHOWN_WITHIN)
        .await;
    grace.goto(&format!("{site}/ada")).await;
    grace
        .wait_for(".followstatus button.unfollow", SHOWN_WITHIN)
        .await;
    let ada = browser_of(site, "ada").await;
    ada.wait_for_text("ul.messages li", PUBLIC_WORDS, SHOWN_WITHIN)
        .await;

    ada.click("nav a[href='/settings']").await;
    ada.wait_for_text("h2", "Settings", SHOWN_WITHIN).await;
    submit(&ada, "input#email", "ada@elsewhere.example", "Change email").await;
    ada.wait_for_text(".flashes", EMAIL_CHANGED, SHOWN_WITHIN)
        .await;
    let shown = ada
        .client()
        .execute("return document.getElementById('email').value;", Vec::new())
        .await
        .expect("reading the email field");
    assert_eq!(shown, json!("ada@elsewhere.example"));
    ada.screenshot("settings").await;

    submit(&ada, "input#delete-password", "pw", "Delete my account").await;
    ada.wait_for_text(".flashes", ACCOUNT_DELETED, SHOWN_WITHIN)
        .await;
    assert!(ada.current_url().await.ends_with("/public"));
    assert!(
        ada.text_of("nav.navigation").await.contains("sign in"),
        "signed out"
    );
    let public = ada.texts_of("ul.messages li").await;
    assert!(
        public.iter().all(|message| !message.contains(PUBLIC_WORDS)),
        "{public:?}"
    );
    // The session Ada had elsewhere ended with the account.
    ada_elsewhere.get("/").await.assert_redirected_to("/public");
    ada.goto(&format!("{site}/ada")).await;
    assert_eq!(ada.text_of("p.deleted").await, "This account was deleted.");
    ada.close().await;

    // Grace: Ada's message left her timeline, Ada's page offers nothing to do with her any
    // more...
    grace.goto(&format!("{site}/")).await;
    grace.wait_for("ul.messages li.empty", SHOWN_WITHIN).await;
    grace.goto(&format!("{site}/ada")).await;
    assert_eq!(
        grace.text_of("p.deleted").await,
        "This account was deleted."
    );
    assert!(grace
        .texts_of(".followstatus, .chatstatus")
        .await
        .is_empty());
    assert!(grace.texts_of("ul.messages").await.is_empty());
    // ...and in their conversation Ada's text is gone, Grace's own is not.
    grace.goto(&format!("{site}/messages/ada")).await;
    grace
        .wait_for_text("ol.chat li.mine", GRACES_ANSWER, SHOWN_WITHIN)
        .await;
    assert_eq!(
        grace.texts_of("ol.chat li.theirs p.removed").await,
        ["message removed"]
    );
    assert!(!grace.text_of("ol.chat").await.contains(ADAS_SECRET));
    grace.close().await;
    // Grace's download marks Ada's text removed, as the page does.
    let kept = without_times(&download(&grace_elsewhere).await["private_messages"]["ada"]);
    let mut removed = copy("ada", "grace", "");
    removed["removed"] = json!(true);
    assert_eq!(kept, [removed, copy("grace", "ada", GRACES_ANSWER)]);
    app.stop().await;
}

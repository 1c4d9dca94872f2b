//! Hostile text in usernames and messages renders inert on every page, in every live update
//! and in every attribute it reaches (links, the follow forms, the form re-fill).

use reqwest::StatusCode;
use test_support::app::{spawn_app, spawn_app_with};
use test_support::sim_client::{assert_no_content, percent_encode};
use test_support::web_client::WebClient;

/// Strings that would do harm if written unescaped into a page.
const HOSTILE: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "' onmouseover='alert(1)",
    "</textarea></title><svg/onload=alert(1)>",
    "&lt;already escaped&gt; & &amp;",
    "javascript:alert(1)//",
    "\u{202e}evil\u{202c} \u{200b}zero width\u{feff}",
    "<!-- unclosed comment",
    "{{ template }} {% block %}",
];

/// The markup a hostile string must turn into: markupsafe's escaping.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Asserts that `body` holds `text` only in its escaped form.
#[track_caller]
fn assert_inert(body: &str, text: &str, place: &str) {
    let safe = escaped(text);
    assert!(
        body.contains(&safe),
        "{place}: expected the escaped form {safe:?} in:\n{body}"
    );
    if safe != text {
        assert!(
            !body.contains(text),
            "{place}: found {text:?} unescaped in:\n{body}"
        );
    }
}

/// Every tag in `body`. Escaped text holds no `<` or `>`, so each `<` starts real markup.
fn tags(body: &str) -> Vec<&str> {
    body.split('<')
        .skip(1)
        .map(|rest| rest.split('>').next().unwrap_or(rest))
        .collect()
}

/// The attribute names of a tag's text (`name a="x" b c=d`), values skipped, quotes honoured.
fn attribute_names(tag: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = tag.trim_start_matches(|c: char| !c.is_whitespace());
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return names;
        }
        let end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        names.push(&rest[..end]);
        rest = &rest[end..];
        if let Some(value) = rest.strip_prefix('=') {
            rest = match value.strip_prefix('"') {
                Some(quoted) => quoted.split_once('"').map_or("", |(_, after)| after),
                None => value.trim_start_matches(|c: char| !c.is_whitespace()),
            };
        }
    }
}

/// The page's markup is only ours: script elements only for our own files (the live
/// timelines', and the chat's for signed-in visitors), no images but the avatars, no SVG, and
/// no event-handler attribute anywhere.
#[track_caller]
fn assert_no_injected_markup(body: &str, place: &str) {
    let tags = tags(body);
    let scripts: Vec<&&str> = tags
        .iter()
        .filter(|tag| tag.starts_with("script"))
        .collect();
    assert!(
        (1..=2).contains(&scripts.len()),
        "{place}: only our scripts: {scripts:?}"
    );
    for script in &scripts {
        assert!(
            script.starts_with("script src=\"/static/live.js?v=")
                || script.starts_with("script src=\"/static/chat.js?v="),
            "{place}: <{script}>"
        );
    }
    for tag in &tags {
        let name = tag.split([' ', '/']).next().unwrap_or_default();
        assert!(!name.eq_ignore_ascii_case("svg"), "{place}: <{tag}>");
        if name == "img" {
            assert!(
                tag.starts_with("img src=\"https://www.gravatar.com/avatar/"),
                "{place}: <{tag}>"
            );
        }
        let handler = attribute_names(tag)
            .iter()
            .any(|attribute| attribute.to_ascii_lowercase().starts_with("on"));
        assert!(!handler, "{place}: an event handler in <{tag}>");
    }
}

#[tokio::test]
async fn hostile_usernames_and_messages_render_inert_everywhere() {
    let app = spawn_app().await;
    let sim = app.client();
    let web = WebClient::new(&app.web_url);
    web.register_and_login("reader", "pw").await;
    for (index, text) in HOSTILE.iter().enumerate() {
        let name = format!("{text} {index}");
        let registered = sim.register(&name, "h@x", "pw", None).await.unwrap();
        assert_eq!(registered.status, StatusCode::NO_CONTENT, "{name:?}");
        assert_no_content(sim.tweet(&name, text, None).await);
        let followed = web
            .post(&format!("/{}/follow", percent_encode(&name)), &[])
            .await;
        assert_eq!(followed.status, StatusCode::OK, "{name:?}");
        assert_inert(
            &followed.body,
            &format!("You are now following \"{name}\""),
            "flash",
        );
    }
    let pages = [
        ("/public".to_owned(), "public timeline"),
        ("/".to_owned(), "my timeline"),
    ];
    for (path, place) in &pages {
        let page = web.get(path).await;
        assert_no_injected_markup(&page.body, place);
        for (index, text) in HOSTILE.iter().enumerate() {
            assert_inert(&page.body, text, place);
            assert_inert(&page.body, &format!("{text} {index}"), place);
        }
    }
    for (index, text) in HOSTILE.iter().enumerate() {
        let name = format!("{text} {index}");
        let href = format!("/{}", percent_encode(&name));
        let page = web.get(&href).await;
        assert_eq!(page.status, StatusCode::OK, "{name:?}");
        assert_no_injected_markup(&page.body, "user timeline");
        assert_inert(&page.body, &name, "user timeline");
        assert_inert(&page.body, text, "user timeline");
        // The follow form posts to the same, encoded, path.
        page.assert_contains(&format!("action=\"{href}/unfollow\""));
    }
    // Private messages both ways with each hostile name: the inbox and every conversation.
    for (index, text) in HOSTILE.iter().enumerate() {
        let name = format!("{text} {index}");
        let chat = format!("/chat/with/{}", percent_encode(&name));
        let sent = web
            .post_json(&chat, &serde_json::json!({ "content": text }))
            .await;
        assert_eq!(sent.status, StatusCode::NO_CONTENT, "{name:?}");
        let conversation = web
            .get(&format!("/messages/{}", percent_encode(&name)))
            .await;
        assert_eq!(conversation.status, StatusCode::OK, "{name:?}");
        assert_no_injected_markup(&conversation.body, "conversation");
        assert_inert(&conversation.body, &name, "conversation");
        assert_inert(&conversation.body, text, "conversation");
    }
    let inbox = web.get("/messages").await;
    assert_no_injected_markup(&inbox.body, "inbox");
    for (index, text) in HOSTILE.iter().enumerate() {
        assert_inert(&inbox.body, text, "inbox");
        assert_inert(&inbox.body, &format!("{text} {index}"), "inbox");
    }
    app.stop().await;
}

#[tokio::test]
async fn hostile_form_input_is_re_filled_inert_and_the_nul_character_is_refused_cleanly() {
    // More sign-in attempts from one address than the default budget allows.
    let app = spawn_app_with(|config| config.login_attempts_per_minute = 100).await;
    let web = WebClient::new(&app.web_url);
    for text in HOSTILE {
        let page = web
            .register(text, "pw", Some("different"), Some(&format!("{text}@x")))
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert_no_injected_markup(&page.body, "register form");
        assert_inert(&page.body, text, "register form");
        let login = web.login(text, "pw").await;
        assert_no_injected_markup(&login.body, "login form");
        assert_inert(&login.body, text, "login form");
    }
    // PostgreSQL cannot store NUL: a clear refusal, never a 500.
    web.register("nul\0name", "pw", None, None)
        .await
        .assert_contains("A username cannot contain the NUL character");
    web.login("nul\0name", "pw")
        .await
        .assert_contains("Invalid username");
    web.register_and_login("writer", "pw").await;
    let refused = web.post("/add_message", &[("text", "nul\0text")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    refused.assert_contains("A message cannot contain the NUL character");
    assert_eq!(web.get("/nul%00name").await.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

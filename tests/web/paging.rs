//! Timelines page by keyset: 30 a page, "older"/"newer" links that stay put while people
//! keep posting, and unreadable page links answered with a 400.

use reqwest::StatusCode;
use test_support::app::spawn_app;
use test_support::sim_client::assert_no_content;
use test_support::web_client::{Page, WebClient};

/// The messages of a page, top to bottom (their text, which the tests make unique).
fn messages(page: &Page) -> Vec<String> {
    page.body
        .split("<li id=\"m-")
        .skip(1)
        .map(|item| {
            let text = item.split("</a></strong>").nth(1).expect("a message text");
            text.split("<small>").next().unwrap().trim().to_owned()
        })
        .collect()
}

/// The `href` of the paging link `rel`, if the page has one.
fn link(page: &Page, rel: &str) -> Option<String> {
    let marker = format!("<a rel=\"{rel}\" href=\"");
    let start = page.body.find(&marker)? + marker.len();
    Some(page.body[start..].split('"').next()?.to_owned())
}

fn numbered(range: impl DoubleEndedIterator<Item = usize>) -> Vec<String> {
    range.rev().map(|n| format!("message {n:03}")).collect()
}

#[tokio::test]
async fn pages_hold_thirty_and_stay_put_while_new_messages_arrive() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("poster", "p@x", "pw", None).await);
    for n in 1..=65 {
        assert_no_content(sim.tweet("poster", &format!("message {n:03}"), None).await);
    }
    let web = WebClient::new(&app.web_url);
    let first = web.get("/public").await;
    assert_eq!(messages(&first), numbered(36..=65));
    assert_eq!(
        link(&first, "prev"),
        None,
        "the newest page has no newer link"
    );
    assert!(
        first.body.contains("data-live="),
        "the newest page updates live"
    );

    let second = web.get(&link(&first, "next").expect("an older link")).await;
    assert_eq!(messages(&second), numbered(6..=35));
    assert!(
        !second.body.contains("data-live="),
        "older pages stay still"
    );

    // Five more arrive while the reader is on page two.
    for n in 66..=70 {
        assert_no_content(sim.tweet("poster", &format!("message {n:03}"), None).await);
    }
    let third = web
        .get(&link(&second, "next").expect("an older link"))
        .await;
    assert_eq!(
        messages(&third),
        numbered(1..=5),
        "no repeats, none skipped"
    );
    assert_eq!(
        link(&third, "next"),
        None,
        "the oldest page has no older link"
    );

    // Going back up returns the same pages, then the new messages.
    let back = web.get(&link(&third, "prev").expect("a newer link")).await;
    assert_eq!(messages(&back), numbered(6..=35));
    let up = web.get(&link(&back, "prev").expect("a newer link")).await;
    assert_eq!(messages(&up), numbered(36..=65));
    let top = web.get(&link(&up, "prev").expect("a newer link")).await;
    assert_eq!(
        messages(&top),
        numbered(41..=70),
        "less than a page above: the newest page"
    );
    assert_eq!(link(&top, "prev"), None);
    app.stop().await;
}

#[tokio::test]
async fn user_and_personal_timelines_page_the_same_way() {
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["reader", "followed", "stranger"] {
        assert_no_content(sim.register(name, "x@x", "pw", None).await);
    }
    assert_no_content(sim.follow("reader", "followed", None).await);
    for n in 1..=40 {
        let author = if n % 2 == 0 { "followed" } else { "stranger" };
        assert_no_content(sim.tweet(author, &format!("message {n:03}"), None).await);
    }
    let evens = |range: std::ops::RangeInclusive<usize>| -> Vec<String> {
        numbered(range.filter(|n| n % 2 == 0).collect::<Vec<_>>().into_iter())
    };
    let web = WebClient::new(&app.web_url);
    let user_page = web.get("/followed").await;
    assert_eq!(messages(&user_page), evens(2..=40), "20 fit on one page");
    assert_eq!(link(&user_page, "next"), None);

    web.login("reader", "pw").await.assert_redirected_to("/");
    for n in 41..=60 {
        assert_no_content(
            sim.tweet("followed", &format!("message {n:03}"), None)
                .await,
        );
    }
    let mine = web.get("/").await;
    let expected_first: Vec<String> = numbered(41..=60)
        .into_iter()
        .chain(evens(22..=40))
        .collect();
    assert_eq!(messages(&mine), expected_first);
    let older = web.get(&link(&mine, "next").expect("an older link")).await;
    assert!(older.url.contains("/?before="), "{}", older.url);
    assert_eq!(messages(&older), evens(2..=20));
    app.stop().await;
}

#[tokio::test]
async fn unreadable_page_links_are_a_400_page() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    for query in [
        "before=abc",
        "after=1.x",
        "before=",
        "after=9999999999999999999999.1",
    ] {
        let page = web.get(&format!("/public?{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        page.assert_contains("Unreadable page link");
    }
    app.stop().await;
}

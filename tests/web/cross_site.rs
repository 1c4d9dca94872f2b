//! Cross-site request forgery: a form on another site cannot make a signed-in browser post,
//! follow, unfollow or sign out; the same requests from our own pages go through.

use reqwest::StatusCode;
use test_support::app::spawn_app;
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

async fn message_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'message'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn cross_site_state_changes_are_refused_and_same_origin_ones_succeed() {
    let app = spawn_app().await;
    assert_no_content(
        app.client()
            .register("victim's friend", "f@x", "pw", None)
            .await,
    );
    let host = app.web_url.trim_start_matches("http://").to_owned();
    let signed_in = WebClient::new(&app.web_url);
    signed_in.register_and_login("victim", "pw").await;

    // The victim's own cookies, sent by their browser from a page on another site.
    let attacks = [
        ("sec-fetch-site", "cross-site".to_owned()),
        ("sec-fetch-site", "same-site".to_owned()),
        ("origin", "https://evil.example".to_owned()),
        ("origin", "null".to_owned()),
    ];
    for (header, value) in &attacks {
        let mut from_elsewhere = WebClient::new(&app.web_url).with_header(header, value);
        // Share the victim's session cookie.
        from_elsewhere = share_session(&signed_in, from_elsewhere, &app.web_url).await;
        let posted = from_elsewhere
            .post("/add_message", &[("text", "forged")])
            .await;
        assert_eq!(posted.status, StatusCode::FORBIDDEN, "{header}: {value}");
        posted.assert_contains("This request came from another site");
        for path in ["/victim%27s%20friend/follow", "/logout"] {
            assert_eq!(
                from_elsewhere.get(path).await.status,
                StatusCode::FORBIDDEN,
                "GET {path} with {header}: {value}"
            );
            assert_eq!(
                from_elsewhere.post(path, &[]).await.status,
                StatusCode::FORBIDDEN,
                "POST {path} with {header}: {value}"
            );
        }
        // The login form too: no signing a victim into an attacker's account.
        let login = from_elsewhere
            .post("/login", &[("username", "victim"), ("password", "pw")])
            .await;
        assert_eq!(login.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(message_count(&app.db.pool).await, 0, "nothing was posted");
    let still_signed_in = signed_in.get("/").await;
    still_signed_in.assert_contains("sign out [victim]");
    let friend = signed_in.get("/victim%27s%20friend").await;
    friend.assert_contains("You are not yet following this user.");

    // The same requests as the browser sends them from our own pages.
    let same_origin = [
        ("sec-fetch-site", "same-origin".to_owned()),
        ("origin", format!("http://{host}")),
    ];
    for (header, value) in &same_origin {
        let own = share_session(
            &signed_in,
            WebClient::new(&app.web_url).with_header(header, value),
            &app.web_url,
        )
        .await;
        own.add_message(&format!("from our page ({header})")).await;
    }
    // Typed into the address bar.
    let typed = share_session(
        &signed_in,
        WebClient::new(&app.web_url).with_header("sec-fetch-site", "none"),
        &app.web_url,
    )
    .await;
    typed
        .get("/victim%27s%20friend/follow")
        .await
        .assert_contains("You are now following &#34;victim&#39;s friend&#34;");
    assert_eq!(message_count(&app.db.pool).await, 2);
    app.stop().await;
}

/// `client` with the session of `signed_in`: signs `client` in as the same user would give it
/// its own session; instead the cookie is copied, as a browser would send the one it has.
async fn share_session(signed_in: &WebClient, client: WebClient, web_url: &str) -> WebClient {
    let cookie = signed_in.cookie_header(web_url);
    client.with_header("cookie", &cookie)
}

//! Static assets and avatars: cached for good under versioned URLs, revalidated otherwise,
//! compressed where it helps; generated avatars when configured; security headers on pages.

use reqwest::StatusCode;
use test_support::app::{spawn_app, spawn_app_with};
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

/// The URL a page links for the asset whose path starts with `prefix`.
fn linked(body: &str, prefix: &str) -> String {
    let start = body
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} in {body}"));
    body[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn versioned_assets_are_immutable_and_others_revalidate() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    let page = web.get("/public").await;
    for (prefix, content_type) in [
        ("/static/style.css?v=", "text/css; charset=utf-8"),
        ("/static/live.js?v=", "text/javascript; charset=utf-8"),
        ("/static/icon.svg?v=", "image/svg+xml"),
    ] {
        let url = linked(&page.body, prefix);
        let asset = web.get(&url).await;
        assert_eq!(asset.status, StatusCode::OK, "{url}");
        assert_eq!(asset.header("content-type"), Some(content_type));
        assert_eq!(
            asset.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{url}"
        );
        let etag = asset.header("etag").expect("an ETag").to_owned();

        let unversioned = url.split('?').next().unwrap();
        let stale = web.get(&format!("{unversioned}?v=old")).await;
        assert_eq!(stale.header("cache-control"), Some("no-cache"), "{url}");
        let revalidated = WebClient::new(&app.web_url)
            .with_header("if-none-match", &etag)
            .get(unversioned)
            .await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "{url}");
        assert!(revalidated.body.is_empty());
    }
    assert_eq!(
        web.get("/static/nothing.css").await.status,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn responses_are_compressed_for_clients_that_accept_it() {
    let app = spawn_app().await;
    let page_url = format!("{}/public", app.web_url);
    let client = reqwest::Client::new();
    for encoding in ["gzip", "br"] {
        let page = client
            .get(&page_url)
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(page.headers()["content-encoding"], encoding);
    }
    let plain = client.get(&page_url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());

    // The simulator's listings too (its Python client accepts gzip).
    let sim = app.client();
    assert_no_content(sim.register("poster", "p@x", "pw", None).await);
    for n in 0..20 {
        assert_no_content(
            sim.tweet("poster", &format!("message number {n}"), None)
                .await,
        );
    }
    let listing = client
        .get(format!("{}/msgs", app.base_url))
        .header("authorization", test_support::sim_client::SIMULATOR_AUTH)
        .header("accept-encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), StatusCode::OK);
    assert_eq!(listing.headers()["content-encoding"], "gzip");
    app.stop().await;
}

#[tokio::test]
async fn pages_carry_security_headers_with_a_policy_that_forbids_inline_script() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    for path in ["/public", "/login", "/nobody"] {
        let page = web.get(path).await;
        let policy = page.header("content-security-policy").expect("a CSP");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("referrer-policy"), Some("same-origin"));
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        // And the pages themselves have no inline script or style.
        assert!(!page.body.contains("<script>"), "{path}");
        assert!(!page.body.contains("style="), "{path}");
        assert!(!page.body.contains("<style"), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn local_avatars_are_generated_identicons_and_gravatar_ones_fall_back_to_them() {
    let app = spawn_app_with(|config| config.avatars = api::config::AvatarSource::Local).await;
    let sim = app.client();
    assert_no_content(
        sim.register("poster", "Poster@Example.com", "pw", None)
            .await,
    );
    assert_no_content(sim.tweet("poster", "hello", None).await);
    let web = WebClient::new(&app.web_url);
    let page = web.get("/public").await;
    // md5("poster@example.com"): the email trimmed and lower-cased.
    let hash = "6fe4a6f735f2f4b4cfa4639c78c7443b";
    page.assert_contains(&format!("src=\"/static/avatars/{hash}.svg\""));
    page.assert_lacks("gravatar.com");
    let avatar = web.get(&format!("/static/avatars/{hash}.svg")).await;
    assert_eq!(avatar.status, StatusCode::OK);
    assert_eq!(avatar.header("content-type"), Some("image/svg+xml"));
    assert_eq!(
        avatar.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(avatar
        .body
        .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for bad in [
        "nothex.svg",
        "6fe4a6f735f2f4b4cfa4639c78c7443.svg",
        hash,
        "%3Cscript%3E.svg",
    ] {
        let refused = web.get(&format!("/static/avatars/{bad}")).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{bad}");
    }
    app.stop().await;

    // With Gravatar (the default), each avatar names the local identicon as its fallback.
    let app = spawn_app().await;
    assert_no_content(
        app.client()
            .register("poster", "Poster@Example.com", "pw", None)
            .await,
    );
    assert_no_content(app.client().tweet("poster", "hello", None).await);
    let page = WebClient::new(&app.web_url).get("/public").await;
    page.assert_contains(&format!(
        "src=\"https://www.gravatar.com/avatar/{hash}?d=identicon&amp;s=48\" data-fallback=\"/static/avatars/{hash}.svg\""
    ));
    app.stop().await;
}

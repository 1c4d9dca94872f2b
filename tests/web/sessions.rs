//! Sessions: cookie attributes, a new id at sign-in, nothing left after sign-out, forged
//! cookies ignored, and any replica serving any signed-in user.

use reqwest::StatusCode;
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::web_client::WebClient;

use crate::MINITWIT;

/// The session cookie's `name=value`, from a `Set-Cookie` header.
fn session_pair(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .filter(|pair| pair.starts_with("minitwit_session="))
        .unwrap_or_else(|| panic!("not the session cookie: {set_cookie}"))
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_and_secure_only_behind_tls() {
    let app = test_support::app::spawn_app().await;
    let plain = WebClient::not_following_redirects(&app.web_url);
    plain
        .register("foo", "pw", None, None)
        .await
        .assert_redirected_to("/login");
    let signed_in = plain.login("foo", "pw").await;
    let cookie = signed_in.header("set-cookie").expect("a session cookie");
    assert!(cookie.starts_with("minitwit_session="), "{cookie}");
    for attribute in ["; HttpOnly", "; SameSite=Lax", "; Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "not over plain HTTP: {cookie}");

    for proxy_header in [
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=192.0.2.1;proto=https"),
    ] {
        let behind_tls = WebClient::not_following_redirects(&app.web_url)
            .with_header(proxy_header.0, proxy_header.1);
        let cookie = behind_tls.login("foo", "pw").await;
        let cookie = cookie.header("set-cookie").expect("a session cookie");
        assert!(cookie.contains("; Secure"), "{proxy_header:?}: {cookie}");
        assert!(cookie.contains("; HttpOnly"), "{cookie}");
    }
    app.stop().await;
}

#[tokio::test]
async fn what_a_client_says_in_proxy_headers_is_ignored_unless_it_is_a_trusted_proxy() {
    // The only trusted proxy is elsewhere: the test's own requests come from loopback.
    let app = test_support::app::spawn_app_with(|config| {
        config.trusted_proxies = vec![api::config::parse_network("192.0.2.1").unwrap()];
        config.client_ip_header = Some("x-real-ip".to_owned());
        config.login_attempts_per_minute = 2;
    })
    .await;
    WebClient::new(&app.web_url)
        .register("foo", "pw", None, None)
        .await
        .assert_contains("You were successfully registered");
    for forged in [
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=192.0.2.1;proto=https"),
    ] {
        let pretending = WebClient::not_following_redirects(&app.web_url)
            .with_header(forged.0, forged.1)
            .with_header("x-real-ip", "203.0.113.5");
        let signed_in = pretending.login("foo", "pw").await;
        let cookie = signed_in.header("set-cookie").expect("a session cookie");
        assert!(!cookie.contains("Secure"), "{forged:?}: {cookie}");
    }
    // Both sign-ins counted against the connection's address, whatever X-Real-IP said: a
    // third from "another" address finds the budget of two spent.
    let third = WebClient::new(&app.web_url)
        .with_header("x-real-ip", "198.51.100.99")
        .login("foo", "pw")
        .await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

#[tokio::test]
async fn signing_in_gives_a_new_session_id_and_signing_out_leaves_nothing_usable() {
    let app = test_support::app::spawn_app().await;
    let browser = WebClient::not_following_redirects(&app.web_url);
    // Registering leaves a flash, and with it a session, before anyone signs in: the id an
    // attacker could have planted.
    let registered = browser.register("foo", "pw", None, None).await;
    registered.assert_redirected_to("/login");
    let before = session_pair(registered.header("set-cookie").expect("a session")).to_owned();
    let signed_in = browser.login("foo", "pw").await;
    let after = session_pair(signed_in.header("set-cookie").expect("a new session")).to_owned();
    assert_ne!(before, after, "sign-in changes the session id");

    let planted = WebClient::new(&app.web_url).with_header("cookie", &before);
    planted
        .get("/public")
        .await
        .assert_contains("<a href=\"/login\">sign in</a>");
    let stolen = WebClient::new(&app.web_url).with_header("cookie", &after);
    stolen.get("/").await.assert_contains("sign out [foo]");

    browser.logout().await.assert_redirected_to("/public");
    let after_logout =
        WebClient::not_following_redirects(&app.web_url).with_header("cookie", &after);
    assert_eq!(
        after_logout.get("/").await.status,
        StatusCode::FOUND,
        "a signed-out session id is worth nothing"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM web_sessions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    // What is left: the fresh session carrying the "logged out" flash (taken by no page yet).
    assert_eq!(rows, 1);
    app.stop().await;
}

#[tokio::test]
async fn signing_out_when_nobody_is_signed_in_stores_no_session() {
    let app = test_support::app::spawn_app().await;
    for _ in 0..3 {
        let anonymous = WebClient::not_following_redirects(&app.web_url);
        let answer = anonymous.logout().await;
        answer.assert_redirected_to("/public");
        assert_eq!(
            answer.header("set-cookie"),
            None,
            "no session is handed out"
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM web_sessions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    app.stop().await;
}

#[tokio::test]
async fn forged_or_tampered_cookies_are_ignored() {
    let app = test_support::app::spawn_app().await;
    let browser = WebClient::not_following_redirects(&app.web_url);
    browser
        .register("foo", "pw", None, None)
        .await
        .assert_redirected_to("/login");
    let signed_in = browser.login("foo", "pw").await;
    signed_in.assert_redirected_to("/");
    let genuine = session_pair(signed_in.header("set-cookie").unwrap()).to_owned();
    // The id's last character changed, the signature left as it was.
    let (signed_part, last) = genuine.split_at(genuine.len() - 1);
    let tampered = format!("{signed_part}{}", if last == "A" { "B" } else { "A" });
    for cookie in [
        tampered.as_str(),
        "minitwit_session=forged",
        "minitwit_session=",
        "minitwit_session=%00%ff",
    ] {
        let forger = WebClient::not_following_redirects(&app.web_url).with_header("cookie", cookie);
        let home = forger.get("/").await;
        assert_eq!(
            home.status,
            StatusCode::FOUND,
            "{cookie}: treated as signed out"
        );
        let public = forger.get("/public").await;
        assert_eq!(public.status, StatusCode::OK, "{cookie}");
        public.assert_contains("<a href=\"/login\">sign in</a>");
    }
    app.stop().await;
}

#[tokio::test]
async fn any_replica_serves_a_user_signed_in_on_another() {
    let db = TestDatabase::create().await;
    let first = ServerProcess::start(MINITWIT, &db.server_url).await;
    let second = ServerProcess::start(MINITWIT, &db.server_url).await;
    let on_first = WebClient::new(&first.web_url);
    on_first.register_and_login("roaming", "pw").await;
    // The same cookie, presented to the other process (cookies do not depend on the port).
    let cookie = on_first.cookie_header(&first.web_url);
    let on_second = WebClient::new(&second.web_url).with_header("cookie", &cookie);
    let page = on_second
        .add_message("posted through the second replica")
        .await;
    page.assert_contains("sign out [roaming]");
    on_first
        .get("/")
        .await
        .assert_contains("posted through the second replica");
    first.terminate().await;
    second.terminate().await;
}

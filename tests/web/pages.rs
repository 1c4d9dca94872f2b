//! The pages' contract beyond the original's test suite: statuses, redirects, titles,
//! navigation, flash and error markup, form order, follow status, and the message markup.

use reqwest::StatusCode;
use test_support::app::spawn_app;
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

/// The position of each needle in `body`, failing if one is missing or out of order.
#[track_caller]
fn assert_in_order(body: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        let found = body[from..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing (or out of order) in:\n{body}"));
        from += found + needle.len();
    }
}

#[tokio::test]
async fn visitors_are_sent_to_the_public_timeline_and_see_the_signed_out_navigation() {
    let app = spawn_app().await;
    let raw = WebClient::not_following_redirects(&app.web_url);
    let home = raw.get("/").await;
    assert_eq!(home.status, StatusCode::FOUND);
    assert_eq!(home.header("location"), Some("/public"));

    let public = raw.get("/public").await;
    assert_eq!(public.status, StatusCode::OK);
    public.assert_contains("<title>Public Timeline | MiniTwit</title>");
    public.assert_contains("<h2>Public Timeline</h2>");
    assert_in_order(
        &public.body,
        &[
            "<a href=\"/public\">public timeline</a>",
            "<a href=\"/register\">sign up</a>",
            "<a href=\"/login\">sign in</a>",
        ],
    );
    public.assert_contains("There's no message so far.");
    public.assert_lacks("class=\"flashes\"");
    public.assert_lacks("class=\"followstatus\"");
    public.assert_lacks("class=\"twitbox\"");
    app.stop().await;
}

#[tokio::test]
async fn forms_have_their_inputs_in_the_order_the_ui_tests_fill_them() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    let register = web.get("/register").await;
    register.assert_contains("<title>Sign Up | MiniTwit</title>");
    register.assert_contains("<h2>Sign Up</h2>");
    let inputs: Vec<&str> = register
        .body
        .match_indices("<input")
        .map(|(at, _)| &register.body[at..])
        .collect();
    assert_eq!(inputs.len(), 5, "four fields and the submit button");
    for (input, name) in inputs
        .iter()
        .zip(["username", "email", "password", "password2"])
    {
        assert!(input.starts_with("<input") && input.contains(&format!("name=\"{name}\"")));
        assert!(input.find('>') > input.find(&format!("name=\"{name}\"")));
    }
    assert_in_order(
        &register.body,
        &[
            "class=\"actions\"",
            "<input type=\"submit\" value=\"Sign Up\">",
        ],
    );

    let login = web.get("/login").await;
    login.assert_contains("<title>Sign In | MiniTwit</title>");
    assert_in_order(
        &login.body,
        &[
            "name=\"username\"",
            "name=\"password\"",
            "class=\"actions\"",
            "<input type=\"submit\" value=\"Sign In\">",
        ],
    );
    assert_eq!(login.body.matches("<input").count(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_registration_re_renders_the_form_with_the_error_and_the_input_kept() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    let page = web
        .register(
            "Åse \"quoted\"",
            "secret",
            Some("other"),
            Some("ase@example.com"),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.url.ends_with("/register"));
    page.assert_contains(
        "<div class=\"error\" role=\"alert\"><strong>Error:</strong> The two passwords do not match</div>",
    );
    page.assert_contains("value=\"Åse &#34;quoted&#34;\"");
    page.assert_contains("value=\"ase@example.com\"");
    page.assert_lacks("secret");

    let login = web.login("nobody", "x").await;
    assert_eq!(login.status, StatusCode::OK);
    login.assert_contains("<strong>Error:</strong> Invalid username");
    login.assert_contains("value=\"nobody\"");
    app.stop().await;
}

#[tokio::test]
async fn signed_in_users_see_their_timeline_with_the_twitbox_and_flashes_once() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    let after_login = web.register_and_login("Roger Histand", "pw").await;
    assert!(after_login.url.ends_with('/'), "{}", after_login.url);
    after_login.assert_contains("<title>My Timeline | MiniTwit</title>");
    after_login.assert_contains(
        "<ul class=\"flashes\" role=\"status\">\n    <li>You were logged in</li>\n  </ul>",
    );
    assert_in_order(
        &after_login.body,
        &[
            "<a href=\"/\">my timeline</a>",
            "<a href=\"/public\">public timeline</a>",
            "<a href=\"/logout\">sign out [Roger Histand]</a>",
        ],
    );
    assert_in_order(
        &after_login.body,
        &[
            "class=\"twitbox\"",
            "What's on your mind Roger Histand?",
            "name=\"text\"",
            "value=\"Share\"",
        ],
    );
    // A flash is shown once.
    web.get("/").await.assert_lacks("class=\"flashes\"");

    // Signed in, the sign-in and sign-up pages send you home.
    let raw = WebClient::not_following_redirects(&app.web_url);
    raw.register_and_login("other", "pw").await;
    for path in ["/login", "/register"] {
        let page = raw.get(path).await;
        assert_eq!(page.status, StatusCode::FOUND, "{path}");
        assert_eq!(page.header("location"), Some("/"), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn messages_show_author_link_gravatar_and_the_utc_date() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    web.register("Roger Histand", "pw", None, Some("  Roger@Example.COM "))
        .await
        .assert_redirected_to("/login");
    web.login("Roger Histand", "pw")
        .await
        .assert_redirected_to("/");
    web.add_message("Hello, world").await;
    let page = web.get("/public").await;
    // md5("roger@example.com")
    page.assert_contains(
        "src=\"https://www.gravatar.com/avatar/b3fbc7a495e1e5476f021a4cce49c555?d=identicon&amp;s=48\"",
    );
    page.assert_contains("<strong><a href=\"/Roger%20Histand\">Roger Histand</a></strong>");
    page.assert_contains("Hello, world");
    let today = chrono::Utc::now().format("%Y-%m-%d @ ").to_string();
    page.assert_contains("&mdash; <time datetime=");
    page.assert_contains(&today);
    app.stop().await;
}

#[tokio::test]
async fn a_user_timeline_shows_the_follow_status_and_follow_buttons_post() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    web.register("foo", "pw", None, None)
        .await
        .assert_redirected_to("/login");
    web.register_and_login("bar", "pw").await;

    let own = web.get("/bar").await;
    own.assert_contains("<title>bar's Timeline | MiniTwit</title>");
    own.assert_contains("<h2>bar's Timeline</h2>");
    own.assert_contains("<div class=\"followstatus\">This is you!</div>");

    let foo = web.get("/foo").await;
    foo.assert_contains("You are not yet following this user.");
    foo.assert_contains(
        "<form method=\"post\" action=\"/foo/follow\"><button type=\"submit\" class=\"follow\">Follow user</button></form>",
    );
    let followed = web.post("/foo/follow", &[]).await;
    assert!(followed.url.ends_with("/foo"));
    followed.assert_contains("You are now following &#34;foo&#34;");
    followed.assert_contains("You are currently following this user.");
    followed.assert_contains("class=\"unfollow\">Unfollow user</button>");

    let unfollowed = web.post("/foo/unfollow", &[]).await;
    unfollowed.assert_contains("You are no longer following &#34;foo&#34;");
    unfollowed.assert_contains("You are not yet following this user.");

    // Signed out, there is no follow status at all.
    web.logout().await.assert_redirected_to("/public");
    web.get("/foo").await.assert_lacks("followstatus");
    app.stop().await;
}

#[tokio::test]
async fn actions_need_a_signed_in_user_and_an_existing_one_to_follow() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    web.register("foo", "pw", None, None)
        .await
        .assert_redirected_to("/login");
    for (method, path) in [
        ("GET", "/foo/follow"),
        ("POST", "/foo/follow"),
        ("GET", "/foo/unfollow"),
        ("POST", "/foo/unfollow"),
        ("POST", "/add_message"),
        ("GET", "/nobody/follow"),
    ] {
        let page = match method {
            "GET" => web.get(path).await,
            _ => web.post(path, &[("text", "x")]).await,
        };
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        page.assert_contains("You need to sign in");
    }

    web.register_and_login("bar", "pw").await;
    for path in [
        "/nobody/follow",
        "/nobody/unfollow",
        "/nobody",
        "/no%20body",
    ] {
        assert_eq!(web.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let missing = web.get("/nobody").await;
    missing.assert_contains("<title>Not Found | MiniTwit</title>");
    missing.assert_contains("There is no user by that name.");
    app.stop().await;
}

#[tokio::test]
async fn an_empty_message_records_nothing_and_says_nothing() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    web.register_and_login("foo", "pw").await;
    web.get("/").await.assert_status(StatusCode::OK); // takes the sign-in flash
    let raw = WebClient::not_following_redirects(&app.web_url);
    raw.register_and_login("bar", "pw").await;
    let posted = raw.post("/add_message", &[("text", "")]).await;
    assert_eq!(posted.status, StatusCode::FOUND);
    assert_eq!(posted.header("location"), Some("/"));
    let page = web.add_message("").await;
    page.assert_lacks("Your message was recorded");
    page.assert_contains("There's no message so far.");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'message'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(events, 0);
    app.stop().await;
}

#[tokio::test]
async fn logging_out_ends_the_session_and_lands_on_the_public_timeline() {
    let app = spawn_app().await;
    let raw = WebClient::not_following_redirects(&app.web_url);
    raw.register_and_login("foo", "pw").await;
    let out = raw.get("/logout").await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert_eq!(out.header("location"), Some("/public"));
    let public = raw.get("/public").await;
    public.assert_contains("You were logged out");
    public.assert_contains("<a href=\"/login\">sign in</a>");
    assert_eq!(raw.get("/").await.status, StatusCode::FOUND, "signed out");
    app.stop().await;
}

#[tokio::test]
async fn the_fixed_routes_names_cannot_be_registered_and_unknown_paths_are_404_pages() {
    let app = spawn_app().await;
    let sim = app.client();
    // No new account may be named like a fixed route (imported ones keep such names, with
    // their pages under /users: see the admin tool's legacy import test).
    for name in ["public", "Login", "register", "static", "messages", "users"] {
        let refused = sim.register(name, "x@x", "x", None).await.unwrap();
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{name}: {refused:?}"
        );
        assert!(
            refused.body["error_msg"]
                .as_str()
                .is_some_and(|message| message.contains("reserved by the site")),
            "{name}: {refused:?}"
        );
    }
    let web = WebClient::new(&app.web_url);
    web.register("chat", "pw", None, None)
        .await
        .assert_contains("This username is reserved by the site");
    web.get("/public")
        .await
        .assert_contains("<h2>Public Timeline</h2>");
    web.get("/login").await.assert_contains("<h2>Sign In</h2>");
    web.get("/register")
        .await
        .assert_contains("<h2>Sign Up</h2>");
    let nowhere = web.get("/a/b/c").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    nowhere.assert_contains("There is no such page.");
    app.stop().await;
}

#[tokio::test]
async fn the_browser_and_the_api_write_the_same_events_and_read_each_others_writes() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("api user", "api@x", "pw", None).await);
    assert_no_content(sim.tweet("api user", "from the API", None).await);
    let web = WebClient::new(&app.web_url);
    web.register_and_login("web user", "pw").await;
    web.add_message("from the browser").await;
    web.post("/api%20user/follow", &[])
        .await
        .assert_redirected_to("/api%20user");
    let mine = web.get("/").await;
    assert_in_order(&mine.body, &["from the browser", "from the API"]);

    let api_listing = sim.public_msgs(None, None).await.unwrap();
    assert_eq!(
        test_support::sim_client::authored(&api_listing.body),
        [
            ("web user".to_owned(), "from the browser".to_owned()),
            ("api user".to_owned(), "from the API".to_owned()),
        ]
    );
    let follows = sim.follows("web user", None, None).await.unwrap();
    assert_eq!(
        test_support::sim_client::follow_names(&follows.body),
        ["api user"]
    );
    // The API user signs in on the web with the password they registered with.
    let other = WebClient::new(&app.web_url);
    other
        .login("api user", "pw")
        .await
        .assert_contains("You were logged in");
    app.stop().await;
}

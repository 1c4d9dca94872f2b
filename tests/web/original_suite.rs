//! The original MiniTwit's test suite (`minitwit_tests.py`), case for case, over HTTP
//! against the real server: the same helpers, the same requests, the same texts.

use test_support::app::spawn_app;
use test_support::web_client::WebClient;

#[tokio::test]
async fn test_register() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    web.register("user1", "default", None, None)
        .await
        .assert_contains("You were successfully registered and can login now");
    web.register("user1", "default", None, None)
        .await
        .assert_contains("The username is already taken");
    web.register("", "default", None, None)
        .await
        .assert_contains("You have to enter a username");
    web.register("meh", "", None, None)
        .await
        .assert_contains("You have to enter a password");
    web.register("meh", "x", Some("y"), None)
        .await
        .assert_contains("The two passwords do not match");
    web.register("meh", "foo", None, Some("broken"))
        .await
        .assert_contains("You have to enter a valid email address");
    app.stop().await;
}

#[tokio::test]
async fn test_login_logout() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    web.register_and_login("user1", "default")
        .await
        .assert_contains("You were logged in");
    web.logout().await.assert_contains("You were logged out");
    web.login("user1", "wrongpassword")
        .await
        .assert_contains("Invalid password");
    web.login("user2", "wrongpassword")
        .await
        .assert_contains("Invalid username");
    app.stop().await;
}

#[tokio::test]
async fn test_message_recording() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    web.register_and_login("foo", "default").await;
    web.add_message("test message 1").await;
    web.add_message("<test message 2>").await;
    let page = web.get("/").await;
    page.assert_contains("test message 1");
    page.assert_contains("&lt;test message 2&gt;");
    app.stop().await;
}

#[tokio::test]
async fn test_timelines() {
    let app = spawn_app().await;
    let web = WebClient::new(&app.web_url);
    web.register_and_login("foo", "default").await;
    web.add_message("the message by foo").await;
    web.logout().await.assert_redirected_to("/public");
    web.register_and_login("bar", "default").await;
    web.add_message("the message by bar").await;
    let public = web.get("/public").await;
    public.assert_contains("the message by foo");
    public.assert_contains("the message by bar");

    // bar's timeline should just show bar's message
    let mine = web.get("/").await;
    mine.assert_lacks("the message by foo");
    mine.assert_contains("the message by bar");

    // now let's follow foo
    web.get("/foo/follow")
        .await
        .assert_contains("You are now following &#34;foo&#34;");

    // we should now see foo's message
    let mine = web.get("/").await;
    mine.assert_contains("the message by foo");
    mine.assert_contains("the message by bar");

    // but on the user's page we only want the user's message
    let bars = web.get("/bar").await;
    bars.assert_lacks("the message by foo");
    bars.assert_contains("the message by bar");
    let foos = web.get("/foo").await;
    foos.assert_contains("the message by foo");
    foos.assert_lacks("the message by bar");

    // now unfollow and check if that worked
    web.get("/foo/unfollow")
        .await
        .assert_contains("You are no longer following &#34;foo&#34;");
    let mine = web.get("/").await;
    mine.assert_lacks("the message by foo");
    mine.assert_contains("the message by bar");
    app.stop().await;
}

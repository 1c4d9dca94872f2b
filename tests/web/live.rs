//! Live timelines over server-sent events: what arrives, for whom, after a gap, across
//! replicas, and that an open stream never holds up a shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use test_support::app::spawn_app;
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

use crate::MINITWIT;

/// How long a test waits for an event that should come.
const ARRIVAL: Duration = Duration::from_secs(10);
/// How long a test listens to be sure an event does not come.
const SILENCE: Duration = Duration::from_millis(1500);

/// One server-sent event.
#[derive(Debug, Clone, Default)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

/// An open event stream, read event by event.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Opens the live stream of `path` on `web_url`, with `extra` headers.
    async fn open(web_url: &str, path: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .get(format!("{web_url}{path}"))
            .header("accept", "text/event-stream");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the stream answers")
    }

    async fn connect(web_url: &str, path: &str, extra: &[(&str, &str)]) -> Self {
        let response = Self::open(web_url, path, extra).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let mut stream = Self {
            response,
            buffer: String::new(),
        };
        // The first thing on the wire says the stream is set up (and subscribed).
        let hello = tokio::time::timeout(ARRIVAL, stream.next_block())
            .await
            .expect("the stream starts");
        assert!(hello.contains(": connected"), "{hello:?}");
        stream
    }

    /// The next blank-line-terminated block of the stream.
    async fn next_block(&mut self) -> String {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return block;
            }
            let chunk = self
                .response
                .chunk()
                .await
                .expect("reading the stream")
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event (comments and keep-alives skipped), within `within`.
    async fn next_event(&mut self, within: Duration) -> Option<SseEvent> {
        tokio::time::timeout(within, async {
            loop {
                let block = self.next_block().await;
                let mut event = SseEvent::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        event.event = value.trim_start().to_owned();
                    } else if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim_start().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                if !event.event.is_empty() {
                    event.data = data.join("\n");
                    return event;
                }
            }
        })
        .await
        .ok()
    }

    /// The next `posted` event's message text, failing if none comes in time.
    async fn expect_posted(&mut self, text: &str) -> SseEvent {
        let event = self
            .next_event(ARRIVAL)
            .await
            .unwrap_or_else(|| panic!("no live event for {text:?}"));
        assert_eq!(event.event, "posted", "{event:?}");
        assert!(event.data.contains(text), "{text:?} in {event:?}");
        event
    }

    /// Whether the server ends the stream within `within` (events before the end skipped).
    async fn ends_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            while let Ok(Some(_)) = self.response.chunk().await {}
        })
        .await
        .is_ok()
    }

    async fn expect_silence(&mut self) {
        if let Some(event) = self.next_event(SILENCE).await {
            panic!("expected nothing, got {event:?}");
        }
    }
}

#[tokio::test]
async fn an_open_public_timeline_receives_each_new_message_as_the_page_renders_it() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("poster", "p@x", "pw", None).await);
    let mut stream = EventStream::connect(&app.web_url, "/public", &[]).await;
    assert_eq!(
        stream.response.headers()["content-type"],
        "text/event-stream"
    );
    assert_eq!(stream.response.headers()["x-accel-buffering"], "no");

    assert_no_content(sim.tweet("poster", "<b>live</b> & kicking", None).await);
    let event = stream
        .expect_posted("&lt;b&gt;live&lt;/b&gt; &amp; kicking")
        .await;
    assert!(!event.data.contains("<b>"), "escaped: {event:?}");
    // The same list item the page itself shows.
    let page = WebClient::new(&app.web_url).get("/public").await;
    page.assert_status(StatusCode::OK);
    let item_start = page.body.find("<li id=\"m-").unwrap();
    let item_end = page.body[item_start..].find("</li>").unwrap() + item_start + 5;
    assert_eq!(event.data, page.body[item_start..item_end]);
    // Its id is the message's cursor, which the page links with.
    let cursor = event.id.expect("an event id");
    assert!(page.body.contains(&format!("data-live=\"{cursor}\"")));
    app.stop().await;
}

#[tokio::test]
async fn user_and_personal_streams_carry_only_their_authors() {
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["reader", "followed", "stranger"] {
        assert_no_content(sim.register(name, "x@x", "pw", None).await);
    }
    assert_no_content(sim.follow("reader", "followed", None).await);
    let web = WebClient::new(&app.web_url);
    web.login("reader", "pw").await.assert_redirected_to("/");
    let cookie = web.cookie_header(&app.web_url);
    let mut mine = EventStream::connect(&app.web_url, "/", &[("cookie", cookie.as_str())]).await;
    let mut strangers = EventStream::connect(&app.web_url, "/stranger", &[]).await;

    assert_no_content(sim.tweet("stranger", "by the stranger", None).await);
    strangers.expect_posted("by the stranger").await;
    assert_no_content(sim.tweet("followed", "by the followed", None).await);
    mine.expect_posted("by the followed").await;
    web.add_message("by the reader").await;
    mine.expect_posted("by the reader").await;
    mine.expect_silence().await;
    strangers.expect_silence().await;
    app.stop().await;
}

#[tokio::test]
async fn a_stream_catches_up_from_the_page_or_its_last_event_and_hides_flagged_messages() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("poster", "p@x", "pw", None).await);
    assert_no_content(sim.tweet("poster", "already on the page", None).await);
    let page = WebClient::new(&app.web_url).get("/public").await;
    page.assert_status(StatusCode::OK);
    let marker = "data-live=\"";
    let start = page.body.find(marker).unwrap() + marker.len();
    let page_cursor = page.body[start..].split('"').next().unwrap().to_owned();

    // Posted between the page's rendering and its stream's opening.
    assert_no_content(sim.tweet("poster", "posted in between", None).await);
    let mut stream =
        EventStream::connect(&app.web_url, &format!("/public?after={page_cursor}"), &[]).await;
    let missed = stream.expect_posted("posted in between").await;
    stream.expect_silence().await;
    drop(stream);

    // Reconnecting after a gap: EventSource sends the last id it saw.
    assert_no_content(sim.tweet("poster", "posted while disconnected", None).await);
    let last_id = missed.id.unwrap();
    let mut resumed = EventStream::connect(
        &app.web_url,
        &format!("/public?after={page_cursor}"),
        &[("last-event-id", last_id.as_str())],
    )
    .await;
    resumed.expect_posted("posted while disconnected").await;
    resumed.expect_silence().await;

    // A moderator flags a message: open pages drop it.
    let message_id = test_support::log::opened_events(&app.db.pool, "MessagePosted")
        .await
        .into_iter()
        .find(|posted| posted.fields["content"] == "posted in between")
        .expect("the message is in the log")
        .aggregate_id;
    let flag = serde_json::json!({"MessageFlagged": {"flagged_at": chrono::Utc::now()}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) VALUES ('message', $1, 2, 'MessageFlagged', '1.0', $2, '{}')",
    )
    .bind(&message_id)
    .bind(flag)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let hidden = resumed.next_event(ARRIVAL).await.expect("a hidden event");
    assert_eq!(hidden.event, "hidden");
    assert_eq!(hidden.data, message_id);
    app.stop().await;
}

#[tokio::test]
async fn streams_with_nothing_to_stream_tell_the_browser_to_stop_and_shutdown_ends_open_ones() {
    let app = spawn_app().await;
    // No such user, and "my" timeline without a session: 204, which ends EventSource's retries.
    for path in ["/nobody", "/"] {
        let response = EventStream::open(&app.web_url, path, &[]).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
    }
    // Streams are never compressed (a proxy or browser would hold the events back).
    let stream =
        EventStream::connect(&app.web_url, "/public", &[("accept-encoding", "gzip, br")]).await;
    assert!(stream.response.headers().get("content-encoding").is_none());
    // An open stream does not keep the server from stopping.
    tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .expect("the server stops with a stream open");
    drop(stream);
}

#[tokio::test]
async fn a_message_posted_through_one_replica_reaches_a_page_open_on_another() {
    let db = TestDatabase::create().await;
    let writer = ServerProcess::start(MINITWIT, &db.server_url).await;
    let reader = ServerProcess::start(MINITWIT, &db.server_url).await;
    assert_no_content(writer.client().register("poster", "p@x", "pw", None).await);
    let mut stream = EventStream::connect(&reader.web_url, "/poster", &[]).await;
    for n in 0..3 {
        let text = format!("through the other replica {n}");
        assert_no_content(writer.client().tweet("poster", &text, None).await);
        stream.expect_posted(&text).await;
    }
    drop(stream);
    writer.terminate().await;
    reader.terminate().await;
}

#[tokio::test]
async fn open_streams_are_bounded_per_address_and_per_user_and_closing_one_frees_its_place() {
    let app = test_support::app::spawn_app_with(|config| {
        config.live_streams_per_address = 5;
        config.live_streams_per_user = 2;
    })
    .await;
    let refused = |response: &reqwest::Response, what: &str| {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{what}");
        let retry_after = response.headers()["retry-after"].to_str().unwrap();
        assert!(
            retry_after.parse::<u64>().unwrap() > 0,
            "{what}: {retry_after}"
        );
    };
    // Anonymous streams from one address: five, and no sixth.
    let mut anonymous = Vec::new();
    for _ in 0..5 {
        anonymous.push(EventStream::connect(&app.web_url, "/public", &[]).await);
    }
    refused(
        &EventStream::open(&app.web_url, "/public", &[]).await,
        "a sixth from the address",
    );
    // Closed streams give their places back.
    anonymous.truncate(2);
    let signed_in = WebClient::new(&app.web_url);
    signed_in.register_and_login("alice", "pw").await;
    let cookie = signed_in.cookie_header(&app.web_url);
    let as_alice = [("cookie", cookie.as_str())];
    let mut eventually_open = None;
    for _ in 0..100 {
        let response = EventStream::open(&app.web_url, "/", &as_alice).await;
        if response.status() == StatusCode::OK {
            eventually_open = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _mine = eventually_open.expect("a closed stream's place is given back");
    let _chat = EventStream::connect(&app.web_url, "/chat/live", &as_alice).await;
    // Alice is at her bound of two, though the address has room for one more.
    refused(
        &EventStream::open(&app.web_url, "/public", &as_alice).await,
        "a third for alice",
    );
    let _fifth = EventStream::connect(&app.web_url, "/public", &[]).await;
    refused(
        &EventStream::open(&app.web_url, "/public", &[]).await,
        "a sixth from the address again",
    );
    // Pages themselves are not streams, and are never refused.
    let page = reqwest::get(format!("{}/public", app.web_url))
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    drop(anonymous);
    app.stop().await;
}

#[tokio::test]
async fn signing_out_on_one_replica_ends_that_sessions_streams_on_another() {
    let db = TestDatabase::create().await;
    let signing_out = ServerProcess::start(MINITWIT, &db.server_url).await;
    let streaming = ServerProcess::start(MINITWIT, &db.server_url).await;
    let browser = WebClient::new(&signing_out.web_url);
    browser.register_and_login("alice", "pw").await;
    let cookie = browser.cookie_header(&signing_out.web_url);
    let as_alice = [("cookie", cookie.as_str())];
    let mut timeline = EventStream::connect(&streaming.web_url, "/", &as_alice).await;
    let mut chat = EventStream::connect(&streaming.web_url, "/chat/live", &as_alice).await;
    let mut anonymous = EventStream::connect(&streaming.web_url, "/public", &[]).await;
    assert!(
        !timeline.ends_within(Duration::from_millis(300)).await,
        "open while signed in"
    );

    browser
        .logout()
        .await
        .assert_contains("You were logged out");
    assert!(
        timeline.ends_within(ARRIVAL).await,
        "the timeline stream ends"
    );
    assert!(chat.ends_within(ARRIVAL).await, "the chat stream ends");
    assert!(
        !anonymous.ends_within(SILENCE).await,
        "a stream of no session stays open"
    );
    drop((timeline, chat, anonymous));
    signing_out.terminate().await;
    streaming.terminate().await;
}

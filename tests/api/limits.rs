//! Limits: fields longer than their limit, bodies, URIs and headers larger than theirs, and
//! clients too slow to send a request, are refused with a clear answer in each listener's
//! format, and none of them costs anyone else their service.

use std::time::{Duration, Instant};

use domain::limits::{MAX_EMAIL_CHARS, MAX_MESSAGE_CHARS, MAX_PASSWORD_CHARS, MAX_USERNAME_CHARS};
use reqwest::StatusCode;
use test_support::app::{spawn_app, spawn_app_with, TestApp};
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::{percent_encode, SIMULATOR_AUTH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::MINITWIT;

/// The server's client timeout in the slow-client tests: short, so the tests are quick.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(1_000);

/// How much later than [`CLIENT_TIMEOUT`] a slow client may be cut off: the server runs beside
/// the whole suite on two cores, so its timer can fire late, but not by this much.
const CUT_OFF_MARGIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn fields_longer_than_their_limit_are_refused_with_a_clear_400_and_store_nothing() {
    let app = spawn_app().await;
    let sim = app.client();
    // Exactly at every limit, in characters of two bytes and more, is fine.
    let name = "é".repeat(MAX_USERNAME_CHARS);
    let email = format!("{}@b", "é".repeat(MAX_EMAIL_CHARS - 2));
    let password = "ü".repeat(MAX_PASSWORD_CHARS);
    let registered = sim.register(&name, &email, &password, None).await.unwrap();
    assert_eq!(registered.status, StatusCode::NO_CONTENT);
    let longest = "€".repeat(MAX_MESSAGE_CHARS);
    let posted = sim.tweet(&name, &longest, None).await.unwrap();
    assert_eq!(posted.status, StatusCode::NO_CONTENT);
    let listed = sim.user_msgs(&name, None, None).await.unwrap();
    assert_eq!(listed.body[0]["content"], longest.as_str());

    let over = |max: usize| "x".repeat(max + 1);
    let long_name = over(MAX_USERNAME_CHARS);
    let long_email = format!("{}@b", over(MAX_EMAIL_CHARS));
    let long_password = over(MAX_PASSWORD_CHARS);
    let refusals = [
        (
            (long_name.as_str(), "a@b", "p"),
            "A username can have at most 100 characters",
        ),
        (
            ("short", long_email.as_str(), "p"),
            "An email address can have at most 254 characters",
        ),
        (
            ("short", "a@b", long_password.as_str()),
            "A password can have at most 1024 characters",
        ),
    ];
    for ((username, email, password), message) in refusals {
        let reply = sim.register(username, email, password, None).await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{message}");
        assert_eq!(reply.body["error_msg"], message);
    }
    let too_long = sim
        .tweet(&name, &over(MAX_MESSAGE_CHARS), None)
        .await
        .unwrap();
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        too_long.body["error_msg"],
        "A message can have at most 1000 characters"
    );
    // The user lookup still comes before the body's checks.
    let nobody = sim
        .tweet("nobody", &over(MAX_MESSAGE_CHARS), None)
        .await
        .unwrap();
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        events, 2,
        "only the registration and the message at the limits"
    );
}

#[tokio::test]
async fn oversized_requests_are_refused_in_each_listeners_format() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", app.base_url);

    // A body over the cap, declared up front: refused without being read.
    let body = format!(r#"{{"content": "{}"}}"#, "x".repeat(64 * 1024));
    let declared = http
        .post(api("/msgs/somebody"))
        .header("Authorization", SIMULATOR_AUTH)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_json_error(
        declared,
        StatusCode::PAYLOAD_TOO_LARGE,
        "at most 65536 bytes",
    )
    .await;
    // The same, streamed in chunks with no declared length: refused once it passes the cap.
    let chunks = body
        .into_bytes()
        .chunks(4096)
        .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
        .collect::<Vec<_>>();
    let streamed = http
        .post(api("/msgs/somebody"))
        .header("Authorization", SIMULATOR_AUTH)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_json_error(
        streamed,
        StatusCode::PAYLOAD_TOO_LARGE,
        "at most 65536 bytes",
    )
    .await;

    let long_name = percent_encode(&"n".repeat(5_000));
    let long_uri = http
        .get(api(&format!("/msgs/{long_name}")))
        .send()
        .await
        .unwrap();
    assert_json_error(long_uri, StatusCode::URI_TOO_LONG, "at most 4096 bytes").await;

    let huge_header = http
        .get(api("/msgs"))
        .header("X-Padding", "h".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(
        huge_header.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    // The browser pages answer with a page.
    let page = http
        .post(format!("{}/login", app.web_url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("username={}", "u".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.text().await.unwrap().contains("at most 65536 bytes"));

    // And the server goes on serving.
    let listing = app.client().public_msgs(None, None).await.unwrap();
    assert_eq!(listing.status, StatusCode::OK);
}

async fn assert_json_error(response: reqwest::Response, status: StatusCode, says: &str) {
    assert_eq!(response.status(), status);
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["status"], status.as_u16());
    let message = body["error_msg"].as_str().unwrap();
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

async fn spawn_with_short_client_timeout() -> TestApp {
    spawn_app_with(|config| config.client_timeout_ms = CLIENT_TIMEOUT.as_millis() as u64).await
}

/// Fifty slowloris connections, each sending a header line every 200 ms and never ending its
/// headers, and fifty that send nothing at all: each is cut off by the server once the
/// client timeout has passed, while an ordinary request is answered all along.
#[tokio::test]
async fn clients_too_slow_to_send_their_headers_are_cut_off_without_holding_up_others() {
    let app = spawn_with_short_client_timeout().await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::task::JoinSet::new();
    for index in 0..100 {
        let address = address.clone();
        slow.spawn(async move {
            let trickle = index % 2 == 0;
            time_until_cut_off(&address, trickle).await
        });
    }
    // Meanwhile, the simulator is served as usual.
    let started = Instant::now();
    let served = app.client().public_msgs(None, None).await.unwrap();
    assert_eq!(served.status, StatusCode::OK);
    assert!(
        started.elapsed() < CLIENT_TIMEOUT,
        "an ordinary request waited {:?} behind slow clients",
        started.elapsed()
    );
    while let Some(cut_off_after) = slow.join_next().await {
        let cut_off_after = cut_off_after.unwrap();
        assert!(
            cut_off_after >= CLIENT_TIMEOUT.mul_f64(0.9)
                && cut_off_after < CLIENT_TIMEOUT + CUT_OFF_MARGIN,
            "a slow client was cut off after {cut_off_after:?}"
        );
    }
}

/// Connects, starts a request and then (if `trickle`) sends a header line every 200 ms, or
/// nothing more; returns how long the server took to close the connection.
async fn time_until_cut_off(address: &str, trickle: bool) -> Duration {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let connected = Instant::now();
    if trickle {
        stream
            .write_all(b"GET /msgs HTTP/1.1\r\nHost: minitwit\r\n")
            .await
            .unwrap();
    }
    let mut buffer = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buffer) => {
                // End of stream or reset: the server hung up. (Anything it sent first, such
                // as a 408, is fine too; what counts is that the connection ends.)
                if matches!(read, Ok(0) | Err(_)) {
                    return connected.elapsed();
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                assert!(
                    connected.elapsed() < CLIENT_TIMEOUT + CUT_OFF_MARGIN,
                    "a slow client has been connected for {:?}",
                    connected.elapsed()
                );
                if trickle && stream.write_all(b"X-Slow: still here\r\n").await.is_err() {
                    return connected.elapsed();
                }
            }
        }
    }
}

/// A client that sends its headers and then stalls in the body gets a 408, in JSON, once the
/// client timeout has passed.
#[tokio::test]
async fn a_client_too_slow_to_send_its_body_gets_a_408() {
    let app = spawn_with_short_client_timeout().await;
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(
            b"POST /register HTTP/1.1\r\nHost: minitwit\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\nConnection: close\r\n\r\n{\"username\": ",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        CLIENT_TIMEOUT + CUT_OFF_MARGIN,
        stream.read_to_string(&mut answer),
    )
    .await
    .expect("the server answers a stalled body")
    .unwrap();
    assert!(started.elapsed() >= CLIENT_TIMEOUT.mul_f64(0.9));
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "the answer was {answer:?}"
    );
    assert!(answer.contains(r#""error_msg":"The request body did not arrive within 1000 ms""#));
}

/// A hundred and twenty registrations at once, against a server hashing two at a time: each
/// argon2id hash holds 19 MiB, so unbounded they would take over 2 GB; the semaphore keeps
/// the server's peak within a few work areas, and every registration still succeeds.
#[tokio::test]
async fn a_flood_of_registrations_is_bounded_by_the_hashing_semaphore_not_by_memory() {
    const FLOOD: usize = 120;
    const HASHES_AT_ONCE: usize = 2;
    const WORK_AREA: u64 = 19 * 1024 * 1024;
    let db = TestDatabase::create().await;
    let server = ServerProcess::start_with(
        MINITWIT,
        &[
            ("DATABASE_URL", db.server_url.as_str()),
            ("MINITWIT_HASH_CONCURRENCY", &HASHES_AT_ONCE.to_string()),
        ],
    )
    .await;
    // Warmed up: the allocator has held the work areas of a burst once.
    assert_eq!(
        register_all(&server, "warm", HASHES_AT_ONCE).await,
        HASHES_AT_ONCE,
        "every warm-up registration succeeds"
    );
    let before = server.peak_memory_bytes();

    let registered = register_all(&server, "flood", FLOOD).await;
    assert_eq!(
        registered, FLOOD,
        "every registration of the flood succeeds"
    );
    let growth = server.peak_memory_bytes().saturating_sub(before);
    eprintln!(
        "a flood of {FLOOD} registrations raised the peak memory by {} MiB",
        growth / (1024 * 1024)
    );
    assert!(
        growth < 4 * HASHES_AT_ONCE as u64 * WORK_AREA,
        "the peak memory grew by {} MiB under the flood",
        growth / (1024 * 1024)
    );
}

/// Registers `count` users named `prefix n` at once; returns how many succeeded.
async fn register_all(server: &ServerProcess, prefix: &str, count: usize) -> usize {
    let sim = server.client();
    let registrations = (0..count).map(|n| {
        let sim = &sim;
        async move {
            let name = format!("{prefix} {n}");
            let reply = sim.register(&name, "flood@example.org", "pw", None).await;
            matches!(reply, Ok(reply) if reply.status == StatusCode::NO_CONTENT)
        }
    });
    futures_util::future::join_all(registrations)
        .await
        .into_iter()
        .filter(|registered| *registered)
        .count()
}

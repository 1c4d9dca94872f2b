//! A client of the simulator API that talks to it the way the simulator does, the answers
//! it gets, and readers of the API's listings.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// The simulator's default `Authorization` header.
pub const SIMULATOR_AUTH: &str = "Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh";

/// A duration in milliseconds, for reports.
pub fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1_000.0)
}

/// A request's failure as the simulator would see it, with reqwest's chain of causes.
pub fn describe_failure(err: &reqwest::Error, elapsed: Duration) -> String {
    let mut text = if err.is_timeout() {
        format!("timed out after {}", millis(elapsed))
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for path segments
/// and query values).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A response: the request it answers, its status and body (JSON when there is one).
#[derive(Debug)]
pub struct Reply {
    /// The request's method and path, as sent.
    pub route: String,
    pub status: StatusCode,
    pub body: Value,
}

/// Asserts that a write was acknowledged, with the 204 No Content the API answers every
/// accepted write with, naming the request, the status and the body otherwise: for the writes
/// a test sends to set up what it tests, so that one that failed fails the test there, not at
/// some later, puzzling assertion.
#[track_caller]
pub fn assert_no_content(reply: reqwest::Result<Reply>) {
    let reply = reply.unwrap_or_else(|err| panic!("no answer: {err}"));
    assert!(
        reply.status == StatusCode::NO_CONTENT,
        "{} answered {}, not 204 No Content: {}",
        reply.route,
        reply.status,
        reply.body
    );
}

/// A client that talks to the API the way the simulator does: a new connection per
/// request, with the simulator's credentials.
#[derive(Clone)]
pub struct SimClient {
    base_url: String,
    http: reqwest::Client,
}

impl SimClient {
    /// A client of the server at `base_url`, with no timeout beyond reqwest's defaults.
    pub fn new(base_url: &str) -> Self {
        Self::with_timeout(base_url, Duration::from_secs(30))
    }

    /// A client whose every request (connect and response) must finish within `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .build()
            .expect("building the HTTP client");
        Self {
            base_url: base_url.to_owned(),
            http,
        }
    }

    /// Sends a request; `path` is already encoded. `auth` adds the simulator's header.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: bool,
        body: Option<&str>,
    ) -> reqwest::Result<Reply> {
        let route = format!("{method} {path}");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header("Connection", "close");
        if auth {
            request = request.header("Authorization", SIMULATOR_AUTH);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply {
            route,
            status,
            body,
        })
    }

    fn with_latest(path: String, latest: Option<i64>) -> String {
        match latest {
            Some(latest) if path.contains('?') => format!("{path}&latest={latest}"),
            Some(latest) => format!("{path}?latest={latest}"),
            None => path,
        }
    }

    /// `GET /latest`'s value.
    pub async fn latest(&self) -> reqwest::Result<i64> {
        let reply = self
            .send(reqwest::Method::GET, "/latest", false, None)
            .await?;
        Ok(reply.body["latest"].as_i64().expect("latest is a number"))
    }

    /// `POST /register`.
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        pwd: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let body = serde_json::json!({"username": username, "email": email, "pwd": pwd});
        self.post("/register".into(), false, body, latest).await
    }

    /// `POST /msgs/<user>`.
    pub async fn tweet(
        &self,
        user: &str,
        content: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let path = format!("/msgs/{}", percent_encode(user));
        self.post(
            path,
            true,
            serde_json::json!({ "content": content }),
            latest,
        )
        .await
    }

    /// `POST /fllws/<user>` with `{"follow": target}`.
    pub async fn follow(
        &self,
        user: &str,
        target: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.follow_change(user, "follow", target, latest).await
    }

    /// `POST /fllws/<user>` with `{"unfollow": target}`.
    pub async fn unfollow(
        &self,
        user: &str,
        target: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.follow_change(user, "unfollow", target, latest).await
    }

    async fn follow_change(
        &self,
        user: &str,
        key: &str,
        target: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let path = format!("/fllws/{}", percent_encode(user));
        self.post(path, true, serde_json::json!({ key: target }), latest)
            .await
    }

    async fn post(
        &self,
        path: String,
        auth: bool,
        body: Value,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let body = body.to_string();
        self.send(
            reqwest::Method::POST,
            &Self::with_latest(path, latest),
            auth,
            Some(&body),
        )
        .await
    }

    /// `GET /msgs` (with `no` if given).
    pub async fn public_msgs(
        &self,
        no: Option<i64>,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.listing("/msgs".to_owned(), no, latest).await
    }

    /// `GET /msgs/<user>` (with `no` if given).
    pub async fn user_msgs(
        &self,
        user: &str,
        no: Option<i64>,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.listing(format!("/msgs/{}", percent_encode(user)), no, latest)
            .await
    }

    /// `GET /fllws/<user>` (with `no` if given).
    pub async fn follows(
        &self,
        user: &str,
        no: Option<i64>,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.listing(format!("/fllws/{}", percent_encode(user)), no, latest)
            .await
    }

    async fn listing(
        &self,
        path: String,
        no: Option<i64>,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let path = match no {
            Some(no) => format!("{path}?no={no}"),
            None => path,
        };
        self.send(
            reqwest::Method::GET,
            &Self::with_latest(path, latest),
            true,
            None,
        )
        .await
    }
}

/// The `(user, content)` pairs of a message listing, in order.
pub fn authored(listing: &Value) -> Vec<(String, String)> {
    listing
        .as_array()
        .expect("a message listing is an array")
        .iter()
        .map(|message| {
            (
                message["user"].as_str().expect("user").to_owned(),
                message["content"].as_str().expect("content").to_owned(),
            )
        })
        .collect()
}

/// The names in a `{"follows": [...]}` body.
pub fn follow_names(body: &Value) -> Vec<String> {
    body["follows"]
        .as_array()
        .expect("follows is an array")
        .iter()
        .map(|name| name.as_str().expect("a name").to_owned())
        .collect()
}

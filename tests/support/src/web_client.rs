//! A browser-like HTTP client of the web pages for the integration tests: it keeps cookies
//! and, like the original's test client with `follow_redirects=True`, follows redirects —
//! or not, when a test wants to see the redirect itself.
//!
//! Like the original's test suite it sends no `Origin` or `Sec-Fetch-Site` headers, unless a
//! test adds them to play a browser on some site.

use std::sync::Arc;

use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode};

/// One answer: the request it answers, the status, where it came from after redirects, its
/// headers and its body.
#[derive(Debug)]
pub struct Page {
    /// The request's method and path, as sent.
    pub route: String,
    pub status: StatusCode,
    pub url: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("{} is not JSON ({err}):\n{}", self.url, self.body))
    }

    /// Whether the body contains `needle`, with a readable failure message.
    #[track_caller]
    pub fn assert_contains(&self, needle: &str) {
        assert!(
            self.body.contains(needle),
            "expected {needle:?} in {} ({}):\n{}",
            self.url,
            self.status,
            self.body
        );
    }

    #[track_caller]
    pub fn assert_lacks(&self, needle: &str) {
        assert!(
            !self.body.contains(needle),
            "did not expect {needle:?} in {} ({}):\n{}",
            self.url,
            self.status,
            self.body
        );
    }

    /// Asserts that the request was answered with `expected` (after any redirects this client
    /// followed), naming the request, the status and the page otherwise: for the requests a
    /// test sends to set up what it tests, so that one that failed fails the test there.
    #[track_caller]
    pub fn assert_status(&self, expected: StatusCode) {
        assert!(
            self.status == expected,
            "{} answered {} at {}, not {expected}:\n{}",
            self.route,
            self.status,
            self.url,
            self.body
        );
    }

    /// Asserts that the request was answered with a redirect to `path`, whether this client
    /// followed it (and was shown that page) or not. That is how a form says it was accepted:
    /// a refused one is shown again, with its error, and a 200.
    #[track_caller]
    pub fn assert_redirected_to(&self, path: &str) {
        let destination = if self.status.is_redirection() {
            self.header("location").map(str::to_owned)
        } else if self.status == StatusCode::OK {
            let url = reqwest::Url::parse(&self.url).expect("a page's URL is valid");
            Some(url.path().to_owned())
        } else {
            None
        };
        assert!(
            destination.as_deref() == Some(path),
            "{} answered {} at {}, not a redirect to {path}:\n{}",
            self.route,
            self.status,
            self.url,
            self.body
        );
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A cookie-keeping client of the pages at `base_url`.
pub struct WebClient {
    base_url: String,
    http: reqwest::Client,
    cookies: Arc<Jar>,
    extra_headers: HeaderMap,
}

impl WebClient {
    /// A client that follows redirects, as a browser does.
    pub fn new(base_url: &str) -> Self {
        Self::build(base_url, Policy::limited(10))
    }

    /// A client that shows redirects instead of following them.
    pub fn not_following_redirects(base_url: &str) -> Self {
        Self::build(base_url, Policy::none())
    }

    fn build(base_url: &str, redirects: Policy) -> Self {
        let cookies = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(cookies.clone())
            .redirect(redirects)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("building the web client");
        Self {
            base_url: base_url.to_owned(),
            http,
            cookies,
            extra_headers: HeaderMap::new(),
        }
    }

    /// The `Cookie` header this client would send to `url` (empty if none).
    pub fn cookie_header(&self, url: &str) -> String {
        let url = url.parse().expect("a valid URL");
        self.cookies
            .cookies(&url)
            .and_then(|value| value.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Sends `name: value` with every request from now on (e.g. to look like a browser on
    /// some site, or a TLS-terminating proxy).
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.extra_headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("a valid header value"),
        );
        self
    }

    /// `GET path` (already encoded).
    pub async fn get(&self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a URL-encoded form.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    /// `POST path` with a JSON body, as the chat's script sends.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Page {
        let request = self.request(Method::POST, path).json(body);
        Self::page(format!("POST {path}"), request).await
    }

    async fn send(&self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let route = format!("{method} {path}");
        let mut request = self.request(method, path);
        if let Some(form) = form {
            request = request.form(form);
        }
        Self::page(route, request).await
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .headers(self.extra_headers.clone())
    }

    async fn page(route: String, request: reqwest::RequestBuilder) -> Page {
        let response = request.send().await.expect("the server answers");
        Page {
            route,
            status: response.status(),
            url: response.url().to_string(),
            headers: response.headers().clone(),
            body: response.text().await.expect("reading the body"),
        }
    }

    /// The original test suite's `register` helper: the password repeated unless given,
    /// and `<username>@example.com` unless an email is given.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        password2: Option<&str>,
        email: Option<&str>,
    ) -> Page {
        let default_email = format!("{username}@example.com");
        let form = [
            ("username", username),
            ("password", password),
            ("password2", password2.unwrap_or(password)),
            ("email", email.unwrap_or(&default_email)),
        ];
        self.post("/register", &form).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Page {
        self.post("/login", &[("username", username), ("password", password)])
            .await
    }

    /// Registers and signs in, checking that both worked.
    pub async fn register_and_login(&self, username: &str, password: &str) -> Page {
        self.register(username, password, None, None)
            .await
            .assert_redirected_to("/login");
        let signed_in = self.login(username, password).await;
        signed_in.assert_redirected_to("/");
        signed_in
    }

    pub async fn logout(&self) -> Page {
        self.get("/logout").await
    }

    /// Posts a message, checking (as the original's helper did) that it was recorded.
    pub async fn add_message(&self, text: &str) -> Page {
        let page = self.post("/add_message", &[("text", text)]).await;
        if !text.is_empty() {
            page.assert_contains("Your message was recorded");
        }
        page
    }
}

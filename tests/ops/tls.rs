//! TLS end to end: the shipped nginx configuration (`ops/nginx/nginx.conf`), run by a real
//! nginx on loopback with a certificate made for the test, in front of a real server (and a
//! stand-in for Grafana). Pages, the simulator API, live streams and Grafana work over HTTPS; plain HTTP is redirected; HSTS is on;
//! the session cookie is `Secure`; and a client that talks to the server directly cannot
//! claim TLS it did not use. The client is curl, trusting the test's certificate.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use test_support::database::TestDatabase;
use test_support::free_port;
use test_support::server_process::ServerProcess;
use tokio::io::AsyncReadExt as _;

use crate::nginx::{foreground_arguments, local_config, nginx_binary, test_certificate};
use crate::MINITWIT;

/// The address nginx connects to the server from; the server trusts that one alone.
const PROXY_ADDRESS: &str = "127.0.0.2";
/// A client the API's allow-list leaves out.
const STRANGER: &str = "127.0.0.3";

/// nginx in front of the server, and how to reach it.
struct Tls {
    dir: PathBuf,
    certificate: PathBuf,
    api_port: u16,
    https_port: u16,
    http_port: u16,
    grafana_port: u16,
    _nginx: tokio::process::Child,
}

impl Tls {
    async fn start(server: &ServerProcess, grafana_upstream: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "ops-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("creating nginx's scratch directory");
        let (certificate, key) = test_certificate(&dir);
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/nginx/nginx.conf"),
        )
        .expect("reading ops/nginx/nginx.conf");
        let (api_port, https_port, http_port, grafana_port) =
            (free_port(), free_port(), free_port(), free_port());
        // The allow-list as an operator would write it: the test's own address in, the rest
        // out (the shipped one lets everyone in).
        let api_clients = dir.join("api-clients.conf");
        std::fs::write(
            &api_clients,
            format!("allow 127.0.0.1;\ndeny {STRANGER};\n"),
        )
        .expect("writing the API's allow-list");
        let host_port = |url: &str| url.trim_start_matches("http://").to_owned();
        let config = local_config(
            &shipped,
            &crate::nginx::Surroundings {
                api_upstream: &host_port(&server.base_url),
                web_upstream: &host_port(&server.web_url),
                grafana_upstream,
                api_port,
                https_port,
                http_port,
                status_port: free_port(),
                grafana_port,
                api_clients: &api_clients,
                certificate: &certificate,
                key: &key,
                bind: PROXY_ADDRESS,
            },
        );
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).expect("writing nginx.conf");
        let nginx = tokio::process::Command::new(nginx_binary())
            .args(foreground_arguments(&dir, &config_path))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting nginx");
        let tls = Self {
            dir,
            certificate,
            api_port,
            https_port,
            http_port,
            grafana_port,
            _nginx: nginx,
        };
        for _ in 0..200 {
            if tls.curl(&[&tls.api("/latest")]).status.success() {
                return tls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not answer over TLS within 10 s:\n{}",
            std::fs::read_to_string(tls.dir.join("error.log")).unwrap_or_default()
        );
    }

    fn api(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.api_port)
    }

    fn pages(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https_port)
    }

    /// curl with `arguments`, trusting only the test's certificate: status line and headers
    /// first (`-i`), then the body.
    fn curl(&self, arguments: &[&str]) -> Output {
        std::process::Command::new("curl")
            .args(self.curl_arguments())
            .args(arguments)
            .output()
            .expect("running curl (Debian's `curl` package)")
    }

    /// curl holding the live stream of the page at `path` open, once it has opened.
    async fn open_stream(&self, path: &str) -> LiveStream {
        let mut curl = tokio::process::Command::new("curl")
            .args(self.curl_arguments())
            .args(["-N", "-H", "Accept: text/event-stream"])
            .arg(self.pages(path))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting curl");
        let output = curl.stdout.take().expect("curl's output");
        let mut stream = LiveStream {
            _curl: curl,
            output,
            received: String::new(),
        };
        stream.wait_for(": connected").await;
        stream
    }

    fn curl_arguments(&self) -> Vec<String> {
        let mut arguments = vec![
            "-sS".to_owned(),
            "-i".to_owned(),
            "--max-time".to_owned(),
            "10".to_owned(),
            "--cacert".to_owned(),
            self.certificate.display().to_string(),
        ];
        for port in [self.api_port, self.https_port, self.grafana_port] {
            arguments.push("--resolve".to_owned());
            arguments.push(format!("localhost:{port}:127.0.0.1"));
        }
        arguments
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// curl's output as text: the status line, headers and body.
fn text(output: &Output) -> String {
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of the header `name` in curl's `-i` output (the last one, after redirects).
fn header<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    response
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
        .collect()
}

/// A server that trusts nginx's address alone, with `extra` settings.
async fn server_behind_nginx(db: &TestDatabase, extra: &[(&str, &str)]) -> ServerProcess {
    let mut env = vec![
        ("DATABASE_URL", db.server_url.as_str()),
        ("MINITWIT_TRUSTED_PROXIES", PROXY_ADDRESS),
        ("MINITWIT_CLIENT_IP_HEADER", "x-real-ip"),
    ];
    env.extend_from_slice(extra);
    ServerProcess::start_with(MINITWIT, &env).await
}

/// A live stream held open by curl, and what it has sent so far.
struct LiveStream {
    _curl: tokio::process::Child,
    output: tokio::process::ChildStdout,
    received: String,
}

impl LiveStream {
    /// Waits, up to 10 s, until the stream has sent `needle`.
    async fn wait_for(&mut self, needle: &str) {
        let mut buffer = [0_u8; 4096];
        let read_until = async {
            while !self.received.contains(needle) {
                let read = self
                    .output
                    .read(&mut buffer)
                    .await
                    .expect("reading the stream");
                assert!(
                    read > 0,
                    "the stream ended before {needle:?}: {}",
                    self.received
                );
                self.received
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read_until)
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} on the stream within 10 s"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_api_live_streams_and_grafana_go_over_tls_and_plain_http_is_sent_there() {
    let db = TestDatabase::create().await;
    let server = server_behind_nginx(&db, &[]).await;
    // A stand-in for Grafana, answering every request alike.
    let grafana = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding Grafana's stand-in");
    let grafana_address = grafana.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = grafana.accept().await {
            use tokio::io::AsyncWriteExt as _;
            let mut request = [0_u8; 4096];
            let _ = connection.read(&mut request).await;
            let _ = connection
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\nConnection: close\r\n\r\nGrafana's sign-in")
                .await;
        }
    });
    let tls = Tls::start(&server, &grafana_address).await;

    // Grafana is reached through nginx, over TLS, with HSTS.
    let grafana_page = text(&tls.curl(&[&format!("https://localhost:{}/login", tls.grafana_port)]));
    assert!(grafana_page.starts_with("HTTP/1.1 200"), "{grafana_page}");
    assert!(
        grafana_page.ends_with("Grafana's sign-in"),
        "{grafana_page}"
    );
    assert_eq!(
        header(&grafana_page, "strict-transport-security"),
        ["max-age=63072000"]
    );

    // The simulator API over HTTPS, with HSTS; plain HTTP to its port is sent to HTTPS.
    let auth = format!(
        "Authorization: {}",
        test_support::sim_client::SIMULATOR_AUTH
    );
    let registered = text(&tls.curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"username": "alice", "email": "a@example.org", "pwd": "pw"}"#,
        &tls.api("/register?latest=1"),
    ]));
    assert!(registered.starts_with("HTTP/1.1 204"), "{registered}");
    assert_eq!(
        header(&registered, "strict-transport-security"),
        ["max-age=63072000"]
    );
    // The allow-list keeps other clients off the API, not off the pages.
    let stranger = text(&tls.curl(&["--interface", STRANGER, &tls.api("/latest")]));
    assert!(stranger.starts_with("HTTP/1.1 403"), "{stranger}");
    let stranger_page = text(&tls.curl(&["--interface", STRANGER, &tls.pages("/public")]));
    assert!(stranger_page.starts_with("HTTP/1.1 200"), "{stranger_page}");
    let plain_api = text(&tls.curl(&[&format!("http://127.0.0.1:{}/latest", tls.api_port)]));
    assert!(plain_api.starts_with("HTTP/1.1 307"), "{plain_api}");
    let location = header(&plain_api, "location");
    assert!(location[0].starts_with("https://"), "{location:?}");

    // Plain HTTP to the pages is redirected to HTTPS, where the pages are, with HSTS.
    let plain = text(&tls.curl(&[&format!("http://127.0.0.1:{}/public", tls.http_port)]));
    assert!(plain.starts_with("HTTP/1.1 301"), "{plain}");
    assert_eq!(header(&plain, "location"), ["https://127.0.0.1/public"]);
    let public = text(&tls.curl(&[&tls.pages("/public")]));
    assert!(public.starts_with("HTTP/1.1 200"), "{public}");
    assert!(public.contains("<h2>Public Timeline</h2>"), "{public}");
    assert_eq!(
        header(&public, "strict-transport-security"),
        ["max-age=63072000"]
    );

    // Signing in over HTTPS gives a Secure cookie: the server believed nginx's word.
    let login = text(&tls.curl(&["-d", "username=alice&password=pw", &tls.pages("/login")]));
    assert!(login.starts_with("HTTP/1.1 302"), "{login}");
    let cookie = header(&login, "set-cookie");
    assert!(
        cookie
            .iter()
            .any(|value| value.starts_with("minitwit_session=") && value.contains("; Secure")),
        "{cookie:?}"
    );
    // The same claim from a client that talks to the server directly is not believed.
    let direct = text(
        &std::process::Command::new("curl")
            .args(["-sS", "-i", "-H", "X-Forwarded-Proto: https"])
            .args(["-d", "username=alice&password=pw"])
            .arg(format!("{}/login", server.web_url))
            .output()
            .expect("running curl"),
    );
    let cookie = header(&direct, "set-cookie");
    assert!(
        !cookie.is_empty() && cookie.iter().all(|value| !value.contains("Secure")),
        "{cookie:?}"
    );

    // A live stream through TLS: a post reaches an open public timeline.
    let mut stream = tls.open_stream("/public").await;
    let posted = text(&tls.curl(&[
        "-H",
        &auth,
        "-d",
        r#"{"content": "sent over TLS, streamed over TLS"}"#,
        &tls.api("/msgs/alice?latest=2"),
    ]));
    assert!(posted.starts_with("HTTP/1.1 204"), "{posted}");
    stream.wait_for("sent over TLS, streamed over TLS").await;
    drop(stream);
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_bounds_live_streams_per_address_across_replicas() {
    let db = TestDatabase::create().await;
    // The replica's own bound is raised out of the way, so that nginx's is the one met.
    let server = server_behind_nginx(&db, &[("MINITWIT_LIVE_STREAMS_PER_ADDRESS", "1000")]).await;
    let tls = Tls::start(&server, &format!("127.0.0.1:{}", free_port())).await;
    // The bound in ops/nginx/nginx.conf (`limit_conn live_streams_per_address 64`).
    let mut streams = Vec::new();
    for _ in 0..64 {
        streams.push(tls.open_stream("/public").await);
    }
    let refused = text(&tls.curl(&["-H", "Accept: text/event-stream", &tls.pages("/public")]));
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    // Pages are not streams, and are not bounded.
    let page = text(&tls.curl(&[&tls.pages("/public")]));
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    drop(streams);
    server.terminate().await;
}

//! The deployment's own nginx configuration (`ops/nginx/nginx.conf`), made runnable on this
//! machine: what the container provides (the replicas' DNS name, the secrets, the ports) is
//! swapped for local stand-ins, and nothing else is touched, so the tests run the
//! configuration that ships.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the stand-ins of the container's surroundings are.
pub struct Surroundings<'a> {
    /// The replicas' simulator API and pages (`host:port` each).
    pub api_upstream: &'a str,
    pub web_upstream: &'a str,
    /// Grafana (`host:port`); nothing need listen there unless a test asks Grafana.
    pub grafana_upstream: &'a str,
    /// Loopback ports for the API (TLS), the pages over TLS and plain HTTP, and nginx's own.
    pub api_port: u16,
    pub https_port: u16,
    pub http_port: u16,
    pub status_port: u16,
    pub grafana_port: u16,
    /// The simulator API's allow-list, in place of the shipped `ops/nginx/api-clients.conf`.
    pub api_clients: &'a Path,
    /// The certificate and key files that stand for the secrets.
    pub certificate: &'a Path,
    pub key: &'a Path,
    /// The local address nginx connects to the replicas from, so that they can tell its
    /// connections from the test's own (which come from 127.0.0.1).
    pub bind: &'a str,
}

/// The shipped configuration with `surroundings` in place of the container's. Each swap must
/// find what it replaces, so a change to the configuration breaks this, not the test's claims.
pub fn local_config(shipped: &str, surroundings: &Surroundings) -> String {
    // Each listener on its loopback port; TLS ones keep their `ssl`.
    let listeners = [
        ("listen 5001 ssl;", surroundings.api_port, " ssl"),
        ("listen 443 ssl;", surroundings.https_port, " ssl"),
        ("listen 3000 ssl;", surroundings.grafana_port, " ssl"),
        ("listen 80;", surroundings.http_port, ""),
        ("listen 127.0.0.1:8080;", surroundings.status_port, ""),
    ]
    .map(|(from, port, tls)| (from, format!("listen 127.0.0.1:{port}{tls};")));
    let upstreams = [
        ("server minitwit:5001", surroundings.api_upstream),
        ("server minitwit:5000", surroundings.web_upstream),
        ("server grafana:3000", surroundings.grafana_upstream),
    ]
    .map(|(from, to)| (from, format!("server {to}")));
    let files = [
        ("/run/secrets/tls_certificate", surroundings.certificate),
        ("/run/secrets/tls_key", surroundings.key),
    ]
    .map(|(from, to)| (from, to.display().to_string()));
    let others = [
        (" resolve ", " ".to_owned()),
        (
            "include /etc/nginx/api-clients.conf;",
            format!("include {};", surroundings.api_clients.display()),
        ),
        (
            "proxy_http_version 1.1;",
            format!(
                "proxy_http_version 1.1;\n    proxy_bind {};",
                surroundings.bind
            ),
        ),
    ];
    let swaps = others
        .into_iter()
        .chain(upstreams)
        .chain(listeners)
        .chain(files);
    let mut config = shipped.to_owned();
    for (from, to) in swaps {
        assert!(config.contains(from), "nginx.conf no longer has `{from}`");
        config = config.replace(from, &to);
    }
    // The image's `nginx` user does not exist here; as root, Debian's nginx runs its workers
    // as `nobody`, which can read the scratch directory.
    config
        .lines()
        .filter(|line| !line.trim_start().starts_with("user "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The arguments that keep nginx in the foreground, with its pid file and startup log in
/// `dir` rather than the package's paths.
pub fn foreground_arguments(dir: &Path, config: &Path) -> Vec<String> {
    let dir = dir.display();
    vec![
        "-p".to_owned(),
        format!("{dir}/"),
        "-e".to_owned(),
        format!("{dir}/error.log"),
        "-c".to_owned(),
        config.display().to_string(),
        "-g".to_owned(),
        format!("daemon off; pid {dir}/nginx.pid;"),
    ]
}

/// nginx: Debian's `nginx` package (`/usr/sbin/nginx`), or `MINITWIT_NGINX`.
pub fn nginx_binary() -> PathBuf {
    let binary = std::env::var_os("MINITWIT_NGINX")
        .map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from);
    assert!(
        binary.is_file(),
        "no nginx at {}: install Debian's `nginx` package (apt-get install nginx; scripts/test \
         does it as root) or set MINITWIT_NGINX",
        binary.display()
    );
    binary
}

/// A self-signed certificate for `localhost` and 127.0.0.1, valid for a day, made with
/// openssl in `dir`: its certificate and key files.
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (certificate, key) = (dir.join("certificate.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| {
            panic!("running openssl (Debian's `openssl` package; scripts/test installs it): {err}")
        });
    assert!(
        made.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    (certificate, key)
}

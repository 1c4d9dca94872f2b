//! The real `minitwit` binary in a child process, for tests that kill and restart it or run
//! several at once. Only suites of the `api` package can include this module: only they can
//! name the binary (`CARGO_BIN_EXE_minitwit`).

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{free_port, SimClient};

/// The real `minitwit` binary in a child process.
pub struct ServerProcess {
    /// The simulator API's root.
    pub base_url: String,
    /// The browser pages' root.
    pub web_url: String,
    child: tokio::process::Child,
}

impl ServerProcess {
    /// Starts `minitwit` on `database_url` and waits until it answers.
    pub async fn start(database_url: &str) -> Self {
        Self::start_with(&[("DATABASE_URL", database_url)]).await
    }

    /// Starts `minitwit` with `env` added to the test settings (and no inherited
    /// `DATABASE_URL`), and waits until it answers.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let web_port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_minitwit"))
            .env_remove("DATABASE_URL")
            .env_remove("DATABASE_URL_FILE")
            .envs(env.iter().copied())
            .env("MINITWIT_API_ADDR", format!("127.0.0.1:{port}"))
            .env("MINITWIT_WEB_ADDR", format!("127.0.0.1:{web_port}"))
            .env("MINITWIT_READ_YOUR_WRITES_TIMEOUT_MS", "10000")
            .env("MINITWIT_PROJECTOR_POLL_MS", "100")
            .env("MINITWIT_DB_POOL_SIZE", "10")
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").map_or("error".into(), |_| "info".to_owned()),
            )
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning minitwit");
        let server = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            web_url: format!("http://127.0.0.1:{web_port}"),
            child,
        };
        let client = server.client();
        for _ in 0..300 {
            if client.latest().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("minitwit did not start answering on port {port}");
    }

    /// A simulator-like client of this process.
    pub fn client(&self) -> SimClient {
        SimClient::new(&self.base_url)
    }

    /// Kills the process without warning, as a crash would.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("killing minitwit");
    }

    /// Stops the process with SIGTERM and checks it exits cleanly.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("a running child has a pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signalling minitwit");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("minitwit stops within 30 s")
            .expect("waiting for minitwit");
        assert!(status.success(), "minitwit exited with {status}");
    }
}

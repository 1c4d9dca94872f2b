//! The real `minitwit` binary in a child process, for tests that kill and restart it or run
//! several at once. Only suites of the `api` package can name the binary
//! (`CARGO_BIN_EXE_minitwit`), so they hand its path to [`ServerProcess::start`].

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::free_port;
use crate::sim_client::SimClient;

/// The real `minitwit` binary in a child process.
pub struct ServerProcess {
    /// The simulator API's root.
    pub base_url: String,
    /// The browser pages' root.
    pub web_url: String,
    /// The API's `host:port`.
    pub api_addr: String,
    child: tokio::process::Child,
    /// What the process wrote to stderr (its logs), line by line.
    logs: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `binary` (`minitwit`) on `database_url` and waits until it answers.
    pub async fn start(binary: impl AsRef<Path>, database_url: &str) -> Self {
        Self::start_with(binary, &[("DATABASE_URL", database_url)]).await
    }

    /// Starts `binary` (`minitwit`) with `env` over the test settings (and no inherited `DATABASE_URL`),
    /// on free ports unless `env` names them, and waits until it answers. Its logs are kept
    /// (see [`ServerProcess::logs`]); `TEST_LOG` also shows them.
    pub async fn start_with(binary: impl AsRef<Path>, env: &[(&str, &str)]) -> Self {
        let given = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        let api_addr =
            given("MINITWIT_API_ADDR").unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let web_addr =
            given("MINITWIT_WEB_ADDR").unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let mut child = tokio::process::Command::new(binary.as_ref())
            .env_remove("DATABASE_URL")
            .env_remove("DATABASE_URL_FILE")
            .env("MINITWIT_API_ADDR", &api_addr)
            .env("MINITWIT_WEB_ADDR", &web_addr)
            .env("MINITWIT_READ_YOUR_WRITES_TIMEOUT_MS", "10000")
            .env("MINITWIT_PROJECTOR_POLL_MS", "100")
            .env("MINITWIT_DB_POOL_SIZE", "10")
            .env("MINITWIT_MASTER_KEY", crate::database::TEST_MASTER_KEY)
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").map_or("error".into(), |_| "info".to_owned()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning minitwit");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let kept = logs.clone();
        let shown = std::env::var_os("TEST_LOG").is_some();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if shown {
                    eprintln!("{line}");
                }
                kept.lock().expect("log lines").push(line);
            }
        });
        let server = Self {
            base_url: format!("http://{api_addr}"),
            web_url: format!("http://{web_addr}"),
            api_addr,
            child,
            logs,
        };
        let client = server.client();
        for _ in 0..300 {
            if client.latest().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "minitwit did not start answering on {}; it logged:\n{}",
            server.api_addr,
            server.logs().join("\n")
        );
    }

    /// The log lines the process has written so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lines").clone()
    }

    /// A simulator-like client of this process.
    pub fn client(&self) -> SimClient {
        SimClient::new(&self.base_url)
    }

    /// The most memory the process has held at once so far (its peak resident set).
    pub fn peak_memory_bytes(&self) -> u64 {
        let pid = self.child.id().expect("a running child has a pid");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("reading the process status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in the process status");
        kib * 1024
    }

    /// Asserts that the process is still running and has logged no panic.
    pub fn assert_alive(&mut self) {
        let exited = self.child.try_wait().expect("asking whether minitwit runs");
        let logs = self.logs();
        assert!(
            exited.is_none(),
            "minitwit exited ({exited:?}); it logged:\n{}",
            logs.join("\n")
        );
        assert!(
            !logs.iter().any(|line| line.contains("panicked")),
            "minitwit panicked; it logged:\n{}",
            logs.join("\n")
        );
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

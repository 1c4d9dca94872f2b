//! The server under test: the release `minitwit` binary in its own process, as it runs in
//! production, and its memory as the kernel accounts it.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// A running `minitwit` process.
pub struct Server {
    child: Child,
    /// The simulator API's root.
    pub api_url: String,
    /// The browser pages' root.
    pub web_url: String,
}

/// The master key the benchmark's servers and admin tool runs share (see
/// `database::sealing`): any will do, as long as it is the same for every process on a store.
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

impl Server {
    /// Starts `binary` against `database_url` on two free ports, logging to `log`, and waits
    /// until it answers.
    pub async fn start(binary: &Path, database_url: &str, log: &Path) -> anyhow::Result<Self> {
        let api_addr = format!("127.0.0.1:{}", free_port()?);
        let web_addr = format!("127.0.0.1:{}", free_port()?);
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .env("DATABASE_URL", database_url)
            .env("MINITWIT_MASTER_KEY", MASTER_KEY)
            .env("MINITWIT_API_ADDR", &api_addr)
            .env("MINITWIT_WEB_ADDR", &web_addr)
            // A busy benchmark is not a brute-force attack: the one sign-in it makes must pass.
            .env("MINITWIT_LOGIN_ATTEMPTS_PER_MINUTE", "1000")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let server = Self {
            child,
            api_url: format!("http://{api_addr}"),
            web_url: format!("http://{web_addr}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let live = client
                .get(format!("{}/health/live", server.api_url))
                .send()
                .await;
            if live.is_ok_and(|reply| reply.status().is_success()) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not come up within 60 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Forgets the peak resident set size so far, so that the next reading covers only what
    /// runs from now on (`/proc/<pid>/clear_refs`, value 5).
    pub fn reset_peak_memory(&self) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()?), "5")
            .context("resetting the server's peak RSS")
    }

    /// The peak resident set size since the start or the last reset, in bytes (`VmHWM`).
    pub fn peak_memory(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next())
            .context("no VmHWM in /proc/<pid>/status")?
            .parse()?;
        Ok(kib * 1024)
    }

    /// Stops the server with SIGTERM, as an orchestrator would, and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.pid()?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("the server did not stop within 30 s of SIGTERM")??;
        Ok(())
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server has exited")
    }
}

/// A port free at the time of asking.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

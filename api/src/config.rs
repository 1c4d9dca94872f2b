//! The server's configuration: flags, each also read from an environment variable.
//!
//! Secrets (the database URL, the simulator's password) may instead be read from a file named
//! by a `*_FILE` variable, the convention of Docker and Compose secrets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use database::settings::{read_secret_file, DatabaseConfig};

/// The shortest session-signing secret accepted: shorter ones could be guessed.
const MIN_SESSION_KEY_CHARS: usize = 32;

/// Where the pages' avatar pictures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AvatarSource {
    /// `https://www.gravatar.com/avatar/<md5>`, as the original.
    Gravatar,
    /// Identicons drawn by this server.
    Local,
}

/// Whom users may send private messages to (blocks always apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChatPolicySetting {
    /// Someone they follow or who follows them.
    Connected,
    /// Any registered user.
    Anyone,
}

impl From<ChatPolicySetting> for domain::ChatPolicy {
    fn from(setting: ChatPolicySetting) -> Self {
        match setting {
            ChatPolicySetting::Connected => Self::Connected,
            ChatPolicySetting::Anyone => Self::Anyone,
        }
    }
}

/// What else the binary can do than serve.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Exits 0 if the server at MINITWIT_API_ADDR answers /health/ready (or, with --live,
    /// /health/live) with 200, else 1: the probe for containers, which have no curl.
    Healthcheck {
        /// Only ask whether the process answers. For an orchestrator that restarts unhealthy
        /// containers: readiness also fails on a database-wide problem (a stalled projection,
        /// the database down), and restarting every replica at once cures neither.
        #[arg(long)]
        live: bool,
    },
}

/// Everything the server can be told at start-up.
#[derive(Debug, Clone, Parser)]
#[command(name = "minitwit", version, about = "MiniTwit, event-sourced")]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address of the simulator API.
    #[arg(long, env = "MINITWIT_API_ADDR", default_value = "127.0.0.1:5001")]
    pub api_addr: SocketAddr,

    /// Address of the browser pages.
    #[arg(long, env = "MINITWIT_WEB_ADDR", default_value = "127.0.0.1:5000")]
    pub web_addr: SocketAddr,

    /// The secret that signs session cookies (at least 32 characters). Every replica needs the
    /// same one. Without it (and without MINITWIT_SESSION_KEY_FILE) a random key is generated
    /// once and kept in the database, which every replica then shares.
    #[arg(long, env = "MINITWIT_SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,

    /// A file holding the session-signing secret.
    #[arg(
        long,
        env = "MINITWIT_SESSION_KEY_FILE",
        conflicts_with = "session_key"
    )]
    pub session_key_file: Option<PathBuf>,

    /// Where avatars come from: `gravatar` (the original's, which sends Gravatar the md5 of
    /// each shown user's email) or `local` (identicons drawn by this server from the same
    /// hash, for deployments without outside access or that keep those hashes to themselves).
    #[arg(long, env = "MINITWIT_AVATARS", default_value = "gravatar", value_enum)]
    pub avatars: AvatarSource,

    /// Whom users may send private messages to: `connected` (someone they follow or who
    /// follows them) or `anyone`. A user's blocks apply either way.
    #[arg(
        long,
        env = "MINITWIT_CHAT_POLICY",
        default_value = "connected",
        value_enum
    )]
    pub chat_policy: ChatPolicySetting,

    /// Sign-in attempts allowed per minute per client address, across replicas (bursts of
    /// this size are allowed). Wrong passwords for one username from one address also cost
    /// a growing wait, after three. The simulator API is never limited.
    #[arg(long, env = "MINITWIT_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    pub login_attempts_per_minute: u32,

    /// Browser registrations allowed per hour per client address, across replicas (bursts of
    /// this size are allowed). The simulator API is never limited.
    #[arg(long, env = "MINITWIT_REGISTRATIONS_PER_HOUR", default_value_t = 20)]
    pub registrations_per_hour: u32,

    /// Live streams (open timeline pages, and the chat's stream of each signed-in page) a
    /// client address may hold open at once on this replica; past it the answer is 429.
    /// Several people behind one address (an office, a phone network) share it.
    #[arg(long, env = "MINITWIT_LIVE_STREAMS_PER_ADDRESS", default_value_t = 32)]
    pub live_streams_per_address: usize,

    /// Live streams a signed-in user may hold open at once on this replica, from any
    /// address: about two per open tab.
    #[arg(long, env = "MINITWIT_LIVE_STREAMS_PER_USER", default_value_t = 16)]
    pub live_streams_per_user: usize,

    /// The request header holding the client's address, when a reverse proxy in front sets it
    /// (e.g. `x-real-ip`). Without it the connection's peer address is used. Only set it
    /// behind a proxy that overwrites the header, or clients could choose their own address.
    #[arg(long, env = "MINITWIT_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,

    /// The reverse proxies in front of the pages, as addresses or networks separated by
    /// commas (`10.0.0.0/8,192.0.2.7`): only connections from them may name the client's
    /// address (`MINITWIT_CLIENT_IP_HEADER`) or say the browser used TLS
    /// (`X-Forwarded-Proto`), which marks session cookies `Secure`.
    #[arg(
        long,
        env = "MINITWIT_TRUSTED_PROXIES",
        default_value = "127.0.0.1,::1",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// The user name the simulator authenticates with.
    #[arg(long, env = "MINITWIT_SIMULATOR_USER", default_value = "simulator")]
    pub simulator_user: String,

    /// The password the simulator authenticates with. The default is the course's, which is
    /// published: a server left on it warns at start.
    #[arg(
        long,
        env = "MINITWIT_SIMULATOR_PASSWORD",
        default_value = COURSE_SIMULATOR_PASSWORD,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub simulator_password: String,

    /// A file holding the simulator's password (overrides MINITWIT_SIMULATOR_PASSWORD).
    #[arg(long, env = "MINITWIT_SIMULATOR_PASSWORD_FILE")]
    pub simulator_password_file: Option<PathBuf>,

    /// How long a write waits for the views to include it before answering anyway, in
    /// milliseconds. Keep it under the simulator's 300 ms timeout.
    #[arg(
        long,
        env = "MINITWIT_READ_YOUR_WRITES_TIMEOUT_MS",
        default_value_t = 200
    )]
    pub read_your_writes_timeout_ms: u64,

    /// The largest request body accepted, in bytes; larger ones are answered 413. The
    /// largest valid body (a registration with every field at its length limit) takes
    /// under 9 KiB.
    #[arg(long, env = "MINITWIT_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// How long a client may take to send a request's headers, and then its body, in
    /// milliseconds. Slower clients are disconnected (headers) or answered 408 (body), so
    /// that a slowloris cannot hold connections. Also how long a keep-alive connection may
    /// stay idle.
    #[arg(long, env = "MINITWIT_CLIENT_TIMEOUT_MS", default_value_t = 10_000)]
    pub client_timeout_ms: u64,

    /// The most messages one request may list, whatever its `no` says.
    #[arg(long, env = "MINITWIT_MAX_MESSAGES", default_value_t = 10_000)]
    pub max_messages: i64,

    /// How many times a command that lost an optimistic-concurrency race is retried.
    #[arg(long, env = "MINITWIT_COMMAND_RETRIES", default_value_t = 5)]
    pub command_retries: u32,

    /// How many events the aggregate states kept between commands may hold, per aggregate
    /// type (users, messages, conversations). A command on a kept state reads only what it
    /// missed; past this, the least used states are dropped and read whole when next needed.
    #[arg(long, env = "MINITWIT_CACHED_EVENTS", default_value_t = 200_000)]
    pub cached_events: u64,

    /// Sign-in password checks computed at once, and apart from them half as many (at least
    /// one) hashes of registrations, so that registrations never hold a sign-in up. Each
    /// argon2id hash holds 19 MiB, so this bounds the memory a burst can take. Defaults to
    /// the number of CPUs.
    #[arg(long, env = "MINITWIT_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<usize>,

    /// Events per projector batch, at most. Live batches are usually smaller (what committed
    /// since the last one); this bounds the batches of a backlog, and stays modest because
    /// a batch's transaction holds back the horizon every projector reads below until it
    /// commits (some 20 ms at 500).
    #[arg(long, env = "MINITWIT_PROJECTOR_BATCH_SIZE", default_value_t = 500)]
    pub projector_batch_size: i64,

    /// How often projectors look for events when no notification arrives, in milliseconds.
    #[arg(long, env = "MINITWIT_PROJECTOR_POLL_MS", default_value_t = 500)]
    pub projector_poll_ms: u64,

    /// A projection whose oldest unapplied event has waited longer than this many seconds is
    /// stalled, and the replica reports itself not ready.
    #[arg(
        long,
        env = "MINITWIT_READY_MAX_PROJECTION_LAG_SECONDS",
        default_value_t = 120
    )]
    pub ready_max_projection_lag_seconds: u64,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Parses a network (`10.0.0.0/8`) or a single address (`192.0.2.7`, taken as its own
/// network), for `MINITWIT_TRUSTED_PROXIES`.
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is neither an IP address nor a network like 10.0.0.0/8"))
}

/// The simulator's password as the course publishes it: what its simulator sends unless told
/// otherwise, and so what anyone on the internet can send too.
pub const COURSE_SIMULATOR_PASSWORD: &str = "super_safe!";

impl Config {
    /// The simulator's password, from its file if one was given.
    pub fn simulator_password(&self) -> anyhow::Result<String> {
        match &self.simulator_password_file {
            Some(path) => read_secret_file(path),
            None => Ok(self.simulator_password.clone()),
        }
    }

    /// The configured session-signing secret, from its file if one was given.
    pub fn session_key(&self) -> anyhow::Result<Option<String>> {
        let key = match &self.session_key_file {
            Some(path) => Some(read_secret_file(path)?),
            None => self.session_key.clone(),
        };
        if let Some(key) = &key {
            anyhow::ensure!(
                key.chars().count() >= MIN_SESSION_KEY_CHARS,
                "the session key must be at least {MIN_SESSION_KEY_CHARS} characters long"
            );
        }
        Ok(key)
    }

    /// How long a client may take to send headers, or a body.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }

    /// The read-your-writes wait bound.
    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_course_conventions() {
        let config = Config::try_parse_from(["minitwit"]).unwrap();
        assert_eq!(config.api_addr.port(), 5001);
        assert_eq!(config.web_addr.port(), 5000);
        assert_eq!(config.avatars, AvatarSource::Gravatar);
        assert_eq!(config.simulator_user, "simulator");
        assert_eq!(config.database.data_dir, PathBuf::from(".minitwit"));
        assert_eq!(config.max_messages, 10_000);
        assert_eq!(config.chat_policy, ChatPolicySetting::Connected);
    }

    #[test]
    fn secrets_are_read_from_files_without_their_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("minitwit-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret \\\"'{<\n").unwrap();
        let config = Config::try_parse_from([
            "minitwit",
            "--simulator-password-file",
            file.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(config.simulator_password().unwrap(), "s3cret \\\"'{<");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn trusted_proxies_are_networks_or_single_addresses_and_nonsense_is_refused() {
        assert_eq!(
            parse_network("192.0.2.7").unwrap(),
            "192.0.2.7/32".parse::<ipnet::IpNet>().unwrap()
        );
        assert!(parse_network(" 172.16.0.0/12 ").is_ok());
        assert!(parse_network("fd00::/8").is_ok());
        let err = parse_network("proxy.example").unwrap_err();
        assert!(err.contains("proxy.example"), "{err}");
        let config =
            Config::try_parse_from(["minitwit", "--trusted-proxies", "10.0.0.0/8,192.0.2.7"])
                .unwrap();
        assert_eq!(config.trusted_proxies.len(), 2);
        assert!(Config::try_parse_from(["minitwit", "--trusted-proxies", "nope"]).is_err());
    }

    #[test]
    fn a_short_session_key_is_refused() {
        let short = Config::try_parse_from(["minitwit", "--session-key", "too short"]).unwrap();
        let err = short.session_key().unwrap_err().to_string();
        assert!(err.contains("at least 32 characters"), "{err}");
        let long = "k".repeat(32);
        let config = Config::try_parse_from(["minitwit", "--session-key", &long]).unwrap();
        assert_eq!(config.session_key().unwrap(), Some(long));
    }
}

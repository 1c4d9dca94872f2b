//! A private PostgreSQL cluster run from the machine's installed PostgreSQL binaries.
//!
//! When MiniTwit is given no `DATABASE_URL` it runs its own cluster in a data directory
//! (`.minitwit/postgres` by default) and keeps it across restarts; the test suite uses the same
//! code for a throw-away cluster. This module owns finding the binaries, `initdb`, starting and
//! stopping the server, and creating the application database. Nothing is downloaded: the
//! server binaries of an installed PostgreSQL (Debian's `postgresql` package) are used.
//!
//! Key decisions:
//! - **Unix socket only** (`listen_addresses = ''`). No TCP port means no clash with another
//!   PostgreSQL on 5432, nor between clusters of parallel test runs, and nobody on the network
//!   can reach a cluster that uses `trust` authentication. The socket lives in the data directory
//!   (mode 0700) or, when that path would exceed the ~100-byte limit of a socket path, in a
//!   0700 directory under the temp dir named after a hash of the data directory, so only the
//!   cluster's owner (and root) can connect.
//! - **An unprivileged user when we are root.** PostgreSQL refuses to run as root, and our
//!   machines (developers' and CI's) run everything as root. Then `initdb`/`pg_ctl`/`postgres`
//!   run as the `postgres` system user (else `nobody`): the data directory is chowned to it and
//!   the ancestors it must traverse get the search bit. As any other user, everything runs as
//!   that user, unchanged.
//! - **An exclusive file lock** (`postgres.lock` beside the data directory) held during
//!   init/start/stop. Several processes (test binaries running at once, two server replicas, an
//!   admin tool) may start the same cluster simultaneously; the lock makes exactly one of them
//!   run `initdb`/`pg_ctl start` and lets the others attach to the running server afterwards.
//! - **The server outlives the process.** `pg_ctl` detaches the postmaster; dropping an
//!   [`EmbeddedPostgres`] leaves it running, so a killed MiniTwit loses nothing and the next
//!   start simply attaches. [`EmbeddedPostgres::stop`] stops it only if this process started it;
//!   [`EmbeddedPostgres::crash`] stops it abruptly, for tests of database outages.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{chown, DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Uid, User};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{Connection, PgConnection};
use tokio::process::Command;

/// The cluster's superuser, created by `initdb`; the application connects as it.
const SUPERUSER: &str = "minitwit";
/// With no TCP listener the port is only the suffix of the socket file name (`.s.PGSQL.5432`).
const PORT: u16 = 5432;
/// Socket paths must fit `sockaddr_un.sun_path` (108 bytes on Linux); keep a margin.
const MAX_SOCKET_PATH: usize = 100;
/// Enough for the test suite, which runs many databases in parallel on one cluster.
const MAX_CONNECTIONS: u32 = 200;
/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// How long a server that `pg_ctl status` reports running may take to accept connections.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of the server log a start failure quotes.
const LOG_TAIL_LINES: usize = 20;
/// Our settings, rewritten on every start and included from `postgresql.conf`.
const SETTINGS_FILE: &str = "minitwit.conf";
/// Environment variable naming the folder of the PostgreSQL server binaries.
const BIN_DIR_ENV: &str = "MINITWIT_PG_BIN";
/// Where Debian/Ubuntu install one `<major>/bin` folder per PostgreSQL version.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// Where and how to run the cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedPostgresOptions {
    /// The cluster's data directory (the server uses `.minitwit/postgres`). Its parent also receives
    /// `postgres.log` and `postgres.lock`, so it should belong to this one cluster.
    pub data_dir: PathBuf,
    /// Trade durability for speed (`fsync`, `synchronous_commit` and `full_page_writes` off):
    /// for throw-away test clusters only, where a crash may lose or corrupt data.
    pub fast_unsafe: bool,
}

/// What can go wrong running the embedded cluster. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPostgresError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install PostgreSQL \
         (Debian/Ubuntu: `apt-get install postgresql`), or set MINITWIT_PG_BIN to the folder that \
         holds them, or give MiniTwit a DATABASE_URL"
    )]
    BinariesNotFound,
    /// `MINITWIT_PG_BIN` names a folder without `initdb`.
    #[error(
        "MINITWIT_PG_BIN={} does not contain `initdb`: point it at the folder of the PostgreSQL \
         server binaries (e.g. /usr/lib/postgresql/15/bin)",
        .0.display()
    )]
    InvalidBinDir(PathBuf),
    /// Running as root without a user to run PostgreSQL as.
    #[error(
        "running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL \
         as (it refuses to run as root): create one, or run MiniTwit as an ordinary user"
    )]
    NoUnprivilegedUser,
    /// Looking up a user in the user database failed.
    #[error("could not look up user `{name}`: {source}")]
    UserLookup {
        /// The user looked up.
        name: &'static str,
        /// Why it failed.
        source: nix::Error,
    },
    /// A file system operation failed.
    #[error("could not {action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// A PostgreSQL program could not be run at all.
    #[error("could not run {}: {source}", .program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why it could not be run.
        source: io::Error,
    },
    /// `initdb` failed.
    #[error(
        "initdb failed for {} ({status}); if the directory holds a half-made cluster, remove it \
         and retry:\n{stderr}",
        .data_dir.display()
    )]
    InitdbFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// initdb's exit status.
        status: ExitStatus,
        /// What initdb printed on stderr.
        stderr: String,
    },
    /// The server did not start.
    #[error(
        "PostgreSQL in {} did not start ({status}): {pg_ctl_stderr}\nlast lines of {}:\n{log_tail}",
        .data_dir.display(),
        .log_path.display()
    )]
    StartFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// pg_ctl's exit status.
        status: ExitStatus,
        /// What pg_ctl printed on stderr.
        pg_ctl_stderr: String,
        /// The server log.
        log_path: PathBuf,
        /// Its last lines, where the reason usually is.
        log_tail: String,
    },
    /// `pg_ctl status` or `pg_ctl stop` failed.
    #[error("pg_ctl {command} failed for {} ({status}): {stderr}", .data_dir.display())]
    PgCtlFailed {
        /// The pg_ctl command (`status`, `stop`).
        command: &'static str,
        /// The data directory.
        data_dir: PathBuf,
        /// pg_ctl's exit status.
        status: ExitStatus,
        /// What pg_ctl printed on stderr.
        stderr: String,
    },
    /// `pg_ctl status` says a server runs, but it never accepted a connection.
    #[error(
        "pg_ctl reports PostgreSQL running in {} (postmaster.pid), but it did not accept \
         connections on {} within {}s: {source}. If that server was killed, check with `ps` that \
         no postgres process of it remains, then remove postmaster.pid",
        .data_dir.display(),
        .socket_dir.display(),
        ATTACH_TIMEOUT.as_secs()
    )]
    NotResponding {
        /// The data directory.
        data_dir: PathBuf,
        /// Where its socket should be.
        socket_dir: PathBuf,
        /// The last connection error.
        source: sqlx::Error,
    },
    /// Talking to the cluster about a database failed.
    #[error("could not ensure database `{database}` on the embedded PostgreSQL: {source}")]
    Database {
        /// The database concerned.
        database: String,
        /// The driver's error.
        source: sqlx::Error,
    },
}

type Result<T, E = EmbeddedPostgresError> = std::result::Result<T, E>;

/// A running private PostgreSQL cluster, started by this process or attached to.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    cluster: Cluster,
    started_here: bool,
}

impl EmbeddedPostgres {
    /// Initialise (first time) and start the cluster, or attach to it if already running.
    pub async fn start(options: EmbeddedPostgresOptions) -> Result<Self> {
        let cluster = Cluster::locate(&options.data_dir).await?;
        let _lock = cluster.lock().await?;
        cluster.prepare_filesystem()?;
        if !cluster.is_initialised() {
            cluster.initdb(options.fast_unsafe).await?;
        }
        let started_here = cluster.start_or_attach(options.fast_unsafe).await?;
        Ok(Self {
            cluster,
            started_here,
        })
    }

    /// Connection options for `database` on this cluster (unix socket, user `minitwit`).
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        self.cluster.connect_options(database)
    }

    /// Create `database` if it does not exist.
    pub async fn ensure_database(&self, database: &str) -> Result<()> {
        let fail = |source| EmbeddedPostgresError::Database {
            database: database.to_owned(),
            source,
        };
        let mut conn = PgConnection::connect_with(&self.connect_options("postgres"))
            .await
            .map_err(fail)?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut conn)
                .await
                .map_err(fail)?;
        if !exists {
            let create = format!("CREATE DATABASE {}", quote_identifier(database));
            match sqlx::raw_sql(&create).execute(&mut conn).await {
                Ok(_) => tracing::info!(database, "created database"),
                // Another process created it between our check and our CREATE.
                Err(err) if is_duplicate_database(&err) => {
                    tracing::debug!(database, "database created concurrently by someone else");
                }
                Err(err) => return Err(fail(err)),
            }
        }
        conn.close().await.map_err(fail)
    }

    /// The folder of the PostgreSQL programs this cluster runs on (for tools of the same
    /// installation, such as `pgbench`).
    pub fn bin_dir(&self) -> &Path {
        &self.cluster.bin_dir
    }

    /// Whether this process started the cluster (as opposed to attaching to a running one).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Stop the cluster (`pg_ctl stop -m fast`) if this process started it; otherwise do nothing.
    pub async fn stop(self) -> Result<()> {
        if self.started_here {
            self.cluster.stop(StopMode::Fast).await
        } else {
            tracing::debug!(
                data_dir = %self.cluster.data_dir.display(),
                "leaving PostgreSQL running: another process started it"
            );
            Ok(())
        }
    }

    /// Stop the cluster the way a crash would (`pg_ctl stop -m immediate`: every server
    /// process quits at once, no checkpoint; the next start recovers from the WAL), whoever
    /// started it. For fault tests.
    pub async fn crash(self) -> Result<()> {
        self.cluster.stop(StopMode::Immediate).await
    }
}

/// How `pg_ctl stop` stops a server.
#[derive(Debug, Clone, Copy)]
enum StopMode {
    /// Disconnect clients, then shut down with a checkpoint.
    Fast,
    /// Quit at once, as a crash would.
    Immediate,
}

impl StopMode {
    fn pg_ctl_mode(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// Stop whatever cluster runs in `data_dir` (used by scripts/tests to clean up).
pub async fn stop_cluster(data_dir: &Path) -> Result<()> {
    if !data_dir.join("PG_VERSION").is_file() {
        tracing::debug!(data_dir = %data_dir.display(), "no PostgreSQL cluster to stop");
        return Ok(());
    }
    Cluster::locate(data_dir).await?.stop(StopMode::Fast).await
}

/// The unprivileged user PostgreSQL runs as when we are root.
#[derive(Debug)]
struct RunAs {
    name: &'static str,
    uid: u32,
    gid: u32,
}

/// Everything needed to operate one cluster's data directory.
#[derive(Debug)]
struct Cluster {
    /// Canonical, so that every process derives the same socket directory from it.
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    /// `None`: run the PostgreSQL programs as ourselves.
    run_as: Option<RunAs>,
}

impl Cluster {
    /// Resolve the directories, binaries and user for `data_dir`, creating the directory.
    async fn locate(data_dir: &Path) -> Result<Self> {
        let parent = data_dir
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
        // 0700 from the start: initdb would tighten it anyway, and PostgreSQL insists on it.
        match DirBuilder::new().mode(0o700).create(data_dir) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_error("create directory", data_dir)(err));
            }
            _ => {}
        }
        let data_dir = fs::canonicalize(data_dir).map_err(io_error("resolve", data_dir))?;
        let socket_dir = socket_dir_for(&data_dir, &std::env::temp_dir());
        let bin_dir = find_bin_dir(&BinSearch::from_environment().await)?;
        let run_as = unprivileged_user()?;
        tracing::debug!(
            data_dir = %data_dir.display(),
            socket_dir = %socket_dir.display(),
            bin_dir = %bin_dir.display(),
            run_as = run_as.as_ref().map(|user| user.name),
            "located PostgreSQL cluster"
        );
        Ok(Self {
            data_dir,
            socket_dir,
            bin_dir,
            run_as,
        })
    }

    /// The folder holding the data directory, its log and its lock file.
    fn parent(&self) -> &Path {
        // The data directory is canonical and never `/` (we created it inside its parent).
        self.data_dir.parent().unwrap_or(Path::new("/"))
    }

    fn log_path(&self) -> PathBuf {
        self.parent().join("postgres.log")
    }

    /// Take the exclusive lock that serialises init/start/stop across processes; it is
    /// released when the returned guard is dropped.
    async fn lock(&self) -> Result<Flock<File>> {
        let path = self.parent().join("postgres.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("open lock file", &path))?;
        tracing::debug!(lock = %path.display(), "waiting for cluster lock");
        // flock blocks, possibly for as long as another process's start takes: keep it off
        // the async threads (a current-thread runtime would otherwise deadlock on itself).
        let locked = tokio::task::spawn_blocking(move || {
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io::Error::from(errno))
        })
        .await
        .map_err(io::Error::other)
        .and_then(|locked| locked)
        .map_err(io_error("lock", &path))?;
        Ok(locked)
    }

    /// Make the directories usable by the user PostgreSQL runs as.
    fn prepare_filesystem(&self) -> Result<()> {
        if self.socket_dir != self.data_dir {
            match DirBuilder::new().mode(0o700).create(&self.socket_dir) {
                Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io_error("create socket directory", &self.socket_dir)(err));
                }
                _ => {}
            }
        }
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        // Only a fresh data directory is ours to hand over; an initialised one keeps its owner
        // (PostgreSQL names a wrong one clearly).
        if !self.is_initialised() {
            self.give_to_user(&self.data_dir)?;
        }
        if self.socket_dir != self.data_dir {
            self.give_to_user(&self.socket_dir)?;
        }
        let log = self.log_path();
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_error("create log file", &log))?;
        self.give_to_user(&log)?;
        grant_search(
            self.data_dir
                .ancestors()
                .skip(1)
                .chain(self.socket_dir.ancestors().skip(1)),
            user,
        )
    }

    fn give_to_user(&self, path: &Path) -> Result<()> {
        match &self.run_as {
            Some(user) => {
                chown(path, Some(user.uid), Some(user.gid)).map_err(io_error("chown", path))
            }
            None => Ok(()),
        }
    }

    fn is_initialised(&self) -> bool {
        self.data_dir.join("PG_VERSION").is_file()
    }

    async fn initdb(&self, fast_unsafe: bool) -> Result<()> {
        tracing::info!(data_dir = %self.data_dir.display(), "initialising PostgreSQL cluster");
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
            // The C locale exists on every machine (C.UTF-8 may not) and sorts by code point
            // just like C.UTF-8; MiniTwit needs no language-specific collation.
            .arg("--no-locale");
        if fast_unsafe {
            cmd.arg("--no-sync");
        }
        let output = run(cmd).await?;
        if !output.status.success() {
            return Err(EmbeddedPostgresError::InitdbFailed {
                data_dir: self.data_dir.clone(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        tracing::debug!(stdout = %String::from_utf8_lossy(&output.stdout), "initdb done");
        Ok(())
    }

    /// Write our settings file and make sure `postgresql.conf` includes it. Rewritten on every
    /// start so that a moved data directory gets its new socket directory and `fast_unsafe`
    /// can be switched either way.
    fn write_settings(&self, fast_unsafe: bool) -> Result<()> {
        let socket_dir = self.socket_dir.to_str().ok_or_else(|| {
            io_error("use as socket directory", &self.socket_dir)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path is not valid UTF-8",
            ))
        })?;
        let durable = if fast_unsafe { "off" } else { "on" };
        let settings = format!(
            "# Written by MiniTwit on every start of this cluster: edits here are lost.\n\
             listen_addresses = ''\n\
             port = {PORT}\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0700\n\
             max_connections = {MAX_CONNECTIONS}\n\
             fsync = {durable}\n\
             synchronous_commit = {durable}\n\
             full_page_writes = {durable}\n\
             # Projectors read below the oldest open writing transaction of the whole cluster:\n\
             # a session forgotten inside a transaction would stall every view.\n\
             idle_in_transaction_session_timeout = '60s'\n",
            conf_string(socket_dir),
        );
        let path = self.data_dir.join(SETTINGS_FILE);
        fs::write(&path, settings).map_err(io_error("write", &path))?;
        self.give_to_user(&path)?;

        // Checked on every start rather than once after initdb, so that a crash between the
        // two cannot leave a cluster listening on TCP with the defaults.
        let include = format!("include = '{SETTINGS_FILE}'");
        let conf = self.data_dir.join("postgresql.conf");
        let current = fs::read_to_string(&conf).map_err(io_error("read", &conf))?;
        if !current.lines().any(|line| line.trim() == include) {
            OpenOptions::new()
                .append(true)
                .open(&conf)
                .and_then(|mut file| writeln!(file, "\n{include}"))
                .map_err(io_error("append to", &conf))?;
        }
        Ok(())
    }

    /// Start the server unless it runs; returns whether we started it. Call with the lock held.
    async fn start_or_attach(&self, fast_unsafe: bool) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + ATTACH_TIMEOUT;
        loop {
            if !self.is_running().await? {
                self.write_settings(fast_unsafe)?;
                self.start_server().await?;
                return Ok(true);
            }
            // pg_ctl trusts postmaster.pid, which names a live process also while a server
            // started outside our lock is still starting up, or while a killed one is a zombie
            // not yet reaped (as happens under a container's init): wait for either to settle.
            let probe = PgConnection::connect_with(&self.connect_options("postgres")).await;
            match probe {
                Ok(conn) => {
                    // Closing is a courtesy to the server; the probe already succeeded.
                    let _ = conn.close().await;
                    tracing::info!(data_dir = %self.data_dir.display(), "attached to running PostgreSQL");
                    return Ok(false);
                }
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(EmbeddedPostgresError::NotResponding {
                        data_dir: self.data_dir.clone(),
                        socket_dir: self.socket_dir.clone(),
                        source,
                    });
                }
                Err(err) => {
                    tracing::debug!(%err, "PostgreSQL reported running but not accepting connections yet");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    fn connect_options(&self, database: &str) -> PgConnectOptions {
        // Everything is set explicitly so that PG* variables in the environment (PGPORT,
        // PGSSLMODE, ...) meant for some other server cannot redirect or break the connection.
        PgConnectOptions::new_without_pgpass()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
            .ssl_mode(PgSslMode::Disable)
    }

    async fn is_running(&self) -> Result<bool> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(&self.data_dir);
        let output = run(cmd).await?;
        // pg_ctl status: 0 = running, 3 = not running (including a stale postmaster.pid).
        match output.status.code() {
            Some(0) => Ok(true),
            Some(3) => Ok(false),
            _ => Err(pg_ctl_failed("status", &self.data_dir, &output)),
        }
    }

    async fn start_server(&self) -> Result<()> {
        tracing::info!(data_dir = %self.data_dir.display(), "starting PostgreSQL");
        let log_path = self.log_path();
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log_path)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "start"]);
        let output = run(cmd).await?;
        if !output.status.success() {
            return Err(EmbeddedPostgresError::StartFailed {
                data_dir: self.data_dir.clone(),
                status: output.status,
                pg_ctl_stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                log_tail: log_tail(&log_path, LOG_TAIL_LINES),
                log_path,
            });
        }
        tracing::info!(
            data_dir = %self.data_dir.display(),
            socket_dir = %self.socket_dir.display(),
            "PostgreSQL started"
        );
        Ok(())
    }

    async fn stop(&self, mode: StopMode) -> Result<()> {
        // Under the lock, so that nobody attaches to a server that is shutting down.
        let _lock = self.lock().await?;
        if !self.is_running().await? {
            tracing::debug!(data_dir = %self.data_dir.display(), "PostgreSQL already stopped");
            return Ok(());
        }
        tracing::info!(data_dir = %self.data_dir.display(), ?mode, "stopping PostgreSQL");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-m",
            mode.pg_ctl_mode(),
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
            "stop",
        ]);
        let output = run(cmd).await?;
        if !output.status.success() {
            return Err(pg_ctl_failed("stop", &self.data_dir, &output));
        }
        tracing::info!(data_dir = %self.data_dir.display(), "PostgreSQL stopped");
        Ok(())
    }

    /// A command for one of the PostgreSQL programs, run as the right user.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // Our working directory may be one the PostgreSQL user cannot enter.
        cmd.current_dir(&self.data_dir).stdin(Stdio::null());
        if let Some(user) = &self.run_as {
            // std drops root's supplementary groups too when a uid is set.
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }
}

async fn run(mut cmd: Command) -> Result<Output> {
    let program = PathBuf::from(cmd.as_std().get_program());
    tracing::debug!(command = ?cmd.as_std(), "running");
    cmd.output()
        .await
        .map_err(|source| EmbeddedPostgresError::Spawn { program, source })
}

fn pg_ctl_failed(command: &'static str, data_dir: &Path, output: &Output) -> EmbeddedPostgresError {
    EmbeddedPostgresError::PgCtlFailed {
        command,
        data_dir: data_dir.to_owned(),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EmbeddedPostgresError {
    let path = path.to_owned();
    move |source| EmbeddedPostgresError::Io {
        action,
        path,
        source,
    }
}

/// The user to run PostgreSQL as: `None` (ourselves) unless we are root.
fn unprivileged_user() -> Result<Option<RunAs>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        let found = User::from_name(name)
            .map_err(|source| EmbeddedPostgresError::UserLookup { name, source })?;
        if let Some(user) = found {
            return Ok(Some(RunAs {
                name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }));
        }
    }
    Err(EmbeddedPostgresError::NoUnprivilegedUser)
}

/// Give `user` search (x) permission on those of `dirs` it cannot traverse, by adding only the
/// "others" search bit: the repository may be cloned anywhere, e.g. under root's 0700 home.
fn grant_search<'a>(dirs: impl Iterator<Item = &'a Path>, user: &RunAs) -> Result<()> {
    let mut granted = Vec::new();
    for dir in dirs.collect::<BTreeSet<_>>() {
        let meta = fs::metadata(dir).map_err(io_error("inspect", dir))?;
        if can_search(&meta, user) {
            continue;
        }
        let mut permissions = meta.permissions();
        permissions.set_mode(meta.mode() | 0o001);
        fs::set_permissions(dir, permissions).map_err(io_error("add o+x to", dir))?;
        granted.push(dir.display().to_string());
    }
    if !granted.is_empty() {
        tracing::warn!(
            user = user.name,
            directories = ?granted,
            "added the search (o+x) permission to directories so that PostgreSQL can reach its data"
        );
    }
    Ok(())
}

/// Whether `user` (with no supplementary groups: they are dropped) may traverse a directory.
fn can_search(meta: &fs::Metadata, user: &RunAs) -> bool {
    let mode = meta.mode();
    // The permission classes are exclusive: an owner is judged by the owner bits alone.
    if meta.uid() == user.uid {
        mode & 0o100 != 0
    } else if meta.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// The socket directory of the cluster in `data_dir` (canonical): the data directory itself,
/// unless the socket path would be too long, then a folder under `temp_dir` named after a hash
/// of the data directory, so that every process finds the same one.
fn socket_dir_for(data_dir: &Path, temp_dir: &Path) -> PathBuf {
    let socket = data_dir.join(format!(".s.PGSQL.{PORT}"));
    if socket.as_os_str().len() < MAX_SOCKET_PATH {
        data_dir.to_owned()
    } else {
        temp_dir.join(format!(
            "minitwit-pg-{:016x}",
            fnv1a(data_dir.as_os_str().as_encoded_bytes())
        ))
    }
}

/// FNV-1a: unlike std's `DefaultHasher` it is fixed, so binaries built by different Rust
/// versions agree on the socket directory.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where to look for the PostgreSQL server binaries, in order of preference.
#[derive(Debug, Default)]
struct BinSearch {
    /// `MINITWIT_PG_BIN`: when set, the only candidate.
    explicit: Option<PathBuf>,
    /// What `pg_config --bindir` says, if pg_config is on PATH.
    pg_config_bindir: Option<PathBuf>,
    /// Folders holding one `<version>/bin` per installed version; the highest version wins.
    versioned_roots: Vec<PathBuf>,
    /// The value of PATH, searched for `initdb` last.
    path: Option<OsString>,
}

impl BinSearch {
    async fn from_environment() -> Self {
        let explicit = std::env::var_os(BIN_DIR_ENV).map(PathBuf::from);
        let pg_config_bindir = if explicit.is_none() {
            pg_config_bindir().await
        } else {
            None
        };
        Self {
            explicit,
            pg_config_bindir,
            versioned_roots: vec![PathBuf::from(VERSIONED_ROOT)],
            path: std::env::var_os("PATH"),
        }
    }
}

async fn pg_config_bindir() -> Option<PathBuf> {
    // pg_config may be missing, or belong to a client-only install (libpq-dev): either way
    // the other places are tried.
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .await
        .inspect_err(|err| tracing::debug!(%err, "pg_config not usable"))
        .ok()?;
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

fn find_bin_dir(search: &BinSearch) -> Result<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = &search.explicit {
        // An explicit choice that is wrong is an error, not a reason to silently use another.
        return if has_initdb(dir) {
            Ok(dir.clone())
        } else {
            Err(EmbeddedPostgresError::InvalidBinDir(dir.clone()))
        };
    }
    if let Some(dir) = search
        .pg_config_bindir
        .as_deref()
        .filter(|dir| has_initdb(dir))
    {
        return Ok(dir.to_owned());
    }
    let highest = search
        .versioned_roots
        .iter()
        .filter_map(|root| fs::read_dir(root).ok())
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = parse_version(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b));
    if let Some((_, dir)) = highest {
        return Ok(dir);
    }
    search
        .path
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_initdb(dir))
        .ok_or(EmbeddedPostgresError::BinariesNotFound)
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`: compared numerically, so 10 beats 9.6.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// A string literal for `postgresql.conf`, where `'` is doubled and `\` escapes.
fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// An SQL identifier, quoted so that any database name is taken literally.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn is_duplicate_database(err: &sqlx::Error) -> bool {
    // 42P04 duplicate_database; two simultaneous CREATE DATABASE can instead collide on
    // pg_database's unique name index (23505 unique_violation).
    err.as_database_error()
        .and_then(|err| err.code())
        .is_some_and(|code| code == "42P04" || code == "23505")
}

/// The last `lines` lines of the server log, for error messages.
fn log_tail(path: &Path, lines: usize) -> String {
    // The log grows across restarts: read only its end.
    const WINDOW: u64 = 64 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(could not read the log: {err})"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use anyhow::{ensure, Context};

    use super::*;

    /// A fresh directory under the temp dir (not under /root: see `grant_search`).
    fn scratch_dir(tag: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        std::env::temp_dir().join(format!(
            "minitwit-pg-test-{tag}-{}-{nanos}",
            std::process::id()
        ))
    }

    async fn query_i32(pg: &EmbeddedPostgres, database: &str, sql: &str) -> anyhow::Result<i32> {
        let mut conn = PgConnection::connect_with(&pg.connect_options(database)).await?;
        let value = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(value)
    }

    /// Always stops the cluster and removes the directory, then reports the outcome.
    async fn clean_up(root: &Path, data_dir: &Path, outcome: anyhow::Result<()>) {
        let stopped = stop_cluster(data_dir).await;
        let removed = fs::remove_dir_all(root);
        outcome.unwrap();
        stopped.unwrap();
        removed.unwrap();
    }

    #[tokio::test]
    async fn lifecycle_attach_and_persistence() {
        let root = scratch_dir("lifecycle");
        let options = EmbeddedPostgresOptions {
            data_dir: root.join("pgdata"),
            fast_unsafe: true,
        };
        let outcome = lifecycle(&options).await;
        clean_up(&root, &options.data_dir, outcome).await;
    }

    async fn lifecycle(options: &EmbeddedPostgresOptions) -> anyhow::Result<()> {
        // Two simultaneous starts on a fresh directory: the lock lets one init and start, the
        // other attach.
        let (a, b) = tokio::join!(
            EmbeddedPostgres::start(options.clone()),
            EmbeddedPostgres::start(options.clone())
        );
        let (a, b) = (a?, b?);
        ensure!(
            a.started_here() != b.started_here(),
            "exactly one start should have started the server"
        );
        let (owner, attached) = if a.started_here() { (a, b) } else { (b, a) };

        owner.ensure_database("app").await?;
        attached.ensure_database("app").await?; // idempotent
        ensure!(query_i32(&attached, "app", "SELECT 1").await? == 1);

        let mut conn = PgConnection::connect_with(&owner.connect_options("app")).await?;
        sqlx::raw_sql("CREATE TABLE kept (v integer); INSERT INTO kept VALUES (42)")
            .execute(&mut conn)
            .await?;
        conn.close().await?;

        // Stopping an attached handle leaves the server to its owner.
        attached.stop().await?;
        ensure!(query_i32(&owner, "app", "SELECT 1").await? == 1);
        owner.stop().await?;

        let again = EmbeddedPostgres::start(options.clone()).await?;
        ensure!(
            again.started_here(),
            "the restart should have started the server"
        );
        let kept = query_i32(&again, "app", "SELECT v FROM kept").await;
        again.stop().await?;
        ensure!(kept.context("table survives a restart")? == 42);
        Ok(())
    }

    #[tokio::test]
    async fn long_path_uses_socket_dir_in_temp_and_fixes_traversal() {
        let root = scratch_dir("long");
        // A directory the PostgreSQL user may not enter, as /root is on CI.
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        let options = EmbeddedPostgresOptions {
            data_dir: root.join("d".repeat(100)).join("pgdata"),
            fast_unsafe: true,
        };
        let outcome = long_path(&root, &options).await;
        clean_up(&root, &options.data_dir, outcome).await;
    }

    async fn long_path(root: &Path, options: &EmbeddedPostgresOptions) -> anyhow::Result<()> {
        let pg = EmbeddedPostgres::start(options.clone()).await?;
        let socket_dir = pg.cluster.socket_dir.clone();
        ensure!(socket_dir.starts_with(std::env::temp_dir()));
        ensure!(fs::metadata(&socket_dir)?.mode() & 0o777 == 0o700);
        if pg.cluster.run_as.is_some() {
            ensure!(fs::metadata(root)?.mode() & 0o777 == 0o701, "o+x added");
        }
        ensure!(query_i32(&pg, "postgres", "SELECT 1").await? == 1);
        pg.stop().await?;
        fs::remove_dir_all(&socket_dir)?;
        Ok(())
    }

    #[test]
    fn discovery_prefers_highest_numeric_version() {
        let root = scratch_dir("bins");
        let make = |version: &str, with_initdb: bool| {
            let bin = root.join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            if with_initdb {
                fs::write(bin.join("initdb"), "").unwrap();
            }
        };
        make("9.6", true);
        make("10", true);
        make("15", true);
        make("16", false); // a client-only install
        make("latest", true); // not a version

        let mut search = BinSearch {
            versioned_roots: vec![root.clone()],
            ..BinSearch::default()
        };
        assert_eq!(find_bin_dir(&search).unwrap(), root.join("15/bin"));

        // pg_config beats the version scan, unless its folder lacks initdb.
        search.pg_config_bindir = Some(root.join("10/bin"));
        assert_eq!(find_bin_dir(&search).unwrap(), root.join("10/bin"));
        search.pg_config_bindir = Some(root.join("16/bin"));
        assert_eq!(find_bin_dir(&search).unwrap(), root.join("15/bin"));

        // An explicit folder wins, and a wrong one is an error rather than ignored.
        search.explicit = Some(root.join("9.6/bin"));
        assert_eq!(find_bin_dir(&search).unwrap(), root.join("9.6/bin"));
        search.explicit = Some(root.join("16/bin"));
        assert!(matches!(
            find_bin_dir(&search),
            Err(EmbeddedPostgresError::InvalidBinDir(_))
        ));

        // Nothing anywhere but PATH.
        let empty = BinSearch {
            path: Some(std::env::join_paths([root.join("16/bin"), root.join("10/bin")]).unwrap()),
            ..BinSearch::default()
        };
        assert_eq!(find_bin_dir(&empty).unwrap(), root.join("10/bin"));
        assert!(matches!(
            find_bin_dir(&BinSearch::default()),
            Err(EmbeddedPostgresError::BinariesNotFound)
        ));

        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn short_socket_paths_stay_in_the_data_dir() {
        let temp = Path::new("/tmp");
        assert_eq!(
            socket_dir_for(Path::new("/srv/minitwit/pgdata"), temp),
            Path::new("/srv/minitwit/pgdata")
        );
        let long = PathBuf::from("/srv").join("x".repeat(90));
        let dir = socket_dir_for(&long, temp);
        assert!(dir.starts_with(temp));
        assert_eq!(dir, socket_dir_for(&long, temp), "stable");
    }
}

//! The commands of `minitwit-replay`, what each prints, and its exit status: 0 done, 1 done
//! but something is wrong (views differ, an id was unknown, an error), 130 interrupted.
//! Results go to stdout; progress and logs to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use database::DatabaseConfig;
use domain::Moderation;
use projections::{Projection, ProjectorSettings};
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::backup::{backup_every, backup_once, BackupPlan};
use crate::moderation::{Decision, Listing, Outcome};
use crate::people::Forgot;
use crate::rebuild::Rebuilt;
use crate::terminal::printable;
use crate::verify::VerifyReport;

/// Events per committed batch of a rebuild or a verify, unless told otherwise. A batch costs
/// a few set-based statements, so bigger batches are cheaper per event (over a million
/// simulator-shaped events: about 28,000 events/s at 500, 44,000 at 2,000, 48,000 at 5,000,
/// 51,000 at 10,000). But from its first write until it commits, a batch's transaction holds
/// back the horizon that every server's projectors read below, and writes wait for their
/// views meanwhile: 5,000 keeps that to a few tens of milliseconds.
const REBUILD_BATCH_SIZE: i64 = 5000;

/// MiniTwit's administration tool: works on the servers' database while they keep running.
#[derive(Debug, Parser)]
#[command(name = "minitwit-replay", version)]
pub struct Cli {
    #[command(flatten)]
    database: DatabaseConfig,

    /// Log filter for the tool's own diagnostics (RUST_LOG overrides it). sqlx's warnings
    /// about slow statements are left out by default: scanning the whole log is this tool's
    /// job.
    #[arg(
        long,
        env = "MINITWIT_REPLAY_LOG",
        default_value = "warn,sqlx::query=error",
        global = true
    )]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Brings the schema up to date and creates the views a fresh database lacks, as the
    /// owner: what a deployment whose servers connect as the restricted role
    /// `minitwit_server` runs before starting them (every other command migrates too).
    Migrate {
        /// A file holding a password for `minitwit_server`, to give it (so that the servers
        /// can log in with it over password authentication).
        #[arg(long, env = "MINITWIT_SERVER_PASSWORD_FILE")]
        server_password_file: Option<PathBuf>,
        /// A file holding a password for `minitwit_reader`, which may read the event log and
        /// nothing else (Grafana's).
        #[arg(long, env = "MINITWIT_READER_PASSWORD_FILE")]
        reader_password_file: Option<PathBuf>,
    },
    /// Per projection and version: state, checkpoint, lag, last error; the log's size and head.
    Status {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Builds new versions of projections from the log beside the serving ones, then switches
    /// to them atomically and retires the old ones. Resumes an interrupted rebuild.
    Rebuild {
        /// Projections to rebuild (see `status`).
        projections: Vec<String>,
        /// Rebuild every projection.
        #[arg(long, conflicts_with = "projections")]
        all: bool,
        /// Events per committed batch.
        #[arg(long, default_value_t = REBUILD_BATCH_SIZE, value_parser = clap::value_parser!(i64).range(1..))]
        batch_size: i64,
    },
    /// Rebuilds projections into scratch versions and compares them row for row with the
    /// serving ones; exits 1 if any differ.
    Verify {
        /// Projections to verify; all when none is named.
        projections: Vec<String>,
    },
    /// Drops the versions retired longer ago than the grace period.
    Prune {
        /// Seconds a retired version is kept, for servers still moving off it.
        #[arg(long, default_value_t = 60)]
        grace: u64,
    },
    /// Writes the whole event log to FILE (`-`: stdout) as JSON lines, in log order. The
    /// file is readable by its owner only: it holds password hashes and private messages.
    Export { file: PathBuf },
    /// Exports the log into FOLDER as `minitwit-<time>.jsonl` and the data keys beside it as
    /// `minitwit-<time>.keys.jsonl` (readable by their owner only), records the backup for
    /// the servers' metrics, removes forgotten people's keys from the older keys files, and
    /// deletes the backups past the newest KEEP.
    /// With `--every`, again at each interval until stopped (a failure is reported, and the
    /// next one tried at its time).
    Backup {
        folder: PathBuf,
        /// Backups kept, the newest; older ones are deleted.
        #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u32).range(1..))]
        keep: u32,
        /// Seconds between backups; without it, one backup, then exit.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        every: Option<u64>,
    },
    /// Restores an exported log from FILE (`-`: stdin) into an empty event store. A line
    /// over 1 MiB is refused. The personal fields stay unreadable until the keys are
    /// restored too (`import-keys`).
    Import { file: PathBuf },
    /// Writes the data keys to FILE (readable by its owner only): wrapped by the master key,
    /// with the tombstones of everyone forgotten. Exports hold no keys.
    ExportKeys { file: PathBuf },
    /// Restores the data keys of FILE (a backup's keys file, or `export-keys`'s). Never
    /// brings back anyone forgotten, in the file or in the database.
    ImportKeys { file: PathBuf },
    /// Turns an original ITU-MiniTwit SQLite database into events (idempotent).
    ImportLegacy { path: PathBuf },
    /// Lists messages, newest first, flagged ones included.
    Messages {
        /// Only this author's.
        #[arg(long)]
        author: Option<String>,
        /// Only flagged ones.
        #[arg(long)]
        flagged: bool,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forgets a user for good: their data key is deleted, so their email, password hashes,
    /// messages and private messages become unreadable everywhere (in the log, in exports,
    /// on every replica); the views drop them, the account ends and the name stays taken.
    /// Asks for the username again on a terminal; elsewhere needs --yes. Forgetting someone
    /// forgotten finishes anything an interrupted forgetting left, and exits 0.
    Forget {
        username: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Every event of a user, in log order, with its time, request id and type: their own
    /// stream, their messages', and their part of their conversations. Personal fields are
    /// shown only with --reveal (which needs the master key).
    Audit {
        username: String,
        #[arg(long)]
        reveal: bool,
    },
    /// A timeline as it stood at a point in the log, built from the log alone: AT is a log
    /// position or an RFC 3339 time; TIMELINE is `public`, `user:NAME` or `own:NAME`.
    AsOf {
        at: crate::as_of::Point,
        timeline: crate::as_of::Timeline,
        /// Messages shown, the newest.
        #[arg(long, default_value_t = 30)]
        limit: usize,
    },
    /// Flags messages by id: they vanish from every timeline and the API.
    Flag(DecisionArgs),
    /// Unflags messages by id: they are shown again.
    Unflag(DecisionArgs),
}

#[derive(Debug, clap::Args)]
struct DecisionArgs {
    /// Message ids (see `messages`).
    #[arg(required = true)]
    ids: Vec<String>,
    /// Why; recorded with the decision.
    #[arg(long, default_value = "")]
    reason: String,
    /// Who decides; recorded with the decision. Defaults to $USER.
    #[arg(long, env = "USER", default_value = "admin")]
    by: String,
}

/// Runs `cli` to completion.
pub async fn run(cli: Cli) -> ExitCode {
    database::telemetry::init("text", &cli.log);
    let admin = match Admin::connect(&cli.database).await {
        Ok(admin) => admin,
        Err(err) => {
            eprintln!("minitwit-replay: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = execute(&admin, cli.command).await;
    if let Err(err) = admin.close().await {
        eprintln!("minitwit-replay: closing the database: {err:#}");
    }
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("minitwit-replay: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(admin: &Admin, command: Command) -> anyhow::Result<ExitCode> {
    let pool = &admin.pool;
    match command {
        Command::Migrate {
            server_password_file,
            reader_password_file,
        } => {
            projections::maintenance::create_missing_views(pool, &projections::all()).await?;
            let passwords = [
                (database::roles::SERVER_ROLE, server_password_file),
                (database::roles::READER_ROLE, reader_password_file),
            ];
            for (role, file) in passwords {
                if let Some(file) = file {
                    let password = database::settings::read_secret_file(&file)?;
                    database::roles::set_password(pool, role, &password).await?;
                    println!("the role {role} has its password");
                }
            }
            match crate::people::seal_plaintext(admin, None).await {
                Ok(sealed) if sealed.sealed > 0 || sealed.erased > 0 => println!(
                    "personal fields in plain text: {} events sealed, {} fields of forgotten \
                     people erased",
                    sealed.sealed, sealed.erased
                ),
                Ok(_) => {}
                Err(err) if is_missing_master_key(&err) => eprintln!(
                    "warning: some events hold personal fields in plain text; run migrate \
                     with the master key (MINITWIT_MASTER_KEY_FILE) to seal them"
                ),
                Err(err) => return Err(err),
            }
            println!("the schema is up to date and every view exists");
        }
        Command::Status { json } => {
            let status = crate::status::status(pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("{status}");
            }
        }
        Command::Rebuild {
            projections,
            all,
            batch_size,
        } => {
            let chosen = choose(&projections, all)?;
            let cancel = cancel_on_signal();
            // At once: each projection reads only its own events and writes only its own
            // schema, so the rebuilds share nothing but the machine, whose cores the
            // database then uses together.
            let rebuilds = chosen
                .iter()
                .map(|projection| crate::rebuild::rebuild(admin, projection, batch_size, &cancel));
            let mut interrupted = false;
            for rebuilt in futures_util::future::join_all(rebuilds).await {
                interrupted |= matches!(rebuilt?, Rebuilt::Interrupted { .. });
            }
            if interrupted {
                return Ok(ExitCode::from(130));
            }
        }
        Command::Verify { projections } => {
            let chosen = choose(&projections, projections.is_empty())?;
            let mut all_equal = true;
            for projection in chosen {
                eprintln!(
                    "{}: rebuilding into a scratch version to compare",
                    projection.name()
                );
                let comparison = projections::maintenance::verify(
                    pool,
                    &projection,
                    ProjectorSettings {
                        batch_size: REBUILD_BATCH_SIZE,
                        keys: admin.keys.clone(),
                        ..ProjectorSettings::default()
                    },
                )
                .await?;
                all_equal &= comparison.is_equal();
                print!("{}", VerifyReport(&comparison));
            }
            if !all_equal {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Prune { grace } => {
            let dropped = projections::maintenance::prune(pool, Duration::from_secs(grace)).await?;
            for version in &dropped {
                println!("dropped {} version {}", version.projection, version.version);
            }
            println!("{} retired versions dropped", dropped.len());
        }
        Command::Export { file } => {
            let summary = crate::export::export_to(pool, &file).await?;
            // With the log on stdout, nothing else may go there.
            if file.as_os_str() == "-" {
                eprintln!("{summary}");
            } else {
                println!("{summary}");
            }
        }
        Command::Backup {
            folder,
            keep,
            every,
        } => {
            let plan = BackupPlan {
                folder,
                keep: keep as usize,
            };
            match every {
                None => println!("{}", backup_once(pool, &plan).await?),
                Some(seconds) => {
                    let cancel = cancel_on_signal();
                    backup_every(pool, &plan, Duration::from_secs(seconds), &cancel).await;
                }
            }
        }
        Command::Import { file } => println!("{}", crate::export::import_from(pool, &file).await?),
        Command::ExportKeys { file } => {
            println!("exported {}", crate::keys::export_keys(pool, &file).await?);
        }
        Command::ImportKeys { file } => {
            println!("imported {}", crate::keys::import_keys(pool, &file).await?);
        }
        Command::ImportLegacy { path } => {
            println!("{}", crate::legacy::import_legacy(admin, &path).await?)
        }
        Command::Messages {
            author,
            flagged,
            limit,
            json,
        } => {
            let messages =
                crate::moderation::list(admin, author.as_deref(), flagged, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&messages)?);
            } else {
                println!("{}", Listing(&messages));
            }
        }
        Command::Forget { username, yes } => {
            if !yes && !crate::people::confirm_forgetting(&username)? {
                eprintln!("not confirmed; nothing was done");
                return Ok(ExitCode::FAILURE);
            }
            let forgot = crate::people::forget(admin, &username).await?;
            println!("{}: {forgot}", printable(&username));
            if matches!(forgot, Forgot::Unknown) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Audit { username, reveal } => {
            print!("{}", crate::people::audit(admin, &username, reveal).await?);
        }
        Command::AsOf {
            at,
            timeline,
            limit,
        } => {
            let entries = crate::as_of::timeline(admin, at, &timeline, limit).await?;
            print!("{}", crate::as_of::Listing(&entries));
        }
        Command::Flag(args) => return decide(admin, Decision::Flag, args).await,
        Command::Unflag(args) => return decide(admin, Decision::Unflag, args).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide(admin: &Admin, decision: Decision, args: DecisionArgs) -> anyhow::Result<ExitCode> {
    let moderation = Moderation {
        moderator: args.by,
        reason: args.reason,
    };
    let outcomes = crate::moderation::decide(admin, decision, &args.ids, moderation).await?;
    let mut unknown = false;
    for (id, outcome) in &outcomes {
        unknown |= *outcome == Outcome::Unknown;
        println!("{}", outcome.describe(id, decision));
    }
    Ok(if unknown {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether `err` is the keyring's refusal to seal without a master key.
fn is_missing_master_key(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<database::keyring::KeyError>(),
        Some(database::keyring::KeyError::NoMasterKey)
    )
}

/// The projections named (every one with `all`), or an error naming the known ones.
fn choose(names: &[String], all: bool) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    let known = projections::all();
    if all {
        return Ok(known);
    }
    anyhow::ensure!(
        !names.is_empty(),
        "name the projections to rebuild, or give --all"
    );
    names
        .iter()
        .map(|name| {
            known
                .iter()
                .find(|projection| projection.name() == name)
                .cloned()
                .ok_or_else(|| {
                    let names: Vec<&str> = known.iter().map(|p| p.name()).collect();
                    anyhow::anyhow!("no projection {name:?}; there are: {}", names.join(", "))
                })
        })
        .collect()
}

/// Fires on the first SIGINT or SIGTERM, so work stops between batches.
fn cancel_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let fired = cancel.clone();
    tokio::spawn(async move {
        database::shutdown::shutdown_signal().await;
        eprintln!("stopping after the batch in flight");
        fired.cancel();
    });
    cancel
}

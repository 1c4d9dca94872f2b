//! Running the real `minitwit-replay` binary against a test database.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// The tool as a command on `database_url`, logging only errors unless `TEST_LOG` is set.
pub fn command(database_url: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_minitwit-replay"));
    command
        .env_remove("DATABASE_URL_FILE")
        .env("DATABASE_URL", database_url)
        .env(
            "MINITWIT_MASTER_KEY",
            test_support::database::TEST_MASTER_KEY,
        )
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").map_or("error".into(), |_| "info".to_owned()),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs the tool with `args` to completion, returning its output.
pub async fn run(database_url: &str, args: &[&str]) -> Output {
    command(database_url)
        .args(args)
        .output()
        .await
        .expect("running minitwit-replay")
}

/// Runs the tool with `args`, requiring success; returns its stdout.
pub async fn run_ok(database_url: &str, args: &[&str]) -> String {
    let output = run(database_url, args).await;
    assert!(
        output.status.success(),
        "minitwit-replay {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A fresh path for `file` in a directory of its own under Cargo's target tmp dir, grouped by
/// `suite` (the test module).
pub fn scratch_path(suite: &str, file: &str) -> PathBuf {
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(suite)
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&directory).expect("creating a scratch directory");
    directory.join(file)
}

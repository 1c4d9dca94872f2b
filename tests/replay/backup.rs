//! Backups that restore: `backup` taken while writes run, restored into an empty database as
//! the README's procedure says, and a server started on it answers as before the cut-off —
//! every write acknowledged before the backup began, `latest`, and views equal to a rebuild.
//! Also the retention of backup files and the servers' metric of the newest backup.

use std::path::Path;
use std::time::{Duration, Instant};

use test_support::app::{spawn_app, spawn_app_on};
use test_support::database::TestDatabase;
use test_support::views::{assert_views_equal_a_rebuild, await_projections_at_head};
use test_support::write_load::WriteLoad;

use crate::tool::{command, run_ok, scratch_path};

/// Writing clients during the backup.
const WRITERS: usize = 4;

/// The files in `folder` but the backups' keys files, by name.
fn backup_files(folder: &Path) -> Vec<String> {
    files(folder, |name| !name.ends_with(KEYS_SUFFIX))
}

/// The backups' keys files in `folder`, by name.
fn keys_files(folder: &Path) -> Vec<String> {
    files(folder, |name| name.ends_with(KEYS_SUFFIX))
}

/// What a keys file's name ends with, beside its export's `.jsonl`.
const KEYS_SUFFIX: &str = ".keys.jsonl";

fn files(folder: &Path, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| wanted(name))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_backup_taken_under_writes_restores_every_acknowledged_write_and_latest() {
    let source = spawn_app().await;
    let load = WriteLoad::start(&source.base_url, WRITERS);
    load.await_acknowledged(60, Duration::from_secs(60)).await;

    // Everything answered before this instant was committed before the backup's snapshot.
    let cutoff = Instant::now();
    let folder = scratch_path("backup", "backups").with_extension("d");
    let output = run_ok(&source.db.url, &["backup", folder.to_str().unwrap()]).await;
    let before_more = load.acknowledged();
    load.await_acknowledged(before_more + 20, Duration::from_secs(60))
        .await;
    let ledger = load.stop().await;
    let files = backup_files(&folder);
    assert_eq!(files.len(), 1, "{output}");
    assert!(output.contains(&files[0]), "{output}");

    // The restore, as the README's Operations section gives it.
    let target = TestDatabase::create_bare().await;
    let backup = folder.join(&files[0]);
    let imported = run_ok(&target.url, &["import", backup.to_str().unwrap()]).await;
    assert!(imported.contains("imported"), "{imported}");
    let keys = keys_files(&folder);
    assert_eq!(keys, [files[0].replace(".jsonl", KEYS_SUFFIX)]);
    let keys = folder.join(&keys[0]);
    let imported = run_ok(&target.url, &["import-keys", keys.to_str().unwrap()]).await;
    assert!(imported.contains("keys"), "{imported}");
    run_ok(&target.url, &["migrate"]).await;
    let restored = spawn_app_on(target).await;
    await_projections_at_head(&restored.db.pool, Duration::from_secs(60)).await;

    let as_of_backup = ledger.as_of(cutoff);
    let sim = restored.client();
    let checked = as_of_backup
        .assert_acknowledged_present(&sim, &restored.db.pool)
        .await;
    // Follows of one pair count once (the last one decides), so fewer than were acknowledged.
    assert!(checked >= 30, "only {checked} writes checked");
    as_of_backup.assert_latest_intact(&sim).await;
    assert_views_equal_a_rebuild(&restored.db.pool).await;
    // And the writes after the backup are not there: it is the backup's state, not the
    // source's.
    let restored_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&restored.db.pool)
        .await
        .unwrap();
    let source_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&source.db.pool)
        .await
        .unwrap();
    assert!(restored_events < source_events);
}

#[tokio::test]
async fn backups_keep_the_newest_and_the_servers_export_the_time_of_the_last() {
    let app = spawn_app().await;
    let metric = "minitwit_backup_last_success_timestamp_seconds";
    assert_eq!(await_metric(&app.base_url, metric, |_| true).await, 0.0);

    let folder = scratch_path("backup", "kept").with_extension("d");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "not a backup").unwrap();
    let started = chrono::Utc::now().timestamp() as f64;
    for _ in 0..3 {
        run_ok(
            &app.db.url,
            &["backup", folder.to_str().unwrap(), "--keep", "2"],
        )
        .await;
    }
    let files = backup_files(&folder);
    assert_eq!(files.len(), 3, "two backups and the notes: {files:?}");
    assert!(files.contains(&"notes.txt".to_owned()));
    let recorded: Vec<String> = sqlx::query_scalar("SELECT file FROM backups ORDER BY file")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(recorded, &files[..2], "a row for each kept backup, no more");
    let keys = keys_files(&folder);
    assert_eq!(
        keys,
        files[..2]
            .iter()
            .map(|file| file.replace(".jsonl", KEYS_SUFFIX))
            .collect::<Vec<_>>(),
        "each kept backup's keys beside it, and no others"
    );
    for file in files[..2].iter().chain(&keys) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(folder.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let last = await_metric(&app.base_url, metric, |value| value > 0.0).await;
    assert!(
        last >= started - 1.0,
        "{last} is before the backups began ({started})"
    );
}

#[tokio::test]
async fn scheduled_backups_run_at_each_interval_until_stopped() {
    use tokio::io::AsyncReadExt as _;

    let app = spawn_app().await;
    let folder = scratch_path("backup", "scheduled").with_extension("d");
    let mut job = command(&app.db.url)
        .args([
            "backup",
            folder.to_str().unwrap(),
            "--every",
            "1",
            "--keep",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the scheduled backups");
    let mut stdout = job.stdout.take().expect("piped");
    let printed = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.map(|_| text)
    });
    // The first two backups, then a third: with two kept, the oldest goes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_two: Option<Vec<String>> = None;
    loop {
        let files = if folder.exists() {
            backup_files(&folder)
        } else {
            Vec::new()
        };
        match &first_two {
            None if files.len() == 2 => first_two = Some(files.clone()),
            Some(first) if files.len() == 2 && !files.contains(&first[0]) => break,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no third backup within 30 s: {files:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = nix::unistd::Pid::from_raw(job.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), job.wait())
        .await
        .expect("the job stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let printed = printed.await.unwrap().unwrap();
    assert!(printed.contains("deleted the older"), "{printed}");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM backups")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(
        (2..=3).contains(&kept),
        "{kept} rows for 2 kept files (3 mid-backup)"
    );
}

/// Polls the server's `/metrics` at `base_url` until `metric` has a value `wanted` accepts.
async fn await_metric(base_url: &str, metric: &str, wanted: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(format!("{base_url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix(metric)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse::<f64>().ok());
        if let Some(value) = value.filter(|value| wanted(*value)) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{metric} is {value:?} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! The report: a markdown table of every workload, printed and written to `BENCHMARKS.md`
//! with the date, the machine, and the commit and versions measured.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// One line of the table.
pub struct Row {
    pub workload: String,
    pub ours: String,
    pub reference: String,
    /// Ours over the reference, where the target is a ratio.
    pub ratio: Option<f64>,
    pub target: String,
    pub met: bool,
}

/// A duration in milliseconds, to two decimals.
pub fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// The table and the closing count.
pub fn table(rows: &[Row]) -> String {
    let mut text = String::from(
        "| workload | ours | reference (same run) | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |ratio| format!("{ratio:.2}×"));
        let _ = writeln!(
            text,
            "| {} | {} | {} | {ratio} | {} | {} |",
            row.workload,
            row.ours,
            row.reference,
            row.target,
            if row.met { "yes" } else { "**no**" }
        );
    }
    let met = rows.iter().filter(|row| row.met).count();
    let _ = write!(text, "\nbench: {met} of {} targets met\n", rows.len());
    text
}

/// What was measured: asked of git, rustc and the cluster during the run, so that a report
/// cannot claim a commit or a version it was not made with.
pub struct Stamp {
    /// `git rev-parse --short HEAD`, and `-dirty` if the work tree had changes.
    pub commit: String,
    /// `rustc --version`, run in the workspace so that its toolchain is the one that built us.
    pub rustc: String,
    /// `SHOW server_version` on the benchmark's cluster.
    pub postgres: String,
}

impl Stamp {
    pub fn measure(workspace: &Path, postgres: String) -> Self {
        let commit = match output(workspace, "git", &["rev-parse", "--short", "HEAD"]) {
            Some(head) => {
                let dirty = output(workspace, "git", &["status", "--porcelain"])
                    .is_none_or(|changes| !changes.is_empty());
                format!("{head}{}", if dirty { "-dirty" } else { "" })
            }
            None => "unknown (no git)".to_owned(),
        };
        Self {
            commit,
            rustc: output(workspace, "rustc", &["--version"])
                .unwrap_or_else(|| "unknown".to_owned()),
            postgres,
        }
    }

    /// The header's lines.
    pub fn lines(&self) -> String {
        format!(
            "- **Commit:** {}\n- **Rust:** {}\n- **PostgreSQL:** {}",
            self.commit, self.rustc, self.postgres
        )
    }
}

/// A command's trimmed standard output, if it ran and succeeded.
fn output(dir: &Path, program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Writes `BENCHMARKS.md`: the table, what it was measured with, and how the run was set up.
pub fn write_markdown(
    file: &Path,
    rows: &[Row],
    stamp: &Stamp,
    setup: &str,
    notes: &str,
) -> anyhow::Result<()> {
    let text = format!(
        "# Benchmarks\n\n\
         Written by `scripts/bench` (see the README); every reference is measured on the same \
         machine in the same run, so the ratios hold while the absolute figures vary.\n\n\
         - **Date:** {date}\n{stamp}\n- **Machine:** {machine}\n- **Setup:** {setup}\n\n\
         {table}\n{notes}",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        stamp = stamp.lines(),
        machine = machine(),
        table = table(rows),
    );
    std::fs::write(file, text)?;
    Ok(())
}

/// CPU model and count, memory, kernel: what the figures depend on.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {memory_gib:.0} GiB, Linux {}",
        kernel.trim()
    )
}

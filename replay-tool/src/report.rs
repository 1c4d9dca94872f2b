//! Progress of long work: a bar with position, rate and ETA on a terminal; elsewhere (a log
//! file, CI) a plain line every few seconds, which reads well when nobody redraws it.

use std::io::IsTerminal as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How often a plain progress line is printed.
const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Every bar of this process, drawn together: jobs running at once (the rebuilds of
/// `rebuild --all`) each keep their own line instead of overwriting one another's.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// Progress of one job over a known (possibly growing) number of items.
pub struct ProgressReport {
    label: String,
    /// What is counted ("events", "messages").
    unit: &'static str,
    /// The name of the position reported with each step ("position", "legacy message").
    position_name: &'static str,
    total: u64,
    done: u64,
    position: i64,
    started: Instant,
    /// On a terminal: the bar. Otherwise: when the last line was printed.
    output: Output,
}

enum Output {
    Bar(ProgressBar),
    Lines { last: Instant },
}

impl ProgressReport {
    /// Starts reporting `label`, with `total` log events to go through (an estimate: it
    /// grows while the log does), each step reported at a log position.
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Self::counting(label, total, "events", "position")
    }

    /// Like [`ProgressReport::new`], counting `unit` and reporting each step at a
    /// `position_name`.
    pub fn counting(
        label: impl Into<String>,
        total: u64,
        unit: &'static str,
        position_name: &'static str,
    ) -> Self {
        let label = label.into();
        let output = if std::io::stderr().is_terminal() {
            let bar = bars().add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}, {{per_sec}}, ETA {{eta}} {{msg}}"
                ))
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.clone());
            Output::Bar(bar)
        } else {
            eprintln!("{label}: {total} {unit} to go");
            Output::Lines {
                last: Instant::now(),
            }
        };
        Self {
            label,
            unit,
            position_name,
            total,
            done: 0,
            position: 0,
            started: Instant::now(),
            output,
        }
    }

    /// Notes `count` more done, the last at `position`.
    pub fn advance(&mut self, count: u64, position: i64) {
        self.done += count;
        self.position = position;
        self.total = self.total.max(self.done);
        match &mut self.output {
            Output::Bar(bar) => {
                bar.set_length(self.total);
                bar.set_position(self.done);
                bar.set_message(format!("(at {} {position})", self.position_name));
            }
            Output::Lines { last } => {
                if last.elapsed() >= LINE_INTERVAL {
                    *last = Instant::now();
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// Makes the estimate of the total at least `total`.
    pub fn raise_total(&mut self, total: u64) {
        self.total = self.total.max(total);
        if let Output::Bar(bar) = &self.output {
            bar.set_length(self.total);
        }
    }

    /// Events applied so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    fn rate(&self) -> f64 {
        self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    fn line(&self) -> String {
        let rate = self.rate();
        let percent = if self.total == 0 {
            100.0
        } else {
            100.0 * self.done as f64 / self.total as f64
        };
        let eta = if rate > 0.0 {
            format!("{:.0}s", self.total.saturating_sub(self.done) as f64 / rate)
        } else {
            "unknown".to_owned()
        };
        format!(
            "{}: {} of ~{} {unit} ({percent:.1}%), {rate:.0} {unit}/s, ETA {eta}, at {} {}",
            self.label,
            self.done,
            self.total,
            self.position_name,
            self.position,
            unit = self.unit
        )
    }

    /// Ends the report with `message`.
    pub fn finish(self, message: &str) {
        let summary = format!(
            "{}: {} {unit} in {:.1}s ({:.0} {unit}/s); {message}",
            self.label,
            self.done,
            self.started.elapsed().as_secs_f64(),
            self.rate(),
            unit = self.unit
        );
        if let Output::Bar(bar) = &self.output {
            bar.finish_and_clear();
        }
        eprintln!("{summary}");
    }

    /// Ends the report early, saying why.
    pub fn abandon(self, message: &str) {
        if let Output::Bar(bar) = &self.output {
            bar.abandon();
        }
        eprintln!("{}: {message}", self.line());
    }
}

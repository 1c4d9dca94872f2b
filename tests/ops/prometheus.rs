//! A real Prometheus (Debian's `prometheus`) scraping a running server, with the project's
//! alert rules loaded: request counts and projection lag arrive and answer PromQL, and every
//! rule evaluates against the live series. [`Prometheus`] is the harness the suite's other
//! scraping tests share ([`crate::exporters`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use test_support::database::TestDatabase;
use test_support::free_port;
use test_support::server_process::ServerProcess;
use test_support::sim_client::assert_no_content;

use crate::config::{read, repo_root, SERVER_RULES};
use crate::MINITWIT;

/// The Prometheus binary: `MINITWIT_PROMETHEUS`, or Debian's.
fn prometheus_binary() -> PathBuf {
    std::env::var_os("MINITWIT_PROMETHEUS")
        .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from)
}

/// A fresh directory for one test's `kind` of daemons (their configuration, data and logs),
/// under Cargo's scratch space.
pub fn fresh_directory(kind: &str) -> PathBuf {
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(kind)
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// A daemon of the monitoring stack (Prometheus, an exporter) run for one test on a free
/// loopback port, which it is given with `--web.listen-address`, as every one of them takes
/// it. Its stderr goes to a log file; it is killed when dropped.
pub struct Daemon {
    process: tokio::process::Child,
    /// Where it listens: `127.0.0.1:<port>`.
    pub addr: String,
}

impl Daemon {
    /// Starts `binary` (from Debian's `package`) with `args` and `env`, logging to
    /// `<directory>/<name>.log`, and returns once `GET <ready_path>` answers 2xx.
    pub async fn start(
        binary: &Path,
        package: &str,
        directory: &Path,
        args: &[String],
        env: &[(&str, &str)],
        ready_path: &str,
    ) -> Self {
        assert!(
            binary.exists(),
            "{} is missing: install Debian's '{package}' package (scripts/test does, as root)",
            binary.display()
        );
        let name = binary
            .file_name()
            .expect("a binary's name")
            .to_string_lossy();
        let log = directory.join(format!("{name}.log"));
        let addr = format!("127.0.0.1:{}", free_port());
        let mut process = tokio::process::Command::new(binary)
            .args(args)
            .arg(format!("--web.listen-address={addr}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        for attempt in 0.. {
            if let Some(status) = process.try_wait().unwrap() {
                panic!(
                    "{name} exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let ready = reqwest::get(format!("http://{addr}{ready_path}")).await;
            if ready.is_ok_and(|answer| answer.status().is_success()) {
                break;
            }
            assert!(attempt < 300, "{name} did not become ready in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { process, addr }
    }

    /// Stops it now, rather than when dropped.
    pub async fn stop(mut self) {
        self.process.kill().await.unwrap();
    }
}

/// A real Prometheus scraping and evaluating every second.
pub struct Prometheus {
    daemon: Daemon,
    /// The rule file it loaded, relative to the repository.
    rules: String,
}

impl Prometheus {
    /// Starts Prometheus with the rule file `rules` (relative to the repository) and one job
    /// per `(job name, target address)`; returns once it is ready: configuration and rules
    /// loaded, storage open.
    pub async fn start(rules: &str, jobs: &[(&str, &str)]) -> Self {
        let directory = fresh_directory("prometheus");
        let config = directory.join("prometheus.yml");
        let scrape_configs: String = jobs
            .iter()
            .map(|(job, target)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n")
            })
            .collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n{scrape_configs}",
                rules = repo_root().join(rules).display(),
            ),
        )
        .unwrap();
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", directory.join("data").display()),
        ];
        let daemon = Daemon::start(
            &prometheus_binary(),
            "prometheus",
            &directory,
            &args,
            &[],
            "/-/ready",
        )
        .await;
        Self {
            daemon,
            rules: rules.to_owned(),
        }
    }

    /// Its HTTP API's address.
    fn base(&self) -> String {
        format!("http://{}", self.daemon.addr)
    }

    /// A PromQL query's result vector.
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let answer: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base()))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("querying Prometheus")
            .json()
            .await
            .expect("a JSON answer");
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `promql` until it returns a sample whose value satisfies `wanted`.
    pub async fn await_sample(&self, promql: &str, wanted: impl Fn(f64) -> bool) -> Value {
        let mut last = Vec::new();
        for _ in 0..120 {
            last = self.query(promql).await;
            let hit = last.iter().find(|sample| {
                sample["value"][1]
                    .as_str()
                    .and_then(|text| text.parse::<f64>().ok())
                    .is_some_and(&wanted)
            });
            if let Some(sample) = hit {
                return sample.clone();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{promql} never gave a wanted value; last: {last:?}");
    }

    /// Every rule loaded, with its evaluation state.
    async fn loaded_rules(&self) -> Vec<Value> {
        let answer: Value = reqwest::get(format!("{}/api/v1/rules", self.base()))
            .await
            .expect("asking Prometheus for its rules")
            .json()
            .await
            .expect("a JSON answer");
        answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().into_iter().flatten())
            .cloned()
            .collect()
    }

    /// Waits until every rule of its rule file is loaded and has evaluated against the live
    /// series without error (health `ok`).
    pub async fn await_rules_evaluated_cleanly(&self) {
        let text = read(&self.rules);
        let in_file = text.matches("- alert:").count() + text.matches("- record:").count();
        let rules = self.loaded_rules().await;
        assert_eq!(
            rules.len(),
            in_file,
            "Prometheus loaded {} of the {in_file} rules in {}: {rules:?}",
            rules.len(),
            self.rules
        );
        let mut unhealthy = Vec::new();
        for _ in 0..40 {
            unhealthy = self
                .loaded_rules()
                .await
                .into_iter()
                .filter(|rule| rule["health"] != "ok")
                .collect();
            if unhealthy.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("some rules did not evaluate cleanly: {unhealthy:?}");
    }

    /// Stops it now, rather than when dropped.
    pub async fn stop(self) {
        self.daemon.stop().await;
    }
}

#[tokio::test]
async fn prometheus_scrapes_requests_and_projection_lag_and_evaluates_the_rules() {
    let db = TestDatabase::create().await;
    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    let sim = server.client();
    assert_no_content(sim.register("scraped", "s@x", "pw", Some(1)).await);
    for n in 0..5 {
        assert_no_content(
            sim.tweet("scraped", &format!("tweet {n}"), Some(2 + n))
                .await,
        );
    }

    let prometheus = Prometheus::start(SERVER_RULES, &[("minitwit", &server.api_addr)]).await;
    let up = prometheus
        .await_sample("up{job=\"minitwit\"}", |value| value == 1.0)
        .await;
    assert_eq!(up["metric"]["instance"], server.api_addr.as_str());
    prometheus
        .await_sample(
            "sum(http_server_requests_total{job=\"minitwit\",route=\"/msgs/{username}\",method=\"POST\",status=\"204\"})",
            |value| value == 5.0,
        )
        .await;
    prometheus
        .await_sample(
            "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{job=\"minitwit\"}[1m])))",
            |value| value > 0.0,
        )
        .await;
    for projection in ["accounts", "timeline"] {
        prometheus
            .await_sample(
                &format!(
                    "minitwit_projection_lag_events{{job=\"minitwit\",projection=\"{projection}\"}}"
                ),
                |value| value == 0.0,
            )
            .await;
    }
    prometheus
        .await_sample("minitwit_latest_processed_id{job=\"minitwit\"}", |value| {
            value == 6.0
        })
        .await;

    // The rule file loads, and every rule evaluates against the live series without error.
    prometheus.await_rules_evaluated_cleanly().await;
    prometheus.stop().await;
    server.terminate().await;
}

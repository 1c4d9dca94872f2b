//! A real Prometheus (Debian's `prometheus`) scraping a running server, with the project's
//! alert rules loaded: request counts and projection lag arrive and answer PromQL, and every
//! rule evaluates against the live series.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use test_support::database::TestDatabase;
use test_support::free_port;
use test_support::server_process::ServerProcess;
use test_support::sim_client::assert_no_content;

use crate::MINITWIT;

/// The Prometheus binary: `MINITWIT_PROMETHEUS`, or Debian's.
fn prometheus_binary() -> PathBuf {
    let binary = std::env::var_os("MINITWIT_PROMETHEUS")
        .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from);
    assert!(
        binary.exists(),
        "{} is missing: install Debian's 'prometheus' package (scripts/test does, as root) \
         or set MINITWIT_PROMETHEUS",
        binary.display()
    );
    binary
}

/// The project's alert rules.
fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/prometheus/rules/minitwit.yml")
}

/// A PromQL query's result vector.
async fn query(base: &str, promql: &str) -> Vec<Value> {
    let answer: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
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

/// Every rule Prometheus has loaded, with its evaluation state.
async fn loaded_rules(base: &str) -> Vec<Value> {
    let answer: Value = reqwest::get(format!("{base}/api/v1/rules"))
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

/// Polls `promql` until it returns a sample whose value satisfies `wanted`.
async fn await_sample(base: &str, promql: &str, wanted: impl Fn(f64) -> bool) -> Value {
    let mut last = Vec::new();
    for _ in 0..120 {
        last = query(base, promql).await;
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

#[tokio::test]
async fn prometheus_scrapes_requests_and_projection_lag_and_evaluates_the_rules() {
    let binary = prometheus_binary();
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

    let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("prometheus")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&directory).unwrap();
    let config = directory.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: minitwit\n    static_configs:\n      - targets: ['{target}']\n",
            rules = rules_file().display(),
            target = server.api_addr
        ),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut prometheus = tokio::process::Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            directory.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(directory.join("prometheus.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("starting prometheus");
    // Ready once it has loaded its configuration and rules and opened its storage.
    for attempt in 0.. {
        if let Some(status) = prometheus.try_wait().unwrap() {
            panic!(
                "prometheus exited ({status}):\n{}",
                std::fs::read_to_string(directory.join("prometheus.log")).unwrap_or_default()
            );
        }
        let ready = reqwest::get(format!("{base}/-/ready")).await;
        if ready.is_ok_and(|answer| answer.status().is_success()) {
            break;
        }
        assert!(attempt < 300, "prometheus did not become ready in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let up = await_sample(&base, "up{job=\"minitwit\"}", |value| value == 1.0).await;
    assert_eq!(up["metric"]["instance"], server.api_addr.as_str());
    await_sample(
        &base,
        "sum(http_server_requests_total{job=\"minitwit\",route=\"/msgs/{username}\",method=\"POST\",status=\"204\"})",
        |value| value == 5.0,
    )
    .await;
    await_sample(
        &base,
        "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{job=\"minitwit\"}[1m])))",
        |value| value > 0.0,
    )
    .await;
    for projection in ["accounts", "timeline"] {
        await_sample(
            &base,
            &format!(
                "minitwit_projection_lag_events{{job=\"minitwit\",projection=\"{projection}\"}}"
            ),
            |value| value == 0.0,
        )
        .await;
    }
    await_sample(
        &base,
        "minitwit_latest_processed_id{job=\"minitwit\"}",
        |value| value == 6.0,
    )
    .await;

    // The rule file loads, and every rule evaluates against the live series without error.
    let rules = loaded_rules(&base).await;
    assert!(
        rules.len() >= 8,
        "the project's alerts are loaded: {rules:?}"
    );
    let mut unhealthy = Vec::new();
    for _ in 0..40 {
        unhealthy = loaded_rules(&base)
            .await
            .into_iter()
            .filter(|rule| rule["health"] != "ok")
            .collect();
        if unhealthy.is_empty() {
            prometheus.kill().await.unwrap();
            server.terminate().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("some rules did not evaluate cleanly: {unhealthy:?}");
}

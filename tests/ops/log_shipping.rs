//! Central logs, as far as they can be checked without Loki and Alloy (neither can be
//! installed here): real server log lines go through the parsing that the shipper's pipeline
//! declares (`ops/alloy/config.alloy`, read from the file), and the Logs dashboard asks only
//! for labels that pipeline makes and for messages the server really logs. Renaming a log
//! field or message breaks this test rather than the production dashboard.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::assert_no_content;

use crate::config::{read, repo_root};
use crate::MINITWIT;

const PIPELINE: &str = "ops/alloy/config.alloy";
const DASHBOARD: &str = "ops/grafana/dashboards/logs.json";
/// Labels that may be indexed: each has a handful of values.
const BOUNDED_LABELS: &[&str] = &["service", "replica", "level", "route"];

/// What the pipeline's `loki.process` stages declare.
struct Pipeline {
    /// `stage.json`'s expressions: extracted name to JMESPath (dotted fields here).
    extracted: BTreeMap<String, String>,
    /// `stage.labels`: extracted values made index labels.
    labels: BTreeSet<String>,
    /// `stage.structured_metadata`: extracted values sent beside the line, unindexed.
    metadata: BTreeSet<String>,
    /// Labels set by relabelling the containers (`target_label`).
    container_labels: BTreeSet<String>,
}

impl Pipeline {
    fn read() -> Self {
        let text = read(PIPELINE);
        Self {
            extracted: assignments(block(&text, "stage.json", "expressions")),
            labels: assignments(block(&text, "stage.labels", "values"))
                .into_keys()
                .collect(),
            metadata: assignments(block(&text, "stage.structured_metadata", "values"))
                .into_keys()
                .collect(),
            container_labels: text
                .lines()
                .filter_map(|line| line.trim().strip_prefix("target_label"))
                .map(|rest| unquote(rest.trim().trim_start_matches('=').trim()))
                .collect(),
        }
    }

    /// The values the json stage extracts from `line`: each expression's field, if the line
    /// has it as a string.
    fn extract(&self, line: &Value) -> BTreeMap<String, String> {
        self.extracted
            .iter()
            .filter_map(|(name, path)| {
                let value = path
                    .split('.')
                    .try_fold(line, |value, key| value.get(key))?;
                Some((name.clone(), value.as_str()?.to_owned()))
            })
            .collect()
    }
}

/// The body of `attribute = { … }` inside the first `stage { … }` block named `stage`.
fn block<'a>(text: &'a str, stage: &str, attribute: &str) -> &'a str {
    let start = text
        .find(&format!("{stage} {{"))
        .unwrap_or_else(|| panic!("{PIPELINE} has no {stage} block"));
    let rest = &text[start..];
    let open = rest
        .find(&format!("{attribute} = {{"))
        .unwrap_or_else(|| panic!("{stage} has no {attribute}"));
    let body = &rest[open..];
    let body = &body[body.find('{').unwrap() + 1..];
    &body[..body.find('}').expect("the block closes")]
}

/// `name = "value",` lines of a block body.
fn assignments(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|line| line.trim().trim_end_matches(',').split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), unquote(value.trim())))
        .collect()
}

fn unquote(text: &str) -> String {
    text.trim_matches('"').to_owned()
}

#[tokio::test]
async fn the_shippers_pipeline_finds_its_fields_in_real_log_lines_and_labels_only_bounded_ones() {
    let pipeline = Pipeline::read();
    for label in pipeline.labels.iter().chain(&pipeline.container_labels) {
        assert!(
            BOUNDED_LABELS.contains(&label.as_str()),
            "{PIPELINE} makes `{label}` an index label; only {BOUNDED_LABELS:?} have few values"
        );
    }
    for name in pipeline.labels.iter().chain(&pipeline.metadata) {
        assert!(
            pipeline.extracted.contains_key(name),
            "{PIPELINE} labels `{name}`, which its json stage does not extract"
        );
    }
    assert!(
        pipeline.metadata.contains("request_id"),
        "the request id is searchable"
    );

    // The owner's role makes the server warn at start: a WARN line to parse too.
    let db = TestDatabase::create().await;
    let server = ServerProcess::start_with(
        MINITWIT,
        &[
            ("DATABASE_URL", &db.url),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let sim = server.client();
    for user in ["shipped-ada", "shipped-bob"] {
        assert_no_content(sim.register(user, &format!("{user}@x"), "pw", None).await);
        assert_no_content(sim.tweet(user, "shipped", None).await);
    }
    assert_no_content(sim.follow("shipped-ada", "shipped-bob", None).await);
    let lines = server.logs();
    server.terminate().await;

    let mut routes = BTreeSet::new();
    let mut levels = BTreeSet::new();
    let mut requests = 0;
    for line in &lines {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        let extracted = pipeline.extract(&entry);
        let level = extracted
            .get("level")
            .unwrap_or_else(|| panic!("no level extracted from {line}"));
        levels.insert(level.clone());
        if entry["message"] == "finished processing request" {
            requests += 1;
            for field in ["route", "request_id"] {
                assert!(
                    extracted.get(field).is_some_and(|value| !value.is_empty()),
                    "no {field} extracted from a request's line: {line}"
                );
            }
            routes.insert(extracted["route"].clone());
        }
    }
    assert!(requests >= 5, "{requests} request lines in {lines:#?}");
    assert!(
        levels.contains("WARN") && levels.contains("INFO"),
        "{levels:?}"
    );
    for route in &routes {
        assert!(
            !route.contains("shipped"),
            "the route label {route} holds a username: its values would not be bounded"
        );
    }
    assert!(routes.contains("/msgs/{username}"), "{routes:?}");
}

#[test]
fn the_logs_dashboard_asks_for_the_pipelines_labels_and_the_servers_messages() {
    let pipeline = Pipeline::read();
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("valid JSON");
    let sources = server_sources();
    let mut loki_queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let uid = target["datasource"]["uid"].as_str().unwrap_or_default();
            match uid {
                "loki" => {
                    loki_queries += 1;
                    let expr = target["expr"].as_str().expect("a LogQL expression");
                    check_logql(expr, &pipeline, &sources);
                }
                "events" => {
                    let sql = target["rawSql"].as_str().expect("an SQL query");
                    assert!(
                        sql.contains("FROM events") && sql.contains("'request_id'"),
                        "{sql}"
                    );
                }
                other => panic!("{DASHBOARD}: a panel on an unknown datasource {other:?}"),
            }
        }
    }
    assert!(loki_queries >= 4, "{loki_queries} Loki queries");
    let provisioned = read("ops/grafana/provisioning/datasources/logs.yaml");
    for uid in ["uid: loki", "uid: events", "user: minitwit_reader"] {
        assert!(provisioned.contains(uid), "the datasources lack `{uid}`");
    }
}

/// Fails unless `expr`'s stream selectors name only labels the pipeline makes, its label
/// filters only those or its structured metadata, and its line filters text the server logs.
fn check_logql(expr: &str, pipeline: &Pipeline, sources: &str) {
    let known: BTreeSet<&str> = pipeline
        .labels
        .iter()
        .chain(&pipeline.container_labels)
        .chain(&pipeline.metadata)
        .map(String::as_str)
        .collect();
    let selector = &expr[expr.find('{').expect("a stream selector") + 1..];
    let selector = &selector[..selector.find('}').expect("the selector closes")];
    let mut named: Vec<&str> = selector
        .split(',')
        .map(|matcher| matcher.split(['=', '!', '~']).next().unwrap().trim())
        .collect();
    // Label filters after the selector: `| name = …`.
    named.extend(
        expr.split('|')
            .skip(1)
            .filter_map(|stage| stage.split_once('=').map(|(name, _)| name.trim()))
            .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .filter(|name| !name.is_empty()),
    );
    for name in named {
        assert!(
            known.contains(name),
            "`{expr}` uses `{name}`, which {PIPELINE} does not set"
        );
    }
    // Line filters quote what they look for in backticks; every alternative of each must be
    // something the server logs.
    for (i, text) in expr.split('`').enumerate() {
        let is_line_filter = i % 2 == 1 && {
            let before = expr.split('`').nth(i - 1).unwrap_or_default().trim_end();
            before.ends_with("|=") || before.ends_with("|~")
        };
        if is_line_filter {
            for message in text.split('|') {
                assert!(
                    sources.contains(message),
                    "`{expr}` looks for {message:?}, which the server never logs"
                );
            }
        }
    }
}

/// The Rust sources of the server's crates, concatenated.
fn server_sources() -> String {
    let mut text = String::new();
    for krate in ["api", "commands", "projections", "database"] {
        let mut pending = vec![repo_root().join(krate).join("src")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|ext| ext == "rs") {
                    text.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
    }
    text
}

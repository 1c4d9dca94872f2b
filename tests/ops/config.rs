//! The deployment's configuration (`ops/`, `compose.yaml`), checked with the tools that will
//! run it: promtool for the alert rules, their unit tests and Prometheus's configuration, amtool
//! for Alertmanager's, nginx for the load balancer's, docker-compose for the stack; and the
//! Grafana dashboards, which no tool here can load, for structure. Rules and dashboards query
//! only metrics that their source exports: the server's (its monitoring contract), or for the
//! database and the host, postgres-exporter's and node-exporter's (a second contract, which
//! [`crate::exporters`] holds against the real exporters).
//!
//! Every tool is required: a missing one fails its test, naming the Debian package that
//! provides it (`prometheus`, `prometheus-alertmanager`, `nginx`, `docker-compose`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The metrics the server exports (the monitoring contract). Histograms are listed by their
/// base name; `_bucket`, `_sum` and `_count` are allowed for them.
const CONTRACT_METRICS: &[&str] = &[
    "http_server_requests_total",
    "http_server_active_requests",
    "minitwit_commands_total",
    "minitwit_command_retries_total",
    "minitwit_events_appended_total",
    "minitwit_read_your_writes_timeouts_total",
    "minitwit_event_store_head_position",
    "minitwit_projection_position",
    "minitwit_projection_lag_events",
    "minitwit_projection_lag_seconds",
    "minitwit_projection_events_applied_total",
    "minitwit_projection_errors_total",
    "minitwit_transaction_horizon_age_seconds",
    "minitwit_latest_processed_id",
    "minitwit_latest_updated_timestamp_seconds",
    "minitwit_backup_last_success_timestamp_seconds",
    "minitwit_users",
    "minitwit_messages",
    "minitwit_follows",
    "minitwit_logins_total",
    "minitwit_live_streams",
    "minitwit_live_streams_refused_total",
    "minitwit_chat_streams",
    "minitwit_database_unreachable",
    "minitwit_unavailable_responses_total",
    "minitwit_background_task_restarts_total",
    "minitwit_password_hash_upgrades_total",
    "minitwit_db_pool_connections",
    "minitwit_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
];
const CONTRACT_HISTOGRAMS: &[&str] = &[
    "http_server_request_duration_seconds",
    "minitwit_projection_batch_duration_seconds",
    "minitwit_chat_delivery_seconds",
];
/// What the rules and the dashboard for the database and the host read from compose.yaml's
/// exporters, postgres-exporter (`pg_*`) and node-exporter (`node_*`). [`crate::exporters`]
/// finds every one in the real exporters' output, so that an exporter that renames one fails
/// a test rather than silences an alert. None is a histogram.
pub(crate) const EXPORTER_METRICS: &[&str] = &[
    "pg_up",
    "pg_settings_max_connections",
    "pg_stat_activity_count",
    "pg_stat_activity_max_tx_duration",
    "pg_database_size_bytes",
    "pg_stat_database_xact_commit",
    "pg_stat_database_xact_rollback",
    "pg_stat_database_deadlocks",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_load1",
    "node_load5",
    "node_load15",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_io_time_seconds_total",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
];
/// Not exported by any source, but always there: Prometheus's own per-target series.
const PROMETHEUS_METRICS: &[&str] = &["up"];

/// The metrics one source exports: what a rule file or a dashboard reading that source may
/// query (besides [`PROMETHEUS_METRICS`]), and must show.
struct Contract {
    /// Whose metrics, for messages.
    source: &'static str,
    metrics: &'static [&'static str],
    histograms: &'static [&'static str],
}

const SERVER: Contract = Contract {
    source: "the server",
    metrics: CONTRACT_METRICS,
    histograms: CONTRACT_HISTOGRAMS,
};
const EXPORTERS: Contract = Contract {
    source: "the exporters",
    metrics: EXPORTER_METRICS,
    histograms: &[],
};

impl Contract {
    /// Whether a query may name `name`.
    fn allows(&self, name: &str) -> bool {
        let base = base_name(name);
        self.metrics.contains(&name)
            || PROMETHEUS_METRICS.contains(&name)
            || (self.histograms.contains(&base) && base != name)
    }
}

const DASHBOARDS: &[(&str, &Contract)] = &[
    ("simulator", &SERVER),
    ("web", &SERVER),
    ("event-store", &SERVER),
    ("business", &SERVER),
    ("database-host", &EXPORTERS),
];
/// The server's alerts.
pub(crate) const SERVER_RULES: &str = "ops/prometheus/rules/minitwit.yml";
/// The database's and the host's alerts.
pub(crate) const DATABASE_HOST_RULES: &str = "ops/prometheus/rules/database-host.yml";
/// Every rule file Prometheus loads (`rules/*.yml`), with the source its rules read.
const RULE_FILES: &[(&str, &Contract)] =
    &[(SERVER_RULES, &SERVER), (DATABASE_HOST_RULES, &EXPORTERS)];
const RULE_DIR: &str = "ops/prometheus/rules";
const RULE_TESTS: &str = "ops/prometheus/rules/tests";

pub(crate) fn repo_root() -> PathBuf {
    // This suite belongs to the `api` package, whose manifest lives in `api/`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root is the api package's parent")
        .to_path_buf()
}

pub(crate) fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs `tool` in `dir`; a tool that is not installed fails the test, naming its package.
fn run<S: AsRef<OsStr>>(tool: &str, package: &str, args: &[S], dir: &Path) -> Output {
    match Command::new(tool).args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{tool}` is not installed: it comes with Debian's `{package}` package \
             (apt-get install -y {package})"
        ),
        Err(e) => panic!("could not run `{tool}`: {e}"),
    }
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

fn files_with_extension(relative_dir: &str, extension: &str) -> Vec<String> {
    let dir = repo_root().join(relative_dir);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .map(|path| {
            let name = path.file_name().expect("a file name").to_string_lossy();
            format!("{relative_dir}/{name}")
        })
        .collect();
    files.sort();
    files
}

// ------------------------------------------------------------------------------ alert rules

/// [`RULE_FILES`], once checked to be all that Prometheus loads.
fn rule_files() -> &'static [(&'static str, &'static Contract)] {
    let mut listed: Vec<String> = RULE_FILES
        .iter()
        .map(|(file, _)| (*file).to_owned())
        .collect();
    listed.sort_unstable();
    assert_eq!(
        files_with_extension(RULE_DIR, "yml"),
        listed,
        "{RULE_DIR}/*.yml are loaded by Prometheus: list each in RULE_FILES, with its contract"
    );
    RULE_FILES
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let root = repo_root();
    let mut args = vec!["check", "rules"];
    args.extend(rule_files().iter().map(|(file, _)| *file));
    let check = run("promtool", "prometheus", &args, &root);
    assert_success("promtool check rules", &check);

    let tests = files_with_extension(RULE_TESTS, "yml");
    assert!(!tests.is_empty(), "no rule unit tests in {RULE_TESTS}");
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(tests);
    let test = run("promtool", "prometheus", &args, &root);
    assert_success("promtool test rules", &test);
}

/// Every alert carries what on-call needs, and has unit tests that show it firing and staying
/// quiet. (promtool checks neither.)
#[test]
fn every_alert_is_documented_and_tested_both_ways() {
    let mut alerts = BTreeSet::new();
    for (file, _) in rule_files() {
        let rules = read(file);
        let blocks: Vec<&str> = rules.split("- alert:").skip(1).collect();
        assert!(!blocks.is_empty(), "no alerts found in {file}");
        for block in blocks {
            let name = block.split_whitespace().next().expect("an alert name");
            alerts.insert(name.to_owned());
            for key in ["for:", "severity:", "summary:", "description:"] {
                assert!(block.contains(key), "{file}: alert {name} has no `{key}`");
            }
        }
    }

    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for file in files_with_extension(RULE_TESTS, "yml") {
        let text = read(&file);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line.strip_prefix("alertname:") else {
                continue;
            };
            let expected = lines.get(i + 1).copied().unwrap_or_default();
            match expected {
                "exp_alerts: []" => quiet.insert(name.trim().to_owned()),
                "exp_alerts:" => fires.insert(name.trim().to_owned()),
                other => panic!("{file}: `alertname: {name}` followed by `{other}`"),
            };
        }
    }
    for alert in &alerts {
        assert!(fires.contains(alert), "no unit test shows {alert} firing");
        assert!(
            quiet.contains(alert),
            "no unit test shows {alert} staying quiet"
        );
    }
}

#[test]
fn alert_rules_query_only_the_contract_metrics() {
    for (file, contract) in rule_files() {
        let rules = read(file);
        let exprs = yaml_exprs(&rules);
        // One expression per rule, or yaml_exprs missed one.
        let rule_count = rules.matches("- alert:").count() + rules.matches("- record:").count();
        assert_eq!(
            exprs.len(),
            rule_count,
            "{file}: found {} expressions for {rule_count} rules",
            exprs.len()
        );
        for expr in &exprs {
            assert_only_contract_metrics(file, expr, contract);
        }
    }
}

/// The `expr:` values of a rule file: inline, or a block scalar (`>-`, `|`) on the lines
/// indented below the key.
fn yaml_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('>') || value.starts_with('|') {
            let indent = line.len() - trimmed.len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" "));
        } else {
            exprs.push(value.to_owned());
        }
    }
    exprs
}

// ------------------------------------------------------------------ Prometheus, Alertmanager

#[test]
fn prometheus_config_passes_promtool_check_config() {
    let root = repo_root();
    // The rule files are named relative to prometheus.yml (`rules/*.yml`), so this checks the
    // layout compose.yaml mounts (/etc/prometheus/{prometheus.yml,rules/}) as well.
    let check = run(
        "promtool",
        "prometheus",
        &["check", "config", "ops/prometheus/prometheus.yml"],
        &root,
    );
    assert_success("promtool check config", &check);
    let stdout = String::from_utf8_lossy(&check.stdout);
    for (file, _) in rule_files() {
        let loaded = file.trim_start_matches("ops/prometheus/");
        assert!(
            stdout.contains(loaded),
            "promtool check config did not load {loaded}:\n{stdout}"
        );
    }

    let compose = read("compose.yaml");
    for mount in [
        "./ops/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
        "./ops/prometheus/rules:/etc/prometheus/rules:ro",
    ] {
        assert!(
            compose.contains(mount),
            "compose.yaml does not mount {mount}"
        );
    }
}

#[test]
fn alertmanager_config_passes_amtool_check_config() {
    let root = repo_root();
    let check = run(
        "amtool",
        "prometheus-alertmanager",
        &["check-config", "ops/alertmanager/alertmanager.yml"],
        &root,
    );
    assert_success("amtool check-config", &check);

    // amtool accepts a template glob that matches nothing, and templates that are not defined.
    let config = read("ops/alertmanager/alertmanager.yml");
    let templates: String = files_with_extension("ops/alertmanager/templates", "tmpl")
        .iter()
        .map(|file| read(file))
        .collect();
    for used in config.split("template \"").skip(1) {
        let name = used.split('"').next().expect("a template name");
        assert!(
            templates.contains(&format!("define \"{name}\"")),
            "alertmanager.yml uses template {name}, which ops/alertmanager/templates/ does not define"
        );
    }
}

// ----------------------------------------------------------------------------------- nginx

/// Debian's nginx (1.22) checks the load balancer's configuration, as the TLS test runs it
/// (see [`crate::nginx::local_config`]: the container's surroundings swapped for local ones,
/// a certificate made for the test in place of the secrets).
#[test]
fn nginx_config_passes_nginx_t() {
    let config = read("ops/nginx/nginx.conf");
    for required in [
        "resolver 127.0.0.11",
        "server minitwit:5001 resolve",
        "server minitwit:5000 resolve",
        "proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
        "proxy_buffering off;",
        "listen 443 ssl;",
        "listen 5001 ssl;",
        "return 301 https://$host$request_uri;",
        "add_header Strict-Transport-Security",
    ] {
        assert!(config.contains(required), "nginx.conf lacks `{required}`");
    }
    let dir = scratch_dir("nginx");
    let (certificate, key) = crate::nginx::test_certificate(&dir);
    let local = crate::nginx::local_config(
        &config,
        &crate::nginx::Surroundings {
            api_upstream: "127.0.0.1:5001",
            web_upstream: "127.0.0.1:5000",
            grafana_upstream: "127.0.0.1:3000",
            api_port: 15001,
            https_port: 15443,
            http_port: 15080,
            status_port: 15081,
            grafana_port: 15300,
            api_clients: &repo_root().join("ops/nginx/api-clients.conf"),
            certificate: &certificate,
            key: &key,
            bind: "127.0.0.2",
        },
    );
    std::fs::write(dir.join("nginx.conf"), local).expect("writing the nginx.conf copy");
    let prefix = format!("{}/", dir.display());
    let conf = format!("{}/nginx.conf", dir.display());
    let nginx = crate::nginx::nginx_binary();
    let check = run(
        &nginx.display().to_string(),
        "nginx",
        &["-t", "-q", "-p", &prefix, "-e", "/dev/stderr", "-c", &conf],
        &dir,
    );
    assert_success("nginx -t", &check);
    let _ = std::fs::remove_dir_all(&dir);
}

// --------------------------------------------------------------------------------- Grafana

const DATASOURCE_UID: &str = "prometheus";

#[test]
fn grafana_provisioning_matches_the_dashboards_and_their_mount() {
    let datasources = read("ops/grafana/provisioning/datasources/prometheus.yaml");
    assert!(
        datasources.contains("uid: prometheus") && datasources.contains("type: prometheus"),
        "the provisioned Prometheus datasource must have uid `prometheus`"
    );
    let provider = read("ops/grafana/provisioning/dashboards/provider.yaml");
    let path = provider
        .lines()
        .find_map(|line| line.trim().strip_prefix("path:"))
        .expect("provider.yaml names a path")
        .trim();
    let compose = read("compose.yaml");
    let mount = format!("./ops/grafana/dashboards:{path}:ro");
    assert!(
        compose.contains(&mount),
        "compose.yaml does not mount {mount}"
    );
}

#[test]
fn grafana_dashboards_query_only_contract_metrics_through_the_provisioned_datasource() {
    let mut uids = BTreeSet::new();
    // Per contract, by its source: the metrics its dashboards show.
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, contract) in DASHBOARDS {
        let file = format!("ops/grafana/dashboards/{name}.json");
        let dashboard: Value = serde_json::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{file} is not valid JSON: {e}"));
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty(), "{file} has no uid");
        assert!(
            uids.insert(uid.to_owned()),
            "{file}: uid {uid} is used twice"
        );
        assert!(
            dashboard["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file} has no title"
        );

        let mut ids = BTreeSet::new();
        let mut panels = 0;
        for_each_panel(&dashboard["panels"], &mut |panel| {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel has no title: {panel}");
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: `{title}` has no id"));
            assert!(ids.insert(id), "{file}: panel id {id} is used twice");
            assert!(
                panel["gridPos"].is_object(),
                "{file}: `{title}` has no gridPos"
            );
            if panel["type"] == "row" {
                return;
            }
            panels += 1;
            assert_datasource(&file, title, &panel["datasource"]);
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: `{title}` has no query");
            for target in targets {
                assert_datasource(&file, title, &target["datasource"]);
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "{file}: `{title}` has an empty query"
                );
                used.entry(contract.source)
                    .or_default()
                    .extend(assert_only_contract_metrics(
                        &format!("{file}: `{title}`"),
                        expr,
                        contract,
                    ));
            }
        });
        assert!(panels >= 4, "{file} has only {panels} panels");

        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = variable["name"].as_str().unwrap_or_default();
            assert_datasource(&file, &format!("variable {name}"), &variable["datasource"]);
            let query = variable["query"]["query"]
                .as_str()
                .or_else(|| variable["query"].as_str())
                .unwrap_or_default();
            // label_values(selector, label): the label is not a metric.
            let selector = match query.strip_prefix("label_values(") {
                Some(rest) => rest.rsplit_once(',').map_or(rest, |(selector, _)| selector),
                None => query,
            };
            assert_only_contract_metrics(&format!("{file}: variable {name}"), selector, contract);
        }
        for annotation in dashboard["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = annotation["name"].as_str().unwrap_or_default();
            assert_datasource(
                &file,
                &format!("annotation {name}"),
                &annotation["datasource"],
            );
            let expr = annotation["expr"].as_str().unwrap_or_default();
            assert_only_contract_metrics(&format!("{file}: annotation {name}"), expr, contract);
        }
    }

    // Every exported metric is on some dashboard of its source.
    for contract in [&SERVER, &EXPORTERS] {
        let shown = used.get(contract.source).cloned().unwrap_or_default();
        let missing: Vec<&str> = contract
            .metrics
            .iter()
            .chain(contract.histograms)
            .filter(|metric| {
                !shown
                    .iter()
                    .any(|name| name == *metric || base_name(name) == **metric)
            })
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "no dashboard shows {missing:?}, from {}",
            contract.source
        );
    }
}

fn for_each_panel(panels: &Value, visit: &mut dyn FnMut(&Value)) {
    for panel in panels.as_array().into_iter().flatten() {
        visit(panel);
        // A collapsed row keeps its panels inside it.
        for_each_panel(&panel["panels"], visit);
    }
}

fn assert_datasource(file: &str, what: &str, datasource: &Value) {
    assert!(
        datasource["type"] == "prometheus" && datasource["uid"] == DATASOURCE_UID,
        "{file}: {what} must use datasource {{\"type\":\"prometheus\",\"uid\":\"{DATASOURCE_UID}\"}}, \
         not {datasource}"
    );
}

/// Fails unless every metric `expr` names is in `contract`; returns the names.
fn assert_only_contract_metrics(what: &str, expr: &str, contract: &Contract) -> BTreeSet<String> {
    let names = metric_names(expr);
    for name in &names {
        assert!(
            contract.allows(name),
            "{what} queries `{name}`, which {} does not export (see its contract): {expr}",
            contract.source
        );
    }
    names
}

/// A histogram series' metric name without `_bucket`/`_sum`/`_count`.
fn base_name(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

// ---------------------------------------------------------------------- PromQL, roughly

/// Aggregation operators: followed by `(` or by a `by`/`without` clause.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// Keywords followed by a parenthesised list of label names.
const GROUPINGS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
];

#[derive(Debug, PartialEq)]
enum Token {
    Name(String),
    Other(char),
    Literal,
}

/// The metric names a PromQL expression selects. Rough but enough for our expressions: label
/// matchers (`{...}`), ranges and subqueries (`[...]`), strings and Grafana's `$variables` are
/// dropped; what remains is a name unless it calls something (`name(`), is an aggregation,
/// a keyword, or a label list after `by`/`on`/...
fn metric_names(expr: &str) -> BTreeSet<String> {
    let tokens = tokenize(expr);
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Token::Name(name) = &tokens[i] {
            let next_is_paren = tokens.get(i + 1) == Some(&Token::Other('('));
            if GROUPINGS.contains(&name.as_str()) && next_is_paren {
                // Skip the label list.
                let mut depth = 0;
                i += 1;
                while i < tokens.len() {
                    match tokens[i] {
                        Token::Other('(') => depth += 1,
                        Token::Other(')') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            } else if name == "offset" {
                i += 1; // the duration
            } else if !next_is_paren
                && !AGGREGATIONS.contains(&name.as_str())
                && !GROUPINGS.contains(&name.as_str())
                && !KEYWORDS.contains(&name.as_str())
            {
                names.insert(name.clone());
            }
        }
        i += 1;
    }
    names
}

fn tokenize(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let (mut braces, mut brackets) = (0usize, 0usize);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' && c != '`' {
                        i += 1;
                    }
                    i += 1;
                }
                tokens.push(Token::Literal);
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            _ if braces > 0 || brackets > 0 => {}
            '$' => {
                while i + 1 < chars.len() && is_name_char(chars[i + 1]) {
                    i += 1;
                }
                tokens.push(Token::Literal);
            }
            _ if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // A number or a duration (`5m`, `1e-9`, `0x1f`, `24h`).
                while i + 1 < chars.len() {
                    let n = chars[i + 1];
                    let exponent_sign = (n == '-' || n == '+') && matches!(chars[i], 'e' | 'E');
                    if n.is_ascii_alphanumeric() || n == '.' || n == '_' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Literal);
            }
            _ if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i + 1 < chars.len() && is_name_char(chars[i + 1]) {
                    i += 1;
                }
                tokens.push(Token::Name(chars[start..=i].iter().collect()));
            }
            _ if c.is_whitespace() => {}
            _ => tokens.push(Token::Other(c)),
        }
        i += 1;
    }
    tokens
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = |expr: &str| -> Vec<String> { metric_names(expr).into_iter().collect() };
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, method, route) (rate(http_server_request_duration_seconds_bucket{job="minitwit",route=~"/msgs.*|/fllws/{username}"}[$__rate_interval]))) > 0.3"#
        ),
        ["http_server_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names(
            r#"max by (projection) (changes(minitwit_projection_position[5m])) == 0 and on() max(changes(minitwit_event_store_head_position[5m])) > 0 and on(projection) max by (projection) (minitwit_projection_lag_events) > 0"#
        ),
        [
            "minitwit_event_store_head_position",
            "minitwit_projection_lag_events",
            "minitwit_projection_position"
        ]
    );
    assert_eq!(
        names(r#"(sum(rate(a_total{x="y"}[10m])) or vector(0)) == 0"#),
        ["a_total"]
    );
    assert_eq!(
        names(r#"label_replace(absent(b{job="m"}), "metric", "not_a_metric", "", "")"#),
        ["b"]
    );
    assert_eq!(
        names(r#"max(c{i=~"$instance"}) - max(c{i=~"$instance"} offset 24h)"#),
        ["c"]
    );
    assert_eq!(names("sum(rate(d[5m])) by (le) / 1e-9 * time()"), ["d"]);
    assert_eq!(names(r#"a / on(x) group_left(y) b_info"#), ["a", "b_info"]);
    assert_eq!(names("vector(0.3)"), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------- compose

const SECRETS: &[&str] = &[
    "db_password",
    "database_owner_url",
    "db_server_password",
    "db_reader_password",
    "database_url",
    "session_key",
    "master_key",
    "simulator_password",
    "grafana_admin_password",
    "alertmanager_webhook_url",
    "tls_certificate",
    "tls_key",
];

/// `docker-compose config` (Debian's docker-compose 1.29) validates compose.yaml against the
/// Compose schema and resolves it. It runs on a copy in a scratch directory with throwaway
/// secret files, so that nothing depends on the real secrets/ (which is not in the repository).
#[test]
fn compose_file_validates_with_docker_compose() {
    let compose = read("compose.yaml");
    let dir = scratch_dir("compose");
    std::fs::write(dir.join("compose.yaml"), &compose).expect("writing the compose.yaml copy");
    std::fs::create_dir_all(dir.join("secrets")).expect("creating the scratch secrets/");
    for secret in SECRETS {
        std::fs::write(dir.join("secrets").join(secret), "throwaway-not-a-secret")
            .expect("writing a throwaway secret");
    }
    let mut command = Command::new("docker-compose");
    command
        .args([
            "--file",
            "compose.yaml",
            "--project-name",
            "minitwit-check",
            "config",
        ])
        .current_dir(&dir)
        .env_remove("COMPOSE_FILE")
        .env_remove("MINITWIT_IMAGE");
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`docker-compose` is not installed: it comes with Debian's `docker-compose` \
             package (apt-get install -y docker-compose)"
        ),
        Err(e) => panic!("could not run docker-compose: {e}"),
    };
    assert_success("docker-compose config", &output);
    let resolved = String::from_utf8_lossy(&output.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);

    for expected in [
        "replicas: 3",
        "order: start-first",
        "failure_action: rollback",
        "endpoint_mode: dnsrr",
        "condition: service_healthy",
        "idle_in_transaction_session_timeout=",
        "POSTGRES_PASSWORD_FILE: /run/secrets/db_password",
        "DATABASE_URL_FILE: /run/secrets/database_url",
        "DATABASE_URL_FILE: /run/secrets/database_owner_url",
        "MINITWIT_SERVER_PASSWORD_FILE: /run/secrets/db_server_password",
        "MINITWIT_READER_PASSWORD_FILE: /run/secrets/db_reader_password",
        "/etc/alloy/config.alloy",
        "/etc/loki/loki.yaml",
        "condition: service_completed_successfully",
        "mode: replicated-job",
        "backups:/backups",
        "- --every",
        // postgres-exporter reads the owner's password from its secret; node-exporter sees the
        // two volumes where database-host.yml's disk alerts look for them.
        "DATA_SOURCE_URI: db:5432/minitwit?sslmode=disable",
        "DATA_SOURCE_PASS_FILE: /run/secrets/db_password",
        "--collector.filesystem.mount-points-include=^/volumes/",
        "pgdata:/volumes/pgdata:ro",
        "backups:/volumes/backups:ro",
        "MINITWIT_SESSION_KEY_FILE: /run/secrets/session_key",
        "MINITWIT_MASTER_KEY_FILE: /run/secrets/master_key",
        "MINITWIT_SIMULATOR_PASSWORD_FILE: /run/secrets/simulator_password",
        "GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/grafana_admin_password",
        "MINITWIT_CLIENT_IP_HEADER: x-real-ip",
        "MINITWIT_TRUSTED_PROXIES: 172.28.0.0/16",
        "subnet: 172.28.0.0/16",
        "/etc/nginx/api-clients.conf",
        "LOG_FORMAT: json",
        "MINITWIT_API_ADDR: 0.0.0.0:5001",
        "target: 3000",
        "max-size:",
    ] {
        assert!(
            resolved.contains(expected),
            "the resolved compose file lacks `{expected}`:\n{resolved}"
        );
    }
    // Prometheus, Alertmanager and the exporters are published nowhere, not even on the
    // host's loopback (which Swarm would ignore); Grafana only through nginx.
    for port in ["9090", "9093", "9187", "9100"] {
        for published in [format!("published: {port}"), format!(":{port}:{port}")] {
            assert!(
                !resolved.contains(&published),
                "{port} is published:\n{resolved}"
            );
        }
    }
    assert!(
        !resolved.contains(":3000:3000"),
        "Grafana is published directly"
    );

    // Secrets come from files under ./secrets/, each documented in secrets/README.md.
    let readme = read("secrets/README.md");
    for secret in SECRETS {
        assert!(
            compose.contains(&format!("file: ./secrets/{secret}\n")),
            "compose.yaml does not take secret {secret} from ./secrets/{secret}"
        );
        assert!(
            readme.contains(&format!("`{secret}`")),
            "secrets/README.md does not explain {secret}"
        );
    }
    let declared = compose.matches("file: ./secrets/").count();
    assert_eq!(
        declared,
        SECRETS.len(),
        "compose.yaml declares secrets this test does not know"
    );
}

/// A fresh directory under Cargo's scratch space for integration tests.
fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

//! `GET /metrics`: the RED metrics per route template (never raw paths) with the simulator's
//! 0.3 s as a bucket edge, commands by outcome, events by type, and the figures read from the
//! database — from a server process of its own, so the numbers are exactly its traffic.

use projections::Projection as _;
use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::assert_no_content;

use crate::MINITWIT;

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses Prometheus' text exposition (comments skipped; label values unescaped).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    labels
}

/// The value of the one sample of `name` whose labels include `labels`, if any.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "several samples match {name} {labels:?}: {matching:?}"
    );
    matching.first().map(|sample| sample.value)
}

async fn scrape(server: &ServerProcess) -> Vec<Sample> {
    let response = reqwest::get(format!("{}/metrics", server.base_url))
        .await
        .expect("scraping");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    parse_exposition(&response.text().await.unwrap())
}

#[tokio::test]
async fn requests_commands_events_and_database_figures_are_exposed() {
    let db = TestDatabase::create().await;
    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    let sim = server.client();
    assert_no_content(sim.register("Roger Histand", "r@x", "pw", Some(7)).await);
    assert_no_content(sim.register("other", "o@x", "pw", Some(8)).await);
    let taken = sim.register("other", "o@x", "pw", None).await.unwrap();
    assert_eq!(taken.status, StatusCode::BAD_REQUEST, "{taken:?}");
    assert_no_content(sim.tweet("Roger Histand", "one", None).await);
    assert_no_content(sim.tweet("Roger Histand", "two", Some(9)).await);
    assert_no_content(sim.follow("Roger Histand", "other", None).await);
    let refused = sim.follow("Roger Histand", "nobody", None).await.unwrap();
    assert_eq!(
        refused.status,
        StatusCode::NOT_FOUND,
        "by the aggregate: {refused:?}"
    );
    for (user, status) in [
        ("Roger Histand", StatusCode::OK),
        ("nobody", StatusCode::NOT_FOUND),
    ] {
        let listing = sim.user_msgs(user, None, None).await.unwrap();
        assert_eq!(listing.status, status, "{listing:?}");
    }
    for (path, status) in [
        ("/public", StatusCode::OK),
        ("/no/such/page", StatusCode::NOT_FOUND),
    ] {
        let page = reqwest::get(format!("{}{path}", server.web_url))
            .await
            .unwrap();
        assert_eq!(page.status(), status, "GET {path}");
    }

    // Methods a client makes up are counted, but not by name.
    let http = reqwest::Client::new();
    for (base, invented) in [(&server.web_url, "FOO1"), (&server.base_url, "BAR9")] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).unwrap();
        let answer = http
            .request(method, format!("{base}/public"))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_client_error(), "{invented}: {answer:?}");
    }

    let samples = scrape(&server).await;
    for sample in &samples {
        if let Some(method) = sample.labels.get("method") {
            assert!(
                !method.contains("FOO") && !method.contains("BAR"),
                "an invented method became a label: {sample:?}"
            );
        }
    }
    let other_methods: f64 = samples
        .iter()
        .filter(|sample| {
            sample.name == "http_server_requests_total"
                && sample.labels.get("method").map(String::as_str) == Some("other")
        })
        .map(|sample| sample.value)
        .sum();
    assert_eq!(other_methods, 2.0, "one invented method on each listener");
    let requests = |labels: &[(&str, &str)]| value(&samples, "http_server_requests_total", labels);
    assert_eq!(
        requests(&[
            ("listener", "api"),
            ("method", "POST"),
            ("route", "/msgs/{username}"),
            ("status", "204")
        ]),
        Some(2.0)
    );
    assert_eq!(
        requests(&[
            ("listener", "api"),
            ("method", "POST"),
            ("route", "/register"),
            ("status", "400")
        ]),
        Some(1.0)
    );
    assert_eq!(
        requests(&[
            ("listener", "api"),
            ("method", "GET"),
            ("route", "/msgs/{username}"),
            ("status", "404")
        ]),
        Some(1.0)
    );
    assert_eq!(
        requests(&[
            ("listener", "web"),
            ("method", "GET"),
            ("route", "/public"),
            ("status", "200")
        ]),
        Some(1.0)
    );
    assert!(requests(&[
        ("listener", "web"),
        ("route", "/{username}"),
        ("status", "404")
    ])
    .is_none());
    // Routes are templates: no user's name, nor any raw path, becomes a label value.
    for sample in &samples {
        if let Some(route) = sample.labels.get("route") {
            assert!(
                !route.contains("Roger") && !route.contains("nobody") && !route.contains("such"),
                "{sample:?}"
            );
        }
    }
    // Histograms, with the simulator's timeout as a bucket edge.
    let tweet_latency = [
        ("listener", "api"),
        ("method", "POST"),
        ("route", "/msgs/{username}"),
    ];
    for le in ["0.005", "0.3", "+Inf"] {
        let mut labels = tweet_latency.to_vec();
        labels.push(("le", le));
        assert!(
            value(
                &samples,
                "http_server_request_duration_seconds_bucket",
                &labels
            )
            .is_some(),
            "le={le}"
        );
    }
    assert_eq!(
        value(
            &samples,
            "http_server_request_duration_seconds_count",
            &tweet_latency
        ),
        Some(2.0)
    );

    let commands = |labels: &[(&str, &str)]| value(&samples, "minitwit_commands_total", labels);
    assert_eq!(
        commands(&[("command", "post"), ("outcome", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        commands(&[("command", "register"), ("outcome", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        commands(&[("command", "follow"), ("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        commands(&[("command", "follow"), ("outcome", "rejected")]),
        Some(1.0)
    );
    let events = |event: &str| {
        value(
            &samples,
            "minitwit_events_appended_total",
            &[("event", event)],
        )
    };
    assert_eq!(events("UserRegistered"), Some(2.0));
    assert_eq!(events("MessagePosted"), Some(2.0));
    assert_eq!(events("UserFollowed"), Some(1.0));
    assert_eq!(
        value(
            &samples,
            "minitwit_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(value(&samples, "process_resident_memory_bytes", &[]).unwrap() > 0.0);

    // The database's figures catch up within a collection interval (5 s).
    let mut figures = Vec::new();
    for _ in 0..100 {
        figures = scrape(&server).await;
        if value(&figures, "minitwit_event_store_head_position", &[]) == Some(5.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let figure = |name: &str, labels: &[(&str, &str)]| {
        value(&figures, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} is exposed"))
    };
    assert_eq!(figure("minitwit_users", &[]), 2.0);
    assert_eq!(figure("minitwit_messages", &[]), 2.0);
    assert_eq!(figure("minitwit_follows", &[]), 1.0);
    assert_eq!(figure("minitwit_event_store_head_position", &[]), 5.0);
    assert_eq!(figure("minitwit_latest_processed_id", &[]), 9.0);
    assert!(figure("minitwit_latest_updated_timestamp_seconds", &[]) > 1.7e9);
    for projection in ["accounts", "timeline"] {
        assert_eq!(
            figure(
                "minitwit_projection_lag_events",
                &[("projection", projection)]
            ),
            0.0
        );
        assert_eq!(
            figure(
                "minitwit_projection_lag_seconds",
                &[("projection", projection)]
            ),
            0.0
        );
    }
    // Each projection stands at the last event of its own kind: the follow, the second post.
    let accounts_version = projections::accounts::Accounts.version().to_string();
    assert_eq!(
        figure(
            "minitwit_projection_position",
            &[("projection", "accounts"), ("version", &accounts_version)]
        ),
        5.0
    );
    let timeline_version = projections::timeline::Timeline.version().to_string();
    assert_eq!(
        figure(
            "minitwit_projection_position",
            &[("projection", "timeline"), ("version", &timeline_version)]
        ),
        4.0
    );
    assert!(figure("minitwit_transaction_horizon_age_seconds", &[]) >= 0.0);
    assert!(figure("minitwit_db_pool_connections", &[("state", "idle")]) >= 0.0);
    server.terminate().await;
}

#[test]
fn the_exposition_parser_reads_labels_with_escapes() {
    let samples = parse_exposition(
        "# HELP x y\nx_total{a=\"1\",route=\"/msgs/{username}\",q=\"say \\\"hi\\\"\"} 3\nplain 4.5\n",
    );
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].labels["route"], "/msgs/{username}");
    assert_eq!(samples[0].labels["q"], "say \"hi\"");
    assert_eq!(samples[0].value, 3.0);
    assert_eq!(value(&samples, "plain", &[]), Some(4.5));
}

//! The exporters compose.yaml runs beside PostgreSQL and on the host, as Debian packages them
//! (`prometheus-postgres-exporter`, `prometheus-node-exporter`), scraped by a real Prometheus on
//! loopback with the database's and the host's alert rules loaded: the PostgreSQL exporter
//! reaches the suite's database, every metric those rules and the Database & host dashboard
//! read ([`EXPORTER_METRICS`]) arrives under the scrape jobs' names, and every rule evaluates.
//!
//! What this cannot run: the images compose.yaml pins (no Docker engine here), so neither the
//! volumes mounted into node-exporter nor the secret postgres-exporter reads its password from;
//! the disk alerts' mountpoints are checked by promtool's unit tests instead.

use std::collections::BTreeSet;
use std::path::Path;

use test_support::database::TestDatabase;

use crate::config::{DATABASE_HOST_RULES, EXPORTER_METRICS};
use crate::prometheus::{fresh_directory, Daemon, Prometheus};

const POSTGRES_EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// A libpq key/value connection string for `db`, as its pool connects (the owner, over the
/// cluster's unix socket, its only listener). Not [`TestDatabase::url`]: a URL names a socket
/// only in its query, and the exporter's driver prefers the URL's host, `localhost`, over it.
fn data_source_name(db: &TestDatabase) -> String {
    let options = db.pool.connect_options();
    let quoted = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
    let socket = options
        .get_socket()
        .expect("the suite's cluster listens on a socket");
    format!(
        "host={} user={} dbname={} sslmode=disable",
        quoted(&socket.to_string_lossy()),
        quoted(options.get_username()),
        quoted(options.get_database().expect("a database is named")),
    )
}

#[tokio::test]
async fn prometheus_scrapes_both_exporters_and_evaluates_the_database_and_host_rules() {
    let db = TestDatabase::create().await;
    let database = db
        .pool
        .connect_options()
        .get_database()
        .expect("a database is named")
        .to_owned();
    let logs = fresh_directory("exporters");
    let postgres = Daemon::start(
        Path::new(POSTGRES_EXPORTER),
        "prometheus-postgres-exporter",
        &logs,
        &[],
        &[("DATA_SOURCE_NAME", &data_source_name(&db))],
        "/metrics",
    )
    .await;
    // Debian's build turns the systemd collector on; no systemd answers here.
    let node = Daemon::start(
        Path::new(NODE_EXPORTER),
        "prometheus-node-exporter",
        &logs,
        &["--no-collector.systemd".to_owned()],
        &[],
        "/metrics",
    )
    .await;
    // The job names of ops/prometheus/prometheus.yml, which the rules select on.
    let prometheus = Prometheus::start(
        DATABASE_HOST_RULES,
        &[("postgres", &postgres.addr), ("node", &node.addr)],
    )
    .await;

    // The exporter reached PostgreSQL, and sees this test's database and its connections.
    prometheus
        .await_sample("pg_up{job=\"postgres\"}", |value| value == 1.0)
        .await;
    prometheus
        .await_sample("pg_settings_max_connections{job=\"postgres\"}", |value| {
            value > 0.0
        })
        .await;
    prometheus
        .await_sample(
            &format!("sum(pg_stat_activity_count{{job=\"postgres\",datname=\"{database}\"}})"),
            |value| value >= 1.0,
        )
        .await;
    prometheus
        .await_sample("node_filesystem_avail_bytes{job=\"node\"}", |value| {
            value > 0.0
        })
        .await;
    prometheus
        .await_sample("node_load1{job=\"node\"}", |value| value >= 0.0)
        .await;

    // Every name the rules and the dashboard read is exported under them.
    let exported: BTreeSet<String> = prometheus
        .query("group by (__name__) ({job=~\"postgres|node\"})")
        .await
        .iter()
        .filter_map(|sample| sample["metric"]["__name__"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&str> = EXPORTER_METRICS
        .iter()
        .filter(|metric| !exported.contains(**metric))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "the exporters do not export {missing:?}; they export {exported:?}"
    );

    prometheus.await_rules_evaluated_cleanly().await;
    prometheus.stop().await;
    postgres.stop().await;
    node.stop().await;
}

//! Property-based fuzzing of the running server with schemathesis, driven by the server's
//! own `/openapi.json`.
//!
//! Schemathesis generates requests for every operation — schema-valid ones and deliberately
//! invalid ones (wrong types, missing fields, odd unicode, NUL characters, huge numbers, and
//! methods the document does not list) — and checks each answer: no 5xx, a documented status,
//! the documented content type and body schema, invalid input refused, and, for protected
//! operations, the same request refused without and with wrong credentials (`ignored_auth`).
//! Its settings and hooks are in `tests/api/schemathesis/`; the hooks point generated
//! usernames at the users registered here some of the time, so success paths are fuzzed too.
//!
//! The verdict comes from the run's cassette (every request and response it recorded) and its
//! JUnit report, not from the exit code alone: at least [`MIN_REQUESTS`] requests, no 5xx
//! answer, no failed check.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use test_support::app::spawn_app;
use test_support::sim_client::SIMULATOR_AUTH;

/// The schemathesis executable; `scripts/test` installs the pinned version and sets it.
const SCHEMATHESIS_VARIABLE: &str = "MINITWIT_SCHEMATHESIS";
/// Fewer would mean the run tested too little to count.
const MIN_REQUESTS: usize = 2_000;
/// Examples per operation and phase; about 2,700 requests, two minutes on two cores.
const EXAMPLES_PER_OPERATION: &str = "200";
/// A fixed seed: CI runs the same requests every time, and a failure replays.
const SEED: &str = "20261127";
/// Registered before the run; the hooks draw usernames and follow targets from them.
const USERS: [&str; 4] = ["Roger Histand", "alice", "bob", "ünïcødé 名前"];

fn schemathesis() -> PathBuf {
    let path = std::env::var_os(SCHEMATHESIS_VARIABLE).map(PathBuf::from);
    match path {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "schemathesis is not installed: run the tests through scripts/test, which installs \
             the pinned version under target/tools/schemathesis and sets {SCHEMATHESIS_VARIABLE} \
             (or set it to a schemathesis executable yourself)"
        ),
    }
}

/// What the run recorded: every interaction's response status and its own verdict.
struct Cassette {
    statuses: Vec<u16>,
    verdicts: Vec<String>,
}

impl Cassette {
    /// Reads schemathesis' VCR cassette. Its layout is fixed: each interaction's verdict is
    /// the only key at two spaces' indent, its response status the only `code` at six, and
    /// every body is a one-line quoted string, so neither can be mistaken for the other.
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|err| panic!("reading the cassette {}: {err}", path.display()));
        let quoted = |line: &str, prefix: &str| {
            line.strip_prefix(prefix)
                .map(|rest| rest.trim_matches('\'').to_owned())
        };
        let statuses = text
            .lines()
            .filter_map(|line| quoted(line, "      code: "))
            .map(|code| code.parse().expect("a numeric status"))
            .collect();
        let verdicts = text
            .lines()
            .filter_map(|line| quoted(line, "  status: "))
            .collect();
        Self { statuses, verdicts }
    }
}

/// The `failures` and `errors` totals of a JUnit report's root element.
fn junit_failures_and_errors(path: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("reading the JUnit report {}: {err}", path.display()));
    let root = text
        .split("<testsuites")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .expect("a <testsuites> element");
    let attribute = |name: &str| -> usize {
        root.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("<testsuites> has a numeric `{name}`"))
    };
    (attribute("failures"), attribute("errors"))
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_fault_in_thousands_of_generated_requests() {
    let schemathesis = schemathesis();
    let app = spawn_app().await;
    let client = app.client();
    for user in USERS {
        let reply = client
            .register(user, "fuzz@example.com", "secret", None)
            .await
            .expect("registering");
        assert_eq!(reply.status, 204, "registering {user}: {:?}", reply.body);
    }

    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/api/schemathesis");
    let reports = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("schemathesis")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&reports).expect("creating the report directory");
    let cassette = reports.join("cassette.yaml");
    let junit = reports.join("junit.xml");
    let started = Instant::now();
    let run = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(settings.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", app.base_url))
        .args(["--header", &format!("Authorization: {SIMULATOR_AUTH}")])
        .args(["--checks", "all"])
        // Hard-wired to expect 401 for a request without `Authorization`; the contract answers
        // 403 there. `ignored_auth` still checks the refusal without and with wrong credentials.
        .args(["--exclude-checks", "missing_required_header"])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        .args(["--seed", SEED])
        // One worker: Python 3.11's parser is not safe to share between threads, and Hypothesis
        // parses source while describing strategies ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .arg("--no-color")
        .args(["--report", "junit,vcr"])
        .arg("--report-junit-path")
        .arg(&junit)
        .arg("--report-vcr-path")
        .arg(&cassette)
        .env("SCHEMATHESIS_HOOKS", settings.join("hooks.py"))
        .env(
            "MINITWIT_FUZZ_USERS",
            serde_json::to_string(&USERS).unwrap(),
        )
        // Hypothesis keeps its example database in the working directory.
        .current_dir(&reports)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running schemathesis");
    let elapsed = started.elapsed();
    let output = String::from_utf8_lossy(&run.stdout);
    let summary = format!(
        "schemathesis exited with {} after {elapsed:.0?}:\n{output}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    let Cassette { statuses, verdicts } = Cassette::read(&cassette);
    let server_errors = statuses.iter().filter(|&&status| status >= 500).count();
    let failed = verdicts
        .iter()
        .filter(|verdict| !matches!(verdict.as_str(), "SUCCESS" | "SKIP"))
        .count();
    let (failures, errors) = junit_failures_and_errors(&junit);
    println!(
        "schemathesis: {} requests in {elapsed:.0?}; {server_errors} 5xx, {failed} failed, \
         {failures} failures and {errors} errors reported",
        statuses.len()
    );
    assert!(
        statuses.len() >= MIN_REQUESTS,
        "only {} requests were generated\n{summary}",
        statuses.len()
    );
    assert_eq!(server_errors, 0, "5xx answers\n{summary}");
    assert_eq!(
        (failed, failures, errors),
        (0, 0, 0),
        "failed checks\n{summary}"
    );
    assert!(run.status.success(), "{summary}");
    let _ = std::fs::remove_dir_all(&reports);
}

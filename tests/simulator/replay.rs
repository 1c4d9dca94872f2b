//! Replays a generated scenario the way the course's simulator does, and checks the server's
//! reads against a model of the state the scenario should leave behind.
//!
//! Like the simulator: the scenario goes through its text file format, actions go one after
//! another, each on a fresh connection with a 0.3 s timeout, `id` sent as `latest`, and an
//! error is any connection failure, timeout or unexpected status. Nothing is retried: one
//! slow answer fails the test, as it would cost a point in the course. The size comes from
//! `MINITWIT_SCENARIO_ACTIONS` (the real scenario has about 26,000 actions); run with
//! `--nocapture` to see the latencies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use test_support::app::spawn_app;
use test_support::sim_client::{
    authored, describe_failure, follow_names, millis, Reply, SimClient,
};

use crate::scenario::{self, Action, Command, Effect, Model, Rng};

/// The simulator's bound on each request, connect and response together.
const SIMULATOR_TIMEOUT: Duration = Duration::from_millis(300);
const DEFAULT_ACTIONS: usize = 3_000;
const SEED: u64 = 0x5EED_0000_2026;
/// Reads are checked against the model after this many actions, and for everyone at the end.
const CHECK_EVERY: usize = 100;
/// The server's default cap on `no`.
const SERVER_MAX_NO: usize = 10_000;
/// `no` values for sampled listings of one user: absent (100), none, few, all.
const USER_NO: [Option<i64>; 5] = [None, Some(0), Some(1), Some(7), Some(-1)];
/// `no` values for sampled public listings, which grow with the scenario.
const PUBLIC_NO: [Option<i64>; 4] = [None, Some(1), Some(20), Some(1_000)];

// Two workers, so the in-process server is not starved by the client's own runtime thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_scenario_replays_without_a_single_error_and_leaves_the_modelled_state() {
    let size = std::env::var("MINITWIT_SCENARIO_ACTIONS").map_or(DEFAULT_ACTIONS, |value| {
        value
            .parse()
            .expect("MINITWIT_SCENARIO_ACTIONS is a number of actions")
    });
    let actions =
        scenario::parse(&scenario::generate(size, SEED)).expect("the generated scenario parses");
    assert_eq!(actions.len(), size);
    let app = spawn_app().await;
    let mut replay = Replay::new(SimClient::with_timeout(&app.base_url, SIMULATOR_TIMEOUT));

    let started = Instant::now();
    for (index, action) in actions.iter().enumerate() {
        replay.send(action).await;
        if (index + 1) % CHECK_EVERY == 0 {
            replay.check_sample(&action.user).await;
        }
    }
    let replayed_in = started.elapsed();
    replay.check_everyone().await;
    println!("{}", replay.summary(size, replayed_in));

    assert!(
        replay.errors.is_empty(),
        "{} simulator errors, the first: {:#?}",
        replay.errors.len(),
        &replay.errors[..replay.errors.len().min(20)]
    );
    assert!(
        replay.failed_checks.is_empty(),
        "{} failed checks, the first: {:#?}",
        replay.failed_checks.len(),
        &replay.failed_checks[..replay.failed_checks.len().min(20)]
    );
    app.stop().await;
}

struct Replay {
    sim: SimClient,
    model: Model,
    /// Picks what the sampled checks read, independently of the scenario's own seed.
    rng: Rng,
    last_id: i64,
    effects: BTreeMap<Effect, usize>,
    /// Client-observed latencies by command or read.
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    /// What the simulator would print.
    errors: Vec<String>,
    /// Reads that failed or disagreed with the model, and registrations whose (acceptable)
    /// status contradicts the model.
    failed_checks: Vec<String>,
}

impl Replay {
    fn new(sim: SimClient) -> Self {
        Self {
            sim,
            model: Model::default(),
            rng: Rng::new(SEED ^ 0xC4EC),
            last_id: -1,
            effects: BTreeMap::new(),
            latencies: BTreeMap::new(),
            errors: Vec::new(),
            failed_checks: Vec::new(),
        }
    }

    async fn send(&mut self, action: &Action) {
        let effect = self.model.apply(action);
        *self.effects.entry(effect).or_default() += 1;
        let (sim, user, latest) = (&self.sim, action.user.as_str(), Some(action.id));
        let started = Instant::now();
        let result = match &action.command {
            Command::Register { email, pwd } => sim.register(user, email, pwd, latest).await,
            Command::Tweet { content } => sim.tweet(user, content, latest).await,
            Command::Follow { target } => sim.follow(user, target, latest).await,
            Command::Unfollow { target } => sim.unfollow(user, target, latest).await,
        };
        let elapsed = started.elapsed();
        self.record(action.command.name(), elapsed);
        self.last_id = action.id;
        let reply = match result {
            Ok(reply) => reply,
            Err(err) => {
                self.errors
                    .push(format!("{action:?}: {}", describe_failure(&err, elapsed)));
                return;
            }
        };
        let acceptable: &[StatusCode] = match &action.command {
            Command::Register { .. } => &[StatusCode::NO_CONTENT, StatusCode::BAD_REQUEST],
            _ => &[StatusCode::NO_CONTENT],
        };
        let expected = match effect {
            Effect::NameTaken => StatusCode::BAD_REQUEST,
            _ => StatusCode::NO_CONTENT,
        };
        if !acceptable.contains(&reply.status) {
            self.errors
                .push(format!("{action:?}: {} {}", reply.status, reply.body));
        } else if reply.status != expected {
            // The simulator takes either for a registration; the model knows which is right.
            self.failed_checks.push(format!(
                "{action:?} ({effect:?}): {} {}",
                reply.status, reply.body
            ));
        }
    }

    fn record(&mut self, kind: &'static str, elapsed: Duration) {
        self.latencies.entry(kind).or_default().push(elapsed);
    }

    /// Reads `request`'s 200 body; anything else is a failed check.
    async fn read(
        &mut self,
        kind: &'static str,
        what: &str,
        request: impl Future<Output = reqwest::Result<Reply>>,
    ) -> Option<Value> {
        let started = Instant::now();
        let result = request.await;
        let elapsed = started.elapsed();
        self.record(kind, elapsed);
        match result {
            Ok(reply) if reply.status == StatusCode::OK => Some(reply.body),
            Ok(reply) => {
                self.failed_checks
                    .push(format!("{what}: {} {}", reply.status, reply.body));
                None
            }
            Err(err) => {
                self.failed_checks
                    .push(format!("{what}: {}", describe_failure(&err, elapsed)));
                None
            }
        }
    }

    fn compare<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, expected: &[T], got: &[T]) {
        if expected != got {
            self.failed_checks
                .push(format!("{what}: {}", difference(expected, got)));
        }
    }

    /// `latest`, a public listing, and the messages and follows of the user who acted last
    /// and of someone picked at random.
    async fn check_sample(&mut self, last_user: &str) {
        self.check_latest().await;
        let no = *self.rng.pick(&PUBLIC_NO);
        self.check_public(no).await;
        let someone = self.rng.pick(self.model.users()).clone();
        for user in [last_user, someone.as_str()] {
            let no = *self.rng.pick(&USER_NO);
            self.check_messages_of(user, no).await;
            let no = *self.rng.pick(&USER_NO);
            self.check_follows_of(user, no).await;
        }
    }

    /// `latest`, the newest thousand messages, and every user's messages and follows in full.
    async fn check_everyone(&mut self) {
        self.check_latest().await;
        self.check_public(Some(1_000)).await;
        for user in self.model.users().to_vec() {
            self.check_messages_of(&user, Some(-1)).await;
            self.check_follows_of(&user, Some(-1)).await;
        }
    }

    async fn check_latest(&mut self) {
        let sim = self.sim.clone();
        let request = sim.send(Method::GET, "/latest", false, None);
        if let Some(body) = self.read("GET /latest", "GET /latest", request).await {
            if body["latest"] != self.last_id {
                self.failed_checks.push(format!(
                    "GET /latest: expected {}, got {body}",
                    self.last_id
                ));
            }
        }
    }

    async fn check_public(&mut self, no: Option<i64>) {
        let what = format!("GET /msgs no={no:?}");
        let sim = self.sim.clone();
        if let Some(body) = self
            .read("GET /msgs", &what, sim.public_msgs(no, None))
            .await
        {
            let expected = self.model.newest(limit(no));
            self.compare(&what, &expected, &authored(&body));
        }
    }

    async fn check_messages_of(&mut self, user: &str, no: Option<i64>) {
        let what = format!("GET /msgs/{user} no={no:?}");
        let sim = self.sim.clone();
        if let Some(body) = self
            .read("GET /msgs/<user>", &what, sim.user_msgs(user, no, None))
            .await
        {
            let expected = self.model.newest_by(user, limit(no));
            self.compare(&what, &expected, &authored(&body));
        }
    }

    async fn check_follows_of(&mut self, user: &str, no: Option<i64>) {
        let what = format!("GET /fllws/{user} no={no:?}");
        let sim = self.sim.clone();
        if let Some(body) = self
            .read("GET /fllws/<user>", &what, sim.follows(user, no, None))
            .await
        {
            let follows = self.model.follows_of(user);
            let expected = follows[..follows.len().min(limit(no))].to_vec();
            self.compare(&what, &expected, &follow_names(&body));
        }
    }

    fn summary(&self, actions: usize, replayed_in: Duration) -> String {
        let mut text = format!(
            "scenario replay: {actions} actions replayed in {:.1} s (checks every {CHECK_EVERY} \
             actions included), {} errors, {} failed checks\n  effects: {:?}\n  \
             {:<18} {:>6} {:>9} {:>9} {:>9} {:>9}\n",
            replayed_in.as_secs_f64(),
            self.errors.len(),
            self.failed_checks.len(),
            self.effects,
            "latency",
            "count",
            "p50",
            "p99",
            "max",
            ">150 ms"
        );
        for (kind, latencies) in &self.latencies {
            let mut sorted = latencies.clone();
            sorted.sort_unstable();
            let percentile = |p: f64| {
                let rank = (p * sorted.len() as f64).ceil() as usize;
                sorted[rank.clamp(1, sorted.len()) - 1]
            };
            let over_half_the_timeout = sorted
                .iter()
                .filter(|&&latency| latency > SIMULATOR_TIMEOUT / 2)
                .count();
            let _ = writeln!(
                text,
                "  {kind:<18} {:>6} {:>9} {:>9} {:>9} {over_half_the_timeout:>9}",
                sorted.len(),
                millis(percentile(0.50)),
                millis(percentile(0.99)),
                millis(percentile(1.0)),
            );
        }
        text
    }
}

/// How many entries a listing holds at most for `no`, per the spec.
fn limit(no: Option<i64>) -> usize {
    match no {
        None => 100,
        Some(no) => usize::try_from(no).map_or(SERVER_MAX_NO, |no| no.min(SERVER_MAX_NO)),
    }
}

/// Where two lists first differ, without printing thousands of entries.
fn difference<T: PartialEq + std::fmt::Debug>(expected: &[T], got: &[T]) -> String {
    let at = expected
        .iter()
        .zip(got)
        .position(|(expected, got)| expected != got)
        .unwrap_or(expected.len().min(got.len()));
    format!(
        "expected {} entries, got {}; from entry {at}: expected {:?}, got {:?}",
        expected.len(),
        got.len(),
        &expected[at..expected.len().min(at + 3)],
        &got[at..got.len().min(at + 3)]
    )
}

//! Driving HTTP load: one client in sequence on fresh connections (the simulator's way), or
//! many concurrent keep-alive clients for a fixed time; and the latency figures of a run.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latencies of one run, and how many requests failed.
#[derive(Debug, Default)]
pub struct Run {
    pub latencies: Vec<Duration>,
    pub failures: usize,
    /// The first failure, to say what went wrong.
    pub first_failure: Option<String>,
    pub wall: Duration,
}

impl Run {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    pub fn mean(&self) -> Duration {
        mean(&self.latencies)
    }

    /// The `q`-quantile (0.5 = median), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    /// Several runs as one: every latency and failure of each, and the sum of their walls.
    pub fn combined<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Run {
        let mut total = Run::default();
        for run in runs {
            total.merge(run);
            total.wall += run.wall;
        }
        total
    }

    fn record(&mut self, took: Duration, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.latencies.push(took),
            Err(err) => {
                self.failures += 1;
                self.first_failure.get_or_insert(err);
            }
        }
    }

    fn merge(&mut self, other: &Run) {
        self.latencies.extend_from_slice(&other.latencies);
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&other.first_failure);
        }
    }
}

pub fn mean(latencies: &[Duration]) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.iter().sum::<Duration>() / latencies.len() as u32
}

pub fn quantile(latencies: &[Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A client that opens a new connection for every request and says `Connection: close`, as
/// the simulator does, with the simulator's 0.3 s timeout.
pub fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("an HTTP client")
}

/// A client that keeps connections open between requests.
pub fn keep_alive_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// Sends `requests` one after another, each when the previous one is answered, and keeps a
/// run for each class of request (`class_of`): the targets are about the mean of one kind of
/// request within a mixed sequence. Each run's `wall` is the time its own requests took.
pub async fn sequential<R, K, C, F, Fut>(requests: &[R], class_of: C, send: F) -> BTreeMap<K, Run>
where
    K: Ord,
    C: Fn(&R) -> K,
    F: Fn(&R) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut runs = BTreeMap::<K, Run>::new();
    for request in requests {
        let sent = Instant::now();
        let outcome = send(request).await;
        let took = sent.elapsed();
        let run = runs.entry(class_of(request)).or_default();
        run.record(took, outcome);
        run.wall += took;
    }
    runs
}

/// Runs `clients` concurrent loops of `step` (given the client's number and its step count)
/// for `duration`.
pub async fn concurrent<F, Fut>(clients: usize, duration: Duration, step: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let step = Arc::new(step);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let step = step.clone();
            tokio::spawn(async move {
                let mut run = Run::default();
                let mut count = 0;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let outcome = step(client, count).await;
                    run.record(sent.elapsed(), outcome);
                    count += 1;
                }
                run
            })
        })
        .collect();
    let mut total = Run::default();
    for task in tasks {
        total.merge(&task.await.expect("a load task"));
    }
    total.wall = started.elapsed();
    total
}

/// Checks an answer's status: `Ok` if it is one of `expected`, else what came instead.
pub async fn expect_status(
    reply: reqwest::Result<reqwest::Response>,
    expected: &[u16],
) -> Result<(), String> {
    let reply = reply.map_err(|err| format!("{err}"))?;
    let status = reply.status().as_u16();
    // The body is read in full: a client is not done with a page until it has it.
    let body = reply.bytes().await.map_err(|err| format!("{err}"))?;
    if expected.contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    }
}

//! Budgets for the browser's sign-ins and registrations, against password guessing and mass
//! sign-ups; shared by every replica, in PostgreSQL.
//!
//! - **Sign-in attempts per client address**: a burst of N, refilled at N a minute
//!   (`MINITWIT_LOGIN_ATTEMPTS_PER_MINUTE`): one machine cannot try many accounts fast.
//! - **Wrong passwords per username and address**: the first few are free; after that each
//!   costs a wait that doubles, up to [`MAX_BACKOFF`] — never a lock. Only failures count, a
//!   success clears them, and they are the address's own: whoever floods an account with
//!   guesses from one address does not stop its owner signing in from another.
//! - **Registrations per client address**: a burst of N, refilled at N an hour
//!   (`MINITWIT_REGISTRATIONS_PER_HOUR`).
//!
//! The simulator's API is never limited: a 429 would count as an error in its run. The
//! budgets live in PostgreSQL (`attempt_budgets`, `sign_in_failures`) so that replicas behind
//! a load balancer spend from the same ones: a registration's check is one statement, a
//! sign-in's two (its address's budget, and the wait its wrong passwords set) and one more
//! for its outcome.

use std::net::IpAddr;
use std::time::Duration;

use sqlx::PgPool;

/// Wrong passwords per username and address before they start to cost a wait.
const FREE_FAILURES: i32 = 3;
/// The longest wait a run of wrong passwords costs: long enough to make guessing hopeless
/// (at most one guess a minute per account and address), short enough to lock no one out.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A rate budget: a burst of `burst` attempts, refilled at one every `interval`.
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// Its name in `attempt_budgets`.
    name: &'static str,
    burst: u32,
    interval: Duration,
}

impl Rate {
    fn per(name: &'static str, burst: u32, period: Duration) -> Self {
        let burst = burst.max(1);
        Self {
            name,
            burst,
            interval: period / burst,
        }
    }
}

/// The budgets, on the database every replica shares.
#[derive(Clone)]
pub struct AttemptBudgets {
    pool: PgPool,
    sign_ins: Rate,
    registrations: Rate,
}

impl AttemptBudgets {
    /// Budgets of `sign_ins_per_minute` sign-in attempts and `registrations_per_hour`
    /// registrations per client address (each at least one), kept in `pool`.
    pub fn new(pool: PgPool, sign_ins_per_minute: u32, registrations_per_hour: u32) -> Self {
        Self {
            pool,
            sign_ins: Rate::per(
                "sign-in by address",
                sign_ins_per_minute,
                Duration::from_secs(60),
            ),
            registrations: Rate::per(
                "registration by address",
                registrations_per_hour,
                Duration::from_secs(3600),
            ),
        }
    }

    /// Spends a sign-in attempt of `address` on `username`: `Err` says how long until it may
    /// try (its address's budget is spent, or its wrong passwords for that username cost a
    /// wait). An attempt refused by the backoff spends nothing.
    pub async fn sign_in_attempt(
        &self,
        address: IpAddr,
        username: &str,
    ) -> Result<Result<(), Duration>, sqlx::Error> {
        if !domain::registration::is_storable(username) {
            // No account has such a name, and PostgreSQL could not compare it: only the
            // address's budget applies.
            return self.spend(self.sign_ins, address).await;
        }
        let backoff: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM retry_at - now())::float8 FROM sign_in_failures \
             WHERE username = $1 AND address = $2::inet AND retry_at > now()",
        )
        .bind(username)
        .bind(address.to_string())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(seconds) = backoff {
            return Ok(Err(seconds_to_wait(seconds)));
        }
        self.spend(self.sign_ins, address).await
    }

    /// Records the outcome of a sign-in that was let through: a wrong password adds to the
    /// failures of `address` on `username` (and, past the free ones, sets the wait before
    /// the next try); a right one clears them.
    pub async fn sign_in_outcome(
        &self,
        address: IpAddr,
        username: &str,
        succeeded: bool,
    ) -> Result<(), sqlx::Error> {
        if !domain::registration::is_storable(username) {
            return Ok(());
        }
        if succeeded {
            sqlx::query("DELETE FROM sign_in_failures WHERE username = $1 AND address = $2::inet")
                .bind(username)
                .bind(address.to_string())
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        // The wait after the n-th failure: none for the free ones, then 1 s, 2 s, 4 s, …,
        // capped.
        sqlx::query(
            "INSERT INTO sign_in_failures AS f (username, address, failures, retry_at) \
             VALUES ($1, $2::inet, 1, now()) \
             ON CONFLICT (username, address) DO UPDATE SET \
                 failures = f.failures + 1, \
                 retry_at = now() + make_interval(secs => CASE \
                     WHEN f.failures + 1 <= $3 THEN 0 \
                     ELSE least($4, power(2, least(f.failures + 1 - $3 - 1, 30))) END)",
        )
        .bind(username)
        .bind(address.to_string())
        .bind(FREE_FAILURES)
        .bind(MAX_BACKOFF.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends a registration of `address`: `Err` says how long until it may register.
    pub async fn registration_attempt(
        &self,
        address: IpAddr,
    ) -> Result<Result<(), Duration>, sqlx::Error> {
        self.spend(self.registrations, address).await
    }

    /// Spends one attempt from `rate`'s budget of `address`, in one statement: allowed while
    /// the time the budget is full again lies less than the burst ahead (a generic cell rate).
    async fn spend(
        &self,
        rate: Rate,
        address: IpAddr,
    ) -> Result<Result<(), Duration>, sqlx::Error> {
        let interval = rate.interval.as_secs_f64();
        let tolerance = interval * f64::from(rate.burst - 1);
        // The row as it was before this statement, for the wait of a refused attempt: a
        // statement's own changes are not visible to its other parts.
        let (spent, ahead): (bool, Option<f64>) = sqlx::query_as(
            "WITH spent AS ( \
                 INSERT INTO attempt_budgets AS b (budget, holder, full_at) \
                 VALUES ($1, $2, now() + make_interval(secs => $3)) \
                 ON CONFLICT (budget, holder) DO UPDATE \
                     SET full_at = greatest(b.full_at, now()) + make_interval(secs => $3) \
                     WHERE greatest(b.full_at, now()) <= now() + make_interval(secs => $4) \
                 RETURNING true) \
             SELECT EXISTS (SELECT 1 FROM spent), \
                    (SELECT extract(epoch FROM full_at - now())::float8 FROM attempt_budgets \
                     WHERE budget = $1 AND holder = $2)",
        )
        .bind(rate.name)
        .bind(address.to_string())
        .bind(interval)
        .bind(tolerance)
        .fetch_one(&self.pool)
        .await?;
        if spent {
            return Ok(Ok(()));
        }
        Ok(Err(seconds_to_wait(ahead.unwrap_or(interval) - tolerance)))
    }

    /// Forgets budgets that have refilled and failures whose wait is long over, so the tables
    /// stay as small as the set of recent clients. Called now and then.
    pub async fn forget_idle(&self) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM attempt_budgets WHERE full_at < now()")
            .execute(&self.pool)
            .await?;
        // A day without a wrong guess from there starts that address's count afresh.
        sqlx::query("DELETE FROM sign_in_failures WHERE retry_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A wait of `seconds`, rounded up to whole seconds as `Retry-After` and the page say it.
fn seconds_to_wait(seconds: f64) -> Duration {
    Duration::from_secs(seconds.max(0.0).ceil().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_refills_one_attempt_per_interval() {
        let rate = Rate::per("test", 10, Duration::from_secs(60));
        assert_eq!(rate.interval, Duration::from_secs(6));
        let at_least_one = Rate::per("test", 0, Duration::from_secs(60));
        assert_eq!(at_least_one.burst, 1);
    }

    #[test]
    fn waits_are_whole_seconds_and_never_zero() {
        assert_eq!(seconds_to_wait(0.2), Duration::from_secs(1));
        assert_eq!(seconds_to_wait(4.1), Duration::from_secs(5));
        assert_eq!(seconds_to_wait(-3.0), Duration::from_secs(1));
    }
}

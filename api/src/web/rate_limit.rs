//! Limits on sign-in attempts, against password guessing.
//!
//! Two budgets, both of which an attempt must fit: one per client address (one machine trying
//! many accounts) and one per username (many machines trying one account). Each allows a
//! burst of N and refills at N a minute (GCRA, via `governor`). Only the browser's sign-in is
//! limited; the simulator's API never is — a 429 would count as an error in its run.
//!
//! The budgets are per replica, in memory: behind a load balancer with R replicas an attacker
//! gets at most R times the budget, which still turns millions of guesses into a handful.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderName;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::WebState;

/// The sign-in budgets of this replica.
pub struct LoginLimiter {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_username: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl LoginLimiter {
    /// Budgets of `attempts_per_minute` (at least one) for each address and each username.
    pub fn new(attempts_per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(attempts_per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute);
        Self {
            by_address: RateLimiter::keyed(quota),
            by_username: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Spends one attempt from both budgets; `Err` says how long until one is left. An
    /// attempt refused by one budget does not spend the other's.
    pub fn check(&self, address: IpAddr, username: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        self.by_address
            .check_key(&address)
            .map_err(|not_until| not_until.wait_time_from(now))?;
        self.by_username
            .check_key(&username.to_owned())
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Forgets keys whose budget has fully refilled, so the maps stay as small as the set of
    /// recent clients. Called now and then.
    pub fn forget_idle(&self) {
        self.by_address.retain_recent();
        self.by_username.retain_recent();
        self.by_address.shrink_to_fit();
        self.by_username.shrink_to_fit();
    }
}

/// The client's address: from the header a trusted proxy sets, if configured (and present
/// and readable), else the connection's peer.
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<WebState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let from_proxy = state
            .client_ip_header
            .as_ref()
            .and_then(|name| forwarded_address(parts, name));
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        Ok(Self(
            from_proxy.or(peer).unwrap_or(IpAddr::from([0, 0, 0, 0])),
        ))
    }
}

/// The address in `header`; for a list (`X-Forwarded-For`), the last entry — the one the
/// trusted proxy itself appended, which the client cannot choose.
fn forwarded_address(parts: &Parts, header: &HeaderName) -> Option<IpAddr> {
    let value = parts.headers.get(header)?.to_str().ok()?;
    value.rsplit(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_attempts_wait() {
        let limiter = LoginLimiter::new(3);
        let address = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..3 {
            assert!(limiter.check(address, "alice").is_ok());
        }
        let wait = limiter.check(address, "alice").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
    }

    #[test]
    fn each_address_and_each_username_has_its_own_budget() {
        let limiter = LoginLimiter::new(2);
        let first = IpAddr::from([10, 0, 0, 1]);
        let second = IpAddr::from([10, 0, 0, 2]);
        // One address, many usernames: the address budget runs out.
        assert!(limiter.check(first, "a").is_ok());
        assert!(limiter.check(first, "b").is_ok());
        assert!(limiter.check(first, "c").is_err());
        // Many addresses, one username: the username budget runs out.
        assert!(limiter.check(second, "victim").is_ok());
        let third = IpAddr::from([10, 0, 0, 3]);
        assert!(limiter.check(third, "victim").is_ok());
        let fourth = IpAddr::from([10, 0, 0, 4]);
        assert!(limiter.check(fourth, "victim").is_err());
    }
}

//! Password hashing: argon2id, off the async runtime, a bounded number at a time.
//!
//! A hash costs tens of milliseconds of CPU and 19 MiB of memory (OWASP's argon2id minimum:
//! m = 19 MiB, t = 2, p = 1). On the runtime's threads it would stall every other request;
//! unbounded, a burst of registrations could exhaust memory. So hashing runs on the blocking
//! pool behind a semaphore sized to the CPUs.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::PasswordHash;
use tokio::sync::Semaphore;

/// Hashes passwords with bounded concurrency.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    /// At most `concurrency` hashes in flight.
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Hashes `password` into a PHC string with a fresh salt.
    pub async fn hash(&self, password: String) -> anyhow::Result<PasswordHash> {
        let _permit = self.permits.acquire().await.context("hasher shut down")?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| PasswordHash::new(hash.to_string()))
                .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
        })
        .await
        .context("the hashing task panicked")?
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHash as ParsedHash, PasswordVerifier};

    use super::*;

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let hasher = PasswordHasher::new(2);
        let first = hasher.hash("\\\"'{<".into()).await.unwrap();
        let second = hasher.hash("\\\"'{<".into()).await.unwrap();
        assert!(first
            .as_str()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_ne!(first, second, "each hash has its own salt");
        let parsed = ParsedHash::new(first.as_str()).unwrap();
        assert!(argon2().verify_password(b"\\\"'{<", &parsed).is_ok());
        assert!(argon2().verify_password(b"wrong", &parsed).is_err());
    }
}

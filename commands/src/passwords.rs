//! Password hashing and verification, off the async runtime, a bounded number at a time.
//!
//! New hashes are argon2id PHC strings with OWASP's minimum parameters (m = 19 MiB, t = 2,
//! p = 1). Verification also accepts what accounts may carry from elsewhere:
//!
//! - argon2 PHC strings with other parameters, variants (argon2i, argon2d) or version;
//! - werkzeug's hashes, which the original Python MiniTwit stored (the `werkzeug`
//!   submodule): `pbkdf2:…` and `scrypt:…`, and from before werkzeug 2.3 `sha1$…` (the
//!   original's default, and the course's 2026 hand-out's), `md5$…`, `sha256$…`, `sha512$…`
//!   and `plain$$…`.
//!
//! Anything that verifies but is not current argon2id is reported as
//! [`Verification::Match`] with `needs_upgrade`, so that the login which has just proved the
//! password can store a fresh hash: besides registration, a login is the only time the server
//! has the plain password to hash.
//!
//! A hash costs tens of milliseconds of CPU and 19 MiB of memory, and a legacy check is no
//! cheaper (werkzeug's pbkdf2 defaults are 600,000 or 1,000,000 HMAC rounds, its scrypt
//! default takes 32 MiB). On the runtime's threads that would stall every other request;
//! unbounded, a burst of registrations or logins could exhaust memory. So hashing *and*
//! verifying run on the blocking pool, a bounded number at a time, in two pools: sign-ins
//! (verifying, and the upgrade of a hash a sign-in has just proved) get as many at once as
//! there are CPUs, and new passwords (registrations) half that, apart. A flood of
//! registrations — which the simulator's API cannot refuse — thus never holds a sign-in up.
//!
//! A stored hash in no known format, or a malformed one, is a [`HashFormatError`] — not a
//! mismatch: it means corrupt or foreign data, which "wrong password" would hide from the
//! operators. Its messages never quote the hash.

mod werkzeug;

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::PasswordHash;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Hashes and verifies passwords with bounded concurrency.
#[derive(Clone)]
pub struct PasswordHasher {
    /// Verifications, and the re-hashing of a password a sign-in has just proved.
    sign_ins: Arc<Semaphore>,
    /// Hashes of new passwords: registrations.
    new_passwords: Arc<Semaphore>,
}

/// The outcome of checking a password against a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verification {
    /// The password is not the one the hash was made from.
    Mismatch,
    /// The password is right. `needs_upgrade` says the hash is not current argon2id and should
    /// be replaced by [`PasswordHasher::hash`] of the same password.
    Match { needs_upgrade: bool },
}

/// A stored hash that cannot be verified at all. The messages name the scheme and the problem
/// but never include any part of the hash (or, of course, the password).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashFormatError {
    /// Neither an argon2 PHC string nor a werkzeug hash.
    #[error("the stored password hash is in no format this server can verify")]
    Unrecognised,
    /// A known scheme, but not a hash it could have produced.
    #[error("the stored {scheme} password hash is malformed: {reason}")]
    Malformed {
        scheme: &'static str,
        reason: &'static str,
    },
    /// Well-formed, but with parameters this server refuses to compute (an unsupported digest,
    /// or a cost that could exhaust memory or a CPU).
    #[error("the stored {scheme} password hash is not supported: {reason}")]
    Unsupported {
        scheme: &'static str,
        reason: &'static str,
    },
}

impl PasswordHasher {
    /// At most `concurrency` sign-in verifications in flight, and apart from them, half as
    /// many (at least one) hashes of new passwords.
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            sign_ins: Arc::new(Semaphore::new(concurrency)),
            new_passwords: Arc::new(Semaphore::new((concurrency / 2).max(1))),
        }
    }

    /// Hashes a new account's `password` into a PHC string with a fresh salt.
    pub async fn hash(&self, password: String) -> anyhow::Result<PasswordHash> {
        self.run_blocking(&self.new_passwords, move || hash_blocking(&password))
            .await?
    }

    /// Hashes `password` again, as a sign-in that has just proved it replaces an outdated
    /// hash: in the sign-ins' pool, so registrations do not hold it up.
    pub async fn rehash(&self, password: String) -> anyhow::Result<PasswordHash> {
        self.run_blocking(&self.sign_ins, move || hash_blocking(&password))
            .await?
    }

    /// Checks `password` against `stored`. A wrong password is `Ok(Mismatch)`; an error means
    /// the stored hash is unusable (a [`HashFormatError`] inside the `anyhow::Error`) or the
    /// verification task failed.
    pub async fn verify(
        &self,
        password: String,
        stored: PasswordHash,
    ) -> anyhow::Result<Verification> {
        let verification = self
            .run_blocking(&self.sign_ins, move || {
                verify_blocking(password.as_bytes(), stored.as_str())
            })
            .await??;
        Ok(verification)
    }

    /// Runs CPU- and memory-heavy `work` on the blocking pool once a permit of `pool` is
    /// free.
    async fn run_blocking<T: Send + 'static>(
        &self,
        pool: &Arc<Semaphore>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        // The permit moves into the task rather than living in this future: if the caller
        // is cancelled (a client gone, a timeout), the blocking work still runs to its end,
        // and it must go on counting against the limit until it does.
        let permit = Arc::clone(pool)
            .acquire_owned()
            .await
            .context("hasher shut down")?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .context("the password hashing task panicked")
    }
}

/// The synchronous core of [`PasswordHasher::hash`] and [`PasswordHasher::rehash`].
fn hash_blocking(password: &str) -> anyhow::Result<PasswordHash> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| PasswordHash::new(hash.to_string()))
        .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
}

/// The parameters of every new hash; a stored argon2 hash with anything else gets upgraded.
/// The output length is spelled out (it is the crate's default) so that it is compared too.
fn current_params() -> Params {
    Params::new(19 * 1024, 2, 1, Some(Params::DEFAULT_OUTPUT_LEN))
        .expect("constant argon2 parameters are valid")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, current_params())
}

/// The synchronous core of [`PasswordHasher::verify`]: CPU-heavy, so never on the runtime.
fn verify_blocking(password: &[u8], stored: &str) -> Result<Verification, HashFormatError> {
    // PHC strings start with `$`; werkzeug's start with their method name.
    if stored.starts_with('$') {
        verify_argon2(password, stored)
    } else if werkzeug::verify(password, stored)? {
        // werkzeug hashes are verified only to be replaced.
        Ok(Verification::Match {
            needs_upgrade: true,
        })
    } else {
        Ok(Verification::Mismatch)
    }
}

/// Largest argon2 memory cost accepted, in KiB (256 MiB, 13 times ours): a stored hash asking
/// for more is refused rather than allowed to allocate it, per verification, `concurrency`
/// times over. The same bound as for werkzeug's scrypt.
const ARGON2_MAX_M_COST: u32 = 256 * 1024;

/// Largest argon2 work (memory in KiB times passes) accepted: four passes over 256 MiB, about
/// 27 times our own cost, enough for RFC 9106's 64 MiB, t = 3 — but not minutes of CPU.
const ARGON2_MAX_WORK: u64 = 4 * 256 * 1024;

fn verify_argon2(password: &[u8], stored: &str) -> Result<Verification, HashFormatError> {
    let malformed = |reason| HashFormatError::Malformed {
        scheme: "argon2",
        reason,
    };
    let unsupported = |reason| HashFormatError::Unsupported {
        scheme: "argon2",
        reason,
    };

    // The identifier first: `$2b$` (bcrypt), `$pbkdf2-sha256$` and other PHC-style schemes are
    // not argon2 hashes gone bad but formats we don't know.
    let identifier = stored[1..].split('$').next().unwrap_or_default();
    let algorithm: Algorithm = identifier
        .parse()
        .map_err(|_| HashFormatError::Unrecognised)?;

    // The password-hash crate's error messages can quote a character of the input, so its
    // errors are replaced, not wrapped.
    let phc = argon2::PasswordHash::new(stored).map_err(|_| malformed("not a valid PHC string"))?;
    // The reference implementation (libargon2) reads a missing `v=` as version 1.0 (0x10), the
    // format's original; the RustCrypto crate would assume 1.3 and silently mismatch.
    let version = match phc.version {
        None => Version::V0x10,
        Some(version) => Version::try_from(version).map_err(|_| malformed("unknown version"))?,
    };
    let params = Params::try_from(&phc).map_err(|_| malformed("invalid parameters"))?;
    // Without both, the crate's own verifier would answer "wrong password"; it is corrupt data.
    let salt = phc.salt.ok_or(malformed("no salt"))?;
    let expected = phc.hash.ok_or(malformed("no digest"))?;

    if params.m_cost() > ARGON2_MAX_M_COST {
        return Err(unsupported("memory cost above 256 MiB"));
    }
    if u64::from(params.m_cost()) * u64::from(params.t_cost()) > ARGON2_MAX_WORK {
        return Err(unsupported("memory cost times passes too high"));
    }

    let mut salt_buffer = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_buffer)
        .map_err(|_| malformed("salt is not base64"))?;
    let mut computed = vec![0u8; expected.len()];
    let needs_upgrade =
        algorithm != Algorithm::Argon2id || version != Version::V0x13 || params != current_params();
    Argon2::new(algorithm, version, params)
        .hash_password_into(password, salt, &mut computed)
        .map_err(|_| malformed("parameters rejected by argon2"))?;

    if bool::from(computed.ct_eq(expected.as_bytes())) {
        Ok(Verification::Match { needs_upgrade })
    } else {
        Ok(Verification::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use argon2::password_hash::{PasswordHash as ParsedHash, PasswordVerifier};

    use super::*;

    const ODD: &str = "\\\"'{<é";

    fn stored(hash: &str) -> PasswordHash {
        PasswordHash::new(hash.to_owned())
    }

    fn format_error(result: anyhow::Result<Verification>) -> HashFormatError {
        *result
            .expect_err("expected an error")
            .downcast_ref::<HashFormatError>()
            .expect("expected a HashFormatError")
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let hasher = PasswordHasher::new(2);
        let first = hasher.hash(ODD.into()).await.unwrap();
        let second = hasher.hash(ODD.into()).await.unwrap();
        assert!(first
            .as_str()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_ne!(first, second, "each hash has its own salt");
        // Cross-checked with the argon2 crate's own verifier…
        let parsed = ParsedHash::new(first.as_str()).unwrap();
        assert!(argon2().verify_password(ODD.as_bytes(), &parsed).is_ok());
        assert!(argon2().verify_password(b"wrong", &parsed).is_err());
        // …and with ours: a fresh hash is current.
        assert_eq!(
            hasher.verify(ODD.into(), first.clone()).await.unwrap(),
            Verification::Match {
                needs_upgrade: false
            }
        );
        assert_eq!(
            hasher.verify("wrong".into(), first).await.unwrap(),
            Verification::Mismatch
        );
    }

    // The argon2 fixtures below come from another implementation, libargon2 through Python's
    // argon2-cffi 25.1.0: `argon2.low_level.hash_secret(pw.encode(), os.urandom(16),
    // time_cost=t, memory_cost=m, parallelism=p, hash_len=32, type=…, version=…)`, each
    // checked with its `verify_secret` (right password accepted, wrong one rejected).

    /// argon2id v19, m=19456, t=2, p=1 (our parameters), password `ODD`.
    const ARGON2_CURRENT: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$Xr8gq0BnD3rvXyGo17h7Uw$XNaokBJ8SEKeQHlI0uzXe0WAhd9zR1Z1qa9mBPDcPg0";
    /// argon2id v19, m=4096, t=3, p=1, password "correct horse".
    const ARGON2_OTHER_PARAMS: &str =
        "$argon2id$v=19$m=4096,t=3,p=1$2t8cjOp7/n5QSfOLnp2dVg$t+jug4CBkNS1AoNcgpqNBQypVu4wmzZZFThuvtz4dno";
    /// argon2i v19, m=4096, t=3, p=1, password "correct horse".
    const ARGON2I: &str =
        "$argon2i$v=19$m=4096,t=3,p=1$dOY2m8+bksvfb47FJ8ZfMA$/bDEslAnKUeaw6Nb1Tiw5SU73yee/1HlzPo74J9kxBI";
    /// argon2id v16 (1.0), m=4096, t=3, p=1, password "correct horse".
    const ARGON2_V16: &str =
        "$argon2id$v=16$m=4096,t=3,p=1$ET2Dlxy6iR4L8YUVoNFVBg$IPwegFfdrgZsFn+ZCzSrq//rOp/UYFs+QUpPwuMaxGM";
    /// `ARGON2_V16` with its `$v=16` removed; argon2-cffi still verifies it, since libargon2
    /// reads a missing version as 1.0.
    const ARGON2_NO_VERSION: &str =
        "$argon2id$m=4096,t=3,p=1$ET2Dlxy6iR4L8YUVoNFVBg$IPwegFfdrgZsFn+ZCzSrq//rOp/UYFs+QUpPwuMaxGM";

    #[tokio::test]
    async fn argon2_with_current_parameters_needs_no_upgrade() {
        let hasher = PasswordHasher::new(1);
        assert_eq!(
            hasher
                .verify(ODD.into(), stored(ARGON2_CURRENT))
                .await
                .unwrap(),
            Verification::Match {
                needs_upgrade: false
            }
        );
        assert_eq!(
            hasher
                .verify("\\\"'{<e".into(), stored(ARGON2_CURRENT))
                .await
                .unwrap(),
            Verification::Mismatch
        );
    }

    #[test]
    fn argon2_with_other_parameters_variant_or_version_needs_an_upgrade() {
        for hash in [ARGON2_OTHER_PARAMS, ARGON2I, ARGON2_V16, ARGON2_NO_VERSION] {
            assert_eq!(
                verify_blocking(b"correct horse", hash),
                Ok(Verification::Match {
                    needs_upgrade: true
                }),
                "{hash}"
            );
            assert_eq!(
                verify_blocking(b"correct horsf", hash),
                Ok(Verification::Mismatch),
                "{hash}"
            );
        }
        // The same hash read as version 1.3 is a different computation.
        let as_v19 = ARGON2_V16.replace("v=16", "v=19");
        assert_eq!(
            verify_blocking(b"correct horse", &as_v19),
            Ok(Verification::Mismatch)
        );
    }

    #[test]
    fn argon2_output_length_is_a_parameter_too() {
        let params = Params::new(19 * 1024, 2, 1, Some(16)).unwrap();
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            verify_blocking(b"pw", &hash),
            Ok(Verification::Match {
                needs_upgrade: true
            })
        );
    }

    #[test]
    fn malformed_or_unknown_argon2_hashes_are_errors() {
        let (salt, digest) = (
            "2t8cjOp7/n5QSfOLnp2dVg",
            "t+jug4CBkNS1AoNcgpqNBQypVu4wmzZZFThuvtz4dno",
        );
        let unrecognised = [
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
            format!("$pbkdf2-sha256$29000${salt}${digest}"),
            "$".to_owned(),
            "$$".to_owned(),
        ];
        for hash in &unrecognised {
            assert_eq!(
                verify_blocking(b"pw", hash),
                Err(HashFormatError::Unrecognised),
                "{hash}"
            );
        }
        let malformed = [
            "$argon2id$v=19$m=4096,t=3,p=1".to_owned(),
            format!("$argon2id$v=19$m=4096,t=3,p=1${salt}"),
            format!("$argon2id$v=17$m=4096,t=3,p=1${salt}${digest}"),
            format!("$argon2id$v=19$m=4096,t=0,p=1${salt}${digest}"),
            format!("$argon2id$v=19$m=4096,t=3,p=1,x=2${salt}${digest}"),
            format!("$argon2id$v=19$m=4096,t=3,p=1${salt}$***"),
            format!("$argon2id$v=19$m=4096,t=3,p=1$c2FsdA${digest}"),
        ];
        for hash in &malformed {
            assert!(
                matches!(
                    verify_blocking(b"pw", hash),
                    Err(HashFormatError::Malformed { .. })
                ),
                "{hash}"
            );
        }
        let absurd = [
            format!("$argon2id$v=19$m=4194304,t=1,p=1${salt}${digest}"),
            format!("$argon2id$v=19$m=262144,t=5,p=1${salt}${digest}"),
        ];
        for hash in &absurd {
            assert!(
                matches!(
                    verify_blocking(b"pw", hash),
                    Err(HashFormatError::Unsupported { .. })
                ),
                "{hash}"
            );
        }
    }

    /// Made with werkzeug 3.1.9: `generate_password_hash(ODD, method="pbkdf2:sha256:1000")`.
    const WERKZEUG_ODD: &str = "pbkdf2:sha256:1000$BFFRAtBbrD8VDh7Q$dacdea1120f64f2e6ddd654b48c4f4183d2c4f1517a9a77a30a2e90b585bfa1a";

    #[tokio::test]
    async fn werkzeug_hashes_verify_through_the_hasher_and_need_an_upgrade() {
        // The second: werkzeug 2.2's `sha1` method, as the course's 2026 hand-out holds them.
        let hasher = PasswordHasher::new(1);
        for hash in [
            WERKZEUG_ODD,
            "sha1$A3SP4i75$ebdc5ed5d9e89562f7e4e80aad504c28814e0db4",
        ] {
            assert_eq!(
                hasher.verify(ODD.into(), stored(hash)).await.unwrap(),
                Verification::Match {
                    needs_upgrade: true
                },
                "{hash}"
            );
            assert_eq!(
                hasher.verify("wrong".into(), stored(hash)).await.unwrap(),
                Verification::Mismatch,
                "{hash}"
            );
        }
    }

    #[tokio::test]
    async fn unusable_hashes_are_typed_errors_that_do_not_quote_the_hash() {
        let hasher = PasswordHasher::new(1);
        for hash in [
            "",
            "sha1$SALTSALT$nothexnothex",
            "sha256$salt$abcdef",
            "pbkdf2:md5:1$a$b",
            "pbkdf2:sha256:1000",
            "pbkdf2:sha256:1000$SALTSALT$nothexnothex",
            "scrypt:3:8:1$SALTSALT$abcd",
            "$argon2id$v=19$m=4096,t=3,p=1$SALTSALT",
        ] {
            let result = hasher.verify("secret password".into(), stored(hash)).await;
            let error = result.expect_err(hash);
            assert!(error.downcast_ref::<HashFormatError>().is_some(), "{hash}");
            for shown in [
                format!("{error}"),
                format!("{error:#}"),
                format!("{error:?}"),
            ] {
                assert!(!shown.contains("SALTSALT"), "{shown}");
                assert!(!shown.contains("nothex"), "{shown}");
                assert!(!shown.contains("secret"), "{shown}");
            }
        }
        assert_eq!(
            format_error(hasher.verify("pw".into(), stored("")).await),
            HashFormatError::Unrecognised
        );
    }

    #[tokio::test]
    async fn verifications_wait_for_a_sign_in_permit_but_never_for_registrations() {
        let hasher = PasswordHasher::new(1);
        // Registrations holding every permit of theirs do not hold a sign-in up.
        let registrations = hasher.new_passwords.clone().acquire_owned().await.unwrap();
        let verified = tokio::time::timeout(
            Duration::from_secs(5),
            hasher.verify(ODD.into(), stored(WERKZEUG_ODD)),
        )
        .await;
        assert!(
            verified.is_ok(),
            "a sign-in goes ahead of waiting registrations"
        );
        drop(registrations);
        let permit = hasher.sign_ins.clone().acquire_owned().await.unwrap();
        // A cheap verification (a few milliseconds) that would be long done by the end of
        // the sleep if it did not wait.
        let verifying = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.verify(ODD.into(), stored(WERKZEUG_ODD)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !verifying.is_finished(),
            "verification waits for the permit"
        );
        drop(permit);
        assert_eq!(
            verifying.await.unwrap().unwrap(),
            Verification::Match {
                needs_upgrade: true
            }
        );
    }

    #[tokio::test]
    async fn a_cancelled_caller_keeps_its_permit_until_the_work_is_done() {
        let hasher = PasswordHasher::new(1);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let caller = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .run_blocking(&hasher.sign_ins, move || {
                        started_tx.send(()).unwrap();
                        finish_rx.recv().unwrap();
                    })
                    .await
            }
        });
        started_rx.await.unwrap();
        // The caller goes away (a client hung up, a timeout) while the work is running.
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(
            hasher.sign_ins.available_permits(),
            0,
            "the blocking work still runs, so it still counts"
        );
        finish_tx.send(()).unwrap();
        // And the permit comes back once the work has finished.
        let permit = tokio::time::timeout(Duration::from_secs(5), hasher.sign_ins.acquire()).await;
        assert!(permit.is_ok());
    }
}

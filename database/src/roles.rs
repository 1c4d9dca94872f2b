//! The database roles of a deployment that separates them: the owner, which migrates and runs
//! the admin tool; [`SERVER_ROLE`], which the servers connect as; and [`READER_ROLE`], which
//! reads the log and nothing else (Grafana's). The migrations create and grant the two. This
//! module owns what the code needs to know about them: their names, whether a pool has more
//! power than it needs, and setting a role's password without the password ever reaching
//! PostgreSQL.

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pbkdf2::hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// The role the servers connect as: it may read and append events and maintain the views,
/// the checkpoints, `latest`, the sessions and the attempt budgets; it may not change or
/// delete an event, nor create, alter or drop anything.
pub const SERVER_ROLE: &str = "minitwit_server";

/// The role that may read the event log and nothing else.
pub const READER_ROLE: &str = "minitwit_reader";

/// PostgreSQL's own default iteration count for SCRAM-SHA-256 verifiers.
const SCRAM_ITERATIONS: u32 = 4096;

/// Whether the role `pool` connects as may rewrite history: change or delete events. A
/// server that can is running with the owner's power (a single-role deployment), which
/// start-up reports.
pub async fn can_rewrite_events(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT has_table_privilege('events', 'UPDATE') \
             OR has_table_privilege('events', 'DELETE') \
             OR has_table_privilege('events', 'TRUNCATE')",
    )
    .fetch_one(pool)
    .await
}

/// `err` from the owner's work (migrating, creating views) on a server's pool, with what to
/// do about it on top where PostgreSQL refused for want of a privilege: `situation` says
/// what is missing from the database.
pub fn explain_refused_setup(err: anyhow::Error, situation: &str) -> anyhow::Error {
    if lacks_privilege(&err) {
        err.context(format!(
            "{situation}, and this role may not change the schema: run `minitwit-replay \
             migrate` with the owner's DATABASE_URL, then start the server (as {SERVER_ROLE}) \
             again"
        ))
    } else {
        err
    }
}

/// Whether `err` came from PostgreSQL refusing for want of a privilege (SQLSTATE 42501).
fn lacks_privilege(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(|db| db.code())
            .is_some_and(|code| code == "42501")
    })
}

/// Gives `role` (one of this module's) `password`, so that it can log in over password
/// authentication. Only its SCRAM verifier is sent, as `psql`'s `\password` does: the
/// password itself never reaches the server, so it cannot turn up in a statement log.
pub async fn set_password(pool: &PgPool, role: &str, password: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        [SERVER_ROLE, READER_ROLE].contains(&role),
        "{role} is not one of MiniTwit's roles"
    );
    anyhow::ensure!(!password.is_empty(), "the password for {role} is empty");
    // A verifier is base64, digits, `$` and `:` only, so it is safe inside the literal; a
    // utility statement takes no parameters.
    sqlx::raw_sql(&format!(
        "ALTER ROLE {role} PASSWORD '{}'",
        scram_verifier(password)
    ))
    .execute(pool)
    .await
    .with_context(|| format!("setting the password of the role {role}"))?;
    Ok(())
}

/// The SCRAM-SHA-256 verifier of `password` with a fresh salt (RFC 5802 and 7677), in the
/// form PostgreSQL stores: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
fn scram_verifier(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    scram_verifier_with_salt(password, &salt)
}

/// Whether `verifier` (as `pg_authid` stores it) is the SCRAM-SHA-256 verifier of `password`:
/// how the suites prove that PostgreSQL kept the verifier [`set_password`] sent rather
/// than taking it for a password of its own.
pub fn is_verifier_of(verifier: &str, password: &str) -> bool {
    let salt = verifier
        .strip_prefix(&format!("SCRAM-SHA-256${SCRAM_ITERATIONS}:"))
        .and_then(|rest| rest.split_once('$'))
        .and_then(|(salt, _)| BASE64.decode(salt).ok());
    salt.is_some_and(|salt| scram_verifier_with_salt(password, &salt) == verifier)
}

fn scram_verifier_with_salt(password: &str, salt: &[u8]) -> String {
    // PostgreSQL normalises with SASLprep where it can, and uses the bytes as they are where
    // the password is not a valid SASLprep string; so must the verifier.
    let prepared = stringprep::saslprep(password).unwrap_or(password.into());
    let salted: [u8; 32] =
        pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(prepared.as_bytes(), salt, SCRAM_ITERATIONS);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac_sha256(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example password and salt; the keys computed independently, with Python's
    /// `hashlib.pbkdf2_hmac` and `hmac`. (The suites' `least_privilege` test has PostgreSQL
    /// itself accept a verifier.)
    #[test]
    fn the_verifier_matches_an_independent_computation() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        assert_eq!(
            scram_verifier_with_salt("pencil", &salt),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn each_verifier_has_a_salt_of_its_own_and_checks_only_its_password() {
        let verifier = scram_verifier("pencil");
        assert_ne!(verifier, scram_verifier("pencil"));
        assert!(is_verifier_of(&verifier, "pencil"));
        assert!(!is_verifier_of(&verifier, "pencil "));
        assert!(!is_verifier_of("pencil", "pencil"));
    }
}

//! Whose browser sessions are whose: the statements on `web_session_owners`, which the web
//! pages write at sign-in and which a password change or a forgetting (also the admin
//! tool's) ends sessions through. The sessions themselves are tower-sessions' rows, whose
//! data this crate never reads.

use sqlx::PgExecutor;

/// Records that the saved session `session_id` is `username`'s.
pub async fn record_owner(
    executor: impl PgExecutor<'_>,
    session_id: &str,
    username: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO web_session_owners (session_id, username) VALUES ($1, $2) \
         ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(session_id)
    .bind(username)
    .execute(executor)
    .await?;
    Ok(())
}

/// Ends every session of `username` but `keeping` (the one making a change, if any); returns
/// how many ended. Their live streams end with them (see the `web_sessions_ended` trigger).
pub async fn end_sessions_of(
    executor: impl PgExecutor<'_>,
    username: &str,
    keeping: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let ended = sqlx::query(
        "DELETE FROM web_sessions WHERE id IN ( \
             SELECT session_id FROM web_session_owners \
             WHERE username = $1 AND session_id IS DISTINCT FROM $2)",
    )
    .bind(username)
    .bind(keeping)
    .execute(executor)
    .await?;
    Ok(ended.rows_affected())
}

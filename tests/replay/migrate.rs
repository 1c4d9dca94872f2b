//! `migrate`: the owner's set-up of a database whose servers connect as the server role. A
//! server on a database not set up yet refuses to start and says what to run; after
//! `migrate` it serves, and the role has the password it was given.

use database::roles::{self, READER_ROLE, SERVER_ROLE};
use test_support::app::{refusal_to_start, spawn_app_on};
use test_support::database::TestDatabase;
use test_support::sim_client::assert_no_content;

use crate::tool::{run_ok, scratch_path};

#[tokio::test]
async fn a_server_on_a_database_not_set_up_says_to_migrate_and_serves_after_migrate() {
    // The role belongs to the cluster: another database's migrations create it.
    TestDatabase::create().await;
    let db = TestDatabase::create_bare().await;

    let refused = refusal_to_start(&db.server_url).await;
    assert!(
        refused.contains("the schema is behind this build"),
        "{refused}"
    );
    assert!(refused.contains("minitwit-replay migrate"), "{refused}");
    // Migrated, but without its views, it still cannot start.
    database::connect::migrate(&db.pool).await.unwrap();
    let refused = refusal_to_start(&db.server_url).await;
    assert!(
        refused.contains("the database has no views yet"),
        "{refused}"
    );
    assert!(refused.contains("minitwit-replay migrate"), "{refused}");

    let server_password = scratch_path("migrate", "server-password");
    std::fs::write(&server_password, "correct horse battery\n").unwrap();
    let reader_password = scratch_path("migrate", "reader-password");
    std::fs::write(&reader_password, "staple").unwrap();
    let output = run_ok(
        &db.url,
        &[
            "migrate",
            "--server-password-file",
            server_password.to_str().unwrap(),
            "--reader-password-file",
            reader_password.to_str().unwrap(),
        ],
    )
    .await;
    assert!(output.contains("every view exists"), "{output}");
    for (role, password) in [
        (SERVER_ROLE, "correct horse battery"),
        (READER_ROLE, "staple"),
    ] {
        let stored: String =
            sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
                .bind(role)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert!(
            roles::is_verifier_of(&stored, password),
            "PostgreSQL keeps the verifier of the file's password for {role} (its line break \
             dropped): {stored}"
        );
    }

    // Again: nothing left to do, and that is no error.
    run_ok(&db.url, &["migrate"]).await;
    let app = spawn_app_on(db).await;
    let sim = app.client();
    assert_no_content(sim.register("first", "first@example.com", "pw", None).await);
    assert_no_content(sim.tweet("first", "served by the server role", None).await);
    let messages = sim.user_msgs("first", None, None).await.unwrap();
    assert_eq!(messages.body[0]["content"], "served by the server role");
}

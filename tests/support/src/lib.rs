//! The integration suites' shared harness: a real PostgreSQL with a fresh database per test,
//! the real server (in the test's process or as a child process), and clients that talk to it
//! as the simulator, a browser's forms or a real headless Chromium do.
//!
//! It is only ever a dev-dependency: of `api`, whose suites (`tests/api`, `tests/web`,
//! `tests/ops`, `tests/simulator`) drive the server, and of `replay-tool`, whose suite
//! (`tests/replay`) runs the admin tool beside it. Nothing that ships links it.
//!
//! # Layout
//!
//! - [`database`]: the throwaway PostgreSQL cluster (one per run) and a fresh database per test;
//!   [`log`]: the event log read with its personal fields opened, as the servers see it.
//! - [`app`]: the real server running in the test's process, on random ports.
//! - [`server_process`]: the real `minitwit` binary in a child process, for tests that kill,
//!   restart or multiply it.
//! - [`sim_client`]: a client of the simulator API that talks to it as the simulator does,
//!   and readers of the API's listings.
//! - [`web_client`]: a cookie-keeping client of the browser pages.
//! - [`browser`]: a headless Chromium driven over WebDriver, for the end-to-end tests;
//!   [`accessibility`]: what such a page gives assistive technology (an axe-core audit, the
//!   accessibility tree).
//! - [`write_load`]: simulator-shaped write load for fault tests, and the checks that what the
//!   server acknowledged survived the fault.
//! - [`views`]: the event log and the views beneath the API: appending events directly,
//!   waiting for the projectors, comparing the views with a rebuild.
//!
//! What only a suite can know, the suite hands over: Cargo names a package's binaries
//! (`CARGO_BIN_EXE_minitwit`) only to that package's integration tests, so
//! [`server_process::ServerProcess`] is given the path of the binary it runs.

use std::path::PathBuf;

pub mod accessibility;
pub mod app;
pub mod browser;
pub mod database;
pub mod log;
pub mod server_process;
pub mod sim_client;
pub mod views;
pub mod web_client;
pub mod write_load;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("finding a free port")
        .port()
}

/// Cargo's target directory, the one the running test binary was built in: Cargo puts
/// integration tests in `<target>/<profile>/deps/`. Panics if the binary is elsewhere, rather
/// than scatter the harness's files.
fn target_dir() -> PathBuf {
    let binary = std::env::current_exe().expect("the test binary's path");
    let deps = binary.parent().expect("the test binary is in a directory");
    assert!(
        deps.ends_with("deps"),
        "{} is not in Cargo's <target>/<profile>/deps/, so the harness cannot tell the target \
         directory",
        binary.display()
    );
    deps.ancestors()
        .nth(2)
        .expect("<target>/<profile>/deps has a target directory")
        .to_owned()
}

/// Cargo's scratch directory for integration tests, `<target>/tmp`: the suites'
/// `CARGO_TARGET_TMPDIR`, which Cargo sets only when it compiles an integration test, so this
/// library cannot read it.
fn scratch_dir() -> PathBuf {
    target_dir().join("tmp")
}

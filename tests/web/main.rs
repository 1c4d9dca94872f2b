//! The browser pages' integration suite: the real server against a real PostgreSQL, driven
//! over HTTP like a browser (and, in `end_to_end`, `chat_live`, `chat_rules`, `settings`,
//! `accessibility` and `keyboard`, by a real headless Chromium).

/// The server binary, for [`test_support::server_process::ServerProcess`]: Cargo names it only
/// to this package's integration tests.
const MINITWIT: &str = env!("CARGO_BIN_EXE_minitwit");

mod accessibility;
mod assets;
mod chat;
mod chat_live;
mod chat_rules;
mod cross_site;
mod end_to_end;
mod escaping;
mod keyboard;
mod live;
mod original_suite;
mod pages;
mod paging;
mod sessions;
mod settings;
mod sign_in;

//! The browser pages' integration suite: the real server against a real PostgreSQL, driven
//! over HTTP like a browser (and, in `end_to_end`, by a real headless Chromium).

// The harness is shared with the other suites; this binary uses only part of it.
#[path = "../support/browser.rs"]
mod browser;
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../support/server_process.rs"]
mod server_process;
#[allow(dead_code)]
#[path = "../support/web_client.rs"]
mod web_client;

mod assets;
mod chat;
mod chat_live;
mod cross_site;
mod end_to_end;
mod escaping;
mod live;
mod original_suite;
mod pages;
mod paging;
mod sessions;
mod sign_in;

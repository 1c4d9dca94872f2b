//! Rebuilds this crate when a migration is added or changed: `sqlx::migrate!` embeds the
//! `migrations/` directory at compile time, and Cargo does not otherwise look at it, so a
//! new migration would silently be missing from the binary until some source file changed.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

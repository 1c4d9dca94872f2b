//! The admin tool's integration suite: `minitwit-replay` (the real binary, or its library)
//! against a real PostgreSQL, with the real server running beside it.

mod backup;
mod batching;
mod export_import;
mod forget;
mod legacy;
mod migrate;
mod moderation;
mod people;
mod rebuild;
mod tool;

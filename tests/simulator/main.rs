//! The simulator replay, alone in its binary so that nothing else runs beside it: it holds
//! every request to the simulator's 0.3 s timeout, and other integration tests hold
//! transactions open on purpose, which stalls projection cluster-wide.

// The harness is shared with the `api` suite; this binary uses only part of it.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod helpers;
mod replay;
mod scenario;

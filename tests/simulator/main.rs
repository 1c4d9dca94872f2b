//! The simulator replay, alone in its binary so that nothing else runs beside it: it holds
//! every request to the simulator's 0.3 s timeout, and other integration tests hold
//! transactions open on purpose, which stalls projection cluster-wide.

mod replay;
mod scenario;

//! The test-support library every integration test binary uses, as `mod support;`:
//!
//! - [`run`]: the one way to run the `portsniff` binary and read its JSON lines, and the
//!   fixtures' paths (its items are re-exported here: `support::run`, `support::replay_json`);
//! - [`wire`]: packets and pcap files built by hand;
//! - [`gen`]: the deterministic generator of large captures (also the `gen_capture`
//!   example's engine);
//! - [`live`]: the live harness: root and tool gates that skip on a developer machine and
//!   fail under `CI=true`, reserved loopback ports, a `portsniff` child bounded in time and
//!   killed on panic, network namespaces deleted whatever happens.
//!
//! What only one test binary needs lives beside it and builds on this: `tests/diag/` (the
//! diagnosis tests' listener and client processes, captures and README recipes) and
//! `tests/load/harness.rs` (streamed replays of huge outputs, memory sampling). Every test
//! binary compiles all of `support`, so keeping single-use helpers out of it keeps each
//! binary's build short.
//!
//! Nothing here decides what a test asserts: helpers run things and parse what portsniff
//! printed; the expectations stay in the test files.
#![allow(dead_code)] // each test binary uses its own subset

pub mod gen;
pub mod live;
pub mod run;
pub mod wire;

pub use run::*;

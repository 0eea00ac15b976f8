//! The test-support library every integration test binary uses, as `mod support;`:
//!
//! - [`run`]: the one way to run the `portsniff` binary and read its JSON lines, and the
//!   fixtures' paths (its items are re-exported here: `support::run`, `support::replay_json`);
//! - [`agreement`]: whether a text report's flow lines contradict its final findings
//!   (the live diagnosis tests' text twins and every fixture's replay are checked);
//! - [`live`]: the live harness: root and tool gates that skip on a developer machine and
//!   fail under `CI=true`, reserved loopback ports, a `portsniff` child bounded in time and
//!   killed on panic, network namespaces deleted whatever happens.
//!
//! Beside it, declared by the binaries that use them (`mod wire;` at a test's root finds
//! `tests/wire/mod.rs`, no `#[path]` needed):
//! - `tests/wire/`: packets and pcap files built by hand (offline, alloc, signals, view);
//! - `tests/gen/`: the deterministic generator of large captures, on `wire`'s headers (load,
//!   view, and the `gen_capture` example);
//! - `tests/diag/`: the diagnosis tests' processes, captures and README recipes;
//! - `tests/load/harness.rs`: streamed replays of huge outputs, memory sampling.
//!
//! A module every binary declares is compiled into every binary (0.5-1 s each after a
//! change to the library), so what fewer binaries need is kept out of `support`.
//!
//! Nothing here decides what a test asserts: helpers run things and parse what portsniff
//! printed; the expectations stay in the test files.
#![allow(dead_code)] // each test binary uses its own subset

pub mod agreement;
pub mod live;
pub mod run;

pub use run::*;

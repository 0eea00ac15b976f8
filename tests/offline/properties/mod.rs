//! Property tests: generated packets and segment sequences against the decoder, the flow
//! table, the run's one count (`Evidence`) and (end to end) the real binary.
//!
//! What they hold the code to:
//! - decoding never panics, whatever the bytes and the link type, and what it returns is
//!   consistent (the watched port is on one end; a well-formed packet decodes to exactly
//!   the fields it was built from, even when the snaplen cut its payload);
//! - the flow table gives every connection exactly one final record (also after eviction,
//!   idle timers, superseding SYNs, clocks that go backwards and `finish_all`), never a
//!   pending notice after it, never more packets than it was fed, and the same records in
//!   the same order on every run (its hash map is randomly seeded, the output must not be);
//! - the binary prints byte-identical output on every run of a file, and its summary adds
//!   up (`captured == decoded + skipped + syns_elsewhere`, one final flow line per flow,
//!   only the problem flows but the same summary with `--only-problems`, the exit status
//!   that the problems call for).
//!
//! Case counts are modest so they run in seconds in a debug build; raise them for a deeper
//! search with `PROPTEST_CASES=5000 cargo test --test offline properties::` (that
//! overrides every block's count). The fuzz targets in `fuzz/` search the same ground much longer.

use crate::wire;
use portsniff::decode::{
    decode_ip, Decoder, Encap, Endpoint, HandshakeOptions, IcmpError, LinkType, Segment,
    SegmentKind, TcpFlags, TcpSegment, Timestamp, Unreachable,
};
use portsniff::flow::{
    EndReason, FlowConfig, FlowEvent, FlowRecord, FlowTable, Outcome, Side, TableStats,
};
use portsniff::Evidence;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Output;

const PORT: u16 = 61999;
const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;

/// 2023-11-14, in microseconds: where generated clocks start.
const EPOCH_US: i64 = 1_700_000_000_000_000;

/// `cases` cases, unless `PROPTEST_CASES` says otherwise. Failures are not persisted to
/// a file (an integration test has no `lib.rs` beside it for proptest to anchor one):
/// a failing case prints its minimal input, which is what to turn into a unit test.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

mod binary;
mod decode;
mod ops;
mod table;

use decode::*;
use ops::*;

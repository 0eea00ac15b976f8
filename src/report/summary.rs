//! The end-of-run summary: what the printers lay out. The counts per outcome, SYN
//! retransmissions, resets and TIME_WAIT holders by side and the latency percentiles are
//! the run's one count ([`Evidence`], kept by diagnose); the capture adds its own packet
//! accounting. Nothing here counts flows.

use crate::capture::{CaptureReport, KernelStats};
use crate::decode::SkipCounts;
pub use crate::diagnose::Percentiles;
use crate::diagnose::{Evidence, SystemView};
use crate::flow::TableStats;

/// Everything the summary shows.
pub struct Summary<'a> {
    pub source: &'a str,
    pub live: bool,
    pub link: &'a str,
    pub port: u16,
    /// The run's one count of finished flows.
    pub tally: &'a Evidence,
    pub handshake_rtt: Percentiles,
    pub duration: Percentiles,
    pub packets: u64,
    pub decoded: u64,
    pub syns_elsewhere: u64,
    pub skipped: SkipCounts,
    pub kernel: Option<KernelStats>,
    pub internal_dropped: u64,
    /// The user's filter expression, if any.
    pub expression: Option<&'a str>,
    /// From a file: records that expression rejected (not counted in `packets`).
    pub filtered_out: u64,
    pub table: TableStats,
    pub error: Option<String>,
    /// Live on Linux: listeners, sockets and counters at the end.
    pub system: Option<SystemView>,
    /// Live: what the process ran with after dropping privileges.
    pub credentials: Option<crate::privileges::Credentials>,
    /// Whether the kernel witness ran, and what it saw or why not.
    pub kernel_events: KernelEventsView,
}

/// The summary's `kernel_events`: on with its counts, or off with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelEventsView {
    pub enabled: bool,
    pub why: Option<String>,
    /// Events read from the witness.
    pub events: u64,
    /// Events the ring buffer had no room for, or portsniff could not take in time.
    pub lost: u64,
    /// Events storms counted by kind instead of sending each (past a few thousand drops
    /// a second): the sum of `storm`'s counts.
    pub summarised: u64,
    /// Those counts, by kind, most first.
    pub storm: Vec<crate::kernel::storm::StormCount>,
}

impl KernelEventsView {
    pub fn new(
        missing: Option<&crate::kernel::Unavailable>,
        counts: Option<crate::pipeline::KernelCounts>,
    ) -> KernelEventsView {
        let counts = counts.unwrap_or_default();
        KernelEventsView {
            enabled: missing.is_none(),
            why: missing.map(|m| m.to_string()),
            events: counts.events,
            lost: counts.lost,
            summarised: counts.storm.iter().map(|c| c.count).sum(),
            storm: counts.storm,
        }
    }
}

impl<'a> Summary<'a> {
    pub fn new(
        source: &'a str,
        live: bool,
        link: &'a str,
        port: u16,
        tally: &'a Evidence,
        capture: &CaptureReport,
        table: TableStats,
    ) -> Summary<'a> {
        Summary {
            source,
            live,
            link,
            port,
            tally,
            handshake_rtt: tally.handshake_rtt(),
            duration: tally.duration(),
            packets: capture.packets,
            decoded: capture.decoded,
            syns_elsewhere: capture.syns_elsewhere,
            skipped: capture.skipped,
            kernel: capture.kernel,
            internal_dropped: capture.internal_dropped,
            expression: None,
            filtered_out: capture.filtered_out,
            table,
            error: capture.error.as_ref().map(|e| e.to_string()),
            system: None,
            credentials: None,
            kernel_events: KernelEventsView::default(),
        }
    }
}

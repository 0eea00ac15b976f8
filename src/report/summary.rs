//! The end-of-run summary: counts per outcome, SYN retransmissions, resets and TIME_WAIT
//! holders by side, latency percentiles, and the capture's own packet accounting.

use crate::capture::{CaptureReport, KernelStats};
use crate::decode::SkipCounts;
use crate::diagnose::SystemView;
use crate::flow::{FlowRecord, Outcome, Side, TableStats};
use hdrhistogram::Histogram;

/// p50/p90/p99/max of a latency, in microseconds; `None` when nothing was measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: Some(h.value_at_quantile(0.50)),
            p90: Some(h.value_at_quantile(0.90)),
            p99: Some(h.value_at_quantile(0.99)),
            max: Some(h.max()),
        }
    }
}

/// Accumulates final flow records as they are reported.
pub struct Tally {
    pub outcomes: [u64; Outcome::ALL.len()],
    pub syn_retransmits: u64,
    pub synack_retransmits: u64,
    /// By [`Side::index`].
    pub resets: [u64; 2],
    /// Who closed first, hence holds TIME_WAIT, by [`Side::index`].
    pub time_wait: [u64; 2],
    pub port_reused: u64,
    pub midstream: u64,
    pub retransmits: u64,
    pub zero_windows: u64,
    handshake_rtt: Histogram<u64>,
    duration: Histogram<u64>,
}

/// 3 significant figures, auto-resizing: memory grows with the log of the largest value.
fn histogram() -> Histogram<u64> {
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"))
}

/// Records into an auto-resizing histogram. (`saturating_record` would clamp to the
/// histogram's *current* range instead of growing it.)
fn record(h: &mut Histogram<u64>, value: u64) {
    if h.record(value).is_err() {
        tracing::debug!(value, "latency out of the histogram's range");
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            outcomes: [0; Outcome::ALL.len()],
            syn_retransmits: 0,
            synack_retransmits: 0,
            resets: [0; 2],
            time_wait: [0; 2],
            port_reused: 0,
            midstream: 0,
            retransmits: 0,
            zero_windows: 0,
            handshake_rtt: histogram(),
            duration: histogram(),
        }
    }
}

impl Tally {
    pub fn add(&mut self, r: &FlowRecord) {
        self.outcomes[r.outcome.index()] += 1;
        self.syn_retransmits += u64::from(r.syn_count.saturating_sub(1));
        self.synack_retransmits += u64::from(r.synack_count.saturating_sub(1));
        // Who tore an accepted connection down; a refusal is already its own outcome.
        if let (Some(side), Outcome::Reset | Outcome::HandshakeIncomplete) = (r.reset_by, r.outcome)
        {
            self.resets[side.index()] += 1;
        }
        if r.outcome == Outcome::Closed {
            if let Some(side) = r.closed_first_by {
                self.time_wait[side.index()] += 1;
            }
        }
        self.port_reused += u64::from(r.port_reused);
        self.midstream += u64::from(r.midstream);
        self.retransmits += u64::from(r.retransmits[0]) + u64::from(r.retransmits[1]);
        self.zero_windows += u64::from(r.zero_windows[0]) + u64::from(r.zero_windows[1]);
        if let Some(rtt) = r.handshake_rtt_us {
            record(&mut self.handshake_rtt, rtt);
        }
        record(&mut self.duration, r.duration_us());
    }

    pub fn flows(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn problems(&self) -> u64 {
        Outcome::ALL
            .iter()
            .filter(|o| o.is_problem())
            .map(|o| self.outcomes[o.index()])
            .sum()
    }

    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes[o.index()]
    }

    pub fn resets_by(&self, s: Side) -> u64 {
        self.resets[s.index()]
    }

    pub fn time_wait_on(&self, s: Side) -> u64 {
        self.time_wait[s.index()]
    }

    /// Handshake RTT percentiles of the connections counted so far.
    pub fn handshake_rtt(&self) -> Percentiles {
        Percentiles::of(&self.handshake_rtt)
    }
}

/// Everything the summary shows.
pub struct Summary<'a> {
    pub source: &'a str,
    pub live: bool,
    pub link: &'a str,
    pub port: u16,
    pub tally: &'a Tally,
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
}

impl<'a> Summary<'a> {
    pub fn new(
        source: &'a str,
        live: bool,
        link: &'a str,
        port: u16,
        tally: &'a Tally,
        capture: &CaptureReport,
        table: TableStats,
    ) -> Summary<'a> {
        Summary {
            source,
            live,
            link,
            port,
            tally,
            handshake_rtt: Percentiles::of(&tally.handshake_rtt),
            duration: Percentiles::of(&tally.duration),
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
        }
    }
}

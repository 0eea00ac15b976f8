//! What happened, accumulated once: one [`Evidence::add`] per finished flow. The rules
//! read it to decide, the summary and the live table lay out its counts, and the exit
//! status follows from [`Evidence::problems`].
//!
//! Only counts of what the packets showed live here: no /proc facts (see `host`), no
//! wording, no clock.

use super::host::{FlowProcesses, ProcessInfo};
use super::kernel::KernelEvidence;
use super::syn_meter::SynRate;
use super::windows::{Fate, Timelines};
use crate::decode::{Encap, Endpoint, Timestamp, Unreachable};
use crate::flow::{EndReason, FlowRecord, Outcome, Side};
use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A zero window held this long means the application stopped reading (the flow table
/// sends a live notice at the same mark).
pub const STALL_US: u64 = crate::flow::state::ZERO_WINDOW_STALL_US;
/// At most this many distinct destinations of SYNs elsewhere are remembered.
const ELSEWHERE_CAP: usize = 256;
/// At most this many unanswered connections' endpoints are remembered.
const UNANSWERED_CAP: usize = 256;
/// At most this many tunnels are counted by name; the connections of any further ones
/// are counted together ([`Evidence::other_tunnels`]).
const TUNNELS_CAP: usize = 256;

/// The connections that came through one tunnel or tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSeen {
    pub connections: u64,
    /// Of those, the problems ([`Outcome::is_problem`]).
    pub problems: u64,
}

impl TunnelSeen {
    fn add(&mut self, problem: bool) {
        self.connections += 1;
        self.problems += u64::from(problem);
    }
}

/// How a RST came about, from the packets before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResetContext {
    /// No data either way: right after the handshake.
    AfterHandshake,
    /// The last data came from the peer: the resetting side closed its socket with that
    /// data unread, and Linux answers such a close with RST (RFC 2525 §2.17).
    UnreadData,
    /// Data flowed both ways, the resetter sent last.
    MidTransfer,
    /// The server closed the connection (FIN) before the client's first data, and the
    /// data that came anyway was answered with RST (history `ShAfDr`): it dropped new
    /// connections unread, which is not closing with a request half read.
    ClosedBeforeReading,
}

impl ResetContext {
    pub fn of(r: &FlowRecord, by: Side) -> ResetContext {
        // Zeek's history letters come once each, at their first occurrence: `f` before
        // `D` is the server's FIN before the client's first data.
        let h = r.history.as_bytes();
        let server_fin = h.iter().position(|&c| c == b'f');
        let client_data = h.iter().position(|&c| c == b'D');
        if by == Side::Server && matches!((server_fin, client_data), (Some(f), Some(d)) if f < d) {
            ResetContext::ClosedBeforeReading
        } else if r.bytes[0] + r.bytes[1] == 0 {
            ResetContext::AfterHandshake
        } else if r.last_payload_by == Some(by.other()) {
            ResetContext::UnreadData
        } else {
            ResetContext::MidTransfer
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResetContext::AfterHandshake => "after_handshake",
            ResetContext::UnreadData => "unread_data",
            ResetContext::MidTransfer => "mid_transfer",
            ResetContext::ClosedBeforeReading => "closed_before_reading",
        }
    }
}

impl Serialize for ResetContext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Connection attempts answered by one kind of ICMP error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpSeen {
    pub count: u64,
    pub kind: Unreachable,
    /// Who sent the first of them (a router, a firewall, the host itself).
    pub from: IpAddr,
    /// The server the first of them was about.
    pub server: Endpoint,
    /// How many were sent by the very address they reported about: the server's own
    /// host, which never reports itself unreachable unless a REJECT rule makes it.
    pub from_destination: u64,
}

/// What a side did in a flow that a finding speaks of: the process that did it is named
/// in that finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deed {
    /// Reset an accepted connection.
    Reset(Side),
    /// Held a zero window for [`STALL_US`] or more.
    Stalled(Side),
    /// Closed a connection first: holds its TIME_WAIT.
    ClosedFirst(Side),
}

impl Deed {
    fn side(self) -> Side {
        match self {
            Deed::Reset(s) | Deed::Stalled(s) | Deed::ClosedFirst(s) => s,
        }
    }
}

/// At most this many processes are remembered per [`Deed`].
const NAMED_CAP: usize = 4;

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

/// A latency's counts at or below fixed bounds, its count and exact sum: what a
/// Prometheus histogram exposes. Bucket edges are as exact as the histogram's 3
/// significant figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    /// Values at or below each bound, in the bounds' order (cumulative).
    pub at_or_below: Vec<u64>,
    pub count: u64,
    pub sum_us: u64,
}

impl Buckets {
    fn of(h: &Histogram<u64>, bounds_us: &[u64], sum_us: u64) -> Buckets {
        Buckets {
            at_or_below: bounds_us
                .iter()
                .map(|&b| {
                    if h.is_empty() {
                        0
                    } else {
                        h.count_between(0, b)
                    }
                })
                .collect(),
            count: h.len(),
            sum_us,
        }
    }
}

/// A completed connection's connect delay if it needed its SYN sent again: the SYN gaps
/// up to the answered SYN plus the handshake RTT from it, i.e. from the first SYN to the
/// client's final ACK, which is when the client's connect() returned.
pub(crate) fn slow_connect_delay(r: &FlowRecord) -> Option<u64> {
    let rtt = r.handshake_rtt_us?;
    if r.syn_count < 2 {
        return None;
    }
    let gaps: u64 = r.syn_gaps_us.as_slice().iter().map(|&g| u64::from(g)).sum();
    Some(gaps + rtt)
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

/// Whether an unanswered attempt may have been cut short by the capture's end (see
/// [`Evidence::unanswered_cut`]): its SYN was never retransmitted and the capture ended
/// with it still waiting. Whether it waited less than a retransmission timeout is known
/// only once the capture's end time is ([`Evidence::capture_ended`]).
fn waiting_at_end(r: &FlowRecord) -> bool {
    r.outcome == Outcome::Unanswered && r.end == Some(EndReason::CaptureEnd) && r.syn_count <= 1
}

/// The client's first SYN retransmission comes after 1 s (RFC 6298 §2.1, Linux
/// TCP_TIMEOUT_INIT): a SYN alone that waited less is no evidence of a drop; one that
/// waited longer with no retransmission is (a client that gave up, a spoofed source).
const FIRST_RTO_US: u64 = 1_000_000;

/// What the packets said, accumulated over the run.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// Finished flows by [`Outcome::index`].
    pub outcomes: [u64; Outcome::ALL.len()],
    pub syn_retransmits: u64,
    /// SYN-ACKs sent again, over every flow.
    pub synack_retransmits: u64,
    /// Data/FIN segments sent again.
    pub retransmits: u64,
    pub zero_windows: u64,
    pub port_reused: u64,
    /// The client endpoints of those connections (up to [`NAMED_CAP`] × 16): one port
    /// again and again, or one outside ip_local_port_range, was bound on purpose.
    pub(crate) reused_clients: std::collections::BTreeSet<Endpoint>,
    pub midstream: u64,
    /// Who tore an accepted connection down, and how, by (side, context).
    pub(crate) resets: BTreeMap<(Side, ResetContext), u64>,
    /// Who closed first, hence holds TIME_WAIT, by [`Side::index`].
    pub(crate) closed_first: [u64; 2],
    /// Refused connections per server endpoint.
    pub(crate) refused: BTreeMap<Endpoint, u64>,
    pub(crate) unanswered_syns: u64,
    pub(crate) unanswered_servers: BTreeMap<Endpoint, u64>,
    /// Unanswered attempts the capture's end cut short: one SYN, never retransmitted, and
    /// the capture ended (`-c`, `--duration`, the file) before the client's first
    /// retransmission timer (1 s, RFC 6298 §2.1) could fire. An answer may have come
    /// after the end: they are no evidence of a drop, and not counted in `unanswered_*`.
    pub(crate) unanswered_cut: u64,
    /// When each never-retransmitted SYN still waiting at the capture's end was sent,
    /// until [`Evidence::capture_ended`] sorts the cut ones out.
    waiting_since: Vec<Timestamp>,
    /// Packets seen from each side over every connection, by [`Side::index`]: a side
    /// never seen means a one-sided view (a filter such as `dst port P`).
    pub(crate) packets_from: [u64; 2],
    /// Packets the capture cut inside their IP or TCP header (the snaplen): they reached
    /// no connection. Known when the capture ends ([`crate::diagnose::Diagnoser::capture_ended`]).
    pub(crate) truncated: u64,
    /// (client, server) of unanswered connections, the first `UNANSWERED_CAP`: matched
    /// against the server's SYN_RECV sockets.
    pub(crate) unanswered_pairs: Vec<(Endpoint, Endpoint)>,
    /// By ICMP kind name, so that findings come out in a stable order.
    pub(crate) unreachable: BTreeMap<&'static str, IcmpSeen>,
    /// Server endpoints that completed a handshake in this capture.
    pub(crate) answered: BTreeMap<Endpoint, u64>,
    pub(crate) handshake_stalled: u64,
    /// SYN-ACKs sent again in the handshakes that stalled.
    pub(crate) stalled_synack_retransmits: u64,
    /// Connections whose server retransmitted its SYN-ACK after the client had ACKed: the
    /// server dropped the final ACK, which Linux does when the accept queue is full.
    pub(crate) ack_dropped: u64,
    pub(crate) zero_window_stalls: [u64; 2],
    pub(crate) longest_zero_window_us: [u64; 2],
    pub(crate) syns_elsewhere: BTreeMap<Endpoint, u64>,
    /// Accepted connections the server reset before sending any data of its own: what
    /// a full accept queue with `tcp_abort_on_overflow=1` looks like (the client's ACK or
    /// first request answered with RST).
    pub(crate) silent_server_resets: u64,
    /// Connections that completed only after their SYN was sent again (a slow connect).
    pub(crate) slow_connects: u64,
    /// Of those, how many got through on each SYN (2: the first retransmission).
    pub(crate) slow_through: BTreeMap<u32, u64>,
    /// Connections that completed a handshake, slow or not.
    pub(crate) connected: u64,
    /// Attempts that sent one SYN and never completed: no answer (`unanswered`), or a
    /// SYN-ACK never acknowledged (`half_open`; `stalled`: of those, with the SYN-ACK
    /// retransmitted). A real client retransmits its SYN after 1 s; a spoofed source
    /// has no socket to do so, which is what a SYN flood's attempts look like.
    pub(crate) one_shot_unanswered: u64,
    pub(crate) one_shot_half_open: u64,
    pub(crate) one_shot_stalled: u64,
    /// Every client SYN to the port by second and source (the `Diagnoser`'s meter, copied
    /// in before the rules run).
    pub(crate) syn_rate: SynRate,
    /// Every completed connection's connect time, first SYN to the client's ACK.
    connect_time: Histogram<u64>,
    /// Slow connects' connect delay: from the first SYN to the client's ACK of the
    /// SYN-ACK, which is what the client's connect() waited.
    connect_delay: Histogram<u64>,
    handshake_rtt: Histogram<u64>,
    duration: Histogram<u64>,
    /// Exact sums of what the two histograms above hold, in µs: a Prometheus histogram's
    /// `_sum` must not be rebuilt from rounded buckets.
    handshake_rtt_sum_us: u64,
    duration_sum_us: u64,
    /// What the kernel witness said (empty without it).
    pub(crate) kernel: KernelEvidence,
    /// Connections by the tunnel or tag they came in (untunnelled ones are not here),
    /// the first [`TUNNELS_CAP`] tunnels by name.
    pub(crate) tunnels: BTreeMap<Encap, TunnelSeen>,
    /// The connections of tunnels beyond those.
    pub(crate) other_tunnels: TunnelSeen,
    /// Live: the processes behind the flows findings speak of, as the flow lines name
    /// them (the listener's owner, the client socket's owner).
    pub(crate) named: BTreeMap<Deed, Vec<ProcessInfo>>,
    /// Each server endpoint's refused, dropped and accepted attempts in time order:
    /// windows (a startup race, a restart, a firewall reload) rather than a bare count.
    pub(crate) timelines: Timelines,
}

impl Default for Evidence {
    fn default() -> Self {
        Evidence {
            outcomes: [0; Outcome::ALL.len()],
            syn_retransmits: 0,
            synack_retransmits: 0,
            retransmits: 0,
            zero_windows: 0,
            port_reused: 0,
            reused_clients: std::collections::BTreeSet::new(),
            midstream: 0,
            resets: BTreeMap::new(),
            closed_first: [0; 2],
            refused: BTreeMap::new(),
            unanswered_syns: 0,
            unanswered_servers: BTreeMap::new(),
            unanswered_cut: 0,
            waiting_since: Vec::new(),
            packets_from: [0; 2],
            truncated: 0,
            unanswered_pairs: Vec::new(),
            unreachable: BTreeMap::new(),
            answered: BTreeMap::new(),
            handshake_stalled: 0,
            stalled_synack_retransmits: 0,
            ack_dropped: 0,
            zero_window_stalls: [0; 2],
            longest_zero_window_us: [0; 2],
            syns_elsewhere: BTreeMap::new(),
            silent_server_resets: 0,
            slow_connects: 0,
            slow_through: BTreeMap::new(),
            connected: 0,
            one_shot_unanswered: 0,
            one_shot_half_open: 0,
            one_shot_stalled: 0,
            syn_rate: SynRate::default(),
            connect_time: histogram(),
            connect_delay: histogram(),
            handshake_rtt: histogram(),
            duration: histogram(),
            handshake_rtt_sum_us: 0,
            duration_sum_us: 0,
            kernel: KernelEvidence::default(),
            tunnels: BTreeMap::new(),
            other_tunnels: TunnelSeen::default(),
            named: BTreeMap::new(),
            timelines: Timelines::default(),
        }
    }
}

impl Evidence {
    /// A flow's final record (or, for the live diagnosis, a pending one).
    pub fn add(&mut self, r: &FlowRecord) {
        self.outcomes[r.outcome.index()] += 1;
        if r.encap != Encap::None {
            let problem = r.outcome.is_problem();
            let room = self.tunnels.len() < TUNNELS_CAP;
            match self.tunnels.get_mut(&r.encap) {
                Some(seen) => seen.add(problem),
                None if room => self.tunnels.entry(r.encap).or_default().add(problem),
                None => self.other_tunnels.add(problem),
            }
        }
        self.syn_retransmits += u64::from(r.syn_count.saturating_sub(1));
        self.synack_retransmits += u64::from(r.synack_count.saturating_sub(1));
        self.retransmits += u64::from(r.retransmits[0]) + u64::from(r.retransmits[1]);
        self.zero_windows += u64::from(r.zero_windows[0]) + u64::from(r.zero_windows[1]);
        self.port_reused += u64::from(r.port_reused);
        if r.port_reused && self.reused_clients.len() < NAMED_CAP * 16 {
            self.reused_clients.insert(r.client);
        }
        self.midstream += u64::from(r.midstream);
        for (seen, n) in self.packets_from.iter_mut().zip(r.packets) {
            *seen += n;
        }
        if r.handshake_rtt_us.is_some()
            || r.synack_count > 0 && r.outcome != Outcome::HandshakeIncomplete
        {
            *self.answered.entry(r.server).or_default() += 1;
        }
        if r.outcome == Outcome::Refused {
            self.timelines.add(r.server, r.first_ts, Fate::Refused);
        } else if r.outcome == Outcome::Unanswered {
            self.timelines.add(r.server, r.first_ts, Fate::Dropped);
        } else if r.handshake_rtt_us.is_some() {
            self.timelines.add(r.server, r.first_ts, Fate::Accepted);
        }
        match r.outcome {
            Outcome::Refused => *self.refused.entry(r.server).or_default() += 1,
            Outcome::Unanswered => {
                if waiting_at_end(r) {
                    self.waiting_since.push(r.last_ts);
                }
                self.unanswered_syns += u64::from(r.syn_count);
                *self.unanswered_servers.entry(r.server).or_default() += 1;
                if self.unanswered_pairs.len() < UNANSWERED_CAP {
                    self.unanswered_pairs.push((r.client, r.server));
                }
            }
            Outcome::Unreachable => {
                if let Some(icmp) = r.icmp {
                    let seen = self
                        .unreachable
                        .entry(icmp.kind.as_str())
                        .or_insert(IcmpSeen {
                            count: 0,
                            kind: icmp.kind,
                            from: icmp.reporter,
                            server: r.server,
                            from_destination: 0,
                        });
                    seen.count += 1;
                    seen.from_destination += u64::from(icmp.reporter == r.server.addr);
                }
            }
            Outcome::HandshakeIncomplete if r.synack_count > 1 => {
                self.handshake_stalled += 1;
                self.stalled_synack_retransmits += u64::from(r.synack_count - 1);
            }
            Outcome::HandshakeIncomplete
            | Outcome::Established
            | Outcome::Closed
            | Outcome::HalfClosed
            | Outcome::Reset => {}
        }
        // Who tore an accepted connection down; a refusal is already its own outcome.
        if let (Outcome::Reset, Some(Side::Server)) = (r.outcome, r.reset_by) {
            self.silent_server_resets += u64::from(r.bytes[Side::Server.index()] == 0);
        }
        if let (Outcome::Reset | Outcome::HandshakeIncomplete, Some(by)) = (r.outcome, r.reset_by) {
            *self
                .resets
                .entry((by, ResetContext::of(r, by)))
                .or_default() += 1;
        }
        if r.synack_count > 1 && r.handshake_rtt_us.is_some() {
            self.ack_dropped += 1;
        }
        for side in [Side::Client, Side::Server] {
            let i = side.index();
            if r.zero_window_us[i] >= STALL_US {
                self.zero_window_stalls[i] += 1;
            }
            self.longest_zero_window_us[i] =
                self.longest_zero_window_us[i].max(r.zero_window_us[i]);
        }
        if let (Outcome::Closed, Some(side)) = (r.outcome, r.closed_first_by) {
            self.closed_first[side.index()] += 1;
        }
        let one_shot = r.syn_count <= 1 && r.handshake_rtt_us.is_none();
        match r.outcome {
            Outcome::Unanswered if one_shot => self.one_shot_unanswered += 1,
            Outcome::HandshakeIncomplete if one_shot && r.reset_by.is_none() => {
                self.one_shot_half_open += 1;
                self.one_shot_stalled += u64::from(r.synack_count > 1);
            }
            _ => {}
        }
        if let Some(rtt) = r.handshake_rtt_us {
            record(&mut self.handshake_rtt, rtt);
            self.handshake_rtt_sum_us = self.handshake_rtt_sum_us.saturating_add(rtt);
            self.connected += 1;
            record(&mut self.connect_time, slow_connect_delay(r).unwrap_or(rtt));
            if let Some(delay) = slow_connect_delay(r) {
                self.slow_connects += 1;
                *self.slow_through.entry(r.syn_count).or_default() += 1;
                record(&mut self.connect_delay, delay);
            }
        }
        record(&mut self.duration, r.duration_us());
        self.duration_sum_us = self.duration_sum_us.saturating_add(r.duration_us());
    }

    /// Live: the processes behind a finished flow, for the findings it counts in.
    pub fn named(&mut self, r: &FlowRecord, procs: &FlowProcesses) {
        let mut deeds = Vec::new();
        if let (Outcome::Reset | Outcome::HandshakeIncomplete, Some(by)) = (r.outcome, r.reset_by) {
            deeds.push(Deed::Reset(by));
        }
        for side in [Side::Client, Side::Server] {
            if r.zero_window_us[side.index()] >= STALL_US {
                deeds.push(Deed::Stalled(side));
            }
        }
        if let (Outcome::Closed, Some(side)) = (r.outcome, r.closed_first_by) {
            deeds.push(Deed::ClosedFirst(side));
        }
        for deed in deeds {
            let who = match deed.side() {
                Side::Client => &procs.client,
                Side::Server => &procs.server,
            };
            let Some(p) = who else { continue };
            let list = self.named.entry(deed).or_default();
            if list.len() < NAMED_CAP && !list.iter().any(|q| q.pid == p.pid) {
                list.push(p.clone());
            }
        }
    }

    /// The processes named behind `deed` (empty in a replay).
    pub fn named_for(&self, deed: Deed) -> &[ProcessInfo] {
        self.named.get(&deed).map_or(&[], Vec::as_slice)
    }

    /// A SYN to another port (or address) on the interface.
    pub fn syn_elsewhere(&mut self, dst: Endpoint) {
        if let Some(n) = self.syns_elsewhere.get_mut(&dst) {
            *n += 1;
        } else if self.syns_elsewhere.len() < ELSEWHERE_CAP {
            self.syns_elsewhere.insert(dst, 1);
        }
    }

    pub fn flows(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    /// Connections whose outcome is a problem ([`Outcome::is_problem`]): what makes the
    /// exit status 1.
    /// The capture ended at `end` (its clock: the last packet, or live the wall clock),
    /// having cut `truncated` packets inside their headers: attempts whose lone SYN had
    /// waited less than the first retransmission timeout are cut short, not failed.
    pub fn capture_ended(&mut self, end: Timestamp, truncated: u64) {
        self.truncated = truncated;
        let cut = self
            .waiting_since
            .iter()
            .filter(|&&sent| end.micros_since(sent) < FIRST_RTO_US)
            .count() as u64;
        self.unanswered_cut = cut;
        self.unanswered_syns = self.unanswered_syns.saturating_sub(cut);
        self.waiting_since = Vec::new();
    }

    /// Failed connections; an attempt the capture's end cut short is not known to fail.
    pub fn problems(&self) -> u64 {
        let failed: u64 = Outcome::ALL
            .iter()
            .filter(|o| o.is_problem())
            .map(|o| self.outcomes[o.index()])
            .sum();
        failed.saturating_sub(self.unanswered_cut)
    }

    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes[o.index()]
    }

    /// Accepted connections torn down by a RST from `s`.
    pub fn resets_by(&self, s: Side) -> u64 {
        self.resets
            .iter()
            .filter(|((by, _), _)| *by == s)
            .map(|(_, n)| n)
            .sum()
    }

    /// Closed connections that `s` closed first, so it holds their TIME_WAIT.
    pub fn time_wait_on(&self, s: Side) -> u64 {
        self.closed_first[s.index()]
    }

    /// Handshake RTT percentiles of the connections counted so far.
    pub fn handshake_rtt(&self) -> Percentiles {
        Percentiles::of(&self.handshake_rtt)
    }

    /// Slow connects' connect delay percentiles (first SYN to the client's ACK).
    pub fn connect_delay(&self) -> Percentiles {
        Percentiles::of(&self.connect_delay)
    }

    /// Every completed connection's connect time percentiles (first SYN to the client's
    /// ACK).
    pub fn connect_time(&self) -> Percentiles {
        Percentiles::of(&self.connect_time)
    }

    /// Connection duration percentiles.
    pub fn duration(&self) -> Percentiles {
        Percentiles::of(&self.duration)
    }

    /// The handshake RTTs as cumulative buckets at `bounds_us` (for `--metrics`).
    pub fn handshake_rtt_buckets(&self, bounds_us: &[u64]) -> Buckets {
        Buckets::of(&self.handshake_rtt, bounds_us, self.handshake_rtt_sum_us)
    }

    /// The durations as cumulative buckets at `bounds_us` (for `--metrics`).
    pub fn duration_buckets(&self, bounds_us: &[u64]) -> Buckets {
        Buckets::of(&self.duration, bounds_us, self.duration_sum_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::tests::{record, refused};

    #[test]
    fn reset_contexts_are_told_apart() {
        let base = FlowRecord {
            reset_by: Some(Side::Server),
            ..record(Outcome::Reset, "127.0.0.1:61999")
        };
        assert_eq!(
            ResetContext::of(&base, Side::Server),
            ResetContext::AfterHandshake
        );
        let unread = FlowRecord {
            bytes: [1000, 0],
            last_payload_by: Some(Side::Client),
            ..base
        };
        assert_eq!(
            ResetContext::of(&unread, Side::Server),
            ResetContext::UnreadData
        );
        let mid = FlowRecord {
            bytes: [10, 5000],
            last_payload_by: Some(Side::Server),
            ..base
        };
        assert_eq!(
            ResetContext::of(&mid, Side::Server),
            ResetContext::MidTransfer
        );
    }

    #[test]
    fn every_finished_flow_is_counted_once_and_problems_follow_the_outcomes() {
        let mut ev = Evidence::default();
        ev.add(&record(Outcome::Closed, "127.0.0.1:61999"));
        ev.add(&refused("127.0.0.1:61999"));
        ev.add(&FlowRecord {
            reset_by: Some(Side::Client),
            ..record(Outcome::Reset, "127.0.0.1:61999")
        });
        assert_eq!(ev.flows(), 3);
        assert_eq!(ev.problems(), 2, "a refusal and a reset");
        assert_eq!(ev.count(Outcome::Refused), 1);
        assert_eq!(
            ev.resets_by(Side::Client),
            1,
            "a refusal is not a reset by the server"
        );
        assert_eq!(ev.resets_by(Side::Server), 0);
    }

    #[test]
    fn syns_elsewhere_remember_a_bounded_number_of_destinations() {
        let mut ev = Evidence::default();
        for port in 0..(ELSEWHERE_CAP as u16 + 10) {
            ev.syn_elsewhere(Endpoint::new([127, 0, 0, 1].into(), port));
        }
        ev.syn_elsewhere(Endpoint::new([127, 0, 0, 1].into(), 0));
        assert_eq!(ev.syns_elsewhere.len(), ELSEWHERE_CAP);
        assert_eq!(
            ev.syns_elsewhere[&Endpoint::new([127, 0, 0, 1].into(), 0)],
            2
        );
    }
}

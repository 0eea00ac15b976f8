//! What the rest of the program sees of a connection: a [`FlowRecord`] with one
//! [`Outcome`], emitted as a [`FlowEvent`] when the flow ends (or, live, as a pending
//! notice while a SYN is still unanswered), and, for a flow its packets ended, once more
//! when its close delay is over, with the trailing packets that came in it.

use super::zeek::ConnState;
use crate::decode::{Encap, Endpoint, HandshakeOptions, Timestamp, Unreachable};
use std::fmt;
use std::net::IpAddr;

/// Which end of the connection did something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The endpoint that sent the first SYN (or, mid-stream, the one not on the port).
    Client,
    /// The endpoint on the watched port.
    Server,
}

impl Side {
    pub fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// How a connection ended. Every flow gets exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Client SYNs, no reply at all (Zeek S0): a firewall DROP, a black hole, or a
    /// listener whose SYN queue is full.
    Unanswered,
    /// SYN answered by RST (Zeek REJ): nothing took it there (no listener, or a REJECT rule
    /// or a full queue under tcp_abort_on_overflow answered for one).
    Refused,
    /// SYN answered by an ICMP destination-unreachable error.
    Unreachable,
    /// SYN-ACK seen, the client's final ACK never: the server's answers do not reach the
    /// client, or the client abandoned the attempt.
    HandshakeIncomplete,
    /// Handshake done, still open when the capture (or the flow's idle timer) ended.
    Established,
    /// FIN both ways (Zeek SF).
    Closed,
    /// FIN one way only when the capture ended (Zeek S2/S3).
    HalfClosed,
    /// RST after the connection was established (Zeek RSTO/RSTR).
    Reset,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Unanswered,
        Outcome::Refused,
        Outcome::Unreachable,
        Outcome::HandshakeIncomplete,
        Outcome::Established,
        Outcome::Closed,
        Outcome::HalfClosed,
        Outcome::Reset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Unanswered => "unanswered",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::HandshakeIncomplete => "handshake_incomplete",
            Outcome::Established => "established",
            Outcome::Closed => "closed",
            Outcome::HalfClosed => "half_closed",
            Outcome::Reset => "reset",
        }
    }

    /// The outcomes that make the exit status 1: a connection that failed to connect, or
    /// that was torn down by a RST.
    pub fn is_problem(self) -> bool {
        match self {
            Outcome::Unanswered
            | Outcome::Refused
            | Outcome::Unreachable
            | Outcome::HandshakeIncomplete
            | Outcome::Reset => true,
            Outcome::Established | Outcome::Closed | Outcome::HalfClosed => false,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a flow's record was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Its packets ended it: RST, refusal, ICMP error, or the last ACK of a close.
    Packets,
    /// No packet for longer than its state's idle timeout.
    IdleTimeout,
    /// Pushed out of a full flow table by newer flows.
    Evicted,
    /// The capture ended (end of file, `-c`, `--duration`, Ctrl-C).
    CaptureEnd,
    /// A new connection (a SYN with a new initial sequence number) took its 4-tuple.
    Superseded,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Packets => "packets",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Evicted => "evicted",
            EndReason::CaptureEnd => "capture_end",
            EndReason::Superseded => "superseded",
        }
    }
}

/// Zeek's conn.log `history`: one letter per event, upper case from the client
/// (originator), lower case from the server (responder).
/// <https://docs.zeek.org/en/master/scripts/base/protocols/conn/main.zeek.html>
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct History {
    letters: [u8; History::CAP],
    len: u8,
}

impl History {
    const CAP: usize = 24;

    pub fn new() -> History {
        History {
            letters: [0; History::CAP],
            len: 0,
        }
    }

    /// Appends `letter` (given in upper case) for `side`; silently full at `CAP` letters.
    pub fn push(&mut self, side: Side, letter: u8) {
        let letter = match side {
            Side::Client => letter.to_ascii_uppercase(),
            Side::Server => letter.to_ascii_lowercase(),
        };
        if usize::from(self.len) < History::CAP {
            self.letters[usize::from(self.len)] = letter;
            self.len += 1;
        }
    }

    pub fn contains(&self, side: Side, letter: u8) -> bool {
        let letter = match side {
            Side::Client => letter.to_ascii_uppercase(),
            Side::Server => letter.to_ascii_lowercase(),
        };
        self.as_bytes().contains(&letter)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.letters[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Gaps between a flow's successive SYNs, in microseconds: the client's retransmission
/// schedule (Linux: 1 s, 2 s, 4 s, … by `tcp_syn_retries`).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct SynGaps {
    gaps: [u32; SynGaps::CAP],
    len: u8,
}

impl SynGaps {
    /// Linux's default `tcp_syn_retries` is 6: 7 SYNs, 6 gaps.
    const CAP: usize = 6;

    pub fn push(&mut self, micros: u64) {
        if usize::from(self.len) < SynGaps::CAP {
            self.gaps[usize::from(self.len)] = u32::try_from(micros).unwrap_or(u32::MAX);
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.gaps[..usize::from(self.len)]
    }
}

impl fmt::Debug for SynGaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The ICMP error that answered a flow's SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpAnswer {
    pub kind: Unreachable,
    pub reporter: IpAddr,
}

/// Everything portsniff knows about one connection. `Copy`: it travels from the flow
/// table to the reporters without touching the heap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowRecord {
    /// Unique per connection within a run, in order of first packet.
    pub id: u64,
    pub client: Endpoint,
    /// The client's initial sequence number, when its SYN was seen: what tells this
    /// connection's SYNs from those of another on the same endpoints.
    pub client_isn: Option<u32>,
    pub server: Endpoint,
    /// The tunnel or tag the connection came in: with the endpoints, what tells it apart.
    pub encap: Encap,
    pub outcome: Outcome,
    /// What Zeek's conn.log would call this connection, from Zeek's own endpoint states
    /// tracked over the same segments.
    pub conn_state: ConnState,
    pub reset_by: Option<Side>,
    /// Who sent the first FIN: that side ends in TIME_WAIT (RFC 9293 §3.6).
    pub closed_first_by: Option<Side>,
    /// Client SYNs, retransmissions included.
    pub syn_count: u32,
    pub syn_gaps_us: SynGaps,
    pub synack_count: u32,
    /// A new SYN arrived on this 4-tuple while its previous connection was still open,
    /// closing, or in TIME_WAIT.
    pub port_reused: bool,
    /// First seen without its handshake.
    pub midstream: bool,
    pub history: History,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    /// From the SYN that the SYN-ACK answered to the client's final ACK.
    pub handshake_rtt_us: Option<u64>,
    /// Indexed by [`Side::index`]: packets, payload bytes, retransmitted segments and
    /// zero-window advertisements sent by each side.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub retransmits: [u32; 2],
    pub zero_windows: [u32; 2],
    /// Longest time each side kept its receive window at zero (its application was not
    /// reading), in microseconds, by [`Side::index`].
    pub zero_window_us: [u64; 2],
    /// Who sent the last segment carrying data: tells a reset "with data unread" from one
    /// mid-transfer.
    pub last_payload_by: Option<Side>,
    pub icmp: Option<IcmpAnswer>,
    pub client_options: Option<HandshakeOptions>,
    pub server_options: Option<HandshakeOptions>,
    /// `None` while the flow is still going (a pending notice).
    pub end: Option<EndReason>,
}

impl FlowRecord {
    pub fn duration_us(&self) -> u64 {
        self.last_ts.micros_since(self.first_ts)
    }

    /// Whether this is the flow's final record (not a live pending notice).
    pub fn is_final(&self) -> bool {
        self.end.is_some()
    }
}

/// What the flow table tells the later stages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FlowEvent {
    /// Live only: SYNs unanswered for `--syn-timeout` while the client may still retry.
    /// A `Finished` record for the same `id` follows later.
    Pending(FlowRecord),
    /// The flow's one final record: its outcome is decided. A flow whose packets ended it
    /// (`end == Some(EndReason::Packets)`) keeps counting for a close delay
    /// ([`CLOSE_DELAY_US`](super::table::CLOSE_DELAY_US)), and a `Settled` for the same
    /// `id` follows if a packet came after the close, or always with
    /// [`FlowConfig::settle_all`](super::FlowConfig::settle_all); for any other end, or
    /// none of those, this is the last word.
    Finished(FlowRecord),
    /// The close delay of a flow its packets ended is over (or the capture ended, or the
    /// 4-tuple was taken by a new connection, or the table needed the room): the record
    /// with the trailing ACKs, FINs and RSTs that came after the close counted in. Its
    /// `outcome` is the `Finished` one; counts, `last_ts`, `history` and `conn_state` may
    /// have moved on. `late`: whether any packet came after the close (when none did,
    /// the event comes only with [`FlowConfig::settle_all`](super::FlowConfig::settle_all)).
    Settled { record: FlowRecord, late: bool },
}

impl FlowEvent {
    pub fn record(&self) -> &FlowRecord {
        match self {
            FlowEvent::Pending(r) | FlowEvent::Finished(r) => r,
            FlowEvent::Settled { record, .. } => record,
        }
    }
}

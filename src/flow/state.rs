//! One connection's state machine, as an observer on the wire sees it.
//!
//! The states follow RFC 9293's diagram (§3.3.2) seen from the middle: we cannot know
//! each endpoint's state, only which segments crossed. All transitions live in
//! [`transition`], one `match` with no catch-all arm, so adding a state or a kind of
//! segment forces every transition to be considered. Below it, [`Flow`]'s side of the
//! machine: what a segment or an ICMP error does to a flow, what entering a state
//! records, the record a state gives, how long a state may stay idle. Every state change
//! goes through [`Flow::set_state`].
//!
//! Pure: no clocks, no I/O; time comes in with each segment or tick. The per-segment
//! counters and history letters are in `account.rs`, the memory layout in `packed.rs`,
//! Zeek's endpoint states in `zeek.rs`.

use super::packed::{saturate_u32, PackedOptions, Seq};
use super::packed::{
    Flow, Rares, CLOSED_FIRST_BY, HAS_ANSWERED_SYN, HAS_RTT, LAST_PAYLOAD_BY, MIDSTREAM,
    PENDING_REPORTED, PORT_REUSED, RESET_BY, STALL_REPORTED, ZERO_WINDOW_REPORTED,
};
use super::record::{EndReason, FlowRecord, IcmpAnswer, Outcome, Side};
use super::seq::SeqNumber;
use crate::decode::{IcmpError, TcpSegment, Timestamp};

/// The observed state of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing seen yet (RFC 9293: client CLOSED, server LISTEN).
    New,
    /// Client SYN seen, no answer (client SYN-SENT).
    SynSent,
    /// The SYN was answered by a soft ICMP error (net or host unreachable, RFC 1122
    /// §4.2.3.9): the client may still retransmit the same SYN and get through, so the
    /// attempt stays open a little ([`SYN_ERROR_WAIT_US`]) before it is reported
    /// unreachable.
    SynError,
    /// Server SYN-ACK seen, the client's ACK not yet (server SYN-RECEIVED).
    SynReceived,
    Established,
    /// `first` sent a FIN (FIN-WAIT-1/2), the other side has not (CLOSE-WAIT).
    FinWait {
        first: Side,
    },
    /// Both sent a FIN; waiting for `first` to ACK the second one (LAST-ACK on the other).
    LastAck {
        first: Side,
    },
    /// Ended; the record has been emitted. Kept as a tombstone so stray packets do not
    /// start a phantom mid-stream flow, and (for `Closed`) to recognise TIME_WAIT reuse.
    Done(Outcome),
}

impl State {
    /// The outcome the flow would have if it ended now.
    pub fn outcome(self) -> Outcome {
        match self {
            State::New | State::SynSent => Outcome::Unanswered,
            State::SynError => Outcome::Unreachable,
            State::SynReceived => Outcome::HandshakeIncomplete,
            State::Established => Outcome::Established,
            State::FinWait { .. } => Outcome::HalfClosed,
            State::LastAck { .. } => Outcome::Closed,
            State::Done(o) => o,
        }
    }

    pub fn is_done(self) -> bool {
        matches!(self, State::Done(_))
    }
}

/// What a segment means for the state machine, by priority: RST, then SYN, then FIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Syn,
    SynAck,
    Rst,
    Fin,
    /// A segment with none of SYN, FIN, RST: an ACK, data, a window update.
    Segment,
    /// An ICMP destination-unreachable error quoting this flow's segment, a hard error
    /// (port, protocol, prohibited) that ends a connection attempt.
    Unreachable,
    /// A soft one (net, host: [`crate::decode::Unreachable::is_soft`]), after which the
    /// client may retry.
    SoftUnreachable,
}

impl Control {
    pub fn of(seg: &TcpSegment) -> Control {
        let f = seg.flags;
        if f.rst() {
            Control::Rst
        } else if f.syn() && f.ack() {
            Control::SynAck
        } else if f.syn() {
            Control::Syn
        } else if f.fin() {
            Control::Fin
        } else {
            Control::Segment
        }
    }
}

/// The state after `side` sends a segment of kind `ctl` in `state`.
/// `acks_peer_fin`: the segment acknowledges the other side's FIN.
pub fn transition(state: State, side: Side, ctl: Control, acks_peer_fin: bool) -> State {
    use Control::*;
    use Side::*;
    use State::*;
    match (state, side, ctl) {
        (New, Client, Syn) => SynSent,
        // The SYN may be missing from the capture (it started late, or on `-i any` the
        // two directions were reordered): the SYN-ACK alone proves an attempt.
        (New, Server, SynAck) => SynReceived,
        // The table orients a new flow by its first SYN or SYN-ACK, so these need a SYN
        // from the server on a flow first seen mid-stream: treat it as an attempt.
        (New, Server, Syn) | (New, Client, SynAck) => SynSent,
        // Mid-stream: no handshake in the capture.
        (New, _, Segment) => Established,
        (New, s, Fin) => FinWait { first: s },
        (New, _, Rst) => Done(Outcome::Reset),
        (New, _, Unreachable | SoftUnreachable) => Done(Outcome::Unreachable),

        // RFC 9293 §3.10.7.3: a RST acknowledging the SYN is the server host refusing
        // the connection: nothing listens there (or a firewall's `REJECT --reject-with
        // tcp-reset` pretends so).
        (SynSent, Server, Rst) => Done(Outcome::Refused),
        // The client gave up (connect timeout, Ctrl-C) before any answer: Zeek RSTOS0.
        (SynSent, Client, Rst) => Done(Outcome::Unanswered),
        (SynSent, Server, Unreachable) => Done(Outcome::Unreachable),
        (SynSent, Server, SoftUnreachable) => SynError,
        (SynSent, Client, Unreachable | SoftUnreachable) => SynSent,
        (SynSent, Server, SynAck) => SynReceived,
        // Retransmissions; a SYN with a new ISN is a new connection, split off by the table.
        (SynSent, Client, Syn) | (SynSent, Server, Syn) | (SynSent, Client, SynAck) => SynSent,
        // The SYN-ACK is missing from the capture (dropped by the kernel's capture buffer,
        // or cut by a filter), yet the peers talk: the handshake completed.
        (SynSent, _, Segment) => Established,
        (SynSent, s, Fin) => FinWait { first: s },

        // After a soft error the client keeps trying (RFC 1122 §4.2.3.9): a retransmitted
        // SYN (same ISN; a new ISN is split off by the table) or another soft error keeps
        // the attempt open, an answer carries it on with the error in its record.
        (SynError, Client, Syn) | (SynError, Server, Syn) | (SynError, Client, SynAck) => SynError,
        (SynError, Server, SoftUnreachable) | (SynError, Client, Unreachable) => SynError,
        (SynError, Client, SoftUnreachable) => SynError,
        (SynError, Server, Unreachable) => Done(Outcome::Unreachable),
        (SynError, Server, SynAck) => SynReceived,
        (SynError, Server, Rst) => Done(Outcome::Refused),
        // The client gave up on the error and said so.
        (SynError, Client, Rst) => Done(Outcome::Unreachable),
        (SynError, _, Segment) => Established,
        (SynError, s, Fin) => FinWait { first: s },

        // A SYN retransmitted after the SYN-ACK (the SYN-ACK got lost on its way), or a
        // SYN-ACK retransmitted because the final ACK did not arrive (RFC 9293 §3.8.1).
        (SynReceived, Client, Syn) | (SynReceived, Server, SynAck) => SynReceived,
        (SynReceived, Server, Syn) | (SynReceived, Client, SynAck) => SynReceived,
        (SynReceived, _, Unreachable | SoftUnreachable) => SynReceived,
        // The final ACK (possibly carrying data). A server cannot send data before it is
        // ESTABLISHED, so its data also proves the ACK arrived even if we missed it.
        (SynReceived, _, Segment) => Established,
        (SynReceived, s, Fin) => FinWait { first: s },
        // Torn down mid-handshake: e.g. a listener with `tcp_abort_on_overflow`, or a
        // client that rejects an unexpected SYN-ACK.
        (SynReceived, _, Rst) => Done(Outcome::HandshakeIncomplete),

        (Established, _, Rst) => Done(Outcome::Reset),
        (Established, s, Fin) => FinWait { first: s },
        (Established, _, Syn) | (Established, _, SynAck) => Established,
        (Established, _, Segment | Unreachable | SoftUnreachable) => Established,

        // Data after a FIN is unwanted by a closed socket: Linux answers with RST
        // (RFC 9293 §3.6.1 "the application has closed"), the classic reset-on-close.
        (FinWait { .. }, _, Rst) => Done(Outcome::Reset),
        (FinWait { first }, s, Fin) if s != first => LastAck { first },
        (FinWait { first }, _, Fin) => FinWait { first },
        (FinWait { first }, _, Syn) | (FinWait { first }, _, SynAck) => FinWait { first },
        (FinWait { first }, _, Segment | Unreachable | SoftUnreachable) => FinWait { first },

        // Both FINs seen: the close happened even if the last ACK is replaced by a RST
        // (a socket closed with unread data answers the peer's late segment that way).
        (LastAck { .. }, _, Rst) => Done(Outcome::Closed),
        // The first closer ACKs the second FIN and enters TIME_WAIT (RFC 9293 §3.6).
        (LastAck { first }, s, Segment) | (LastAck { first }, s, Fin)
            if s == first && acks_peer_fin =>
        {
            Done(Outcome::Closed)
        }
        (LastAck { first }, _, Segment) | (LastAck { first }, _, Fin) => LastAck { first },
        (LastAck { first }, _, Syn) | (LastAck { first }, _, SynAck) => LastAck { first },
        (LastAck { first }, _, Unreachable | SoftUnreachable) => LastAck { first },

        // A tombstone: the record is out, nothing changes it.
        (Done(o), _, Syn | SynAck | Rst | Fin | Segment | Unreachable | SoftUnreachable) => Done(o),
    }
}

/// The flow's side of the machine.
impl Flow {
    /// Applies one TCP segment sent by `side`. Returns true if this segment ended the flow.
    pub fn on_tcp(
        &mut self,
        side: Side,
        seg: &TcpSegment,
        ts: Timestamp,
        rares: &mut Rares,
    ) -> bool {
        let ctl = Control::of(seg);
        let was = self.state;
        self.account(side, seg, ctl, ts, rares);
        // Zeek's endpoint states run beside ours, for `conn_state`; most segments (data
        // and ACKs of a started side) cannot move them and are skipped without a write.
        let mut zeek = self.facts.zeek();
        if zeek.moved_by(side, seg.flags) {
            zeek.update(side, seg.flags, seg.payload_len);
            self.facts.set_zeek(zeek);
        }
        // RFC 9293 §3.6: the peer's FIN is acknowledged by an ACK one past it.
        let acks_peer_fin = seg.flags.ack()
            && self
                .seq(side.other(), Seq::Fin)
                .is_some_and(|fin| SeqNumber(seg.ack) == fin + 1);
        let next = transition(was, side, ctl, acks_peer_fin);
        self.on_enter(was, next, side, ctl, ts);
        self.set_state(next, rares);
        !was.is_done() && next.is_done()
    }

    /// Applies an ICMP error quoting a segment this flow's client sent. Returns true if it
    /// ended the flow.
    pub fn on_icmp(&mut self, err: &IcmpError, ts: Timestamp, rares: &mut Rares) -> bool {
        let was = self.state;
        // An error quoting a sequence number the client never used is not about this
        // attempt (RFC 5927 §4.1: check the quoted sequence number).
        if self
            .client_isn()
            .is_some_and(|isn| isn != SeqNumber(err.quoted_seq))
        {
            return false;
        }
        let ctl = if err.kind.is_soft() {
            Control::SoftUnreachable
        } else {
            Control::Unreachable
        };
        let next = transition(was, Side::Server, ctl, false);
        if next != was {
            rares.get_or_make(&mut self.rare).icmp = Some(IcmpAnswer {
                kind: err.kind,
                reporter: err.reporter,
            });
            self.last_ts = self.last_ts.max(ts);
        }
        self.set_state(next, rares);
        !was.is_done() && next.is_done()
    }

    /// The one place `state` changes, so that `-vv` (debug) traces every `old → new` with
    /// the flow it happened to. The fields are only formatted when debug is on.
    #[inline]
    fn set_state(&mut self, next: State, rares: &Rares) {
        let old = self.state;
        if old != next {
            self.trace_change(old, next, rares);
            self.state = next;
        }
    }

    /// Out of line, so that the trace's call site (its field captures) does not weigh on
    /// the inlined per-segment path; with debug off it returns after the level check.
    #[inline(never)]
    fn trace_change(&self, old: State, next: State, rares: &Rares) {
        tracing::debug!(
            flow = self.id,
            client = %self.client(rares),
            server = %self.server(rares),
            "{old:?} → {next:?}"
        );
    }

    /// Effects of entering a state: handshake timing, who reset, who closed first.
    fn on_enter(&mut self, was: State, next: State, side: Side, ctl: Control, ts: Timestamp) {
        if was == State::New && !matches!(next, State::SynSent | State::SynReceived) {
            self.facts.set(MIDSTREAM);
        }
        // The client's first segment after the SYN-ACK is its final ACK (RFC 9293 §3.5):
        // the handshake's round trip ends there.
        if was == State::SynReceived
            && side == Side::Client
            && matches!(next, State::Established | State::FinWait { .. })
            && self.facts.has(HAS_ANSWERED_SYN)
            && !self.facts.has(HAS_RTT)
        {
            self.handshake = saturate_u32(ts.micros_since(self.at(self.handshake)));
            self.facts.set(HAS_RTT);
        }
        // A RST that ends the flow names who reset it; one after both FINs is teardown
        // noise on a connection that had already closed.
        if ctl == Control::Rst && !was.is_done() && self.sides.get(RESET_BY).is_none() {
            if let State::Done(o) = next {
                if o != Outcome::Closed {
                    self.sides.set(RESET_BY, side);
                }
            }
        }
        if let State::FinWait { first } = next {
            if self.sides.get(CLOSED_FIRST_BY).is_none() {
                self.sides.set(CLOSED_FIRST_BY, first);
            }
        }
    }

    /// Whether a client SYN is a new connection on this 4-tuple rather than part of this
    /// one: its ISN differs (RFC 9293 §3.4.1: a new incarnation picks a new ISN), or this
    /// flow never saw a SYN at all (mid-stream).
    pub fn is_new_connection(&self, side: Side, seg: &TcpSegment) -> bool {
        if side != Side::Client || Control::of(seg) != Control::Syn {
            return false;
        }
        match (self.client_isn(), self.state) {
            // The attempt was reported refused or unreachable, yet the client sends its
            // SYN again: a stack that retries after a RST (Windows does, RFC 9293 lets
            // it), or a retry after a soft error later than [`SYN_ERROR_WAIT_US`]. It is
            // another try, with its own outcome, not a packet of the reported one.
            (Some(_), State::Done(Outcome::Refused | Outcome::Unreachable)) => true,
            (Some(isn), _) => isn != SeqNumber(seg.seq),
            (None, State::New) => false,
            (None, _) => true,
        }
    }

    /// Whether the 4-tuple is still in use by this connection when a new SYN arrives: it
    /// is open or closing, or it closed cleanly less than a TIME_WAIT ago (Linux holds
    /// TIME_WAIT for 60 s, `TCP_TIMEWAIT_LEN`).
    pub fn holds_tuple(&self, now: Timestamp) -> bool {
        match self.state {
            State::Established | State::FinWait { .. } | State::LastAck { .. } => true,
            State::Done(Outcome::Closed) => now.micros_since(self.last_ts) < TIME_WAIT_US,
            State::New | State::SynSent | State::SynError | State::SynReceived => false,
            State::Done(_) => false,
        }
    }

    /// Since when a live attempt has waited on its first SYN, if it still does and has not
    /// been reported pending yet.
    pub fn first_syn_pending_since(&self) -> Option<Timestamp> {
        match self.state {
            State::SynSent if !self.facts.has(PENDING_REPORTED) => Some(self.first_ts),
            _ => None,
        }
    }

    /// Whether a live attempt's handshake is stalled and not reported yet: the server
    /// sent its SYN-ACK `STALLED_SYNACKS` times (Linux retransmits it after 1 s, then 2 s
    /// more) and no ACK came. One retransmission is often a lost ACK that the client's
    /// answer to the retransmission repairs; two without an answer is a stall.
    pub fn handshake_stall_unreported(&self) -> bool {
        self.state == State::SynReceived
            && self.synack_count >= STALLED_SYNACKS
            && !self.facts.has(STALL_REPORTED)
    }

    /// Whether `side` has held its window shut for `ZERO_WINDOW_STALL_US` by `ts` and
    /// no live notice said so yet. Asked only of a segment that advertises a zero window
    /// (the receiver's answers to the sender's probes keep coming while it stalls).
    pub fn zero_window_stall_unreported(&self, side: Side, ts: Timestamp, rares: &Rares) -> bool {
        !self.state.is_done()
            && !self.facts.has(ZERO_WINDOW_REPORTED)
            && rares
                .get(self.rare)
                .and_then(|r| r.zero_since[side.index()].get())
                .is_some_and(|since| ts.micros_since(since) >= ZERO_WINDOW_STALL_US)
    }

    /// Whether a live attempt just completed its handshake only on a retransmitted SYN (a
    /// slow connect) and no notice said so yet: news now, though the connection may last
    /// long before its final record.
    pub fn slow_connect_unreported(&self) -> bool {
        self.state == State::Established
            && self.syn_count >= 2
            && self.facts.has(HAS_RTT)
            && !self.facts.has(STALL_REPORTED)
    }

    /// Marks a live handshake notice (stalled, or slow) as sent and returns its record.
    pub fn stall_pending(&mut self, rares: &Rares) -> FlowRecord {
        self.facts.set(STALL_REPORTED);
        self.snapshot(rares)
    }

    /// Marks a live zero-window notice as sent and returns its record.
    pub fn zero_window_pending(&mut self, rares: &Rares) -> FlowRecord {
        self.facts.set(ZERO_WINDOW_REPORTED);
        self.snapshot(rares)
    }

    /// How long this flow may stay idle in its state before it is ended (or, for a
    /// tombstone, forgotten).
    pub fn idle_timeout_us(&self) -> u64 {
        match self.state {
            // Linux gives up on a connect after `tcp_syn_retries` (6: ~127 s); the longest
            // gap between two SYNs is 64 s, so an idle SYN_SENT past that is over.
            State::New | State::SynSent | State::SynReceived => 75 * SEC,
            State::SynError => SYN_ERROR_WAIT_US,
            State::Established => 300 * SEC,
            // `tcp_fin_timeout` (60 s) bounds FIN-WAIT-2 on Linux; give it some slack.
            State::FinWait { .. } => 120 * SEC,
            State::LastAck { .. } => 60 * SEC,
            State::Done(Outcome::Closed) => TIME_WAIT_US,
            State::Done(_) => 5 * SEC,
        }
    }

    /// Marks a live pending notice as sent and returns its record.
    pub fn pending(&mut self, rares: &Rares) -> FlowRecord {
        self.facts.set(PENDING_REPORTED);
        self.snapshot(rares)
    }

    /// Ends the flow (if it is not already) and returns its final record.
    pub fn finish(&mut self, reason: EndReason, rares: &Rares) -> FlowRecord {
        self.set_state(State::Done(self.state.outcome()), rares);
        self.record(reason, rares)
    }

    /// The final record of a flow whose packets have just ended it.
    pub fn record(&self, reason: EndReason, rares: &Rares) -> FlowRecord {
        let mut rec = self.snapshot(rares);
        rec.end = Some(reason);
        rec
    }

    /// The record as of now: outcome from the state, a zero window still shut counted up
    /// to the last packet.
    fn snapshot(&self, rares: &Rares) -> FlowRecord {
        let rare = rares.get(self.rare).copied().unwrap_or_default();
        let mut zero_window_us = rare.zero_window_us;
        for (i, since) in rare.zero_since.iter().enumerate() {
            if let Some(since) = since.get() {
                zero_window_us[i] = zero_window_us[i].max(self.last_ts.micros_since(since));
            }
        }
        let [client_options, server_options] = self.options.map(PackedOptions::unpack);
        FlowRecord {
            id: self.id,
            client: self.client(rares),
            client_isn: self.client_isn().map(|isn| isn.0),
            server: self.server(rares),
            encap: rare.encap,
            outcome: self.state.outcome(),
            conn_state: self.facts.zeek().conn_state(&self.history, self.bytes),
            reset_by: self.sides.get(RESET_BY),
            closed_first_by: self.sides.get(CLOSED_FIRST_BY),
            syn_count: u32::from(self.syn_count),
            syn_gaps_us: rare.syn_gaps,
            synack_count: u32::from(self.synack_count),
            port_reused: self.facts.has(PORT_REUSED),
            midstream: self.facts.has(MIDSTREAM),
            history: self.history,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            handshake_rtt_us: self.facts.has(HAS_RTT).then_some(u64::from(self.handshake)),
            packets: self.packets.map(u64::from),
            bytes: self.bytes,
            retransmits: rare.retransmits,
            zero_windows: rare.zero_windows,
            zero_window_us,
            last_payload_by: self.sides.get(LAST_PAYLOAD_BY),
            icmp: rare.icmp,
            client_options,
            server_options,
            end: None,
        }
    }
}

const SEC: u64 = 1_000_000;
/// How long an attempt answered by a soft ICMP error waits for the client's next SYN:
/// the SYN retransmission timer starts at 1 s (RFC 6298 §2.1, Linux TCP_TIMEOUT_INIT)
/// and Linux's first retries stay 1 s apart (`tcp_syn_linear_timeouts`); a later retry
/// starts a new attempt ([`Flow::is_new_connection`]) rather than being lost.
pub const SYN_ERROR_WAIT_US: u64 = 3 * SEC;
/// Linux's TCP_TIMEWAIT_LEN.
pub const TIME_WAIT_US: u64 = 60 * SEC;
/// SYN-ACKs sent without an ACK before a live capture says the handshake stalled (the
/// first and two retransmissions: about 3 s on Linux).
const STALLED_SYNACKS: u16 = 3;
/// A zero window held this long means the receiving application stopped reading.
pub const ZERO_WINDOW_STALL_US: u64 = SEC;

#[cfg(test)]
mod tests;

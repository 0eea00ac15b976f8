//! One connection's state machine, as an observer on the wire sees it.
//!
//! The states follow RFC 9293's diagram (§3.3.2) seen from the middle: we cannot know
//! each endpoint's state, only which segments crossed. All transitions live in
//! [`transition`], one `match` with no catch-all arm, so adding a state forces every
//! transition to be considered. [`Flow`] wraps it with the counters and timestamps a
//! record needs; it is pure (no clocks, no I/O): time comes in with each segment or tick.

use super::record::{EndReason, FlowRecord, History, IcmpAnswer, Outcome, Side, SynGaps};
use crate::decode::{Endpoint, IcmpError, TcpSegment, Timestamp};

/// The observed state of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing seen yet (RFC 9293: client CLOSED, server LISTEN).
    New,
    /// Client SYN seen, no answer (client SYN-SENT).
    SynSent,
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
    /// An ICMP destination-unreachable error quoting this flow's segment.
    Unreachable,
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
        (New, _, Unreachable) => Done(Outcome::Unreachable),

        // RFC 9293 §3.10.7.3: a RST acknowledging the SYN is the server host refusing
        // the connection: nothing listens there (or a firewall's `REJECT --reject-with
        // tcp-reset` pretends so).
        (SynSent, Server, Rst) => Done(Outcome::Refused),
        // The client gave up (connect timeout, Ctrl-C) before any answer: Zeek RSTOS0.
        (SynSent, Client, Rst) => Done(Outcome::Unanswered),
        (SynSent, Server, Unreachable) => Done(Outcome::Unreachable),
        (SynSent, Client, Unreachable) => SynSent,
        (SynSent, Server, SynAck) => SynReceived,
        // Retransmissions; a SYN with a new ISN is a new connection, split off by the table.
        (SynSent, Client, Syn) | (SynSent, Server, Syn) | (SynSent, Client, SynAck) => SynSent,
        // The SYN-ACK is missing from the capture (dropped by the kernel's capture buffer,
        // or cut by a filter), yet the peers talk: the handshake completed.
        (SynSent, _, Segment) => Established,
        (SynSent, s, Fin) => FinWait { first: s },

        // A SYN retransmitted after the SYN-ACK (the SYN-ACK got lost on its way), or a
        // SYN-ACK retransmitted because the final ACK did not arrive (RFC 9293 §3.8.1).
        (SynReceived, Client, Syn) | (SynReceived, Server, SynAck) => SynReceived,
        (SynReceived, Server, Syn) | (SynReceived, Client, SynAck) => SynReceived,
        (SynReceived, _, Unreachable) => SynReceived,
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
        (Established, _, Segment) | (Established, _, Unreachable) => Established,

        // Data after a FIN is unwanted by a closed socket: Linux answers with RST
        // (RFC 9293 §3.6.1 "the application has closed"), the classic reset-on-close.
        (FinWait { .. }, _, Rst) => Done(Outcome::Reset),
        (FinWait { first }, s, Fin) if s != first => LastAck { first },
        (FinWait { first }, _, Fin) => FinWait { first },
        (FinWait { first }, _, Syn) | (FinWait { first }, _, SynAck) => FinWait { first },
        (FinWait { first }, _, Segment) | (FinWait { first }, _, Unreachable) => FinWait { first },

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
        (LastAck { first }, _, Unreachable) => LastAck { first },

        (Done(o), _, _) => Done(o),
    }
}

/// Per-direction sequence tracking. The three optional sequence numbers share one
/// presence byte (three `Option<u32>` would take 24 bytes instead of 13).
#[derive(Clone, Copy, Debug, Default)]
struct Direction {
    seqs: [u32; 3],
    present: u8,
    /// Since when this side's advertised window has been zero.
    zero_since: MaybeTs,
}

/// One past the highest sequence number sent (SYN and FIN count as one).
const SND_MAX: usize = 0;
/// Sequence number of this side's FIN.
const FIN_SEQ: usize = 1;
const LAST_RST: usize = 2;

impl Direction {
    fn get(&self, which: usize) -> Option<u32> {
        (self.present & (1 << which) != 0).then(|| self.seqs[which])
    }

    fn set(&mut self, which: usize, v: u32) {
        self.seqs[which] = v;
        self.present |= 1 << which;
    }
}

/// An optional timestamp in 8 bytes instead of 16 (`Option<Timestamp>` needs a tag):
/// stored plus one, so that 0 can mean "none". It is kept per direction and per flow,
/// and flow size is what bounds memory under a flood.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct MaybeTs(Option<std::num::NonZeroU64>);

impl MaybeTs {
    const NONE: MaybeTs = MaybeTs(None);

    fn some(ts: Timestamp) -> MaybeTs {
        MaybeTs(std::num::NonZeroU64::new(ts.0.saturating_add(1)))
    }

    fn get(self) -> Option<Timestamp> {
        self.0.map(|v| Timestamp(v.get() - 1))
    }
}

/// RFC 1982 serial-number comparison: `a` is at or before `b`, across wrap-around.
fn seq_le(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) >= 0
}

/// One connection (one generation of a 4-tuple).
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    state: State,
    rec: FlowRecord,
    client_isn: Option<u32>,
    dirs: [Direction; 2],
    last_syn_ts: MaybeTs,
    /// The SYN the first SYN-ACK answered, for the handshake RTT.
    answered_syn_ts: MaybeTs,
    pending_reported: bool,
}

impl Flow {
    pub fn new(
        id: u64,
        client: Endpoint,
        server: Endpoint,
        ts: Timestamp,
        port_reused: bool,
    ) -> Flow {
        Flow {
            state: State::New,
            rec: FlowRecord {
                id,
                client,
                server,
                outcome: Outcome::Unanswered,
                reset_by: None,
                closed_first_by: None,
                syn_count: 0,
                syn_gaps_us: SynGaps::default(),
                synack_count: 0,
                port_reused,
                midstream: false,
                history: History::new(),
                first_ts: ts,
                last_ts: ts,
                handshake_rtt_us: None,
                packets: [0; 2],
                bytes: [0; 2],
                retransmits: [0; 2],
                zero_windows: [0; 2],
                zero_window_us: [0; 2],
                last_payload_by: None,
                icmp: None,
                client_options: None,
                server_options: None,
                end: None,
            },
            client_isn: None,
            dirs: [Direction::default(); 2],
            last_syn_ts: MaybeTs::NONE,
            answered_syn_ts: MaybeTs::NONE,
            pending_reported: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn id(&self) -> u64 {
        self.rec.id
    }

    pub fn client(&self) -> Endpoint {
        self.rec.client
    }

    pub fn server(&self) -> Endpoint {
        self.rec.server
    }

    pub fn first_ts(&self) -> Timestamp {
        self.rec.first_ts
    }

    pub fn last_ts(&self) -> Timestamp {
        self.rec.last_ts
    }

    pub fn first_syn_pending_since(&self) -> Option<Timestamp> {
        match self.state {
            State::SynSent if !self.pending_reported => Some(self.rec.first_ts),
            _ => None,
        }
    }

    /// Whether a client SYN is a new connection on this 4-tuple rather than part of this
    /// one: its ISN differs (RFC 9293 §3.4.1: a new incarnation picks a new ISN), or this
    /// flow never saw a SYN at all (mid-stream).
    pub fn is_new_connection(&self, side: Side, seg: &TcpSegment) -> bool {
        if side != Side::Client || Control::of(seg) != Control::Syn {
            return false;
        }
        match (self.client_isn, self.state) {
            (Some(isn), _) => isn != seg.seq,
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
            State::Done(Outcome::Closed) => now.micros_since(self.rec.last_ts) < TIME_WAIT_US,
            State::New | State::SynSent | State::SynReceived | State::Done(_) => false,
        }
    }

    /// Applies one TCP segment sent by `side`. Returns true if this segment ended the flow.
    pub fn on_tcp(&mut self, side: Side, seg: &TcpSegment, ts: Timestamp) -> bool {
        let ctl = Control::of(seg);
        let was = self.state;
        self.account(side, seg, ctl, ts);
        let peer_fin = self.dirs[side.other().index()].get(FIN_SEQ);
        let acks_peer_fin =
            seg.flags.ack() && peer_fin.is_some_and(|f| seg.ack == f.wrapping_add(1));
        let next = transition(was, side, ctl, acks_peer_fin);
        self.on_enter(was, next, side, ctl, ts);
        self.state = next;
        !was.is_done() && next.is_done()
    }

    /// Applies an ICMP error quoting a segment this flow's client sent. Returns true if it
    /// ended the flow.
    pub fn on_icmp(&mut self, err: &IcmpError, ts: Timestamp) -> bool {
        let was = self.state;
        // An error quoting a sequence number the client never used is not about this
        // attempt (RFC 5927 §4.1: check the quoted sequence number).
        if self.client_isn.is_some_and(|isn| isn != err.quoted_seq) {
            return false;
        }
        let next = transition(was, Side::Server, Control::Unreachable, false);
        if next != was {
            self.rec.icmp = Some(IcmpAnswer {
                kind: err.kind,
                reporter: err.reporter,
            });
            self.rec.last_ts = self.rec.last_ts.max(ts);
        }
        self.state = next;
        !was.is_done() && next.is_done()
    }

    /// Counters, history letters and sequence tracking for one segment.
    fn account(&mut self, side: Side, seg: &TcpSegment, ctl: Control, ts: Timestamp) {
        let i = side.index();
        self.rec.last_ts = self.rec.last_ts.max(ts);
        self.rec.packets[i] += 1;
        self.rec.bytes[i] += u64::from(seg.payload_len);
        let dir = &mut self.dirs[i];
        let h = &mut self.rec.history;

        match ctl {
            Control::Syn if side == Side::Client => {
                if self.client_isn.is_none() {
                    self.client_isn = Some(seg.seq);
                    self.rec.client_options = Some(seg.options);
                    h.push(side, b'S');
                }
                if let Some(prev) = self.last_syn_ts.get() {
                    self.rec.syn_gaps_us.push(ts.micros_since(prev));
                }
                self.rec.syn_count += 1;
                self.last_syn_ts = MaybeTs::some(ts);
            }
            Control::SynAck if side == Side::Server => {
                if self.rec.synack_count == 0 {
                    self.rec.server_options = Some(seg.options);
                    self.answered_syn_ts = self.last_syn_ts;
                    h.push(side, b'H');
                    // The SYN-ACK acknowledges the client's ISN + 1.
                    self.client_isn.get_or_insert(seg.ack.wrapping_sub(1));
                }
                self.rec.synack_count += 1;
            }
            Control::Syn | Control::SynAck => {}
            Control::Rst => {
                if dir.get(LAST_RST) != Some(seg.seq) {
                    h.push(side, b'R');
                    dir.set(LAST_RST, seg.seq);
                }
            }
            Control::Fin | Control::Segment | Control::Unreachable => {}
        }

        if seg.payload_len > 0 {
            self.rec.last_payload_by = Some(side);
            if !h.contains(side, b'D') {
                h.push(side, b'D');
            }
        }
        if ctl == Control::Segment
            && seg.payload_len == 0
            && seg.flags.ack()
            && !h.contains(side, b'A')
        {
            h.push(side, b'A');
        }

        // Sequence space this segment covers (RFC 9293 §3.4: SYN and FIN take one each).
        let syn = u32::from(seg.flags.syn());
        let fin = u32::from(seg.flags.fin());
        let end = seg
            .seq
            .wrapping_add(seg.payload_len)
            .wrapping_add(syn)
            .wrapping_add(fin);
        if !seg.flags.syn() && !seg.flags.rst() && (seg.payload_len > 0 || seg.flags.fin()) {
            let is_keepalive = seg.payload_len <= 1
                && !seg.flags.fin()
                && dir
                    .get(SND_MAX)
                    .is_some_and(|m| seg.seq.wrapping_add(1) == m);
            if let Some(max) = dir.get(SND_MAX) {
                if seq_le(end, max) && !is_keepalive {
                    self.rec.retransmits[i] += 1;
                    log_letter(h, side, b'T', self.rec.retransmits[i]);
                }
            }
        }
        if !seg.flags.rst() {
            let max = match dir.get(SND_MAX) {
                Some(max) if seq_le(end, max) => max,
                _ => end,
            };
            dir.set(SND_MAX, max);
        }
        if seg.flags.fin() && dir.get(FIN_SEQ).is_none() {
            dir.set(FIN_SEQ, seg.seq.wrapping_add(seg.payload_len));
            h.push(side, b'F');
        }

        // A zero window means the receiving application stopped reading (RFC 9293
        // §3.8.6.2); count each time it closes, not every segment while it stays shut.
        if !seg.flags.syn() && !seg.flags.rst() {
            match (seg.window, dir.zero_since.get()) {
                (0, None) => {
                    dir.zero_since = MaybeTs::some(ts);
                    self.rec.zero_windows[i] += 1;
                    log_letter(h, side, b'W', self.rec.zero_windows[i]);
                }
                (0, Some(_)) => {}
                (_, Some(since)) => {
                    dir.zero_since = MaybeTs::NONE;
                    let held = ts.micros_since(since);
                    self.rec.zero_window_us[i] = self.rec.zero_window_us[i].max(held);
                }
                (_, None) => {}
            }
        }
    }

    /// Effects of entering a state: handshake timing, who reset, who closed first.
    fn on_enter(&mut self, was: State, next: State, side: Side, ctl: Control, ts: Timestamp) {
        if was == State::New && !matches!(next, State::SynSent | State::SynReceived) {
            self.rec.midstream = true;
        }
        if was == State::SynReceived
            && side == Side::Client
            && matches!(next, State::Established | State::FinWait { .. })
        {
            self.rec.handshake_rtt_us = self.answered_syn_ts.get().map(|syn| ts.micros_since(syn));
        }
        // A RST that ends the flow names who reset it; one after both FINs is teardown
        // noise on a connection that had already closed.
        if ctl == Control::Rst && !was.is_done() && self.rec.reset_by.is_none() {
            if let State::Done(o) = next {
                if o != Outcome::Closed {
                    self.rec.reset_by = Some(side);
                }
            }
        }
        if let State::FinWait { first } = next {
            self.rec.closed_first_by.get_or_insert(first);
        }
    }

    /// Marks a live pending notice as sent and returns its record.
    pub fn pending(&mut self) -> FlowRecord {
        self.pending_reported = true;
        self.snapshot()
    }

    /// Ends the flow (if it is not already) and returns its final record.
    pub fn finish(&mut self, reason: EndReason) -> FlowRecord {
        let outcome = self.state.outcome();
        self.state = State::Done(outcome);
        self.record(reason)
    }

    /// The final record of a flow whose packets have just ended it.
    pub fn record(&self, reason: EndReason) -> FlowRecord {
        let mut rec = self.snapshot();
        rec.end = Some(reason);
        rec
    }

    /// The record as of now: outcome from the state, a zero window still shut counted up
    /// to the last packet.
    fn snapshot(&self) -> FlowRecord {
        let mut rec = self.rec;
        rec.outcome = self.state.outcome();
        for (i, dir) in self.dirs.iter().enumerate() {
            if let Some(since) = dir.zero_since.get() {
                rec.zero_window_us[i] = rec.zero_window_us[i].max(rec.last_ts.micros_since(since));
            }
        }
        rec
    }

    /// How long this flow may stay idle in its state before it is ended (or, for a
    /// tombstone, forgotten).
    pub fn idle_timeout_us(&self) -> u64 {
        match self.state {
            // Linux gives up on a connect after `tcp_syn_retries` (6: ~127 s); the longest
            // gap between two SYNs is 64 s, so an idle SYN_SENT past that is over.
            State::New | State::SynSent | State::SynReceived => 75 * SEC,
            State::Established => 300 * SEC,
            // `tcp_fin_timeout` (60 s) bounds FIN-WAIT-2 on Linux; give it some slack.
            State::FinWait { .. } => 120 * SEC,
            State::LastAck { .. } => 60 * SEC,
            State::Done(Outcome::Closed) => TIME_WAIT_US,
            State::Done(_) => 5 * SEC,
        }
    }
}

/// Zeek records retransmissions (`T`) and zero windows (`W`) logarithmically: the letter
/// again at the 10th, 100th, … occurrence.
fn log_letter(h: &mut History, side: Side, letter: u8, count: u32) {
    if matches!(count, 1 | 10 | 100 | 1000 | 10_000 | 100_000) {
        h.push(side, letter);
    }
}

const SEC: u64 = 1_000_000;
/// Linux's TCP_TIMEWAIT_LEN.
pub const TIME_WAIT_US: u64 = 60 * SEC;

#[cfg(test)]
mod tests;

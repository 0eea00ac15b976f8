//! One connection's state machine, as an observer on the wire sees it.
//!
//! The states follow RFC 9293's diagram (§3.3.2) seen from the middle: we cannot know
//! each endpoint's state, only which segments crossed. All transitions live in
//! [`transition`], one `match` with no catch-all arm, so adding a state forces every
//! transition to be considered. [`Flow`] wraps it with the counters and timestamps a
//! record needs; it is pure (no clocks, no I/O): time comes in with each segment or tick.

use super::record::{EndReason, FlowRecord, History, IcmpAnswer, Outcome, Side, SynGaps};
use crate::decode::{Endpoint, HandshakeOptions, IcmpError, TcpSegment, Timestamp};
use std::net::IpAddr;

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

/// Per-direction sequence numbers; whether each is known is in [`Flow::present`].
#[derive(Clone, Copy, Debug, Default)]
struct Direction {
    seqs: [u32; 3],
}

/// One past the highest sequence number sent (SYN and FIN count as one).
const SND_MAX: usize = 0;
/// Sequence number of this side's FIN.
const FIN_SEQ: usize = 1;
const LAST_RST: usize = 2;

/// Bits of [`Flow::present`] beyond the six sequence numbers (three per direction).
const HAS_ISN: u32 = 1 << 6;
const HAS_LAST_SYN: u32 = 1 << 7;
/// [`Flow::handshake`] holds the offset of the SYN the first SYN-ACK answered…
const HAS_ANSWERED_SYN: u32 = 1 << 8;
/// …and, once the client's final ACK is seen, the handshake RTT instead.
const HAS_RTT: u32 = 1 << 9;
const MIDSTREAM: u32 = 1 << 10;
const PORT_REUSED: u32 = 1 << 11;
const PENDING_REPORTED: u32 = 1 << 12;
const IS_V6: u32 = 1 << 13;
/// Zeek's once-per-side history letters `D` (data) and `A` (pure ACK), by side: checked
/// on every segment, so a bit rather than a scan of the letters.
const SAW_DATA: [u32; 2] = [1 << 14, 1 << 15];
const SAW_ACK: [u32; 2] = [1 << 16, 1 << 17];

/// Three `Option<Side>`s in a byte, two bits each: 0 none, 1 client, 2 server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sides(u8);

const RESET_BY: u8 = 0;
const CLOSED_FIRST_BY: u8 = 2;
const LAST_PAYLOAD_BY: u8 = 4;

impl Sides {
    fn get(self, at: u8) -> Option<Side> {
        match (self.0 >> at) & 3 {
            1 => Some(Side::Client),
            2 => Some(Side::Server),
            _ => None,
        }
    }

    fn set(&mut self, at: u8, side: Side) {
        let v = match side {
            Side::Client => 1,
            Side::Server => 2,
        };
        self.0 = (self.0 & !(3 << at)) | (v << at);
    }
}

/// An optional timestamp in 8 bytes instead of 16 (`Option<Timestamp>` needs a tag):
/// stored plus one, so that 0 can mean "none".
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

/// [`HandshakeOptions`] in 4 bytes (an `Option<HandshakeOptions>` takes 8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PackedOptions {
    mss: u16,
    window_scale: u8,
    bits: u8,
}

impl PackedOptions {
    const PRESENT: u8 = 1;
    const MSS: u8 = 2;
    const WSCALE: u8 = 4;
    const SACK: u8 = 8;
    const TIMESTAMPS: u8 = 16;

    fn pack(o: HandshakeOptions) -> PackedOptions {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        PackedOptions {
            mss: o.mss.unwrap_or(0),
            window_scale: o.window_scale.unwrap_or(0),
            bits: PackedOptions::PRESENT
                | flag(o.mss.is_some(), PackedOptions::MSS)
                | flag(o.window_scale.is_some(), PackedOptions::WSCALE)
                | flag(o.sack_permitted, PackedOptions::SACK)
                | flag(o.timestamps, PackedOptions::TIMESTAMPS),
        }
    }

    fn unpack(self) -> Option<HandshakeOptions> {
        let has = |bit: u8| self.bits & bit != 0;
        has(PackedOptions::PRESENT).then(|| HandshakeOptions {
            mss: has(PackedOptions::MSS).then_some(self.mss),
            window_scale: has(PackedOptions::WSCALE).then_some(self.window_scale),
            sack_permitted: has(PackedOptions::SACK),
            timestamps: has(PackedOptions::TIMESTAMPS),
        })
    }
}

/// What few flows need, kept out of [`Flow`] so that the common flow stays small (flow
/// size is what bounds memory under a flood): IPv6 addresses, the SYN retransmission
/// schedule, an ICMP answer, zero-window timing. Lives in [`Rares`], found by index.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rare {
    v6: [[u8; 16]; 2],
    syn_gaps: SynGaps,
    icmp: Option<IcmpAnswer>,
    /// Segments each side sent again (loss on the way, or a stalled peer).
    retransmits: [u32; 2],
    /// Of those, the ones carrying data: Zeek's `T` counts only these.
    data_retransmits: [u32; 2],
    /// Times each side closed its window.
    zero_windows: [u32; 2],
    /// Since when each side's advertised window has been zero.
    zero_since: [MaybeTs; 2],
    /// Longest time each side kept its window at zero.
    zero_window_us: [u64; 2],
}

/// The [`Rare`] parts of the table's flows: a slab with a free list, so that steady-state
/// processing reuses slots instead of allocating.
#[derive(Debug, Default)]
pub struct Rares {
    slots: Vec<Rare>,
    free: Vec<u32>,
}

/// "No rare part" in [`Flow::rare`].
const NO_RARE: u32 = u32::MAX;

impl Rares {
    fn get(&self, i: u32) -> Option<&Rare> {
        self.slots.get(i as usize)
    }

    /// The rare part at `*i`, made (and `*i` set) on first use.
    fn get_or_make(&mut self, i: &mut u32) -> &mut Rare {
        if *i == NO_RARE {
            *i = match self.free.pop() {
                Some(slot) => {
                    self.slots[slot as usize] = Rare::default();
                    slot
                }
                None => {
                    self.slots.push(Rare::default());
                    (self.slots.len() - 1) as u32
                }
            };
        }
        &mut self.slots[*i as usize]
    }

    fn release(&mut self, i: &mut u32) {
        if *i != NO_RARE {
            self.free.push(*i);
            *i = NO_RARE;
        }
    }

    /// Rare parts in use.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
    }
}

/// One connection (one generation of a 4-tuple), packed: counters that cannot
/// realistically overflow their narrower types saturate (a `u32` of segments is 4 billion
/// in one direction of one connection), times after the first packet are microsecond
/// offsets from it, and what few flows need is in a [`Rare`]. The wide, self-contained
/// [`FlowRecord`] is built only when the flow is reported.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    id: u64,
    first_ts: Timestamp,
    last_ts: Timestamp,
    bytes: [u64; 2],
    packets: [u32; 2],
    dirs: [Direction; 2],
    client_isn: u32,
    /// Microseconds after `first_ts` of the SYN the first SYN-ACK answered
    /// (`HAS_ANSWERED_SYN`), then, from the client's final ACK on, the handshake RTT
    /// (`HAS_RTT`): the one is only needed until the other is known.
    handshake: u32,
    /// Microseconds after `first_ts` of the last client SYN.
    last_syn: u32,
    /// IPv4 client and server addresses; IPv6 ones are in the rare part.
    v4: [[u8; 4]; 2],
    ports: [u16; 2],
    rare: u32,
    syn_count: u16,
    synack_count: u16,
    options: [PackedOptions; 2],
    history: History,
    state: State,
    /// Which of the optional numbers above are known (`HAS_*`, and bit `3 * side + which`
    /// for a direction's sequence numbers), and the yes/no facts (`MIDSTREAM`, …).
    present: u32,
    /// Who reset, who closed first, who sent the last data.
    sides: Sides,
}

fn saturate_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Flow {
    pub fn new(
        id: u64,
        client: Endpoint,
        server: Endpoint,
        ts: Timestamp,
        port_reused: bool,
        rares: &mut Rares,
    ) -> Flow {
        let mut flow = Flow {
            id,
            first_ts: ts,
            last_ts: ts,
            bytes: [0; 2],
            packets: [0; 2],
            dirs: [Direction::default(); 2],
            client_isn: 0,
            handshake: 0,
            last_syn: 0,
            v4: [[0; 4]; 2],
            ports: [client.port, server.port],
            rare: NO_RARE,
            syn_count: 0,
            synack_count: 0,
            options: [PackedOptions::default(); 2],
            history: History::new(),
            state: State::New,
            present: if port_reused { PORT_REUSED } else { 0 },
            sides: Sides::default(),
        };
        match (client.addr, server.addr) {
            (IpAddr::V4(c), IpAddr::V4(s)) => flow.v4 = [c.octets(), s.octets()],
            (c, s) => {
                flow.present |= IS_V6;
                rares.get_or_make(&mut flow.rare).v6 = [v6_octets(c), v6_octets(s)];
            }
        }
        flow
    }

    /// Gives back the rare part; call before the flow's slot is reused.
    pub fn release(&mut self, rares: &mut Rares) {
        rares.release(&mut self.rare);
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    fn addr(&self, side: Side, rares: &Rares) -> IpAddr {
        let i = side.index();
        if self.is(IS_V6) {
            let v6 = rares.get(self.rare).map_or([0; 16], |r| r.v6[i]);
            IpAddr::from(v6)
        } else {
            IpAddr::from(self.v4[i])
        }
    }

    pub fn endpoint(&self, side: Side, rares: &Rares) -> Endpoint {
        Endpoint::new(self.addr(side, rares), self.ports[side.index()])
    }

    pub fn client(&self, rares: &Rares) -> Endpoint {
        self.endpoint(Side::Client, rares)
    }

    pub fn server(&self, rares: &Rares) -> Endpoint {
        self.endpoint(Side::Server, rares)
    }

    /// Which side sent a segment from `src` to `dst`, if this flow is theirs. Ports first:
    /// they differ between most flows and are right here.
    pub fn side_of(&self, src: &Endpoint, dst: &Endpoint, rares: &Rares) -> Option<Side> {
        let is = |e: &Endpoint, side: Side| {
            e.port == self.ports[side.index()]
                && match (e.addr, self.is(IS_V6)) {
                    (IpAddr::V4(a), false) => a.octets() == self.v4[side.index()],
                    (IpAddr::V6(a), true) => {
                        rares.get(self.rare).map(|r| r.v6[side.index()]) == Some(a.octets())
                    }
                    _ => false,
                }
        };
        if is(src, Side::Client) && is(dst, Side::Server) {
            Some(Side::Client)
        } else if is(src, Side::Server) && is(dst, Side::Client) {
            Some(Side::Server)
        } else {
            None
        }
    }

    pub fn first_ts(&self) -> Timestamp {
        self.first_ts
    }

    pub fn last_ts(&self) -> Timestamp {
        self.last_ts
    }

    fn seq(&self, side: Side, which: usize) -> Option<u32> {
        let bit = 1 << (3 * side.index() + which);
        (self.present & bit != 0).then(|| self.dirs[side.index()].seqs[which])
    }

    fn set_seq(&mut self, side: Side, which: usize, v: u32) {
        self.dirs[side.index()].seqs[which] = v;
        self.present |= 1 << (3 * side.index() + which);
    }

    fn is(&self, bit: u32) -> bool {
        self.present & bit != 0
    }

    fn client_isn(&self) -> Option<u32> {
        (self.present & HAS_ISN != 0).then_some(self.client_isn)
    }

    fn set_client_isn(&mut self, isn: u32) {
        self.client_isn = isn;
        self.present |= HAS_ISN;
    }

    fn offset(&self, ts: Timestamp) -> u32 {
        saturate_u32(ts.micros_since(self.first_ts))
    }

    fn at(&self, offset: u32) -> Timestamp {
        self.first_ts.add_micros(u64::from(offset))
    }

    pub fn first_syn_pending_since(&self) -> Option<Timestamp> {
        match self.state {
            State::SynSent if !self.is(PENDING_REPORTED) => Some(self.first_ts),
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
        match (self.client_isn(), self.state) {
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
            State::Done(Outcome::Closed) => now.micros_since(self.last_ts) < TIME_WAIT_US,
            State::New | State::SynSent | State::SynReceived | State::Done(_) => false,
        }
    }

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
        let peer_fin = self.seq(side.other(), FIN_SEQ);
        let acks_peer_fin =
            seg.flags.ack() && peer_fin.is_some_and(|f| seg.ack == f.wrapping_add(1));
        let next = transition(was, side, ctl, acks_peer_fin);
        self.on_enter(was, next, side, ctl, ts);
        self.state = next;
        !was.is_done() && next.is_done()
    }

    /// Applies an ICMP error quoting a segment this flow's client sent. Returns true if it
    /// ended the flow.
    pub fn on_icmp(&mut self, err: &IcmpError, ts: Timestamp, rares: &mut Rares) -> bool {
        let was = self.state;
        // An error quoting a sequence number the client never used is not about this
        // attempt (RFC 5927 §4.1: check the quoted sequence number).
        if self.client_isn().is_some_and(|isn| isn != err.quoted_seq) {
            return false;
        }
        let next = transition(was, Side::Server, Control::Unreachable, false);
        if next != was {
            rares.get_or_make(&mut self.rare).icmp = Some(IcmpAnswer {
                kind: err.kind,
                reporter: err.reporter,
            });
            self.last_ts = self.last_ts.max(ts);
        }
        self.state = next;
        !was.is_done() && next.is_done()
    }

    /// Counters, history letters and sequence tracking for one segment.
    fn account(
        &mut self,
        side: Side,
        seg: &TcpSegment,
        ctl: Control,
        ts: Timestamp,
        rares: &mut Rares,
    ) {
        let i = side.index();
        self.last_ts = self.last_ts.max(ts);
        self.packets[i] = self.packets[i].saturating_add(1);
        self.bytes[i] += u64::from(seg.payload_len);

        self.history_letters(side, seg);
        match ctl {
            Control::Syn if side == Side::Client => {
                if self.client_isn().is_none() {
                    self.set_client_isn(seg.seq);
                    self.options[i] = PackedOptions::pack(seg.options);
                }
                if self.present & HAS_LAST_SYN != 0 {
                    let gap = ts.micros_since(self.at(self.last_syn));
                    rares.get_or_make(&mut self.rare).syn_gaps.push(gap);
                }
                self.syn_count = self.syn_count.saturating_add(1);
                self.last_syn = self.offset(ts);
                self.present |= HAS_LAST_SYN;
            }
            Control::SynAck if side == Side::Server => {
                if self.synack_count == 0 {
                    self.options[i] = PackedOptions::pack(seg.options);
                    if self.present & HAS_LAST_SYN != 0 {
                        self.handshake = self.last_syn;
                        self.present |= HAS_ANSWERED_SYN;
                    }
                    // The SYN-ACK acknowledges the client's ISN + 1.
                    if self.client_isn().is_none() {
                        self.set_client_isn(seg.ack.wrapping_sub(1));
                    }
                }
                self.synack_count = self.synack_count.saturating_add(1);
            }
            Control::Syn
            | Control::SynAck
            | Control::Rst
            | Control::Fin
            | Control::Segment
            | Control::Unreachable => {}
        }
        if seg.payload_len > 0 {
            self.sides.set(LAST_PAYLOAD_BY, side);
        }

        // Sequence space this segment covers (RFC 9293 §3.4: SYN and FIN take one each).
        let syn = u32::from(seg.flags.syn());
        let fin = u32::from(seg.flags.fin());
        let end = seg
            .seq
            .wrapping_add(seg.payload_len)
            .wrapping_add(syn)
            .wrapping_add(fin);
        let snd_max = self.seq(side, SND_MAX);
        if !seg.flags.syn() && !seg.flags.rst() && (seg.payload_len > 0 || seg.flags.fin()) {
            let is_keepalive = seg.payload_len <= 1
                && !seg.flags.fin()
                && snd_max.is_some_and(|m| seg.seq.wrapping_add(1) == m);
            if let Some(max) = snd_max {
                if seq_le(end, max) && !is_keepalive {
                    let rare = rares.get_or_make(&mut self.rare);
                    rare.retransmits[i] = rare.retransmits[i].saturating_add(1);
                    if seg.payload_len > 0 {
                        let n = rare.data_retransmits[i].saturating_add(1);
                        rare.data_retransmits[i] = n;
                        log_letter(&mut self.history, side, b'T', n);
                    }
                }
            }
        }
        if !seg.flags.rst() {
            let max = match snd_max {
                Some(max) if seq_le(end, max) => max,
                _ => end,
            };
            self.set_seq(side, SND_MAX, max);
        }
        if seg.flags.fin() {
            // The latest FIN: a FIN at a new sequence number replaces the old one.
            self.set_seq(side, FIN_SEQ, seg.seq.wrapping_add(seg.payload_len));
        }

        // A zero window means the receiving application stopped reading (RFC 9293
        // §3.8.6.2); count each time it closes, not every segment while it stays shut.
        if !seg.flags.syn() && !seg.flags.rst() {
            let since = rares.get(self.rare).and_then(|r| r.zero_since[i].get());
            match (seg.window, since) {
                (0, None) => {
                    let rare = rares.get_or_make(&mut self.rare);
                    rare.zero_since[i] = MaybeTs::some(ts);
                    rare.zero_windows[i] = rare.zero_windows[i].saturating_add(1);
                    log_letter(&mut self.history, side, b'W', rare.zero_windows[i]);
                }
                (0, Some(_)) => {}
                (_, Some(since)) => {
                    let rare = rares.get_or_make(&mut self.rare);
                    rare.zero_since[i] = MaybeTs::NONE;
                    let held = ts.micros_since(since);
                    rare.zero_window_us[i] = rare.zero_window_us[i].max(held);
                }
                (_, None) => {}
            }
        }
    }

    /// Zeek's history letters for one segment, by its `update_history`
    /// (`TCPSessionAdapter.cc`): a segment with two of SYN, FIN and RST is `I` (FIN+RST)
    /// or `Q`; one with a single one is `S`/`H` (SYN, by its ACK bit), `F` or `R`, again
    /// only when its sequence number differs from that flag's last one; one with none is
    /// `D` if it carries data, else `A` if it acknowledges, each once per side. (`T` and
    /// `W` are counted where retransmissions and zero windows are.)
    fn history_letters(&mut self, side: Side, seg: &TcpSegment) {
        let f = seg.flags;
        let i = side.index();
        let once = |h: &mut History, letter: u8| {
            if !h.contains(side, letter) {
                h.push(side, letter);
            }
        };
        match (f.syn(), f.fin(), f.rst()) {
            (true, true, _) | (true, _, true) => once(&mut self.history, b'Q'),
            (false, true, true) => once(&mut self.history, b'I'),
            (true, false, false) => {
                // One SYN letter per side in Zeek, S or H by the first SYN's ACK bit. A
                // client SYN at a new sequence number is a new connection here (the
                // table splits it off), so the repeat rule never applies to it.
                if !self.history.contains(side, b'S') && !self.history.contains(side, b'H') {
                    let letter = if f.ack() { b'H' } else { b'S' };
                    self.history.push(side, letter);
                }
            }
            (false, true, false) => {
                if self.seq(side, FIN_SEQ) != Some(seg.seq.wrapping_add(seg.payload_len)) {
                    self.history.push(side, b'F');
                }
            }
            (false, false, true) => {
                if self.seq(side, LAST_RST) != Some(seg.seq) {
                    self.history.push(side, b'R');
                }
                self.set_seq(side, LAST_RST, seg.seq);
            }
            (false, false, false) if seg.payload_len > 0 => {
                if !self.is(SAW_DATA[i]) {
                    self.present |= SAW_DATA[i];
                    self.history.push(side, b'D');
                }
            }
            (false, false, false) if f.ack() => {
                if !self.is(SAW_ACK[i]) {
                    self.present |= SAW_ACK[i];
                    self.history.push(side, b'A');
                }
            }
            (false, false, false) => {}
        }
    }

    /// Effects of entering a state: handshake timing, who reset, who closed first.
    fn on_enter(&mut self, was: State, next: State, side: Side, ctl: Control, ts: Timestamp) {
        if was == State::New && !matches!(next, State::SynSent | State::SynReceived) {
            self.present |= MIDSTREAM;
        }
        if was == State::SynReceived
            && side == Side::Client
            && matches!(next, State::Established | State::FinWait { .. })
            && self.is(HAS_ANSWERED_SYN)
            && !self.is(HAS_RTT)
        {
            self.handshake = saturate_u32(ts.micros_since(self.at(self.handshake)));
            self.present |= HAS_RTT;
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

    /// Marks a live pending notice as sent and returns its record.
    pub fn pending(&mut self, rares: &Rares) -> FlowRecord {
        self.present |= PENDING_REPORTED;
        self.snapshot(rares)
    }

    /// Ends the flow (if it is not already) and returns its final record.
    pub fn finish(&mut self, reason: EndReason, rares: &Rares) -> FlowRecord {
        let outcome = self.state.outcome();
        self.state = State::Done(outcome);
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
            server: self.server(rares),
            outcome: self.state.outcome(),
            reset_by: self.sides.get(RESET_BY),
            closed_first_by: self.sides.get(CLOSED_FIRST_BY),
            syn_count: u32::from(self.syn_count),
            syn_gaps_us: rare.syn_gaps,
            synack_count: u32::from(self.synack_count),
            port_reused: self.is(PORT_REUSED),
            midstream: self.is(MIDSTREAM),
            history: self.history,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            handshake_rtt_us: self.is(HAS_RTT).then_some(u64::from(self.handshake)),
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

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
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

//! The memory layout that keeps a tracked flow in a 160-byte table slot: [`Flow`]'s
//! fields, the small types that pack them (2-bit side slots, optional timestamps and
//! handshake options without tags, yes/no facts as bits), and the [`Rares`] slab that
//! holds what few flows need.
//!
//! Flow size is what bounds memory under a SYN flood (the table holds up to `--max-flows`
//! of them), hence the packing. This module stores and retrieves; it decides nothing:
//! what a segment does to a flow is in `state.rs` (the machine) and `account.rs` (the
//! counters). Only those two write the fields.

use super::record::{History, IcmpAnswer, Side, SynGaps};
use super::seq::SeqNumber;
use super::state::State;
use super::zeek::ZeekEndpoints;
use crate::decode::{Encap, Endpoint, HandshakeOptions, Timestamp};
use std::net::IpAddr;
use std::num::NonZeroU64;

/// One connection (one generation of a 4-tuple), packed: counters that cannot
/// realistically overflow their narrower types saturate (a `u32` of segments is 4 billion
/// in one direction of one connection), times after the first packet are microsecond
/// offsets from it, and what few flows need is in a [`Rare`]. The wide, self-contained
/// `FlowRecord` is built only when the flow is reported.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub(super) id: u64,
    pub(super) first_ts: Timestamp,
    pub(super) last_ts: Timestamp,
    pub(super) bytes: [u64; 2],
    pub(super) packets: [u32; 2],
    /// Per side, the sequence numbers in [`Seq`]; whether each is known is in `facts`.
    pub(super) seqs: [[SeqNumber; 3]; 2],
    pub(super) client_isn: SeqNumber,
    /// Microseconds after `first_ts` of the SYN the first SYN-ACK answered
    /// (`HAS_ANSWERED_SYN`), then, from the client's final ACK on, the handshake RTT
    /// (`HAS_RTT`): the one is only needed until the other is known.
    pub(super) handshake: u32,
    /// Microseconds after `first_ts` of the last client SYN.
    pub(super) last_syn: u32,
    /// IPv4 client and server addresses; IPv6 ones are in the rare part.
    pub(super) v4: [[u8; 4]; 2],
    pub(super) ports: [u16; 2],
    /// Index of this flow's [`Rare`] in [`Rares`], or [`NO_RARE`].
    pub(super) rare: u32,
    pub(super) syn_count: u16,
    pub(super) synack_count: u16,
    pub(super) options: [PackedOptions; 2],
    pub(super) history: History,
    pub(super) state: State,
    /// Which optional numbers are known, the yes/no facts, and Zeek's endpoint states.
    pub(super) facts: Facts,
    /// Who reset, who closed first, who sent the last data.
    pub(super) sides: Sides,
}

/// The sequence numbers kept per side, by index into [`Flow::seqs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seq {
    /// One past the highest sequence number sent (SYN and FIN count as one).
    SndMax = 0,
    /// Where this side's latest FIN sits.
    Fin = 1,
    /// This side's last RST (Zeek writes `R` again only for a RST at a new number).
    LastRst = 2,
}

/// A [`Flow`]'s facts, one bit each: bit `3 * side + seq` says that sequence number is
/// known; the named bits below follow; Zeek's endpoint states take the top bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts(u32);

pub const HAS_ISN: u32 = 1 << 6;
pub const HAS_LAST_SYN: u32 = 1 << 7;
/// [`Flow::handshake`] holds the offset of the SYN the first SYN-ACK answered…
pub const HAS_ANSWERED_SYN: u32 = 1 << 8;
/// …and, once the client's final ACK is seen, the handshake RTT instead.
pub const HAS_RTT: u32 = 1 << 9;
pub const MIDSTREAM: u32 = 1 << 10;
pub const PORT_REUSED: u32 = 1 << 11;
pub const PENDING_REPORTED: u32 = 1 << 12;
/// A live notice about the handshake was sent: it stalled (SYN-ACKs retransmitted, no
/// ACK), or it completed only on a retransmitted SYN (a slow connect). One bit for both:
/// none is left, and a connection whose stall was said is rarely also a slow one.
pub const STALL_REPORTED: u32 = 1 << 30;
/// A live notice of a zero window held past `ZERO_WINDOW_STALL_US` was sent.
pub const ZERO_WINDOW_REPORTED: u32 = 1 << 31;
pub const IS_V6: u32 = 1 << 13;
/// Zeek's once-per-side history letters `D` (data) and `A` (pure ACK), by side: checked
/// on every segment, so a bit rather than a scan of the letters.
pub const SAW_DATA: [u32; 2] = [1 << 14, 1 << 15];
pub const SAW_ACK: [u32; 2] = [1 << 16, 1 << 17];
/// Where [`ZeekEndpoints`] starts; it runs to bit 29.
const ZEEK_SHIFT: u32 = 18;
const _: () = assert!(ZEEK_SHIFT + ZeekEndpoints::BITS <= 30);

impl Facts {
    pub fn new(bits: u32) -> Facts {
        Facts(bits)
    }

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    pub fn set(&mut self, bit: u32) {
        self.0 |= bit;
    }

    fn seq_bit(side: Side, which: Seq) -> u32 {
        1 << (3 * side.index() + which as usize)
    }

    pub fn zeek(self) -> ZeekEndpoints {
        // The mask in `from_bits` keeps the 12 bits.
        ZeekEndpoints::from_bits((self.0 >> ZEEK_SHIFT) as u16)
    }

    pub fn set_zeek(&mut self, z: ZeekEndpoints) {
        let mask = ((1u32 << ZeekEndpoints::BITS) - 1) << ZEEK_SHIFT;
        self.0 = (self.0 & !mask) | (u32::from(z.bits()) << ZEEK_SHIFT);
    }
}

/// Three `Option<Side>`s in a byte, two bits each: 0 none, 1 client, 2 server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sides(u8);

pub const RESET_BY: u8 = 0;
pub const CLOSED_FIRST_BY: u8 = 2;
pub const LAST_PAYLOAD_BY: u8 = 4;

impl Sides {
    pub fn get(self, at: u8) -> Option<Side> {
        match (self.0 >> at) & 3 {
            1 => Some(Side::Client),
            2 => Some(Side::Server),
            _ => None,
        }
    }

    pub fn set(&mut self, at: u8, side: Side) {
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
pub struct MaybeTs(Option<NonZeroU64>);

impl MaybeTs {
    pub const NONE: MaybeTs = MaybeTs(None);

    pub fn some(ts: Timestamp) -> MaybeTs {
        MaybeTs(NonZeroU64::new(ts.0.saturating_add(1)))
    }

    pub fn get(self) -> Option<Timestamp> {
        self.0.map(|v| Timestamp(v.get() - 1))
    }
}

/// [`HandshakeOptions`] in 4 bytes (an `Option<HandshakeOptions>` takes 8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackedOptions {
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

    pub fn pack(o: HandshakeOptions) -> PackedOptions {
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

    pub fn unpack(self) -> Option<HandshakeOptions> {
        let has = |bit: u8| self.bits & bit != 0;
        has(PackedOptions::PRESENT).then(|| HandshakeOptions {
            mss: has(PackedOptions::MSS).then_some(self.mss),
            window_scale: has(PackedOptions::WSCALE).then_some(self.window_scale),
            sack_permitted: has(PackedOptions::SACK),
            timestamps: has(PackedOptions::TIMESTAMPS),
        })
    }
}

/// What few flows need, kept out of [`Flow`] so that the common flow stays small: the
/// tunnel it came in, IPv6 addresses, the SYN retransmission schedule, an ICMP answer, retransmission and
/// zero-window counts. Lives in [`Rares`], found by index.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rare {
    /// Part of the flow's key, with the 4-tuple.
    pub encap: Encap,
    pub v6: [[u8; 16]; 2],
    pub syn_gaps: SynGaps,
    pub icmp: Option<IcmpAnswer>,
    /// Segments each side sent again (loss on the way, or a stalled peer).
    pub retransmits: [u32; 2],
    /// Of those, the ones carrying data: Zeek's `T` counts only these.
    pub data_retransmits: [u32; 2],
    /// Times each side closed its window.
    pub zero_windows: [u32; 2],
    /// Since when each side's advertised window has been zero.
    pub zero_since: [MaybeTs; 2],
    /// Longest time each side kept its window at zero.
    pub zero_window_us: [u64; 2],
}

/// The [`Rare`] parts of the table's flows: a slab with a free list, so that steady-state
/// processing reuses slots instead of allocating.
#[derive(Debug, Default)]
pub struct Rares {
    slots: Vec<Rare>,
    free: Vec<u32>,
}

/// "No rare part" in [`Flow::rare`].
pub const NO_RARE: u32 = u32::MAX;

impl Rares {
    pub fn get(&self, i: u32) -> Option<&Rare> {
        self.slots.get(i as usize)
    }

    /// The rare part at `*i`, made (and `*i` set) on first use.
    pub fn get_or_make(&mut self, i: &mut u32) -> &mut Rare {
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
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
    }
}

pub fn saturate_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Storage: making a flow, reading its addresses back, the optional numbers.
impl Flow {
    pub fn new(
        id: u64,
        client: Endpoint,
        server: Endpoint,
        encap: Encap,
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
            seqs: [[SeqNumber::default(); 3]; 2],
            client_isn: SeqNumber::default(),
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
            facts: Facts::new(if port_reused { PORT_REUSED } else { 0 }),
            sides: Sides::default(),
        };
        match (client.addr, server.addr) {
            (IpAddr::V4(c), IpAddr::V4(s)) => flow.v4 = [c.octets(), s.octets()],
            (c, s) => {
                flow.facts.set(IS_V6);
                rares.get_or_make(&mut flow.rare).v6 = [v6_octets(c), v6_octets(s)];
            }
        }
        if encap != Encap::None {
            rares.get_or_make(&mut flow.rare).encap = encap;
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

    pub fn first_ts(&self) -> Timestamp {
        self.first_ts
    }

    pub fn last_ts(&self) -> Timestamp {
        self.last_ts
    }

    fn addr(&self, side: Side, rares: &Rares) -> IpAddr {
        let i = side.index();
        if self.facts.has(IS_V6) {
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

    /// The tunnel or tag this flow's packets came in.
    pub fn encap(&self, rares: &Rares) -> Encap {
        rares.get(self.rare).map_or(Encap::None, |r| r.encap)
    }

    /// Which side sent a segment from `src` to `dst` in `encap`, if this flow is theirs.
    /// Ports first: they differ between most flows and are right here; the tunnel, in
    /// the rare part, last.
    pub fn side_of(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        encap: Encap,
        rares: &Rares,
    ) -> Option<Side> {
        let is = |e: &Endpoint, side: Side| {
            e.port == self.ports[side.index()]
                && match (e.addr, self.facts.has(IS_V6)) {
                    (IpAddr::V4(a), false) => a.octets() == self.v4[side.index()],
                    (IpAddr::V6(a), true) => {
                        rares.get(self.rare).map(|r| r.v6[side.index()]) == Some(a.octets())
                    }
                    _ => false,
                }
        };
        let side = if is(src, Side::Client) && is(dst, Side::Server) {
            Side::Client
        } else if is(src, Side::Server) && is(dst, Side::Client) {
            Side::Server
        } else {
            return None;
        };
        (self.encap(rares) == encap).then_some(side)
    }

    pub(super) fn seq(&self, side: Side, which: Seq) -> Option<SeqNumber> {
        self.facts
            .has(Facts::seq_bit(side, which))
            .then(|| self.seqs[side.index()][which as usize])
    }

    pub(super) fn set_seq(&mut self, side: Side, which: Seq, v: SeqNumber) {
        self.seqs[side.index()][which as usize] = v;
        self.facts.set(Facts::seq_bit(side, which));
    }

    pub(super) fn client_isn(&self) -> Option<SeqNumber> {
        self.facts.has(HAS_ISN).then_some(self.client_isn)
    }

    pub(super) fn set_client_isn(&mut self, isn: SeqNumber) {
        self.client_isn = isn;
        self.facts.set(HAS_ISN);
    }

    /// `ts` as microseconds after the first packet.
    pub(super) fn offset(&self, ts: Timestamp) -> u32 {
        saturate_u32(ts.micros_since(self.first_ts))
    }

    /// The time `offset` microseconds after the first packet.
    pub(super) fn at(&self, offset: u32) -> Timestamp {
        self.first_ts.add_micros(u64::from(offset))
    }
}

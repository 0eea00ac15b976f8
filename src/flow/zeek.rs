//! Zeek's view of one TCP connection: the two endpoint states Zeek's TCP analyzer keeps
//! (`TCP_ENDPOINT_*`, driven by `TCPSessionAdapter::UpdateStateMachine` in
//! `src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc`), updated from the same
//! segments the flow sees, and the `conn_state` they give (`Conn::conn_state` in
//! `base/protocols/conn/main.zeek`).
//!
//! Responsible for deriving [`ConnState`] only. It must not print anything (the Zeek
//! printers in `report/` lay the value out) and must not read history letters, except
//! where Zeek's own `conn_state` does (the RSTOS0 pattern).

use super::record::{History, Side};
use crate::decode::TcpFlags;

/// A connection's `conn_state`, with Zeek's definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Connection attempt seen, no reply.
    S0,
    /// Connection established, not terminated.
    S1,
    /// Normal establishment and termination.
    SF,
    /// Connection attempt rejected.
    Rej,
    /// Connection established and close attempt by originator seen (but no reply from
    /// responder).
    S2,
    /// Connection established and close attempt by responder seen (but no reply from
    /// originator).
    S3,
    /// Connection established, originator aborted (sent a RST).
    Rsto,
    /// Responder sent a RST.
    Rstr,
    /// Originator sent a SYN followed by a RST, we never saw a SYN-ACK from the responder.
    Rstos0,
    /// Responder sent a SYN ACK followed by a RST, we never saw a SYN from the (purported)
    /// originator.
    Rstrh,
    /// Originator sent a SYN followed by a FIN, we never saw a SYN ACK from the responder
    /// (hence the connection was "half" open).
    Sh,
    /// Responder sent a SYN ACK followed by a FIN, we never saw a SYN from the originator.
    Shr,
    /// No SYN seen, just midstream traffic (one example of this is a "partial connection"
    /// that was not later closed).
    Oth,
}

impl ConnState {
    /// The value as conn.log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::S0 => "S0",
            ConnState::S1 => "S1",
            ConnState::SF => "SF",
            ConnState::Rej => "REJ",
            ConnState::S2 => "S2",
            ConnState::S3 => "S3",
            ConnState::Rsto => "RSTO",
            ConnState::Rstr => "RSTR",
            ConnState::Rstos0 => "RSTOS0",
            ConnState::Rstrh => "RSTRH",
            ConnState::Sh => "SH",
            ConnState::Shr => "SHR",
            ConnState::Oth => "OTH",
        }
    }
}

/// Zeek's `TCP_ENDPOINT_*` states of one side (`TCP_Endpoint.h`), numbered so that each
/// fits in three bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tcp {
    Inactive = 0,
    SynSent = 1,
    SynAckSent = 2,
    Partial = 3,
    Established = 4,
    Closed = 5,
    Reset = 6,
}

impl Tcp {
    fn from_bits(v: u16) -> Tcp {
        match v & 7 {
            1 => Tcp::SynSent,
            2 => Tcp::SynAckSent,
            3 => Tcp::Partial,
            4 => Tcp::Established,
            5 => Tcp::Closed,
            6 => Tcp::Reset,
            _ => Tcp::Inactive,
        }
    }

    /// Zeek's `o_inactive`/`r_inactive`: nothing that started a connection was seen.
    fn inactive(self) -> bool {
        matches!(self, Tcp::Inactive | Tcp::Partial)
    }
}

/// Both endpoints' `state` and `prev_state`, three bits each, in 12 bits: they ride in
/// the flow's spare bits (see `packed.rs`) so that the flow slot does not grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZeekEndpoints(u16);

impl ZeekEndpoints {
    /// The bits this value uses, from bit 0.
    pub const BITS: u32 = 12;

    pub fn from_bits(v: u16) -> ZeekEndpoints {
        ZeekEndpoints(v & ((1 << Self::BITS) - 1))
    }

    pub fn bits(self) -> u16 {
        self.0
    }

    fn shift(side: Side, prev: bool) -> u16 {
        (side.index() as u16) * 6 + if prev { 3 } else { 0 }
    }

    fn state(self, side: Side) -> Tcp {
        Tcp::from_bits(self.0 >> Self::shift(side, false))
    }

    fn prev(self, side: Side) -> Tcp {
        Tcp::from_bits(self.0 >> Self::shift(side, true))
    }

    fn put(&mut self, side: Side, prev: bool, t: Tcp) {
        let at = Self::shift(side, prev);
        self.0 = (self.0 & !(7 << at)) | ((t as u16) << at);
    }

    /// `TCP_Endpoint::SetState`: the old state becomes `prev_state` only on a change.
    fn set(&mut self, side: Side, t: Tcp) {
        let old = self.state(side);
        if old != t {
            self.put(side, true, old);
            self.put(side, false, t);
        }
    }

    /// One segment sent by `side` (Zeek's originator is the client), as
    /// `UpdateStateMachine` dispatches on the sender's state.
    #[inline]
    pub fn on_segment(&mut self, side: Side, flags: TcpFlags, payload_len: u32) {
        if self.moved_by(side, flags) {
            self.update(side, flags, payload_len);
        }
    }

    /// Whether a segment with `flags` from `side` may change the states. Once a side has
    /// started, only SYN, FIN and RST move it (every arm of [`update`](Self::update)
    /// keys on them): the data and ACK segments that make up most of a connection do
    /// not, and the flow skips them after two bit tests.
    #[inline]
    pub fn moved_by(self, side: Side, flags: TcpFlags) -> bool {
        const CONTROL: u8 = TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST;
        flags.0 & CONTROL != 0 || !self.started(side)
    }

    /// Whether `side` has left Zeek's INACTIVE state (`Tcp::Inactive` is 0).
    #[inline]
    fn started(self, side: Side) -> bool {
        (self.0 >> Self::shift(side, false)) & 7 != 0
    }

    /// The dispatch on the sender's state (`UpdateStateMachine`), for a segment that
    /// [`moved_by`](Self::moved_by) says may change it.
    #[inline(never)]
    pub fn update(&mut self, side: Side, flags: TcpFlags, payload_len: u32) {
        match self.state(side) {
            Tcp::Inactive => self.inactive(side, flags, payload_len),
            Tcp::SynSent | Tcp::SynAckSent => self.syn_sent(side, flags),
            Tcp::Established | Tcp::Partial => self.established(side, flags),
            Tcp::Closed => self.closed(side, flags),
            // `UpdateResetState` only reports weirds.
            Tcp::Reset => {}
        }
    }

    /// `UpdateInactiveState`: the first segment of a side, flag by flag.
    fn inactive(&mut self, side: Side, f: TcpFlags, payload_len: u32) {
        let peer = side.other();
        if f.syn() {
            match side {
                Side::Client if f.ack() => self.set(side, Tcp::SynAckSent),
                Side::Client => self.set(side, Tcp::SynSent),
                Side::Server => {
                    // A responder's bare SYN after the originator's SYN-ACK is Zeek's
                    // "SYN/SYN-ACK reversal": it flips the roles (here the port fixes
                    // them) and establishes the peer.
                    if !f.ack() && self.state(peer) == Tcp::SynAckSent {
                        self.set(peer, Tcp::Established);
                    }
                    // A SYN-ACK answering the originator's SYN establishes both sides;
                    // the final ACK is not awaited.
                    if self.state(peer) == Tcp::SynSent {
                        self.set(peer, Tcp::Established);
                    }
                    self.set(side, Tcp::Established);
                }
            }
        }
        if f.fin() {
            self.set(side, Tcp::Closed);
        }
        if f.rst() {
            self.set(side, Tcp::Reset);
        }
        if self.state(side) == Tcp::Inactive {
            if side == Side::Server && payload_len == 0 && self.state(Side::Client) == Tcp::SynSent
            {
                // "Some eccentric TCP's will ack an initial SYN prior to sending a SYN
                // reply": not a partial connection.
            } else if f.ack() && self.state(peer) == Tcp::Established {
                // A SYN-ACK seen without its SYN, then this side's ACK: the SYN was
                // missed, the connection is not partial.
                self.set(side, Tcp::Established);
            } else {
                self.set(side, Tcp::Partial);
            }
        }
    }

    /// `UpdateSYN_SentState`: only a FIN or a RST moves a side that sent a SYN.
    fn syn_sent(&mut self, side: Side, f: TcpFlags) {
        if f.fin() {
            self.set(side, Tcp::Closed);
        }
        if f.rst() {
            self.set(side, Tcp::Reset);
        }
    }

    /// `UpdateEstablishedState`.
    fn established(&mut self, side: Side, f: TcpFlags) {
        let peer = side.other();
        if f.syn()
            && !f.ack()
            && self.state(side) == Tcp::Partial
            && self.state(peer) == Tcp::Inactive
        {
            // "SYN_after_partial": the connection starts over from this SYN.
            self.set(side, Tcp::SynSent);
        }
        if f.fin() && !f.rst() {
            self.set(side, Tcp::Closed);
            // "The peer sent a FIN followed by a RST. Turn it back into CLOSED state,
            // because this was actually normal termination."
            if self.state(peer) == Tcp::Reset && self.prev(peer) == Tcp::Closed {
                self.set(peer, Tcp::Closed);
            }
        }
        if f.rst() {
            self.set(side, Tcp::Reset);
        }
    }

    /// `UpdateClosedState`: "If our peer was also closed, then don't change our state now
    /// on a RST, since this connection has already seen a FIN exchange."
    fn closed(&mut self, side: Side, f: TcpFlags) {
        if f.rst() && self.state(side.other()) != Tcp::Closed {
            self.set(side, Tcp::Reset);
        }
    }

    /// Zeek's `Conn::conn_state` for a TCP connection. `bytes` are the payload bytes each
    /// side sent (Zeek's `c$orig$size`, `c$resp$size`), `history` the conn.log history.
    pub fn conn_state(self, history: &History, bytes: [u64; 2]) -> ConnState {
        let os = self.state(Side::Client);
        let rs = self.state(Side::Server);
        if rs == Tcp::Reset {
            let no_bytes = bytes == [0, 0];
            if matches!(os, Tcp::SynSent | Tcp::SynAckSent) || (os == Tcp::Reset && no_bytes) {
                ConnState::Rej
            } else if os.inactive() {
                ConnState::Rstrh
            } else {
                ConnState::Rstr
            }
        } else if os == Tcp::Reset {
            if !rs.inactive() {
                ConnState::Rsto
            } else if syn_then_own_rst(history) {
                ConnState::Rstos0
            } else {
                ConnState::Oth
            }
        } else if rs == Tcp::Closed && os == Tcp::Closed {
            ConnState::SF
        } else if os == Tcp::Closed {
            if rs.inactive() {
                ConnState::Sh
            } else {
                ConnState::S2
            }
        } else if rs == Tcp::Closed {
            if os.inactive() {
                ConnState::Shr
            } else {
                ConnState::S3
            }
        } else if os == Tcp::SynSent && rs == Tcp::Inactive {
            ConnState::S0
        } else if os == Tcp::Established && rs == Tcp::Established {
            ConnState::S1
        } else {
            ConnState::Oth
        }
    }
}

/// Zeek's `/^?S[^HAFGIQ]*R.*/ == c$history`: the originator's SYN, then its RST before
/// any handshake, ACK, FIN, gap, inconsistency or multi-flag packet of its own.
fn syn_then_own_rst(h: &History) -> bool {
    let letters = h.as_bytes();
    let letters = letters.strip_prefix(b"^").unwrap_or(letters);
    match letters.split_first() {
        Some((b'S', rest)) => rest
            .iter()
            .find(|l| b"RHAFGIQ".contains(l))
            .is_some_and(|l| *l == b'R'),
        _ => false,
    }
}

#[cfg(test)]
mod tests;

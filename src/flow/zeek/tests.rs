//! One scenario per Zeek `conn_state`, each quoting Zeek's definition
//! (`base/protocols/conn/main.zeek`), played as real segments through a flow; then the
//! corners of Zeek's endpoint machine that a history of letters could not show.

use super::*;
use crate::decode::{
    Encap, Endpoint, HandshakeOptions, IcmpError, TcpSegment, Timestamp, Unreachable,
};
use crate::flow::packed::{Flow, Rares};
use crate::flow::record::EndReason;
use std::net::{IpAddr, Ipv4Addr};

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;

/// Client ISN 100, server ISN 5000.
const C: u32 = 100;
const S: u32 = 5000;

/// A flow between 127.0.0.1:40000 and :61999, fed segments one millisecond apart.
struct Conn {
    flow: Flow,
    rares: Rares,
    ms: u64,
}

impl Conn {
    fn new() -> Conn {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut rares = Rares::default();
        let flow = Flow::new(
            1,
            Endpoint::new(lo, 40000),
            Endpoint::new(lo, 61999),
            Encap::None,
            Timestamp(1_000_000),
            false,
            &mut rares,
        );
        Conn { flow, rares, ms: 0 }
    }

    fn send(&mut self, side: Side, flags: u8, seq: u32, ack: u32, len: u32) -> &mut Conn {
        let seg = TcpSegment {
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 65535,
            payload_len: len,
            options: HandshakeOptions::default(),
        };
        self.ms += 1;
        let ts = Timestamp(1_000_000 + self.ms * 1000);
        self.flow.on_tcp(side, &seg, ts, &mut self.rares);
        self
    }

    /// The client sends.
    fn c(&mut self, flags: u8, seq: u32, ack: u32, len: u32) -> &mut Conn {
        self.send(Side::Client, flags, seq, ack, len)
    }

    /// The server sends.
    fn s(&mut self, flags: u8, seq: u32, ack: u32, len: u32) -> &mut Conn {
        self.send(Side::Server, flags, seq, ack, len)
    }

    /// SYN, SYN-ACK, ACK.
    fn handshake(&mut self) -> &mut Conn {
        self.c(SYN, C, 0, 0)
            .s(SYN | ACK, S, C + 1, 0)
            .c(ACK, C + 1, S + 1, 0)
    }

    /// The handshake, then 100 bytes each way, acknowledged.
    fn transfer(&mut self) -> &mut Conn {
        self.handshake()
            .c(ACK | PSH, C + 1, S + 1, 100)
            .s(ACK, S + 1, C + 101, 0)
            .s(ACK | PSH, S + 1, C + 101, 100)
            .c(ACK, C + 101, S + 101, 0)
    }

    /// The record's conn_state as of now.
    fn state(&self) -> ConnState {
        self.flow
            .record(EndReason::CaptureEnd, &self.rares)
            .conn_state
    }

    fn history(&self) -> String {
        let rec = self.flow.record(EndReason::CaptureEnd, &self.rares);
        rec.history.as_str().to_string()
    }
}

// --- Zeek's definitions, one scenario each ----------------------------------------------

#[test]
fn s0_unanswered_syns() {
    // Zeek: "S0: Connection attempt seen, no reply."
    let mut c = Conn::new();
    c.c(SYN, C, 0, 0).c(SYN, C, 0, 0).c(SYN, C, 0, 0);
    assert_eq!(c.state(), ConnState::S0);
}

#[test]
fn s0_syn_answered_by_icmp_only() {
    // Zeek: "S0: Connection attempt seen, no reply." An ICMP error is no TCP reply: Zeek
    // logs it as a separate icmp connection and the TCP one stays S0.
    let mut c = Conn::new();
    c.c(SYN, C, 0, 0);
    let err = IcmpError {
        reporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
        kind: Unreachable::Port,
        quoted_seq: C,
    };
    assert!(c.flow.on_icmp(&err, Timestamp(1_010_000), &mut c.rares));
    assert_eq!(c.state(), ConnState::S0);
}

#[test]
fn s1_established_and_still_open() {
    // Zeek: "S1: Connection established, not terminated."
    let mut c = Conn::new();
    c.transfer();
    assert_eq!(c.state(), ConnState::S1);
}

#[test]
fn s1_handshake_without_the_final_ack() {
    // Zeek: "S1: Connection established, not terminated." Zeek's TCP analyzer establishes
    // both endpoints on the SYN-ACK that answers the SYN; the final ACK is not needed.
    let mut c = Conn::new();
    c.c(SYN, C, 0, 0).s(SYN | ACK, S, C + 1, 0);
    assert_eq!(c.state(), ConnState::S1);
}

#[test]
fn sf_closed_both_ways() {
    // Zeek: "SF: Normal establishment and termination."
    let mut c = Conn::new();
    c.transfer()
        .c(FIN | ACK, C + 101, S + 101, 0)
        .s(FIN | ACK, S + 101, C + 102, 0)
        .c(ACK, C + 102, S + 102, 0);
    assert_eq!(c.state(), ConnState::SF);
}

#[test]
fn sf_when_a_rst_follows_both_fins() {
    // Zeek: "SF: Normal establishment and termination." UpdateClosedState: "If our peer
    // was also closed, then don't change our state now on a RST".
    let mut c = Conn::new();
    c.transfer()
        .c(FIN | ACK, C + 101, S + 101, 0)
        .s(FIN | ACK, S + 101, C + 102, 0)
        .c(RST, C + 102, 0, 0);
    assert_eq!(c.state(), ConnState::SF);
}

#[test]
fn sf_when_a_fin_then_rst_is_answered_by_the_peers_fin() {
    // UpdateEstablishedState: "The peer sent a FIN followed by a RST. Turn it back into
    // CLOSED state, because this was actually normal termination."
    let mut c = Conn::new();
    c.transfer()
        .c(FIN | ACK, C + 101, S + 101, 0)
        .c(RST, C + 102, 0, 0)
        .s(FIN | ACK, S + 101, C + 102, 0);
    assert_eq!(c.state(), ConnState::SF);
}

#[test]
fn rej_syn_answered_by_rst() {
    // Zeek: "REJ: Connection attempt rejected."
    let mut c = Conn::new();
    c.c(SYN, C, 0, 0).s(RST | ACK, 0, C + 1, 0);
    assert_eq!(c.state(), ConnState::Rej);
}

#[test]
fn s2_client_fin_unanswered() {
    // Zeek: "S2: Connection established and close attempt by originator seen (but no reply
    // from responder)."
    let mut c = Conn::new();
    c.transfer().c(FIN | ACK, C + 101, S + 101, 0);
    assert_eq!(c.state(), ConnState::S2);
}

#[test]
fn s3_server_fin_unanswered() {
    // Zeek: "S3: Connection established and close attempt by responder seen (but no reply
    // from originator)."
    let mut c = Conn::new();
    c.transfer().s(FIN | ACK, S + 101, C + 101, 0);
    assert_eq!(c.state(), ConnState::S3);
}

#[test]
fn rsto_client_aborts() {
    // Zeek: "RSTO: Connection established, originator aborted (sent a RST)."
    let mut c = Conn::new();
    c.transfer().c(RST | ACK, C + 101, S + 101, 0);
    assert_eq!(c.state(), ConnState::Rsto);
}

#[test]
fn rstr_server_resets() {
    // Zeek: "RSTR: Responder sent a RST."
    let mut c = Conn::new();
    c.transfer().s(RST | ACK, S + 101, C + 101, 0);
    assert_eq!(c.state(), ConnState::Rstr);
}

#[test]
fn rstr_server_resets_after_the_client_fin() {
    // Zeek: "RSTR: Responder sent a RST." (the originator's FIN does not make it S2).
    let mut c = Conn::new();
    c.transfer()
        .c(FIN | ACK, C + 101, S + 101, 0)
        .s(RST, S + 101, 0, 0);
    assert_eq!(c.state(), ConnState::Rstr);
}

#[test]
fn rstos0_client_gives_up_before_any_answer() {
    // Zeek: "RSTOS0: Originator sent a SYN followed by a RST, we never saw a SYN-ACK from
    // the responder."
    let mut c = Conn::new();
    c.c(SYN, C, 0, 0).c(RST, C + 1, 0, 0);
    assert_eq!(c.state(), ConnState::Rstos0);
}

#[test]
fn rstrh_synack_then_rst_without_the_syn() {
    // Zeek: "RSTRH: Responder sent a SYN ACK followed by a RST, we never saw a SYN from
    // the (purported) originator."
    let mut c = Conn::new();
    c.s(SYN | ACK, S, C + 1, 0).s(RST, S + 1, 0, 0);
    assert_eq!(c.state(), ConnState::Rstrh);
}

#[test]
fn sh_client_syn_then_fin() {
    // Zeek: "SH: Originator sent a SYN followed by a FIN, we never saw a SYN ACK from the
    // responder (hence the connection was "half" open)."
    let mut c = Conn::new();
    c.c(SYN, C, 0, 0).c(FIN, C + 1, 0, 0);
    assert_eq!(c.state(), ConnState::Sh);
}

#[test]
fn shr_synack_then_fin_without_the_syn() {
    // Zeek: "SHR: Responder sent a SYN ACK followed by a FIN, we never saw a SYN from the
    // originator."
    let mut c = Conn::new();
    c.s(SYN | ACK, S, C + 1, 0).s(FIN | ACK, S + 1, C + 1, 0);
    assert_eq!(c.state(), ConnState::Shr);
}

#[test]
fn oth_midstream_traffic_not_closed() {
    // Zeek: "OTH: No SYN seen, just midstream traffic (one example of this is a "partial
    // connection" that was not later closed)."
    let mut c = Conn::new();
    c.c(ACK | PSH, C, S, 100)
        .s(ACK, S, C + 100, 0)
        .s(ACK | PSH, S, C + 100, 100)
        .c(ACK, C + 100, S + 100, 0);
    assert_eq!(c.state(), ConnState::Oth);
}

#[test]
fn midstream_closed_both_ways_is_sf_as_in_zeek() {
    // Zeek's conn_state looks only at the endpoint states: two FINs are SF even without
    // a SYN (the midstream fixture).
    let mut c = Conn::new();
    c.c(ACK | PSH, C, S, 100)
        .s(ACK | PSH, S, C + 100, 100)
        .c(FIN | ACK, C + 100, S + 100, 0)
        .s(FIN | ACK, S + 100, C + 101, 0)
        .c(ACK, C + 101, S + 101, 0);
    assert_eq!(c.state(), ConnState::SF);
}

#[test]
fn fins_and_rsts_a_full_history_could_not_hold_still_count() {
    // A client that sends FINs at twenty new sequence numbers fills the 24-letter
    // history; the server's final RST has no room for its `r`, yet Zeek's endpoints saw it.
    let mut c = Conn::new();
    c.transfer();
    for i in 0..20 {
        c.c(FIN | ACK | PSH, C + 101 + i, S + 101, 1);
    }
    c.s(RST, S + 101, 0, 0);
    assert!(!c.history().contains('r'), "{}", c.history());
    assert_eq!(c.state(), ConnState::Rstr);
}

// --- Corners of the endpoint machine ---------------------------------------------------

#[test]
fn a_responder_acking_the_syn_before_its_syn_ack_is_not_partial() {
    // UpdateInactiveState: "Some eccentric TCP's will ack an initial SYN prior to sending
    // a SYN reply": the attempt is still S0, and the SYN-ACK then establishes it.
    let mut c = Conn::new();
    c.c(SYN, C, 0, 0).s(ACK, S, C + 1, 0);
    assert_eq!(c.state(), ConnState::S0);
    c.s(SYN | ACK, S, C + 1, 0);
    assert_eq!(c.state(), ConnState::S1);
}

#[test]
fn an_ack_after_a_lone_syn_ack_establishes_the_client() {
    // UpdateInactiveState: "No SYN packet from originator but SYN/ACK from responder, and
    // now a pure ACK. Probably means we just missed that initial SYN."
    let mut c = Conn::new();
    c.s(SYN | ACK, S, C + 1, 0).c(ACK, C + 1, S + 1, 0);
    assert_eq!(c.state(), ConnState::S1);
}

#[test]
fn a_syn_after_one_sided_midstream_data_starts_over() {
    // UpdateEstablishedState, "SYN_after_partial": the client becomes SYN_SENT again, so
    // an unanswered attempt is S0.
    let mut c = Conn::new();
    c.c(ACK | PSH, C, S, 100).c(SYN, C + 1000, 0, 0);
    assert_eq!(c.state(), ConnState::S0);
}

#[test]
fn syn_with_rst_in_one_segment_moves_the_endpoint_through_both() {
    // UpdateInactiveState looks at every flag of a segment in turn: SYN, then RST. The
    // history holds `Q` for it, which Zeek's RSTOS0 pattern excludes: OTH.
    let mut c = Conn::new();
    c.c(SYN | RST, C, 0, 0);
    assert_eq!(c.history(), "Q");
    assert_eq!(c.state(), ConnState::Oth);
}

#[test]
fn a_rst_without_any_payload_either_way_after_both_resets_is_a_rejection() {
    // Zeek's REJ also covers "both sides reset, no bytes": a client RST answered by the
    // server's RST on a mid-stream pair that carried nothing.
    let mut c = Conn::new();
    c.c(RST, C, 0, 0).s(RST, S, 0, 0);
    assert_eq!(c.state(), ConnState::Rej);
}

#[test]
fn endpoint_states_fit_their_twelve_bits() {
    let mut z = ZeekEndpoints::default();
    z.on_segment(Side::Client, TcpFlags(FIN), 0);
    z.on_segment(Side::Server, TcpFlags(RST), 0);
    assert_eq!(ZeekEndpoints::from_bits(z.bits()), z);
    assert!(z.bits() < 1 << ZeekEndpoints::BITS);
}

//! Every arm of `transition`, each named for the real-world scenario it models, plus the
//! per-flow bookkeeping that rides on the transitions.

use super::*;
use crate::decode::{HandshakeOptions, IcmpError, TcpFlags, Unreachable};
use crate::flow::record::Outcome;
use std::net::{IpAddr, Ipv4Addr};
use Control::*;
use Side::*;
use State::*;

fn t(state: State, side: Side, ctl: Control) -> State {
    transition(state, side, ctl, false)
}

// --- from New: how a flow's first segment sets its starting state ---------------------

#[test]
fn client_syn_starts_an_attempt() {
    assert_eq!(t(New, Client, Syn), SynSent);
}

#[test]
fn synack_seen_before_its_syn_starts_in_syn_received() {
    assert_eq!(t(New, Server, SynAck), SynReceived);
}

#[test]
fn role_confusion_when_both_ends_use_the_port_still_starts_an_attempt() {
    assert_eq!(t(New, Server, Syn), SynSent);
    assert_eq!(t(New, Client, SynAck), SynSent);
}

#[test]
fn data_without_handshake_is_a_midstream_established_flow() {
    assert_eq!(t(New, Client, Segment), Established);
    assert_eq!(t(New, Server, Segment), Established);
}

#[test]
fn fin_as_first_segment_is_a_midstream_half_close() {
    assert_eq!(t(New, Server, Fin), FinWait { first: Server });
}

#[test]
fn rst_as_first_segment_is_a_midstream_reset() {
    assert_eq!(t(New, Client, Rst), Done(Outcome::Reset));
}

#[test]
fn icmp_error_as_first_event_is_unreachable() {
    assert_eq!(t(New, Server, Unreachable), Done(Outcome::Unreachable));
}

// --- SYN-SENT -------------------------------------------------------------------------

#[test]
fn refused_when_syn_answered_by_rst() {
    assert_eq!(t(SynSent, Server, Rst), Done(Outcome::Refused));
}

#[test]
fn client_rst_before_any_answer_stays_unanswered() {
    assert_eq!(t(SynSent, Client, Rst), Done(Outcome::Unanswered));
}

#[test]
fn unreachable_when_syn_answered_by_icmp() {
    assert_eq!(t(SynSent, Server, Unreachable), Done(Outcome::Unreachable));
}

#[test]
fn icmp_error_travelling_to_the_server_does_not_end_the_attempt() {
    assert_eq!(t(SynSent, Client, Unreachable), SynSent);
}

#[test]
fn synack_moves_to_syn_received() {
    assert_eq!(t(SynSent, Server, SynAck), SynReceived);
}

#[test]
fn retransmitted_syn_keeps_waiting() {
    assert_eq!(t(SynSent, Client, Syn), SynSent);
    assert_eq!(t(SynSent, Server, Syn), SynSent);
    assert_eq!(t(SynSent, Client, SynAck), SynSent);
}

#[test]
fn traffic_after_a_missed_synack_means_established() {
    assert_eq!(t(SynSent, Client, Segment), Established);
    assert_eq!(t(SynSent, Server, Segment), Established);
}

#[test]
fn fin_after_a_missed_synack_means_closing() {
    assert_eq!(t(SynSent, Client, Fin), FinWait { first: Client });
}

// --- SYN-RECEIVED ---------------------------------------------------------------------

#[test]
fn retransmitted_syn_or_synack_keeps_the_handshake_pending() {
    for (side, ctl) in [
        (Client, Syn),
        (Server, SynAck),
        (Server, Syn),
        (Client, SynAck),
    ] {
        assert_eq!(t(SynReceived, side, ctl), SynReceived, "{side:?} {ctl:?}");
    }
}

#[test]
fn icmp_during_the_handshake_is_noted_but_not_final() {
    assert_eq!(t(SynReceived, Server, Unreachable), SynReceived);
}

#[test]
fn final_ack_establishes() {
    assert_eq!(t(SynReceived, Client, Segment), Established);
}

#[test]
fn server_data_proves_the_final_ack_arrived() {
    assert_eq!(t(SynReceived, Server, Segment), Established);
}

#[test]
fn fin_completing_the_handshake_starts_closing() {
    assert_eq!(t(SynReceived, Client, Fin), FinWait { first: Client });
}

#[test]
fn rst_in_syn_received_is_handshake_incomplete() {
    assert_eq!(
        t(SynReceived, Server, Rst),
        Done(Outcome::HandshakeIncomplete)
    );
    assert_eq!(
        t(SynReceived, Client, Rst),
        Done(Outcome::HandshakeIncomplete)
    );
}

// --- ESTABLISHED ----------------------------------------------------------------------

#[test]
fn rst_in_established_is_reset() {
    assert_eq!(t(Established, Server, Rst), Done(Outcome::Reset));
    assert_eq!(t(Established, Client, Rst), Done(Outcome::Reset));
}

#[test]
fn first_fin_records_who_closes_first() {
    assert_eq!(t(Established, Server, Fin), FinWait { first: Server });
}

#[test]
fn data_and_late_handshake_segments_keep_established() {
    for ctl in [Segment, Syn, SynAck, Unreachable] {
        assert_eq!(t(Established, Client, ctl), Established, "{ctl:?}");
    }
}

// --- FIN-WAIT / CLOSE-WAIT ------------------------------------------------------------

#[test]
fn rst_after_one_fin_is_reset() {
    assert_eq!(
        t(FinWait { first: Client }, Server, Rst),
        Done(Outcome::Reset)
    );
}

#[test]
fn second_fin_from_the_other_side_moves_to_last_ack() {
    assert_eq!(
        t(FinWait { first: Client }, Server, Fin),
        LastAck { first: Client }
    );
}

#[test]
fn retransmitted_fin_from_the_same_side_keeps_waiting() {
    assert_eq!(
        t(FinWait { first: Client }, Client, Fin),
        FinWait { first: Client }
    );
}

#[test]
fn data_in_close_wait_keeps_half_closed() {
    for ctl in [Segment, Syn, SynAck, Unreachable] {
        assert_eq!(
            t(FinWait { first: Server }, Client, ctl),
            FinWait { first: Server }
        );
    }
}

// --- LAST-ACK -------------------------------------------------------------------------

#[test]
fn ack_of_the_second_fin_by_the_first_closer_is_closed() {
    let s = LastAck { first: Client };
    assert_eq!(transition(s, Client, Segment, true), Done(Outcome::Closed));
    assert_eq!(transition(s, Client, Fin, true), Done(Outcome::Closed));
}

#[test]
fn ack_not_covering_the_second_fin_keeps_waiting() {
    let s = LastAck { first: Client };
    assert_eq!(transition(s, Client, Segment, false), s);
    assert_eq!(transition(s, Server, Segment, true), s);
    assert_eq!(transition(s, Server, Fin, false), s);
    for ctl in [Syn, SynAck, Unreachable] {
        assert_eq!(transition(s, Server, ctl, false), s);
    }
}

#[test]
fn rst_after_both_fins_is_still_a_close() {
    assert_eq!(
        t(LastAck { first: Server }, Client, Rst),
        Done(Outcome::Closed)
    );
}

// --- Done -----------------------------------------------------------------------------

#[test]
fn nothing_revives_a_finished_flow() {
    for ctl in [Syn, SynAck, Rst, Fin, Segment, Unreachable] {
        assert_eq!(
            t(Done(Outcome::Refused), Client, ctl),
            Done(Outcome::Refused)
        );
    }
}

// --- Flow bookkeeping -----------------------------------------------------------------

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;

fn seg(flags: u8, seq: u32, ack: u32, len: u32, window: u16) -> TcpSegment {
    TcpSegment {
        seq,
        ack,
        flags: TcpFlags(flags),
        window,
        payload_len: len,
        options: HandshakeOptions::default(),
    }
}

fn ep(port: u16) -> crate::decode::Endpoint {
    crate::decode::Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// A flow with its own store of rare parts, so tests read like the table's calls.
struct TestFlow {
    flow: Flow,
    rares: Rares,
}

impl TestFlow {
    fn on_tcp(&mut self, side: Side, seg: &TcpSegment, ts: Timestamp) -> bool {
        self.flow.on_tcp(side, seg, ts, &mut self.rares)
    }

    fn on_icmp(&mut self, err: &IcmpError, ts: Timestamp) -> bool {
        self.flow.on_icmp(err, ts, &mut self.rares)
    }

    fn record(&self, reason: EndReason) -> FlowRecord {
        self.flow.record(reason, &self.rares)
    }

    fn finish(&mut self, reason: EndReason) -> FlowRecord {
        self.flow.finish(reason, &self.rares)
    }
}

impl std::ops::Deref for TestFlow {
    type Target = Flow;
    fn deref(&self) -> &Flow {
        &self.flow
    }
}

fn flow_between(client: crate::decode::Endpoint, server: crate::decode::Endpoint) -> TestFlow {
    let mut rares = Rares::default();
    let flow = Flow::new(1, client, server, Timestamp(1_000_000), false, &mut rares);
    TestFlow { flow, rares }
}

fn flow() -> TestFlow {
    flow_between(ep(40000), ep(61999))
}

/// A client at ISN 100 and a server at ISN 5000 complete the handshake; `at` is in µs.
fn handshake(f: &mut TestFlow) {
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    f.on_tcp(
        Server,
        &seg(SYN | ACK, 5000, 101, 0, 65535),
        Timestamp(1_000_040),
    );
    f.on_tcp(Client, &seg(ACK, 101, 5001, 0, 512), Timestamp(1_000_070));
}

#[test]
fn handshake_rtt_runs_from_the_answered_syn_to_the_final_ack() {
    let mut f = flow();
    handshake(&mut f);
    let r = f.record(EndReason::CaptureEnd);
    assert_eq!(r.outcome, Outcome::Established);
    assert_eq!(r.handshake_rtt_us, Some(70));
    assert_eq!(r.history.as_str(), "ShA");
}

#[test]
fn syn_retransmits_with_same_isn_are_one_attempt_with_gaps() {
    let mut f = flow();
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(2_000_000));
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(4_000_000));
    assert!(!f.is_new_connection(Client, &seg(SYN, 100, 0, 0, 65535)));
    assert!(f.is_new_connection(Client, &seg(SYN, 999, 0, 0, 65535)));
    let r = f.finish(EndReason::CaptureEnd);
    assert_eq!(r.outcome, Outcome::Unanswered);
    assert_eq!(r.syn_count, 3);
    assert_eq!(r.syn_gaps_us.as_slice(), &[1_000_000, 2_000_000]);
    assert_eq!(r.history.as_str(), "S");
}

#[test]
fn refused_records_the_server_as_resetter() {
    let mut f = flow();
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    let ended = f.on_tcp(Server, &seg(RST | ACK, 0, 101, 0, 0), Timestamp(1_000_020));
    assert!(ended);
    let r = f.record(EndReason::Packets);
    assert_eq!(r.outcome, Outcome::Refused);
    assert_eq!(r.reset_by, Some(Server));
    assert_eq!(r.history.as_str(), "Sr");
    // A zero window on a RST is not a receiver stall.
    assert_eq!(r.zero_windows, [0, 0]);
}

#[test]
fn clean_close_client_first_puts_time_wait_on_the_client() {
    let mut f = flow();
    handshake(&mut f);
    f.on_tcp(
        Client,
        &seg(PSH | ACK, 101, 5001, 10, 512),
        Timestamp(1_000_100),
    );
    f.on_tcp(
        Server,
        &seg(PSH | ACK, 5001, 111, 20, 512),
        Timestamp(1_000_200),
    );
    f.on_tcp(
        Client,
        &seg(FIN | ACK, 111, 5021, 0, 512),
        Timestamp(1_000_300),
    );
    f.on_tcp(
        Server,
        &seg(FIN | ACK, 5021, 112, 0, 512),
        Timestamp(1_000_400),
    );
    let ended = f.on_tcp(Client, &seg(ACK, 112, 5022, 0, 512), Timestamp(1_000_500));
    assert!(ended);
    let r = f.record(EndReason::Packets);
    assert_eq!(r.outcome, Outcome::Closed);
    assert_eq!(r.closed_first_by, Some(Client));
    assert_eq!(r.reset_by, None);
    assert_eq!(r.bytes, [10, 20]);
    assert_eq!(r.packets, [5, 3]);
    assert_eq!(r.history.as_str(), "ShADdFf");
}

#[test]
fn simultaneous_close_ends_closed_with_the_first_fin_seen() {
    let mut f = flow();
    handshake(&mut f);
    f.on_tcp(
        Server,
        &seg(FIN | ACK, 5001, 101, 0, 512),
        Timestamp(1_000_100),
    );
    f.on_tcp(
        Client,
        &seg(FIN | ACK, 101, 5001, 0, 512),
        Timestamp(1_000_101),
    );
    assert_eq!(f.state(), LastAck { first: Server });
    f.on_tcp(Client, &seg(ACK, 102, 5002, 0, 512), Timestamp(1_000_150));
    assert!(f.on_tcp(Server, &seg(ACK, 5002, 102, 0, 512), Timestamp(1_000_151)));
    let r = f.record(EndReason::Packets);
    assert_eq!(r.outcome, Outcome::Closed);
    assert_eq!(r.closed_first_by, Some(Server));
}

#[test]
fn retransmitted_data_is_counted_per_direction() {
    let mut f = flow();
    handshake(&mut f);
    f.on_tcp(
        Client,
        &seg(PSH | ACK, 101, 5001, 100, 512),
        Timestamp(1_000_100),
    );
    f.on_tcp(
        Client,
        &seg(PSH | ACK, 101, 5001, 100, 512),
        Timestamp(1_200_100),
    );
    let r = f.record(EndReason::CaptureEnd);
    assert_eq!(r.retransmits, [1, 0]);
    assert_eq!(r.history.as_str(), "ShADT");
}

#[test]
fn keepalive_probe_is_not_a_retransmission() {
    let mut f = flow();
    handshake(&mut f);
    // Linux keepalive: seq = snd_nxt - 1, no payload.
    f.on_tcp(Client, &seg(ACK, 100, 5001, 0, 512), Timestamp(2_000_000));
    assert_eq!(f.record(EndReason::CaptureEnd).retransmits, [0, 0]);
}

#[test]
fn sequence_numbers_wrap_without_false_retransmissions() {
    let mut f = flow();
    let isn = u32::MAX - 5;
    f.on_tcp(Client, &seg(SYN, isn, 0, 0, 65535), Timestamp(1_000_000));
    f.on_tcp(
        Server,
        &seg(SYN | ACK, 7, isn.wrapping_add(1), 0, 65535),
        Timestamp(1_000_010),
    );
    f.on_tcp(
        Client,
        &seg(ACK | PSH, isn.wrapping_add(1), 8, 100, 512),
        Timestamp(1_000_020),
    );
    f.on_tcp(
        Client,
        &seg(ACK | PSH, isn.wrapping_add(101), 8, 100, 512),
        Timestamp(1_000_030),
    );
    let r = f.record(EndReason::CaptureEnd);
    assert_eq!(r.retransmits, [0, 0]);
    assert_eq!(r.bytes[0], 200);
}

#[test]
fn zero_window_is_counted_once_per_stall() {
    let mut f = flow();
    handshake(&mut f);
    f.on_tcp(Server, &seg(ACK, 5001, 101, 0, 0), Timestamp(1_000_100));
    f.on_tcp(Server, &seg(ACK, 5001, 101, 0, 0), Timestamp(1_000_200));
    f.on_tcp(Server, &seg(ACK, 5001, 101, 0, 100), Timestamp(1_000_300));
    f.on_tcp(Server, &seg(ACK, 5001, 101, 0, 0), Timestamp(1_000_400));
    let r = f.record(EndReason::CaptureEnd);
    assert_eq!(r.zero_windows, [0, 2]);
    assert!(r.history.as_str().contains('w'));
}

#[test]
fn reset_by_client_mid_transfer() {
    let mut f = flow();
    handshake(&mut f);
    f.on_tcp(
        Server,
        &seg(PSH | ACK, 5001, 101, 1000, 512),
        Timestamp(1_000_100),
    );
    assert!(f.on_tcp(
        Client,
        &seg(RST | ACK, 101, 6001, 0, 0),
        Timestamp(1_000_200)
    ));
    let r = f.record(EndReason::Packets);
    assert_eq!(r.outcome, Outcome::Reset);
    assert_eq!(r.reset_by, Some(Client));
}

#[test]
fn handshake_incomplete_counts_synack_retransmissions() {
    let mut f = flow();
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    f.on_tcp(
        Server,
        &seg(SYN | ACK, 5000, 101, 0, 65535),
        Timestamp(1_000_010),
    );
    f.on_tcp(
        Server,
        &seg(SYN | ACK, 5000, 101, 0, 65535),
        Timestamp(2_000_010),
    );
    let r = f.finish(EndReason::CaptureEnd);
    assert_eq!(r.outcome, Outcome::HandshakeIncomplete);
    assert_eq!(r.synack_count, 2);
    assert_eq!(r.handshake_rtt_us, None);
}

#[test]
fn synack_before_syn_learns_the_client_isn_from_the_ack() {
    let mut f = flow();
    f.on_tcp(
        Server,
        &seg(SYN | ACK, 5000, 101, 0, 65535),
        Timestamp(1_000_000),
    );
    let late_syn = seg(SYN, 100, 0, 0, 65535);
    assert!(!f.is_new_connection(Client, &late_syn));
    f.on_tcp(Client, &late_syn, Timestamp(1_000_001));
    f.on_tcp(Client, &seg(ACK, 101, 5001, 0, 512), Timestamp(1_000_050));
    let r = f.record(EndReason::CaptureEnd);
    assert_eq!(r.outcome, Outcome::Established);
    assert!(!r.midstream);
    assert_eq!(r.syn_count, 1);
}

#[test]
fn icmp_quoting_another_sequence_number_is_ignored() {
    let mut f = flow();
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    let err = IcmpError {
        reporter: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        kind: Unreachable::Port,
        quoted_seq: 12345,
    };
    assert!(!f.on_icmp(&err, Timestamp(1_000_010)));
    assert_eq!(f.state(), SynSent);
    let ok = IcmpError {
        quoted_seq: 100,
        ..err
    };
    assert!(f.on_icmp(&ok, Timestamp(1_000_020)));
    let r = f.record(EndReason::Packets);
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert_eq!(r.icmp.map(|i| i.kind), Some(Unreachable::Port));
}

#[test]
fn tuple_is_held_through_time_wait_only() {
    let mut f = flow();
    handshake(&mut f);
    f.on_tcp(
        Client,
        &seg(FIN | ACK, 101, 5001, 0, 512),
        Timestamp(1_000_300),
    );
    f.on_tcp(
        Server,
        &seg(FIN | ACK, 5001, 102, 0, 512),
        Timestamp(1_000_400),
    );
    f.on_tcp(Client, &seg(ACK, 102, 5002, 0, 512), Timestamp(1_000_500));
    assert!(f.holds_tuple(Timestamp(1_000_500 + TIME_WAIT_US - 1)));
    assert!(!f.holds_tuple(Timestamp(1_000_500 + TIME_WAIT_US)));
}

#[test]
fn handshake_options_are_kept_from_syn_and_synack() {
    let mut f = flow();
    let mut syn = seg(SYN, 100, 0, 0, 65535);
    syn.options = HandshakeOptions {
        mss: Some(65495),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: true,
    };
    f.on_tcp(Client, &syn, Timestamp(1_000_000));
    let r = f.record(EndReason::CaptureEnd);
    assert_eq!(r.client_options.and_then(|o| o.mss), Some(65495));
    assert_eq!(r.server_options, None);
}

#[test]
fn ipv6_endpoints_and_handshake_options_survive_the_compact_flow() {
    use std::net::Ipv6Addr;
    let c = crate::decode::Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 40000);
    let v = crate::decode::Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 61999);
    let mut f = flow_between(c, v);
    let mut syn = seg(SYN, 100, 0, 0, 65535);
    syn.options = HandshakeOptions {
        mss: Some(65476),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: false,
    };
    f.on_tcp(Client, &syn, Timestamp(1_000_000));
    assert_eq!(f.flow.side_of(&v, &c, &f.rares), Some(Server));
    assert_eq!(f.flow.side_of(&c, &v, &f.rares), Some(Client));
    assert_eq!(f.flow.side_of(&c, &ep(61999), &f.rares), None);
    let r = f.finish(EndReason::CaptureEnd);
    assert_eq!((r.client, r.server), (c, v));
    assert_eq!(r.client_options, Some(syn.options));
    assert_eq!(r.server_options, None);
}

// --- history letters, as Zeek's update_history writes them ---------------------------

fn history_of(segments: &[(Side, TcpSegment)]) -> String {
    let mut f = flow();
    for (i, (side, s)) in segments.iter().enumerate() {
        f.on_tcp(*side, s, Timestamp(1_000_000 + i as u64 * 10));
    }
    f.record(EndReason::CaptureEnd).history.as_str().to_string()
}

#[test]
fn a_fin_carrying_the_last_data_is_f_without_d_as_in_zeek() {
    let h = history_of(&[
        (Client, seg(SYN, 100, 0, 0, 65535)),
        (Server, seg(SYN | ACK, 5000, 101, 0, 65535)),
        (Client, seg(ACK, 101, 5001, 0, 512)),
        (Client, seg(FIN | ACK | PSH, 101, 5001, 20, 512)),
    ]);
    assert_eq!(h, "ShAF");
}

#[test]
fn a_retransmitted_fin_is_one_f_a_fin_at_a_new_sequence_number_another() {
    let h = history_of(&[
        (Client, seg(FIN | ACK, 101, 5001, 0, 512)),
        (Client, seg(FIN | ACK, 101, 5001, 0, 512)),
        (Client, seg(FIN | ACK, 150, 5001, 0, 512)),
    ]);
    assert_eq!(h, "FF");
}

#[test]
fn syn_with_fin_or_rst_is_q_and_fin_with_rst_is_i() {
    assert_eq!(history_of(&[(Client, seg(SYN | FIN, 100, 0, 0, 512))]), "Q");
    assert_eq!(history_of(&[(Client, seg(SYN | RST, 100, 0, 0, 512))]), "Q");
    assert_eq!(
        history_of(&[(Server, seg(FIN | RST | ACK, 5000, 101, 0, 0))]),
        "i"
    );
}

#[test]
fn syn_letters_follow_the_ack_bit_not_the_side() {
    // Simultaneous open, or roles the port cannot settle: the server's bare SYN is `s`,
    // a client's SYN-ACK `H`.
    let h = history_of(&[
        (Client, seg(SYN | ACK, 100, 7, 0, 512)),
        (Server, seg(SYN, 5000, 0, 0, 512)),
    ]);
    assert_eq!(h, "Hs");
}

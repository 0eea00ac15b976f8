//! The per-segment bookkeeping: SYN schedule, handshake details, retransmissions,
//! keep-alives, zero windows, sequence wrap, compact storage, and Zeek's history letters.

use crate::decode::{Encap, HandshakeOptions, TcpSegment, Timestamp};
use crate::flow::record::{EndReason, Outcome};
use crate::flow::testing::*;
use crate::flow::Side::{self, *};
use std::net::IpAddr;

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
    assert_eq!(f.flow.side_of(&v, &c, Encap::None, &f.rares), Some(Server));
    assert_eq!(f.flow.side_of(&c, &v, Encap::None, &f.rares), Some(Client));
    assert_eq!(f.flow.side_of(&c, &ep(61999), Encap::None, &f.rares), None);
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

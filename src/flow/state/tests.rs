//! Every arm of `transition`, each named for the real-world scenario it models; then what
//! entering a state records on the flow, and the trace every state change leaves.

use super::*;
use crate::decode::{IcmpError, Unreachable};
use crate::flow::testing::*;
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
fn soft_icmp_error_keeps_the_attempt_open_for_a_retry() {
    assert_eq!(t(SynSent, Server, SoftUnreachable), SynError);
    assert_eq!(SynError.outcome(), Outcome::Unreachable);
}

#[test]
fn soft_icmp_error_as_first_event_is_unreachable() {
    assert_eq!(t(New, Server, SoftUnreachable), Done(Outcome::Unreachable));
}

#[test]
fn syn_retransmitted_after_a_soft_error_keeps_the_attempt() {
    for (side, ctl) in [
        (Client, Syn),
        (Server, Syn),
        (Client, SynAck),
        (Server, SoftUnreachable),
        (Client, SoftUnreachable),
        (Client, Unreachable),
    ] {
        assert_eq!(t(SynError, side, ctl), SynError, "{side:?} {ctl:?}");
    }
}

#[test]
fn synack_after_a_soft_error_carries_the_handshake_on() {
    assert_eq!(t(SynError, Server, SynAck), SynReceived);
}

#[test]
fn traffic_after_a_soft_error_and_a_missed_synack_means_established() {
    assert_eq!(t(SynError, Client, Segment), Established);
    assert_eq!(t(SynError, Server, Segment), Established);
    assert_eq!(t(SynError, Client, Fin), FinWait { first: Client });
}

#[test]
fn hard_icmp_error_after_a_soft_one_ends_the_attempt_unreachable() {
    assert_eq!(t(SynError, Server, Unreachable), Done(Outcome::Unreachable));
}

#[test]
fn rst_answering_a_retry_after_a_soft_error_is_refused() {
    assert_eq!(t(SynError, Server, Rst), Done(Outcome::Refused));
}

#[test]
fn client_giving_up_after_a_soft_error_is_unreachable() {
    assert_eq!(t(SynError, Client, Rst), Done(Outcome::Unreachable));
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

// --- What entering a state records ----------------------------------------------------

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

// --- Tracing ------------------------------------------------------------------------------

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_state_change_is_traced_at_debug_with_the_flow_and_its_endpoints() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut f = flow();
        handshake(&mut f);
        // A second ACK changes nothing, so it leaves no line.
        f.on_tcp(Client, &seg(ACK, 101, 5001, 0, 512), Timestamp(1_000_080));
        f.finish(EndReason::CaptureEnd);
    });
    let text =
        String::from_utf8(out.0.lock().map(|v| v.clone()).unwrap_or_default()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (line, change) in lines.iter().zip([
        "New → SynSent",
        "SynSent → SynReceived",
        "SynReceived → Established",
        "Established → Done(Established)",
    ]) {
        assert!(line.contains("DEBUG"), "{line}");
        assert!(line.contains(change), "{line}");
        assert!(line.contains("flow=1"), "{line}");
        assert!(line.contains("client=127.0.0.1:40000"), "{line}");
        assert!(line.contains("server=127.0.0.1:61999"), "{line}");
    }
}

#[test]
fn below_debug_a_state_change_leaves_no_line() {
    // -v is info: the transitions are -vv only.
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut f = flow();
        handshake(&mut f);
    });
    assert!(out.0.lock().map(|v| v.is_empty()).unwrap_or(false));
}

fn host_unreachable(quoted_seq: u32) -> IcmpError {
    IcmpError {
        reporter: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        kind: Unreachable::Host,
        quoted_seq,
    }
}

#[test]
fn same_isn_answered_after_host_unreachable_is_one_completed_connection() {
    let mut f = flow();
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    assert!(!f.on_icmp(&host_unreachable(100), Timestamp(1_000_010)));
    assert_eq!(f.state(), SynError);
    // The client's retransmission one RTO later gets through.
    assert!(!f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(2_000_000)));
    f.on_tcp(
        Server,
        &seg(SYN | ACK, 5000, 101, 0, 65535),
        Timestamp(2_000_040),
    );
    f.on_tcp(Client, &seg(ACK, 101, 5001, 0, 512), Timestamp(2_000_070));
    let r = f.finish(EndReason::CaptureEnd);
    assert_eq!(r.outcome, Outcome::Established);
    assert_eq!(r.syn_count, 2);
    assert_eq!(r.history.as_str(), "ShA");
    assert_eq!(r.icmp.map(|i| i.kind), Some(Unreachable::Host));
    assert_eq!(r.handshake_rtt_us, Some(70));
}

#[test]
fn host_unreachable_without_a_retry_ends_unreachable() {
    let mut f = flow();
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    f.on_icmp(&host_unreachable(100), Timestamp(1_000_010));
    let r = f.finish(EndReason::Packets);
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert_eq!(r.history.as_str(), "S");
    assert_eq!(r.icmp.map(|i| i.kind), Some(Unreachable::Host));
}

#[test]
fn same_isn_syn_after_a_refusal_is_another_try_not_a_packet_of_the_refused_one() {
    let mut f = flow();
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    f.on_tcp(Server, &seg(RST | ACK, 0, 101, 0, 0), Timestamp(1_000_020));
    assert!(f.is_new_connection(Client, &seg(SYN, 100, 0, 0, 65535)));
}

#[test]
fn same_isn_syn_on_an_open_attempt_is_a_retransmission() {
    let mut f = flow();
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    assert!(!f.is_new_connection(Client, &seg(SYN, 100, 0, 0, 65535)));
}

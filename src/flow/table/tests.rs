//! The table's own behaviour: which flow a segment belongs to, generations of a 4-tuple,
//! timers on the capture clock, and the flow cap.

use super::*;
use crate::decode::{Encap, HandshakeOptions, IcmpError, TcpFlags, TcpSegment, Unreachable};
use crate::flow::{FlowRecord, Outcome};
use std::net::{IpAddr, Ipv4Addr};

const PORT: u16 = 61999;
const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;

fn ep(port: u16) -> Endpoint {
    Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn cfg() -> FlowConfig {
    FlowConfig {
        port: PORT,
        max_flows: 1000,
        syn_timeout_us: 3_000_000,
        pending_notices: false,
        // As under `--format zeek`: every flow its packets ended is settled, so each
        // settlement below can be looked at; `settles_only_late_flows_*` cover the rest.
        settle_all: true,
    }
}

/// Drives a table with segments between one client port and the server, at explicit
/// times in milliseconds.
struct Script {
    table: FlowTable,
    events: Vec<FlowEvent>,
    /// The window the next segments advertise.
    window: u16,
    /// The tunnel the next segments come in.
    encap: Encap,
}

impl Script {
    fn new(cfg: FlowConfig) -> Script {
        Script {
            table: FlowTable::new(cfg),
            events: Vec::new(),
            window: 512,
            encap: Encap::None,
        }
    }

    #[allow(clippy::too_many_arguments)] // reads like a tcpdump line
    fn send(
        &mut self,
        ms: u64,
        from: Endpoint,
        to: Endpoint,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
    ) {
        let seg = Segment {
            encap: self.encap,
            ts: Timestamp(1_700_000_000_000_000 + ms * 1000),
            src: from,
            dst: to,
            kind: SegmentKind::Tcp(TcpSegment {
                seq,
                ack,
                flags: TcpFlags(flags),
                window: self.window,
                payload_len: len,
                options: HandshakeOptions::default(),
            }),
        };
        self.table.process(&seg, &mut self.events);
    }

    fn c(&mut self, ms: u64, cport: u16, flags: u8, seq: u32, ack: u32, len: u32) {
        self.send(ms, ep(cport), ep(PORT), flags, seq, ack, len);
    }

    fn s(&mut self, ms: u64, cport: u16, flags: u8, seq: u32, ack: u32, len: u32) {
        self.send(ms, ep(PORT), ep(cport), flags, seq, ack, len);
    }

    /// A complete clean connection from `cport` starting at `ms`, client closing first.
    fn clean(&mut self, ms: u64, cport: u16, isn: u32) {
        self.c(ms, cport, SYN, isn, 0, 0);
        self.s(ms + 1, cport, SYN | ACK, 9000, isn + 1, 0);
        self.c(ms + 2, cport, ACK, isn + 1, 9001, 0);
        self.c(ms + 3, cport, FIN | ACK, isn + 1, 9001, 0);
        self.s(ms + 4, cport, FIN | ACK, 9001, isn + 2, 0);
        self.c(ms + 5, cport, ACK, isn + 2, 9002, 0);
    }

    fn finals(&mut self) -> Vec<FlowRecord> {
        self.table.finish_all(&mut self.events);
        self.events
            .iter()
            .filter_map(|e| match e {
                FlowEvent::Finished(r) => Some(*r),
                FlowEvent::Pending(_) | FlowEvent::Settled { .. } => None,
            })
            .collect()
    }

    /// After `finish_all`: each flow's last word, its `Settled` record when it has one (in
    /// order of `Finished`), with whether packets came after the close.
    fn settled(&mut self) -> Vec<(FlowRecord, bool)> {
        self.table.finish_all(&mut self.events);
        let mut out: Vec<(FlowRecord, bool)> = Vec::new();
        for e in &self.events {
            match e {
                FlowEvent::Finished(r) => out.push((*r, false)),
                FlowEvent::Settled { record, late } => {
                    let at = out.iter().position(|(r, _)| r.id == record.id);
                    let at = at.expect("a Settled record follows its Finished one");
                    out[at] = (*record, *late);
                }
                FlowEvent::Pending(_) => {}
            }
        }
        out
    }
}

#[test]
fn both_directions_find_the_same_flow_and_the_port_names_the_server() {
    let mut s = Script::new(cfg());
    s.clean(0, 40000, 100);
    let recs = s.finals();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].client, ep(40000));
    assert_eq!(recs[0].server, ep(PORT));
    assert_eq!(recs[0].outcome, Outcome::Closed);
    assert_eq!(recs[0].end, Some(EndReason::Packets));
}

#[test]
fn the_same_4_tuple_in_two_vnis_is_two_connections() {
    let mut s = Script::new(cfg());
    // Interleaved: each VNI's handshake and close must land in its own flow.
    s.encap = Encap::Vxlan(1);
    s.c(0, 40000, SYN, 100, 0, 0);
    s.encap = Encap::Vxlan(2);
    s.c(1, 40000, SYN, 500, 0, 0);
    s.encap = Encap::Vxlan(1);
    s.s(2, 40000, SYN | ACK, 9000, 101, 0);
    s.c(3, 40000, ACK, 101, 9001, 0);
    s.encap = Encap::Vxlan(2);
    s.s(4, 40000, RST | ACK, 0, 501, 0);
    let mut recs = s.finals();
    recs.sort_by_key(|r| r.id);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(
        (recs[0].encap, recs[0].outcome),
        (Encap::Vxlan(1), Outcome::Established)
    );
    assert_eq!(
        (recs[1].encap, recs[1].outcome),
        (Encap::Vxlan(2), Outcome::Refused)
    );
    assert!(!recs[1].port_reused, "another tunnel is not a reuse");
}

#[test]
fn new_isn_within_time_wait_is_a_new_generation_with_port_reused() {
    let mut s = Script::new(cfg());
    s.clean(0, 40123, 100);
    s.clean(500, 40123, 777_777);
    let recs = s.finals();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(!recs[0].port_reused);
    assert!(recs[1].port_reused);
    assert_ne!(recs[0].id, recs[1].id);
    assert_eq!(recs[1].outcome, Outcome::Closed);
}

#[test]
fn new_isn_after_time_wait_expired_is_not_port_reuse() {
    let mut s = Script::new(cfg());
    s.clean(0, 40123, 100);
    s.clean(61_000, 40123, 777_777);
    let recs = s.finals();
    assert_eq!(recs.len(), 2);
    assert!(!recs[1].port_reused);
}

#[test]
fn new_isn_after_a_refusal_is_a_new_attempt_without_reuse() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, RST | ACK, 0, 101, 0);
    s.c(100, 40000, SYN, 5555, 0, 0);
    s.s(101, 40000, RST | ACK, 0, 5556, 0);
    let recs = s.finals();
    assert_eq!(recs.len(), 2);
    assert!(recs
        .iter()
        .all(|r| r.outcome == Outcome::Refused && !r.port_reused));
}

#[test]
fn new_syn_on_an_open_connection_supersedes_it() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, SYN | ACK, 9000, 101, 0);
    s.c(2, 40000, ACK, 101, 9001, 0);
    s.c(1000, 40000, SYN, 4242, 0, 0);
    let recs = s.finals();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].outcome, Outcome::Established);
    assert_eq!(recs[0].end, Some(EndReason::Superseded));
    assert!(recs[1].port_reused);
    assert_eq!(recs[1].outcome, Outcome::Unanswered);
}

#[test]
fn stray_ack_after_a_close_does_not_start_a_midstream_flow() {
    let mut s = Script::new(cfg());
    s.clean(0, 40000, 100);
    s.c(10, 40000, ACK, 102, 9002, 0);
    assert_eq!(s.finals().len(), 1);
}

#[test]
fn midstream_flow_is_oriented_by_the_port() {
    let mut s = Script::new(cfg());
    s.s(0, 40000, ACK, 9000, 100, 50);
    let recs = s.finals();
    assert_eq!(recs.len(), 1);
    assert!(recs[0].midstream);
    assert_eq!(recs[0].client, ep(40000));
    assert_eq!(recs[0].bytes, [0, 50]);
}

#[test]
fn when_both_ends_use_the_port_the_syn_sender_is_the_client() {
    let mut s = Script::new(cfg());
    let other = Endpoint::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), PORT);
    s.send(0, other, ep(PORT), SYN, 1, 0, 0);
    s.send(1, ep(PORT), other, RST | ACK, 0, 2, 0);
    let recs = s.finals();
    assert_eq!(recs[0].client, other);
    assert_eq!(recs[0].outcome, Outcome::Refused);
    assert_eq!(recs[0].reset_by, Some(Side::Server));
}

#[test]
fn out_of_order_capture_synack_before_syn_is_one_connection() {
    let mut s = Script::new(cfg());
    s.s(0, 40000, SYN | ACK, 9000, 101, 0);
    s.c(0, 40000, SYN, 100, 0, 0);
    s.c(1, 40000, ACK, 101, 9001, 0);
    let recs = s.finals();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome, Outcome::Established);
    assert_eq!(recs[0].syn_count, 1);
}

#[test]
fn icmp_error_ends_the_attempt_it_quotes() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    let icmp = Segment {
        encap: crate::decode::Encap::None,
        ts: Timestamp(1_700_000_000_000_000 + 1000),
        src: ep(40000),
        dst: ep(PORT),
        kind: SegmentKind::Icmp(IcmpError {
            reporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            kind: Unreachable::AdminProhibited,
            quoted_seq: 100,
        }),
    };
    s.table.process(&icmp, &mut s.events);
    let recs = s.finals();
    assert_eq!(recs[0].outcome, Outcome::Unreachable);
    assert_eq!(recs[0].end, Some(EndReason::Packets));
}

impl Script {
    fn icmp(&mut self, ms: u64, cport: u16, kind: Unreachable, quoted_seq: u32) {
        let icmp = Segment {
            encap: crate::decode::Encap::None,
            ts: Timestamp(1_700_000_000_000_000 + ms * 1000),
            src: ep(cport),
            dst: ep(PORT),
            kind: SegmentKind::Icmp(IcmpError {
                reporter: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                kind,
                quoted_seq,
            }),
        };
        self.table.process(&icmp, &mut self.events);
    }
}

#[test]
fn syn_retransmitted_after_host_unreachable_and_answered_is_one_closed_connection() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.icmp(1, 40000, Unreachable::Host, 100);
    s.c(1000, 40000, SYN, 100, 0, 0);
    s.s(1001, 40000, SYN | ACK, 9000, 101, 0);
    s.c(1002, 40000, ACK, 101, 9001, 0);
    s.c(1003, 40000, FIN | ACK, 101, 9001, 0);
    s.s(1004, 40000, FIN | ACK, 9001, 102, 0);
    s.c(1005, 40000, ACK, 102, 9002, 0);
    let recs = s.finals();
    assert_eq!(recs.len(), 1);
    let r = recs[0];
    assert_eq!(r.outcome, Outcome::Closed);
    assert_eq!(r.syn_count, 2);
    assert_eq!(r.packets, [5, 2]);
    assert_eq!(r.icmp.map(|i| i.kind), Some(Unreachable::Host));
    assert_eq!(r.last_ts.micros_since(r.first_ts), 1_005_000);
}

#[test]
fn host_unreachable_not_retried_is_reported_after_a_short_wait() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.icmp(1, 40000, Unreachable::Host, 100);
    s.clean(4_000, 40001, 1);
    let r = s.events[0].record();
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert_eq!(r.end, Some(EndReason::Packets));
    assert_eq!(r.client.port, 40000);
}

#[test]
fn same_isn_syn_after_a_refusal_starts_another_try() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, RST | ACK, 0, 101, 0);
    s.c(500, 40000, SYN, 100, 0, 0);
    s.s(501, 40000, SYN | ACK, 9000, 101, 0);
    s.c(502, 40000, ACK, 101, 9001, 0);
    let recs = s.finals();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].outcome, Outcome::Refused);
    assert_eq!(recs[1].outcome, Outcome::Established);
    assert_eq!(recs[1].client_isn, Some(100));
    assert!(!recs[1].port_reused);
}

#[test]
fn icmp_error_for_an_unknown_flow_is_counted_not_tracked() {
    let mut s = Script::new(cfg());
    let icmp = Segment {
        encap: crate::decode::Encap::None,
        ts: Timestamp(1_700_000_000_000_000),
        src: ep(40000),
        dst: ep(PORT),
        kind: SegmentKind::Icmp(IcmpError {
            reporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            kind: Unreachable::Port,
            quoted_seq: 1,
        }),
    };
    assert_eq!(s.table.process(&icmp, &mut s.events), None);
    assert_eq!(s.table.stats().icmp_unmatched, 1);
    assert!(s.finals().is_empty());
}

#[test]
fn pending_notice_after_syn_timeout_then_final_answer() {
    let mut s = Script::new(FlowConfig {
        pending_notices: true,
        ..cfg()
    });
    s.c(0, 40000, SYN, 100, 0, 0);
    s.c(1000, 40000, SYN, 100, 0, 0);
    s.c(2900, 40000, SYN, 100, 0, 0);
    s.table
        .tick(Timestamp(1_700_000_000_000_000 + 3_300_000), &mut s.events);
    let pending: Vec<_> = s
        .events
        .iter()
        .filter(|e| matches!(e, FlowEvent::Pending(_)))
        .copied()
        .collect();
    assert_eq!(pending.len(), 1, "one notice, not one per sweep");
    assert_eq!(pending[0].record().outcome, Outcome::Unanswered);
    assert_eq!(pending[0].record().syn_count, 3);
    // The server finally answers (a backlog drained): the final record says so.
    s.s(7000, 40000, SYN | ACK, 9000, 101, 0);
    s.c(7001, 40000, ACK, 101, 9001, 0);
    let recs = s.finals();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome, Outcome::Established);
    assert_eq!(recs[0].id, pending[0].record().id);
}

#[test]
fn a_synack_retransmitted_twice_without_an_ack_is_a_pending_stalled_handshake() {
    let mut s = Script::new(FlowConfig {
        pending_notices: true,
        ..cfg()
    });
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, SYN | ACK, 9000, 101, 0);
    s.s(1000, 40000, SYN | ACK, 9000, 101, 0);
    s.table
        .tick(Timestamp(1_700_000_000_000_000 + 2_000_000), &mut s.events);
    assert!(
        s.events.is_empty(),
        "one retransmission is often a lost ACK"
    );
    s.s(3000, 40000, SYN | ACK, 9000, 101, 0);
    for ms in [3300, 3600] {
        s.table
            .tick(Timestamp(1_700_000_000_000_000 + ms * 1000), &mut s.events);
    }
    let pending: Vec<_> = s
        .events
        .iter()
        .filter(|e| matches!(e, FlowEvent::Pending(_)))
        .copied()
        .collect();
    assert_eq!(pending.len(), 1, "one notice, not one per sweep");
    assert_eq!(pending[0].record().outcome, Outcome::HandshakeIncomplete);
    assert_eq!(pending[0].record().synack_count, 3);
}

#[test]
fn a_zero_window_held_past_a_second_is_a_pending_notice_while_the_connection_goes_on() {
    let mut s = Script::new(FlowConfig {
        pending_notices: true,
        ..cfg()
    });
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, SYN | ACK, 9000, 101, 0);
    s.c(2, 40000, ACK, 101, 9001, 0);
    s.c(3, 40000, ACK, 101, 9001, 1000);
    s.window = 0;
    // The server's answers to the client's zero-window probes.
    for ms in [4, 400, 900, 1800, 3600] {
        s.s(ms, 40000, ACK, 9001, 1101, 0);
    }
    let pending: Vec<_> = s
        .events
        .iter()
        .filter(|e| matches!(e, FlowEvent::Pending(_)))
        .copied()
        .collect();
    assert_eq!(pending.len(), 1, "one notice, at the first answer past 1 s");
    let r = pending[0].record();
    assert_eq!(r.outcome, Outcome::Established);
    assert_eq!(r.zero_window_us[Side::Server.index()], 1_796_000);
    assert!(
        !s.events.iter().any(|e| matches!(e, FlowEvent::Finished(_))),
        "the connection goes on"
    );
}

#[test]
fn a_handshake_completed_on_a_retransmitted_syn_is_a_pending_slow_connect() {
    let mut s = Script::new(FlowConfig {
        pending_notices: true,
        syn_timeout_us: 10_000_000,
        ..cfg()
    });
    s.c(0, 40000, SYN, 100, 0, 0);
    s.c(1000, 40000, SYN, 100, 0, 0);
    s.s(1001, 40000, SYN | ACK, 9000, 101, 0);
    assert!(s.events.is_empty(), "not connected yet");
    s.c(1002, 40000, ACK, 101, 9001, 0);
    s.c(1003, 40000, ACK, 101, 9001, 10);
    let pending: Vec<_> = s
        .events
        .iter()
        .filter(|e| matches!(e, FlowEvent::Pending(_)))
        .copied()
        .collect();
    assert_eq!(pending.len(), 1, "one notice, at the handshake's end");
    let r = pending[0].record();
    assert_eq!((r.outcome, r.syn_count), (Outcome::Established, 2));
    assert!(r.handshake_rtt_us.is_some());
}

#[test]
fn no_pending_notices_on_replay() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.table
        .tick(Timestamp(1_700_000_000_000_000 + 10_000_000), &mut s.events);
    assert!(s.events.is_empty());
}

#[test]
fn idle_established_flow_times_out_on_the_capture_clock() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, SYN | ACK, 9000, 101, 0);
    s.c(2, 40000, ACK, 101, 9001, 0);
    // Another connection 301 s later moves the clock past the idle timeout.
    s.clean(301_000, 40001, 1);
    let first = s
        .events
        .iter()
        .find(|e| e.record().client == ep(40000))
        .copied();
    let r = first
        .expect("the idle flow was ended by the clock")
        .record()
        .to_owned();
    assert_eq!(r.outcome, Outcome::Established);
    assert_eq!(r.end, Some(EndReason::IdleTimeout));
    assert_eq!(s.table.state_of(ep(40000), ep(PORT)), None);
}

#[test]
fn unanswered_attempt_ends_after_the_kernel_would_give_up() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.clean(80_000, 40001, 1);
    let r = s.events[0].record();
    assert_eq!(r.outcome, Outcome::Unanswered);
    assert_eq!(r.end, Some(EndReason::IdleTimeout));
}

#[test]
fn flood_of_distinct_sources_is_bounded_by_the_cap_and_counted() {
    let mut s = Script::new(FlowConfig {
        max_flows: 100,
        ..cfg()
    });
    for i in 0..10_000u32 {
        let client = Endpoint::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 1024);
        s.send(u64::from(i) / 100, client, ep(PORT), SYN, i, 0, 0);
        assert!(s.table.len() <= 100);
    }
    let stats = s.table.stats();
    assert_eq!(stats.evicted, 9_900);
    assert_eq!(stats.peak_flows, 100);
    let recs = s.finals();
    assert_eq!(recs.len(), 10_000, "every attempt is still reported");
    assert!(recs.iter().all(|r| r.outcome == Outcome::Unanswered));
}

#[test]
fn eviction_prefers_tombstones_over_live_flows() {
    let mut s = Script::new(FlowConfig {
        max_flows: 2,
        ..cfg()
    });
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, RST | ACK, 0, 101, 0); // done: a tombstone
    s.c(2, 40001, SYN, 100, 0, 0); // live
    s.c(3, 40002, SYN, 100, 0, 0); // needs room
    assert_eq!(s.table.stats().evicted, 0);
    assert_eq!(s.table.state_of(ep(40000), ep(PORT)), None);
    assert!(s.table.state_of(ep(40001), ep(PORT)).is_some());
}

#[test]
fn finish_all_reports_in_order_of_first_packet() {
    let mut s = Script::new(cfg());
    s.c(5, 40002, SYN, 1, 0, 0);
    s.c(1, 40001, SYN, 1, 0, 0);
    s.c(9, 40003, SYN, 1, 0, 0);
    s.c(10, 40001, SYN, 1, 0, 0); // retransmission touches the oldest flow
    let ports: Vec<u16> = s.finals().iter().map(|r| r.client.port).collect();
    assert_eq!(ports, vec![40001, 40002, 40003]);
}

#[test]
fn million_source_syn_flood_keeps_the_table_and_its_storage_at_the_cap() {
    const CAP: usize = 10_000;
    let mut table = FlowTable::new(FlowConfig {
        max_flows: CAP,
        ..cfg()
    });
    let mut events = Vec::new();
    let mut finished = 0u64;
    for i in 0..1_000_000u32 {
        let seg = Segment {
            encap: crate::decode::Encap::None,
            ts: Timestamp(1_700_000_000_000_000 + u64::from(i)),
            src: Endpoint::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 1024),
            dst: ep(PORT),
            kind: SegmentKind::Tcp(TcpSegment {
                seq: i,
                ack: 0,
                flags: TcpFlags(SYN),
                window: 512,
                payload_len: 0,
                options: HandshakeOptions::default(),
            }),
        };
        table.process(&seg, &mut events);
        finished += events.len() as u64;
        events.clear();
    }
    assert_eq!(table.len(), CAP);
    assert!(
        table.nodes.capacity() <= 2 * CAP,
        "slab grew to {}",
        table.nodes.capacity()
    );
    assert!(
        table.index.capacity() <= 4 * CAP,
        "index grew to {}",
        table.index.capacity()
    );
    assert_eq!(table.stats().evicted, 1_000_000 - CAP as u64);
    assert_eq!(
        finished,
        1_000_000 - CAP as u64,
        "every evicted attempt is reported"
    );
}

#[test]
fn syn_from_the_watched_port_is_that_sides_own_outbound_attempt() {
    // `nc -p 61999 127.0.0.1 40000`, refused by the peer.
    let mut s = Script::new(cfg());
    s.s(0, 40000, SYN, 100, 0, 0);
    s.c(1, 40000, RST | ACK, 0, 101, 0);
    let recs = s.finals();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].client, ep(PORT), "the SYN's sender opened it");
    assert_eq!(recs[0].outcome, Outcome::Refused);
    assert_eq!(recs[0].syn_count, 1);
    assert_eq!(recs[0].history.as_str(), "Sr");
}
/// The memory budget (issue: at most 200 bytes per tracked flow, index included) rests
/// on this: a slab slot is 160 bytes, the index ~10 more at a million flows.
#[test]
fn a_tracked_flow_fits_in_160_bytes() {
    assert!(
        std::mem::size_of::<Node>() <= 160,
        "Node grew to {} bytes",
        std::mem::size_of::<Node>()
    );
}

#[test]
fn rare_parts_of_ended_flows_are_reused_not_leaked() {
    let mut s = Script::new(cfg());
    // Each attempt retransmits its SYN (a rare part: the gap) and is refused, 10 s apart.
    for i in 0..200u16 {
        let ms = u64::from(i) * 10_000;
        s.c(ms, 40000 + i, SYN, 100, 0, 0);
        s.c(ms + 1_000, 40000 + i, SYN, 100, 0, 0);
        s.s(ms + 1_001, 40000 + i, RST | ACK, 0, 101, 0);
    }
    // Refused tombstones are forgotten after 5 s, and their rare parts with them.
    assert!(
        s.table.rares.len() <= 2,
        "{} rare parts still held",
        s.table.rares.len()
    );
    let recs = s.finals();
    assert_eq!(recs.len(), 200);
    assert!(recs.iter().all(|r| r.syn_gaps_us.as_slice() == [1_000_000]));
}

// ---- Issue 15: the close delay (`CLOSE_DELAY_US`) and what trails a close -----------

/// Handshake and the close's first FIN from the client (seq 101), for the scenarios below.
fn open_then_client_fin(s: &mut Script, cport: u16) {
    s.c(0, cport, SYN, 100, 0, 0);
    s.s(1, cport, SYN | ACK, 9000, 101, 0);
    s.c(2, cport, ACK, 101, 9001, 0);
    s.c(3, cport, FIN | ACK, 101, 9001, 0);
}

#[test]
fn acks_after_a_retransmitted_fin_ends_the_close_are_counted_in_its_settlement() {
    let mut s = Script::new(cfg());
    open_then_client_fin(&mut s, 40000);
    // The server's FIN crosses the client's, the client's FIN again acknowledges it
    // (the close ends there), then an ACK each way.
    s.s(4, 40000, FIN | ACK, 9001, 101, 0);
    s.c(200, 40000, FIN | ACK, 101, 9002, 0);
    s.s(201, 40000, ACK, 9002, 102, 0);
    s.c(202, 40000, ACK, 102, 9002, 0);
    let at_close = s.finals();
    assert_eq!(
        at_close[0].packets,
        [4, 2],
        "the line: up to the retransmitted FIN"
    );
    let settled = s.settled();
    let (r, late) = settled[0];
    assert!(late);
    assert_eq!(r.outcome, Outcome::Closed);
    assert_eq!(r.packets, [5, 3]);
    assert_eq!(r.duration_us(), 202_000, "to the last ACK");
}

#[test]
fn a_close_with_nothing_after_it_settles_without_an_update() {
    let mut s = Script::new(cfg());
    s.clean(0, 40000, 100);
    // Past the delay: the sweep settles it, with no late packet.
    s.c(6_000, 41000, SYN, 5, 0, 0);
    let settled: Vec<_> = s
        .events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Settled { record, late } => Some((record.id, *late)),
            _ => None,
        })
        .collect();
    assert_eq!(
        settled,
        [(1, false)],
        "settled by the sweep at the delay's end"
    );
    assert_eq!(
        s.table.state_of(ep(40000), ep(PORT)),
        Some(State::Done(Outcome::Closed)),
        "then a TIME_WAIT tombstone"
    );
}

#[test]
fn fin_then_rst_then_the_peers_fin_settles_as_zeeks_sf_and_stays_reset() {
    let mut s = Script::new(cfg());
    open_then_client_fin(&mut s, 40000);
    s.c(4, 40000, RST | ACK, 102, 9001, 0);
    s.s(5, 40000, FIN | ACK, 9001, 102, 0);
    s.c(6, 40000, RST, 102, 0, 0);
    let at_close = s.finals();
    assert_eq!(at_close[0].outcome, Outcome::Reset);
    assert_eq!(at_close[0].conn_state.as_str(), "RSTO");
    let (r, late) = s.settled()[0];
    assert!(late);
    assert_eq!(r.outcome, Outcome::Reset, "the outcome is the line's");
    assert_eq!(r.reset_by, Some(Side::Client));
    assert_eq!(r.conn_state.as_str(), "SF");
    assert_eq!(r.history.as_str(), "ShAFRf");
    assert_eq!(r.packets, [5, 2]);
}

#[test]
fn a_second_rst_from_the_same_side_is_counted() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, SYN | ACK, 9000, 101, 0);
    s.c(2, 40000, ACK, 101, 9001, 0);
    s.c(3, 40000, RST | ACK, 101, 9001, 0);
    s.s(4, 40000, ACK, 9001, 101, 50);
    s.c(5, 40000, RST, 101, 0, 0);
    let (r, late) = s.settled()[0];
    assert!(late);
    assert_eq!(r.packets, [4, 2]);
    assert_eq!(r.bytes, [0, 50]);
    assert_eq!(
        r.history.as_str(),
        "ShARd",
        "R again only at a new sequence number"
    );
}

#[test]
fn a_rst_past_the_close_delay_is_counted_after_close_not_in_the_flow() {
    let mut s = Script::new(cfg());
    s.clean(0, 40000, 100);
    s.s(16_005, 40000, RST, 9002, 0, 0);
    assert_eq!(s.table.stats().after_close, 1);
    let settled = s.settled();
    assert_eq!(settled.len(), 1, "no connection of its own");
    let (r, late) = settled[0];
    assert!(!late);
    assert_eq!(r.packets, [4, 2]);
}

#[test]
fn a_new_connection_on_the_tuple_settles_the_one_in_its_close_delay_first() {
    let mut s = Script::new(cfg());
    s.clean(0, 40000, 100);
    s.s(10, 40000, ACK, 9002, 102, 0);
    s.clean(500, 40000, 777_777);
    let order: Vec<(&str, u64)> = s
        .events
        .iter()
        .map(|e| match e {
            FlowEvent::Finished(r) => ("finished", r.id),
            FlowEvent::Settled { record, .. } => ("settled", record.id),
            FlowEvent::Pending(r) => ("pending", r.id),
        })
        .collect();
    assert_eq!(order, [("finished", 1), ("settled", 1), ("finished", 2)]);
    let settled = s.settled();
    assert_eq!(settled[0].0.packets, [4, 3], "the late ACK in the first");
    assert!(settled[1].0.port_reused, "still TIME_WAIT reuse");
}

#[test]
fn a_full_table_settles_a_flow_in_its_close_delay_before_ending_a_live_one() {
    let mut s = Script::new(FlowConfig {
        max_flows: 2,
        ..cfg()
    });
    s.clean(0, 40000, 100);
    s.c(10, 40001, SYN, 5, 0, 0);
    s.c(20, 40002, SYN, 6, 0, 0);
    assert!(matches!(
        s.events.last(),
        Some(FlowEvent::Settled { record, .. }) if record.id == 1
    ));
    assert_eq!(s.table.stats().evicted, 0, "no live flow ended");
}

#[test]
fn a_refusal_lingers_and_a_trailing_rst_lands_in_it() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.s(1, 40000, RST | ACK, 0, 101, 0);
    s.s(2, 40000, RST | ACK, 0, 101, 0);
    let (r, late) = s.settled()[0];
    assert!(late);
    assert_eq!(r.outcome, Outcome::Refused);
    assert_eq!(r.packets, [1, 2]);
}

#[test]
fn an_unreachable_attempt_lingers_after_its_soft_error_wait_and_settles() {
    let mut s = Script::new(cfg());
    s.c(0, 40000, SYN, 100, 0, 0);
    s.icmp(1, 40000, Unreachable::Host, 100);
    // Past the soft error's wait: reported; a RST from the client (it gave up) still
    // lands in the attempt during the close delay.
    s.clean(3_500, 40001, 1);
    s.c(4_000, 40000, RST, 101, 0, 0);
    let settled = s.settled();
    let (r, late) = settled[0];
    assert_eq!(r.client.port, 40000);
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert!(late);
    assert_eq!(r.packets, [2, 0]);
    assert_eq!(s.table.stats().icmp_errors, 1);
}

// ---- Settlements only where someone reads them (`FlowConfig::settle_all`) -------------

/// The text and JSON reports' table: a close's own `Finished` record is its last word
/// unless a packet trails it.
fn late_only() -> FlowConfig {
    FlowConfig {
        settle_all: false,
        ..cfg()
    }
}

fn settlements(events: &[FlowEvent]) -> Vec<(u64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Settled { record, late } => Some((record.id, *late)),
            _ => None,
        })
        .collect()
}

#[test]
fn settles_only_late_flows_so_a_quiet_close_has_no_settlement_at_its_delays_end() {
    let mut s = Script::new(late_only());
    s.clean(0, 40000, 100);
    // Past the delay: the sweep ends its close delay without a record.
    s.c(6_000, 41000, SYN, 5, 0, 0);
    assert_eq!(settlements(&s.events), []);
    assert_eq!(
        s.table.state_of(ep(40000), ep(PORT)),
        Some(State::Done(Outcome::Closed)),
        "still a TIME_WAIT tombstone"
    );
    s.table.finish_all(&mut s.events);
    assert_eq!(settlements(&s.events), []);
}

#[test]
fn settles_only_late_flows_so_a_quiet_close_has_none_at_the_capture_end_either() {
    let mut s = Script::new(late_only());
    s.clean(0, 40000, 100);
    s.c(0, 40001, SYN, 100, 0, 0);
    s.s(1, 40001, RST | ACK, 0, 101, 0);
    s.table.finish_all(&mut s.events);
    assert_eq!(settlements(&s.events), []);
    let ends: Vec<_> = s.finals().iter().map(|r| r.outcome).collect();
    assert_eq!(ends, [Outcome::Closed, Outcome::Refused]);
}

#[test]
fn settles_all_flows_for_a_conn_log_even_without_late_packets() {
    let mut s = Script::new(cfg());
    s.clean(0, 40000, 100);
    s.c(0, 40001, SYN, 100, 0, 0);
    s.s(1, 40001, RST | ACK, 0, 101, 0);
    s.table.finish_all(&mut s.events);
    assert_eq!(settlements(&s.events), [(1, false), (2, false)]);
}

#[test]
fn late_packets_are_settled_whether_or_not_every_flow_is() {
    for all in [false, true] {
        let mut s = Script::new(FlowConfig {
            settle_all: all,
            ..cfg()
        });
        s.clean(0, 40000, 100);
        s.clean(0, 40001, 100);
        // An ACK trails the second close; the sweep settles both at their delay's end.
        s.s(10, 40001, ACK, 9002, 102, 0);
        s.c(6_000, 41000, SYN, 5, 0, 0);
        let expected: &[(u64, bool)] = if all {
            &[(1, false), (2, true)]
        } else {
            &[(2, true)]
        };
        assert_eq!(settlements(&s.events), expected, "settle_all {all}");
        let (r, late) = s.settled()[1];
        assert!(late);
        assert_eq!(r.packets, [4, 3], "settle_all {all}");
    }
}

#[test]
fn late_packets_are_settled_by_a_new_connection_on_the_tuple_and_at_the_capture_end() {
    let mut s = Script::new(late_only());
    s.clean(0, 40000, 100);
    s.s(10, 40000, ACK, 9002, 102, 0);
    s.clean(500, 40000, 777_777);
    s.clean(600, 40001, 100);
    s.s(610, 40001, ACK, 9002, 102, 0);
    s.table.finish_all(&mut s.events);
    assert_eq!(settlements(&s.events), [(1, true), (3, true)]);
}

#[test]
fn a_full_table_still_makes_room_from_a_quiet_close_without_settling_it() {
    let mut s = Script::new(FlowConfig {
        max_flows: 2,
        ..late_only()
    });
    s.clean(0, 40000, 100);
    s.c(10, 40001, SYN, 5, 0, 0);
    s.c(20, 40002, SYN, 6, 0, 0);
    assert_eq!(settlements(&s.events), []);
    assert_eq!(s.table.stats().evicted, 0, "no live flow ended");
    assert_eq!(
        s.table.state_of(ep(40000), ep(PORT)),
        None,
        "its room taken"
    );
}

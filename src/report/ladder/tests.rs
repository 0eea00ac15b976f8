//! Recording and drawing together: segments in through a [`LadderRecorder`], a final
//! record, and the drawn ladder (text and JSON) checked as a user would see it.

use super::draw::LadderPacket;
use super::*;
use crate::decode::{Endpoint, Segment, SegmentKind};
use crate::decode::{IcmpError, TcpFlags, TcpSegment, Timestamp, Unreachable};
use crate::flow::{EndReason, FlowConfig, FlowEvent, FlowTable, Outcome};
use crate::flow::{FlowRecord, Side};
use crate::report::text::Style;
use std::net::{IpAddr, Ipv4Addr};

const S: u8 = TcpFlags::SYN;
const A: u8 = TcpFlags::ACK;
const F: u8 = TcpFlags::FIN;
const R: u8 = TcpFlags::RST;
const P: u8 = TcpFlags::PSH;

const CISN: u32 = 3_000_000_000;
const SISN: u32 = 4_294_967_000; // wraps past 2^32 within the flow

fn ep(port: u16) -> Endpoint {
    Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn client() -> Endpoint {
    ep(40000)
}

fn server() -> Endpoint {
    ep(61999)
}

struct Seg {
    from: Side,
    flags: u8,
    seq: u32,
    ack: u32,
    len: u32,
    win: u16,
    t_us: u64,
}

fn tcp(s: Seg) -> Segment {
    tcp_on(client(), s)
}

fn tcp_on(c: Endpoint, s: Seg) -> Segment {
    let (src, dst) = match s.from {
        Side::Client => (c, server()),
        Side::Server => (server(), c),
    };
    Segment {
        encap: crate::decode::Encap::None,
        ts: Timestamp(1_700_000_000_000_000 + s.t_us),
        src,
        dst,
        kind: SegmentKind::Tcp(TcpSegment {
            seq: s.seq,
            ack: s.ack,
            flags: TcpFlags(s.flags),
            window: s.win,
            payload_len: s.len,
            options: Default::default(),
        }),
    }
}

fn seg(from: Side, flags: u8, seq: u32, ack: u32, len: u32, t_us: u64) -> Segment {
    tcp(Seg {
        from,
        flags,
        seq,
        ack,
        len,
        win: if flags & R != 0 { 0 } else { 512 },
        t_us,
    })
}

/// A real final record from the flow table (so the test does not break when
/// `FlowRecord` gains fields), with the fields the recorder reads set by hand.
fn record(id: u64, c: Endpoint, outcome: Outcome) -> FlowRecord {
    let mut table = FlowTable::new(FlowConfig {
        port: 61999,
        max_flows: 16,
        syn_timeout_us: 1_000_000,
        pending_notices: false,
        settle_all: false,
    });
    let mut events = Vec::new();
    table.process(&seg(Side::Client, S, CISN, 0, 0, 0), &mut events);
    table.finish_all(&mut events);
    let base = match events.first() {
        Some(FlowEvent::Finished(r)) => *r,
        other => panic!("no final record: {other:?}"),
    };
    FlowRecord {
        id,
        client: c,
        server: server(),
        outcome,
        end: Some(EndReason::Packets),
        ..base
    }
}

fn text(l: &Ladder) -> String {
    let mut out = Vec::new();
    l.write_text(&mut out, Style { color: false }).unwrap();
    String::from_utf8(out).unwrap()
}

fn pkt(
    t_us: u64,
    from: &'static str,
    flags: &str,
    seq: u32,
    ack: Option<u32>,
    len: u32,
    win: u16,
) -> LadderPacket {
    LadderPacket {
        t_us,
        from,
        flags: flags.to_string(),
        seq,
        ack,
        len,
        win,
    }
}

#[test]
fn refused_flow_is_two_arrows_with_relative_numbers() {
    let mut r = LadderRecorder::new(None);
    r.segment(
        1,
        &tcp(Seg {
            from: Side::Client,
            flags: S,
            seq: CISN,
            ack: 0,
            len: 0,
            win: 65495,
            t_us: 0,
        }),
    );
    r.segment(1, &seg(Side::Server, R | A, 0, CISN + 1, 0, 12));
    let l = r.finish(&record(1, client(), Outcome::Refused)).unwrap();
    assert_eq!(
        l.packets,
        vec![
            pkt(0, "client", "S", 0, None, 0, 65495),
            // The RST's seq is 0 on the wire and the server has no ISN: absolute.
            pkt(12, "server", "R.", 0, Some(1), 0, 0),
        ]
    );
    assert!(!l.truncated);
    let t = text(&l);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3, "{t}");
    assert_eq!(
        lines,
        [
            "  client 127.0.0.1:40000                          server 127.0.0.1:61999",
            "     0.000 ms  |---- S  seq 0 win 65495 ------------------------------>|",
            "     0.012 ms  |<--- R. seq 0 ack 1 win 0 -----------------------------|",
        ],
        "{t}"
    );
    // Every arrow line and the header are the same width.
    assert!(lines.iter().all(|l| l.len() == lines[1].len()), "{t}");
    assert_eq!(lines[1].len(), 72, "{t}");
    assert!(r.finish(&record(1, client(), Outcome::Refused)).is_none());
}

fn clean_flow(r: &mut LadderRecorder, id: u64) {
    let c = CISN;
    let s = SISN;
    let w = |x: u32, n: u32| x.wrapping_add(n);
    for sg in [
        seg(Side::Client, S, c, 0, 0, 0),
        seg(Side::Server, S | A, s, w(c, 1), 0, 30),
        seg(Side::Client, A, w(c, 1), w(s, 1), 0, 60),
        seg(Side::Client, P | A, w(c, 1), w(s, 1), 100, 100_000),
        seg(Side::Server, A, w(s, 1), w(c, 101), 0, 100_040),
        seg(Side::Client, F | A, w(c, 101), w(s, 1), 0, 200_000),
        seg(Side::Server, A, w(s, 1), w(c, 102), 0, 200_040),
        seg(Side::Server, F | A, w(s, 1), w(c, 102), 0, 500_000),
        seg(Side::Client, A, w(c, 102), w(s, 2), 0, 500_030),
    ] {
        r.segment(id, &sg);
    }
}

#[test]
fn clean_handshake_and_close_relative_to_both_isns() {
    let mut r = LadderRecorder::new(Some(40000));
    clean_flow(&mut r, 1);
    let l = r.finish(&record(1, client(), Outcome::Closed)).unwrap();
    let got: Vec<(&str, &str, u32, Option<u32>, u32)> = l
        .packets
        .iter()
        .map(|p| (p.from, p.flags.as_str(), p.seq, p.ack, p.len))
        .collect();
    assert_eq!(
        got,
        vec![
            ("client", "S", 0, None, 0),
            ("server", "S.", 0, Some(1), 0),
            ("client", ".", 1, Some(1), 0),
            ("client", "P.", 1, Some(1), 100),
            ("server", ".", 1, Some(101), 0),
            ("client", "F.", 101, Some(1), 0),
            ("server", ".", 1, Some(102), 0),
            ("server", "F.", 1, Some(102), 0),
            ("client", ".", 102, Some(2), 0),
        ]
    );
    let t = text(&l);
    assert!(
        t.contains("100.000 ms  |---- P. seq 1 ack 1 win 512 len 100 "),
        "{t}"
    );
    assert!(
        t.contains("500.030 ms  |---- .  seq 102 ack 2 win 512 "),
        "{t}"
    );
    assert_eq!(t.lines().count(), 10, "{t}");
}

#[test]
fn more_than_sixteen_packets_draws_sixteen_and_says_truncated() {
    let mut r = LadderRecorder::new(None);
    r.segment(7, &seg(Side::Client, S, CISN, 0, 0, 0));
    r.segment(7, &seg(Side::Server, S | A, SISN, CISN + 1, 0, 10));
    r.segment(
        7,
        &seg(Side::Client, A, CISN + 1, SISN.wrapping_add(1), 0, 20),
    );
    for i in 0..20u32 {
        r.segment(
            7,
            &seg(
                Side::Client,
                P | A,
                CISN + 1 + 10 * i,
                SISN.wrapping_add(1),
                10,
                1_000 * u64::from(i) + 1_000,
            ),
        );
    }
    r.segment(
        7,
        &seg(Side::Server, R | A, SISN.wrapping_add(1), 0, 0, 99_000),
    );
    let l = r.finish(&record(7, client(), Outcome::Reset)).unwrap();
    assert!(l.truncated);
    assert_eq!(l.packets.len(), MAX_PACKETS);
    assert_eq!(l.packets[15].seq, 1 + 10 * 12);
    let t = text(&l);
    assert_eq!(t.lines().count(), 1 + MAX_PACKETS + 1, "{t}");
    assert!(t.contains("only the first 16 are drawn"), "{t}");
}

#[test]
fn exactly_sixteen_packets_is_not_truncated() {
    let mut r = LadderRecorder::new(None);
    for i in 0..16u32 {
        r.segment(3, &seg(Side::Client, S, CISN, 0, 0, u64::from(i)));
    }
    let l = r.finish(&record(3, client(), Outcome::Unanswered)).unwrap();
    assert_eq!(l.packets.len(), 16);
    assert!(!l.truncated);
}

#[test]
fn icmp_unreachable_is_an_arrow_from_the_server_side() {
    let mut r = LadderRecorder::new(None);
    r.segment(2, &seg(Side::Client, S, CISN, 0, 0, 0));
    r.segment(
        2,
        &Segment {
            encap: crate::decode::Encap::None,
            ts: Timestamp(1_700_000_000_000_000 + 45),
            src: client(),
            dst: server(),
            kind: SegmentKind::Icmp(IcmpError {
                reporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
                kind: Unreachable::Port,
                quoted_seq: CISN,
            }),
        },
    );
    let l = r
        .finish(&record(2, client(), Outcome::Unreachable))
        .unwrap();
    assert_eq!(
        l.packets[1],
        pkt(45, "server", "ICMP port unreachable", 0, None, 0, 0)
    );
    let t = text(&l);
    assert!(
        t.contains("0.045 ms  |<--- ICMP port unreachable seq 0 -----"),
        "{t}"
    );
    assert!(!t.contains("win 0"), "{t}");
}

#[test]
fn only_flow_draws_the_chosen_flow_whatever_its_outcome() {
    let mut chosen = LadderRecorder::new(Some(40000));
    clean_flow(&mut chosen, 1);
    assert!(chosen
        .finish(&record(1, client(), Outcome::Closed))
        .is_some());

    let mut other = LadderRecorder::new(Some(40001));
    clean_flow(&mut other, 1);
    assert_eq!(
        other.buffered(),
        0,
        "a flow on other ports is not even kept"
    );
    assert!(other
        .finish(&record(1, client(), Outcome::Closed))
        .is_none());

    let mut problems = LadderRecorder::new(None);
    clean_flow(&mut problems, 1);
    assert!(problems
        .finish(&record(1, client(), Outcome::Closed))
        .is_none());
    assert_eq!(
        problems.buffered(),
        0,
        "the buffer is forgotten all the same"
    );
}

#[test]
fn flow_buffers_are_capped_by_dropping_the_oldest() {
    let mut r = LadderRecorder::new(None);
    let n = MAX_FLOWS as u64 + 1;
    for id in 1..=n {
        let c = ep(1024 + (id % 60000) as u16);
        r.segment(id, &tcp_on(c, Seg::syn(id)));
    }
    assert_eq!(r.buffered(), MAX_FLOWS);
    assert_eq!(r.slots(), MAX_FLOWS, "the dropped slot was reused");
    // Flow 1's buffer went; its late packets do not bring it back.
    r.segment(1, &seg(Side::Server, R | A, 0, CISN + 1, 0, 5));
    assert_eq!(r.buffered(), MAX_FLOWS);
    assert!(r.finish(&record(1, ep(1025), Outcome::Refused)).is_none());
    assert!(r.finish(&record(2, ep(1026), Outcome::Refused)).is_some());
    let last = r
        .finish(&record(n, ep(1024 + (n % 60000) as u16), Outcome::Refused))
        .unwrap();
    assert_eq!(last.packets.len(), 1);
    assert_eq!(r.buffered(), MAX_FLOWS - 2);
}

impl Seg {
    fn syn(t_us: u64) -> Seg {
        Seg {
            from: Side::Client,
            flags: S,
            seq: CISN,
            ack: 0,
            len: 0,
            win: 65495,
            t_us,
        }
    }
}

#[test]
fn small_cap_drops_oldest_and_late_packets_of_finished_flows_are_ignored() {
    let mut r = LadderRecorder::with_max_flows(None, 2);
    r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
    r.segment(2, &seg(Side::Client, S, CISN, 0, 0, 1));
    r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 2));
    r.segment(3, &seg(Side::Client, S, CISN, 0, 0, 3));
    // Oldest by creation, not by activity: flow 1 goes.
    assert!(r
        .finish(&record(1, client(), Outcome::Unanswered))
        .is_none());
    assert!(r
        .finish(&record(2, client(), Outcome::Unanswered))
        .is_some());
    // A straggler after flow 2 finished is not buffered again.
    r.segment(2, &seg(Side::Server, R | A, 0, CISN + 1, 0, 4));
    assert_eq!(r.buffered(), 1);
    assert!(r
        .finish(&record(3, client(), Outcome::Unanswered))
        .is_some());
    assert_eq!(r.buffered(), 0);
}

#[test]
fn syn_missing_uses_the_synack_and_midstream_stays_absolute() {
    let mut r = LadderRecorder::new(None);
    r.segment(1, &seg(Side::Server, S | A, SISN, CISN + 1, 0, 0));
    r.segment(1, &seg(Side::Client, R, CISN + 1, 0, 0, 5));
    let l = r
        .finish(&record(1, client(), Outcome::HandshakeIncomplete))
        .unwrap();
    assert_eq!(l.packets[0].ack, Some(1));
    assert_eq!(l.packets[1].seq, 1);

    let mut r = LadderRecorder::new(None);
    r.segment(1, &seg(Side::Client, P | A, 1234, 5678, 100, 0));
    r.segment(1, &seg(Side::Server, R | A, 5678, 1334, 0, 5));
    let l = r.finish(&record(1, client(), Outcome::Reset)).unwrap();
    assert_eq!((l.packets[0].seq, l.packets[0].ack), (1234, Some(5678)));
    assert_eq!((l.packets[1].seq, l.packets[1].ack), (5678, Some(1334)));
}

#[test]
fn odd_input_does_not_panic() {
    let mut r = LadderRecorder::new(None);
    // Clock going backwards, no flags at all, huge numbers.
    r.segment(1, &seg(Side::Client, S, 0, 0, 0, 1_000));
    r.segment(1, &seg(Side::Server, 0, u32::MAX, u32::MAX, u32::MAX, 0));
    let l = r.finish(&record(1, client(), Outcome::Refused)).unwrap();
    assert_eq!(l.packets[1].t_us, 0);
    assert_eq!(l.packets[1].flags, "none");
    let t = text(&l);
    assert!(t.contains("none seq 4294967295"), "{t}");

    // A flow longer than a second switches to seconds.
    let mut r = LadderRecorder::new(None);
    r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
    r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 3_000_042));
    let l = r.finish(&record(1, client(), Outcome::Unanswered)).unwrap();
    let t = text(&l);
    assert!(t.contains("   0.000000 s  |"), "{t}");
    assert!(t.contains("   3.000042 s  |"), "{t}");

    // A record for a flow never seen, and an empty ladder.
    let mut r = LadderRecorder::new(None);
    assert!(r.finish(&record(9, client(), Outcome::Refused)).is_none());
    let empty = Ladder {
        id: 1,
        client: "a".into(),
        server: "b".into(),
        packets: vec![],
        truncated: false,
    };
    assert_eq!(text(&empty).lines().count(), 1);
}

#[test]
fn a_pending_notice_keeps_the_buffer_for_the_final_record() {
    let mut r = LadderRecorder::new(None);
    r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
    let mut pending = record(1, client(), Outcome::Unanswered);
    pending.end = None;
    assert!(r.finish(&pending).is_none());
    r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 1_000_000));
    let l = r.finish(&record(1, client(), Outcome::Unanswered)).unwrap();
    assert_eq!(l.packets.len(), 2);
}

#[test]
fn json_line_has_the_schema() {
    let mut r = LadderRecorder::new(None);
    r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
    r.segment(1, &seg(Side::Server, R | A, 0, CISN + 1, 0, 12));
    let l = r.finish(&record(1, client(), Outcome::Refused)).unwrap();
    let mut out = Vec::new();
    l.write_json(&mut out).unwrap();
    let s = String::from_utf8(out).unwrap();
    assert!(s.ends_with('\n') && s.lines().count() == 1, "{s}");
    assert!(
        s.starts_with(r#"{"type":"ladder","id":1,"client":"127.0.0.1:40000","server":"127.0.0.1:61999","packets":[{"t_us":0,"from":"client","flags":"S","seq":0,"ack":null,"len":0,"win":512},"#),
        "{s}"
    );
    assert!(s.trim_end().ends_with(r#"],"truncated":false}"#), "{s}");
}

#[test]
fn colour_tells_the_directions_apart_and_keeps_alignment() {
    let mut r = LadderRecorder::new(None);
    r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
    r.segment(1, &seg(Side::Server, R | A, 0, CISN + 1, 0, 12));
    let l = r.finish(&record(1, client(), Outcome::Refused)).unwrap();
    let mut out = Vec::new();
    l.write_text(&mut out, Style { color: true }).unwrap();
    let t = String::from_utf8(out).unwrap();
    assert!(t.contains("|\x1b[36m---- S "), "{t}");
    assert!(t.contains("|\x1b[35m<--- R. "), "{t}");
    let plain = t
        .replace("\x1b[36m", "")
        .replace("\x1b[35m", "")
        .replace("\x1b[0m", "");
    assert_eq!(plain, text(&l));
}

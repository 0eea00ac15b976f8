//! Flow-table fuzz target: the input is a compact list of segments (format below), fed
//! to a `FlowTable` with a small cap, then `finish_all`. Every flow must get exactly one
//! final record, never a pending notice after it, and the counters must add up.
//!
//! Format: byte 0 configures the table (bits 0-4: cap - 1, bit 5: no cap (100000),
//! bit 6: pending notices, bit 7: 1 s SYN timeout instead of 3 s). Then 10-byte records
//! (a short tail is ignored):
//!
//! | byte | meaning |
//! | --- | --- |
//! | 0 | bits 0-1 client (40000, 40001, 61999, 10.1.2.3:40000), bit 2 server (127.0.0.1 or ::1 port 61999), bit 3 sent by the server, bits 4-7 kind: 0-11 TCP, 12-13 ICMP error, 14 timer tick, 15 SYN to another port |
//! | 1 | TCP flags, or the ICMP code (3: port unreachable) |
//! | 2 | clock step: bits 0-5 `v`, bits 6-7 unit: `v`×10 ms, `v` s, `v`×10 s, or back `v`×50 ms |
//! | 3-4 | sequence number − 0xFFFF8000 (big-endian), so sequence numbers wrap |
//! | 5-6 | acknowledgment number − 0xFFFF8000 |
//! | 7-8 | payload length (0xFFFF means u32::MAX) |
//! | 9 | window / 257 |
#![no_main]

use libfuzzer_sys::fuzz_target;
use portsniff::decode::{
    Encap, Endpoint, HandshakeOptions, IcmpError, Segment, SegmentKind, TcpFlags, TcpSegment, Timestamp,
    Unreachable,
};
use portsniff::flow::{FlowConfig, FlowEvent, FlowTable};
use portsniff::Evidence;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const PORT: u16 = 61999;
const SEQ_BASE: u32 = 0xFFFF_8000;

fn server(s: u8) -> Endpoint {
    if s == 0 {
        Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT)
    } else {
        Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), PORT)
    }
}

fn client(c: u8, s: u8) -> Endpoint {
    let v4 = s == 0;
    let (addr, port) = match c {
        0 => (None, 40000),
        1 => (None, 40001),
        2 => (None, PORT),
        _ => (Some(()), 40000),
    };
    let addr = match (v4, addr) {
        (true, None) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (true, Some(())) => IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        (false, None) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (false, Some(())) => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3)),
    };
    Endpoint::new(addr, port)
}

fuzz_target!(|data: &[u8]| {
    let Some((&conf, records)) = data.split_first() else {
        return;
    };
    let cfg = FlowConfig {
        port: PORT,
        max_flows: if conf & 0x20 != 0 {
            FlowConfig::DEFAULT_MAX_FLOWS
        } else {
            usize::from(conf & 0x1f) + 1
        },
        pending_notices: conf & 0x40 != 0,
        syn_timeout_us: if conf & 0x80 != 0 {
            1_000_000
        } else {
            3_000_000
        },
        // Every bit of `conf` has its use: the input's parity, which the fuzzer controls as
        // freely, says whether every close is settled or only those with trailing packets.
        settle_all: records.len() % 2 == 1,
    };
    let mut table = FlowTable::new(cfg);
    let mut events = Vec::new();
    let mut ids = Vec::new();
    let mut tcp_segments = 0u64;
    let mut clock: i64 = 1_700_000_000_000_000;
    for r in records.chunks_exact(10) {
        let (c, s) = (r[0] & 3, (r[0] >> 2) & 1);
        let from_server = r[0] & 8 != 0;
        let kind = r[0] >> 4;
        let v = i64::from(r[2] & 0x3f);
        clock += match r[2] >> 6 {
            0 => v * 10_000,
            1 => v * 1_000_000,
            2 => v * 10_000_000,
            _ => -v * 50_000,
        };
        clock = clock.max(0);
        let ts = Timestamp(clock as u64);
        let seq = SEQ_BASE.wrapping_add(u32::from(u16::from_be_bytes([r[3], r[4]])));
        let ack = SEQ_BASE.wrapping_add(u32::from(u16::from_be_bytes([r[5], r[6]])));
        let payload = match u16::from_be_bytes([r[7], r[8]]) {
            0xFFFF => u32::MAX,
            n => u32::from(n),
        };
        let (cl, sv) = (client(c, s), server(s));
        let (src, dst) = if from_server { (sv, cl) } else { (cl, sv) };
        let seg = match kind {
            0..=11 => Segment {
                ts,
                src,
                dst,
                kind: SegmentKind::Tcp(TcpSegment {
                    seq,
                    ack,
                    flags: TcpFlags(r[1]),
                    window: u16::from(r[9]) * 257,
                    payload_len: payload,
                    options: HandshakeOptions::default(),
                }),
                encap: Encap::None,
            },
            12 | 13 => Segment {
                ts,
                src: cl,
                dst: sv,
                kind: SegmentKind::Icmp(IcmpError {
                    reporter: sv.addr,
                    kind: if r[1] == 3 {
                        Unreachable::Port
                    } else {
                        Unreachable::Other {
                            icmp_type: 3,
                            code: r[1],
                        }
                    },
                    quoted_seq: seq,
                }),
                encap: Encap::None,
            },
            14 => {
                table.tick(ts, &mut events);
                continue;
            }
            _ => Segment {
                ts,
                src: cl,
                dst: Endpoint::new(sv.addr, 22),
                kind: SegmentKind::SynElsewhere,
                encap: Encap::None,
            },
        };
        if matches!(seg.kind, SegmentKind::Tcp(_)) {
            tcp_segments += 1;
        }
        ids.push(table.process(&seg, &mut events));
        assert!(
            table.len() <= cfg.max_flows,
            "{} flows over the cap",
            table.len()
        );
    }
    table.finish_all(&mut events);
    assert!(table.is_empty());

    let mut finished_at = HashMap::new();
    for (i, ev) in events.iter().enumerate() {
        if let FlowEvent::Finished(r) = ev {
            assert!(r.end.is_some(), "{r:?}");
            if let Some(prev) = finished_at.insert(r.id, i) {
                panic!(
                    "flow {} finished twice: #{prev} {:?} and #{i} {r:?}",
                    r.id, events[prev]
                );
            }
        }
    }
    for (i, ev) in events.iter().enumerate() {
        if let FlowEvent::Pending(r) = ev {
            assert!(cfg.pending_notices);
            let fin = finished_at.get(&r.id).expect("a pending flow finishes");
            assert!(i < *fin, "flow {}: pending after finished", r.id);
        }
    }
    for id in ids.into_iter().flatten() {
        assert!(finished_at.contains_key(&id), "flow {id} never finished");
    }
    let mut tally = Evidence::default();
    let mut packets = 0;
    for ev in &events {
        if let FlowEvent::Finished(r) = ev {
            packets += r.packets[0] + r.packets[1];
            tally.add(r);
        }
    }
    assert!(
        packets <= tcp_segments,
        "{packets} packets from {tcp_segments} segments"
    );
    // Each flow's last word (its Settled record, after the close delay, when its packets
    // ended it) plus the segments past a close delay account for every TCP segment.
    let mut last: HashMap<u64, u64> = HashMap::new();
    for ev in &events {
        match ev {
            FlowEvent::Finished(r) | FlowEvent::Settled { record: r, .. } => {
                last.insert(r.id, r.packets[0] + r.packets[1]);
            }
            FlowEvent::Pending(_) => {}
        }
    }
    assert_eq!(
        last.values().sum::<u64>() + table.stats().after_close,
        tcp_segments,
        "segments in flows + after the close delay"
    );
    assert_eq!(tally.flows(), finished_at.len() as u64);
    assert_eq!(table.stats().flows, finished_at.len() as u64);
});

//! Micro-benchmarks of the hot path: decoding one packet per link type, and the flow
//! engine over a realistic mix of connections.
//!
//! `cargo bench --bench engine`; compare runs made back to back on the same machine.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use portsniff::decode::{
    Decoder, Endpoint, HandshakeOptions, LinkType, Segment, SegmentKind, TcpFlags, TcpSegment,
    Timestamp,
};
use portsniff::flow::{FlowConfig, FlowEvent, FlowTable};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

const PORT: u16 = 61999;

/// An IPv4 TCP ACK with 100 bytes of payload and the timestamp option, as on Linux `lo`.
fn ip_packet() -> Vec<u8> {
    let payload = [0u8; 100];
    let tcp_len = 32 + payload.len();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&PORT.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x18, 0x02, 0x00, 0, 0, 0, 0]);
    p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    p.extend_from_slice(&payload);
    p
}

fn bench_decode(c: &mut Criterion) {
    let ip = ip_packet();
    let mut eth = vec![0u8; 12];
    eth.extend_from_slice(&[0x08, 0x00]);
    eth.extend_from_slice(&ip);
    let mut sll2 = vec![0x08, 0x00];
    sll2.extend_from_slice(&[0u8; 18]);
    sll2.extend_from_slice(&ip);
    let mut null = 2u32.to_ne_bytes().to_vec();
    null.extend_from_slice(&ip);

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, link, frame) in [
        ("ethernet", LinkType::Ethernet, &eth),
        ("linux_sll2", LinkType::LinuxSll2, &sll2),
        ("null", LinkType::Null, &null),
    ] {
        let d = Decoder::new(link, PORT);
        g.bench_function(name, |b| {
            b.iter(|| d.decode(Timestamp(1), black_box(frame)).is_ok())
        });
    }
    g.finish();
}

fn tcp(flags: u8, seq: u32, ack: u32, len: u32) -> SegmentKind {
    SegmentKind::Tcp(TcpSegment {
        seq,
        ack,
        flags: TcpFlags(flags),
        window: 512,
        payload_len: len,
        options: HandshakeOptions::default(),
    })
}

/// `n` connections from distinct clients, interleaved 8 at a time: 90 % clean
/// (handshake, request, response, close), 5 % refused, 5 % reset mid-stream.
fn workload(n: u32) -> Vec<Segment> {
    const S: u8 = TcpFlags::SYN;
    const A: u8 = TcpFlags::ACK;
    const F: u8 = TcpFlags::FIN;
    const R: u8 = TcpFlags::RST;
    let server = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT);
    let mut out = Vec::new();
    let mut t = 1_700_000_000_000_000u64;
    for group in (0..n).step_by(8) {
        let conns: Vec<u32> = (group..(group + 8).min(n)).collect();
        let script = |i: u32| -> Vec<(bool, SegmentKind)> {
            match i % 20 {
                0 => vec![(true, tcp(S, 1, 0, 0)), (false, tcp(R | A, 0, 2, 0))],
                1 => vec![
                    (true, tcp(S, 1, 0, 0)),
                    (false, tcp(S | A, 9, 2, 0)),
                    (true, tcp(A, 2, 10, 0)),
                    (true, tcp(A, 2, 10, 100)),
                    (false, tcp(R | A, 10, 102, 0)),
                ],
                _ => vec![
                    (true, tcp(S, 1, 0, 0)),
                    (false, tcp(S | A, 9, 2, 0)),
                    (true, tcp(A, 2, 10, 0)),
                    (true, tcp(A, 2, 10, 100)),
                    (false, tcp(A, 10, 102, 0)),
                    (false, tcp(A, 10, 102, 200)),
                    (true, tcp(A, 102, 210, 0)),
                    (true, tcp(F | A, 102, 210, 0)),
                    (false, tcp(F | A, 210, 103, 0)),
                    (true, tcp(A, 103, 211, 0)),
                ],
            }
        };
        let scripts: Vec<_> = conns.iter().map(|&i| script(i)).collect();
        let longest = scripts.iter().map(Vec::len).max().unwrap_or(0);
        for step in 0..longest {
            for (&i, s) in conns.iter().zip(&scripts) {
                let Some(&(from_client, kind)) = s.get(step) else {
                    continue;
                };
                let client = Endpoint::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 40000);
                let (src, dst) = if from_client {
                    (client, server)
                } else {
                    (server, client)
                };
                t += 7;
                out.push(Segment {
                    encap: portsniff::decode::Encap::None,
                    ts: Timestamp(t),
                    src,
                    dst,
                    kind,
                });
            }
        }
    }
    out
}

fn bench_flow(c: &mut Criterion) {
    let segments = workload(20_000);
    let cfg = FlowConfig {
        port: PORT,
        max_flows: FlowConfig::DEFAULT_MAX_FLOWS,
        syn_timeout_us: 3_000_000,
        pending_notices: false,
        // The text and JSON reports: only flows with trailing packets are settled.
        settle_all: false,
    };
    let mut g = c.benchmark_group("flow");
    // Outcome mixes: mostly clean connections (what a healthy port sees) and a flood of
    // unanswered SYNs from distinct sources under a small cap (evictions on every SYN).
    let flood: Vec<Segment> = (0..20_000u32)
        .map(|i| Segment {
            encap: portsniff::decode::Encap::None,
            ts: Timestamp(1_700_000_000_000_000 + u64::from(i)),
            src: Endpoint::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 40000),
            dst: Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT),
            kind: tcp(TcpFlags::SYN, i, 0, 0),
        })
        .collect();
    g.throughput(Throughput::Elements(flood.len() as u64));
    g.bench_function("syn_flood_20k_sources_cap_1000", |b| {
        b.iter_batched_ref(
            || {
                let cfg = FlowConfig {
                    max_flows: 1000,
                    ..cfg
                };
                (FlowTable::new(cfg), Vec::<FlowEvent>::with_capacity(64))
            },
            |(table, events)| {
                for seg in &flood {
                    table.process(seg, events);
                    events.clear();
                }
                table.stats().evicted
            },
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(segments.len() as u64));
    // Then the same with every close settled, as for a conn.log (`--format zeek`), the
    // `-w --only-problems` writer or the DNAT merge: a second record per connection.
    let settle_all = FlowConfig {
        settle_all: true,
        ..cfg
    };
    for (name, cfg) in [
        ("mixed_20k_connections", cfg),
        ("mixed_20k_connections_settle_all", settle_all),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || (FlowTable::new(cfg), Vec::<FlowEvent>::with_capacity(64)),
                |(table, events)| {
                    for seg in &segments {
                        table.process(seg, events);
                        events.clear();
                    }
                    table.finish_all(events);
                    events.len()
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_flow);
criterion_main!(benches);

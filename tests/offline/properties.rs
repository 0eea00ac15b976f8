//! Property tests: generated packets and segment sequences against the decoder, the flow
//! table, the summary tally and (end to end) the real binary.
//!
//! What they hold the code to:
//! - decoding never panics, whatever the bytes and the link type, and what it returns is
//!   consistent (the watched port is on one end; a well-formed packet decodes to exactly
//!   the fields it was built from, even when the snaplen cut its payload);
//! - the flow table gives every connection exactly one final record (also after eviction,
//!   idle timers, superseding SYNs, clocks that go backwards and `finish_all`), never a
//!   pending notice after it, never more packets than it was fed, and the same records in
//!   the same order on every run (its hash map is randomly seeded, the output must not be);
//! - the binary prints byte-identical output on every run of a file, and its summary adds
//!   up (`captured == decoded + skipped + syns_elsewhere`, one final flow line per flow,
//!   only the problem flows but the same summary with `--only-problems`, the exit status
//!   that the problems call for).
//!
//! Case counts are modest so the file runs in seconds in a debug build; raise them for a
//! deeper search with `PROPTEST_CASES=5000 cargo test --test offline properties::` (that overrides
//! every block's count). The fuzz targets in `fuzz/` search the same ground much longer.

use crate::support::wire;
use portsniff::decode::{
    decode_ip, Decoder, Endpoint, HandshakeOptions, IcmpError, LinkType, Segment, SegmentKind,
    TcpFlags, TcpSegment, Timestamp, Unreachable,
};
use portsniff::flow::{EndReason, FlowConfig, FlowEvent, FlowTable, Outcome, Side, TableStats};
use portsniff::report::Tally;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Output;

const PORT: u16 = 61999;
const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;

/// 2023-11-14, in microseconds: where generated clocks start.
const EPOCH_US: i64 = 1_700_000_000_000_000;

/// `cases` cases, unless `PROPTEST_CASES` says otherwise. Failures are not persisted to
/// a file (an integration test has no `lib.rs` beside it for proptest to anchor one):
/// a failing case prints its minimal input, which is what to turn into a unit test.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Decode
// ---------------------------------------------------------------------------------------

const DECODED_LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::Null,
    LinkType::Loop,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Raw,
];

fn any_link() -> impl Strategy<Value = LinkType> {
    prop_oneof![
        6 => proptest::sample::select(DECODED_LINKS.to_vec()),
        1 => any::<i32>().prop_map(LinkType::Unsupported),
    ]
}

fn decoded_link() -> impl Strategy<Value = LinkType> {
    proptest::sample::select(DECODED_LINKS.to_vec())
}

fn some_port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(PORT), Just(40000u16), any::<u16>()]
}

fn some_addr(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        prop_oneof![
            Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
        .boxed()
    } else {
        prop_oneof![
            Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        ]
        .boxed()
    }
}

/// What a decoder may say about any input: the watched port is on one end.
fn check_decoded(res: &Result<Segment, portsniff::decode::SkipReason>, port: u16) -> bool {
    match res {
        Ok(s) => match s.kind {
            SegmentKind::Tcp(_) | SegmentKind::Icmp(_) => s.src.port == port || s.dst.port == port,
            SegmentKind::SynElsewhere => s.src.port != port && s.dst.port != port,
        },
        Err(_) => true,
    }
}

/// A TCP header with arbitrary fields (any data offset, any option bytes).
fn raw_tcp_header() -> impl Strategy<Value = Vec<u8>> {
    (
        some_port(),
        some_port(),
        any::<u32>(),
        any::<u32>(),
        0u8..16,
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..44),
    )
        .prop_map(|(sp, dp, seq, ack, off, flags, win, opts)| {
            let mut h = wire::tcp(sp, dp, seq, ack, flags, win, &[]);
            h[12] = off << 4;
            h.extend_from_slice(&opts);
            h
        })
}

/// An IP header whose fields are mostly plausible and sometimes not (IHL, lengths,
/// fragment bits, next protocol), followed by `l4`.
fn ip_around(l4: Vec<u8>, proto: u8) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        some_addr(false),
        some_addr(false),
        some_addr(true),
        some_addr(true),
        prop_oneof![4 => Just(proto), 1 => any::<u8>(), 1 => Just(0u8), 1 => Just(44u8)],
        prop_oneof![4 => Just(None), 1 => any::<u16>().prop_map(Some)],
        prop_oneof![4 => Just(0x4000u16), 1 => Just(0x2000u16), 1 => any::<u16>()],
        prop_oneof![4 => Just(5u8), 1 => 0u8..16],
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(move |(v6, s4, d4, s6, d6, proto, len, frag, ihl, opt)| {
            let (src, dst) = if v6 { (s6, d6) } else { (s4, d4) };
            let mut p = wire::ip_header(src, dst, proto, l4.len());
            if v6 {
                if let Some(len) = len {
                    p[4..6].copy_from_slice(&len.to_be_bytes());
                }
            } else {
                p[0] = 0x40 | ihl;
                p[6..8].copy_from_slice(&frag.to_be_bytes());
                let words = usize::from(ihl.max(5)) - 5;
                let mut extra = opt;
                extra.resize(words * 4, 1);
                p.extend_from_slice(&extra);
                let total = len.unwrap_or((p.len() + l4.len()).min(65535) as u16);
                p[2..4].copy_from_slice(&total.to_be_bytes());
            }
            p.extend_from_slice(&l4);
            p
        })
}

/// Bytes that start like a real packet of each layer and then go wrong anywhere: the
/// shortest way for random input to reach TCP option and ICMP quote parsing.
fn plausible_ip() -> impl Strategy<Value = Vec<u8>> {
    let tail = || proptest::collection::vec(any::<u8>(), 0..64);
    let tcp = (raw_tcp_header(), tail()).prop_map(|(mut h, t)| {
        h.extend_from_slice(&t);
        h
    });
    let quoted = (raw_tcp_header(), 0usize..60)
        .prop_flat_map(|(h, cut)| {
            let h = h[..cut.min(h.len())].to_vec();
            ip_around(h, wire::PROTO_TCP)
        })
        .boxed();
    let icmp = (
        prop_oneof![Just(3u8), Just(1u8), any::<u8>()],
        0u8..20,
        quoted,
    )
        .prop_map(|(t, code, q)| {
            let mut b = vec![t, code, 0, 0, 0, 0, 0, 0];
            b.extend_from_slice(&q);
            b
        });
    prop_oneof![
        3 => tcp.prop_flat_map(|l4| ip_around(l4, wire::PROTO_TCP)).boxed(),
        1 => icmp.clone().prop_flat_map(|l4| ip_around(l4, wire::PROTO_ICMP)).boxed(),
        1 => icmp.prop_flat_map(|l4| ip_around(l4, wire::PROTO_ICMPV6)).boxed(),
        1 => tail().prop_flat_map(|l4| ip_around(l4, 17)).boxed(),
    ]
}

/// The handshake options a SYN may carry.
fn handshake_options() -> impl Strategy<Value = HandshakeOptions> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..15),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(mss, window_scale, sack_permitted, timestamps)| HandshakeOptions {
                mss,
                window_scale,
                sack_permitted,
                timestamps,
            },
        )
}

proptest! {
    #![proptest_config(config(512))]

    /// Any bytes, any link type, any port: a segment or a skip reason, never a panic.
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        link in any_link(),
        port in some_port(),
        ts in any::<u64>(),
        data in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let res = Decoder::new(link, port).decode(Timestamp(ts), &data);
        prop_assert!(check_decoded(&res, port), "{res:?}");
        let res = decode_ip(Timestamp(ts), &data, port);
        prop_assert!(check_decoded(&res, port), "{res:?}");
        if let LinkType::Unsupported(_) = link {
            prop_assert!(Decoder::new(link, port).decode(Timestamp(ts), &data).is_err());
        }
    }

    /// A valid link-layer header and a plausible IP/TCP/ICMP start, then anything: the
    /// inputs that reach the deeper parsers.
    #[test]
    fn decode_never_panics_on_plausible_packets(
        link in any_link(),
        vlan in any::<bool>(),
        port in prop_oneof![Just(PORT), Just(40000u16)],
        ip in plausible_ip(),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut frame = wire::frame(link, &ip, vlan);
        if do_cut {
            let at = cut.index(frame.len() + 1);
            frame.truncate(at);
        }
        let res = Decoder::new(link, port).decode(Timestamp(1), &frame);
        prop_assert!(check_decoded(&res, port), "{res:?}");
    }

    /// A well-formed TCP segment decodes to exactly what it was built from, under every
    /// link type, with its payload length taken from the IP header even when the
    /// capture cut the payload short.
    #[test]
    fn decode_roundtrips_tcp(
        link in decoded_link(),
        vlan in any::<bool>(),
        v6 in any::<bool>(),
        (a, b) in (some_addr(false), some_addr(false)),
        (a6, b6) in (some_addr(true), some_addr(true)),
        client_port in prop_oneof![Just(40000u16), 1u16..=65535],
        to_server in any::<bool>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        flags in any::<u8>(),
        window in any::<u16>(),
        payload in prop_oneof![Just(0usize), 1usize..1500],
        cut in any::<prop::sample::Index>(),
        opts in handshake_options(),
        unknown_first in any::<bool>(),
    ) {
        let (client, server) = if v6 { (a6, b6) } else { (a, b) };
        let (src, dst) = if to_server {
            (Endpoint::new(client, client_port), Endpoint::new(server, PORT))
        } else {
            (Endpoint::new(server, PORT), Endpoint::new(client, client_port))
        };
        let is_syn = flags & SYN != 0;
        let opt_bytes = if is_syn { wire::handshake_options(&opts, unknown_first) } else { vec![] };
        let tcp = wire::tcp(src.port, dst.port, seq, ack, flags, window, &opt_bytes);
        let ip = wire::ip_packet(src.addr, dst.addr, wire::PROTO_TCP, &tcp, payload);
        let mut frame = wire::frame(link, &ip, vlan);
        // Cut anywhere in the payload, as a snaplen would.
        let keep = cut.index(payload + 1);
        frame.truncate(frame.len() - payload + keep);
        let seg = Decoder::new(link, PORT).decode(Timestamp(7), &frame);
        let want = Segment {
            ts: Timestamp(7),
            src,
            dst,
            kind: SegmentKind::Tcp(TcpSegment {
                seq,
                ack,
                flags: TcpFlags(flags),
                window,
                payload_len: payload as u32,
                options: if is_syn { opts } else { HandshakeOptions::default() },
            }),
        };
        prop_assert_eq!(seg, Ok(want));
    }

    /// An ICMP(v6) destination unreachable quoting a client's SYN is tied back to that
    /// SYN's 4-tuple and sequence number, however much of the quoted TCP header survived
    /// past its first 8 bytes.
    #[test]
    fn decode_roundtrips_icmp_errors(
        link in decoded_link(),
        v6 in any::<bool>(),
        (a, b, r) in (some_addr(false), some_addr(false), some_addr(false)),
        (a6, b6, r6) in (some_addr(true), some_addr(true), some_addr(true)),
        client_port in 1u16..=65535,
        seq in any::<u32>(),
        code in 0u8..16,
        quote_tcp in 8usize..=20,
    ) {
        let (client, server, reporter) = if v6 { (a6, b6, r6) } else { (a, b, r) };
        let tcp = wire::tcp(client_port, PORT, seq, 0, SYN, 65535, &[]);
        let quoted = wire::ip_packet(client, server, wire::PROTO_TCP, &tcp[..quote_tcp], 0);
        let icmp = wire::icmp_unreachable(reporter, client, code, &quoted);
        let frame = wire::frame(link, &icmp, false);
        let seg = Decoder::new(link, PORT).decode(Timestamp(9), &frame);
        let Ok(seg) = seg else {
            return Err(TestCaseError::fail(format!("not decoded: {seg:?}")));
        };
        prop_assert_eq!(seg.src, Endpoint::new(client, client_port));
        prop_assert_eq!(seg.dst, Endpoint::new(server, PORT));
        let SegmentKind::Icmp(err) = seg.kind else {
            return Err(TestCaseError::fail(format!("not ICMP: {seg:?}")));
        };
        prop_assert_eq!(err.reporter, reporter);
        prop_assert_eq!(err.quoted_seq, seq);
        let port_code = if v6 { 4 } else { 3 };
        let admin_code = if v6 { 1 } else { 13 };
        if code == port_code {
            prop_assert_eq!(err.kind, Unreachable::Port);
        }
        if code == admin_code {
            prop_assert_eq!(err.kind, Unreachable::AdminProhibited);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The flow table
// ---------------------------------------------------------------------------------------

/// The server endpoints: IPv4 and IPv6 loopback, and another address on the port.
fn server(s: usize) -> Endpoint {
    match s % 3 {
        0 => Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT),
        1 => Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), PORT),
        _ => Endpoint::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), PORT),
    }
}

/// A small pool of clients (so 4-tuples collide and generations split), in the server's
/// address family; client 3 also uses the watched port, the role-confusion case.
fn client(c: usize, s: usize) -> Endpoint {
    let port = [40000, 40001, 40002, PORT, 40000][c % 5];
    let addr = match (server(s).addr, c % 5) {
        (IpAddr::V4(_), 4) => IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        (IpAddr::V4(_), _) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V6(_), 4) => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3)),
        (IpAddr::V6(_), _) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    Endpoint::new(addr, port)
}

/// One thing that happens to the table.
#[derive(Clone, Debug)]
enum Op {
    /// A TCP segment between client `c` and server `s`.
    Tcp {
        c: usize,
        s: usize,
        from_client: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        payload: u32,
    },
    /// An ICMP error quoting a segment from client `c` to server `s`.
    Icmp {
        c: usize,
        s: usize,
        code: u8,
        quoted_seq: u32,
    },
    /// A SYN to another port.
    SynElsewhere { c: usize, s: usize },
    /// A timer tick at the current time (live captures tick every 100 ms).
    Tick,
}

/// An op and the clock step before it, in microseconds (may be negative).
#[derive(Clone, Debug)]
struct Step {
    dt: i64,
    op: Op,
}

fn seq_num() -> impl Strategy<Value = u32> {
    // Near the wrap-around point most of the time, so the serial-number comparisons wrap.
    prop_oneof![
        3 => (u32::MAX - 3000)..=u32::MAX,
        2 => 0u32..3000,
        1 => any::<u32>(),
    ]
}

fn flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(SYN),
        Just(SYN | ACK),
        Just(ACK),
        Just(PSH | ACK),
        Just(FIN | ACK),
        Just(RST),
        Just(RST | ACK),
        any::<u8>(),
    ]
}

fn random_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            0usize..5,
            0usize..3,
            any::<bool>(),
            flags(),
            seq_num(),
            seq_num(),
            prop_oneof![1 => Just(0u16), 4 => any::<u16>()],
            prop_oneof![4 => Just(0u32), 4 => 1u32..1500, 1 => Just(u32::MAX), 1 => any::<u32>()],
        )
            .prop_map(|(c, s, from_client, flags, seq, ack, window, payload)| Op::Tcp {
                c,
                s,
                from_client,
                flags,
                seq,
                ack,
                window,
                payload,
            }),
        1 => (0usize..5, 0usize..3, 0u8..16, seq_num())
            .prop_map(|(c, s, code, quoted_seq)| Op::Icmp { c, s, code, quoted_seq }),
        1 => (0usize..5, 0usize..3).prop_map(|(c, s)| Op::SynElsewhere { c, s }),
        1 => Just(Op::Tick),
    ]
}

/// How a scripted connection goes.
#[derive(Clone, Copy, Debug)]
enum Script {
    CloseClientFirst,
    CloseServerFirst,
    Refused,
    ResetAfterData,
    Unanswered,
    IcmpRefused,
}

/// A realistic connection (handshake, data both ways, an ending), with ISNs near the
/// wrap-around point, some packets dropped and some duplicated (retransmissions).
fn scripted() -> impl Strategy<Value = Vec<Op>> {
    (
        0usize..5,
        0usize..3,
        seq_num(),
        seq_num(),
        proptest::sample::select(vec![
            Script::CloseClientFirst,
            Script::CloseServerFirst,
            Script::Refused,
            Script::ResetAfterData,
            Script::Unanswered,
            Script::IcmpRefused,
        ]),
        0u32..3000,
        0u32..3000,
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(c, s, ci, si, script, dc, ds, drop, dup)| {
            let t = |from_client, flags, seq, ack, payload| Op::Tcp {
                c,
                s,
                from_client,
                flags,
                seq,
                ack,
                window: 65535,
                payload,
            };
            let w = u32::wrapping_add;
            let mut ops = vec![t(true, SYN, ci, 0, 0)];
            match script {
                Script::Unanswered => {
                    ops.push(t(true, SYN, ci, 0, 0));
                    ops.push(t(true, SYN, ci, 0, 0));
                }
                Script::Refused => ops.push(t(false, RST | ACK, 0, w(ci, 1), 0)),
                Script::IcmpRefused => ops.push(Op::Icmp {
                    c,
                    s,
                    code: 3,
                    quoted_seq: ci,
                }),
                Script::CloseClientFirst | Script::CloseServerFirst | Script::ResetAfterData => {
                    let (c1, s1) = (w(ci, 1), w(si, 1));
                    let (c2, s2) = (w(c1, dc), w(s1, ds));
                    ops.extend([
                        t(false, SYN | ACK, si, c1, 0),
                        t(true, ACK, c1, s1, 0),
                        t(true, PSH | ACK, c1, s1, dc),
                        t(false, ACK, s1, c2, 0),
                        t(false, PSH | ACK, s1, c2, ds),
                        t(true, ACK, c2, s2, 0),
                    ]);
                    match script {
                        Script::CloseClientFirst => ops.extend([
                            t(true, FIN | ACK, c2, s2, 0),
                            t(false, ACK, s2, w(c2, 1), 0),
                            t(false, FIN | ACK, s2, w(c2, 1), 0),
                            t(true, ACK, w(c2, 1), w(s2, 1), 0),
                        ]),
                        Script::CloseServerFirst => ops.extend([
                            t(false, FIN | ACK, s2, c2, 0),
                            t(true, ACK, c2, w(s2, 1), 0),
                            t(true, FIN | ACK, c2, w(s2, 1), 0),
                            t(false, ACK, w(s2, 1), w(c2, 1), 0),
                        ]),
                        _ => {
                            if drop & 1 == 0 {
                                ops.push(t(true, RST | ACK, c2, s2, 0));
                            } else {
                                ops.push(t(false, RST | ACK, s2, c2, 0));
                            }
                        }
                    }
                }
            }
            // One connection in four loses packets, one in four repeats some.
            let mut out = Vec::with_capacity(ops.len() * 2);
            for (i, op) in ops.into_iter().enumerate() {
                let bit = |m: u32| (m >> (i % 28)) & 1 == 1;
                if drop >> 30 == 0 && bit(drop) {
                    continue;
                }
                if dup >> 30 == 0 && bit(dup) {
                    out.push(op.clone());
                }
                out.push(op);
            }
            out
        })
}

fn time_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        10 => 0i64..300_000,
        1 => -2_000_000i64..0,
        1 => 30_000_000i64..400_000_000,
    ]
}

/// Scripted connections and random noise, interleaved (each script keeps its order),
/// with a clock that mostly moves forward a little, sometimes back, sometimes far ahead.
fn steps(max_noise: usize, max_scripts: usize) -> impl Strategy<Value = Vec<Step>> {
    (
        proptest::collection::vec(scripted(), 0..=max_scripts),
        proptest::collection::vec(random_op(), 0..=max_noise),
        any::<u64>(),
        proptest::collection::vec(time_step(), 1..64),
    )
        .prop_map(|(scripts, noise, seed, dts)| {
            let mut sources: Vec<std::collections::VecDeque<Op>> = scripts
                .into_iter()
                .chain(std::iter::once(noise))
                .map(Into::into)
                .collect();
            let mut rng = seed | 1;
            let mut out = Vec::new();
            loop {
                let left: usize = sources.iter().map(|s| s.len()).sum();
                if left == 0 {
                    break;
                }
                // xorshift64: a fixed function of the generated seed, so shrinking works.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let mut pick = (rng % left as u64) as usize;
                let src = sources
                    .iter_mut()
                    .find(|s| {
                        if pick < s.len() {
                            true
                        } else {
                            pick -= s.len();
                            false
                        }
                    })
                    .expect("a source with ops left");
                let op = src.pop_front().expect("non-empty");
                out.push(Step {
                    dt: dts[out.len() % dts.len()],
                    op,
                });
            }
            out
        })
}

fn flow_config() -> impl Strategy<Value = FlowConfig> {
    (
        prop_oneof![2 => 1usize..50, 1 => Just(FlowConfig::DEFAULT_MAX_FLOWS)],
        any::<bool>(),
        1u64..5_000_000,
    )
        .prop_map(|(max_flows, pending_notices, syn_timeout_us)| FlowConfig {
            port: PORT,
            max_flows,
            syn_timeout_us,
            pending_notices,
        })
}

/// The segment an op stands for at time `ts` (`None` for a tick).
fn segment_of(op: &Op, ts: Timestamp) -> Option<Segment> {
    match *op {
        Op::Tcp {
            c,
            s,
            from_client,
            flags,
            seq,
            ack,
            window,
            payload,
        } => {
            let (cl, sv) = (client(c, s), server(s));
            let (src, dst) = if from_client { (cl, sv) } else { (sv, cl) };
            Some(Segment {
                ts,
                src,
                dst,
                kind: SegmentKind::Tcp(TcpSegment {
                    seq,
                    ack,
                    flags: TcpFlags(flags),
                    window,
                    payload_len: payload,
                    options: HandshakeOptions::default(),
                }),
            })
        }
        Op::Icmp {
            c,
            s,
            code,
            quoted_seq,
        } => Some(Segment {
            ts,
            src: client(c, s),
            dst: server(s),
            kind: SegmentKind::Icmp(IcmpError {
                reporter: server(s).addr,
                kind: if code == 3 {
                    Unreachable::Port
                } else {
                    Unreachable::Other { icmp_type: 3, code }
                },
                quoted_seq,
            }),
        }),
        Op::SynElsewhere { c, s } => Some(Segment {
            ts,
            src: client(c, s),
            dst: Endpoint::new(server(s).addr, 22),
            kind: SegmentKind::SynElsewhere,
        }),
        Op::Tick => None,
    }
}

/// Everything a run of the table produced.
#[derive(Debug, PartialEq)]
struct TableRun {
    events: Vec<FlowEvent>,
    /// Where the events `finish_all` emitted start.
    finish_all_at: usize,
    /// What `process` returned, per segment.
    ids: Vec<Option<u64>>,
    tcp_segments: u64,
    stats: TableStats,
}

fn run_table(cfg: FlowConfig, steps: &[Step]) -> Result<TableRun, TestCaseError> {
    let mut table = FlowTable::new(cfg);
    let mut events = Vec::new();
    let mut ids = Vec::new();
    let mut tcp_segments = 0;
    let mut clock = EPOCH_US;
    for step in steps {
        clock = (clock + step.dt).max(0);
        let ts = Timestamp(clock as u64);
        match segment_of(&step.op, ts) {
            Some(seg) => {
                tcp_segments += u64::from(matches!(seg.kind, SegmentKind::Tcp(_)));
                ids.push(table.process(&seg, &mut events));
            }
            None => table.tick(ts, &mut events),
        }
        prop_assert!(
            table.len() <= cfg.max_flows,
            "{} flows held, cap {}",
            table.len(),
            cfg.max_flows
        );
    }
    let finish_all_at = events.len();
    table.finish_all(&mut events);
    prop_assert!(table.is_empty(), "finish_all left {} flows", table.len());
    Ok(TableRun {
        events,
        finish_all_at,
        ids,
        tcp_segments,
        stats: table.stats(),
    })
}

/// The invariants of one run: one outcome per flow, and records that add up.
fn check_run(cfg: &FlowConfig, run: &TableRun) -> Result<(), TestCaseError> {
    let mut finished_at: HashMap<u64, usize> = HashMap::new();
    for (i, ev) in run.events.iter().enumerate() {
        if let FlowEvent::Finished(r) = ev {
            if let Some(prev) = finished_at.insert(r.id, i) {
                return Err(TestCaseError::fail(format!(
                    "flow {} finished twice: event {prev} {:?} and event {i} {r:?}",
                    r.id, run.events[prev]
                )));
            }
        }
    }
    for (i, ev) in run.events.iter().enumerate() {
        let r = ev.record();
        match ev {
            FlowEvent::Pending(_) => {
                prop_assert!(cfg.pending_notices, "pending notice in a replay: {r:?}");
                prop_assert!(r.end.is_none(), "pending with an end: {r:?}");
                let Some(&fin) = finished_at.get(&r.id) else {
                    return Err(TestCaseError::fail(format!(
                        "pending flow {} never finished",
                        r.id
                    )));
                };
                prop_assert!(
                    i < fin,
                    "flow {}: pending (#{i}) after finished (#{fin})",
                    r.id
                );
            }
            FlowEvent::Finished(_) => {
                prop_assert!(r.end.is_some(), "final record without an end: {r:?}");
                prop_assert!(r.first_ts <= r.last_ts, "{r:?}");
                prop_assert!(
                    r.packets[0] + r.packets[1] >= 1,
                    "a flow without packets: {r:?}"
                );
                prop_assert!(
                    r.id >= 1 && r.id <= run.stats.flows,
                    "id out of range: {r:?}"
                );
                prop_assert_eq!(
                    r.syn_gaps_us.as_slice().len() as u32,
                    r.syn_count.saturating_sub(1).min(6),
                    "syn gaps vs syn_count: {:?}",
                    r
                );
                // Zeek's letters (README, "update_history"): S/h handshake, A/D ack and
                // data, F/R, T/W retransmission and zero window, Q/I multi-flag segments.
                prop_assert!(
                    r.history
                        .as_str()
                        .bytes()
                        .all(|b| b"SsHhAaDdFfRrTtWwQqIi".contains(&b)),
                    "history {:?}",
                    r.history
                );
                if let Some(by) = r.reset_by {
                    prop_assert!(
                        matches!(
                            r.outcome,
                            Outcome::Refused
                                | Outcome::Reset
                                | Outcome::HandshakeIncomplete
                                | Outcome::Unanswered
                        ),
                        "reset_by {by:?} with outcome {:?}",
                        r.outcome
                    );
                }
                match r.outcome {
                    Outcome::Refused => prop_assert_eq!(r.reset_by, Some(Side::Server)),
                    Outcome::Reset => prop_assert!(r.reset_by.is_some(), "{r:?}"),
                    Outcome::Unreachable => prop_assert!(r.icmp.is_some(), "{r:?}"),
                    Outcome::Closed | Outcome::HalfClosed => {
                        prop_assert!(r.closed_first_by.is_some(), "{r:?}")
                    }
                    _ => {}
                }
                // A handshake RTT means the handshake completed: not a failed attempt.
                if r.handshake_rtt_us.is_some() {
                    prop_assert!(
                        !matches!(
                            r.outcome,
                            Outcome::Unanswered
                                | Outcome::Refused
                                | Outcome::Unreachable
                                | Outcome::HandshakeIncomplete
                        ),
                        "{r:?}"
                    );
                }
            }
        }
    }
    for (i, id) in run.ids.iter().enumerate() {
        if let Some(id) = id {
            prop_assert!(
                finished_at.contains_key(id),
                "segment #{i} went to flow {id}, which never finished"
            );
        }
    }
    let finished: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Finished(r) => Some(*r),
            FlowEvent::Pending(_) => None,
        })
        .collect();
    let packets: u64 = finished.iter().map(|r| r.packets[0] + r.packets[1]).sum();
    prop_assert!(
        packets <= run.tcp_segments,
        "{packets} packets in records, {} TCP segments fed",
        run.tcp_segments
    );
    prop_assert_eq!(run.stats.flows, finished.len() as u64, "table stats: flows");
    let evicted = finished
        .iter()
        .filter(|r| r.end == Some(EndReason::Evicted))
        .count() as u64;
    prop_assert_eq!(run.stats.evicted, evicted, "table stats: evicted");
    prop_assert!(run.stats.peak_flows <= cfg.max_flows as u64);
    // finish_all reports in order of first packet.
    let tail: Vec<_> = run.events[run.finish_all_at..]
        .iter()
        .map(|e| (e.record().first_ts, e.record().id))
        .collect();
    prop_assert!(
        tail.windows(2).all(|w| w[0] < w[1]),
        "finish_all order: {tail:?}"
    );
    prop_assert!(run.events[run.finish_all_at..]
        .iter()
        .all(|e| matches!(e, FlowEvent::Finished(r) if r.end == Some(EndReason::CaptureEnd))));

    let mut tally = Tally::default();
    for r in &finished {
        tally.add(r);
    }
    prop_assert_eq!(tally.flows(), finished.len() as u64);
    let by_outcome: u64 = Outcome::ALL.iter().map(|&o| tally.count(o)).sum();
    prop_assert_eq!(by_outcome, tally.flows());
    let problems = finished.iter().filter(|r| r.outcome.is_problem()).count() as u64;
    prop_assert_eq!(tally.problems(), problems);
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Generated traffic never breaks the table's promises (see `check_run`).
    #[test]
    fn flow_table_gives_every_flow_one_outcome(
        cfg in flow_config(),
        steps in steps(80, 4),
    ) {
        let run = run_table(cfg, &steps)?;
        check_run(&cfg, &run)?;
    }

    /// The same segments into a fresh table (with a fresh hash seed) give the same
    /// events, in the same order.
    #[test]
    fn flow_table_is_deterministic(
        cfg in flow_config(),
        steps in steps(60, 3),
    ) {
        let first = run_table(cfg, &steps)?;
        let second = run_table(cfg, &steps)?;
        prop_assert_eq!(first, second);
    }

    /// Many connections through a tiny table: eviction and tombstone reuse under load.
    #[test]
    fn flow_table_under_a_small_cap(
        max_flows in 1usize..6,
        pending_notices in any::<bool>(),
        steps in steps(40, 12),
    ) {
        let cfg = FlowConfig {
            port: PORT,
            max_flows,
            syn_timeout_us: 1_000_000,
            pending_notices,
        };
        let run = run_table(cfg, &steps)?;
        check_run(&cfg, &run)?;
    }
}

/// A SYN sent *from* the watched port (an outbound `connect()` whose source port is the
/// watched one: `nc -p 61999 HOST 40000`, or any connection whose ephemeral port happens
/// to be the watched port when that lies in `ip_local_port_range`) is that side's own
/// attempt: the table orients a flow by its first SYN (its sender is the client) or
/// SYN-ACK (its receiver is), whatever the ports (`orient` in src/flow/table.rs). The
/// README defines `unanswered` and `refused` by the client's SYNs, so the record of a
/// failed attempt counts that SYN.
#[test]
fn failed_attempts_count_the_client_syn() {
    let peer = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let local = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT);
    let tcp = |flags, seq, ack| {
        SegmentKind::Tcp(TcpSegment {
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 65535,
            payload_len: 0,
            options: HandshakeOptions::default(),
        })
    };
    let seg = |us: i64, src, dst, kind| Segment {
        ts: Timestamp((EPOCH_US + us) as u64),
        src,
        dst,
        kind,
    };
    let cfg = FlowConfig {
        port: PORT,
        max_flows: 100,
        syn_timeout_us: 3_000_000,
        pending_notices: false,
    };
    // Two SYNs from the watched port and nothing back; one SYN and the peer's RST.
    let scenarios = [
        vec![
            seg(0, local, peer, tcp(SYN, 1000, 0)),
            seg(1_000_000, local, peer, tcp(SYN, 1000, 0)),
        ],
        vec![
            seg(0, local, peer, tcp(SYN, 1000, 0)),
            seg(50, peer, local, tcp(RST | ACK, 0, 1001)),
        ],
    ];
    for segments in scenarios {
        let mut table = FlowTable::new(cfg);
        let mut events = Vec::new();
        for s in &segments {
            table.process(s, &mut events);
        }
        table.finish_all(&mut events);
        for ev in &events {
            let r = ev.record();
            if matches!(r.outcome, Outcome::Unanswered | Outcome::Refused) {
                assert!(
                    r.syn_count >= 1,
                    "a failed attempt without a client SYN: {} → {} {} syn_count {} history {:?}",
                    r.client,
                    r.server,
                    r.outcome,
                    r.syn_count,
                    r.history
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// End to end: the real binary
// ---------------------------------------------------------------------------------------

fn replay(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["-r", path.to_str().expect("UTF-8 path"), "--port", "61999"];
    args.extend_from_slice(extra);
    crate::support::run(&args)
}

fn json_lines(stdout: &[u8]) -> Result<Vec<Value>, TestCaseError> {
    crate::support::try_json_lines(stdout).map_err(TestCaseError::fail)
}

#[test]
fn binary_output_is_deterministic_on_fixtures() {
    let dir = crate::support::fixtures_dir();
    for name in [
        "mixed.pcap",
        "closed.pcapng",
        "port_reuse.pcap",
        "null_loopback.pcap",
        "any_sll2.pcap",
        "unreachable.pcap",
        "truncated.pcap",
    ] {
        let path = dir.join(name);
        for extra in [&["--json"][..], &["--json", "--ladder"], &[]] {
            let a = replay(&path, extra);
            let b = replay(&path, extra);
            assert!(!a.stdout.is_empty(), "{name} {extra:?}: no output");
            assert_eq!(a.status.code(), b.status.code(), "{name} {extra:?}: exit");
            assert!(
                a.stdout == b.stdout,
                "{name} {extra:?}: two runs differ:\n{}\n---\n{}",
                String::from_utf8_lossy(&a.stdout),
                String::from_utf8_lossy(&b.stdout)
            );
        }
    }
}

/// A generated capture: the frames of scripted and random traffic, plus frames that
/// are garbage or cut by a snaplen.
#[derive(Clone, Debug)]
struct Capture {
    link: LinkType,
    steps: Vec<Step>,
    /// Per step: cut the frame to this many bytes (a snaplen), if shorter.
    snaplen: Option<usize>,
    garbage: Vec<(usize, Vec<u8>)>,
}

fn capture() -> impl Strategy<Value = Capture> {
    (
        decoded_link(),
        steps(25, 4),
        prop_oneof![4 => Just(None), 1 => (14usize..120).prop_map(Some)],
        proptest::collection::vec(
            (
                any::<usize>(),
                proptest::collection::vec(any::<u8>(), 0..80),
            ),
            0..4,
        ),
    )
        .prop_map(|(link, steps, snaplen, garbage)| Capture {
            link,
            steps,
            snaplen,
            garbage,
        })
}

/// The frame an op stands for (`None` for a tick).
fn frame_of(op: &Op, link: LinkType) -> Option<Vec<u8>> {
    let ip = match *op {
        Op::Tcp {
            c,
            s,
            from_client,
            flags,
            seq,
            ack,
            window,
            payload,
        } => {
            let (cl, sv) = (client(c, s), server(s));
            let (src, dst) = if from_client { (cl, sv) } else { (sv, cl) };
            let opts = if flags & SYN != 0 {
                wire::handshake_options(
                    &HandshakeOptions {
                        mss: Some(65495),
                        window_scale: Some(7),
                        sack_permitted: true,
                        timestamps: true,
                    },
                    false,
                )
            } else {
                vec![]
            };
            let tcp = wire::tcp(src.port, dst.port, seq, ack, flags, window, &opts);
            let payload = (payload as usize).min(1400);
            wire::ip_packet(src.addr, dst.addr, wire::PROTO_TCP, &tcp, payload)
        }
        Op::Icmp {
            c,
            s,
            code,
            quoted_seq,
        } => {
            let (cl, sv) = (client(c, s), server(s));
            let tcp = wire::tcp(cl.port, sv.port, quoted_seq, 0, SYN, 65535, &[]);
            let quoted = wire::ip_packet(cl.addr, sv.addr, wire::PROTO_TCP, &tcp, 0);
            wire::icmp_unreachable(sv.addr, cl.addr, code, &quoted)
        }
        Op::SynElsewhere { c, s } => {
            let (cl, sv) = (client(c, s), server(s));
            let tcp = wire::tcp(cl.port, 22, 1, 0, SYN, 65535, &[]);
            wire::ip_packet(cl.addr, sv.addr, wire::PROTO_TCP, &tcp, 0)
        }
        Op::Tick => return None,
    };
    Some(wire::frame(link, &ip, false))
}

fn records_of(cap: &Capture) -> Vec<(u64, Vec<u8>, u32)> {
    let mut records = Vec::new();
    let mut clock = EPOCH_US;
    for (i, step) in cap.steps.iter().enumerate() {
        clock = (clock + step.dt).max(0);
        for (at, bytes) in &cap.garbage {
            if at % (cap.steps.len() + 1) == i {
                records.push((clock as u64, bytes.clone(), bytes.len() as u32));
            }
        }
        if let Some(mut frame) = frame_of(&step.op, cap.link) {
            let len = frame.len() as u32;
            if let Some(snap) = cap.snaplen {
                frame.truncate(snap);
            }
            records.push((clock as u64, frame, len));
        }
    }
    records
}

fn check_replay(
    path: &Path,
    records: &[(u64, Vec<u8>, u32)],
    link: LinkType,
) -> Result<(), TestCaseError> {
    let a = replay(path, &["--json"]);
    let b = replay(path, &["--json"]);
    let stderr = String::from_utf8_lossy(&a.stderr);
    prop_assert!(
        !stderr.contains("panicked"),
        "the binary panicked: {stderr}"
    );
    prop_assert!(
        a.stdout == b.stdout,
        "two runs differ:\n{}\n---\n{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    let lines = json_lines(&a.stdout)?;
    let Some(summary) = lines.last().filter(|l| l["type"] == "summary") else {
        return Err(TestCaseError::fail(format!(
            "no summary last (exit {:?}, stderr {stderr})",
            a.status.code()
        )));
    };
    let flows: Vec<&Value> = lines.iter().filter(|l| l["type"] == "flow").collect();
    prop_assert!(
        flows.iter().all(|f| f["final"] == true),
        "a pending notice in a replay"
    );
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    let p = &summary["packets"];
    prop_assert_eq!(
        n(&p["captured"]),
        n(&p["decoded"]) + n(&p["skipped"]) + n(&p["syns_elsewhere"]),
        "packet accounting: {}",
        p
    );
    prop_assert!(n(&p["captured"]) <= records.len() as u64);
    // A file is read unfiltered and decoded by the library's decoder, so at most what
    // that decoder makes of every record.
    let decoder = Decoder::new(link, PORT);
    let decodable = records
        .iter()
        .filter(|(ts, data, _)| {
            matches!(
                decoder.decode(Timestamp(*ts), data),
                Ok(Segment {
                    kind: SegmentKind::Tcp(_) | SegmentKind::Icmp(_),
                    ..
                })
            )
        })
        .count() as u64;
    prop_assert!(n(&p["decoded"]) <= decodable, "{} decoded > {decodable}", p);
    prop_assert_eq!(
        n(&summary["flows"]),
        flows.len() as u64,
        "summary flows vs flow lines"
    );
    let mut ids: Vec<u64> = flows.iter().map(|f| n(&f["id"])).collect();
    ids.sort_unstable();
    ids.dedup();
    prop_assert_eq!(ids.len(), flows.len(), "flow ids repeat");
    let outcomes: u64 = summary["outcomes"]
        .as_object()
        .map_or(0, |o| o.values().map(n).sum());
    prop_assert_eq!(outcomes, flows.len() as u64);
    let problems = flows
        .iter()
        .filter(|f| {
            matches!(
                f["outcome"].as_str(),
                Some("unanswered" | "refused" | "unreachable" | "handshake_incomplete" | "reset")
            )
        })
        .count() as u64;
    prop_assert_eq!(n(&summary["problems"]), problems);
    // Every count in the summary is the sum of what the flow lines say.
    let count = |f: &dyn Fn(&Value) -> u64| flows.iter().map(|l| f(l)).sum::<u64>();
    let is = |v: &Value, s: &str| u64::from(v.as_str() == Some(s));
    if let Some(outcomes) = summary["outcomes"].as_object() {
        for (name, v) in outcomes {
            prop_assert_eq!(
                n(v),
                count(&|l| is(&l["outcome"], name)),
                "outcome {}",
                name
            );
        }
    }
    let torn_down = |l: &Value| {
        matches!(
            l["outcome"].as_str(),
            Some("reset" | "handshake_incomplete")
        )
    };
    for side in ["client", "server"] {
        let resets = count(&|l| u64::from(torn_down(l)) * is(&l["reset_by"], side));
        prop_assert_eq!(n(&summary["resets"][side]), resets, "resets by {}", side);
        let tw = count(&|l| is(&l["outcome"], "closed") * is(&l["closed_first_by"], side));
        prop_assert_eq!(n(&summary["time_wait"][side]), tw, "time_wait on {}", side);
    }
    for (key, field) in [("port_reused", "port_reused"), ("midstream", "midstream")] {
        let c = count(&|l| u64::from(l[field] == true));
        prop_assert_eq!(n(&summary[key]), c, "{}", key);
    }
    let retrans = |l: &Value, f: &str| n(&l[f]).saturating_sub(1);
    prop_assert_eq!(
        n(&summary["syn_retransmits"]),
        count(&|l| retrans(l, "syn_count"))
    );
    prop_assert_eq!(
        n(&summary["synack_retransmits"]),
        count(&|l| retrans(l, "synack_count"))
    );
    prop_assert_eq!(
        n(&summary["retransmits"]),
        count(&|l| n(&l["retransmits_c2s"]) + n(&l["retransmits_s2c"]))
    );
    prop_assert_eq!(
        n(&summary["zero_windows"]),
        count(&|l| n(&l["zero_windows_c2s"]) + n(&l["zero_windows_s2c"]))
    );
    prop_assert_eq!(
        n(&summary["handshake_rtt_us"]["count"]),
        count(&|l| u64::from(!l["handshake_rtt_us"].is_null()))
    );
    prop_assert_eq!(n(&summary["duration_us"]["count"]), flows.len() as u64);
    prop_assert_eq!(
        n(&summary["flows_evicted"]),
        count(&|l| is(&l["ended_by"], "evicted"))
    );
    prop_assert_eq!(a.status.code(), Some(if problems > 0 { 1 } else { 0 }));

    // Text with ladders and a -w file: the other reporters and the writer, same verdict.
    let dir = path.parent().expect("a directory");
    let w = dir.join("written.pcap");
    let t = replay(path, &["--ladder", "-w", w.to_str().expect("UTF-8 path")]);
    let stderr_t = String::from_utf8_lossy(&t.stderr);
    prop_assert!(
        !stderr_t.contains("panicked"),
        "the binary panicked: {stderr_t}"
    );
    prop_assert_eq!(
        t.status.code(),
        a.status.code(),
        "text --ladder -w exit: {}",
        stderr_t
    );
    prop_assert!(w.is_file(), "no -w file");

    // --only-problems prints only the problem flows, and the same summary.
    let c = replay(path, &["--json", "--only-problems"]);
    let lines_c = json_lines(&c.stdout)?;
    let flows_c = lines_c.iter().filter(|l| l["type"] == "flow").count() as u64;
    prop_assert_eq!(flows_c, problems, "--only-problems flow lines");
    prop_assert_eq!(lines_c.last(), Some(summary), "--only-problems summary");
    Ok(())
}

proptest! {
    // Each case runs the binary four times: keep the count small.
    #![proptest_config(config(48))]

    #[test]
    fn binary_on_generated_captures(cap in capture()) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("generated.pcap");
        let records = records_of(&cap);
        std::fs::write(&path, wire::pcap_file(cap.link, &records)).expect("pcap written");
        check_replay(&path, &records, cap.link)?;
    }
}

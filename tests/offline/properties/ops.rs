//! Generated traffic for the flow table: connections scripted through their lifecycles,
//! random noise between them, and clocks that mostly move forward.

use super::*;

/// The server endpoints: IPv4 and IPv6 loopback, and another address on the port.
pub(super) fn server(s: usize) -> Endpoint {
    match s % 3 {
        0 => Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT),
        1 => Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), PORT),
        _ => Endpoint::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), PORT),
    }
}

/// A small pool of clients (so 4-tuples collide and generations split), in the server's
/// address family; client 3 also uses the watched port, the role-confusion case.
pub(super) fn client(c: usize, s: usize) -> Endpoint {
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
pub(super) enum Op {
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
pub(super) struct Step {
    pub(super) dt: i64,
    pub(super) op: Op,
}

pub(super) fn seq_num() -> impl Strategy<Value = u32> {
    // Near the wrap-around point most of the time, so the serial-number comparisons wrap.
    prop_oneof![
        3 => (u32::MAX - 3000)..=u32::MAX,
        2 => 0u32..3000,
        1 => any::<u32>(),
    ]
}

pub(super) fn flags() -> impl Strategy<Value = u8> {
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

pub(super) fn random_op() -> impl Strategy<Value = Op> {
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
pub(super) enum Script {
    CloseClientFirst,
    CloseServerFirst,
    Refused,
    ResetAfterData,
    Unanswered,
    IcmpRefused,
}

/// A realistic connection (handshake, data both ways, an ending), with ISNs near the
/// wrap-around point, some packets dropped and some duplicated (retransmissions).
pub(super) fn scripted() -> impl Strategy<Value = Vec<Op>> {
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

pub(super) fn time_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        10 => 0i64..300_000,
        1 => -2_000_000i64..0,
        1 => 30_000_000i64..400_000_000,
    ]
}

/// Scripted connections and random noise, interleaved (each script keeps its order),
/// with a clock that mostly moves forward a little, sometimes back, sometimes far ahead.
pub(super) fn steps(max_noise: usize, max_scripts: usize) -> impl Strategy<Value = Vec<Step>> {
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

pub(super) fn flow_config() -> impl Strategy<Value = FlowConfig> {
    (
        prop_oneof![2 => 1usize..50, 1 => Just(FlowConfig::DEFAULT_MAX_FLOWS)],
        any::<bool>(),
        1u64..5_000_000,
        any::<bool>(),
    )
        .prop_map(
            |(max_flows, pending_notices, syn_timeout_us, settle_all)| FlowConfig {
                port: PORT,
                max_flows,
                syn_timeout_us,
                pending_notices,
                settle_all,
            },
        )
}

/// The segment an op stands for at time `ts` (`None` for a tick).
pub(super) fn segment_of(op: &Op, ts: Timestamp) -> Option<Segment> {
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
                encap: Encap::None,
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
            encap: Encap::None,
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
            encap: Encap::None,
            ts,
            src: client(c, s),
            dst: Endpoint::new(server(s).addr, 22),
            kind: SegmentKind::SynElsewhere,
        }),
        Op::Tick => None,
    }
}

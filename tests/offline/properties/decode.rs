//! Decoding generated packets: never a panic, and a well-formed packet decodes to exactly
//! the fields it was built from.

use super::*;

pub(super) const DECODED_LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::Null,
    LinkType::Loop,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Raw,
];

pub(super) fn any_link() -> impl Strategy<Value = LinkType> {
    prop_oneof![
        6 => proptest::sample::select(DECODED_LINKS.to_vec()),
        1 => any::<i32>().prop_map(LinkType::Unsupported),
    ]
}

pub(super) fn decoded_link() -> impl Strategy<Value = LinkType> {
    proptest::sample::select(DECODED_LINKS.to_vec())
}

pub(super) fn some_port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(PORT), Just(40000u16), any::<u16>()]
}

pub(super) fn some_addr(v6: bool) -> BoxedStrategy<IpAddr> {
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
pub(super) fn check_decoded(
    res: &Result<Segment, portsniff::decode::SkipReason>,
    port: u16,
) -> bool {
    match res {
        Ok(s) => match s.kind {
            SegmentKind::Tcp(_) | SegmentKind::Icmp(_) => s.src.port == port || s.dst.port == port,
            SegmentKind::SynElsewhere => s.src.port != port && s.dst.port != port,
        },
        Err(_) => true,
    }
}

/// A TCP header with arbitrary fields (any data offset, any option bytes).
pub(super) fn raw_tcp_header() -> impl Strategy<Value = Vec<u8>> {
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
pub(super) fn ip_around(l4: Vec<u8>, proto: u8) -> impl Strategy<Value = Vec<u8>> {
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
pub(super) fn plausible_ip() -> impl Strategy<Value = Vec<u8>> {
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
pub(super) fn handshake_options() -> impl Strategy<Value = HandshakeOptions> {
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

    /// Any packet inside a tunnel decodes exactly as it does bare (the same segment or
    /// the same skip reason), named by the tunnel; and a tunnel header of any bytes, cut
    /// anywhere, is a segment or a skip reason, never a panic.
    #[test]
    fn a_tunnelled_packet_decodes_as_itself_named_by_its_tunnel(
        ip in plausible_ip(),
        vni in 0u32..(1 << 24),
        kind in 0u8..3,
        junk in proptest::collection::vec(any::<u8>(), 0..24),
        cut in any::<prop::sample::Index>(),
    ) {
        let inner = wire::frame(LinkType::Ethernet, &ip, false);
        let d = Decoder::new(LinkType::Ethernet, PORT);
        let bare = d.decode(Timestamp(1), &inner);
        let (outer, encap) = match kind {
            0 => (wire::vxlan(vni, &inner), Encap::Vxlan(vni)),
            1 => (wire::geneve(vni, &inner), Encap::Geneve(vni)),
            _ => (wire::gre_key(vni, &inner), Encap::Gre(Some(vni))),
        };
        let got = d.decode(Timestamp(1), &outer);
        prop_assert_eq!(got, bare.map(|s| Segment { encap, ..s }));

        // Arbitrary bytes where the tunnel header and what follows should be.
        let mut broken = outer[..outer.len() - inner.len()].to_vec();
        let header_at = broken.len() - 8;
        broken.truncate(header_at);
        broken.extend_from_slice(&junk);
        broken.extend_from_slice(&inner);
        broken.truncate(cut.index(broken.len() + 1));
        let res = d.decode(Timestamp(1), &broken);
        prop_assert!(check_decoded(&res, PORT), "{res:?}");
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
            // The frame's 802.1Q tag (VLAN 7) is part of the connection's identity.
            encap: if vlan && link == LinkType::Ethernet { Encap::Vlan(7) } else { Encap::None },
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

//! Hand-built packets for every link type and for the malformed cases the kernel never
//! produces on loopback.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const PORT: u16 = 61999;
const TS: Timestamp = Timestamp(1_700_000_000_000_000);

/// A TCP header (+ payload) with the given options (already padded to 4 bytes).
fn tcp(sport: u16, dport: u16, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&2000u32.to_be_bytes());
    t.push((((20 + opts.len()) / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&512u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum (never checked), urgent pointer
    t.extend_from_slice(opts);
    t.extend_from_slice(payload);
    t
}

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(payload);
    ip
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[next, 64]);
    ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    ip.extend_from_slice(payload);
    ip
}

fn ethernet(ethertype: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

const LO: [u8; 4] = [127, 0, 0, 1];
/// MSS 65495, SACK permitted, timestamps, NOP, window scale 7: Linux's SYN options.
const LINUX_SYN_OPTS: [u8; 20] = [
    2, 4, 0xff, 0xd7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

fn syn_v4() -> Vec<u8> {
    ipv4(
        6,
        LO,
        LO,
        &tcp(40000, PORT, TcpFlags::SYN, &LINUX_SYN_OPTS, &[]),
    )
}

fn tcp_of(seg: Segment) -> TcpSegment {
    match seg.kind {
        SegmentKind::Tcp(t) => t,
        other => panic!("expected TCP, got {other:?}"),
    }
}

#[test]
fn ethernet_syn_yields_ports_flags_and_handshake_options() {
    let d = Decoder::new(LinkType::Ethernet, PORT);
    let seg = d.decode(TS, &ethernet(0x0800, &syn_v4())).expect("decodes");
    assert_eq!(seg.src, Endpoint::new(Ipv4Addr::LOCALHOST.into(), 40000));
    assert_eq!(seg.dst.port, PORT);
    let t = tcp_of(seg);
    assert!(t.flags.syn() && !t.flags.ack());
    assert_eq!(
        (t.seq, t.ack, t.window, t.payload_len),
        (1000, 2000, 512, 0)
    );
    assert_eq!(
        t.options,
        HandshakeOptions {
            mss: Some(65495),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: true
        }
    );
}

#[test]
fn vlan_tagged_ethernet_is_unwrapped() {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
    f.extend_from_slice(&syn_v4());
    let seg = Decoder::new(LinkType::Ethernet, PORT)
        .decode(TS, &f)
        .expect("decodes");
    assert_eq!(seg.encap, Encap::Vlan(5));
}

#[test]
fn null_loopback_accepts_either_byte_order_and_bsd_ipv6_families() {
    let d = Decoder::new(LinkType::Null, PORT);
    for head in [[2u8, 0, 0, 0], [0, 0, 0, 2]] {
        let mut f = head.to_vec();
        f.extend_from_slice(&syn_v4());
        assert!(d.decode(TS, &f).is_ok(), "{head:?}");
    }
    let v6 = ipv6(6, &tcp(40000, PORT, TcpFlags::SYN, &[], &[]));
    for family in [10u32, 24, 28, 30] {
        let mut f = family.to_le_bytes().to_vec();
        f.extend_from_slice(&v6);
        let seg = d.decode(TS, &f).expect("IPv6 over NULL");
        assert_eq!(seg.src.addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
    let mut bogus = 99u32.to_le_bytes().to_vec();
    bogus.extend_from_slice(&syn_v4());
    assert_eq!(d.decode(TS, &bogus), Err(SkipReason::NotIp));
}

#[test]
fn loop_link_type_reads_the_family_in_network_order() {
    let mut f = vec![0, 0, 0, 2];
    f.extend_from_slice(&syn_v4());
    assert!(Decoder::new(LinkType::Loop, PORT).decode(TS, &f).is_ok());
}

#[test]
fn linux_cooked_v1_and_v2_find_the_protocol_field() {
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&[0x08, 0x00]);
    sll.extend_from_slice(&syn_v4());
    assert!(Decoder::new(LinkType::LinuxSll, PORT)
        .decode(TS, &sll)
        .is_ok());

    let mut sll2 = vec![0x08, 0x00];
    sll2.extend_from_slice(&[0u8; 18]);
    sll2.extend_from_slice(&syn_v4());
    assert!(Decoder::new(LinkType::LinuxSll2, PORT)
        .decode(TS, &sll2)
        .is_ok());
}

#[test]
fn raw_ip_link_type_is_the_ip_packet_itself() {
    assert!(Decoder::new(LinkType::Raw, PORT)
        .decode(TS, &syn_v4())
        .is_ok());
}

#[test]
fn unknown_link_type_is_skipped_with_its_reason() {
    let d = Decoder::new(LinkType::from_linktype(147), PORT);
    assert_eq!(
        d.decode(TS, &syn_v4()),
        Err(SkipReason::UnsupportedLinkType)
    );
}

#[test]
fn arp_is_not_ip() {
    let f = ethernet(0x0806, &[0u8; 28]);
    assert_eq!(
        Decoder::new(LinkType::Ethernet, PORT).decode(TS, &f),
        Err(SkipReason::NotIp)
    );
}

#[test]
fn ipv6_extension_headers_are_walked_to_tcp() {
    // Hop-by-hop (0) then destination options (60), each 8 bytes, then TCP.
    let t = tcp(40000, PORT, TcpFlags::ACK, &[], b"hello");
    let mut exts = vec![60, 0, 1, 4, 0, 0, 0, 0];
    exts.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    exts.extend_from_slice(&t);
    let seg = decode_ip(TS, &ipv6(0, &exts), PORT).expect("walks the chain");
    assert_eq!(tcp_of(seg).payload_len, 5);
}

#[test]
fn payload_length_comes_from_the_ip_header_when_the_snaplen_cut_it() {
    let full = ipv4(
        6,
        LO,
        LO,
        &tcp(40000, PORT, TcpFlags::ACK, &[], &[7u8; 1000]),
    );
    let cut = &full[..60];
    let t = tcp_of(decode_ip(TS, cut, PORT).expect("fixed header is enough"));
    assert_eq!(t.payload_len, 1000);
}

#[test]
fn syn_cut_inside_its_options_still_decodes_without_them() {
    let full = syn_v4();
    let t = tcp_of(decode_ip(TS, &full[..44], PORT).expect("decodes"));
    assert!(t.flags.syn());
    assert_eq!(t.options.mss, Some(65495));
    assert_eq!(t.options.window_scale, None, "cut off before it");
}

#[test]
fn tcp_header_cut_below_20_bytes_is_truncated() {
    let full = syn_v4();
    assert_eq!(decode_ip(TS, &full[..30], PORT), Err(SkipReason::Truncated));
    assert_eq!(decode_ip(TS, &full[..10], PORT), Err(SkipReason::Truncated));
    assert_eq!(decode_ip(TS, &[], PORT), Err(SkipReason::Truncated));
}

#[test]
fn tcp_data_offset_below_five_is_a_bad_header() {
    let mut t = tcp(40000, PORT, TcpFlags::ACK, &[], &[]);
    t[12] = 4 << 4;
    assert_eq!(
        decode_ip(TS, &ipv4(6, LO, LO, &t), PORT),
        Err(SkipReason::BadTcpHeader)
    );
}

#[test]
fn ipv4_ihl_below_five_is_a_bad_header() {
    let mut ip = syn_v4();
    ip[0] = 0x44;
    assert_eq!(decode_ip(TS, &ip, PORT), Err(SkipReason::BadIpHeader));
}

#[test]
fn ipv4_with_options_finds_tcp_after_them() {
    let t = tcp(40000, PORT, TcpFlags::SYN, &[], &[]);
    let mut ip = vec![0x46, 0];
    ip.extend_from_slice(&((24 + t.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&LO);
    ip.extend_from_slice(&LO);
    ip.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    ip.extend_from_slice(&t);
    assert!(decode_ip(TS, &ip, PORT).is_ok());
}

#[test]
fn ip_fragments_are_skipped() {
    let mut ip = syn_v4();
    ip[6] = 0x20; // more fragments
    assert_eq!(decode_ip(TS, &ip, PORT), Err(SkipReason::Fragment));
}

#[test]
fn other_ports_and_protocols_are_skipped() {
    let other = ipv4(6, LO, LO, &tcp(40000, 22, TcpFlags::ACK, &[], &[]));
    assert_eq!(decode_ip(TS, &other, PORT), Err(SkipReason::OtherPort));
    let udp = ipv4(17, LO, LO, &[0u8; 8]);
    assert_eq!(decode_ip(TS, &udp, PORT), Err(SkipReason::NotTcp));
}

#[test]
fn icmp_port_unreachable_is_oriented_like_the_syn_it_quotes() {
    let quoted = syn_v4();
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..28]); // IP header + first 8 bytes of TCP
    let seg = decode_ip(TS, &ipv4(1, [127, 0, 0, 9], LO, &icmp), PORT).expect("decodes");
    assert_eq!(seg.src.port, 40000);
    assert_eq!(seg.dst.port, PORT);
    match seg.kind {
        SegmentKind::Icmp(e) => {
            assert_eq!(e.kind, Unreachable::Port);
            assert_eq!(e.quoted_seq, 1000);
            assert_eq!(e.reporter, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
        }
        other => panic!("expected ICMP, got {other:?}"),
    }
}

#[test]
fn icmpv6_admin_prohibited_is_decoded() {
    let quoted = ipv6(6, &tcp(40000, PORT, TcpFlags::SYN, &[], &[]));
    let mut icmp = vec![1, 1, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..48]);
    let seg = decode_ip(TS, &ipv6(58, &icmp), PORT).expect("decodes");
    assert!(matches!(
        seg.kind,
        SegmentKind::Icmp(IcmpError {
            kind: Unreachable::AdminProhibited,
            ..
        })
    ));
}

#[test]
fn icmp_quoting_a_truncated_tcp_header_is_skipped() {
    let quoted = syn_v4();
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..24]); // only 4 bytes of TCP
    assert_eq!(
        decode_ip(TS, &ipv4(1, LO, LO, &icmp), PORT),
        Err(SkipReason::Truncated)
    );
}

#[test]
fn icmp_echo_is_not_about_tcp() {
    let icmp = [8u8, 0, 0, 0, 0, 1, 0, 1];
    assert_eq!(
        decode_ip(TS, &ipv4(1, LO, LO, &icmp), PORT),
        Err(SkipReason::NotTcp)
    );
}

#[test]
fn unknown_tcp_options_do_not_hide_the_ones_after_them() {
    // TFO cookie option (34, len 2) before MSS.
    let opts = [34, 2, 2, 4, 0x05, 0xb4, 0, 0];
    let ip = ipv4(6, LO, LO, &tcp(40000, PORT, TcpFlags::SYN, &opts, &[]));
    assert_eq!(
        tcp_of(decode_ip(TS, &ip, PORT).unwrap()).options.mss,
        Some(1460)
    );
}

#[test]
fn malformed_option_length_stops_option_parsing_quietly() {
    let opts = [2, 0, 0, 0];
    let ip = ipv4(6, LO, LO, &tcp(40000, PORT, TcpFlags::SYN, &opts, &[]));
    assert_eq!(
        tcp_of(decode_ip(TS, &ip, PORT).unwrap()).options,
        HandshakeOptions::default()
    );
}

#[test]
fn timestamps_clamp_negative_and_compute_gaps_without_underflow() {
    assert_eq!(Timestamp::from_timeval(-5, 3), Timestamp(3));
    assert_eq!(Timestamp(5).micros_since(Timestamp(10)), 0);
}

#[test]
fn endpoints_print_like_ss_does() {
    let v6 = Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), PORT);
    assert_eq!(v6.to_string(), "[::1]:61999");
    assert_eq!(
        Endpoint::new(Ipv4Addr::LOCALHOST.into(), 80).to_string(),
        "127.0.0.1:80"
    );
}

#[test]
fn syn_to_another_port_is_kept_to_say_where_clients_connect_instead() {
    let syn = ipv4(6, LO, LO, &tcp(40000, 8080, TcpFlags::SYN, &[], &[]));
    let seg = decode_ip(TS, &syn, PORT).expect("kept");
    assert_eq!(seg.kind, SegmentKind::SynElsewhere);
    assert_eq!(seg.dst.port, 8080);
    let synack = ipv4(
        6,
        LO,
        LO,
        &tcp(8080, 40000, TcpFlags::SYN | TcpFlags::ACK, &[], &[]),
    );
    assert_eq!(decode_ip(TS, &synack, PORT), Err(SkipReason::OtherPort));
}

pub(crate) mod tunnels {
    //! One scenario per encapsulation, and the outer headers that stay undecodable.

    use super::*;

    /// A UDP datagram from port 50000 to `dport` (checksum 0): the capture filter's
    /// tests build their tunnels with it too.
    pub(crate) fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = 50000u16.to_be_bytes().to_vec();
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    /// An outer Ethernet + IPv4 frame between two underlay hosts carrying `proto`.
    fn underlay(proto: u8, payload: &[u8]) -> Vec<u8> {
        ethernet(
            0x0800,
            &ipv4(proto, [192, 0, 2, 1], [192, 0, 2, 2], payload),
        )
    }

    fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut h = vec![0x08, 0, 0, 0];
        h.extend_from_slice(&(vni << 8).to_be_bytes());
        h.extend_from_slice(inner);
        underlay(17, &udp(4789, &h))
    }

    fn decode(frame: &[u8]) -> Result<Segment, SkipReason> {
        Decoder::new(LinkType::Ethernet, PORT).decode(TS, frame)
    }

    fn inner_syn() -> Vec<u8> {
        ethernet(0x0800, &syn_v4())
    }

    #[test]
    fn vxlan_yields_the_inner_connection_tagged_with_its_vni() {
        let seg = decode(&vxlan(42, &inner_syn())).expect("decodes");
        assert_eq!(seg.src, Endpoint::new(Ipv4Addr::LOCALHOST.into(), 40000));
        assert_eq!(seg.dst.port, PORT);
        assert!(tcp_of(seg).flags.syn());
        assert_eq!(seg.encap, Encap::Vxlan(42));
        assert_eq!(seg.encap.to_string(), "vxlan vni 42");
    }

    #[test]
    fn vxlan_without_its_vni_flag_is_a_bad_tunnel_header() {
        let mut f = vxlan(42, &inner_syn());
        f[14 + 20 + 8] = 0;
        assert_eq!(decode(&f), Err(SkipReason::BadTunnelHeader));
    }

    #[test]
    fn vxlan_cut_inside_its_header_or_inner_frame_is_truncated() {
        let f = vxlan(42, &inner_syn());
        assert_eq!(decode(&f[..14 + 20 + 8 + 5]), Err(SkipReason::Truncated));
        assert_eq!(
            decode(&f[..14 + 20 + 8 + 8 + 10]),
            Err(SkipReason::Truncated)
        );
    }

    #[test]
    fn vxlan_carrying_another_port_is_other_traffic() {
        let other = ethernet(
            0x0800,
            &ipv4(6, LO, LO, &tcp(1, 2, TcpFlags::ACK, &[], &[])),
        );
        assert_eq!(decode(&vxlan(42, &other)), Err(SkipReason::OtherPort));
    }

    #[test]
    fn udp_to_other_ports_is_not_a_tunnel() {
        let f = underlay(17, &udp(53, &[0x08, 0, 0, 0, 0, 0, 42, 0]));
        assert_eq!(decode(&f), Err(SkipReason::NotTcp));
    }

    /// `inner` in a VXLAN header with `flags` and reserved bytes `r1` (bytes 1–3) and
    /// `r7` (byte 7), to UDP `dport`.
    fn vxlan_to(dport: u16, flags: u8, r1: [u8; 3], r7: u8, inner: &[u8]) -> Vec<u8> {
        let mut h = vec![flags];
        h.extend_from_slice(&r1);
        h.extend_from_slice(&[0, 0, 42, r7]);
        h.extend_from_slice(inner);
        underlay(17, &udp(dport, &h))
    }

    #[test]
    fn vxlan_on_linuxs_default_port_8472_is_opened_without_being_asked() {
        let seg = decode(&vxlan_to(8472, 0x08, [0; 3], 0, &inner_syn())).expect("decodes");
        assert_eq!(seg.encap, Encap::Vxlan(42));
    }

    /// Another protocol's datagram to a VXLAN port: "hello" starts with 0x68, whose
    /// 0x08 bit looks like VXLAN's I flag; the other bits say it is not VXLAN.
    #[test]
    fn another_protocol_on_a_vxlan_port_is_a_bad_tunnel_header_not_a_connection() {
        let f = underlay(17, &udp(8472, b"hello, not vxlan at all"));
        assert_eq!(decode(&f), Err(SkipReason::BadTunnelHeader));
        for (flags, r1, r7) in [(0x0c, [0; 3], 0), (0x08, [0, 1, 0], 0), (0x08, [0; 3], 1)] {
            let f = vxlan_to(8472, flags, r1, r7, &inner_syn());
            assert_eq!(
                decode(&f),
                Err(SkipReason::BadTunnelHeader),
                "{flags:#x} {r1:?} {r7}"
            );
        }
    }

    /// Linux's `gbp` extension: the G bit, the D and A bits, a 16-bit policy id.
    #[test]
    fn vxlan_with_a_group_policy_is_still_vxlan() {
        let f = vxlan_to(4789, 0x88, [0x48, 0x12, 0x34], 0, &inner_syn());
        assert_eq!(decode(&f).map(|s| s.encap), Ok(Encap::Vxlan(42)));
    }

    #[test]
    fn named_ports_are_opened_as_the_tunnel_the_user_said() {
        let ports = TunnelPorts::with(&[14789], &[16081]).unwrap();
        let d = Decoder::new(LinkType::Ethernet, PORT).with_tunnel_ports(ports);
        let vx = vxlan_to(14789, 0x08, [0; 3], 0, &inner_syn());
        assert_eq!(d.decode(TS, &vx).map(|s| s.encap), Ok(Encap::Vxlan(42)));
        assert_eq!(
            decode(&vx),
            Err(SkipReason::NotTcp),
            "not without the option"
        );
        let mut gn = geneve(0, 0x6558, &[], &inner_syn());
        gn[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&16081u16.to_be_bytes());
        assert_eq!(d.decode(TS, &gn).map(|s| s.encap), Ok(Encap::Geneve(7)));
        assert_eq!(
            d.decode(TS, &vxlan_to(8472, 0x08, [0; 3], 0, &inner_syn()))
                .map(|s| s.encap),
            Ok(Encap::Vxlan(42)),
            "the defaults stay"
        );
    }

    #[test]
    fn a_default_port_named_for_the_other_tunnel_is_opened_as_that_one() {
        let ports = TunnelPorts::with(&[], &[4789]).unwrap();
        assert_eq!(ports.udp(4789), Some(encap::UdpTunnel::Geneve));
        assert_eq!(ports.udp(8472), Some(encap::UdpTunnel::Vxlan));
        assert!(TunnelPorts::with(&[5000], &[5000]).is_err());
        assert!(TunnelPorts::with(&[1, 2, 3, 4, 5, 6, 7, 8, 9], &[]).is_err());
        let eight = TunnelPorts::with(&[1, 2, 3, 4, 5, 6, 7, 8], &[9]).unwrap();
        assert_eq!(eight.all().count(), 2 + 8 + 2);
    }

    fn geneve(first: u8, protocol: u16, options: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut h = vec![first, 0];
        h.extend_from_slice(&protocol.to_be_bytes());
        h.extend_from_slice(&[0, 0, 7, 0]);
        h.extend_from_slice(options);
        h.extend_from_slice(inner);
        underlay(17, &udp(6081, &h))
    }

    #[test]
    fn geneve_skips_its_options_to_the_inner_frame() {
        let f = geneve(2, 0x6558, &[0xab; 8], &inner_syn());
        let seg = decode(&f).expect("decodes");
        assert_eq!(seg.encap, Encap::Geneve(7));
        assert_eq!(seg.encap.to_string(), "geneve vni 7");
    }

    #[test]
    fn geneve_may_carry_ip_directly() {
        let seg = decode(&geneve(0, 0x0800, &[], &syn_v4())).expect("decodes");
        assert_eq!(seg.encap, Encap::Geneve(7));
    }

    #[test]
    fn geneve_of_an_unknown_version_or_protocol_is_counted_by_reason() {
        let bad = geneve(0x40, 0x6558, &[], &inner_syn());
        assert_eq!(decode(&bad), Err(SkipReason::BadTunnelHeader));
        let nsh = geneve(0, 0x894f, &[], &inner_syn());
        assert_eq!(decode(&nsh), Err(SkipReason::UnsupportedTunnel));
        let cut = geneve(0x3f, 0x6558, &[], &[]);
        assert_eq!(decode(&cut), Err(SkipReason::Truncated));
    }

    fn gre(flags: u8, protocol: u16, fields: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut h = vec![flags, 0];
        h.extend_from_slice(&protocol.to_be_bytes());
        h.extend_from_slice(fields);
        h.extend_from_slice(inner);
        underlay(47, &h)
    }

    #[test]
    fn gre_carrying_ip_is_tagged_gre() {
        let seg = decode(&gre(0, 0x0800, &[], &syn_v4())).expect("decodes");
        assert_eq!(seg.encap, Encap::Gre(None));
        assert_eq!(seg.encap.to_string(), "gre");
    }

    #[test]
    fn gretap_with_checksum_key_and_sequence_reads_the_key() {
        let fields = [0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1];
        let seg = decode(&gre(0xb0, 0x6558, &fields, &inner_syn())).expect("decodes");
        assert_eq!(seg.encap, Encap::Gre(Some(9)));
        assert_eq!(seg.encap.to_string(), "gre key 9");
    }

    #[test]
    fn gre_reserved_bits_version_one_and_a_cut_key_are_counted_by_reason() {
        assert_eq!(
            decode(&gre(0x40, 0x0800, &[], &syn_v4())),
            Err(SkipReason::BadTunnelHeader)
        );
        let mut pptp = gre(0, 0x880b, &[], &syn_v4());
        pptp[14 + 20 + 1] = 1;
        assert_eq!(decode(&pptp), Err(SkipReason::UnsupportedTunnel));
        assert_eq!(
            decode(&gre(0x20, 0x0800, &[0, 0], &[])),
            Err(SkipReason::Truncated)
        );
    }

    #[test]
    fn erspan_types_one_two_and_three_open_the_mirrored_frame() {
        let type1 = decode(&gre(0, 0x88be, &[], &inner_syn())).expect("type I");
        assert_eq!(type1.encap, Encap::Erspan(0));
        let mut ii = vec![0x10, 0, 0x03, 0x05, 0, 0, 0, 0];
        ii.extend_from_slice(&inner_syn());
        let type2 = decode(&gre(0x10, 0x88be, &[0, 0, 0, 1], &ii)).expect("type II");
        assert_eq!(type2.encap, Encap::Erspan(0x305));
        assert_eq!(type2.encap.to_string(), "erspan session 773");
        let mut iii = vec![0x20, 0, 0, 0x06, 0, 0, 0, 0, 0, 0, 0, 0x01];
        iii.extend_from_slice(&[0; 8]); // the platform sub-header its O flag announces
        iii.extend_from_slice(&inner_syn());
        let type3 = decode(&gre(0x10, 0x22eb, &[0, 0, 0, 1], &iii)).expect("type III");
        assert_eq!(type3.encap, Encap::Erspan(6));
    }

    #[test]
    fn erspan_of_the_wrong_version_is_a_bad_tunnel_header() {
        let mut ii = vec![0x20, 0, 0, 1, 0, 0, 0, 0];
        ii.extend_from_slice(&inner_syn());
        let f = gre(0x10, 0x88be, &[0, 0, 0, 1], &ii);
        assert_eq!(decode(&f), Err(SkipReason::BadTunnelHeader));
    }

    fn mpls(labels: &[u32], inner: &[u8]) -> Vec<u8> {
        let mut stack = Vec::new();
        for (i, label) in labels.iter().enumerate() {
            let bos = if i + 1 == labels.len() { 0x100 } else { 0 };
            stack.extend_from_slice(&((label << 12) | bos | 64).to_be_bytes());
        }
        stack.extend_from_slice(inner);
        ethernet(0x8847, &stack)
    }

    #[test]
    fn mpls_stack_is_walked_to_ip_and_named_by_its_bottom_label() {
        let seg = decode(&mpls(&[100, 2001], &syn_v4())).expect("decodes");
        assert_eq!(seg.encap, Encap::Mpls(2001));
        assert_eq!(seg.encap.to_string(), "mpls label 2001");
    }

    #[test]
    fn mpls_pseudowire_or_stack_without_bottom_is_counted_by_reason() {
        let pw = mpls(&[100], &[0, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(decode(&pw), Err(SkipReason::UnsupportedTunnel));
        let mut endless = ethernet(0x8847, &[0, 0, 0, 64]);
        endless.extend_from_slice(&[0, 0, 0, 64]);
        assert_eq!(decode(&endless), Err(SkipReason::Truncated));
    }

    fn pppoe(ver_type: u8, ppp_protocol: u16, inner: &[u8]) -> Vec<u8> {
        let mut h = vec![ver_type, 0, 0x12, 0x34];
        h.extend_from_slice(&((2 + inner.len()) as u16).to_be_bytes());
        h.extend_from_slice(&ppp_protocol.to_be_bytes());
        h.extend_from_slice(inner);
        ethernet(0x8864, &h)
    }

    #[test]
    fn pppoe_session_carrying_ipv4_is_tagged_with_its_session() {
        let seg = decode(&pppoe(0x11, 0x0021, &syn_v4())).expect("decodes");
        assert_eq!(seg.encap, Encap::Pppoe(0x1234));
        assert_eq!(seg.encap.to_string(), "pppoe session 4660");
    }

    #[test]
    fn pppoe_link_control_is_not_ip_and_a_bad_version_is_a_bad_header() {
        assert_eq!(
            decode(&pppoe(0x11, 0xc021, &[1, 1, 0, 4])),
            Err(SkipReason::NotIp)
        );
        assert_eq!(
            decode(&pppoe(0x21, 0x0021, &syn_v4())),
            Err(SkipReason::BadTunnelHeader)
        );
    }

    #[test]
    fn qinq_double_tag_names_both_vlans() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00]);
        f.extend_from_slice(&syn_v4());
        let seg = decode(&f).expect("decodes");
        assert_eq!(seg.encap, Encap::QinQ(100, 200));
        assert_eq!(seg.encap.to_string(), "qinq 100.200");
    }

    #[test]
    fn nested_tunnels_are_named_by_the_innermost() {
        let inner_vxlan = vxlan(42, &inner_syn());
        let seg = decode(&gre(0, 0x6558, &[], &inner_vxlan)).expect("decodes");
        assert_eq!(seg.encap, Encap::Vxlan(42));
    }

    #[test]
    fn tunnels_nested_past_the_bound_are_unsupported() {
        let mut f = inner_syn();
        for _ in 0..=MAX_TUNNELS {
            f = gre(0, 0x6558, &[], &f);
        }
        assert_eq!(decode(&f), Err(SkipReason::UnsupportedTunnel));
    }
}

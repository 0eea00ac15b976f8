//! The kernel filter compiled by libpcap for a link type (`pcap_open_dead`) and run on
//! hand-built frames (`pcap_offline_filter`): the same program the kernel gets, save the
//! cooked-header loads libpcap maps to the kernel's ancillary fields.

use super::*;
use crate::capture::filter::{combine, UserFilter};
use crate::decode::tests::tunnels::udp;
use pcap::Linktype;

const PORT: u16 = 61999;

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// IPv4 192.0.2.1 → 192.0.2.2 carrying `l4` as `proto`, with `options` words of IP
/// options (so the IHL is read, not assumed).
fn ipv4(proto: u8, options: usize, l4: &[u8]) -> Vec<u8> {
    let ihl = 5 + options;
    let mut ip = vec![0x40 | ihl as u8, 0];
    ip.extend_from_slice(&((ihl * 4 + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    ip.extend_from_slice(&vec![1u8; options * 4]); // NOPs
    ip.extend_from_slice(l4);
    ip
}

fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[next, 64]);
    ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(8));
    ip.extend_from_slice(l4);
    ip
}

fn mpls(labels: usize, ip: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 1..=labels {
        let bottom = if i == labels { 0x100 } else { 0 };
        m.extend_from_slice(&((1000 + i as u32) << 12 | bottom | 64).to_be_bytes());
    }
    m.extend_from_slice(ip);
    m
}

fn pppoe(protocol: u16, ip: &[u8]) -> Vec<u8> {
    let mut p = vec![0x11, 0, 0x12, 0x34];
    p.extend_from_slice(&((2 + ip.len()) as u16).to_be_bytes());
    p.extend_from_slice(&protocol.to_be_bytes());
    p.extend_from_slice(ip);
    p
}

/// `payload` behind the link header of `link`, announced by `ethertype`.
fn framed(link: LinkType, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = match link {
        LinkType::Ethernet => {
            let mut h = vec![2u8; 12];
            h.extend_from_slice(&ethertype.to_be_bytes());
            h
        }
        LinkType::LinuxSll => {
            let mut h = vec![0, 0, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0];
            h.extend_from_slice(&ethertype.to_be_bytes());
            h
        }
        LinkType::LinuxSll2 => {
            let mut h = ethertype.to_be_bytes().to_vec();
            h.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0]);
            h
        }
        other => panic!("no frames for {other:?}"),
    };
    f.extend_from_slice(payload);
    f
}

fn own(link: LinkType, tunnels: &TunnelPorts, user: Option<&str>) -> UserFilter {
    let expr = combine(&bpf_filter(PORT, None, tunnels, link), user);
    UserFilter::for_link(&expr, dlt(link)).unwrap_or_else(|e| panic!("{link:?}: {e}\n{expr}"))
}

/// libpcap's DLT_ for a link type: LINKTYPE_RAW is DLT_RAW, 12 on Linux.
fn dlt(link: LinkType) -> Linktype {
    match link {
        LinkType::Raw => Linktype(12),
        other => Linktype(other.linktype()),
    }
}

const COOKED_AND_ETHERNET: [LinkType; 3] =
    [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2];

#[test]
fn tcp_to_the_port_inside_mpls_stacks_and_pppoe_sessions_passes_on_ethernet_and_any() {
    for link in COOKED_AND_ETHERNET {
        let f = own(link, &TunnelPorts::default(), None);
        let syn4 = ipv4(6, 0, &tcp(40000, PORT, SYN));
        let answer4 = ipv4(6, 2, &tcp(PORT, 40000, ACK));
        let syn6 = ipv6(6, &tcp(40000, PORT, SYN));
        for labels in 1..=MAX_MPLS_LABELS {
            for ip in [&syn4, &answer4, &syn6] {
                let frame = framed(link, 0x8847, &mpls(labels, ip));
                assert!(f.matches(&frame), "{link:?}: {labels} labels");
            }
        }
        assert!(
            f.matches(&framed(link, 0x8848, &mpls(2, &syn4))),
            "{link:?}: multicast MPLS"
        );
        assert!(
            f.matches(&framed(link, 0x8864, &pppoe(0x0021, &answer4))),
            "{link:?}"
        );
        assert!(
            f.matches(&framed(link, 0x8864, &pppoe(0x0057, &syn6))),
            "{link:?}"
        );
        let unreachable = ipv4(1, 0, &[3, 3, 0, 0, 0, 0, 0, 0]);
        assert!(
            f.matches(&framed(link, 0x8847, &mpls(2, &unreachable))),
            "{link:?}"
        );
    }
}

#[test]
fn other_ports_and_link_control_inside_mpls_and_pppoe_stay_in_the_kernel() {
    for link in COOKED_AND_ETHERNET {
        let f = own(link, &TunnelPorts::default(), None);
        let other = ipv4(6, 0, &tcp(40000, 443, ACK));
        assert!(
            !f.matches(&framed(link, 0x8847, &mpls(2, &other))),
            "{link:?}"
        );
        assert!(
            !f.matches(&framed(link, 0x8864, &pppoe(0x0021, &other))),
            "{link:?}"
        );
        let lcp = pppoe(0xc021, &[1, 1, 0, 4]);
        assert!(!f.matches(&framed(link, 0x8864, &lcp)), "{link:?}");
        // Deeper than the filter looks.
        let deep = mpls(MAX_MPLS_LABELS + 1, &ipv4(6, 0, &tcp(40000, PORT, SYN)));
        assert!(!f.matches(&framed(link, 0x8847, &deep)), "{link:?}");
    }
}

#[test]
fn plain_tcp_and_udp_tunnels_still_pass_beside_the_mpls_and_pppoe_clauses() {
    let tunnels = TunnelPorts::with(&[14789], &[16081]).unwrap();
    for link in COOKED_AND_ETHERNET {
        let f = own(link, &tunnels, None);
        let pass = |ip: &[u8]| f.matches(&framed(link, 0x0800, ip));
        assert!(pass(&ipv4(6, 0, &tcp(40000, PORT, ACK))), "{link:?}");
        assert!(
            pass(&ipv4(6, 0, &tcp(40000, 22, SYN))),
            "{link:?}: a SYN elsewhere"
        );
        assert!(!pass(&ipv4(6, 0, &tcp(40000, 22, ACK))), "{link:?}");
        for port in [4789, 8472, 14789, 6081, 16081] {
            assert!(
                pass(&ipv4(17, 0, &udp(port, &[0; 16]))),
                "{link:?}: UDP {port}"
            );
        }
        assert!(!pass(&ipv4(17, 0, &udp(53, &[0; 16]))), "{link:?}: DNS");
        assert!(pass(&ipv4(47, 0, &[0, 0, 0x65, 0x58])), "{link:?}: GRE");
    }
}

/// The clauses read fixed offsets instead of shifting libpcap's: the user's expression
/// ANDed after them reads the outer headers of every packet, as it does on a file.
#[test]
fn the_users_expression_after_them_reads_the_right_bytes() {
    let f = own(
        LinkType::Ethernet,
        &TunnelPorts::default(),
        Some("host 192.0.2.1"),
    );
    let plain = framed(
        LinkType::Ethernet,
        0x0800,
        &ipv4(6, 0, &tcp(40000, PORT, ACK)),
    );
    assert!(f.matches(&plain));
    let mut elsewhere = plain.clone();
    elsewhere[14 + 12] = 198; // source 198.0.2.1
    assert!(!f.matches(&elsewhere));
    let inside = framed(
        LinkType::Ethernet,
        0x8847,
        &mpls(2, &ipv4(6, 0, &tcp(40000, PORT, ACK))),
    );
    let mpls_too = own(
        LinkType::Ethernet,
        &TunnelPorts::default(),
        Some("mpls or host 192.0.2.1"),
    );
    assert!(mpls_too.matches(&inside));
}

#[test]
fn links_without_an_ethertype_get_no_mpls_or_pppoe_clause_and_still_compile() {
    for link in [LinkType::Null, LinkType::Raw, LinkType::Loop] {
        let expr = bpf_filter(PORT, None, &TunnelPorts::default(), link);
        assert!(!expr.contains("0x8847"), "{link:?}: {expr}");
        UserFilter::for_link(&expr, dlt(link)).unwrap_or_else(|e| panic!("{link:?}: {e}"));
    }
}

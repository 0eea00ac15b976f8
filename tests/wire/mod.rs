//! Packets and capture files built by hand: link layers (Ethernet, VLAN, BSD null and
//! loop, Linux cooked v1 and v2), IPv4/IPv6, TCP with options, ICMP errors, and classic
//! pcap files of them (the generator in `tests/gen` writes its records with the same
//! headers). Checksums are zero: portsniff never checks them (loopback
//! checksums are offloaded, so a capture on `lo` has none to check either).
#![allow(dead_code)] // each test binary that declares it uses its own subset

use portsniff::decode::{HandshakeOptions, LinkType};
use std::net::{IpAddr, Ipv4Addr};

pub const PROTO_TCP: u8 = 6;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// A TCP header with `options` (padded to whole words) and a data offset that covers
/// them; the payload is not included.
pub fn tcp(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while opts.len() % 4 != 0 {
        opts.push(0);
    }
    let words = 5 + opts.len() / 4;
    let mut h = Vec::with_capacity(words * 4);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.push((words as u8) << 4);
    h.push(flags);
    h.extend_from_slice(&window.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]); // checksum (never checked), urgent pointer
    h.extend_from_slice(&opts);
    h
}

/// The option bytes a SYN or SYN-ACK carries for `o`, after an unknown option (TFO
/// cookie request, kind 34) and NOPs, which the decoder must walk past.
pub fn handshake_options(o: &HandshakeOptions, unknown_first: bool) -> Vec<u8> {
    let mut b = Vec::new();
    if unknown_first {
        b.extend_from_slice(&[34, 2, 1, 1]);
    }
    if let Some(mss) = o.mss {
        b.push(2);
        b.push(4);
        b.extend_from_slice(&mss.to_be_bytes());
    }
    if o.sack_permitted {
        b.extend_from_slice(&[4, 2]);
    }
    if o.timestamps {
        b.extend_from_slice(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 0]);
    }
    if let Some(ws) = o.window_scale {
        b.extend_from_slice(&[1, 3, 3, ws]);
    }
    b
}

/// An IP header for `src → dst` whose length fields count `l4_len` bytes after it.
pub fn ip_header(src: IpAddr, dst: IpAddr, proto: u8, l4_len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + l4_len).min(usize::from(u16::MAX)) as u16;
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h
        }
        (s, d) => {
            let (s, d) = (v6(s), v6(d));
            let len = l4_len.min(usize::from(u16::MAX)) as u16;
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&len.to_be_bytes());
            h.push(proto);
            h.push(64);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h
        }
    }
}

fn v6(a: IpAddr) -> std::net::Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// A whole IP packet: header, `l4` and `zeros` bytes of payload.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8], zeros: usize) -> Vec<u8> {
    let mut p = ip_header(src, dst, proto, l4.len() + zeros);
    p.extend_from_slice(l4);
    p.resize(p.len() + zeros, 0);
    p
}

/// An ICMP (v4 type 3) or ICMPv6 (type 1) destination-unreachable error from
/// `reporter` to `to`, quoting `quoted` (an IP packet, cut as routers do).
pub fn icmp_unreachable(reporter: IpAddr, to: IpAddr, code: u8, quoted: &[u8]) -> Vec<u8> {
    let v4 = reporter.is_ipv4() && to.is_ipv4();
    let mut icmp = vec![if v4 { 3 } else { 1 }, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let proto = if v4 { PROTO_ICMP } else { PROTO_ICMPV6 };
    ip_packet(reporter, to, proto, &icmp, 0)
}

/// The link-layer header of `link` in front of an IP packet.
pub fn frame(link: LinkType, ip: &[u8], vlan: bool) -> Vec<u8> {
    let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
    let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    let mut f = Vec::with_capacity(ip.len() + 24);
    match link {
        LinkType::Ethernet => {
            f.extend_from_slice(&[0; 12]);
            if vlan {
                f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
            }
            f.extend_from_slice(&ethertype);
        }
        LinkType::Null => {
            let family: u32 = if v6 { 30 } else { 2 };
            f.extend_from_slice(&family.to_ne_bytes());
        }
        LinkType::Loop => {
            let family: u32 = if v6 { 24 } else { 2 };
            f.extend_from_slice(&family.to_be_bytes());
        }
        LinkType::LinuxSll => {
            f.extend_from_slice(&[0, 0, 3, 4, 0, 6]);
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&ethertype);
        }
        LinkType::LinuxSll2 => {
            f.extend_from_slice(&ethertype);
            f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6]);
            f.extend_from_slice(&[0; 8]);
        }
        LinkType::Raw | LinkType::Unsupported(_) => {}
    }
    f.extend_from_slice(ip);
    f
}

/// The 24-byte header of a classic pcap file: little-endian, microsecond timestamps
/// (magic 0xa1b2c3d4), version 2.4, no time zone offset.
pub fn file_header(linktype: u32, snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone 0, sigfigs 0
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&linktype.to_le_bytes());
    h
}

/// The 16-byte header of one record: its time (µs since the epoch), the bytes it holds
/// (`caplen`) and the length the packet had on the wire (`len`).
pub fn record_header(ts_us: u64, caplen: u32, len: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    let sec = u32::try_from(ts_us / 1_000_000).unwrap_or(u32::MAX);
    h[0..4].copy_from_slice(&sec.to_le_bytes());
    h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&caplen.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    h
}

/// A classic pcap file (microsecond timestamps, little-endian) of `link`.
/// `records`: (µs since the epoch, captured bytes, original length).
pub fn pcap_file(link: LinkType, records: &[(u64, Vec<u8>, u32)]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&file_header(link.linktype() as u32, 262_144));
    for (ts, data, len) in records {
        f.extend_from_slice(&record_header(*ts, data.len() as u32, *len));
        f.extend_from_slice(data);
    }
    f
}

/// A classic pcap file of whole `frames` of `link`, one every 10 µs from `start_us`.
pub fn pcap_of_frames(link: LinkType, start_us: u64, frames: &[Vec<u8>]) -> Vec<u8> {
    let records: Vec<(u64, Vec<u8>, u32)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (start_us + i as u64 * 10, f.clone(), f.len() as u32))
        .collect();
    pcap_file(link, &records)
}

/// Where each record of a little-endian classic pcap file starts (its 16-byte header),
/// so a test can cut a file after N records or rewrite a byte of one packet.
pub fn record_offsets(file: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 24;
    while at + 16 <= file.len() {
        offsets.push(at);
        let caplen = u32::from_le_bytes([file[at + 8], file[at + 9], file[at + 10], file[at + 11]]);
        at += 16 + caplen as usize;
    }
    offsets
}

/// An Ethernet/IPv4/TCP frame from 127.0.0.1:`sport` to 127.0.0.1:`dport` with `payload`
/// bytes of data.
pub fn loopback_v4(
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
) -> Vec<u8> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let tcp = tcp(sport, dport, seq, ack, flags, 512, &[]);
    frame(
        LinkType::Ethernet,
        &ip_packet(lo, lo, PROTO_TCP, &tcp, payload),
        false,
    )
}

/// An underlay Ethernet + IPv4 frame (192.0.2.1 → 192.0.2.2) carrying `l4` as `proto`.
fn underlay(proto: u8, l4: &[u8]) -> Vec<u8> {
    let a = IpAddr::from([192, 0, 2, 1]);
    let b = IpAddr::from([192, 0, 2, 2]);
    frame(LinkType::Ethernet, &ip_packet(a, b, proto, l4, 0), false)
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = 49152u16.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// `inner` (an Ethernet frame) in VXLAN (RFC 7348 §5): flags with I, the VNI, UDP 4789.
pub fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x08, 0, 0, 0];
    h.extend_from_slice(&(vni << 8).to_be_bytes());
    h.extend_from_slice(inner);
    underlay(17, &udp(4789, &h))
}

/// `inner` (an Ethernet frame) in Geneve (RFC 8926 §3.4): no options, protocol 0x6558.
pub fn geneve(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0, 0, 0x65, 0x58];
    h.extend_from_slice(&(vni << 8).to_be_bytes());
    h.extend_from_slice(inner);
    underlay(17, &udp(6081, &h))
}

/// `inner` (an Ethernet frame) in GRE with a key (RFC 2890 §2.1), as gretap sends it.
pub fn gre_key(key: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x20, 0, 0x65, 0x58];
    h.extend_from_slice(&key.to_be_bytes());
    h.extend_from_slice(inner);
    underlay(47, &h)
}

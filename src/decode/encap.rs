//! Encapsulations: the outer headers of a tunnel or a tag, read as zero-copy slices down
//! to the frame or IP packet they carry, and the [`Encap`] that names the tunnel.
//!
//! Each function here takes the bytes after the outer header that announced it (a UDP
//! payload, a GRE packet, an EtherType's payload) and returns what is inside, or the
//! [`SkipReason`] that says why not: [`SkipReason::Truncated`] when the header is cut,
//! [`SkipReason::BadTunnelHeader`] when it cannot be right, and
//! [`SkipReason::UnsupportedTunnel`] when it is right but carries something portsniff
//! does not open. Nothing here knows about TCP or flows.

use super::SkipReason;
use std::fmt;

/// The tunnel or tag a connection's packets came in: part of the flow key, because two
/// tunnels (two VNIs of one overlay, two VLANs of one trunk) can carry the same inner
/// 4-tuple between different machines. When tunnels nest, the innermost one names the
/// connection: it is the one whose inner addresses are the connection's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Encap {
    #[default]
    None,
    /// One 802.1Q tag: the VLAN id.
    Vlan(u16),
    /// An 802.1ad service tag then a customer tag (QinQ): outer, inner VLAN ids.
    QinQ(u16, u16),
    /// VXLAN (RFC 7348): the 24-bit VXLAN network identifier.
    Vxlan(u32),
    /// Geneve (RFC 8926): the 24-bit virtual network identifier.
    Geneve(u32),
    /// GRE (RFC 2784), with the key of RFC 2890 if present.
    Gre(Option<u32>),
    /// ERSPAN (GRE-carried port mirroring): the 10-bit session id (0 for type I).
    Erspan(u16),
    /// MPLS (RFC 3032): the bottom-of-stack label, the one that names the VPN.
    Mpls(u32),
    /// PPPoE session stage (RFC 2516 §5): the session id.
    Pppoe(u16),
}

impl fmt::Display for Encap {
    /// `vxlan vni 42`, `gre key 7`, `vlan 100`, `qinq 100.200`: the notation of the JSON
    /// `encap` field and the text tag.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Encap::None => f.write_str("none"),
            Encap::Vlan(id) => write!(f, "vlan {id}"),
            Encap::QinQ(outer, inner) => write!(f, "qinq {outer}.{inner}"),
            Encap::Vxlan(vni) => write!(f, "vxlan vni {vni}"),
            Encap::Geneve(vni) => write!(f, "geneve vni {vni}"),
            Encap::Gre(Some(key)) => write!(f, "gre key {key}"),
            Encap::Gre(None) => f.write_str("gre"),
            Encap::Erspan(session) => write!(f, "erspan session {session}"),
            Encap::Mpls(label) => write!(f, "mpls label {label}"),
            Encap::Pppoe(session) => write!(f, "pppoe session {session}"),
        }
    }
}

/// What an encapsulation carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner<'a> {
    /// An Ethernet frame (VXLAN, Geneve and GRE with Transparent Ethernet Bridging, ERSPAN).
    Ethernet(&'a [u8]),
    /// An IPv4 or IPv6 packet; its version nibble says which.
    Ip(&'a [u8]),
}

/// The IANA UDP ports of the UDP-carried tunnels (RFC 7348 §5, RFC 8926 §3.3).
pub const VXLAN_PORT: u16 = 4789;
pub const GENEVE_PORT: u16 = 6081;
/// Linux's VXLAN port when `ip link add … type vxlan` is given no `dstport` (the
/// kernel's `vxlan_port` default, older than the IANA assignment), which flannel's
/// `vxlan` backend uses too.
pub const LINUX_VXLAN_PORT: u16 = 8472;

/// Most ports a user may name for each UDP tunnel (`--vxlan-port`, `--geneve-port`).
pub const MAX_NAMED_PORTS: usize = 8;
const PORT_SLOTS: usize = MAX_NAMED_PORTS + 2;

/// A tunnel carried in UDP, recognised by its destination port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpTunnel {
    Vxlan,
    Geneve,
}

/// Which UDP destination ports are opened as VXLAN and which as Geneve: by default
/// 4789 and 8472, and 6081; plus the ports the user names, as Wireshark's "Decode As"
/// and Zeek's `Tunnel::vxlan_ports` do. Fixed arrays, so a decoder stays `Copy` and a
/// look-up allocates nothing; 0 marks an unused slot (UDP port 0 is reserved and never
/// a tunnel's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelPorts {
    vxlan: [u16; PORT_SLOTS],
    geneve: [u16; PORT_SLOTS],
    /// Bit `port % 64` set for every port above: most UDP (DNS, QUIC, …) is turned away
    /// by one test instead of a walk through both arrays.
    sieve: u64,
}

impl Default for TunnelPorts {
    fn default() -> TunnelPorts {
        TunnelPorts::with(&[], &[]).unwrap_or_else(|e| unreachable!("the defaults: {e}"))
    }
}

impl TunnelPorts {
    /// The default ports plus those named. A port named for one tunnel is no longer a
    /// default of the other (`--geneve-port 4789` says what 4789 carries there). Fails,
    /// saying why, for a port named for both, port 0, or more than [`MAX_NAMED_PORTS`]
    /// of one kind.
    pub fn with(vxlan: &[u16], geneve: &[u16]) -> Result<TunnelPorts, String> {
        if let Some(p) = vxlan.iter().find(|p| geneve.contains(p)) {
            return Err(format!(
                "port {p} is named both with --vxlan-port and with --geneve-port: a UDP port \
                 is opened as one tunnel"
            ));
        }
        if vxlan.contains(&0) || geneve.contains(&0) {
            return Err("port 0 is no UDP tunnel's port".to_string());
        }
        for (named, what) in [(vxlan, "vxlan"), (geneve, "geneve")] {
            if named.len() > MAX_NAMED_PORTS {
                return Err(format!(
                    "at most {MAX_NAMED_PORTS} ports may be named with --{what}-port"
                ));
            }
        }
        // At most 2 defaults and MAX_NAMED_PORTS named: every port finds a slot.
        let fill = |defaults: &[u16], other: &[u16], named: &[u16]| {
            let mut slots = [0u16; PORT_SLOTS];
            let wanted = defaults.iter().filter(|p| !other.contains(p)).chain(named);
            let mut n = 0;
            for &p in wanted {
                if !slots[..n].contains(&p) {
                    slots[n] = p;
                    n += 1;
                }
            }
            slots
        };
        let (vxlan, geneve) = (
            fill(&[VXLAN_PORT, LINUX_VXLAN_PORT], geneve, vxlan),
            fill(&[GENEVE_PORT], vxlan, geneve),
        );
        let sieve = vxlan
            .iter()
            .chain(&geneve)
            .filter(|&&p| p != 0)
            .fold(0, |sieve, &p| sieve | 1u64 << (p % 64));
        Ok(TunnelPorts {
            vxlan,
            geneve,
            sieve,
        })
    }

    /// The tunnel a UDP datagram to `dport` carries, if any.
    pub fn udp(&self, dport: u16) -> Option<UdpTunnel> {
        if self.sieve & 1u64 << (dport % 64) == 0 {
            None
        } else if self.vxlan.contains(&dport) {
            Some(UdpTunnel::Vxlan)
        } else if self.geneve.contains(&dport) {
            Some(UdpTunnel::Geneve)
        } else {
            None
        }
    }

    /// Every UDP destination port of a tunnel, VXLAN's first (for the kernel filter).
    pub fn all(&self) -> impl Iterator<Item = u16> + '_ {
        self.vxlan
            .iter()
            .chain(&self.geneve)
            .copied()
            .filter(|&p| p != 0)
    }
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Transparent Ethernet Bridging: an Ethernet frame, in Geneve's and GRE's protocol field.
const ETHERTYPE_TEB: u16 = 0x6558;
const ETHERTYPE_ERSPAN_II: u16 = 0x88be;
const ETHERTYPE_ERSPAN_III: u16 = 0x22eb;
pub const ETHERTYPE_MPLS: u16 = 0x8847;
pub const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
pub const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be24(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The bytes after a header of `len`, or `Truncated`.
fn after(b: &[u8], len: usize) -> Result<&[u8], SkipReason> {
    b.get(len..).ok_or(SkipReason::Truncated)
}

/// VXLAN (RFC 7348 §5): 8 bytes, flags with the I bit (0x08) set "for a valid VXLAN
/// Network ID", 24 reserved bits, the VNI in bytes 4–6, 8 reserved bits, then an
/// Ethernet frame.
///
/// The reserved bits must be zero. RFC 7348 has receivers ignore them, but Linux
/// (`vxlan_rcv` drops a header with flags or bits it did not parse) and Open vSwitch
/// drop such a header, and on a port that is not IANA's (8472, a `--vxlan-port`) a
/// datagram of some other protocol must be counted, not read as a tunnel. The one
/// extension accepted is Group Based Policy (draft-smith-vxlan-group-policy, Linux's
/// `gbp`): the G bit (0x80), then the D and A bits and a 16-bit policy id in the first
/// word's reserved bits.
pub fn vxlan(udp_payload: &[u8]) -> Result<(Inner<'_>, Encap), SkipReason> {
    if udp_payload.len() < 8 {
        return Err(SkipReason::Truncated);
    }
    let first_word_ok = match udp_payload[0] {
        0x08 => udp_payload[1..4] == [0, 0, 0],
        0x88 => udp_payload[1] & !0x48 == 0,
        _ => false,
    };
    if !first_word_ok || udp_payload[7] != 0 {
        return Err(SkipReason::BadTunnelHeader);
    }
    let vni = be24(udp_payload, 4);
    Ok((Inner::Ethernet(&udp_payload[8..]), Encap::Vxlan(vni)))
}

/// Geneve (RFC 8926 §3.4): version 0, a 6-bit option length in 4-byte words, the
/// protocol type (an EtherType), the VNI in bytes 4–6; options follow the 8 fixed bytes.
pub fn geneve(udp_payload: &[u8]) -> Result<(Inner<'_>, Encap), SkipReason> {
    if udp_payload.len() < 8 {
        return Err(SkipReason::Truncated);
    }
    // §3.4: "Packets received by a tunnel endpoint with an unknown version MUST be dropped."
    if udp_payload[0] >> 6 != 0 {
        return Err(SkipReason::BadTunnelHeader);
    }
    let header_len = 8 + usize::from(udp_payload[0] & 0x3f) * 4;
    let encap = Encap::Geneve(be24(udp_payload, 4));
    let inner = after(udp_payload, header_len)?;
    Ok((by_protocol(be16(udp_payload, 2), inner)?, encap))
}

/// The frame or packet an EtherType-valued protocol field announces.
fn by_protocol(protocol: u16, inner: &[u8]) -> Result<Inner<'_>, SkipReason> {
    match protocol {
        ETHERTYPE_TEB => Ok(Inner::Ethernet(inner)),
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(Inner::Ip(inner)),
        _ => Err(SkipReason::UnsupportedTunnel),
    }
}

/// GRE (RFC 2784 §2, with RFC 2890's key and sequence number): C, K and S flags say
/// which of checksum (+reserved), key and sequence number follow the 4 fixed bytes,
/// in that order. Version 1 is PPTP's enhanced GRE (RFC 2637), which carries PPP.
pub fn gre(packet: &[u8]) -> Result<(Inner<'_>, Encap), SkipReason> {
    if packet.len() < 4 {
        return Err(SkipReason::Truncated);
    }
    let (flags, version) = (packet[0], packet[1] & 0x07);
    if version != 0 {
        return Err(SkipReason::UnsupportedTunnel);
    }
    // RFC 2784 §2.1: Reserved0 bits 1–5 "MUST" be zero unless RFC 1701 (routing, strict
    // source route, recursion) is implemented; only K and S of those are RFC 2890's.
    if flags & 0x4f != 0 {
        return Err(SkipReason::BadTunnelHeader);
    }
    let (checksum, key, seq) = (flags & 0x80 != 0, flags & 0x20 != 0, flags & 0x10 != 0);
    let mut at = 4;
    if checksum {
        at += 4;
    }
    let key = if key {
        let k = packet.get(at..at + 4).ok_or(SkipReason::Truncated)?;
        at += 4;
        Some(be32(k, 0))
    } else {
        None
    };
    if seq {
        at += 4;
    }
    let inner = after(packet, at)?;
    match be16(packet, 2) {
        // ERSPAN type I has no header of its own and no sequence number; type II has both.
        ETHERTYPE_ERSPAN_II if !seq => Ok((Inner::Ethernet(inner), Encap::Erspan(0))),
        ETHERTYPE_ERSPAN_II => erspan(inner, 8),
        ETHERTYPE_ERSPAN_III => erspan(inner, 12),
        protocol => Ok((by_protocol(protocol, inner)?, Encap::Gre(key))),
    }
}

/// ERSPAN types II and III (draft-foschiano-erspan §4.2, §4.3): a version, the VLAN, and
/// a 10-bit session id in bytes 2–3; type III may add an 8-byte platform sub-header (its
/// O flag, the lowest bit of byte 11). The mirrored Ethernet frame follows.
fn erspan(body: &[u8], header_len: usize) -> Result<(Inner<'_>, Encap), SkipReason> {
    if body.len() < header_len {
        return Err(SkipReason::Truncated);
    }
    let version = body[0] >> 4;
    let expected = if header_len == 8 { 1 } else { 2 };
    if version != expected {
        return Err(SkipReason::BadTunnelHeader);
    }
    let session = be16(body, 2) & 0x03ff;
    let len = if header_len == 12 && body[11] & 0x01 != 0 {
        20
    } else {
        header_len
    };
    Ok((Inner::Ethernet(after(body, len)?), Encap::Erspan(session)))
}

/// An MPLS label stack (RFC 3032 §2.1): 4-byte entries, the S bit marking the last. What
/// follows is not named by the stack; an IP version nibble of 4 or 6 says it is IP
/// (what RFC 4385 §2 relies on), anything else (a pseudowire control word, RFC 4448) is
/// not opened.
pub fn mpls(payload: &[u8]) -> Result<(Inner<'_>, Encap), SkipReason> {
    let mut at = 0;
    loop {
        let entry = payload.get(at..at + 4).ok_or(SkipReason::Truncated)?;
        let entry = be32(entry, 0);
        at += 4;
        if entry & 0x100 != 0 {
            let inner = &payload[at..];
            return match inner.first().map(|b| b >> 4) {
                Some(4) | Some(6) => Ok((Inner::Ip(inner), Encap::Mpls(entry >> 12))),
                Some(_) => Err(SkipReason::UnsupportedTunnel),
                None => Err(SkipReason::Truncated),
            };
        }
    }
}

/// A PPPoE session-stage frame (RFC 2516 §4, §5): version and type 1 (0x11), code 0, the
/// session id, the length, then PPP's protocol field (RFC 1661 §2): 0x0021 IPv4 (RFC
/// 1332), 0x0057 IPv6 (RFC 5072). Link control (LCP, IPCP, …) is PPP's own traffic.
pub fn pppoe(payload: &[u8]) -> Result<(Inner<'_>, Encap), SkipReason> {
    if payload.len() < 8 {
        return Err(SkipReason::Truncated);
    }
    if payload[0] != 0x11 || payload[1] != 0 {
        return Err(SkipReason::BadTunnelHeader);
    }
    let encap = Encap::Pppoe(be16(payload, 2));
    match be16(payload, 6) {
        0x0021 | 0x0057 => Ok((Inner::Ip(&payload[8..]), encap)),
        _ => Err(SkipReason::NotIp),
    }
}

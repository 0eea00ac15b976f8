//! Link layers: from the bytes libpcap captured to the IP packet inside them.
//!
//! Linux `lo` is Ethernet with zero MACs; BSD and macOS `lo0` is NULL (a 4-byte address
//! family in the *capturing* host's byte order) or LOOP (the same in network order);
//! `-i any` is LINUX_SLL (tcpdump ≤ 4.9) or LINUX_SLL2 (tcpdump ≥ 4.99); tun devices and
//! some conversions give RAW.

use super::encap::{Encap, ETHERTYPE_IPV4};
use super::SkipReason;

/// The link-layer header types portsniff decodes, by their libpcap LINKTYPE_ numbers
/// (<https://www.tcpdump.org/linktypes.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_NULL (0): BSD loopback, family in host byte order.
    Null,
    /// LINKTYPE_LOOP (108): OpenBSD loopback, family in network byte order.
    Loop,
    /// LINKTYPE_LINUX_SLL (113): Linux "cooked" capture v1.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux "cooked" capture v2.
    LinuxSll2,
    /// LINKTYPE_RAW (101, and DLT_RAW's 12 and 14 on some BSDs), IPV4 (228), IPV6 (229).
    Raw,
    /// Anything else: every packet is counted as skipped.
    Unsupported(i32),
}

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

impl LinkType {
    pub fn from_linktype(value: i32) -> LinkType {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 | 228 | 229 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Unsupported(other),
        }
    }

    /// The LINKTYPE_ number, for writing a capture file of the same type.
    pub fn linktype(self) -> i32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Unsupported(v) => v,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LinkType::Null => "NULL",
            LinkType::Ethernet => "EN10MB",
            LinkType::Raw => "RAW",
            LinkType::Loop => "LOOP",
            LinkType::LinuxSll => "LINUX_SLL",
            LinkType::LinuxSll2 => "LINUX_SLL2",
            LinkType::Unsupported(_) => "unsupported",
        }
    }

    /// Bytes a TCP packet's headers take on this link, the least the snaplen must keep
    /// for it to reach a connection: (over IPv4, over IPv6), without IP or TCP options
    /// (the decoder needs the fixed 20 bytes of TCP, not the options). `None`: a link
    /// that is not read.
    pub fn tcp_headers_len(self) -> Option<(u32, u32)> {
        let link = match self {
            LinkType::Ethernet => 14,
            LinkType::Null | LinkType::Loop => 4,
            LinkType::LinuxSll => 16,
            LinkType::LinuxSll2 => 20,
            LinkType::Raw => 0,
            LinkType::Unsupported(_) => return None,
        };
        Some((link + 20 + 20, link + 40 + 20))
    }

    /// What a captured frame carries, by EtherType: the IP packet of a link without one
    /// (NULL, LOOP, RAW) is announced as IPv4, and its version nibble decides.
    pub(super) fn payload(self, frame: &[u8]) -> Result<Payload<'_>, SkipReason> {
        match self {
            LinkType::Ethernet => ethernet(frame),
            LinkType::Null => bsd_loopback(frame, u32::from_ne_bytes).map(Payload::ip),
            LinkType::Loop => bsd_loopback(frame, u32::from_be_bytes).map(Payload::ip),
            LinkType::LinuxSll => by_ethertype(frame, 16, 14),
            LinkType::LinuxSll2 => by_ethertype(frame, 20, 0),
            LinkType::Raw => Ok(Payload::ip(frame)),
            LinkType::Unsupported(_) => Err(SkipReason::UnsupportedLinkType),
        }
    }
}

/// A link header's payload and the EtherType that names it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Payload<'a> {
    pub ethertype: u16,
    pub bytes: &'a [u8],
    /// The frame's VLAN tags, if any.
    pub tags: Encap,
}

impl<'a> Payload<'a> {
    fn ip(bytes: &'a [u8]) -> Payload<'a> {
        Payload {
            ethertype: ETHERTYPE_IPV4,
            bytes,
            tags: Encap::None,
        }
    }
}

fn ethertype_at(frame: &[u8], at: usize) -> Result<u16, SkipReason> {
    match frame.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(SkipReason::Truncated),
    }
}

fn after(frame: &[u8], header_len: usize, ethertype: u16) -> Result<Payload<'_>, SkipReason> {
    let bytes = frame.get(header_len..).ok_or(SkipReason::Truncated)?;
    Ok(Payload {
        ethertype,
        bytes,
        tags: Encap::None,
    })
}

/// Ethernet II, with up to two 802.1Q/802.1ad tags (IEEE 802.1Q §9.6: a 12-bit VLAN id
/// in the low bits of each tag's control information).
pub(super) fn ethernet(frame: &[u8]) -> Result<Payload<'_>, SkipReason> {
    let mut at = 12;
    let mut ethertype = ethertype_at(frame, at)?;
    let mut ids = [0u16; 2];
    let mut tags = 0;
    while tags < 2 && (ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ) {
        ids[tags] = ethertype_at(frame, at + 2)? & 0x0fff;
        tags += 1;
        at += 4;
        ethertype = ethertype_at(frame, at)?;
    }
    let mut payload = after(frame, at + 2, ethertype)?;
    payload.tags = match tags {
        0 => Encap::None,
        1 => Encap::Vlan(ids[0]),
        _ => Encap::QinQ(ids[0], ids[1]),
    };
    Ok(payload)
}

/// SLL: protocol at byte 14 of a 16-byte header; SLL2: at byte 0 of a 20-byte header.
fn by_ethertype(
    frame: &[u8],
    header_len: usize,
    type_at: usize,
) -> Result<Payload<'_>, SkipReason> {
    let ethertype = ethertype_at(frame, type_at)?;
    after(frame, header_len, ethertype)
}

/// The address family is in the byte order of the machine that captured, which need not
/// be ours, and its value for IPv6 differs between BSDs (24 NetBSD/OpenBSD, 28 FreeBSD,
/// 30 macOS; 10 Linux). So: accept the family in either order and let the IP version
/// nibble confirm it, as tcpdump's `null_if_print` effectively does.
fn bsd_loopback(frame: &[u8], read: fn([u8; 4]) -> u32) -> Result<&[u8], SkipReason> {
    let Some(head) = frame.get(..4) else {
        return Err(SkipReason::Truncated);
    };
    let head = [head[0], head[1], head[2], head[3]];
    let family = read(head);
    let swapped = family.swap_bytes();
    let known = |f: u32| matches!(f, 2 | 10 | 24 | 28 | 30);
    if !known(family) && !known(swapped) {
        return Err(SkipReason::NotIp);
    }
    let ip = &frame[4..];
    match ip.first().map(|b| b >> 4) {
        Some(4) | Some(6) => Ok(ip),
        Some(_) => Err(SkipReason::NotIp),
        None => Err(SkipReason::Truncated),
    }
}

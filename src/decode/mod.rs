//! Decode: one captured packet (`&[u8]` in libpcap's buffer) → one [`Segment`], or a
//! counted [`SkipReason`].
//!
//! This stage borrows the packet bytes, copies out only the few fields the flow stage
//! needs into a small `Copy` struct, and never allocates. It knows nothing about flows:
//! it does not decide who is the client, it only orients ICMP errors back to the TCP
//! segment they quote.
//!
//! Checksums are deliberately not validated: on loopback (and with any NIC offload) the
//! kernel hands libpcap packets whose TCP checksum has not been filled in yet.

mod encap;
mod link;

pub use encap::{Encap, TunnelPorts, MAX_NAMED_PORTS};
pub use link::LinkType;

use encap::{Inner, UdpTunnel};

use etherparse::{IpNumber, LaxIpSlice};
use std::fmt;
use std::net::IpAddr;

/// Microseconds since the Unix epoch, as libpcap reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From a pcap record header's `timeval`. Negative times (a corrupt record) clamp to 0.
    pub fn from_timeval(sec: i64, usec: i64) -> Timestamp {
        let sec = u64::try_from(sec).unwrap_or(0);
        let usec = u64::try_from(usec).unwrap_or(0);
        Timestamp(sec.saturating_mul(1_000_000).saturating_add(usec))
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// Microseconds from `earlier` to `self`; 0 if the capture's clock went backwards.
    pub fn micros_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn add_micros(self, micros: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(micros))
    }

    /// Local wall-clock time like tcpdump's default: `20:53:18.123456`.
    pub fn clock(self) -> String {
        let micros = i64::try_from(self.0).unwrap_or(i64::MAX);
        match jiff::Timestamp::from_microsecond(micros) {
            Ok(t) => t
                .to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%H:%M:%S.%6f")
                .to_string(),
            Err(_) => format!("{:.6}", self.as_secs_f64()),
        }
    }
}

/// One end of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn new(addr: IpAddr, port: u16) -> Endpoint {
        Endpoint { addr, port }
    }
}

impl fmt::Display for Endpoint {
    /// `127.0.0.1:61999` and `[::1]:61999`, the notation `ss` and browsers use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// A symmetric hash of a segment's two endpoints, randomly keyed per run (a crafted flood
/// cannot aim at one bucket): both directions of a connection hash the same, which is what
/// the flow table's index needs. It lives here, beside [`Endpoint`], so that the capture
/// thread can compute it while decoding, on the core the flow stage is not using.
#[derive(Clone, Debug, Default)]
pub struct PairHasher(ahash::RandomState);

impl PairHasher {
    pub fn new() -> PairHasher {
        PairHasher(ahash::RandomState::new())
    }

    /// The two endpoints' hashes combined with a commutative operation, so no ordering of
    /// the endpoints is needed (comparing IP addresses for order showed in profiles).
    /// Folded to 32 bits and repeated in both halves: the flow table keeps the 4 bytes
    /// beside each flow (in padding it had anyway) and rebuilds the whole hash from them
    /// when it removes the flow or grows its index, instead of hashing the flow again.
    ///
    /// The tunnel is part of the key: it is added in too (the sum stays symmetric), so
    /// that one inner 4-tuple in many tunnels does not pile into one bucket.
    pub fn pair(&self, a: &Endpoint, b: &Endpoint, encap: Encap) -> u64 {
        let mut h = self.0.hash_one(a).wrapping_add(self.0.hash_one(b));
        if encap != Encap::None {
            h = h.wrapping_add(self.0.hash_one(encap));
        }
        let folded = u64::from((h ^ (h >> 32)) as u32);
        folded | (folded << 32)
    }
}

/// The TCP control bits (RFC 9293 §3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

impl fmt::Display for TcpFlags {
    /// tcpdump's notation: `S`, `S.`, `R.`, `F.`, `P.`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [
            (Self::SYN, 'S'),
            (Self::FIN, 'F'),
            (Self::RST, 'R'),
            (Self::PSH, 'P'),
        ] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        if self.ack() {
            write!(f, ".")?;
        }
        Ok(())
    }
}

/// The options a SYN or SYN-ACK negotiates (RFC 9293 §3.7.1, RFC 7323, RFC 2018).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: bool,
}

/// The fields of a TCP header the flow stage uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// Payload length from the IP header, so it is right even when the snaplen cut the
    /// payload off.
    pub payload_len: u32,
    /// Only parsed on SYN and SYN-ACK segments.
    pub options: HandshakeOptions,
}

/// Why a destination was unreachable, from the ICMP or ICMPv6 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    Network,
    Host,
    Protocol,
    Port,
    /// ICMP codes 9, 10, 13 and ICMPv6 code 1: what `iptables -j REJECT
    /// --reject-with icmp-admin-prohibited` sends.
    AdminProhibited,
    Other {
        icmp_type: u8,
        code: u8,
    },
}

impl Unreachable {
    fn from_icmpv4(code: u8) -> Unreachable {
        match code {
            0 | 6 | 11 => Unreachable::Network,
            1 | 7 | 12 => Unreachable::Host,
            2 => Unreachable::Protocol,
            3 => Unreachable::Port,
            9 | 10 | 13 => Unreachable::AdminProhibited,
            _ => Unreachable::Other { icmp_type: 3, code },
        }
    }

    fn from_icmpv6(code: u8) -> Unreachable {
        match code {
            0 => Unreachable::Network,
            1 | 5 | 6 => Unreachable::AdminProhibited,
            3 => Unreachable::Host,
            4 => Unreachable::Port,
            _ => Unreachable::Other { icmp_type: 1, code },
        }
    }

    /// RFC 1122 §4.2.3.9: net and host unreachable are soft errors, which "MUST NOT"
    /// abort a connection: a client may keep retransmitting its SYN until its own timeout
    /// (Windows does, and so does any client whose copy of the error is lost on its way).
    /// Port and protocol unreachable, and an administrative prohibition, end the attempt.
    pub fn is_soft(self) -> bool {
        matches!(self, Unreachable::Network | Unreachable::Host)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unreachable::Network => "network_unreachable",
            Unreachable::Host => "host_unreachable",
            Unreachable::Protocol => "protocol_unreachable",
            Unreachable::Port => "port_unreachable",
            Unreachable::AdminProhibited => "admin_prohibited",
            Unreachable::Other { .. } => "unreachable_other",
        }
    }
}

/// An ICMP or ICMPv6 destination-unreachable error that quotes a TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// Who sent the error (a router, a firewall, or the host itself).
    pub reporter: IpAddr,
    pub kind: Unreachable,
    /// Sequence number of the quoted segment, to match it to the SYN it answers.
    pub quoted_seq: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    Tcp(TcpSegment),
    /// `src`/`dst` of the [`Segment`] are those of the *quoted* TCP segment, so the
    /// error finds the flow it answers with the same lookup as a TCP segment.
    Icmp(IcmpError),
    /// A connection attempt (SYN without ACK) to another port: when nothing reaches the
    /// watched port, these say where clients connect instead.
    SynElsewhere,
}

/// One decoded packet: what the flow stage consumes. `Copy`, no heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub ts: Timestamp,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub kind: SegmentKind,
    /// The tunnel or tag the packet came in ([`Encap::None`] for most).
    pub encap: Encap,
}

/// Why a packet was counted and skipped instead of decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Cut by the snaplen (or a corrupt caplen) before the headers we need.
    Truncated,
    /// The link layer's type field names something other than IPv4/IPv6 (ARP, LLDP, …).
    NotIp,
    /// An IPv4 or IPv6 header that cannot be right (IHL below 5, bad version, broken
    /// extension header chain).
    BadIpHeader,
    /// An IP fragment: TCP from a real stack is never fragmented on loopback, and a
    /// fragment's TCP header cannot be trusted on its own.
    Fragment,
    /// A TCP header whose data offset is below 5 words.
    BadTcpHeader,
    /// Neither TCP nor an ICMP error about TCP (UDP, ICMP echo, …).
    NotTcp,
    /// TCP (or an ICMP error quoting TCP) for another port.
    OtherPort,
    /// The capture's link type is not one portsniff decodes.
    UnsupportedLinkType,
    /// A tunnel header that cannot be right (VXLAN without its VNI flag or with reserved
    /// bits set, as another protocol's datagram to a VXLAN port has, a Geneve
    /// version other than 0, GRE reserved bits set, a PPPoE version other than 1).
    BadTunnelHeader,
    /// A well-formed tunnel carrying what portsniff does not open (PPTP's GRE, an MPLS
    /// pseudowire, a Geneve protocol other than Ethernet or IP), or tunnels nested
    /// deeper than [`MAX_TUNNELS`].
    UnsupportedTunnel,
}

impl SkipReason {
    pub const ALL: [SkipReason; 10] = [
        SkipReason::Truncated,
        SkipReason::NotIp,
        SkipReason::BadIpHeader,
        SkipReason::Fragment,
        SkipReason::BadTcpHeader,
        SkipReason::NotTcp,
        SkipReason::OtherPort,
        SkipReason::UnsupportedLinkType,
        SkipReason::BadTunnelHeader,
        SkipReason::UnsupportedTunnel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Truncated => "truncated",
            SkipReason::NotIp => "not_ip",
            SkipReason::BadIpHeader => "bad_ip_header",
            SkipReason::Fragment => "ip_fragment",
            SkipReason::BadTcpHeader => "bad_tcp_header",
            SkipReason::NotTcp => "not_tcp",
            SkipReason::OtherPort => "other_port",
            SkipReason::UnsupportedLinkType => "unsupported_link_type",
            SkipReason::BadTunnelHeader => "bad_tunnel_header",
            SkipReason::UnsupportedTunnel => "unsupported_tunnel",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Traffic that is simply not the port's (another protocol, another port), as
    /// opposed to a packet that could not be decoded.
    pub fn is_other_traffic(self) -> bool {
        match self {
            SkipReason::NotIp | SkipReason::NotTcp | SkipReason::OtherPort => true,
            SkipReason::Truncated
            | SkipReason::BadIpHeader
            | SkipReason::Fragment
            | SkipReason::BadTcpHeader
            | SkipReason::UnsupportedLinkType
            | SkipReason::BadTunnelHeader
            | SkipReason::UnsupportedTunnel => false,
        }
    }
}

/// Per-reason counters of skipped packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipCounts([u64; SkipReason::ALL.len()]);

impl SkipCounts {
    pub fn add(&mut self, reason: SkipReason) {
        self.0[reason.index()] += 1;
    }

    pub fn get(&self, reason: SkipReason) -> u64 {
        self.0[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Reasons with a non-zero count, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (SkipReason, u64)> + '_ {
        SkipReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }
}

/// Decodes packets of one link type for one server port.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    link: LinkType,
    port: u16,
    /// Where a DNAT rule forwards the port: its TCP is the port's too.
    backend: Option<Endpoint>,
    /// The UDP ports opened as VXLAN and Geneve.
    tunnels: TunnelPorts,
}

impl Decoder {
    pub fn new(link: LinkType, port: u16) -> Decoder {
        Decoder {
            link,
            port,
            backend: None,
            tunnels: TunnelPorts::default(),
        }
    }

    /// Opens UDP to `tunnels`' ports as VXLAN and Geneve (instead of the defaults).
    pub fn with_tunnel_ports(self, tunnels: TunnelPorts) -> Decoder {
        Decoder { tunnels, ..self }
    }

    /// Also decodes the TCP to and from `backend`, the port's DNAT destination.
    pub fn with_backend(self, backend: Option<Endpoint>) -> Decoder {
        Decoder { backend, ..self }
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Decodes one captured packet. `data` is what libpcap captured (caplen bytes).
    pub fn decode(&self, ts: Timestamp, data: &[u8]) -> Result<Segment, SkipReason> {
        let payload = self.link.payload(data)?;
        let seg = decode_payload(ts, payload, self.port, &self.tunnels, 0);
        match (seg, self.backend) {
            // Translated packets carry the backend's port: decode them for that port.
            (
                Err(SkipReason::OtherPort)
                | Ok(Segment {
                    kind: SegmentKind::SynElsewhere,
                    ..
                }),
                Some(b),
            ) => match decode_payload(ts, payload, b.port, &self.tunnels, 0) {
                Ok(s) if s.src == b || s.dst == b => Ok(s),
                _ => seg,
            },
            _ => seg,
        }
    }
}

/// Most tunnels opened inside one another (VXLAN in GRE in MPLS …) before giving up:
/// real stacks nest two or three; the bound keeps a crafted packet from looping.
pub const MAX_TUNNELS: u8 = 4;

/// Decodes a link layer's payload by its EtherType: IP, or an MPLS or PPPoE
/// encapsulation of it. `depth`: tunnels opened so far.
fn decode_payload(
    ts: Timestamp,
    payload: link::Payload<'_>,
    port: u16,
    tunnels: &TunnelPorts,
    depth: u8,
) -> Result<Segment, SkipReason> {
    let opened = match payload.ethertype {
        encap::ETHERTYPE_IPV4 | encap::ETHERTYPE_IPV6 => {
            return decode_ip_in(ts, payload.bytes, port, tunnels, payload.tags, depth);
        }
        encap::ETHERTYPE_MPLS | encap::ETHERTYPE_MPLS_MULTICAST => encap::mpls(payload.bytes)?,
        encap::ETHERTYPE_PPPOE_SESSION => encap::pppoe(payload.bytes)?,
        _ => return Err(SkipReason::NotIp),
    };
    decode_inner(ts, opened, port, tunnels, depth)
}

/// Decodes what a tunnel carries, named by the tunnel.
fn decode_inner(
    ts: Timestamp,
    (inner, encap): (Inner<'_>, Encap),
    port: u16,
    tunnels: &TunnelPorts,
    depth: u8,
) -> Result<Segment, SkipReason> {
    if depth >= MAX_TUNNELS {
        return Err(SkipReason::UnsupportedTunnel);
    }
    match inner {
        Inner::Ip(ip) => decode_ip_in(ts, ip, port, tunnels, encap, depth + 1),
        Inner::Ethernet(frame) => {
            let mut payload = link::ethernet(frame)?;
            // The inner frame's own VLAN tags name nothing outside the tunnel.
            payload.tags = encap;
            decode_payload(ts, payload, port, tunnels, depth + 1)
        }
    }
}

/// Decodes an IPv4 or IPv6 packet carrying TCP, or an ICMP error quoting TCP, or a
/// tunnel (VXLAN, Geneve on their default ports, GRE) carrying them.
pub fn decode_ip(ts: Timestamp, ip: &[u8], port: u16) -> Result<Segment, SkipReason> {
    decode_ip_in(ts, ip, port, &TunnelPorts::default(), Encap::None, 0)
}

fn decode_ip_in(
    ts: Timestamp,
    ip: &[u8],
    port: u16,
    tunnels: &TunnelPorts,
    encap: Encap,
    depth: u8,
) -> Result<Segment, SkipReason> {
    let (slice, ext_err) = LaxIpSlice::from_slice(ip).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => SkipReason::Truncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => SkipReason::BadIpHeader,
    })?;
    if let Some((err, _)) = ext_err {
        return Err(match err {
            etherparse::err::ipv6_exts::HeaderSliceError::Len(_) => SkipReason::Truncated,
            etherparse::err::ipv6_exts::HeaderSliceError::Content(_) => SkipReason::BadIpHeader,
        });
    }
    let payload = slice.payload();
    if payload.fragmented {
        return Err(SkipReason::Fragment);
    }
    let src = slice.source_addr();
    let dst = slice.destination_addr();
    match payload.ip_number {
        IpNumber::TCP => {
            let full_len = ip_payload_len(&slice);
            let (sport, dport, tcp) = decode_tcp(payload.payload, full_len)?;
            if sport != port && dport != port {
                if tcp.flags.syn() && !tcp.flags.ack() {
                    return Ok(Segment {
                        ts,
                        src: Endpoint::new(src, sport),
                        dst: Endpoint::new(dst, dport),
                        kind: SegmentKind::SynElsewhere,
                        encap,
                    });
                }
                return Err(SkipReason::OtherPort);
            }
            Ok(Segment {
                ts,
                src: Endpoint::new(src, sport),
                dst: Endpoint::new(dst, dport),
                kind: SegmentKind::Tcp(tcp),
                encap,
            })
        }
        IpNumber::ICMP if matches!(slice, LaxIpSlice::Ipv4(_)) => {
            decode_icmp(ts, src, payload.payload, port, IcmpVersion::V4)
                .map(|seg| Segment { encap, ..seg })
        }
        IpNumber::IPV6_ICMP if matches!(slice, LaxIpSlice::Ipv6(_)) => {
            decode_icmp(ts, src, payload.payload, port, IcmpVersion::V6)
                .map(|seg| Segment { encap, ..seg })
        }
        IpNumber::UDP => {
            let udp = payload.payload;
            if udp.len() < 8 {
                return Err(SkipReason::NotTcp);
            }
            let opened = match tunnels.udp(be16(udp, 2)) {
                Some(UdpTunnel::Vxlan) => encap::vxlan(&udp[8..])?,
                Some(UdpTunnel::Geneve) => encap::geneve(&udp[8..])?,
                None => return Err(SkipReason::NotTcp),
            };
            decode_inner(ts, opened, port, tunnels, depth)
        }
        IpNumber::GRE => decode_inner(ts, encap::gre(payload.payload)?, port, tunnels, depth),
        _ => Err(SkipReason::NotTcp),
    }
}

/// Length of the IP payload as the IP header states it, so that a packet cut by the
/// snaplen still reports its real payload size.
fn ip_payload_len(slice: &LaxIpSlice<'_>) -> usize {
    let captured = slice.payload().payload.len();
    if !slice.payload().incomplete {
        return captured;
    }
    match slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            usize::from(h.total_len()).saturating_sub(h.slice().len())
        }
        LaxIpSlice::Ipv6(v6) => {
            let stated = usize::from(v6.header().payload_length());
            stated
                .saturating_sub(v6.extensions().slice().len())
                .max(captured)
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the TCP header. Only the fixed 20 bytes are required: a SYN cut by a small
/// snaplen (`-s 60`) still yields ports, sequence numbers and flags, just not its options.
fn decode_tcp(tcp: &[u8], ip_payload_len: usize) -> Result<(u16, u16, TcpSegment), SkipReason> {
    if tcp.len() < 20 {
        return Err(SkipReason::Truncated);
    }
    let data_offset = usize::from(tcp[12] >> 4);
    if data_offset < 5 {
        return Err(SkipReason::BadTcpHeader);
    }
    let header_len = data_offset * 4;
    let flags = TcpFlags(tcp[13]);
    let options = if flags.syn() {
        parse_handshake_options(&tcp[20..header_len.min(tcp.len())])
    } else {
        HandshakeOptions::default()
    };
    let payload_len = ip_payload_len.saturating_sub(header_len);
    Ok((
        be16(tcp, 0),
        be16(tcp, 2),
        TcpSegment {
            seq: be32(tcp, 4),
            ack: be32(tcp, 8),
            flags,
            window: be16(tcp, 14),
            payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
            options,
        },
    ))
}

/// Walks the option list by kind/length (RFC 9293 §3.2). Written by hand rather than with
/// etherparse's iterator because that one stops at the first option kind it does not know
/// (TFO, MPTCP, …), and MSS or window scale may come after one. Stops quietly at a
/// malformed or truncated option.
fn parse_handshake_options(mut opts: &[u8]) -> HandshakeOptions {
    let mut out = HandshakeOptions::default();
    while let Some(&kind) = opts.first() {
        match kind {
            0 => break,
            1 => {
                opts = &opts[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = opts.get(1) else { break };
        let len = usize::from(len);
        if len < 2 || len > opts.len() {
            break;
        }
        let body = &opts[2..len];
        match (kind, body.len()) {
            (2, 2) => out.mss = Some(be16(body, 0)),
            (3, 1) => out.window_scale = Some(body[0]),
            (4, 0) => out.sack_permitted = true,
            (8, 8) => out.timestamps = true,
            _ => {}
        }
        opts = &opts[len..];
    }
    out
}

#[derive(Clone, Copy)]
enum IcmpVersion {
    V4,
    V6,
}

/// An ICMP(v6) destination-unreachable error quotes the IP header and at least the first
/// 8 bytes of the TCP header it answers (RFC 792, RFC 4443 §3.1): ports and sequence
/// number, which is all we need to tie it to a flow.
fn decode_icmp(
    ts: Timestamp,
    reporter: IpAddr,
    icmp: &[u8],
    port: u16,
    version: IcmpVersion,
) -> Result<Segment, SkipReason> {
    if icmp.len() < 8 {
        return Err(SkipReason::Truncated);
    }
    let (icmp_type, code) = (icmp[0], icmp[1]);
    let kind = match (version, icmp_type) {
        (IcmpVersion::V4, 3) => Unreachable::from_icmpv4(code),
        (IcmpVersion::V6, 1) => Unreachable::from_icmpv6(code),
        _ => return Err(SkipReason::NotTcp),
    };
    let (quoted, ext_err) = LaxIpSlice::from_slice(&icmp[8..]).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => SkipReason::Truncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => SkipReason::BadIpHeader,
    })?;
    if ext_err.is_some() {
        return Err(SkipReason::Truncated);
    }
    let qp = quoted.payload();
    if qp.ip_number != IpNumber::TCP {
        return Err(SkipReason::NotTcp);
    }
    let tcp = qp.payload;
    if tcp.len() < 8 {
        return Err(SkipReason::Truncated);
    }
    let (sport, dport) = (be16(tcp, 0), be16(tcp, 2));
    if sport != port && dport != port {
        return Err(SkipReason::OtherPort);
    }
    Ok(Segment {
        ts,
        src: Endpoint::new(quoted.source_addr(), sport),
        dst: Endpoint::new(quoted.destination_addr(), dport),
        kind: SegmentKind::Icmp(IcmpError {
            reporter,
            kind,
            quoted_seq: be32(tcp, 4),
        }),
        encap: Encap::None,
    })
}

#[cfg(test)]
pub(crate) mod tests;

//! portsniff's own kernel filter: which packets a live capture asks the kernel for (the
//! port's TCP, what may explain it, and the tunnels that may carry it). The user's
//! expression is ANDed to it in `filter::combine`. Nothing here compiles or runs a
//! filter: this only writes the expression, from the port, the DNAT backend, the tunnel
//! ports and the link type.

use crate::decode::{LinkType, TunnelPorts};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// The deepest MPLS label stack whose IP the filter looks into. An L3VPN has two labels
/// (transport, VPN), three with a fast-reroute or traffic-engineering label; each more
/// costs the kernel a handful of instructions on MPLS frames only.
const MAX_MPLS_LABELS: usize = 4;

/// The kernel filter: the port's TCP; ICMP(v6) unreachable errors (which may answer a
/// SYN); IPv6 packets whose first next-header is an extension header, because libpcap's
/// `tcp port` does not walk IPv6 extension headers and would drop them; and SYNs to any
/// other port, a trickle that tells where clients go when nothing reaches the port
/// (`tcp[]` only reads IPv4, hence the explicit offset 40 + 13 for IPv6 flags).
/// With a DNAT backend for the port, its TCP too: after the translation the packets carry
/// the backend's address and port, and `-i any` or the bridge sees them only so.
///
/// Tunnels: VXLAN and Geneve (UDP to `tunnels`' ports) and GRE, whatever they carry,
/// because the inner port sits at an offset that depends on the inner headers. On an
/// overlay node that hands every tunnelled packet to portsniff, which skips the other
/// ports' after reading a few headers. 802.1Q tags need nothing: Linux strips them before
/// the filter runs. MPLS and PPPoE sessions: the port's TCP and ICMP errors inside them,
/// where the link header's layout is known ([`encapsulated`]).
pub fn bpf_filter(
    port: u16,
    backend: Option<SocketAddr>,
    tunnels: &TunnelPorts,
    link: LinkType,
) -> String {
    let mut own = format!("tcp port {port}");
    for udp in tunnels.all() {
        let _ = write!(own, " or udp dst port {udp}");
    }
    own.push_str(
        " or ip proto 47 or ip6 proto 47 or icmp[icmptype] == icmp-unreach \
         or icmp6[icmp6type] == icmp6-destinationunreach \
         or (ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 51 or ip6[6] == 60)) \
         or (tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn) \
         or (ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)",
    );
    if let Some(b) = backend {
        let _ = write!(own, " or (tcp and host {} and port {})", b.ip(), b.port());
    }
    if let Some(inside) = encapsulated(port, link) {
        let _ = write!(own, " or {inside}");
    }
    own
}

/// The clauses that pass the port's TCP (and ICMP errors) inside MPLS (EtherType 0x8847,
/// 0x8848; stacks of up to [`MAX_MPLS_LABELS`] labels) and PPPoE sessions (0x8864), on
/// the link types whose link header has a fixed layout: Ethernet, and Linux cooked
/// captures v1 and v2 (`-i any`). `None` on the others (loopback, raw IP, tun), where
/// neither can appear.
///
/// Written as plain loads from the start of the link header (`link[…]`), not with
/// libpcap's `mpls` and `pppoes`: those move the offsets of everything parsed after them,
/// so the user's expression ANDed after portsniff's own (or any clause put after them)
/// would read the wrong bytes of every packet. A plain load moves nothing. On a cooked
/// capture libpcap maps the load of the protocol field to the kernel's `SKF_AD_PROTOCOL`
/// and the others past the cooked header, so the filter still runs in the kernel.
fn encapsulated(port: u16, link: LinkType) -> Option<String> {
    let (ethertype_at, payload_at) = match link {
        LinkType::Ethernet => (12, 14),
        LinkType::LinuxSll => (14, 16),
        LinkType::LinuxSll2 => (0, 20),
        _ => return None,
    };
    let ethertype = format!("link[{ethertype_at}:2]");
    // RFC 3032 §2.1: 4-byte entries, the bottom-of-stack bit the lowest of the third
    // byte; what follows the bottom is IP if its version nibble says so (as the decoder
    // reads it).
    let mut stacks = Vec::with_capacity(MAX_MPLS_LABELS);
    for depth in 1..=MAX_MPLS_LABELS {
        let mut s = String::from("(");
        for entry in 1..=depth {
            let bottom = u8::from(entry == depth);
            let _ = write!(
                s,
                "link[{}] & 1 = {bottom} and ",
                payload_at + 4 * entry - 2
            );
        }
        let ip = payload_at + 4 * depth;
        let _ = write!(s, "({} or {}))", ipv4_at(ip, port), ipv6_at(ip, port));
        stacks.push(s);
    }
    // RFC 2516 §4: a 6-byte PPPoE header, then PPP's 2-byte protocol (RFC 1661 §2):
    // 0x0021 IPv4, 0x0057 IPv6.
    let (ppp, ip) = (payload_at + 6, payload_at + 8);
    Some(format!(
        "(({ethertype} = 0x8847 or {ethertype} = 0x8848) and ({})) \
         or ({ethertype} = 0x8864 and ((link[{ppp}:2] = 0x0021 and {}) \
         or (link[{ppp}:2] = 0x0057 and {})))",
        stacks.join(" or "),
        ipv4_at(ip, port),
        ipv6_at(ip, port),
    ))
}

/// An IPv4 packet at link offset `at` carrying TCP from or to `port`, or an ICMP
/// destination unreachable error; the TCP header found by the IHL.
fn ipv4_at(at: usize, port: u16) -> String {
    let ihl = format!("((link[{at}] & 0x0f) << 2)");
    format!(
        "(link[{at}] & 0xf0 = 0x40 and ((link[{proto}] = 6 \
         and (link[{at} + {ihl}:2] = {port} or link[{dport} + {ihl}:2] = {port})) \
         or (link[{proto}] = 1 and link[{at} + {ihl}] = 3)))",
        proto = at + 9,
        dport = at + 2,
    )
}

/// An IPv6 packet at link offset `at` whose first next header is TCP from or to `port`,
/// or ICMPv6 destination unreachable.
fn ipv6_at(at: usize, port: u16) -> String {
    let (next, l4) = (at + 6, at + 40);
    format!(
        "(link[{at}] & 0xf0 = 0x60 and ((link[{next}] = 6 \
         and (link[{l4}:2] = {port} or link[{}:2] = {port})) \
         or (link[{next}] = 58 and link[{l4}] = 1)))",
        l4 + 2
    )
}

#[cfg(test)]
mod tests;

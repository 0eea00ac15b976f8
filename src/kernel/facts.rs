//! The kernel's word on one connection: the witness's events joined to a flow by its
//! endpoints and time, aggregated into [`KernelFacts`] (the flow line's `kernel` object,
//! whose schema the README documents), and the table that holds events until their
//! connection ends.

use super::event::{EventKind, KernelEvent, Path, StatePath};
use super::names::{Name, Names};
use crate::decode::{Endpoint, Timestamp};
use crate::flow::{FlowRecord, Side};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// Events arriving this long before a flow's first packet or after its last still
/// belong to it: a drop is witnessed a few microseconds after the capture saw the
/// packet, a TIME_WAIT socket closes a minute after the last one.
const SLACK_US: u64 = 2_000_000;
/// Events kept for connections not yet ended, at most (a flood of spoofed sources must
/// not grow this without bound); the oldest go first and are counted.
const MAX_EVENTS: usize = 1 << 16;
/// Events whose connection never showed up are forgotten after this long.
const KEEP_US: u64 = 120_000_000;
/// A connection's facts keep this many distinct drops and resets; more are counted in
/// the last one's `count`.
const MAX_FACTS: usize = 16;

/// What the kernel did to one connection, in the order it happened.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KernelFacts {
    /// Packets of the connection the kernel dropped, grouped by reason, place, direction
    /// and kind of segment.
    pub drops: Vec<DropFact>,
    /// Resets TCP itself sent (a reset sent by a firewall's REJECT is not here: the
    /// kernel's TCP did not send it).
    pub resets_sent: Vec<ResetFact>,
    /// Which sides' sockets took a reset and closed.
    pub resets_received: Vec<Side>,
    /// Each side's socket states, as the kernel moved them (`SYN_SENT→ESTABLISHED→…`),
    /// from the record the socket sends when it closes; `None` for a side whose socket
    /// is not in this network namespace, or not closed yet.
    pub states: States,
    /// SYN-ACKs the listener sent again because no ACK came.
    pub synack_retransmits: u32,
    /// The connection overlapped a storm, when the kernel counted drops (and the resets
    /// answering packets) by kind instead of one by one: some of its may be missing
    /// here, counted in the summary's `kernel_events.storm` instead.
    pub summarised: bool,
}

/// Copied, not allocated: a connection's line carries both, once a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct States {
    pub client: Option<StatePath>,
    pub server: Option<StatePath>,
}

/// Packets dropped for one reason at one place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropFact {
    /// `enum skb_drop_reason` without its prefix: `NETFILTER_DROP`, `NO_SOCKET`, …
    pub reason: Name,
    /// The kernel function that dropped them (`nf_hook_slow`), as the kernel names it.
    #[serde(rename = "where")]
    pub place: Option<&'static str>,
    /// `ingress` (received from a device) or `egress` (sent by a local socket).
    pub path: PathName,
    /// `c2s` (client to server) or `s2c`.
    pub dir: Dir,
    /// `SYN`, `SYN-ACK`, `ACK`, `data`, `FIN`, `RST`, or `ICMP` (an ICMP error quoting
    /// the connection).
    pub what: &'static str,
    pub count: u32,
    #[serde(serialize_with = "seconds")]
    pub first_ts: Timestamp,
    #[serde(serialize_with = "seconds")]
    pub last_ts: Timestamp,
    /// The raw reason number, for the rules (names differ between kernels; numbers
    /// between builds do not matter there).
    #[serde(skip)]
    pub reason_code: u32,
}

/// A reset TCP sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResetFact {
    pub by: Side,
    /// `reply`: TCP answered a packet with it (no socket for the packet, a segment out
    /// of place); `socket`: a socket reset its own connection (an abortive close: SO_LINGER
    /// 0, unread data at close, the process died).
    pub origin: ResetOrigin,
    /// `enum sk_rst_reason` without its prefix (`NO_SOCKET`, `TCP_ABORT_ON_CLOSE`, …),
    /// `None` on kernels before 6.10.
    pub reason: Option<Name>,
    /// The process closing the socket, for `socket` resets.
    pub pid: Option<u32>,
    pub process: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetOrigin {
    Reply,
    Socket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    C2s,
    S2c,
}

impl Dir {
    /// As serialized: `c2s`, `s2c`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::C2s => "c2s",
            Dir::S2c => "s2c",
        }
    }

    /// The side that sent the packet.
    pub fn sender(self) -> Side {
        match self {
            Dir::C2s => Side::Client,
            Dir::S2c => Side::Server,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathName {
    Ingress,
    Egress,
}

impl PathName {
    /// As serialized: `ingress`, `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            PathName::Ingress => "ingress",
            PathName::Egress => "egress",
        }
    }
}

impl ResetOrigin {
    /// As serialized: `reply`, `socket`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetOrigin::Reply => "reply",
            ResetOrigin::Socket => "socket",
        }
    }
}

pub(crate) fn seconds<S: serde::Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(ts.as_secs_f64())
}

impl KernelFacts {
    /// Nothing said (overlapping a storm with `summarised`).
    pub const fn quiet(summarised: bool) -> KernelFacts {
        KernelFacts {
            drops: Vec::new(),
            resets_sent: Vec::new(),
            resets_received: Vec::new(),
            states: States {
                client: None,
                server: None,
            },
            synack_retransmits: 0,
            summarised,
        }
    }

    /// Whether the kernel said nothing about the connection (beyond `summarised`).
    pub fn is_quiet(&self) -> bool {
        self.drops.is_empty()
            && self.resets_sent.is_empty()
            && self.resets_received.is_empty()
            && self.states.client.is_none()
            && self.states.server.is_none()
            && self.synack_retransmits == 0
    }

    /// Drops of packets `sender` sent.
    pub fn drops_from(&self, sender: Side) -> impl Iterator<Item = &DropFact> {
        self.drops.iter().filter(move |d| d.dir.sender() == sender)
    }

    /// The reset TCP sent for `side`, if it did.
    pub fn reset_by(&self, side: Side) -> Option<&ResetFact> {
        self.resets_sent.iter().find(|r| r.by == side)
    }

    /// Joins `events` (in arrival order) to the connection `r`.
    pub fn of(r: &FlowRecord, events: &[KernelEvent], names: &Names) -> KernelFacts {
        let mut f = KernelFacts::default();
        let side_of = |e: &Endpoint| -> Option<Side> {
            if *e == r.client {
                Some(Side::Client)
            } else if *e == r.server {
                Some(Side::Server)
            } else {
                None
            }
        };
        for e in events {
            match e.kind {
                EventKind::Drop {
                    reason,
                    path,
                    place,
                    ..
                } => {
                    let Some(mut sender) = side_of(&e.src) else {
                        continue;
                    };
                    let name = names.reasons().drop_known(reason);
                    if not_lost(name, place, path, e.flags, e.icmp.is_some())
                        || (e.icmp.is_none()
                            && answered_in_time_wait(name, place, path, r, sender.other()))
                    {
                        continue;
                    }
                    // An ICMP error quotes the segment it answers: it travels the other
                    // way.
                    if e.icmp.is_some() {
                        sender = sender.other();
                    }
                    let dir = match sender {
                        Side::Client => Dir::C2s,
                        Side::Server => Dir::S2c,
                    };
                    let what = segment_kind(e);
                    let path = match path {
                        Path::Ingress => PathName::Ingress,
                        Path::Egress => PathName::Egress,
                    };
                    let same = |d: &&mut DropFact| {
                        d.reason_code == reason
                            && d.place == place
                            && d.path == path
                            && d.dir == dir
                            && d.what == what
                    };
                    if let Some(d) = f.drops.iter_mut().find(same) {
                        d.count += 1;
                        d.last_ts = e.ts;
                    } else if f.drops.len() < MAX_FACTS {
                        f.drops.push(DropFact {
                            reason: names.reasons().drop_name(reason),
                            place,
                            path,
                            dir,
                            what,
                            count: 1,
                            first_ts: e.ts,
                            last_ts: e.ts,
                            reason_code: reason,
                        });
                    } else if let Some(d) = f.drops.last_mut() {
                        d.count += 1;
                    }
                }
                EventKind::ResetSent { reason, by_socket } => {
                    let Some(by) = side_of(&e.src) else { continue };
                    if f.resets_sent.len() >= MAX_FACTS {
                        continue;
                    }
                    f.resets_sent.push(ResetFact {
                        by,
                        origin: if by_socket {
                            ResetOrigin::Socket
                        } else {
                            ResetOrigin::Reply
                        },
                        reason: names.reasons().reset_name(reason),
                        pid: e.process.map(|p| p.pid),
                        process: e.process.map(|p| p.comm().to_string()),
                    });
                }
                EventKind::ResetReceived => {
                    if let Some(side) = side_of(&e.src) {
                        if !f.resets_received.contains(&side) {
                            f.resets_received.push(side);
                        }
                    }
                }
                EventKind::State { old, new } => {
                    let slot = match side_of(&e.src) {
                        Some(Side::Client) => &mut f.states.client,
                        Some(Side::Server) => &mut f.states.server,
                        None => continue,
                    };
                    slot.get_or_insert_with(|| StatePath::starting(old))
                        .push(new);
                }
                EventKind::Closed { path, .. } => {
                    let slot = match side_of(&e.src) {
                        Some(Side::Client) => &mut f.states.client,
                        Some(Side::Server) => &mut f.states.server,
                        None => continue,
                    };
                    // The whole path, from the kernel's own storage: it replaces
                    // whatever single changes came before it for this socket.
                    *slot = Some(path);
                }
                EventKind::SynAckRetransmit => f.synack_retransmits += 1,
                // Not a connection's (the flow stage keeps it apart).
                EventKind::Storm => {}
            }
        }
        f
    }
}

/// A segment to the side that closed first (so in TIME_WAIT, or FIN_WAIT2 handed to a
/// TIME_WAIT socket), freed by `tcp_v4_rcv`/`tcp_v6_rcv` with no reason: the kernel's
/// TIME_WAIT handling (`tcp_timewait_state_process`) answered it, an ACK for the peer's
/// FIN or a RST for data after the close, and then freed it through the path that counts
/// drops (`discard_it`, `NOT_SPECIFIED`). Answered, not lost: said as a drop, every clean
/// close whose other side's FIN came after the first closer's FIN was acknowledged read
/// "FIN from the server dropped" (staged: a client closing first, the server 300 ms
/// later).
fn answered_in_time_wait(
    reason: Option<&str>,
    place: Option<&str>,
    path: Path,
    r: &FlowRecord,
    receiver: Side,
) -> bool {
    reason == Some("NOT_SPECIFIED")
        && matches!(place, Some("tcp_v4_rcv" | "tcp_v6_rcv"))
        && path == Path::Ingress
        && r.closed_first_by == Some(receiver)
}

/// A RST freed by `tcp_v4_rcv`/`tcp_v6_rcv` with no reason: a mini-socket took it. A
/// pending connection's request socket (`tcp_check_req` removes the request on a RST,
/// then `tcp_v4_rcv` frees the segment through its counting path) or a TIME_WAIT socket
/// (which dies on it). A full socket frees a RST it took with `TCP_RESET`, one it refused
/// with a reason of its own; one for no socket is `NO_SOCKET`. Staged: a client host with
/// no socket for the server's SYN-ACK answers it with a RST, and each such connection read
/// "RST from the client dropped on arrival" while the RST had ended the half-open
/// connection as it should.
fn reset_taken_by_a_mini_socket(
    reason: Option<&str>,
    place: Option<&str>,
    path: Path,
    flags: crate::decode::TcpFlags,
) -> bool {
    reason == Some("NOT_SPECIFIED")
        && matches!(place, Some("tcp_v4_rcv" | "tcp_v6_rcv"))
        && path == Path::Ingress
        && flags.rst()
}

/// Frees the kernel counts as drops that lost nothing, whatever the connection: a copy's
/// ([`not_the_connections`]) or a RST a mini-socket took. Also what a storm's counts
/// leave out, so the summary and the rules agree with the lines.
pub(crate) fn not_lost(
    reason: Option<&str>,
    place: Option<&str>,
    path: Path,
    flags: crate::decode::TcpFlags,
    icmp: bool,
) -> bool {
    not_the_connections(reason)
        || (!icmp && reset_taken_by_a_mini_socket(reason, place, path, flags))
}

/// Drops of a copy, not of the connection's packet: a packet socket (a sniffer,
/// portsniff's own capture included) with no room for its copy, or a socket's queue
/// purged as it closes. The packet itself went on; blaming the connection would be false.
fn not_the_connections(reason: Option<&str>) -> bool {
    matches!(reason, Some("PACKET_SOCK_ERROR" | "QUEUE_PURGE"))
}

/// A client SYN whose sequence number is not `r`'s initial one: another connection's on
/// the same endpoints (a retry from the same port), whatever the times say.
fn another_syn(r: &FlowRecord, e: &KernelEvent) -> bool {
    let syn = e.flags.syn() && !e.flags.ack() && e.icmp.is_none();
    match (
        syn && e.src == r.client && matches!(e.kind, EventKind::Drop { .. }),
        r.client_isn,
    ) {
        (true, Some(isn)) => e.seq != isn,
        _ => false,
    }
}

/// The kind of segment a witnessed packet was, in the words the flow lines use.
fn segment_kind(e: &KernelEvent) -> &'static str {
    what(e.flags, e.icmp.is_some())
}

/// The kind of segment with `flags` (an ICMP error quoting one with `icmp`), in the
/// words the flow lines use.
pub fn what(flags: crate::decode::TcpFlags, icmp: bool) -> &'static str {
    let fl = flags;
    if icmp {
        "ICMP"
    } else if fl.syn() && fl.ack() {
        "SYN-ACK"
    } else if fl.syn() {
        "SYN"
    } else if fl.rst() {
        "RST"
    } else if fl.fin() {
        "FIN"
    } else if fl.0 & crate::decode::TcpFlags::PSH != 0 {
        "data"
    } else {
        "ACK"
    }
}

/// The two endpoints of a connection, in a fixed order: the key a packet and its answer
/// share. Packed as integers (an IPv4 address as its IPv6-mapped form, as a dual-stack
/// socket names it), so that the table's hashing and comparing, once a kernel event, is
/// a few word operations, not a walk through two `IpAddr` enums: under a stream of drops
/// those were the largest part of keeping the events (benches/witness.sh, mix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Pair {
    low: u128,
    high: u128,
    /// The low endpoint's port in the high half.
    ports: u32,
}

fn pair(a: Endpoint, b: Endpoint) -> Pair {
    let packed = |e: Endpoint| {
        let addr = match e.addr {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        (addr, e.port)
    };
    let (x, y) = (packed(a), packed(b));
    let ((low, low_port), (high, high_port)) = if x <= y { (x, y) } else { (y, x) };
    Pair {
        low,
        high,
        ports: u32::from(low_port) << 16 | u32::from(high_port),
    }
}

/// Events waiting for their connection to end, by endpoint pair.
#[derive(Debug, Default)]
pub struct Witnessed {
    /// Looked up once an event and once a connection: ahash, randomly seeded as the flow
    /// table's, since the keys come from the network.
    by_pair: HashMap<Pair, Vec<KernelEvent>, ahash::RandomState>,
    /// The events [`take`](Self::take) joins, kept to be reused: one connection after
    /// another, no allocation for the list.
    mine: Vec<KernelEvent>,
    /// Emptied lists of connections that ended, for the next endpoints to reuse: a list
    /// grown one event at a time was most of the cost of keeping events under a stream
    /// of drops (benches/witness.sh), reallocated as it grew, once a connection.
    spare: Vec<Vec<KernelEvent>>,
    held: usize,
    /// When [`expire`](Self::expire) last swept the table: a sweep visits every entry,
    /// so it runs at most once a second, not once a connection.
    swept: Timestamp,
    /// Events forgotten before their connection ended (the table was full, or no
    /// connection came for them).
    pub forgotten: u64,
    /// Of those, the events forgotten because the table was full: lost to their
    /// connections, so counted with the summary's `kernel_events.lost`.
    pub overflowed: u64,
}

impl Witnessed {
    /// Keeps an event for the connection it belongs to. Listener state changes (no
    /// remote end) are not a connection's: the caller handles them.
    pub fn add(&mut self, e: KernelEvent) {
        if self.held >= MAX_EVENTS {
            // Full (a flood): keep the last ten seconds, or nothing held before; one
            // sweep frees room for many events.
            let before = self.forgotten;
            self.forget_before(Timestamp(e.ts.0.saturating_sub(10_000_000)));
            if self.held >= MAX_EVENTS {
                self.forget_before(e.ts.add_micros(1));
            }
            self.overflowed += self.forgotten - before;
        }
        let spare = &mut self.spare;
        self.by_pair
            .entry(pair(e.src, e.dst))
            .or_insert_with(|| spare.pop().unwrap_or_else(|| Vec::with_capacity(16)))
            .push(e);
        self.held += 1;
    }

    /// The facts of connection `r`, which ended: its events leave the table (later ones,
    /// a new connection on the same endpoints, stay).
    pub fn take(&mut self, r: &FlowRecord, names: &Names) -> KernelFacts {
        // Nothing held (a storm counts its events in the kernel): no key to hash.
        if self.by_pair.is_empty() {
            return KernelFacts::default();
        }
        let key = pair(r.client, r.server);
        let Some(events) = self.by_pair.get_mut(&key) else {
            return KernelFacts::default();
        };
        let until = r.last_ts.add_micros(SLACK_US);
        let from = Timestamp(r.first_ts.0.saturating_sub(SLACK_US));
        let mut mine = std::mem::take(&mut self.mine);
        mine.clear();
        mine.extend(
            events
                .iter()
                .filter(|e| e.ts >= from && e.ts <= until && !another_syn(r, e))
                .copied(),
        );
        // Older events belonged to an earlier connection on these endpoints that ended
        // without them; newer ones, and SYNs of another connection, to the next.
        events.retain(|e| e.ts > until || (e.ts >= from && another_syn(r, e)));
        self.held -= mine.len();
        if events.is_empty() {
            if let Some(list) = self.by_pair.remove(&key) {
                self.keep_spare(list);
            }
        }
        let facts = KernelFacts::of(r, &mine, names);
        self.mine = mine;
        facts
    }

    /// The facts so far of a connection still going (a pending notice), leaving its
    /// events in place.
    pub fn peek(&self, r: &FlowRecord, names: &Names) -> KernelFacts {
        match self.by_pair.get(&pair(r.client, r.server)) {
            Some(events) => KernelFacts::of(r, events, names),
            None => KernelFacts::default(),
        }
    }

    /// Forgets events older than [`KEEP_US`] before `now` (at most once a second).
    pub fn expire(&mut self, now: Timestamp) {
        if now.micros_since(self.swept) < 1_000_000 {
            return;
        }
        self.swept = now;
        self.forget_before(Timestamp(now.0.saturating_sub(KEEP_US)));
    }

    /// Keeps an emptied list for reuse, a bounded number of them and none that grew
    /// large (a flood's endpoints).
    fn keep_spare(&mut self, list: Vec<KernelEvent>) {
        const SPARE: usize = 1024;
        if self.spare.len() < SPARE && list.capacity() <= 64 {
            self.spare.push(list);
        }
    }

    fn forget_before(&mut self, before: Timestamp) {
        let mut dropped = 0usize;
        self.by_pair.retain(|_, events| {
            let n = events.len();
            events.retain(|e| e.ts >= before);
            dropped += n - events.len();
            !events.is_empty()
        });
        self.held -= dropped;
        self.forgotten += dropped as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;
    use crate::diagnose::tests::record;
    use crate::flow::Outcome;
    use crate::kernel::event::{Process, TcpState};
    use crate::kernel::names::Reasons;

    fn names() -> Names {
        Names::with(Reasons::with(
            &[(12, "NETFILTER_DROP"), (7, "TCP_LISTEN_OVERFLOW")],
            &[(1, "NO_SOCKET")],
        ))
    }

    fn ep(s: &str) -> Endpoint {
        let (addr, port) = s.rsplit_once(':').unwrap();
        Endpoint::new(addr.parse().unwrap(), port.parse().unwrap())
    }

    fn event(ts: u64, kind: EventKind, src: &str, dst: &str, flags: u8) -> KernelEvent {
        KernelEvent {
            ts: Timestamp(ts),
            kind,
            src: ep(src),
            dst: ep(dst),
            seq: 0,
            flags: TcpFlags(flags),
            icmp: None,
            process: None,
        }
    }

    const C: &str = "127.0.0.1:40000";
    const S: &str = "127.0.0.1:61999";

    fn drop(ts: u64, src: &str, dst: &str, flags: u8, path: Path) -> KernelEvent {
        let kind = EventKind::Drop {
            reason: 12,
            location: 0xffff_ffff_81a0_0010,
            path,
            place: Some("nf_hook_slow"),
        };
        event(ts, kind, src, dst, flags)
    }

    fn flow(outcome: Outcome, first: u64, last: u64) -> FlowRecord {
        FlowRecord {
            client: ep(C),
            server: ep(S),
            first_ts: Timestamp(first),
            last_ts: Timestamp(last),
            ..record(outcome, S)
        }
    }

    #[test]
    fn three_dropped_syns_are_one_fact_with_their_count_and_times() {
        let evs: Vec<_> = (0..3)
            .map(|i| drop(1_000 + i * 1_000_000, C, S, TcpFlags::SYN, Path::Ingress))
            .collect();
        let f = KernelFacts::of(&flow(Outcome::Unanswered, 1_000, 2_001_000), &evs, &names());
        assert_eq!(f.drops.len(), 1);
        let d = &f.drops[0];
        assert_eq!(
            (&*d.reason, d.place, d.what, d.count),
            ("NETFILTER_DROP", Some("nf_hook_slow"), "SYN", 3)
        );
        assert_eq!((d.dir, d.path), (Dir::C2s, PathName::Ingress));
        assert_eq!(
            (d.first_ts, d.last_ts),
            (Timestamp(1_000), Timestamp(2_001_000))
        );
    }

    #[test]
    fn a_sniffers_copy_dropped_is_not_the_connections_drop() {
        let names = Names::with(Reasons::with(
            &[(12, "NETFILTER_DROP"), (70, "PACKET_SOCK_ERROR")],
            &[],
        ));
        let copy = KernelEvent {
            kind: EventKind::Drop {
                reason: 70,
                location: 0,
                path: Path::Egress,
                place: None,
            },
            ..drop(5, S, C, TcpFlags::RST, Path::Egress)
        };
        let f = KernelFacts::of(&flow(Outcome::Refused, 0, 10), &[copy], &names);
        assert!(f.drops.is_empty(), "{f:?}");
    }

    /// The server's FIN, freed without a reason by `tcp_v4_rcv` after the client (which
    /// closed first) had become a TIME_WAIT socket: it was answered, not lost.
    #[test]
    fn a_fin_freed_by_time_wait_handling_is_answered_not_dropped() {
        let names = Names::with(Reasons::with(
            &[(12, "NETFILTER_DROP"), (2, "NOT_SPECIFIED")],
            &[],
        ));
        let freed = |src, dst| KernelEvent {
            kind: EventKind::Drop {
                reason: 2,
                location: 0,
                path: Path::Ingress,
                place: Some("tcp_v4_rcv"),
            },
            ..drop(8, src, dst, TcpFlags::FIN | TcpFlags::ACK, Path::Ingress)
        };
        let closed = |first| FlowRecord {
            closed_first_by: Some(first),
            ..flow(Outcome::Closed, 0, 10)
        };
        let f = KernelFacts::of(&closed(Side::Client), &[freed(S, C)], &names);
        assert!(f.drops.is_empty(), "to the side in TIME_WAIT: {f:?}");
        // The same to the side that did not close first is no TIME_WAIT's doing.
        let f = KernelFacts::of(&closed(Side::Server), &[freed(S, C)], &names);
        assert_eq!(f.drops.len(), 1, "{f:?}");
        // Nor is a drop with a reason, even to the side in TIME_WAIT.
        let firewall = drop(8, S, C, TcpFlags::FIN | TcpFlags::ACK, Path::Ingress);
        let f = KernelFacts::of(&closed(Side::Client), &[firewall], &names);
        assert_eq!(f.drops.len(), 1, "{f:?}");
    }

    #[test]
    fn a_rst_a_half_open_connections_request_socket_took_is_not_dropped() {
        let names = Names::with(Reasons::with(
            &[(12, "NETFILTER_DROP"), (2, "NOT_SPECIFIED")],
            &[],
        ));
        let freed = |flags| KernelEvent {
            kind: EventKind::Drop {
                reason: 2,
                location: 0,
                path: Path::Ingress,
                place: Some("tcp_v4_rcv"),
            },
            ..drop(8, C, S, flags, Path::Ingress)
        };
        let half_open = flow(Outcome::HandshakeIncomplete, 0, 10);
        let f = KernelFacts::of(&half_open, &[freed(TcpFlags::RST)], &names);
        assert!(f.drops.is_empty(), "the RST ended the request: {f:?}");
        // Any other segment freed there without a reason is still said.
        let f = KernelFacts::of(&half_open, &[freed(TcpFlags::ACK)], &names);
        assert_eq!(f.drops.len(), 1, "{f:?}");
        // And a RST a firewall dropped is a drop.
        let f = KernelFacts::of(
            &half_open,
            &[drop(8, C, S, TcpFlags::RST, Path::Ingress)],
            &names,
        );
        assert_eq!(f.drops.len(), 1, "{f:?}");
    }

    #[test]
    fn a_syn_ack_dropped_on_its_way_out_is_the_servers_on_egress() {
        let evs = [drop(5, S, C, TcpFlags::SYN | TcpFlags::ACK, Path::Egress)];
        let f = KernelFacts::of(&flow(Outcome::Unanswered, 0, 10), &evs, &names());
        assert_eq!((f.drops[0].what, f.drops[0].dir), ("SYN-ACK", Dir::S2c));
        assert_eq!(f.drops[0].path, PathName::Egress);
        assert_eq!(f.drops_from(Side::Server).count(), 1);
    }

    #[test]
    fn an_icmp_error_quoting_the_syn_travels_from_server_to_client() {
        let mut e = drop(5, C, S, TcpFlags::SYN, Path::Ingress);
        e.icmp = Some((3, 1));
        let f = KernelFacts::of(&flow(Outcome::Unreachable, 0, 10), &[e], &names());
        assert_eq!((f.drops[0].what, f.drops[0].dir), ("ICMP", Dir::S2c));
    }

    #[test]
    fn resets_tell_a_reply_from_a_socket_closed_by_its_process() {
        let reply = event(
            5,
            EventKind::ResetSent {
                reason: Some(1),
                by_socket: false,
            },
            S,
            C,
            TcpFlags::RST,
        );
        let mut abort = event(
            6,
            EventKind::ResetSent {
                reason: None,
                by_socket: true,
            },
            C,
            S,
            TcpFlags::RST,
        );
        abort.process = Some(Process::test("curl", 77));
        let f = KernelFacts::of(&flow(Outcome::Reset, 0, 10), &[reply, abort], &names());
        let by_server = f.reset_by(Side::Server).unwrap();
        assert_eq!(
            (by_server.origin, by_server.reason.as_deref()),
            (ResetOrigin::Reply, Some("NO_SOCKET"))
        );
        let by_client = f.reset_by(Side::Client).unwrap();
        assert_eq!(by_client.origin, ResetOrigin::Socket);
        assert_eq!(
            (by_client.process.as_deref(), by_client.pid),
            (Some("curl"), Some(77))
        );
    }

    #[test]
    fn socket_states_are_kept_per_side_in_order() {
        let st = |ts, src, dst, old, new| event(ts, EventKind::State { old, new }, src, dst, 0);
        let evs = [
            st(1, C, S, TcpState::SynSent, TcpState::Established),
            st(2, S, C, TcpState::SynRecv, TcpState::Established),
            st(3, C, S, TcpState::Established, TcpState::FinWait1),
        ];
        let f = KernelFacts::of(&flow(Outcome::Closed, 0, 10), &evs, &names());
        assert_eq!(
            f.states.client.map(|p| p.to_string()).as_deref(),
            Some("SYN_SENT→ESTABLISHED→FIN_WAIT1")
        );
        assert_eq!(
            f.states.server.map(|p| p.to_string()).as_deref(),
            Some("SYN_RECV→ESTABLISHED")
        );
    }

    #[test]
    fn each_sockets_path_sent_at_its_close_is_that_sides_states() {
        use crate::kernel::event::StatePath;
        use TcpState::*;
        let closed = |ts, src, dst, states: &[TcpState], cut| {
            let mut path = StatePath::of(states);
            path.cut = cut;
            let kind = EventKind::Closed {
                path,
                retransmits: 0,
            };
            event(ts, kind, src, dst, 0)
        };
        let evs = [
            closed(
                9,
                S,
                C,
                &[SynRecv, Established, FinWait1, FinWait2, Close],
                false,
            ),
            closed(10, C, S, &[Established, CloseWait, LastAck, Close], true),
        ];
        let f = KernelFacts::of(&flow(Outcome::Closed, 0, 10), &evs, &names());
        assert_eq!(
            f.states.server.map(|p| p.to_string()).as_deref(),
            Some("SYN_RECV→ESTABLISHED→FIN_WAIT1→FIN_WAIT2→CLOSE")
        );
        assert_eq!(
            f.states.client.map(|p| p.to_string()).as_deref(),
            Some("…→ESTABLISHED→CLOSE_WAIT→LAST_ACK→CLOSE"),
            "older states shifted out are said to be missing"
        );
    }

    #[test]
    fn a_connection_takes_only_its_own_events_and_the_next_one_on_the_same_ports_keeps_its() {
        let mut w = Witnessed::default();
        let n = names();
        w.add(drop(1_000, C, S, TcpFlags::SYN, Path::Ingress));
        // The same endpoints, a minute later: another connection.
        w.add(drop(60_000_000, C, S, TcpFlags::SYN, Path::Ingress));
        let first = w.take(&flow(Outcome::Unanswered, 1_000, 1_000), &n);
        assert_eq!(first.drops[0].count, 1);
        let pending = w.peek(&flow(Outcome::Unanswered, 60_000_000, 60_000_000), &n);
        assert_eq!(pending.drops[0].count, 1);
        let second = w.take(&flow(Outcome::Unanswered, 60_000_000, 60_000_000), &n);
        assert_eq!(second.drops[0].first_ts, Timestamp(60_000_000));
        assert_eq!(
            w.take(&flow(Outcome::Unanswered, 0, 0), &n),
            KernelFacts::default()
        );
    }

    #[test]
    fn a_retry_from_the_same_port_keeps_its_own_dropped_syn() {
        let mut w = Witnessed::default();
        let n = names();
        let syn = |ts, seq| KernelEvent {
            seq,
            ..drop(ts, C, S, TcpFlags::SYN, Path::Ingress)
        };
        // Two connections from the same port 100 ms apart, both ended when their
        // lines are released: each takes the SYN with its own sequence number.
        w.add(syn(1_000, 111));
        w.add(syn(101_000, 222));
        let first = FlowRecord {
            client_isn: Some(111),
            ..flow(Outcome::Unanswered, 1_000, 1_000)
        };
        let second = FlowRecord {
            client_isn: Some(222),
            ..flow(Outcome::Unanswered, 101_000, 101_000)
        };
        let f1 = w.take(&first, &n);
        assert_eq!(
            (f1.drops.len(), f1.drops[0].first_ts),
            (1, Timestamp(1_000))
        );
        let f2 = w.take(&second, &n);
        assert_eq!(
            (f2.drops.len(), f2.drops[0].first_ts),
            (1, Timestamp(101_000))
        );
    }

    #[test]
    fn events_no_connection_claims_are_forgotten_and_counted() {
        let mut w = Witnessed::default();
        w.add(drop(
            1_000,
            "10.0.0.9:1234",
            S,
            TcpFlags::SYN,
            Path::Ingress,
        ));
        w.expire(Timestamp(1_000 + KEEP_US + 1));
        assert_eq!(w.forgotten, 1);
        assert_eq!(w.held, 0);
    }

    #[test]
    fn a_flood_of_events_stays_within_the_cap() {
        let mut w = Witnessed::default();
        for i in 0..(MAX_EVENTS as u64 + 10) {
            let src = format!(
                "10.0.{}.{}:{}",
                i / 60_000 % 250,
                i / 250 % 250,
                1024 + i % 60_000
            );
            w.add(drop(i, &src, S, TcpFlags::SYN, Path::Ingress));
        }
        assert!(w.held <= MAX_EVENTS);
        assert!(w.forgotten > 0);
        assert_eq!(w.overflowed, w.forgotten, "every one lost to a full table");
    }
}

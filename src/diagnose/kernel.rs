//! The kernel witness's facts, accumulated over the run for the rules: what was dropped
//! where and why, where each RST came from (this host's TCP, a socket closed by its
//! process, a firewall REJECT, or somewhere else), which ICMP errors answered SYNs a local
//! firewall had dropped, and when listeners came and went. Each connection's
//! [`KernelFacts`] is added once, with its final record.

use crate::decode::{Endpoint, Timestamp};
use crate::flow::{FlowRecord, Outcome, Side};
use crate::kernel::facts::{Dir, PathName};
use crate::kernel::names::Name;
use crate::kernel::storm::{Tally, TallyKind};
use crate::kernel::{EventKind, KernelEvent, KernelFacts, Names, ResetOrigin, TcpState};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// Drops of one kind: (reason, kernel function, path, direction, segment kind).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DropKey {
    pub reason: Name,
    pub place: Option<&'static str>,
    pub path: PathKey,
    pub sender: Side,
    pub what: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKey {
    Ingress,
    Egress,
}

impl PathKey {
    /// As the flow lines' `path`.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKey::Ingress => "ingress",
            PathKey::Egress => "egress",
        }
    }
}

/// Packets dropped in connections of one fate, and how many connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fate {
    pub flows: u64,
    pub packets: u64,
}

/// How many, in how many connections, when, and for which endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropTally {
    pub packets: u64,
    pub flows: u64,
    /// Flows whose connection still completed (the drop was retried past).
    pub flows_recovered: u64,
    /// Of those, the connections that never got an answer at all, and their packets.
    pub unanswered: Fate,
    /// The connections that completed anyway, and their packets.
    pub recovered: Fate,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    /// The first server endpoint they were for.
    pub server: Endpoint,
    /// Server endpoints, the first [`ENDPOINTS_CAP`].
    pub servers: BTreeSet<Endpoint>,
    /// Distinct client addresses, the first [`SOURCES_CAP`] (a flood's sources).
    pub clients: BTreeSet<IpAddr>,
    /// Of `packets`, those a storm counted ([`KernelEvidence::storm_drops`]): their
    /// sources are not among `clients`.
    pub storm: u64,
}

impl DropTally {
    fn new(server: Endpoint, first_ts: Timestamp, last_ts: Timestamp) -> DropTally {
        DropTally {
            packets: 0,
            flows: 0,
            flows_recovered: 0,
            unanswered: Fate::default(),
            recovered: Fate::default(),
            first_ts,
            last_ts,
            server,
            servers: BTreeSet::new(),
            clients: BTreeSet::new(),
            storm: 0,
        }
    }

    /// Distinct client addresses, and whether there may be more (the cap was reached,
    /// or a storm counted some of the drops without their sources).
    pub fn client_count(&self) -> (u64, bool) {
        (
            self.clients.len() as u64,
            self.clients.len() >= SOURCES_CAP || self.storm > 0,
        )
    }
}

/// Drops of one kind a storm counted (the program counted them instead of sending each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub packets: u64,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
}

/// What kind of thing dropped a packet, from the kernel's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropClass {
    /// The packet's addresses cannot be right here (`ip_route_input` calls them martian):
    /// a spoofed source, a source that is this host's own, a reverse path through another
    /// interface. A flood or a routing story.
    Martian,
    /// The listener's accept queue was full (`tcp_check_req`: the handshake ACK found no
    /// room).
    ListenOverflow,
    /// TCP itself set the segment aside as not fitting its connection (old, duplicate,
    /// out of window, after close) or found no socket for it: part of TCP's ordinary
    /// work, answered by TCP where an answer is due.
    Tcp,
    /// Something on the packet's path: a firewall rule, a queue, routing, neighbour
    /// resolution, a BPF program, a checksum.
    Path,
}

impl DropClass {
    /// The class of `enum skb_drop_reason` name `reason` (without its prefix), dropped in
    /// the kernel function `place` when known.
    pub fn of(reason: &str, place: Option<&str>) -> DropClass {
        if reason == "NO_SOCKET" && place.is_some_and(is_cookie_check) {
            // `cookie_v4_check`/`cookie_v6_check` say NO_SOCKET when the ACK carrying a
            // valid SYN cookie could not become a socket: `tcp_get_cookie_sock` →
            // `syn_recv_sock` returns none when the accept queue is full (it counts
            // ListenOverflows), rarely for lack of memory. There is a listener: its queue
            // had no room.
            return DropClass::ListenOverflow;
        }
        match reason {
            "IP_INVALID_SOURCE" | "IP_RPFILTER" | "IP_LOCAL_SOURCE" | "IP_LOCALNET"
            | "IP_INVALID_DEST" => DropClass::Martian,
            "TCP_LISTEN_OVERFLOW" => DropClass::ListenOverflow,
            // Checksums and signatures are the packet's fault, not the connection's.
            "TCP_CSUM" | "TCP_MD5NOTFOUND" | "TCP_MD5UNEXPECTED" | "TCP_MD5FAILURE"
            | "TCP_AONOTFOUND" | "TCP_AOUNEXPECTED" | "TCP_AOKEYNOTFOUND" | "TCP_AOFAILURE"
            | "TCP_AUTH_HDR" | "TCP_MINTTL" => DropClass::Path,
            "NO_SOCKET" | "NOT_SPECIFIED" | "QUEUE_PURGE" | "SOCKET_CLOSE" => DropClass::Tcp,
            r if r.starts_with("TCP_") => DropClass::Tcp,
            _ => DropClass::Path,
        }
    }
}

/// Whether the kernel function `place` is where a SYN cookie's ACK is checked and turned
/// into a socket.
pub fn is_cookie_check(place: &str) -> bool {
    matches!(place, "cookie_v4_check" | "cookie_v6_check")
}

/// Unanswered connections that the witness saw the kernel drop a packet of (the
/// client's SYN, or the server's answer on its way out): the drop findings explain them,
/// and inference covers only the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explained {
    pub flows: u64,
    /// Their SYNs, retransmissions included.
    pub syns: u64,
    pub servers: BTreeMap<Endpoint, u64>,
}

/// Where a reset in the capture came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResetSource {
    /// TCP answered a segment (`reason`: NO_SOCKET, …).
    TcpReply { reason: Option<Name> },
    /// A socket reset its own connection as it was closed.
    SocketClose {
        reason: Option<Name>,
        process: Option<(String, u32)>,
    },
    /// Netfilter dropped the peer's packet (on arrival, or as this host sent it) and a
    /// RST came instead: a REJECT rule. Netfilter's RST (`nf_send_reset`) is not TCP's,
    /// so the reset tracepoint never sees it.
    FirewallReject { path: PathKey },
    /// Not this host's TCP, and no netfilter drop seen: another host, or a REJECT on a
    /// path the witness does not see.
    NotLocalTcp,
    /// The server's listening socket was closed with the connection still in its accept
    /// queue, never accept()ed: `inet_csk_listen_stop` disconnects each waiting child,
    /// which sends a RST (`TCP_STATE`, as an SO_LINGER 0 close does), in the name of the
    /// process closing the listener.
    ListenerClosed { process: Option<(String, u32)> },
}

/// Whether a connection that got no answer has a witnessed drop the drop findings
/// explain: one of the client's SYNs (for any reason), or one of the server's packets on
/// its way out (for a reason on the path).
fn explains_silence(k: &KernelFacts) -> bool {
    k.drops.iter().any(|d| match d.dir.sender() {
        Side::Client => d.what == "SYN",
        Side::Server => {
            d.path == PathName::Egress && DropClass::of(&d.reason, d.place) == DropClass::Path
        }
    })
}

impl ResetSource {
    /// The JSON name of where it came from (a finding's `origin`).
    pub fn origin(&self) -> &'static str {
        match self {
            ResetSource::TcpReply { .. } => "reply",
            ResetSource::SocketClose { .. } => "socket",
            ResetSource::FirewallReject { .. } => "firewall",
            ResetSource::NotLocalTcp => "elsewhere",
            ResetSource::ListenerClosed { .. } => "listener_closed",
        }
    }

    /// The kernel's `sk_rst_reason`, for the resets TCP sent.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ResetSource::TcpReply { reason } | ResetSource::SocketClose { reason, .. } => {
                reason.as_deref()
            }
            ResetSource::ListenerClosed { .. } => Some("TCP_STATE"),
            ResetSource::FirewallReject { .. } | ResetSource::NotLocalTcp => None,
        }
    }
}

/// Serialized as the keys a finding's evidence gains from it: `origin`, then
/// `reset_reason`, `process` and `pid` where the kernel gave them.
impl serde::Serialize for ResetSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("origin", self.origin())?;
        match self {
            ResetSource::TcpReply { reason } => m.serialize_entry("reset_reason", reason)?,
            ResetSource::SocketClose { reason, process } => {
                m.serialize_entry("reset_reason", reason)?;
                m.serialize_entry("process", &process.as_ref().map(|(name, _)| name))?;
                m.serialize_entry("pid", &process.as_ref().map(|(_, pid)| pid))?;
            }
            ResetSource::ListenerClosed { process } => {
                m.serialize_entry("process", &process.as_ref().map(|(name, _)| name))?;
                m.serialize_entry("pid", &process.as_ref().map(|(_, pid)| pid))?;
            }
            ResetSource::FirewallReject { .. } | ResetSource::NotLocalTcp => {}
        }
        m.end()
    }
}

/// How long after a listener's close the RST of a connection it held may be captured.
const LISTEN_STOP_SLACK_US: u64 = 50_000;

/// A listener on the port appeared or went away (a socket entered or left LISTEN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerChange {
    pub ts: Timestamp,
    pub endpoint: Endpoint,
    pub listening: bool,
    pub process: Option<(String, u32)>,
}

/// Everything the witness said, over the run.
#[derive(Clone, Debug, Default)]
pub struct KernelEvidence {
    /// Connections that came with the kernel's facts (0: no witness).
    pub flows: u64,
    pub drops: BTreeMap<DropKey, DropTally>,
    /// Resets that tore down accepted connections (those `Evidence::resets` counts), by
    /// who sent them and where they came from.
    pub resets: BTreeMap<(Side, ResetSource), u64>,
    /// Refused connections (the SYN answered by a RST in the server's name), by server
    /// endpoint and where that RST came from.
    pub refusals: BTreeMap<(Endpoint, ResetSource), u64>,
    /// Connection attempts answered by ICMP whose SYN netfilter had dropped on this host
    /// (a REJECT rule here sent the error), by ICMP kind (`Unreachable::as_str`): where
    /// the SYN was dropped and how many.
    pub icmp_rejected: BTreeMap<&'static str, (PathKey, u64)>,
    /// SYN-ACK retransmissions the kernel made.
    pub synack_retransmits: u64,
    pub listener_changes: Vec<ListenerChange>,
    /// Unanswered connections whose drop the kernel witnessed.
    pub explained: Explained,
    /// Drops the program counted in storms instead of sending them, by kind (as last
    /// read: the counts over the run so far). Their connections are not known one by
    /// one: [`all_drops`](Self::all_drops) adds them to the connections' own.
    pub storm_drops: BTreeMap<DropKey, Counted>,
    /// Resets TCP sent in answer to packets, counted in storms: by the side that sent
    /// them and the kernel's reason.
    pub storm_resets: BTreeMap<(Side, Option<Name>), u64>,
    /// Of those, by the side that sent them (`Side::index`), the reason given most, if
    /// any were: worked out when the counts are read, not for each connection in the
    /// storm (which every refused one asks).
    storm_reply: [Option<Option<Name>>; 2],
    /// Connections whose time overlapped a storm: their lines are `summarised`, and what
    /// their own facts lack is judged by the storm's counts.
    pub storm_flows: u64,
    /// The server endpoint of the last connection added: the one a storm's drops without
    /// a connection of their own are shown for.
    last_server: Option<Endpoint>,
}

/// Distinct client addresses kept per drop kind, at most: enough to say "from thousands
/// of sources" without growing with a flood.
pub const SOURCES_CAP: usize = 4096;
/// Server endpoints kept per drop kind, at most.
pub const ENDPOINTS_CAP: usize = 16;

impl KernelEvidence {
    pub fn add(&mut self, r: &FlowRecord, k: &KernelFacts) {
        self.flows += 1;
        self.last_server = Some(r.server);
        self.synack_retransmits += u64::from(k.synack_retransmits);
        for d in &k.drops {
            let key = DropKey {
                reason: d.reason.clone(),
                place: d.place,
                path: match d.path {
                    PathName::Ingress => PathKey::Ingress,
                    PathName::Egress => PathKey::Egress,
                },
                sender: match d.dir {
                    Dir::C2s => Side::Client,
                    Dir::S2c => Side::Server,
                },
                what: d.what,
            };
            self.drop_of(key, r, u64::from(d.count), d.first_ts, d.last_ts, true);
        }
        // In a storm, the SYN drops of a connection may have been counted, not sent: one
        // that retried or never got an answer, with no SYN drop of its own, is put with
        // the storm's SYN drops (the kind it counted most of), whose packets the storm
        // counted already.
        let storm_syns = (k.summarised
            && (r.outcome == Outcome::Unanswered || r.syn_count > 1)
            && !k.drops_from(Side::Client).any(|d| d.what == "SYN"))
        .then(|| self.storm_syn_key())
        .flatten();
        if let Some(key) = &storm_syns {
            self.drop_of(
                key.clone(),
                r,
                u64::from(r.syn_count),
                r.first_ts,
                r.last_ts,
                false,
            );
        }
        if k.summarised {
            self.storm_flows += 1;
        }
        if r.outcome == Outcome::Unanswered && (explains_silence(k) || storm_syns.is_some()) {
            self.explained.flows += 1;
            self.explained.syns += u64::from(r.syn_count);
            *self.explained.servers.entry(r.server).or_default() += 1;
        }
        if let Some(side) = r.reset_by {
            let source = self.reset_source(r, k, side);
            match r.outcome {
                Outcome::Refused => *self.refusals.entry((r.server, source)).or_default() += 1,
                // What `Evidence::add` counts as a reset of an accepted connection.
                Outcome::Reset | Outcome::HandshakeIncomplete => {
                    *self.resets.entry((side, source)).or_default() += 1;
                }
                Outcome::Unanswered
                | Outcome::Unreachable
                | Outcome::Established
                | Outcome::Closed
                | Outcome::HalfClosed => {}
            }
        }
        if let (Outcome::Unreachable, Some(icmp)) = (r.outcome, r.icmp) {
            if let Some(path) = Self::netfilter_dropped(k, Side::Client, "SYN") {
                self.icmp_rejected
                    .entry(icmp.kind.as_str())
                    .or_insert((path, 0))
                    .1 += 1;
            }
        }
    }

    /// Counts `packets` dropped of kind `key` in connection `r` (`counted`: the packets
    /// are counted here, not by a storm).
    fn drop_of(
        &mut self,
        key: DropKey,
        r: &FlowRecord,
        packets: u64,
        first_ts: Timestamp,
        last_ts: Timestamp,
        counted: bool,
    ) {
        let t = self
            .drops
            .entry(key)
            .or_insert_with(|| DropTally::new(r.server, first_ts, last_ts));
        let recovered = r.outcome == Outcome::Established || r.handshake_rtt_us.is_some();
        if counted {
            t.packets += packets;
        }
        t.flows += 1;
        t.flows_recovered += u64::from(recovered);
        let fate = if r.outcome == Outcome::Unanswered {
            Some(&mut t.unanswered)
        } else if recovered {
            Some(&mut t.recovered)
        } else {
            None
        };
        if let Some(fate) = fate {
            fate.flows += 1;
            fate.packets += packets;
        }
        t.first_ts = t.first_ts.min(first_ts);
        t.last_ts = t.last_ts.max(last_ts);
        if t.servers.len() < ENDPOINTS_CAP {
            t.servers.insert(r.server);
        }
        if t.clients.len() < SOURCES_CAP {
            t.clients.insert(r.client.addr);
        }
    }

    /// The kind of client SYN drop a storm counted most of.
    fn storm_syn_key(&self) -> Option<DropKey> {
        self.storm_drops
            .iter()
            .filter(|(key, _)| key.sender == Side::Client && key.what == "SYN")
            .max_by_key(|(_, c)| c.packets)
            .map(|(key, _)| key.clone())
    }

    /// The program's storm counts, as just read (over the run so far: they replace the
    /// last read's).
    pub fn storm_counted(&mut self, tallies: &[Tally], names: &Names) {
        self.storm_drops.clear();
        self.storm_resets.clear();
        // As a connection's own drops: frees that lost nothing are none.
        for t in tallies.iter().filter(|t| !t.lost_nothing(names)) {
            let sender = t.dir.sender();
            match t.kind {
                TallyKind::Drop {
                    reason,
                    path,
                    place,
                    ..
                } => {
                    let key = DropKey {
                        reason: names.reasons().drop_name(reason),
                        place,
                        path: match path {
                            crate::kernel::event::Path::Ingress => PathKey::Ingress,
                            crate::kernel::event::Path::Egress => PathKey::Egress,
                        },
                        sender,
                        what: t.what(),
                    };
                    let c = self.storm_drops.entry(key).or_insert(Counted {
                        packets: 0,
                        first_ts: t.first_ts,
                        last_ts: t.last_ts,
                    });
                    c.packets += t.count;
                    c.first_ts = c.first_ts.min(t.first_ts);
                    c.last_ts = c.last_ts.max(t.last_ts);
                }
                TallyKind::ResetSent { reason } => {
                    *self
                        .storm_resets
                        .entry((sender, names.reasons().reset_name(reason)))
                        .or_default() += t.count;
                }
            }
        }
        for side in [Side::Client, Side::Server] {
            self.storm_reply[side.index()] = self
                .storm_resets
                .iter()
                .filter(|((by, _), _)| *by == side)
                .max_by_key(|(_, n)| **n)
                .map(|((_, reason), _)| reason.clone());
        }
    }

    /// Every drop: the connections' own, and those storms counted, added to the same
    /// kinds (a kind only a storm saw is shown for the last connection's server).
    pub fn all_drops(&self) -> Cow<'_, BTreeMap<DropKey, DropTally>> {
        if self.storm_drops.is_empty() {
            return Cow::Borrowed(&self.drops);
        }
        let mut all = self.drops.clone();
        let server = self
            .last_server
            .unwrap_or(Endpoint::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        for (key, c) in &self.storm_drops {
            let t = all
                .entry(key.clone())
                .or_insert_with(|| DropTally::new(server, c.first_ts, c.last_ts));
            t.packets += c.packets;
            t.storm += c.packets;
            t.first_ts = t.first_ts.min(c.first_ts);
            t.last_ts = t.last_ts.max(c.last_ts);
        }
        Cow::Owned(all)
    }

    /// Where the RST `side` sent came from: TCP's own reset if the kernel witnessed one;
    /// otherwise a REJECT rule if netfilter dropped the peer's packet; otherwise not this
    /// host's TCP. In a storm, where the connection's own events may have been counted
    /// instead of sent, the storm's counts say which of these it was.
    fn reset_source(&self, r: &FlowRecord, k: &KernelFacts, side: Side) -> ResetSource {
        if k.reset_by(side).is_none() && k.summarised {
            if let Some(source) = self.storm_reset_source(k, side) {
                return source;
            }
        }
        match k.reset_by(side) {
            Some(reset) => match reset.origin {
                ResetOrigin::Reply => ResetSource::TcpReply {
                    reason: reset.reason.clone(),
                },
                ResetOrigin::Socket
                    if side == Side::Server
                        && reset.reason.as_deref().is_none_or(|x| x == "TCP_STATE")
                        && r.bytes[Side::Server.index()] == 0
                        && self.listener_stopped_at(r.server, r.last_ts) =>
                {
                    ResetSource::ListenerClosed {
                        process: reset.process.clone().zip(reset.pid),
                    }
                }
                ResetOrigin::Socket => ResetSource::SocketClose {
                    reason: reset.reason.clone(),
                    process: reset.process.clone().zip(reset.pid),
                },
            },
            None => match Self::netfilter_dropped(k, side.other(), "") {
                Some(path) => ResetSource::FirewallReject { path },
                None => ResetSource::NotLocalTcp,
            },
        }
    }

    /// In a storm: TCP's reply resets in `side`'s name, the reason it gave most; else a
    /// netfilter drop of the other side's packets (a REJECT's); else nothing to say.
    fn storm_reset_source(&self, k: &KernelFacts, side: Side) -> Option<ResetSource> {
        if let Some(reason) = &self.storm_reply[side.index()] {
            return Some(ResetSource::TcpReply {
                reason: reason.clone(),
            });
        }
        if let Some(path) = Self::netfilter_dropped(k, side.other(), "") {
            return Some(ResetSource::FirewallReject { path });
        }
        self.storm_drops
            .iter()
            .filter(|(key, _)| key.sender == side.other() && key.reason == "NETFILTER_DROP")
            .max_by_key(|(_, c)| c.packets)
            .map(|(key, _)| ResetSource::FirewallReject { path: key.path })
    }

    /// Where netfilter dropped a packet `sender` sent (of kind `what`, or any kind when
    /// empty), if it did.
    fn netfilter_dropped(k: &KernelFacts, sender: Side, what: &str) -> Option<PathKey> {
        k.drops_from(sender)
            .find(|d| d.reason == "NETFILTER_DROP" && (what.is_empty() || d.what == what))
            .map(|d| match d.path {
                PathName::Ingress => PathKey::Ingress,
                PathName::Egress => PathKey::Egress,
            })
    }

    /// Whether a listener `server` would have been queued on stopped listening just
    /// before `at` (the RST's packet): `tcp_close` sets the listener's state to CLOSE,
    /// then `inet_csk_listen_stop` resets its waiting children, in one call. A process
    /// that aborts an accepted connection and then closes its listener does it the other
    /// way round: its RST comes first.
    fn listener_stopped_at(&self, server: Endpoint, at: Timestamp) -> bool {
        self.listener_changes.iter().any(|c| {
            !c.listening
                && c.endpoint.port == server.port
                && (c.endpoint.addr == server.addr || c.endpoint.addr.is_unspecified())
                && c.ts <= at
                && at.micros_since(c.ts) <= LISTEN_STOP_SLACK_US
        })
    }

    /// Unanswered connections the witness has no drop for: what inference must explain.
    pub fn unexplained(&self, unanswered: u64) -> u64 {
        unanswered.saturating_sub(self.explained.flows)
    }

    /// A socket on the port entered or left LISTEN.
    pub fn listener_changed(&mut self, e: &KernelEvent) {
        let EventKind::State { old, new } = e.kind else {
            return;
        };
        if self.listener_changes.len() >= 1024 {
            return;
        }
        self.listener_changes.push(ListenerChange {
            ts: e.ts,
            endpoint: e.src,
            listening: new == TcpState::Listen && old != TcpState::Listen,
            process: e.process.map(|p| (p.comm().to_string(), p.pid)),
        });
    }
}

/// What a drop reason means, in a few plain words, for the reasons a user of this tool
/// meets; `None` for the others (the name then speaks for itself).
pub fn reason_in_words(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "NETFILTER_DROP" => "a firewall rule",
        "NO_SOCKET" => "no socket for them: nothing listens there",
        "TCP_LISTEN_OVERFLOW" => "the listener's accept queue was full",
        "IP_RPFILTER" => {
            "reverse-path filter: the route back to the source leaves by another interface"
        }
        "IP_INVALID_SOURCE" => "a source address that cannot send (martian)",
        "IP_LOCAL_SOURCE" => "a source address that is this host's own",
        "IP_LOCALNET" => "a 127.0.0.0/8 source arriving from outside",
        "IP_INVALID_DEST" => "a destination address that cannot receive (martian)",
        "OTHERHOST" => "addressed to another host's link-layer address",
        "QDISC_DROP" | "QDISC_OVERLIMIT" | "QDISC_CONGESTED" => {
            "the interface's queueing discipline (queue full, or a tc rule)"
        }
        "NEIGH_FAILED" | "NEIGH_QUEUEFULL" | "NEIGH_CREATEFAIL" | "NEIGH_DEAD" => {
            "the next hop's link-layer address (ARP/NDP) could not be resolved"
        }
        "IP_INNOROUTES" | "IP_OUTNOROUTES" => "no route",
        "IP_INADDRERRORS" => "an address this host does not accept",
        "XDP" => "an XDP program",
        "TC_INGRESS" | "TC_EGRESS" => "a tc filter",
        "BPF_CGROUP_EGRESS" => "a cgroup BPF program",
        "SOCKET_FILTER" => "the socket's BPF filter",
        "SECURITY_HOOK" => "a security module (SELinux, AppArmor, …)",
        "XFRM_POLICY" => "an IPsec policy",
        "IP_CSUM" | "TCP_CSUM" | "SKB_CSUM" => "a bad checksum",
        "TCP_MD5NOTFOUND" | "TCP_MD5UNEXPECTED" | "TCP_MD5FAILURE" => {
            "a TCP-MD5 signature missing or wrong"
        }
        "CPU_BACKLOG" => "the CPU's input backlog was full (net.core.netdev_max_backlog)",
        "FULL_RING" => "the device's ring was full",
        "SOCKET_RCVBUFF" => "the socket's receive buffer was full",
        "PROTO_MEM" | "NOMEM" => "memory pressure",
        "PKT_TOO_BIG" => "too big for the path (MTU)",
        "NOT_SPECIFIED" => "the kernel gave no specific reason",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;
    use crate::diagnose::tests::record;
    use crate::kernel::names::Reasons;
    use crate::kernel::storm::Tally;

    fn names() -> Names {
        Names::with(Reasons::with(
            &[(2, "NO_SOCKET"), (12, "NETFILTER_DROP")],
            &[(1, "NO_SOCKET")],
        ))
    }

    /// What a storm of SYNs to a closed port counts: the SYNs dropped (NO_SOCKET) and
    /// TCP's RSTs answering them.
    fn closed_port_storm() -> Vec<Tally> {
        let at = |ts| Timestamp(ts);
        vec![
            Tally {
                kind: TallyKind::Drop {
                    reason: 2,
                    location: 1,
                    path: crate::kernel::event::Path::Ingress,
                    place: Some("tcp_v4_rcv"),
                },
                dir: Dir::C2s,
                flags: TcpFlags(TcpFlags::SYN),
                icmp: false,
                count: 9_000,
                first_ts: at(10),
                last_ts: at(20),
            },
            Tally {
                kind: TallyKind::ResetSent { reason: Some(1) },
                dir: Dir::S2c,
                flags: TcpFlags(TcpFlags::SYN),
                icmp: false,
                count: 9_000,
                first_ts: at(10),
                last_ts: at(20),
            },
        ]
    }

    #[test]
    fn a_refusal_in_a_storm_whose_rst_was_counted_is_still_tcps_own_reply() {
        let mut k = KernelEvidence::default();
        k.storm_counted(&closed_port_storm(), &names());
        let refused = FlowRecord {
            reset_by: Some(Side::Server),
            ..record(Outcome::Refused, "127.0.0.1:61999")
        };
        k.add(&refused, &KernelFacts::quiet(true));
        assert_eq!(
            k.refusals.keys().next().map(|(_, s)| s.clone()),
            Some(ResetSource::TcpReply {
                reason: Some("NO_SOCKET".into())
            })
        );
        // Outside a storm the same silence means the RST was not this host's TCP.
        let mut calm = KernelEvidence::default();
        calm.storm_counted(&closed_port_storm(), &names());
        calm.add(&refused, &KernelFacts::quiet(false));
        assert_eq!(
            calm.refusals.keys().next().map(|(_, s)| s.clone()),
            Some(ResetSource::NotLocalTcp)
        );
    }

    #[test]
    fn an_unanswered_connection_in_a_storm_is_the_storms_syn_drop_not_left_to_inference() {
        let mut k = KernelEvidence::default();
        let mut storm = closed_port_storm();
        storm[0].kind = TallyKind::Drop {
            reason: 12,
            location: 2,
            path: crate::kernel::event::Path::Ingress,
            place: Some("nft_do_chain"),
        };
        k.storm_counted(&storm, &names());
        let unanswered = FlowRecord {
            syn_count: 2,
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        };
        k.add(&unanswered, &KernelFacts::quiet(true));
        assert_eq!(k.explained.flows, 1, "explained by the storm's drops");
        assert_eq!(k.unexplained(1), 0);
        assert_eq!(k.storm_flows, 1);
        let all = k.all_drops();
        let (key, t) = all.iter().next().unwrap();
        assert_eq!((&*key.reason, key.what), ("NETFILTER_DROP", "SYN"));
        // The storm's packets, once (the connection's two SYNs are among them), and the
        // connection among its fates.
        assert_eq!((t.packets, t.storm, t.unanswered.flows), (9_000, 9_000, 1));
        assert!(
            t.client_count().1,
            "sources uncounted in the storm: at least"
        );
        // Not in a storm: no storm drop is its, and inference stays with it.
        let mut calm = KernelEvidence::default();
        calm.storm_counted(&storm, &names());
        calm.add(&unanswered, &KernelFacts::quiet(false));
        assert_eq!(calm.unexplained(1), 1);
    }

    #[test]
    fn a_storms_counts_replace_the_last_read_not_add_to_it() {
        let mut k = KernelEvidence::default();
        k.storm_counted(&closed_port_storm(), &names());
        let mut later = closed_port_storm();
        later[0].count = 12_000;
        k.storm_counted(&later, &names());
        assert_eq!(k.all_drops().values().next().unwrap().packets, 12_000);
        assert_eq!(
            k.storm_resets
                .get(&(Side::Server, Some("NO_SOCKET".into()))),
            Some(&9_000)
        );
    }

    #[test]
    fn no_socket_where_a_syn_cookies_ack_is_checked_is_a_full_accept_queue() {
        for place in ["cookie_v4_check", "cookie_v6_check"] {
            assert_eq!(
                DropClass::of("NO_SOCKET", Some(place)),
                DropClass::ListenOverflow
            );
        }
        // Elsewhere NO_SOCKET is what it says: no socket for the segment.
        assert_eq!(
            DropClass::of("NO_SOCKET", Some("tcp_v4_rcv")),
            DropClass::Tcp
        );
        assert_eq!(DropClass::of("NO_SOCKET", None), DropClass::Tcp);
        assert_eq!(
            DropClass::of("TCP_LISTEN_OVERFLOW", Some("tcp_check_req")),
            DropClass::ListenOverflow
        );
    }
}

//! The kernel witness's facts, accumulated over the run for the rules: what was dropped
//! where and why, where each RST came from (this host's TCP, a socket closed by its
//! process, a firewall REJECT, or somewhere else), which ICMP errors answered SYNs a local
//! firewall had dropped, and when listeners came and went. Each connection's
//! [`KernelFacts`] is added once, with its final record.

use crate::decode::{Endpoint, Timestamp};
use crate::flow::{FlowRecord, Outcome, Side};
use crate::kernel::facts::{Dir, PathName};
use crate::kernel::{EventKind, KernelEvent, KernelFacts, ResetOrigin, TcpState};
use std::collections::BTreeMap;

/// Drops of one kind: (reason, kernel function, path, direction, segment kind).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DropKey {
    pub reason: String,
    pub place: Option<String>,
    pub path: PathKey,
    pub sender: Side,
    pub what: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKey {
    Ingress,
    Egress,
}

/// How many, in how many connections, when, and one server endpoint they were for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropTally {
    pub packets: u64,
    pub flows: u64,
    /// Flows whose connection still completed (the drop was retried past).
    pub flows_recovered: u64,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    pub server: Endpoint,
    /// Distinct client addresses seen (up to a cap: a flood's sources).
    pub clients: u64,
}

/// Where a reset in the capture came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResetSource {
    /// TCP answered a segment (`reason`: NO_SOCKET, …).
    TcpReply { reason: Option<String> },
    /// A socket reset its own connection as it was closed.
    SocketClose {
        reason: Option<String>,
        process: Option<(String, u32)>,
    },
    /// Netfilter dropped the peer's packet (on arrival, or as this host sent it) and a
    /// RST came instead: a REJECT rule. Netfilter's RST (`nf_send_reset`) is not TCP's,
    /// so the reset tracepoint never sees it.
    FirewallReject { path: PathKey },
    /// Not this host's TCP, and no netfilter drop seen: another host, or a REJECT on a
    /// path the witness does not see.
    NotLocalTcp,
}

impl ResetSource {
    /// The JSON name of where it came from (a finding's `origin`).
    pub fn origin(&self) -> &'static str {
        match self {
            ResetSource::TcpReply { .. } => "reply",
            ResetSource::SocketClose { .. } => "socket",
            ResetSource::FirewallReject { .. } => "firewall",
            ResetSource::NotLocalTcp => "elsewhere",
        }
    }

    /// The kernel's `sk_rst_reason`, for the resets TCP sent.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ResetSource::TcpReply { reason } | ResetSource::SocketClose { reason, .. } => {
                reason.as_deref()
            }
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
            ResetSource::FirewallReject { .. } | ResetSource::NotLocalTcp => {}
        }
        m.end()
    }
}

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
}

/// Distinct client addresses counted per drop kind, at most.
const CLIENTS_CAP: u64 = 1 << 20;

impl KernelEvidence {
    pub fn add(&mut self, r: &FlowRecord, k: &KernelFacts) {
        self.flows += 1;
        self.synack_retransmits += u64::from(k.synack_retransmits);
        for d in &k.drops {
            let key = DropKey {
                reason: d.reason.clone(),
                place: d.place.clone(),
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
            let t = self.drops.entry(key).or_insert(DropTally {
                packets: 0,
                flows: 0,
                flows_recovered: 0,
                first_ts: d.first_ts,
                last_ts: d.last_ts,
                server: r.server,
                clients: 0,
            });
            t.packets += u64::from(d.count);
            t.flows += 1;
            t.flows_recovered +=
                u64::from(r.outcome == Outcome::Established || r.handshake_rtt_us.is_some());
            t.first_ts = t.first_ts.min(d.first_ts);
            t.last_ts = t.last_ts.max(d.last_ts);
            t.clients = (t.clients + 1).min(CLIENTS_CAP);
        }
        if let Some(side) = r.reset_by {
            let source = Self::reset_source(k, side);
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

    /// Where the RST `side` sent came from: TCP's own reset if the kernel witnessed one;
    /// otherwise a REJECT rule if netfilter dropped the peer's packet; otherwise not this
    /// host's TCP.
    fn reset_source(k: &KernelFacts, side: Side) -> ResetSource {
        match k.reset_by(side) {
            Some(reset) => match reset.origin {
                ResetOrigin::Reply => ResetSource::TcpReply {
                    reason: reset.reason.clone(),
                },
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

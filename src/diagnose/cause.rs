//! What a finding rests on, typed: one [`Cause`] variant per cause a rule can conclude,
//! carrying its numbers, endpoints, ICMP kind, reset context, counters.
//!
//! Each payload serializes (serde, fields in declaration order) as the finding's JSON
//! `evidence` object: a field's place here is its key's place in the output, part of the
//! documented JSON interface. Fields marked `#[serde(skip)]` are context the wording
//! needs (the watched port, whether the machine was looked at), not evidence. The words
//! themselves live in `wording`; the decisions in `rules`.

use super::evidence::ResetContext;
use super::findings::{FindingKind, Severity};
use crate::decode::{Endpoint, Unreachable};
use crate::flow::Side;
use serde::{Serialize, Serializer};
use std::fmt::Display;
use std::net::IpAddr;

/// What a conclusion rests on, beyond the packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// Live: the machine's sockets and counters were read.
    Host,
    /// A replay: the packets alone.
    Packets,
}

/// One cause, with the evidence for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cause {
    /// RST from the server host while a listener that should take the SYNs exists.
    RefusedDespiteListener(RefusedWithListener),
    /// Refused on one address family while the server listens on the other.
    ListenerOtherFamily(RefusedWithListener),
    /// Refused on one address while the server is bound to another.
    ListenerOtherAddress(RefusedWithListener),
    ListenerOtherNamespace(RefusedInNamespace),
    NothingListening(Refused),
    /// Live: SYNs or handshake ACKs dropped while the accept queue overflowed.
    AcceptQueueFull(QueueOverflow),
    /// A replay: SYN-ACKs retransmitted after the client's ACK.
    HandshakeAcksDropped(AcksDropped),
    SilentlyDropped(Unanswered),
    /// ICMP port/protocol unreachable or admin prohibited: a filter's REJECT.
    IcmpRejected(IcmpErrors),
    /// ICMP network/host unreachable (or another code): routing or a host down.
    IcmpUnreachable(IcmpErrors),
    HandshakeStalled(HandshakeStall),
    Reset(Resets),
    ReceiverStalled(ZeroWindowStall),
    TimeWaitReuse(TimeWaitReuse),
    /// Live: TIME_WAIT sockets on the port counted in /proc.
    TimeWaitBuildup(TimeWaitBuildup),
    /// A replay: the server closed first many times.
    ServerClosesFirst(ServerClosesFirst),
    EphemeralPortsExhausted(PortsExhausted),
    /// Nothing seen under the user's filter expression.
    NoTrafficFiltered(NoTrafficFiltered),
    NoTraffic(NoTraffic),
}

impl Cause {
    /// The finding kind this cause is reported as (several causes share a kind).
    pub fn kind(&self) -> FindingKind {
        match self {
            Cause::RefusedDespiteListener(_) | Cause::IcmpRejected(_) => {
                FindingKind::RejectedByFirewall
            }
            Cause::ListenerOtherFamily(_) => FindingKind::ListenerOtherFamily,
            Cause::ListenerOtherAddress(_) => FindingKind::ListenerOtherAddress,
            Cause::ListenerOtherNamespace(_) => FindingKind::ListenerOtherNamespace,
            Cause::NothingListening(_) => FindingKind::NothingListening,
            Cause::AcceptQueueFull(_) | Cause::HandshakeAcksDropped(_) => {
                FindingKind::AcceptQueueFull
            }
            Cause::SilentlyDropped(_) => FindingKind::SilentlyDropped,
            Cause::IcmpUnreachable(_) => FindingKind::NetworkUnreachable,
            Cause::HandshakeStalled(_) => FindingKind::HandshakeStalled,
            Cause::Reset(r) => match r.by {
                Side::Server => FindingKind::ResetByServer,
                Side::Client => FindingKind::ResetByClient,
            },
            Cause::ReceiverStalled(_) => FindingKind::ReceiverStalled,
            Cause::TimeWaitReuse(_) => FindingKind::TimeWaitReuse,
            Cause::TimeWaitBuildup(_) | Cause::ServerClosesFirst(_) => FindingKind::TimeWaitBuildup,
            Cause::EphemeralPortsExhausted(_) => FindingKind::EphemeralPortsExhausted,
            Cause::NoTrafficFiltered(_) | Cause::NoTraffic(_) => FindingKind::NoTraffic,
        }
    }

    /// The server endpoint of a refusal finding: its refusals are judged at their moment.
    pub fn refused_server(&self) -> Option<Endpoint> {
        match self {
            Cause::RefusedDespiteListener(e)
            | Cause::ListenerOtherFamily(e)
            | Cause::ListenerOtherAddress(e) => Some(e.server),
            Cause::ListenerOtherNamespace(e) => Some(e.server),
            Cause::NothingListening(e) => Some(e.server),
            _ => None,
        }
    }

    /// Errors make connections fail; warnings are wrong or about to be. A full accept
    /// queue inferred from packets alone is only a warning: the kernel was not asked.
    pub fn severity(&self) -> Severity {
        match self {
            Cause::RefusedDespiteListener(_)
            | Cause::ListenerOtherFamily(_)
            | Cause::ListenerOtherAddress(_)
            | Cause::ListenerOtherNamespace(_)
            | Cause::NothingListening(_)
            | Cause::AcceptQueueFull(_)
            | Cause::SilentlyDropped(_)
            | Cause::IcmpRejected(_)
            | Cause::IcmpUnreachable(_)
            | Cause::HandshakeStalled(_)
            | Cause::EphemeralPortsExhausted(_) => Severity::Error,
            Cause::HandshakeAcksDropped(_)
            | Cause::Reset(_)
            | Cause::ReceiverStalled(_)
            | Cause::TimeWaitReuse(_)
            | Cause::TimeWaitBuildup(_)
            | Cause::ServerClosesFirst(_)
            | Cause::NoTrafficFiltered(_)
            | Cause::NoTraffic(_) => Severity::Warning,
        }
    }
}

fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_all<T: Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

fn side<S: Serializer>(v: &Side, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn icmp_name<S: Serializer>(v: &Unreachable, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// Connections refused where nothing listens.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Refused {
    pub refused: u64,
    #[serde(serialize_with = "display")]
    pub server: Endpoint,
    #[serde(skip)]
    pub port: u16,
    #[serde(skip)]
    pub basis: Basis,
}

/// Connections refused, and the listener that exists elsewhere (or that answered).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefusedWithListener {
    pub refused: u64,
    #[serde(serialize_with = "display")]
    pub server: Endpoint,
    /// Live: the listening socket; a replay: the endpoint that accepted connections.
    #[serde(serialize_with = "display")]
    pub listener: Endpoint,
    #[serde(skip)]
    pub port: u16,
    #[serde(skip)]
    pub basis: Basis,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefusedInNamespace {
    pub refused: u64,
    #[serde(serialize_with = "display")]
    pub server: Endpoint,
    #[serde(serialize_with = "display")]
    pub listener: Endpoint,
    /// `net:[INODE]`.
    pub namespace: String,
    #[serde(skip)]
    pub port: u16,
    /// A process in that namespace, for `nsenter -t PID -n` (0 when none is known).
    #[serde(skip)]
    pub nsenter_pid: i32,
}

/// The accept queue overflowed while connections went unanswered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueOverflow {
    pub unanswered: u64,
    pub handshake_acks_dropped: u64,
    /// Growth of the kernel's ListenOverflows during the capture.
    pub listen_overflows: u64,
    /// Growth of ListenDrops.
    pub listen_drops: u64,
    /// The listener seen with its queue over the backlog, when one was.
    #[serde(flatten)]
    pub full: Option<FullListener>,
    #[serde(skip)]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FullListener {
    #[serde(serialize_with = "display")]
    pub listener: Endpoint,
    pub accept_queue: u32,
    pub backlog: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AcksDropped {
    pub handshake_acks_dropped: u64,
    #[serde(skip)]
    pub port: u16,
}

/// SYNs that nothing answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unanswered {
    pub unanswered: u64,
    /// SYNs including retransmissions.
    pub syns: u64,
    #[serde(serialize_with = "display_all")]
    pub servers: Vec<Endpoint>,
    #[serde(skip)]
    pub port: u16,
    /// Live: whether anything listens on the port here.
    #[serde(skip)]
    pub listening: Option<bool>,
}

/// Connection attempts answered by one kind of ICMP destination-unreachable error.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IcmpErrors {
    pub unreachable: u64,
    #[serde(serialize_with = "icmp_name")]
    pub icmp: Unreachable,
    #[serde(serialize_with = "display")]
    pub icmp_from: IpAddr,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HandshakeStall {
    pub flows: u64,
    pub synack_retransmits: u64,
}

/// Connections reset by one side, with what most of them looked like.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resets {
    pub resets: u64,
    pub context: ResetContext,
    /// Live: growth of the kernel's TCPAbortOnClose; `null` in a replay.
    pub abort_on_close: Option<u64>,
    #[serde(skip)]
    pub by: Side,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZeroWindowStall {
    #[serde(serialize_with = "side")]
    pub side: Side,
    pub flows: u64,
    pub longest_zero_window_us: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeWaitReuse {
    pub flows: u64,
    /// Live: TIME_WAIT sockets on the port; `null` in a replay.
    pub time_wait_sockets: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeWaitBuildup {
    pub time_wait: usize,
    pub on_server: usize,
    pub on_client: usize,
    #[serde(serialize_with = "side")]
    pub holder: Side,
    #[serde(skip)]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerClosesFirst {
    pub closed_first_by_server: u64,
    #[serde(serialize_with = "side")]
    pub holder: Side,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortsExhausted {
    /// Client sockets to the port in TIME_WAIT.
    pub time_wait: usize,
    /// net.ipv4.ip_local_port_range.
    pub port_range: (u16, u16),
    #[serde(skip)]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NoTrafficFiltered {
    pub expression: String,
    #[serde(skip)]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NoTraffic {
    /// Where connection attempts went instead, most first.
    pub syns_elsewhere: Vec<SynsTo>,
    #[serde(serialize_with = "display_all")]
    pub listening_nearby: Vec<Endpoint>,
    pub proxy: Option<String>,
    #[serde(skip)]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SynsTo {
    #[serde(serialize_with = "display")]
    pub dst: Endpoint,
    pub syns: u64,
}

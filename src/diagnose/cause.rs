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
use super::host::firewall::{FirewallRule, Hook};
use super::kernel::{PathKey, ResetSource};
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
    /// RSTs a firewall's `REJECT --reject-with tcp-reset` sent: the kernel saw netfilter
    /// drop the SYN and TCP send no reset, or (inferred) a listener that should have
    /// answered exists.
    RejectedWithReset(FirewallResets),
    /// Refused on one address family while the server listens on the other.
    ListenerOtherFamily(RefusedWithListener),
    /// Refused on one address while the server is bound to another.
    ListenerOtherAddress(RefusedWithListener),
    ListenerOtherNamespace(RefusedInNamespace),
    NothingListening(Refused),
    /// Live: refused at the backend a DNAT rule forwards the port to (a port map whose
    /// container is down or listens on another port).
    ForwardedNothingListening(ForwardedRefused),
    /// Refusals in windows that accepted connections ended: the server was not yet
    /// listening (a startup race), or stopped and came back, once or in a loop.
    RefusalWindows(RefusalWindows),
    /// Live, with the kernel witness: RSTs in the server's name that this host's TCP did
    /// not send and its firewall did not either: another host or a middlebox.
    RefusedElsewhere(RefusedElsewhere),
    /// Live: SYNs or handshake ACKs dropped while the accept queue overflowed.
    AcceptQueueFull(QueueOverflow),
    /// A replay: SYN-ACKs retransmitted after the client's ACK.
    HandshakeAcksDropped(AcksDropped),
    SilentlyDropped(Unanswered),
    /// Live, witnessed: the kernel dropped the client's SYNs, and said why.
    SynsDropped(DroppedSyns),
    /// Live, witnessed: the kernel dropped the server's packets on their way out.
    RepliesDropped(DroppedReplies),
    /// Live, inferred without the witness: unanswered SYNs whose server holds a SYN_RECV
    /// socket for them: the listener answered, its answer never left.
    RepliesUnseen(AnsweredUnseen),
    /// Connections that completed only on a retransmitted SYN: connect() took a second
    /// or more.
    SlowConnect(SlowConnects),
    /// Many sources' one-shot SYNs at a rate that overflowed the SYN queue (live, the
    /// kernel's counters say so) or, in a replay, would have: a SYN flood.
    SynFlood(Flood),
    /// Live, witnessed: the kernel discarded SYNs for their addresses (martians).
    InvalidSource(MartianSyns),
    /// ICMP port/protocol unreachable or admin prohibited, or any ICMP error the server's
    /// own host sent (a REJECT rule there): a filter's REJECT.
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
    /// Attempts still waiting when the capture ended: no evidence either way.
    CaptureCutShort(CutShort),
    /// The filter expression let only one side's packets through.
    OneSidedView(OneSided),
    /// The snaplen cut packets inside their headers.
    TruncatedView(TruncatedView),
}

impl Cause {
    /// The finding kind this cause is reported as (several causes share a kind).
    pub fn kind(&self) -> FindingKind {
        match self {
            Cause::RejectedWithReset(_) | Cause::IcmpRejected(_) => FindingKind::RejectedByFirewall,
            Cause::ListenerOtherFamily(_) => FindingKind::ListenerOtherFamily,
            Cause::ListenerOtherAddress(_) => FindingKind::ListenerOtherAddress,
            Cause::ListenerOtherNamespace(_) => FindingKind::ListenerOtherNamespace,
            Cause::NothingListening(_) | Cause::ForwardedNothingListening(_) => {
                FindingKind::NothingListening
            }
            Cause::RefusedElsewhere(_) => FindingKind::RefusedElsewhere,
            Cause::RefusalWindows(w) => match w.pattern {
                Pattern::StartupRace => FindingKind::StartupRace,
                Pattern::Restarted => FindingKind::ServerRestarted,
                Pattern::RestartLoop => FindingKind::RestartLoop,
            },
            Cause::AcceptQueueFull(_) | Cause::HandshakeAcksDropped(_) => {
                FindingKind::AcceptQueueFull
            }
            Cause::SilentlyDropped(_) | Cause::SynsDropped(_) => FindingKind::SilentlyDropped,
            Cause::RepliesDropped(_) | Cause::RepliesUnseen(_) => FindingKind::RepliesDropped,
            Cause::SlowConnect(_) => FindingKind::SlowConnect,
            Cause::SynFlood(_) => FindingKind::SynFlood,
            Cause::InvalidSource(_) => FindingKind::InvalidSource,
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
            Cause::CaptureCutShort(_) | Cause::OneSidedView(_) | Cause::TruncatedView(_) => {
                FindingKind::PartialView
            }
        }
    }

    /// The server endpoint of a refusal finding: its refusals are judged at their moment.
    pub fn refused_server(&self) -> Option<Endpoint> {
        match self {
            Cause::ListenerOtherFamily(e) | Cause::ListenerOtherAddress(e) => Some(e.server),
            Cause::RejectedWithReset(e) => Some(e.server),
            Cause::RefusedElsewhere(e) => Some(e.server),
            Cause::ListenerOtherNamespace(e) => Some(e.server),
            Cause::NothingListening(e) => Some(e.server),
            Cause::ForwardedNothingListening(e) => Some(e.server),
            Cause::RefusalWindows(e) => Some(e.server),
            _ => None,
        }
    }

    /// Errors make connections fail; warnings are wrong or about to be. A full accept
    /// queue inferred from packets alone is only a warning: the kernel was not asked.
    /// Drops the connections got past (a retransmission went through) are warnings.
    pub fn severity(&self) -> Severity {
        match self {
            Cause::SynsDropped(d) if d.unanswered == 0 => Severity::Warning,
            Cause::RepliesDropped(d) if d.connections == d.recovered => Severity::Warning,
            Cause::InvalidSource(d) if d.unanswered == 0 => Severity::Warning,
            Cause::SynsDropped(_) | Cause::RepliesDropped(_) | Cause::InvalidSource(_) => {
                Severity::Error
            }
            Cause::RejectedWithReset(_)
            | Cause::RefusedElsewhere(_)
            | Cause::ListenerOtherFamily(_)
            | Cause::ListenerOtherAddress(_)
            | Cause::ListenerOtherNamespace(_)
            | Cause::NothingListening(_)
            | Cause::ForwardedNothingListening(_)
            | Cause::RefusalWindows(_)
            | Cause::AcceptQueueFull(_)
            | Cause::SilentlyDropped(_)
            | Cause::RepliesUnseen(_)
            | Cause::IcmpRejected(_)
            | Cause::IcmpUnreachable(_)
            | Cause::HandshakeStalled(_)
            | Cause::EphemeralPortsExhausted(_) => Severity::Error,
            // An attack on the port: its half-open attempts are failed connections (the
            // exit status counts them), and it must rank above what it causes.
            Cause::SynFlood(_) => Severity::Error,
            // Every slow connect completed: a warning, which leaves the exit status to
            // the connections that failed (README, "Exit status").
            Cause::HandshakeAcksDropped(_)
            | Cause::SlowConnect(_)
            | Cause::Reset(_)
            | Cause::ReceiverStalled(_)
            | Cause::TimeWaitReuse(_)
            | Cause::TimeWaitBuildup(_)
            | Cause::ServerClosesFirst(_)
            | Cause::NoTrafficFiltered(_)
            | Cause::NoTraffic(_)
            | Cause::CaptureCutShort(_)
            | Cause::OneSidedView(_)
            | Cause::TruncatedView(_) => Severity::Warning,
        }
    }
}

fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_all<T: Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

fn display_opt<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Microseconds as f64 seconds, like every time in the JSON.
fn secs<S: Serializer>(us: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(*us as f64 / 1e6)
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
    /// Live, with the kernel witness: TCP's own reset and its reason (`origin`,
    /// `reset_reason` in the JSON); absent otherwise.
    #[serde(flatten)]
    pub kernel: Option<ResetSource>,
    #[serde(skip)]
    pub port: u16,
    #[serde(skip)]
    pub basis: Basis,
}

/// What the refusal windows of one server endpoint look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Refused only before the first accepted connection.
    StartupRace,
    /// One window between accepted connections.
    Restarted,
    /// Two or more windows that accepted connections ended.
    RestartLoop,
}

/// A listener's start or stop, as the listener timeline knows it (live).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerSeen {
    #[serde(serialize_with = "display")]
    pub endpoint: Endpoint,
    /// Seconds since the Unix epoch in the JSON.
    #[serde(serialize_with = "secs")]
    pub at: u64,
    /// The earliest it may have happened: `at` when exact, else the look before the one
    /// that saw it. Seconds since the Unix epoch in the JSON.
    #[serde(serialize_with = "secs")]
    pub from: u64,
    /// The kernel's time of the listen()/close(); false: when a look first saw it.
    pub exact: bool,
    pub process: Option<String>,
    pub pid: Option<i32>,
}

/// Refused connections in windows that accepted connections ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefusalWindows {
    /// Refused in the windows that ended (`windows` and the folded ones).
    pub refused: u64,
    #[serde(serialize_with = "display")]
    pub server: Endpoint,
    #[serde(skip)]
    pub pattern: Pattern,
    /// Each window that accepted connections ended, oldest first.
    pub windows: Vec<super::windows::Window>,
    /// Older windows folded out of memory (a long loop), and their attempts.
    pub windows_folded: u64,
    pub attempts_folded: u64,
    /// A loop: the mean time from one window's start to the next, in microseconds.
    pub period_us: Option<u64>,
    /// Live: the listener that started as the last window ended, and the one that had
    /// stopped before it.
    pub listener_started: Option<ListenerSeen>,
    pub predecessor_stopped: Option<ListenerSeen>,
    /// A port map: the backend the connections were forwarded to, and the port the
    /// clients addressed.
    #[serde(serialize_with = "display_opt")]
    pub backend: Option<Endpoint>,
    pub forwarded_port: Option<u16>,
    /// Refused after the last window with nothing accepted since (said as its own
    /// finding).
    #[serde(skip)]
    pub still_refused: u64,
    #[serde(skip)]
    pub basis: Basis,
}

/// Connections to the port refused at the backend a DNAT rule forwards it to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ForwardedRefused {
    pub refused: u64,
    /// The server of the refused connections as their lines show it: the backend for a
    /// local client's, host:P when the client's SYN was seen before the translation.
    #[serde(serialize_with = "display")]
    pub server: Endpoint,
    /// The backend, where the refused connections went (`translated_to` on their lines).
    #[serde(serialize_with = "display")]
    pub backend: Endpoint,
    /// The port the clients addressed.
    pub forwarded_port: u16,
    /// The DNAT rule, as `iptables-save` prints it.
    pub rule: String,
    /// `net:[INODE]` holding the backend's address; null when no process sits there.
    pub namespace: Option<String>,
    /// What listens in that namespace instead (`10.77.0.2:81`).
    #[serde(serialize_with = "display_all")]
    pub listening_there: Vec<Endpoint>,
    /// The first listener's process, for the wording.
    #[serde(skip)]
    pub listener_process: Option<(String, i32)>,
}

/// Connections refused by a firewall's REJECT with a TCP reset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FirewallResets {
    pub refused: u64,
    #[serde(serialize_with = "display")]
    pub server: Endpoint,
    /// The listener the rule keeps the connections from, when one exists.
    #[serde(serialize_with = "display_opt")]
    pub listener: Option<Endpoint>,
    /// The rule most likely responsible, as its tool prints it (from the ruleset read at
    /// the start); null when none was found or the ruleset could not be read.
    pub rule: Option<String>,
    /// `NETFILTER_DROP` when the kernel witnessed the SYN dropped by netfilter (and no
    /// reset sent by TCP); null when inferred from a listener that should have answered.
    pub drop_reason: Option<String>,
    /// Where netfilter stopped the SYN: INPUT on arrival, OUTPUT as this host sent it.
    #[serde(skip)]
    pub hook: Hook,
}

/// Connections refused by RSTs that did not come from this host.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefusedElsewhere {
    pub refused: u64,
    #[serde(serialize_with = "display")]
    pub server: Endpoint,
    /// A listener here that the SYNs should have reached, when one exists.
    #[serde(serialize_with = "display_opt")]
    pub listener: Option<Endpoint>,
    /// The server's address is this network namespace's own: nothing outside answered
    /// for it, so something here forwarded the SYNs (a DNAT portsniff could not read)
    /// to where they were refused.
    pub own_address: bool,
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
    /// Live, with `tcp_abort_on_overflow=1`: connections the server reset right after the
    /// handshake, which is how that sysctl answers an ACK finding the queue full.
    pub handshake_resets: u64,
    /// Live: net.ipv4.tcp_abort_on_overflow (`null` in a replay).
    pub abort_on_overflow: Option<bool>,
    /// Growth of the kernel's ListenOverflows during the capture.
    pub listen_overflows: u64,
    /// Growth of ListenDrops.
    pub listen_drops: u64,
    /// The listener seen with its queue over the backlog, when one was.
    #[serde(flatten)]
    pub full: Option<FullListener>,
    /// When the full listener is one socket of an SO_REUSEPORT group whose other
    /// members keep their queues short: the kernel spreads new connections over the
    /// group, so about 1/members of them meet the dead one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuseport_group: Option<GroupHealth>,
    /// Live, with the witness: the packets the kernel dropped for the full queue (absent
    /// without the witness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<OverflowDrops>,
    #[serde(skip)]
    pub port: u16,
}

/// What the kernel dropped with reason `TCP_LISTEN_OVERFLOW`: the handshake's last ACK
/// (or the first data) of a connection the full queue had no room for. SYNs meeting a
/// full queue are discarded without a drop reason, so only the counters count them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverflowDrops {
    pub reason: &'static str,
    #[serde(rename = "where")]
    pub place: Option<String>,
    /// The kinds of segment dropped (`ACK`, `data`), most first.
    pub what: Vec<&'static str>,
    pub packets: u64,
    /// Connections they belonged to.
    pub flows: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FullListener {
    #[serde(serialize_with = "display")]
    pub listener: Endpoint,
    pub accept_queue: u32,
    pub backlog: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupHealth {
    /// Listening sockets on the endpoint.
    pub members: usize,
    /// Those whose accept queue is not full.
    pub healthy: usize,
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

/// Whether the firewall's rules were looked at for a drop, and how that went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RulesetSeen {
    /// The drop was not netfilter's: no rule to look for.
    NotAsked,
    /// Read when portsniff started; `unread`: what part could not be (a tool failing).
    Read { unread: Option<String> },
    /// Not read (not privileged enough, or no tool).
    NotRead,
}

/// Where the kernel dropped packets, why, and the firewall rule when one was found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropSite {
    /// `enum skb_drop_reason` without its prefix.
    pub reason: String,
    /// The kernel function that dropped them.
    #[serde(rename = "where")]
    pub place: Option<String>,
    /// `ingress` (arriving) or `egress` (leaving).
    #[serde(serialize_with = "path_name")]
    pub path: PathKey,
    /// The netfilter hook of the rule found (`input`, `output`…); `null` when none was.
    pub hook: Option<&'static str>,
    /// The chain holding that rule.
    pub chain: Option<String>,
    /// The rule, found in the ruleset read when portsniff started: the likeliest one for
    /// the port at the hooks on that path.
    #[serde(serialize_with = "firewall_rule")]
    pub rule: Option<FirewallRule>,
    #[serde(skip)]
    pub ruleset: RulesetSeen,
    /// Which way the dropped packets went: to the port (the client's) or from it.
    #[serde(skip)]
    pub to_port: bool,
}

/// Witnessed: SYNs of the client the kernel dropped, for one reason on one path.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DroppedSyns {
    /// Connection attempts that never got an answer.
    pub unanswered: u64,
    /// SYNs dropped, retransmissions included.
    pub syns: u64,
    #[serde(serialize_with = "display_all")]
    pub servers: Vec<Endpoint>,
    /// Connections that got through on a retransmitted SYN.
    pub recovered: u64,
    #[serde(flatten)]
    pub site: DropSite,
    #[serde(skip)]
    pub port: u16,
    /// Live: whether anything listens on the port here.
    #[serde(skip)]
    pub listening: Option<bool>,
}

/// Unanswered connections the server's host holds a SYN_RECV socket for (the socket
/// table, read live): the SYNs arrived and the listener answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnsweredUnseen {
    /// Unanswered connections with a SYN_RECV socket for their 4-tuple.
    pub unanswered: u64,
    #[serde(serialize_with = "display_all")]
    pub servers: Vec<Endpoint>,
    /// Some of their clients, as `client` endpoints.
    #[serde(serialize_with = "display_all")]
    pub clients: Vec<Endpoint>,
    /// The likeliest OUTPUT/POSTROUTING DROP rule for packets from the port, if the
    /// ruleset was read and has one.
    #[serde(serialize_with = "firewall_rule")]
    pub rule: Option<FirewallRule>,
    #[serde(skip)]
    pub port: u16,
}

/// A likely cause of slow connects, in the order the finding gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowCause {
    /// A `limit`/`hashlimit` match (or a rate-limiting DROP) letting some SYNs through.
    RateLimit,
    /// The listener's accept queue full (`ListenOverflows`): handshakes that completed
    /// found no room, so the kernel dropped their ACK (or a SYN cookie's ACK) and the
    /// client's SYN or data had to be sent again.
    AcceptQueue,
    /// The listener's SYN queue full (`TCPReqQFullDrop`, `ListenDrops`).
    SynQueue,
    /// Packets lost on the way (a lossy link, a congested queue).
    LossyPath,
}

/// Kernel drops of SYNs in connections that completed anyway, for one reason on one
/// path.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecoveredDrops {
    /// SYNs dropped in those connections.
    pub syns: u64,
    /// Connections they were dropped in.
    pub connections: u64,
    #[serde(flatten)]
    pub site: DropSite,
}

/// Connections that completed only after their SYN was retransmitted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlowConnects {
    /// Connections that needed SYN retransmissions.
    pub slow: u64,
    /// Connections that completed a handshake, slow ones included.
    pub completed: u64,
    /// connect() time of the slow ones, first SYN to the client's ACK, in microseconds.
    pub connect_delay_p50_us: Option<u64>,
    pub connect_delay_max_us: Option<u64>,
    /// How many got through on each SYN, by its number ("2": the first retransmission).
    pub through_on_syn: std::collections::BTreeMap<u32, u64>,
    /// The likely causes, likeliest first.
    pub likely_causes: Vec<SlowCause>,
    /// The firewall rule that limits SYNs to the port, when one was read.
    #[serde(serialize_with = "firewall_rule")]
    pub limit_rule: Option<FirewallRule>,
    /// Live: the growth of the SYN queue counter that grew most (`syn_queue_counter`).
    pub syn_queue_drops: u64,
    /// Which counter that is: `TCPReqQFullDrop` (SYNs a full SYN queue dropped) or
    /// `ListenDrops` (every drop at a listener, those included); null when neither grew.
    pub syn_queue_counter: Option<super::host::Counter>,
    /// Live, witnessed: the kernel's drops of those connections' SYNs.
    pub kernel: Vec<RecoveredDrops>,
    /// Live: how much `ListenOverflows` grew (handshakes that found the listener's accept
    /// queue full); 0 in a replay.
    pub listen_overflows: u64,
    /// The listener's accept queue and backlog when last looked at (`ss -lnt`
    /// Recv-Q/Send-Q); null in a replay.
    pub accept_queue: Option<u32>,
    pub backlog: Option<u32>,
    #[serde(skip)]
    pub port: u16,
}

/// Witnessed: the server's packets the kernel dropped on their way out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DroppedReplies {
    /// Connections that lost packets this way.
    pub connections: u64,
    /// Of those, attempts that never got an answer to their SYNs.
    pub unanswered: u64,
    /// Of those, connections that got through on a retransmission.
    pub recovered: u64,
    pub packets: u64,
    /// The kinds of segment dropped (`SYN-ACK`, `data`, `RST`…), most first.
    pub what: Vec<&'static str>,
    #[serde(serialize_with = "display_all")]
    pub servers: Vec<Endpoint>,
    #[serde(flatten)]
    pub site: DropSite,
    #[serde(skip)]
    pub port: u16,
}

/// Witnessed: SYNs the kernel discarded for their source (or destination) address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MartianSyns {
    /// Connection attempts that never got an answer.
    pub unanswered: u64,
    /// Packets discarded.
    pub syns: u64,
    /// Distinct source addresses (counted up to a cap: see `sources_capped`).
    pub sources: u64,
    pub sources_capped: bool,
    /// A few of them.
    #[serde(serialize_with = "display_all")]
    pub examples: Vec<IpAddr>,
    /// By reason, most packets first.
    pub reasons: Vec<ReasonCount>,
    #[serde(serialize_with = "display_all")]
    pub servers: Vec<Endpoint>,
    #[serde(skip)]
    pub port: u16,
}

/// A SYN flood: how fast, from how many sources, what the kernel did about it, and
/// whether real clients still got through.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flood {
    /// Client SYNs to the port during the capture, retransmissions included.
    pub syns: u64,
    /// The most in one second.
    pub syns_per_sec_peak: u64,
    /// Distinct source addresses (counted up to a cap: see `sources_capped`).
    pub sources: u64,
    pub sources_capped: bool,
    /// The most distinct sources in one second.
    pub sources_per_sec_peak: u64,
    /// Every source with its SYNs, most first, when there were at most 8 (a flooding
    /// tool on a handful of hosts, to block by address); null for more.
    pub sources_named: Option<Vec<super::syn_meter::SourceSyns>>,
    /// From the first SYN to the last, in microseconds.
    pub span_us: u64,
    /// Attempts that sent one SYN and never completed, among those the capture has ended
    /// (live, the half-open ones wait until the capture does).
    pub half_open: u64,
    /// Live, with SYN cookies off: real clients' attempts (they retransmitted their SYN)
    /// that got no answer while SYNs were dropped for the full SYN queue.
    pub clients_dropped: u64,
    /// Connections that completed a handshake while the SYNs came, and their connect
    /// time (first SYN to the client's ACK).
    pub completed: u64,
    pub connect_p50_us: Option<u64>,
    pub connect_max_us: Option<u64>,
    /// Live: SYN-ACKs sent with a cookie, the growth of `SyncookiesSent` (the same
    /// number as `counters.SyncookiesSent`); null in a replay.
    pub cookies_sent: Option<u64>,
    /// Live: the growth of the SYN queue's counters over the capture (the network
    /// namespace's, other ports included); null in a replay.
    pub counters: Option<super::host::Counters>,
    /// Live, witnessed: SYNs the kernel discarded as martians (spoofed sources), and how
    /// many sources; null without the witness.
    pub martian_syns: Option<u64>,
    pub martian_sources: Option<u64>,
    #[serde(skip)]
    pub basis: Basis,
    #[serde(skip)]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReasonCount {
    pub reason: String,
    #[serde(rename = "where")]
    pub place: Option<String>,
    pub packets: u64,
    pub flows: u64,
}

fn path_name<S: Serializer>(v: &PathKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// A rule as the JSON evidence shows it: which tool, table and chain, its text as the
/// tool prints it, and how sure the match is.
fn firewall_rule<S: Serializer>(v: &Option<FirewallRule>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Rule<'a> {
        tool: &'static str,
        table: &'a str,
        chain: &'a str,
        hook: &'static str,
        text: &'a str,
        handle: Option<u64>,
        verdict: String,
        /// Reached through these jumps, outermost first.
        via: Vec<&'a str>,
        names_port: bool,
        conditional: bool,
        policy: bool,
    }
    match v {
        None => s.serialize_none(),
        Some(r) => s.serialize_some(&Rule {
            tool: r.tool.as_str(),
            table: &r.table,
            chain: &r.chain,
            hook: r.hook.as_str(),
            text: &r.text,
            handle: r.handle,
            verdict: r.verdict.to_string(),
            via: r.via.iter().map(|j| j.text.as_str()).collect(),
            names_port: r.names_port,
            conditional: r.conditional,
            policy: r.policy,
        }),
    }
}

/// Connection attempts answered by one kind of ICMP destination-unreachable error.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IcmpErrors {
    pub unreachable: u64,
    #[serde(serialize_with = "icmp_name")]
    pub icmp: Unreachable,
    #[serde(serialize_with = "display")]
    pub icmp_from: IpAddr,
    /// When the errors came from a REJECT rule on the server's own host: its keys
    /// (`server`, `listener`, `rule`, `drop_reason`); absent otherwise.
    #[serde(flatten)]
    pub local: Option<LocalReject>,
}

/// A REJECT rule on the server's own host answered the SYNs with ICMP.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LocalReject {
    #[serde(serialize_with = "display")]
    pub server: Endpoint,
    /// Live: the listener the rule keeps the connections from, when one exists.
    #[serde(serialize_with = "display_opt")]
    pub listener: Option<Endpoint>,
    /// The rule most likely responsible, as its tool prints it; null when unknown.
    pub rule: Option<String>,
    /// `NETFILTER_DROP` when the kernel witnessed netfilter drop the SYNs; null when
    /// inferred from the errors' source being the server's own address.
    pub drop_reason: Option<String>,
    #[serde(skip)]
    pub hook: Hook,
    #[serde(skip)]
    pub basis: Basis,
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
    /// Live, with the kernel witness: where most of these RSTs came from (`origin`, and
    /// `reset_reason`, `process`, `pid` where the kernel gave them); absent otherwise.
    #[serde(flatten)]
    pub kernel: Option<ResetSource>,
    /// Live, with the kernel witness: how many of `resets` came from that source (the
    /// others came from another: a second process, another reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witnessed: Option<u64>,
    /// For RSTs a firewall sent: the REJECT rule most likely responsible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Live: the port map's backend, when the port is forwarded to another network
    /// namespace: server RSTs this host's TCP did not send are that namespace's.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_opt"
    )]
    pub backend: Option<Endpoint>,
    #[serde(skip)]
    pub by: Side,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZeroWindowStall {
    #[serde(serialize_with = "side")]
    pub side: Side,
    pub flows: u64,
    pub longest_zero_window_us: u64,
    /// Live: the most bytes waiting unread in one of that side's sockets on the port
    /// (`ss`'s Recv-Q) at the last look; absent in a replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recv_queue: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeWaitReuse {
    pub flows: u64,
    /// Live: TIME_WAIT sockets on the port; `null` in a replay.
    pub time_wait_sockets: Option<usize>,
    /// Whether the client bound its source port itself: a port outside
    /// ip_local_port_range, or one port for every reuse; `null` when it cannot be told.
    pub fixed_port: Option<bool>,
    /// Live: net.ipv4.tcp_tw_reuse, which lets connect() pick a port still in TIME_WAIT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tw_reuse: Option<u8>,
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
    /// Of `time_wait`, those whose port connect() may take again (tcp_tw_reuse).
    pub recyclable: usize,
    /// net.ipv4.tcp_tw_reuse, when it could be read.
    pub tw_reuse: Option<u8>,
    /// net.ipv4.tcp_tw_reuse_delay (ms), where the kernel has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tw_reuse_delay_ms: Option<u32>,
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
pub struct CutShort {
    /// Attempts with one SYN, not retransmitted, when the capture ended.
    pub waiting: u64,
    #[serde(skip)]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OneSided {
    pub expression: String,
    /// The side whose packets were seen: `client` or `server`.
    pub seen: Side,
    #[serde(skip)]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TruncatedView {
    /// Packets cut inside their headers.
    pub truncated: u64,
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

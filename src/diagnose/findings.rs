//! The findings vocabulary: what portsniff concludes, how sure it is, who is involved,
//! and the ranking of conclusions. What a finding rests on is in `cause`, how it is said
//! in `wording`.

use super::cause::Cause;
use super::host::ProcessInfo;
use super::listeners::FactChange;
use super::wording::{self, Words};
use serde::Serialize;

/// A stable vocabulary: these names are part of the JSON interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    NothingListening,
    RefusedElsewhere,
    ListenerOtherFamily,
    ListenerOtherAddress,
    ListenerOtherNamespace,
    SilentlyDropped,
    RepliesDropped,
    SlowConnect,
    SynFlood,
    InvalidSource,
    AcceptQueueFull,
    RejectedByFirewall,
    NetworkUnreachable,
    HandshakeStalled,
    ResetByServer,
    ResetByClient,
    ReceiverStalled,
    TimeWaitReuse,
    TimeWaitBuildup,
    EphemeralPortsExhausted,
    NoTraffic,
    PartialView,
    StartupRace,
    ServerRestarted,
    RestartLoop,
}

impl FindingKind {
    /// Every kind, in the order the README's table lists them (the man page and the
    /// metrics list them all).
    pub const ALL: [FindingKind; 25] = [
        FindingKind::NothingListening,
        FindingKind::StartupRace,
        FindingKind::ServerRestarted,
        FindingKind::RestartLoop,
        FindingKind::RefusedElsewhere,
        FindingKind::ListenerOtherFamily,
        FindingKind::ListenerOtherAddress,
        FindingKind::ListenerOtherNamespace,
        FindingKind::SilentlyDropped,
        FindingKind::RepliesDropped,
        FindingKind::SlowConnect,
        FindingKind::SynFlood,
        FindingKind::InvalidSource,
        FindingKind::AcceptQueueFull,
        FindingKind::RejectedByFirewall,
        FindingKind::NetworkUnreachable,
        FindingKind::HandshakeStalled,
        FindingKind::ResetByServer,
        FindingKind::ResetByClient,
        FindingKind::ReceiverStalled,
        FindingKind::TimeWaitReuse,
        FindingKind::TimeWaitBuildup,
        FindingKind::EphemeralPortsExhausted,
        FindingKind::PartialView,
        FindingKind::NoTraffic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::NothingListening => "nothing_listening",
            FindingKind::RefusedElsewhere => "refused_elsewhere",
            FindingKind::ListenerOtherFamily => "listener_other_family",
            FindingKind::ListenerOtherAddress => "listener_other_address",
            FindingKind::ListenerOtherNamespace => "listener_other_namespace",
            FindingKind::SilentlyDropped => "silently_dropped",
            FindingKind::RepliesDropped => "replies_dropped",
            FindingKind::SlowConnect => "slow_connect",
            FindingKind::SynFlood => "syn_flood",
            FindingKind::InvalidSource => "invalid_source",
            FindingKind::AcceptQueueFull => "accept_queue_full",
            FindingKind::RejectedByFirewall => "rejected_by_firewall",
            FindingKind::NetworkUnreachable => "network_unreachable",
            FindingKind::HandshakeStalled => "handshake_stalled",
            FindingKind::ResetByServer => "reset_by_server",
            FindingKind::ResetByClient => "reset_by_client",
            FindingKind::ReceiverStalled => "receiver_stalled",
            FindingKind::TimeWaitReuse => "time_wait_reuse",
            FindingKind::TimeWaitBuildup => "time_wait_buildup",
            FindingKind::EphemeralPortsExhausted => "ephemeral_ports_exhausted",
            FindingKind::NoTraffic => "no_traffic",
            FindingKind::PartialView => "partial_view",
            FindingKind::StartupRace => "startup_race",
            FindingKind::ServerRestarted => "server_restarted",
            FindingKind::RestartLoop => "restart_loop",
        }
    }

    /// Findings that rest on what listens on the port (whether, where, with what
    /// queue): a listener starting or stopping after their moment is news to them.
    pub fn rests_on_listeners(self) -> bool {
        matches!(
            self,
            FindingKind::NothingListening
                | FindingKind::ListenerOtherFamily
                | FindingKind::ListenerOtherAddress
                | FindingKind::ListenerOtherNamespace
                | FindingKind::RejectedByFirewall
                | FindingKind::SilentlyDropped
                | FindingKind::AcceptQueueFull
        )
    }

    /// Findings about a count of the machine's sockets at one moment (a look at the
    /// socket table): once printed live they stay in the final diagnosis, though the
    /// sockets may have expired by the end.
    pub fn is_a_peak(self) -> bool {
        matches!(
            self,
            FindingKind::TimeWaitBuildup | FindingKind::EphemeralPortsExhausted
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Connections fail.
    Error,
    /// Connections work but something is wrong or about to be.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Why a process is named in a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Owns the listening socket.
    Listener,
    /// Owns the client socket.
    Client,
    /// Holds sockets in TIME_WAIT/CLOSE_WAIT.
    Holder,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NamedProcess {
    #[serde(flatten)]
    pub process: ProcessInfo,
    pub role: Role,
}

/// One conclusion, with what it rests on and what to do next. Its kind and severity
/// follow from its cause; its words (headline, explanation, next step) are produced from
/// the cause by `wording`.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// How many connections it explains: ranks findings of equal severity.
    pub weight: u64,
    pub processes: Vec<NamedProcess>,
    /// What it rests on; serializes as the JSON `evidence` object.
    pub cause: Cause,
    /// The final diagnosis only: listener changes after the moment it rests on (the
    /// refusals it explains, or when it was printed live), so that it is never read as
    /// a statement about now when the facts have moved.
    pub facts_changed: Vec<FactChange>,
    /// Failures that came only in windows between answered connections (SYNs dropped
    /// during a firewall reload or a burst): each window, oldest first. Empty when they
    /// did not, or the finding's cause carries its own windows.
    pub windows: Vec<super::windows::Window>,
}

impl Finding {
    pub fn new(cause: Cause, weight: u64) -> Finding {
        Finding {
            kind: cause.kind(),
            severity: cause.severity(),
            weight,
            processes: Vec::new(),
            cause,
            facts_changed: Vec::new(),
            windows: Vec::new(),
        }
    }

    /// Names the processes behind it (each once, by pid).
    pub fn processes(mut self, procs: &[ProcessInfo], role: Role) -> Finding {
        for p in procs {
            if !self.processes.iter().any(|n| n.process.pid == p.pid) {
                self.processes.push(NamedProcess {
                    process: p.clone(),
                    role,
                });
            }
        }
        self
    }

    /// One line a tired developer reads first.
    pub fn headline(&self) -> String {
        wording::of(self).headline
    }

    /// The reasoning, with the evidence in words.
    #[cfg(test)]
    pub fn explanation(&self) -> String {
        wording::of(self).explanation
    }

    /// A command or a config change.
    pub fn next_step(&self) -> String {
        wording::of(self).next_step
    }

    /// All three at once (one formatting pass).
    pub fn words(&self) -> Words {
        wording::of(self)
    }
}

/// Most likely cause first: errors before warnings, then by connections explained.
pub fn rank(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(b.weight.cmp(&a.weight))
            .then(a.kind.cmp(&b.kind))
    });
}

#[cfg(test)]
mod all_tests {
    use super::FindingKind;

    /// Each kind's place: the match is exhaustive, so a new kind does not compile until
    /// it has one, and the test below then fails until `ALL` lists it.
    fn ordinal(k: FindingKind) -> usize {
        FindingKind::ALL
            .iter()
            .position(|&x| x == k)
            .unwrap_or(usize::MAX)
    }

    fn every_kind_by_match(k: FindingKind) -> FindingKind {
        match k {
            FindingKind::NothingListening
            | FindingKind::StartupRace
            | FindingKind::ServerRestarted
            | FindingKind::RestartLoop
            | FindingKind::RefusedElsewhere
            | FindingKind::ListenerOtherFamily
            | FindingKind::ListenerOtherAddress
            | FindingKind::ListenerOtherNamespace
            | FindingKind::SilentlyDropped
            | FindingKind::RepliesDropped
            | FindingKind::SlowConnect
            | FindingKind::SynFlood
            | FindingKind::InvalidSource
            | FindingKind::AcceptQueueFull
            | FindingKind::RejectedByFirewall
            | FindingKind::NetworkUnreachable
            | FindingKind::HandshakeStalled
            | FindingKind::ResetByServer
            | FindingKind::ResetByClient
            | FindingKind::ReceiverStalled
            | FindingKind::TimeWaitReuse
            | FindingKind::TimeWaitBuildup
            | FindingKind::EphemeralPortsExhausted
            | FindingKind::PartialView
            | FindingKind::NoTraffic => k,
        }
    }

    #[test]
    fn all_lists_every_finding_kind_once() {
        let listed: std::collections::BTreeSet<&str> =
            FindingKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(listed.len(), FindingKind::ALL.len(), "a kind listed twice");
        for k in FindingKind::ALL {
            assert_ne!(ordinal(every_kind_by_match(k)), usize::MAX);
        }
        // The match above names 25 kinds; ALL must hold as many.
        assert_eq!(
            FindingKind::ALL.len(),
            25,
            "ALL misses a kind the match names"
        );
    }
}

//! The findings vocabulary: what portsniff concludes, how sure it is, and what to do.

use super::system::ProcessInfo;
use serde::Serialize;
use serde_json::{Map, Value};

/// A stable vocabulary: these names are part of the JSON interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    NothingListening,
    ListenerOtherFamily,
    ListenerOtherAddress,
    ListenerOtherNamespace,
    SilentlyDropped,
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
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::NothingListening => "nothing_listening",
            FindingKind::ListenerOtherFamily => "listener_other_family",
            FindingKind::ListenerOtherAddress => "listener_other_address",
            FindingKind::ListenerOtherNamespace => "listener_other_namespace",
            FindingKind::SilentlyDropped => "silently_dropped",
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
        }
    }

    /// Findings that only make sense once the capture is over (they are about absence
    /// or accumulation); all others may be printed live as soon as they are found.
    pub fn needs_whole_capture(self) -> bool {
        matches!(
            self,
            FindingKind::NoTraffic
                | FindingKind::TimeWaitBuildup
                | FindingKind::EphemeralPortsExhausted
                | FindingKind::ReceiverStalled
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
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
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

/// One conclusion, with what it rests on and what to do next.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// One line a tired developer reads first.
    pub headline: String,
    /// The reasoning, with the evidence in words.
    pub explanation: String,
    /// The same evidence as data, for scripts.
    pub evidence: Map<String, Value>,
    pub processes: Vec<NamedProcess>,
    /// A command or a config change.
    pub next_step: String,
    /// How many connections it explains: ranks findings of equal severity.
    pub weight: u64,
}

impl Finding {
    pub fn new(kind: FindingKind, severity: Severity, weight: u64) -> Finding {
        Finding {
            kind,
            severity,
            headline: String::new(),
            explanation: String::new(),
            evidence: Map::new(),
            processes: Vec::new(),
            next_step: String::new(),
            weight,
        }
    }

    pub fn headline(mut self, s: impl Into<String>) -> Finding {
        self.headline = s.into();
        self
    }

    pub fn explain(mut self, s: impl Into<String>) -> Finding {
        self.explanation = s.into();
        self
    }

    pub fn next(mut self, s: impl Into<String>) -> Finding {
        self.next_step = s.into();
        self
    }

    pub fn evidence(mut self, key: &str, value: impl Into<Value>) -> Finding {
        self.evidence.insert(key.to_string(), value.into());
        self
    }

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

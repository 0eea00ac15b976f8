//! The machine's side of the story, for a live capture on Linux: listeners, sockets,
//! kernel counters, sysctls, network namespaces, the processes behind sockets, and the
//! firewall rules that can drop or reject the port's traffic.
//!
//! Everything here is read on request by plain functions ([`HostFacts::first_look`],
//! [`Looker::look`], [`listeners_now`], [`LookupRequest::run`], [`read_counters`],
//! [`firewall::Ruleset::read`]): this module starts no thread and reads no clock (but for
//! the deadline of the firewall's commands). The pipeline decides when to call them (on
//! its helper threads, or on the flow stage for the cheap ones), stamps them with the
//! time, and feeds the results to the `Diagnoser`. A replay has no host facts.

mod counters;
pub mod firewall;
mod sockets;

pub use counters::{counter_delta, read_counters, Counter, Counters};
pub use sockets::{
    backend_namespace, describe_process, listeners_now, owner_of, BackendLooker, Listener,
    PortSocket, ProcessInfo, Snapshot, SocketState,
};

use crate::decode::Endpoint;
use std::collections::BTreeMap;

/// What /proc showed: the first look, before any packet, and the latest.
#[derive(Clone, Debug)]
pub struct HostFacts {
    pub start: Snapshot,
    pub now: Snapshot,
    /// The DROP and REJECT rules that can touch the port, read once while portsniff was
    /// still privileged (reading a ruleset needs CAP_NET_ADMIN, which is not kept).
    pub firewall: Option<std::sync::Arc<firewall::Ruleset>>,
    /// Live: the listeners when the last connection to each server endpoint was refused
    /// (the `Diagnoser` keeps them over time); a refusal is judged by these, not by the
    /// listeners now, which may have started or stopped since.
    pub refused_at: BTreeMap<Endpoint, Vec<Listener>>,
    /// Live: the port's listener starts and stops so far (the `Diagnoser`'s timeline),
    /// so that a refusal window is closed by the listen() that ended it.
    pub listener_changes: Vec<crate::diagnose::FactChange>,
    /// Live: the port map's backend as looked at around the last refusal through it: its
    /// namespace (`None`: no process sat in it) and listeners. Outweighs the DNAT rule's
    /// look at the start, which a backend started or stopped since makes wrong.
    pub backend_at_refusal: Option<(Option<String>, Vec<Listener>)>,
}

impl HostFacts {
    /// The first look: complete (other namespaces too) and synchronous, before any
    /// packet, so that a finding made early does not rest on half the facts. `None`
    /// where there is no /proc/net/tcp to read.
    pub fn first_look(port: u16, attribution: bool) -> Option<HostFacts> {
        std::path::Path::new("/proc/net/tcp")
            .exists()
            .then(|| HostFacts::from(Snapshot::take(port, true, attribution)))
    }

    /// The listeners when connections to `server` were refused, as far as known; the
    /// listeners now otherwise.
    pub fn listeners_when_refused(&self, server: &Endpoint) -> &[Listener] {
        self.refused_at
            .get(server)
            .map_or(&self.now.listeners, Vec::as_slice)
    }

    /// How much `counter` grew since the first look.
    pub fn delta(&self, counter: Counter) -> u64 {
        counters::grew(&self.start.counters, &self.now.counters, counter)
    }
}

impl From<Snapshot> for HostFacts {
    /// Facts whose first and latest look are the same.
    fn from(start: Snapshot) -> HostFacts {
        HostFacts {
            now: start.clone(),
            start,
            firewall: None,
            refused_at: BTreeMap::new(),
            listener_changes: Vec::new(),
            backend_at_refusal: None,
        }
    }
}

/// The refresher's work: each [`look`](Self::look) reads listeners, sockets and counters;
/// a `full` one also walks every process's fds and namespaces (owners, other
/// namespaces), whose names are carried over by socket inode in between. On 2 cores
/// under a flood, a walk at every look starved the flow stage.
pub struct Looker {
    port: u16,
    attribution: bool,
    full: Option<Snapshot>,
}

impl Looker {
    pub fn new(port: u16, attribution: bool) -> Looker {
        Looker {
            port,
            attribution,
            full: None,
        }
    }

    /// Whether the next look must be a full one whatever the time (none yet).
    pub fn needs_full(&self) -> bool {
        self.full.is_none()
    }

    pub fn look(&mut self, full: bool) -> Snapshot {
        match &self.full {
            Some(f) if !full => {
                let mut s = Snapshot::take(self.port, false, false);
                s.carry_owners_from(f);
                s
            }
            _ => {
                let s = Snapshot::take(self.port, true, self.attribution);
                self.full = Some(s.clone());
                s
            }
        }
    }
}

/// Processes behind a flow, when known (live).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowProcesses {
    pub client: Option<ProcessInfo>,
    pub server: Option<ProcessInfo>,
}

/// "Who owns the client socket of flow `id`": a walk of every process's fds, so the
/// pipeline runs it away from the flow stage.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupRequest {
    pub id: u64,
    pub client: Endpoint,
    /// The listener's owner, already known from the facts.
    pub server: Option<ProcessInfo>,
}

impl LookupRequest {
    /// Does the lookup: the flow's id and its processes.
    pub fn run(self) -> (u64, FlowProcesses) {
        let procs = FlowProcesses {
            client: owner_of(&self.client),
            server: self.server,
        };
        (self.id, procs)
    }
}

/// The proxy the environment sets for clients that honour it, if any: read once at the
/// edge, since a client pointed at a proxy never reaches the port.
pub fn proxy_from_env() -> Option<String> {
    [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// One listener as the summary shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerView {
    pub local: String,
    pub accept_queue: u32,
    pub backlog: Option<u32>,
    /// Sockets listening on the same address and port (SO_REUSEPORT/SO_REUSEADDR group).
    pub group: usize,
    /// `None` for this network namespace.
    pub namespace: Option<String>,
    pub processes: Vec<ProcessInfo>,
}

/// The machine's side of the story at the end of a live capture.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemView {
    pub listeners: Vec<ListenerView>,
    /// Sockets on the port by (state, side holding them).
    pub sockets: BTreeMap<(&'static str, &'static str), u64>,
    /// Kernel counters that grew during the capture.
    pub counters: Counters,
}

impl SystemView {
    pub fn of(f: &HostFacts, port: u16) -> SystemView {
        let all = || f.now.listeners.iter().chain(f.now.foreign_listeners.iter());
        let listeners = all()
            .map(|l| ListenerView {
                local: l.local.to_string(),
                accept_queue: l.accept_queue,
                backlog: l.backlog,
                // Several sockets on one address and port: an SO_REUSEPORT group (or
                // SO_REUSEADDR sockets) sharing the incoming connections.
                group: all()
                    .filter(|o| o.local == l.local && o.namespace == l.namespace)
                    .count(),
                namespace: l.namespace.clone(),
                processes: l.processes.clone(),
            })
            .collect();
        let mut sockets = BTreeMap::new();
        for s in &f.now.sockets {
            let side = if s.local.port == port {
                "server"
            } else {
                "client"
            };
            *sockets.entry((s.state.as_str(), side)).or_insert(0u64) += 1;
        }
        let counters = counter_delta(&f.start.counters, &f.now.counters)
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect();
        SystemView {
            listeners,
            sockets,
            counters,
        }
    }
}

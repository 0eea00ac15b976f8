//! Diagnose: from what happened (flow records, SYNs that went elsewhere) and, live on
//! Linux, the state of the machine (listeners, queues, counters, namespaces), to *why*:
//! ranked [`Finding`]s naming the cause, the evidence, the processes and the next step.
//!
//! - [`evidence`]: what happened, counted once; the summary and exit status read it too.
//! - [`host`]: the machine's facts, read on request by plain functions.
//! - `rules`: one cause family per file, pure functions from evidence and facts to
//!   findings.
//! - [`cause`] and `wording`: what a finding rests on, typed, and how it is said.
//! - [`windows`]: when each server refused and accepted, so that refusals followed by
//!   accepted connections read as a startup race or a restart.
//! - [`listeners`]: the port's listeners over time, so that a refusal is judged by the
//!   listeners at its moment and a live finding whose facts change gets an update.
//!
//! It consumes the flow stage's records and never touches packets or output formats. It
//! starts no thread and reads no clock: the pipeline runs the host reads on its helper
//! threads, feeds their results in, and passes the time. Offline replays have no host
//! facts: findings then rest on packets alone and say so.

pub mod cause;
pub mod evidence;
pub mod findings;
pub mod host;
pub mod kernel;
pub mod listeners;
mod rules;
pub mod syn_meter;
pub mod windows;
mod wording;

pub use cause::Cause;
pub use evidence::{Buckets, Evidence, Percentiles, TunnelSeen};
pub use findings::{Finding, FindingKind, NamedProcess, Role, Severity};
pub use host::{
    Counters, FlowProcesses, HostFacts, ListenerView, LookupRequest, ProcessInfo, Snapshot,
    SystemView,
};
pub use listeners::{ChangeKind, FactChange};
pub use rules::Scope;

use crate::decode::{Endpoint, Timestamp};
use crate::flow::FlowRecord;
use crate::flow::Outcome;
use crate::kernel::{EventKind, KernelEvent, KernelFacts, TcpState};
use listeners::Timeline;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Live: most often that findings are looked for while problems keep coming.
const POLL: Duration = Duration::from_millis(100);
/// Live: most client processes looked up per second (each costs a walk of every
/// process's fds: a few a second is what 2 cores can spare next to a flood).
const LOOKUPS_PER_SEC: u32 = 4;
/// Live: most flows whose processes are asked for or remembered until their final record.
const PROCESSES_CAP: usize = 10_000;
/// Live: most often the port's sockets are looked at for a problem. A look is one
/// sock_diag dump (tens of microseconds); a flood of refusals must not make it one per
/// connection, and 10 ms is still "at the moment" next to the 1 s of the refresher.
const LOOK_EVERY: Duration = Duration::from_millis(10);
/// Live: most server endpoints whose last refusal time is remembered (beyond, a refusal
/// is judged by the listeners now).
const REFUSED_AT_CAP: usize = 256;
/// Live: how often a port map's backend is looked at without a refusal through it, so
/// that a backend started or stopped after a refusal is said as an update (the same
/// second as the refresher's looks at the port's own listeners).
const BACKEND_LOOK_EVERY: Duration = Duration::from_secs(1);
/// Most changes said under one finding of the final diagnosis (the latest ones).
const CHANGES_SAID: usize = 8;
/// Live: how long a capture sees no connection on the port, while SYNs go to other
/// ports, before it says the clients are pointed elsewhere (README, "no_traffic"). Long
/// enough for a client's retries (1 s, 3 s) to have reached the port had it been aimed
/// at it.
pub const NO_TRAFFIC_AFTER_US: u64 = 10_000_000;

/// The final diagnosis: the ranked findings (each with what changed after the moment it
/// rests on), and the live findings it no longer repeats, with why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diagnosis {
    pub findings: Vec<Finding>,
    pub superseded: Vec<Superseded>,
}

/// A live finding the final diagnosis does not repeat.
#[derive(Clone, Debug, PartialEq)]
pub struct Superseded {
    /// As it was printed.
    pub live: Finding,
    pub printed_at: Timestamp,
    /// The listener changes after it was printed (empty: none; the whole capture and the
    /// last, complete look at the machine outweighed it).
    pub changes: Vec<FactChange>,
    /// The final finding that tells what it saw: a live "silently dropped" whose
    /// connections got through on a retransmitted SYN is a slow connect.
    pub by: Option<FindingKind>,
    /// What the capture saw after it was printed that took its ground away.
    pub later: Option<Later>,
}

/// What happened after a live finding was printed that it no longer holds against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    /// A live `no_traffic`: connections reached the port after all.
    TrafficArrived,
    /// A live `handshake_stalled`: the stalled handshakes completed.
    HandshakesCompleted,
}

impl Later {
    pub fn as_str(self) -> &'static str {
        match self {
            Later::TrafficArrived => "traffic_arrived",
            Later::HandshakesCompleted => "handshakes_completed",
        }
    }
}

/// Live: a fact changed after findings were printed that rested on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub change: FactChange,
    /// The live findings printed before the change, in the order printed.
    pub earlier: Vec<FindingKind>,
}

/// Live: a port map's backend (the DNAT rule's destination) in another namespace: its
/// listeners over the run, looked at when a connection through the map is refused.
struct Backend {
    to: Endpoint,
    /// Its namespace at the latest look; `None` when no process sat in it.
    namespace: Option<String>,
    timeline: Timeline,
    /// Changes numbered below this were said.
    said: u64,
    look_wanted: bool,
    looked: Option<Instant>,
    /// The RST time of the last refusal through the map not yet followed by a look.
    refused: Option<Timestamp>,
}

impl Backend {
    /// Whether `server` is reached through the map: the backend itself (the copy after
    /// the translation) or the port on any address (before it).
    fn serves(&self, server: &Endpoint, port: u16) -> bool {
        *server == self.to || server.port == port
    }

    /// The backend's listeners as its own timeline keeps them: that timeline is all in
    /// one namespace (`namespace`), and a timeline leaves out listeners marked as
    /// another namespace's.
    fn own(listeners: &[host::Listener]) -> Vec<host::Listener> {
        listeners
            .iter()
            .map(|l| host::Listener {
                namespace: None,
                ..l.clone()
            })
            .collect()
    }
}

/// Accumulates evidence and turns it into findings.
pub struct Diagnoser {
    scope: Scope,
    facts: Option<HostFacts>,
    attribution: bool,
    /// Live: problems arrived since the last poll.
    dirty: bool,
    polled: Option<Instant>,
    /// Live pending notices since the last poll, with what the kernel said of them so
    /// far.
    pending: Vec<(FlowRecord, Option<KernelFacts>)>,
    ev: Evidence,
    /// Every client SYN to the port, by second and source.
    meter: syn_meter::SynMeter,
    emitted: HashSet<FindingKind>,
    /// Live: the flows whose processes were asked for and not yet handed out, with the
    /// answer once it came. A flow's entry goes with its final record, so an answer that
    /// comes after it (the lookup took longer than the connection) is dropped instead of
    /// kept for ever: a long watch would otherwise fill the cap and name no later flow.
    processes: HashMap<u64, Option<FlowProcesses>>,
    /// The current second of lookups: when it began, how many were asked.
    lookups: Option<(Instant, u32)>,
    /// Live: the port's listeners over the run.
    listeners: Option<Timeline>,
    /// Live: when the last connection to each server endpoint was refused: the moment
    /// its refusals are judged at.
    refused_at: BTreeMap<Endpoint, Timestamp>,
    /// Live: the first SYN-ACK from a refused server endpoint after its last refusal: it
    /// listens again. Its connection counts as accepted in the polls until its final
    /// record does (a long-lived connection's comes only when it closes), so that a
    /// startup race or restart is said as the server answers, not at the end.
    reopened: BTreeMap<Endpoint, Timestamp>,
    /// Live: when the last connection to a refused server endpoint that completed its
    /// handshake began (its final record arrived): its `reopened` is in the evidence.
    accepted_at: BTreeMap<Endpoint, Timestamp>,
    /// Live: a problem arrived that the port's sockets were not looked at for yet.
    look_wanted: bool,
    looked: Option<Instant>,
    /// Live findings as printed, with when.
    printed: Vec<(Timestamp, Finding)>,
    /// Listener changes numbered below this were said (in a finding or an update).
    said: u64,
    /// Changes already behind `said` that are still news: they came after the moment
    /// a finding printed later rests on (a refusal judged after a listener started).
    unsaid: Vec<FactChange>,
    /// Live: when the first look at the machine was taken (the capture's start).
    began: Option<Timestamp>,
    /// Live, with a port map: its backend's listeners over the run.
    backend: Option<Backend>,
}

impl Diagnoser {
    /// `facts`: the first look at the machine ([`HostFacts::first_look`], live on Linux);
    /// `None` for replays. `attribution`: name processes behind client sockets (needs
    /// CAP_SYS_PTRACE for other users' processes).
    pub fn new(scope: Scope, facts: Option<HostFacts>, attribution: bool) -> Diagnoser {
        let backend = facts.as_ref().and_then(|f| {
            let d = f.firewall.as_ref()?.dnat().first()?;
            let (namespace, listeners) = match &d.backend {
                Some((ns, ls)) => (Some(ns.clone()), ls.as_slice()),
                None => (None, &[][..]),
            };
            Some(Backend {
                to: Endpoint::new(d.to.ip(), d.to.port()),
                namespace,
                timeline: Timeline::first_look(&Backend::own(listeners), f.now.taken),
                said: 0,
                look_wanted: false,
                looked: None,
                refused: None,
            })
        });
        Diagnoser {
            backend,
            scope,
            attribution,
            dirty: false,
            polled: None,
            pending: Vec::new(),
            ev: Evidence::default(),
            meter: syn_meter::SynMeter::default(),
            emitted: HashSet::new(),
            processes: HashMap::new(),
            lookups: None,
            listeners: facts
                .as_ref()
                .map(|f| Timeline::first_look(&f.now.listeners, f.now.taken)),
            began: facts.as_ref().map(|f| f.now.taken),
            facts,
            refused_at: BTreeMap::new(),
            reopened: BTreeMap::new(),
            accepted_at: BTreeMap::new(),
            look_wanted: false,
            looked: None,
            printed: Vec::new(),
            said: 0,
            unsaid: Vec::new(),
        }
    }

    /// Live: whether a finding of `kind` may be printed now. A partial view is about the
    /// capture's end; no traffic is certain once `NO_TRAFFIC_AFTER_US` passed without a
    /// connection while SYNs went elsewhere (without them it may be a quiet port).
    fn certain_now(&self, kind: FindingKind) -> bool {
        match kind {
            FindingKind::PartialView => false,
            FindingKind::NoTraffic => {
                let waited = match (&self.facts, self.began) {
                    (Some(f), Some(began)) => f.now.taken.micros_since(began),
                    _ => 0,
                };
                waited >= NO_TRAFFIC_AFTER_US
                    && self.ev.flows() == 0
                    && !self.ev.syns_elsewhere.is_empty()
            }
            _ => true,
        }
    }

    /// Whether the machine is being looked at (a live capture with /proc).
    pub fn has_host_facts(&self) -> bool {
        self.facts.is_some()
    }

    /// Whether `addr` is one of this host's own addresses at the latest look (loopback
    /// always is); `false` without a look at the machine (a replay).
    pub fn is_own_address(&self, addr: std::net::IpAddr) -> bool {
        self.facts
            .as_ref()
            .is_some_and(|f| f.now.is_own_address(addr))
    }

    /// The one count of what happened: the summary, the live table and the exit status
    /// read it.
    pub fn evidence(&self) -> &Evidence {
        &self.ev
    }

    /// A client SYN of flow `id` was just seen at `now`: while its socket exists, ask who
    /// owns it and who owns the listener it is aimed at (live only, rate limited). The
    /// returned request walks /proc for milliseconds: the caller runs it off the flow
    /// stage ([`LookupRequest::run`]) and hands back the answer with
    /// [`processes_found`](Self::processes_found).
    pub fn syn_seen(
        &mut self,
        id: u64,
        client: Endpoint,
        server: Endpoint,
        now: Instant,
    ) -> Option<LookupRequest> {
        let facts = self.facts.as_ref()?;
        if !self.attribution || self.processes.len() >= PROCESSES_CAP {
            return None;
        }
        let (since, asked) = self.lookups.get_or_insert((now, 0));
        if now.duration_since(*since) >= Duration::from_secs(1) {
            (*since, *asked) = (now, 0);
        }
        if *asked >= LOOKUPS_PER_SEC {
            return None;
        }
        *asked += 1;
        self.processes.entry(id).or_insert(None);
        let server_proc = facts
            .now
            .listeners
            .iter()
            .find(|l| l.accepts(&server))
            .and_then(|l| l.processes.first().cloned());
        Some(LookupRequest {
            id,
            client,
            server: server_proc,
        })
    }

    /// The answer to a [`LookupRequest`]; dropped when its flow already finished.
    pub fn processes_found(&mut self, id: u64, procs: FlowProcesses) {
        if let Some(slot) = self.processes.get_mut(&id) {
            *slot = Some(procs);
        }
    }

    /// The processes behind a flow, if they were found; forgets the flow (called with
    /// its final record).
    pub fn processes_of(&mut self, id: u64) -> Option<FlowProcesses> {
        self.processes.remove(&id).flatten()
    }

    /// Live: the processes behind a flow about to be [finished](Self::flow_finished), as
    /// its line names them: the findings it counts in name them too.
    pub fn flow_named(&mut self, r: &FlowRecord, procs: &FlowProcesses) {
        self.ev.named(r, procs);
    }

    /// A SYN without ACK from `src` to `dst`, captured at `ts` (live and replays). Those to
    /// the port are metered by second and source. Live, a SYN flood finishes no flow while
    /// it lasts (its half-open attempts wait until the capture ends), so a second of SYNs
    /// ending with many sources seen, or their count reaching a flood's, is what makes
    /// the next poll look for one.
    pub fn syn_arrived(&mut self, src: std::net::IpAddr, dst: Endpoint, ts: Timestamp) {
        if dst.port != self.scope.port {
            return;
        }
        let second_ended = self.meter.syn(src, ts);
        let sources = self.meter.rate().sources;
        if self.facts.is_some()
            && (second_ended && sources >= rules::FLOOD_SOURCES || sources == rules::FLOOD_SOURCES)
            && !self.emitted.contains(&FindingKind::SynFlood)
        {
            self.dirty = true;
        }
    }

    /// Live: a SYN-ACK from `server` captured at `ts`. The first after refusals to it
    /// says it listens again: the next poll may name a startup race or restart, with
    /// the listener looked at now (who started listening, and when). Only a map lookup
    /// for each SYN-ACK: it is on the flow stage's path.
    pub fn synack_seen(&mut self, server: Endpoint, ts: Timestamp) {
        // The port's, or its port map's backend's (its port may differ).
        let port = self.scope.port;
        if server.port != port
            && self
                .backend
                .as_ref()
                .is_none_or(|b| !b.serves(&server, port))
        {
            return;
        }
        let Some(&refused) = self.refused_at.get(&server) else {
            return;
        };
        if self.reopened.get(&server).is_some_and(|&t| t >= refused) {
            return;
        }
        self.reopened.insert(server, ts);
        self.problem();
        // A port map's backend answering again: who listens there now.
        if let Some(b) = &mut self.backend {
            if b.serves(&server, self.scope.port) {
                b.look_wanted = true;
            }
        }
    }

    /// A SYN to another port (or address) on the interface.
    pub fn syn_elsewhere(&mut self, dst: Endpoint) {
        self.ev.syn_elsewhere(dst);
    }

    /// A flow's final record: counted once, here. Live, a problem makes the next
    /// [`poll`](Self::poll) look for findings.
    pub fn flow_finished(&mut self, r: &FlowRecord, kernel: Option<&KernelFacts>) {
        self.ev.add(r);
        if let Some(k) = kernel {
            self.ev.kernel.add(r, k);
            if self.facts.is_some() && (!k.drops.is_empty() || !k.resets_sent.is_empty()) {
                self.problem();
            }
        }
        if self.facts.is_none() {
            return;
        }
        if r.outcome == Outcome::Refused
            && (self.refused_at.len() < REFUSED_AT_CAP || self.refused_at.contains_key(&r.server))
        {
            // The RST's time: the listeners are judged as they were then.
            self.refused_at.insert(r.server, r.last_ts);
        }
        if let Some(b) = &mut self.backend {
            if r.outcome == Outcome::Refused && b.serves(&r.server, self.scope.port) {
                b.look_wanted = true;
                b.refused = Some(r.last_ts);
            }
        }
        if r.handshake_rtt_us.is_some() && self.refused_at.contains_key(&r.server) {
            self.accepted_at.insert(r.server, r.first_ts);
        }
        if r.outcome.is_problem() || r.port_reused || evidence::slow_connect_delay(r).is_some() {
            self.problem();
        }
        if r.zero_window_us.iter().any(|&us| us >= evidence::STALL_US) {
            self.dirty = true;
        }
    }

    /// Live: a refusal, drop or reset arrived: findings are looked for at the next poll,
    /// and the port's sockets are looked at now.
    fn problem(&mut self) {
        self.dirty = true;
        self.look_wanted = true;
    }

    /// A live notice of a flow not over yet: SYNs still unanswered (already enough to say
    /// they are dropped, and whether by a full queue; with the kernel's facts so far, by
    /// what), SYN-ACKs retransmitted without an ACK, or a zero window held past the
    /// stall mark. Kept only for the next poll: its final record follows.
    pub fn flow_pending(&mut self, r: &FlowRecord, kernel: Option<&KernelFacts>) {
        if self.facts.is_some() && self.pending.len() < 64 {
            self.pending.push((*r, kernel.cloned()));
            self.problem();
        }
    }

    /// The kernel witnessed a listener on the port appear or go away (a socket entered
    /// or left LISTEN); `process`: who called listen() or close(), as the pipeline could
    /// name it.
    /// The kernel witness's storm counts, as just read (over the run so far).
    pub fn kernel_tallied(
        &mut self,
        tallies: &[crate::kernel::storm::Tally],
        names: &crate::kernel::Names,
    ) {
        self.ev.kernel.storm_counted(tallies, names);
        self.dirty = true;
    }

    pub fn listener_changed(&mut self, e: &KernelEvent, process: Option<ProcessInfo>) {
        self.ev.kernel.listener_changed(e);
        let EventKind::State { old, new } = e.kind else {
            return;
        };
        if let (Some(f), Some(t)) = (&mut self.facts, &mut self.listeners) {
            let listening = new == TcpState::Listen && old != TcpState::Listen;
            t.witnessed(e.src, listening, e.ts, process);
            f.now.listeners = t.current();
            self.dirty = true;
            // Checked against a look at once: an event lost to a full ring buffer would
            // otherwise leave the listeners wrong until the refresher's next look.
            self.look_wanted = true;
        }
    }

    /// A newer look at the machine (from the pipeline's refresher), taken at
    /// `snapshot.taken`.
    pub fn facts_refreshed(&mut self, mut snapshot: Snapshot) {
        // Counts that may have crossed a threshold (TIME_WAIT sockets), or a wait that
        // may have run out (no traffic): the next poll looks.
        let counts = snapshot.count(host::SocketState::TimeWait) > 0
            && !(self.emitted.contains(&FindingKind::TimeWaitBuildup)
                && self.emitted.contains(&FindingKind::EphemeralPortsExhausted));
        let quiet = self.ev.flows() == 0
            && !self.ev.syns_elsewhere.is_empty()
            && !self.emitted.contains(&FindingKind::NoTraffic);
        if let (Some(f), Some(t)) = (&mut self.facts, &mut self.listeners) {
            t.look(&snapshot.listeners, snapshot.taken);
            snapshot.listeners = t.current();
            f.now = snapshot;
            self.dirty |= counts || quiet;
        }
    }

    /// Live: whether the pipeline should look at the port's sockets now
    /// ([`host::listeners_now`]): a problem arrived since the last look, and looks are
    /// at most every `LOOK_EVERY`.
    pub fn look_due(&self, now: Instant) -> bool {
        self.look_wanted
            && self
                .looked
                .is_none_or(|t| now.duration_since(t) >= LOOK_EVERY)
    }

    /// Live: the port's listening sockets, read at `at` (wall clock) and `now`; `None`
    /// when they could not be read (the refresher's looks stand).
    pub fn sockets_looked(
        &mut self,
        listeners: Option<Vec<host::Listener>>,
        at: Timestamp,
        now: Instant,
    ) {
        self.look_wanted = false;
        self.looked = Some(now);
        if let (Some(f), Some(t), Some(ls)) = (&mut self.facts, &mut self.listeners, listeners) {
            t.look(&ls, at);
            f.now.listeners = t.current();
        }
    }

    /// Live: the port map's backend address when its namespace should be looked at now
    /// ([`host::BackendLooker`]), and whether for a connection through the map (a
    /// refusal, or the backend answering again: at most every `LOOK_EVERY`, as the
    /// port's own sockets) rather than because `BACKEND_LOOK_EVERY` passed.
    pub fn backend_look_due(&self, now: Instant) -> Option<(std::net::IpAddr, bool)> {
        let b = self.backend.as_ref()?;
        let since = b.looked.map(|t| now.duration_since(t));
        if b.look_wanted && since.is_none_or(|s| s >= LOOK_EVERY) {
            return Some((b.to.addr, true));
        }
        since
            .is_none_or(|s| s >= BACKEND_LOOK_EVERY)
            .then_some((b.to.addr, false))
    }

    /// Live: the backend's namespace and listeners, looked at `at` (wall clock) and
    /// `now`: `Some(None)` when no process sat in its namespace; `None` when there was
    /// no answer (a walk held back), which keeps the last look.
    pub fn backend_looked(
        &mut self,
        found: Option<Option<(String, Vec<host::Listener>)>>,
        at: Timestamp,
        now: Instant,
    ) {
        let Some(b) = &mut self.backend else {
            return;
        };
        b.looked = Some(now);
        let Some(found) = found else {
            return;
        };
        b.look_wanted = false;
        let (namespace, listeners) = match found {
            Some((ns, ls)) => (Some(ns), ls),
            None => (None, Vec::new()),
        };
        b.namespace = namespace;
        // The refusal's RST proves nothing listened on the backend then: a stop this
        // look finds happened by the RST, not by the look (it is no news after a finding
        // about that refusal). Any other change is placed as early: the look follows the
        // refusal within moments.
        let at = match b.refused.take() {
            // Just after it: a start found by a later look may date from this look, and
            // must stay after the refusal.
            Some(rst) if !listeners.iter().any(|l| l.accepts(&b.to)) => rst.add_micros(1).min(at),
            _ => at,
        };
        b.timeline.look(&Backend::own(&listeners), at);
    }

    /// Live: listener changes after the moment of printed findings that rest on the
    /// listeners, each said once. Changes before the first such finding's moment are
    /// not news: it rests on them.
    pub fn updates(&mut self) -> Vec<Update> {
        let Some(t) = &self.listeners else {
            return Vec::new();
        };
        let from = std::mem::replace(&mut self.said, t.next_seq());
        let backend_from = self.backend.as_mut().map(|b| {
            (
                std::mem::replace(&mut b.said, b.timeline.next_seq()),
                b.said,
            )
        });
        // Called after every batch: nothing new must cost nothing (no allocation).
        if from == self.said
            && self.unsaid.is_empty()
            && backend_from.is_none_or(|(from, next)| from == next)
        {
            return Vec::new();
        }
        let earlier: Vec<FindingKind> = self
            .printed
            .iter()
            .map(|(_, f)| f.kind)
            .filter(|k| k.rests_on_listeners())
            .collect();
        if earlier.is_empty() {
            self.unsaid.clear();
            return Vec::new();
        }
        let unsaid = std::mem::take(&mut self.unsaid);
        let backend = self
            .backend
            .as_ref()
            .zip(backend_from)
            .map(|(b, (from, _))| {
                // Its own port's: other listeners in its namespace are said in findings
                // ("listens on Q+1 instead"), not as changes of the port's listener.
                b.timeline
                    .changes_from(from)
                    .filter(|c| c.endpoint.port == b.to.port)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        unsaid
            .into_iter()
            .chain(t.changes_from(from).cloned())
            .chain(backend)
            .map(|change| Update {
                change,
                earlier: earlier.clone(),
            })
            .collect()
    }

    /// The moment a finding rests on: its refusals' last RST, or `printed` (the facts
    /// when it was made).
    fn moment_of(&self, f: &Finding, printed: Timestamp) -> Timestamp {
        f.cause
            .refused_server()
            .and_then(|s| self.refused_at.get(&s).copied())
            .unwrap_or(printed)
    }

    /// Live: the kinds of finding printed so far, for `--metrics`.
    pub fn said_live(&self) -> impl Iterator<Item = FindingKind> + '_ {
        self.printed.iter().map(|(_, f)| f.kind)
    }

    /// Live: the latest listener change, for the live table.
    pub fn last_listener_change(&self) -> Option<&FactChange> {
        self.listeners.as_ref()?.last_change()
    }

    /// Before the rules run: each refused server endpoint with the listeners at its
    /// last refusal.
    fn judge_refusals_at_their_moment(&mut self) {
        if let (Some(f), Some(t)) = (&mut self.facts, &self.listeners) {
            f.refused_at = self
                .refused_at
                .iter()
                .map(|(server, ts)| (*server, t.at(*ts)))
                .collect();
            f.listener_changes.clear();
            f.listener_changes.extend(t.changes_from(0).cloned());
            if let Some(b) = &self.backend {
                f.listener_changes
                    .extend(b.timeline.changes_from(0).cloned());
                f.listener_changes.sort_by_key(|c| c.at);
                let port = self.scope.port;
                let moment = self
                    .refused_at
                    .iter()
                    .filter(|(server, _)| b.serves(server, port))
                    .map(|(_, ts)| *ts)
                    .max();
                // The backend refused at that moment (its TCP's RST): a listener the
                // looks place there then started between the RST and the next look.
                f.backend_at_refusal = moment.map(|ts| {
                    let mut ls = b.timeline.at(ts);
                    ls.retain(|l| !l.accepts(&b.to));
                    for l in &mut ls {
                        l.namespace.clone_from(&b.namespace);
                    }
                    (b.namespace.clone(), ls)
                });
            }
        }
    }

    /// Live: whether a [`poll`](Self::poll) at `now` would look for findings. At most
    /// every `POLL` however many problems arrive: a flood must not turn into a /proc read
    /// per connection on the flow stage; what waits is caught by a later poll.
    pub fn poll_due(&self, now: Instant) -> bool {
        self.dirty && self.polled.is_none_or(|t| now.duration_since(t) >= POLL)
    }

    /// Live: the findings that recent problems made certain, each printed once.
    /// `counters`: the kernel's counters read just now (they tell a DROP rule from a full
    /// queue, and reading them is cheap). `wall`: the wall clock now, for when each was
    /// printed. Only when [`poll_due`](Self::poll_due).
    pub fn poll(&mut self, now: Instant, wall: Timestamp, counters: Counters) -> Vec<Finding> {
        if !self.poll_due(now) {
            return Vec::new();
        }
        self.dirty = false;
        self.polled = Some(now);
        if let Some(f) = &mut self.facts {
            f.now.counters = counters;
        }
        self.ev.syn_rate = self.meter.rate();
        // Servers answering again whose accepted connection has no final record yet.
        let reopened: Vec<(Endpoint, Timestamp)> = self
            .reopened
            .iter()
            .filter(|(s, &t)| {
                self.refused_at.get(s).is_some_and(|&r| t >= r)
                    && self
                        .accepted_at
                        .get(s)
                        .is_none_or(|&a| a < self.refused_at[s])
            })
            .map(|(s, t)| (*s, *t))
            .collect();
        let with_pending = (!self.pending.is_empty() || !reopened.is_empty()).then(|| {
            let mut ev = self.ev.clone();
            for (server, at) in reopened {
                ev.timelines.add(server, at, windows::Fate::Accepted);
            }
            for (r, k) in self.pending.drain(..) {
                ev.add(&r);
                // A stalled receiver's connection goes on: its processes, found at
                // its SYN, name it already.
                if let Some(Some(p)) = self.processes.get(&r.id) {
                    ev.named(&r, p);
                }
                if let Some(k) = k {
                    ev.kernel.add(&r, &k);
                }
            }
            ev
        });
        self.judge_refusals_at_their_moment();
        let ev = with_pending.as_ref().unwrap_or(&self.ev);
        let found = rules::evaluate(ev, self.facts.as_ref(), &self.scope);
        let mut out = Vec::new();
        for f in found {
            if self.certain_now(f.kind) && self.emitted.insert(f.kind) {
                out.push(f);
            }
        }
        if out.is_empty() {
            return out;
        }
        // The new findings rest on the listener changes up to their moment; a change
        // after it (a server started between a refusal and this poll) is still news, and
        // so is any change not yet said if findings were printed before.
        let moment = out
            .iter()
            .filter(|f| f.kind.rests_on_listeners())
            .map(|f| self.moment_of(f, wall))
            .min();
        if let (Some(t), Some(moment)) = (&self.listeners, moment) {
            let before = self
                .printed
                .iter()
                .any(|(_, f)| f.kind.rests_on_listeners());
            self.unsaid.extend(
                t.changes_from(self.said)
                    .filter(|c| before || c.from > moment)
                    .cloned(),
            );
            self.said = t.next_seq();
            if let Some(b) = &mut self.backend {
                // A stop placed just after a refusal by its RST (`backend_looked`) is what
                // the finding about that refusal rests on, not news.
                let moment = moment.add_micros(1);
                self.unsaid.extend(
                    b.timeline
                        .changes_from(b.said)
                        .filter(|c| before || c.from > moment)
                        .cloned(),
                );
                b.said = b.timeline.next_seq();
            }
        }
        self.printed.extend(out.iter().map(|f| (wall, f.clone())));
        out
    }

    /// What the machine looked like at the end (live), for the summary.
    pub fn system_view(&self) -> Option<SystemView> {
        Some(SystemView::of(self.facts.as_ref()?, self.scope.port))
    }

    /// The capture ended at `end` (the flow table's clock); `truncated` packets were cut
    /// inside their headers by the snaplen and reached no connection.
    pub fn capture_ended(&mut self, end: Timestamp, truncated: u64) {
        self.ev.capture_ended(end, truncated);
    }

    /// The final, ranked diagnosis. `last_look`: a complete look at the machine taken
    /// just now (live), so the diagnosis rests on the facts at the end, except that each
    /// refusal is judged by the listeners at its moment. A finding whose facts changed
    /// after that moment (or after it was printed live) says what changed; a live finding
    /// it no longer repeats is listed as superseded, with why.
    pub fn finish(&mut self, last_look: Option<Snapshot>) -> Diagnosis {
        if let Some(snapshot) = last_look {
            self.facts_refreshed(snapshot);
        }
        self.judge_refusals_at_their_moment();
        self.ev.syn_rate = self.meter.rate();
        let mut all = rules::evaluate(&self.ev, self.facts.as_ref(), &self.scope);
        // A count that crossed its threshold during the capture happened, though the
        // sockets may have expired by the end: the final diagnosis keeps what was said.
        for (_, p) in &self.printed {
            if p.kind.is_a_peak() && !all.iter().any(|f| f.kind == p.kind) {
                all.push(p.clone());
            }
        }
        findings::rank(&mut all);
        let Some(t) = &self.listeners else {
            return Diagnosis {
                findings: all,
                superseded: Vec::new(),
            };
        };
        let backend = self.backend.as_ref().map(|b| &b.timeline);
        let latest = |after: Timestamp| -> Vec<FactChange> {
            let mut changes: Vec<FactChange> = t
                .changes_after(after)
                .chain(backend.into_iter().flat_map(|b| b.changes_after(after)))
                .cloned()
                .collect();
            changes.sort_by_key(|c| c.at);
            let skip = changes.len().saturating_sub(CHANGES_SAID);
            changes.into_iter().skip(skip).collect()
        };
        for f in &mut all {
            let printed = self
                .printed
                .iter()
                .find(|(_, p)| p.kind == f.kind)
                .map(|(at, _)| *at);
            let moment = match (f.cause.refused_server(), printed) {
                _ if !f.kind.rests_on_listeners() => None,
                (Some(server), _) => self.refused_at.get(&server).copied(),
                (None, printed) => printed,
            };
            if let Some(moment) = moment {
                f.facts_changed = latest(moment);
            }
        }
        let superseded = self
            .printed
            .iter()
            .filter(|(_, p)| !all.iter().any(|f| f.kind == p.kind))
            .map(|(at, p)| Superseded {
                live: p.clone(),
                printed_at: *at,
                changes: if p.kind.rests_on_listeners() {
                    latest(*at)
                } else {
                    Vec::new()
                },
                by: superseded_by(p.kind)
                    .iter()
                    .copied()
                    .find(|k| all.iter().any(|f| f.kind == *k)),
                later: match p.kind {
                    FindingKind::NoTraffic if self.ev.flows() > 0 => Some(Later::TrafficArrived),
                    FindingKind::HandshakeStalled if self.ev.handshake_stalled == 0 => {
                        Some(Later::HandshakesCompleted)
                    }
                    _ => None,
                },
            })
            .collect();
        Diagnosis {
            findings: all,
            superseded,
        }
    }
}

/// The final findings that may tell what a live finding of `kind` saw, first found
/// first.
fn superseded_by(kind: FindingKind) -> &'static [FindingKind] {
    match kind {
        // The SYNs it counted as unanswered were answered later, or the listener's
        // answers were lost on the way out, or they were a flood's spoofed SYNs.
        FindingKind::SilentlyDropped => &[
            FindingKind::SynFlood,
            FindingKind::SlowConnect,
            FindingKind::RepliesDropped,
        ],
        // A flood's martian sources and half-open attempts are its own story.
        FindingKind::InvalidSource | FindingKind::HandshakeStalled => &[FindingKind::SynFlood],
        // Refused while the server was down, accepted once it came up: this host's
        // server, or the one a port map (read or not) forwards the SYNs to, whose RSTs
        // this host's TCP did not send.
        FindingKind::NothingListening | FindingKind::RefusedElsewhere => &[
            FindingKind::StartupRace,
            FindingKind::ServerRestarted,
            FindingKind::RestartLoop,
        ],
        _ => &[],
    }
}

#[cfg(test)]
pub(crate) mod tests;

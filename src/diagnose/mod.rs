//! Diagnose: from what happened (flow records, SYNs that went elsewhere) and, live on
//! Linux, the state of the machine (listeners, queues, counters, namespaces), to *why*:
//! ranked [`Finding`]s naming the cause, the evidence, the processes and the next step.
//!
//! - [`evidence`]: what happened, counted once; the summary and exit status read it too.
//! - [`host`]: the machine's facts, read on request by plain functions.
//! - `rules`: one cause family per file, pure functions from evidence and facts to
//!   findings.
//! - [`cause`] and `wording`: what a finding rests on, typed, and how it is said.
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
mod rules;
mod wording;

pub use cause::Cause;
pub use evidence::{Evidence, Percentiles};
pub use findings::{Finding, FindingKind, NamedProcess, Role, Severity};
pub use host::{
    Counters, FlowProcesses, HostFacts, ListenerView, LookupRequest, ProcessInfo, Snapshot,
    SystemView,
};
pub use rules::Scope;

use crate::decode::Endpoint;
use crate::flow::FlowRecord;
use crate::kernel::{KernelEvent, KernelFacts};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Live: most often that findings are looked for while problems keep coming.
const POLL: Duration = Duration::from_millis(100);
/// Live: most client processes looked up per second (each costs a walk of every
/// process's fds: a few a second is what 2 cores can spare next to a flood).
const LOOKUPS_PER_SEC: u32 = 4;
/// Live: most flows whose processes are remembered until their final record.
const PROCESSES_CAP: usize = 10_000;

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
    emitted: HashSet<FindingKind>,
    processes: HashMap<u64, FlowProcesses>,
    /// The current second of lookups: when it began, how many were asked.
    lookups: Option<(Instant, u32)>,
}

impl Diagnoser {
    /// `facts`: the first look at the machine ([`HostFacts::first_look`], live on Linux);
    /// `None` for replays. `attribution`: name processes behind client sockets (needs
    /// CAP_SYS_PTRACE for other users' processes).
    pub fn new(scope: Scope, facts: Option<HostFacts>, attribution: bool) -> Diagnoser {
        Diagnoser {
            scope,
            facts,
            attribution,
            dirty: false,
            polled: None,
            pending: Vec::new(),
            ev: Evidence::default(),
            emitted: HashSet::new(),
            processes: HashMap::new(),
            lookups: None,
        }
    }

    /// Whether the machine is being looked at (a live capture with /proc).
    pub fn has_host_facts(&self) -> bool {
        self.facts.is_some()
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

    /// The answer to a [`LookupRequest`].
    pub fn processes_found(&mut self, id: u64, procs: FlowProcesses) {
        if self.processes.len() < PROCESSES_CAP {
            self.processes.insert(id, procs);
        }
    }

    /// The processes behind a flow, if they were found; forgets them.
    pub fn processes_of(&mut self, id: u64) -> Option<FlowProcesses> {
        self.processes.remove(&id)
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
                self.dirty = true;
            }
        }
        if self.facts.is_some() && (r.outcome.is_problem() || r.port_reused) {
            self.dirty = true;
        }
    }

    /// A live "still unanswered" notice: already enough to say the SYNs are dropped, and
    /// whether by a full queue; with the kernel's facts so far, by what. Kept only for the
    /// next poll: its final record follows.
    pub fn flow_pending(&mut self, r: &FlowRecord, kernel: Option<&KernelFacts>) {
        if self.facts.is_some() && self.pending.len() < 64 {
            self.pending.push((*r, kernel.cloned()));
            self.dirty = true;
        }
    }

    /// The kernel witnessed a listener on the port appear or go away.
    pub fn listener_changed(&mut self, e: &KernelEvent) {
        self.ev.kernel.listener_changed(e);
        if self.facts.is_some() {
            self.dirty = true;
        }
    }

    /// A newer look at the machine (from the pipeline's refresher).
    pub fn facts_refreshed(&mut self, snapshot: Snapshot) {
        if let Some(f) = &mut self.facts {
            f.now = snapshot;
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
    /// queue, and reading them is cheap). Only when [`poll_due`](Self::poll_due).
    pub fn poll(&mut self, now: Instant, counters: Counters) -> Vec<Finding> {
        if !self.poll_due(now) {
            return Vec::new();
        }
        self.dirty = false;
        self.polled = Some(now);
        if let Some(f) = &mut self.facts {
            f.now.counters = counters;
        }
        let with_pending;
        let ev = if self.pending.is_empty() {
            &self.ev
        } else {
            let mut ev = self.ev.clone();
            for (r, k) in self.pending.drain(..) {
                ev.add(&r);
                if let Some(k) = k {
                    ev.kernel.add(&r, &k);
                }
            }
            with_pending = ev;
            &with_pending
        };
        let mut out = Vec::new();
        for f in rules::evaluate(ev, self.facts.as_ref(), &self.scope) {
            if !f.kind.needs_whole_capture() && self.emitted.insert(f.kind) {
                out.push(f);
            }
        }
        out
    }

    /// What the machine looked like at the end (live), for the summary.
    pub fn system_view(&self) -> Option<SystemView> {
        Some(SystemView::of(self.facts.as_ref()?, self.scope.port))
    }

    /// The final, ranked diagnosis. `last_look`: a complete look at the machine taken
    /// just now (live), so the diagnosis rests on the facts at the end.
    pub fn finish(&mut self, last_look: Option<Snapshot>) -> Vec<Finding> {
        if let Some(snapshot) = last_look {
            self.facts_refreshed(snapshot);
        }
        let mut all = rules::evaluate(&self.ev, self.facts.as_ref(), &self.scope);
        findings::rank(&mut all);
        all
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! The listeners on the watched port over the run: what listens now and since when,
//! what stopped and when. The rules judge a refusal by the listeners at its moment (not
//! at the moment they run, which can be a second or the whole capture later), and a live
//! finding whose facts change afterwards gets an update that says what changed.
//!
//! Three sources, each good at something the others are not:
//! - the first look, before any packet: what listened before the capture;
//! - the kernel witness's state changes (a socket entering or leaving LISTEN): the exact
//!   time and the process that called listen() or close(), but no queues;
//! - looks at the port's sockets (a sock_diag dump at the moment of a problem, the
//!   refresher's /proc snapshots): complete at their instant, with queues and inodes, but
//!   a listener first seen by a look is only known to have started after the look before.
//!
//! Facts arrive out of order (a look can overtake the witness's event about the same
//! listen(), a snapshot taken before an event can arrive after it), so every span keeps
//! the time of the newest fact about it and older facts only refine it.
//!
//! Pure: facts and their timestamps in, answers out; it reads no clock.

use super::host::{Listener, ProcessInfo};
use crate::decode::{Endpoint, Timestamp};
use std::collections::VecDeque;

/// Most spans kept (open ones and the latest closed ones): a server in a restart loop
/// must not grow the diagnosis without bound.
const SPANS_CAP: usize = 256;
/// Most changes remembered for updates and the final diagnosis.
const CHANGES_CAP: usize = 1024;
/// A witness event this close after a look that already saw its listener is the same
/// listen(): the kernel's clock and the wall clock a look is stamped with are converted
/// separately and can disagree by this much.
const SLACK_US: u64 = 2_000;

/// What changed about the port's listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    ListenerStarted,
    ListenerStopped,
}

impl ChangeKind {
    /// The JSON name (`"change"` of an update line).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::ListenerStarted => "listener_started",
            ChangeKind::ListenerStopped => "listener_stopped",
        }
    }
}

/// A fact a finding may rest on that changed during the capture: a listener on the port
/// started or stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactChange {
    pub kind: ChangeKind,
    pub endpoint: Endpoint,
    /// The kernel's time of the listen() or close() when `exact`; otherwise when a look
    /// first saw the change.
    pub at: Timestamp,
    pub exact: bool,
    /// When the diagnosis counts it from ([`Timeline::at`]): `at`, but for a start first
    /// seen by a look, the look before (the listener may have been there since). A
    /// finding resting on a moment before this is older than the change.
    pub from: Timestamp,
    /// Who called listen() or close() (the witness), or who owned the socket.
    pub process: Option<ProcessInfo>,
    /// Arrival order, for updates: a change is said once.
    pub(crate) seq: u64,
}

/// One listening endpoint's time of listening.
#[derive(Clone, Debug)]
struct Span {
    endpoint: Endpoint,
    /// Its sockets as last seen (several: an SO_REUSEPORT group); from the witness alone
    /// they have no inode or queue.
    sockets: Vec<Listener>,
    /// The earliest it may have listened from: exact with the witness, else the look
    /// before the one that first saw it (0: before the capture).
    from: Timestamp,
    /// When it was first known to listen (`from` when exact).
    seen: Timestamp,
    from_exact: bool,
    /// When it stopped, or when a look first saw it gone.
    until: Option<Timestamp>,
    until_exact: bool,
    /// The time of the newest fact about it: older facts only refine it.
    confirmed: Timestamp,
    /// A close() the witness saw that a newer look overrode (another socket of the group
    /// still listened, or so the clocks said): the exact stop when a look finds it gone.
    close_seen: Option<(Timestamp, Option<ProcessInfo>)>,
}

impl Span {
    fn open(&self) -> bool {
        self.until.is_none()
    }

    fn first_process(&self) -> Option<ProcessInfo> {
        self.sockets
            .iter()
            .find_map(|s| s.processes.first().cloned())
    }
}

/// The port's listeners over the run (live only).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    spans: Vec<Span>,
    changes: VecDeque<FactChange>,
    next_seq: u64,
    /// When the newest look was taken.
    last_look: Timestamp,
}

impl Timeline {
    /// From the first look, taken at `at` before any packet: what listens then listens
    /// "since before the capture".
    pub fn first_look(listeners: &[Listener], at: Timestamp) -> Timeline {
        let mut t = Timeline {
            last_look: at,
            ..Timeline::default()
        };
        for (endpoint, sockets) in by_endpoint(listeners) {
            t.spans.push(Span {
                endpoint,
                sockets,
                from: Timestamp(0),
                seen: Timestamp(0),
                from_exact: true,
                until: None,
                until_exact: false,
                confirmed: at,
                close_seen: None,
            });
        }
        t
    }

    /// The listeners now, as the rules see them.
    pub fn current(&self) -> Vec<Listener> {
        self.spans
            .iter()
            .filter(|s| s.open())
            .flat_map(|s| s.sockets.iter().cloned())
            .collect()
    }

    /// The listeners at `ts`, as far as known. Between two looks a listener's start is
    /// unknown: it counts as listening from the earlier look (a refusal seen just before
    /// the look that found it is not blamed on nothing listening); a stop first seen by
    /// a look counts from that look.
    pub fn at(&self, ts: Timestamp) -> Vec<Listener> {
        self.spans
            .iter()
            .filter(|s| s.from <= ts && s.until.is_none_or(|u| u > ts))
            .flat_map(|s| s.sockets.iter().cloned())
            .collect()
    }

    /// Changes that arrived since `seq` (see [`next_seq`](Self::next_seq)), in order.
    pub fn changes_from(&self, seq: u64) -> impl Iterator<Item = &FactChange> {
        self.changes.iter().filter(move |c| c.seq >= seq)
    }

    /// Changes that came after `ts` as [`at`](Self::at) counts them, in order.
    pub fn changes_after(&self, ts: Timestamp) -> impl Iterator<Item = &FactChange> {
        self.changes.iter().filter(move |c| c.from > ts)
    }

    /// The sequence number the next change will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The latest change, for the live table.
    pub fn last_change(&self) -> Option<&FactChange> {
        self.changes.back()
    }

    /// A complete look at the port's listening sockets taken at `at`.
    pub fn look(&mut self, listeners: &[Listener], at: Timestamp) {
        let seen = by_endpoint(listeners);
        if at <= self.last_look {
            // Overtaken by a newer look or event: it can still name owners.
            for (endpoint, sockets) in seen {
                if let Some(s) = self.open_mut(endpoint) {
                    s.sockets = merge(sockets, &s.sockets);
                }
            }
            return;
        }
        for (endpoint, sockets) in &seen {
            if let Some(s) = self.open_mut(*endpoint) {
                if at > s.confirmed {
                    s.sockets = merge(sockets.clone(), &s.sockets);
                    s.confirmed = at;
                }
                continue;
            }
            // A newer fact (the witness saw it close after this look was taken) wins.
            if self
                .spans
                .iter()
                .any(|s| s.endpoint == *endpoint && s.confirmed >= at)
            {
                continue;
            }
            let from = self
                .spans
                .iter()
                .filter(|s| s.endpoint == *endpoint)
                .filter_map(|s| s.until)
                .fold(self.last_look, Timestamp::max);
            let process = sockets.iter().find_map(|l| l.processes.first().cloned());
            self.push_span(Span {
                endpoint: *endpoint,
                sockets: sockets.clone(),
                from,
                seen: at,
                from_exact: false,
                until: None,
                until_exact: false,
                confirmed: at,
                close_seen: None,
            });
            self.push_change(
                ChangeKind::ListenerStarted,
                *endpoint,
                (at, from),
                false,
                process,
            );
        }
        let gone: Vec<usize> = (0..self.spans.len())
            .filter(|&i| {
                let s = &self.spans[i];
                s.open() && s.confirmed < at && !seen.iter().any(|(e, _)| *e == s.endpoint)
            })
            .collect();
        for i in gone {
            let s = &mut self.spans[i];
            let (until, exact, process) = match s.close_seen.take() {
                // The witness saw the close: its time and process, not the look's.
                Some((ts, p)) if ts >= s.seen => (ts, true, p.or_else(|| s.first_process())),
                _ => (at, false, s.first_process()),
            };
            s.until = Some(until);
            s.until_exact = exact;
            s.confirmed = at;
            let endpoint = s.endpoint;
            self.push_change(
                ChangeKind::ListenerStopped,
                endpoint,
                (until, until),
                exact,
                process,
            );
        }
        self.last_look = at;
    }

    /// The witness saw a socket on `endpoint` enter (`listening`) or leave LISTEN at
    /// `ts`, in `process`.
    pub fn witnessed(
        &mut self,
        endpoint: Endpoint,
        listening: bool,
        ts: Timestamp,
        process: Option<ProcessInfo>,
    ) {
        if listening {
            self.witnessed_listen(endpoint, ts, process);
        } else {
            self.witnessed_close(endpoint, ts, process);
        }
    }

    fn witnessed_listen(
        &mut self,
        endpoint: Endpoint,
        ts: Timestamp,
        process: Option<ProcessInfo>,
    ) {
        if let Some(s) = self.open_mut(endpoint) {
            let counted = ts < s.confirmed || (!s.from_exact && ts <= s.seen.add_micros(SLACK_US));
            if !counted {
                // Another socket on the same endpoint: an SO_REUSEPORT group.
                s.sockets.push(synthetic(endpoint, process));
                s.confirmed = ts;
                return;
            }
            // The look that found it came first: the witness knows when and who.
            fill_processes(&mut s.sockets, process.as_ref());
            if !s.from_exact && ts >= s.from {
                let seen = s.seen;
                s.from = ts;
                s.seen = ts;
                s.from_exact = true;
                self.refine(ChangeKind::ListenerStarted, endpoint, seen, ts, process);
            }
            return;
        }
        // A newer look found it gone: it came and went between looks.
        if self
            .spans
            .iter()
            .any(|s| s.endpoint == endpoint && s.confirmed > ts)
        {
            return;
        }
        self.push_span(Span {
            endpoint,
            sockets: vec![synthetic(endpoint, process.clone())],
            from: ts,
            seen: ts,
            from_exact: true,
            until: None,
            until_exact: false,
            confirmed: ts,
            close_seen: None,
        });
        self.push_change(
            ChangeKind::ListenerStarted,
            endpoint,
            (ts, ts),
            true,
            process,
        );
    }

    fn witnessed_close(&mut self, endpoint: Endpoint, ts: Timestamp, process: Option<ProcessInfo>) {
        if let Some(s) = self.open_mut(endpoint) {
            if ts < s.confirmed {
                // A look after it still saw the endpoint listen: kept in case the next
                // look finds it gone after all (the clocks disagree by microseconds).
                s.close_seen = Some((ts, process));
                return;
            }
            s.confirmed = ts;
            if s.sockets.len() > 1 {
                // One socket of a group left: the others still listen.
                let i = process
                    .as_ref()
                    .and_then(|p| {
                        s.sockets
                            .iter()
                            .rposition(|l| l.processes.iter().any(|q| q.pid == p.pid))
                    })
                    .unwrap_or(s.sockets.len() - 1);
                s.sockets.remove(i);
                return;
            }
            // The last one: the span keeps it, as what listened until now.
            s.until = Some(ts);
            s.until_exact = true;
            let process = process.or_else(|| s.first_process());
            self.push_change(
                ChangeKind::ListenerStopped,
                endpoint,
                (ts, ts),
                true,
                process,
            );
            return;
        }
        // A look saw it gone first: the witness knows when and who.
        let closed = self.spans.iter_mut().rev().find(|s| {
            s.endpoint == endpoint
                && !s.until_exact
                && s.until.is_some_and(|u| u >= ts)
                && ts >= s.seen
        });
        if let Some(s) = closed {
            let seen = s.until.unwrap_or(ts);
            s.until = Some(ts);
            s.until_exact = true;
            self.refine(ChangeKind::ListenerStopped, endpoint, seen, ts, process);
        }
    }

    fn open_mut(&mut self, endpoint: Endpoint) -> Option<&mut Span> {
        self.spans
            .iter_mut()
            .find(|s| s.endpoint == endpoint && s.open())
    }

    fn push_span(&mut self, span: Span) {
        if self.spans.len() >= SPANS_CAP {
            // The oldest closed span goes; open ones are what the rules need.
            match self.spans.iter().position(|s| !s.open()) {
                Some(i) => {
                    self.spans.remove(i);
                }
                None => return,
            }
        }
        self.spans.push(span);
    }

    fn push_change(
        &mut self,
        kind: ChangeKind,
        endpoint: Endpoint,
        (at, from): (Timestamp, Timestamp),
        exact: bool,
        process: Option<ProcessInfo>,
    ) {
        if self.changes.len() >= CHANGES_CAP {
            self.changes.pop_front();
        }
        self.changes.push_back(FactChange {
            kind,
            endpoint,
            at,
            exact,
            from,
            process,
            seq: self.next_seq,
        });
        self.next_seq += 1;
    }

    /// The witness's word on a change a look saw first (at `seen`): its exact time and
    /// process. An update already printed keeps what it said; the final diagnosis uses
    /// this.
    fn refine(
        &mut self,
        kind: ChangeKind,
        endpoint: Endpoint,
        seen: Timestamp,
        ts: Timestamp,
        process: Option<ProcessInfo>,
    ) {
        if let Some(c) = self
            .changes
            .iter_mut()
            .rev()
            .find(|c| c.kind == kind && c.endpoint == endpoint && !c.exact && c.at == seen)
        {
            c.at = ts;
            c.from = ts;
            c.exact = true;
            if process.is_some() {
                c.process = process;
            }
        }
    }
}

/// A socket known from the witness alone.
fn synthetic(endpoint: Endpoint, process: Option<ProcessInfo>) -> Listener {
    Listener {
        local: endpoint,
        accept_queue: 0,
        backlog: None,
        inode: 0,
        processes: process.into_iter().collect(),
        namespace: None,
    }
}

/// A look's sockets, with owners carried over from what was known (same inode; or, for
/// the sockets the witness announced, in order).
fn merge(mut fresh: Vec<Listener>, known: &[Listener]) -> Vec<Listener> {
    let mut announced = known
        .iter()
        .filter(|k| k.inode == 0 && !k.processes.is_empty());
    for l in fresh.iter_mut().filter(|l| l.processes.is_empty()) {
        if let Some(k) = known.iter().find(|k| k.inode != 0 && k.inode == l.inode) {
            l.processes = k.processes.clone();
        } else if let Some(k) = announced.next() {
            l.processes = k.processes.clone();
        }
    }
    fresh
}

fn fill_processes(sockets: &mut [Listener], process: Option<&ProcessInfo>) {
    if let Some(p) = process {
        for l in sockets.iter_mut().filter(|l| l.processes.is_empty()) {
            l.processes.push(p.clone());
        }
    }
}

/// This namespace's listeners grouped by endpoint, in first-seen order.
fn by_endpoint(listeners: &[Listener]) -> Vec<(Endpoint, Vec<Listener>)> {
    let mut out: Vec<(Endpoint, Vec<Listener>)> = Vec::new();
    for l in listeners.iter().filter(|l| l.namespace.is_none()) {
        match out.iter_mut().find(|(e, _)| *e == l.local) {
            Some((_, v)) => v.push(l.clone()),
            None => out.push((l.local, vec![l.clone()])),
        }
    }
    out
}

#[cfg(test)]
mod tests;

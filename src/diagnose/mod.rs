//! Diagnose: from what happened (flow records, SYNs that went elsewhere) and, live on
//! Linux, the state of the machine (listeners, queues, counters, namespaces), to *why*:
//! ranked [`Finding`]s naming the cause, the evidence, the processes and the next step.
//!
//! It consumes the flow stage's records and never touches packets or output formats.
//! Offline replays have no system facts: findings then rest on packets alone and say so.

pub mod findings;
pub mod system;

pub use findings::{Finding, FindingKind, NamedProcess, Role, Severity};
pub use system::{ProcessInfo, Snapshot};

use crate::decode::{Endpoint, Timestamp, Unreachable};
use crate::flow::{FlowRecord, Outcome, Side};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How a RST came about, from the packets before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResetContext {
    /// No data either way: right after the handshake.
    AfterHandshake,
    /// The last data came from the peer: the resetting side closed its socket with that
    /// data unread, and Linux answers such a close with RST (RFC 2525 §2.17).
    UnreadData,
    /// Data flowed both ways, the resetter sent last.
    MidTransfer,
}

impl ResetContext {
    pub fn of(r: &FlowRecord, by: Side) -> ResetContext {
        if r.bytes[0] + r.bytes[1] == 0 {
            ResetContext::AfterHandshake
        } else if r.last_payload_by == Some(by.other()) {
            ResetContext::UnreadData
        } else {
            ResetContext::MidTransfer
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResetContext::AfterHandshake => "after_handshake",
            ResetContext::UnreadData => "unread_data",
            ResetContext::MidTransfer => "mid_transfer",
        }
    }
}

/// A zero window held this long means the application stopped reading.
const STALL_US: u64 = 1_000_000;
/// TIME_WAIT sockets on the port before it counts as a build-up.
const TIME_WAIT_BUILDUP: usize = 1000;
/// At most this many distinct destinations of SYNs elsewhere are remembered.
const ELSEWHERE_CAP: usize = 256;
/// Live: most often that findings are looked for while problems keep coming.
const POLL: Duration = Duration::from_millis(100);
/// Live: how often the refresher thread looks at /proc.
const REFRESH: Duration = Duration::from_secs(1);
/// Live: how often it also walks every process (owners, other namespaces).
const FULL_REFRESH: Duration = Duration::from_secs(10);
/// Live: most client processes looked up per second (each costs a walk of every
/// process's fds: a few a second is what 2 cores can spare next to a flood).
const LOOKUPS_PER_SEC: u32 = 4;

/// What the packets said, accumulated over the run.
#[derive(Clone, Debug, Default)]
struct Evidence {
    flows: u64,
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
    /// Refused connections per server endpoint.
    refused: BTreeMap<Endpoint, u64>,
    unanswered: u64,
    unanswered_syns: u64,
    unanswered_servers: BTreeMap<Endpoint, u64>,
    unreachable: BTreeMap<&'static str, (u64, Unreachable, String)>,
    /// Server endpoints that completed a handshake in this capture.
    answered: BTreeMap<Endpoint, u64>,
    resets: BTreeMap<(Side, ResetContext), u64>,
    handshake_stalled: u64,
    synack_retransmits: u64,
    /// Connections whose server retransmitted its SYN-ACK after the client had ACKed: the
    /// server dropped the final ACK, which Linux does when the accept queue is full.
    ack_dropped: u64,
    zero_window_stalls: [u64; 2],
    longest_zero_window_us: [u64; 2],
    port_reused: u64,
    closed_first: [u64; 2],
    syns_elsewhere: BTreeMap<Endpoint, u64>,
    /// The user's filter expression: what it excluded was never seen.
    expression: Option<String>,
}

impl Evidence {
    fn add(&mut self, r: &FlowRecord) {
        self.flows += 1;
        self.first_ts = Some(self.first_ts.map_or(r.first_ts, |t| t.min(r.first_ts)));
        self.last_ts = Some(self.last_ts.map_or(r.last_ts, |t| t.max(r.last_ts)));
        if r.handshake_rtt_us.is_some()
            || r.synack_count > 0 && r.outcome != Outcome::HandshakeIncomplete
        {
            *self.answered.entry(r.server).or_default() += 1;
        }
        match r.outcome {
            Outcome::Refused => *self.refused.entry(r.server).or_default() += 1,
            Outcome::Unanswered => {
                self.unanswered += 1;
                self.unanswered_syns += u64::from(r.syn_count);
                *self.unanswered_servers.entry(r.server).or_default() += 1;
            }
            Outcome::Unreachable => {
                if let Some(icmp) = r.icmp {
                    let e = self.unreachable.entry(icmp.kind.as_str()).or_insert((
                        0,
                        icmp.kind,
                        icmp.reporter.to_string(),
                    ));
                    e.0 += 1;
                }
            }
            Outcome::HandshakeIncomplete if r.synack_count > 1 => {
                self.handshake_stalled += 1;
                self.synack_retransmits += u64::from(r.synack_count - 1);
            }
            Outcome::HandshakeIncomplete
            | Outcome::Established
            | Outcome::Closed
            | Outcome::HalfClosed
            | Outcome::Reset => {}
        }
        if let (Outcome::Reset | Outcome::HandshakeIncomplete, Some(by)) = (r.outcome, r.reset_by) {
            *self
                .resets
                .entry((by, ResetContext::of(r, by)))
                .or_default() += 1;
        }
        if r.synack_count > 1 && r.handshake_rtt_us.is_some() {
            self.ack_dropped += 1;
        }
        for side in [Side::Client, Side::Server] {
            let i = side.index();
            if r.zero_window_us[i] >= STALL_US {
                self.zero_window_stalls[i] += 1;
            }
            self.longest_zero_window_us[i] =
                self.longest_zero_window_us[i].max(r.zero_window_us[i]);
        }
        self.port_reused += u64::from(r.port_reused);
        if let (Outcome::Closed, Some(side)) = (r.outcome, r.closed_first_by) {
            self.closed_first[side.index()] += 1;
        }
    }
}

/// What /proc showed, for a live capture on Linux.
#[derive(Debug)]
struct Facts {
    start: Snapshot,
    now: Snapshot,
}

impl Facts {
    fn delta(&self, counter: &str) -> u64 {
        let now = self.now.counters.get(counter).copied().unwrap_or(0);
        now.saturating_sub(self.start.counters.get(counter).copied().unwrap_or(now))
    }
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
    pub counters: BTreeMap<&'static str, u64>,
}

/// Processes behind a flow, when known (live).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowProcesses {
    pub client: Option<ProcessInfo>,
    pub server: Option<ProcessInfo>,
}

/// A thread that looks at /proc every `REFRESH` while a live capture runs, so that the
/// flow stage never stalls on a /proc walk (tens of milliseconds with many processes).
struct Refresher {
    /// The latest look, replaced by each new one.
    latest: std::sync::Arc<std::sync::Mutex<Option<Snapshot>>>,
    /// Dropped with the diagnoser: the thread then stops.
    _stop: crossbeam_channel::Sender<()>,
}

impl Refresher {
    fn start(port: u16, attribution: bool) -> Refresher {
        let latest = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = std::sync::Arc::clone(&latest);
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let spawned = std::thread::Builder::new()
            .name("proc-refresh".to_string())
            .spawn(move || {
                // Listeners, sockets and counters every second; the expensive part (walking
                // every process's fds and namespaces) every FULL_REFRESH, its names carried
                // over in between by socket inode. On 2 cores under a flood, a walk every
                // second starved the flow stage.
                let mut full: Option<Snapshot> = None;
                let mut full_at = Instant::now();
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(REFRESH)
                {
                    let snap = match &full {
                        Some(f) if full_at.elapsed() < FULL_REFRESH => {
                            let mut s = Snapshot::take(port, false, false);
                            s.carry_owners_from(f);
                            s
                        }
                        _ => {
                            let s = Snapshot::take(port, true, attribution);
                            full = Some(s.clone());
                            full_at = Instant::now();
                            s
                        }
                    };
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(snap);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "system facts will not be refreshed during the capture");
        }
        Refresher {
            latest,
            _stop: stop,
        }
    }
}

/// The helper thread that names the processes behind client sockets.
struct Lookup {
    requests: crossbeam_channel::Sender<(u64, Endpoint, Option<ProcessInfo>)>,
    results: crossbeam_channel::Receiver<(u64, FlowProcesses)>,
}

impl Lookup {
    fn start() -> Lookup {
        let (requests, work) =
            crossbeam_channel::bounded::<(u64, Endpoint, Option<ProcessInfo>)>(64);
        let (done, results) = crossbeam_channel::bounded(1024);
        let spawned = std::thread::Builder::new()
            .name("attribution".to_string())
            .spawn(move || {
                for (id, client, server) in work {
                    let procs = FlowProcesses {
                        client: system::owner_of(&client),
                        server,
                    };
                    if done.send((id, procs)).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no process attribution: cannot start its thread");
        }
        Lookup { requests, results }
    }
}

/// Accumulates evidence and turns it into findings.
pub struct Diagnoser {
    port: u16,
    facts: Option<Facts>,
    attribution: bool,
    refresher: Option<Refresher>,
    /// Live: problems arrived since the last poll.
    dirty: bool,
    polled: Option<Instant>,
    /// Live pending notices since the last poll.
    pending: Vec<FlowRecord>,
    ev: Evidence,
    emitted: HashSet<FindingKind>,
    processes: HashMap<u64, FlowProcesses>,
    lookups: (Instant, u32),
    lookup: Option<Lookup>,
}

impl Diagnoser {
    /// `system`: read /proc (live capture on Linux); `false` for replays.
    /// `attribution`: name processes and look into other namespaces (needs
    /// CAP_SYS_PTRACE for other users' processes).
    /// The user's filter expression (tcpdump's trailing one), so that "nothing seen" can
    /// name it as the likely reason.
    pub fn with_expression(mut self, expression: Option<&str>) -> Diagnoser {
        self.ev.expression = expression.map(str::to_string);
        self
    }

    pub fn new(port: u16, system: bool, attribution: bool) -> Diagnoser {
        // The first look is complete (other namespaces too) and synchronous, before any
        // packet: a finding made early must not rest on half the facts.
        let facts = (system && std::path::Path::new("/proc/net/tcp").exists()).then(|| {
            let start = Snapshot::take(port, true, attribution);
            Facts {
                now: start.clone(),
                start,
            }
        });
        let refresher = facts.as_ref().map(|_| Refresher::start(port, attribution));
        Diagnoser {
            port,
            facts,
            attribution,
            refresher,
            dirty: false,
            polled: None,
            pending: Vec::new(),
            ev: Evidence::default(),
            emitted: HashSet::new(),
            processes: HashMap::new(),
            lookups: (Instant::now(), 0),
            lookup: None,
        }
    }

    /// A client SYN of flow `id` was just seen: while its socket exists, find who owns
    /// it and who owns the listener it is aimed at (live only, rate limited). The /proc
    /// walk takes milliseconds, so it runs on a helper thread, never in the way of packets.
    pub fn syn_seen(&mut self, id: u64, client: Endpoint, server: Endpoint) {
        let Some(facts) = &self.facts else { return };
        if !self.attribution || self.processes.len() >= 10_000 {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.lookups.0) >= Duration::from_secs(1) {
            self.lookups = (now, 0);
        }
        if self.lookups.1 >= LOOKUPS_PER_SEC {
            return;
        }
        self.lookups.1 += 1;
        let server_proc = facts
            .now
            .listeners
            .iter()
            .find(|l| l.accepts(&server))
            .and_then(|l| l.processes.first().cloned());
        let worker = self.lookup.get_or_insert_with(Lookup::start);
        let _ = worker.requests.try_send((id, client, server_proc));
    }

    /// The processes behind a flow, if they were found; forgets them.
    pub fn processes_of(&mut self, id: u64) -> Option<FlowProcesses> {
        if let Some(worker) = &self.lookup {
            while let Ok((done, procs)) = worker.results.try_recv() {
                if self.processes.len() < 10_000 {
                    self.processes.insert(done, procs);
                }
            }
        }
        self.processes.remove(&id)
    }

    /// A SYN to another port (or address) on the interface.
    pub fn syn_elsewhere(&mut self, dst: Endpoint) {
        if let Some(n) = self.ev.syns_elsewhere.get_mut(&dst) {
            *n += 1;
        } else if self.ev.syns_elsewhere.len() < ELSEWHERE_CAP {
            self.ev.syns_elsewhere.insert(dst, 1);
        }
    }

    /// A flow's final record. Live, a problem makes the next [`poll`](Self::poll) look
    /// for findings.
    pub fn flow_finished(&mut self, r: &FlowRecord) {
        self.ev.add(r);
        if self.facts.is_some() && (r.outcome.is_problem() || r.port_reused) {
            self.dirty = true;
        }
    }

    /// A live "still unanswered" notice: already enough to say the SYNs are dropped, and
    /// whether by a full queue. Kept only for the next poll: its final record follows.
    pub fn flow_pending(&mut self, r: &FlowRecord) {
        if self.facts.is_some() && self.pending.len() < 64 {
            self.pending.push(*r);
            self.dirty = true;
        }
    }

    /// Live: the findings that recent problems made certain, each printed once. Works at
    /// most every `POLL` however many problems arrive (a flood must not turn into a /proc
    /// read per connection on the flow stage); what waits is caught by a later poll.
    pub fn poll(&mut self) -> Vec<Finding> {
        if !self.dirty || self.polled.is_some_and(|t| t.elapsed() < POLL) {
            return Vec::new();
        }
        self.dirty = false;
        self.polled = Some(Instant::now());
        let mut ev = self.ev.clone();
        for r in self.pending.drain(..) {
            ev.add(&r);
        }
        self.live_findings(&ev)
    }

    fn live_findings(&mut self, ev: &Evidence) -> Vec<Finding> {
        self.refresh(false);
        let mut out = Vec::new();
        for f in evaluate(ev, self.facts.as_ref(), self.port) {
            if !f.kind.needs_whole_capture() && self.emitted.insert(f.kind) {
                out.push(f);
            }
        }
        out
    }

    /// Live findings use the latest look the refresher thread took (at most `REFRESH`
    /// old) and never wait for /proc; the final diagnosis (`force`) looks once more.
    fn refresh(&mut self, force: bool) {
        let Some(facts) = &mut self.facts else { return };
        if force {
            facts.now = Snapshot::take(self.port, true, self.attribution);
        } else {
            if let Some(r) = &self.refresher {
                if let Some(snap) = r.latest.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    facts.now = snap;
                }
            }
            // The counters tell a DROP rule from a full queue, and reading them is cheap
            // (two small files): always fresh.
            facts.now.counters = system::read_counters();
        }
    }

    /// What the machine looked like at the end (live), for the summary.
    pub fn system_view(&self) -> Option<SystemView> {
        let f = self.facts.as_ref()?;
        let listeners = f
            .now
            .listeners
            .iter()
            .chain(f.now.foreign_listeners.iter())
            .map(|l| ListenerView {
                local: l.local.to_string(),
                accept_queue: l.accept_queue,
                backlog: l.backlog,
                // Several sockets on one address and port: an SO_REUSEPORT group (or
                // SO_REUSEADDR sockets) sharing the incoming connections.
                group: f
                    .now
                    .listeners
                    .iter()
                    .chain(f.now.foreign_listeners.iter())
                    .filter(|o| o.local == l.local && o.namespace == l.namespace)
                    .count(),
                namespace: l.namespace.clone(),
                processes: l.processes.clone(),
            })
            .collect();
        let mut sockets = BTreeMap::new();
        for s in &f.now.sockets {
            let state = match s.state {
                system::SocketState::TimeWait => "time_wait",
                system::SocketState::CloseWait => "close_wait",
                system::SocketState::SynRecv => "syn_recv",
                system::SocketState::SynSent => "syn_sent",
                system::SocketState::Established => "established",
                system::SocketState::FinWait => "fin_wait",
                system::SocketState::LastAck => "last_ack",
                system::SocketState::Closing => "closing",
                system::SocketState::Other => "other",
            };
            let side = if s.local.port == self.port {
                "server"
            } else {
                "client"
            };
            *sockets.entry((state, side)).or_insert(0u64) += 1;
        }
        let counters = system::counter_delta(&f.start.counters, &f.now.counters)
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect();
        Some(SystemView {
            listeners,
            sockets,
            counters,
        })
    }

    /// The final, ranked diagnosis.
    pub fn finish(&mut self) -> Vec<Finding> {
        self.refresh(true);
        let mut all = evaluate(&self.ev, self.facts.as_ref(), self.port);
        findings::rank(&mut all);
        all
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn packets_only(facts: Option<&Facts>) -> &'static str {
    if facts.is_some() {
        ""
    } else {
        " (from the packets alone: a replay has no view of the machine's sockets)"
    }
}

/// All findings the evidence supports, unranked.
fn evaluate(ev: &Evidence, facts: Option<&Facts>, port: u16) -> Vec<Finding> {
    let mut out = Vec::new();
    refusals(ev, facts, port, &mut out);
    drops(ev, facts, port, &mut out);
    unreachables(ev, &mut out);
    stalls_and_resets(ev, facts, &mut out);
    time_wait(ev, facts, port, &mut out);
    if ev.flows == 0 {
        out.push(no_traffic(ev, facts, port));
    }
    out
}

/// Refused connections: why did the server host answer RST?
fn refusals(ev: &Evidence, facts: Option<&Facts>, port: u16, out: &mut Vec<Finding>) {
    for (&server, &n) in &ev.refused {
        let refused = plural(n, "connection", "connections");
        let check = format!("ss -ltnp 'sport = :{port}'");
        match facts {
            Some(f) => {
                let here = &f.now.listeners;
                if let Some(l) = here.iter().find(|l| l.accepts(&server)) {
                    out.push(
                        Finding::new(FindingKind::RejectedByFirewall, Severity::Error, n)
                            .headline(format!(
                                "{refused} to {server} refused although {} listens there: something in between answers with RST",
                                l.local
                            ))
                            .explain(format!(
                                "A listener on {} should have answered the SYNs with SYN-ACK, but the host answered with RST. \
                                 That is what a firewall rule `REJECT --reject-with tcp-reset` does (or a listener that closed \
                                 and reopened between the attempts).",
                                l.local
                            ))
                            .evidence("refused", n)
                            .evidence("server", server.to_string())
                            .evidence("listener", l.local.to_string())
                            .processes(&l.processes, Role::Listener)
                            .next(format!("look for a REJECT rule: iptables -S | grep -- '{port}'; nft list ruleset | grep {port}")),
                    );
                } else if let Some(l) = here
                    .iter()
                    .find(|l| l.local.addr.is_ipv4() != server.addr.is_ipv4())
                {
                    let family = if server.addr.is_ipv4() {
                        "IPv6"
                    } else {
                        "IPv4"
                    };
                    out.push(
                        Finding::new(FindingKind::ListenerOtherFamily, Severity::Error, n)
                            .headline(format!(
                                "{refused} to {server} refused: the server listens on {} ({family} only)",
                                l.local
                            ))
                            .explain(format!(
                                "Nothing listens on {server}, but {} does. The client and the server disagree on the \
                                 address family: typically `localhost` resolves to ::1 for one and 127.0.0.1 for the other, \
                                 or the server bound [::] with IPV6_V6ONLY.",
                                l.local
                            ))
                            .evidence("refused", n)
                            .evidence("server", server.to_string())
                            .evidence("listener", l.local.to_string())
                            .processes(&l.processes, Role::Listener)
                            .next(format!(
                                "connect to {} instead, or make the server listen on both families (bind 0.0.0.0 and ::, or [::] without V6ONLY)",
                                l.local
                            )),
                    );
                } else if let Some(l) = here.first() {
                    out.push(
                        Finding::new(FindingKind::ListenerOtherAddress, Severity::Error, n)
                            .headline(format!(
                                "{refused} to {server} refused: the server is bound to {} only",
                                l.local
                            ))
                            .explain(format!(
                                "A listener on port {port} exists but bound to {}, not to {} or a wildcard address, \
                                 so SYNs to {server} find no socket.",
                                l.local, server.addr
                            ))
                            .evidence("refused", n)
                            .evidence("server", server.to_string())
                            .evidence("listener", l.local.to_string())
                            .processes(&l.processes, Role::Listener)
                            .next(format!(
                                "connect to {}, or bind the server to {} or 0.0.0.0",
                                l.local, server.addr
                            )),
                    );
                } else if let Some(l) = f.now.foreign_listeners.first() {
                    let ns = l.namespace.clone().unwrap_or_default();
                    out.push(
                        Finding::new(FindingKind::ListenerOtherNamespace, Severity::Error, n)
                            .headline(format!(
                                "{refused} to {server} refused: port {port} listens in another network namespace ({ns})",
                            ))
                            .explain(format!(
                                "Nothing listens on port {port} in this network namespace, but {} does in {ns} \
                                 (a container or `ip netns`). Traffic on this side never reaches it unless the port is published or forwarded.",
                                l.local
                            ))
                            .evidence("refused", n)
                            .evidence("server", server.to_string())
                            .evidence("listener", l.local.to_string())
                            .evidence("namespace", ns)
                            .processes(&l.processes, Role::Listener)
                            .next(format!(
                                "publish the port (docker run -p {port}:{port} …), or connect from inside that namespace: nsenter -t {} -n",
                                l.processes.first().map_or(0, |p| p.pid)
                            )),
                    );
                } else {
                    out.push(nothing_listening(server, n, Some(f), port, &check));
                }
            }
            None => {
                // Packets alone: did connections to the same port on another address or
                // family succeed in this very capture?
                let other = ev
                    .answered
                    .keys()
                    .find(|s| s.port == server.port && s.addr != server.addr);
                match other {
                    Some(ok) if ok.addr.is_ipv4() != server.addr.is_ipv4() => out.push(
                        Finding::new(FindingKind::ListenerOtherFamily, Severity::Error, n)
                            .headline(format!(
                                "{refused} to {server} refused while connections to {ok} succeeded"
                            ))
                            .explain(format!(
                                "The server answers on {ok} but refuses {server}: it listens on one address family only. \
                                 Typically `localhost` resolves to ::1 for one program and 127.0.0.1 for another{}.",
                                packets_only(None)
                            ))
                            .evidence("refused", n)
                            .evidence("server", server.to_string())
                            .evidence("listener", ok.to_string())
                            .next(format!("connect to {ok}, or make the server listen on both families")),
                    ),
                    Some(ok) => out.push(
                        Finding::new(FindingKind::ListenerOtherAddress, Severity::Error, n)
                            .headline(format!(
                                "{refused} to {server} refused while connections to {ok} succeeded"
                            ))
                            .explain(format!(
                                "The server is bound to {} but not to {}{}.",
                                ok.addr,
                                server.addr,
                                packets_only(None)
                            ))
                            .evidence("refused", n)
                            .evidence("server", server.to_string())
                            .evidence("listener", ok.to_string())
                            .next(format!("connect to {ok}, or bind the server to {} or 0.0.0.0", server.addr)),
                    ),
                    None => out.push(nothing_listening(server, n, None, port, &check)),
                }
            }
        }
    }
}

fn nothing_listening(
    server: Endpoint,
    n: u64,
    facts: Option<&Facts>,
    port: u16,
    check: &str,
) -> Finding {
    let refused = plural(n, "connection", "connections");
    let why = match facts {
        Some(_) => format!("No socket listens on port {port} in any address family here, nor in another network namespace."),
        None => format!(
            "The server host answered each SYN with RST, which is what a host does when no socket listens on that address and port{}.",
            packets_only(None)
        ),
    };
    Finding::new(FindingKind::NothingListening, Severity::Error, n)
        .headline(format!(
            "{refused} to {server} refused: nothing listens on port {port}"
        ))
        .explain(why)
        .evidence("refused", n)
        .evidence("server", server.to_string())
        .next(format!(
            "start the server, or check which port and address it binds: {check}"
        ))
}

/// SYNs with no answer at all: a DROP rule, or a full accept queue.
fn drops(ev: &Evidence, facts: Option<&Facts>, port: u16, out: &mut Vec<Finding>) {
    let overflows = facts.map_or(0, |f| f.delta("ListenOverflows"));
    let listen_drops = facts.map_or(0, |f| f.delta("ListenDrops"));
    let full = facts.and_then(|f| {
        f.now
            .listeners
            .iter()
            .chain(f.start.listeners.iter())
            .find(|l| l.queue_full())
            .or_else(|| (overflows > 0).then(|| f.now.listeners.first()).flatten())
    });
    let affected = ev.unanswered + ev.ack_dropped;
    if affected > 0 && (overflows > 0 || full.is_some()) {
        let mut f = Finding::new(FindingKind::AcceptQueueFull, Severity::Error, affected)
            .evidence("unanswered", ev.unanswered)
            .evidence("handshake_acks_dropped", ev.ack_dropped)
            .evidence("listen_overflows", overflows)
            .evidence("listen_drops", listen_drops);
        let who = match full {
            Some(l) => {
                let names: Vec<String> = l
                    .processes
                    .iter()
                    .map(|p| format!("{} (pid {})", p.name, p.pid))
                    .collect();
                f = f
                    .evidence("listener", l.local.to_string())
                    .evidence("accept_queue", l.accept_queue)
                    .evidence("backlog", l.backlog.map_or(json!(null), |b| json!(b)))
                    .processes(&l.processes, Role::Listener);
                if names.is_empty() {
                    format!("the listener on {}", l.local)
                } else {
                    names.join(", ")
                }
            }
            None => format!("the listener on port {port}"),
        };
        out.push(
            f.headline(format!("the accept queue on port {port} is full: {who} is not calling accept() fast enough"))
                .explain(format!(
                    "{} and {} went unanswered or were dropped while the listen queue was full \
                     (the kernel's ListenOverflows grew by {overflows}, ListenDrops by {listen_drops}). \
                     Linux drops SYNs and handshake ACKs once completed connections wait beyond the listen() backlog.",
                    plural(ev.unanswered, "connection attempt", "connection attempts"),
                    plural(ev.ack_dropped, "handshake ACK", "handshake ACKs"),
                ))
                .next(format!(
                    "check the server's accept loop (stuck or too slow?); watch `ss -ltn 'sport = :{port}'` (Recv-Q vs Send-Q); raise the backlog (listen(), net.core.somaxconn)"
                )),
        );
        return;
    }
    if ev.ack_dropped > 0 && facts.is_none() {
        out.push(
            Finding::new(FindingKind::AcceptQueueFull, Severity::Warning, ev.ack_dropped)
                .headline(format!(
                    "the server dropped the final ACK of {}: its accept queue was probably full",
                    plural(ev.ack_dropped, "handshake", "handshakes")
                ))
                .explain(format!(
                    "The client ACKed the SYN-ACK, yet the server retransmitted its SYN-ACK: Linux discards a \
                     handshake's last ACK when the listener's accept queue is full{}.",
                    packets_only(None)
                ))
                .evidence("handshake_acks_dropped", ev.ack_dropped)
                .next(format!("on the server: nstat -az TcpExtListenOverflows; ss -ltn 'sport = :{port}'")),
        );
    }
    if ev.unanswered == 0 {
        return;
    }
    let servers: Vec<String> = ev
        .unanswered_servers
        .keys()
        .map(|s| s.to_string())
        .collect();
    let listening = facts.map(|f| !f.now.listeners.is_empty());
    let because = match listening {
        Some(true) => format!(
            "A listener exists on port {port} and its queue is not full (ListenOverflows did not grow), so the SYNs are \
             dropped before they reach it: a firewall DROP rule, or a route that black-holes them."
        ),
        Some(false) => format!(
            "Nothing listens on port {port} here, yet no RST came back: something drops the SYNs before the host can refuse them \
             (a firewall DROP rule), or they are routed somewhere that never answers."
        ),
        None => format!(
            "No SYN-ACK, RST or ICMP error came back. A firewall DROP rule does this, and so does a listener whose accept queue is \
             full{}.",
            packets_only(None)
        ),
    };
    out.push(
        Finding::new(FindingKind::SilentlyDropped, Severity::Error, ev.unanswered)
            .headline(format!(
                "{} to {} got no answer at all: the SYNs are silently dropped",
                plural(ev.unanswered, "connection attempt", "connection attempts"),
                servers.join(", ")
            ))
            .explain(format!(
                "{} ({} SYNs including retransmissions) and nothing answered. {because}",
                plural(ev.unanswered, "attempt", "attempts"),
                ev.unanswered_syns
            ))
            .evidence("unanswered", ev.unanswered)
            .evidence("syns", ev.unanswered_syns)
            .evidence("servers", servers)
            .next(format!(
                "look for a DROP rule: iptables -S | grep -- '{port}'; nft list ruleset | grep {port}; on the server: nstat -az TcpExtListenOverflows"
            )),
    );
}

fn unreachables(ev: &Evidence, out: &mut Vec<Finding>) {
    for (&name, &(n, kind, ref from)) in &ev.unreachable {
        let attempts = plural(n, "connection attempt", "connection attempts");
        let words = name.replace('_', " ");
        let finding = match kind {
            Unreachable::Port | Unreachable::AdminProhibited | Unreachable::Protocol => {
                Finding::new(FindingKind::RejectedByFirewall, Severity::Error, n)
                    .headline(format!("{attempts} rejected by a firewall: ICMP {words} from {from}"))
                    .explain(format!(
                        "The SYNs were answered by ICMP {words} from {from}. Linux's TCP answers a closed port with RST, never \
                         with ICMP, so this comes from a filter: `REJECT --reject-with icmp-{}`.",
                        if kind == Unreachable::AdminProhibited { "admin-prohibited" } else { "port-unreachable" }
                    ))
            }
            Unreachable::Network | Unreachable::Host | Unreachable::Other { .. } => {
                Finding::new(FindingKind::NetworkUnreachable, Severity::Error, n)
                    .headline(format!("{attempts} failed: ICMP {words} from {from}"))
                    .explain(format!("{from} reported that it cannot deliver the SYNs ({words}): a routing problem or a host that is down."))
            }
        };
        out.push(
            finding
                .evidence("unreachable", n)
                .evidence("icmp", name)
                .evidence("icmp_from", from.clone())
                .next("list the filter rules on the path: iptables -S; nft list ruleset; check routes: ip route get <server address>"),
        );
    }
}

fn stalls_and_resets(ev: &Evidence, facts: Option<&Facts>, out: &mut Vec<Finding>) {
    if ev.handshake_stalled > 0 {
        out.push(
            Finding::new(FindingKind::HandshakeStalled, Severity::Error, ev.handshake_stalled)
                .headline(format!(
                    "{} stalled in the handshake: the server's SYN-ACKs never got an ACK",
                    plural(ev.handshake_stalled, "connection", "connections")
                ))
                .explain(format!(
                    "The server answered with SYN-ACK and retransmitted it {} times, but the client's final ACK never came: the \
                     SYN-ACKs do not reach the client (asymmetric filtering, a wrong return route) or the client gave up.",
                    ev.synack_retransmits
                ))
                .evidence("flows", ev.handshake_stalled)
                .evidence("synack_retransmits", ev.synack_retransmits)
                .next("check the path from server to client: filters on the client's INPUT, reverse routes, NAT"),
        );
    }
    for side in [Side::Server, Side::Client] {
        let mut total = 0;
        let mut top: Option<(ResetContext, u64)> = None;
        for (&(by, ctx), &n) in &ev.resets {
            if by == side {
                total += n;
                if top.is_none_or(|(_, m)| n > m) {
                    top = Some((ctx, n));
                }
            }
        }
        let Some((ctx, _)) = top else { continue };
        let (kind, who, peer) = match side {
            Side::Server => (FindingKind::ResetByServer, "server", "client"),
            Side::Client => (FindingKind::ResetByClient, "client", "server"),
        };
        // Live, the kernel says which: TCPAbortOnClose counts closes with unread data.
        let abort_on_close = facts.map(|f| f.delta("TCPAbortOnClose"));
        let (what, next) = match ctx {
            ResetContext::UnreadData => (
                match abort_on_close {
                    Some(n) if n > 0 => format!(
                        "the {who} closed its socket while the {peer}'s data was still unread, and Linux answers that close with RST \
                         (RFC 2525 §2.17; the kernel's TCPAbortOnClose grew by {n})"
                    ),
                    _ => format!(
                        "the {who} sent RST right after the {peer}'s last data: it closed its socket with that data unread (Linux \
                         answers such a close with RST, RFC 2525 §2.17) or aborted on purpose (SO_LINGER 0)"
                    ),
                },
                format!("make the {who} read the whole request (or shut down writing and drain) before close()"),
            ),
            ResetContext::AfterHandshake => (
                format!("the {who} reset the connection right after the handshake, before any data: it rejected the connection (an access rule, too many connections, an aborted accept)"),
                format!("check the {who}'s logs for rejected connections at those times"),
            ),
            ResetContext::MidTransfer => (
                format!("the {who} aborted the connection in the middle of the transfer (SO_LINGER 0 close, a crash, a timeout)"),
                format!("check the {who}'s logs and timeouts at those times"),
            ),
        };
        out.push(
            Finding::new(kind, Severity::Warning, total)
                .headline(format!(
                    "{} reset by the {who}: {}",
                    plural(total, "connection", "connections"),
                    ctx.as_str().replace('_', " ")
                ))
                .explain(format!("Most were like this: {what}."))
                .evidence("resets", total)
                .evidence("context", ctx.as_str())
                .evidence(
                    "abort_on_close",
                    abort_on_close.map_or(json!(null), |n| json!(n)),
                )
                .next(next),
        );
    }
    for side in [Side::Server, Side::Client] {
        let i = side.index();
        if ev.zero_window_stalls[i] == 0 {
            continue;
        }
        let who = side.as_str();
        out.push(
            Finding::new(FindingKind::ReceiverStalled, Severity::Warning, ev.zero_window_stalls[i])
                .headline(format!("the {who} stopped reading: zero window held up to {:.1}s", ev.longest_zero_window_us[i] as f64 / 1e6))
                .explain(format!(
                    "In {} the {who} advertised a zero receive window for a second or more: its application did not read \
                     what arrived, so the peer had to stop sending.",
                    plural(ev.zero_window_stalls[i], "connection", "connections")
                ))
                .evidence("side", who)
                .evidence("flows", ev.zero_window_stalls[i])
                .evidence("longest_zero_window_us", ev.longest_zero_window_us[i])
                .next(format!("find what blocks the {who}'s reading loop (a slow consumer, a lock, a full downstream)")),
        );
    }
}

fn time_wait(ev: &Evidence, facts: Option<&Facts>, port: u16, out: &mut Vec<Finding>) {
    if ev.port_reused > 0 {
        let tw = facts.map(|f| f.now.count(system::SocketState::TimeWait));
        out.push(
            Finding::new(FindingKind::TimeWaitReuse, Severity::Warning, ev.port_reused)
                .headline(format!(
                    "{} reused a 4-tuple still in TIME_WAIT",
                    plural(ev.port_reused, "new connection", "new connections")
                ))
                .explain(
                    "A client SYN with a new sequence number arrived on the same client port, server port and addresses as a \
                     connection that had just closed. The side that closed first holds that 4-tuple in TIME_WAIT for 60 s; \
                     Linux lets the new SYN through only when timestamps or sequence numbers allow it, otherwise it fails with \
                     EADDRNOTAVAIL or an old segment can corrupt the new connection."
                        .to_string(),
                )
                .evidence("flows", ev.port_reused)
                .evidence("time_wait_sockets", tw.map_or(json!(null), |n| json!(n)))
                .next("let the client pick ephemeral ports (do not bind a fixed source port), or keep connections open and reuse them"),
        );
    }
    if let Some(f) = facts {
        let tw: Vec<_> = f
            .now
            .sockets
            .iter()
            .filter(|s| s.state == system::SocketState::TimeWait)
            .collect();
        let on_server = tw.iter().filter(|s| s.local.port == port).count();
        let on_client = tw.len() - on_server;
        if tw.len() >= TIME_WAIT_BUILDUP {
            let holder = if on_server >= on_client {
                "server"
            } else {
                "client"
            };
            out.push(
                Finding::new(FindingKind::TimeWaitBuildup, Severity::Warning, tw.len() as u64)
                    .headline(format!("{} sockets in TIME_WAIT on port {port}, mostly on the {holder}", tw.len()))
                    .explain(format!(
                        "{on_server} are held by the server side and {on_client} by clients. The side that closes first keeps each \
                         connection in TIME_WAIT for 60 s; many short connections pile them up."
                    ))
                    .evidence("time_wait", tw.len())
                    .evidence("on_server", on_server)
                    .evidence("on_client", on_client)
                    .evidence("holder", holder)
                    .next("reuse connections (keep-alive, pooling), or let the client close first"),
            );
        }
        if let Some((lo, hi)) = f.now.local_port_range {
            let range = u64::from(hi.saturating_sub(lo)) + 1;
            if on_client as u64 * 2 >= range && range > 1 {
                out.push(
                    Finding::new(FindingKind::EphemeralPortsExhausted, Severity::Error, on_client as u64)
                        .headline(format!(
                            "{on_client} client sockets to port {port} in TIME_WAIT against {range} ephemeral ports: connect() will fail"
                        ))
                        .explain(format!(
                            "Each new connection to the same server address and port needs a free local port from \
                             ip_local_port_range ({lo}-{hi}); TIME_WAIT holds them for 60 s. Past the range, connect() fails with \
                             EADDRNOTAVAIL before any SYN is sent, so the capture shows nothing."
                        ))
                        .evidence("time_wait", on_client)
                        .evidence("port_range", json!([lo, hi]))
                        .next("reuse connections; widen net.ipv4.ip_local_port_range; net.ipv4.tcp_tw_reuse=1 on the client"),
                );
            }
        }
    } else if ev.closed_first[Side::Server.index()] as usize >= TIME_WAIT_BUILDUP {
        let n = ev.closed_first[Side::Server.index()];
        out.push(
            Finding::new(FindingKind::TimeWaitBuildup, Severity::Warning, n)
                .headline(format!("the server closed first {n} times: TIME_WAIT piles up on the server"))
                .explain(format!("Every one of those connections leaves the server holding a TIME_WAIT socket for 60 s{}.", packets_only(None)))
                .evidence("closed_first_by_server", n)
                .evidence("holder", "server")
                .next("let clients close first, or reuse connections (keep-alive)"),
        );
    }
}

fn no_traffic(ev: &Evidence, facts: Option<&Facts>, port: u16) -> Finding {
    let mut elsewhere: Vec<(&Endpoint, &u64)> = ev.syns_elsewhere.iter().collect();
    elsewhere.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    elsewhere.truncate(10);
    let went: Vec<String> = elsewhere
        .iter()
        .map(|(d, n)| format!("{d} ({n})"))
        .collect();
    let proxy = [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
    let nearby: Vec<String> = facts
        .map(|f| {
            f.now
                .other_listening_ports
                .iter()
                .take(10)
                .map(|e| e.to_string())
                .collect()
        })
        .unwrap_or_default();
    if let Some(expr) = &ev.expression {
        // The expression is the first suspect: it may be what kept the port's packets out.
        return Finding::new(FindingKind::NoTraffic, Severity::Warning, 1)
            .headline(format!(
                "nothing on port {port} matched the filter expression {expr:?}"
            ))
            .explain(format!(
                "No packet to or from port {port} that also matches {expr:?} was captured. \
                 The expression narrows what portsniff sees, so the port's packets may have \
                 been there and been left out by it."
            ))
            .evidence("expression", expr.as_str())
            .next(format!(
                "run again without the expression (or with a wider one) to see every \
                 connection to port {port}"
            ));
    }
    let mut explanation = format!("No packet to or from port {port} was captured.");
    if went.is_empty() {
        explanation.push_str(" No connection attempt to any other port was seen either: the client is not running, or it connects over another interface.");
    } else {
        explanation.push_str(&format!(
            " Connection attempts went elsewhere instead: {}.",
            went.join(", ")
        ));
        if elsewhere
            .iter()
            .any(|(d, _)| matches!(d.port, 3128 | 8080 | 8888 | 1080))
        {
            explanation.push_str(" Some went to a proxy port: check http_proxy / no_proxy.");
        }
    }
    if let Some(p) = &proxy {
        explanation.push_str(&format!(" A proxy is set in the environment ({p}): clients that honour it connect there, not to port {port}."));
    }
    if !nearby.is_empty() {
        explanation.push_str(&format!(" Listening here: {}.", nearby.join(", ")));
    }
    Finding::new(FindingKind::NoTraffic, Severity::Warning, 1)
        .headline(format!("nothing reached port {port} during the capture: the client is pointed elsewhere"))
        .explain(explanation)
        .evidence(
            "syns_elsewhere",
            elsewhere
                .iter()
                .map(|(d, n)| json!({"dst": d.to_string(), "syns": n}))
                .collect::<Vec<_>>(),
        )
        .evidence("listening_nearby", nearby)
        .evidence("proxy", proxy.map_or(json!(null), |p| json!(p)))
        .next("check the client's target host and port (config, DNS, /etc/hosts, proxy settings); capture on -i any if it uses another interface")
}

#[cfg(test)]
pub(crate) mod tests;

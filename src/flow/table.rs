//! The flow table: finds each segment's connection, splits a 4-tuple into generations when
//! a port is reused, runs the timers, and keeps memory bounded.
//!
//! Flows live in a slab (`Vec<Node>`) indexed by a randomly seeded hash map from the
//! 4-tuple to the slot, and threaded on intrusive least-recently-used lists, one per idle
//! timeout class (handshake, established, closing, …, tombstones). Within a list the
//! head is always the first to expire, so a sweep looks at heads only, and eviction finds
//! a tombstone or the oldest flow at once: touching, expiring and evicting are O(1) per
//! flow, and slots are reused, so steady-state processing does not allocate.
//!
//! Time is whatever the caller says it is: packet timestamps when replaying a file (so a
//! replay gives the same answer every time), the wall clock on timer ticks when live.

use super::packed::{Flow, Rares};
use super::record::{EndReason, FlowEvent, Outcome, Side};
use super::state::State;
use crate::decode::{Encap, Endpoint, PairHasher, Segment, SegmentKind, Timestamp};

/// How the table behaves. `Copy` and cheap: set once per run.
#[derive(Clone, Copy, Debug)]
pub struct FlowConfig {
    /// The watched server port: the endpoint on it is the server.
    pub port: u16,
    /// Most flows tracked at once; beyond it the least recently active is evicted.
    pub max_flows: usize,
    /// Live only: report a SYN unanswered after this long as pending.
    pub syn_timeout_us: u64,
    /// Emit [`FlowEvent::Pending`] notices (live capture) or not (replay: the file is
    /// complete, so only final answers are useful).
    pub pending_notices: bool,
    /// Emit a [`FlowEvent::Settled`] for every flow whose close delay ends, trailing
    /// packets or not: for consumers that act on each settlement (a conn.log row is
    /// written then, `-w --only-problems` writes or forgets what it held since the close,
    /// the DNAT merge pairs it with its `Finished`). Without it only flows a packet came
    /// to after their close are settled: the others' `Finished` record was already their
    /// last word, and a second record per connection is a measured share of the engine's
    /// time.
    pub settle_all: bool,
}

impl FlowConfig {
    pub const DEFAULT_MAX_FLOWS: usize = 100_000;
}

/// Counters the summary reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub flows: u64,
    /// Flows ended early because the table was full.
    pub evicted: u64,
    /// ICMP errors quoting a segment of no known flow.
    pub icmp_unmatched: u64,
    /// ICMP errors fed, matched or not: they tell a flow's outcome but are not among its
    /// packets, so they are a bucket of their own when the decoded packets are added up.
    pub icmp_errors: u64,
    /// TCP segments that came to a connection after its close delay ([`CLOSE_DELAY_US`]),
    /// while its tombstone still held the 4-tuple (a RST 16 s after a clean close): its
    /// record is out, and they are no new connection. Counted here, in no flow.
    pub after_close: u64,
    /// Segments of connections shown once though captured twice (`-i any`: a tunnel this
    /// host ends, a DNAT port map): the second copy's, in no flow. Set by the flow stage,
    /// which drops that copy; the table never sets it.
    pub copies: u64,
    /// Most flows tracked at once (tombstones included).
    pub peak_flows: u64,
}

const NIL: u32 = u32::MAX;
/// How long a connection that its packets ended (both FINs and the last ACK, a RST, a
/// refusal, an ICMP error) keeps counting the segments that trail its close, from its
/// last packet: Zeek's `tcp_close_delay` and `tcp_reset_delay` (both 5 s). Its line is
/// printed at the close; what came after is in a [`FlowEvent::Settled`] when the delay is
/// over (for every such flow with [`FlowConfig::settle_all`]).
pub const CLOSE_DELAY_US: u64 = 5_000_000;
/// How often (in the table's clock) idle flows are looked for.
const SWEEP_INTERVAL_US: u64 = 250_000;

/// Lists by idle timeout (see `Flow::idle_timeout_us`): every state in a class shares its
/// timeout, so each list is ordered by expiry.
const CLASSES: usize = 8;
const HANDSHAKE: usize = 0;
/// Flows their packets ended, still counting trailing packets for [`CLOSE_DELAY_US`]
/// after their last one. Not a state of the flow (it is `Done`): a stage of its life in
/// the table.
const LINGER: usize = 7;
/// Tombstones, dropped first when the table is full: closed (TIME_WAIT) and others.
const TOMBSTONES: [usize; 2] = [5, 4];
/// The class of a free slot: in no list.
const FREE: u8 = CLASSES as u8;

fn class_of(state: State) -> usize {
    match state {
        State::New | State::SynSent | State::SynReceived => HANDSHAKE,
        State::Established => 1,
        State::FinWait { .. } => 2,
        State::LastAck { .. } => 3,
        State::Done(Outcome::Closed) => 4,
        State::Done(_) => 5,
        State::SynError => 6,
    }
}

#[derive(Clone, Copy, Debug)]
struct Node {
    flow: Flow,
    prev: u32,
    next: u32,
    /// The index hash's low half (see [`PairHasher::pair`]: both halves are equal).
    hash: u32,
    class: u8,
    /// In [`LINGER`]: a packet came after the close. (In the slot's padding: the slot
    /// stays 160 bytes.)
    late: bool,
}

/// Head (least recently active) and tail of one list.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

pub struct FlowTable {
    cfg: FlowConfig,
    /// Slot numbers, hashed by their flow's 4-tuple: the key lives once, in the flow.
    index: hashbrown::HashTable<u32>,
    hasher: PairHasher,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// The rare parts (IPv6 addresses, SYN gaps, ICMP, zero windows) of `nodes`' flows.
    rares: Rares,
    lists: [List; CLASSES],
    next_id: u64,
    clock: Timestamp,
    next_sweep: Option<Timestamp>,
    stats: TableStats,
}

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> FlowTable {
        FlowTable::with_hasher(cfg, PairHasher::new())
    }

    /// A table whose index uses `hasher`, so that segments hashed ahead of time (on the
    /// capture thread) can go through [`process_hashed`](Self::process_hashed).
    pub fn with_hasher(cfg: FlowConfig, hasher: PairHasher) -> FlowTable {
        let cfg = FlowConfig {
            max_flows: cfg.max_flows.clamp(1, NIL as usize - 1),
            ..cfg
        };
        let initial = cfg.max_flows.min(4096);
        FlowTable {
            cfg,
            index: hashbrown::HashTable::with_capacity(initial),
            hasher,
            nodes: Vec::with_capacity(initial),
            free: Vec::new(),
            rares: Rares::default(),
            lists: [EMPTY; CLASSES],
            next_id: 1,
            clock: Timestamp(0),
            next_sweep: None,
            stats: TableStats::default(),
        }
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Flows currently held, tombstones included.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Feeds one segment. Events it causes (timers that expired before it, the flow it
    /// ends) are appended to `out`. Returns the id of the flow the segment belongs to
    /// (none for one counted in [`TableStats::after_close`]).
    pub fn process(&mut self, seg: &Segment, out: &mut Vec<FlowEvent>) -> Option<u64> {
        let hash = self.hasher.pair(&seg.src, &seg.dst, seg.encap);
        self.process_hashed(seg, hash, out)
    }

    /// [`process`](Self::process) for a segment whose `hash` was computed with this
    /// table's [`PairHasher`] (`hasher.pair(&seg.src, &seg.dst, seg.encap)`).
    pub fn process_hashed(
        &mut self,
        seg: &Segment,
        hash: u64,
        out: &mut Vec<FlowEvent>,
    ) -> Option<u64> {
        debug_assert_eq!(hash, self.hasher.pair(&seg.src, &seg.dst, seg.encap));
        self.advance(seg.ts, out);
        match seg.kind {
            SegmentKind::Icmp(err) => {
                self.stats.icmp_errors += 1;
                let Some((slot, side)) = self.lookup(hash, seg) else {
                    self.stats.icmp_unmatched += 1;
                    return None;
                };
                let flow = &mut self.nodes[slot as usize].flow;
                // Only errors about what the client sent concern the connection attempt,
                // and none changes an ended one (nor its place in its list, which is by
                // last packet).
                if side != Side::Client || flow.state().is_done() {
                    return Some(flow.id());
                }
                let id = flow.id();
                if flow.on_icmp(&err, seg.ts, &mut self.rares) {
                    out.push(FlowEvent::Finished(
                        flow.record(EndReason::Packets, &self.rares),
                    ));
                    self.relink(slot, LINGER);
                } else {
                    self.touch(slot);
                }
                Some(id)
            }
            // Not this port's traffic: the pipeline hands it to the diagnosis directly.
            SegmentKind::SynElsewhere => None,
            SegmentKind::Tcp(tcp) => {
                let (slot, side) = match self.lookup(hash, seg) {
                    Some((slot, side)) => {
                        let now = self.clock;
                        let node = &mut self.nodes[slot as usize];
                        if node.flow.is_new_connection(side, &tcp) {
                            // A retry after a refusal or an ICMP error (same ISN or not),
                            // a new ISN, a SYN on a mid-stream flow: another connection,
                            // with a row of its own (Zeek logs each retry as its REJ).
                            let reused = node.flow.holds_tuple(now);
                            if !node.flow.state().is_done() {
                                out.push(FlowEvent::Finished(
                                    node.flow.finish(EndReason::Superseded, &self.rares),
                                ));
                            } else if node.class == LINGER as u8 {
                                out.extend(settled(node, &self.rares, self.cfg.settle_all));
                            }
                            node.late = false;
                            node.flow.release(&mut self.rares);
                            let id = self.take_id();
                            self.nodes[slot as usize].flow = Flow::new(
                                id,
                                seg.src,
                                seg.dst,
                                seg.encap,
                                seg.ts,
                                reused,
                                &mut self.rares,
                            );
                        } else if node.flow.state().is_done() {
                            if node.class != LINGER as u8 {
                                // Past the close delay: the record is out for good, the
                                // segment is in no flow. The tombstone is not touched, so
                                // it expires on time.
                                self.stats.after_close += 1;
                                return None;
                            }
                            node.late = true;
                        }
                        (slot, side)
                    }
                    None => self.insert(hash, seg, out),
                };
                let flow = &mut self.nodes[slot as usize].flow;
                let was = flow.state();
                if flow.on_tcp(side, &tcp, seg.ts, &mut self.rares) {
                    out.push(FlowEvent::Finished(
                        flow.record(EndReason::Packets, &self.rares),
                    ));
                    let id = flow.id();
                    self.relink(slot, LINGER);
                    return Some(id);
                } else if tcp.window == 0
                    && self.cfg.pending_notices
                    && flow.zero_window_stall_unreported(side, seg.ts, &self.rares)
                {
                    // A stalled receiver is news while its connection goes on: it may
                    // hold for minutes. Only a zero-window segment can show it, so
                    // every other segment pays one comparison.
                    out.push(FlowEvent::Pending(flow.zero_window_pending(&self.rares)));
                } else if self.cfg.pending_notices
                    && was != flow.state()
                    && flow.slow_connect_unreported()
                {
                    // Slow connects are news once the handshake completes.
                    out.push(FlowEvent::Pending(flow.stall_pending(&self.rares)));
                }
                let id = flow.id();
                self.touch(slot);
                Some(id)
            }
        }
    }

    /// The table's clock: the latest packet time, or live the latest tick.
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// Moves the clock forward (a live timer tick) and runs what expired.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<FlowEvent>) {
        self.advance(now, out);
    }

    /// Ends every flow still going (end of capture), and settles those in their close
    /// delay, in order of first packet, and empties the table.
    pub fn finish_all(&mut self, out: &mut Vec<FlowEvent>) {
        self.finish_all_with(|ev| out.push(ev));
    }

    /// Like [`finish_all`](Self::finish_all), handing each final record to `each` as it
    /// is made: a million open flows must not become a million records in memory at once.
    /// The slab itself is sorted in place (the table is emptied anyway), so ending a
    /// million flows in order takes no memory beyond the flows'.
    pub fn finish_all_with(&mut self, mut each: impl FnMut(FlowEvent)) {
        // Free slots hold flows that ended (`remove` only takes finished flows and
        // tombstones) and are in no class, so `is_done` skips them along with the
        // tombstones, and their class keeps them from being settled twice.
        self.nodes
            .sort_unstable_by_key(|n| (n.flow.first_ts(), n.flow.id()));
        let all = self.cfg.settle_all;
        for node in &mut self.nodes {
            if !node.flow.state().is_done() {
                each(FlowEvent::Finished(
                    node.flow.finish(EndReason::CaptureEnd, &self.rares),
                ));
            } else if node.class == LINGER as u8 {
                if let Some(ev) = settled(node, &self.rares, all) {
                    each(ev);
                }
            }
        }
        self.index.clear();
        self.nodes.clear();
        self.free.clear();
        self.rares.clear();
        self.lists = [EMPTY; CLASSES];
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.stats.flows += 1;
        id
    }

    fn advance(&mut self, now: Timestamp, out: &mut Vec<FlowEvent>) {
        if now > self.clock {
            self.clock = now;
        }
        match self.next_sweep {
            None => self.next_sweep = Some(self.clock.add_micros(SWEEP_INTERVAL_US)),
            Some(at) if self.clock >= at => {
                self.sweep(out);
                self.next_sweep = Some(self.clock.add_micros(SWEEP_INTERVAL_US));
            }
            Some(_) => {}
        }
    }

    /// Pending notices for SYNs unanswered past `--syn-timeout` and for handshakes whose
    /// SYN-ACKs go unacknowledged; flows idle past their
    /// state's timeout are ended, tombstones past theirs forgotten.
    fn sweep(&mut self, out: &mut Vec<FlowEvent>) {
        let now = self.clock;
        let (mut ended, mut forgotten) = (0u64, 0u64);
        for class in 0..CLASSES {
            // Oldest first: stop at the first flow that has not expired.
            loop {
                let slot = self.lists[class].head;
                if slot == NIL {
                    break;
                }
                let node = &mut self.nodes[slot as usize];
                let flow = &mut node.flow;
                if class == LINGER {
                    if now.micros_since(flow.last_ts()) < CLOSE_DELAY_US {
                        break;
                    }
                    let closed = flow.state() == State::Done(Outcome::Closed);
                    out.extend(settled(node, &self.rares, self.cfg.settle_all));
                    // A clean close's tombstone holds the 4-tuple for TIME_WAIT; the
                    // others' tombstones last as long as the delay.
                    if closed {
                        self.relink(slot, class_of(State::Done(Outcome::Closed)));
                    } else {
                        forgotten += 1;
                        self.remove(slot);
                    }
                    continue;
                }
                if now.micros_since(flow.last_ts()) < flow.idle_timeout_us() {
                    break;
                }
                if flow.state().is_done() {
                    forgotten += 1;
                } else {
                    ended += 1;
                    // An attempt answered by a soft error whose client did not retry:
                    // the ICMP error is its end, not idleness.
                    let reason = if flow.state() == State::SynError {
                        EndReason::Packets
                    } else {
                        EndReason::IdleTimeout
                    };
                    out.push(FlowEvent::Finished(flow.finish(reason, &self.rares)));
                    if reason == EndReason::Packets {
                        // Its record says its packets ended it: it lingers like the
                        // others, and a trailing SYN-ACK or RST still lands in it.
                        self.relink(slot, LINGER);
                        continue;
                    }
                }
                self.remove(slot);
            }
        }
        if ended + forgotten > 0 {
            tracing::debug!(
                ended,
                forgotten,
                tracked = self.index.len(),
                "idle timers: ended {ended} idle flows, forgot {forgotten} tombstones"
            );
        }
        if self.cfg.pending_notices {
            // Pending is about the *first* SYN, which the touch order does not follow:
            // look at every flow still in its handshake (few, or capped by max_flows).
            let mut slot = self.lists[HANDSHAKE].head;
            while slot != NIL {
                let node = &mut self.nodes[slot as usize];
                let flow = &mut node.flow;
                if flow
                    .first_syn_pending_since()
                    .is_some_and(|t| now.micros_since(t) >= self.cfg.syn_timeout_us)
                {
                    out.push(FlowEvent::Pending(flow.pending(&self.rares)));
                }
                // A SYN-ACK retransmitted without an ACK is news now: the server's side
                // will wait for minutes before the flow ends.
                if flow.handshake_stall_unreported() {
                    out.push(FlowEvent::Pending(flow.stall_pending(&self.rares)));
                }
                slot = node.next;
            }
        }
    }

    /// A new flow for `seg`; returns its slot and which side sent `seg`.
    fn insert(&mut self, hash: u64, seg: &Segment, out: &mut Vec<FlowEvent>) -> (u32, Side) {
        if self.index.len() >= self.cfg.max_flows {
            self.evict(out);
        }
        let (client, server) = orient(seg, self.cfg.port);
        let id = self.take_id();
        let node = Node {
            flow: Flow::new(
                id,
                client,
                server,
                seg.encap,
                seg.ts,
                false,
                &mut self.rares,
            ),
            prev: NIL,
            next: NIL,
            hash: hash as u32,
            class: HANDSHAKE as u8,
            late: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let nodes = &self.nodes;
        self.index
            .insert_unique(hash, slot, |&s| slot_hash(nodes, s));
        self.link_tail(slot, HANDSHAKE);
        self.stats.peak_flows = self.stats.peak_flows.max(self.index.len() as u64);
        let side = if seg.src == client {
            Side::Client
        } else {
            Side::Server
        };
        (slot, side)
    }

    /// Drops the least recently active tombstone, or else settles the flow longest in its
    /// close delay, or else ends the least recently active flow.
    fn evict(&mut self, out: &mut Vec<FlowEvent>) {
        for class in TOMBSTONES {
            let slot = self.lists[class].head;
            if slot != NIL {
                self.remove(slot);
                return;
            }
        }
        let slot = self.lists[LINGER].head;
        if slot != NIL {
            out.extend(settled(
                &self.nodes[slot as usize],
                &self.rares,
                self.cfg.settle_all,
            ));
            self.remove(slot);
            return;
        }
        let victim = (0..CLASSES)
            .filter(|c| !TOMBSTONES.contains(c) && *c != LINGER)
            .map(|c| self.lists[c].head)
            .filter(|&s| s != NIL)
            .min_by_key(|&s| self.nodes[s as usize].flow.last_ts());
        let Some(victim) = victim else {
            return;
        };
        let flow = &mut self.nodes[victim as usize].flow;
        out.push(FlowEvent::Finished(
            flow.finish(EndReason::Evicted, &self.rares),
        ));
        self.stats.evicted += 1;
        // At the 1st, 10th, 100th… eviction: a flood evicts once per packet, and a log
        // line per packet would drown the report.
        let n = self.stats.evicted;
        if n == 10u64.pow(n.ilog10()) {
            tracing::debug!(
                evicted = n,
                max_flows = self.cfg.max_flows,
                "flow table full ({} flows): {n} open flows evicted so far (raise --max-flows)",
                self.cfg.max_flows
            );
        }
        self.remove(victim);
    }

    fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        let hash = slot_hash(&self.nodes, slot);
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        let node = &mut self.nodes[slot as usize];
        node.flow.release(&mut self.rares);
        node.class = FREE;
        node.late = false;
        self.free.push(slot);
    }

    /// The slot of `seg`'s flow, and which of its sides sent `seg`.
    fn lookup(&self, hash: u64, seg: &Segment) -> Option<(u32, Side)> {
        self.lookup_key(hash, &seg.src, &seg.dst, seg.encap)
    }

    /// The slot of the flow between `src` and `dst` in `encap`, and which of its sides
    /// `src` is.
    fn lookup_key(
        &self,
        hash: u64,
        src: &Endpoint,
        dst: &Endpoint,
        encap: Encap,
    ) -> Option<(u32, Side)> {
        let (nodes, rares) = (&self.nodes, &self.rares);
        let mut side = Side::Client;
        self.index
            .find(hash, |&s| {
                match nodes[s as usize].flow.side_of(src, dst, encap, rares) {
                    Some(found) => {
                        side = found;
                        true
                    }
                    None => false,
                }
            })
            .map(|&slot| (slot, side))
    }

    /// Most recently active now, in the list of its (possibly new) state; a flow in its
    /// close delay stays there.
    fn touch(&mut self, slot: u32) {
        let node = &self.nodes[slot as usize];
        let class = if usize::from(node.class) == LINGER && node.flow.state().is_done() {
            LINGER
        } else {
            class_of(node.flow.state())
        };
        self.relink(slot, class);
    }

    /// Most recently active now, in list `class`.
    #[inline]
    fn relink(&mut self, slot: u32, class: usize) {
        let node = &self.nodes[slot as usize];
        if usize::from(node.class) != class || self.lists[class].tail != slot {
            self.unlink(slot);
            self.link_tail(slot, class);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let Node {
            prev, next, class, ..
        } = self.nodes[slot as usize];
        let list = &mut self.lists[usize::from(class)];
        if prev == NIL {
            list.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        let list = &mut self.lists[usize::from(class)];
        if next == NIL {
            list.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        let node = &mut self.nodes[slot as usize];
        node.prev = NIL;
        node.next = NIL;
    }

    fn link_tail(&mut self, slot: u32, class: usize) {
        let old_tail = self.lists[class].tail;
        {
            let node = &mut self.nodes[slot as usize];
            node.prev = old_tail;
            node.next = NIL;
            node.class = class as u8;
        }
        if old_tail == NIL {
            self.lists[class].head = slot;
        } else {
            self.nodes[old_tail as usize].next = slot;
        }
        self.lists[class].tail = slot;
    }

    /// For tests: the state of the flow on a 4-tuple.
    #[cfg(test)]
    pub(crate) fn state_of(&self, a: Endpoint, b: Endpoint) -> Option<State> {
        self.lookup_key(self.hasher.pair(&a, &b, Encap::None), &a, &b, Encap::None)
            .map(|(slot, _)| self.nodes[slot as usize].flow.state())
    }
}

/// The record of a flow whose close delay is over, when someone is to see it: a packet
/// came after its close, or the run wants every settlement ([`FlowConfig::settle_all`]).
/// Otherwise nothing is built: the `Finished` record said it all.
fn settled(node: &Node, rares: &Rares, all: bool) -> Option<FlowEvent> {
    (node.late || all).then(|| FlowEvent::Settled {
        record: node.flow.record(EndReason::Packets, rares),
        late: node.late,
    })
}

/// A flow's index hash, rebuilt from the half kept in its node.
fn slot_hash(nodes: &[Node], slot: u32) -> u64 {
    let half = u64::from(nodes[slot as usize].hash);
    half | (half << 32)
}

/// Who is the client of a flow first seen with `seg`. A SYN's sender opened the
/// connection and a SYN-ACK's receiver did, whatever the ports: an outbound connect()
/// *from* the watched port (`nc -p 61999 host 40000`, or an ephemeral port that happens
/// to be it) is the watched side's own attempt, not a connection to it. Otherwise the
/// endpoint on the watched port is the server.
fn orient(seg: &Segment, port: u16) -> (Endpoint, Endpoint) {
    let (src, dst) = (seg.src, seg.dst);
    match seg.kind {
        SegmentKind::Tcp(t) if t.flags.syn() && !t.flags.ack() => (src, dst),
        SegmentKind::Tcp(t) if t.flags.syn() && t.flags.ack() => (dst, src),
        SegmentKind::Tcp(_) | SegmentKind::Icmp(_) | SegmentKind::SynElsewhere => {
            if src.port == port && dst.port != port {
                (dst, src)
            } else {
                (src, dst)
            }
        }
    }
}

#[cfg(test)]
mod tests;

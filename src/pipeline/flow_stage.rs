//! The flow stage, on the `flow` thread: batches of segments in, through the flow
//! table, the diagnosis, the ladder recorder and the `-w` writer; items to print out, to
//! the report stage. Live, it also runs the timers and hands the diagnosis what the host
//! threads found.

use super::host_threads::{Lookup, Refresher};
use super::kernel_thread::{KernelBatch, KernelCounts, KernelThread, SharedRing};
use super::progress_thread::ProgressThread;
use super::{wall_clock, Config};
use crate::capture::CaptureError;
use crate::capture::{self, Batch, CaptureReport};
use crate::decode::SegmentKind;
use crate::diagnose::host::{self, LookupRequest};
use crate::diagnose::{Diagnoser, Diagnosis, FlowProcesses};
use crate::error::Error;
use crate::flow::{EndReason, FlowEvent, FlowTable, Outcome, Side, TableStats};
use crate::kernel::storm::{Storms, Tally};
use crate::kernel::{EventKind, KernelEvent, KernelFacts, Names, TcpState, Witnessed};
use crate::report::ladder::{Ladder, LadderRecorder};
use crate::report::live::{Cadence, CaptureNow, Counts, Tick};
use crate::report::{Context, FlowContext, Item, Onward, PcapWriter};
use crossbeam_channel::{select, Receiver, Sender};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the flow stage wakes without packets, to run its timers (live).
const TICK: Duration = Duration::from_millis(100);
/// After Ctrl-C, how long to wait for a reader blocked in a read before finishing
/// without it.
const STUCK: Duration = Duration::from_millis(500);
/// With the kernel witness, a connection's line waits until every event the kernel
/// produced before the line was made has been read (a watermark, [`SharedRing`]): the
/// witness sees a drop or a reset microseconds after the capture does, but the two reach
/// this thread by different paths. This stage reads the ring itself at the end of the
/// batch that made the line, so the wait is that long; at most this long, should a mark
/// ever lag.
const MAX_HOLD: Duration = Duration::from_millis(200);

/// What the flow stage hands back at the end, for the summary and the exit status.
pub(super) struct FlowDone {
    /// Holds the run's one count of finished connections ([`Diagnoser::evidence`]).
    pub(super) diagnoser: Diagnoser,
    pub(super) capture: CaptureReport,
    pub(super) table: TableStats,
    pub(super) diagnosis: Diagnosis,
    /// The kernel witness's counts, when it ran.
    pub(super) kernel: Option<KernelCounts>,
}

/// The flow stage: batches of segments in, through the flow table, the diagnosis, the
/// ladder recorder and the `-w` writer; items to print out, to the report stage.
pub(super) struct FlowStage<'a> {
    pub(super) cfg: &'a Config,
    pub(super) live: bool,
    pub(super) batches: Receiver<Batch>,
    /// Emptied batches, back to the capture thread.
    pub(super) recycle: Sender<Batch>,
    /// The capture thread's report, once it has stopped.
    pub(super) done: Receiver<CaptureReport>,
    pub(super) counters: Arc<capture::Progress>,
    pub(super) bar: Option<ProgressThread>,
    pub(super) table: FlowTable,
    pub(super) stop: &'a AtomicBool,
    pub(super) sink: Sink<'a>,
}

impl FlowStage<'_> {
    pub(super) fn run(self) -> Result<FlowDone, Error> {
        let FlowStage {
            cfg,
            live,
            batches,
            recycle,
            done,
            counters,
            bar,
            mut table,
            stop,
            mut sink,
        } = self;
        let mut events: Vec<FlowEvent> = Vec::with_capacity(64);
        let mut received = 0u64;
        let mut stop_seen: Option<Instant> = None;
        let mut kernel_rx = sink
            .kernel
            .as_ref()
            .map_or_else(crossbeam_channel::never, |k| k.events.clone());
        loop {
            let wait = sink.kernel.as_ref().map_or(TICK, |k| k.wait(TICK));
            let got = select! {
                recv(batches) -> m => m.map_err(|_| Got::Disconnected),
                recv(kernel_rx) -> m => Err(match m {
                    Ok(evs) => Got::Kernel(evs),
                    Err(_) => Got::KernelGone,
                }),
                default(wait) => Err(Got::Timeout),
            };
            match got {
                Err(Got::Kernel(batch)) => {
                    sink.witnessed_batch(batch);
                    sink.lines_out()?;
                    sink.findings();
                    // Held lines released here are counted: a steady stream of kernel
                    // events must not keep the metrics from being published.
                    sink.publish(&counters, &table, false);
                    sink.batch_done()?;
                }
                Err(Got::KernelGone) => {
                    kernel_rx = crossbeam_channel::never();
                    // No event will come any more: every held line may go.
                    if let Some(k) = sink.kernel.as_mut() {
                        k.until = u64::MAX;
                    }
                    sink.lines_out()?;
                }
                Ok(batch) => {
                    received += batch.segments.len() as u64;
                    if let (false, Some(first), Some(last)) =
                        (live, batch.segments.first(), batch.segments.last())
                    {
                        sink.items.push(Item::Clock(first.ts));
                        sink.items.push(Item::Clock(last.ts));
                    }
                    for (i, seg) in batch.segments.iter().enumerate() {
                        let syn = match seg.kind {
                            SegmentKind::SynElsewhere => {
                                sink.diagnoser.syn_elsewhere(seg.dst);
                                continue;
                            }
                            SegmentKind::Tcp(t) => {
                                if live && t.flags.syn() && t.flags.ack() {
                                    sink.diagnoser.synack_seen(seg.src, seg.ts);
                                }
                                t.flags.syn() && !t.flags.ack()
                            }
                            SegmentKind::Icmp(_) => false,
                        };
                        let id = match batch.hashes.get(i) {
                            Some(&hash) => table.process_hashed(seg, hash, &mut events),
                            None => table.process(seg, &mut events),
                        };
                        let twin = match (syn, sink.copies.as_mut()) {
                            (true, Some(c)) => c.syn(seg),
                            _ => false,
                        };
                        if syn && !twin {
                            sink.diagnoser.syn_arrived(seg.src.addr, seg.dst, seg.ts);
                        }
                        if let (true, Some(id)) = (syn && live, id) {
                            let now = Instant::now();
                            if let Some(req) = sink.diagnoser.syn_seen(id, seg.src, seg.dst, now) {
                                sink.look_up(req);
                            }
                        }
                        // Before the events this segment caused: the ladder must hold the
                        // segment (a RST, the last ACK) that ended the flow.
                        if let (Some(l), Some(id)) = (sink.ladder.as_mut(), id) {
                            l.segment(id, seg);
                        }
                        if let (Some(w), Some(raw)) =
                            (sink.writer.as_deref_mut(), batch.raw.packets.get(i))
                        {
                            w.packet(id, raw, batch.raw.data(raw));
                        }
                        // Most segments end nothing: no call for them (it is a
                        // measured share of a replay's flow stage).
                        if !events.is_empty() {
                            sink.drain(&mut events)?;
                        }
                    }
                    if let Some(w) = sink.writer.as_deref_mut() {
                        w.flush()?;
                    }
                    sink.lines_out()?;
                    sink.findings();
                    sink.redraw(&counters, &table);
                    sink.publish(&counters, &table, false);
                    sink.batch_done()?;
                    let _ = recycle.try_send(batch);
                }
                Err(Got::Timeout) => {
                    if live {
                        table.tick(wall_clock(), &mut events);
                        sink.drain(&mut events)?;
                        sink.lines_out()?;
                        sink.findings();
                        sink.redraw(&counters, &table);
                        sink.publish(&counters, &table, false);
                        sink.batch_done()?;
                    }
                    // Ctrl-C while the reader is stuck in a blocking read (`-r -` from a
                    // pipe nobody writes to): finish with what we have.
                    if stop.load(Ordering::Relaxed)
                        && stop_seen.get_or_insert_with(Instant::now).elapsed() > STUCK
                    {
                        break;
                    }
                }
                Err(Got::Disconnected) => break,
            }
        }
        let capture: CaptureReport = done.recv_timeout(STUCK).unwrap_or_else(|_| {
            // The reader is still blocked (or died): count what reached us. It published
            // its count of packets read when it handed over its last batch.
            CaptureReport {
                packets: counters.packets.load(Ordering::Relaxed).max(received),
                decoded: received,
                error: (!stop.load(Ordering::Relaxed)).then(|| CaptureError::NoReport {
                    interface: cfg.source.name(),
                }),
                ..CaptureReport::default()
            }
        });
        // Gone before anything else is written: the last lines and the summary must not
        // share the screen with it.
        drop(bar);
        // The witness's last events, then every connection still held for them.
        let kernel_counts = sink.stop_witness();
        sink.release_held(true)?;
        // When the capture ended, for the attempts still waiting: a replay's last packet,
        // live the wall clock.
        let table_end = if live {
            table.clock().max(wall_clock())
        } else {
            table.clock()
        };
        let mut failed = None;
        table.finish_all_with(|ev| {
            events.push(ev);
            if events.len() >= 1024 && failed.is_none() {
                failed = sink.drain(&mut events).err();
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        sink.drain(&mut events)?;
        sink.release_held(true)?;
        sink.publish(&counters, &table, true);
        sink.hand_over()?;
        // The final diagnosis looks at the machine once more, completely.
        let last_look = sink.diagnoser.has_host_facts().then(|| {
            let taken = wall_clock();
            host::Snapshot {
                taken,
                ..host::Snapshot::take(cfg.port, true, cfg.attribution)
            }
        });
        sink.diagnoser.capture_ended(
            table_end,
            capture.skipped.get(crate::decode::SkipReason::Truncated),
        );
        let diagnosis = sink.diagnoser.finish(last_look);
        Ok(FlowDone {
            diagnoser: sink.diagnoser,
            capture,
            table: TableStats {
                copies: sink.copied_segments,
                ..table.stats()
            },
            diagnosis,
            kernel: kernel_counts,
        })
    }
}

/// What woke the flow stage, besides a batch of segments.
enum Got {
    Kernel(KernelBatch),
    KernelGone,
    Timeout,
    Disconnected,
}

/// The kernel witness's side of the flow stage: its events, held until their connection
/// ends, and the connections' lines held until the events about their last packets are
/// in.
pub(super) struct KernelSide {
    pub(super) thread: Option<KernelThread>,
    pub(super) events: Receiver<KernelBatch>,
    pub(super) witnessed: Witnessed,
    pub(super) names: std::sync::Arc<Names>,
    /// The lines waiting for the kernel's events about them, in order (each waits in
    /// its place among [`Sink::items`]).
    pub(super) held: VecDeque<Held>,
    pub(super) ring: std::sync::Arc<SharedRing>,
    /// The latest mark: every kernel event produced before it has been taken
    /// ([`KernelBatch::until`], or this stage's own read); `u64::MAX` once the thread is
    /// gone.
    pub(super) until: u64,
    /// Emptied lists, kept for the next read of the ring.
    pub(super) batches: Vec<KernelBatch>,
    pub(super) pulled: Vec<KernelEvent>,
    /// When the program counted records instead of sending them: the lines of
    /// connections then are marked `summarised`.
    pub(super) storms: Storms,
    /// The program's counts, as last read, and when; `storm_unread`: a storm record came
    /// since.
    pub(super) tallies: Vec<Tally>,
    pub(super) tallies_read: Option<Instant>,
    pub(super) storm_unread: bool,
    /// The ring was read since the batch began (to release its lines): the look for
    /// findings at its end needs no second read.
    pub(super) read_this_batch: bool,
    /// The clock read that stamps lines made since the ring was last read (taken at the
    /// first of them): a line goes once a read of the ring comes after it, and every
    /// read comes after all of them, so they can share one. Read once a line, the clock
    /// was a tenth of the witness's cost under a flood of one-packet connections.
    pub(super) stamp: Option<u64>,
}

/// How often a storm's counts are read while it lasts: the rules judge a connection in
/// it by them (where its RST came from, whether its silence is explained), so they must
/// be recent, and reading them is a system call per kind.
const TALLY_EVERY: Duration = Duration::from_millis(100);

/// A line waiting for the kernel's word. The line itself waits in its place among the
/// items to print, with no context yet, and nothing after it is handed over before it:
/// moved into a queue of its own and out again, a line (280 bytes) was the larger part
/// of the witness's cost in the flow stage under a flood of one-packet connections
/// (benches/witness.sh, synflood: the moves, then the queue).
pub(super) struct Held {
    /// On the watermark's clock: when the line was made, and when it must go at the
    /// latest.
    made: u64,
    due: u64,
    /// Its index in [`Sink::items`].
    at: usize,
    /// The connection's processes, when they were named: they go into the line's context
    /// with the kernel's facts (boxed: most lines have none).
    procs: Option<Box<FlowProcesses>>,
}

impl KernelSide {
    /// How long the flow stage may sleep: a line is held only until this stage's next
    /// read of the ring (at the end of the batch that made it), so the first held line's
    /// deadline bounds the wait should one still be held.
    fn wait(&self, tick: Duration) -> Duration {
        match self.held.front() {
            Some(h) => Duration::from_nanos(h.due.saturating_sub(self.ring.now())).min(tick),
            None => tick,
        }
    }

    /// The storm counts as last read, without frees that lost nothing (as on the lines:
    /// a sniffer's copy, a socket's queue purged as it closes, a RST a mini-socket took).
    fn storm_counts(&self) -> impl Iterator<Item = &Tally> + '_ {
        self.tallies.iter().filter(|t| !t.lost_nothing(&self.names))
    }

    /// Takes a batch's mark.
    fn marked(&mut self, until: u64) {
        self.until = self.until.max(until);
    }
}

/// Where flow events go: the diagnosis, the count, the `-w` writer, and the items for
/// the report stage.
pub(super) struct Sink<'a> {
    pub(super) writer: Option<&'a mut PcapWriter>,
    /// Also holds the run's one count of finished connections.
    pub(super) diagnoser: Diagnoser,
    /// Live: the latest look at /proc, taken off the flow stage.
    pub(super) refresher: Option<Refresher>,
    /// Live: the thread naming processes behind client sockets, started on first use.
    pub(super) lookup: Option<Lookup>,
    /// Live, with a port map: looks at its backend's namespace, made on first use.
    pub(super) backend_looker: Option<host::BackendLooker>,
    pub(super) ladder: Option<LadderRecorder>,
    /// `--live-summary`: when the next table is due.
    pub(super) cadence: Option<Cadence>,
    pub(super) port: u16,
    /// Where a DNAT rule forwards the port: a flow to it is the port's, translated.
    pub(super) backend: Option<crate::decode::Endpoint>,
    /// With a DNAT backend: the copies `-i any` sees of each forwarded connection.
    pub(super) copies: Option<super::dnat_copies::DnatCopies>,
    /// On `-i any`: the two copies it sees of each connection through a tunnel this
    /// host ends (inside it on the underlay, and opened).
    pub(super) tunnel_copies: Option<super::tunnel_copies::TunnelCopies>,
    /// Segments of the second copies dropped (tunnel or DNAT), for the summary's sum.
    pub(super) copied_segments: u64,
    pub(super) live: bool,
    /// The input is a pipe or a FIFO: each input batch's items are handed over at its
    /// end, as live (the reader ends a batch whenever the writer pauses).
    pub(super) stream: bool,
    /// Items not yet handed over, in order.
    pub(super) items: Vec<Item>,
    pub(super) to_report: Sender<Vec<Item>>,
    /// Emptied item vectors, back from the report stage.
    pub(super) spare: Receiver<Vec<Item>>,
    /// Live, with the kernel witness attached.
    pub(super) kernel: Option<KernelSide>,
    /// `--metrics`: where the counts are published for the `metrics` thread.
    pub(super) metrics: Option<Publisher>,
}

/// How often the counts are published for `--metrics`: a scrape sees them at most this
/// old (plus a tick), and a busy capture copies its histograms ten times a second, not
/// once a batch.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The flow stage's side of `--metrics`: a snapshot of the one count, swapped in.
pub(super) struct Publisher {
    pub(super) to: super::metrics_thread::Published,
    pub(super) last: Option<Instant>,
}

impl Sink<'_> {
    /// Items handed over at once in a replay: a batch keeps the channel's cost per line
    /// small.
    const BATCH: usize = 512;

    /// Live, batches are a line or two: a vector that size need not be large.
    pub(super) fn batch_capacity(live: bool) -> usize {
        if live {
            16
        } else {
            Self::BATCH
        }
    }

    fn drain(&mut self, events: &mut Vec<FlowEvent>) -> Result<(), Error> {
        for mut ev in events.drain(..) {
            // The same tunnelled connection seen again once its tunnel is opened (or
            // before): one flow, not two, shown as the copy that finished first.
            if let Some(t) = self.tunnel_copies.as_mut() {
                let dropped = match &ev {
                    FlowEvent::Finished(r) => t.is_second_copy(r).then(|| segments(r)),
                    // Only its packets after the close are new.
                    FlowEvent::Settled { record, .. } => t
                        .settled_was_dropped(record)
                        .map(|before| segments(record).saturating_sub(before)),
                    FlowEvent::Pending(_) => None,
                };
                if let Some(n) = dropped {
                    self.copied_segments += n;
                    continue;
                }
            }
            // The same forwarded connection seen again after the DNAT: one flow, not two,
            // shown with the address the client used.
            match (&mut ev, &mut self.copies) {
                (FlowEvent::Finished(r), Some(c)) => {
                    let settles = r.end == Some(EndReason::Packets);
                    if c.is_second_copy(r) {
                        if settles {
                            c.settles_later(r, Err(segments(r)));
                        }
                        self.copied_segments += segments(r);
                        continue;
                    }
                    if let Some(before) = c.addressed(r) {
                        r.server = before;
                    }
                    if settles {
                        c.settles_later(r, Ok(r.server));
                    }
                }
                (FlowEvent::Settled { record, .. }, Some(c)) => {
                    // Dropped if its Finished was (a second copy), else readdressed alike.
                    if let Err(before) = c.settled(record) {
                        // Only its packets after the close are new.
                        self.copied_segments += segments(record).saturating_sub(before);
                        continue;
                    }
                }
                _ => {}
            }
            let (procs, ladder) = match &ev {
                FlowEvent::Finished(r) => {
                    if let Some(w) = self.writer.as_deref_mut() {
                        w.flow_finished(r);
                    }
                    self.lookups_done();
                    (
                        self.diagnoser.processes_of(r.id),
                        self.ladder.as_mut().and_then(|l| l.finish(r)),
                    )
                }
                FlowEvent::Pending(_) => {
                    // A stalled receiver's notice names its processes if their lookup
                    // is done.
                    self.lookups_done();
                    (None, None)
                }
                // Trailing packets: the connection's processes and ladder went with its
                // line; `-w --only-problems` writes those it held since (a problem's
                // trailing RSTs) or forgets them.
                FlowEvent::Settled { record, .. } => {
                    if let Some(w) = self.writer.as_deref_mut() {
                        w.flow_finished(record);
                    }
                    (None, None)
                }
            };
            match &mut self.kernel {
                // The kernel's events about this connection's last packets may still be
                // on their way: its line waits for them, in its place (its ladder,
                // which does not depend on them, right after it).
                Some(k) => {
                    let made = *k.stamp.get_or_insert_with(|| k.ring.now());
                    k.held.push_back(Held {
                        made,
                        due: made + MAX_HOLD.as_nanos() as u64,
                        at: self.items.len(),
                        procs: procs.map(Box::new),
                    });
                    self.items.push(Item::Flow(ev, Context::None));
                    if let Some(l) = ladder {
                        self.items.push(Item::Ladder(Box::new(l)));
                    }
                }
                None => self.emit(ev, procs, ladder)?,
            }
        }
        if self.items.len() >= Self::BATCH {
            self.hand_over()?;
        }
        Ok(())
    }

    /// One flow event's line (and ladder), counted in the diagnosis; without the
    /// witness. Live, it goes out with the others its batch made ([`lines_out`]).
    ///
    /// [`lines_out`]: Self::lines_out
    fn emit(
        &mut self,
        ev: FlowEvent,
        processes: Option<FlowProcesses>,
        ladder: Option<Ladder>,
    ) -> Result<(), Error> {
        let context = counted(
            &mut self.diagnoser,
            self.backend,
            self.port,
            &ev,
            processes,
            None,
        );
        self.items.push(Item::Flow(ev, context));
        if let Some(l) = ladder {
            self.items.push(Item::Ladder(Box::new(l)));
        }
        Ok(())
    }

    /// The end of the lines a batch of segments (or a tick, or the kernel's events)
    /// made: those waiting for the kernel's word that may go are completed, and live,
    /// everything ready goes to the report stage before the findings are looked for
    /// (which may read /proc: milliseconds). Once a batch, not once a line: a hand-over
    /// (a channel send and, often, a wake-up of the report stage) per line was a tenth of
    /// the flow stage's time under a flood of one-packet connections.
    fn lines_out(&mut self) -> Result<(), Error> {
        self.release_held(false)?;
        if self.live {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Every event the kernel has produced so far: the batches the kernel thread sent,
    /// then the ring buffer read here. Every line made before this is then covered by
    /// the mark (it goes out now, not after a thread's wake-up), and the kernel thread,
    /// seeing the ring read, leaves it alone.
    ///
    /// Returns the time of the read on the watermark's clock (0 without the witness).
    fn witnessed_waiting(&mut self) -> u64 {
        let Some(k) = &mut self.kernel else { return 0 };
        let mut batches = std::mem::take(&mut k.batches);
        let mut events = std::mem::take(&mut k.pulled);
        let mark = k.ring.pull(&k.events, &mut batches, &mut events);
        for batch in batches.drain(..) {
            self.witnessed_batch(batch);
        }
        self.witnessed(&mut events);
        if let Some(k) = self.kernel.as_mut() {
            k.marked(mark);
            k.batches = batches;
            k.pulled = events;
            k.read_this_batch = true;
            k.stamp = None;
        }
        mark
    }

    fn witnessed_batch(&mut self, mut batch: KernelBatch) {
        if let Some(k) = self.kernel.as_mut() {
            k.marked(batch.until);
        }
        self.witnessed(&mut batch.events);
    }

    /// The witness's events: each kept for its connection; a listener's appearance or
    /// disappearance goes to the diagnosis at once, with the process that called listen()
    /// or close() named from /proc while it is still there (one process's files: rare,
    /// and cheap next to the lines it corrects). Takes `events`, leaving the list empty
    /// for reuse.
    fn witnessed(&mut self, events: &mut Vec<KernelEvent>) {
        let Some(k) = &mut self.kernel else {
            events.clear();
            return;
        };
        for e in events.drain(..) {
            tracing::trace!(ts = e.ts.0, src = %e.src, dst = %e.dst, kind = ?e.kind, flags = %e.flags, "kernel event");
            if e.kind == EventKind::Storm {
                k.storms.add(e.ts);
                k.storm_unread = true;
                continue;
            }
            if let EventKind::State { old, new } = e.kind {
                if new == TcpState::Listen || (old == TcpState::Listen && new == TcpState::Close) {
                    let process = e.process.map(|p| {
                        host::describe_process(i32::try_from(p.pid).unwrap_or(0), p.comm())
                    });
                    self.diagnoser.listener_changed(&e, process);
                    continue;
                }
                // A connection's socket cloned from the listener: `inet_csk_clone_lock`
                // moves the copy's LISTEN to SYN_RECV. Not the listener going away, and
                // its connection's states begin at SYN_RECV.
                if old == TcpState::Listen {
                    continue;
                }
            }
            k.witnessed.add(e);
        }
    }

    /// Completes the held lines that are due (all of them with `all`), each with the
    /// kernel's facts about it, and counts them.
    fn release_held(&mut self, all: bool) -> Result<(), Error> {
        if self.kernel.as_ref().is_none_or(|k| k.held.is_empty()) {
            return Ok(());
        }
        let now = self.witnessed_waiting();
        self.read_tallies(false);
        let Some(k) = &mut self.kernel else {
            return Ok(());
        };
        let marked = k.until;
        while let Some(h) = k.held.front() {
            if !all && h.made > marked && h.due > now {
                break;
            }
            let Some(h) = k.held.pop_front() else { break };
            let Some(Item::Flow(ev, context)) = self.items.get_mut(h.at) else {
                debug_assert!(false, "a held line is not in its place");
                continue;
            };
            let mut facts = match &*ev {
                FlowEvent::Finished(r) => k.witnessed.take(r, &k.names),
                FlowEvent::Pending(r) | FlowEvent::Settled { record: r, .. } => {
                    k.witnessed.peek(r, &k.names)
                }
            };
            let r = ev.record();
            if !k.storms.is_empty() {
                // A drop is witnessed microseconds after the capture saw its packet.
                facts.summarised = k.storms.cover(r.first_ts, r.last_ts.add_micros(1_000));
            }
            if let FlowEvent::Finished(r) = &*ev {
                k.witnessed.expire(r.last_ts);
            }
            *context = counted(
                &mut self.diagnoser,
                self.backend,
                self.port,
                ev,
                h.procs.map(|p| *p),
                Some(facts),
            );
        }
        Ok(())
    }

    /// Reads the program's storm counts for the rules: when a storm record came since the
    /// last read, at most every [`TALLY_EVERY`]; with `last`, whatever came (counts
    /// grow after a window's one record, which a full ring may also have lost).
    fn read_tallies(&mut self, last: bool) {
        let Some(k) = &mut self.kernel else { return };
        if !last && !k.storm_unread {
            return;
        }
        // Read only now: outside storms, no clock read.
        let now = Instant::now();
        let due = k
            .tallies_read
            .is_none_or(|t| now.duration_since(t) >= TALLY_EVERY);
        if !last && !due {
            return;
        }
        k.ring.tallies(&mut k.tallies);
        k.tallies_read = Some(now);
        // A window goes on counting after its storm record: read again until a read
        // comes after the last storm's end (the rules, the summary and --metrics must not
        // stop at the storm's last record).
        k.storm_unread = k.storms.last_end().is_some_and(|end| end >= wall_clock());
        self.diagnoser.kernel_tallied(&k.tallies, &k.names);
    }

    /// Stops the witness (detaching it) and takes its last events.
    fn stop_witness(&mut self) -> Option<KernelCounts> {
        let k = self.kernel.as_mut()?;
        let counts = k.thread.take().map(KernelThread::finish);
        self.witnessed_waiting();
        // The last counts: a storm's records after the last read are in them.
        self.read_tallies(true);
        if let Some(k) = self.kernel.as_mut() {
            k.until = u64::MAX;
        }
        // Read last, after the final read of the ring above.
        let read = self.kernel.as_ref().map_or(0, |k| k.ring.read());
        // Events a full table forgot never reached their connection: lost like those
        // the ring buffer had no room for.
        let overflowed = self.kernel.as_ref().map_or(0, |k| k.witnessed.overflowed);
        let storm = self
            .kernel
            .as_ref()
            .map(|k| k.storm_counts().map(|t| t.named(&k.names)).collect())
            .unwrap_or_default();
        counts.map(|c| KernelCounts {
            events: read,
            lost: c.lost + overflowed,
            storm,
        })
    }

    /// Hands a process lookup to the attribution thread (dropped if it is behind).
    fn look_up(&mut self, req: LookupRequest) {
        let worker = self.lookup.get_or_insert_with(Lookup::start);
        let _ = worker.requests.try_send(req);
    }

    /// Feeds the lookups that finished to the diagnosis.
    fn lookups_done(&mut self) {
        if let Some(worker) = &self.lookup {
            while let Ok((id, procs)) = worker.results.try_recv() {
                self.diagnoser.processes_found(id, procs);
            }
        }
    }

    /// Live findings that became certain, printed after the lines of their batch, and
    /// updates when facts they rested on changed. They never wait for /proc: the
    /// refresher's look (up to a second old) is the background, but the port's listeners
    /// are read at the moment of a problem (a sock_diag dump, microseconds) and the
    /// witness keeps them exact in between; the counters, cheap to read, are always
    /// fresh.
    fn findings(&mut self) {
        // The witness's events that have arrived first (a listen() just before a refusal
        // among them): a look at the sockets must not overtake the kernel's word about
        // the same listener, and the poll judges by everything known now. Read already
        // if the batch's lines were released: everything before them is in (a read and
        // a clock read a batch were measurable under a flood of one-packet connections).
        if !self.kernel.as_ref().is_some_and(|k| k.read_this_batch) {
            self.witnessed_waiting();
        }
        // Also between packets: a storm's last counts, after its last line.
        self.read_tallies(false);
        let now = Instant::now();
        if let Some(snapshot) = self.refresher.as_ref().and_then(Refresher::latest) {
            self.diagnoser.facts_refreshed(snapshot);
        }
        if self.diagnoser.look_due(now) {
            let at = wall_clock();
            let listeners = host::listeners_now(self.port);
            self.diagnoser.sockets_looked(listeners, at, now);
        }
        if let Some((addr, wanted)) = self.diagnoser.backend_look_due(now) {
            let looker = self
                .backend_looker
                .get_or_insert_with(|| host::BackendLooker::new(addr));
            let found = looker.look(wanted.then_some(now));
            self.diagnoser.backend_looked(found, wall_clock(), now);
        }
        if self.diagnoser.poll_due(now) {
            for f in self
                .diagnoser
                .poll(now, wall_clock(), host::read_counters())
            {
                self.items.push(Item::Finding(Box::new(f)));
            }
        }
        for u in self.diagnoser.updates() {
            self.items.push(Item::Update(Box::new(u)));
        }
    }

    /// `--live-summary`: the table, when a second has passed.
    fn redraw(&mut self, counters: &capture::Progress, table: &FlowTable) {
        let Some(cadence) = &mut self.cadence else {
            return;
        };
        let at = Instant::now();
        if !cadence.due(at) {
            return;
        }
        let capture = CaptureNow {
            port: self.port,
            packets: counters.packets.load(Ordering::Relaxed),
            kernel_dropped: counters.kernel_dropped.load(Ordering::Relaxed),
            internal_dropped: counters.internal_dropped.load(Ordering::Relaxed),
            tracked: table.len() as u64,
        };
        self.items.push(Item::Redraw(Box::new(Tick {
            at,
            capture,
            counts: Counts::of(self.diagnoser.evidence()),
            listener: self.diagnoser.last_listener_change().cloned(),
        })));
    }

    /// `--metrics`: a new snapshot for scrapes, at most every [`PUBLISH_EVERY`] unless
    /// `now`.
    fn publish(&mut self, counters: &capture::Progress, table: &FlowTable, now: bool) {
        let Some(p) = &mut self.metrics else { return };
        let at = Instant::now();
        if !now && p.last.is_some_and(|t| at.duration_since(t) < PUBLISH_EVERY) {
            return;
        }
        p.last = Some(at);
        let capture = CaptureNow {
            port: self.port,
            packets: counters.packets.load(Ordering::Relaxed),
            kernel_dropped: counters.kernel_dropped.load(Ordering::Relaxed),
            internal_dropped: counters.internal_dropped.load(Ordering::Relaxed),
            tracked: table.len() as u64,
        };
        let kernel = self.kernel.as_ref().map_or_else(Default::default, |k| {
            crate::report::metrics::KernelEventCounts {
                lost: k.ring.lost(),
                summarised: k.storm_counts().map(|t| t.count).sum(),
            }
        });
        let snapshot = crate::report::metrics::Snapshot::of(
            self.diagnoser.evidence(),
            self.diagnoser.said_live(),
            capture,
            kernel,
        );
        *p.to
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    }

    /// The end of an input batch or a live tick: live or from a stream, everything goes
    /// out now.
    fn batch_done(&mut self) -> Result<(), Error> {
        if let Some(k) = self.kernel.as_mut() {
            k.read_this_batch = false;
        }
        if self.live || self.stream {
            self.hand_over()
        } else {
            Ok(())
        }
    }

    /// Hands the items gathered so far to the report stage: those before the first line
    /// still waiting for the kernel's word.
    fn hand_over(&mut self) -> Result<(), Error> {
        let held = self.kernel.as_mut().map(|k| &mut k.held);
        if self.items.is_empty()
            || held
                .as_ref()
                .and_then(|h| h.front())
                .is_some_and(|h| h.at == 0)
        {
            return Ok(());
        }
        let mut next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(Self::batch_capacity(self.live)));
        keep_waiting(&mut self.items, &mut next, held);
        let items = std::mem::replace(&mut self.items, next);
        self.to_report
            .send(items)
            .map_err(|_| Error::Output(io::Error::other("the report stage stopped")))
    }
}

/// Moves the items from the first line still waiting for the kernel's word on (all of
/// them after it wait too, so the order is kept) from `items` to `rest`, and the waiting
/// lines' places with them. Rare: lines are completed at the end of the batch that made
/// them, unless a mark lags.
fn keep_waiting(items: &mut Vec<Item>, rest: &mut Vec<Item>, held: Option<&mut VecDeque<Held>>) {
    let Some(held) = held else { return };
    let Some(first) = held.front().map(|h| h.at) else {
        return;
    };
    rest.extend(items.drain(first..));
    for h in held {
        h.at -= first;
    }
}

/// Counts a flow event in the diagnosis (with the kernel's facts, when the witness ran)
/// and returns its line's context. `backend`: where a DNAT rule forwards `port`.
fn counted(
    diagnoser: &mut Diagnoser,
    backend: Option<crate::decode::Endpoint>,
    port: u16,
    ev: &FlowEvent,
    processes: Option<FlowProcesses>,
    kernel: Option<KernelFacts>,
) -> Context {
    if let (FlowEvent::Finished(r), Some(p)) = (ev, &processes) {
        diagnoser.flow_named(r, p);
    }
    let record = ev.record();
    let translated_to = backend
        // Before the translation (host:P) or after it (the backend): the rule forwards
        // the port's connections.
        .filter(|b| record.server == *b || record.server.port == port)
        .map(|to| crate::report::Translated { port, to });
    // Counted first, by reference (microseconds, nothing read from /proc): the facts
    // then move into the line uncopied.
    match ev {
        FlowEvent::Finished(r) => diagnoser.flow_finished(r, kernel.as_ref()),
        FlowEvent::Pending(r) => diagnoser.flow_pending(r, kernel.as_ref()),
        // Counted in the summary at its close, by the outcome it had then.
        FlowEvent::Settled { .. } => {}
    }
    let onward = match translated_to {
        Some(t) => Onward::Translated(t),
        // Only for a refusal whose RST the witness did not see this host's TCP send: one
        // comparison for every other line.
        None if record.outcome == Outcome::Refused
            && kernel
                .as_ref()
                .is_some_and(|k| !k.summarised && k.reset_by(Side::Server).is_none())
            && diagnoser.is_own_address(record.server.addr) =>
        {
            Onward::Unread
        }
        None => Onward::Here,
    };
    match (&processes, &kernel, onward) {
        (None, None, Onward::Here) => Context::None,
        (None, Some(k), Onward::Here) if k.is_quiet() => Context::KernelQuiet {
            summarised: k.summarised,
        },
        _ => Context::Full(Box::new(FlowContext {
            processes,
            kernel,
            onward,
        })),
    }
}

/// A connection's segments both ways.
fn segments(r: &crate::flow::FlowRecord) -> u64 {
    r.packets[0] + r.packets[1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Timestamp;

    fn clock(t: u64) -> Item {
        Item::Clock(Timestamp(t))
    }

    fn times(items: &[Item]) -> Vec<u64> {
        items
            .iter()
            .map(|i| match i {
                Item::Clock(t) => t.0,
                other => panic!("not a test item: {other:?}"),
            })
            .collect()
    }

    fn held_at(at: usize) -> Held {
        Held {
            made: 0,
            due: 0,
            at,
            procs: None,
        }
    }

    #[test]
    fn items_after_a_line_still_waiting_stay_behind_it_and_keep_their_places() {
        // Items 0 and 1 are ready; 2 is a line waiting for the kernel's word, 3 a finding
        // made after it, 4 another waiting line.
        let mut items: Vec<Item> = (0..5).map(clock).collect();
        let mut rest = Vec::new();
        let mut held = VecDeque::from([held_at(2), held_at(4)]);
        keep_waiting(&mut items, &mut rest, Some(&mut held));
        assert_eq!(
            times(&items),
            [0, 1],
            "only what comes before the first waiting line goes"
        );
        assert_eq!(times(&rest), [2, 3, 4], "the rest stays, in order");
        let places: Vec<usize> = held.iter().map(|h| h.at).collect();
        assert_eq!(places, [0, 2], "each waiting line still points at itself");
    }

    #[test]
    fn with_no_line_waiting_every_item_goes() {
        let mut items: Vec<Item> = (0..3).map(clock).collect();
        let mut rest = Vec::new();
        keep_waiting(&mut items, &mut rest, Some(&mut VecDeque::new()));
        assert_eq!(times(&items), [0, 1, 2]);
        assert!(rest.is_empty());
        keep_waiting(&mut items, &mut rest, None);
        assert_eq!(
            times(&items),
            [0, 1, 2],
            "without the witness nothing waits"
        );
    }
}

//! Wires the stages together: a capture thread that reads and decodes, a bounded channel
//! of batches to the flow stage on a thread of its own, and a bounded channel of items to
//! print to the report stage on the calling thread, which owns the output. Replay and
//! live take the same path; live, items are handed over as soon as they exist (a line
//! must appear at once), a replay hands them over in batches. Nothing else in the crate
//! knows about threads or channels.

use crate::capture::{self, Batch, CaptureError, CaptureReport, Limits, Source};
use crate::decode::{PairHasher, SegmentKind, Timestamp};
use crate::diagnose::{Diagnoser, Finding, SystemView};
use crate::flow::{FlowConfig, FlowEvent, FlowTable, TableStats};
use crate::report::ladder::LadderRecorder;
use crate::report::live::{Cadence, CaptureNow, Counts, Tick};
use crate::report::progress::{self, AroundBar, Bar, ReplayBar};
use crate::report::{Format, Item, PcapWriter, Report, Style, Summary, Tally};
use crate::Error;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Batches in flight between the capture thread and the flow stage. Live, a batch is
/// handed over whenever the kernel ring runs empty, so under light load it holds a
/// packet or two: the channel must absorb a stall of the flow stage counted in *batches*
/// (256 single-packet batches ~ 60 ms at 4k packets/s). A full 512-segment batch is
/// 40 KiB, so a full channel of them stays near 10 MiB.
const CHANNEL_BATCHES: usize = 256;
/// Replay: the reader waits when the channel is full (nothing is lost), and full batches
/// keep both threads busy; more in flight would only hold memory (~44 KiB a batch).
const REPLAY_CHANNEL_BATCHES: usize = 16;
/// How often the flow stage wakes without packets, to run its timers (live).
const TICK: Duration = Duration::from_millis(100);
/// After Ctrl-C, how long to wait for a reader blocked in a read before finishing
/// without it.
const STUCK: Duration = Duration::from_millis(500);
/// Item batches in flight to the report stage. Live, a batch is a line or two handed
/// over at once; replays hand over full batches, and a few in flight keep both stages
/// busy.
const REPORT_BATCHES: usize = 256;
const REPLAY_REPORT_BATCHES: usize = 4;
/// How often the progress bar reads the capture's byte count.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// A validated run configuration (built by `cli`, or by tests directly).
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Source,
    pub port: u16,
    pub limits: Limits,
    pub format: Format,
    pub style: Style,
    pub only_problems: bool,
    /// `-Z USER`.
    pub run_as: Option<String>,
    /// Name processes behind sockets (live); off with `--no-attribution`.
    pub attribution: bool,
    /// `--ladder` (`Some(None)`: every problem flow) or `--flow PORT` (`Some(Some(port))`).
    pub ladder: Option<Option<u16>>,
    pub write: Option<PathBuf>,
    pub max_flows: usize,
    pub syn_timeout: Duration,
    /// The trailing pcap-filter expression that narrows the capture, as tcpdump's.
    pub filter_expr: Option<String>,
    /// The replay's progress bar on stderr.
    pub progress: Bar,
}

/// How a run went, for the exit status.
#[derive(Debug)]
pub struct RunResult {
    pub flows: u64,
    pub problems: u64,
    /// The capture ended on an error (a damaged file) after everything before it was
    /// reported.
    pub capture_error: Option<CaptureError>,
    /// Our standard output was closed (`portsniff … | head`): we stopped early.
    pub output_closed: bool,
    /// Packets the kernel dropped (capture buffer full): outcomes may be wrong.
    pub kernel_dropped: u64,
    /// Packets portsniff dropped because its flow stage fell behind.
    pub internal_dropped: u64,
    /// Packets read (live: those that passed the kernel filter).
    pub captured: u64,
    /// Live: libpcap's `pcap_stats` counters at the end.
    pub kernel: Option<capture::KernelStats>,
}

fn wall_clock() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_micros() as u64)
}

/// A capture that is open (permissions checked, filter installed, `-w` file created)
/// but not yet reading.
pub struct Prepared<'a> {
    cfg: &'a Config,
    opened: capture::Opened,
    writer: Option<PcapWriter>,
}

/// Opens the capture and the `-w` file: every error a user can cause by their arguments
/// or permissions happens here, before any output.
pub fn prepare(cfg: &Config) -> Result<Prepared<'_>, Error> {
    let opened = capture::open(&cfg.source, cfg.port, cfg.filter_expr.as_deref())?;
    let writer = match &cfg.write {
        Some(path) => Some(PcapWriter::create(path, opened.link(), cfg.only_problems)?),
        None => None,
    };
    Ok(Prepared {
        cfg,
        opened,
        writer,
    })
}

/// Opens and runs in one go (tests and benches).
pub fn run<W: Write>(cfg: &Config, out: W, stop: Arc<AtomicBool>) -> Result<RunResult, Error> {
    prepare(cfg)?.run(out, stop)
}

impl Prepared<'_> {
    /// The `-w` file being written, if any.
    pub fn write_path(&self) -> Option<&std::path::Path> {
        self.writer.as_ref().map(|w| w.file_path())
    }

    /// The link type being read, e.g. `EN10MB`.
    pub fn link_name(&self) -> &'static str {
        self.opened.link().name()
    }

    /// Reads to the end (of the file, the limits, or `stop`) and writes the report.
    pub fn run<W: Write>(self, out: W, stop: Arc<AtomicBool>) -> Result<RunResult, Error> {
        let Prepared {
            cfg,
            mut opened,
            mut writer,
        } = self;
        let counters = opened.progress();
        let link = opened.link();
        let live = cfg.source.is_live();
        tracing::info!(
            source = %cfg.source.name(),
            link = link.name(),
            // Files are read unfiltered (the decoder picks the port's packets).
            kernel_filter = live.then(|| opened.filter()),
            "capture started"
        );
        let keep_raw = writer.is_some();
        let hasher = PairHasher::new();
        opened.hash_pairs_with(hasher.clone());

        let depth = if live {
            CHANNEL_BATCHES
        } else {
            REPLAY_CHANNEL_BATCHES
        };
        let (tx, rx) = bounded::<Batch>(depth);
        let (recycle_tx, recycle_rx) = bounded::<Batch>(depth + 2);
        let limits = cfg.limits;
        let capture_stop = Arc::clone(&stop);
        let (done_tx, done_rx) = bounded::<CaptureReport>(1);
        std::thread::Builder::new()
            .name("capture".to_string())
            .spawn(move || {
                let report = opened.run(&tx, &recycle_rx, limits, keep_raw, &capture_stop);
                drop(tx);
                let _ = done_tx.send(report);
            })
            .map_err(Error::Thread)?;
        let bar = ProgressThread::start(cfg, &counters)?;
        let out = AroundBar::new(
            out,
            bar.as_ref()
                .filter(|_| {
                    cfg.progress
                        == Bar::Stderr {
                            stdout_terminal: true,
                        }
                })
                .map(|b| b.bar.clone()),
        );

        let table = FlowTable::with_hasher(
            FlowConfig {
                port: cfg.port,
                max_flows: cfg.max_flows,
                syn_timeout_us: cfg.syn_timeout.as_micros() as u64,
                pending_notices: live,
            },
            hasher,
        );
        let mut report = Report::new(out, cfg.format, cfg.style, cfg.only_problems, live);
        // The conn.log's #open/#close: the wall clock live; a file's packet times, so a
        // replay writes the same bytes every run.
        if live {
            report.clock(wall_clock());
        }
        let depth = if live {
            REPORT_BATCHES
        } else {
            REPLAY_REPORT_BATCHES
        };
        let (to_report, items_rx) = bounded::<Vec<Item>>(depth);
        // Never full for long: at most `depth` + 1 batches exist once the first have
        // come back.
        let (recycle_items, spare_items) = bounded::<Vec<Item>>(depth + 2);
        let stage = FlowStage {
            cfg,
            live,
            batches: rx,
            recycle: recycle_tx,
            done: done_rx,
            counters,
            bar,
            table,
            stop: &stop,
            sink: Sink {
                writer: writer.as_mut(),
                // System facts (/proc) only describe the machine we capture on, live.
                diagnoser: Diagnoser::new(cfg.port, live, cfg.attribution)
                    .with_expression(cfg.filter_expr.as_deref()),
                ladder: cfg.ladder.map(LadderRecorder::new),
                tally: Tally::default(),
                cadence: cfg.format.redraws().then(Cadence::default),
                port: cfg.port,
                live,
                items: Vec::with_capacity(Sink::batch_capacity(live)),
                to_report,
                spare: spare_items,
            },
        };
        // The flow stage on a thread of its own, the report stage here: a replay's flow
        // stage is its slowest part, and formatting its lines beside it (the capture
        // thread leaves most of a second core idle) pays. The writer stays on the
        // caller's thread.
        let (done, mut output_closed) = std::thread::scope(|s| {
            let flow = std::thread::Builder::new()
                .name("flow".to_string())
                .spawn_scoped(s, move || stage.run())
                .map_err(Error::Thread)?;
            let printed = print_all(&mut report, items_rx, &recycle_items, &stop);
            let done = flow
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            // The report stage's error first: the flow stage only failed because the
            // report stage stopped taking its items.
            let output_closed = printed?;
            Ok::<_, Error>((done?, output_closed))
        })?;
        let FlowDone {
            tally,
            capture,
            table: table_stats,
            findings,
            system,
        } = done;

        if live {
            report.clock(wall_clock());
        }
        let source_name = cfg.source.name();
        let summary = Summary::new(
            &source_name,
            live,
            link.name(),
            cfg.port,
            &tally,
            &capture,
            table_stats,
        );
        let summary = Summary {
            expression: cfg.filter_expr.as_deref(),
            system,
            credentials: live.then(crate::privileges::Credentials::current),
            ..summary
        };
        if !output_closed {
            if let Err(e) = report.finish(&findings, &summary) {
                output_closed = closed_output(e, &stop)?;
            }
        }
        if let Some(w) = writer {
            let written = w.finish()?;
            tracing::info!(packets = written, "capture file written");
        }
        tracing::info!(
            captured = capture.packets,
            filtered_out = capture.filtered_out,
            received_by_filter = capture.kernel.map(|k| k.received),
            dropped_by_kernel = capture.kernel.map(|k| k.dropped),
            dropped_by_portsniff = capture.internal_dropped,
            "capture ended"
        );
        Ok(RunResult {
            captured: capture.packets,
            kernel: capture.kernel,
            flows: tally.flows(),
            problems: tally.problems(),
            kernel_dropped: capture.kernel.map_or(0, |k| k.dropped),
            internal_dropped: capture.internal_dropped,
            capture_error: capture.error,
            output_closed,
        })
    }
}

/// The report stage's loop: prints each batch of items as it comes, in order, until the
/// flow stage has handed over its last. Returns whether our standard output was closed;
/// after that, items are taken and dropped so the flow stage can finish.
fn print_all<W: Write>(
    report: &mut Report<W>,
    batches: Receiver<Vec<Item>>,
    recycle: &Sender<Vec<Item>>,
    stop: &AtomicBool,
) -> Result<bool, Error> {
    let mut closed = false;
    for mut batch in batches {
        if !closed {
            for item in &batch {
                if let Err(e) = report.print(item) {
                    closed = closed_output(e, stop)?;
                    break;
                }
            }
        }
        batch.clear();
        let _ = recycle.try_send(batch);
    }
    Ok(closed)
}

/// A closed stdout (`| head`) ends the run quietly, like tcpdump: `Ok(true)`. Other write
/// errors are errors. Either way the capture is told to stop.
fn closed_output(e: io::Error, stop: &AtomicBool) -> Result<bool, Error> {
    stop.store(true, Ordering::SeqCst);
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(true)
    } else {
        Err(Error::Output(e))
    }
}

/// What the flow stage hands back at the end, for the summary and the exit status.
struct FlowDone {
    tally: Tally,
    capture: CaptureReport,
    table: TableStats,
    findings: Vec<Finding>,
    system: Option<SystemView>,
}

/// The flow stage: batches of segments in, through the flow table, the diagnosis, the
/// ladder recorder and the `-w` writer; items to print out, to the report stage.
struct FlowStage<'a> {
    cfg: &'a Config,
    live: bool,
    batches: Receiver<Batch>,
    /// Emptied batches, back to the capture thread.
    recycle: Sender<Batch>,
    /// The capture thread's report, once it has stopped.
    done: Receiver<CaptureReport>,
    counters: Arc<capture::Progress>,
    bar: Option<ProgressThread>,
    table: FlowTable,
    stop: &'a AtomicBool,
    sink: Sink<'a>,
}

impl FlowStage<'_> {
    fn run(self) -> Result<FlowDone, Error> {
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
        let mut stop_seen: Option<std::time::Instant> = None;
        loop {
            match batches.recv_timeout(TICK) {
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
                            SegmentKind::Tcp(t) => t.flags.syn() && !t.flags.ack(),
                            SegmentKind::Icmp(_) => false,
                        };
                        let id = match batch.hashes.get(i) {
                            Some(&hash) => table.process_hashed(seg, hash, &mut events),
                            None => table.process(seg, &mut events),
                        };
                        if let (true, Some(id)) = (syn && live, id) {
                            sink.diagnoser.syn_seen(id, seg.src, seg.dst);
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
                        sink.drain(&mut events)?;
                    }
                    if let Some(w) = sink.writer.as_deref_mut() {
                        w.flush()?;
                    }
                    sink.findings();
                    sink.redraw(&counters, &table);
                    sink.batch_done()?;
                    let _ = recycle.try_send(batch);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if live {
                        table.tick(wall_clock(), &mut events);
                        sink.drain(&mut events)?;
                        sink.findings();
                        sink.redraw(&counters, &table);
                        sink.batch_done()?;
                    }
                    // Ctrl-C while the reader is stuck in a blocking read (`-r -` from a
                    // pipe nobody writes to): finish with what we have.
                    if stop.load(Ordering::Relaxed)
                        && stop_seen
                            .get_or_insert_with(std::time::Instant::now)
                            .elapsed()
                            > STUCK
                    {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let capture: CaptureReport = done.recv_timeout(STUCK).unwrap_or_else(|_| {
            // The reader is still blocked (or died): count what reached us.
            CaptureReport {
                packets: received,
                decoded: received,
                error: (!stop.load(Ordering::Relaxed)).then(|| CaptureError::Live {
                    interface: cfg.source.name(),
                    detail: "the capture thread ended without a report".to_string(),
                }),
                ..CaptureReport::default()
            }
        });
        // Gone before anything else is written: the last lines and the summary must not
        // share the screen with it.
        drop(bar);
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
        sink.hand_over()?;
        let findings = sink.diagnoser.finish();
        Ok(FlowDone {
            tally: sink.tally,
            capture,
            table: table.stats(),
            findings,
            system: sink.diagnoser.system_view(),
        })
    }
}

/// Where flow events go: the diagnosis, the count, the `-w` writer, and the items for
/// the report stage.
struct Sink<'a> {
    writer: Option<&'a mut PcapWriter>,
    diagnoser: Diagnoser,
    ladder: Option<LadderRecorder>,
    /// Every finished connection, counted once as it ends.
    tally: Tally,
    /// `--live-summary`: when the next table is due.
    cadence: Option<Cadence>,
    port: u16,
    live: bool,
    /// Items not yet handed over, in order.
    items: Vec<Item>,
    to_report: Sender<Vec<Item>>,
    /// Emptied item vectors, back from the report stage.
    spare: Receiver<Vec<Item>>,
}

impl Sink<'_> {
    /// Items handed over at once in a replay: a batch keeps the channel's cost per line
    /// small.
    const BATCH: usize = 512;

    /// Live, batches are a line or two: a vector that size need not be large.
    fn batch_capacity(live: bool) -> usize {
        if live {
            16
        } else {
            Self::BATCH
        }
    }

    fn drain(&mut self, events: &mut Vec<FlowEvent>) -> Result<(), Error> {
        for ev in events.drain(..) {
            let (procs, ladder) = match &ev {
                FlowEvent::Finished(r) => {
                    if let Some(w) = self.writer.as_deref_mut() {
                        w.flow_finished(r);
                    }
                    self.tally.add(r);
                    (
                        self.diagnoser.processes_of(r.id),
                        self.ladder.as_mut().and_then(|l| l.finish(r)),
                    )
                }
                FlowEvent::Pending(_) => (None, None),
            };
            self.items.push(Item::Flow(ev, procs.map(Box::new)));
            if let Some(l) = ladder {
                self.items.push(Item::Ladder(Box::new(l)));
            }
            // Live, the flow's line goes out first: findings may look at /proc, which
            // takes milliseconds.
            if self.live {
                self.hand_over()?;
            }
            match &ev {
                FlowEvent::Finished(r) => self.diagnoser.flow_finished(r),
                FlowEvent::Pending(r) => self.diagnoser.flow_pending(r),
            }
        }
        if self.items.len() >= Self::BATCH {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Live findings that became certain, printed after the lines of their batch.
    fn findings(&mut self) {
        for f in self.diagnoser.poll() {
            self.items.push(Item::Finding(Box::new(f)));
        }
    }

    /// `--live-summary`: the table, when a second has passed.
    fn redraw(&mut self, counters: &capture::Progress, table: &FlowTable) {
        let Some(cadence) = &mut self.cadence else {
            return;
        };
        let at = std::time::Instant::now();
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
            counts: Counts::of(&self.tally),
        })));
    }

    /// The end of an input batch or a live tick: live, everything goes out now.
    fn batch_done(&mut self) -> Result<(), Error> {
        if self.live {
            self.hand_over()
        } else {
            Ok(())
        }
    }

    /// Hands the items gathered so far to the report stage.
    fn hand_over(&mut self) -> Result<(), Error> {
        if self.items.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(Self::batch_capacity(self.live)));
        let items = std::mem::replace(&mut self.items, next);
        self.to_report
            .send(items)
            .map_err(|_| Error::Output(io::Error::other("the report stage stopped")))
    }
}

/// The replay's progress bar and the thread that moves it along.
struct ProgressThread {
    bar: ReplayBar,
    done: crossbeam_channel::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressThread {
    /// Starts the bar when the config asks for one and the file's length is known (a
    /// regular file; `-r /dev/fd/63` from a shell pipe has none).
    fn start(
        cfg: &Config,
        counters: &Arc<capture::Progress>,
    ) -> Result<Option<ProgressThread>, Error> {
        let (Bar::Stderr { .. }, Source::File(Some(path))) = (cfg.progress, &cfg.source) else {
            return Ok(None);
        };
        let Some(total) = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
        else {
            return Ok(None);
        };
        let bar = ReplayBar::new(total);
        let (done, stopped) = bounded::<()>(1);
        let (ticking, counters) = (bar.clone(), Arc::clone(counters));
        let thread = std::thread::Builder::new()
            .name("progress".to_string())
            .spawn(move || {
                let started = std::time::Instant::now();
                let mut shown = false;
                // Until the run ends (a message, or the sender dropped on an early return).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PROGRESS_TICK) {
                    ticking.set(counters.bytes.load(Ordering::Relaxed));
                    if !shown && started.elapsed() >= progress::SHOW_AFTER {
                        ticking.show();
                        shown = true;
                    }
                }
            })
            .map_err(Error::Thread)?;
        Ok(Some(ProgressThread {
            bar,
            done,
            thread: Some(thread),
        }))
    }
}

impl Drop for ProgressThread {
    /// Stops the thread and erases the bar, on every way out of the run (an error too,
    /// so its message is not written after a half-drawn bar).
    fn drop(&mut self) {
        let _ = self.done.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bar.clear();
    }
}

//! Wires the stages together: a capture thread that reads and decodes, a bounded channel
//! of batches, and the flow stage and reporters on the calling thread. Nothing else in
//! the crate knows about threads or channels.

mod host_threads;

use crate::capture::{self, Batch, CaptureError, CaptureReport, Source};
use crate::decode::{PairHasher, SegmentKind, Timestamp};
use crate::diagnose::host::{self, HostFacts, LookupRequest};
use crate::diagnose::{Diagnoser, Scope, Snapshot};
use crate::error::Error;
use crate::flow::{FlowConfig, FlowEvent, FlowRecord, FlowTable};
use crate::report::ladder::LadderRecorder;
use crate::report::live::CaptureNow;
use crate::report::progress::{self, AroundBar, Bar, ReplayBar};
use crate::report::{self, Format, PcapWriter, Reporter, Style, Summary};
use crossbeam_channel::{bounded, RecvTimeoutError};
use host_threads::{Lookup, Refresher};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a run is built from; defined in [`crate::config`], named here too because
/// `run` and `prepare` take it.
pub use crate::config::Config;

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
/// How often the progress bar reads the capture's byte count.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

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

        let mut table = FlowTable::with_hasher(
            FlowConfig {
                port: cfg.port,
                max_flows: cfg.max_flows,
                syn_timeout_us: cfg.syn_timeout.as_micros() as u64,
                pending_notices: live,
            },
            hasher,
        );
        // System facts (/proc) only describe the machine we capture on, live.
        let facts = if live {
            HostFacts::first_look(cfg.port, cfg.attribution)
        } else {
            None
        };
        let scope = Scope {
            port: cfg.port,
            expression: cfg.filter_expr.clone(),
            proxy: host::proxy_from_env(),
        };
        let mut sink = Sink {
            reporter: Reporter::new(out, cfg.format, cfg.style, cfg.only_problems, live),
            writer: writer.as_mut(),
            refresher: facts
                .as_ref()
                .map(|_| Refresher::start(cfg.port, cfg.attribution)),
            lookup: None,
            diagnoser: Diagnoser::new(scope, facts, cfg.attribution),
            ladder: cfg.ladder.map(LadderRecorder::new),
            output_closed: false,
            stop: &stop,
            port: cfg.port,
        };
        // A replay's flow stage is its slowest part: its flow lines are formatted on
        // another thread (the capture thread leaves most of the second core idle), and
        // written here, in order. Live, lines go out at once instead; ladders come
        // between lines, so with them everything stays here.
        let mut lines = (!live && sink.ladder.is_none() && sink.reporter.defer_lines())
            .then(|| LineThread::start(cfg.format, cfg.style))
            .transpose()?;
        // The conn.log's #open/#close: the wall clock live; a file's packet times, so a
        // replay writes the same bytes every run.
        if live {
            sink.reporter.clock(wall_clock());
        }
        let mut events: Vec<FlowEvent> = Vec::with_capacity(64);
        let mut received = 0u64;
        let mut stop_seen: Option<std::time::Instant> = None;
        loop {
            match rx.recv_timeout(TICK) {
                Ok(batch) => {
                    received += batch.segments.len() as u64;
                    if let (false, Some(first), Some(last)) =
                        (live, batch.segments.first(), batch.segments.last())
                    {
                        sink.reporter.clock(first.ts);
                        sink.reporter.clock(last.ts);
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
                        sink.drain(&mut events)?;
                    }
                    if let Some(w) = sink.writer.as_deref_mut() {
                        w.flush()?;
                    }
                    sink.findings()?;
                    sink.live_tick(&counters, &table)?;
                    if let Some(l) = lines.as_mut() {
                        l.hand_over(&mut sink, false)?;
                    }
                    let _ = recycle_tx.try_send(batch);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if live {
                        table.tick(wall_clock(), &mut events);
                        sink.drain(&mut events)?;
                        sink.findings()?;
                        sink.live_tick(&counters, &table)?;
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
        let report: CaptureReport = done_rx.recv_timeout(STUCK).unwrap_or_else(|_| {
            // The reader is still blocked (or died): count what reached us.
            CaptureReport {
                packets: received,
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
        let mut failed = None;
        table.finish_all_with(|ev| {
            events.push(ev);
            if events.len() >= 1024 && failed.is_none() {
                failed = sink.drain(&mut events).err();
                if let (Some(l), None) = (lines.as_mut(), &failed) {
                    failed = l.hand_over(&mut sink, false).err();
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        sink.drain(&mut events)?;
        if let Some(l) = lines.take() {
            l.finish(&mut sink)?;
        }

        if live {
            sink.reporter.clock(wall_clock());
        }
        // The final diagnosis looks at the machine once more, completely.
        let last_look = sink
            .diagnoser
            .has_host_facts()
            .then(|| Snapshot::take(cfg.port, true, cfg.attribution));
        let findings = sink.diagnoser.finish(last_look);
        let (flows, problems) = (
            sink.diagnoser.evidence().flows(),
            sink.diagnoser.evidence().problems(),
        );
        let source_name = cfg.source.name();
        let summary = Summary::new(
            &source_name,
            live,
            link.name(),
            cfg.port,
            sink.diagnoser.evidence(),
            &report,
            table.stats(),
        );
        let summary = Summary {
            expression: cfg.filter_expr.as_deref(),
            system: sink.diagnoser.system_view(),
            credentials: live.then(crate::privileges::Credentials::current),
            ..summary
        };
        if !sink.output_closed {
            let res = sink.reporter.finish(&findings, &summary);
            sink.result(res)?;
        }
        let output_closed = sink.output_closed;
        if let Some(w) = writer {
            let written = w.finish()?;
            tracing::info!(packets = written, "capture file written");
        }
        tracing::info!(
            captured = report.packets,
            filtered_out = report.filtered_out,
            received_by_filter = report.kernel.map(|k| k.received),
            dropped_by_kernel = report.kernel.map(|k| k.dropped),
            dropped_by_portsniff = report.internal_dropped,
            "capture ended"
        );
        Ok(RunResult {
            captured: report.packets,
            kernel: report.kernel,
            flows,
            problems,
            kernel_dropped: report.kernel.map_or(0, |k| k.dropped),
            internal_dropped: report.internal_dropped,
            capture_error: report.error,
            output_closed,
        })
    }
}

/// Where flow events go: the diagnosis, the reporter and the `-w` writer.
struct Sink<'a, W: Write> {
    reporter: Reporter<W>,
    writer: Option<&'a mut PcapWriter>,
    diagnoser: Diagnoser,
    /// Live: the latest look at /proc, taken off the flow stage.
    refresher: Option<Refresher>,
    /// Live: the thread naming processes behind client sockets, started on first use.
    lookup: Option<Lookup>,
    ladder: Option<LadderRecorder>,
    output_closed: bool,
    stop: &'a AtomicBool,
    port: u16,
}

impl<W: Write> Sink<'_, W> {
    fn drain(&mut self, events: &mut Vec<FlowEvent>) -> Result<(), Error> {
        for ev in events.drain(..) {
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
                FlowEvent::Pending(_) => (None, None),
            };
            // The flow's line first: findings may look at /proc, which takes milliseconds.
            if !self.output_closed {
                let res = self.reporter.event(&ev, procs.as_ref());
                self.result(res)?;
                if let Some(ladder) = &ladder {
                    let res = self.reporter.ladder(ladder);
                    self.result(res)?;
                }
            }
            match &ev {
                FlowEvent::Finished(r) => self.diagnoser.flow_finished(r),
                FlowEvent::Pending(r) => self.diagnoser.flow_pending(r),
            }
        }
        Ok(())
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

    /// Live findings that became certain, printed at once. Live findings use the latest
    /// look the refresher took (at most `REFRESH` old) and never wait for /proc, but
    /// the counters, cheap to read, are always fresh.
    fn findings(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        if !self.diagnoser.poll_due(now) {
            return Ok(());
        }
        if let Some(snapshot) = self.refresher.as_ref().and_then(Refresher::latest) {
            self.diagnoser.facts_refreshed(snapshot);
        }
        for f in self.diagnoser.poll(now, host::read_counters()) {
            if self.output_closed {
                break;
            }
            let res = self.reporter.finding(&f);
            self.result(res)?;
        }
        Ok(())
    }

    /// `--live-summary`: the table, when a second has passed.
    fn live_tick(&mut self, counters: &capture::Progress, table: &FlowTable) -> Result<(), Error> {
        if self.output_closed {
            return Ok(());
        }
        let now = CaptureNow {
            port: self.port,
            packets: counters.packets.load(Ordering::Relaxed),
            kernel_dropped: counters.kernel_dropped.load(Ordering::Relaxed),
            internal_dropped: counters.internal_dropped.load(Ordering::Relaxed),
            tracked: table.len() as u64,
        };
        let res = self.reporter.live_tick(now, self.diagnoser.evidence());
        self.result(res)
    }

    /// A closed stdout (`| head`) ends the run quietly, like tcpdump; other write
    /// errors are errors.
    fn result(&mut self, res: io::Result<()>) -> Result<(), Error> {
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.output_closed = true;
                self.stop.store(true, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => Err(Error::Output(e)),
        }
    }
}

/// A replay's flow lines, formatted on a thread of their own: the flow stage hands over
/// its final records [`LINE_BATCH`] at a time and writes the formatted lines that come
/// back, in the order they went. Vectors travel back and forth, so nothing is allocated
/// once the first few batches have gone round.
struct LineThread {
    to_format: crossbeam_channel::Sender<(Vec<FlowRecord>, Vec<u8>)>,
    formatted: crossbeam_channel::Receiver<(Vec<FlowRecord>, Vec<u8>)>,
    /// Emptied vectors, ready for the next batch.
    spare: Vec<(Vec<FlowRecord>, Vec<u8>)>,
    in_flight: usize,
    handle: std::thread::JoinHandle<()>,
}

impl LineThread {
    /// Batches in flight: enough to keep the formatter busy while the flow stage works.
    const DEPTH: usize = 4;

    fn start(format: Format, style: Style) -> Result<LineThread, Error> {
        let (to_format, work) = bounded::<(Vec<FlowRecord>, Vec<u8>)>(Self::DEPTH);
        // Never full: at most DEPTH + 1 batches exist, and the flow stage takes back
        // what is ready before it hands over more.
        let (done, formatted) = bounded::<(Vec<FlowRecord>, Vec<u8>)>(Self::DEPTH + 2);
        let handle = std::thread::Builder::new()
            .name("lines".to_string())
            .spawn(move || {
                for (mut records, mut out) in work {
                    for r in &records {
                        report::format_line(format, style, r, &mut out);
                    }
                    records.clear();
                    if done.send((records, out)).is_err() {
                        break;
                    }
                }
            })
            .map_err(Error::Thread)?;
        Ok(LineThread {
            to_format,
            formatted,
            spare: Vec::new(),
            in_flight: 0,
            handle,
        })
    }

    /// Writes the lines that are ready; hands over the reporter's records once there are
    /// a batch of them (or any, with `all`).
    fn hand_over<W: Write>(&mut self, sink: &mut Sink<'_, W>, all: bool) -> Result<(), Error> {
        while let Ok(done) = self.formatted.try_recv() {
            self.write(sink, done)?;
        }
        let waiting = sink.reporter.deferred_len();
        if waiting >= report::LINE_BATCH || (all && waiting > 0) {
            let (records, out) = self.spare.pop().unwrap_or_else(|| {
                (
                    Vec::with_capacity(report::LINE_BATCH),
                    Vec::with_capacity(report::LINE_BATCH * 800),
                )
            });
            let records = sink.reporter.take_deferred(records);
            if self.in_flight >= Self::DEPTH {
                let done = self.formatted.recv().map_err(|_| Self::died())?;
                self.write(sink, done)?;
            }
            self.to_format
                .send((records, out))
                .map_err(|_| Self::died())?;
            self.in_flight += 1;
        }
        Ok(())
    }

    fn write<W: Write>(
        &mut self,
        sink: &mut Sink<'_, W>,
        (records, mut out): (Vec<FlowRecord>, Vec<u8>),
    ) -> Result<(), Error> {
        self.in_flight -= 1;
        if !sink.output_closed {
            let res = sink.reporter.write_lines(&out);
            sink.result(res)?;
        }
        out.clear();
        self.spare.push((records, out));
        Ok(())
    }

    /// Hands over the rest and writes every line before the summary.
    fn finish<W: Write>(mut self, sink: &mut Sink<'_, W>) -> Result<(), Error> {
        self.hand_over(sink, true)?;
        while self.in_flight > 0 {
            let done = self.formatted.recv().map_err(|_| Self::died())?;
            self.write(sink, done)?;
        }
        drop(self.to_format);
        self.handle.join().map_err(|_| Self::died())?;
        Ok(())
    }

    fn died() -> Error {
        Error::Output(io::Error::other("the line-formatting thread stopped"))
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

//! Wires the stages together: a capture thread that reads and decodes, a bounded channel
//! of batches to the flow stage on a thread of its own, and a bounded channel of items to
//! print to the report stage on the calling thread, which owns the output. Replay and
//! live take the same path; live, items are handed over as soon as they exist (a line
//! must appear at once), a replay hands them over in batches. Nothing else in the crate
//! knows about threads or channels.
//!
//! The threads: `capture` (reads, decodes, hashes; `capture::Opened::run`), `flow` (the
//! flow table, diagnosis, ladders and `-w` writer; [`flow_stage`]), the caller's thread
//! (the report stage: [`print_all`]), and, when asked for, `progress` (the replay's bar;
//! [`progress_thread`]), the live diagnosis's `proc-refresh` and `attribution`
//! ([`host_threads`]), and `metrics` for `--metrics` ([`metrics_thread`]).

mod dnat_copies;
mod flow_stage;
mod host_threads;
mod kernel_thread;
mod metrics_thread;
mod progress_thread;
mod tunnel_copies;

use crate::capture::{self, Batch, CaptureError, CaptureReport};
use crate::decode::{PairHasher, Timestamp};
use crate::diagnose::host::firewall::Ruleset;
use crate::diagnose::host::{self, HostFacts};
use crate::diagnose::{Diagnoser, Scope};
use crate::error::Error;
use crate::flow::{FlowConfig, FlowTable};
use crate::kernel::{Names, Unavailable, Witnessed};
use crate::report::ladder::LadderRecorder;
use crate::report::live::Cadence;
use crate::report::metrics::Snapshot;
use crate::report::progress::{AroundBar, Bar};
use crate::report::{Item, KernelEventsView, PcapWriter, Report, Summary};
use crossbeam_channel::{bounded, Receiver, Sender};
use flow_stage::{FlowDone, FlowStage, KernelSide, Publisher, Sink};
use host_threads::Refresher;
pub(crate) use kernel_thread::KernelCounts;
use kernel_thread::KernelThread;
use metrics_thread::MetricsThread;
use progress_thread::ProgressThread;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
/// Item batches in flight to the report stage. Live, a batch is a line or two handed
/// over at once; replays hand over full batches, and a few in flight keep both stages
/// busy.
const REPORT_BATCHES: usize = 256;
/// Batches of kernel events in flight to the flow stage. A batch is what one wake of the
/// `kernel` thread found: under a flood, hundreds of events.
const KERNEL_BATCHES: usize = 1024;
const REPLAY_REPORT_BATCHES: usize = 4;

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
    /// `-w`: the packets written.
    pub written: Option<u64>,
    /// `-C`/`-G`: the files opened.
    pub files_written: Option<u32>,
    /// `-G` with `-W N`: the capture stopped because N files were written.
    pub file_limit: Option<u32>,
}

pub(crate) fn wall_clock() -> Timestamp {
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
    /// The kernel witness, attached while still privileged; or why there is none.
    witness: Result<Witnessed_, Unavailable>,
    /// Live: the first look at the machine (listeners, sockets, counters, the firewall
    /// rules), taken before the banner: traffic a user starts at the banner must not
    /// wait behind a walk of /proc.
    host_facts: Option<HostFacts>,
    /// `--metrics`: bound before the banner, so a taken port is an error at once.
    metrics: Option<std::net::TcpListener>,
}

/// An attached witness and the names for its numbers.
#[cfg(feature = "kernel-witness")]
struct Witnessed_ {
    witness: crate::kernel::Witness,
    /// Its ring buffer's reader, shared by the flow stage and the kernel thread.
    reader: crate::kernel::Reader,
    names: Arc<Names>,
}
#[cfg(not(feature = "kernel-witness"))]
struct Witnessed_ {
    names: Arc<Names>,
}

/// Attaches the kernel witness for a live capture, or says why not.
fn attach_witness(cfg: &Config) -> Result<Witnessed_, Unavailable> {
    if !cfg.source.is_live() {
        return Err(Unavailable::Replay);
    }
    if !cfg.kernel_events {
        return Err(Unavailable::TurnedOff);
    }
    #[cfg(feature = "kernel-witness")]
    {
        let witness = crate::kernel::Witness::attach(cfg.port)?;
        let reader = witness.reader()?;
        Ok(Witnessed_ {
            witness,
            reader,
            names: Arc::new(Names::of_kernel()),
        })
    }
    #[cfg(not(feature = "kernel-witness"))]
    Err(Unavailable::NotBuilt)
}

/// Opens the capture and the `-w` file: every error a user can cause by their arguments
/// or permissions happens here, before any output.
pub fn prepare(cfg: &Config) -> Result<Prepared<'_>, Error> {
    // The firewall's rules for the port, read now, while still privileged (after the
    // privileges go, the ruleset cannot be read), and before the capture opens: a
    // docker-style port map's DNAT backend is in the capture's filter too.
    let firewall = cfg
        .source
        .is_live()
        .then(|| Ruleset::read(cfg.port))
        .and_then(|r| {
            r.map_err(|e| tracing::info!(error = %e, "firewall rules not read"))
                .ok()
        });
    let backend = firewall
        .as_ref()
        .and_then(|r| r.dnat().first())
        .map(|d| d.to);
    let opened = capture::open(
        &cfg.source,
        cfg.port,
        backend,
        &cfg.tunnel_ports,
        cfg.filter_expr.as_deref(),
    )?;
    let writer = match &cfg.write {
        Some(path) => Some(PcapWriter::create(
            path,
            opened.link(),
            cfg.only_problems,
            cfg.rotation,
        )?),
        None => None,
    };
    let metrics = cfg
        .metrics
        .map(|addr| {
            std::net::TcpListener::bind(addr).map_err(|source| Error::Metrics { addr, source })
        })
        .transpose()?;
    let witness = attach_witness(cfg);
    if let Err(why) = &witness {
        tracing::debug!(%why, "no kernel witness");
    }
    // System facts (/proc) only describe the machine we capture on, live.
    let host_facts = if cfg.source.is_live() {
        let taken = wall_clock();
        HostFacts::first_look(cfg.port, cfg.attribution).map(|mut f| {
            f.start.taken = taken;
            f.now.taken = taken;
            HostFacts {
                firewall: firewall.map(Arc::new),
                ..f
            }
        })
    } else {
        None
    };
    Ok(Prepared {
        cfg,
        opened,
        writer,
        witness,
        host_facts,
        metrics,
    })
}

/// Opens and runs in one go (tests and benches).
pub fn run<W: Write>(cfg: &Config, out: W, stop: Arc<AtomicBool>) -> Result<RunResult, Error> {
    prepare(cfg)?.run(out, stop)
}

impl Prepared<'_> {
    /// The `-w` file this run created, if any (never a device or standard output),
    /// to be handed to the user portsniff will run as.
    pub fn created_file(&self) -> Option<std::path::PathBuf> {
        self.writer.as_ref().and_then(|w| w.created_file())
    }

    /// Fails now if the `-w` file could not be moved into place at the end by `user`,
    /// whom portsniff is about to become (`None`: it stays who it is).
    pub fn check_output(&self, user: Option<&crate::privileges::Account>) -> Result<(), Error> {
        match &self.writer {
            Some(w) => Ok(w.check_can_finish(user.map(|a| (a.uid, a.gid)))?),
            None => Ok(()),
        }
    }

    /// Why this run has no kernel events, if it has none.
    pub fn kernel_events_missing(&self) -> Option<&Unavailable> {
        self.witness.as_ref().err()
    }

    /// Live: the headers a TCP packet needs on this link (over IPv4, over IPv6) when the
    /// snaplen is shorter than one of them, for a warning at the start: packets it cuts
    /// inside their headers reach no connection (the `partial_view` finding counts them).
    pub fn snaplen_cuts_headers(&self) -> Option<(u32, u32, u32)> {
        let crate::capture::Source::Live { snaplen, .. } = &self.cfg.source else {
            return None;
        };
        let (v4, v6) = self.opened.link().tcp_headers_len()?;
        (*snaplen < v6).then_some((*snaplen, v4, v6))
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
            witness,
            host_facts,
            metrics,
        } = self;
        // Where a DNAT rule forwards the port: flows to it are shown translated.
        let backend = host_facts
            .as_ref()
            .and_then(|f| f.firewall.as_ref())
            .and_then(|r| r.dnat().first())
            .map(|d| crate::decode::Endpoint::new(d.to.ip(), d.to.port()));
        let counters = opened.progress();
        let link = opened.link();
        let live = cfg.source.is_live();
        // A pipe or a FIFO: its connections are reported as they end, as live, though
        // judged on the packets' clock (it may carry an old capture: `zcat F.gz |`).
        let stream = opened.is_stream();
        tracing::info!(
            source = %cfg.source.name(),
            link = link.name(),
            // Files are read unfiltered (the decoder picks the port's packets).
            kernel_filter = live.then(|| opened.filter()),
            "capture started"
        );
        let keep_raw = writer.is_some();
        // -G -W's last file, or a `-w -` reader gone, ends the capture as Ctrl-C does.
        if let Some(w) = writer.as_mut() {
            w.stop_with(Arc::clone(&stop));
        }
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
                // Who acts on a settlement without trailing packets: the conn.log (its row
                // is written then), `-w --only-problems` (what it held since the close, an
                // ICMP error that trailed it), the DNAT merge (pairing it with its
                // `Finished`). Text, JSON and the live table need only the late ones.
                settle_all: cfg.format.is_zeek()
                    || (writer.is_some() && cfg.only_problems)
                    || backend.is_some(),
            },
            hasher,
        );
        let mut report = Report::new(out, cfg.format, cfg.style, cfg.only_problems);
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
        let facts = host_facts;
        let scope = Scope {
            port: cfg.port,
            expression: cfg.filter_expr.clone(),
            proxy: host::proxy_from_env(),
        };
        let (to_report, items_rx) = bounded::<Vec<Item>>(depth);
        // Never full for long: at most `depth` + 1 batches exist once the first have
        // come back.
        let (recycle_items, spare_items) = bounded::<Vec<Item>>(depth + 2);
        let kernel_missing = witness.as_ref().err().cloned();
        let kernel = match witness {
            Ok(w) => {
                let (events_tx, events) = bounded(KERNEL_BATCHES);
                #[cfg(feature = "kernel-witness")]
                let (ring, thread) = {
                    let ring =
                        Arc::new(kernel_thread::SharedRing::new(w.reader).map_err(Error::Thread)?);
                    let thread = KernelThread::start(w.witness, events_tx, Arc::clone(&ring))?;
                    (ring, Some(thread))
                };
                // A build without the witness never gets here (`attach_witness` has none
                // to give); the types are the same in both.
                #[cfg(not(feature = "kernel-witness"))]
                let (ring, thread): (_, Option<KernelThread>) = {
                    drop(events_tx);
                    (
                        Arc::new(kernel_thread::SharedRing::new().map_err(Error::Thread)?),
                        None,
                    )
                };
                Some(KernelSide {
                    thread,
                    events,
                    witnessed: Witnessed::default(),
                    names: w.names,
                    held: Default::default(),
                    ring,
                    until: 0,
                    batches: Vec::new(),
                    pulled: Vec::new(),
                    storms: Default::default(),
                    tallies: Vec::new(),
                    tallies_read: None,
                    storm_unread: false,
                    read_this_batch: false,
                    stamp: None,
                })
            }
            Err(_) => None,
        };
        let metrics = match metrics {
            Some(listener) => {
                let published = Arc::new(std::sync::Mutex::new(Snapshot::empty(cfg.port)));
                let thread = MetricsThread::start(listener, Arc::clone(&published))?;
                Some((thread, published))
            }
            None => None,
        };
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
                refresher: facts
                    .as_ref()
                    .map(|_| Refresher::start(cfg.port, cfg.attribution)),
                lookup: None,
                backend_looker: None,
                diagnoser: Diagnoser::new(scope, facts, cfg.attribution),
                ladder: cfg.ladder.map(LadderRecorder::new),
                cadence: cfg.format.redraws().then(Cadence::default),
                port: cfg.port,
                backend,
                copies: dnat_copies::DnatCopies::new(cfg.port, backend),
                tunnel_copies: tunnel_copies::TunnelCopies::new(matches!(
                    link,
                    crate::decode::LinkType::LinuxSll | crate::decode::LinkType::LinuxSll2
                )),
                copied_segments: 0,
                live,
                stream,
                items: Vec::with_capacity(Sink::batch_capacity(live)),
                to_report,
                spare: spare_items,
                kernel,
                metrics: metrics.as_ref().map(|(_, published)| Publisher {
                    to: Arc::clone(published),
                    last: None,
                }),
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
            let printed = print_all(&mut report, items_rx, &recycle_items, &stop, live || stream);
            let done = flow
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            // The report stage's error first: the flow stage only failed because the
            // report stage stopped taking its items.
            let output_closed = printed?;
            Ok::<_, Error>((done?, output_closed))
        })?;
        let FlowDone {
            diagnoser,
            capture,
            table: table_stats,
            diagnosis,
            kernel: kernel_counts,
        } = done;
        let evidence = diagnoser.evidence();
        if let Some((thread, _)) = metrics {
            thread.finish();
        }

        if live {
            report.clock(wall_clock());
        }
        let source_name = cfg.source.name();
        let summary = Summary::new(
            &source_name,
            live,
            link.name(),
            cfg.port,
            evidence,
            &capture,
            table_stats,
        );
        let summary = Summary {
            expression: cfg.filter_expr.as_deref(),
            system: diagnoser.system_view(),
            credentials: live.then(crate::privileges::Credentials::current),
            kernel_events: KernelEventsView::new(kernel_missing.as_ref(), kernel_counts),
            ..summary
        };
        if !output_closed {
            if let Err(e) = report.finish(&diagnosis, &summary) {
                output_closed = closed_output(e, &stop)?;
            }
        }
        let file_limit = match writer.as_ref().and_then(PcapWriter::ended) {
            Some(crate::report::pcap_writer::Ended::FileLimit(n)) => Some(n),
            _ => None,
        };
        let files_written = writer.as_ref().and_then(PcapWriter::files_opened);
        let written = match writer {
            Some(w) => Some(w.finish()?),
            None => None,
        };
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
            flows: evidence.flows(),
            problems: evidence.problems(),
            kernel_dropped: capture.kernel.map_or(0, |k| k.dropped),
            internal_dropped: capture.internal_dropped,
            capture_error: capture.error,
            output_closed,
            written,
            files_written,
            file_limit,
        })
    }
}

/// The report stage's loop: prints each batch of items as it comes, in order, until the
/// flow stage has handed over its last. Returns whether our standard output was closed;
/// after that, items are taken and dropped so the flow stage can finish. Live and from a
/// stream (`as_it_comes`), the output is flushed whenever no batch is waiting: a line
/// goes out as soon as it is printed while the lines come slower than they are written,
/// and a burst (a flood's connections) goes out in a few writes, not one per line.
fn print_all<W: Write>(
    report: &mut Report<W>,
    batches: Receiver<Vec<Item>>,
    recycle: &Sender<Vec<Item>>,
    stop: &AtomicBool,
    as_it_comes: bool,
) -> Result<bool, Error> {
    let mut closed = false;
    for mut batch in batches.iter() {
        if !closed {
            for item in &batch {
                if let Err(e) = report.print(item) {
                    closed = closed_output(e, stop)?;
                    break;
                }
            }
            if as_it_comes && batches.is_empty() {
                if let Err(e) = report.flush() {
                    closed = closed_output(e, stop)?;
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

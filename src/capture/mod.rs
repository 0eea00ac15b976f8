//! Capture: the libpcap handle (a live interface or a capture file), its kernel BPF
//! filter, the capture loop that decodes packets in place and ships them in batches, and
//! the capture's own statistics.
//!
//! This is the only module that talks to libpcap for reading. It hands the flow stage
//! plain [`Batch`]es of `Copy` segments; it never sees flows.

mod error;
mod file;
mod filter;
mod info;
mod nap;
mod own_filter;
mod reader;

pub use error::{CaptureError, Damage};
pub use filter::UserFilter;
pub use info::{interface_lines, libpcap_version};
pub use own_filter::bpf_filter;

use crate::decode::{Decoder, Endpoint, LinkType, PairHasher, Segment, SkipCounts, TunnelPorts};
use crossbeam_channel::{Receiver, Sender};
use file::FileReader;
use nap::Nap;
use pcap::{Active, Capture};
use reader::Reader;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Segments per batch sent to the flow stage.
pub const BATCH_SIZE: usize = 512;

/// Live snaplen when only headers are needed (no `-w`): the deepest headers we read
/// (link 22 + IPv6 40 + extension headers + TCP 60, or an ICMPv6 error quoting IPv6 and
/// TCP) fit easily, and payload sizes come from the IP header anyway.
///
/// This matters more than it looks: in immediate mode libpcap's ring (TPACKET_V2) has
/// one frame per packet sized from the snaplen, capped by the MTU, which is 64 KiB on
/// `lo`. With a full snaplen the default 2 MiB buffer holds only ~32 frames, and each
/// loopback packet takes two, so a burst of ~16 packets made the kernel drop the rest.
pub const HEADERS_SNAPLEN: u32 = 256;
/// Live snaplen with `-w`: whole packets, as tcpdump keeps them.
pub const FULL_SNAPLEN: u32 = 262_144;
/// Default kernel buffer without `-w`: ~24k frames of `HEADERS_SNAPLEN`.
pub const HEADERS_BUFFER_BYTES: u32 = 8 << 20;
/// Default kernel buffer with `-w`: ~500 full 64 KiB loopback frames.
pub const FULL_BUFFER_BYTES: u32 = 32 << 20;

/// Where packets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A live interface (`-i`).
    Live {
        interface: String,
        /// Kernel capture buffer in bytes (`-B`, given in KiB like tcpdump's).
        buffer_bytes: u32,
        snaplen: u32,
    },
    /// A pcap or pcapng file (`-r`); `None` is standard input (`-r -`).
    File(Option<PathBuf>),
}

impl Source {
    pub fn is_live(&self) -> bool {
        matches!(self, Source::Live { .. })
    }

    /// How the source is named in messages: the interface, the file, or "stdin".
    pub fn name(&self) -> String {
        match self {
            Source::Live { interface, .. } => interface.clone(),
            Source::File(Some(p)) => p.display().to_string(),
            Source::File(None) => "standard input".to_string(),
        }
    }
}

/// When to stop reading (besides end of file and Ctrl-C).
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// `-c`: stop after this many packets have been read.
    pub max_packets: Option<u64>,
    /// `--duration`: stop a live capture after this long.
    pub duration: Option<Duration>,
}

/// One captured packet kept verbatim for `-w`: its pcap record header and where its
/// bytes are in [`RawPackets::bytes`].
#[derive(Clone, Copy, Debug)]
pub struct RawPacket {
    pub ts_sec: i64,
    pub ts_usec: i64,
    pub caplen: u32,
    pub len: u32,
    offset: usize,
}

/// The verbatim bytes of a batch's packets, one per segment, only kept when `-w` is on.
#[derive(Debug, Default)]
pub struct RawPackets {
    pub bytes: Vec<u8>,
    pub packets: Vec<RawPacket>,
}

impl RawPackets {
    pub fn data(&self, p: &RawPacket) -> &[u8] {
        &self.bytes[p.offset..p.offset + p.caplen as usize]
    }
}

/// A batch of decoded segments. Batches are recycled through a return channel so that
/// steady-state capture does not allocate.
#[derive(Debug, Default)]
pub struct Batch {
    pub segments: Vec<Segment>,
    /// Parallel to `segments` when the flow stage asked for them (see
    /// [`Opened::hash_pairs_with`]): each segment's endpoint-pair hash, computed here so
    /// that the flow stage's core does not have to.
    pub hashes: Vec<u64>,
    /// Parallel to `segments` when `-w` is on, empty otherwise.
    pub raw: RawPackets,
}

impl Batch {
    pub fn with_capacity(n: usize) -> Batch {
        Batch {
            segments: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            raw: RawPackets::default(),
        }
    }

    pub fn clear(&mut self) {
        self.segments.clear();
        self.hashes.clear();
        self.raw.bytes.clear();
        self.raw.packets.clear();
    }
}

/// Counters the capture thread publishes once per batch (never per packet), for the
/// progress bar of a replay and the `--live-summary` view. Approximate while running;
/// the [`CaptureReport`] at the end is exact.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of the file consumed: 16 + caplen per record, which is exact for pcap (a
    /// record header is 16 bytes) and a little short for pcapng (blocks are longer).
    pub bytes: AtomicU64,
    /// Packets read (as [`CaptureReport::packets`]).
    pub packets: AtomicU64,
    /// Live: segments dropped because the flow stage fell behind.
    pub internal_dropped: AtomicU64,
    /// Live: `pcap_stats` drops, refreshed about once a second while the ring is idle.
    pub kernel_dropped: AtomicU64,
}

/// Kernel counters from `pcap_stats` (live only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets that passed the filter ("received by filter").
    pub received: u64,
    /// Dropped because the capture buffer was full ("dropped by kernel").
    pub dropped: u64,
    /// Dropped by the interface or its driver.
    pub if_dropped: u64,
}

/// What the capture loop saw.
#[derive(Debug, Default)]
pub struct CaptureReport {
    /// Packets libpcap handed us: live, those that passed the kernel's BPF filter; from a
    /// file, every record.
    pub packets: u64,
    /// Packets of the port's connections (and ICMP errors about them).
    pub decoded: u64,
    /// SYNs to other ports, kept only to say where clients go instead.
    pub syns_elsewhere: u64,
    pub skipped: SkipCounts,
    pub kernel: Option<KernelStats>,
    /// Live: segments dropped because the flow stage fell behind (a full channel).
    pub internal_dropped: u64,
    /// From a file: records the user's filter expression rejected (not in `packets`,
    /// as live the kernel filter rejects them before they are captured).
    pub filtered_out: u64,
    /// The error that ended reading early (a truncated file), if any. Everything read
    /// before it has been delivered.
    pub error: Option<CaptureError>,
}

enum Handle {
    Live(Capture<Active>),
    File(FileReader),
}

/// An open capture, ready to run.
pub struct Opened {
    handle: Handle,
    source: Source,
    decoder: Decoder,
    filter: String,
    /// From a file: the user's filter expression, applied per record.
    user_filter: Option<UserFilter>,
    /// The input is a pipe, a FIFO or another stream, not a regular file: its writer may
    /// be a live capture (`tcpdump -U -w - | portsniff -r -`) that waits between
    /// packets, so what was read goes out whenever the next read would wait.
    stream: bool,
    progress: Option<Arc<Progress>>,
    hasher: Option<PairHasher>,
}

/// Opens a live interface (with the kernel BPF filter for `port`, narrowed by the user's
/// `expression`) or a capture file (the expression then applies per record). `backend`:
/// where a DNAT rule forwards the port (live), whose packets are the port's too;
/// `tunnels`: the UDP ports opened as VXLAN and Geneve.
pub fn open(
    source: &Source,
    port: u16,
    backend: Option<SocketAddr>,
    tunnels: &TunnelPorts,
    expression: Option<&str>,
) -> Result<Opened, CaptureError> {
    let handle = match source {
        Source::Live {
            interface,
            buffer_bytes,
            snaplen,
        } => Handle::Live(open_live(interface, *buffer_bytes, *snaplen)?),
        Source::File(path) => Handle::File(open_file(path.as_deref())?),
    };
    let linktype = match &handle {
        Handle::Live(c) => c.get_datalink(),
        Handle::File(f) => pcap::Linktype(f.linktype()),
    };
    let link = LinkType::from_linktype(linktype.0);
    // The link type is known only once the interface is open: the clauses that reach
    // into MPLS and PPPoE read the link header, whose layout it gives.
    let filter = filter::combine(&bpf_filter(port, backend, tunnels, link), expression);
    let handle = match (handle, source) {
        (Handle::Live(cap), Source::Live { interface, .. }) => {
            Handle::Live(install_filter(cap, interface, &filter, expression)?)
        }
        (handle, _) => handle,
    };
    let user_filter = match (&handle, expression) {
        (Handle::File(_), Some(e)) => Some(UserFilter::for_link(e, linktype)?),
        _ => None,
    };
    match source {
        Source::Live {
            interface,
            buffer_bytes,
            snaplen,
        } => tracing::info!(
            interface,
            snaplen,
            buffer_kib = buffer_bytes / 1024,
            link = link.name(),
            "live capture open"
        ),
        Source::File(_) => {
            tracing::info!(file = %source.name(), link = link.name(), "capture file open")
        }
    }
    if let LinkType::Unsupported(n) = link {
        tracing::warn!(
            linktype = n,
            "unsupported link type: every packet will be skipped"
        );
    }
    let stream = matches!(&handle, Handle::File(f) if f.is_stream());
    Ok(Opened {
        handle,
        source: source.clone(),
        decoder: Decoder::new(link, port)
            .with_backend(backend.map(|b| Endpoint::new(b.ip(), b.port())))
            .with_tunnel_ports(*tunnels),
        filter,
        user_filter,
        stream,
        progress: None,
        hasher: None,
    })
}

fn open_live(
    interface: &str,
    buffer_bytes: u32,
    snaplen: u32,
) -> Result<Capture<Active>, CaptureError> {
    let mut names = interfaces()?;
    if !names.iter().any(|n| n == interface) {
        names.sort();
        return Err(CaptureError::NoSuchInterface {
            interface: interface.to_string(),
            available: Some(names),
            source: None,
        });
    }
    let inactive = Capture::from_device(interface)
        .map_err(|e| CaptureError::from_live(interface, e))?
        // Deliver each packet as it arrives: a refused connection should be on screen
        // within milliseconds, not when a kernel buffer block fills.
        .immediate_mode(true)
        .promisc(false)
        .snaplen(i32::try_from(snaplen).unwrap_or(i32::MAX))
        .buffer_size(i32::try_from(buffer_bytes).unwrap_or(i32::MAX))
        .timeout(100);
    inactive
        .open()
        .map_err(|e| CaptureError::from_live(interface, e))
}

/// Installs the kernel filter on an open live capture and makes its reads non-blocking.
fn install_filter(
    mut cap: Capture<Active>,
    interface: &str,
    filter: &str,
    expression: Option<&str>,
) -> Result<Capture<Active>, CaptureError> {
    if let Some(e) = expression {
        // Alone first: a mistake is then reported in the user's own words.
        filter::compile(&cap, e)?;
    }
    cap.filter(filter, true)
        .map_err(|source| CaptureError::Filter {
            filter: filter.to_string(),
            source,
        })?;
    tracing::debug!(interface, filter, "kernel filter installed");
    cap.setnonblock()
        .map_err(|e| CaptureError::from_live(interface, e))
}

fn open_file(path: Option<&std::path::Path>) -> Result<FileReader, CaptureError> {
    let name = path.map_or_else(|| "standard input".to_string(), |p| p.display().to_string());
    let open_error = |source| CaptureError::Open {
        path: name.clone(),
        source,
    };
    // No BPF filter on files: the decoder selects the port's packets itself (faster than
    // libpcap's userland BPF interpreter), and every record is then counted, so
    // `captured` matches what tcpdump and Wireshark show and a damaged record's position
    // is right. The kernel filter only matters live, where it saves copies.
    let file = match path {
        Some(p) => std::fs::File::open(p).map_err(open_error)?,
        None => std::fs::File::from(
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(open_error)?,
        ),
    };
    // A pipe, a FIFO, `<(…)`, a socket: a stream whose writer may pause. A regular
    // file is read at full speed, with no look at the descriptor before each read.
    let stream = match file.metadata() {
        Ok(m) if m.is_dir() => {
            return Err(CaptureError::NotACapture {
                path: name,
                damage: Damage::Directory,
            })
        }
        Ok(m) if !m.is_file() => Some(file.try_clone().map_err(open_error)?),
        _ => None,
    };
    let reader = FileReader::open(file, &name)?;
    Ok(match stream {
        Some(f) => reader.streaming(f.into()),
        None => reader,
    })
}

impl Opened {
    pub fn link(&self) -> LinkType {
        self.decoder.link()
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Whether the input is a stream (a pipe, a FIFO): read as it comes, like a live
    /// capture, though its clock is still the packets'.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// The counters this capture will publish as it runs.
    /// Computes each segment's endpoint-pair hash with `hasher` as it is decoded, into
    /// [`Batch::hashes`].
    pub fn hash_pairs_with(&mut self, hasher: PairHasher) {
        self.hasher = Some(hasher);
    }

    pub fn progress(&mut self) -> Arc<Progress> {
        Arc::clone(self.progress.get_or_insert_with(Arc::default))
    }

    /// Reads until end of file, an error, the limits, or `stop`; decodes each packet and
    /// sends full batches on `tx`. Empty batches come back on `recycle`.
    pub fn run(
        self,
        tx: &Sender<Batch>,
        recycle: &Receiver<Batch>,
        limits: Limits,
        keep_raw: bool,
        stop: &AtomicBool,
    ) -> CaptureReport {
        let mut reader = Reader {
            decoder: self.decoder,
            tx,
            recycle,
            keep_raw,
            batch: Batch::with_capacity(BATCH_SIZE),
            report: CaptureReport::default(),
            live: self.source.is_live(),

            max_packets: limits.max_packets,
            batch_started: None,
            user_filter: self.user_filter,
            progress: self.progress,
            hasher: self.hasher,
            bytes: 0,
            stats_at: Instant::now(),
            nap: match &self.source {
                Source::Live {
                    interface,
                    buffer_bytes,
                    snaplen,
                } => Nap::new(*buffer_bytes, *snaplen, nap::mtu_of(interface)),
                // Never used: files are read without sleeping.
                Source::File(_) => Nap::new(HEADERS_BUFFER_BYTES, HEADERS_SNAPLEN, None),
            },
        };
        match self.handle {
            Handle::File(mut file) => {
                reader.run_file(&mut file, stop, &self.source);
                // The damage's position counts every record, filtered out or not.
                if let Some(CaptureError::Truncated { packets, .. }) = &mut reader.report.error {
                    *packets += reader.report.filtered_out;
                }
            }
            Handle::Live(mut cap) => {
                reader.run_live(&mut cap, stop, limits.duration, &self.source);
                match cap.stats() {
                    Ok(s) => {
                        reader.report.kernel = Some(KernelStats {
                            received: u64::from(s.received),
                            dropped: u64::from(s.dropped),
                            if_dropped: u64::from(s.if_dropped),
                        })
                    }
                    Err(e) => tracing::warn!(error = %e, "pcap_stats failed"),
                }
            }
        }
        reader.flush();
        reader.report
    }
}

/// Sets `stop` on Ctrl-C and SIGTERM; a second signal runs `on_force`, which ends the
/// process (the caller chooses how, and with which exit status).
pub fn install_stop_handler(
    stop: Arc<AtomicBool>,
    on_force: fn() -> !,
) -> Result<(), CaptureError> {
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            on_force();
        }
    })
    .map_err(CaptureError::Signal)
}

/// The interfaces libpcap can capture on, for error messages.
pub fn interfaces() -> Result<Vec<String>, CaptureError> {
    pcap::Device::list()
        .map(|d| d.into_iter().map(|d| d.name).collect())
        .map_err(|source| CaptureError::List { source })
}

//! The capture thread's loop: records from a file or the live ring, decoded in place,
//! gathered into [`Batch`]es and handed to the flow stage; live, the kernel's drop
//! counters published as they change. Nothing here allocates per packet.

use super::nap::Nap;
use super::{
    file, Batch, CaptureError, CaptureReport, FileReader, Progress, RawPacket, Source, UserFilter,
    BATCH_SIZE,
};
use crate::decode::{Decoder, PairHasher, SegmentKind, SkipReason, Timestamp};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use pcap::{Active, Capture};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The capture loop's state.
pub(super) struct Reader<'a> {
    pub(super) decoder: Decoder,
    pub(super) tx: &'a Sender<Batch>,
    pub(super) recycle: &'a Receiver<Batch>,
    pub(super) keep_raw: bool,
    pub(super) batch: Batch,
    pub(super) report: CaptureReport,
    pub(super) live: bool,
    pub(super) max_packets: Option<u64>,
    /// Live: when the current batch got its first segment.
    pub(super) batch_started: Option<Instant>,
    pub(super) user_filter: Option<UserFilter>,
    pub(super) progress: Option<Arc<Progress>>,
    pub(super) hasher: Option<PairHasher>,
    /// Record bytes read so far (see [`Progress::bytes`]).
    pub(super) bytes: u64,
    /// Live: when `pcap_stats` was last published.
    pub(super) stats_at: Instant,
    /// Live: how long to sleep when the ring is empty and the batch young.
    pub(super) nap: Nap,
}

impl Reader<'_> {
    fn limit_reached(&self) -> bool {
        self.max_packets.is_some_and(|n| self.report.packets >= n)
    }

    pub(super) fn run_file(&mut self, file: &mut FileReader, stop: &AtomicBool, source: &Source) {
        if stop.load(Ordering::Relaxed) || self.limit_reached() {
            return;
        }
        let result = file.read(&mut |p| {
            match p {
                Some(p) => self.packet(p.ts_sec, p.ts_usec, p.len, p.data),
                // The writer of a pipe has nothing more for now: hand over what was read,
                // so its connections are reported without waiting for the writer.
                None => self.flush(),
            }
            if stop.load(Ordering::Relaxed) || self.limit_reached() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if let Err(file::ReadError::Damaged(damage)) = result {
            self.report.error = Some(CaptureError::Truncated {
                path: source.name(),
                packets: self.report.packets,
                damage,
            });
        }
    }

    pub(super) fn run_live(
        &mut self,
        cap: &mut Capture<Active>,
        stop: &AtomicBool,
        duration: Option<Duration>,
        source: &Source,
    ) {
        let deadline = duration.map(|d| Instant::now() + d);
        let fd = cap.as_raw_fd();
        // Packets read since the last wait ended, and whether that wait was a sleep.
        let mut arrived = 0u64;
        let mut slept = false;
        while !stop.load(Ordering::Relaxed) && !self.limit_reached() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            match cap.next_packet() {
                Ok(p) => {
                    arrived += 1;
                    let (sec, usec) = timeval(p.header);
                    self.packet(sec, usec, p.header.len, p.data);
                }
                Err(pcap::Error::TimeoutExpired) => {
                    self.publish_kernel_stats(cap);
                    if std::mem::take(&mut slept) {
                        self.nap.slept(arrived);
                    }
                    arrived = 0;
                    // The ring is empty. Hand over what we have once it is a nap old (or
                    // a full batch, in `packet`), and until then sleep rather than poll:
                    // the descriptor turns readable at the next packet, and a wake-up per
                    // packet costs more than the packet (see `nap`).
                    let young = self
                        .batch_started
                        .map(|t| t.elapsed())
                        .filter(|&age| age < self.nap.length());
                    match young {
                        Some(age) => {
                            std::thread::sleep(self.nap.length() - age);
                            slept = true;
                        }
                        None => {
                            self.flush();
                            let wait = deadline.map_or(100, |d| {
                                d.saturating_duration_since(Instant::now())
                                    .as_millis()
                                    .min(100) as i32
                            });
                            poll_readable(fd, wait);
                        }
                    }
                }
                Err(e) => {
                    self.report.error = Some(CaptureError::Live {
                        interface: source.name(),
                        source: e,
                    });
                    break;
                }
            }
        }
    }

    /// One packet record: its time, its length on the wire, and the bytes captured.
    fn packet(&mut self, sec: i64, usec: i64, len: u32, data: &[u8]) {
        // Read either way: the progress bar follows the file, matched or not.
        self.bytes += 16 + data.len() as u64;
        if self.user_filter.as_ref().is_some_and(|f| !f.matches(data)) {
            self.report.filtered_out += 1;
            return;
        }
        self.report.packets += 1;
        let ts = Timestamp::from_timeval(sec, usec);
        match self.decoder.decode(ts, data) {
            Ok(seg) => {
                if seg.kind == SegmentKind::SynElsewhere {
                    self.report.syns_elsewhere += 1;
                } else {
                    self.report.decoded += 1;
                }
                if self.live && self.batch.segments.is_empty() {
                    self.batch_started = Some(Instant::now());
                }
                self.batch.segments.push(seg);
                if let Some(h) = &self.hasher {
                    self.batch.hashes.push(match seg.kind {
                        SegmentKind::Tcp(_) | SegmentKind::Icmp(_) => {
                            h.pair(&seg.src, &seg.dst, seg.encap)
                        }
                        SegmentKind::SynElsewhere => 0,
                    });
                }
                if self.keep_raw {
                    let raw = &mut self.batch.raw;
                    raw.packets.push(RawPacket {
                        ts_sec: sec,
                        ts_usec: usec,
                        caplen: data.len() as u32,
                        len,
                        offset: raw.bytes.len(),
                    });
                    raw.bytes.extend_from_slice(data);
                }
                if self.batch.segments.len() >= BATCH_SIZE {
                    self.flush();
                }
            }
            Err(reason) => self.skip(reason),
        }
    }

    fn skip(&mut self, reason: SkipReason) {
        self.report.skipped.add(reason);
    }

    /// Live view only, at most once a second: the kernel's drops so far.
    fn publish_kernel_stats(&mut self, cap: &mut Capture<Active>) {
        if let Some(p) = &self.progress {
            if self.stats_at.elapsed() >= Duration::from_secs(1) {
                self.stats_at = Instant::now();
                if let Ok(s) = cap.stats() {
                    p.kernel_dropped
                        .store(u64::from(s.dropped), Ordering::Relaxed);
                }
            }
        }
    }

    pub(super) fn flush(&mut self) {
        self.batch_started = None;
        if let Some(p) = &self.progress {
            p.bytes.store(self.bytes, Ordering::Relaxed);
            p.packets.store(self.report.packets, Ordering::Relaxed);
            p.internal_dropped
                .store(self.report.internal_dropped, Ordering::Relaxed);
        }
        if self.batch.segments.is_empty() {
            return;
        }
        let mut next = self
            .recycle
            .try_recv()
            .unwrap_or_else(|_| Batch::with_capacity(BATCH_SIZE));
        next.clear();
        let full = std::mem::replace(&mut self.batch, next);
        if self.live {
            // Never block a live capture on a slow consumer: the kernel would drop
            // packets instead, silently. Drop here, and count it.
            match self.tx.try_send(full) {
                Ok(()) => {}
                Err(TrySendError::Full(mut b)) => {
                    self.report.internal_dropped += b.segments.len() as u64;
                    b.clear();
                    self.batch = b;
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        } else {
            // Replay: back-pressure is free and loses nothing.
            let _ = self.tx.send(full);
        }
    }
}

/// The record's time. `time_t` and `suseconds_t` are `i32` on some platforms (macOS
/// `tv_usec`), `i64` on Linux: widen either way.
#[allow(clippy::useless_conversion)]
fn timeval(header: &pcap::PacketHeader) -> (i64, i64) {
    (i64::from(header.ts.tv_sec), i64::from(header.ts.tv_usec))
}

/// Waits up to `timeout_ms` for the capture descriptor to become readable.
fn poll_readable(fd: i32, timeout_ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid, initialised pollfd that lives for the whole call, and we
    // pass a count of exactly one. A failure (EINTR on Ctrl-C) just ends the wait early.
    unsafe {
        libc::poll(&mut pfd, 1, timeout_ms.max(0));
    }
}

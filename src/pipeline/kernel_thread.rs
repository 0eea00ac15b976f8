//! The kernel witness's ring buffer, read in two places: by the flow stage itself and,
//! while the flow stage is not reading it, by the `kernel` thread. The thread owns the
//! attached [`Witness`]: when it ends, the programs are detached.
//!
//! A connection's line must not go out before the kernel's events about its last
//! packets are in (a REJECT's drop comes microseconds after its RST, by another path):
//! each line waits for a watermark, a time before which every event the kernel produced
//! has been read. The flow stage makes that mark itself, by reading the ring (no system
//! call: the ring's pages are mapped) whenever it has made lines or looks for findings,
//! so a line goes out in the wake-up that made it. An earlier design had this thread
//! read and hand over batches every few milliseconds, and each hand-over woke the flow
//! stage and then the report stage: those wake-ups, not the records, were most of the
//! witness's cost under a stream of short connections (benches/witness.sh).
//!
//! The thread reads only when the flow stage has not for [`ACTIVE`]: between packets, a
//! listener's LISTEN, a drop of a packet the capture never sees, still reach the flow
//! stage within about that. Both read under one lock, and the thread sends what it read
//! before letting go of it, so the flow stage, which takes the thread's batches before
//! reading, sees every event in the kernel's order.

// Built without the witness there is no thread to start and no ring to read; the types
// stay for the flow stage, which then never holds a line.
#![cfg_attr(not(feature = "kernel-witness"), allow(dead_code))]

#[cfg(feature = "kernel-witness")]
use crate::error::Error;
use crate::kernel::KernelEvent;
#[cfg(feature = "kernel-witness")]
use crate::kernel::{Reader, Witness};
use crossbeam_channel::Receiver;
#[cfg(feature = "kernel-witness")]
use crossbeam_channel::{Sender, TrySendError};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// The longest wait without records or a nudge: the thread notices `stop` this often.
#[cfg(feature = "kernel-witness")]
const IDLE_WAIT_MS: u16 = 250;
/// While the flow stage has read the ring this recently, the thread leaves the records
/// to it, and sleeps (without watching the ring, which stays readable until read) until
/// the flow stage's next read would be overdue. So between packets the kernel's word
/// waits at most about this long; while packets flow, the thread costs a wake-up this
/// often and reads nothing.
const ACTIVE: std::time::Duration = std::time::Duration::from_millis(20);

/// One read of the ring buffer, for the flow stage.
#[derive(Debug, Default)]
pub(crate) struct KernelBatch {
    /// The records read, in the order the kernel committed them.
    pub(crate) events: Vec<KernelEvent>,
    /// On [`SharedRing`]'s clock: every event produced before this is in this batch or an
    /// earlier one. Sent with the events, so the flow stage never sees a mark ahead of
    /// the events it covers.
    pub(crate) until: u64,
}

/// What the witness saw, for the summary.
#[derive(Clone, Debug, Default)]
pub(crate) struct KernelCounts {
    /// Events read.
    pub(crate) events: u64,
    /// Events lost: the ring buffer was full (counted by the program), or the flow stage
    /// was too far behind to take the thread's batches.
    pub(crate) lost: u64,
    /// Events a storm's counts hold instead (neither read one by one nor lost), by kind.
    pub(crate) storm: Vec<crate::kernel::storm::StormCount>,
}

/// The ring buffer's reader and the watermark's clock, shared by the flow stage and the
/// kernel thread.
pub(super) struct SharedRing {
    base: Instant,
    /// Written by `finish` to wake the thread and stop it.
    nudge: EventFd,
    /// Events read so far, by either.
    read: AtomicU64,
    /// Events lost so far ([`KernelCounts::lost`] while the thread runs), for
    /// `--metrics`; the ring buffer's own count is read into it once a second.
    lost: AtomicU64,
    /// On [`now`](Self::now)'s clock: when the flow stage last read the ring.
    pulled_ns: AtomicU64,
    #[cfg(feature = "kernel-witness")]
    reader: std::sync::Mutex<Reader>,
}

impl SharedRing {
    #[cfg(feature = "kernel-witness")]
    pub(super) fn new(reader: Reader) -> std::io::Result<SharedRing> {
        Ok(SharedRing {
            base: Instant::now(),
            nudge: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            read: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            pulled_ns: AtomicU64::new(0),
            reader: std::sync::Mutex::new(reader),
        })
    }

    /// A build without the witness: no ring to read.
    #[cfg(not(feature = "kernel-witness"))]
    pub(super) fn new() -> std::io::Result<SharedRing> {
        Ok(SharedRing {
            base: Instant::now(),
            nudge: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            read: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            pulled_ns: AtomicU64::new(0),
        })
    }

    /// Now, on the watermark's clock.
    pub(super) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The flow stage's read: the batches the thread has sent (read before), into
    /// `batches`, then every record the kernel has committed, into `events`. Returns the
    /// mark: every event produced before it is in one of the two.
    pub(super) fn pull(
        &self,
        sent: &Receiver<KernelBatch>,
        batches: &mut Vec<KernelBatch>,
        events: &mut Vec<KernelEvent>,
    ) -> u64 {
        #[cfg(feature = "kernel-witness")]
        {
            // A panic on the other side while it held the lock left the reader whole
            // (a consume is the ring's positions and a callback that pushes): go on.
            let mut reader = self
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            batches.extend(sent.try_iter());
            let mark = self.now();
            let before = events.len();
            reader.consume(events);
            self.read
                .fetch_add((events.len() - before) as u64, Ordering::Relaxed);
            self.pulled_ns.store(mark, Ordering::Relaxed);
            mark
        }
        #[cfg(not(feature = "kernel-witness"))]
        {
            let _ = (events, self.now());
            batches.extend(sent.try_iter());
            u64::MAX
        }
    }

    /// Wakes the thread.
    fn nudge(&self) {
        // A full counter (2^64 - 2 nudges) would mean the thread is gone: nothing to do.
        let _ = self.nudge.write(1);
    }

    /// The program's counts of a storm's records so far, by kind (into `out`).
    pub(super) fn tallies(&self, out: &mut Vec<crate::kernel::storm::Tally>) {
        #[cfg(feature = "kernel-witness")]
        self.reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tallies(out);
        #[cfg(not(feature = "kernel-witness"))]
        out.clear();
    }

    /// Events read so far, by either reader.
    pub(super) fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Events lost so far, as of the thread's last count.
    pub(super) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

pub(super) struct KernelThread {
    handle: JoinHandle<KernelCounts>,
    stop: Arc<AtomicBool>,
    ring: Arc<SharedRing>,
}

impl KernelThread {
    #[cfg(feature = "kernel-witness")]
    pub(super) fn start(
        witness: Witness,
        events: Sender<KernelBatch>,
        ring: Arc<SharedRing>,
    ) -> Result<KernelThread, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let shared = Arc::clone(&ring);
        let handle = std::thread::Builder::new()
            .name("kernel".to_string())
            .spawn(move || read_all(witness, &events, &shared, &stopped))
            .map_err(Error::Thread)?;
        Ok(KernelThread { handle, stop, ring })
    }

    /// Stops the thread and detaches the programs; its counts (`events` is what it read
    /// itself: the flow stage's reads are counted by [`SharedRing::read`]).
    pub(super) fn finish(self) -> KernelCounts {
        self.stop.store(true, Ordering::SeqCst);
        self.ring.nudge();
        self.handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

#[cfg(feature = "kernel-witness")]
fn read_all(
    witness: Witness,
    to_flow: &Sender<KernelBatch>,
    ring: &SharedRing,
    stop: &AtomicBool,
) -> KernelCounts {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let mut counts = KernelCounts::default();
    // Two sets: the ring and the nudge, or (while the flow stage reads) the nudge alone.
    let epolls = (|| {
        let both = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let nudge = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        {
            let reader = ring
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            both.add(reader.ready_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        }
        both.add(&ring.nudge, EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
        nudge.add(&ring.nudge, EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
        Ok::<_, nix::errno::Errno>((both, nudge))
    })();
    let (both, nudge_only) = match epolls {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "kernel witness: cannot wait on its ring buffer");
            return counts;
        }
    };
    let mut ready = [EpollEvent::empty(); 2];
    // The ring buffer's lost count is a map read (a system call): once a second, for
    // `--metrics`, not on every wake.
    let mut lost_read = Instant::now();
    let mut ring_lost = 0;
    loop {
        let since = ring
            .now()
            .saturating_sub(ring.pulled_ns.load(Ordering::Relaxed));
        let waited = if since < ACTIVE.as_nanos() as u64 {
            // The flow stage reads the ring: sleep until its next read would be late.
            let left = ACTIVE.as_millis() as u64 - since / 1_000_000;
            nudge_only
                .wait(&mut ready, u16::try_from(left.max(1)).unwrap_or(u16::MAX))
                .map(|_| false)
        } else {
            both.wait(&mut ready, IDLE_WAIT_MS).map(|n| n > 0)
        };
        match waited {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "kernel witness: wait failed");
                break;
            }
        }
        let _ = ring.nudge.read();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let since = ring
            .now()
            .saturating_sub(ring.pulled_ns.load(Ordering::Relaxed));
        if waited == Ok(true) && since >= ACTIVE.as_nanos() as u64 {
            let mut reader = ring
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mark = ring.now();
            let mut events = Vec::with_capacity(256);
            reader.consume(&mut events);
            let n = events.len() as u64;
            ring.read.fetch_add(n, Ordering::Relaxed);
            // Sent before the lock is let go: the flow stage takes what was sent before
            // it reads the ring itself.
            if n > 0 {
                match to_flow.try_send(KernelBatch {
                    events,
                    until: mark,
                }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => counts.lost += n,
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
        if lost_read.elapsed().as_secs() >= 1 {
            ring_lost = witness.lost();
            lost_read = Instant::now();
        }
        ring.lost.store(counts.lost + ring_lost, Ordering::Relaxed);
    }
    counts.lost += witness.lost();
    counts.events = ring.read();
    tracing::info!(
        events = counts.events,
        lost = counts.lost,
        programs = witness.attached(),
        "kernel witness detached"
    );
    counts
}

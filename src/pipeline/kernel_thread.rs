//! The `kernel` thread: reads the kernel witness's ring buffer and hands its events to
//! the flow stage in batches. It owns the attached [`Witness`]: when it ends, the
//! programs are detached.
//!
//! It also keeps a watermark, [`Drained`]: a time before which every event the kernel
//! produced has been handed over. A connection's line waits until the watermark passes
//! the moment the line was made, so the kernel's events about its last packets (a
//! REJECT's drop comes microseconds after its RST, by another path) are joined to it
//! however busy the machine is. The flow stage nudges the thread when a line starts
//! waiting (an eventfd beside the ring buffer in one epoll set); the thread then reads
//! what the kernel has committed, moves the mark and answers at once, so a line waits
//! two thread wake-ups, not a polling period.

// Built without the witness there is no thread to start; the types stay for the flow
// stage, which then never holds one.
#![cfg_attr(not(feature = "kernel-witness"), allow(dead_code))]

#[cfg(feature = "kernel-witness")]
use crate::error::Error;
#[cfg(feature = "kernel-witness")]
use crate::kernel::{KernelEvent, Witness};
#[cfg(feature = "kernel-witness")]
use crossbeam_channel::{Sender, TrySendError};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// The longest wait without events or nudges: the thread notices `stop` this often.
#[cfg(feature = "kernel-witness")]
const IDLE_WAIT_MS: u16 = 250;
/// The program wakes this thread at most once a millisecond (`WAKE_NS` in
/// `bpf/witness.bpf.c`); records written in between do not wake it. So once records
/// come, the thread looks again every millisecond until a look finds none: a record waits
/// about a millisecond at most.
#[cfg(feature = "kernel-witness")]
const CATCH_UP_MS: u16 = 1;

/// What the witness saw, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelCounts {
    /// Events read.
    pub(crate) events: u64,
    /// Events lost: the ring buffer was full (counted by the program), or the flow stage
    /// was too far behind to take them.
    pub(crate) lost: u64,
}

/// The kernel thread's watermark and the flow stage's nudge, shared by both.
#[derive(Debug)]
pub(super) struct Drained {
    base: Instant,
    /// Nanoseconds since `base` before which every event has been sent to the flow stage.
    until_ns: AtomicU64,
    /// Written by the flow stage to wake the thread (and by `finish`, to stop it).
    nudge: EventFd,
    /// Events lost so far ([`KernelCounts::lost`] while the thread runs), for
    /// `--metrics`; the ring buffer's own count is read into it once a second.
    lost: AtomicU64,
    /// On the same clock: when the flow stage last nudged (0: never).
    asked_ns: AtomicU64,
}

impl Drained {
    pub(super) fn new() -> std::io::Result<Drained> {
        Ok(Drained {
            base: Instant::now(),
            until_ns: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            nudge: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            asked_ns: AtomicU64::new(0),
        })
    }

    /// Now, on the watermark's clock.
    pub(super) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Every event produced before the returned time has been sent. Read it *before*
    /// taking the events from the channel: the thread sends a batch, then moves the mark.
    pub(super) fn until(&self) -> u64 {
        self.until_ns.load(Ordering::SeqCst)
    }

    /// Asks the thread for a mark past `made` (a line made then is waiting for it),
    /// unless the mark is past it already or an earlier ask is still unanswered: the
    /// answer is a mark taken after the thread read the nudge, so it covers every line
    /// made before that, and the flow stage asks again for the lines it does not cover
    /// once it has come. A nudge is a write, a wake-up of this thread and one of the
    /// flow stage: made once a line, they were most of the witness's cost under a flood
    /// of short connections (benches/witness.sh).
    pub(super) fn ask(&self, made: u64) {
        if made < self.until() || self.asked_ns.load(Ordering::SeqCst) > self.until() {
            return;
        }
        self.asked_ns.store(made.max(1), Ordering::SeqCst);
        self.nudge();
    }

    /// Wakes the thread.
    fn nudge(&self) {
        // A full counter (2^64 - 2 nudges) would mean the thread is gone: nothing to do.
        let _ = self.nudge.write(1);
    }

    /// Events lost so far, as of the thread's last count.
    pub(super) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// No events will come any more: every line may go.
    fn release_all(&self) {
        self.until_ns.store(u64::MAX, Ordering::SeqCst);
    }
}

pub(super) struct KernelThread {
    handle: JoinHandle<KernelCounts>,
    stop: Arc<AtomicBool>,
    drained: Arc<Drained>,
}

impl KernelThread {
    #[cfg(feature = "kernel-witness")]
    pub(super) fn start(
        witness: Witness,
        events: Sender<Vec<KernelEvent>>,
        drained: Arc<Drained>,
    ) -> Result<KernelThread, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let shared = Arc::clone(&drained);
        let handle = std::thread::Builder::new()
            .name("kernel".to_string())
            .spawn(move || {
                let counts = read_all(witness, &events, &shared, &stopped);
                shared.release_all();
                counts
            })
            .map_err(Error::Thread)?;
        Ok(KernelThread {
            handle,
            stop,
            drained,
        })
    }

    /// Stops reading, detaches the programs and returns the counts.
    pub(super) fn finish(self) -> KernelCounts {
        self.stop.store(true, Ordering::SeqCst);
        self.drained.nudge();
        self.handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

#[cfg(feature = "kernel-witness")]
fn read_all(
    witness: Witness,
    to_flow: &Sender<Vec<KernelEvent>>,
    drained: &Drained,
    stop: &AtomicBool,
) -> KernelCounts {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let mut counts = KernelCounts::default();
    let mut reader = match witness.reader() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "kernel witness: cannot read its ring buffer");
            return counts;
        }
    };
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).and_then(|ep| {
        ep.add(reader.ready_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        ep.add(&drained.nudge, EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
        Ok(ep)
    });
    let epoll = match epoll {
        Ok(ep) => ep,
        Err(e) => {
            tracing::warn!(error = %e, "kernel witness: cannot wait on its ring buffer");
            return counts;
        }
    };
    let mut ready = [EpollEvent::empty(); 2];
    let mut batch = Vec::with_capacity(256);
    let mut catching_up = false;
    // The ring buffer's lost count is a map read (a syscall): once a second, for
    // `--metrics`, not on every wake.
    let mut lost_read = Instant::now();
    let mut ring_lost = 0;
    loop {
        let wait = if catching_up {
            CATCH_UP_MS
        } else {
            IDLE_WAIT_MS
        };
        if let Err(e) = epoll.wait(&mut ready, wait) {
            if e != nix::errno::Errno::EINTR {
                tracing::warn!(error = %e, "kernel witness: wait failed");
                break;
            }
        }
        // A nudge is answered even with no events: the flow stage waits for the mark.
        let nudged = drained.nudge.read().is_ok();
        // Whatever the kernel committed before `mark` is read by this consume.
        let mark = drained.now();
        reader.consume(&mut batch);
        catching_up = !batch.is_empty();
        if !batch.is_empty() || nudged {
            let n = batch.len() as u64;
            counts.events += n;
            // An answer to a nudge with nothing in it costs no allocation.
            let next = if batch.is_empty() {
                Vec::new()
            } else {
                Vec::with_capacity(256)
            };
            match to_flow.try_send(std::mem::replace(&mut batch, next)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => counts.lost += n,
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        drained.until_ns.fetch_max(mark, Ordering::SeqCst);
        if lost_read.elapsed().as_secs() >= 1 {
            ring_lost = witness.lost();
            lost_read = Instant::now();
        }
        drained
            .lost
            .store(counts.lost + ring_lost, Ordering::Relaxed);
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    drop(reader);
    counts.lost += witness.lost();
    tracing::info!(
        events = counts.events,
        lost = counts.lost,
        programs = witness.attached(),
        "kernel witness detached"
    );
    counts
}

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
use crate::kernel::KernelEvent;
#[cfg(feature = "kernel-witness")]
use crate::kernel::Witness;
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
/// The program wakes this thread at most once in 5 ms (`WAKE_NS` in
/// `bpf/witness.bpf.c`); records written in between do not wake it. So once records
/// come, the thread looks again every 5 ms until looks have found nothing for [`GRACE`]:
/// a record waits about that long at most. Every wake-up is a batch for the flow stage and two context
/// switches, which cost more than reading the records themselves (benches/witness.sh: at
/// 1 ms the thread's wake-ups were most of its CPU under a steady stream of drops).
#[cfg(feature = "kernel-witness")]
const CATCH_UP_MS: u16 = 5;
/// After the last record or ask, the thread goes on reading every [`CATCH_UP_MS`] this
/// long before it waits idle again, so that a steady trickle of connection lines (a few
/// thousand short connections a second) is answered by those reads, not by a nudge and
/// two context switches a line (benches/witness.sh, conns).
#[cfg(feature = "kernel-witness")]
const GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// One read of the ring buffer, for the flow stage.
#[derive(Debug, Default)]
pub(crate) struct KernelBatch {
    /// The records read, in the order the kernel committed them.
    pub(crate) events: Vec<KernelEvent>,
    /// On [`Drained`]'s clock: every event produced before this is in this batch or an
    /// earlier one. Sent with the events, so the flow stage never sees a mark ahead of
    /// the events it covers.
    pub(crate) until: u64,
}

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
    /// On the same clock: the latest line the flow stage waits for (0: none yet).
    asked_ns: AtomicU64,
    /// The thread reads again within [`CATCH_UP_MS`] whatever happens: no nudge needed.
    catching_up: AtomicBool,
}

impl Drained {
    pub(super) fn new() -> std::io::Result<Drained> {
        Ok(Drained {
            base: Instant::now(),
            until_ns: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            nudge: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            asked_ns: AtomicU64::new(0),
            catching_up: AtomicBool::new(false),
        })
    }

    /// Now, on the watermark's clock.
    pub(super) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The thread's own mark: every event produced before it has been sent.
    fn until(&self) -> u64 {
        self.until_ns.load(Ordering::SeqCst)
    }

    /// Asks the thread for a batch whose mark passes `made` (a line made then is
    /// waiting for it), unless the mark is past it already or an earlier ask is still
    /// unanswered: the answer is a mark taken after the thread read the nudge, so it
    /// covers every line made before that, and the flow stage asks again for the lines
    /// it does not cover once it has come. While the thread is catching up it reads
    /// within [`CATCH_UP_MS`] anyway: the ask is noted, and no nudge sent. A nudge is a
    /// write, a wake-up of this thread and one of the flow stage: made once a line, they
    /// were most of the witness's cost under a flood of short connections
    /// (benches/witness.sh).
    pub(super) fn ask(&self, made: u64) {
        if made < self.until() || self.asked_ns.load(Ordering::SeqCst) > self.until() {
            return;
        }
        self.asked_ns.store(made.max(1), Ordering::SeqCst);
        // After the store: a thread that stops catching up looks at `asked_ns` after
        // clearing the flag, so one of the two sees the other.
        if self.catching_up.load(Ordering::SeqCst) {
            return;
        }
        self.nudge();
    }

    /// An ask the thread's mark does not cover yet.
    #[cfg(feature = "kernel-witness")]
    fn asked(&self) -> bool {
        self.asked_ns.load(Ordering::SeqCst) > self.until()
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
        events: Sender<KernelBatch>,
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
    to_flow: &Sender<KernelBatch>,
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
    let mut last_active = Instant::now();
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
        let woken = match epoll.wait(&mut ready, wait) {
            Ok(n) => &ready[..n],
            Err(nix::errno::Errno::EINTR) => &[][..],
            Err(e) => {
                tracing::warn!(error = %e, "kernel witness: wait failed");
                break;
            }
        };
        // A nudge is answered even with no events: the flow stage waits for the mark.
        // Its eventfd is read only when epoll says it was written (a read is a syscall).
        let nudged = woken.iter().any(|e| e.data() == 1) && drained.nudge.read().is_ok();
        // Whatever the kernel committed before `mark` is read by this consume.
        let mark = drained.now();
        reader.consume(&mut batch);
        let got = !batch.is_empty();
        let asked = drained.asked();
        if got || nudged || asked {
            last_active = Instant::now();
            let n = batch.len() as u64;
            counts.events += n;
            // An answer with nothing in it costs no allocation.
            let next = if got {
                Vec::with_capacity(256)
            } else {
                Vec::new()
            };
            let events = std::mem::replace(&mut batch, next);
            match to_flow.try_send(KernelBatch {
                events,
                until: mark,
            }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => counts.lost += n,
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        drained.until_ns.fetch_max(mark, Ordering::SeqCst);
        catching_up = last_active.elapsed() < GRACE;
        drained.catching_up.store(catching_up, Ordering::SeqCst);
        // After clearing the flag: an ask made while it was still set sent no nudge, and
        // is seen here.
        if !catching_up && drained.asked() {
            catching_up = true;
        }
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

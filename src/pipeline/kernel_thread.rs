//! The `kernel` thread: reads the kernel witness's ring buffer and hands its events to
//! the flow stage in batches. It owns the attached [`Witness`]: when it ends, the
//! programs are detached.

// Built without the witness there is no thread to start; the types stay for the flow
// stage, which then never holds one.
#![cfg_attr(not(feature = "kernel-witness"), allow(dead_code))]

#[cfg(feature = "kernel-witness")]
use crate::error::Error;
#[cfg(feature = "kernel-witness")]
use crate::kernel::{KernelEvent, Witness};
#[cfg(feature = "kernel-witness")]
use crossbeam_channel::{Sender, TrySendError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
#[cfg(feature = "kernel-witness")]
use std::time::Duration;

#[cfg(feature = "kernel-witness")]
/// How long one wait on the ring buffer lasts: the thread notices `stop` this often. An
/// event wakes it at once.
const POLL: Duration = Duration::from_millis(50);

/// What the witness saw, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelCounts {
    /// Events read.
    pub(crate) events: u64,
    /// Events lost: the ring buffer was full (counted by the program), or the flow stage
    /// was too far behind to take them.
    pub(crate) lost: u64,
}

pub(super) struct KernelThread {
    handle: JoinHandle<KernelCounts>,
    stop: Arc<AtomicBool>,
}

impl KernelThread {
    #[cfg(feature = "kernel-witness")]
    pub(super) fn start(
        witness: Witness,
        events: Sender<Vec<KernelEvent>>,
    ) -> Result<KernelThread, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("kernel".to_string())
            .spawn(move || read_all(witness, &events, &stopped))
            .map_err(Error::Thread)?;
        Ok(KernelThread { handle, stop })
    }

    /// Stops reading, detaches the programs and returns the counts.
    pub(super) fn finish(self) -> KernelCounts {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

#[cfg(feature = "kernel-witness")]
fn read_all(
    witness: Witness,
    to_flow: &Sender<Vec<KernelEvent>>,
    stop: &AtomicBool,
) -> KernelCounts {
    let mut counts = KernelCounts::default();
    let mut reader = match witness.reader() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "kernel witness: cannot read its ring buffer");
            return counts;
        }
    };
    let mut batch = Vec::with_capacity(256);
    loop {
        let last = stop.load(Ordering::Relaxed);
        reader.poll(if last { Duration::ZERO } else { POLL }, &mut batch);
        if !batch.is_empty() {
            let n = batch.len() as u64;
            counts.events += n;
            match to_flow.try_send(std::mem::replace(&mut batch, Vec::with_capacity(256))) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => counts.lost += n,
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        if last {
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

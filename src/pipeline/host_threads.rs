//! The pipeline's helper threads for the diagnosis, live only: one refreshes the view of
//! /proc every `REFRESH`, one names the processes behind client sockets. They run the
//! host reads `diagnose::host` offers; the flow stage takes their results when it polls
//! and hands them to the `Diagnoser`, so it never waits for /proc.

use super::wall_clock;
use crate::diagnose::host::{Looker, LookupRequest};
use crate::diagnose::{FlowProcesses, Snapshot};
use crossbeam_channel::{bounded, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Live: how often the refresher thread looks at /proc.
const REFRESH: Duration = Duration::from_secs(1);
/// Live: how often it also walks every process (owners, other namespaces).
const FULL_REFRESH: Duration = Duration::from_secs(10);
/// Live: process lookups waiting for the attribution thread; more are dropped.
const LOOKUP_QUEUE: usize = 64;

/// A thread that looks at /proc every `REFRESH` while a live capture runs, so that the
/// flow stage never stalls on a /proc walk (tens of milliseconds with many processes).
pub(super) struct Refresher {
    /// The latest look, replaced by each new one.
    latest: Arc<Mutex<Option<Snapshot>>>,
    /// Dropped with the sink: the thread then stops.
    _stop: crossbeam_channel::Sender<()>,
}

impl Refresher {
    pub(super) fn start(port: u16, attribution: bool) -> Refresher {
        let latest = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&latest);
        let (stop, stopped) = bounded::<()>(0);
        let spawned = std::thread::Builder::new()
            .name("proc-refresh".to_string())
            .spawn(move || {
                let mut looker = Looker::new(port, attribution);
                let mut full_at = Instant::now();
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
                    let full = looker.needs_full() || full_at.elapsed() >= FULL_REFRESH;
                    // Stamped before the look: what it saw was true from about then,
                    // and the diagnosis orders it against the witness's events by it.
                    let taken = wall_clock();
                    let snapshot = Snapshot {
                        taken,
                        ..looker.look(full)
                    };
                    if full {
                        full_at = Instant::now();
                    }
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "system facts will not be refreshed during the capture");
        }
        Refresher {
            latest,
            _stop: stop,
        }
    }

    /// The look taken since the last call, if any.
    pub(super) fn latest(&self) -> Option<Snapshot> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The helper thread that names the processes behind client sockets.
pub(super) struct Lookup {
    pub(super) requests: crossbeam_channel::Sender<LookupRequest>,
    pub(super) results: crossbeam_channel::Receiver<(u64, FlowProcesses)>,
}

impl Lookup {
    pub(super) fn start() -> Lookup {
        let (requests, work) = bounded::<LookupRequest>(LOOKUP_QUEUE);
        let (done, results) = bounded(1024);
        let spawned = std::thread::Builder::new()
            .name("attribution".to_string())
            .spawn(move || {
                for req in work {
                    if done.send(req.run()).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no process attribution: cannot start its thread");
        }
        Lookup { requests, results }
    }
}

//! The replay's progress bar and the thread that moves it along: the bar reads the
//! capture's byte count every [`PROGRESS_TICK`], and appears only after
//! [`progress::SHOW_AFTER`].

use super::Config;
use crate::capture::{self, Source};
use crate::error::Error;
use crate::report::progress::{self, Bar, ReplayBar};
use crossbeam_channel::{bounded, RecvTimeoutError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the progress bar reads the capture's byte count.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// The replay's progress bar and the thread that moves it along.
pub(super) struct ProgressThread {
    pub(super) bar: ReplayBar,
    done: crossbeam_channel::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressThread {
    /// Starts the bar when the config asks for one and the file's length is known (a
    /// regular file; `-r /dev/fd/63` from a shell pipe has none).
    pub(super) fn start(
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

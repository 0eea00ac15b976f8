//! The `metrics` thread (`--metrics`): a small blocking accept loop that answers each
//! scrape with the latest [`Snapshot`] the flow stage published. One connection at a
//! time, each bounded by timeouts: Prometheus scrapes every few seconds, and a client
//! that stalls cannot hold the thread for long, nor ever the flow stage, which only
//! swaps a snapshot under the lock.

use crate::error::Error;
use crate::report::metrics::{respond, Snapshot};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the accept loop looks at `stop`.
const STOP_POLL_MS: u16 = 200;
/// A scrape's request must arrive, and its answer be taken, within this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A request head larger than this is not a scrape.
const MAX_HEAD: usize = 8 * 1024;

/// The latest snapshot, written by the flow stage and read by the thread.
pub(super) type Published = Arc<Mutex<Snapshot>>;

pub(super) struct MetricsThread {
    handle: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl MetricsThread {
    /// Serves `listener` (bound in `prepare`, so a taken port is an error before the
    /// capture starts) until [`finish`](Self::finish).
    pub(super) fn start(listener: TcpListener, published: Published) -> Result<Self, Error> {
        listener.set_nonblocking(true).map_err(Error::Thread)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("metrics".to_string())
            .spawn(move || serve(&listener, &published, &stopped))
            .map_err(Error::Thread)?;
        Ok(MetricsThread {
            handle: Some(handle),
            stop,
        })
    }

    /// Stops serving and waits for the thread (at most a poll period).
    pub(super) fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(Err(panic)) = self.handle.take().map(JoinHandle::join) {
            std::panic::resume_unwind(panic);
        }
    }
}

/// A run that ends on an error never calls `finish`: the thread still stops (and closes
/// the port) within a poll period instead of serving stale counts.
impl Drop for MetricsThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(listener: &TcpListener, published: &Mutex<Snapshot>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(STOP_POLL_MS)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot wait for scrapes; no longer serving");
                return;
            }
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, published) {
                    tracing::debug!(%peer, error = %e, "metrics: scrape not answered");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // Out of file descriptors and the like: wait, rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                std::thread::sleep(Duration::from_millis(STOP_POLL_MS.into()));
            }
        }
    }
}

/// Reads one request head and writes the answer; the connection then closes.
fn answer(mut stream: TcpStream, published: &Mutex<Snapshot>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    // Cloned, so the flow stage never waits for a slow client.
    let snapshot = published
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    stream.write_all(&respond(&head, &snapshot))?;
    stream.flush()
}

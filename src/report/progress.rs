//! The progress bar of a replay: how much of the file has been read, the rate and the
//! time left, on stderr, only for people watching a terminal.
//!
//! The bar reads the capture's published byte count ([`crate::capture::Progress`]); it
//! never sees packets. Drawing is throttled by indicatif (about 20 times a second), and
//! the bar is cleared before the summary so a finished report holds no trace of it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, Write};
use std::time::Duration;

/// A replay shorter than this shows no bar at all: a bar that flashes for a moment is
/// noise (and every fixture-sized file would draw one).
pub const SHOW_AFTER: Duration = Duration::from_millis(300);

/// Whether a run shows the progress bar (decided in `cli` from the terminals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// No bar: stderr is not a terminal, the output is not text, or the capture is live.
    Off,
    /// A bar on stderr. When stdout is the same terminal, report lines are written
    /// around the bar (it is lifted, the lines written, and it is drawn again), so the
    /// two never share a screen line.
    Stderr { stdout_terminal: bool },
}

/// The bar of one replay, `total` bytes long.
#[derive(Clone)]
pub struct ReplayBar {
    bar: ProgressBar,
}

const TEMPLATE: &str =
    "portsniff: reading {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";

impl ReplayBar {
    /// A bar that stays hidden until [`show`](Self::show).
    pub fn new(total: u64) -> ReplayBar {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        let style =
            ProgressStyle::with_template(TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        ReplayBar { bar }
    }

    /// Starts drawing on stderr (the replay has run for [`SHOW_AFTER`]).
    pub fn show(&self) {
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
    }

    /// Bytes of the file read so far.
    pub fn set(&self, bytes: u64) {
        self.bar.set_position(bytes);
    }

    /// Erases the bar for good; later writes through a [`AroundBar`] go straight out.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
        self.bar.set_draw_target(ProgressDrawTarget::hidden());
    }
}

/// Standard output that shares the terminal with the bar: each batch of complete lines
/// is written with the bar lifted, then the bar is redrawn below them. Without a bar it
/// is a plain pass-through.
pub struct AroundBar<W: Write> {
    inner: W,
    bar: Option<ReplayBar>,
    /// Text not yet ending in a newline: held until its line is complete.
    pending: Vec<u8>,
}

impl<W: Write> AroundBar<W> {
    pub fn new(inner: W, bar: Option<ReplayBar>) -> AroundBar<W> {
        AroundBar {
            inner,
            bar,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        let Some(b) = &self.bar else { return Ok(()) };
        if self.pending.is_empty() {
            return Ok(());
        }
        let (inner, pending) = (&mut self.inner, &self.pending);
        b.bar.suspend(|| {
            inner.write_all(pending)?;
            inner.flush()
        })?;
        self.pending.clear();
        Ok(())
    }
}

impl<W: Write> Write for AroundBar<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bar.is_none() {
            return self.inner.write(buf);
        }
        self.pending.extend_from_slice(buf);
        if self.pending.ends_with(b"\n") {
            self.emit()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_bar_writes_pass_straight_through() {
        let mut out = AroundBar::new(Vec::new(), None);
        write!(out, "partial").unwrap();
        assert_eq!(out.inner, b"partial");
    }

    #[test]
    fn beside_a_bar_only_whole_lines_are_written() {
        let bar = ReplayBar::new(100);
        let mut out = AroundBar::new(Vec::new(), Some(bar));
        write!(out, "first half, ").unwrap();
        assert!(out.inner.is_empty(), "a half line waits for its end");
        writeln!(out, "second half").unwrap();
        assert_eq!(out.inner, b"first half, second half\n");
        write!(out, "tail").unwrap();
        out.flush().unwrap();
        assert_eq!(out.inner, b"first half, second half\ntail");
    }
}

//! Report: flow events and the summary, as text for people or JSON lines for scripts, or
//! the final flows as a Zeek conn.log; and the packets of the port's flows as a pcap file
//! (`-w`).
//!
//! This stage consumes what the flow stage produced; it never looks at packets' headers
//! and never changes a flow's outcome.

pub mod expert;
pub mod json;
pub mod ladder;
pub mod live;
pub mod pcap_writer;
pub mod progress;
pub mod summary;
pub mod text;
pub mod zeek;

pub use pcap_writer::PcapWriter;
pub use summary::{Percentiles, Summary};
pub use text::Style;

use crate::diagnose::{Evidence, Finding, FlowProcesses};
use crate::flow::{FlowEvent, FlowRecord};
use std::io::{self, Write};

/// Text for people, JSON lines for programs, or a Zeek conn.log for Zeek pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// `--live-summary`: a table redrawn every second instead of a line per flow; the
    /// summary and diagnosis at the end as in `Text`.
    LiveSummary(live::Redraw),
    /// Zeek's conn.log TSV: final connections only, no findings, ladders or summary.
    Zeek,
    /// Zeek's conn.log as JSON lines (`LogAscii::use_json=T`).
    ZeekJson,
}

impl Format {
    /// Whether this is a Zeek conn.log, which holds final connections and nothing else.
    pub fn is_zeek(self) -> bool {
        matches!(self, Format::Zeek | Format::ZeekJson)
    }
}

/// Deferred records are handed over this many at a time.
pub const LINE_BATCH: usize = 512;

/// A final record's line in `format` (text or JSON), appended to `buf`: what
/// [`Reporter`] writes for it when no processes are known (a replay).
pub fn format_line(format: Format, style: Style, r: &FlowRecord, buf: &mut Vec<u8>) {
    match format {
        Format::Json => json::write_flow(buf, r, None),
        // Writing into a Vec cannot fail.
        Format::Text => {
            let _ = text::write_flow(buf, r, None, style);
        }
        Format::LiveSummary(_) | Format::Zeek | Format::ZeekJson => {}
    }
}

/// Writes flow events as they come and the summary at the end.
pub struct Reporter<W: Write> {
    out: W,
    format: Format,
    style: Style,
    only_problems: bool,
    /// Live: flush after every line, people and pipes read as it happens. Replays flush
    /// when the buffer fills (a syscall per line cost ~10 % of a large replay).
    flush_each: bool,
    /// A JSON flow line is built here, then written in one call.
    line: Vec<u8>,
    /// When set (see [`defer_lines`](Self::defer_lines)): final records whose lines
    /// someone else formats, in order.
    deferred: Option<Vec<FlowRecord>>,
    /// With [`Format::LiveSummary`]: the table's state.
    live_view: Option<live::LiveView>,
    conn_log: zeek::ConnLog,
}

impl<W: Write> Reporter<W> {
    pub fn new(
        out: W,
        format: Format,
        style: Style,
        only_problems: bool,
        flush_each: bool,
    ) -> Reporter<W> {
        Reporter {
            out,
            format,
            style,
            only_problems,
            flush_each,
            line: Vec::with_capacity(1024),
            deferred: None,
            live_view: match format {
                Format::LiveSummary(redraw) => Some(live::LiveView::new(redraw)),
                Format::Text | Format::Json | Format::Zeek | Format::ZeekJson => None,
            },
            conn_log: zeek::ConnLog::new(format == Format::ZeekJson),
        }
    }

    /// The capture's clock, for the conn.log's `#open` and `#close`: packet times from a
    /// file, the wall clock live.
    pub fn clock(&mut self, ts: crate::decode::Timestamp) {
        self.conn_log.clock(ts);
    }

    /// Whether `--only-problems` lets this record through.
    pub fn shows(&self, r: &FlowRecord) -> bool {
        !self.only_problems || r.outcome.is_problem()
    }

    /// A flow event, with the processes behind the flow when they are known.
    pub fn event(&mut self, ev: &FlowEvent, procs: Option<&FlowProcesses>) -> io::Result<()> {
        let r = ev.record();
        if let Some(view) = &mut self.live_view {
            match ev {
                FlowEvent::Pending(r) => view.pending(r.id),
                FlowEvent::Finished(r) => view.finished(r.id),
            }
        }
        if !self.shows(r) {
            return Ok(());
        }
        if let (Some(deferred), FlowEvent::Finished(r)) = (&mut self.deferred, ev) {
            // Lines are deferred only in replays, where no process is ever known; writing
            // one here instead would put it out of order.
            debug_assert!(procs.is_none(), "processes are only known live");
            deferred.push(*r);
            return Ok(());
        }
        match self.format {
            Format::Text => text::write_flow(&mut self.out, r, procs, self.style)?,
            Format::Json => {
                self.line.clear();
                json::write_flow(&mut self.line, r, procs);
                self.out.write_all(&self.line)?;
            }
            Format::LiveSummary(_) => return Ok(()),
            // A conn.log line is a finished connection; pending notices are not.
            Format::Zeek | Format::ZeekJson => match ev {
                FlowEvent::Finished(r) => self.conn_log.write_flow(&mut self.out, r)?,
                FlowEvent::Pending(_) => return Ok(()),
            },
        }
        self.flush_live()
    }

    fn flush_live(&mut self) -> io::Result<()> {
        if self.flush_each {
            self.out.flush()
        } else {
            Ok(())
        }
    }

    /// A connection's sequence diagram, right after its flow line.
    pub fn ladder(&mut self, l: &ladder::Ladder) -> io::Result<()> {
        match self.format {
            Format::Text => l.write_text(&mut self.out, self.style)?,
            Format::Json => l.write_json(&mut self.out)?,
            Format::LiveSummary(_) => return Ok(()),
            // The command line refuses --ladder with a conn.log format.
            Format::Zeek | Format::ZeekJson => return Ok(()),
        }
        self.flush_live()
    }

    /// A finding made certain during a live capture, printed at once.
    pub fn finding(&mut self, f: &Finding) -> io::Result<()> {
        if let Some(view) = &mut self.live_view {
            // Shown as the table's top problem; the diagnosis at the end has them all.
            view.finding(f);
            return Ok(());
        }
        match self.format {
            Format::Text | Format::LiveSummary(_) => {
                text::write_live_finding(&mut self.out, f, self.style)?
            }
            Format::Json => json::write_finding(&mut self.out, f)?,
            // A conn.log has no place for findings; the exit status still tells.
            Format::Zeek | Format::ZeekJson => return Ok(()),
        }
        self.out.flush()
    }

    /// `--live-summary`: redraws the table of `counts` if a second has passed since the
    /// last one.
    pub fn live_tick(&mut self, now_counts: live::CaptureNow, counts: &Evidence) -> io::Result<()> {
        let Some(view) = &mut self.live_view else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        if view.due(now) {
            view.draw(&mut self.out, counts, now_counts, self.style, now)
        } else {
            Ok(())
        }
    }

    /// The final, ranked diagnosis and the summary. JSON: findings, then the summary
    /// line last. Text: the summary, then the "Diagnosis" section. Zeek: only `#close`.
    pub fn finish(&mut self, findings: &[Finding], s: &Summary<'_>) -> io::Result<()> {
        if let Some(view) = &mut self.live_view {
            view.finish(&mut self.out)?;
        }
        match self.format {
            Format::Text | Format::LiveSummary(_) => {
                text::write_summary(&mut self.out, s, self.style)?;
                text::write_diagnosis(&mut self.out, findings, s.live, self.style)?;
            }
            Format::Json => {
                for f in findings {
                    json::write_finding(&mut self.out, f)?;
                }
                json::write_summary(&mut self.out, s)?;
            }
            Format::Zeek | Format::ZeekJson => self.conn_log.finish(&mut self.out)?,
        }
        self.out.flush()
    }

    /// From now on (in a replay: processes are only known live), final records are kept
    /// for [`take_deferred`] instead of written: their lines are formatted elsewhere (with [`format_line`]) and
    /// written back in order with [`write_lines`]. Only for text and JSON, whose lines
    /// depend on the record alone; `false` (and nothing changes) for other formats.
    ///
    /// [`take_deferred`]: Self::take_deferred
    /// [`write_lines`]: Self::write_lines
    pub fn defer_lines(&mut self) -> bool {
        let ok = matches!(self.format, Format::Text | Format::Json);
        if ok {
            self.deferred = Some(Vec::with_capacity(LINE_BATCH));
        }
        ok
    }

    /// The records kept since the last call, swapped for `empty`.
    pub fn take_deferred(&mut self, empty: Vec<FlowRecord>) -> Vec<FlowRecord> {
        match &mut self.deferred {
            Some(d) => std::mem::replace(d, empty),
            None => empty,
        }
    }

    /// How many records are waiting in [`take_deferred`](Self::take_deferred).
    pub fn deferred_len(&self) -> usize {
        self.deferred.as_ref().map_or(0, Vec::len)
    }

    /// Lines formatted by [`format_line`], written as they are.
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        self.out.write_all(lines)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

//! `--format zeek` and `--format zeek-json`: Zeek's conn.log, as TSV for `zeek-cut` or as
//! JSON lines (`LogAscii::use_json=T`). Final connections only: a pending notice, a
//! ladder (refused by the command line), a finding or the summary has no place in a
//! conn.log (the exit status still tells). The two differ only in how a row is encoded,
//! which [`report::zeek`](crate::report::zeek)'s `ConnLog` decides, so they share this
//! printer.

use super::Printer;
use crate::decode::Timestamp;
use crate::diagnose::{Diagnosis, Finding};
use crate::flow::{EndReason, FlowEvent};
use crate::report::ladder::Ladder;
use crate::report::summary::Summary;
use crate::report::zeek::ConnLog;
use crate::report::FlowContext;
use std::io::{self, Write};

pub struct Zeek {
    log: ConnLog,
}

impl Zeek {
    /// The TSV log, with its `#` header and `#close` line.
    pub fn tsv() -> Zeek {
        Zeek {
            log: ConnLog::new(false),
        }
    }

    /// JSON lines: one object per connection, no header or `#close`.
    pub fn json() -> Zeek {
        Zeek {
            log: ConnLog::new(true),
        }
    }
}

impl Printer for Zeek {
    fn flow(
        &mut self,
        mut out: &mut dyn Write,
        ev: &FlowEvent,
        _context: Option<&FlowContext>,
    ) -> io::Result<()> {
        match ev {
            // A connection its packets ended is written when its close delay is over,
            // with the packets that trailed its close (Zeek's tcp_close_delay).
            FlowEvent::Finished(r) if r.end == Some(EndReason::Packets) => Ok(()),
            FlowEvent::Finished(r) | FlowEvent::Settled { record: r, .. } => {
                self.log.write_flow(&mut out, r)
            }
            FlowEvent::Pending(_) => Ok(()),
        }
    }

    fn ladder(&mut self, _out: &mut dyn Write, _ladder: &Ladder) -> io::Result<()> {
        Ok(())
    }

    fn finding(&mut self, _out: &mut dyn Write, _f: &Finding) -> io::Result<()> {
        Ok(())
    }

    /// TSV: only `#close` (and the header, if no connection was written); JSON: nothing.
    fn finish(
        &mut self,
        mut out: &mut dyn Write,
        _diagnosis: &Diagnosis,
        _summary: &Summary<'_>,
    ) -> io::Result<()> {
        self.log.finish(&mut out)
    }

    /// `#open` and `#close`: a file's packet times, so a replay writes the same bytes
    /// every run.
    fn clock(&mut self, ts: Timestamp) {
        self.log.clock(ts);
    }
}

//! `--format zeek`: Zeek's conn.log as TSV, for `zeek-cut`. Final connections only: a
//! pending notice, a ladder (refused by the command line), a finding or the summary has
//! no place in a conn.log (the exit status still tells). The row and header are
//! [`report::zeek`](crate::report::zeek)'s.

use super::Printer;
use crate::decode::Timestamp;
use crate::diagnose::{Finding, FlowProcesses};
use crate::flow::FlowEvent;
use crate::report::ladder::Ladder;
use crate::report::summary::Summary;
use crate::report::zeek::ConnLog;
use std::io::{self, Write};

pub struct Zeek {
    log: ConnLog,
}

impl Zeek {
    pub fn new() -> Zeek {
        Zeek {
            log: ConnLog::new(false),
        }
    }
}

impl Default for Zeek {
    fn default() -> Zeek {
        Zeek::new()
    }
}

impl Printer for Zeek {
    fn flow(
        &mut self,
        mut out: &mut dyn Write,
        ev: &FlowEvent,
        _procs: Option<&FlowProcesses>,
    ) -> io::Result<()> {
        match ev {
            FlowEvent::Finished(r) => self.log.write_flow(&mut out, r),
            FlowEvent::Pending(_) => Ok(()),
        }
    }

    fn ladder(&mut self, _out: &mut dyn Write, _ladder: &Ladder) -> io::Result<()> {
        Ok(())
    }

    fn finding(&mut self, _out: &mut dyn Write, _f: &Finding) -> io::Result<()> {
        Ok(())
    }

    /// Only `#close` (and the header, if no connection was written).
    fn finish(
        &mut self,
        mut out: &mut dyn Write,
        _findings: &[Finding],
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

//! `--format zeek-json`: Zeek's conn.log as JSON lines (`LogAscii::use_json=T`): one
//! object per final connection and nothing else, no header or `#close`. The row is
//! [`report::zeek`](crate::report::zeek)'s.

use super::Printer;
use crate::diagnose::{Finding, FlowProcesses};
use crate::flow::FlowEvent;
use crate::report::ladder::Ladder;
use crate::report::summary::Summary;
use crate::report::zeek::ConnLog;
use std::io::{self, Write};

pub struct ZeekJson {
    log: ConnLog,
}

impl ZeekJson {
    pub fn new() -> ZeekJson {
        ZeekJson {
            log: ConnLog::new(true),
        }
    }
}

impl Default for ZeekJson {
    fn default() -> ZeekJson {
        ZeekJson::new()
    }
}

impl Printer for ZeekJson {
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

    fn finish(
        &mut self,
        _out: &mut dyn Write,
        _findings: &[Finding],
        _summary: &Summary<'_>,
    ) -> io::Result<()> {
        Ok(())
    }
}

//! JSON lines for programs: a `flow` object per connection (and live pending notices), a
//! `ladder` object after its flow, `finding` objects as they become certain (`"final":
//! false`) and `update` objects when their facts change, and at the end the ranked
//! findings (`"final":true`), the live findings they supersede, then the `summary` line
//! last. The schema lives in
//! [`report::json`](crate::report::json).

use super::Printer;
use crate::diagnose::{Diagnosis, Finding, Update};
use crate::flow::FlowEvent;
use crate::report::json;
use crate::report::ladder::Ladder;
use crate::report::summary::Summary;
use crate::report::FlowContext;
use std::io::{self, Write};

pub struct Json {
    /// A flow line is assembled here, then written in one call; reused, so a line
    /// allocates nothing once the buffer has grown.
    line: Vec<u8>,
}

impl Json {
    pub fn new() -> Json {
        Json {
            line: Vec::with_capacity(1024),
        }
    }
}

impl Default for Json {
    fn default() -> Json {
        Json::new()
    }
}

impl Printer for Json {
    fn flow(
        &mut self,
        out: &mut dyn Write,
        ev: &FlowEvent,
        context: Option<&FlowContext>,
    ) -> io::Result<()> {
        self.line.clear();
        match ev {
            FlowEvent::Pending(r) | FlowEvent::Finished(r) => {
                json::write_flow(&mut self.line, r, context);
            }
            // Packets that trailed the close: the record again, as an update (scripts
            // counting `"type":"flow"` lines still count each connection once).
            FlowEvent::Settled { record, late: true } => {
                json::write_flow_update(&mut self.line, record, context);
            }
            FlowEvent::Settled { late: false, .. } => {}
        }
        out.write_all(&self.line)
    }

    fn ladder(&mut self, out: &mut dyn Write, ladder: &Ladder) -> io::Result<()> {
        ladder.write_json(out)
    }

    fn finding(&mut self, out: &mut dyn Write, f: &Finding) -> io::Result<()> {
        json::write_finding(out, f, false)
    }

    fn update(&mut self, out: &mut dyn Write, u: &Update) -> io::Result<()> {
        json::write_update(out, u)
    }

    fn finish(
        &mut self,
        out: &mut dyn Write,
        diagnosis: &Diagnosis,
        summary: &Summary<'_>,
    ) -> io::Result<()> {
        for f in &diagnosis.findings {
            json::write_finding(out, f, true)?;
        }
        for s in &diagnosis.superseded {
            json::write_superseded(out, s)?;
        }
        json::write_summary(out, summary)
    }
}

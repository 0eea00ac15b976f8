//! Text for people: a line per connection as it ends (and live pending notices), ladders
//! drawn below their line, live findings as they become certain and updates when their facts change, then
//! the summary and the "Diagnosis" section. The wording lives in [`report::text`](crate::report::text).

use super::Printer;
use crate::diagnose::{Diagnosis, Finding, Update};
use crate::flow::FlowEvent;
use crate::report::ladder::Ladder;
use crate::report::summary::Summary;
use crate::report::text::{self, Style};
use crate::report::FlowContext;
use std::io::{self, Write};

pub struct Text {
    style: Style,
    /// A flow line is written here, then to `out` in one call: its dozen pieces do not
    /// each go through the output's layers.
    line: Vec<u8>,
}

impl Text {
    pub fn new(style: Style) -> Text {
        Text {
            style,
            line: Vec::with_capacity(512),
        }
    }
}

impl Printer for Text {
    fn flow(
        &mut self,
        out: &mut dyn Write,
        ev: &FlowEvent,
        context: Option<&FlowContext>,
    ) -> io::Result<()> {
        self.line.clear();
        // The line was printed at the close; packets that trailed it are in the JSON
        // update, the conn.log row and the summary's counts.
        if let FlowEvent::Settled { .. } = ev {
            return Ok(());
        }
        text::write_flow(&mut self.line, ev.record(), context, self.style)?;
        out.write_all(&self.line)
    }

    fn ladder(&mut self, out: &mut dyn Write, ladder: &Ladder) -> io::Result<()> {
        ladder.write_text(out, self.style)
    }

    fn finding(&mut self, out: &mut dyn Write, f: &Finding) -> io::Result<()> {
        text::write_live_finding(out, f, self.style)
    }

    fn update(&mut self, out: &mut dyn Write, u: &Update) -> io::Result<()> {
        text::write_update(out, u, self.style)
    }

    fn finish(
        &mut self,
        out: &mut dyn Write,
        diagnosis: &Diagnosis,
        summary: &Summary<'_>,
    ) -> io::Result<()> {
        text::write_summary(out, summary, self.style)?;
        text::write_diagnosis(out, diagnosis, summary.live, self.style)
    }
}

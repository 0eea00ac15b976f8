//! `--live-summary`: no line per connection; a table redrawn once a second (the table
//! itself is [`report::live`](crate::report::live)'s), live findings kept for its "top
//! problem" line, then the text summary and diagnosis when the capture stops, on the
//! user's own screen.

use super::Printer;
use crate::diagnose::{Diagnosis, Finding};
use crate::flow::FlowEvent;
use crate::report::ladder::Ladder;
use crate::report::live::{LiveView, Redraw, Tick};
use crate::report::summary::Summary;
use crate::report::text::{self, Style};
use crate::report::FlowContext;
use std::io::{self, Write};

pub struct Live {
    view: LiveView,
    style: Style,
}

impl Live {
    pub fn new(redraw: Redraw, style: Style) -> Live {
        Live {
            view: LiveView::new(redraw),
            style,
        }
    }
}

impl Printer for Live {
    /// Pending notices of unanswered SYNs are counted whether `--only-problems` shows
    /// their flow or not (a stalled handshake's notice is no unanswered SYN).
    fn observe(&mut self, ev: &FlowEvent) {
        match ev {
            FlowEvent::Pending(r) if r.outcome == crate::flow::Outcome::Unanswered => {
                self.view.pending(r.id)
            }
            FlowEvent::Pending(_) => {}
            FlowEvent::Finished(r) => self.view.finished(r.id),
            FlowEvent::Settled { .. } => {}
        }
    }

    fn flow(
        &mut self,
        _out: &mut dyn Write,
        _ev: &FlowEvent,
        _context: Option<&FlowContext>,
    ) -> io::Result<()> {
        Ok(())
    }

    fn ladder(&mut self, _out: &mut dyn Write, _ladder: &Ladder) -> io::Result<()> {
        Ok(())
    }

    /// Shown as the table's top problem; the diagnosis at the end has them all.
    fn finding(&mut self, _out: &mut dyn Write, f: &Finding) -> io::Result<()> {
        self.view.finding(f);
        Ok(())
    }

    fn redraw(&mut self, out: &mut dyn Write, tick: &Tick) -> io::Result<()> {
        self.view.draw(out, tick, self.style)
    }

    fn finish(
        &mut self,
        out: &mut dyn Write,
        diagnosis: &Diagnosis,
        summary: &Summary<'_>,
    ) -> io::Result<()> {
        self.view.finish(out)?;
        text::write_summary(out, summary, self.style)?;
        text::write_diagnosis(out, diagnosis, summary.live, self.style)
    }
}

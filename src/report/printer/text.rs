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
    /// The last line was inside a storm (its `kernel` facts `summarised`): said where
    /// one begins and ends.
    in_storm: bool,
}

impl Text {
    pub fn new(style: Style) -> Text {
        Text {
            style,
            line: Vec::with_capacity(512),
            in_storm: false,
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
        let storm = context
            .and_then(|c| c.kernel.as_ref())
            .is_some_and(|k| k.summarised);
        if storm != self.in_storm {
            self.in_storm = storm;
            text::write_storm_change(&mut self.line, storm, self.style)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::tests::record;
    use crate::flow::Outcome;
    use crate::kernel::KernelFacts;

    /// A refused connection's line, with the witness's facts (`storm`: inside one).
    fn line(printer: &mut Text, storm: bool) -> String {
        let ctx = FlowContext {
            kernel: Some(KernelFacts::quiet(storm)),
            ..FlowContext::default()
        };
        let ev = FlowEvent::Finished(record(Outcome::Refused, "127.0.0.1:61999"));
        let mut out = Vec::new();
        printer.flow(&mut out, &ev, Some(&ctx)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_storm_is_said_once_where_it_begins_and_once_where_it_ends_not_on_each_line() {
        let mut p = Text::new(Style { color: false });
        assert!(!line(&mut p, false).contains("storm"));
        let first = line(&mut p, true);
        assert!(
            first.starts_with("kernel: a storm of drops: the kernel counts them"),
            "{first}"
        );
        assert_eq!(first.lines().count(), 2, "the note, then the line: {first}");
        for _ in 0..3 {
            let inside = line(&mut p, true);
            assert!(!inside.contains("storm"), "{inside}");
        }
        let after = line(&mut p, false);
        assert!(after.starts_with("kernel: the storm is over"), "{after}");
    }
}

//! One printer per output format, behind one trait, as ripgrep's printers sit behind its
//! sink: the report stage hands each printer everything to print, in order, and the
//! printer alone decides how (or whether) its format shows it.
//!
//! Adding a format is one new file here (a type implementing [`Printer`]) and one arm in
//! [`printer_for`](super::printer_for), the only place a [`Format`](super::Format) is
//! matched to a printer.
//!
//! A printer lays out; it must not count (the counts arrive in a [`Tick`] or the
//! [`Summary`]), decide a flow's outcome or a finding, filter by `--only-problems` (the
//! report stage does), or know about threads. It writes to the `out` it is given and
//! never flushes for liveness: the report stage flushes.

use super::ladder::Ladder;
use super::live::Tick;
use super::summary::Summary;
use crate::decode::Timestamp;
use crate::diagnose::{Diagnosis, Finding, Update};
use crate::flow::FlowEvent;
use crate::report::FlowContext;
use std::io::{self, Write};

pub mod json;
pub mod live;
pub mod text;
pub mod zeek;

/// How one output format lays out a run. Methods are called in the order things
/// happened: flow events (each followed by its ladder, if drawn), live findings after
/// the lines of their batch, redraws, and [`finish`](Printer::finish) last, once.
pub trait Printer {
    /// A flow event shown to the user (`--only-problems` lets it through), with the
    /// processes behind the flow when they are known (live).
    fn flow(
        &mut self,
        out: &mut dyn Write,
        ev: &FlowEvent,
        context: Option<&FlowContext>,
    ) -> io::Result<()>;

    /// A connection's sequence diagram, right after its flow's line.
    fn ladder(&mut self, out: &mut dyn Write, ladder: &Ladder) -> io::Result<()>;

    /// A finding made certain during a live capture.
    fn finding(&mut self, out: &mut dyn Write, f: &Finding) -> io::Result<()>;

    /// Live: a fact that printed findings rested on changed (a listener started or
    /// stopped). A format that shows live findings must show this too: a finding is
    /// never left standing on facts that moved without a word.
    fn update(&mut self, _out: &mut dyn Write, _u: &Update) -> io::Result<()> {
        Ok(())
    }

    /// The final, ranked diagnosis (with the live findings it no longer repeats, and
    /// why) and the summary.
    fn finish(
        &mut self,
        out: &mut dyn Write,
        diagnosis: &Diagnosis,
        summary: &Summary<'_>,
    ) -> io::Result<()>;

    /// Every flow event, shown or not, before [`flow`](Printer::flow): for a view that
    /// keeps its own state (the live table's pending flows).
    fn observe(&mut self, _ev: &FlowEvent) {}

    /// `--live-summary`: a table is due.
    fn redraw(&mut self, _out: &mut dyn Write, _tick: &Tick) -> io::Result<()> {
        Ok(())
    }

    /// The capture's clock: a file's packet times, or the wall clock live.
    fn clock(&mut self, _ts: Timestamp) {}
}

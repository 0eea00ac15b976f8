//! The report stage: everything to print arrives here as [`Item`]s, in the order it
//! happened, and one [`Printer`] lays it out on one writer. Replay and live take this
//! same path; they differ only in how often the writer is flushed.
//!
//! The stage applies `--only-problems` to flow lines and flushes; it does not count,
//! diagnose, or know which thread runs it or how items reach it (the pipeline does).

use super::ladder::Ladder;
use super::live::Tick;
use super::printer::Printer;
use super::summary::Summary;
use super::{printer_for, Format, Style};
use crate::decode::{Endpoint, Timestamp};
use crate::diagnose::{Diagnosis, Finding, FlowProcesses, Update};
use crate::flow::FlowEvent;
use crate::kernel::KernelFacts;
use std::io::{self, Write};

/// One thing to print, in the order it happened.
// Flow items are nearly all of them: boxing theirs would allocate per line, so only the
// rare kinds are boxed and the size difference stays.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Item {
    /// A flow event, with what is known beside its packets (live).
    Flow(FlowEvent, Context),
    /// The sequence diagram of the flow whose [`Item::Flow`] came just before.
    Ladder(Box<Ladder>),
    /// A finding made certain during a live capture.
    Finding(Box<Finding>),
    /// Live: a fact printed findings rested on changed.
    Update(Box<Update>),
    /// `--live-summary`: a table is due.
    Redraw(Box<Tick>),
    /// The capture's clock moved (a file's packet time).
    Clock(Timestamp),
}

/// What is known about a line's connection beside its packets.
#[derive(Debug)]
pub enum Context {
    /// Nothing (a replay; live without the witness, processes or a port map).
    None,
    /// Only that the witness was attached and had nothing to say about it: most lines
    /// under a stream of connections, so not a box each (an allocation in the flow
    /// stage and a free in this one, a line: benches/witness.sh, synflood).
    KernelQuiet {
        /// It overlapped a storm ([`KernelFacts::summarised`]).
        summarised: bool,
    },
    Full(Box<FlowContext>),
}

/// The facts of [`Context::KernelQuiet`], shared.
static QUIET: FlowContext = FlowContext::kernel_quiet(false);
static QUIET_IN_STORM: FlowContext = FlowContext::kernel_quiet(true);

impl Context {
    /// As the printers take it.
    pub fn get(&self) -> Option<&FlowContext> {
        match self {
            Context::None => None,
            Context::KernelQuiet { summarised: false } => Some(&QUIET),
            Context::KernelQuiet { summarised: true } => Some(&QUIET_IN_STORM),
            Context::Full(c) => Some(c),
        }
    }
}

/// What is known about a connection beside its packets, live.
#[derive(Debug, Default)]
pub struct FlowContext {
    /// The processes behind its sockets.
    pub processes: Option<FlowProcesses>,
    /// The kernel's word on it (the witness was attached; empty when it saw nothing).
    pub kernel: Option<KernelFacts>,
    /// Where it went past this host, as far as portsniff knows.
    pub onward: Onward,
}

/// Where a connection addressed to the watched port went past this host, as far as
/// portsniff knows: one value, so a line cannot claim both a backend and an unread map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Onward {
    /// Nothing says it went on (the usual case).
    #[default]
    Here,
    /// A port map portsniff read (a DNAT rule) forwarded it to its backend.
    Translated(Translated),
    /// Refused at one of this host's own addresses by a RST this host's TCP did not send
    /// (the witness saw none): the SYN went on through a port map portsniff did not read
    /// (an nft dnat map, IPVS, a REDIRECT) and was refused where it went.
    Unread,
}

impl Onward {
    /// The backend a port map portsniff read sent it to.
    pub fn translated(self) -> Option<Translated> {
        match self {
            Onward::Translated(t) => Some(t),
            Onward::Here | Onward::Unread => None,
        }
    }
}

impl FlowContext {
    const fn kernel_quiet(summarised: bool) -> FlowContext {
        FlowContext {
            processes: None,
            kernel: Some(KernelFacts::quiet(summarised)),
            onward: Onward::Here,
        }
    }
}

/// A connection to the watched port that a DNAT rule forwarded to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The port the client addressed.
    pub port: u16,
    /// Where the connection really went.
    pub to: Endpoint,
}

impl Translated {
    /// `host:P ⇒ backend:Q`; `*:P` when only the translated packets were seen (a local
    /// client's, translated before any capture point).
    pub fn describe(&self, server: Endpoint) -> String {
        if server == self.to {
            format!("*:{} ⇒ {}", self.port, self.to)
        } else {
            format!("{server} ⇒ {}", self.to)
        }
    }
}

/// The printer chosen for the run and the writer it prints on.
pub struct Report<W: Write> {
    out: W,
    printer: Box<dyn Printer>,
    only_problems: bool,
}

impl<W: Write> Report<W> {
    pub fn new(out: W, format: Format, style: Style, only_problems: bool) -> Report<W> {
        Report {
            out,
            printer: printer_for(format, style),
            only_problems,
        }
    }

    /// Prints one item.
    pub fn print(&mut self, item: &Item) -> io::Result<()> {
        match item {
            Item::Flow(ev, context) => {
                self.printer.observe(ev);
                if self.only_problems && !ev.record().outcome.is_problem() {
                    return Ok(());
                }
                self.printer.flow(&mut self.out, ev, context.get())
            }
            Item::Ladder(l) => self.printer.ladder(&mut self.out, l),
            // Printed at once even in a replay: a finding is rare and worth seeing.
            Item::Finding(f) => {
                self.printer.finding(&mut self.out, f)?;
                self.out.flush()
            }
            Item::Update(u) => {
                self.printer.update(&mut self.out, u)?;
                self.out.flush()
            }
            Item::Redraw(tick) => {
                self.printer.redraw(&mut self.out, tick)?;
                self.out.flush()
            }
            Item::Clock(ts) => {
                self.printer.clock(*ts);
                Ok(())
            }
        }
    }

    /// The capture's clock, outside the items: the wall clock at a live capture's start
    /// and end.
    pub fn clock(&mut self, ts: Timestamp) {
        self.printer.clock(ts);
    }

    /// The final, ranked diagnosis and the summary, then everything flushed.
    pub fn finish(&mut self, diagnosis: &Diagnosis, s: &Summary<'_>) -> io::Result<()> {
        self.printer.finish(&mut self.out, diagnosis, s)?;
        self.out.flush()
    }

    /// Pushes what is buffered to the writer: live and from a stream (`-r -` from a
    /// pipe), lines go out whenever the report stage has caught up. Flow lines and
    /// ladders themselves never flush: a write() per line was two thirds of the report
    /// stage's CPU under a flood of one-line connections written to a file (a replay
    /// flushes only when the buffer fills).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

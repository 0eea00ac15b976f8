//! Report: flow events and the summary, as text for people or JSON lines for scripts, or
//! the final flows as a Zeek conn.log; and the packets of the port's flows as a pcap file
//! (`-w`).
//!
//! This stage consumes what the flow stage produced; it never looks at packets' headers
//! and never changes a flow's outcome or decides a finding.
//!
//! - [`stage`]: the report stage, where every [`Item`] to print arrives in order.
//! - [`printer`]: one [`Printer`] per format; [`printer_for`] picks it.
//! - [`text`], [`json`], [`zeek`], [`live`], [`ladder`]: how each thing is written in
//!   each format; [`summary`]: what the summary holds; [`expert`]: Wireshark's flags.
//! - [`pcap_writer`] (`-w`) and [`progress`] (the replay's bar on stderr).

pub mod expert;
pub mod json;
pub mod ladder;
pub mod live;
pub mod metrics;
pub mod pcap_writer;
pub mod printer;
pub mod progress;
pub mod stage;
pub mod summary;
pub mod text;
pub mod zeek;

pub use pcap_writer::PcapWriter;
pub use printer::Printer;
pub use stage::{Context, FlowContext, Item, Onward, Report, Translated};
pub use summary::{KernelEventsView, Summary};
pub use text::Style;

/// What a forced exit (a second Ctrl-C, which ends the process at once) must still undo:
/// the `-w` capture still under its temporary name (renamed into place with what it
/// holds), and the screen `--live-summary` took.
pub fn undo_on_forced_exit() {
    pcap_writer::keep_unfinished();
    live::restore_terminal();
}

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

    /// Whether the output is a table redrawn on a [`live::Cadence`].
    pub fn redraws(self) -> bool {
        matches!(self, Format::LiveSummary(_))
    }
}

/// The printer for `format`: the one place a format is matched to its printer.
pub fn printer_for(format: Format, style: Style) -> Box<dyn Printer> {
    match format {
        Format::Text => Box::new(printer::text::Text::new(style)),
        Format::Json => Box::new(printer::json::Json::new()),
        Format::LiveSummary(redraw) => Box::new(printer::live::Live::new(redraw, style)),
        Format::Zeek => Box::new(printer::zeek::Zeek::tsv()),
        Format::ZeekJson => Box::new(printer::zeek::Zeek::json()),
    }
}

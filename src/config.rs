//! `Config`: the validated run configuration, the one value every stage is built from,
//! and `Terminal`, the facts about the process's surroundings that decide how output is
//! presented.
//!
//! Both are plain data. Nothing here reads the terminal, the environment or a file:
//! `main` reads the [`Terminal`] facts once and passes them in, so a `Config` built by a
//! test or a fuzz target is the same whether or not it runs on a terminal.

use crate::capture::{Limits, Source};
use crate::decode::TunnelPorts;
use crate::report::pcap_writer::{PcapOutput, Rotation};
use crate::report::progress::Bar;
use crate::report::{Format, Style};
use std::time::Duration;

/// A validated run configuration (built by [`crate::cli`] from the arguments and the
/// [`Terminal`] facts, or by tests directly).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where packets come from: a live interface (`-i`, with its kernel buffer and
    /// snaplen already resolved) or a capture file (`-r`, `None` for standard input).
    pub source: Source,
    /// `--port`: the TCP port watched; the endpoint on it is the server.
    pub port: u16,
    /// `-c` and `--duration`: when to stop reading before the end.
    pub limits: Limits,
    /// What the report is written as (`--format`, `--json`, `--live-summary`, the last
    /// already resolved to redraw in place or print snapshots).
    pub format: Format,
    /// Presentation of the text output: colour already decided from `--color`, the
    /// terminal and `NO_COLOR`.
    pub style: Style,
    /// `--only-problems`: report (and write with `-w`) only connections that did not
    /// end well.
    pub only_problems: bool,
    /// `-Z USER`: who to become once the capture is open.
    pub run_as: Option<String>,
    /// Name processes behind sockets (live); off with `--no-attribution`.
    pub attribution: bool,
    /// Live: attach the kernel witness; off with `--no-kernel-events`.
    pub kernel_events: bool,
    /// `--ladder` (`Some(None)`: every problem flow) or `--flow PORT` (`Some(Some(port))`).
    pub ladder: Option<Option<u16>>,
    /// `-w FILE`: also write the port's packets to this pcap file (or to standard
    /// output, `-w -`; the report then goes to stderr).
    pub write: Option<PcapOutput>,
    /// `-C`, `-G`, `-W`: how the `-w` file is rotated (regular files only).
    pub rotation: Rotation,
    /// `--max-flows`: connections tracked at once before the least recently active are
    /// evicted.
    pub max_flows: usize,
    /// `--syn-timeout`: live, how long a SYN may go unanswered before it is reported.
    pub syn_timeout: Duration,
    /// The trailing pcap-filter expression that narrows the capture, as tcpdump's.
    pub filter_expr: Option<String>,
    /// The UDP ports opened as VXLAN and Geneve: the defaults and `--vxlan-port`,
    /// `--geneve-port`.
    pub tunnel_ports: TunnelPorts,
    /// The replay's progress bar on stderr.
    pub progress: Bar,
    /// `--metrics`: where to serve OpenMetrics for Prometheus (live only).
    pub metrics: Option<std::net::SocketAddr>,
}

/// What the process's surroundings say about presentation, read once by `main`
/// (`IsTerminal`, `NO_COLOR`) and handed to the argument conversion.
///
/// The default is what a pipe sees: no terminal on either stream and no `NO_COLOR`;
/// tests and fuzz targets get that unless they ask for a terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terminal {
    /// Standard output is a terminal: colour by default, and `--live-summary` redraws
    /// in place instead of printing snapshots.
    pub stdout_is_terminal: bool,
    /// Standard error is a terminal: a replay may draw its progress bar there, and logs
    /// may be coloured.
    pub stderr_is_terminal: bool,
    /// `NO_COLOR` is set to something non-empty (<https://no-color.org>): no colour
    /// unless `--color always` asks for it.
    pub no_color: bool,
}

impl Terminal {
    /// Both streams are pipes or files and `NO_COLOR` is unset.
    pub const PIPES: Terminal = Terminal {
        stdout_is_terminal: false,
        stderr_is_terminal: false,
        no_color: false,
    };

    /// Colour in the log lines on stderr: only on a terminal, and never with `NO_COLOR`.
    pub fn color_in_logs(&self) -> bool {
        self.stderr_is_terminal && !self.no_color
    }
}

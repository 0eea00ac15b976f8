//! The command line: clap definitions and their translation into a validated
//! [`Config`].
//!
//! No I/O here beyond libpcap's version string for `--version`: whether stdout and
//! stderr are terminals and whether `NO_COLOR` is set come in as a [`Terminal`], read
//! by `main`. Nothing here exits the process either: usage errors go back to `main`.

use crate::capture::{self, Limits, Source};
use crate::config::{Config, Terminal};
use crate::decode::TunnelPorts;
use crate::docs::Generate;
use crate::flow::FlowConfig;
use crate::report::live::Redraw;
use crate::report::pcap_writer::{PcapOutput, Rotation};
use crate::report::progress::Bar;
use crate::report::{Format, Style};
use clap::{ArgGroup, CommandFactory, FromArgMatches, Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const AFTER_HELP: &str = "\
Examples:
  portsniff -i lo --port 61999                   watch connections to port 61999 on
                                                 loopback until Ctrl-C
  portsniff -r saved.pcap --port 61999           explain every connection in a capture file
  portsniff -i any --port 5432 --json | jq .     JSON lines for scripts
  portsniff -i lo --port 61999 'host 127.0.0.1'  only what a pcap-filter expression matches
  portsniff -D                                   the interfaces to capture on
  portsniff -i lo --port 8080 --live-summary     a one-screen table redrawn every second
  portsniff -r saved.pcap --port 443 --format zeek | zeek-cut id.orig_h conn_state
                                                 a Zeek conn.log for Zeek tools

Exit status: 0 no problem seen, 1 problem connections seen (unanswered, refused,
unreachable, handshake_incomplete, reset), 2 error.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// `--format`: what the report is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Zeek,
    ZeekJson,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Format {
        match f {
            OutputFormat::Text => Format::Text,
            OutputFormat::Json => Format::Json,
            OutputFormat::Zeek => Format::Zeek,
            OutputFormat::ZeekJson => Format::ZeekJson,
        }
    }
}

/// Watch one TCP port and tell, connection by connection, why connections to it fail.
#[derive(Debug, Parser)]
#[command(name = "portsniff", version, about, after_help = AFTER_HELP)]
#[command(
    override_usage = "portsniff (-i IFACE | -r FILE) --port PORT [OPTIONS] [EXPRESSION]...\n       portsniff -D"
)]
#[command(group(ArgGroup::new("input").args(["interface", "read"])))]
pub struct Cli {
    /// Capture live on this interface (e.g. lo, eth0, any). Needs root or cap_net_raw.
    #[arg(short = 'i', long = "interface", value_name = "IFACE",
          required_unless_present_any = ["read", "list_interfaces", "generate"])]
    pub interface: Option<String>,

    /// Read packets from a pcap or pcapng file; `-` reads standard input.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Option<PathBuf>,

    /// The TCP port to watch; the endpoint on it is the server.
    // Negative numbers are taken as values, so `--port -1` is told the range rather than
    // given clap's tip to write `-- -1`, which then fails too. Required unless -D,
    // checked in `check` to point at --port when the expression names a port.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..=65535))]
    pub port: Option<u16>,

    /// Only packets this pcap-filter expression also matches (tcpdump's syntax, e.g.
    /// 'host 127.0.0.1'; several words are joined with spaces, as tcpdump does).
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,

    /// Also open UDP to this port as VXLAN, besides 4789 and Linux's default 8472 (as
    /// Wireshark's "Decode As"); repeat it or separate ports with commas.
    #[arg(long = "vxlan-port", value_name = "PORT", value_delimiter = ',',
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..=65535))]
    pub vxlan_ports: Vec<u16>,

    /// Also open UDP to this port as Geneve, besides 6081; repeat it or separate ports
    /// with commas.
    #[arg(long = "geneve-port", value_name = "PORT", value_delimiter = ',',
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..=65535))]
    pub geneve_ports: Vec<u16>,

    /// List the interfaces to capture on, numbered as tcpdump -D does, and exit.
    #[arg(short = 'D', long = "list-interfaces", exclusive = true)]
    pub list_interfaces: bool,

    /// Write the man page (man) or a shell's completion script to stdout, and exit:
    /// `portsniff --generate man | man -l -`.
    #[arg(long, value_enum, value_name = "WHAT", exclusive = true)]
    pub generate: Option<Generate>,

    /// Live: serve OpenMetrics for Prometheus at http://ADDR:PORT/metrics (a bare PORT
    /// means 127.0.0.1:PORT). Counts by outcome, resets, SYN retransmits, handshake RTT
    /// and duration histograms, findings, drops; no client address is a label.
    #[arg(long, value_name = "ADDR:PORT", value_parser = metrics_addr)]
    pub metrics: Option<SocketAddr>,

    /// Accepted for tcpdump habits (-n, -nn): portsniff never turns addresses or ports
    /// into names. (A host name in the expression is looked up once, by libpcap.)
    #[arg(short = 'n', action = clap::ArgAction::Count)]
    pub numeric: u8,

    /// Also write the packets of the port's connections to this pcap file.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// With -w: before writing a packet, if the file is larger than MB millions of bytes,
    /// close it and open the next (FILE, FILE1, FILE2 and so on), as tcpdump -C.
    #[arg(short = 'C', value_name = "MB", requires = "write",
          value_parser = clap::value_parser!(u64).range(1..=u64::MAX / 1_000_000))]
    pub file_size: Option<u64>,

    /// With -w: start a new file every SECS seconds of packet time, its name FILE as a
    /// strftime format (e.g. problems-%Y%m%d-%H%M.pcap), as tcpdump -G.
    #[arg(short = 'G', value_name = "SECS", requires = "write",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rotate_seconds: Option<u32>,

    /// With -C: keep a ring of N files (FILE0 to FILE{N-1}), overwriting the oldest; with -G alone:
    /// stop after N files, as tcpdump -W.
    #[arg(short = 'W', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub file_count: Option<u32>,

    /// Stop after reading this many packets.
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop a live capture after this many seconds.
    #[arg(long, value_name = "SECS", conflicts_with = "read", value_parser = positive_secs)]
    pub duration: Option<f64>,

    /// Kernel capture buffer size in KiB (like tcpdump -B) [default: 8192, 32768 with -w].
    #[arg(short = 'B', long = "buffer-size", value_name = "KiB", conflicts_with = "read",
          value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub buffer_size: Option<u32>,

    /// Bytes captured per packet (like tcpdump -s; 0 means 262144) [default: 256, only the
    /// headers; 262144 with -w]. Payload sizes come from the IP header either way.
    #[arg(short = 's', long = "snaplen", value_name = "BYTES",
          conflicts_with = "read", value_parser = clap::value_parser!(u32).range(0..=262_144))]
    pub snaplen: Option<u32>,

    /// One JSON object per line instead of text (the same as --format json).
    #[arg(long)]
    pub json: bool,

    /// Output: text, json (JSON lines), zeek (a Zeek conn.log, TSV, for zeek-cut) or
    /// zeek-json (a conn.log as Zeek's JSON lines) [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,

    /// Draw each problem connection's first packets as a sequence diagram (client left,
    /// server right, seq/ack relative, times from the first packet).
    #[arg(long)]
    pub ladder: bool,

    /// Draw the ladder of the connection(s) from this client port, whatever the outcome.
    #[arg(long, value_name = "CLIENT_PORT", value_parser = clap::value_parser!(u16).range(1..=65535))]
    pub flow: Option<u16>,

    /// Report (and write with -w) only problem connections: not closed or established.
    #[arg(long)]
    pub only_problems: bool,

    /// Live: report a SYN unanswered after this many seconds, while the client may retry.
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = positive_secs)]
    pub syn_timeout: f64,

    /// Most connections tracked at once; the least recently active are evicted beyond it.
    #[arg(long, value_name = "N", default_value_t = FlowConfig::DEFAULT_MAX_FLOWS as u64,
          value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    pub max_flows: u64,

    /// After opening the capture, run as this user (like tcpdump -Z). Started through sudo,
    /// portsniff switches to the invoking user by default.
    #[arg(short = 'Z', long = "relinquish-privileges", value_name = "USER")]
    pub user: Option<String>,

    /// Do not name the processes behind sockets: keep no capability at all once the capture
    /// is open (attribution needs CAP_SYS_PTRACE to read other users' /proc/PID/fd).
    #[arg(long)]
    pub no_attribution: bool,

    /// Live: do not load the kernel witness (a BPF program on the kernel's drop, reset and
    /// socket-state tracepoints that gives each connection the kernel's own reasons).
    /// Findings are then inferred from packets and /proc alone.
    #[arg(long)]
    pub no_kernel_events: bool,

    /// Live: instead of a line per connection, redraw a one-screen table every second
    /// (outcomes and rates, handshake RTT, top problem, packets and drops); on a pipe,
    /// one snapshot a second separated by blank lines. The summary still ends the run.
    #[arg(long, conflicts_with_all = ["read", "json", "format", "ladder", "flow"])]
    pub live_summary: bool,

    /// Colour the text output: auto (terminal and no NO_COLOR), always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--metrics`: `ADDR:PORT`, `[V6ADDR]:PORT`, or a bare port on IPv4 loopback, so that
/// nothing is exposed beyond the machine unless an address says so.
fn metrics_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("{s:?} is not ADDR:PORT (e.g. 127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464) or a port")
    })
}

fn positive_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(v)
    } else {
        Err(format!("{s:?} must be a positive number of seconds"))
    }
}

/// Colour on a terminal unless `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>); `--color` overrides; JSON and conn.logs never.
fn use_color(choice: ColorChoice, not_text: bool, no_color_env: bool, terminal: bool) -> bool {
    match choice {
        _ if not_text => false,
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color_env && terminal,
    }
}

/// The command line with its run-time `--version`: portsniff's version and the libpcap
/// it runs on, which may not be the one it was built against.
pub fn command() -> clap::Command {
    Cli::command().version(format!(
        "{}\n{}",
        env!("CARGO_PKG_VERSION"),
        capture::libpcap_version()
    ))
}

/// A progress bar only for a person watching: a replay of a named file (standard input
/// has no known length), text output, and stderr on a terminal.
fn progress_bar(
    source: &Source,
    format: Format,
    stderr_terminal: bool,
    stdout_terminal: bool,
) -> Bar {
    match (source, format) {
        (Source::File(Some(_)), Format::Text) if stderr_terminal => Bar::Stderr { stdout_terminal },
        _ => Bar::Off,
    }
}

impl Cli {
    /// Parses the process's arguments. The error is a usage error, or the `--help` or
    /// `--version` text: `clap::Error::exit` prints it with its exit status.
    pub fn parse_args() -> Result<Cli, clap::Error> {
        let mut cmd = command();
        let matches = cmd.clone().try_get_matches()?;
        Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
    }

    /// The output format: `--json` is `--format json`.
    fn output_format(&self) -> Format {
        match (self.json, self.format) {
            (_, Some(f)) => f.into(),
            (true, None) => Format::Json,
            (false, None) => Format::Text,
        }
    }

    /// Checks between arguments that clap's attributes cannot express; the error exits
    /// with status 2 like every usage error.
    pub fn check(&self) -> Result<(), clap::Error> {
        use clap::{error::ErrorKind, CommandFactory};
        if self.json && self.format.is_some_and(|f| f != OutputFormat::Json) {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--json is --format json: it cannot be combined with another --format",
            ));
        }
        // A file is read to its end in about a second, before any scrape could come: a
        // replay's counts are its summary (--json for scripts).
        if self.metrics.is_some() && self.read.is_some() {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--metrics serves a live capture (-i) to Prometheus: a file (-r) is over before a \
                 scrape could come; its counts are in the summary (--json for scripts)",
            ));
        }
        if self.port.is_none() && !self.list_interfaces && self.generate.is_none() {
            let names_a_port = self
                .expression
                .iter()
                .any(|w| w.split_whitespace().any(|w| w == "port"));
            let hint = if names_a_port {
                ": the port to watch is given with --port (the expression only narrows the \
                 capture), e.g. portsniff -r F --port 61999"
            } else {
                ""
            };
            return Err(Cli::command().error(
                ErrorKind::MissingRequiredArgument,
                format!("the following required argument was not provided: --port <PORT>{hint}"),
            ));
        }
        if let Err(why) = TunnelPorts::with(&self.vxlan_ports, &self.geneve_ports) {
            return Err(Cli::command().error(ErrorKind::ArgumentConflict, why));
        }
        if self.file_count.is_some() && self.file_size.is_none() && self.rotate_seconds.is_none() {
            return Err(Cli::command().error(
                ErrorKind::MissingRequiredArgument,
                "-W N counts the files of -C or -G: give one of them too, e.g. -C 100 -W 10",
            ));
        }
        let rotates = self.file_size.is_some() || self.rotate_seconds.is_some();
        if rotates && self.write.as_deref().is_some_and(|w| w.as_os_str() == "-") {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "-C and -G write a series of files: standard output (-w -) cannot be rotated; \
                 name a file, e.g. -w problems.pcap",
            ));
        }
        if self.output_format().is_zeek() && (self.ladder || self.flow.is_some()) {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--ladder and --flow draw in text or JSON: a Zeek conn.log has no place for them",
            ));
        }
        Ok(())
    }

    /// The configuration as if both streams were pipes and `NO_COLOR` unset
    /// ([`Terminal::PIPES`]): the same on every machine, for tests and fuzz targets.
    pub fn into_config(self) -> Config {
        self.into_config_with(Terminal::PIPES)
    }

    /// The configuration for a process whose surroundings are `terminal`: colour, the
    /// progress bar and how `--live-summary` redraws depend on it.
    pub fn into_config_with(self, terminal: Terminal) -> Config {
        let chosen = self.output_format();
        let source = match (self.interface, self.read) {
            (Some(interface), _) => Source::Live {
                interface,
                buffer_bytes: match (self.buffer_size, &self.write) {
                    (Some(kib), _) => kib.saturating_mul(1024),
                    (None, None) => capture::HEADERS_BUFFER_BYTES,
                    (None, Some(_)) => capture::FULL_BUFFER_BYTES,
                },
                snaplen: match (self.snaplen, &self.write) {
                    (Some(0), _) => capture::FULL_SNAPLEN,
                    (Some(n), _) => n,
                    (None, None) => capture::HEADERS_SNAPLEN,
                    (None, Some(_)) => capture::FULL_SNAPLEN,
                },
            },
            (None, Some(path)) if path.as_os_str() == "-" => Source::File(None),
            (None, Some(path)) => Source::File(Some(path)),
            (None, None) => unreachable!("clap requires -i or -r"),
        };
        let format = match self.live_summary {
            true if terminal.stdout_is_terminal => Format::LiveSummary(Redraw::InPlace),
            true => Format::LiveSummary(Redraw::Snapshots),
            false => chosen,
        };
        Config {
            progress: progress_bar(
                &source,
                format,
                terminal.stderr_is_terminal,
                terminal.stdout_is_terminal,
            ),
            source,
            port: self
                .port
                .unwrap_or_else(|| unreachable!("clap requires --port unless -D")),
            limits: Limits {
                max_packets: self.count,
                duration: self.duration.map(Duration::from_secs_f64),
            },
            format,
            style: Style {
                color: use_color(
                    self.color,
                    format != Format::Text,
                    terminal.no_color,
                    terminal.stdout_is_terminal,
                ),
            },
            only_problems: self.only_problems,
            run_as: self.user,
            attribution: !self.no_attribution,
            kernel_events: !self.no_kernel_events,
            ladder: (self.ladder || self.flow.is_some()).then_some(self.flow),
            write: self.write.map(|p| match p.as_os_str() == "-" {
                true => PcapOutput::Stdout,
                false => PcapOutput::File(p),
            }),
            rotation: Rotation {
                max_bytes: self.file_size.map(|mb| mb * 1_000_000),
                seconds: self.rotate_seconds,
                files: self.file_count,
            },
            max_flows: usize::try_from(self.max_flows).unwrap_or(usize::MAX),
            syn_timeout: Duration::from_secs_f64(self.syn_timeout),
            filter_expr: (!self.expression.is_empty()).then(|| self.expression.join(" ")),
            // Cli::check refuses the ports `with` fails for; unchecked, the defaults.
            tunnel_ports: TunnelPorts::with(&self.vxlan_ports, &self.geneve_ports)
                .unwrap_or_default(),
            metrics: self.metrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_turns_colour_off_on_a_terminal_and_always_overrides_it() {
        assert!(use_color(ColorChoice::Auto, false, false, true));
        assert!(
            !use_color(ColorChoice::Auto, false, true, true),
            "NO_COLOR set"
        );
        assert!(!use_color(ColorChoice::Auto, false, false, false), "a pipe");
        assert!(use_color(ColorChoice::Always, false, true, false));
        assert!(!use_color(ColorChoice::Never, false, false, true));
        assert!(
            !use_color(ColorChoice::Always, true, false, true),
            "never in JSON"
        );
    }

    #[test]
    fn progress_bar_only_for_a_named_file_in_text_with_stderr_on_a_terminal() {
        let file = Source::File(Some(PathBuf::from("big.pcap")));
        let on = Bar::Stderr {
            stdout_terminal: false,
        };
        assert_eq!(progress_bar(&file, Format::Text, true, false), on);
        assert_eq!(
            progress_bar(&file, Format::Text, false, false),
            Bar::Off,
            "stderr piped"
        );
        assert_eq!(
            progress_bar(&file, Format::Json, true, false),
            Bar::Off,
            "JSON"
        );
        assert_eq!(
            progress_bar(&Source::File(None), Format::Text, true, false),
            Bar::Off,
            "standard input"
        );
        let live = Source::Live {
            interface: "lo".to_string(),
            buffer_bytes: 1 << 20,
            snaplen: 256,
        };
        assert_eq!(
            progress_bar(&live, Format::Text, true, true),
            Bar::Off,
            "live"
        );
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("portsniff").chain(args.iter().copied()))
            .expect("valid arguments")
    }

    const TERMINAL: Terminal = Terminal {
        stdout_is_terminal: true,
        stderr_is_terminal: true,
        no_color: false,
    };

    #[test]
    fn a_replay_on_a_terminal_is_coloured_with_a_progress_bar_around_the_lines() {
        let cfg = parse(&["-r", "big.pcap", "--port", "80"]).into_config_with(TERMINAL);
        assert_eq!(cfg.style, Style { color: true });
        assert_eq!(
            cfg.progress,
            Bar::Stderr {
                stdout_terminal: true
            }
        );
    }

    #[test]
    fn a_replay_into_pipes_has_no_colour_and_no_progress_bar() {
        let cfg = parse(&["-r", "big.pcap", "--port", "80"]).into_config_with(Terminal::PIPES);
        assert_eq!(cfg.style, Style { color: false });
        assert_eq!(cfg.progress, Bar::Off);
    }

    #[test]
    fn no_color_on_a_terminal_is_obeyed_unless_color_always() {
        let no_color = Terminal {
            no_color: true,
            ..TERMINAL
        };
        let auto = parse(&["-r", "f.pcap", "--port", "80"]).into_config_with(no_color);
        assert_eq!(auto.style, Style { color: false });
        let always = parse(&["-r", "f.pcap", "--port", "80", "--color", "always"])
            .into_config_with(no_color);
        assert_eq!(always.style, Style { color: true });
    }

    #[test]
    fn live_summary_redraws_in_place_on_a_terminal_and_prints_snapshots_into_a_pipe() {
        let args = ["-i", "lo", "--port", "80", "--live-summary"];
        assert_eq!(
            parse(&args).into_config_with(TERMINAL).format,
            Format::LiveSummary(Redraw::InPlace)
        );
        assert_eq!(
            parse(&args).into_config_with(Terminal::PIPES).format,
            Format::LiveSummary(Redraw::Snapshots)
        );
    }

    #[test]
    fn metrics_on_a_bare_port_listens_on_loopback_only() {
        assert_eq!(
            metrics_addr("9464"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert_eq!(metrics_addr("[::1]:9464").map(|a| a.is_ipv6()), Ok(true));
        assert!(metrics_addr("localhost:9464").is_err());
        let replay = parse(&["-r", "f.pcap", "--port", "80", "--metrics", "9464"]);
        assert!(
            replay.check().is_err(),
            "a replay is over before any scrape"
        );
    }

    #[test]
    fn vxlan_and_geneve_ports_repeat_or_take_commas_and_reach_the_config() {
        let cli = parse(&[
            "-r",
            "f.pcap",
            "--port",
            "80",
            "--vxlan-port",
            "14789,4790",
            "--vxlan-port",
            "9",
            "--geneve-port",
            "16081",
        ]);
        assert!(cli.check().is_ok());
        assert_eq!(cli.vxlan_ports, [14789, 4790, 9]);
        assert_eq!(
            cli.into_config().tunnel_ports,
            TunnelPorts::with(&[14789, 4790, 9], &[16081]).unwrap()
        );
    }

    #[test]
    fn a_bad_tunnel_port_is_a_usage_error_that_names_the_option() {
        for bad in ["0", "65536", "vxlan", "-1"] {
            let err =
                Cli::try_parse_from(["portsniff", "-r", "f", "--port", "80", "--vxlan-port", bad])
                    .unwrap_err()
                    .to_string();
            assert!(err.contains("--vxlan-port <PORT>"), "{bad}: {err}");
        }
        let both = parse(&[
            "-r",
            "f",
            "--port",
            "80",
            "--vxlan-port",
            "5000",
            "--geneve-port",
            "5000",
        ]);
        let err = both.check().unwrap_err().to_string();
        assert!(err.contains("port 5000 is named both"), "{err}");
    }

    #[test]
    fn into_config_is_the_pipes_configuration_wherever_it_runs() {
        let args = ["-r", "f.pcap", "--port", "80"];
        let plain = parse(&args).into_config();
        let pipes = parse(&args).into_config_with(Terminal::PIPES);
        assert_eq!(
            (plain.format, plain.style, plain.progress),
            (pipes.format, pipes.style, pipes.progress)
        );
    }
}

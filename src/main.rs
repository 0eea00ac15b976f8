//! The `portsniff` binary, kept thin: read the terminal and environment facts, parse the
//! arguments, run the library, print errors (in [`report`], the one place), and map the
//! result to an exit status (0 nothing wrong, 1 problem connections seen, 2 error, 130
//! after a second Ctrl-C).

use portsniff::cli::Cli;
use portsniff::{Config, Error, PcapOutput, RunResult, Source, Terminal};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const EXIT_PROBLEMS: u8 = 1;
const EXIT_ERROR: u8 = 2;
/// 128 + SIGINT, what shells expect of a program ended by Ctrl-C.
const EXIT_INTERRUPTED: i32 = 130;

/// The only place the process's surroundings are read.
fn terminal() -> Terminal {
    Terminal {
        stdout_is_terminal: io::stdout().is_terminal(),
        stderr_is_terminal: io::stderr().is_terminal(),
        // Set to anything non-empty (https://no-color.org).
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    }
}

/// Prints an error the one way every error is printed: `portsniff: error: ` and the
/// message, then its hint lines. The messages already name their cause where it reads
/// best (after a colon, in parentheses), so the `source()` chain is not printed again.
fn report(e: &Error) -> ExitCode {
    let mut text = format!("portsniff: error: {e}");
    if let Some(hint) = e.hint() {
        text.push_str("\nhint: ");
        text.push_str(&hint);
    }
    eprintln!("{text}");
    ExitCode::from(EXIT_ERROR)
}

fn init_logging(verbose: u8, terminal: Terminal) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal.color_in_logs())
        .with_writer(io::stderr)
        .with_target(false)
        .init();
}

/// `-D`: the interfaces, one per line on stdout, as `tcpdump -D` prints them.
fn list_interfaces() -> Result<(), Error> {
    let lines = portsniff::interface_lines()?;
    let mut out = io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            break; // `| head`: stop quietly.
        }
    }
    Ok(())
}

/// tcpdump's closing lines for a live capture, on stderr, plus portsniff's own drops.
fn print_capture_stats(result: &RunResult) {
    let kernel = result.kernel.unwrap_or_default();
    eprintln!("{} packets captured", result.captured);
    eprintln!("{} packets received by filter", kernel.received);
    eprintln!("{} packets dropped by kernel", kernel.dropped);
    eprintln!("{} packets dropped by portsniff", result.internal_dropped);
}

/// A second Ctrl-C exits at once: the `-w` file keeps what reached it (whole records),
/// and the screen that `--live-summary` took is given back.
fn on_forced_exit() -> ! {
    portsniff::undo_on_forced_exit();
    std::process::exit(EXIT_INTERRUPTED);
}

/// Opens the capture, gives up privileges, and runs to the end.
fn run(config: &Config) -> Result<RunResult, Error> {
    let prepared = portsniff::prepare(config)?;
    // The capture is open: give up what is no longer needed before reading a single
    // packet, and before any other thread exists (capabilities are per thread).
    let plan = portsniff::plan_privileges(config.run_as.as_deref(), config.attribution)?;
    // A -w file the user we become could not move into place at the end fails now,
    // before a single packet is read (and while its temporary file can still be removed).
    prepared.check_output(plan.become_user.as_ref())?;
    portsniff::relinquish(&plan, prepared.created_file().as_deref())?;
    let stop = Arc::new(AtomicBool::new(false));
    portsniff::install_stop_handler(Arc::clone(&stop), on_forced_exit)?;
    // The tcpdump-style banner, on stderr once the capture is really open: scripts and
    // tests wait for it before they start traffic.
    match &config.source {
        Source::Live { interface, .. } => eprintln!(
            "portsniff: listening on {interface}, link-type {}, port {} (Ctrl-C to stop)",
            prepared.link_name(),
            config.port
        ),
        source => eprintln!(
            "portsniff: reading from {}, link-type {}, port {}",
            source.name(),
            prepared.link_name(),
            config.port
        ),
    }
    if let Some((snaplen, v4, v6)) = prepared.snaplen_cuts_headers() {
        let cut = if snaplen < v4 {
            "every TCP packet"
        } else {
            "TCP packets over IPv6"
        };
        eprintln!(
            "portsniff: warning: -s {snaplen} cuts {cut} inside the TCP/IP headers on {}: a TCP \
             packet's headers take {v4} bytes over IPv4 and {v6} over IPv6; packets cut there \
             reach no connection and are counted as truncated (-s 96 or more keeps them)",
            prepared.link_name()
        );
    }
    // Said once: what this run cannot tell, and why.
    if let (true, Some(why)) = (config.source.is_live(), prepared.kernel_events_missing()) {
        eprintln!(
            "portsniff: no kernel events: {why}\n\
             portsniff: without them, the kernel's drop reasons, where each RST came from and \
             socket states are not seen; findings infer them from packets and /proc instead"
        );
    }
    // 64 KiB: a big replay writes ~100 MB of JSON; 8 KiB meant a syscall every ~10 lines.
    let out = BufWriter::with_capacity(
        1 << 16,
        match config.write {
            // The pcap has standard output: the report must not share it.
            Some(PcapOutput::Stdout) => ReportOut::Stderr(io::stderr().lock()),
            _ => ReportOut::Stdout(io::stdout().lock()),
        },
    );
    prepared.run(out, stop)
}

/// Where the report goes: standard output, or stderr when `-w` writes the pcap there.
enum ReportOut {
    Stdout(io::StdoutLock<'static>),
    Stderr(io::StderrLock<'static>),
}

impl Write for ReportOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ReportOut::Stdout(o) => o.write(buf),
            ReportOut::Stderr(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ReportOut::Stdout(o) => o.flush(),
            ReportOut::Stderr(e) => e.flush(),
        }
    }
}

fn main() -> ExitCode {
    let terminal = terminal();
    let cli = match Cli::parse_args().and_then(|cli| cli.check().map(|()| cli)) {
        Ok(cli) => cli,
        // Usage errors exit 2; --help and --version print and exit 0.
        Err(e) => e.exit(),
    };
    init_logging(cli.verbose, terminal);
    if let Some(what) = cli.generate {
        let mut out = io::stdout().lock();
        return match portsniff::docs::generate(what, portsniff::cli::command(), &mut out)
            .and_then(|()| out.flush())
        {
            Ok(()) => ExitCode::SUCCESS,
            // `| head`: stop quietly, as -D does.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => report(&Error::Output(e)),
        };
    }
    // `-w -`, or a -w path that is where our standard output already goes
    // (`-w /dev/stdout > out.pcap`): the pcap takes standard output and the report goes
    // to stderr, so it is laid out for stderr's terminal, if any.
    let mut cli = cli;
    let mut terminal = terminal;
    if cli
        .write
        .as_deref()
        .is_some_and(|p| p.as_os_str() == "-" || PcapOutput::is_our_stdout(p))
    {
        cli.write = Some("-".into());
        terminal.stdout_is_terminal = terminal.stderr_is_terminal;
    }
    if cli.list_interfaces {
        return match list_interfaces() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(&e),
        };
    }
    let config = cli.into_config_with(terminal);
    let result = match run(&config) {
        Ok(result) => result,
        Err(e) => return report(&e),
    };
    if config.source.is_live() {
        print_capture_stats(&result);
    }
    if let (Some(n), Some(to)) = (result.written, &config.write) {
        match result.files_written {
            Some(files) => eprintln!(
                "{n} packets written to {} in {files} file{}",
                to.name().display(),
                if files == 1 { "" } else { "s" }
            ),
            None => eprintln!("{n} packets written to {}", to.name().display()),
        }
    }
    if let Some(n) = result.file_limit {
        eprintln!("portsniff: maximum file limit reached: {n} (-W), capture stopped");
    }
    if result.kernel_dropped + result.internal_dropped > 0 {
        eprintln!(
            "portsniff: warning: {} packets dropped by the kernel and {} by portsniff; \
             connections that lost packets may show the wrong outcome \
             (raise the capture buffer with -B, e.g. -B 65536)",
            result.kernel_dropped, result.internal_dropped
        );
    }
    match result.capture_error {
        Some(e) => report(&e.into()),
        None if result.problems > 0 => ExitCode::from(EXIT_PROBLEMS),
        None => ExitCode::SUCCESS,
    }
}

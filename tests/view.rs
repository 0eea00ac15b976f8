//! What people watching a terminal see: the replay's progress bar (and its absence in
//! pipes and JSON), colour by outcome (and none with NO_COLOR or `--color never`), the
//! `--live-summary` table, and Wireshark's expert-flag names on flow lines.
//!
//! Terminal cases run the real binary under a pseudo-terminal made by `script`
//! (util-linux), which copies everything written to the terminal into its own stdout.

mod gen;
mod support;
mod wire;

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use support::live::{
    accept_within, connect_from_known_port, have_root, read_to_eof, skip, which, ReservedPort,
    Sniffer, EXIT_TIMEOUT,
};
use support::{bin, fixture, PORT};

/// A generated mix large enough that the debug binary replays it for over a second (200k
/// packets took only 0.25 s): the bar, shown after 0.3 s and redrawn every 100 ms, has
/// time to appear.
const BIG_PACKETS: u64 = 1_000_000;
/// What the bar prints (see `report::progress::TEMPLATE`).
const BAR_TEXT: &str = "portsniff: reading";
const BAR_ETA: &str = "ETA";

fn big_capture() -> &'static Path {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("big.pcap");
        let opts = gen::GenOptions::new(BIG_PACKETS, gen::Mode::Mix);
        gen::generate_file(&opts, &path)
            .unwrap_or_else(|e| panic!("test setup: writing {}: {e}", path.display()));
        (dir, path)
    });
    path
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `shell` (a `sh -c` command line) under a pseudo-terminal: what the command
/// writes to the terminal comes back as stdout. `None` (after `skip`) without `script`.
fn on_terminal(test: &str, shell: &str, envs: &[(&str, &str)]) -> Option<Output> {
    let Some(script) = which("script") else {
        skip(
            test,
            "needs `script` from util-linux to make a pseudo-terminal",
        );
        return None;
    };
    let mut cmd = Command::new(script);
    // -q: no "Script started" lines; -e: its exit status is the command's; the typescript
    // file is thrown away, the terminal's output is on our stdout.
    cmd.args(["-q", "-e", "-c", shell, "/dev/null"])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Some(cmd.output().expect("script runs"))
}

/// `portsniff -r FILE --port 61999 REST` under a pseudo-terminal (`REST` is shell text:
/// more flags, a redirection).
fn replay_on_terminal(
    test: &str,
    file: &Path,
    rest: &str,
    envs: &[(&str, &str)],
) -> Option<Output> {
    let shell = format!(
        "{} -r {} --port {PORT} {rest}",
        shell_quote(bin()),
        shell_quote(file.to_str().expect("UTF-8 path")),
    );
    on_terminal(test, &shell, envs)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// --- the progress bar --------------------------------------------------------------------

#[test]
fn progress_bar_is_absent_when_stderr_is_a_pipe_in_text_and_json() {
    let file = big_capture().to_str().expect("UTF-8 temp path");
    for extra in [&[][..], &["--json"][..]] {
        let out = support::portsniff()
            .args(["-r", file, "--port", PORT])
            .args(extra)
            .output()
            .expect("portsniff runs");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert!(
            !err.contains(BAR_ETA) && !err.contains('\r') && !err.contains('\x1b'),
            "{extra:?}: a pipe must get no progress bar, stderr was:\n{err}"
        );
        assert_eq!(
            err.lines().count(),
            1,
            "{extra:?}: only the banner on stderr:\n{err}"
        );
    }
}

#[test]
fn progress_bar_is_drawn_on_a_terminal_and_gone_before_the_report() {
    const TEST: &str = "progress_bar_is_drawn_on_a_terminal_and_gone_before_the_report";
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let report = dir.path().join("report.txt");
    let redirect = format!("> {}", shell_quote(report.to_str().expect("UTF-8 path")));
    let Some(out) = replay_on_terminal(TEST, big_capture(), &redirect, &[]) else {
        return;
    };
    let terminal = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{terminal}");
    assert!(
        terminal.contains(BAR_TEXT) && terminal.contains(BAR_ETA) && terminal.contains("MiB"),
        "stderr on a terminal shows the bar (bytes read, rate, ETA):\n{terminal:?}"
    );
    let report = std::fs::read_to_string(&report).expect("the report file");
    assert!(report.contains("Summary: "), "{report}");
    assert!(
        !report.contains(BAR_ETA) && !report.contains('\x1b'),
        "the report itself holds no trace of the bar"
    );
}

#[test]
fn progress_bar_never_garbles_report_lines_on_the_same_terminal() {
    const TEST: &str = "progress_bar_never_garbles_report_lines_on_the_same_terminal";
    let rest = "--only-problems --color never";
    let Some(out) = replay_on_terminal(TEST, big_capture(), rest, &[]) else {
        return;
    };
    let terminal = text(&out.stdout);
    let summary = terminal
        .find("Summary: ")
        .unwrap_or_else(|| panic!("no summary on the terminal:\n{terminal}"));
    assert!(
        terminal[..summary].contains(BAR_ETA),
        "the bar was drawn while the file was read"
    );
    assert!(
        !terminal[summary..].contains(BAR_ETA),
        "the bar is cleared before the summary"
    );
    // Each report line was written with the bar lifted: it starts on a clean line (the
    // bar's erase sequence may come before it) and never holds bar text.
    let flow_lines: Vec<&str> = terminal
        .split(['\r', '\n'])
        .filter(|l| l.contains(" → "))
        .collect();
    assert!(flow_lines.len() > 100, "problem lines on the terminal");
    for l in flow_lines {
        assert!(!l.contains(BAR_TEXT) && !l.contains(BAR_ETA), "{l:?}");
    }
}

#[test]
fn no_progress_bar_on_a_terminal_in_json() {
    const TEST: &str = "no_progress_bar_on_a_terminal_in_json";
    let Some(out) = replay_on_terminal(TEST, big_capture(), "--json > /dev/null", &[]) else {
        return;
    };
    let terminal = text(&out.stdout);
    assert!(!terminal.contains(BAR_ETA), "{terminal:?}");
    assert!(terminal.contains("portsniff: reading from"), "the banner");
}

// --- colour ------------------------------------------------------------------------------

fn mixed_on_terminal(test: &str, extra: &str, envs: &[(&str, &str)]) -> Option<String> {
    replay_on_terminal(test, &fixture("mixed.pcap"), extra, envs).map(|o| text(&o.stdout))
}

#[test]
fn outcomes_are_coloured_on_a_terminal_problems_red_or_yellow_clean_green() {
    const TEST: &str = "outcomes_are_coloured_on_a_terminal_problems_red_or_yellow_clean_green";
    let Some(t) = mixed_on_terminal(TEST, "", &[]) else {
        return;
    };
    for (coloured, what) in [
        ("\x1b[31;1mrefused ", "refused in bold red"),
        ("\x1b[33;1mreset ", "reset in bold yellow"),
        ("\x1b[32mclosed ", "closed in green"),
        ("\x1b[2m[ShADadFf]\x1b[0m", "the history dimmed"),
    ] {
        assert!(t.contains(coloured), "{what}:\n{t:?}");
    }
}

#[test]
fn no_colour_on_a_terminal_with_no_color_or_color_never() {
    const TEST: &str = "no_colour_on_a_terminal_with_no_color_or_color_never";
    for (extra, envs) in [("", &[("NO_COLOR", "1")][..]), ("--color never", &[][..])] {
        let Some(t) = mixed_on_terminal(TEST, extra, envs) else {
            return;
        };
        assert!(t.contains("refused "), "{t}");
        assert!(
            !t.contains('\x1b'),
            "{extra} {envs:?}: no escape at all:\n{t:?}"
        );
    }
}

// --- Wireshark expert flags ----------------------------------------------------------------

fn replay_text(path: &Path) -> String {
    let out = support::portsniff()
        .args(["-r", path.to_str().expect("UTF-8 path"), "--port", PORT])
        .output()
        .expect("portsniff runs");
    text(&out.stdout)
}

fn flow_lines(t: &str) -> Vec<&str> {
    t.lines().filter(|l| l.contains(" → ")).collect()
}

#[test]
fn retransmitted_syns_and_synacks_are_named_as_wireshark_does() {
    // Wireshark flags 2 retransmitted SYNs here, and 2 SYNs plus 4 SYN-ACKs there.
    let t = replay_text(&fixture("unanswered.pcap"));
    assert!(
        flow_lines(&t)[0].ends_with("[S] [TCP Retransmission ×2]"),
        "{t}"
    );
    assert!(
        t.contains("  Wireshark flags TCP Retransmission 2\n"),
        "{t}"
    );
    let t = replay_text(&fixture("handshake_incomplete.pcap"));
    assert!(
        flow_lines(&t)[0].ends_with("[Sh] [TCP Retransmission ×6]"),
        "{t}"
    );
}

#[test]
fn a_reused_port_is_named_on_the_new_connection_only() {
    let t = replay_text(&fixture("port_reuse.pcap"));
    let lines = flow_lines(&t);
    assert_eq!(lines.len(), 2, "{t}");
    assert!(lines[0].ends_with("[ShADadFf]"), "{t}");
    assert!(
        lines[1].ends_with("[ShADadFf] [TCP Port numbers reused]"),
        "{t}"
    );
    assert!(
        t.contains("  Wireshark flags TCP Port numbers reused 1\n"),
        "{t}"
    );
}

#[test]
fn a_clean_capture_names_no_wireshark_flag() {
    let t = replay_text(&fixture("mixed.pcap"));
    assert!(
        !t.contains("[TCP ") && !t.contains("Wireshark flags"),
        "{t}"
    );
}

/// `closed_client_first.pcap` with the server's ACK of the request (record 5) rewritten
/// to advertise a zero window, which the server's reply then opens again: one stall.
fn zero_window_capture(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(fixture("closed_client_first.pcap")).expect("fixture");
    let frame = wire::record_offsets(&bytes)[4] + 16;
    let ip = frame + 14; // Ethernet (Linux lo)
    let tcp = ip + usize::from(bytes[ip] & 0x0f) * 4;
    assert_eq!(
        u16::from_be_bytes([bytes[tcp], bytes[tcp + 1]]),
        61999,
        "test setup: record 5 is the server's ACK"
    );
    bytes[tcp + 14] = 0; // window, 16 bits at offset 14 of the TCP header
    bytes[tcp + 15] = 0;
    let path = dir.join("zero_window.pcap");
    std::fs::write(&path, bytes).expect("write the capture");
    path
}

#[test]
fn a_zero_window_is_named_as_wireshark_does() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let t = replay_text(&zero_window_capture(dir.path()));
    let lines = flow_lines(&t);
    assert_eq!(lines.len(), 1, "{t}");
    assert!(lines[0].ends_with("[ShADawdFf] [TCP ZeroWindow]"), "{t}");
    assert!(t.contains("  Wireshark flags TCP ZeroWindow 1\n"), "{t}");
}

// --- --live-summary --------------------------------------------------------------------------

#[test]
fn live_summary_is_a_usage_error_with_a_file_or_json() {
    let path = fixture("mixed.pcap");
    let file = path.to_str().expect("UTF-8 path");
    for args in [
        &["-r", file, "--port", PORT, "--live-summary"][..],
        &["-i", "lo", "--port", PORT, "--live-summary", "--json"][..],
    ] {
        let out = support::run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("'--live-summary'") && err.contains("cannot be used with"),
            "{args:?}: {err}"
        );
    }
}

/// One clean exchange on an accepted connection: the client closes first.
fn clean_connection(listener: &std::net::TcpListener, server: std::net::SocketAddr) {
    let mut client = TcpStream::connect_timeout(&server, Duration::from_secs(3)).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut srv = accept_within(listener, Duration::from_secs(5));
    client.write_all(b"ping").expect("client sends");
    drop(client);
    let got = read_to_eof(&mut srv, 64).expect("server reads to EOF");
    assert_eq!(got, b"ping", "test setup");
    drop(srv);
}

#[test]
fn live_summary_prints_a_snapshot_a_second_that_counts_the_connections() {
    const TEST: &str = "live_summary_prints_a_snapshot_a_second_that_counts_the_connections";
    if !have_root(TEST) {
        return;
    }
    let reserved = ReservedPort::on(Ipv4Addr::LOCALHOST.into()).expect("bind 127.0.0.1:0");
    let (port, server) = (reserved.port(), reserved.addr);
    let mut cmd = support::portsniff();
    cmd.args([
        "-i",
        "lo",
        "--port",
        &port.to_string(),
        "--live-summary",
        "--duration",
        "3",
        "--no-attribution",
    ]);
    let mut sniffer = Sniffer::spawn(cmd, "portsniff --live-summary");
    sniffer.wait_for_banner();
    // Bound, not listening: refused.
    for _ in 0..2 {
        let (_, res) = connect_from_known_port(server);
        assert!(res.is_err(), "test setup: nothing listens yet");
    }
    let listener = reserved.listen();
    for _ in 0..5 {
        clean_connection(&listener, server);
    }
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let out = run.stdout_text();
    assert_eq!(
        run.code(),
        Some(1),
        "refusals are problems\n{out}\n{}",
        run.stderr
    );

    let blocks: Vec<&str> = out.split("\n\n").collect();
    let snapshots: Vec<&str> = blocks
        .iter()
        .copied()
        .filter(|b| b.starts_with("portsniff live summary: port "))
        .collect();
    assert!(
        (2..=4).contains(&snapshots.len()),
        "one snapshot a second over 3 s, got {}:\n{out}",
        snapshots.len()
    );
    let last = snapshots.last().expect("a snapshot");
    let total = |name: &str| -> Option<u64> {
        last.lines()
            .find(|l| l.split_whitespace().next() == Some(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    assert_eq!(total("closed"), Some(5), "{last}");
    assert_eq!(total("refused"), Some(2), "{last}");
    assert!(last.contains("handshake RTT   p50 "), "{last}");
    assert!(last.contains("top problem     "), "{last}");
    assert!(!out.contains(" → "), "no per-connection lines:\n{out}");
    assert!(
        !out.contains('\x1b'),
        "a pipe gets no escape sequence:\n{out}"
    );
    let summary = blocks
        .iter()
        .find(|b| b.starts_with("Summary: 7 connections"))
        .unwrap_or_else(|| panic!("the final summary follows:\n{out}"));
    assert!(
        summary.contains("outcomes        refused 2, closed 5"),
        "{summary}"
    );
    assert!(out.contains("\nDiagnosis\n"), "{out}");
}

#[test]
fn live_summary_redraws_in_place_on_a_terminal_and_gives_the_screen_back() {
    const TEST: &str = "live_summary_redraws_in_place_on_a_terminal_and_gives_the_screen_back";
    if !have_root(TEST) {
        return;
    }
    let reserved = ReservedPort::on(Ipv4Addr::LOCALHOST.into()).expect("bind 127.0.0.1:0");
    let shell = format!(
        "{} -i lo --port {} --live-summary --duration 2.5 --no-attribution",
        shell_quote(bin()),
        reserved.port()
    );
    let Some(out) = on_terminal(TEST, &shell, &[]) else {
        return;
    };
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("\x1b[?1049h\x1b[?25l"),
        "the alternate screen, cursor hidden, while redrawing"
    );
    assert!(
        t.matches("\x1b[Hportsniff live summary").count() >= 2
            || t.matches("\x1b[H\x1b[1mportsniff live summary").count() >= 2,
        "each table starts at the top of the screen:\n{t:?}"
    );
    let shown = t
        .rfind("\x1b[?25h\x1b[?1049l")
        .expect("the cursor and the user's screen come back");
    let summary = t.find("Summary: ").expect("the summary follows");
    assert!(
        shown < summary,
        "restored before the summary, which stays on screen"
    );
    drop(reserved);
}

/// The PID of the first process called `name` below `pid` (children of children, …).
fn descendant_named(pid: u32, name: &str) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .find_map(|c| {
            let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            if comm.trim_end() == name {
                Some(c)
            } else {
                descendant_named(c, name)
            }
        })
}

#[test]
fn live_summary_gives_the_screen_back_after_a_second_ctrl_c() {
    const TEST: &str = "live_summary_gives_the_screen_back_after_a_second_ctrl_c";
    if !have_root(TEST) {
        return;
    }
    let Some(script) = which("script") else {
        skip(
            TEST,
            "needs `script` from util-linux to make a pseudo-terminal",
        );
        return;
    };
    let reserved = ReservedPort::on(Ipv4Addr::LOCALHOST.into()).expect("bind 127.0.0.1:0");
    let shell = format!(
        "{} -i lo --port {} --live-summary --no-attribution",
        shell_quote(bin()),
        reserved.port()
    );
    let mut cmd = Command::new(script);
    cmd.args(["-q", "-e", "-c", &shell, "/dev/null"])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR");
    let mut sniffer = Sniffer::spawn(cmd, "portsniff --live-summary under script");
    let script_pid = u32::try_from(sniffer.pid()).expect("a positive PID");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let portsniff = loop {
        if let Some(p) = descendant_named(script_pid, "portsniff") {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "portsniff never started under script"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The first table drawn (the screen taken), however long a loaded machine takes.
    assert!(
        sniffer.wait_for_stdout("\x1b[?1049h", Duration::from_secs(15)),
        "portsniff --live-summary never took the screen"
    );
    for _ in 0..2 {
        // SAFETY: kill(2) on the PID of portsniff, which this test started (through
        // script) and which cannot have been reaped: script is still waiting for it.
        let rc = unsafe { libc::kill(portsniff as i32, libc::SIGINT) };
        assert_eq!(rc, 0, "SIGINT to portsniff");
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let t = run.stdout_text();
    assert_eq!(
        run.code(),
        Some(130),
        "the forced exit, not the clean one: {t:?}"
    );
    let taken = t.find("\x1b[?1049h").expect("the table took the screen");
    let given_back = t.rfind("\x1b[?25h\x1b[?1049l");
    assert!(
        given_back.is_some_and(|s| s > taken),
        "the screen and cursor come back even on a forced exit: {t:?}"
    );
    drop(reserved);
}

//! tcpdump's manners, as a tcpdump user would try them: the trailing filter expression,
//! `-n`, `-D`, `-V`, `-c`, `-s`, the closing packet counts of a live capture, `--help`,
//! and `-v`/`-vv`/`RUST_LOG` logs on stderr that never touch stdout.
//!
//! The live tests capture on `lo` and talk to 127.0.0.2 / 127.0.0.3 with an expression
//! naming that address, so traffic from other tests (or other programs) on 127.0.0.1
//! cannot change what they see.

mod support;
use serde_json::Value;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;
use support::live::{
    connect_from_known_port, final_flows_from, have_root, live_command, run_bounded, skip, summary,
    which, Finished, ReservedPort, Sniffer, EXIT_TIMEOUT,
};
use support::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mixed() -> String {
    fixture("mixed.pcap").to_str().unwrap().to_string()
}

/// The client ports of the final flow lines.
fn client_ports(flows: &[Value]) -> Vec<u64> {
    flows
        .iter()
        .filter(|f| f["final"] == true)
        .map(|f| {
            let client = f["client"].as_str().unwrap();
            client.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect()
}

// --- The trailing filter expression, on a fixture ---------------------------------------

#[test]
fn an_expression_for_another_host_leaves_no_connection_and_counts_the_packets_as_filtered() {
    let (code, flows, s) = replay_json("mixed.pcap", &["host 127.0.0.2"]);
    assert!(
        flows.is_empty(),
        "no packet is to or from 127.0.0.2: {flows:?}"
    );
    assert_eq!(code, 0, "no connection, so no problem connection");
    // Nothing passed the expression: nothing was captured, and nothing is "other traffic".
    assert_eq!(s["packets"]["captured"], 0, "{s}");
    assert_eq!(s["packets"]["skipped"], 0, "{s}");
    assert_eq!(s["packets"]["filtered_out"], 43, "{s}");
    assert_eq!(s["packets"]["expression"], "host 127.0.0.2", "{s}");

    let out = run(&["-r", &mixed(), "--port", PORT, "host", "127.0.0.2"]);
    let report = text(&out.stdout);
    // The diagnosis blames the expression, not the client.
    assert!(
        report.contains("nothing on port 61999 matched the filter expression \"host 127.0.0.2\""),
        "{report}"
    );
    assert!(!report.contains("pointed elsewhere"), "{report}");
    assert!(
        report.contains("packets         0 captured, 0 decoded, 0 other traffic, 0 undecodable"),
        "{report}"
    );
    assert!(
        report.contains(
            "filter          host 127.0.0.2 (43 packets did not match, not counted above)"
        ),
        "mixed.pcap holds 43 packets, all rejected by the expression:\n{report}"
    );
}

#[test]
fn an_expression_keeps_only_the_connections_it_names() {
    let (_, all, _) = replay_json("mixed.pcap", &[]);
    let all_ports = client_ports(&all);
    assert_eq!(all_ports.len(), 6, "mixed.pcap holds 6 connections");

    // Several words, unquoted, are joined as tcpdump joins them.
    let (code, flows, s) = replay_json("mixed.pcap", &["port", "44826"]);
    assert_eq!(client_ports(&flows), vec![44826]);
    assert_eq!(flows[0]["outcome"], "closed");
    assert_eq!(code, 0, "the one connection left closed cleanly");
    assert_eq!(s["flows"], 1, "{s}");
    // Its 11 packets were captured; the other 32 were filtered out, not skipped.
    assert_eq!(s["packets"]["captured"], 11, "{s}");
    assert_eq!(s["packets"]["decoded"], 11, "{s}");
    assert_eq!(s["packets"]["skipped"], 0, "{s}");

    // A header-field expression: only the connections that saw a RST.
    let (code, flows, _) = replay_json("mixed.pcap", &["tcp[tcpflags] & tcp-rst != 0"]);
    let reset: Vec<u64> = client_ports(&flows);
    assert_eq!(
        reset.len(),
        3,
        "2 refused + 1 reset in mixed.pcap: {flows:?}"
    );
    assert!(reset.iter().all(|p| all_ports.contains(p)), "a subset");
    assert_eq!(code, 1, "refusals are problems");
}

#[test]
fn count_counts_only_the_packets_the_expression_matched_as_tcpdump_does() {
    let (_, flows, s) = replay_json("mixed.pcap", &["-c", "3", "port 44826"]);
    assert_eq!(s["packets"]["captured"], 3, "{s}");
    // The handshake of that connection alone, still open when reading stopped.
    assert_eq!(client_ports(&flows), vec![44826]);
    assert_eq!(flows[0]["history"], "ShA", "{:?}", flows[0]);
}

#[test]
fn an_invalid_expression_is_an_error_naming_it_and_libpcaps_reason() {
    let out = run(&["-r", &mixed(), "--port", PORT, "tcp", "and", "("]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid filter expression \"tcp and (\""),
        "the message names the expression: {err}"
    );
    assert!(err.contains("syntax error"), "libpcap's own message: {err}");
    assert!(out.stdout.is_empty(), "no report: {}", text(&out.stdout));
}

#[test]
fn a_damaged_file_names_the_damaged_record_counting_the_filtered_out_ones() {
    let path = fixture("malformed/caplen_over_snaplen.pcap");
    let out = run(&[
        "-r",
        path.to_str().unwrap(),
        "--port",
        PORT,
        "host 127.0.0.9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("the capture is damaged after packet 2"),
        "the same position as without the expression: {err}"
    );
}

// --- -n, -D, -V, --help ---------------------------------------------------------------

#[test]
fn dash_n_and_dash_nn_are_accepted_and_change_nothing() {
    let plain = run(&["-r", &mixed(), "--port", PORT]);
    for n in ["-n", "-nn"] {
        let out = run(&["-r", &mixed(), "--port", PORT, n]);
        assert_eq!(out.status.code(), plain.status.code(), "{n}");
        assert_eq!(out.stdout, plain.stdout, "{n} changes the report");
    }
    let help = text(&run(&["--help"]).stdout);
    assert!(
        help.contains("never turns") && help.contains("addresses or ports"),
        "help says portsniff never resolves names:\n{help}"
    );
}

#[test]
fn list_interfaces_prints_what_tcpdump_dash_d_prints_without_needing_a_port() {
    let Some(tcpdump) = which("tcpdump") else {
        skip("list_interfaces", "tcpdump is not installed");
        return;
    };
    // Interfaces may come and go while other tests make namespaces: compare a few times.
    let mut last = (String::new(), String::new());
    for _ in 0..5 {
        let ours = run(&["-D"]);
        assert_eq!(ours.status.code(), Some(0), "{}", text(&ours.stderr));
        let theirs = Command::new(&tcpdump).arg("-D").output().unwrap();
        last = (text(&ours.stdout), text(&theirs.stdout));
        if last.0 == last.1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(last.0, last.1, "portsniff -D vs tcpdump -D");
    assert!(last.0.lines().any(|l| l.contains(".lo [")), "{}", last.0);
    let long = run(&["--list-interfaces"]);
    assert_eq!(long.status.code(), Some(0));
    assert!(
        text(&long.stdout).starts_with("1."),
        "{}",
        text(&long.stdout)
    );
}

#[test]
fn version_names_portsniff_and_the_libpcap_it_runs_on() {
    for flag in ["-V", "--version"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let v = text(&out.stdout);
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some(concat!("portsniff ", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        let libpcap = lines.get(1).copied().unwrap_or_default();
        assert!(libpcap.starts_with("libpcap version "), "{v}");
        // The same shared library tcpdump reports.
        if let Some(tcpdump) = which("tcpdump") {
            let theirs = Command::new(tcpdump).arg("--version").output().unwrap();
            let theirs = text(&theirs.stdout) + &text(&theirs.stderr);
            assert!(
                theirs.lines().any(|l| l == libpcap),
                "{libpcap:?} vs {theirs}"
            );
        }
    }
}

#[test]
fn help_shows_the_three_everyday_uses_and_the_filter_expression() {
    for flag in ["-h", "--help"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        for example in [
            "portsniff -i lo --port 61999 ",
            "portsniff -r saved.pcap --port 61999 ",
            "portsniff -i any --port 5432 --json | jq .",
            "portsniff -i lo --port 61999 'host 127.0.0.1'",
            "portsniff -D ",
        ] {
            assert!(help.contains(example), "{flag} lacks {example:?}:\n{help}");
        }
        assert!(help.contains("[EXPRESSION]..."), "{help}");
    }
}

// --- Logs --------------------------------------------------------------------------------

fn replay_with(env: &[(&str, &str)], extra: &[&str]) -> std::process::Output {
    let mut cmd = support::portsniff();
    cmd.args(["-r", &mixed(), "--port", PORT, "--json", "host 127.0.0.1"])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Lines that are logs rather than portsniff's own `portsniff: ...` messages.
fn log_lines(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|l| !l.starts_with("portsniff: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn verbose_logs_go_to_stderr_and_leave_stdout_byte_identical() {
    let quiet = replay_with(&[], &[]);
    let loud = replay_with(&[], &["-vv"]);
    assert_eq!(quiet.status.code(), loud.status.code());
    assert_eq!(quiet.stdout, loud.stdout, "-vv changed stdout");
    assert!(
        log_lines(&quiet.stderr).is_empty(),
        "{}",
        text(&quiet.stderr)
    );

    let logs = log_lines(&loud.stderr).join("\n");
    for wanted in [
        "capture file open",
        "link=\"EN10MB\"",
        "filter expression compiled expression=\"host 127.0.0.1\"",
        "capture ended captured=43",
    ] {
        assert!(logs.contains(wanted), "-vv lacks {wanted:?}:\n{logs}");
    }
    // -v is info: the set-up lines, not the debug ones.
    let info = log_lines(&replay_with(&[], &["-v"]).stderr).join("\n");
    assert!(info.contains("capture file open"), "{info}");
    assert!(!info.contains("DEBUG"), "{info}");
}

#[test]
fn rust_log_overrides_the_verbosity_flags() {
    let off = replay_with(&[("RUST_LOG", "off")], &["-vv"]);
    assert_eq!(log_lines(&off.stderr), Vec::<String>::new());
    assert!(
        text(&off.stderr).contains("portsniff: reading from"),
        "the banner is not a log line"
    );
    let on = replay_with(&[("RUST_LOG", "info")], &[]);
    assert!(
        log_lines(&on.stderr)
            .iter()
            .any(|l| l.contains("capture file open")),
        "{}",
        text(&on.stderr)
    );
}

// --- Live on lo --------------------------------------------------------------------------

/// How a live run ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    CtrlC,
    /// `-c` ends it by itself.
    ByItself,
}

/// Runs `portsniff -i lo --port P --json EXTRA` with P reserved on every address (so
/// connections to it are refused), makes one refused connection from each of `clients`
/// (to the same address), and ends the run. Returns the run, P and the client ports, or
/// `None` if the test must skip.
fn live_refusals(
    test: &str,
    extra: &[&str],
    clients: &[Ipv4Addr],
    stop: Stop,
) -> Option<(Finished, u16, Vec<u16>)> {
    if !have_root(test) {
        return None;
    }
    let reserved = match ReservedPort::on(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
        Ok(r) => r,
        Err(e) => {
            skip(test, &format!("cannot reserve a port: {e}"));
            return None;
        }
    };
    let port = reserved.port();
    let mut sniffer = Sniffer::spawn(live_command(port, extra), test);
    sniffer.wait_for_banner();
    let ports = clients
        .iter()
        .map(|&ip| {
            let (client, res) = connect_from_known_port(SocketAddr::new(ip.into(), port));
            match res {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => client,
                other => panic!("test setup: {ip}:{port} should refuse, got {other:?}"),
            }
        })
        .collect();
    if stop == Stop::CtrlC {
        std::thread::sleep(Duration::from_millis(300));
        sniffer.interrupt();
    }
    Some((sniffer.wait_exit(EXIT_TIMEOUT), port, ports))
}

#[test]
fn live_expression_narrows_the_kernel_filter() {
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let clients = [Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, two];
    let Some((run, port, ports)) = live_refusals(
        "live_expression_narrows_the_kernel_filter",
        &["host", "127.0.0.2"],
        &clients,
        Stop::CtrlC,
    ) else {
        return;
    };
    let lines = run.json();
    let out = run.stdout_text();
    let f = final_flows_from(&lines, ports[2]);
    assert_eq!(f.len(), 1, "{out}");
    assert_eq!(f[0]["server"], format!("127.0.0.2:{port}"));
    assert_eq!(f[0]["outcome"], "refused");
    for hidden in &ports[..2] {
        assert!(
            final_flows_from(&lines, *hidden).is_empty(),
            "127.0.0.1:{hidden} is outside 'host 127.0.0.2':\n{out}"
        );
    }
    let s = summary(&lines, &out);
    assert_eq!(s["flows"], 1, "{s}");
    assert_eq!(s["packets"]["captured"], 2, "the SYN and the RST: {s}");
    assert_eq!(run.code(), Some(1));
}

#[test]
fn live_invalid_expression_is_an_error_before_any_capture() {
    if !have_root("live_invalid_expression_is_an_error_before_any_capture") {
        return;
    }
    let out = run(&["-i", "lo", "--port", PORT, "port", "70000"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid filter expression \"port 70000\""),
        "the user's expression, not the combined kernel filter: {err}"
    );
    assert!(err.contains("70000"), "libpcap's reason: {err}");
    assert!(!err.contains("listening on"), "{err}");
}

#[test]
fn live_count_stops_by_itself_and_prints_tcpdumps_closing_counts() {
    // No Ctrl-C: two packets (SYN, RST) end the capture, as with tcpdump -c 2.
    let Some((run, _, ports)) = live_refusals(
        "live_count_stops_by_itself_and_prints_tcpdumps_closing_counts",
        &["-c", "2", "host 127.0.0.3"],
        &[Ipv4Addr::new(127, 0, 0, 3)],
        Stop::ByItself,
    ) else {
        return;
    };
    let lines = run.json();
    let out = run.stdout_text();
    assert_eq!(final_flows_from(&lines, ports[0]).len(), 1, "{out}");
    let s = summary(&lines, &out);
    let received = s["kernel"]["received"]
        .as_u64()
        .expect("live kernel counters");
    assert!(received >= 2, "{s}");

    let closing: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" packets "))
        .collect();
    assert_eq!(
        closing,
        [
            "2 packets captured",
            &format!("{received} packets received by filter"),
            "0 packets dropped by kernel",
            "0 packets dropped by portsniff",
        ],
        "stderr:\n{}",
        run.stderr
    );
    assert!(!out.contains("packets captured"), "counts belong on stderr");
    assert_eq!(run.code(), Some(1));
}

#[test]
fn live_snaplen_cuts_the_written_packets_like_tcpdump_dash_s() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.pcap");
    let path = file.to_str().unwrap();
    let Some((run, _, _)) = live_refusals(
        "live_snaplen_cuts_the_written_packets_like_tcpdump_dash_s",
        &["-s", "60", "-w", path, "-vv", "host 127.0.0.4"],
        &[Ipv4Addr::new(127, 0, 0, 4)],
        Stop::CtrlC,
    ) else {
        return;
    };
    assert!(
        run.stderr.contains(
            "live capture open interface=\"lo\" snaplen=60 buffer_kib=32768 link=\"EN10MB\""
        ),
        "-vv logs the capture set-up:\n{}",
        run.stderr
    );
    // Two records: the 74-byte SYN cut to at most 60 bytes (libpcap's immediate-mode
    // ring keeps 58 of them on lo, as `tcpdump --immediate-mode -s 60` does), and the
    // 54-byte RST whole.
    let bytes = std::fs::read(&file).unwrap();
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let le = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        records.push((le(at + 8), le(at + 12)));
        at += 16 + le(at + 8) as usize;
    }
    assert_eq!(records.len(), 2, "{records:?}");
    let (syn_cap, syn_len) = records[0];
    assert_eq!(syn_len, 74, "{records:?}");
    assert!(
        (54..=60).contains(&syn_cap),
        "the SYN is cut by -s 60: {records:?}"
    );
    assert_eq!(records[1], (54, 54), "the RST fits whole: {records:?}");
    if let Some(tcpdump) = which("tcpdump") {
        let mut cmd = Command::new(tcpdump);
        cmd.args(["-nn", "-r", path]);
        let t = run_bounded(cmd, "tcpdump -r", Duration::from_secs(10));
        assert_eq!(
            t.stdout.len(),
            2,
            "tcpdump reads both records: {}",
            t.stderr
        );
    }
}

#[test]
fn live_snaplen_below_the_headers_is_warned_at_start_and_never_read_as_no_traffic() {
    let Some((run, _, _)) = live_refusals(
        "live_snaplen_below_the_headers_is_warned_at_start",
        &["-s", "40", "host 127.0.0.5"],
        &[Ipv4Addr::new(127, 0, 0, 5)],
        Stop::CtrlC,
    ) else {
        return;
    };
    let warning = run
        .stderr
        .lines()
        .position(|l| l.starts_with("portsniff: warning: -s 40 cuts every TCP packet"));
    let banner = run
        .stderr
        .lines()
        .position(|l| l.contains("listening on lo"));
    assert!(
        warning.is_some() && warning > banner,
        "warned at the start, after the banner:\n{}",
        run.stderr
    );
    let lines = run.json();
    let out = run.stdout_text();
    let kinds: Vec<&str> = lines
        .iter()
        .filter(|(_, l)| l["type"] == "finding")
        .filter_map(|(_, l)| l["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"partial_view"), "{out}");
    assert!(
        !kinds.contains(&"no_traffic"),
        "cut packets are not 'nothing reached the port':\n{out}"
    );
}

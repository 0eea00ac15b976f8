//! The command line as a user meets it: flags, errors and exit statuses, stdin, `-w`,
//! `--only-problems`, `-c`, colour.

use crate::support::*;
use std::io::Write;
use std::process::{Command, Stdio};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fx(name: &str) -> String {
    fixture(name).to_str().unwrap().to_string()
}

#[test]
fn exit_status_is_0_when_nothing_is_wrong_and_1_when_connections_failed() {
    assert_eq!(
        run(&["-r", &fx("closed_client_first.pcap"), "--port", PORT])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&["-r", &fx("refused.pcap"), "--port", PORT])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn missing_file_is_a_clear_error_with_exit_2() {
    let out = run(&["-r", "/nonexistent/saved.pcap", "--port", PORT]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("cannot open /nonexistent/saved.pcap") && e.contains("No such file"),
        "{e}"
    );
    assert!(out.stdout.is_empty(), "no report when nothing was read");
}

#[test]
fn a_file_that_is_not_a_capture_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "this is not a capture file, just some text\n").unwrap();
    let out = run(&["-r", path.to_str().unwrap(), "--port", PORT]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("is not a capture file") && e.contains("pcapng"),
        "{e}"
    );
}

#[test]
fn an_empty_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.pcap");
    std::fs::write(&path, b"").unwrap();
    let out = run(&["-r", path.to_str().unwrap(), "--port", PORT]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a capture file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn port_outside_1_to_65535_is_rejected() {
    for bad in ["0", "65536", "http"] {
        let out = run(&["-r", &fx("refused.pcap"), "--port", bad]);
        assert_eq!(out.status.code(), Some(2), "--port {bad}");
        assert!(
            stderr(&out).contains("--port"),
            "--port {bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_tunnel_port_outside_1_to_65535_or_named_for_both_tunnels_is_rejected() {
    for (option, bad, said) in [
        ("--vxlan-port", "0", "0 is not in 1..=65535"),
        ("--vxlan-port", "8472,70000", "70000 is not in 1..=65535"),
        ("--geneve-port", "geneve", "invalid digit"),
    ] {
        let out = run(&["-r", &fx("vxlan.pcap"), "--port", PORT, option, bad]);
        assert_eq!(out.status.code(), Some(2), "{option} {bad}");
        let err = stderr(&out);
        assert!(
            err.contains(option) && err.contains(said),
            "{option} {bad}: {err}"
        );
    }
    let out = run(&[
        "-r",
        &fx("vxlan.pcap"),
        "--port",
        PORT,
        "--vxlan-port",
        "5000",
        "--geneve-port",
        "5000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("port 5000 is named both"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn conflicting_or_missing_inputs_are_usage_errors() {
    let cases: [&[&str]; 5] = [
        &["-i", "lo", "-r", "x.pcap", "--port", PORT],
        &["--port", PORT],
        &["-r", "x.pcap"],
        &["-r", "x.pcap", "--port", PORT, "--duration", "5"],
        &["-r", "x.pcap", "--port", PORT, "-B", "4096"],
    ];
    for args in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("Usage"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn unknown_interface_lists_the_ones_that_exist() {
    let out = run(&["-i", "nosuchif0", "--port", PORT]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("no interface named \"nosuchif0\""), "{e}");
    assert!(e.contains("lo"), "the list of interfaces names lo: {e}");
}

#[test]
fn capture_without_privileges_explains_sudo_and_setcap() {
    // Run the binary as `nobody`: needs root to switch users.
    const TEST: &str = "capture_without_privileges_explains_sudo_and_setcap";
    if !crate::support::live::have_root(TEST) {
        return;
    }
    if crate::support::live::which("setpriv").is_none() {
        crate::support::live::skip(TEST, "needs setpriv to drop to an unprivileged user");
        return;
    }
    // The binary must be reachable by `nobody`: copy it somewhere world-readable.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("portsniff");
    std::fs::copy(bin(), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&exe)
        .args(["-i", "lo", "--port", PORT, "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("no permission to capture on lo"), "{e}");
    assert!(e.contains("setcap cap_net_raw,cap_net_admin=eip"), "{e}");
}

#[test]
fn dash_reads_the_capture_from_standard_input() {
    let mut child = crate::support::portsniff()
        .args(["-r", "-", "--port", PORT, "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(fixture("mixed.pcap")).unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.iter().filter(|l| l["type"] == "flow").count(), 6);
    assert_eq!(lines.last().unwrap()["source"], "standard input");
}

#[test]
fn only_problems_hides_healthy_connections_but_the_summary_counts_all() {
    let (code, flows, summary) = replay_json("mixed.pcap", &["--only-problems"]);
    assert_eq!(code, 1);
    let outcomes: Vec<&str> = flows
        .iter()
        .map(|f| f["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["refused", "refused", "reset"]);
    assert_eq!(summary["flows"], 6);
}

#[test]
fn count_stops_after_n_packets() {
    let (code, flows, summary) = replay_json("mixed.pcap", &["-c", "2"]);
    assert_eq!(summary["packets"]["captured"], 2);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["outcome"], "refused");
    assert_eq!(code, 1);
}

#[test]
fn write_keeps_the_ports_packets_and_replays_to_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.pcap");
    let out = run(&[
        "-r",
        &fx("mixed.pcap"),
        "--port",
        PORT,
        "-w",
        all.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let original = replay_json("mixed.pcap", &[]).1;
    let (_, copy, summary) = {
        let out = run(&["-r", all.to_str().unwrap(), "--port", PORT, "--json"]);
        let lines = json_lines(&out.stdout);
        let flows: Vec<_> = lines
            .iter()
            .filter(|l| l["type"] == "flow")
            .cloned()
            .collect();
        (out.status.code(), flows, lines.last().unwrap().clone())
    };
    assert_eq!(copy, original, "same flows from the written file");
    assert_eq!(summary["packets"]["captured"], 43);

    let problems = dir.path().join("problems.pcap");
    run(&[
        "-r",
        &fx("mixed.pcap"),
        "--port",
        PORT,
        "--only-problems",
        "-w",
        problems.to_str().unwrap(),
    ]);
    let out = run(&["-r", problems.to_str().unwrap(), "--port", PORT, "--json"]);
    let outcomes: Vec<String> = json_lines(&out.stdout)
        .iter()
        .filter(|l| l["type"] == "flow")
        .map(|f| f["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["refused", "refused", "reset"]);
}

#[test]
fn write_to_an_unwritable_path_is_a_clear_error() {
    let out = run(&[
        "-r",
        &fx("refused.pcap"),
        "--port",
        PORT,
        "-w",
        "/nonexistent/dir/out.pcap",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot write /nonexistent/dir/out.pcap"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn text_report_explains_each_connection_and_ends_with_a_summary() {
    let out = run(&["-r", &fx("mixed.pcap"), "--port", PORT]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("SYN answered by RST from 127.0.0.1:61999")
            .count(),
        2,
        "{text}"
    );
    assert!(text.contains("reset by the server"), "{text}");
    assert!(
        text.contains("client closed first (TIME_WAIT on the client)"),
        "{text}"
    );
    assert!(
        text.contains("Summary: 6 connections on port 61999"),
        "{text}"
    );
    assert!(
        text.contains("outcomes        refused 2, closed 3, reset 1"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour in a pipe or with NO_COLOR"
    );
    assert!(
        stderr(&out).contains("reading from"),
        "banner on stderr, not stdout"
    );
}

#[test]
fn colour_only_when_asked_and_never_in_json() {
    let out = run(&[
        "-r",
        &fx("refused.pcap"),
        "--port",
        PORT,
        "--color",
        "always",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\x1b[31;1m"));
    let out = run(&[
        "-r",
        &fx("refused.pcap"),
        "--port",
        PORT,
        "--color",
        "always",
        "--json",
    ]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
}

#[test]
fn help_shows_everyday_examples_and_exit_statuses() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("portsniff -i lo --port 61999"), "{help}");
    assert!(
        help.contains("portsniff -r saved.pcap --port 61999"),
        "{help}"
    );
    assert!(help.contains("Exit status"), "{help}");
}

#[test]
fn ladder_draws_problem_connections_and_flow_picks_one_by_client_port() {
    let out = run(&[
        "-r",
        &fx("mixed.pcap"),
        "--port",
        PORT,
        "--ladder",
        "--json",
    ]);
    let lines = json_lines(&out.stdout);
    let ladders: Vec<_> = lines.iter().filter(|l| l["type"] == "ladder").collect();
    assert_eq!(ladders.len(), 3, "2 refused + 1 reset: {ladders:#?}");
    assert_eq!(ladders[0]["packets"][1]["flags"], "R.");
    assert_eq!(
        ladders[0]["packets"][1]["ack"], 1,
        "ack relative to the client's ISN"
    );

    let (_, flows, _) = replay_json("mixed.pcap", &[]);
    let closed = flows.iter().find(|f| f["outcome"] == "closed").unwrap();
    let port = closed["client"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    let text = run(&["-r", &fx("mixed.pcap"), "--port", PORT, "--flow", port]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(
        text.matches("|---- S  seq 0").count(),
        1,
        "only the chosen flow:\n{text}"
    );
    assert!(text.contains("|<--- F. seq 201 ack 102"), "{text}");
}

#[test]
fn a_negative_port_is_told_the_range_not_a_tip_that_fails_too() {
    let out = run(&["-r", &fx("refused.pcap"), "--port", "-1"]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("-1 is not in 1..=65535"), "{e}");
    assert!(!e.contains("-- -1"), "{e}");
}

#[test]
fn an_expression_naming_the_port_without_dash_dash_port_points_at_dash_dash_port() {
    let out = run(&["-r", &fx("refused.pcap"), "tcp port 61999"]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("the port to watch is given with --port"), "{e}");
}

#[test]
fn a_directory_or_a_compressed_capture_is_said_so_without_blaming_libpcap() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["-r", dir.path().to_str().unwrap(), "--port", PORT]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(
        e.contains("it is a directory") && !e.contains("libpcap"),
        "{e}"
    );

    let gz = dir.path().join("capture.pcap.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", fx("refused.pcap"), gz.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = run(&["-r", gz.to_str().unwrap(), "--port", PORT]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(
        e.contains("compressed with gzip")
            && e.contains(&format!("gzip -dc {} | portsniff -r -", gz.display())),
        "{e}"
    );
    assert!(!e.contains("libpcap"), "{e}");
}

#[test]
fn the_resets_line_says_refusals_are_counted_apart() {
    let out = run(&["-r", &fx("refused.pcap"), "--port", PORT]);
    let text = String::from_utf8_lossy(&out.stdout);
    let resets = text
        .lines()
        .find(|l| l.trim_start().starts_with("resets"))
        .unwrap();
    assert!(resets.contains("refusals are counted above"), "{text}");
}

//! `--format zeek` and `--format zeek-json` on every bundled capture: the conn.log read
//! the way `zeek-cut` reads it (columns found by the `#fields` names), each connection's
//! `conn_state` against what Zeek's definition makes of that scenario, the JSON lines
//! against the TSV, and the complete TSV against its reviewed golden file
//! (`fixtures/NAME.expected.zeek`).
//!
//! Regenerate the golden files after an intended change with
//! `PORTSNIFF_BLESS=1 cargo test --test zeek`, then review the diff like code.

mod support;

use support::live;

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

/// `portsniff -r fixtures/FILE --port 61999 ARGS…` in UTC (the header's `#open`/`#close`
/// are local times, as Zeek writes them), from the crate's directory.
fn replay_args(file: &str, args: &[&str]) -> std::process::Output {
    support::portsniff()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TZ", "UTC")
        .args(["-r", &format!("fixtures/{file}"), "--port", PORT])
        .args(args)
        .output()
        .unwrap()
}

/// `--format FORMAT`: (exit status, standard output).
fn replay(file: &str, format: &str) -> (i32, String) {
    let out = replay_args(file, &["--format", format]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// A conn.log read like `zeek-cut` does: the `#fields` line names the columns, other
/// `#` lines are metadata, every other line is a row.
struct ConnLog {
    meta: BTreeMap<String, String>,
    rows: Vec<BTreeMap<String, String>>,
}

impl ConnLog {
    fn parse(tsv: &str) -> ConnLog {
        let mut meta = BTreeMap::new();
        let mut fields: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        for line in tsv.lines() {
            if let Some(m) = line.strip_prefix('#') {
                let (key, value) = m
                    .split_once('\t')
                    .or_else(|| m.split_once(' '))
                    .unwrap_or_else(|| panic!("a header line without a value: {line}"));
                if key == "fields" {
                    fields = value.split('\t').map(str::to_string).collect();
                }
                meta.insert(key.to_string(), value.to_string());
                continue;
            }
            let values: Vec<&str> = line.split('\t').collect();
            assert_eq!(values.len(), fields.len(), "a row of another width: {line}");
            rows.push(
                fields
                    .iter()
                    .cloned()
                    .zip(values.iter().map(|v| v.to_string()))
                    .collect(),
            );
        }
        ConnLog { meta, rows }
    }

    /// `zeek-cut NAME`.
    fn cut(&self, name: &str) -> Vec<&str> {
        self.rows.iter().map(|r| r[name].as_str()).collect()
    }
}

/// What each capture's connections are in Zeek's terms (`base/protocols/conn/main.zeek`),
/// in the order portsniff ends them.
const EXPECTED: &[(&str, &[&str])] = &[
    ("any_sll.pcap", &["SF"]),
    ("any_sll2.pcap", &["SF"]),
    // "SF: Normal establishment and termination."
    ("closed.pcapng", &["SF"]),
    ("closed_client_first.pcap", &["SF"]),
    ("closed_server_first.pcap", &["SF"]),
    // "S1: Connection established, not terminated."
    // Zeek: "S0: Connection attempt seen, no reply."
    ("cut_by_count.pcap", &["S0"]),
    // A row is written when its close delay is over, or at the end of the file (then in
    // order of first packet): the last clean close comes after the two attempts.
    ("drop_window.pcap", &["SF", "S0", "S0", "SF"]),
    // A mirror port's copy (ERSPAN): the inner connection, as for the tunnels.
    ("erspan.pcap", &["SF"]),
    ("established.pcap", &["S1"]),
    // The client's FIN then RST, the server's FIN: Zeek's "actually normal termination".
    ("fin_rst_fin.pcap", &["SF"]),
    // Tunnels: the inner connections; conn.log's columns stay Zeek's (see README).
    ("geneve.pcap", &["SF", "REJ"]),
    ("gre.pcap", &["SF", "REJ"]),
    // "S2: Connection established and close attempt by originator seen (but no reply
    // from responder)."
    ("half_closed.pcap", &["S2"]),
    // Zeek establishes both endpoints on the SYN-ACK: a missing final ACK is still S1.
    ("handshake_incomplete.pcap", &["S1"]),
    ("ipv6_closed.pcap", &["SF"]),
    // "REJ: Connection attempt rejected."
    ("ipv6_refused.pcap", &["REJ"]),
    ("ipv6_unreachable_retried.pcap", &["SF"]),
    // No SYN, but both FINs: Zeek's conn_state looks at the endpoint states only.
    // The RST 16 s after the close is in no row (Zeek would add an RSTRH one).
    ("late_rst.pcap", &["SF"]),
    ("midstream.pcap", &["SF"]),
    // "RSTR: Responder sent a RST."
    ("mixed.pcap", &["REJ", "REJ", "SF", "SF", "SF", "RSTR"]),
    ("mpls.pcap", &["SF"]),
    ("null_loopback.pcap", &["SF", "REJ"]),
    ("port_reuse.pcap", &["SF", "SF"]),
    ("pppoe.pcap", &["SF"]),
    ("qinq.pcap", &["SF"]),
    ("refused.pcap", &["REJ"]),
    // "RSTO: Connection established, originator aborted (sent a RST)."
    // Each same-ISN retry after a RST is an attempt of its own.
    ("refused_retried.pcap", &["REJ", "REJ", "REJ"]),
    ("reset_by_client.pcap", &["RSTO"]),
    ("reset_by_server.pcap", &["RSTR"]),
    (
        "restart_loop.pcap",
        &[
            "SF", "REJ", "REJ", "SF", "REJ", "REJ", "SF", "REJ", "REJ", "SF",
        ],
    ),
    (
        "restarted.pcap",
        &["SF", "SF", "REJ", "REJ", "REJ", "SF", "SF"],
    ),
    // Every packet cut inside its TCP header: no connection at all.
    ("second_rst.pcap", &["RSTO"]),
    ("snaplen40.pcap", &[]),
    ("snaplen60.pcap", &["SF"]),
    ("startup_race.pcap", &["REJ", "REJ", "REJ", "SF", "SF"]),
    ("trailing_acks.pcap", &["SF"]),
    ("truncated.pcap", &["REJ", "REJ", "REJ", "S2"]),
    // "S0: Connection attempt seen, no reply."
    ("unanswered.pcap", &["S0"]),
    // An ICMP error is no TCP reply (Zeek logs it as its own icmp connection).
    ("unreachable.pcap", &["S0"]),
    ("unreachable_admin.pcap", &["S0"]),
    // A host-unreachable error, then the same SYN again, answered: one connection.
    ("unreachable_retried.pcap", &["SF"]),
    ("vxlan.pcap", &["SF", "REJ"]),
    // Without --vxlan-port 14789: UDP, no TCP connection at all.
    ("vxlan_14789.pcap", &[]),
    ("vxlan_8472.pcap", &["SF", "REJ"]),
    // One inner 4-tuple in two VNIs: two rows each.
    // -i any on the tunnel's endpoint: each connection once, though captured twice.
    ("vxlan_any.pcap", &["SF", "REJ"]),
    ("vxlan_two_vnis.pcap", &["SF", "SF", "REJ", "REJ"]),
];

#[test]
fn every_fixture_has_its_zeek_conn_state() {
    let names = fixture_captures();
    let listed: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names, listed,
        "every fixture needs its expected conn_states here"
    );
    for (file, states) in EXPECTED {
        let (_, tsv) = replay(file, "zeek");
        let log = ConnLog::parse(&tsv);
        assert_eq!(&log.cut("conn_state"), states, "{file}:\n{tsv}");
        assert_eq!(log.meta["path"], "conn", "{file}");
        assert!(
            log.meta.contains_key("close"),
            "{file}: #close ends the log"
        );
        for row in &log.rows {
            assert_eq!(row["proto"], "tcp", "{file}");
            assert_eq!(
                row["id.resp_p"], PORT,
                "{file}: the responder is on the port"
            );
            assert!(row["uid"].starts_with('C'), "{file}");
        }
    }
}

#[test]
fn conn_log_columns_and_types_are_zeeks() {
    let (_, tsv) = replay("closed_client_first.pcap", "zeek");
    let log = ConnLog::parse(&tsv);
    assert_eq!(
        log.meta["fields"],
        "ts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\t\
         orig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\t\
         orig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents"
    );
    assert_eq!(
        log.meta["types"],
        "time\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\t\
         bool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]"
    );
    assert!(tsv.starts_with(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t"
    ));
    let row = &log.rows[0];
    assert_eq!(row["history"], "ShADadFf");
    assert_eq!(
        (row["orig_bytes"].as_str(), row["resp_bytes"].as_str()),
        ("100", "200")
    );
    assert_eq!(
        (row["orig_pkts"].as_str(), row["resp_pkts"].as_str()),
        ("6", "5")
    );
    // What portsniff does not know is Zeek's unset field.
    for unknown in [
        "service",
        "local_orig",
        "local_resp",
        "missed_bytes",
        "orig_ip_bytes",
        "resp_ip_bytes",
        "tunnel_parents",
    ] {
        assert_eq!(row[unknown], "-", "{unknown}");
    }
}

#[test]
fn open_and_close_come_from_the_capture_times_so_replays_are_identical() {
    let (_, a) = replay("unanswered.pcap", "zeek");
    let (_, b) = replay("unanswered.pcap", "zeek");
    assert_eq!(a, b);
    let log = ConnLog::parse(&a);
    // The SYNs were sent over ~3 s: #open is the first packet's second, #close the last's.
    let ts: f64 = log.rows[0]["ts"].parse().unwrap();
    let duration: f64 = log.rows[0]["duration"].parse().unwrap();
    let stamp = |secs: f64| {
        jiff::Timestamp::from_second(secs as i64)
            .unwrap()
            .strftime("%Y-%m-%d-%H-%M-%S")
            .to_string()
    };
    assert_eq!(log.meta["open"], stamp(ts));
    assert_eq!(log.meta["close"], stamp(ts + duration));
}

#[test]
fn zeek_json_lines_hold_the_same_values_as_the_tsv() {
    for file in fixture_captures() {
        let (_, tsv) = replay(&file, "zeek");
        let (_, json) = replay(&file, "zeek-json");
        let log = ConnLog::parse(&tsv);
        let lines = json_lines(json.as_bytes());
        assert_eq!(lines.len(), log.rows.len(), "{file}: one object per row");
        for (row, obj) in log.rows.iter().zip(&lines) {
            for (name, value) in row {
                let got = obj.get(name.as_str());
                if value == "-" {
                    assert_eq!(got, None, "{file}: unset {name} is omitted: {obj}");
                    continue;
                }
                let got = got.unwrap_or_else(|| panic!("{file}: {name} missing: {obj}"));
                match got {
                    Value::String(s) => assert_eq!(s, value, "{file}: {name}"),
                    Value::Number(n) if name == "ts" || name == "duration" => {
                        let tsv_value: f64 = value.parse().unwrap();
                        assert!(
                            (n.as_f64().unwrap() - tsv_value).abs() < 1e-6,
                            "{file}: {name} {n} vs {value}"
                        );
                    }
                    Value::Number(n) => assert_eq!(&n.to_string(), value, "{file}: {name}"),
                    other => panic!("{file}: {name} is {other}"),
                }
            }
        }
    }
}

#[test]
fn json_flag_cannot_be_combined_with_another_format() {
    let out = replay_args("refused.pcap", &["--json", "--format", "zeek"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--json is --format json"), "{stderr}");
    // The alias itself, and agreeing with it, are fine.
    let same = replay_args("refused.pcap", &["--json", "--format", "json"]);
    let alias = replay_args("refused.pcap", &["--json"]);
    assert_eq!(same.stdout, alias.stdout);
    assert_eq!(alias.status.code(), Some(1));
}

#[test]
fn ladder_with_a_conn_log_is_a_usage_error() {
    let out = replay_args("refused.pcap", &["--format", "zeek", "--ladder"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn conn_log_keeps_the_exit_status_and_only_problems() {
    let (code, tsv) = replay("mixed.pcap", "zeek");
    assert_eq!(code, 1, "problem connections still make the exit status 1");
    let out = replay_args("mixed.pcap", &["--format", "zeek", "--only-problems"]);
    let all = ConnLog::parse(&tsv);
    let problems = ConnLog::parse(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(all.rows.len(), 6);
    assert_eq!(problems.cut("conn_state"), ["REJ", "REJ", "RSTR"]);
}

/// The whole conn.log of every fixture, against its reviewed golden file.
#[test]
fn every_fixture_matches_its_golden_conn_log() {
    let dir = fixtures_dir();
    let bless = std::env::var_os("PORTSNIFF_BLESS").is_some();
    let mut mismatches = Vec::new();
    for file in fixture_captures() {
        let stem = file.rsplit_once('.').unwrap().0;
        let golden = dir.join(format!("{stem}.expected.zeek"));
        let (_, actual) = replay(&file, "zeek");
        if bless {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run PORTSNIFF_BLESS=1 cargo test --test zeek",
                golden.display()
            )
        });
        if actual != expected {
            mismatches.push(format!(
                "{file}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Live: the conn.log holds the final record only (not the pending notice a SYN unanswered
/// past `--syn-timeout` gives), and `#open`/`#close` are the wall clock at start and end.
#[test]
fn live_conn_log_has_final_rows_only_and_wall_clock_open_close() {
    const TEST: &str = "live_conn_log_has_final_rows_only_and_wall_clock_open_close";
    if !live::have_root(TEST) {
        return;
    }
    if live::which("iptables").is_none() {
        live::skip(TEST, "needs iptables for the DROP rule");
        return;
    }
    let Some(ns) = live::Netns::create(TEST) else {
        return;
    };
    ns.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", PORT, "--syn", "-j", "DROP",
    ]);
    let utc_now = || {
        jiff::Timestamp::now()
            .strftime("%Y-%m-%d-%H-%M-%S")
            .to_string()
    };
    let before = utc_now();
    let args = [
        "-i",
        "lo",
        "--port",
        PORT,
        "--duration",
        "2",
        "--syn-timeout",
        "0.5",
        "--format",
        "zeek",
    ];
    let mut cmd = ns.portsniff(&args);
    cmd.env("TZ", "UTC");
    let mut sniffer = live::Sniffer::spawn(cmd, "portsniff --format zeek");
    sniffer.wait_for_banner();
    let server: std::net::SocketAddr = format!("127.0.0.1:{PORT}").parse().unwrap();
    let client = ns.on_thread(move || live::connect_from_known_port(server));
    let run = sniffer.wait_exit(Duration::from_secs(2) + live::EXIT_TIMEOUT);
    let after = utc_now();
    let (cport, res) = client.join().expect("client thread");
    assert!(
        res.is_err(),
        "test setup: the SYNs are dropped, connect must fail"
    );

    let tsv = run.stdout_text();
    let log = ConnLog::parse(&tsv);
    assert_eq!(
        log.cut("id.orig_p"),
        [cport.to_string()],
        "one row, the final one (the pending notice is not a conn.log line):\n{tsv}"
    );
    assert_eq!(log.cut("conn_state"), ["S0"], "{tsv}");
    assert_eq!(log.cut("history"), ["S"], "{tsv}");
    let (open, close) = (log.meta["open"].as_str(), log.meta["close"].as_str());
    assert!(
        before.as_str() <= open && open <= close && close <= after.as_str(),
        "#open {open} and #close {close} are the wall clock between {before} and {after}"
    );
}

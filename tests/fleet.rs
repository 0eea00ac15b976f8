//! Watching a fleet (README, "Watching a fleet"): `--metrics` scraped by a real
//! Prometheus and queried with PromQL, the exposition checked by `promtool check
//! metrics`, the example alert rules by `promtool check rules`, and the systemd unit by
//! `systemd-analyze verify` and by running portsniff as that unit would: a user of its
//! own with only the unit's ambient capabilities.
//!
//! The Prometheus scenario runs inside a network namespace of its own: portsniff,
//! Prometheus, the listener and the clients all on its loopback, so its ports are free
//! and nothing reaches the host's network. Debian's `prometheus` package gives
//! `prometheus` and `promtool`; `systemd` gives `systemd-analyze`.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::live::{
    have_root, run_bounded, skip, summary, which, Finished, Netns, Sniffer, EXIT_TIMEOUT,
};

const PORT: u16 = 61999;
const METRICS: &str = "127.0.0.1:9464";
const PROMETHEUS: &str = "127.0.0.1:9090";
/// Prometheus's start, a few 1 s scrapes and the query: well inside this.
const QUERY_DEADLINE: Duration = Duration::from_secs(40);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` on `addr` with `headers`, HTTP/1.0 (no chunking): the body.
fn http_get(addr: &str, path: &str, headers: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().expect("an address"), IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n")?;
    let mut response = String::new();
    s.take(4 << 20).read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_string())
        }
        _ => Err(std::io::Error::other(format!("not a 200: {response}"))),
    }
}

/// The value of an instant PromQL query through Prometheus's HTTP API, if it has one
/// series.
fn promql(query: &str) -> Option<String> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = http_get(PROMETHEUS, &format!("/api/v1/query?query={encoded}"), "").ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    match result.as_slice() {
        [one] => one["value"][1].as_str().map(str::to_string),
        _ => None,
    }
}

fn tools(test: &str, names: &[&str]) -> bool {
    for name in names {
        if which(name).is_none() {
            skip(
                test,
                &format!("needs {name} (apt-get install prometheus systemd)"),
            );
            return false;
        }
    }
    true
}

#[test]
fn prometheus_scrapes_portsniff_and_promql_counts_the_refused_and_the_accepted() {
    const TEST: &str =
        "prometheus_scrapes_portsniff_and_promql_counts_the_refused_and_the_accepted";
    if !have_root(TEST) || !tools(TEST, &["prometheus", "promtool"]) {
        return;
    }
    let Some(ns) = Netns::create_tagged(TEST, "metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sniffer = Sniffer::spawn(
        ns.portsniff(&[
            "-i",
            "lo",
            "--port",
            &PORT.to_string(),
            "--metrics",
            METRICS,
            "--json",
        ]),
        "portsniff --metrics",
    );
    sniffer.wait_for_banner();

    // Prometheus as a user runs it: a scrape config naming portsniff, every second.
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: portsniff\n    static_configs:\n      \
             - targets: ['{METRICS}']\n"
        ),
    )
    .unwrap();
    let mut prometheus = ns.command(
        &which("prometheus").unwrap(),
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address={PROMETHEUS}"),
        ],
    );
    prometheus.current_dir(dir.path());
    // Killed by its PID when dropped, whatever happens below.
    let prometheus = Sniffer::spawn(prometheus, "prometheus");

    // Three refused connections, then a listener and two accepted ones, closed cleanly.
    let traffic = ns.on_thread(|| {
        let server = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT));
        for _ in 0..3 {
            let refused = TcpStream::connect_timeout(&server, IO_TIMEOUT);
            assert!(refused.is_err(), "test setup: nothing listens yet");
        }
        let listener = TcpListener::bind(server).expect("bind the listener");
        for _ in 0..2 {
            let mut client = TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("connect");
            let (mut accepted, _) = listener.accept().expect("accept");
            client.write_all(b"hello").unwrap();
            let mut buf = [0u8; 5];
            accepted.read_exact(&mut buf).unwrap();
            drop(client);
            let mut rest = Vec::new();
            let _ = accepted.read_to_end(&mut rest);
        }
    });
    traffic.join().expect("traffic thread");

    // What a user asks Prometheus: how many refused, how many closed.
    let answers = ns.on_thread(|| {
        let deadline = Instant::now() + QUERY_DEADLINE;
        let mut last = (None, None);
        while Instant::now() < deadline {
            last = (
                promql(r#"portsniff_connections_total{outcome="refused"}"#),
                promql(r#"portsniff_connections_total{outcome="closed"}"#),
            );
            if last == (Some("3".into()), Some("2".into())) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let port_label = promql(&format!(
            r#"count(portsniff_connections_total{{job="portsniff",port="{PORT}"}})"#
        ));
        // What a person or promtool gets with curl (no OpenMetrics asked for), and what
        // Prometheus gets.
        let plain = http_get(METRICS, "/metrics", "");
        let openmetrics = http_get(
            METRICS,
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0\r\n",
        );
        (last, port_label, plain, openmetrics)
    });
    let ((refused, closed), port_label, plain, openmetrics) = answers.join().expect("query thread");
    drop(prometheus);

    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    drop(ns);
    let lines = run.json();
    let summary = summary(&lines, &run.stdout_text());
    assert_eq!(
        (refused.as_deref(), closed.as_deref()),
        (Some("3"), Some("2")),
        "PromQL portsniff_connections_total by outcome, within {QUERY_DEADLINE:?} of the \
         traffic; portsniff's own summary said {}",
        summary["outcomes"]
    );
    assert_eq!(
        port_label.as_deref(),
        Some("8"),
        "one series per outcome, labelled with the port"
    );
    assert_eq!(
        summary["outcomes"]["refused"], 3,
        "the same count as the metrics"
    );

    let plain = plain.expect("GET /metrics");
    assert!(
        !plain.contains("127.0.0.1"),
        "no client addresses as labels:\n{plain}"
    );
    let mut promtool = Command::new(which("promtool").unwrap())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(plain.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\non:\n{plain}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let openmetrics = openmetrics.expect("GET /metrics asking for OpenMetrics");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# UNIT portsniff_handshake_rtt_seconds seconds"));
}

#[test]
fn the_example_alert_rules_pass_promtool_check_and_test_rules() {
    const TEST: &str = "the_example_alert_rules_pass_promtool_check_and_test_rules";
    if !tools(TEST, &["promtool"]) {
        return;
    }
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/portsniff-alerts.yml");
    let mut cmd = Command::new(which("promtool").unwrap());
    cmd.args(["check", "rules"]).arg(&rules);
    let run: Finished = run_bounded(cmd, "promtool check rules", Duration::from_secs(30));
    assert_eq!(run.code(), Some(0), "promtool check rules: {}", run.stderr);
    // And they fire on the series portsniff exports, only for the host that refuses.
    let mut cmd = Command::new(which("promtool").unwrap());
    cmd.args(["test", "rules"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/portsniff-alerts.test.yml"));
    let run: Finished = run_bounded(cmd, "promtool test rules", Duration::from_secs(30));
    assert_eq!(
        run.code(),
        Some(0),
        "promtool test rules: {}{}",
        run.stdout_text(),
        run.stderr
    );
    let text = std::fs::read_to_string(&rules).unwrap();
    for alert in [
        "PortsniffConnectionsRefused",
        "PortsniffConnectionsUnanswered",
    ] {
        assert!(text.contains(alert), "the README promises {alert}");
    }
}

const UNIT: &str = "contrib/portsniff@.service";
const CAPS: &str = "CAP_NET_RAW CAP_NET_ADMIN CAP_BPF CAP_PERFMON CAP_SYS_PTRACE";

/// The unit's `Key=value` lines.
fn unit_settings() -> Vec<(String, String)> {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(UNIT))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_and_keeps_privileges_narrow() {
    const TEST: &str = "the_systemd_unit_passes_systemd_analyze_verify_and_keeps_privileges_narrow";
    let settings = unit_settings();
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("AmbientCapabilities"), [CAPS]);
    assert_eq!(get("CapabilityBoundingSet"), [CAPS]);
    assert_eq!(get("NoNewPrivileges"), ["yes"]);
    assert_eq!(get("ProtectSystem"), ["strict"]);
    assert_eq!(get("DynamicUser"), ["yes"]);
    assert_eq!(get("StateDirectory"), ["portsniff/%i"]);
    let exec = get("ExecStart")[0];
    assert!(
        exec.contains("-w %S/portsniff/%i/"),
        "pcaps in the state directory"
    );
    // Bounded disk for a service that runs for ever: -G with a name that repeats each day
    // and a -C ring within each hour (-G -W alone would stop the service after N files).
    assert!(
        exec.contains("-G 3600 -C 20 -W 5 -w %S/portsniff/%i/problems-%%H.pcap"),
        "{exec}"
    );

    if !tools(TEST, &["systemd-analyze"]) {
        return;
    }
    // Installed as the README says, with ExecStart pointing at this build (verify checks
    // the binary exists), as an instance for a port.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(UNIT))
        .unwrap()
        .replace("/usr/local/bin/portsniff", env!("CARGO_BIN_EXE_portsniff"));
    std::fs::write(dir.path().join("portsniff@.service"), unit).unwrap();
    let mut cmd = Command::new(which("systemd-analyze").unwrap());
    cmd.arg("verify")
        .arg(dir.path().join(format!("portsniff@{PORT}.service")));
    let run = run_bounded(cmd, "systemd-analyze verify", Duration::from_secs(60));
    assert_eq!(
        run.code(),
        Some(0),
        "systemd-analyze verify: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("portsniff"),
        "systemd-analyze warns about the unit: {}",
        run.stderr
    );
}

/// What the unit makes of portsniff, without systemd: a user that is not root, with the
/// unit's capabilities as ambient ones, no new privileges, a bounding set of those alone.
/// The capture opens, the kernel witness attaches, and the metrics are served.
#[test]
fn portsniff_runs_with_only_the_units_capabilities_as_a_user_of_its_own() {
    const TEST: &str = "portsniff_runs_with_only_the_units_capabilities_as_a_user_of_its_own";
    if !have_root(TEST) || !tools(TEST, &["setpriv"]) {
        return;
    }
    let Some(ns) = Netns::create_tagged(TEST, "metrics") else {
        return;
    };
    let caps: String = CAPS
        .split(' ')
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    let port = PORT.to_string();
    let sniffer_cmd = ns.command(
        &which("setpriv").unwrap(),
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps=-all,{caps}"),
            &format!("--ambient-caps=-all,{caps}"),
            &format!("--bounding-set=-all,{caps}"),
            "--no-new-privs",
            env!("CARGO_BIN_EXE_portsniff"),
            "-i",
            "lo",
            "--port",
            &port,
            "--metrics",
            METRICS,
            "--json",
            "--duration",
            "3",
        ],
    );
    let mut sniffer = Sniffer::spawn(sniffer_cmd, "setpriv … portsniff --metrics");
    sniffer.wait_for_banner();
    let scraped = ns.on_thread(|| {
        let server = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT));
        assert!(TcpStream::connect_timeout(&server, IO_TIMEOUT).is_err());
        std::thread::sleep(Duration::from_millis(300));
        http_get(METRICS, "/metrics", "")
    });
    let scraped = scraped.join().expect("scrape thread");
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    drop(ns);
    let scraped = scraped.expect("GET /metrics from portsniff running as nobody");
    assert!(
        scraped.contains(&format!(
            r#"portsniff_connections_total{{port="{PORT}",outcome="refused"}} 1"#
        )),
        "{scraped}"
    );
    assert!(
        !run.stderr.contains("no kernel events"),
        "the unit's capabilities attach the kernel witness: {}",
        run.stderr
    );
    let lines = run.json();
    let summary = summary(&lines, &run.stdout_text());
    assert_eq!(summary["credentials"]["uid"], 65534, "{summary}");
}

/// A metrics port already taken is an error before the capture starts, naming the address
/// and what to do, not a capture that runs without the metrics a user asked for.
#[test]
fn a_taken_metrics_port_is_an_error_before_the_banner() {
    const TEST: &str = "a_taken_metrics_port_is_an_error_before_the_banner";
    if !have_root(TEST) {
        return;
    }
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = support::portsniff();
    cmd.args(["-i", "lo", "--port", "61998", "--metrics", &addr]);
    let run = run_bounded(cmd, "portsniff --metrics (taken)", EXIT_TIMEOUT);
    assert_eq!(run.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot serve metrics on {addr}"))
            && run.stderr.contains("hint: another program serves on port"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
}

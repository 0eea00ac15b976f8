//! Findings printed live, as soon as they are certain: each scenario stages its cause
//! while portsniff captures with `--json` and a `--duration` longer than the cause needs,
//! and asserts that the finding line came off the stream within a bound of the staged
//! event (the design's delay plus slack for a loaded 2-core machine, stated per test) and
//! before portsniff stopped; and that it names the processes the test started.

use crate::*;
use diag::{spawn_closing_server, spawn_unread_server};
use std::time::SystemTime;

/// Slack on top of each design delay: a loaded machine runs the flow stage's 100 ms tick,
/// the refresher's 1 s look and the report thread late, never by seconds more.
const SLACK: Duration = Duration::from_secs(4);

#[test]
fn a_stalled_handshake_is_said_at_the_synack_retransmissions() {
    const TEST: &str = "a_stalled_handshake_is_said_at_the_synack_retransmissions";
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3", "iptables"]) else {
        return;
    };
    let _listener = spawn_listener(&ns, server, 128, false);
    // The client's final ACK (and its answers to retransmitted SYN-ACKs) never leave it:
    // dropped before the capture sees them, so the server retransmits its SYN-ACK.
    let p = port.to_string();
    ns.run(&[
        "iptables",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "--dport",
        &p,
        "--tcp-flags",
        "ALL",
        "ACK",
        "-j",
        "DROP",
    ]);
    let capture = start_capture(&ns, port, 12, &[]);
    let staged = SystemTime::now();
    // The client thinks it is connected and sends nothing: no data segment repairs the
    // handshake. Held open until the capture ends.
    let _client = ns
        .on_thread(move || TcpStream::connect_timeout(&server, IO_TIMEOUT))
        .join()
        .expect("client thread")
        .expect("test setup: the client's connect() completes on the SYN-ACK");
    let stops_after = capture.stops_after;
    let report = capture.finish();

    // Design: the second SYN-ACK retransmission comes 3 s after the SYN (Linux: 1 s,
    // then 2 s more); the next sweep (250 ms) and poll say it.
    let after = report.assert_printed_live(
        "handshake_stalled",
        staged,
        Duration::from_secs(3) + SLACK,
        stops_after,
    );
    assert!(
        after >= Duration::from_secs(2),
        "a stall is said at the retransmissions, not at the first SYN-ACK ({after:?})\n{}",
        report.context()
    );
    let d = report.finding("handshake_stalled");
    assert!(
        report.evidence_u64(d, "synack_retransmits") >= 2,
        "{d}\n{}",
        report.context()
    );
}

#[test]
fn a_receiver_that_stops_reading_is_said_while_its_window_stays_shut() {
    const TEST: &str = "a_receiver_that_stops_reading_is_said_while_its_window_stays_shut";
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3"]) else {
        return;
    };
    let reader = spawn_unread_server(&ns, server);
    let capture = start_capture(&ns, port, 10, &[]);
    // Writes until the server's receive buffer and the client's send buffer are full: the
    // server's window is shut by then. Held open (the stall goes on) until the end.
    let (stream, staged) = ns
        .on_thread(move || {
            let mut s = TcpStream::connect_timeout(&server, IO_TIMEOUT)
                .expect("test setup: connect to the never-reading server");
            s.set_write_timeout(Some(Duration::from_millis(300)))
                .expect("write timeout");
            let chunk = vec![0u8; 65536];
            for _ in 0..1000 {
                if s.write(&chunk).is_err() {
                    return (s, SystemTime::now());
                }
            }
            panic!("test setup: 64 MB went into a server that never reads");
        })
        .join()
        .expect("client thread");
    let stops_after = capture.stops_after;
    let report = capture.finish();
    drop(stream);

    // Design: a zero window 1 s old is said at the server's next answer to a window
    // probe (the client probes at a backoff: 0.2, 0.6, 1.4, 3 s after it closed).
    let kind = "receiver_stalled";
    report.assert_printed_live(kind, staged, Duration::from_secs(3) + SLACK, stops_after);
    let (first, live) = report
        .lines
        .iter()
        .find(|(_, v)| v["type"] == "finding" && v["kind"] == kind)
        .expect("printed");
    let ended = report
        .lines
        .iter()
        .find(|(_, v)| v["type"] == "flow" && v["final"] == true)
        .map(|(l, _)| l.arrived);
    assert!(
        ended.is_none_or(|e| first.arrived <= e),
        "said while the connection still goes on, before its final record\n{}",
        report.context()
    );
    assert_eq!(live["evidence"]["side"], "server", "{live}");
    report.assert_names_process(live, reader.pid(), "listener", diag::LISTENER_MARK);
    let headline = live["headline"].as_str().unwrap_or("");
    let said = format!(
        "the server (python3 (pid {})) stopped reading",
        reader.pid()
    );
    assert!(
        headline.starts_with(&said),
        "{headline:?} should start {said:?}\n{}",
        report.context()
    );
    let last = report.finding(kind);
    assert!(
        report.evidence_u64(last, "recv_queue") > 0,
        "the final look sees the bytes waiting in the server's socket: {last}\n{}",
        report.context()
    );
    assert!(
        last["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("bytes wait unread")),
        "{last}"
    );
}

/// One finding line's process of `pid`, as the test process names it.
fn assert_holder_is(report: &diag::Report, f: &serde_json::Value, pid: u32) {
    let procs = f["processes"].as_array().cloned().unwrap_or_default();
    let p = procs
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
        .unwrap_or_else(|| {
            panic!(
                "the {} finding should name process {pid}, which made the connections; it \
                 names {}\n{}",
                f["kind"],
                f["processes"],
                report.context()
            )
        });
    assert_eq!(p["role"], "holder", "{p}");
    assert_eq!(p["name"].as_str(), Some(diag::comm(pid).as_str()), "{p}");
}

#[test]
fn a_time_wait_buildup_is_said_at_the_look_that_counts_it() {
    const TEST: &str = "a_time_wait_buildup_is_said_at_the_look_that_counts_it";
    const CONNECTIONS: usize = 1100;
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3"]) else {
        return;
    };
    // It closes every connection first: the TIME_WAIT stays on its side.
    let closer = spawn_closing_server(&ns, server);
    let capture = start_capture(&ns, port, 12, &[]);
    let staged = ns
        .on_thread(move || {
            let mut staged = None;
            for i in 0..CONNECTIONS {
                let mut s = TcpStream::connect_timeout(&server, IO_TIMEOUT)
                    .unwrap_or_else(|e| panic!("test setup: connection {i}: {e}"));
                s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
                let mut buf = [0u8; 16];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                drop(s);
                if i + 1 == 1000 {
                    staged = Some(SystemTime::now());
                }
            }
            staged.expect("1000 connections")
        })
        .join()
        .expect("client thread");
    let stops_after = capture.stops_after;
    let report = capture.finish();

    // Design: the refresher looks every second; the poll after its look says it.
    let kind = "time_wait_buildup";
    report.assert_printed_live(kind, staged, Duration::from_secs(1) + SLACK, stops_after);
    let f = report.finding(kind);
    assert_eq!(f["evidence"]["holder"], "server", "{f}");
    report.assert_names_process(f, closer.pid(), "holder", diag::LISTENER_MARK);
    let headline = f["headline"].as_str().unwrap_or("");
    let said = format!(
        "mostly on the server (python3 (pid {}) closed first)",
        closer.pid()
    );
    assert!(headline.contains(&said), "{headline:?} should say {said:?}");
}

#[test]
fn exhausted_ephemeral_ports_are_said_at_the_look_that_counts_them() {
    const TEST: &str = "exhausted_ephemeral_ports_are_said_at_the_look_that_counts_them";
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 10;
    if !prerequisites(TEST, &["sysctl"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    // 100 local ports and no taking one back from TIME_WAIT: 100 connections that the
    // clients close first hold all of them for 60 s.
    ns.run(&["sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40099"]);
    ns.run(&["sysctl", "-w", "net.ipv4.tcp_tw_reuse=0"]);
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    let listener = ns
        .on_thread(move || TcpListener::bind(server).expect("listen inside the namespace"))
        .join()
        .expect("listener thread");
    let capture = start_capture(&ns, port, 12, &[]);
    // The server reads to the client's FIN, then closes.
    let accepting = std::thread::spawn(move || {
        for _ in 0..BATCHES * PER_BATCH {
            let mut s = accept_within(&listener, IO_TIMEOUT);
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
            let mut buf = [0u8; 16];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    // In batches held open 300 ms each: long enough for portsniff to find this process
    // behind some of them (it names the client of a SYN off its flow stage).
    let staged = ns
        .on_thread(move || {
            for _ in 0..BATCHES {
                let batch: Vec<TcpStream> = (0..PER_BATCH)
                    .map(|_| {
                        let mut s = TcpStream::connect_timeout(&server, IO_TIMEOUT)
                            .expect("test setup: a free local port is left");
                        let _ = s.write_all(b"x");
                        s
                    })
                    .collect();
                std::thread::sleep(Duration::from_millis(300));
                drop(batch);
            }
            SystemTime::now()
        })
        .join()
        .expect("client thread");
    accepting.join().expect("server thread");
    let stops_after = capture.stops_after;
    let report = capture.finish();

    // Design: the refresher looks every second; the poll after its look says it. 90 of
    // the 100 ports are held once the 9th batch closed, 300 ms before `staged`.
    let kind = "ephemeral_ports_exhausted";
    report.assert_printed_live(kind, staged, Duration::from_secs(1) + SLACK, stops_after);
    let f = report.finding(kind);
    assert_eq!(
        f["evidence"]["port_range"],
        serde_json::json!([40000, 40099]),
        "{f}"
    );
    assert_holder_is(&report, f, std::process::id());
    let headline = f["headline"].as_str().unwrap_or("");
    assert!(
        headline.contains(&format!(
            "in TIME_WAIT by {}",
            diag::comm(std::process::id())
        )),
        "{headline:?} names the process that makes the connections"
    );
}

#[test]
fn no_traffic_is_said_after_its_stated_time_while_syns_go_elsewhere() {
    const TEST: &str = "no_traffic_is_said_after_its_stated_time_while_syns_go_elsewhere";
    /// README, no_traffic: said live after 10 s without a connection on the port.
    const STATED: Duration = Duration::from_secs(10);
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let elsewhere = v4([127, 0, 0, 1], fresh_port());
    let _listener = spawn_listener(&ns, elsewhere, 128, false);
    let capture = start_capture(&ns, port, 18, &[]);
    let began = capture.stops_after - Duration::from_secs(18);
    ns.on_thread(move || {
        let (_, res) = connect_from_known_port(elsewhere);
        res.unwrap_or_else(|e| panic!("test setup: connect to {elsewhere}: {e}"));
    })
    .join()
    .expect("client thread");
    let stops_after = capture.stops_after;
    let report = capture.finish();

    // Design: the refresher's first look at or past the stated time, then a poll.
    let after = report.assert_printed_live(
        "no_traffic",
        began,
        STATED + Duration::from_secs(1) + SLACK,
        stops_after,
    );
    assert!(
        after >= STATED,
        "no_traffic waits its stated time ({STATED:?}), it came after {after:?}\n{}",
        report.context()
    );
    let live = report.finding_lines()[0];
    assert_eq!(live["kind"], "no_traffic", "{live}");
}

#[test]
fn a_slow_connect_is_said_when_its_handshake_completes() {
    const TEST: &str = "a_slow_connect_is_said_when_its_handshake_completes";
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3", "iptables"]) else {
        return;
    };
    let listener = ns
        .on_thread(move || TcpListener::bind(server).expect("listen inside the namespace"))
        .join()
        .expect("listener thread");
    // Every other SYN to the port is dropped: the first gets through on its retry, 1 s on.
    let p = port.to_string();
    ns.run(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &p,
        "--syn",
        "-m",
        "statistic",
        "--mode",
        "nth",
        "--every",
        "2",
        "--packet",
        "0",
        "-j",
        "DROP",
    ]);
    let capture = start_capture(&ns, port, 8, &[]);
    let staged = SystemTime::now();
    // Held open past the end: its final record comes only then.
    let client = ns
        .on_thread(move || TcpStream::connect_timeout(&server, IO_TIMEOUT))
        .join()
        .expect("client thread")
        .expect("test setup: the retried SYN gets through");
    let _accepted = accept_within(&listener, IO_TIMEOUT);
    let stops_after = capture.stops_after;
    let report = capture.finish();
    drop(client);

    // Design: the retry goes 1 s after the SYN; the finding is printed at the handshake's
    // end, not at the connection's.
    let kind = "slow_connect";
    report.assert_printed_live(kind, staged, Duration::from_secs(1) + SLACK, stops_after);
    let first = report.first_printed(kind).expect("printed");
    let ended = report
        .lines
        .iter()
        .find(|(_, v)| v["type"] == "flow" && v["final"] == true)
        .map(|(l, _)| l.arrived);
    assert!(
        ended.is_none_or(|e| first <= e),
        "said while the connection goes on, before its final record\n{}",
        report.context()
    );
}

//! Drops that are not a firewall blocking the port: a rate limit that lets every
//! connection through late (slow connects).

use crate::*;
use serde_json::Value;

/// Connects from a thread inside `ns`, waiting up to 8 s (a SYN dropped twice gets
/// through on its third try, 3 s in). Returns the client port and how long connect() took;
/// the socket is kept open by the caller so the connection is still established when the
/// capture ends.
fn slow_client(ns: &Netns, server: SocketAddr) -> std::thread::JoinHandle<(TcpStream, Duration)> {
    ns.on_thread(move || {
        let t = Instant::now();
        let s = TcpStream::connect_timeout(&server, Duration::from_secs(8)).unwrap_or_else(|e| {
            panic!("test setup: connect to {server} through the rate limit: {e}")
        });
        (s, t.elapsed())
    })
}

/// The final findings (`"final":true`), in their ranked order.
fn final_findings(report: &diag::Report) -> Vec<&Value> {
    report
        .finding_lines()
        .into_iter()
        .filter(|f| f["final"] == true)
        .collect()
}

#[test]
fn a_hashlimit_that_delays_syns_is_a_slow_connect_not_a_silent_drop() {
    const TEST: &str = "a_hashlimit_that_delays_syns_is_a_slow_connect_not_a_silent_drop";
    if !prerequisites(TEST, &["python3", "iptables"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    let listener = spawn_listener(&ns, server, 128, false);
    let p = port.to_string();
    // One new connection a second per source, no burst beyond one: of three clients at
    // once, the first gets through, the second on its SYN retransmitted after 1 s, the
    // third on the one after 3 s.
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
        "hashlimit",
        "--hashlimit-above",
        "1/sec",
        "--hashlimit-burst",
        "1",
        "--hashlimit-mode",
        "srcip",
        "--hashlimit-name",
        "psd_slow",
        "-j",
        "DROP",
    ]);

    let capture = start_capture(&ns, port, 6, &["--syn-timeout", "1"]);
    let clients: Vec<_> = (0..3).map(|_| slow_client(&ns, server)).collect();
    let mut waited = Vec::new();
    let mut kept = Vec::new();
    for c in clients {
        let (s, took) = c.join().expect("client thread");
        kept.push(s);
        waited.push(took);
    }
    let report = capture.finish();
    waited.sort();
    assert!(
        waited[2] >= Duration::from_millis(900),
        "test setup: the rate limit should have delayed at least one connect by a SYN \
         retransmission; connect() took {waited:?}\n{}",
        report.context()
    );
    // Every connection succeeded: slow, not failed.
    report.assert_exit(0, "every connection got through, some late");

    let finals = final_findings(&report);
    let kinds: Vec<&str> = finals.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(
        kinds.first().copied(),
        Some("slow_connect"),
        "the diagnosis should lead with slow_connect; final findings {kinds:?}\n{}",
        report.context()
    );
    for wrong in [
        "silently_dropped",
        "accept_queue_full",
        "rejected_by_firewall",
    ] {
        assert!(
            !kinds.contains(&wrong),
            "every connection completed, so the final diagnosis must not say {wrong}: \
             {kinds:?}\n{}",
            report.context()
        );
    }
    let f = finals[0];
    report.assert_severity(f, &["warning"]);
    let slow = report.evidence_u64(f, "slow");
    assert!(
        (1..=2).contains(&slow),
        "one or two of the three connections needed a retransmitted SYN, evidence.slow is \
         {slow}: {f}\n{}",
        report.context()
    );
    assert_eq!(report.evidence_u64(f, "completed"), 3, "{f}");
    let max = report.evidence_u64(f, "connect_delay_max_us");
    assert!(
        (900_000..=4_000_000).contains(&max),
        "the slowest connect waited one or two SYN retransmissions (1 s or 3 s), \
         connect_delay_max_us is {max}: {f}\n{}",
        report.context()
    );
    assert_eq!(f["evidence"]["likely_causes"][0], "rate_limit", "{f}");
    let rule = f["evidence"]["limit_rule"]["text"].as_str().unwrap_or("");
    assert!(
        rule.contains("hashlimit") && rule.contains(&p),
        "the limit rule read from the ruleset should be named, it is {}: {f}\n{}",
        f["evidence"]["limit_rule"],
        report.context()
    );
    let headline = f["headline"].as_str().unwrap_or("");
    assert!(
        headline.contains("of 3 connections to port") && headline.contains("retransmitted SYN"),
        "{headline}"
    );
    let explanation = f["explanation"].as_str().unwrap_or("");
    assert!(
        explanation.contains("on the 2nd SYN") && explanation.contains("rate limit"),
        "{explanation}"
    );
    report.assert_names_process(f, listener.pid(), "listener", LISTENER_MARK);
    // With the kernel witness (on by default), the dropped SYNs' reason.
    if report.summary()["kernel_events"]["enabled"] == true {
        assert_eq!(
            f["evidence"]["kernel"][0]["reason"],
            "NETFILTER_DROP",
            "the witness saw netfilter drop the first SYNs: {f}\n{}",
            report.context()
        );
    }
    // A live silently_dropped printed while a SYN waited is said to be superseded by
    // the slow connect, not left standing.
    let live_drop = report
        .finding_lines()
        .into_iter()
        .any(|f| f["final"] == false && f["kind"] == "silently_dropped");
    if live_drop {
        let superseded = report.lines.iter().map(|(_, v)| v).find(|v| {
            v["type"] == "update"
                && v["change"] == "superseded"
                && v["finding"] == "silently_dropped"
        });
        let s = superseded.unwrap_or_else(|| {
            panic!(
                "the live silently_dropped must be superseded explicitly\n{}",
                report.context()
            )
        });
        assert_eq!(s["superseded_by"], "slow_connect", "{s}");
    }
    drop(kept);
}

#[test]
fn resets_from_a_full_queue_with_abort_on_overflow_are_the_sysctl_not_a_rejecting_server() {
    const TEST: &str =
        "resets_from_a_full_queue_with_abort_on_overflow_are_the_sysctl_not_a_rejecting_server";
    if !prerequisites(TEST, &["python3", "sysctl", "iptables"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    ns.run(&["sysctl", "-w", "net.ipv4.tcp_abort_on_overflow=1"]);
    // Every handshake through a request socket (a SYN cookie's ACK is never reset).
    ns.run(&["sysctl", "-w", "net.ipv4.tcp_syncookies=0"]);
    // Backlog 2: two request sockets at most, and the accept queue is full at three.
    // Nobody accepts.
    let listener = spawn_listener(&ns, server, 2, false);
    let connect = |ns: &Netns| {
        ns.on_thread(move || {
            TcpStream::connect_timeout(&server, IO_TIMEOUT).unwrap_or_else(|e| {
                panic!("test setup: connect to {server}: the handshake completes: {e}")
            })
        })
        .join()
        .expect("client thread")
    };

    let capture = start_capture(&ns, port, 3, &[]);
    // Two connections wait in the accept queue, which still has room.
    let mut kept: Vec<TcpStream> = vec![connect(&ns), connect(&ns)];
    // Two more, whose final ACKs (pure ACKs) are held back: their SYNs find room and
    // are answered, so both clients are connected; then each sends its request, which
    // completes its handshake at the server: the first fills the queue, the second
    // finds it full and is reset.
    let p = port.to_string();
    let hold = [
        "-p",
        "tcp",
        "--dport",
        &p,
        "--tcp-flags",
        "SYN,ACK,FIN,RST,PSH",
        "ACK",
        "-j",
        "DROP",
    ];
    let with = |op: &'static str| -> Vec<&str> {
        let mut v = vec!["iptables", op, "INPUT"];
        v.extend_from_slice(&hold);
        v
    };
    ns.run(&with("-A"));
    let mut late = vec![connect(&ns), connect(&ns)];
    for s in &mut late {
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .expect("test setup: send the request");
        std::thread::sleep(Duration::from_millis(20));
    }
    ns.run(&with("-D"));
    kept.extend(late);
    let report = capture.finish();
    let resets = report.summary()["outcomes"]["reset"].as_u64().unwrap_or(0);
    assert!(
        resets >= 1,
        "test setup: with the accept queue full and tcp_abort_on_overflow=1 the server \
         should reset connections right after their handshake\n{}",
        report.context()
    );
    report.assert_exit(1, "connections were reset");

    let finals = final_findings(&report);
    let kinds: Vec<&str> = finals.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(
        kinds.first().copied(),
        Some("accept_queue_full"),
        "the full accept queue explains the resets; final findings {kinds:?}\n{}",
        report.context()
    );
    assert!(
        !kinds.contains(&"reset_by_server"),
        "the resets are tcp_abort_on_overflow's answer to a full queue, not a server \
         rejecting connections: {kinds:?}\n{}",
        report.context()
    );
    let f = finals[0];
    assert_eq!(f["evidence"]["abort_on_overflow"], true, "{f}");
    assert_eq!(report.evidence_u64(f, "handshake_resets"), resets, "{f}");
    let x = f["explanation"].as_str().unwrap_or("");
    assert!(
        x.contains("tcp_abort_on_overflow is 1") && x.contains("instead of dropping it"),
        "{x}"
    );
    for wrong in [
        "an access rule, too many connections",
        "Linux drops SYNs and handshake ACKs",
    ] {
        assert!(!x.contains(wrong), "{wrong:?} is wrong here: {x}");
    }
    report.assert_names_process(f, listener.pid(), "listener", LISTENER_MARK);
    drop(kept);
}

#[test]
fn syn_acks_dropped_on_the_way_out_are_inferred_from_syn_recv_sockets_without_the_witness() {
    const TEST: &str =
        "syn_acks_dropped_on_the_way_out_are_inferred_from_syn_recv_sockets_without_the_witness";
    if !prerequisites(TEST, &["python3", "iptables"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    let listener = spawn_listener(&ns, server, 128, false);
    let p = port.to_string();
    // The listener answers; its SYN-ACKs never leave.
    ns.run(&[
        "iptables",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "--sport",
        &p,
        "--tcp-flags",
        "SYN,ACK",
        "SYN,ACK",
        "-j",
        "DROP",
    ]);

    let capture = start_capture(&ns, port, 3, &["--syn-timeout", "1", "--no-kernel-events"]);
    let (mut client, cport) = spawn_connecting_client(&ns, server, 8);
    let report = capture.finish();
    assert!(
        client.is_running(),
        "test setup: the client should still be waiting in connect(); stderr:\n{}",
        client.stderr()
    );
    let f = report.assert_outcome(cport, "unanswered", "SYN-ACKs dropped in OUTPUT");
    assert_eq!(f["synack_count"], 0, "no SYN-ACK is captured: {f}");
    assert_eq!(
        report.summary()["kernel_events"]["enabled"],
        false,
        "test setup: the witness is off\n{}",
        report.context()
    );
    report.assert_exit(1, "an unanswered connection was seen");

    let finals = final_findings(&report);
    let kinds: Vec<&str> = finals.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(
        kinds.first().copied(),
        Some("replies_dropped"),
        "a SYN_RECV socket for the 4-tuple shows the listener answered; final findings \
         {kinds:?}\n{}",
        report.context()
    );
    assert!(
        !kinds.contains(&"silently_dropped"),
        "the SYNs were not dropped before reaching the listener: {kinds:?}\n{}",
        report.context()
    );
    let d = finals[0];
    report.assert_severity(d, &["error"]);
    assert_eq!(report.evidence_u64(d, "unanswered"), 1, "{d}");
    assert_eq!(
        d["evidence"]["clients"][0],
        format!("127.0.0.1:{cport}"),
        "{d}"
    );
    let rule = d["evidence"]["rule"]["text"].as_str().unwrap_or("");
    assert!(rule.contains("OUTPUT") && rule.contains(&p), "{d}");
    let h = d["headline"].as_str().unwrap_or("");
    assert!(
        h.contains("SYN_RECV") && h.contains("on the way out"),
        "{h}"
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
}

//! Findings that must not be false alarms: a small ephemeral port range whose TIME_WAIT
//! ports tcp_tw_reuse recycles is not exhausted while every connect() succeeds.

use crate::*;

#[test]
fn time_wait_ports_recycled_by_tw_reuse_are_not_exhausted() {
    const TEST: &str = "time_wait_ports_recycled_by_tw_reuse_are_not_exhausted";
    const CONNECTIONS: usize = 200;
    if !prerequisites(TEST, &["sysctl"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    // 64 local ports, and connect() may take one back from TIME_WAIT once it is
    // tcp_tw_reuse_delay (1 s) old: 200 connections at 40 a second never run out.
    ns.run(&["sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40063"]);
    ns.run(&["sysctl", "-w", "net.ipv4.tcp_tw_reuse=1"]);
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    let listener = ns
        .on_thread(move || TcpListener::bind(server).expect("listen inside the namespace"))
        .join()
        .expect("listener thread");
    let capture = start_capture(&ns, port, 9, &[]);
    // The server reads to the client's FIN, then closes: TIME_WAIT stays on the clients.
    let accepting = std::thread::spawn(move || {
        for _ in 0..CONNECTIONS {
            let mut s = accept_within(&listener, IO_TIMEOUT);
            let mut buf = [0u8; 16];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    let failures = ns
        .on_thread(move || {
            let mut failures = Vec::new();
            for _ in 0..CONNECTIONS {
                match TcpStream::connect_timeout(&server, IO_TIMEOUT) {
                    Ok(mut s) => {
                        let _ = s.write_all(b"x");
                    }
                    Err(e) => failures.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            failures
        })
        .join()
        .expect("client thread");
    accepting.join().expect("server thread");
    let report = capture.finish();

    assert!(
        failures.is_empty(),
        "test setup: every connect() should succeed with tcp_tw_reuse=1, {} failed: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(
        report.finals().len(),
        CONNECTIONS,
        "every connection should get a final record\n{}",
        report.context()
    );
    // What the old rule (half the range) took for exhaustion was staged.
    let client_time_wait = report.summary()["system"]["sockets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "time_wait" && s["held_by"] == "client")
        .filter_map(|s| s["count"].as_u64())
        .sum::<u64>();
    assert!(
        client_time_wait >= 32,
        "test setup: at least half the 64-port range should be in TIME_WAIT on the clients \
         at the end, the summary shows {client_time_wait}\n{}",
        report.context()
    );
    report.assert_absent(
        "ephemeral_ports_exhausted",
        "tcp_tw_reuse recycled the TIME_WAIT ports and every connect() succeeded",
    );
    assert!(
        report.findings().iter().all(|f| f["severity"] != "error"),
        "no error finding when every connection succeeded: {:?}\n{}",
        report.kinds(),
        report.context()
    );
}

#[test]
fn a_server_closing_new_connections_unread_is_not_closing_with_unread_data() {
    const TEST: &str = "a_server_closing_new_connections_unread_is_not_closing_with_unread_data";
    const CLIENTS: usize = 3;
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3"]) else {
        return;
    };
    let closer = spawn_closing_server(&ns, server);
    let capture = start_capture(&ns, port, 4, &[]);
    // Each client waits for the server's FIN, then sends its request anyway: the closed
    // socket's kernel answers it with RST.
    ns.on_thread(move || {
        for _ in 0..CLIENTS {
            let mut s = TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("client connects");
            std::thread::sleep(Duration::from_millis(200));
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .join()
    .expect("client thread");
    let report = capture.finish();

    let finals = report.finals();
    assert_eq!(
        finals.len(),
        CLIENTS,
        "every connection should get a final record\n{}",
        report.context()
    );
    for f in &finals {
        assert_eq!(
            f["history"],
            "ShAfDr",
            "test setup: the server's FIN should come before the request, then a RST: {f}\n{}",
            report.context()
        );
    }
    let d = report.finding("reset_by_server");
    assert_eq!(
        report.evidence_str(d, "context"),
        "closed_before_reading",
        "the resets came after the server closed unread: {d}\n{}",
        report.context()
    );
    let words = format!("{} {} {}", d["headline"], d["explanation"], d["next_step"]);
    assert!(
        words.contains("closed new connections before reading")
            && words.contains("connection limit"),
        "the finding should tell the closed-before-reading story: {words}"
    );
    assert!(
        !words.contains("read the whole request"),
        "not the closing-with-unread-data advice: {words}"
    );
    report.assert_names_process(d, closer.pid(), "listener", LISTENER_MARK);
}

#[test]
fn a_dead_member_of_a_reuseport_group_is_named_with_its_share() {
    const TEST: &str = "a_dead_member_of_a_reuseport_group_is_named_with_its_share";
    const CLIENTS: usize = 16;
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3"]) else {
        return;
    };
    let healthy = spawn_reuseport_member(&ns, server, true);
    let dead = spawn_reuseport_member(&ns, server, false);
    let capture = start_capture(&ns, port, 6, &["--syn-timeout", "1"]);
    // One after another, each from its own port: the group's hash spreads them.
    let results: Vec<(u16, std::io::Result<Socket>)> = ns
        .on_thread(move || {
            (0..CLIENTS)
                .map(|_| connect_from_known_port(server))
                .collect()
        })
        .join()
        .expect("client thread");
    let report = capture.finish();
    let connected = results.iter().filter(|(_, r)| r.is_ok()).count();
    let timed_out = results.len() - connected;
    assert!(
        timed_out >= 1 && connected > 2,
        "test setup: the dead member's queue (backlog 1) should fill and later connections \
         hashed to it time out, while the healthy member's succeed: {connected} connected, \
         {timed_out} failed"
    );
    let d = report.finding("accept_queue_full");
    let group = &d["evidence"]["reuseport_group"];
    assert_eq!(
        (group["members"].as_u64(), group["healthy"].as_u64()),
        (Some(2), Some(1)),
        "the finding should see a group of 2 with 1 healthy member: {d}\n{}",
        report.context()
    );
    let headline = d["headline"].as_str().unwrap_or_default();
    assert!(
        headline.starts_with("about 1 in 2 new connections")
            && headline.contains(&format!("pid {}", dead.pid())),
        "the headline should give the dead member's share and pid: {headline}"
    );
    assert!(
        !d["next_step"]
            .as_str()
            .unwrap_or_default()
            .contains("raise the backlog"),
        "raising the backlog does not fit a dead member: {d}"
    );
    report.assert_names_process(d, dead.pid(), "listener", LISTENER_MARK);
    assert!(
        !d["processes"]
            .to_string()
            .contains(&format!("\"pid\":{}", healthy.pid())),
        "the healthy member is not blamed: {d}"
    );
    drop(results);
}

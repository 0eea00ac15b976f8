//! Firewalls: SYNs dropped by a DROP rule, refused by `REJECT --reject-with tcp-reset`
//! while a listener exists, or answered by ICMP from a REJECT rule.

use crate::*;

#[test]
fn drop_rule_is_silently_dropped() {
    const TEST: &str = "drop_rule_is_silently_dropped";
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3", "iptables"]) else {
        return;
    };
    // A listener exists and is idle: nothing but the firewall explains the silence.
    let _listener = spawn_listener(&ns, server, 128, false);
    let p = port.to_string();
    ns.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", &p, "--syn", "-j", "DROP",
    ]);

    let capture = start_capture(&ns, port, 5, &["--syn-timeout", "1"]).with_text(&ns);
    // The client stays in connect() (SYN_SENT) past the end of the capture, so its socket
    // exists whenever portsniff looks for the process that owns it.
    let (mut client, cport) = spawn_connecting_client(&ns, server, 8);
    let report = capture.finish();
    assert!(
        client.is_running(),
        "test setup: the client should still be waiting in connect() when the capture ends \
         (its SYNs are dropped); stderr:\n{}",
        client.stderr()
    );
    // Ground truth for the attribution: the client process owns a SYN_SENT socket.
    owned_socket(client.pid(), v4([127, 0, 0, 1], cport), TCP_SYN_SENT);

    let f = report.assert_outcome(cport, "unanswered", "SYNs dropped by iptables");
    let syns = f["syn_count"].as_u64().unwrap_or(0);
    assert!(
        syns >= 2,
        "the client retried its SYN during the 5 s capture, syn_count is {}: {f}\n{}",
        f["syn_count"],
        report.context()
    );
    report.assert_exit(1, "an unanswered connection was seen");

    let d = report.finding("silently_dropped");
    report.assert_severity(d, &["error"]);
    let n = report.evidence_u64(d, "unanswered");
    assert!(
        (1..=syns).contains(&n),
        "evidence.unanswered should count the unanswered connection (1) or its SYNs ({syns}), \
         it is {n}: {d}\n{}",
        report.context()
    );
    report.assert_top("silently_dropped");
    report.assert_absent(
        "accept_queue_full",
        "the listener's accept queue is empty; the SYNs are dropped by an iptables rule",
    );

    // The client process is named on the flow: it owns the SYN_SENT socket throughout.
    let cpid = u64::from(client.pid());
    for rec in report.flows_from(cport) {
        let got = &rec["client_process"];
        assert!(
            got.is_null() || got["pid"].as_u64() == Some(cpid),
            "client_process on the flow should be the client the test started (pid {cpid}), \
             it is {got}: {rec}\n{}",
            report.context()
        );
    }
    assert_eq!(
        f["client_process"]["pid"].as_u64(),
        Some(cpid),
        "the client (pid {cpid}) was still in connect() when the capture ended, so the \
         flow's client_process should name it: {f}\n{}",
        report.context()
    );
    assert!(
        f["client_process"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("python3")),
        "the client process is python3, client_process says {}: {f}\n{}",
        f["client_process"],
        report.context()
    );
    check_recipe("firewall-drop", &report, port);
}

#[test]
fn reject_with_tcp_reset_while_listening_is_a_firewall() {
    const TEST: &str = "reject_with_tcp_reset_while_listening_is_a_firewall";
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3", "iptables"]) else {
        return;
    };
    let listener = spawn_listener(&ns, server, 128, false);
    let p = port.to_string();
    ns.run(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &p,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]);

    let capture = start_capture(&ns, port, 3, &[]);
    let cport = refused_client(&ns, server);
    let report = capture.finish();

    let f = report.assert_outcome(cport, "refused", "SYN rejected with a TCP reset");
    assert_eq!(
        (&f["reset_by"], &f["history"]),
        (&"server".into(), &"Sr".into()),
        "the REJECT rule answers the SYN with a RST in the server's name: {f}\n{}",
        report.context()
    );
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("rejected_by_firewall");
    report.assert_severity(d, &["error"]);
    assert_eq!(
        report.evidence_u64(d, "refused"),
        1,
        "evidence.refused should count the one refused connection: {d}\n{}",
        report.context()
    );
    assert_eq!(
        report.evidence_str(d, "listener"),
        format!("127.0.0.1:{port}"),
        "evidence.listener should be the listener that exists despite the refusal: {d}\n{}",
        report.context()
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    report.assert_top("rejected_by_firewall");
    report.assert_absent(
        "nothing_listening",
        "a process is listening on 127.0.0.1 on the port",
    );
}

#[test]
fn reject_with_icmp_is_a_firewall() {
    const TEST: &str = "reject_with_icmp_is_a_firewall";
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3", "iptables"]) else {
        return;
    };
    let _listener = spawn_listener(&ns, server, 128, false);
    let p = port.to_string();
    ns.run(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &p,
        "-j",
        "REJECT",
        "--reject-with",
        "icmp-port-unreachable",
    ]);

    let capture = start_capture(&ns, port, 3, &[]);
    // ICMP port unreachable makes connect() fail with ECONNREFUSED too.
    let cport = refused_client(&ns, server);
    let report = capture.finish();

    let f = report.assert_outcome(cport, "unreachable", "SYN rejected with ICMP");
    assert_eq!(
        f["icmp"],
        "port_unreachable",
        "the REJECT rule sends ICMP port unreachable: {f}\n{}",
        report.context()
    );
    report.assert_exit(1, "an unreachable connection was seen");

    let d = report.finding("rejected_by_firewall");
    report.assert_severity(d, &["error"]);
    // Live, a certain finding is printed the moment it is certain, not only at exit: the
    // capture ran ~2.5 s more after the rejected SYN.
    let first = report
        .lines
        .iter()
        .find(|(_, v)| v["type"] == "finding" && v["kind"] == "rejected_by_firewall")
        .map(|(l, _)| l.arrived)
        .expect("a finding line");
    let last = report.lines.last().expect("output").0.arrived;
    assert!(
        last.duration_since(first).unwrap_or_default() >= std::time::Duration::from_secs(1),
        "the finding should be printed as soon as the ICMP error arrives, long before the summary\n{}",
        report.context()
    );
    assert_eq!(
        report.evidence_str(d, "icmp"),
        "port_unreachable",
        "evidence.icmp should name the ICMP code the firewall sent: {d}\n{}",
        report.context()
    );
    report.assert_top("rejected_by_firewall");
    report.assert_absent(
        "nothing_listening",
        "Linux TCP never answers a SYN with ICMP port unreachable (it sends a RST), and a \
         listener exists",
    );
}

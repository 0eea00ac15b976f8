//! Diagnosis tests: each one builds a real cause of failing (or surprising) connections
//! inside a network namespace of its own, runs the real `portsniff` binary inside it, and
//! checks that portsniff names the cause: a `{"type":"finding"}` line of the right kind,
//! severity and evidence, naming the processes the test started (by PID).
//!
//! Every test first checks the flow records (the connection outcomes the scenario must
//! produce), so a broken setup fails with a setup message rather than a wrong diagnosis.
//!
//! They need root (capture, namespaces, iptables, sysctls inside the namespace). Without it
//! they print "skipping: …" and pass, except under `CI=true`, where they fail. Firewall
//! rules and sysctls are set only inside the test's own namespaces, which are deleted when
//! the test ends (also on panic); helper processes are killed by PID.

mod diag;
mod support;

use support::live;

use diag::recipe::check_recipe;
use diag::{
    fresh_port, listen_overflows, owned_socket, prerequisites, refused_client,
    spawn_connecting_client, spawn_listener, start_capture, v4, LISTENER_MARK, TCP_LISTEN,
    TCP_SYN_SENT,
};
use socket2::{Domain, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use support::live::{accept_within, connect_from_known_port, Netns};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn drop_rule_is_silently_dropped() {
    const TEST: &str = "drop_rule_is_silently_dropped";
    if !prerequisites(TEST, &["python3", "iptables"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    // A listener exists and is idle: nothing but the firewall explains the silence.
    let _listener = spawn_listener(&ns, server, 128, false);
    let p = port.to_string();
    ns.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", &p, "--syn", "-j", "DROP",
    ]);

    let capture = start_capture(&ns, port, 3, &["--syn-timeout", "1"]).with_text(&ns);
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
        "the client retried its SYN during the 3 s capture, syn_count is {}: {f}\n{}",
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
    if !prerequisites(TEST, &["python3", "iptables"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
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

#[test]
fn ipv6_only_listener_reached_on_ipv4() {
    const TEST: &str = "ipv6_only_listener_reached_on_ipv4";
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let has_v6 = ns
        .on_thread(|| TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok())
        .join()
        .expect("probe thread");
    if !has_v6 {
        live::skip(TEST, "::1 is not configured on lo in a new namespace");
        return;
    }
    let listener = spawn_listener(
        &ns,
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        128,
        true,
    );

    let capture = start_capture(&ns, port, 3, &[]).with_text(&ns);
    let cport = refused_client(&ns, v4([127, 0, 0, 1], port));
    let report = capture.finish();

    report.assert_outcome(cport, "refused", "IPv4 connect to an IPv6-only listener");
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("listener_other_family");
    report.assert_severity(d, &["error"]);
    assert_eq!(
        report.evidence_str(d, "listener"),
        format!("[::1]:{port}"),
        "evidence.listener should be the IPv6-only listener: {d}\n{}",
        report.context()
    );
    assert_eq!(
        report.evidence_u64(d, "refused"),
        1,
        "evidence.refused should count the one refused connection: {d}\n{}",
        report.context()
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    report.assert_top("listener_other_family");
    report.assert_absent(
        "nothing_listening",
        "a process listens on the port, on [::1] with IPV6_V6ONLY",
    );
    check_recipe("ipv6-only-listener", &report, port);
}

#[test]
fn listener_on_another_loopback_address() {
    const TEST: &str = "listener_on_another_loopback_address";
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    // lo answers for all of 127.0.0.0/8.
    let listener = spawn_listener(&ns, v4([127, 0, 0, 2], port), 128, false);

    let capture = start_capture(&ns, port, 3, &[]);
    let cport = refused_client(&ns, v4([127, 0, 0, 1], port));
    let report = capture.finish();

    report.assert_outcome(
        cport,
        "refused",
        "connect to 127.0.0.1 with a listener on 127.0.0.2",
    );
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("listener_other_address");
    report.assert_severity(d, &["error"]);
    assert_eq!(
        report.evidence_str(d, "listener"),
        format!("127.0.0.2:{port}"),
        "evidence.listener should be the listener on 127.0.0.2: {d}\n{}",
        report.context()
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    report.assert_top("listener_other_address");
    report.assert_absent(
        "nothing_listening",
        "a process listens on the port, on 127.0.0.2",
    );
}

#[test]
fn full_accept_queue_names_the_process_not_calling_accept() {
    const TEST: &str = "full_accept_queue_names_the_process_not_calling_accept";
    const CLIENTS: usize = 6;
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    // Backlog 1 and never accept(): Linux completes backlog + 1 = 2 handshakes, then drops
    // every further SYN (counting TcpExt ListenOverflows) without answering it.
    let listener = spawn_listener(&ns, server, 1, false);

    let capture = start_capture(&ns, port, 5, &["--syn-timeout", "1"]).with_text(&ns);
    // All clients at once, each from a known port, each giving up after 3 s.
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| ns.on_thread(move || connect_from_known_port(server)))
        .collect();
    let results: Vec<(u16, std::io::Result<Socket>)> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    let report = capture.finish();
    let overflows = listen_overflows(&ns);
    let queued = owned_socket(listener.pid(), server, TCP_LISTEN).rx_queue;

    let timed_out: Vec<u16> = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(e) if e.kind() == ErrorKind::TimedOut))
        .map(|(p, _)| *p)
        .collect();
    let connected = results.iter().filter(|(_, r)| r.is_ok()).count();
    assert!(
        !timed_out.is_empty() && connected >= 1 && timed_out.len() + connected == CLIENTS,
        "test setup: with backlog 1 and no accept(), some connects should succeed (queued) \
         and the rest time out; got {:?}",
        results
            .iter()
            .map(|(p, r)| (p, r.as_ref().map(|_| ()).map_err(|e| e.kind())))
            .collect::<Vec<_>>()
    );
    assert!(
        queued > 1,
        "test setup: the listener's accept queue should be full (more than its backlog of \
         1), /proc/net/tcp shows {queued}"
    );
    assert!(
        overflows > 0,
        "test setup: the namespace's ListenOverflows counter should have grown, it is \
         {overflows}"
    );
    assert_eq!(
        report.finals().len(),
        CLIENTS,
        "every one of the {CLIENTS} connection attempts should get a final record\n{}",
        report.context()
    );
    for &p in &timed_out {
        report.assert_outcome(
            p,
            "unanswered",
            "a SYN dropped because the accept queue is full",
        );
    }
    report.assert_exit(1, "unanswered connections were seen");

    let d = report.finding("accept_queue_full");
    report.assert_severity(d, &["error"]);
    let n = report.evidence_u64(d, "listen_overflows");
    assert!(
        (1..=overflows).contains(&n),
        "evidence.listen_overflows should be positive and at most the kernel's counter \
         ({overflows}), it is {n}: {d}\n{}",
        report.context()
    );
    assert_eq!(
        report.evidence_u64(d, "backlog"),
        1,
        "evidence.backlog should be the listener's backlog (1): {d}\n{}",
        report.context()
    );
    let queue = report.evidence_u64(d, "accept_queue");
    assert!(
        queue >= 1,
        "evidence.accept_queue should show the full queue ({connected} connections wait in \
         it), it is {queue}: {d}\n{}",
        report.context()
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    report.assert_top("accept_queue_full");
    report.assert_ranked_above("accept_queue_full", "silently_dropped");
    drop(results); // the queued connections stay open until the capture has ended
    check_recipe("accept-queue-full", &report, port);
}

#[test]
fn server_closing_with_unread_data_resets() {
    const TEST: &str = "server_closing_with_unread_data_resets";
    if !prerequisites(TEST, &[]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    let capture = start_capture(&ns, port, 3, &[]);
    let cport = ns
        .on_thread(move || {
            let listener = TcpListener::bind(server).expect("listen inside the namespace");
            let mut client =
                TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("client connects");
            client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            let cport = client.local_addr().expect("client address").port();
            client
                .write_all(&[b'q'; 1000])
                .expect("client sends 1000 bytes");
            let srv = accept_within(&listener, IO_TIMEOUT);
            // Wait until all 1000 bytes sit in the server's receive buffer, without
            // reading them (peek does not consume).
            let deadline = Instant::now() + IO_TIMEOUT;
            let mut buf = [0u8; 2000];
            loop {
                let n = srv.peek(&mut buf).expect("peek at the server socket");
                if n >= 1000 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "test setup: only {n} of 1000 bytes reached the server"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(srv); // close() with unread data: Linux sends a RST, not a FIN
            let res = client.read(&mut buf);
            assert!(
                matches!(&res, Err(e) if e.kind() == ErrorKind::ConnectionReset),
                "test setup: the client should see ECONNRESET, got {res:?}"
            );
            cport
        })
        .join()
        .expect("scenario thread");
    let report = capture.finish();

    let f = report.assert_outcome(cport, "reset", "server closed with unread data");
    assert_eq!(
        (&f["reset_by"], &f["bytes_c2s"], &f["bytes_s2c"]),
        (&"server".into(), &1000.into(), &0.into()),
        "the server reset the connection after the client's 1000 bytes, sending none: \
         {f}\n{}",
        report.context()
    );
    report.assert_exit(1, "a reset connection was seen");

    let d = report.finding("reset_by_server");
    // The connection worked until the reset: a warning (errors are for failed connects).
    report.assert_severity(d, &["warning"]);
    assert_eq!(
        report.evidence_u64(d, "resets"),
        1,
        "evidence.resets should count the one reset: {d}\n{}",
        report.context()
    );
    assert_eq!(
        report.evidence_str(d, "context"),
        "unread_data",
        "the server reset right after the client's data, which it never acknowledged \
         reading: evidence.context should be \"unread_data\": {d}\n{}",
        report.context()
    );
    report.assert_top("reset_by_server");
    report.assert_absent("reset_by_client", "only the server sent a RST");
}

/// Connects from 127.0.0.1:`cport` (SO_REUSEADDR), exchanges a request and a reply, and
/// closes client first (so the client holds TIME_WAIT). Returns `None` if bind or connect
/// is refused locally (the 4-tuple is still in TIME_WAIT and may not be reused yet).
fn exchange_from_port(listener: &TcpListener, server: SocketAddr, cport: u16) -> Option<()> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("client socket");
    sock.set_reuse_address(true).expect("SO_REUSEADDR");
    sock.bind(&v4([127, 0, 0, 1], cport).into()).ok()?;
    sock.connect_timeout(&server.into(), IO_TIMEOUT).ok()?;
    let mut client = TcpStream::from(sock);
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client.write_all(b"request").expect("client sends");
    let mut srv = accept_within(listener, IO_TIMEOUT);
    let mut req = [0u8; 7];
    srv.read_exact(&mut req).expect("server reads");
    srv.write_all(b"reply").expect("server replies");
    let mut reply = [0u8; 5];
    client.read_exact(&mut reply).expect("client reads");
    drop(client); // client FIN first: TIME_WAIT on the client
    let rest = live::read_to_eof(&mut srv, 64).expect("server reads EOF");
    assert!(rest.is_empty(), "test setup: unexpected bytes {rest:?}");
    drop(srv);
    // Let the last ACK of the close go out before anything else happens.
    std::thread::sleep(Duration::from_millis(300));
    Some(())
}

#[test]
fn time_wait_reuse_from_a_fixed_client_port() {
    const TEST: &str = "time_wait_reuse_from_a_fixed_client_port";
    const CPORT: u16 = 40123;
    if !prerequisites(TEST, &["sysctl"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    // Loopback TIME_WAIT reuse (tcp_tw_reuse=2, the default), after 100 ms instead of 1 s
    // where the kernel has the knob (Linux >= 6.13); older kernels need just over 1 s.
    ns.run(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=2"]);
    if std::path::Path::new("/proc/sys/net/ipv4/tcp_tw_reuse_delay").exists() {
        ns.run(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse_delay=100"]);
    }
    let server = v4([127, 0, 0, 1], port);
    let capture = start_capture(&ns, port, 5, &[]).with_text(&ns);
    let waited = ns
        .on_thread(move || {
            let listener = TcpListener::bind(server).expect("listen inside the namespace");
            exchange_from_port(&listener, server, CPORT).expect("first connection from 40123");
            let closed = Instant::now();
            // Same port again while the first connection is in TIME_WAIT; bind/connect
            // fail locally (nothing is sent) until the kernel allows the reuse. At most
            // 3 s, in 50 ms steps.
            for _ in 0..60 {
                if exchange_from_port(&listener, server, CPORT).is_some() {
                    return closed.elapsed();
                }
                assert!(
                    closed.elapsed() < Duration::from_secs(3),
                    "test setup: could not reuse port {CPORT} within 3 s of TIME_WAIT"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("test setup: could not reuse port {CPORT}");
        })
        .join()
        .expect("scenario thread");
    let report = capture.finish();

    let finals = report.finals_from(CPORT);
    assert_eq!(
        finals.len(),
        2,
        "two connections came from port {CPORT} (the second {waited:?} after the first \
         closed)\n{}",
        report.context()
    );
    for f in &finals {
        assert_eq!(
            (&f["outcome"], &f["closed_first_by"]),
            (&"closed".into(), &"client".into()),
            "both connections closed cleanly, client first: {f}\n{}",
            report.context()
        );
    }
    assert_eq!(
        (&finals[0]["port_reused"], &finals[1]["port_reused"]),
        (&false.into(), &true.into()),
        "the second connection's SYN came while the first was in TIME_WAIT\n{}",
        report.context()
    );
    report.assert_exit(0, "both connections closed cleanly");

    let d = report.finding("time_wait_reuse");
    // Both connections worked: a warning, not an error.
    report.assert_severity(d, &["warning"]);
    assert_eq!(
        report.evidence_u64(d, "flows"),
        1,
        "evidence.flows should count the one connection that reused a TIME_WAIT 4-tuple: \
         {d}\n{}",
        report.context()
    );
    report.assert_top("time_wait_reuse");
    check_recipe("time-wait-reuse", &report, port);
}

#[test]
fn listener_in_another_namespace() {
    const TEST: &str = "listener_in_another_namespace";
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(a) = Netns::create(TEST) else {
        return;
    };
    let Some(b) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    let listener = spawn_listener(&b, server, 128, false);

    let capture = start_capture(&a, port, 3, &[]);
    let cport = refused_client(&a, server);
    let report = capture.finish();

    report.assert_outcome(
        cport,
        "refused",
        "nothing listens in the client's namespace",
    );
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("listener_other_namespace");
    report.assert_severity(d, &["error"]);
    let listener_addr = report.evidence_str(d, "listener");
    assert!(
        listener_addr.ends_with(&format!(":{port}")),
        "evidence.listener should be the listener in namespace {} on port {port}, it is \
         {listener_addr:?}: {d}\n{}",
        b.name,
        report.context()
    );
    let namespace = report.evidence_str(d, "namespace");
    assert!(
        !namespace.trim().is_empty(),
        "evidence.namespace should identify the listener's namespace ({}): {d}\n{}",
        b.name,
        report.context()
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    report.assert_top("listener_other_namespace");
    report.assert_ranked_above("listener_other_namespace", "nothing_listening");
}

#[test]
fn no_traffic_says_where_the_syns_went() {
    const TEST: &str = "no_traffic_says_where_the_syns_went";
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let elsewhere = v4([127, 0, 0, 1], fresh_port());
    let _listener = spawn_listener(&ns, elsewhere, 128, false);

    let capture = start_capture(&ns, port, 3, &[]);
    // The client connects to the other port (its connection is queued, never accepted).
    ns.on_thread(move || {
        let (_, res) = connect_from_known_port(elsewhere);
        res.unwrap_or_else(|e| panic!("test setup: connect to {elsewhere}: {e}"));
    })
    .join()
    .expect("client thread");
    let report = capture.finish();

    assert!(
        report.flows().is_empty() && report.summary()["flows"] == 0,
        "nothing connected to port {port}, so there should be no flow records\n{}",
        report.context()
    );
    report.assert_exit(0, "no connection to the port failed");

    let d = report.finding("no_traffic");
    report.assert_severity(d, &["warning"]);
    let elsewhere_s = elsewhere.to_string();
    let entries = d["evidence"]["syns_elsewhere"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let entry = entries
        .iter()
        .find(|e| e["dst"] == elsewhere_s.as_str())
        .unwrap_or_else(|| {
            panic!(
                "evidence.syns_elsewhere should list {elsewhere_s}, where the client's SYN \
                 went; it is {}: {d}\n{}",
                d["evidence"]["syns_elsewhere"],
                report.context()
            )
        });
    assert!(
        entry["syns"].as_u64().is_some_and(|n| n >= 1),
        "the entry for {elsewhere_s} should count at least one SYN: {entry}\n{}",
        report.context()
    );
    report.assert_top("no_traffic");
}

#[test]
fn nothing_listening_when_refused_and_no_listener() {
    const TEST: &str = "nothing_listening_when_refused_and_no_listener";
    if !prerequisites(TEST, &[]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let capture = start_capture(&ns, port, 3, &[]).with_text(&ns);
    let cport = refused_client(&ns, v4([127, 0, 0, 1], port));
    let report = capture.finish();

    report.assert_outcome(cport, "refused", "connect with nothing listening");
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("nothing_listening");
    report.assert_severity(d, &["error"]);
    assert_eq!(
        report.evidence_u64(d, "refused"),
        1,
        "evidence.refused should count the one refused connection: {d}\n{}",
        report.context()
    );
    report.assert_top("nothing_listening");
    check_recipe("refused-localhost", &report, port);
}

/// The finding helpers themselves (no root needed): one finding per kind, its last
/// occurrence, ranked in the order of the final list; the schema is checked.
#[test]
fn finding_helpers_keep_the_last_occurrence_of_each_kind() {
    use std::os::unix::process::ExitStatusExt;
    let finding = |kind: &str, sev: &str, n: u64| {
        format!(
            r#"{{"type":"finding","kind":"{kind}","severity":"{sev}","headline":"h","explanation":"e","evidence":{{"unanswered":{n}}},"processes":[{{"pid":42,"name":"python3","cmdline":"python3 -c x psd-listener","user":"root","role":"listener"}}],"next_step":"n"}}"#
        )
    };
    let texts = [
        r#"{"type":"flow","final":false,"id":1,"client":"127.0.0.1:40000"}"#.to_string(),
        finding("silently_dropped", "error", 1), // live, early
        r#"{"type":"flow","final":true,"id":1,"client":"127.0.0.1:40000"}"#.to_string(),
        finding("accept_queue_full", "error", 7),
        finding("silently_dropped", "warning", 3), // final list: ranked second
        r#"{"type":"summary","flows":1}"#.to_string(),
    ];
    let lines: Vec<(live::Line, serde_json::Value)> = texts
        .iter()
        .map(|t| {
            let line = live::Line {
                arrived: std::time::SystemTime::now(),
                text: t.clone(),
            };
            (line, serde_json::from_str(t).expect("valid JSON"))
        })
        .collect();
    let report = diag::Report {
        text: None,
        run: live::Finished {
            status: std::process::ExitStatus::from_raw(1 << 8),
            stdout: lines.iter().map(|(l, _)| l.clone()).collect(),
            stderr: String::new(),
        },
        out: texts.join("\n"),
        lines,
    };
    assert_eq!(report.kinds(), ["accept_queue_full", "silently_dropped"]);
    report.assert_top("accept_queue_full");
    report.assert_ranked_above("accept_queue_full", "silently_dropped");
    report.assert_absent("nothing_listening", "not printed");
    let d = report.finding("silently_dropped");
    report.assert_severity(d, &["warning"]);
    assert_eq!(report.evidence_u64(d, "unanswered"), 3);
    report.assert_names_process(d, 42, "listener", LISTENER_MARK);
    report.assert_exit(1, "synthetic");
    assert_eq!(report.finals_from(40000).len(), 1);
    assert_eq!(report.flows_from(40000).len(), 2);
    assert_eq!(report.summary()["flows"], 1);
}

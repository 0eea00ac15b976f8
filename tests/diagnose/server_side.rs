//! The server's side: a full accept queue, a server closing with unread data (RST), and
//! a client reusing a 4-tuple still in TIME_WAIT.

use crate::*;

#[test]
fn full_accept_queue_names_the_process_not_calling_accept() {
    const TEST: &str = "full_accept_queue_names_the_process_not_calling_accept";
    const CLIENTS: usize = 6;
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3"]) else {
        return;
    };
    // Backlog 1 and never accept(): Linux completes backlog + 1 = 2 handshakes, then drops
    // every further SYN (counting TcpExt ListenOverflows) without answering it.
    let listener = spawn_listener(&ns, server, 1, false);

    let capture = start_capture(&ns, port, 5, &["--syn-timeout", "1"]).with_text(&ns);
    // Each client from a known port, each giving up after 3 s. The two the queue takes
    // first, one after the other, then the rest at once: all at once, a SYN could take
    // a SYN-queue slot before the accept queue filled and have its handshake ACK dropped
    // after, and whether one did changed the finding's words from run to run (seen on a
    // loaded machine).
    let mut results: Vec<(u16, std::io::Result<Socket>)> = (0..2)
        .map(|_| {
            ns.on_thread(move || connect_from_known_port(server))
                .join()
                .expect("client thread")
        })
        .collect();
    let threads: Vec<_> = (2..CLIENTS)
        .map(|_| ns.on_thread(move || connect_from_known_port(server)))
        .collect();
    results.extend(
        threads
            .into_iter()
            .map(|t| t.join().expect("client thread")),
    );
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
    let Some((ns, port, server)) = loopback_stage(TEST, &[]) else {
        return;
    };
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

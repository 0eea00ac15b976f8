//! Inside a network namespace the test makes: SYNs dropped by a rule, the live pending
//! notice printed before the flow's final line.

use crate::*;

#[test]
fn live_pending_notice_for_dropped_syns_inside_a_namespace() {
    const TEST: &str = "live_pending_notice_for_dropped_syns_inside_a_namespace";
    if which("iptables").is_none() {
        skip(
            TEST,
            "needs iptables to drop SYNs inside a network namespace",
        );
        return;
    }
    let Some((ns, port)) = namespace_and_port(TEST) else {
        return;
    };
    let port_s = port.to_string();
    ns.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", &port_s, "--syn", "-j", "DROP",
    ]);

    let sniffer_cmd = ns.portsniff(&[
        "-i",
        "lo",
        "--port",
        &port_s,
        "--json",
        "--syn-timeout",
        "1",
        "--duration",
        "4",
    ]);
    let mut sniffer = Sniffer::spawn(sniffer_cmd, "ip netns exec NS portsniff -i lo");
    sniffer.wait_for_banner();

    // A client inside the namespace whose SYNs are all dropped; it gives up after 3 s.
    let client = ns.on_thread(move || {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("client socket");
        let started = SystemTime::now();
        let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let res = sock.connect_timeout(&server.into(), Duration::from_secs(3));
        (started, res.map_err(|e| e.kind()))
    });
    let (started, res) = client.join().expect("client thread");
    assert_eq!(
        res,
        Err(ErrorKind::TimedOut),
        "test setup: with the iptables DROP rule the connect should time out"
    );

    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    drop(ns);
    let lines = run.json();
    let out = run.stdout_text();
    let all: Vec<(usize, &Line, &Value)> = flows(&lines)
        .into_iter()
        .enumerate()
        .map(|(i, (l, v))| (i, l, v))
        .collect();

    let pending: Vec<_> = all.iter().filter(|(_, _, v)| v["final"] == false).collect();
    assert_eq!(
        pending.len(),
        1,
        "a SYN unanswered for longer than --syn-timeout 1 should produce exactly one \
         pending notice (\"final\":false), portsniff printed {}; stdout:\n{out}",
        pending.len()
    );
    let &(pending_idx, pending_line, p) = pending[0];
    assert_eq!(
        p["outcome"], "unanswered",
        "the pending notice should say the SYN is unanswered, it says {}: {p}",
        p["outcome"]
    );
    assert!(
        p["syn_count"].as_u64().is_some_and(|n| n >= 1),
        "the pending notice should count at least one SYN: {p}"
    );
    let first_ts = p["first_ts"].as_f64().expect("first_ts is a number");
    let started_secs = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    assert!(
        (first_ts - started_secs).abs() < 1.0,
        "the flow's first_ts ({first_ts}) should be the time of the client's first SYN \
         (connect started at {started_secs}): {p}"
    );
    let latency = pending_line.arrived_secs() - first_ts;
    assert!(
        (0.95..=2.5).contains(&latency),
        "with --syn-timeout 1 the pending notice should arrive 1 s (at most ~2.5 s) after \
         the first SYN; it arrived after {latency:.3} s: {p}"
    );

    let finals: Vec<_> = all.iter().filter(|(_, _, v)| v["final"] == true).collect();
    assert_eq!(
        finals.len(),
        1,
        "the unanswered connection should get exactly one final record, portsniff printed \
         {}; stdout:\n{out}",
        finals.len()
    );
    let &(final_idx, _, f) = finals[0];
    assert_eq!(
        f["id"], p["id"],
        "the final record should be for the same flow id as the pending notice: \
         pending {p}\nfinal {f}"
    );
    assert!(
        pending_idx < final_idx,
        "the pending notice must come before the final record; stdout:\n{out}"
    );
    assert_eq!(
        f["outcome"], "unanswered",
        "SYNs dropped by a firewall should end as unanswered, portsniff said {}: {f}\nall output:\n{out}",
        f["outcome"]
    );
    let syns = f["syn_count"].as_u64().unwrap_or(0);
    assert!(
        syns >= 2,
        "the client retransmitted its SYN during 3 s (the kernel retries after 1 s), so \
         syn_count should be at least 2, it is {}: {f}\nall output:\n{out}",
        f["syn_count"]
    );
    assert_eq!(
        f["syn_gaps_us"].as_array().map(Vec::len),
        Some(syns as usize - 1),
        "syn_gaps_us should hold one gap per retransmitted SYN: {f}\nall output:\n{out}"
    );

    let s = summary(&lines, &out);
    assert_eq!(
        (&s["flows"], &s["problems"], &s["outcomes"]["unanswered"]),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "the summary should count the connection once (the pending notice is not a second \
         flow): 1 flow, 1 problem, 1 unanswered: {s}"
    );
    assert_eq!(
        run.code(),
        Some(1),
        "an unanswered connection was seen, so the exit status should be 1, it was {:?}; \
         stderr:\n{}",
        run.status,
        run.stderr
    );
}

/// `-G 1 -w DIR/live-%S.pcap` on `lo` inside a namespace over ~3 s of real connections:
/// a file per second of packet time, each whole and readable by tcpdump.
#[test]
fn live_dash_g_1_rotates_a_capture_into_files_tcpdump_reads() {
    const TEST: &str = "live_dash_g_1_rotates_a_capture_into_files_tcpdump_reads";
    if !have_root(TEST) {
        return;
    }
    let Some(tcpdump) = which("tcpdump") else {
        skip(TEST, "needs tcpdump to read the rotated files");
        return;
    };
    let Some(ns) = Netns::create_tagged(TEST, "rot") else {
        return;
    };
    let port = ReservedPort::on(Ipv4Addr::LOCALHOST.into())
        .expect("bind 127.0.0.1:0")
        .port();
    let port_s = port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("live-%S.pcap");
    let sniffer_cmd = ns.portsniff(&[
        "-i",
        "lo",
        "--port",
        &port_s,
        "--json",
        "-G",
        "1",
        "-w",
        pattern.to_str().unwrap(),
        "--duration",
        "4",
    ]);
    let mut sniffer = Sniffer::spawn(sniffer_cmd, "ip netns exec NS portsniff -i lo -G 1");
    sniffer.wait_for_banner();

    // A listener and a client inside the namespace: 30 connections, one every 100 ms.
    let traffic = ns.on_thread(move || {
        let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = std::net::TcpListener::bind(server).expect("listen in the namespace");
        for _ in 0..30 {
            let mut client = TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("connect");
            let (mut accepted, _) = listener.accept().expect("accept");
            client.write_all(b"ping").expect("write");
            let mut buf = [0u8; 4];
            accepted.read_exact(&mut buf).expect("read");
            drop(client);
            drop(accepted);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    traffic.join().expect("traffic thread");
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    drop(ns);
    assert!(
        run.stderr.contains("packets written to"),
        "the written line: {}",
        run.stderr
    );
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "3 s of connections with -G 1 make several files: {files:?}\n{}",
        run.stderr
    );
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("live-") && name.ends_with(".pcap"),
            "only rotated files, no temporary one left: {name}"
        );
        let out = Command::new(&tcpdump)
            .args(["-nn", "-r"])
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "tcpdump reads packets from {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

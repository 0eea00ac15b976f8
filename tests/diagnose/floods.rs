//! Drops that are not a firewall blocking the port: a rate limit that lets every
//! connection through late (slow connects), a full queue with tcp_abort_on_overflow, and a
//! SYN flood from spoofed sources answered with SYN cookies.

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

/// The final syn_flood finding, which must lead the diagnosis (`why`), and the kinds of
/// all the final findings.
fn leading_flood<'a>(report: &'a diag::Report, why: &str) -> (&'a Value, Vec<&'a str>) {
    let finals = final_findings(report);
    let kinds: Vec<&str> = finals.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(
        kinds.first().copied(),
        Some("syn_flood"),
        "{why}; final findings {kinds:?}\n{}",
        report.context()
    );
    (finals[0], kinds)
}

#[test]
fn a_hashlimit_that_delays_syns_is_a_slow_connect_not_a_silent_drop() {
    const TEST: &str = "a_hashlimit_that_delays_syns_is_a_slow_connect_not_a_silent_drop";
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3", "iptables"]) else {
        return;
    };
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
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3", "sysctl", "iptables"]) else {
        return;
    };
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
    let Some((ns, port, server)) = loopback_stage(TEST, &["python3", "iptables"]) else {
        return;
    };
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

/// Spoofed sources the flood's SYNs come from: `n` addresses in 10.202.0.0/16, routed back
/// through the peer (which does not forward, so their SYN-ACKs die there unanswered, as a
/// spoofed victim's would), then `martians` in documentation ranges no route leads back
/// to (the kernel's reverse-path filter discards them).
fn flood_sources(n: u32, martians: u32) -> Vec<std::net::Ipv4Addr> {
    let routed = (0..n).map(|i| std::net::Ipv4Addr::from(0x0aca_0000 + 0x0100 + i));
    let spoofed = (0..martians).map(|i| std::net::Ipv4Addr::from(0xc000_0200 + (i % 250) + 1));
    routed.chain(spoofed).collect()
}

#[test]
fn a_spoofed_syn_flood_with_syncookies_is_a_syn_flood_not_a_firewall() {
    spoofed_flood(
        "a_spoofed_syn_flood_with_syncookies_is_a_syn_flood_not_a_firewall",
        &[],
    );
}

#[test]
fn without_the_witness_a_spoofed_syn_flood_is_still_a_syn_flood_from_packets_and_counters() {
    spoofed_flood(
        "without_the_witness_a_spoofed_syn_flood_is_still_a_syn_flood_from_packets_and_counters",
        &["--no-kernel-events"],
    );
}

/// `hping3 --flood -S` from one host: every SYN from one address, each from a new port,
/// at a listener whose SYN queue overflows into cookies. One source address is below the
/// flood's usual bar, but the attempts are one-shot and never complete: a flood, not a
/// few stalled handshakes (the queued attempts' retransmitted SYN-ACKs) and silence
/// about the rest.
#[test]
fn a_flood_from_one_host_changing_only_its_port_is_a_syn_flood() {
    const TEST: &str = "a_flood_from_one_host_changing_only_its_port_is_a_syn_flood";
    let Some((ns, peer, s_if)) = flood_namespaces(TEST, true) else {
        return;
    };
    let port = fresh_port();
    let server = v4([10, 201, 0, 1], port);
    let _listener = spawn_listener(&ns, server, 8, false);
    let capture = start_capture_on(&ns, &s_if, port, 4, &[]);
    let one_host = flood_sources(1, 0)[0];
    send_flood(&peer, server, vec![one_host; 2000])
        .join()
        .expect("flood thread");
    let report = capture.finish();
    let (f, kinds) = leading_flood(&report, "one host's flood of one-shot SYNs is a flood");
    assert_eq!(report.evidence_u64(f, "sources"), 1, "{f}");
    assert!(report.evidence_u64(f, "half_open") >= 1900, "{f}");
    let headline = f["headline"].as_str().unwrap_or("");
    assert!(
        headline.contains(&format!("from 1 source address, {one_host} (")),
        "the one host is named: {headline}"
    );
    // Its SYNs are counted to it, and the first thing to do is block it: a tool on a
    // real host, not spoofed sources, which an address rule could not stop.
    let named = &f["evidence"]["sources_named"];
    assert_eq!(named[0]["address"], one_host.to_string(), "{f}");
    assert!(named[0]["syns"].as_u64() >= Some(1900), "{f}");
    let next = f["next_step"].as_str().unwrap_or("");
    assert!(
        next.starts_with(&format!(
            "block {one_host} if it is not a client of yours: iptables -I INPUT -p tcp --dport {port} -s {one_host} -j DROP"
        )),
        "{next}"
    );
    let why = f["explanation"].as_str().unwrap_or("");
    assert!(!why.contains("spoofed source has no socket"), "{why}");
    assert!(
        !kinds.contains(&"handshake_stalled"),
        "the queued attempts' retransmitted SYN-ACKs are the flood's, not a path problem: \
         {kinds:?}\n{}",
        report.context()
    );
}

/// The server's namespace and a veth peer the flood comes from (its spoofed sources
/// routed back through the peer, martians filtered by rp_filter), with
/// tcp_syncookies=`cookies`: (server's namespace, peer, server's interface).
fn flood_namespaces(test: &str, cookies: bool) -> Option<(Netns, Netns, String)> {
    use crate::support::live::veth_between;
    if !prerequisites(test, &["python3", "sysctl"]) {
        return None;
    }
    let (Some(ns), Some(peer)) = (Netns::create(test), Netns::create(test)) else {
        return None;
    };
    // Interface names: at most 15 bytes, unique per test process and call (the
    // scenarios run in parallel threads).
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seq = std::process::id() % 100_000 * 10 + call % 10;
    let (s_if, p_if) = (format!("pfs{seq}"), format!("pfp{seq}"));
    veth_between(&ns, &peer, &s_if, &p_if);
    ns.run(&["ip", "addr", "add", "10.201.0.1/24", "dev", &s_if]);
    ns.run(&["ip", "link", "set", &s_if, "up"]);
    ns.run(&["ip", "route", "add", "10.202.0.0/16", "via", "10.201.0.2"]);
    peer.run(&["ip", "addr", "add", "10.201.0.2/24", "dev", &p_if]);
    peer.run(&["ip", "link", "set", &p_if, "up"]);
    let cookies = format!("net.ipv4.tcp_syncookies={}", u8::from(cookies));
    ns.run(&["sysctl", "-qw", &cookies]);
    for key in ["all", s_if.as_str()] {
        ns.run(&["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=1")]);
    }
    Some((ns, peer, s_if))
}

/// Sends one spoofed SYN to `server` from each of `sources`, two a millisecond, from the
/// peer (bounded: 5 s). The thread returns when the last was sent.
fn send_flood(
    peer: &Netns,
    server: SocketAddr,
    sources: Vec<std::net::Ipv4Addr>,
) -> std::thread::JoinHandle<std::time::SystemTime> {
    use crate::support::live::spoofed_syn;
    use socket2::Protocol;
    let packets: Vec<Vec<u8>> = sources
        .iter()
        .enumerate()
        .map(|(i, &src)| spoofed_syn(src, 1024 + (i % 60_000) as u16, server))
        .collect();
    peer.on_thread(move || {
        let raw = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("a raw socket in the peer namespace");
        let deadline = Instant::now() + Duration::from_secs(5);
        for pair in packets.chunks(2) {
            for p in pair {
                raw.send_to(p, &server.into()).expect("send a spoofed SYN");
            }
            std::thread::sleep(Duration::from_millis(1));
            assert!(
                Instant::now() < deadline,
                "test setup: the flood took too long"
            );
        }
        std::time::SystemTime::now()
    })
}

#[test]
fn with_syncookies_off_a_real_clients_dropped_syns_are_the_floods_not_a_firewalls() {
    const TEST: &str =
        "with_syncookies_off_a_real_clients_dropped_syns_are_the_floods_not_a_firewalls";
    let Some((ns, peer, s_if)) = flood_namespaces(TEST, false) else {
        return;
    };
    let port = fresh_port();
    let server = v4([10, 201, 0, 1], port);
    // Backlog 8 and no cookies: once 8 spoofed attempts wait for their ACK, every SYN is
    // dropped (TCPReqQFullDrop) while their SYN-ACKs are retried, far past the capture.
    let _listener = spawn_listener(&ns, server, 8, false);
    let queue_drops_before = tcp_ext(&ns, "TCPReqQFullDrop");
    let capture = start_capture_on(&ns, &s_if, port, 5, &["--syn-timeout", "1"]);
    let flood = send_flood(&peer, server, flood_sources(600, 0));
    // A real client while the flood runs: its SYN and a retransmission (1 s later) are
    // dropped with the flood's; connect() gives up after 2.5 s.
    std::thread::sleep(Duration::from_millis(200));
    let refused = peer
        .on_thread(move || TcpStream::connect_timeout(&server, Duration::from_millis(2500)))
        .join()
        .expect("client thread");
    flood.join().expect("flood thread");
    let report = capture.finish();
    assert!(
        refused.is_err(),
        "test setup: the SYN queue full and cookies off, the real client should not connect"
    );
    let queue_drops = tcp_ext(&ns, "TCPReqQFullDrop") - queue_drops_before;
    assert!(
        queue_drops > 0,
        "test setup: the kernel should have dropped SYNs for the full SYN queue\n{}",
        report.context()
    );
    let (f, _) = leading_flood(&report, "the diagnosis leads with the flood");
    assert!(
        report.evidence_u64(f, "clients_dropped") >= 1,
        "the real client's attempt is counted as the flood's: {f}"
    );
    assert!(
        f["next_step"]
            .as_str()
            .unwrap_or_default()
            .starts_with("turn SYN cookies on"),
        "{f}"
    );
    for v in report.finding_lines() {
        let kind = v["kind"].as_str().unwrap_or("");
        assert!(
            !["silently_dropped", "rejected_by_firewall"].contains(&kind),
            "the real client's SYNs were dropped by the flooded SYN queue, not {kind}: {v}\n{}",
            report.context()
        );
        let words = format!("{} {} {}", v["headline"], v["explanation"], v["next_step"]);
        assert!(!words.contains("DROP rule"), "no firewall is involved: {v}");
    }
}

/// A flood of spoofed SYNs from a veth peer at a listener with a small backlog and
/// tcp_syncookies=1, real clients connecting meanwhile; portsniff run with `extra`.
fn spoofed_flood(test: &'static str, extra: &[&str]) {
    let Some((ns, peer, s_if)) = flood_namespaces(test, true) else {
        return;
    };
    let port = fresh_port();
    let server = v4([10, 201, 0, 1], port);
    // Backlog 8: the SYN queue is full after 8 half-open attempts, and from then on the
    // kernel answers with cookies. Nobody accepts; the few real clients fit the queue.
    let listener = spawn_listener(&ns, server, 8, false);
    let cookies_before = tcp_ext(&ns, "SyncookiesSent");

    let mut args = vec!["--syn-timeout", "1"];
    args.extend_from_slice(extra);
    let capture = start_capture_on(&ns, &s_if, port, 5, &args);
    // 2,700 routed spoofed sources and 300 martian SYNs, two a millisecond: about 1.5 s.
    let flood = send_flood(&peer, server, flood_sources(2700, 300));
    // Real clients, while the flood runs.
    std::thread::sleep(Duration::from_millis(400));
    let mut kept = Vec::new();
    let mut waited = Vec::new();
    for _ in 0..3 {
        let (s, took) = slow_client(&peer, server).join().expect("client thread");
        kept.push(s);
        waited.push(took);
        std::thread::sleep(Duration::from_millis(100));
    }
    let last_flood_packet = flood.join().expect("flood thread");
    let report = capture.finish();
    let cookies = tcp_ext(&ns, "SyncookiesSent") - cookies_before;
    assert!(
        cookies > 0,
        "test setup: with a backlog of 8 and tcp_syncookies=1 the flood should have made the \
         kernel send SYN cookies\n{}",
        report.context()
    );
    report.assert_exit(1, "the flood's half-open attempts never completed");

    let (f, _) = leading_flood(&report, "the diagnosis should lead with the flood");
    report.assert_severity(f, &["error"]);
    assert_eq!(
        report.evidence_u64(f, "cookies_sent"),
        cookies,
        "the cookies the finding counts are the namespace's SyncookiesSent growth: {f}"
    );
    assert_eq!(
        f["evidence"]["counters"]["SyncookiesSent"], cookies,
        "the counter it cites says the same number: {f}"
    );
    let headline = f["headline"].as_str().unwrap_or("");
    assert!(
        headline.contains(&format!("{cookies} SYN cookies sent")),
        "the headline says the counter's number: {headline}"
    );
    let sources = report.evidence_u64(f, "sources");
    assert!(
        sources >= 2700,
        "every routed spoofed source was seen, {sources}: {f}"
    );
    assert!(report.evidence_u64(f, "syns_per_sec_peak") >= 500, "{f}");
    let completed = report.evidence_u64(f, "completed");
    assert!(
        completed >= 3,
        "the three real clients completed during the flood (connect() took {waited:?}), the \
         finding says {completed}: {f}"
    );
    assert!(
        headline.contains("real connections still completed"),
        "{headline}"
    );
    if report.summary()["kernel_events"]["enabled"] == true {
        assert_eq!(
            report.evidence_u64(f, "martian_syns"),
            300,
            "the witness saw the martian sources discarded: {f}"
        );
    } else {
        assert!(f["evidence"]["martian_syns"].is_null(), "{f}");
        let x = f["explanation"].as_str().unwrap_or("");
        assert!(x.contains("needs the kernel witness"), "{x}");
    }
    report.assert_names_process(f, listener.pid(), "listener", LISTENER_MARK);

    // Printed live, while the flood ran or within a second of its last packet.
    let (first, _) = report
        .lines
        .iter()
        .find(|(_, v)| v["type"] == "finding" && v["kind"] == "syn_flood")
        .expect("a syn_flood line");
    let late = first
        .arrived
        .duration_since(last_flood_packet)
        .unwrap_or_default();
    assert!(
        late <= Duration::from_secs(1),
        "syn_flood first printed {late:?} after the flood's last packet\n{}",
        report.context()
    );
    // Nothing says firewall, or blames the flood's SYNs on a drop.
    for v in report.finding_lines() {
        let kind = v["kind"].as_str().unwrap_or("");
        assert!(
            ![
                "silently_dropped",
                "rejected_by_firewall",
                "invalid_source",
                "handshake_stalled"
            ]
            .contains(&kind),
            "a flood's SYNs are the flood's story, not {kind}: {v}\n{}",
            report.context()
        );
        let words = format!("{} {} {}", v["headline"], v["explanation"], v["next_step"]);
        assert!(!words.contains("DROP rule"), "no firewall is involved: {v}");
    }
    drop(kept);
}

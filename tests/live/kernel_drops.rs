//! The kernel's word on drops, staged for real in namespaces the tests make: SYNs dropped
//! by an iptables and by an nftables rule, SYN-ACKs dropped in the server's OUTPUT chain,
//! handshake ACKs dropped for a full accept queue, and spoofed-source SYNs the kernel
//! discards as martians. Each asserts what the flow's `kernel` object says (reason, path,
//! direction, segment) and what the finding a user reads says (kind and words).

use crate::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Instant;

/// How long each capture runs: a client's first SYN and its retransmission a second
/// later fit, with time for the capture to start and end.
const CAPTURE_SECS: &str = "3";

/// A capture inside `ns` on `iface` with `--json`, started and listening.
fn capture(ns: &Netns, iface: &str, port: u16) -> Sniffer {
    let port = port.to_string();
    let cmd = ns.portsniff(&[
        "-i",
        iface,
        "--port",
        &port,
        "--json",
        "--syn-timeout",
        "1",
        "--duration",
        CAPTURE_SECS,
    ]);
    let mut sniffer = Sniffer::spawn(cmd, &format!("ip netns exec NS portsniff -i {iface}"));
    sniffer.wait_for_banner();
    sniffer
}

/// The run's lines, or `None` (after skipping, or failing under CI) when the witness
/// could not run here: then there is no kernel's word to check.
fn witnessed_run(test: &str, run: &Finished) -> Option<Vec<(Line, Value)>> {
    let lines = run.json();
    let s = summary(&lines, &run.stdout_text());
    if s["kernel_events"]["enabled"] != true {
        skip(
            test,
            &format!(
                "the kernel witness did not run: {}",
                s["kernel_events"]["why"]
            ),
        );
        return None;
    }
    Some(lines)
}

/// The last finding of `kind` (the final diagnosis comes after the live lines); panics
/// with the whole output if there is none.
fn finding<'a>(lines: &'a [(Line, Value)], kind: &str, run: &Finished) -> &'a Value {
    lines
        .iter()
        .rev()
        .map(|(_, v)| v)
        .find(|v| v["type"] == "finding" && v["kind"] == kind)
        .unwrap_or_else(|| {
            panic!(
                "portsniff printed no {kind} finding; stdout:\n{}\nstderr:\n{}",
                run.stdout_text(),
                run.stderr
            )
        })
}

fn finding_kinds(lines: &[(Line, Value)]) -> Vec<String> {
    lines
        .iter()
        .filter(|(_, v)| v["type"] == "finding")
        .filter_map(|(_, v)| v["kind"].as_str().map(str::to_string))
        .collect()
}

/// The drops in a flow's `kernel` object with this reason.
fn drops_for<'a>(flow: &'a Value, reason: &str) -> Vec<&'a Value> {
    flow["kernel"]["drops"]
        .as_array()
        .map(|a| a.iter().filter(|d| d["reason"] == reason).collect())
        .unwrap_or_default()
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

/// A client inside `ns` that connects from a known port and gives up after 2 s (one
/// retransmitted SYN): its port, and whether it timed out.
fn client_timing_out(ns: &Netns, server: SocketAddr) -> u16 {
    let (port, res) = ns
        .on_thread(move || {
            let (port, res) = connect_from_known_port_within(server, Duration::from_secs(2));
            (port, res.map(|_| ()).map_err(|e| e.kind()))
        })
        .join()
        .expect("client thread");
    assert_eq!(
        res,
        Err(ErrorKind::TimedOut),
        "test setup: the client's connect to {server} should time out"
    );
    port
}

/// [`connect_from_known_port`] with its own timeout.
fn connect_from_known_port_within(
    server: SocketAddr,
    timeout: Duration,
) -> (u16, std::io::Result<Socket>) {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .expect("client socket");
    socket
        .bind(&SocketAddr::new(server.ip(), 0).into())
        .expect("bind the client socket");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(0, |a| a.port());
    let res = socket
        .connect_timeout(&server.into(), timeout)
        .map(|()| socket);
    (port, res)
}

/// A listener inside `ns` with this backlog, on a thread that entered it.
fn listener_in(ns: &Netns, addr: SocketAddr, backlog: i32) -> TcpListener {
    ns.on_thread(move || {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .expect("listener socket");
        s.bind(&addr.into()).expect("bind the listener");
        s.listen(backlog).expect("listen");
        TcpListener::from(s)
    })
    .join()
    .expect("listener thread")
}

/// A fresh port (unused on the host, so no two tests share one) and a namespace.
fn setup(test: &str, tools: &[&str]) -> Option<(Netns, u16)> {
    if let Some(missing) = tools.iter().find(|t| which(t).is_none()) {
        // Checked first only where root is there to need them.
        if have_root(test) {
            skip(test, &format!("needs {missing}"));
        }
        return None;
    }
    namespace_and_port(test)
}

/// The SYNs of a client the rule drops, and the rule in the finding: shared by the
/// iptables and nft scenarios.
fn assert_syns_dropped_by_rule(
    test: &str,
    ns: &Netns,
    port: u16,
    rule_said: &str,
    remove_said: &str,
) {
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let _listener = listener_in(ns, server, 16);
    let sniffer = capture(ns, "lo", port);
    let cport = client_timing_out(ns, server);
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let Some(lines) = witnessed_run(test, &run) else {
        return;
    };
    let out = run.stdout_text();
    let flow = one_final(&lines, cport, "the client whose SYNs the rule drops", &run);
    assert_eq!(flow["outcome"], "unanswered", "{flow}\n{out}");
    let drops = drops_for(flow, "NETFILTER_DROP");
    assert_eq!(
        drops.len(),
        1,
        "the flow's kernel object should hold the SYNs netfilter dropped: {flow}\n{out}"
    );
    let d = drops[0];
    assert_eq!(
        (&d["path"], &d["dir"], &d["what"]),
        (&"ingress".into(), &"c2s".into(), &"SYN".into()),
        "the client's SYNs, dropped as they arrived: {d}"
    );
    let syns = d["count"].as_u64().unwrap_or(0);
    assert!(
        syns >= 2,
        "the first SYN and its retransmission: {d}\n{out}"
    );

    let f = finding(&lines, "silently_dropped", &run);
    assert_eq!(f["severity"], "error", "{f}");
    let headline = text(f, "headline");
    assert!(
        headline.contains("SYNs dropped by the kernel: NETFILTER_DROP (nft_do_chain, ")
            && headline.ends_with(rule_said),
        "the headline a user reads first should give the kernel's reason and the rule \
         ({rule_said}), it is: {headline}"
    );
    assert_eq!(f["evidence"]["reason"], "NETFILTER_DROP", "{f}");
    assert_eq!(f["evidence"]["hook"], "input", "{f}");
    assert!(
        text(f, "next_step").contains(remove_said),
        "the next step should show how the rule would be removed ({remove_said}): {f}"
    );
    assert!(
        !text(f, "explanation").contains("or a route that black-holes them"),
        "the kernel said why: no guessing left in the explanation: {f}"
    );
}

#[test]
fn live_syns_dropped_by_an_iptables_rule_name_the_rule() {
    const TEST: &str = "live_syns_dropped_by_an_iptables_rule_name_the_rule";
    let Some((ns, port)) = setup(TEST, &["iptables"]) else {
        return;
    };
    let p = port.to_string();
    ns.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", &p, "-j", "DROP",
    ]);
    assert_syns_dropped_by_rule(
        TEST,
        &ns,
        port,
        &format!("(nft_do_chain, INPUT): iptables -t filter rule \"-A INPUT -p tcp -m tcp --dport {port} -j DROP\""),
        &format!("iptables -t filter -D INPUT -p tcp -m tcp --dport {port} -j DROP"),
    );
}

#[test]
fn live_syns_dropped_by_an_nft_rule_name_the_rule() {
    const TEST: &str = "live_syns_dropped_by_an_nft_rule_name_the_rule";
    let Some((ns, port)) = setup(TEST, &["nft"]) else {
        return;
    };
    let p = port.to_string();
    ns.run(&["nft", "add", "table", "inet", "pst"]);
    ns.run(&[
        "nft",
        "add",
        "chain",
        "inet",
        "pst",
        "input",
        "{ type filter hook input priority 0; }",
    ]);
    ns.run(&[
        "nft", "add", "rule", "inet", "pst", "input", "tcp", "dport", &p, "drop",
    ]);
    // The first rule of a fresh table gets handle 2 (the chain took 1).
    assert_syns_dropped_by_rule(
        TEST,
        &ns,
        port,
        &format!("(nft_do_chain, input hook): nft rule \"tcp dport {port} drop\" in inet pst input (handle 2)"),
        "nft delete rule inet pst input handle 2",
    );
}

#[test]
fn live_syn_acks_dropped_in_output_are_replies_dropped_on_the_way_out() {
    const TEST: &str = "live_syn_acks_dropped_in_output_are_replies_dropped_on_the_way_out";
    let Some((ns, port)) = setup(TEST, &["iptables"]) else {
        return;
    };
    let p = port.to_string();
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
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let _listener = listener_in(&ns, server, 16);
    let sniffer = capture(&ns, "lo", port);
    let cport = client_timing_out(&ns, server);
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let Some(lines) = witnessed_run(TEST, &run) else {
        return;
    };
    let out = run.stdout_text();
    let flow = one_final(&lines, cport, "the client whose SYN-ACKs are dropped", &run);
    assert_eq!(
        flow["outcome"], "unanswered",
        "the SYN-ACKs never reach lo, so the capture sees SYNs only: {flow}\n{out}"
    );
    let drops = drops_for(flow, "NETFILTER_DROP");
    assert_eq!(drops.len(), 1, "{flow}\n{out}");
    let d = drops[0];
    assert_eq!(
        (&d["path"], &d["dir"], &d["what"]),
        (&"egress".into(), &"s2c".into(), &"SYN-ACK".into()),
        "the server's SYN-ACKs, dropped on their way out (libpcap never sees them): {d}"
    );

    let f = finding(&lines, "replies_dropped", &run);
    assert_eq!(f["severity"], "error", "{f}");
    let headline = text(f, "headline");
    let rule = format!(
        "iptables -t filter rule \"-A OUTPUT -p tcp -m tcp --sport {port} --tcp-flags SYN,ACK SYN,ACK -j DROP\""
    );
    assert!(
        headline.contains(&format!(
            "SYN-ACKs from 127.0.0.1:{port} dropped on the server's way out: NETFILTER_DROP (nft_do_chain, OUTPUT): {rule}"
        )),
        "the headline should say the server's SYN-ACKs were dropped leaving, by the OUTPUT \
         rule, it is: {headline}"
    );
    assert_eq!(
        (&f["evidence"]["path"], &f["evidence"]["hook"]),
        (&"egress".into(), &"output".into()),
        "{f}"
    );
    let kinds = finding_kinds(&lines);
    assert!(
        !kinds.iter().any(|k| k == "silently_dropped"),
        "never \"SYNs dropped before they reach it\": the SYNs arrived, the answers did \
         not leave; findings: {kinds:?}\n{out}"
    );
}

#[test]
fn live_a_full_accept_queue_drops_handshake_acks_and_names_the_listeners_pid() {
    const TEST: &str = "live_a_full_accept_queue_drops_handshake_acks_and_names_the_listeners_pid";
    let Some((ns, port)) = setup(TEST, &[]) else {
        return;
    };
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Backlog 1 and never accept(): two completed connections fill the queue.
    let listener = listener_in(&ns, server, 1);
    let sniffer = capture(&ns, "lo", port);
    // On loopback a handshake completes inside connect(), so a SYN meeting a full queue
    // is what normally happens, and the kernel consumes it without a drop reason. A
    // handshake ACK meeting it needs the ACK late: a client socket with TCP_DEFER_ACCEPT
    // holds its ACK back (TCP_DELACK_MAX, 200 ms), and two other clients fill the queue
    // meanwhile. The late ACK then finds no room: TCP_LISTEN_OVERFLOW.
    let (late_port, others) = ns
        .on_thread(move || {
            let late = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
                .expect("client socket");
            let one: libc::c_int = 1;
            // SAFETY: a valid socket descriptor, and an int option value of the size
            // passed.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&late),
                    libc::IPPROTO_TCP,
                    libc::TCP_DEFER_ACCEPT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "TCP_DEFER_ACCEPT on the client socket");
            late.connect_timeout(&server.into(), Duration::from_secs(2))
                .expect("test setup: the late client's handshake completes on its side");
            let port = late
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map_or(0, |a| a.port());
            let others: Vec<TcpStream> = (0..2)
                .map(|_| {
                    TcpStream::connect_timeout(&server, Duration::from_secs(2))
                        .expect("test setup: the queue has room for two")
                })
                .collect();
            (port, (late, others))
        })
        .join()
        .expect("client thread");
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    drop(others);
    drop(listener);
    let Some(lines) = witnessed_run(TEST, &run) else {
        return;
    };
    let out = run.stdout_text();
    let flow = one_final(&lines, late_port, "the client whose ACK came late", &run);
    let drops = drops_for(flow, "TCP_LISTEN_OVERFLOW");
    assert_eq!(drops.len(), 1, "{flow}\n{out}");
    let d = drops[0];
    assert_eq!(
        (&d["path"], &d["dir"], &d["what"]),
        (&"ingress".into(), &"c2s".into(), &"ACK".into()),
        "the client's handshake ACK, dropped as it arrived at the full queue: {d}"
    );

    let f = finding(&lines, "accept_queue_full", &run);
    assert_eq!(f["severity"], "error", "{f}");
    let pid = std::process::id();
    assert!(
        f["processes"].as_array().is_some_and(|ps| ps
            .iter()
            .any(|p| p["pid"] == pid && p["role"] == "listener")),
        "the listener's owner is this test process (pid {pid}): {f}"
    );
    assert!(
        text(f, "headline").contains(&format!("(pid {pid}) is not calling accept()")),
        "{f}"
    );
    assert_eq!(
        f["evidence"]["kernel"]["reason"], "TCP_LISTEN_OVERFLOW",
        "{f}"
    );
    assert!(
        f["evidence"]["kernel"]["packets"].as_u64().unwrap_or(0) >= 1,
        "{f}"
    );
    assert!(
        text(f, "explanation").contains("with reason TCP_LISTEN_OVERFLOW in tcp_v4_rcv"),
        "{f}"
    );
}

#[test]
fn live_spoofed_source_syns_are_martians_not_a_firewall() {
    const TEST: &str = "live_spoofed_source_syns_are_martians_not_a_firewall";
    let Some((server_ns, port)) = setup(TEST, &["sysctl"]) else {
        return;
    };
    let Some(peer_ns) = Netns::create(TEST) else {
        return;
    };
    // Interface names: at most 15 bytes, unique per test process.
    let seq = std::process::id() % 100_000;
    let (s_if, p_if) = (format!("pss{seq}"), format!("psp{seq}"));
    veth_between(&server_ns, &peer_ns, &s_if, &p_if);
    server_ns.run(&["ip", "addr", "add", "10.201.0.1/24", "dev", &s_if]);
    server_ns.run(&["ip", "link", "set", &s_if, "up"]);
    peer_ns.run(&["ip", "addr", "add", "10.201.0.2/24", "dev", &p_if]);
    peer_ns.run(&["ip", "link", "set", &p_if, "up"]);
    // Strict reverse-path filtering, on the interface and overall (the kernel uses the
    // larger of the two).
    for key in ["all", s_if.as_str()] {
        server_ns.run(&["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=1")]);
    }
    let server = SocketAddr::from(([10, 201, 0, 1], port));
    let _listener = listener_in(&server_ns, server, 16);
    let sniffer = capture(&server_ns, &s_if, port);

    // Sources no route leads back to through this interface (documentation ranges), the
    // server's own address, and a loopback address from outside: every one a martian.
    let spoofed: Vec<(Ipv4Addr, u16, &str)> = vec![
        (Ipv4Addr::new(192, 0, 2, 1), 40001, "IP_RPFILTER"),
        (Ipv4Addr::new(192, 0, 2, 2), 40002, "IP_RPFILTER"),
        (Ipv4Addr::new(198, 51, 100, 7), 40003, "IP_RPFILTER"),
        (Ipv4Addr::new(203, 0, 113, 9), 40004, "IP_RPFILTER"),
        (Ipv4Addr::new(10, 201, 0, 1), 40005, "IP_LOCAL_SOURCE"),
        (Ipv4Addr::new(127, 0, 0, 5), 40006, "IP_LOCALNET"),
    ];
    let packets: Vec<Vec<u8>> = spoofed
        .iter()
        .map(|&(src, sport, _)| spoofed_syn(src, sport, server))
        .collect();
    peer_ns
        .on_thread(move || {
            // IPPROTO_RAW: the packet is sent as built, source address included.
            let raw = Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(libc::IPPROTO_RAW)),
            )
            .expect("a raw socket in the peer namespace");
            for p in &packets {
                raw.send_to(p, &server.into()).expect("send a spoofed SYN");
            }
        })
        .join()
        .expect("spoofing thread");
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let Some(lines) = witnessed_run(TEST, &run) else {
        return;
    };
    let out = run.stdout_text();

    for &(src, sport, reason) in &spoofed {
        let flows = final_flows_from(&lines, sport);
        assert_eq!(flows.len(), 1, "one flow from {src}:{sport}\n{out}");
        let flow = flows[0];
        let drops = drops_for(flow, reason);
        assert_eq!(
            drops.len(),
            1,
            "the SYN from {src} should be dropped with {reason}: {flow}\n{out}"
        );
        assert_eq!(
            (&drops[0]["path"], &drops[0]["dir"], &drops[0]["what"]),
            (&"ingress".into(), &"c2s".into(), &"SYN".into()),
            "{flow}"
        );
    }

    let f = finding(&lines, "invalid_source", &run);
    assert_eq!(f["evidence"]["sources"], 6, "six spoofed sources: {f}");
    assert_eq!(f["evidence"]["syns"], 6, "{f}");
    assert_eq!(f["evidence"]["reasons"][0]["reason"], "IP_RPFILTER", "{f}");
    let headline = text(f, "headline");
    assert!(
        headline.starts_with(&format!(
            "6 SYNs to 10.201.0.1:{port} from 6 source addresses discarded by the kernel as martians"
        )) && headline.ends_with("not a firewall"),
        "{headline}"
    );
    let kinds = finding_kinds(&lines);
    assert!(
        !kinds.iter().any(|k| k == "silently_dropped"),
        "spoofed SYNs are not blamed on a firewall DROP rule; findings: {kinds:?}\n{out}"
    );
    for (_, v) in lines.iter().filter(|(_, v)| v["type"] == "finding") {
        assert!(
            !text(v, "explanation").contains("DROP rule")
                && !text(v, "next_step").contains("iptables"),
            "no finding should point at a firewall: {v}"
        );
    }
}

#[test]
fn live_a_burst_into_a_slow_acceptor_is_its_full_accept_queue_not_a_missing_socket() {
    const TEST: &str =
        "live_a_burst_into_a_slow_acceptor_is_its_full_accept_queue_not_a_missing_socket";
    let Some((ns, port)) = setup(TEST, &[]) else {
        return;
    };
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Backlog 4, and a server that takes one connection every 200 ms: a burst of 20
    // clients fills its accept queue. The kernel then drops SYNs and handshake ACKs, and
    // (SYN cookies being on by default) answers with cookies whose ACKs find no room
    // either: `cookie_v4_check` says NO_SOCKET for those, though a listener exists.
    let listener = listener_in(&ns, server, 4);
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let p = port.to_string();
    let cmd = ns.portsniff(&[
        "-i",
        "lo",
        "--port",
        &p,
        "--json",
        "--syn-timeout",
        "1",
        "--duration",
        "7",
    ]);
    let mut sniffer = Sniffer::spawn(cmd, "ip netns exec NS portsniff -i lo");
    sniffer.wait_for_banner();
    let acceptor = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut c, _)) => {
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                    let mut buf = [0u8; 2];
                    let _ = c.read(&mut buf);
                    let _ = c.write_all(b"ok");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    let answered = ns
        .on_thread(move || {
            let clients: Vec<_> = (0..20)
                .map(|_| {
                    std::thread::spawn(move || {
                        let mut c =
                            TcpStream::connect_timeout(&server, Duration::from_secs(5)).ok()?;
                        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                        c.write_all(b"hi").ok()?;
                        let mut buf = [0u8; 2];
                        c.read_exact(&mut buf).ok()
                    })
                })
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().ok().flatten().is_some())
                .filter(|&ok| ok)
                .count()
        })
        .join()
        .expect("client threads");
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    acceptor.join().expect("acceptor thread");
    let Some(lines) = witnessed_run(TEST, &run) else {
        return;
    };
    assert!(
        answered >= 10,
        "test setup: most clients got their answer ({answered} of 20)"
    );
    let f = finding(&lines, "accept_queue_full", &run);
    assert!(
        f["evidence"]["listen_overflows"].as_u64().unwrap_or(0) > 0,
        "the finding rests on ListenOverflows: {f}"
    );
    let k = &f["evidence"]["kernel"];
    if k["reason"] == "NO_SOCKET" {
        assert!(
            text(f, "explanation").contains("the ACK of a SYN cookie"),
            "a NO_SOCKET drop at a full queue is said as the cookie's ACK finding no room: {f}"
        );
    }
    let kinds = finding_kinds(&lines);
    for wrong in [
        "nothing_listening",
        "silently_dropped",
        "rejected_by_firewall",
    ] {
        assert!(
            !kinds.iter().any(|k| k == wrong),
            "a listener exists and no rule drops anything: no {wrong} in {kinds:?}\n{}",
            run.stdout_text()
        );
    }
    if let Some(slow) = lines
        .iter()
        .rev()
        .map(|(_, v)| v)
        .find(|v| v["type"] == "finding" && v["kind"] == "slow_connect")
    {
        assert_eq!(
            slow["evidence"]["likely_causes"][0], "accept_queue",
            "the burst's retransmitted SYNs are the full accept queue's: {slow}"
        );
    }
}

//! Live tests: the real `portsniff` binary capturing on a real interface (loopback, or the
//! loopback of a network namespace the test creates) while the test makes real
//! connections to real listeners.
//!
//! They need root (libpcap live capture, namespaces, iptables). Without it they print
//! "skipping: needs root to capture" and pass, except in CI (`CI=true`), where they fail
//! instead: a CI run that silently skipped them would prove nothing.

mod support;

/// Scenarios of their own: IPv6, a namespace with a firewall rule, the firewall reader
/// inside a namespace, and the kernel witness: its scope (namespaces, ports), its word on
/// drops, resets and ICMP errors, its fallback and its detaching, the facts at the
/// moment of a refusal (listeners started just before it, updates when they change), and
/// connections inside VXLAN (on its port and on a named one), Geneve, GRE, MPLS and PPPoE.
mod live {
    mod firewall;
    mod ipv6;
    mod kernel_drops;
    mod kernel_moment;
    mod kernel_resets;
    mod kernel_scope;
    mod kernel_states;
    mod kernel_storm;
    mod namespace;
    mod tunnels;
}

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::live::{
    accept_within, assert_no_capture_loss, client_port, connect_from_known_port, final_flows_from,
    flows, have_root, live_command, read_to_eof, run_bounded, skip, spoofed_syn, summary,
    veth_between, which, Finished, Line, Netns, ReservedPort, Sniffer, EXIT_TIMEOUT,
};

/// Time for the last packets (the final ACK of a close) to go through the capture before
/// we stop it.
const SETTLE: Duration = Duration::from_millis(300);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The one final record of the connection from client port `port`; panics if portsniff
/// reported it zero or several times.
fn one_final<'a>(lines: &'a [(Line, Value)], port: u16, what: &str, run: &Finished) -> &'a Value {
    let found = final_flows_from(lines, port);
    assert_eq!(
        found.len(),
        1,
        "{what}: expected exactly one final flow record for client port {port}, portsniff \
         printed {}; stdout:\n{}\nstderr:\n{}",
        found.len(),
        run.stdout_text(),
        run.stderr
    );
    found[0]
}

fn client_stream(server: SocketAddr) -> (TcpStream, u16) {
    let client = TcpStream::connect_timeout(&server, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("test setup: connect to our own listener {server}: {e}"));
    client
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set a read timeout on the client");
    let port = client.local_addr().expect("client local address").port();
    (client, port)
}

/// (b) Request, reply, then the client closes first and the server closes on EOF.
fn client_closes_first(listener: &std::net::TcpListener, server: SocketAddr) -> u16 {
    let (mut client, port) = client_stream(server);
    client.write_all(b"request b").expect("client sends");
    let mut srv = accept_within(listener, IO_TIMEOUT);
    let mut req = [0u8; 9];
    srv.read_exact(&mut req).expect("server reads the request");
    srv.write_all(b"reply b").expect("server replies");
    let mut reply = [0u8; 7];
    client
        .read_exact(&mut reply)
        .expect("client reads the reply");
    drop(client); // FIN from the client
    let rest = read_to_eof(&mut srv, 1024).expect("server reads to EOF");
    assert!(rest.is_empty(), "test setup: unexpected bytes {rest:?}");
    drop(srv); // FIN from the server, then the client's kernel ACKs it
    port
}

/// (c) Request, reply, then the server closes first and the client closes on EOF.
fn server_closes_first(listener: &std::net::TcpListener, server: SocketAddr) -> u16 {
    let (mut client, port) = client_stream(server);
    client.write_all(b"request c").expect("client sends");
    let mut srv = accept_within(listener, IO_TIMEOUT);
    let mut req = [0u8; 9];
    srv.read_exact(&mut req).expect("server reads the request");
    srv.write_all(b"reply c").expect("server replies");
    drop(srv); // FIN from the server
    let got = read_to_eof(&mut client, 1024).expect("client reads the reply and EOF");
    assert_eq!(got, b"reply c", "test setup: client got {got:?}");
    drop(client); // FIN from the client, then the server's kernel ACKs it
    port
}

/// (d) Request, then the server closes abortively (SO_LINGER 0): a RST from the server.
fn server_aborts(listener: &std::net::TcpListener, server: SocketAddr) -> u16 {
    let (mut client, port) = client_stream(server);
    client.write_all(b"request d").expect("client sends");
    let srv = accept_within(listener, IO_TIMEOUT);
    let mut req = [0u8; 9];
    (&srv)
        .read_exact(&mut req)
        .expect("server reads the request");
    socket2::SockRef::from(&srv)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0 on the server socket");
    drop(srv); // RST from the server
    let mut buf = [0u8; 16];
    let res = client.read(&mut buf);
    assert!(
        matches!(&res, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "test setup: after the server's abortive close the client should see ECONNRESET, \
         got {res:?}"
    );
    port
}

fn outcome_pairs<'a>(flows: impl IntoIterator<Item = &'a Value>) -> BTreeSet<(u16, String)> {
    flows
        .into_iter()
        .filter(|v| v["final"] == true)
        .map(|v| {
            (
                client_port(v).unwrap_or(0),
                v["outcome"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[test]
fn live_capture_on_lo_reports_refused_clean_closes_and_reset() {
    const TEST: &str = "live_capture_on_lo_reports_refused_clean_closes_and_reset";
    if !have_root(TEST) {
        return;
    }
    // Bound but not listening: connections are refused, and no other socket can take
    // the port while the test runs.
    let reserved = ReservedPort::on(Ipv4Addr::LOCALHOST.into()).expect("bind 127.0.0.1:0");
    let port = reserved.port();
    let server = reserved.addr;
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let pcap = dir.path().join("out.pcap");
    let pcap_arg = pcap.to_str().expect("UTF-8 temp path");

    // With -w every packet is kept whole, and on `lo` each takes a 64 KiB ring frame (two,
    // counting both directions): 16 MiB held ~128 packets, and the other live tests of this
    // file (run in parallel, on the same `lo`, by unoptimised binaries on 2 cores) were
    // seen to starve the capture thread long enough to overflow it (2 runs in 10).
    let mut sniffer = Sniffer::spawn(
        live_command(port, &["-w", pcap_arg, "-B", "65536"]),
        "portsniff -i lo -w out.pcap",
    );
    sniffer.wait_for_banner();

    // (a) Nothing listens: refused.
    let (port_a, res) = connect_from_known_port(server);
    match res {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("test setup: connect to {server} with no listener should fail with ECONNREFUSED, got {other:?}"),
    }

    let listener = reserved.listen();
    let port_b = client_closes_first(&listener, server);
    let port_c = server_closes_first(&listener, server);
    let port_d = server_aborts(&listener, server);
    drop(listener);

    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    let s = summary(&lines, &out);
    assert_no_capture_loss(s, &out);

    let a = one_final(&lines, port_a, "(a) connect with nothing listening", &run);
    assert_eq!(
        a["outcome"], "refused",
        "(a) connect() got ECONNREFUSED, but portsniff reported outcome {} for it: {a}\nall output:\n{out}",
        a["outcome"]
    );
    assert_eq!(
        a["reset_by"], "server",
        "(a) the refusal is the server host's RST, but portsniff said reset_by {}: {a}\nall output:\n{out}",
        a["reset_by"]
    );
    assert_eq!(
        a["history"], "Sr",
        "(a) a refused connection is one SYN and one RST (history \"Sr\"), portsniff \
         showed history {}: {a}\nall output:\n{out}",
        a["history"]
    );

    let b = one_final(&lines, port_b, "(b) client closes first", &run);
    assert_eq!(
        b["outcome"], "closed",
        "(b) a connection closed cleanly (client FIN, server FIN) was reported as {}: {b}\nall output:\n{out}",
        b["outcome"]
    );
    assert_eq!(
        b["closed_first_by"], "client",
        "(b) the client closed first, but portsniff said closed_first_by {}: {b}\nall output:\n{out}",
        b["closed_first_by"]
    );

    let c = one_final(&lines, port_c, "(c) server closes first", &run);
    assert_eq!(
        c["outcome"], "closed",
        "(c) a connection closed cleanly (server FIN, client FIN) was reported as {}: {c}\nall output:\n{out}",
        c["outcome"]
    );
    assert_eq!(
        c["closed_first_by"], "server",
        "(c) the server closed first, but portsniff said closed_first_by {}: {c}\nall output:\n{out}",
        c["closed_first_by"]
    );

    let d = one_final(&lines, port_d, "(d) server aborts with SO_LINGER 0", &run);
    assert_eq!(
        d["outcome"], "reset",
        "(d) the server reset an established connection (SO_LINGER 0), but portsniff \
         reported outcome {}: {d}\nall output:\n{out}",
        d["outcome"]
    );
    assert_eq!(
        d["reset_by"], "server",
        "(d) the server sent the RST, but portsniff said reset_by {}: {d}\nall output:\n{out}",
        d["reset_by"]
    );

    for (label, f) in [("(b)", b), ("(c)", c), ("(d)", d)] {
        assert!(
            f["handshake_rtt_us"].is_u64(),
            "{label} the handshake completed, so handshake_rtt_us should be a number, \
             portsniff printed {}: {f}\nall output:\n{out}",
            f["handshake_rtt_us"]
        );
    }
    assert!(
        a["handshake_rtt_us"].is_null(),
        "(a) a refused connection has no handshake, yet handshake_rtt_us is {}: {a}\nall output:\n{out}",
        a["handshake_rtt_us"]
    );

    assert_eq!(
        s["flows"], 4,
        "the summary should count the 4 connections made, it says flows {}: {s}",
        s["flows"]
    );
    assert_eq!(
        s["problems"], 2,
        "the summary should count 2 problems (the refused and the reset connection), it \
         says problems {}: {s}",
        s["problems"]
    );
    assert_eq!(
        s["outcomes"]["closed"], 2,
        "the summary should count 2 closed connections, it says {}: {s}",
        s["outcomes"]
    );
    assert_eq!(
        s["outcomes"]["refused"], 1,
        "the summary should count 1 refused connection, it says {}: {s}",
        s["outcomes"]
    );
    assert_eq!(
        s["outcomes"]["reset"], 1,
        "the summary should count 1 reset connection, it says {}: {s}",
        s["outcomes"]
    );
    assert_eq!(
        s["live"], true,
        "a capture on -i lo should be reported as live: {s}"
    );
    assert!(
        s["kernel"].is_object(),
        "a live capture should report the kernel's capture counters, kernel is {}: {s}",
        s["kernel"]
    );
    assert_eq!(
        run.code(),
        Some(1),
        "refused and reset connections were seen, so the exit status should be 1, it was \
         {:?}; stderr:\n{}",
        run.status,
        run.stderr
    );

    let expected: BTreeSet<(u16, String)> = [
        (port_a, "refused"),
        (port_b, "closed"),
        (port_c, "closed"),
        (port_d, "reset"),
    ]
    .into_iter()
    .map(|(p, o)| (p, o.to_string()))
    .collect();
    let live_pairs = outcome_pairs(flows(&lines).into_iter().map(|(_, v)| v));
    assert_eq!(
        live_pairs, expected,
        "the live capture should report exactly our 4 connections; stdout:\n{out}"
    );

    // The -w file, written while capturing and flushed after Ctrl-C, gives the same
    // answers when replayed.
    let mut replay_cmd = support::portsniff();
    replay_cmd.args(["-r", pcap_arg, "--port", &port.to_string(), "--json"]);
    let replay = run_bounded(replay_cmd, "portsniff -r out.pcap", EXIT_TIMEOUT);
    let replay_lines = replay.json();
    let replay_pairs = outcome_pairs(flows(&replay_lines).into_iter().map(|(_, v)| v));
    assert_eq!(
        replay_pairs,
        expected,
        "replaying the file written with -w should give the same (client port, outcome) \
         pairs as the live capture; replay stdout:\n{}\nstderr:\n{}",
        replay.stdout_text(),
        replay.stderr
    );
    let rs = summary(&replay_lines, &replay.stdout_text());
    assert_eq!(
        rs["live"], false,
        "a replay of a file is not live, the summary says: {rs}"
    );
    assert_eq!(
        replay.code(),
        Some(1),
        "the replay saw refused and reset connections, so it should exit 1, it exited \
         {:?}; stderr:\n{}",
        replay.status,
        replay.stderr
    );

    if let Some(tcpdump) = which("tcpdump") {
        let mut cmd = Command::new(tcpdump);
        cmd.args(["-nn", "-r", pcap_arg]);
        let td = run_bounded(cmd, "tcpdump -r out.pcap", EXIT_TIMEOUT);
        assert_eq!(
            td.code(),
            Some(0),
            "tcpdump could not read the file portsniff wrote with -w (stopped by Ctrl-C): \
             {:?}; stderr:\n{}",
            td.status,
            td.stderr
        );
        assert!(
            !td.stdout.is_empty(),
            "tcpdump read no packets from the -w file written during the capture: it was \
             not flushed on Ctrl-C. stderr:\n{}",
            td.stderr
        );
        assert_eq!(
            Some(td.stdout.len() as u64),
            s["packets"]["decoded"].as_u64(),
            "the -w file should hold every packet portsniff decoded ({} per its summary), \
             tcpdump read {}:\n{}",
            s["packets"]["decoded"],
            td.stdout.len(),
            td.stdout_text()
        );
    } else {
        eprintln!("{TEST}: tcpdump not on PATH, not cross-checking the -w file with it");
    }
}

/// A burst of short connections with the default (header-only) snaplen: none may be lost.
/// Regression test: with a full snaplen libpcap's immediate-mode ring held ~16 loopback
/// packets, and closed connections came out as "established".
#[test]
fn live_burst_of_connections_is_captured_without_loss() {
    const TEST: &str = "live_burst_of_connections_is_captured_without_loss";
    const CONNECTIONS: usize = 40;
    if !have_root(TEST) {
        return;
    }
    let reserved = ReservedPort::on(Ipv4Addr::LOCALHOST.into()).expect("bind 127.0.0.1:0");
    let port = reserved.port();
    let server = reserved.addr;
    let mut sniffer = Sniffer::spawn(live_command(port, &[]), "portsniff -i lo");
    sniffer.wait_for_banner();

    let listener = reserved.listen();
    let acceptor = std::thread::spawn(move || {
        for _ in 0..CONNECTIONS {
            let mut s = accept_within(&listener, IO_TIMEOUT);
            let _ = read_to_eof(&mut s, 1 << 16);
            let _ = s.write_all(b"bye");
        }
    });
    // All connections at once, then all requests at once: hundreds of packets within a
    // few milliseconds, faster than any reader is scheduled on a busy machine.
    let clients: Vec<(TcpStream, u16)> = (0..CONNECTIONS).map(|_| client_stream(server)).collect();
    let ports: BTreeSet<u16> = clients.iter().map(|&(_, p)| p).collect();
    for (c, _) in &clients {
        let mut c = c;
        c.write_all(&[b'x'; 300]).expect("client sends");
        c.shutdown(std::net::Shutdown::Write)
            .expect("client half-closes");
    }
    for (mut c, _) in clients {
        let _ = read_to_eof(&mut c, 1 << 16);
    }
    acceptor.join().expect("the test's server thread");

    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    let s = summary(&lines, &out);
    assert_no_capture_loss(s, &out);
    let closed: BTreeSet<u16> = final_flows_from_all(&lines)
        .into_iter()
        .filter(|f| f["outcome"] == "closed")
        .filter_map(client_port)
        .collect();
    assert_eq!(
        closed, ports,
        "every one of the {CONNECTIONS} connections closed cleanly; portsniff reported:\n{out}"
    );
    assert_eq!(
        run.code(),
        Some(0),
        "no problem connections, so exit status 0:\n{out}"
    );
}

/// A fresh namespace for `test` (root only) and a port, different per test (any works
/// inside the namespace); `None` after skipping.
fn namespace_and_port(test: &str) -> Option<(Netns, u16)> {
    if !have_root(test) {
        return None;
    }
    let ns = Netns::create(test)?;
    let port = ReservedPort::on(Ipv4Addr::LOCALHOST.into())
        .expect("bind 127.0.0.1:0")
        .port();
    Some((ns, port))
}

fn final_flows_from_all(lines: &[(Line, Value)]) -> Vec<&Value> {
    flows(lines)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["final"] == true)
        .collect()
}

/// Time to first output: a refused connection is on stdout within 50 ms of its RST (the
/// RST's kernel timestamp is the record's `last_ts`; both clocks are CLOCK_REALTIME).
#[test]
fn live_refusal_is_printed_within_50_ms_of_the_rst() {
    refusals_printed_within_50_ms("live_refusal_is_printed_within_50_ms_of_the_rst", &[]);
}

/// The same without the kernel witness: no line waits for the kernel's word, and lines
/// still go out with their batch, not later.
#[test]
fn live_refusal_without_the_witness_is_printed_within_50_ms_of_the_rst() {
    refusals_printed_within_50_ms(
        "live_refusal_without_the_witness_is_printed_within_50_ms_of_the_rst",
        &["--no-kernel-events"],
    );
}

fn refusals_printed_within_50_ms(test: &str, extra: &[&str]) {
    if !have_root(test) {
        return;
    }
    let reserved = ReservedPort::on(Ipv4Addr::LOCALHOST.into()).expect("bind 127.0.0.1:0");
    let mut sniffer = Sniffer::spawn(live_command(reserved.port(), extra), "portsniff -i lo");
    sniffer.wait_for_banner();
    let mut latencies = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..5 {
        let (port, res) = connect_from_known_port(reserved.addr);
        assert!(res.is_err(), "nothing listens: refused");
        ports.push(port);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    for (line, v) in run.json() {
        if v["type"] == "flow" && v["outcome"] == "refused" {
            let rst = UNIX_EPOCH + Duration::from_secs_f64(v["last_ts"].as_f64().unwrap());
            latencies.push(line.arrived.duration_since(rst).unwrap_or_default());
        }
    }
    assert_eq!(
        latencies.len(),
        ports.len(),
        "every refusal printed: {}",
        run.stdout_text()
    );
    latencies.sort();
    eprintln!("refusal latencies: {latencies:?}");
    let median = latencies[latencies.len() / 2];
    assert!(
        median <= Duration::from_millis(50),
        "refusals reached stdout {latencies:?} after their RST (median {median:?}): a user watching \
         live should see them at once"
    );
}

//! Containers and NAT: a docker-style port map (DNAT in PREROUTING and OUTPUT from the
//! host's namespace to a server in a container's namespace, joined by a veth pair).

use crate::diag::start_capture_on;
use crate::*;
use std::net::{IpAddr, Ipv4Addr, Shutdown};

const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CTR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// A veth pair from `a` (address `a_addr`) to `b` (`b_addr`), both up; `tags` start
/// the two ends' names, which must be unique on the machine and at most 15 bytes.
fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str, tags: (char, char)) {
    let name = |tag: char, ns: &Netns| {
        let n = format!("{tag}{}", &ns.name[4..]);
        n[..n.len().min(15)].to_string()
    };
    let (x, y) = (name(tags.0, a), name(tags.1, b));
    a.run(&[
        "ip", "link", "add", &x, "type", "veth", "peer", "name", &y, "netns", &b.name,
    ]);
    a.run(&["ip", "addr", "add", a_addr, "dev", &x]);
    a.run(&["ip", "link", "set", &x, "up"]);
    b.run(&["ip", "addr", "add", b_addr, "dev", &y]);
    b.run(&["ip", "link", "set", &y, "up"]);
}

/// How the port map is written.
#[derive(Clone, Copy)]
enum Nat {
    /// docker's: `iptables -t nat -A PREROUTING/OUTPUT … -j DNAT --to-destination`.
    Iptables,
    /// The same in native nftables: `tcp dport P dnat to ADDR:Q`.
    Nft,
    /// nftables with the target looked up in a map (`dnat to tcp dport map { P : ADDR .
    /// Q }`), which portsniff does not read.
    NftMap,
}

/// The host's and the container's namespaces, joined by a veth pair, with connections to
/// the host's `port` forwarded to the container's `backend_port` by iptables.
fn port_map(test: &str, port: u16, backend_port: u16) -> Option<(Netns, Netns)> {
    port_map_by(Nat::Iptables, test, port, backend_port)
}

fn port_map_by(nat: Nat, test: &str, port: u16, backend_port: u16) -> Option<(Netns, Netns)> {
    let tools: &[&str] = match nat {
        Nat::Iptables => &["iptables", "iptables-save"],
        Nat::Nft | Nat::NftMap => &["nft"],
    };
    if !prerequisites(test, tools) {
        return None;
    }
    let host = Netns::create(test)?;
    let ctr = Netns::create(test)?;
    veth(&host, "10.77.0.1/24", &ctr, "10.77.0.2/24", ('h', 'c'));
    ctr.run(&["ip", "route", "add", "default", "via", "10.77.0.1"]);
    let to = format!("{CTR_IP}:{backend_port}");
    let port = port.to_string();
    match nat {
        Nat::Iptables => {
            for chain in ["PREROUTING", "OUTPUT"] {
                host.run(&[
                    "iptables",
                    "-t",
                    "nat",
                    "-A",
                    chain,
                    "-p",
                    "tcp",
                    "--dport",
                    &port,
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &to,
                ]);
            }
        }
        Nat::Nft | Nat::NftMap => {
            let dnat = match nat {
                Nat::Nft => format!("tcp dport {port} dnat to {to}"),
                _ => format!("dnat to tcp dport map {{ {port} : {CTR_IP} . {backend_port} }}"),
            };
            let ruleset = format!(
                "table ip psnat {{\n\
                 chain prerouting {{ type nat hook prerouting priority dstnat; {dnat}; }}\n\
                 chain output {{ type nat hook output priority -100; {dnat}; }}\n\
                 }}\n"
            );
            let file = std::env::temp_dir().join(format!("{}.nft", host.name));
            std::fs::write(&file, ruleset).expect("test setup: write the nft ruleset");
            host.run(&["nft", "-f", file.to_str().expect("a UTF-8 temp path")]);
            let _ = std::fs::remove_file(&file);
        }
    }
    Some((host, ctr))
}

/// One connection to `addr` (through the map) that says "hi" and reads the backend's
/// "ok"; run it in the client's namespace.
fn say_hi(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("test setup: connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).expect("the backend's answer");
    s
}

/// The container's server on CTR_IP:`backend_port`: answers each of `n` connections'
/// 2 bytes with "ok", then stops.
fn container_server(ctr: &Netns, backend_port: u16, n: usize) -> std::thread::JoinHandle<()> {
    ctr.on_thread(move || {
        let l = TcpListener::bind((CTR_IP, backend_port)).expect("bind in the container");
        for _ in 0..n {
            let mut s = accept_within(&l, IO_TIMEOUT);
            let mut buf = [0u8; 2];
            let _ = s.read_exact(&mut buf);
            let _ = s.write_all(b"ok");
        }
    })
}

#[test]
fn a_healthy_port_map_counts_as_the_ports_connections_with_the_translation() {
    const TEST: &str = "a_healthy_port_map_counts_as_the_ports_connections_with_the_translation";
    let port = fresh_port();
    let backend_port = fresh_port();
    let Some((host, ctr)) = port_map(TEST, port, backend_port) else {
        return;
    };
    // The container's server: answers each of 3 connections, then stops.
    let server = container_server(&ctr, backend_port, 3);
    std::thread::sleep(Duration::from_millis(200));

    let capture = start_capture_on(&host, "any", port, 3, &[]).with_text(&host);
    let clients: Vec<u16> = host
        .on_thread(move || {
            (0..3)
                .map(|_| {
                    let s = say_hi(SocketAddr::new(IpAddr::V4(HOST_IP), port));
                    let _ = s.shutdown(Shutdown::Both);
                    s.local_addr().unwrap().port()
                })
                .collect()
        })
        .join()
        .expect("client thread");
    server.join().expect("server thread");
    let report = capture.finish();

    for c in &clients {
        let f = report.assert_outcome(*c, "closed", "a connection through the port map");
        assert_eq!(
            f["translated_to"],
            format!("{CTR_IP}:{backend_port}"),
            "the flow line should show where the DNAT sent it: {f}\n{}",
            report.context()
        );
    }
    assert_eq!(
        report.summary()["flows"],
        3,
        "the 3 connections are the port's: {}",
        report.context()
    );
    report.assert_absent(
        "no_traffic",
        "every connection to the port went through the map",
    );
    report.assert_exit(0, "every connection succeeded");
    let text = &report.text.as_ref().expect("text run").output;
    assert!(
        text.contains(&format!(":{port} ⇒ {CTR_IP}:{backend_port}")),
        "the text line should read 'client → *:P ⇒ container:Q':\n{text}"
    );
}

/// Connects from the host's namespace to HOST_IP:`port`, which must be refused; returns
/// the client port.
fn refused_through_the_map(host: &Netns, port: u16) -> u16 {
    refused_client(host, SocketAddr::new(IpAddr::V4(HOST_IP), port))
}

/// A connection through a port map (written as `nat` says) whose backend is down: the
/// finding names the translation and the backend. Returns the report, the port and the
/// backend's port, for what each way of writing the map adds.
fn refused_by_a_down_backend(nat: Nat, test: &str) -> Option<(crate::diag::Report, u16, u16)> {
    let port = fresh_port();
    let backend_port = fresh_port();
    let (host, _ctr) = port_map_by(nat, test, port, backend_port)?;
    let capture = start_capture_on(&host, "any", port, 3, &[]);
    let cport = refused_through_the_map(&host, port);
    let report = capture.finish();

    let f = report.assert_outcome(
        cport,
        "refused",
        "a connection to a map whose backend is down",
    );
    assert_eq!(
        f["translated_to"],
        format!("{CTR_IP}:{backend_port}"),
        "{f}"
    );
    report.assert_exit(1, "a connection was refused");
    let d = report.finding("nothing_listening");
    assert_eq!(
        report.evidence_str(d, "backend"),
        format!("{CTR_IP}:{backend_port}"),
        "evidence.backend should be the backend: {d}\n{}",
        report.context()
    );
    assert_eq!(
        report.evidence_u64(d, "forwarded_port"),
        u64::from(port),
        "{d}"
    );
    let headline = d["headline"].as_str().unwrap_or_default();
    assert!(
        headline.contains(&format!(
            "host:{port} is forwarded to {CTR_IP}:{backend_port}"
        )),
        "the finding should name the translation and the backend: {d}\n{}",
        report.context()
    );
    report.assert_absent(
        "refused_elsewhere",
        "the backend's own host refused, through the map",
    );
    report.assert_absent("no_traffic", "the connection went through the map");
    Some((report, port, backend_port))
}

#[test]
fn a_port_map_whose_backend_is_down_names_the_translation_and_the_backend() {
    const TEST: &str = "a_port_map_whose_backend_is_down_names_the_translation_and_the_backend";
    let Some((report, port, _)) = refused_by_a_down_backend(Nat::Iptables, TEST) else {
        return;
    };
    let d = report.finding("nothing_listening");
    let rule = report.evidence_str(d, "rule");
    assert!(
        rule.starts_with("-A ") && rule.contains(&format!("--dport {port} -j DNAT")),
        "iptables-save's line: {rule}"
    );
}

#[test]
fn an_nft_port_map_whose_backend_is_down_names_the_nft_rule_and_the_backend() {
    const TEST: &str = "an_nft_port_map_whose_backend_is_down_names_the_nft_rule_and_the_backend";
    let Some((report, port, backend_port)) = refused_by_a_down_backend(Nat::Nft, TEST) else {
        return;
    };
    let d = report.finding("nothing_listening");
    let rule = report.evidence_str(d, "rule");
    assert!(
        rule.contains(&format!("tcp dport {port} dnat to {CTR_IP}:{backend_port}"))
            && rule.contains("in ip psnat prerouting (handle "),
        "the nft rule, with its table, chain and handle: {rule}"
    );
}

/// A client in its own namespace, routed through the host (10.78.0.0/24): its SYNs reach
/// the host's PREROUTING from outside, as a remote client's would.
fn outside_client(test: &str, host: &Netns) -> Option<Netns> {
    let cli = Netns::create(test)?;
    veth(host, "10.78.0.1/24", &cli, "10.78.0.2/24", ('o', 'k'));
    // The host's own namespace only (one made for this test): it forwards the client's
    // translated SYNs to the container.
    host.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    cli.run(&["ip", "route", "add", "default", "via", "10.78.0.1"]);
    Some(cli)
}

#[test]
fn a_map_portsniff_cannot_read_refuses_at_this_hosts_own_address_and_says_it_was_forwarded() {
    const TEST: &str =
        "a_map_portsniff_cannot_read_refuses_at_this_hosts_own_address_and_says_it_was_forwarded";
    let port = fresh_port();
    let backend_port = fresh_port();
    let Some((host, _ctr)) = port_map_by(Nat::NftMap, TEST, port, backend_port) else {
        return;
    };
    let Some(cli) = outside_client(TEST, &host) else {
        return;
    };
    let capture = start_capture_on(&host, "any", port, 3, &[]);
    let server = SocketAddr::new(IpAddr::V4(HOST_IP), port);
    let (cport, res) = cli
        .on_thread(move || {
            let s = TcpStream::connect_timeout(&server, IO_TIMEOUT);
            (
                s.as_ref().ok().and_then(|s| s.local_addr().ok()),
                s.map(drop),
            )
        })
        .join()
        .expect("client thread");
    // A refused connect() has no local address left to read: the flow's client port is
    // found by its outcome instead.
    assert!(
        matches!(&res, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "test setup: the connection through the unread map should be refused: {res:?} ({cport:?})"
    );
    let report = capture.finish();

    let refused: Vec<_> = report
        .finals()
        .into_iter()
        .filter(|f| f["outcome"] == "refused")
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one refused connection: {}",
        report.context()
    );
    let d = report.finding("refused_elsewhere");
    assert_eq!(
        d["evidence"]["own_address"],
        true,
        "{HOST_IP} is the host's own address: {d}\n{}",
        report.context()
    );
    let words = format!("{} {} {}", d["headline"], d["explanation"], d["next_step"]);
    assert!(
        words.contains(&format!("{HOST_IP} is this host's own address"))
            && words.contains("forwarded"),
        "the finding should say the SYNs were forwarded from here: {words}"
    );
    assert!(
        !words.contains(&format!("on {HOST_IP}'s host")),
        "no other host to look at: {words}"
    );
    assert!(words.contains("nft list ruleset"), "{words}");
}

#[test]
fn an_unread_port_maps_backend_that_starts_late_is_a_startup_race_and_its_refusal_was_forwarded_on()
{
    const TEST: &str = "an_unread_port_maps_backend_that_starts_late_is_a_startup_race_and_its_refusal_was_forwarded_on";
    let port = fresh_port();
    let backend_port = fresh_port();
    let Some((host, ctr)) = port_map_by(Nat::NftMap, TEST, port, backend_port) else {
        return;
    };
    let Some(cli) = outside_client(TEST, &host) else {
        return;
    };
    let capture = start_capture_on(&host, "any", port, 3, &[]).with_text(&host);
    let addr = SocketAddr::new(IpAddr::V4(HOST_IP), port);
    let first = cli
        .on_thread(move || TcpStream::connect_timeout(&addr, IO_TIMEOUT).map(drop))
        .join()
        .expect("client thread");
    assert!(
        matches!(&first, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "test setup: nothing listens behind the map yet: {first:?}"
    );
    // The live finding is printed as the refusal's batch ends (milliseconds): well before
    // the backend starts.
    std::thread::sleep(Duration::from_millis(500));
    let server = container_server(&ctr, backend_port, 1);
    std::thread::sleep(Duration::from_millis(200));
    cli.on_thread(move || drop(say_hi(addr)))
        .join()
        .expect("client thread");
    server.join().expect("server thread");
    let report = capture.finish();

    // The end: the backend was not up yet, and then was.
    report.finding("startup_race");
    let live = report.lines.iter().any(|(_, v)| {
        v["type"] == "finding" && v["final"] == false && v["kind"] == "refused_elsewhere"
    });
    assert!(
        live,
        "the refusal is refused_elsewhere as it happens: {}",
        report.context()
    );
    let superseded = report.lines.iter().map(|(_, v)| v).find(|v| {
        v["type"] == "update" && v["change"] == "superseded" && v["finding"] == "refused_elsewhere"
    });
    assert_eq!(
        superseded.map(|s| &s["superseded_by"]),
        Some(&serde_json::json!("startup_race")),
        "the live refused_elsewhere is the startup race's story, not 'nothing changed': {}",
        report.context()
    );
    let text = &report.text.as_ref().expect("text run").output;
    assert!(
        text.contains(&format!(
            "SYN answered by a RST from elsewhere: {HOST_IP} is this host's own address, so the \
             SYN was forwarded on and refused there"
        )),
        "the refused line says where its RST came from: {text}"
    );
    assert!(
        text.contains("why: the server started listening after those refusals"),
        "{text}"
    );
    assert!(!text.contains("own host when it is another"), "{text}");
}

#[test]
fn a_port_map_whose_backend_listens_on_another_port_names_the_process() {
    const TEST: &str = "a_port_map_whose_backend_listens_on_another_port_names_the_process";
    let port = fresh_port();
    let backend_port = fresh_port();
    let Some((host, ctr)) = port_map(TEST, port, backend_port) else {
        return;
    };
    let wrong = SocketAddr::new(IpAddr::V4(CTR_IP), backend_port + 1);
    let listener = spawn_listener(&ctr, wrong, 16, false);
    let capture = start_capture_on(&host, "any", port, 3, &[]);
    let cport = refused_through_the_map(&host, port);
    let report = capture.finish();

    report.assert_outcome(
        cport,
        "refused",
        "a connection to a map whose backend port is wrong",
    );
    report.assert_exit(1, "a connection was refused");
    let d = report.finding("nothing_listening");
    let ns = report.evidence_str(d, "namespace");
    assert!(ns.starts_with("net:["), "evidence.namespace: {d}");
    assert_eq!(
        d["evidence"]["listening_there"][0],
        wrong.to_string(),
        "evidence.listening_there should hold what listens in the backend's namespace: {d}"
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    let why = d["explanation"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!(
            "python3 (pid {}) listens on {} in that namespace",
            listener.pid(),
            backend_port + 1
        )),
        "the finding should name the process on Q+1: {d}\n{}",
        report.context()
    );
}

#[test]
fn any_interface_counts_each_forwarded_connection_once() {
    const TEST: &str = "any_interface_counts_each_forwarded_connection_once";
    let port = fresh_port();
    let backend_port = fresh_port();
    let Some((host, ctr)) = port_map(TEST, port, backend_port) else {
        return;
    };
    // A client namespace routed through the host: its connections are seen before the
    // DNAT (to 10.78.0.1:P, coming in) and after it (to the container, going out).
    let Some(client) = Netns::create(TEST) else {
        return;
    };
    let (h, k) = (
        format!("k{}", &host.name[4..]),
        format!("k{}", &client.name[4..]),
    );
    let (h, k) = (&h[..h.len().min(15)], &k[..k.len().min(15)]);
    host.run(&[
        "ip",
        "link",
        "add",
        h,
        "type",
        "veth",
        "peer",
        "name",
        k,
        "netns",
        &client.name,
    ]);
    host.run(&["ip", "addr", "add", "10.78.0.1/24", "dev", h]);
    host.run(&["ip", "link", "set", h, "up"]);
    client.run(&["ip", "addr", "add", "10.78.0.2/24", "dev", k]);
    client.run(&["ip", "link", "set", k, "up"]);
    client.run(&["ip", "route", "add", "default", "via", "10.78.0.1"]);
    host.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    const N: usize = 3;
    let server = container_server(&ctr, backend_port, N);
    std::thread::sleep(Duration::from_millis(200));
    let capture = start_capture_on(&host, "any", port, 3, &[]);
    let clients: Vec<u16> = client
        .on_thread(move || {
            (0..N)
                .map(|_| {
                    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 78, 0, 1)), port);
                    say_hi(addr).local_addr().unwrap().port()
                })
                .collect()
        })
        .join()
        .expect("client thread");
    server.join().expect("server thread");
    let report = capture.finish();

    for c in &clients {
        let f = report.one_final_from(*c, "a forwarded connection seen on two interfaces");
        assert_eq!(f["outcome"], "closed", "{f}");
        assert_eq!(
            f["translated_to"],
            format!("{CTR_IP}:{backend_port}"),
            "{f}"
        );
        assert_eq!(
            f["server"],
            format!("10.78.0.1:{port}"),
            "the merged flow shows the address the client used: {f}"
        );
    }
    let s = report.summary();
    assert_eq!(
        s["flows"],
        N,
        "one flow per connection made: {}",
        report.context()
    );
    let tw =
        s["time_wait"]["client"].as_u64().unwrap() + s["time_wait"]["server"].as_u64().unwrap();
    assert_eq!(
        tw,
        N as u64,
        "one TIME_WAIT per connection: {}",
        report.context()
    );
    report.assert_exit(0, "every connection succeeded");
}

#[test]
fn a_port_map_whose_backend_starts_after_a_refusal_is_a_startup_race_not_nothing_listening() {
    const TEST: &str =
        "a_port_map_whose_backend_starts_after_a_refusal_is_a_startup_race_not_nothing_listening";
    let port = fresh_port();
    let backend_port = fresh_port();
    let Some((host, ctr)) = port_map(TEST, port, backend_port) else {
        return;
    };
    // The container's server is not up yet: the first connection through the map is
    // refused by the container's TCP.
    let capture = start_capture_on(&host, "any", port, 3, &[]).with_text(&host);
    let refused = refused_through_the_map(&host, port);
    std::thread::sleep(Duration::from_millis(200));
    let server = container_server(&ctr, backend_port, 2);
    std::thread::sleep(Duration::from_millis(200));
    host.on_thread(move || {
        for _ in 0..2 {
            say_hi(SocketAddr::new(IpAddr::V4(HOST_IP), port));
        }
    })
    .join()
    .expect("client thread");
    server.join().expect("server thread");
    let report = capture.finish();

    report.assert_outcome(refused, "refused", "before the container's server listened");
    let d = report.finding("startup_race");
    assert_eq!(
        report.evidence_str(d, "backend"),
        format!("{CTR_IP}:{backend_port}"),
        "the race names the port map's backend: {d}\n{}",
        report.context()
    );
    let w = &d["evidence"]["windows"][0];
    assert_eq!(
        (&w["attempts"], &w["accepted_before"], &w["accepted_after"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(0),
            &serde_json::json!(2)
        ),
        "one refusal, then the two connections that went through: {d}"
    );
    // Live, nothing_listening may be printed before the server came up; the end must not
    // repeat it.
    assert!(
        !report.lines.iter().any(|(_, v)| v["type"] == "finding"
            && v["final"] == true
            && v["kind"] == "nothing_listening"),
        "a later connection through the same translation succeeded: the final diagnosis must \
         not say nothing listens there\n{}",
        report.context()
    );
    let text = &report.text.as_ref().expect("text run").output;
    let line = text
        .lines()
        .find(|l| l.contains(" refused ") && l.contains(&format!("{CTR_IP}:{backend_port}")))
        .unwrap_or_else(|| panic!("the refused flow's line shows the translation:\n{text}"));
    assert!(
        !line.contains("another host or a middlebox"),
        "the RST came from the port map's backend, which the flow line can name:\n{line}"
    );
    assert!(
        line.contains(&format!("{CTR_IP}:{backend_port}")) && line.contains("RST"),
        "{line}"
    );
}

#[test]
fn a_port_maps_backend_that_comes_and_goes_is_looked_at_at_each_refusal_and_said_as_it_changes() {
    const TEST: &str = "a_port_maps_backend_that_comes_and_goes_is_looked_at_at_each_refusal_and_said_as_it_changes";
    let port = fresh_port();
    let backend_port = fresh_port();
    let Some((host, ctr)) = port_map(TEST, port, backend_port) else {
        return;
    };
    let backend = SocketAddr::new(IpAddr::V4(CTR_IP), backend_port);
    let mut capture = start_capture_on(&host, "any", port, 6, &[]);
    let stops_after = capture.stops_after;
    // Down: nothing sits in the container's namespace.
    let first = refused_through_the_map(&host, port);
    // Up: a server in the container, and a connection through the map it completes.
    let server = spawn_listener(&ctr, backend, 16, false);
    let pid = i64::from(server.pid());
    let kept = host
        .on_thread(move || {
            let addr = SocketAddr::new(IpAddr::V4(HOST_IP), port);
            TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("test setup: connect to {addr} once it listens: {e}"))
        })
        .join()
        .expect("client thread");
    // Down again once portsniff said it is up (the connection above made it look): the
    // server killed (by its pid), the next connection refused.
    // The update itself: a `startup_race` finding printed at the same SYN-ACK has a
    // `listener_started` key in its evidence, and waiting for that killed the server
    // before the look that says it up.
    let said = capture.wait_for_stdout("\"change\":\"listener_started\"", Duration::from_secs(3));
    drop(server);
    let last = refused_through_the_map(&host, port);
    let report = capture.finish();
    drop(kept);

    assert!(
        said,
        "the backend's start should be said within a look (1 s) of the connection it \
         completed\n{}",
        report.context()
    );
    report.assert_outcome(first, "refused", "before the container's server listened");
    report.assert_outcome(last, "refused", "after the container's server was killed");
    let listener = backend.to_string();
    let live_change = |change: &str| {
        report
            .lines
            .iter()
            .find(|(_, v)| {
                v["type"] == "update"
                    && v["final"] == false
                    && v["change"] == change
                    && v["listener"] == listener.as_str()
            })
            .unwrap_or_else(|| {
                panic!(
                    "the backend's {change} on {listener} should be said live as an update\n{}",
                    report.context()
                )
            })
    };
    let (started_line, started) = live_change("listener_started");
    assert_eq!(
        started["process"]["pid"], pid,
        "the update names the container's server: {started}"
    );
    assert!(
        started_line.arrived < stops_after,
        "said live, before the capture stopped: {started}"
    );
    live_change("listener_stopped");
    // The end: the race (refused, then accepted) and the refusal after the server died,
    // judged by the backend as it was then: nothing listens there.
    let race = report.finding("startup_race");
    assert_eq!(
        race["evidence"]["listener_started"]["pid"], pid,
        "the race names the backend's server: {race}"
    );
    let d = report.finding("nothing_listening");
    assert_eq!(
        d["evidence"]["listening_there"],
        serde_json::json!([]),
        "nothing listened at {listener} when the last connection was refused: {d}\n{}",
        report.context()
    );
    assert_eq!(report.evidence_u64(d, "refused"), 1, "{d}");
}

//! The kernel witness's scope: its tracepoints are global, so it must keep to the
//! captured network namespace and the watched port, and still see a connection that
//! crosses a veth from another namespace.

use crate::*;

/// Two namespaces with a veth between them: the server side (A, 10.77.x.1) drops SYNs
/// to the port in INPUT; the client side (B) connects across.
struct Pair {
    server: Netns,
    client: Netns,
    addr: String,
}

fn veth_pair(test: &str) -> Option<Pair> {
    let server = Netns::create(test)?;
    let client = Netns::create(test)?;
    // Interface names are per namespace, but the veth is created in the test's own one
    // first: make them unique to this process.
    let (a, b) = (
        format!("psa{}", std::process::id() % 100_000),
        format!("psb{}", std::process::id() % 100_000),
    );
    let octet = std::process::id() % 200 + 20;
    let addr = format!("10.77.{octet}.1");
    let peer = format!("10.77.{octet}.2");
    server.run(&[
        "ip",
        "link",
        "add",
        &a,
        "type",
        "veth",
        "peer",
        "name",
        &b,
        "netns",
        &client.name,
    ]);
    server.run(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &a]);
    server.run(&["ip", "link", "set", &a, "up"]);
    client.run(&["ip", "addr", "add", &format!("{peer}/24"), "dev", &b]);
    client.run(&["ip", "link", "set", &b, "up"]);
    Some(Pair {
        server,
        client,
        addr,
    })
}

fn connect_gives_up(ns: &Netns, addr: &str, port: u16) {
    let server: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let res = ns
        .on_thread(move || {
            std::net::TcpStream::connect_timeout(&server, Duration::from_millis(1500))
                .map_err(|e| e.kind())
        })
        .join()
        .expect("client thread");
    assert!(
        res.is_err(),
        "test setup: the DROP rule stops the connection"
    );
}

#[test]
fn the_witness_joins_drops_across_a_veth_and_ignores_other_namespaces() {
    const TEST: &str = "the_witness_joins_drops_across_a_veth_and_ignores_other_namespaces";
    if !have_root(TEST) {
        return;
    }
    let Some(pair) = veth_pair(TEST) else {
        return;
    };
    // A third namespace watching the same port on its own loopback: the drops happen in
    // the server's namespace, so this witness must see none of them.
    let Some(bystander) = Netns::create(TEST) else {
        return;
    };
    let port: u16 = 61993;
    let port_s = port.to_string();
    pair.server.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", &port_s, "-j", "DROP",
    ]);
    let args = |iface: &'static str| {
        vec![
            "-i",
            iface,
            "--port",
            "61993",
            "--json",
            "--syn-timeout",
            "1",
            "--no-attribution",
        ]
    };
    let mut watching = Sniffer::spawn(
        pair.server.portsniff(&args("any")),
        "portsniff -i any in the server's namespace",
    );
    let mut other = Sniffer::spawn(
        bystander.portsniff(&args("lo")),
        "portsniff -i lo in another namespace",
    );
    watching.wait_for_banner();
    other.wait_for_banner();

    connect_gives_up(&pair.client, &pair.addr, port);
    std::thread::sleep(SETTLE);
    watching.interrupt();
    other.interrupt();
    let run = watching.wait_exit(EXIT_TIMEOUT);
    let bystander_run = other.wait_exit(EXIT_TIMEOUT);

    let lines = run.json();
    let out = run.stdout_text();
    let finals: Vec<&Value> = flows(&lines)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["final"] == true)
        .collect();
    assert_eq!(finals.len(), 1, "one connection across the veth: {out}");
    let k = &finals[0]["kernel"];
    assert_eq!(k["drops"][0]["reason"], "NETFILTER_DROP", "{out}");
    assert_eq!(k["drops"][0]["path"], "ingress", "{out}");
    assert_eq!(k["drops"][0]["dir"], "c2s", "{out}");
    assert_eq!(k["drops"][0]["what"], "SYN", "{out}");
    assert!(
        k["drops"][0]["count"].as_u64().unwrap_or(0) >= 2,
        "the SYN and its retransmission: {out}"
    );
    // The client's socket lives in the other namespace: its states are not seen here.
    assert_eq!(k["states"]["client"], Value::Null, "{out}");
    assert_eq!(summary(&lines, &out)["kernel_events"]["lost"], 0, "{out}");

    let b_lines = bystander_run.json();
    let b_out = bystander_run.stdout_text();
    let b_summary = summary(&b_lines, &b_out);
    assert_eq!(b_summary["kernel_events"]["enabled"], true, "{b_out}");
    assert_eq!(
        b_summary["kernel_events"]["events"], 0,
        "drops in another namespace are not this capture's: {b_out}"
    );
}

#[test]
fn an_unwatched_port_is_filtered_in_the_kernel() {
    const TEST: &str = "an_unwatched_port_is_filtered_in_the_kernel";
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    // Drops on 61992; the capture watches 61991.
    ns.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "61992", "-j", "DROP",
    ]);
    let mut sniffer = Sniffer::spawn(
        ns.portsniff(&["-i", "lo", "--port", "61991", "--json", "--no-attribution"]),
        "portsniff on another port",
    );
    sniffer.wait_for_banner();
    connect_gives_up(&ns, "127.0.0.1", 61992);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    let k = &summary(&lines, &out)["kernel_events"];
    assert_eq!(k["enabled"], true, "{out}");
    assert_eq!(
        k["events"], 0,
        "another port's drops never leave the kernel: {out}"
    );
}

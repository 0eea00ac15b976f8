//! A connection inside a kernel VXLAN tunnel between two namespaces, captured on the
//! underlay: the kernel filter must pass the outer UDP, and the flow line names the VNI.

use crate::*;
use std::net::TcpListener;

#[test]
fn live_connection_inside_vxlan_is_seen_on_the_underlay() {
    const TEST: &str = "live_connection_inside_vxlan_is_seen_on_the_underlay";
    if !have_root(TEST) {
        return;
    }
    let Some(client_ns) = Netns::create_tagged(TEST, "tunnels") else {
        return;
    };
    let Some(server_ns) = Netns::create_tagged(TEST, "tunnels") else {
        return;
    };
    // Interface names: at most 15 bytes, unique per test process.
    let seq = std::process::id() % 100_000;
    let (c_if, s_if) = (format!("ptc{seq}"), format!("pts{seq}"));
    veth_between(&client_ns, &server_ns, &c_if, &s_if);
    for (ns, ul, local, remote, inner) in [
        (&client_ns, &c_if, "192.0.2.1", "192.0.2.2", "10.42.0.1/24"),
        (&server_ns, &s_if, "192.0.2.2", "192.0.2.1", "10.42.0.2/24"),
    ] {
        // No IPv6: its link-local chatter would only add skipped packets.
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns.run(&["ip", "addr", "add", &format!("{local}/24"), "dev", ul]);
        ns.run(&["ip", "link", "set", ul, "up"]);
        ns.run(&[
            "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "local",
            local, "remote", remote, "dev", ul,
        ]);
        ns.run(&["ip", "addr", "add", inner, "dev", "vx0"]);
        ns.run(&["ip", "link", "set", "vx0", "up"]);
    }
    let port = ReservedPort::on(Ipv4Addr::LOCALHOST.into())
        .expect("bind 127.0.0.1:0")
        .port();
    let port_s = port.to_string();
    let server = SocketAddr::from(([10, 42, 0, 2], port));
    let listener = server_ns
        .on_thread(move || TcpListener::bind(server).expect("listen inside the tunnel"))
        .join()
        .expect("listener thread");

    let cmd = client_ns.portsniff(&["-i", &c_if, "--port", &port_s, "--json", "--duration", "3"]);
    let mut sniffer = Sniffer::spawn(cmd, "ip netns exec NS portsniff -i VETH");
    sniffer.wait_for_banner();
    let client = client_ns.on_thread(move || {
        let mut c = TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("connect in VXLAN");
        c.write_all(&[b'c'; 100]).expect("send");
        c
    });
    let mut accepted = accept_within(&listener, IO_TIMEOUT);
    let mut got = [0u8; 100];
    accepted
        .read_exact(&mut got)
        .expect("read the client's 100 bytes");
    drop(accepted);
    drop(client.join().expect("client thread"));
    std::thread::sleep(SETTLE);

    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    let found: Vec<&Value> = flows(&lines)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["final"] == true)
        .collect();
    assert_eq!(found.len(), 1, "one connection inside the tunnel\n{out}");
    assert_eq!(found[0]["encap"], "vxlan vni 42", "{out}");
    assert_eq!(found[0]["server"], format!("10.42.0.2:{port}"), "{out}");
    assert_eq!(found[0]["bytes_c2s"], 100, "{out}");
}

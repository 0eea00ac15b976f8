//! A connection inside a tunnel between two namespaces, captured on the underlay: the
//! kernel filter must pass the outer packets (UDP to 4789 or 6081, IP protocol 47), and
//! the flow line names the tunnel. VXLAN is the kernel's own device; Geneve and GRE are
//! `fixtures/usertun.py` on a TAP or TUN device, as `fixtures/make.sh` makes their
//! fixtures, for kernels built without `geneve` and `gre` (the inner connection and the
//! outer headers are still the kernel's, from real sockets).

use crate::*;
use std::net::TcpListener;
use std::path::Path;
use std::time::Instant;

/// How long a userspace endpoint may take to open its device and socket.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the two namespaces' `tun0` devices are joined across the underlay.
enum Tunnel {
    /// The kernel's VXLAN device, VNI 42.
    KernelVxlan,
    /// `usertun.py KIND MODE tun0 LOCAL REMOTE ID` on a TUN or TAP device of this MTU.
    User {
        kind: &'static str,
        mode: &'static str,
        id: u32,
        mtu: u32,
    },
}

/// Two namespaces joined by a veth pair (192.0.2.1 ↔ .2) and a tunnel (10.42.0.1 ↔ .2).
/// Field order is drop order: the endpoints are killed before the namespaces go.
struct Staged {
    _endpoints: Vec<Sniffer>,
    client_ns: Netns,
    server_ns: Netns,
    /// The client side of the veth: the underlay portsniff captures.
    client_if: String,
}

/// Stages `tunnel`; `None` (after skipping) where this machine cannot.
fn stage(test: &str, tunnel: &Tunnel, tag: char) -> Option<Staged> {
    if !have_root(test) {
        return None;
    }
    let python = match tunnel {
        Tunnel::KernelVxlan => None,
        Tunnel::User { .. } => {
            let Some(python) = which("python3") else {
                skip(test, "needs python3 for the userspace tunnel endpoint");
                return None;
            };
            if !Path::new("/dev/net/tun").exists() {
                skip(
                    test,
                    "needs /dev/net/tun (CONFIG_TUN) for the userspace tunnel",
                );
                return None;
            }
            Some(python)
        }
    };
    let client_ns = Netns::create_tagged(test, "tunnels")?;
    let server_ns = Netns::create_tagged(test, "tunnels")?;
    // Interface names: at most 15 bytes, unique per test process and tunnel.
    let seq = std::process::id() % 100_000;
    let (c_if, s_if) = (format!("ptc{seq}{tag}"), format!("pts{seq}{tag}"));
    veth_between(&client_ns, &server_ns, &c_if, &s_if);
    let mut endpoints = Vec::new();
    for (ns, ul, local, remote, inner) in [
        (&client_ns, &c_if, "192.0.2.1", "192.0.2.2", "10.42.0.1/24"),
        (&server_ns, &s_if, "192.0.2.2", "192.0.2.1", "10.42.0.2/24"),
    ] {
        // No IPv6: its link-local chatter would only add skipped packets.
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns.run(&["ip", "addr", "add", &format!("{local}/24"), "dev", ul]);
        ns.run(&["ip", "link", "set", ul, "up"]);
        match tunnel {
            Tunnel::User {
                kind,
                mode,
                id,
                mtu,
            } => {
                let python = python.as_deref().expect("found above");
                ns.run(&["ip", "tuntap", "add", "dev", "tun0", "mode", mode]);
                ns.run(&["ip", "link", "set", "tun0", "mtu", &mtu.to_string()]);
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/usertun.py");
                // Its own lifetime (60 s) bounds it should this test process die
                // before the Sniffer's drop kills it.
                let cmd = ns.command(
                    python,
                    &[
                        script.to_str().expect("a UTF-8 path"),
                        kind,
                        mode,
                        "tun0",
                        local,
                        remote,
                        &id.to_string(),
                        "60",
                    ],
                );
                let mut endpoint = Sniffer::spawn(cmd, "ip netns exec NS usertun.py");
                assert!(
                    endpoint.wait_for_stdout("ready", READY_TIMEOUT),
                    "usertun.py {kind} did not say ready within {READY_TIMEOUT:?}: {:?}",
                    endpoint.wait_exit(Duration::from_secs(1)).stderr
                );
                endpoints.push(endpoint);
            }
            Tunnel::KernelVxlan => ns.run(&[
                "ip", "link", "add", "tun0", "type", "vxlan", "id", "42", "dstport", "4789",
                "local", local, "remote", remote, "dev", ul,
            ]),
        }
        ns.run(&["ip", "addr", "add", inner, "dev", "tun0"]);
        ns.run(&["ip", "link", "set", "tun0", "up"]);
    }
    Some(Staged {
        _endpoints: endpoints,
        client_ns,
        server_ns,
        client_if: c_if,
    })
}

/// portsniff on the client's underlay while a client sends 100 bytes to a listener on
/// 10.42.0.2 inside the tunnel and the server closes: one connection, named by `encap`.
fn connection_inside_is_named(staged: &Staged, encap: &str) {
    let port = ReservedPort::on(Ipv4Addr::LOCALHOST.into())
        .expect("bind 127.0.0.1:0")
        .port();
    let port_s = port.to_string();
    let server = SocketAddr::from(([10, 42, 0, 2], port));
    let listener = staged
        .server_ns
        .on_thread(move || TcpListener::bind(server).expect("listen inside the tunnel"))
        .join()
        .expect("listener thread");

    let cmd = staged.client_ns.portsniff(&[
        "-i",
        &staged.client_if,
        "--port",
        &port_s,
        "--json",
        "--duration",
        "3",
    ]);
    let mut sniffer = Sniffer::spawn(cmd, "ip netns exec NS portsniff -i VETH");
    sniffer.wait_for_banner();
    let started = Instant::now();
    let client = staged.client_ns.on_thread(move || {
        let mut c = TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("connect in the tunnel");
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
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the exchange took {:?}, past portsniff's --duration 3",
        started.elapsed()
    );

    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    let found: Vec<&Value> = flows(&lines)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["final"] == true)
        .collect();
    assert_eq!(found.len(), 1, "one connection inside the tunnel\n{out}");
    assert_eq!(found[0]["encap"], encap, "{out}");
    assert_eq!(found[0]["server"], format!("10.42.0.2:{port}"), "{out}");
    assert_eq!(
        found[0]["client"]
            .as_str()
            .map(|c| c.starts_with("10.42.0.1:")),
        Some(true),
        "{out}"
    );
    assert_eq!(found[0]["bytes_c2s"], 100, "{out}");
    assert_eq!(
        found[0]["history"].as_str().map(|h| h.starts_with("ShAD")),
        Some(true),
        "{out}"
    );
}

#[test]
fn live_connection_inside_vxlan_is_seen_on_the_underlay() {
    const TEST: &str = "live_connection_inside_vxlan_is_seen_on_the_underlay";
    if let Some(staged) = stage(TEST, &Tunnel::KernelVxlan, 'v') {
        connection_inside_is_named(&staged, "vxlan vni 42");
    }
}

/// Geneve carrying Ethernet (a TAP), as the kernel's geneve device sends it.
#[test]
fn live_connection_inside_geneve_is_seen_on_the_underlay() {
    const TEST: &str = "live_connection_inside_geneve_is_seen_on_the_underlay";
    let tunnel = Tunnel::User {
        kind: "geneve",
        mode: "tap",
        id: 7,
        mtu: 1450,
    };
    if let Some(staged) = stage(TEST, &tunnel, 'g') {
        connection_inside_is_named(&staged, "geneve vni 7");
    }
}

/// GRE with a key carrying IP (a TUN), as the kernel's gre device sends it.
#[test]
fn live_connection_inside_gre_is_seen_on_the_underlay() {
    const TEST: &str = "live_connection_inside_gre_is_seen_on_the_underlay";
    let tunnel = Tunnel::User {
        kind: "gre",
        mode: "tun",
        id: 5,
        mtu: 1472,
    };
    if let Some(staged) = stage(TEST, &tunnel, 'r') {
        connection_inside_is_named(&staged, "gre key 5");
    }
}

//! A connection inside a tunnel between two namespaces, captured on the underlay: the
//! kernel filter must pass the outer packets (UDP to 4789, a port named by
//! `--vxlan-port`, or 6081, IP protocol 47), and the flow line names the tunnel. VXLAN is
//! the kernel's own device; Geneve and GRE are `fixtures/usertun.py` on a TAP or TUN
//! device, as `fixtures/make.sh` makes their fixtures, for kernels built without `geneve`
//! and `gre` (the inner connection and the outer headers are still the kernel's, from
//! real sockets). Refusals inside MPLS and PPPoE are sent by hand into a veth pair.

use crate::*;
use std::net::TcpListener;
use std::path::Path;
use std::time::Instant;

/// How long a userspace endpoint may take to open its device and socket.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the two namespaces' `tun0` devices are joined across the underlay.
enum Tunnel {
    /// The kernel's VXLAN device, VNI 42, sending to this UDP port.
    KernelVxlan { dstport: &'static str },
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
        Tunnel::KernelVxlan { .. } => None,
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
            Tunnel::KernelVxlan { dstport } => ns.run(&[
                "ip", "link", "add", "tun0", "type", "vxlan", "id", "42", "dstport", dstport,
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

/// portsniff (with `options`) on the client's underlay while a client sends 100 bytes to
/// a listener on 10.42.0.2 inside the tunnel and the server closes: one connection,
/// named by `encap`.
fn connection_inside_is_named(staged: &Staged, options: &[&str], encap: &str) {
    let found = connection_inside(staged, &staged.client_if, options);
    assert_eq!(found.flow["encap"], encap, "{}", found.out);
}

/// What portsniff said of the one connection made inside the tunnel.
struct Found {
    flow: Value,
    summary: Value,
    out: String,
}

/// portsniff (with `options`) on `interface` of the client's namespace while a client
/// sends 100 bytes to a listener on 10.42.0.2 inside the tunnel and the server closes:
/// one connection, from 10.42.0.1, with its 100 bytes.
fn connection_inside(staged: &Staged, interface: &str, options: &[&str]) -> Found {
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

    let mut args = vec![
        "-i",
        interface,
        "--port",
        &port_s,
        "--json",
        "--duration",
        "3",
    ];
    args.extend_from_slice(options);
    let cmd = staged.client_ns.portsniff(&args);
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
    let summary = lines
        .iter()
        .map(|(_, v)| v)
        .find(|v| v["type"] == "summary")
        .cloned()
        .expect("a summary line");
    Found {
        flow: found[0].clone(),
        summary,
        out,
    }
}

/// The tunnel's endpoint with `-i any`: every packet is captured inside VXLAN on the
/// underlay and again on the tunnel's device; the connection is one line all the same,
/// and the copy's segments are counted as such.
#[test]
fn live_any_on_the_tunnels_endpoint_shows_each_connection_once() {
    const TEST: &str = "live_any_on_the_tunnels_endpoint_shows_each_connection_once";
    let tunnel = Tunnel::KernelVxlan { dstport: "4789" };
    if let Some(staged) = stage(TEST, &tunnel, 'a') {
        let found = connection_inside(&staged, "any", &[]);
        let encap = &found.flow["encap"];
        assert!(
            encap.is_null() || encap == "vxlan vni 42",
            "shown as either copy: {}",
            found.out
        );
        let p = &found.summary["packets"];
        let in_flow = found.flow["packets_c2s"].as_u64().unwrap_or(0)
            + found.flow["packets_s2c"].as_u64().unwrap_or(0);
        assert!(
            p["not_in_flows"]["copies"].as_u64().unwrap_or(0) >= in_flow,
            "the other copy's segments counted: {p}"
        );
    }
}

#[test]
fn live_connection_inside_vxlan_is_seen_on_the_underlay() {
    const TEST: &str = "live_connection_inside_vxlan_is_seen_on_the_underlay";
    let tunnel = Tunnel::KernelVxlan { dstport: "4789" };
    if let Some(staged) = stage(TEST, &tunnel, 'v') {
        connection_inside_is_named(&staged, &[], "vxlan vni 42");
    }
}

/// VXLAN on a port of the operator's choosing: `--vxlan-port` opens it, and the kernel
/// filter passes it.
#[test]
fn live_connection_inside_vxlan_on_a_named_port_is_seen_with_vxlan_port() {
    const TEST: &str = "live_connection_inside_vxlan_on_a_named_port_is_seen_with_vxlan_port";
    let tunnel = Tunnel::KernelVxlan { dstport: "14789" };
    if let Some(staged) = stage(TEST, &tunnel, 'n') {
        connection_inside_is_named(&staged, &["--vxlan-port", "14789"], "vxlan vni 42");
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
        connection_inside_is_named(&staged, &[], "geneve vni 7");
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
        connection_inside_is_named(&staged, &[], "gre key 5");
    }
}

/// An IPv4 TCP segment (no options, checksums left zero: nothing but the capture reads
/// these frames, the kernel having no MPLS or PPPoE handler here).
fn ipv4_tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&seq.to_be_bytes());
    ip.extend_from_slice(&ack.to_be_bytes());
    ip.extend_from_slice(&[5 << 4, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    ip
}

/// A broadcast Ethernet frame (a veth delivers it to the capture whatever its MAC)
/// carrying `payload` as `ethertype`.
fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An MPLS stack of labels 100 and 2001 (bottom), as an L3VPN's transport and VPN labels.
fn mpls(ip: &[u8]) -> Vec<u8> {
    let mut m = ((100u32 << 12) | 64).to_be_bytes().to_vec();
    m.extend_from_slice(&((2001u32 << 12) | 0x100 | 64).to_be_bytes());
    m.extend_from_slice(ip);
    ethernet(0x8847, &m)
}

/// A PPPoE session frame, session 0x1234, PPP protocol `protocol`.
fn pppoe(protocol: u16, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x11, 0, 0x12, 0x34];
    p.extend_from_slice(&((2 + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(&protocol.to_be_bytes());
    p.extend_from_slice(body);
    ethernet(0x8864, &p)
}

/// Sends `frames` out of interface `ifname` through a raw AF_PACKET socket, from the
/// calling thread's network namespace.
fn inject(ifname: &str, frames: &[Vec<u8>]) {
    let name = std::ffi::CString::new(ifname).expect("interface name");
    // SAFETY: a plain socket(2); the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex > 0, "no interface {ifname}");
    // SAFETY: sockaddr_ll is plain data, valid when zeroed.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    for frame in frames {
        // SAFETY: the frame and the address are live for the call, their lengths given.
        let sent = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            sent,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
}

/// An MPLS core or a BRAS: refusals inside an MPLS stack and a PPPoE session reach a live
/// capture (the kernel filter passes them, and only the port's), each named by its
/// encapsulation. The kernel here routes neither, so the frames are made by hand and
/// sent into one end of a veth pair while portsniff captures the other.
#[test]
fn live_refusals_inside_mpls_and_pppoe_pass_the_kernel_filter_and_are_named() {
    const TEST: &str = "live_refusals_inside_mpls_and_pppoe_pass_the_kernel_filter_and_are_named";
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = Netns::create_tagged(TEST, "tunnels") else {
        return;
    };
    // No IPv6 (its link-local chatter would be captured too) and no address: nothing
    // but the injected frames crosses the pair.
    ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.run(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns.run(&[
        "ip", "link", "add", "inj0", "type", "veth", "peer", "name", "cap0",
    ]);
    ns.run(&["ip", "link", "set", "inj0", "up"]);
    ns.run(&["ip", "link", "set", "cap0", "up"]);
    let port = 61999u16;
    let port_s = port.to_string();
    let cmd = ns.portsniff(&[
        "-i",
        "cap0",
        "--port",
        &port_s,
        "--json",
        "--duration",
        "3",
        "--no-kernel-events",
    ]);
    let mut sniffer = Sniffer::spawn(cmd, "ip netns exec NS portsniff -i cap0");
    sniffer.wait_for_banner();

    let (client, server) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let (syn, rst_ack) = (0x02, 0x14);
    let frames = vec![
        mpls(&ipv4_tcp(client, 40001, server, port, 1000, 0, syn)),
        mpls(&ipv4_tcp(server, port, client, 40001, 0, 1001, rst_ack)),
        pppoe(0x0021, &ipv4_tcp(client, 40002, server, port, 5000, 0, syn)),
        pppoe(
            0x0021,
            &ipv4_tcp(server, port, client, 40002, 0, 5001, rst_ack),
        ),
        // Another port's packet in each, and PPP's link control: left in the kernel.
        mpls(&ipv4_tcp(client, 40003, server, 443, 1, 1, 0x10)),
        pppoe(0x0021, &ipv4_tcp(client, 40004, server, 443, 1, 1, 0x10)),
        pppoe(0xc021, &[9, 1, 0, 8, 0, 0, 0, 0]),
    ];
    ns.on_thread(move || inject("inj0", &frames))
        .join()
        .expect("inject thread");

    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    let mut found: Vec<(String, String)> = flows(&lines)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["final"] == true)
        .map(|v| {
            (
                v["encap"].as_str().unwrap_or("none").to_string(),
                v["outcome"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("mpls label 2001".to_string(), "refused".to_string()),
            ("pppoe session 4660".to_string(), "refused".to_string()),
        ],
        "{out}\n{}",
        run.stderr
    );
    let s = summary(&lines, &out);
    assert_eq!(
        s["packets"]["captured"], 4,
        "only the port's packets passed the kernel filter: {s}"
    );
}

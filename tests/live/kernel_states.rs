//! The kernel witness's socket states on the real kernel, each scenario in a network
//! namespace of its own: each socket's path is kept in the kernel and sent once, when the
//! socket reaches TCP_CLOSE (for the side that goes to TIME_WAIT, `tcp_time_wait` ends the
//! full socket with `tcp_done` as it hands over), and still joins the connection's line.

use crate::*;

/// Root, or skips (fails under `CI=true`).
fn ready(test: &str) -> bool {
    have_root(test)
}

/// Which side closes its socket first.
#[derive(Clone, Copy)]
enum First {
    Client,
    Server,
}

/// One connection in `ns` to 127.0.0.1:`port`, closed cleanly, `first` closing first and
/// the other `later` after it reads the end; returns the client's port.
fn clean_connection(ns: &Netns, port: u16, first: First, later: Duration) -> u16 {
    ns.on_thread(move || {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .expect("listen in the namespace");
        let (client, cport) = client_stream(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        let server = accept_within(&listener, IO_TIMEOUT);
        server
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set a read timeout on the server");
        let (closer, mut other) = match first {
            First::Client => (client, server),
            First::Server => (server, client),
        };
        drop(closer);
        read_to_eof(&mut other, 1024).expect("read the closer's end");
        std::thread::sleep(later);
        drop(other);
        // The last ACK through before the listener goes (it is not the connection's).
        std::thread::sleep(SETTLE);
        drop(listener);
        cport
    })
    .join()
    .expect("connection thread")
}

/// `portsniff -i lo --port PORT --json --duration 2` in `ns`, banner seen.
fn capture(ns: &Netns, port: u16) -> Sniffer {
    let port = port.to_string();
    let args = ["-i", "lo", "--port", &port, "--json", "--duration", "2"];
    let mut sniffer = Sniffer::spawn(ns.portsniff(&args), "ip netns exec NS portsniff -i lo");
    sniffer.wait_for_banner();
    sniffer
}

fn scenario_port() -> u16 {
    ReservedPort::on(Ipv4Addr::LOCALHOST.into())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The `kernel.states` (client, server) and `kernel.drops` on `cport`'s one final line.
fn states_of(sniffer: Sniffer, cport: u16) -> (Value, Value, Value) {
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let f = one_final(&lines, cport, "the scenario's connection", &run);
    let s = &f["kernel"]["states"];
    let k = &summary(&lines, &run.stdout_text())["kernel_events"];
    assert_eq!(k["lost"], 0, "{k}");
    (
        s["client"].clone(),
        s["server"].clone(),
        f["kernel"]["drops"].clone(),
    )
}

/// A clean connection in a fresh namespace, captured live: `first` closes first, the
/// other `later` after reading its end. Its (client, server) states and drops, or `None`
/// after skipping.
fn clean_close(test: &str, first: First, later: Duration) -> Option<(Value, Value, Value)> {
    if !ready(test) {
        return None;
    }
    let ns = Netns::create(test)?;
    let port = scenario_port();
    let sniffer = capture(&ns, port);
    let cport = clean_connection(&ns, port, first, later);
    let facts = states_of(sniffer, cport);
    drop(ns);
    Some(facts)
}

#[test]
fn a_clean_close_gives_both_sockets_whole_paths_on_the_line() {
    const TEST: &str = "a_clean_close_gives_both_sockets_whole_paths_on_the_line";
    let Some((client, server, drops)) = clean_close(TEST, First::Client, Duration::ZERO) else {
        return;
    };
    assert_eq!(drops, serde_json::json!([]), "a clean close loses nothing");
    assert_eq!(
        client, "SYN_SENT→ESTABLISHED→FIN_WAIT1→FIN_WAIT2→CLOSE",
        "the client closed first and went to TIME_WAIT"
    );
    assert_eq!(
        server, "SYN_RECV→ESTABLISHED→CLOSE_WAIT→LAST_ACK→CLOSE",
        "the server closed on reading the client's end"
    );
}

/// The client closes first; the server closes 200 ms after reading the end, when the
/// client's socket, its FIN acknowledged, has been handed to a TIME_WAIT socket. That
/// socket answers the server's FIN with the last ACK and frees it with no reason
/// (`NOT_SPECIFIED` in `tcp_v4_rcv`), which the drop tracepoint sees: the line must not
/// say the FIN was dropped (it said "FIN from the server dropped on arrival").
#[test]
fn a_fin_answered_by_a_time_wait_socket_is_not_a_drop() {
    const TEST: &str = "a_fin_answered_by_a_time_wait_socket_is_not_a_drop";
    let Some((client, _, drops)) = clean_close(TEST, First::Client, Duration::from_millis(200))
    else {
        return;
    };
    assert_eq!(
        client, "SYN_SENT→ESTABLISHED→FIN_WAIT1→FIN_WAIT2→CLOSE",
        "test setup: the client closed first"
    );
    assert_eq!(
        drops,
        serde_json::json!([]),
        "the server's FIN was answered"
    );
}

#[test]
fn a_server_that_closes_first_goes_through_fin_wait_on_its_side() {
    const TEST: &str = "a_server_that_closes_first_goes_through_fin_wait_on_its_side";
    let Some((client, server, drops)) = clean_close(TEST, First::Server, Duration::ZERO) else {
        return;
    };
    assert_eq!(drops, serde_json::json!([]), "a clean close loses nothing");
    assert_eq!(client, "SYN_SENT→ESTABLISHED→CLOSE_WAIT→LAST_ACK→CLOSE");
    assert_eq!(server, "SYN_RECV→ESTABLISHED→FIN_WAIT1→FIN_WAIT2→CLOSE");
}

#[test]
fn a_refused_connection_has_the_clients_path_and_no_server_socket() {
    const TEST: &str = "a_refused_connection_has_the_clients_path_and_no_server_socket";
    if !ready(TEST) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = scenario_port();
    let sniffer = capture(&ns, port);
    let cport = ns
        .on_thread(move || {
            let (cport, res) =
                connect_from_known_port(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
            assert_eq!(
                res.err().map(|e| e.kind()),
                Some(ErrorKind::ConnectionRefused),
                "test setup: nothing listens"
            );
            cport
        })
        .join()
        .expect("client thread");
    let (client, server, _) = states_of(sniffer, cport);
    drop(ns);
    // The client bound its port before connect(), so connect()'s CLOSE→SYN_SENT names
    // the connection too (an unbound one's has no port yet: `SYN_SENT→CLOSE`).
    assert_eq!(
        client, "CLOSE→SYN_SENT→CLOSE",
        "the RST closed the client's socket"
    );
    assert_eq!(server, Value::Null, "no socket on the server's side");
}

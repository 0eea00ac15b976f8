//! The kernel witness on the real kernel, each scenario in a network namespace of its
//! own: where a RST came from (TCP finding no socket, a firewall's REJECT, a process
//! closing its socket with SO_LINGER 0) and an ICMP error a REJECT rule on the server's
//! own host sent are three, then four, different stories; without CAP_BPF, or with
//! `--no-kernel-events`, the reason is said and the inference still works; and Ctrl-C or
//! SIGTERM leave none of portsniff's BPF programs or links behind.

use crate::*;
use std::path::{Path, PathBuf};

/// How long each capture runs: the scenario's one connection happens within a second of
/// the banner.
const RUN_SECS: &str = "2";

/// Root, and every tool in `tools` on PATH; otherwise skips (fails under `CI=true`).
fn ready(test: &str, tools: &[&str]) -> bool {
    if !have_root(test) {
        return false;
    }
    for tool in tools {
        if which(tool).is_none() {
            skip(test, &format!("needs `{tool}` on PATH"));
            return false;
        }
    }
    true
}

/// A port for the namespace's scenario: any works there, but reserving one in this
/// namespace keeps it different from the other tests'.
fn scenario_port() -> u16 {
    ReservedPort::on(Ipv4Addr::LOCALHOST.into())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Starts `portsniff -i lo --port PORT --json --duration RUN_SECS` plus `extra` in `ns`
/// and waits for its banner.
fn capture(ns: &Netns, port: u16, extra: &[&str]) -> Sniffer {
    let port = port.to_string();
    let mut args = vec![
        "-i",
        "lo",
        "--port",
        &port,
        "--json",
        "--duration",
        RUN_SECS,
    ];
    args.extend_from_slice(extra);
    let mut sniffer = Sniffer::spawn(ns.portsniff(&args), "ip netns exec NS portsniff -i lo");
    sniffer.wait_for_banner();
    sniffer
}

/// A client in `ns` connecting to 127.0.0.1:`port`; returns its port and connect()'s
/// error kind, if it failed.
fn connect_in(ns: &Netns, port: u16) -> (u16, Option<ErrorKind>) {
    ns.on_thread(move || {
        let (cport, res) = connect_from_known_port(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        (cport, res.err().map(|e| e.kind()))
    })
    .join()
    .expect("client thread")
}

/// A listener in `ns` on 127.0.0.1:`port`, kept open until the returned sender is
/// dropped or sent to.
fn listen_in(ns: &Netns, port: u16) -> std::sync::mpsc::Sender<()> {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    ns.on_thread(move || {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .expect("listen in the namespace");
        ready_tx.send(()).expect("tell the test");
        let _ = stop_rx.recv_timeout(Duration::from_secs(30));
        drop(listener);
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the namespace's listener is up");
    stop_tx
}

/// Everything one run printed, parsed: its lines, its text (for messages), and the one
/// final flow line of the client on `cport`.
struct Ran {
    run: Finished,
    lines: Vec<(Line, Value)>,
    out: String,
}

impl Ran {
    fn of(sniffer: Sniffer) -> Ran {
        let run = sniffer.wait_exit(EXIT_TIMEOUT);
        let lines = run.json();
        let out = run.stdout_text();
        Ran { run, lines, out }
    }

    fn flow(&self, cport: u16) -> &Value {
        crate::one_final(&self.lines, cport, "the scenario's connection", &self.run)
    }

    /// The findings of the final diagnosis (printed live too: the last of each kind).
    fn finding(&self, kind: &str) -> &Value {
        self.lines
            .iter()
            .rev()
            .map(|(_, v)| v)
            .find(|v| v["type"] == "finding" && v["kind"] == kind)
            .unwrap_or_else(|| {
                panic!(
                    "portsniff gave no {kind} finding; stdout:\n{}\nstderr:\n{}",
                    self.out, self.run.stderr
                )
            })
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.lines
            .iter()
            .filter(|(_, v)| v["type"] == "finding")
            .filter_map(|(_, v)| v["kind"].as_str().map(str::to_string))
            .collect()
    }

    fn summary(&self) -> &Value {
        summary(&self.lines, &self.out)
    }
}

/// Whether this kernel names the reason of each RST TCP sends (`enum sk_rst_reason`,
/// Linux 6.10): before that the witness gives none and the words say so.
fn kernel_names_reset_reasons() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 10)
}

#[test]
fn a_rst_the_kernel_sent_for_no_socket_is_nothing_listening_in_the_kernels_words() {
    const TEST: &str =
        "a_rst_the_kernel_sent_for_no_socket_is_nothing_listening_in_the_kernels_words";
    if !ready(TEST, &[]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = scenario_port();
    let sniffer = capture(&ns, port, &[]);
    let (cport, err) = connect_in(&ns, port);
    assert_eq!(
        err,
        Some(ErrorKind::ConnectionRefused),
        "test setup: nothing listens"
    );
    let ran = Ran::of(sniffer);
    drop(ns);

    let f = ran.flow(cport);
    assert_eq!(f["outcome"], "refused", "{f}");
    let k = &f["kernel"];
    let reset = &k["resets_sent"][0];
    assert_eq!(
        (&reset["by"], &reset["origin"]),
        (&"server".into(), &"reply".into()),
        "the server host's TCP itself answered the SYN with the RST: {k}"
    );
    assert!(
        k["drops"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["reason"] == "NO_SOCKET" && d["what"] == "SYN")),
        "the kernel dropped the SYN for want of a socket: {k}"
    );
    let d = ran.finding("nothing_listening");
    let explanation = d["explanation"].as_str().unwrap_or_default();
    if kernel_names_reset_reasons() {
        assert_eq!(reset["reason"], "NO_SOCKET", "{k}");
        assert_eq!(d["evidence"]["reset_reason"], "NO_SOCKET", "{d}");
        assert!(
            explanation.starts_with(&format!(
                "The kernel answered with a RST: no socket for 127.0.0.1:{port} (NO_SOCKET)."
            )),
            "the finding says the kernel's word first: {d}"
        );
    }
    assert_eq!(d["evidence"]["origin"], "reply", "{d}");
    assert!(
        !ran.kinds().contains("rejected_by_firewall"),
        "no firewall was involved: {}",
        ran.out
    );
}

#[test]
fn a_tcp_reset_reject_is_the_firewall_never_nothing_listening() {
    const TEST: &str = "a_tcp_reset_reject_is_the_firewall_never_nothing_listening";
    if !ready(TEST, &["iptables"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = scenario_port();
    let p = port.to_string();
    // Nothing listens either: only the kernel's word tells this from a closed port.
    ns.run(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &p,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]);
    let sniffer = capture(&ns, port, &[]);
    let (cport, err) = connect_in(&ns, port);
    assert_eq!(
        err,
        Some(ErrorKind::ConnectionRefused),
        "test setup: the rule's RST"
    );
    let ran = Ran::of(sniffer);
    drop(ns);

    let f = ran.flow(cport);
    assert_eq!(f["outcome"], "refused", "{f}");
    let k = &f["kernel"];
    assert_eq!(
        k["resets_sent"],
        serde_json::json!([]),
        "netfilter's RST is not TCP's: {k}"
    );
    let drop = &k["drops"][0];
    assert_eq!(
        (&drop["reason"], &drop["what"], &drop["path"], &drop["dir"]),
        (
            &"NETFILTER_DROP".into(),
            &"SYN".into(),
            &"ingress".into(),
            &"c2s".into()
        ),
        "the rule dropped the client's SYN on arrival: {k}"
    );
    let d = ran.finding("rejected_by_firewall");
    let e = &d["evidence"];
    assert_eq!(e["drop_reason"], "NETFILTER_DROP", "{d}");
    assert_eq!(e["listener"], Value::Null, "nothing listens: {d}");
    let rule = e["rule"].as_str().unwrap_or_default();
    assert!(
        rule.contains(&format!("--dport {port}")) && rule.contains("--reject-with tcp-reset"),
        "the finding names the rule that sent the RST: {d}"
    );
    assert!(
        d["headline"]
            .as_str()
            .is_some_and(|h| h.contains("rejected by a firewall rule")),
        "{d}"
    );
    assert!(
        !ran.kinds().contains("nothing_listening"),
        "a REJECT rule's RST must never read as a closed port: {}",
        ran.out
    );
}

#[test]
fn an_so_linger_zero_close_names_the_process_and_the_kernels_reason() {
    const TEST: &str = "an_so_linger_zero_close_names_the_process_and_the_kernels_reason";
    if !ready(TEST, &[]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = scenario_port();
    let sniffer = capture(&ns, port, &[]);
    let (cport, read) = ns
        .on_thread(move || {
            let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let listener = std::net::TcpListener::bind(server).expect("listen");
            let (cport, client) = connect_from_known_port(server);
            let client = TcpStream::from(client.expect("connect to our own listener"));
            client
                .set_read_timeout(Some(IO_TIMEOUT))
                .expect("read timeout");
            let accepted = accept_within(&listener, IO_TIMEOUT);
            socket2::SockRef::from(&accepted)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER 0");
            drop(accepted); // an abortive close: the kernel sends a RST, not a FIN
            let read = (&client).read(&mut [0u8; 16]).map_err(|e| e.kind());
            (cport, read)
        })
        .join()
        .expect("scenario thread");
    assert_eq!(
        read,
        Err(ErrorKind::ConnectionReset),
        "test setup: the client is reset"
    );
    let ran = Ran::of(sniffer);
    drop(ns);

    let f = ran.flow(cport);
    assert_eq!(
        (&f["outcome"], &f["reset_by"]),
        (&"reset".into(), &"server".into()),
        "{f}"
    );
    let k = &f["kernel"];
    let reset = &k["resets_sent"][0];
    let me = std::process::id();
    assert_eq!(
        (&reset["by"], &reset["origin"], &reset["pid"]),
        (&"server".into(), &"socket".into(), &me.into()),
        "the server's own socket sent the RST as this process closed it: {k}"
    );
    let d = ran.finding("reset_by_server");
    let e = &d["evidence"];
    assert_eq!(
        (&e["origin"], &e["pid"]),
        (&"socket".into(), &me.into()),
        "{d}"
    );
    let headline = d["headline"].as_str().unwrap_or_default();
    assert!(
        headline.contains(&format!("(pid {me}) closed its socket")),
        "the finding names the process that closed: {d}"
    );
    if kernel_names_reset_reasons() {
        assert_eq!(reset["reason"], "TCP_STATE", "{k}");
        assert!(
            headline.contains("with SO_LINGER 0") && headline.ends_with("(TCP_STATE)"),
            "the finding says how it closed and the kernel's reason: {d}"
        );
    }
    let kinds = ran.kinds();
    assert!(
        !kinds.contains("nothing_listening") && !kinds.contains("rejected_by_firewall"),
        "an application's abort is neither a closed port nor a firewall: {kinds:?}"
    );
}

#[test]
fn a_listener_closed_with_connections_in_its_accept_queue_is_told_as_that_not_so_linger() {
    const TEST: &str =
        "a_listener_closed_with_connections_in_its_accept_queue_is_told_as_that_not_so_linger";
    if !ready(TEST, &[]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = scenario_port();
    let sniffer = capture(&ns, port, &[]);
    // Two clients connect and send a request; the server never accept()s them and closes
    // its listening socket (a server exiting or restarting): the kernel resets both.
    let (cports, reads) = ns
        .on_thread(move || {
            let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let listener = std::net::TcpListener::bind(server).expect("listen");
            let clients: Vec<(u16, TcpStream)> = (0..2)
                .map(|_| {
                    let (cport, c) = connect_from_known_port(server);
                    let mut c = TcpStream::from(c.expect("connect to our own listener"));
                    c.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
                    c.write_all(b"GET /").expect("send a request");
                    (cport, c)
                })
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            drop(listener);
            let reads: Vec<_> = clients
                .iter()
                .map(|(_, c)| (&*c).read(&mut [0u8; 16]).map_err(|e| e.kind()))
                .collect();
            (clients.iter().map(|(p, _)| *p).collect::<Vec<_>>(), reads)
        })
        .join()
        .expect("scenario thread");
    assert!(
        reads.iter().all(|r| *r == Err(ErrorKind::ConnectionReset)),
        "test setup: both clients are reset: {reads:?}"
    );
    let ran = Ran::of(sniffer);
    drop(ns);
    for cport in cports {
        let f = ran.flow(cport);
        assert_eq!(
            (&f["outcome"], &f["reset_by"]),
            (&"reset".into(), &"server".into()),
            "{f}"
        );
    }
    let d = ran.finding("reset_by_server");
    let me = std::process::id();
    assert_eq!(
        (&d["evidence"]["origin"], &d["evidence"]["pid"]),
        (&"listener_closed".into(), &me.into()),
        "{d}"
    );
    let headline = d["headline"].as_str().unwrap_or_default();
    assert!(
        headline.contains(&format!(
            "(pid {me}) closed its listening socket with them still waiting in its accept queue"
        )) && !headline.contains("SO_LINGER"),
        "the finding tells the listener's close, not an abortive close of accepted sockets: {d}"
    );
    assert!(
        d["next_step"]
            .as_str()
            .unwrap_or_default()
            .contains("gracefully"),
        "{d}"
    );
}

#[test]
fn icmp_host_unreachable_from_a_reject_in_front_of_a_listener_is_that_rule() {
    const TEST: &str = "icmp_host_unreachable_from_a_reject_in_front_of_a_listener_is_that_rule";
    if !ready(TEST, &["iptables"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = scenario_port();
    let p = port.to_string();
    ns.run(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &p,
        "-j",
        "REJECT",
        "--reject-with",
        "icmp-host-unreachable",
    ]);
    let listening = listen_in(&ns, port);
    let sniffer = capture(&ns, port, &[]);
    let (cport, err) = connect_in(&ns, port);
    assert_eq!(
        err,
        Some(ErrorKind::HostUnreachable),
        "test setup: the rule's ICMP"
    );
    let ran = Ran::of(sniffer);
    drop(listening);
    drop(ns);

    let f = ran.flow(cport);
    assert_eq!(
        (&f["outcome"], &f["icmp"], &f["icmp_from"]),
        (
            &"unreachable".into(),
            &"host_unreachable".into(),
            &"127.0.0.1".into()
        ),
        "{f}"
    );
    assert_eq!(f["kernel"]["drops"][0]["reason"], "NETFILTER_DROP", "{f}");
    let d = ran.finding("rejected_by_firewall");
    let e = &d["evidence"];
    assert_eq!(
        (&e["icmp"], &e["drop_reason"], &e["listener"]),
        (
            &"host_unreachable".into(),
            &"NETFILTER_DROP".into(),
            &format!("127.0.0.1:{port}").into()
        ),
        "{d}"
    );
    assert!(
        e["rule"].as_str().is_some_and(
            |r| r.contains(&format!("--dport {port}")) && r.contains("icmp-host-unreachable")
        ),
        "the finding names the rule: {d}"
    );
    assert!(
        d["explanation"]
            .as_str()
            .is_some_and(|x| x.contains("not a routing problem")),
        "{d}"
    );
    assert!(
        !ran.kinds().contains("network_unreachable"),
        "a REJECT rule on the server's own host is no routing problem: {}",
        ran.out
    );
}

/// A copy of the binary that another user can run, in a 0755 directory.
fn world_runnable_copy() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the directory");
    let exe = dir.path().join("portsniff");
    std::fs::copy(crate::support::bin(), &exe).expect("copy the binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, exe)
}

/// What every run without the witness must show: the reason once on stderr (and no raw
/// libbpf message), the summary's `kernel_events`, no `kernel` object on the flow, and
/// today's inference for a refused connection.
fn assert_fallback(ran: &Ran, port: u16, cport: u16, why_starts: &str) {
    let stderr = &ran.run.stderr;
    assert_eq!(
        stderr.matches("portsniff: no kernel events: ").count(),
        1,
        "the reason is said once on stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("portsniff: no kernel events: {why_starts}"))
            && stderr.contains("findings infer them from packets and /proc instead"),
        "stderr says why and what is lost: {stderr}"
    );
    assert!(
        !stderr.contains("libbpf"),
        "nothing of libbpf's own reaches stderr: {stderr}"
    );
    let events = &ran.summary()["kernel_events"];
    assert_eq!(events["enabled"], false, "{events}");
    assert!(
        events["why"]
            .as_str()
            .is_some_and(|w| w.starts_with(why_starts)),
        "the summary says why: {events}"
    );
    let f = ran.flow(cport);
    assert_eq!(f["kernel"], Value::Null, "{f}");
    assert_eq!(f["outcome"], "refused", "{f}");
    let d = ran.finding("nothing_listening");
    assert_eq!(
        d["explanation"],
        format!(
            "No socket listens on port {port} in any address family here, nor in another \
             network namespace."
        ),
        "the inference says what it said before the witness: {d}"
    );
}

#[test]
fn without_cap_bpf_the_reason_is_said_and_a_refusal_is_still_diagnosed() {
    const TEST: &str = "without_cap_bpf_the_reason_is_said_and_a_refusal_is_still_diagnosed";
    if !ready(TEST, &["setpriv"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = scenario_port();
    let (_dir, exe) = world_runnable_copy();
    let p = port.to_string();
    let setpriv = which("setpriv").expect("checked above");
    // The capture's capabilities, ambient for the unprivileged user, and nothing else.
    let mut cmd = ns.command(
        &setpriv,
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_raw,+net_admin",
            "--ambient-caps=+net_raw,+net_admin",
        ],
    );
    cmd.arg(&exe)
        .args(["-i", "lo", "--port", &p, "--json", "--duration", RUN_SECS])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("SUDO_UID");
    let mut sniffer = Sniffer::spawn(cmd, "setpriv … portsniff -i lo");
    sniffer.wait_for_banner();
    let (cport, err) = connect_in(&ns, port);
    assert_eq!(
        err,
        Some(ErrorKind::ConnectionRefused),
        "test setup: nothing listens"
    );
    let ran = Ran::of(sniffer);
    drop(ns);

    assert_eq!(
        ran.summary()["credentials"]["uid"],
        65534,
        "test setup: ran as nobody"
    );
    assert_fallback(&ran, port, cport, "not permitted: ");
    let why = ran.summary()["kernel_events"]["why"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("lacks CAP_BPF and CAP_PERFMON"),
        "names the capabilities missing: {why}"
    );
}

#[test]
fn with_no_kernel_events_the_reason_is_said_and_a_refusal_is_still_diagnosed() {
    const TEST: &str = "with_no_kernel_events_the_reason_is_said_and_a_refusal_is_still_diagnosed";
    if !ready(TEST, &[]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = scenario_port();
    let sniffer = capture(&ns, port, &["--no-kernel-events"]);
    let (cport, err) = connect_in(&ns, port);
    assert_eq!(
        err,
        Some(ErrorKind::ConnectionRefused),
        "test setup: nothing listens"
    );
    let ran = Ran::of(sniffer);
    drop(ns);
    assert_fallback(&ran, port, cport, "turned off with --no-kernel-events");
}

/// The ids of the BPF programs and links process `pid` holds, from its fds' fdinfo.
fn bpf_ids_of(pid: i32) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let (mut progs, mut links) = (BTreeSet::new(), BTreeSet::new());
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {dir}: {e}")) {
        let Ok(text) = std::fs::read_to_string(entry.expect("an fdinfo entry").path()) else {
            continue; // an fd closed meanwhile
        };
        for line in text.lines() {
            let id = |key: &str| {
                line.strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let Some(id) = id("prog_id:") {
                progs.insert(id);
            }
            if let Some(id) = id("link_id:") {
                links.insert(id);
            }
        }
    }
    (progs, links)
}

/// `bpftool KIND show id ID`: its output if that object exists, `None` once it is gone.
fn bpftool_show(bpftool: &Path, kind: &str, id: u64) -> Option<String> {
    let out = Command::new(bpftool)
        .args([kind, "show", "id", &id.to_string()])
        .output()
        .expect("run bpftool");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs portsniff in a namespace, finds the programs and links it attached, ends it with
/// `signal`, and checks that none of them outlives it.
fn no_bpf_left_after(test: &str, signal: i32) {
    if !ready(test, &["bpftool"]) {
        return;
    }
    let bpftool = which("bpftool").expect("checked above");
    let Some(ns) = Netns::create(test) else {
        return;
    };
    let port = scenario_port();
    let p = port.to_string();
    let mut sniffer = Sniffer::spawn(
        ns.portsniff(&["-i", "lo", "--port", &p, "--json", "--duration", "30"]),
        "ip netns exec NS portsniff -i lo",
    );
    sniffer.wait_for_banner();
    let pid = sniffer.pid();
    let (progs, links) = bpf_ids_of(pid);
    assert!(
        !progs.is_empty() && !links.is_empty(),
        "test setup: the witness is attached once the banner is out (programs {progs:?}, \
         links {links:?})"
    );
    for &id in &progs {
        let shown = bpftool_show(&bpftool, "prog", id).unwrap_or_default();
        assert!(
            shown.contains("name witness_"),
            "test setup: program {id} held by portsniff is one of the witness's: {shown}"
        );
    }
    // SAFETY: kill(2) on the child we spawned and have not reaped (the Sniffer owns it).
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "signal portsniff: {}",
        std::io::Error::last_os_error()
    );
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    drop(ns);
    assert_eq!(run.code(), Some(0), "a clean stop: {}", run.stderr);
    let left: Vec<String> = progs
        .iter()
        .filter_map(|&id| bpftool_show(&bpftool, "prog", id))
        .chain(
            links
                .iter()
                .filter_map(|&id| bpftool_show(&bpftool, "link", id)),
        )
        .collect();
    assert!(
        left.is_empty(),
        "portsniff's BPF programs or links outlived it: {left:?}"
    );
}

#[test]
fn ctrl_c_leaves_no_bpf_program_or_link_of_ours() {
    no_bpf_left_after("ctrl_c_leaves_no_bpf_program_or_link_of_ours", libc::SIGINT);
}

#[test]
fn sigterm_leaves_no_bpf_program_or_link_of_ours() {
    no_bpf_left_after(
        "sigterm_leaves_no_bpf_program_or_link_of_ours",
        libc::SIGTERM,
    );
}

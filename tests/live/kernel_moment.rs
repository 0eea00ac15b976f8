//! Facts at the moment of the event: a listener started after portsniff, just before a
//! refused connection, is already in the first finding printed; when a listener comes up
//! after a printed refusal an update says so, and the final diagnosis does not contradict
//! the live one without saying why; every finding line says whether it is final.
//!
//! Each scenario runs in a network namespace of its own, with a `python3` server whose
//! pid the findings must name (the kernel witness sees its listen() call).

use crate::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;

/// A `python3` server listening inside a namespace: started by the test, killed (by its
/// own pid) when dropped.
struct Server {
    child: Child,
    pid: i64,
}

impl Server {
    /// Listens on `host:port` (`::1` binds IPv6 only) and, with `accept_one`, accepts one
    /// connection and closes it. Returns once python3 says it listens.
    fn start(ns: &Netns, python: &Path, host: &str, port: u16, accept_one: bool) -> Server {
        let script = format!(
            r#"
import os, socket, sys
host, port = {host:?}, {port}
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family)
if family == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((host, port))
s.listen(16)
print(os.getpid(), flush=True)
if {accept}:
    s.settimeout(10)
    try:
        c, _ = s.accept()
        c.close()
    except OSError:
        pass
sys.stdin.read()
"#,
            accept = if accept_one { "True" } else { "False" },
        );
        let mut child = ns
            .command(python, &["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 in the namespace");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("test setup: python3 did not say it listens on {host}:{port} within 10 s")
            });
        let pid = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("test setup: python3 could not listen on {host}:{port}: {line:?}")
        });
        Server { child, pid }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// root, `python3` (and `iptables` when `firewall`), and a fresh namespace; `None` after
/// skipping (a failure under CI=true).
fn setup(test: &str, firewall: bool) -> Option<(Netns, PathBuf, u16)> {
    if !have_root(test) {
        return None;
    }
    let Some(python) = which("python3") else {
        skip(
            test,
            "needs python3 for a server whose pid the finding names",
        );
        return None;
    };
    if firewall && which("iptables").is_none() {
        skip(test, "needs iptables for a REJECT rule inside a namespace");
        return None;
    }
    let ns = Netns::create(test)?;
    // Any port works inside the fresh namespace; still a different one per test.
    let port = ReservedPort::on(Ipv4Addr::LOCALHOST.into())
        .expect("bind 127.0.0.1:0")
        .port();
    Some((ns, python, port))
}

/// A connect() to 127.0.0.1:`port` from inside the namespace: (client port, result).
fn connect_in(ns: &Netns, port: u16) -> (u16, std::io::Result<()>) {
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (client, res) = ns
        .on_thread(move || {
            let (client, res) = connect_from_known_port(server);
            (client, res.map(drop))
        })
        .join()
        .expect("client thread");
    (client, res)
}

fn sniff(ns: &Netns, port: u16) -> Sniffer {
    let port = port.to_string();
    let cmd = ns.portsniff(&["-i", "lo", "--port", &port, "--json"]);
    let mut sniffer = Sniffer::spawn(cmd, "ip netns exec NS portsniff -i lo --json");
    sniffer.wait_for_banner();
    sniffer
}

/// The finding lines (`"type":"finding"`) in order.
fn findings(lines: &[(Line, Value)]) -> Vec<&Value> {
    lines
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["type"] == "finding")
        .collect()
}

/// Whether the finding names process `pid`.
fn names(f: &Value, pid: i64) -> bool {
    f["processes"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["pid"].as_i64() == Some(pid)))
}

/// The witness must be attached for the process to be named at the moment: under CI a
/// machine without it fails the test instead of skipping.
fn witness_on(test: &str, lines: &[(Line, Value)], out: &str) -> bool {
    let s = summary(lines, out);
    if s["kernel_events"]["enabled"] == true {
        return true;
    }
    skip(
        test,
        &format!(
            "the kernel witness is not available here ({}): the listener's process cannot be \
             named at the moment",
            s["kernel_events"]["why"]
        ),
    );
    false
}

#[test]
fn live_a_listener_on_the_other_family_started_just_before_a_refusal_is_in_the_first_finding() {
    const TEST: &str =
        "live_a_listener_on_the_other_family_started_just_before_a_refusal_is_in_the_first_finding";
    let Some((ns, python, port)) = setup(TEST, false) else {
        return;
    };
    let sniffer = sniff(&ns, port);
    // Well under the refresher's second: its look at /proc predates this listener.
    let server = Server::start(&ns, &python, "::1", port, false);
    let (_, res) = connect_in(&ns, port);
    assert_eq!(
        res.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "test setup: 127.0.0.1 with a listener on [::1] only is refused"
    );
    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let pid = server.pid;
    drop(server);
    drop(ns);
    let lines = run.json();
    let out = run.stdout_text();
    if !witness_on(TEST, &lines, &out) {
        return;
    }
    let found = findings(&lines);
    let first = found
        .first()
        .unwrap_or_else(|| panic!("a refusal was printed with no finding; stdout:\n{out}"));
    assert_eq!(
        (&first["kind"], &first["final"]),
        (&Value::from("listener_other_family"), &Value::from(false)),
        "the server listened on [::1]:{port} a moment before the refusal: the first live finding \
         must say so, not rest on a look at /proc older than the listener: {first}\nstdout:\n{out}"
    );
    assert_eq!(
        first["evidence"]["listener"],
        format!("[::1]:{port}"),
        "{first}"
    );
    assert!(
        names(first, pid),
        "the first finding should name python3 (pid {pid}), the process that called listen(): \
         {first}"
    );
}

#[test]
fn live_a_listener_behind_a_reset_reject_started_just_before_the_client_is_in_the_first_finding() {
    const TEST: &str =
        "live_a_listener_behind_a_reset_reject_started_just_before_the_client_is_in_the_first_finding";
    let Some((ns, python, port)) = setup(TEST, true) else {
        return;
    };
    let port_s = port.to_string();
    ns.run(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &port_s,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]);
    let sniffer = sniff(&ns, port);
    let server = Server::start(&ns, &python, "127.0.0.1", port, false);
    let (_, res) = connect_in(&ns, port);
    assert_eq!(
        res.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "test setup: the REJECT rule answers the SYN with a RST"
    );
    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let pid = server.pid;
    drop(server);
    drop(ns);
    let lines = run.json();
    let out = run.stdout_text();
    if !witness_on(TEST, &lines, &out) {
        return;
    }
    let found = findings(&lines);
    let first = found
        .first()
        .unwrap_or_else(|| panic!("a refusal was printed with no finding; stdout:\n{out}"));
    assert_ne!(
        first["kind"], "nothing_listening",
        "python3 (pid {pid}) listened on 127.0.0.1:{port} before the client connected: the first \
         finding must not say nothing listens: {first}\nstdout:\n{out}"
    );
    // Whatever the finding's name (a REJECT is told apart from other resets elsewhere),
    // it says that a listener exists: as its evidence, or by naming its process.
    assert!(
        first["evidence"]["listener"] == format!("127.0.0.1:{port}") || names(first, pid),
        "the first finding should say that 127.0.0.1:{port} has a listener (python3, pid \
         {pid}): {first}\nstdout:\n{out}"
    );
}

#[test]
fn live_a_server_started_after_a_printed_refusal_is_an_update_and_the_end_says_what_changed() {
    const TEST: &str =
        "live_a_server_started_after_a_printed_refusal_is_an_update_and_the_end_says_what_changed";
    let Some((ns, python, port)) = setup(TEST, false) else {
        return;
    };
    let sniffer = sniff(&ns, port);
    let (_, refused) = connect_in(&ns, port);
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "test setup: nothing listens yet"
    );
    std::thread::sleep(SETTLE);
    let server = Server::start(&ns, &python, "127.0.0.1", port, true);
    let (_, ok) = connect_in(&ns, port);
    ok.expect("test setup: the server now accepts");
    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let pid = server.pid;
    drop(server);
    drop(ns);
    let lines = run.json();
    let out = run.stdout_text();
    if !witness_on(TEST, &lines, &out) {
        return;
    }
    let values: Vec<&Value> = lines.iter().map(|(_, v)| v).collect();
    let live_at = values
        .iter()
        .position(|v| v["type"] == "finding" && v["kind"] == "nothing_listening" && v["final"] == false)
        .unwrap_or_else(|| {
            panic!("the refusal before any server should be printed live as nothing_listening; stdout:\n{out}")
        });
    let listener = format!("127.0.0.1:{port}");
    let update_at = values
        .iter()
        .position(|v| {
            v["type"] == "update"
                && v["final"] == false
                && v["change"] == "listener_started"
                && v["listener"] == listener.as_str()
        })
        .unwrap_or_else(|| {
            panic!(
                "python3 started listening on {listener} after nothing_listening was printed: an \
                 update line should say so; stdout:\n{out}"
            )
        });
    let update = values[update_at];
    assert!(
        update_at > live_at,
        "the update follows the finding it updates; stdout:\n{out}"
    );
    assert_eq!(
        update["process"]["pid"], pid,
        "the update names the server: {update}"
    );
    assert_eq!(
        update["exact"], true,
        "the witness saw the listen() call: {update}"
    );
    assert_eq!(
        update["earlier_findings"],
        serde_json::json!(["nothing_listening"]),
        "{update}"
    );

    // The end: the refusal is still judged by its moment (no listener then, so not a
    // firewall), and what changed since is said; or, if the final diagnosis says
    // something else, a final update says why nothing_listening no longer holds.
    let finals: Vec<&&Value> = values
        .iter()
        .filter(|v| v["type"] == "finding" && v["final"] == true)
        .collect();
    assert!(
        !finals.iter().any(|f| f["kind"] == "rejected_by_firewall"),
        "the listener started after the refusal: no RST came despite it; stdout:\n{out}"
    );
    let kept = finals.iter().find(|f| f["kind"] == "nothing_listening");
    let superseded = values.iter().find(|v| {
        v["type"] == "update"
            && v["final"] == true
            && v["change"] == "superseded"
            && v["finding"] == "nothing_listening"
    });
    match (kept, superseded) {
        (Some(f), None) => {
            assert!(
            f["facts_changed"].as_array().is_some_and(|cs| cs.iter().any(|c| {
                c["change"] == "listener_started"
                    && c["listener"] == listener.as_str()
                    && c["process"]["pid"] == pid
            })),
            "the final nothing_listening must say that python3 (pid {pid}) listens on {listener} \
             since: {f}"
        )
        }
        (None, Some(s)) => assert!(
            s["facts_changed"]
                .as_array()
                .is_some_and(|cs| !cs.is_empty()),
            "the live finding the end dropped must come with why: {s}"
        ),
        _ => panic!(
            "the live nothing_listening must be either kept (with what changed) or superseded \
             (with why), once; stdout:\n{out}"
        ),
    }
}

#[test]
fn live_finding_lines_say_final_false_live_and_true_in_the_diagnosis() {
    const TEST: &str = "live_finding_lines_say_final_false_live_and_true_in_the_diagnosis";
    if !have_root(TEST) {
        return;
    }
    let reserved = ReservedPort::on(Ipv4Addr::LOCALHOST.into()).expect("bind 127.0.0.1:0");
    let mut sniffer = Sniffer::spawn(live_command(reserved.port(), &[]), "portsniff -i lo");
    sniffer.wait_for_banner();
    let (_, res) = connect_from_known_port(reserved.addr);
    assert!(res.is_err(), "test setup: nothing listens: refused");
    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    drop(reserved);
    let found = findings(&lines);
    let live: Vec<usize> = (0..found.len())
        .filter(|&i| found[i]["final"] == false)
        .collect();
    let last: Vec<usize> = (0..found.len())
        .filter(|&i| found[i]["final"] == true)
        .collect();
    assert_eq!(
        live.len() + last.len(),
        found.len(),
        "every finding line has \"final\": true or false; stdout:\n{out}"
    );
    assert!(
        !live.is_empty() && !last.is_empty(),
        "a refusal is printed live (final: false) and again in the diagnosis (final: true); \
         stdout:\n{out}"
    );
    assert!(
        live.iter().all(|l| last.iter().all(|f| l < f)),
        "live findings come before the final diagnosis; stdout:\n{out}"
    );
    assert_eq!(found[live[0]]["kind"], found[last[0]]["kind"], "{out}");
    summary(&lines, &out);
}

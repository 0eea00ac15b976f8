//! Facts at the moment of the event: a listener started after portsniff, just before a
//! refused connection, is already in the first finding printed; when a listener comes up
//! after a printed refusal an update says so, and the final diagnosis does not contradict
//! the live one without saying why; every finding line says whether it is final. A server
//! killed and started again (once, three times) is a restart (a loop) named with the
//! processes whose close() and listen() bounded each window.
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
# A server started again must bind past the TIME_WAIT its predecessor left.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    // The refusal came before the server listened and a connection succeeded after: the
    // end names the startup race, with the listen() that ended it.
    let race = finals
        .iter()
        .find(|f| f["kind"] == "startup_race")
        .unwrap_or_else(|| panic!("refused, then accepted once python3 listened: the final diagnosis should say startup_race; stdout:\n{out}"));
    let started = &race["evidence"]["listener_started"];
    assert_eq!(
        (&started["pid"], &started["process"], &started["exact"]),
        (
            &Value::from(pid),
            &Value::from("python3"),
            &Value::from(true)
        ),
        "the startup race names the process whose listen() ended it: {race}"
    );
    let why = race["explanation"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!(
            "python3 (pid {pid}) started listening on {listener} at "
        )),
        "{race}"
    );
    // How late the server was is said from that listen() call, not bounded by the
    // accepted connection's SYN.
    let headline = race["headline"].as_str().unwrap_or_default();
    assert!(
        headline.contains("refused: the server listened ")
            && headline.contains(" (its listen() call)")
            && !headline.contains("up to"),
        "{race}"
    );
    let window = &race["evidence"]["windows"][0];
    assert!(
        window["end"].as_f64() <= started["at"].as_f64().map(|t| t + 0.002)
            && started["at"].as_f64() <= window["reopened"].as_f64().map(|t| t + 0.002),
        "python3 listened between the refusal and the accepted connection: {race}"
    );
}

#[test]
fn live_a_startup_race_is_printed_when_the_server_accepts_not_at_the_end() {
    const TEST: &str = "live_a_startup_race_is_printed_when_the_server_accepts_not_at_the_end";
    let Some((ns, python, port)) = setup(TEST, false) else {
        return;
    };
    let mut sniffer = sniff(&ns, port);
    for _ in 0..2 {
        let (_, refused) = connect_in(&ns, port);
        assert_eq!(
            refused.map_err(|e| e.kind()),
            Err(ErrorKind::ConnectionRefused),
            "test setup: nothing listens yet"
        );
    }
    assert!(
        sniffer.wait_for_stdout("\"nothing_listening\"", EXIT_TIMEOUT),
        "the refusals should be printed live first"
    );
    // The server listens and never accepts: the client's connection stays open in its
    // accept queue, so no final record comes before the end; its SYN-ACK is the news.
    let server = Server::start(&ns, &python, "127.0.0.1", port, false);
    let (_, ok) = connect_in(&ns, port);
    ok.expect("test setup: the server now completes handshakes");
    let connected = std::time::SystemTime::now();
    // Bounded by the design: the next poll (100 ms) after the SYN-ACK; generous for a
    // loaded machine.
    let live = sniffer.wait_for_stdout("\"startup_race\"", Duration::from_secs(5));
    let printed = std::time::SystemTime::now();
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
    assert!(
        live,
        "the server answered after the printed refusals: startup_race should be printed before \
         portsniff is stopped; stdout:\n{out}"
    );
    let (line, race) = lines
        .iter()
        .find(|(_, v)| v["type"] == "finding" && v["kind"] == "startup_race")
        .expect("a startup_race line");
    assert_eq!(race["final"], false, "printed live: {race}");
    assert!(
        line.arrived <= printed,
        "arrived {:?} after the connection",
        line.arrived.duration_since(connected)
    );
    assert_eq!(race["evidence"]["refused"], 2, "{race}");
    let started = &race["evidence"]["listener_started"];
    assert_eq!(
        (&started["pid"], &started["process"], &started["exact"]),
        (
            &Value::from(pid),
            &Value::from("python3"),
            &Value::from(true)
        ),
        "the live startup race names the process whose listen() ended it: {race}"
    );
    let listener = format!("127.0.0.1:{port}");
    let why = race["explanation"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!(
            "python3 (pid {pid}) started listening on {listener} at "
        )),
        "{race}"
    );
    // Said once, and the end agrees: the startup race again, nothing_listening superseded
    // by it (the refusals it counted were the race's).
    let races = findings(&lines)
        .iter()
        .filter(|f| f["kind"] == "startup_race")
        .count();
    assert_eq!(races, 2, "once live, once final; stdout:\n{out}");
    let superseded = lines.iter().map(|(_, v)| v).find(|v| {
        v["type"] == "update" && v["change"] == "superseded" && v["finding"] == "nothing_listening"
    });
    assert_eq!(
        superseded.map(|s| &s["superseded_by"]),
        Some(&Value::from("startup_race")),
        "stdout:\n{out}"
    );
}

/// A run of restarts: each server's pid in order, the JSON lines, stdout, the port.
struct Restarts {
    pids: Vec<i64>,
    lines: Vec<(Line, Value)>,
    out: String,
    port: u16,
}

/// `cycles` times: the server is killed (SIGKILL, by its pid), one connection is refused,
/// a new server starts and accepts one.
fn restarts(test: &str, cycles: usize) -> Option<Restarts> {
    let (ns, python, port) = setup(test, false)?;
    let sniffer = sniff(&ns, port);
    let mut server = Server::start(&ns, &python, "127.0.0.1", port, true);
    let mut pids = vec![server.pid];
    connect_in(&ns, port)
        .1
        .expect("test setup: the first server accepts");
    for _ in 0..cycles {
        std::thread::sleep(SETTLE);
        drop(server);
        let (_, refused) = connect_in(&ns, port);
        assert_eq!(
            refused.map_err(|e| e.kind()),
            Err(ErrorKind::ConnectionRefused),
            "test setup: the server was killed"
        );
        std::thread::sleep(SETTLE);
        server = Server::start(&ns, &python, "127.0.0.1", port, true);
        pids.push(server.pid);
        connect_in(&ns, port)
            .1
            .expect("test setup: the new server accepts");
    }
    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    drop(server);
    drop(ns);
    let lines = run.json();
    let out = run.stdout_text();
    witness_on(test, &lines, &out).then_some(Restarts {
        pids,
        lines,
        out,
        port,
    })
}

fn final_finding<'a>(lines: &'a [(Line, Value)], kind: &str, out: &str) -> &'a Value {
    lines
        .iter()
        .map(|(_, v)| v)
        .find(|v| v["type"] == "finding" && v["final"] == true && v["kind"] == kind)
        .unwrap_or_else(|| panic!("the final diagnosis should say {kind}; stdout:\n{out}"))
}

#[test]
fn live_a_server_killed_and_started_again_is_a_restart_naming_both_processes_and_the_gap() {
    const TEST: &str =
        "live_a_server_killed_and_started_again_is_a_restart_naming_both_processes_and_the_gap";
    let Some(Restarts {
        pids,
        lines,
        out,
        port,
    }) = restarts(TEST, 1)
    else {
        return;
    };
    let f = final_finding(&lines, "server_restarted", &out);
    let w = &f["evidence"]["windows"];
    assert_eq!(w.as_array().map(Vec::len), Some(1), "{f}");
    assert_eq!(
        (
            &w[0]["attempts"],
            &w[0]["accepted_before"],
            &w[0]["accepted_after"]
        ),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "one refusal between two accepted connections: {f}"
    );
    let started = &f["evidence"]["listener_started"];
    let stopped = &f["evidence"]["predecessor_stopped"];
    assert_eq!(
        (&started["pid"], &started["process"]),
        (&Value::from(pids[1]), &Value::from("python3")),
        "{f}"
    );
    assert_eq!(started["endpoint"], format!("127.0.0.1:{port}"), "{f}");
    assert_eq!(
        stopped["pid"], pids[0],
        "the predecessor is the killed server: {f}"
    );
    // Killed, a refusal, then the new server: at least two SETTLEs apart, and not seconds
    // (a loaded machine still starts python3 within a few).
    let gap = started["at"].as_f64().unwrap_or(0.0) - stopped["at"].as_f64().unwrap_or(f64::MAX);
    assert!(
        (SETTLE.as_secs_f64()..10.0).contains(&gap),
        "the listener was gone between the kill and the new listen(): {f}"
    );
    let why = f["explanation"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!(
            "python3 (pid {}) started listening on 127.0.0.1:{port} at ",
            pids[1]
        )) && why.contains("after its predecessor"),
        "the explanation says who listened again and how long after: {f}"
    );
    assert!(
        !lines.iter().any(|(_, v)| v["type"] == "finding"
            && v["final"] == true
            && v["kind"] == "nothing_listening"),
        "the server came back: not nothing_listening at the end; stdout:\n{out}"
    );
}

#[test]
fn live_a_server_killed_and_started_again_three_times_is_a_restart_loop() {
    const TEST: &str = "live_a_server_killed_and_started_again_three_times_is_a_restart_loop";
    let Some(Restarts {
        pids, lines, out, ..
    }) = restarts(TEST, 3)
    else {
        return;
    };
    let f = final_finding(&lines, "restart_loop", &out);
    assert_eq!(
        f["evidence"]["windows"].as_array().map(Vec::len),
        Some(3),
        "{f}"
    );
    assert_eq!(f["evidence"]["refused"], 3, "{f}");
    let period = f["evidence"]["period_us"].as_u64().unwrap_or(0);
    assert!(
        (2 * SETTLE.as_micros() as u64..20_000_000).contains(&period),
        "one window per kill, each at least two SETTLEs apart: {f}"
    );
    assert_eq!(
        f["evidence"]["listener_started"]["pid"], pids[3],
        "the last window ended when the fourth server listened: {f}"
    );
    assert!(
        f["headline"]
            .as_str()
            .unwrap_or_default()
            .contains("3 windows"),
        "{f}"
    );
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

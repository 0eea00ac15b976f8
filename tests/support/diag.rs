//! Helpers for the diagnosis tests (`tests/diagnose.rs`): listener and client processes
//! started inside a network namespace (so their PIDs are known and own the sockets), a
//! portsniff capture inside the namespace, and a [`Report`] that reads portsniff's flow,
//! finding and summary lines and asserts on them with the whole output in every message.
//!
//! Builds on [`super::live`] (namespace guard, `Sniffer`, gates).

use super::bin;
use super::live::{
    assert_no_capture_loss, client_port, connect_from_known_port, flows, have_root, skip, summary,
    which, Finished, Line, Netns, Sniffer, EXIT_TIMEOUT,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Watched ports come from here up: above the ephemeral range (32768–60999), so no
/// client in a namespace is ever given one as its own port.
const FIRST_PORT: u16 = 61100;
static NEXT_PORT: AtomicU16 = AtomicU16::new(FIRST_PORT);

/// A port for one test: distinct from every other test's in this process, and with no
/// listener on it in any network namespace of the machine. portsniff looks for listeners
/// in every namespace, so a listener elsewhere on the same port (another test's, running
/// in parallel) would rightly change its diagnosis.
pub fn fresh_port() -> u16 {
    for _ in 0..1000 {
        let port = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        if listeners_anywhere(port).is_empty() {
            return port;
        }
    }
    panic!("test setup: no port from {FIRST_PORT} up is free of listeners");
}

/// `(pid, address)` of every LISTEN socket on `port` in any network namespace that some
/// process is in (one reader process per namespace).
pub fn listeners_anywhere(port: u16) -> Vec<(u32, SocketAddr)> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if !seen.insert(ns) {
            continue;
        }
        found.extend(
            tcp_sockets_of(pid)
                .into_iter()
                .filter(|s| s.state == TCP_LISTEN && s.local.port() == port)
                .map(|s| (pid, s.local)),
        );
    }
    found
}

/// How long a helper process may take to start and say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on a helper process's life, in seconds, in case the test process itself is
/// killed before its drop guards run.
const HELPER_LIFETIME_SECS: &str = "60";
/// Marker in the command line of every listener process the tests start.
pub const LISTENER_MARK: &str = "psd-listener";
/// Marker in the command line of every client process the tests start.
pub const CLIENT_MARK: &str = "psd-client";

/// The finding kinds portsniff may print.
pub const KINDS: &[&str] = &[
    "nothing_listening",
    "listener_other_family",
    "listener_other_address",
    "listener_other_namespace",
    "silently_dropped",
    "accept_queue_full",
    "rejected_by_firewall",
    "reset_by_server",
    "reset_by_client",
    "time_wait_reuse",
    "no_traffic",
];
const SEVERITIES: &[&str] = &["error", "warning", "info"];
const ROLES: &[&str] = &["listener", "client", "holder"];

/// Root (to capture and create namespaces) and every tool in `tools` on `PATH`; otherwise
/// skips with a printed reason (or panics under `CI=true`, like `tests/live.rs`).
pub fn prerequisites(test: &str, tools: &[&str]) -> bool {
    if !have_root(test) {
        return false;
    }
    for tool in tools {
        if which(tool).is_none() {
            skip(
                test,
                &format!("needs `{tool}` on PATH to set up the scenario"),
            );
            return false;
        }
    }
    true
}

pub fn v4(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(ip), port))
}

/// `/proc/PID/comm` of a process (empty if it is gone).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// TCP states as `/proc/net/tcp` numbers them.
pub const TCP_SYN_SENT: u8 = 0x02;
pub const TCP_LISTEN: u8 = 0x0A;

/// One line of `/proc/PID/net/tcp` or `tcp6`.
#[derive(Clone, Debug)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    /// For a listener: the connections waiting in its accept queue (`sk_ack_backlog`).
    pub rx_queue: u64,
    pub inode: u64,
}

/// `0100007F:F23F` (IPv4) or `00000000000000000000000001000000:F23F` (IPv6): each 32-bit
/// word is printed in host byte order.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The TCP sockets of `pid`'s network namespace (`/proc/PID/net/tcp` and `tcp6`).
pub fn tcp_sockets_of(pid: u32) -> Vec<TcpSocket> {
    let mut out = Vec::new();
    for file in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let parsed = (|| {
                Some(TcpSocket {
                    local: parse_proc_addr(f[1])?,
                    remote: parse_proc_addr(f[2])?,
                    state: u8::from_str_radix(f[3], 16).ok()?,
                    rx_queue: u64::from_str_radix(f[4].split_once(':')?.1, 16).ok()?,
                    inode: f[9].parse().ok()?,
                })
            })();
            out.extend(parsed);
        }
    }
    out
}

/// The socket inodes `pid` holds open (`/proc/PID/fd/* -> socket:[INODE]`).
pub fn socket_inodes_of(pid: u32) -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Test setup check: `pid` owns (has an fd on) a TCP socket bound to `local` in `state`;
/// returns it. This is the ground truth portsniff's process attribution must find.
pub fn owned_socket(pid: u32, local: SocketAddr, state: u8) -> TcpSocket {
    let sockets = tcp_sockets_of(pid);
    let inodes = socket_inodes_of(pid);
    sockets
        .iter()
        .find(|s| s.local == local && s.state == state && inodes.contains(&s.inode))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "test setup: process {pid} should own a TCP socket on {local} in state \
                 {state:#04x}; its namespace has {sockets:?} and it holds socket inodes \
                 {inodes:?}"
            )
        })
}

/// A helper process (python listener or client) started by the test inside a namespace.
/// Its stdout lines are read as they come; it is killed by its PID (SIGKILL) on drop.
pub struct Proc {
    what: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(mut cmd: Command, what: &str) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("test setup: could not start {what} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let buf = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
                b.push_str(&line);
                b.push('\n');
            }
        });
        Proc {
            what: what.to_string(),
            child,
            lines,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (at most `timeout`) for a stdout line starting with `prefix` and returns it;
    /// panics with the process's stderr if it exits or stays silent.
    pub fn expect_line(&self, prefix: &str, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) if line.starts_with(prefix) => line,
            Ok(other) => panic!(
                "test setup: {} printed {other:?} where {prefix:?} was expected; stderr:\n{}",
                self.what,
                self.stderr()
            ),
            Err(RecvTimeoutError::Timeout) => panic!(
                "test setup: {} did not print {prefix:?} within {timeout:?}; stderr:\n{}",
                self.what,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                // Give the stderr reader a moment to collect the traceback.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "test setup: {} exited before printing {prefix:?}; stderr:\n{}",
                    self.what,
                    self.stderr()
                )
            }
        }
    }

    /// Whether the process is still running (not exited, not reaped).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `python3 -c SCRIPT args…` inside `ns`. `ip netns exec` execs the program (no
/// fork), so the child's PID is python's own; checked through `/proc/PID/comm`. The script
/// travels in the environment, so the command line portsniff prints for the process (in
/// findings, and so in the README recipes) is one short line.
fn spawn_python(ns: &Netns, script: &str, args: &[&str], what: &str) -> Proc {
    let python = which("python3").expect("python3 on PATH (checked by prerequisites)");
    let mut argv = vec!["-c", "import os; exec(os.environ['PSD_SCRIPT'])"];
    argv.extend_from_slice(args);
    let mut cmd = ns.command(&python, &argv);
    cmd.env("PSD_SCRIPT", script);
    Proc::spawn(cmd, what)
}

fn assert_is_python(p: &Proc) {
    let name = comm(p.pid());
    assert!(
        name.starts_with("python3"),
        "test setup: {} should be PID {} itself (ip netns exec execs without forking), but \
         /proc/{}/comm is {name:?}",
        p.what,
        p.pid(),
        p.pid()
    );
}

/// Binds `addr` (IPV6_V6ONLY as asked for an IPv6 address), listens with `backlog`, says
/// "listening", then never accepts and sleeps until killed (bounded).
const LISTENER_PY: &str = r#"
import socket, sys, time
host, port, backlog, v6only, life = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", float(sys.argv[5])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
s.bind((host, port))
s.listen(backlog)
print("listening", flush=True)
time.sleep(life)
"#;

/// A listener process inside `ns` on `addr` that never calls accept(). Returns once it
/// listens.
pub fn spawn_listener(ns: &Netns, addr: SocketAddr, backlog: u32, v6only: bool) -> Proc {
    let host = addr.ip().to_string();
    let port = addr.port().to_string();
    let backlog = backlog.to_string();
    let what = format!("listener process on {addr} in namespace {}", ns.name);
    let p = spawn_python(
        ns,
        LISTENER_PY,
        &[
            &host,
            &port,
            &backlog,
            if v6only { "1" } else { "0" },
            HELPER_LIFETIME_SECS,
            LISTENER_MARK,
        ],
        &what,
    );
    p.expect_line("listening", READY_TIMEOUT);
    assert_is_python(&p);
    owned_socket(p.pid(), addr, TCP_LISTEN);
    p
}

/// Binds an ephemeral port on 127.0.0.1, prints it, then connects with a timeout and
/// prints how that ended.
const CLIENT_PY: &str = r#"
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print("bound %d" % s.getsockname()[1], flush=True)
s.settimeout(timeout)
try:
    s.connect((host, port))
    print("connected", flush=True)
except socket.timeout:
    print("timeout", flush=True)
except OSError as e:
    print("error %s" % e, flush=True)
"#;

/// A client process inside `ns` that connects to `server` and stays in connect() up to
/// `timeout_secs`. Returns the process and its client port once it has bound.
pub fn spawn_connecting_client(ns: &Netns, server: SocketAddr, timeout_secs: u32) -> (Proc, u16) {
    let what = format!(
        "client process connecting to {server} in namespace {}",
        ns.name
    );
    let p = spawn_python(
        ns,
        CLIENT_PY,
        &[
            &server.ip().to_string(),
            &server.port().to_string(),
            &timeout_secs.to_string(),
            CLIENT_MARK,
        ],
        &what,
    );
    let line = p.expect_line("bound ", READY_TIMEOUT);
    let port = line["bound ".len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("test setup: {what} printed {line:?}: {e}"));
    assert_is_python(&p);
    (p, port)
}

/// Connects from a thread inside `ns` to `server`, where the connection must be refused
/// (ECONNREFUSED). Returns the client port.
pub fn refused_client(ns: &Netns, server: SocketAddr) -> u16 {
    let (port, res) = ns
        .on_thread(move || {
            let (port, res) = connect_from_known_port(server);
            (port, res.map(drop))
        })
        .join()
        .expect("client thread");
    match res {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => port,
        other => panic!(
            "test setup: connect to {server} in namespace {} should fail with ECONNREFUSED, \
             got {other:?}",
            ns.name
        ),
    }
}

/// The namespace's `TcpExt: ListenOverflows` counter (`/proc/net/netstat` as seen from a
/// thread inside it).
pub fn listen_overflows(ns: &Netns) -> u64 {
    let text = ns
        .on_thread(|| std::fs::read_to_string("/proc/thread-self/net/netstat"))
        .join()
        .expect("netstat reader thread")
        .expect("read /proc/thread-self/net/netstat inside the namespace");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    assert_eq!(
        lines.len(),
        2,
        "test setup: /proc/net/netstat should have a TcpExt header and value line:\n{text}"
    );
    let names = lines[0].split_whitespace();
    let values = lines[1].split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("test setup: no ListenOverflows in /proc/net/netstat:\n{text}"))
}

/// A portsniff capture running inside a namespace with `--duration`; with
/// [`Capture::with_text`], a second one beside it writing the text report for a README
/// recipe.
pub struct Capture {
    sniffer: Sniffer,
    limit: Duration,
    /// The arguments after `portsniff`, without `--json`.
    text_args: Vec<String>,
    text: Option<Sniffer>,
}

/// Starts `ip netns exec NS portsniff -i lo --port PORT --json --duration SECS EXTRA…` and
/// waits for its "listening on" banner.
pub fn start_capture(ns: &Netns, port: u16, duration_secs: u32, extra: &[&str]) -> Capture {
    let port = port.to_string();
    let duration = duration_secs.to_string();
    let mut args = vec![
        "-i",
        "lo",
        "--port",
        &port,
        "--json",
        "--duration",
        &duration,
    ];
    args.extend_from_slice(extra);
    let cmd = ns.command(Path::new(bin()), &args);
    let mut sniffer = Sniffer::spawn(
        cmd,
        &format!("ip netns exec {} portsniff {}", ns.name, args.join(" ")),
    );
    sniffer.wait_for_banner();
    Capture {
        sniffer,
        limit: Duration::from_secs(duration_secs.into()) + EXIT_TIMEOUT,
        text_args: args
            .iter()
            .filter(|a| **a != "--json")
            .map(|a| a.to_string())
            .collect(),
        text: None,
    }
}

impl Capture {
    /// Also runs the same capture in text (no colour) beside the JSON one, started before
    /// the scenario's traffic: its output is what a README recipe shows.
    pub fn with_text(mut self, ns: &Netns) -> Capture {
        let mut args: Vec<&str> = self.text_args.iter().map(String::as_str).collect();
        args.extend(["--color", "never"]);
        let cmd = ns.command(Path::new(bin()), &args);
        let mut text = Sniffer::spawn(
            cmd,
            &format!("ip netns exec {} portsniff {}", ns.name, args.join(" ")),
        );
        text.wait_for_banner();
        self.text = Some(text);
        self
    }

    /// Waits for portsniff to stop by itself at the end of `--duration` and reads its output.
    pub fn finish(self) -> Report {
        let run = self.sniffer.wait_exit(self.limit);
        let lines = run.json();
        let out = run.stdout_text();
        let text = self.text.map(|t| Recipe {
            command: format!("portsniff {}", self.text_args.join(" ")),
            output: t.wait_exit(self.limit).stdout_text(),
        });
        let report = Report {
            run,
            lines,
            out,
            text,
        };
        assert_no_capture_loss(report.summary(), &report.context());
        report
    }
}

/// The text twin of a capture: the command (as a user would type it, without the
/// namespace) and what it printed.
pub struct Recipe {
    pub command: String,
    pub output: String,
}

/// What portsniff printed, with assertions whose messages carry all of it.
pub struct Report {
    pub run: Finished,
    pub lines: Vec<(Line, Value)>,
    pub out: String,
    /// With [`Capture::with_text`]: the text report of the same traffic.
    pub text: Option<Recipe>,
}

impl Report {
    /// portsniff's whole stdout and stderr, for assertion messages.
    pub fn context(&self) -> String {
        format!(
            "portsniff exited with {:?}\n--- portsniff stdout ---\n{}\n--- portsniff stderr ---\n{}",
            self.run.status, self.out, self.run.stderr
        )
    }

    /// The one summary line, which must be the last line.
    pub fn summary(&self) -> &Value {
        summary(&self.lines, &self.context())
    }

    /// Every flow record (pending notices and final records).
    pub fn flows(&self) -> Vec<&Value> {
        flows(&self.lines).into_iter().map(|(_, v)| v).collect()
    }

    /// The final flow records.
    pub fn finals(&self) -> Vec<&Value> {
        self.flows()
            .into_iter()
            .filter(|v| v["final"] == true)
            .collect()
    }

    /// Every flow record (pending and final) of the client on `port`.
    pub fn flows_from(&self, port: u16) -> Vec<&Value> {
        self.flows()
            .into_iter()
            .filter(|v| client_port(v) == Some(port))
            .collect()
    }

    /// The final records of the client on `port`, in order.
    pub fn finals_from(&self, port: u16) -> Vec<&Value> {
        self.finals()
            .into_iter()
            .filter(|v| client_port(v) == Some(port))
            .collect()
    }

    /// The one final record of the client on `port`.
    pub fn one_final_from(&self, port: u16, what: &str) -> &Value {
        let found = self.finals_from(port);
        assert_eq!(
            found.len(),
            1,
            "{what}: expected exactly one final flow record for client port {port}, portsniff \
             printed {}\n{}",
            found.len(),
            self.context()
        );
        found[0]
    }

    /// Asserts the final outcome of the client on `port`.
    pub fn assert_outcome(&self, port: u16, outcome: &str, what: &str) -> &Value {
        let f = self.one_final_from(port, what);
        assert_eq!(
            f["outcome"],
            outcome,
            "{what}: the connection from client port {port} should end {outcome:?}, portsniff \
             said {}: {f}\n{}",
            f["outcome"],
            self.context()
        );
        f
    }

    pub fn assert_exit(&self, code: i32, why: &str) {
        assert_eq!(
            self.run.code(),
            Some(code),
            "{why}, so portsniff should exit with status {code}\n{}",
            self.context()
        );
    }

    /// Every finding line, in output order, each checked against the schema.
    pub fn finding_lines(&self) -> Vec<&Value> {
        let found: Vec<&Value> = self
            .lines
            .iter()
            .map(|(_, v)| v)
            .filter(|v| v["type"] == "finding")
            .collect();
        for f in &found {
            self.check_shape(f);
        }
        found
    }

    /// The findings, one per kind (its last occurrence: a live finding may be printed early
    /// and again in the final list), ranked as portsniff ranked them (the order of those
    /// last occurrences, which is the order of the final list).
    pub fn findings(&self) -> Vec<&Value> {
        let all = self.finding_lines();
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, f) in all.iter().enumerate() {
            last.insert(f["kind"].as_str().unwrap_or(""), i);
        }
        let mut idx: Vec<usize> = last.into_values().collect();
        idx.sort_unstable();
        idx.into_iter().map(|i| all[i]).collect()
    }

    pub fn kinds(&self) -> Vec<String> {
        self.findings()
            .iter()
            .map(|f| f["kind"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// The finding of `kind`; panics (with every finding and the whole output) if absent.
    pub fn finding(&self, kind: &str) -> &Value {
        self.findings()
            .into_iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| {
                panic!(
                    "portsniff should report a finding of kind {kind:?}; it reported {:?}\n{}",
                    self.kinds(),
                    self.context()
                )
            })
    }

    /// `kind` must be the top-ranked (most likely) finding.
    pub fn assert_top(&self, kind: &str) {
        let kinds = self.kinds();
        assert_eq!(
            kinds.first().map(String::as_str),
            Some(kind),
            "the most likely cause here is {kind:?}, so it should be ranked first; portsniff \
             ranked {kinds:?}\n{}",
            self.context()
        );
    }

    /// `kind` must not be reported at all (it would be a wrong diagnosis here).
    pub fn assert_absent(&self, kind: &str, why: &str) {
        let kinds = self.kinds();
        assert!(
            !kinds.iter().any(|k| k == kind),
            "portsniff reported {kind:?}, which is wrong here: {why}. Findings: {kinds:?}\n{}",
            self.context()
        );
    }

    /// If `lower` is reported at all, it must rank below `higher`.
    pub fn assert_ranked_above(&self, higher: &str, lower: &str) {
        let kinds = self.kinds();
        let h = kinds.iter().position(|k| k == higher);
        let l = kinds.iter().position(|k| k == lower);
        if let Some(l) = l {
            assert!(
                h.is_some_and(|h| h < l),
                "{higher:?} is the more likely cause, so it should rank above {lower:?}; \
                 portsniff ranked {kinds:?}\n{}",
                self.context()
            );
        }
    }

    pub fn assert_severity(&self, f: &Value, allowed: &[&str]) {
        let sev = f["severity"].as_str().unwrap_or("");
        assert!(
            allowed.contains(&sev),
            "the {} finding should have severity {}, it has {}: {f}\n{}",
            f["kind"],
            allowed.join(" or "),
            f["severity"],
            self.context()
        );
    }

    /// `evidence.KEY` as an unsigned integer; panics if missing or not one.
    pub fn evidence_u64(&self, f: &Value, key: &str) -> u64 {
        f["evidence"][key].as_u64().unwrap_or_else(|| {
            panic!(
                "the {} finding should carry evidence.{key} as a non-negative integer, it has \
                 {}: {f}\n{}",
                f["kind"],
                f["evidence"][key],
                self.context()
            )
        })
    }

    /// `evidence.KEY` as a string; panics if missing or not one.
    pub fn evidence_str<'a>(&self, f: &'a Value, key: &str) -> &'a str {
        f["evidence"][key].as_str().unwrap_or_else(|| {
            panic!(
                "the {} finding should carry evidence.{key} as a string, it has {}: {f}\n{}",
                f["kind"],
                f["evidence"][key],
                self.context()
            )
        })
    }

    /// The finding names process `pid` (started by the test with `marker` in its command
    /// line) in `role`.
    pub fn assert_names_process(&self, f: &Value, pid: u32, role: &str, marker: &str) {
        let procs = f["processes"].as_array().cloned().unwrap_or_default();
        let p = procs
            .iter()
            .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
            .unwrap_or_else(|| {
                panic!(
                    "the {} finding should name process {pid} (the {role} the test started), \
                     its processes are {}: {f}\n{}",
                    f["kind"],
                    f["processes"],
                    self.context()
                )
            });
        assert_eq!(
            p["role"],
            role,
            "the {} finding should give process {pid} the role {role:?}: {p}\n{}",
            f["kind"],
            self.context()
        );
        assert!(
            p["name"].as_str().is_some_and(|n| n.starts_with("python3")),
            "process {pid} is a python3 process, the {} finding names it {}: {p}\n{}",
            f["kind"],
            p["name"],
            self.context()
        );
        assert!(
            p["cmdline"].as_str().is_some_and(|c| c.contains(marker)),
            "process {pid}'s command line contains {marker:?}, the {} finding shows {}: {p}\n{}",
            f["kind"],
            p["cmdline"],
            self.context()
        );
    }

    /// Checks one finding line against the schema in the feature's description.
    fn check_shape(&self, f: &Value) {
        let ctx = || format!("finding line: {f}\n{}", self.context());
        let kind = f["kind"].as_str().unwrap_or("");
        assert!(
            KINDS.contains(&kind),
            "a finding has an unknown kind {}; known kinds are {KINDS:?}\n{}",
            f["kind"],
            ctx()
        );
        let sev = f["severity"].as_str().unwrap_or("");
        assert!(
            SEVERITIES.contains(&sev),
            "a finding's severity must be one of {SEVERITIES:?}, it is {}\n{}",
            f["severity"],
            ctx()
        );
        for key in ["headline", "explanation", "next_step"] {
            assert!(
                f[key].as_str().is_some_and(|s| !s.trim().is_empty()),
                "a finding must carry a non-empty string {key:?}, it has {}\n{}",
                f[key],
                ctx()
            );
        }
        assert!(
            f["evidence"].is_object(),
            "a finding's evidence must be an object, it is {}\n{}",
            f["evidence"],
            ctx()
        );
        let procs = f["processes"].as_array().unwrap_or_else(|| {
            panic!(
                "a finding's processes must be an array, it is {}\n{}",
                f["processes"],
                ctx()
            )
        });
        for p in procs {
            assert!(
                p["pid"].as_u64().is_some_and(|pid| pid > 0)
                    && p["name"].is_string()
                    && p["cmdline"].is_string()
                    && p["user"].is_string()
                    && ROLES.contains(&p["role"].as_str().unwrap_or("")),
                "each process must have pid (positive integer), name, cmdline, user (strings) \
                 and role (one of {ROLES:?}); got {p}\n{}",
                ctx()
            );
        }
    }
}

/// README recipes are rewritten by several tests running at once: one at a time.
static README_LOCK: Mutex<()> = Mutex::new(());

/// Masks what changes from run to run in a recipe's text, so the README block (a real
/// run's output) can be compared with this run's. Masked, in this order:
/// - the watched port (each test gets a fresh one): `<port>`;
/// - wall-clock times `<time>` and durations (`13µs`, `1.02s`) `<duration>`;
/// - client ports after an address: `<client port>`;
/// - process ids `pid <pid>`, namespace names `<netns>`, the path of `python3`;
/// - which client process a flow line names (`python3 (pid …) →`, or `? →` when its socket
///   was already gone when portsniff looked): `<client> →`;
/// - the latency percentile lines;
/// - numbers that depend on timers racing the capture's end: how many SYNs a connection
///   sent, and the counts on the `retransmitted`, `packets`, `kernel`, `sockets` and
///   `listener` summary lines and in "grew by N" / "connection attempts";
/// - the `kernel counters` summary line (which counters moved depends on when the final
///   sample was taken);
/// - trailing blanks.
///
/// What is compared after that is [`recipe_point`]: the command, the findings and the
/// Diagnosis section.
pub fn normalise_recipe(text: &str, port: u16) -> String {
    let rules: Vec<(String, &str)> = vec![
        (format!(r"\b{port}\b"), "<port>"),
        (r"\b\d\d:\d\d:\d\d\.\d{6}\b".into(), "<time>"),
        (r"\b\d+(\.\d+)?(µs|ms|s)\b".into(), "<duration>"),
        (r"(\d+\.\d+\.\d+\.\d+|\]):\d+\b".into(), "$1:<client port>"),
        (r"\bpsl-\d+-\d+\b".into(), "<netns>"),
        (r"/\S*/(python3)\b".into(), "$1"),
        (r"(\S+ \(pid \d+\)|\?) → ".into(), "<client> → "),
        (r"\bpid \d+".into(), "pid <pid>"),
        (
            r"(?m)^(  (handshake RTT|duration) +).*$".into(),
            "$1<percentiles>",
        ),
        (r"\b\d+ SYNs?\b".into(), "<n> SYN(s)"),
        // Which kernel counters moved depends on when the last sample was taken.
        (r"(?m)^  kernel counters .*\n".into(), ""),
        (
            r"(?m)^(  (retransmitted|packets|kernel|sockets|listener) .*?)\d+".into(),
            "$1<n>",
        ),
        (r"(grew by|ListenDrops by) \d+".into(), "$1 <n>"),
        (
            r"\b\d+ (connection attempts?|handshake ACKs?)\b".into(),
            "<n> $1",
        ),
        (r"[ \t]+\n".into(), "\n"),
    ];
    rules
        .iter()
        .fold(text.to_string(), |mut acc, (pattern, with)| {
            let re = regex::Regex::new(pattern).expect("a valid recipe mask");
            // A line can hold several numbers to mask: apply until nothing changes.
            loop {
                let next = re.replace_all(&acc, *with).into_owned();
                if next == acc {
                    return acc;
                }
                acc = next;
            }
        })
}

/// The part of a (normalised) recipe that carries its point and that every run of its
/// scenario prints alike: the command line, the findings printed live (`⇒` lines, in
/// order), and the Diagnosis section. The flow lines and summary counts above it are the
/// blessed run's real output, but how many connections a racing kernel accepted, dropped
/// or retransmitted before the capture ended changes from run to run (a full accept queue
/// takes 2 or 3 of 6 attempts), so they are shown, not compared.
pub fn recipe_point(normalised: &str) -> String {
    let mut point = Vec::new();
    let mut in_diagnosis = false;
    for line in normalised.lines() {
        in_diagnosis |= line == "Diagnosis";
        if in_diagnosis || line.starts_with("$ ") || line.trim_start().starts_with('⇒') {
            point.push(line);
        }
    }
    point.join("\n")
}

/// Checks the README's `<!-- recipe:NAME -->` block against this run's text output (both
/// normalised, see [`recipe_point`]), or with `PORTSNIFF_BLESS=1` rewrites the block with
/// it.
pub fn check_recipe(name: &str, report: &Report, port: u16) {
    let recipe = report
        .text
        .as_ref()
        .expect("test setup: the capture was started with_text");
    // `stdout_text` joins the lines without a final newline.
    let newline = if recipe.output.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let block = format!("```\n$ {}\n{}{newline}```\n", recipe.command, recipe.output);
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let start = format!("<!-- recipe:{name} -->\n");
    let end = "<!-- /recipe -->";
    let _guard = README_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let readme = std::fs::read_to_string(&readme_path).expect("README.md is readable");
    let at = readme
        .find(&start)
        .unwrap_or_else(|| panic!("README.md has no `<!-- recipe:{name} -->` marker"))
        + start.len();
    let len = readme[at..]
        .find(end)
        .unwrap_or_else(|| panic!("README.md: recipe {name} has no `{end}`"));
    if std::env::var_os("PORTSNIFF_BLESS").is_some() {
        let mut new = readme.clone();
        new.replace_range(at..at + len, &block);
        std::fs::write(&readme_path, new).expect("README.md is writable");
        return;
    }
    let in_readme = &readme[at..at + len];
    // The README's run had its own watched port: read it from its command line.
    let readme_port = in_readme
        .split("--port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(port);
    let want = recipe_point(&normalise_recipe(in_readme, readme_port));
    let got = recipe_point(&normalise_recipe(&block, port));
    if want == got {
        return;
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let differing: Vec<String> = (0..w.len().max(g.len()))
        .filter(|&i| w.get(i) != g.get(i))
        .map(|i| {
            format!(
                "line {}:\n  README: {}\n  now:    {}",
                i + 1,
                w.get(i).unwrap_or(&"(none)"),
                g.get(i).unwrap_or(&"(none)")
            )
        })
        .collect();
    panic!(
        "README recipe `{name}` no longer matches what portsniff prints for its scenario \
         (compared after masking what varies between runs). If the change is intended, \
         regenerate the recipes with `PORTSNIFF_BLESS=1 cargo test --test diagnose` and \
         review the diff.\n{}\n--- this run, unmasked ---\n{block}\n{}",
        differing.join("\n"),
        report.context()
    );
}

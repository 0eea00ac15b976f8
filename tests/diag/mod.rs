//! Helpers for the diagnosis tests (`tests/diagnose.rs`): listener and client processes
//! started inside a network namespace (so their PIDs are known and own the sockets), a
//! portsniff capture inside the namespace, and a [`Report`] that reads portsniff's flow,
//! finding and summary lines and asserts on them with the whole output in every message.
//!
//! Builds on [`crate::support::live`] (namespace guard, `Sniffer`, gates). Only
//! `tests/diagnose.rs` uses it, so it lives beside that binary rather than in `support`.

pub mod recipe;
mod report;

pub use report::{Recipe, Report};

use crate::support::live::{
    assert_no_capture_loss, connect_from_known_port, have_root, skip, which, Netns, Sniffer,
    EXIT_TIMEOUT,
};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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
    "refused_elsewhere",
    "listener_other_family",
    "listener_other_address",
    "listener_other_namespace",
    "silently_dropped",
    "slow_connect",
    "syn_flood",
    "replies_dropped",
    "accept_queue_full",
    "rejected_by_firewall",
    "reset_by_server",
    "reset_by_client",
    "time_wait_reuse",
    "no_traffic",
    "startup_race",
    "server_restarted",
    "restart_loop",
    "invalid_source",
    "network_unreachable",
    "handshake_stalled",
    "receiver_stalled",
    "time_wait_buildup",
    "ephemeral_ports_exhausted",
    "partial_view",
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

/// The usual stage: the prerequisites met, a fresh namespace for `test`, a fresh port,
/// and the server's address on 127.0.0.1 there; `None` after skipping (or the panic
/// under `CI=true`).
pub fn loopback_stage(test: &str, tools: &[&str]) -> Option<(Netns, u16, SocketAddr)> {
    if !prerequisites(test, tools) {
        return None;
    }
    let ns = Netns::create(test)?;
    let port = fresh_port();
    Some((ns, port, v4([127, 0, 0, 1], port)))
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
    #[allow(dead_code)] // read in failure messages, through Debug
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

/// The namespace's `TcpExt: ListenOverflows` counter.
pub fn listen_overflows(ns: &Netns) -> u64 {
    tcp_ext(ns, "ListenOverflows")
}

/// The namespace's `TcpExt` counter `name` (`/proc/net/netstat` as seen from a thread
/// inside it).
pub fn tcp_ext(ns: &Netns, name: &str) -> u64 {
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
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("test setup: no {name} in /proc/net/netstat:\n{text}"))
}

/// A portsniff capture running inside a namespace with `--duration`; with
/// [`Capture::with_text`], a second one beside it writing the text report for a README
/// recipe.
pub struct Capture {
    /// portsniff stops (its `--duration` runs out) no earlier than this: a line that
    /// arrived before it was printed live.
    pub stops_after: SystemTime,
    sniffer: Sniffer,
    limit: Duration,
    /// The arguments after `portsniff`, without `--json`.
    text_args: Vec<String>,
    text: Option<Sniffer>,
}

/// Starts `ip netns exec NS portsniff -i lo --port PORT --json --duration SECS EXTRA…` and
/// waits for its "listening on" banner.
pub fn start_capture(ns: &Netns, port: u16, duration_secs: u32, extra: &[&str]) -> Capture {
    start_capture_on(ns, "lo", port, duration_secs, extra)
}

/// [`start_capture`] on another interface (`any`, a veth).
pub fn start_capture_on(
    ns: &Netns,
    interface: &str,
    port: u16,
    duration_secs: u32,
    extra: &[&str],
) -> Capture {
    let port = port.to_string();
    let duration = duration_secs.to_string();
    let mut args = vec![
        "-i",
        interface,
        "--port",
        &port,
        "--json",
        "--duration",
        &duration,
    ];
    args.extend_from_slice(extra);
    let cmd = ns.portsniff(&args);
    // Before the spawn: portsniff's `--duration` cannot run out earlier than this plus it.
    let spawned = SystemTime::now();
    let mut sniffer = Sniffer::spawn(
        cmd,
        &format!("ip netns exec {} portsniff {}", ns.name, args.join(" ")),
    );
    sniffer.wait_for_banner();
    Capture {
        stops_after: spawned + Duration::from_secs(duration_secs.into()),
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
        let cmd = ns.portsniff(&args);
        let mut text = Sniffer::spawn(
            cmd,
            &format!("ip netns exec {} portsniff {}", ns.name, args.join(" ")),
        );
        text.wait_for_banner();
        self.text = Some(text);
        self
    }

    /// Waits until a JSON line contains `text` (true) or `timeout` passes (false), while
    /// the capture runs: what the scenario does next must come after portsniff said it.
    pub fn wait_for_stdout(&mut self, text: &str, timeout: Duration) -> bool {
        self.sniffer.wait_for_stdout(text, timeout)
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
        report.assert_final_findings_were_told_live();
        if let Some(t) = &report.text {
            crate::support::agreement::assert_agreement(&t.output, &t.command);
        }
        report
    }
}

/// Listens on `addr`, says "listening", then accepts connections and closes each at once,
/// before reading anything (as a server at its connection limit does), until killed
/// (bounded).
const CLOSING_SERVER_PY: &str = r#"
import socket, sys, time
host, port, life = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(16)
s.settimeout(1.0)
print("listening", flush=True)
end = time.time() + life
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.close()
"#;

/// A server process inside `ns` on the IPv4 `addr` that accepts every connection and
/// closes it before reading. Returns once it listens.
pub fn spawn_closing_server(ns: &Netns, addr: SocketAddr) -> Proc {
    let what = format!("closing server on {addr} in namespace {}", ns.name);
    let p = spawn_python(
        ns,
        CLOSING_SERVER_PY,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
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

/// Listens on `addr`, says "listening", accepts connections and keeps each open without
/// ever reading from it (a server whose reading loop is blocked), until killed (bounded).
const UNREAD_SERVER_PY: &str = r#"
import socket, sys, time
host, port, life = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(16)
s.settimeout(1.0)
print("listening", flush=True)
held = []
end = time.time() + life
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    held.append(c)
"#;

/// A server process inside `ns` on the IPv4 `addr` that accepts every connection and
/// never reads from it: its receive windows close. Returns once it listens.
pub fn spawn_unread_server(ns: &Netns, addr: SocketAddr) -> Proc {
    let what = format!("never-reading server on {addr} in namespace {}", ns.name);
    let p = spawn_python(
        ns,
        UNREAD_SERVER_PY,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
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

/// Joins an SO_REUSEPORT group on `addr` with backlog 1, says "listening", then accepts
/// and closes connections if told to, or never accepts; until killed (bounded).
const REUSEPORT_MEMBER_PY: &str = r#"
import socket, sys, time
host, port, accepting, life = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind((host, port))
s.listen(1)
s.settimeout(1.0)
print("listening", flush=True)
end = time.time() + life
while time.time() < end:
    if not accepting:
        time.sleep(1.0)
        continue
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.close()
"#;

/// One member of an SO_REUSEPORT group on the IPv4 `addr` inside `ns`, accepting or not.
/// Returns once it listens.
pub fn spawn_reuseport_member(ns: &Netns, addr: SocketAddr, accepting: bool) -> Proc {
    let what = format!(
        "SO_REUSEPORT member on {addr} ({}) in namespace {}",
        if accepting {
            "accepting"
        } else {
            "never accepting"
        },
        ns.name
    );
    let p = spawn_python(
        ns,
        REUSEPORT_MEMBER_PY,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            if accepting { "1" } else { "0" },
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

//! The live harness: gates that skip (or fail, under `CI=true`) when the machine cannot
//! capture, port reservation, a `portsniff` child that is waited for with a bound and
//! killed if the test panics, JSON line parsing, and a network namespace that is deleted
//! whatever happens.
//!
//! Tests in one binary run on parallel threads: every live test takes its ports from the
//! kernel ([`ReservedPort`], [`connect_from_known_port`]) or from `tests/diag`'s `fresh_port`, and
//! its namespace names are unique per process and test ([`Netns::create`]), so none
//! collides with another test's capture.

use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What portsniff prints on stderr once its capture handle is open.
pub const BANNER: &str = "portsniff: listening on ";
/// How long portsniff may take to open the capture and print the banner.
pub const BANNER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long portsniff may take to exit after SIGINT (or after `--duration`).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether we run in CI, where a live test must never skip silently.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Skips `test` with `reason` on a developer machine; in CI (`CI=true`) a skipped live
/// test is a failure, so this panics there.
pub fn skip(test: &str, reason: &str) {
    if in_ci() {
        panic!("{test}: CI=true, so this live test must run, but it cannot: {reason}");
    }
    eprintln!("{test}: skipping: {reason}");
}

/// Live capture needs root: true if we have it, otherwise skips (or panics in CI).
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(test, "needs root to capture (run the live tests as root)");
    false
}

/// The first executable called `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A TCP port bound on a loopback address and not listening: connections to it are
/// refused exactly as if nothing were bound, but no other socket (another test's client
/// picking an ephemeral port) can take it while the test runs. `listen` turns it into a
/// real listener on the same port.
pub struct ReservedPort {
    socket: Socket,
    pub addr: SocketAddr,
}

impl ReservedPort {
    /// Binds `ip:0` and reads back the port the kernel chose.
    pub fn on(ip: std::net::IpAddr) -> std::io::Result<ReservedPort> {
        let addr = SocketAddr::new(ip, 0);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&addr.into())?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .expect("a TCP socket bound to an IP address has an IP address");
        Ok(ReservedPort { socket, addr })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Starts listening on the reserved port.
    pub fn listen(self) -> TcpListener {
        self.socket
            .listen(128)
            .expect("listen() on the reserved loopback port");
        TcpListener::from(self.socket)
    }
}

/// A client socket bound to an ephemeral loopback port before connecting, so its port
/// is known even when the connection fails. Returns (client port, connect result).
pub fn connect_from_known_port(server: SocketAddr) -> (u16, std::io::Result<Socket>) {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .expect("create a client TCP socket");
    let local = SocketAddr::new(server.ip(), 0);
    socket
        .bind(&local.into())
        .expect("bind the client socket to an ephemeral loopback port");
    let port = socket
        .local_addr()
        .expect("local address of the bound client socket")
        .as_socket()
        .expect("an IP socket address")
        .port();
    let res = socket
        .connect_timeout(&server.into(), Duration::from_secs(3))
        .map(|()| socket);
    (port, res)
}

/// Accepts one connection, waiting at most `timeout`.
pub fn accept_within(listener: &TcpListener, timeout: Duration) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("make the listener non-blocking");
    let deadline = Instant::now() + timeout;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "test setup: the listener accepted no connection within {timeout:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("test setup: accept() failed: {e}"),
        }
    };
    stream
        .set_nonblocking(false)
        .expect("make the accepted stream blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout on the accepted stream");
    stream
}

/// One line portsniff wrote on stdout, with the wall-clock time the test read it.
#[derive(Clone, Debug)]
pub struct Line {
    pub arrived: SystemTime,
    pub text: String,
}

impl Line {
    /// Seconds since the Unix epoch when the line arrived (comparable to `first_ts`).
    pub fn arrived_secs(&self) -> f64 {
        self.arrived
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    }
}

/// How a portsniff (or tcpdump) run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<Line>,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Every stdout line parsed as JSON, with its arrival time.
    pub fn json(&self) -> Vec<(Line, Value)> {
        self.stdout
            .iter()
            .map(|l| {
                let v = serde_json::from_str(&l.text).unwrap_or_else(|e| {
                    panic!(
                        "with --json, portsniff printed a stdout line that is not JSON ({e}): {:?}\n\
                         stderr:\n{}",
                        l.text, self.stderr
                    )
                });
                (l.clone(), v)
            })
            .collect()
    }

    /// All stdout, for assertion messages.
    pub fn stdout_text(&self) -> String {
        self.stdout
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A running child whose stdout lines are timestamped as they arrive and whose stderr
/// is kept for messages. Killed (by its PID, SIGKILL) on drop if still running.
pub struct Sniffer {
    what: String,
    child: Child,
    stdout_rx: Receiver<Line>,
    /// Lines [`wait_for_stdout`](Self::wait_for_stdout) already took from `stdout_rx`.
    seen: Vec<Line>,
    banner_rx: Receiver<()>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Sniffer {
    /// Spawns `cmd` with stdout and stderr piped and stdin closed.
    pub fn spawn(mut cmd: Command, what: &str) -> Sniffer {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {what} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");

        let (stdout_tx, stdout_rx) = mpsc::channel();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(text) = line else { break };
                let line = Line {
                    arrived: SystemTime::now(),
                    text,
                };
                if stdout_tx.send(line).is_err() {
                    break;
                }
            }
        });

        let stderr = Arc::new(Mutex::new(String::new()));
        let (banner_tx, banner_rx) = mpsc::channel();
        let err_buf = Arc::clone(&stderr);
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(text) = line else { break };
                if text.starts_with(BANNER) {
                    let _ = banner_tx.send(());
                }
                let mut buf = err_buf.lock().unwrap_or_else(|p| p.into_inner());
                buf.push_str(&text);
                buf.push('\n');
            }
        });

        Sniffer {
            what: what.to_string(),
            child,
            stdout_rx,
            seen: Vec::new(),
            banner_rx,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("a PID fits in pid_t")
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for the "listening on" banner; panics (with what portsniff said) if it does
    /// not come within [`BANNER_TIMEOUT`] or portsniff exits first.
    pub fn wait_for_banner(&mut self) {
        let deadline = Instant::now() + BANNER_TIMEOUT;
        loop {
            match self.banner_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => return,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // stderr closed: it exited (or closed stderr) without the banner.
                    let status = self.exit_status_within(Duration::from_secs(2));
                    panic!(
                        "{} never said it was listening (no {BANNER:?} line on stderr); it \
                         exited with {status:?}. stderr:\n{}",
                        self.what,
                        self.stderr_text()
                    );
                }
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not print {BANNER:?} on stderr within {BANNER_TIMEOUT:?}: a user \
                     would see a capture that never starts. stderr so far:\n{}",
                    self.what,
                    self.stderr_text()
                );
            }
        }
    }

    /// The child's exit status if it exits within `timeout`; otherwise kills it (`None`).
    fn exit_status_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Waits until a stdout line contains `text` (true), or `timeout` passes (false).
    /// The lines read stay part of what [`wait_exit`](Self::wait_exit) returns.
    pub fn wait_for_stdout(&mut self, text: &str, timeout: Duration) -> bool {
        if self.seen.iter().any(|l| l.text.contains(text)) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self
                .stdout_rx
                .recv_timeout(left.min(Duration::from_millis(50)))
            {
                Ok(line) => {
                    let found = line.text.contains(text);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        false
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would.
    pub fn interrupt(&self) {
        // SAFETY: kill(2) with a PID of a child we spawned and have not reaped yet (the
        // `Child` is still owned here), so the PID cannot have been recycled.
        let rc = unsafe { libc::kill(self.pid(), libc::SIGINT) };
        assert_eq!(
            rc,
            0,
            "could not send SIGINT to {} (pid {}): {}",
            self.what,
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the child to exit within `timeout` (killing it and failing the test if
    /// it hangs), then collects everything it printed.
    pub fn wait_exit(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{} was still running {timeout:?} after it should have stopped: a \
                         user pressing Ctrl-C would see it hang. stdout so far:\n{}\nstderr:\n{}",
                        self.what,
                        self.seen
                            .iter()
                            .chain(drain(&self.stdout_rx).iter())
                            .map(|l| l.text.as_str())
                            .collect::<Vec<_>>()
                            .join("\n"),
                        self.stderr_text()
                    );
                }
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
        };
        // The pipes reach EOF once the process is gone (unless it left a grandchild
        // holding them, which portsniff does not); bound the wait anyway.
        let readers = std::mem::take(&mut self.readers);
        let reader_deadline = Instant::now() + Duration::from_secs(5);
        for r in readers {
            while !r.is_finished() && Instant::now() < reader_deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        Finished {
            status,
            stdout: {
                let mut all = std::mem::take(&mut self.seen);
                all.extend(drain(&self.stdout_rx));
                all
            },
            stderr: self.stderr_text(),
        }
    }
}

fn drain(rx: &Receiver<Line>) -> Vec<Line> {
    rx.try_iter().collect()
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command that should finish by itself (a replay, tcpdump) with a bound.
pub fn run_bounded(cmd: Command, what: &str, timeout: Duration) -> Finished {
    Sniffer::spawn(cmd, what).wait_exit(timeout)
}

/// `portsniff -i lo --port PORT --json` plus `extra`.
pub fn live_command(port: u16, extra: &[&str]) -> Command {
    let mut cmd = super::portsniff();
    cmd.args(["-i", "lo", "--port", &port.to_string(), "--json"])
        .args(extra);
    cmd
}

/// The flow records (`"type":"flow"`) among parsed lines.
pub fn flows(lines: &[(Line, Value)]) -> Vec<&(Line, Value)> {
    lines.iter().filter(|(_, v)| v["type"] == "flow").collect()
}

/// The summary line: there must be exactly one, and it must be the last line.
pub fn summary<'a>(lines: &'a [(Line, Value)], stdout: &str) -> &'a Value {
    let n = lines.iter().filter(|(_, v)| v["type"] == "summary").count();
    assert_eq!(
        n, 1,
        "expected exactly one {{\"type\":\"summary\"}} line after the capture stopped, \
         found {n}; stdout:\n{stdout}"
    );
    let (_, last) = lines.last().expect("at least the summary line");
    assert_eq!(
        last["type"], "summary",
        "the summary must be the last line portsniff prints; stdout:\n{stdout}"
    );
    last
}

/// The port of a flow's `client` field ("127.0.0.1:36690" or "[::1]:36690").
pub fn client_port(flow: &Value) -> Option<u16> {
    flow["client"]
        .as_str()?
        .parse::<SocketAddr>()
        .ok()
        .map(|a| a.port())
}

/// The final records (`"final":true`) of flows whose client used `port`.
pub fn final_flows_from(lines: &[(Line, Value)], port: u16) -> Vec<&Value> {
    flows(lines)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["final"] == true && client_port(v) == Some(port))
        .collect()
}

/// Reads what a stream has until EOF, at most `limit` bytes (read timeout applies).
pub fn read_to_eof(stream: &mut TcpStream, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    stream.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

static NETNS_SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace created by the test, with its loopback up; deleted on drop (also
/// when the test panics).
pub struct Netns {
    ip: PathBuf,
    pub name: String,
}

impl Netns {
    /// Creates `psl-<pid>-<n>`. `None` (after skipping, or panicking in CI) when `ip` is
    /// missing or namespaces cannot be created here.
    pub fn create(test: &str) -> Option<Netns> {
        Netns::create_tagged(test, "")
    }

    /// As [`create`](Self::create), named `psl-<tag>-<pid>-<n>`: `ip netns list` then says
    /// which tests a namespace left behind belongs to.
    pub fn create_tagged(test: &str, tag: &str) -> Option<Netns> {
        let Some(ip) = which("ip") else {
            skip(
                test,
                "needs the `ip` command (iproute2) to create a network namespace",
            );
            return None;
        };
        let name = format!(
            "psl-{tag}{}{}-{}",
            if tag.is_empty() { "" } else { "-" },
            std::process::id(),
            NETNS_SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new(&ip)
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        if !out.status.success() {
            skip(
                test,
                &format!(
                    "cannot create a network namespace (`ip netns add {name}`: {})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
            return None;
        }
        // From here on, Drop deletes it.
        let ns = Netns { ip, name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `ip netns exec NAME program args…` as a command, not yet started.
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        cmd
    }

    /// `portsniff ARGS…` inside the namespace, with the environment of
    /// [`super::portsniff`], not yet started.
    pub fn portsniff(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(Path::new(super::bin()), args);
        cmd.env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` inside the namespace and panics if it fails.
    pub fn run(&self, argv: &[&str]) {
        let program = which(argv[0]).unwrap_or_else(|| PathBuf::from(argv[0]));
        let out = self
            .command(&program, &argv[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {argv:?} in namespace {}: {e}", self.name));
        assert!(
            out.status.success(),
            "test setup: {argv:?} in namespace {} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Runs `f` on a thread that has entered the namespace (network namespaces are per
    /// thread), and returns its result. Sockets it creates live in the namespace.
    pub fn on_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = PathBuf::from("/var/run/netns").join(&self.name);
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            // SAFETY: a valid open namespace file descriptor; CLONE_NEWNET only changes
            // this thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns into {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let deleted = Command::new(&self.ip)
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!(
                "warning: could not delete network namespace {}; remove it with \
                 `ip netns delete {}`",
                self.name, self.name
            );
        }
    }
}

/// Fails if the capture lost packets (kernel ring full, or the flow stage behind): every
/// outcome after a loss is unreliable, so say so before checking outcomes.
pub fn assert_no_capture_loss(summary: &Value, stdout: &str) {
    let kernel_dropped = summary["kernel"]["dropped"].as_u64();
    let internal = summary["internal_dropped"].as_u64();
    assert!(
        kernel_dropped == Some(0) && internal == Some(0),
        "portsniff lost packets of the test's few loopback connections (kernel.dropped = \
         {}, internal_dropped = {}, packets.captured = {}, kernel.received = {}): a user \
         would see connections missing or with wrong outcomes (closed or reset ones shown \
         as established). stdout:\n{stdout}",
        summary["kernel"]["dropped"],
        summary["internal_dropped"],
        summary["packets"]["captured"],
        summary["kernel"]["received"]
    );
}

/// An IPv4 TCP SYN from `src` (any address: the raw socket does not check it) to `dst`,
/// with valid IP and TCP checksums.
pub fn spoofed_syn(src: std::net::Ipv4Addr, sport: u16, dst: SocketAddr) -> Vec<u8> {
    let std::net::IpAddr::V4(daddr) = dst.ip() else {
        panic!("an IPv4 destination")
    };
    fn sum(bytes: &[u8]) -> u16 {
        let mut s: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while s > 0xffff {
            s = (s >> 16) + (s & 0xffff);
        }
        !(s as u16)
    }
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&1000u32.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&daddr.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    tcp[16..18].copy_from_slice(&sum(&pseudo).to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&daddr.octets());
    let check = sum(&ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// A second namespace joined to the first by a veth pair (deleted with them).
pub fn veth_between(a: &Netns, b: &Netns, a_if: &str, b_if: &str) {
    let ip = which("ip").expect("checked by Netns::create");
    let out = Command::new(ip)
        .args([
            "link", "add", a_if, "netns", &a.name, "type", "veth", "peer",
        ])
        .args(["name", b_if, "netns", &b.name])
        .stdin(Stdio::null())
        .output()
        .expect("run ip link add");
    assert!(
        out.status.success(),
        "test setup: ip link add veth: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

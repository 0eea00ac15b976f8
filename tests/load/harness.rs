//! The load tests' harness: a replay whose (possibly huge) JSON output is
//! counted as it streams instead of being kept, whose peak memory is read from the kernel
//! when it is reaped (`wait4`), and a sampler of a live process's memory.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a replay printed, counted line by line as it streamed (1M JSON lines are ~800 MB:
/// nothing but the counters, the summary and a few sample lines is kept).
#[derive(Debug, Default)]
pub struct Streamed {
    pub lines: u64,
    /// `{"type":"flow","final":true,…}` lines.
    pub final_flows: u64,
    /// `{"type":"flow","final":false,…}` lines (live pending notices).
    pub pending: u64,
    /// Final flow lines with `"ended_by":"evicted"`.
    pub evicted: u64,
    /// Other lines (findings, ladders): not counted above.
    pub other: u64,
    /// The first few lines, for assertion messages.
    pub head: Vec<String>,
    /// The last line: the summary, if portsniff got that far.
    pub last: String,
}

impl Streamed {
    /// The summary line, parsed; panics with what was seen if it is not one.
    pub fn summary(&self, what: &str, stderr: &str) -> Value {
        let v: Value = serde_json::from_str(&self.last).unwrap_or_else(|e| {
            panic!(
                "{what}: the last stdout line is not JSON ({e}): {:?}\nfirst lines:\n{}\n\
                 stderr:\n{stderr}",
                self.last,
                self.head.join("\n")
            )
        });
        assert_eq!(
            v["type"], "summary",
            "{what}: the last stdout line should be the summary, it is: {v}\nstderr:\n{stderr}"
        );
        v
    }

    fn count(&mut self, line: &[u8]) {
        const FINAL: &[u8] = b"{\"type\":\"flow\",\"final\":true,";
        const PENDING: &[u8] = b"{\"type\":\"flow\",\"final\":false,";
        // `ended_by` comes after every counter, before the processes and the kernel's
        // facts: search the line's tail, not its end.
        const EVICTED: &[u8] = b"\"ended_by\":\"evicted\",";
        self.lines += 1;
        if line.starts_with(FINAL) {
            self.final_flows += 1;
            if line.windows(EVICTED.len()).rev().any(|w| w == EVICTED) {
                self.evicted += 1;
            }
        } else if line.starts_with(PENDING) {
            self.pending += 1;
        } else {
            self.other += 1;
        }
        if self.head.len() < 3 {
            self.head.push(String::from_utf8_lossy(line).into_owned());
        }
    }
}

/// How a streamed run ended.
#[derive(Debug)]
pub struct StreamedRun {
    /// Exit code, or `None` if a signal ended it.
    pub code: Option<i32>,
    pub out: Streamed,
    pub stderr: String,
    /// The child's peak resident set (`VmHWM`, polled until it exits), in KiB.
    pub max_rss_kib: u64,
    pub elapsed: Duration,
}

/// Runs `cmd` to completion (killing it, by its PID, and failing after `timeout`),
/// counting its stdout lines as they stream, and polling its peak RSS (`VmHWM`) until it
/// exits (every 100 µs for its first half second, then every 10 ms).
///
/// Why not `ru_maxrss`: `getrusage(RUSAGE_CHILDREN)` is the maximum over every child the
/// test binary has reaped (its tests run in parallel), and even `wait4`'s per-child
/// figure is useless here: std spawns with `vfork`-like `posix_spawn`, and Linux carries
/// the pre-`exec` high-water mark (the test process's own RSS, 160 MiB once) across `exec`
/// into the child's `maxrss`. `VmHWM` belongs to the new address space alone.
pub fn run_streamed(mut cmd: Command, what: &str, timeout: Duration) -> StreamedRun {
    // stdin is the caller's choice (`replay_command` closes it).
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {what} ({cmd:?}): {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, stdout);
        let mut s = Streamed::default();
        let mut buf = Vec::with_capacity(4096);
        let mut last = Vec::with_capacity(4096);
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    s.count(&buf);
                    // Keep this line as the last one; reuse the previous one's buffer.
                    std::mem::swap(&mut buf, &mut last);
                }
            }
        }
        s.last = String::from_utf8_lossy(&last).into_owned();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });

    let pid = i32::try_from(child.id()).expect("a PID fits in pid_t");
    let deadline = started + timeout;
    let mut hwm = 0;
    let status = loop {
        // Read before reaping: once reaped, the PID is not ours any more.
        if let Some(kib) = proc_status_kib(pid, "VmHWM") {
            hwm = hwm.max(kib);
        }
        let mut status = 0;
        // SAFETY: `pid` is our own unreaped child (the `Child` is still owned here and
        // nothing else waits for it); `status` is valid for writes; no rusage wanted.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, std::ptr::null_mut()) };
        match rc {
            // Every 100 µs while the child is young: a small release-build replay
            // runs for a few milliseconds, and polled every 10 ms its peak was never
            // seen (the first poll too early, the next after its exit).
            0 if Instant::now() < deadline => {
                std::thread::sleep(if started.elapsed() < Duration::from_millis(500) {
                    Duration::from_micros(100)
                } else {
                    Duration::from_millis(10)
                })
            }
            0 => {
                // Child::kill sends SIGKILL to this child's PID only.
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} did not finish within {timeout:?}; it printed {} lines so far",
                    out_reader.join().map(|s| s.lines).unwrap_or(0)
                );
            }
            r if r == pid => break status,
            _ => panic!(
                "wait4({pid}) for {what}: {}",
                std::io::Error::last_os_error()
            ),
        }
    };
    let elapsed = started.elapsed();
    // The child is reaped: never signal or wait for it again (its PID may be reused).
    // Dropping a `Child` does neither.
    drop(child);
    let out = out_reader.join().expect("stdout reader thread");
    let stderr = err_reader.join().expect("stderr reader thread");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    StreamedRun {
        code,
        out,
        stderr,
        max_rss_kib: hwm,
        elapsed,
    }
}

/// `portsniff -r FILE --port PORT --json` plus `extra`.
pub fn replay_command(file: &Path, port: u16, extra: &[&str]) -> Command {
    let mut cmd = crate::support::portsniff();
    cmd.arg("-r")
        .arg(file)
        .args(["--port", &port.to_string(), "--json"])
        .args(extra);
    cmd
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`); `None` once the process is
/// gone.
pub fn proc_status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// The process's name (`/proc/PID/comm`).
pub fn proc_comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Samples a process's `VmRSS` at a fixed period on a thread, until stopped.
pub struct RssSampler {
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: i32, period: Duration) -> RssSampler {
        use std::sync::atomic::Ordering;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut next = t0;
            while !st.load(Ordering::SeqCst) {
                match proc_status_kib(pid, "VmRSS") {
                    Some(kib) => s
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((t0.elapsed(), kib)),
                    None => break,
                }
                next += period;
                while Instant::now() < next && !st.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        RssSampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the samples: (time since start, VmRSS KiB).
    pub fn finish(mut self) -> Vec<(Duration, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `12.3 MiB` for messages.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// An environment variable parsed as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
        Err(_) => default,
    }
}

//! Ending a run from outside: Ctrl-C, SIGTERM, a second Ctrl-C, a closed stdout pipe, and
//! `-w` errors. Each must end cleanly and keep what was read; a `-w` capture is never
//! left half-written under its own name (a forced exit keeps the whole records written).

mod support;
mod wire;

use support::live;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

/// Waits for exit, killing the child and failing the test after `limit`.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> (Option<i32>, String, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            let mut err = String::new();
            if let Some(mut o) = child.stdout.take() {
                o.read_to_string(&mut out).expect("read stdout");
            }
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).expect("read stderr");
            }
            return (status.code(), out, err);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: portsniff did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `portsniff -r -` fed with the first `records` packets of mixed.pcap, then
/// keeps the pipe open and silent: the reader blocks in read(), as with `tcpdump -w - |`.
fn stuck_replay(records: usize, extra: &[&str]) -> (Child, std::process::ChildStdin) {
    let bytes = std::fs::read(fixture("mixed.pcap")).unwrap();
    let end = wire::record_offsets(&bytes)[records];
    let mut child = support::portsniff()
        .args(["-r", "-", "--port", PORT, "--json"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bytes[..end]).unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

#[test]
fn ctrl_c_ends_a_replay_stuck_on_a_silent_pipe_with_everything_read_so_far() {
    // 4 packets: the two refused attempts.
    let (child, stdin) = stuck_replay(4, &[]);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGINT);
    let (code, out, err) = wait_bounded(child, Duration::from_secs(5), "Ctrl-C on a stuck replay");
    drop(stdin);
    assert_eq!(
        code,
        Some(1),
        "two refused connections were read: exit 1\n{err}"
    );
    let lines = json_lines(out.as_bytes());
    let refused = lines.iter().filter(|l| l["outcome"] == "refused").count();
    assert_eq!(
        refused, 2,
        "both refusals read before Ctrl-C are reported:\n{out}"
    );
    assert_eq!(
        lines.last().unwrap()["type"],
        "summary",
        "the summary is printed:\n{out}"
    );
}

#[test]
fn second_ctrl_c_exits_at_once_and_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.pcap");
    let (child, stdin) = stuck_replay(4, &["-w", target.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, libc::SIGINT);
    let started = Instant::now();
    let (code, _, err) = wait_bounded(child, Duration::from_secs(5), "second Ctrl-C");
    drop(stdin);
    assert_eq!(
        code,
        Some(130),
        "a second Ctrl-C exits at once with 130\n{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "at once: {:?}",
        started.elapsed()
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["out.pcap"],
        "the capture, under its own name, and no temporary file"
    );
    // As tcpdump keeps what it wrote: the packets read before Ctrl-C, whole.
    let replay = run(&["-r", target.to_str().unwrap(), "--port", PORT, "--json"]);
    let refused = json_lines(&replay.stdout)
        .iter()
        .filter(|l| l["outcome"] == "refused")
        .count();
    assert_eq!(refused, 2, "{}", String::from_utf8_lossy(&replay.stderr));
}

#[test]
fn sigterm_ends_a_live_capture_cleanly_with_a_readable_w_file() {
    if !live::have_root("sigterm_ends_a_live_capture_cleanly_with_a_readable_w_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("live.pcap");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens: connections are refused
    let mut child = support::portsniff()
        .args(["-i", "lo", "--port", &port.to_string(), "--json", "-w"])
        .arg(&target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    assert!(banner.contains("listening on lo"), "{banner}");
    for _ in 0..3 {
        let e = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGTERM);
    let (code, out, _) = wait_bounded(child, Duration::from_secs(10), "SIGTERM");
    assert_eq!(code, Some(1), "three refusals: exit 1\n{out}");
    let lines = json_lines(out.as_bytes());
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "refused").count(),
        3,
        "{out}"
    );
    assert_eq!(lines.last().unwrap()["type"], "summary");
    let replay = run(&[
        "-r",
        target.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--json",
    ]);
    let flows = json_lines(&replay.stdout)
        .iter()
        .filter(|l| l["outcome"] == "refused")
        .count();
    assert_eq!(
        flows, 3,
        "the -w file is complete and readable after SIGTERM"
    );
    if let Ok(td) = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&target)
        .output()
    {
        assert!(
            td.status.success(),
            "tcpdump reads it: {}",
            String::from_utf8_lossy(&td.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&td.stdout).lines().count(), 6);
    }
}

#[test]
fn closed_stdout_pipe_ends_the_run_quietly() {
    let mut child = support::portsniff()
        .args([
            "-r",
            fixture("mixed.pcap").to_str().unwrap(),
            "--port",
            PORT,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // `| head -1`: read one line, then close the pipe
    assert!(first.contains("refused"), "{first}");
    let (code, _, err) = wait_bounded(child, Duration::from_secs(5), "closed pipe");
    assert!(
        matches!(code, Some(0) | Some(1)),
        "no crash, no error status: {code:?} {err}"
    );
    assert!(
        !err.contains("error"),
        "no error message for a reader that went away: {err}"
    );
}

#[test]
fn full_disk_on_w_is_a_clear_error() {
    // /dev/full fails every write with ENOSPC, like a full disk.
    let out = run(&[
        "-r",
        fixture("mixed.pcap").to_str().unwrap(),
        "--port",
        PORT,
        "-w",
        "/dev/full",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot write /dev/full") && err.contains("No space left"),
        "{err}"
    );
}

#[test]
fn w_error_leaves_no_half_written_file() {
    // A capture damaged part-way still ends the run with an error: the -w file must then
    // hold everything read before the damage, complete, or nothing at all.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("part.pcap");
    let out = run(&[
        "-r",
        fixture("truncated.pcap").to_str().unwrap(),
        "--port",
        PORT,
        "-w",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["part.pcap"],
        "only the finished file, no temporary one"
    );
    let replay = run(&["-r", target.to_str().unwrap(), "--port", PORT, "--json"]);
    let lines = json_lines(&replay.stdout);
    assert_eq!(
        lines.last().unwrap()["packets"]["captured"],
        15,
        "every packet read before the damage"
    );
    assert_eq!(
        lines.last().unwrap()["error"],
        serde_json::Value::Null,
        "and the copy is whole"
    );
}

//! Output files and input pipes as a tcpdump user meets them: `-w` through a symlink, into
//! a FIFO, onto `/dev/stdout` and `-`, into a directory `-Z USER` cannot write; `-r` from
//! a FIFO or a pipe whose writer stays open (Ctrl-C keeps everything read) or writes
//! slowly (each connection's line comes as it ends, not at the writer's exit).
//!
//! Nothing here may change the machine: every path written is in a temporary directory,
//! and the tests that name `/dev/stdout` or `/dev/null` check that they are unchanged.

mod support;
mod wire;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::live::{have_root, skip, which};
use support::*;

fn fx(name: &str) -> String {
    fixture(name).to_str().unwrap().to_string()
}

/// tcpdump, or a skip (a failure under `CI=true`).
fn tcpdump(test: &str) -> Option<PathBuf> {
    let t = which("tcpdump");
    if t.is_none() {
        skip(test, "tcpdump is not installed");
    }
    t
}

/// What tcpdump reads from `file`: one line per packet.
fn tcpdump_lines(tcpdump: &Path, file: &Path) -> usize {
    let out = Command::new(tcpdump)
        .args(["-nn", "-r"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpdump reads {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.iter().filter(|&&b| b == b'\n').count()
}

/// `portsniff -r mixed.pcap --port P -w TO` and `extra`.
fn write_mixed(to: &str, extra: &[&str]) -> std::process::Output {
    let mixed = fx("mixed.pcap");
    let mut args = vec!["-r", &mixed, "--port", PORT, "-w", to];
    args.extend_from_slice(extra);
    run(&args)
}

/// mixed.pcap holds 43 packets, all of the port's connections.
const MIXED_PACKETS: usize = 43;

fn lstat(path: &str) -> (bool, PathBuf, u64) {
    let m = std::fs::symlink_metadata(path).unwrap();
    let target = std::fs::read_link(path).unwrap_or_default();
    (m.file_type().is_symlink(), target, m.ino())
}

#[test]
fn w_through_a_symlink_writes_its_target_and_the_link_stays_a_link() {
    let Some(td) = tcpdump("w_through_a_symlink") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.pcap");
    std::fs::write(&target, b"old").unwrap();
    let link = dir.path().join("link.pcap");
    std::os::unix::fs::symlink("real.pcap", &link).unwrap();
    let out = write_mixed(link.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let m = std::fs::symlink_metadata(&link).unwrap();
    assert!(m.file_type().is_symlink(), "the link is still a link");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real.pcap"));
    assert_eq!(
        tcpdump_lines(&td, &target),
        MIXED_PACKETS,
        "the target holds the capture"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}

#[test]
fn w_dev_stdout_redirected_to_a_file_writes_the_file_and_leaves_dev_stdout_alone() {
    let Some(td) = tcpdump("w_dev_stdout") else {
        return;
    };
    let before = lstat("/dev/stdout");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.pcap");
    let out = support::portsniff()
        .args(["-r", &fx("mixed.pcap"), "--port", PORT, "-w", "/dev/stdout"])
        .stdout(std::fs::File::create(&file).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        lstat("/dev/stdout"),
        before,
        "/dev/stdout is the same symlink"
    );
    assert!(before.0, "/dev/stdout is a symlink on this machine");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        tcpdump_lines(&td, &file),
        MIXED_PACKETS,
        "out.pcap is the capture alone"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused"), "the report went to stderr:\n{err}");
    assert!(
        err.contains(&format!(
            "{MIXED_PACKETS} packets written to standard output"
        )),
        "{err}"
    );
}

#[test]
fn w_dash_pipes_the_capture_into_tcpdump_and_the_report_goes_to_stderr() {
    let Some(td) = tcpdump("w_dash") else {
        return;
    };
    let mut sniff = support::portsniff()
        .args(["-r", &fx("mixed.pcap"), "--port", PORT, "--json", "-w", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pcap = sniff.stdout.take().unwrap();
    let reader = Command::new(td)
        .args(["-nn", "-r", "-"])
        .stdin(pcap)
        .output()
        .unwrap();
    let mut err = String::new();
    sniff
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(sniff.wait().unwrap().code(), Some(1));
    assert!(
        reader.status.success(),
        "{}",
        String::from_utf8_lossy(&reader.stderr)
    );
    assert_eq!(
        reader.stdout.iter().filter(|&&b| b == b'\n').count(),
        MIXED_PACKETS,
        "tcpdump reads every packet"
    );
    let flows = err
        .lines()
        .filter(|l| l.contains("\"type\":\"flow\""))
        .count();
    assert!(flows >= 3, "the JSON report is on stderr:\n{err}");
}

#[test]
fn w_into_a_fifo_feeds_the_reader_on_the_other_end() {
    let Some(td) = tcpdump("w_into_a_fifo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = Command::new(td)
        .args(["-nn", "-r"])
        .arg(&fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = write_mixed(fifo.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let read = reader.wait_with_output().unwrap();
    assert_eq!(
        read.stdout.iter().filter(|&&b| b == b'\n').count(),
        MIXED_PACKETS
    );
    let m = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(m.file_type().is_fifo(), "the FIFO is still a FIFO");
}

#[test]
fn w_to_dev_null_with_dash_z_neither_replaces_nor_chowns_it() {
    if !have_root("w_to_dev_null_with_dash_z") {
        return;
    }
    let before = std::fs::symlink_metadata("/dev/null").unwrap();
    let out = write_mixed("/dev/null", &["-Z", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let after = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(after.file_type().is_char_device());
    assert_eq!(
        (after.ino(), after.uid(), after.gid(), after.mode()),
        (before.ino(), before.uid(), before.gid(), before.mode()),
        "/dev/null unchanged"
    );
}

#[test]
fn w_into_a_directory_dash_z_user_cannot_write_fails_before_reading() {
    if !have_root("w_into_a_directory_dash_z_user_cannot_write") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = private.join("out.pcap");
    let started = Instant::now();
    let out = write_mixed(file.to_str().unwrap(), &["-Z", "nobody"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains(&format!("cannot write {}", file.display())) && err.contains("uid 65534"),
        "names the file and the user: {err}"
    );
    assert!(!err.contains("reading from"), "fails before reading: {err}");
    assert!(out.stdout.is_empty(), "no report: nothing was read");
    assert_eq!(
        std::fs::read_dir(&private).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn w_errors_name_the_users_file_not_a_temporary_one() {
    let out = write_mixed("/proc/version", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot write /proc/version:"), "{err}");
    assert!(!err.contains(".tmp"), "{err}");
}

#[test]
fn w_prints_the_packets_written_with_the_closing_counts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.pcap");
    let out = write_mixed(file.to_str().unwrap(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l == format!("{MIXED_PACKETS} packets written to {}", file.display())),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("packets written"));
}

/// A pcap header and the first `records` packets of mixed.pcap, then the writer keeps
/// the FIFO open and silent.
fn fifo_writer(fifo: &Path, records: usize) -> std::thread::JoinHandle<()> {
    let bytes = std::fs::read(fixture("mixed.pcap")).unwrap();
    let end = wire::record_offsets(&bytes)[records];
    let fifo = fifo.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        f.write_all(&bytes[..end]).unwrap();
        f.flush().unwrap();
        // Open and silent until the reader has gone.
        std::thread::sleep(Duration::from_secs(3));
    })
}

fn interrupt_after(child: &Child, after: Duration) {
    std::thread::sleep(after);
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(rc, 0);
}

fn wait_bounded(child: Child, what: &str) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what}: portsniff did not exit within 10 s");
        }
    }
}

fn assert_two_refusals_reported(out: &std::process::Output) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "two refusals: exit 1\n{text}");
    let lines = json_lines(&out.stdout);
    let refused = lines.iter().filter(|l| l["outcome"] == "refused").count();
    assert_eq!(refused, 2, "both refusals read before Ctrl-C:\n{text}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["packets"]["captured"], 4, "{summary}");
}

#[test]
fn ctrl_c_on_r_fifo_with_a_writer_that_stays_open_reports_everything_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("capture.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let writer = fifo_writer(&fifo, 4);
    let child = support::portsniff()
        .args(["-r", fifo.to_str().unwrap(), "--port", PORT, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_after(&child, Duration::from_millis(500));
    let out = wait_bounded(child, "Ctrl-C on -r FIFO");
    assert_two_refusals_reported(&out);
    writer.join().unwrap();
}

#[test]
fn ctrl_c_on_r_process_substitution_reports_everything_read() {
    // `portsniff -r <(…)`: bash hands over /dev/fd/N, a pipe.
    let bytes = std::fs::read(fixture("mixed.pcap")).unwrap();
    let end = wire::record_offsets(&bytes)[4];
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.pcap");
    std::fs::write(&part, &bytes[..end]).unwrap();
    let script = format!(
        "exec {} -r <(cat {}; sleep 5) --port {PORT} --json",
        bin(),
        part.display()
    );
    let child = Command::new("bash")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_after(&child, Duration::from_millis(700));
    let out = wait_bounded(child, "Ctrl-C on -r <(…)");
    assert_two_refusals_reported(&out);
}

#[test]
fn a_slow_writer_into_r_dash_shows_each_connection_before_it_finishes() {
    let bytes = std::fs::read(fixture("mixed.pcap")).unwrap();
    let offsets = wire::record_offsets(&bytes);
    let mut child = support::portsniff()
        .args(["-r", "-", "--port", PORT, "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The header and the first refused attempt (SYN, RST), then nothing for a while, as
    // `tcpdump -U -w -` writes on a quiet port.
    stdin.write_all(&bytes[..offsets[2]]).unwrap();
    stdin.flush().unwrap();
    let started = Instant::now();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
    });
    let first = rx.recv_timeout(Duration::from_secs(3));
    let waited = started.elapsed();
    // The rest, then the end of the input.
    stdin.write_all(&bytes[offsets[2]..]).unwrap();
    drop(stdin);
    let _ = wait_bounded(child, "slow writer");
    let first = first.expect("a line arrives while the writer is still writing");
    assert!(first.contains("\"outcome\":\"refused\""), "{first}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

//! Output files and input pipes as a tcpdump user meets them: `-w` through a symlink, into
//! a FIFO, onto `/dev/stdout` and `-`, into a directory `-Z USER` cannot write; `-r` from
//! a FIFO or a pipe whose writer stays open (Ctrl-C keeps everything read) or writes
//! slowly (each connection's line comes as it ends, not at the writer's exit); `-w` with
//! tcpdump's rotation (`-C`, `-G`, `-W`); `-w -` into a reader that stops early.
//!
//! Nothing here may change the machine: every path written is in a temporary directory,
//! and the tests that name `/dev/stdout` or `/dev/null` check that they are unchanged.

mod gen;
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

/// `-w --only-problems` writes a problem connection whole, with the packets that trailed
/// its close (second_rst.pcap: a reset with 8 packets at the close, a RST and an ACK
/// after it), and nothing of a clean one, even with trailing ACKs (trailing_acks.pcap).
#[test]
fn only_problems_writes_a_problems_packets_that_trail_its_close() {
    let dir = tempfile::tempdir().unwrap();
    for (capture, written) in [("second_rst.pcap", 10), ("trailing_acks.pcap", 0)] {
        let file = dir.path().join(format!("{capture}.out"));
        let out = run(&[
            "-r",
            &fx(capture),
            "--port",
            PORT,
            "-w",
            file.to_str().unwrap(),
            "--only-problems",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines()
                .any(|l| l == format!("{written} packets written to {}", file.display())),
            "{capture}: {err}"
        );
    }
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

/// A generated capture of 50,000 packets over about 3 s of packet time (4.3 MB): four
/// files' worth at `-C 1`.
fn generated(dir: &Path) -> PathBuf {
    let path = dir.join("mix.pcap");
    gen::generate_file(&gen::GenOptions::new(50_000, gen::Mode::Mix), &path).unwrap();
    path
}

/// `portsniff -r CAPTURE --port P -w TO EXTRA…` in `dir`: (exit code, stderr, the
/// packets and files of the "N packets written to … in K files" line).
fn rotate(dir: &Path, capture: &Path, to: &str, extra: &[&str]) -> (Option<i32>, String, u64, u32) {
    let out = support::portsniff()
        .current_dir(dir)
        .args(["-r", capture.to_str().unwrap(), "--port", PORT, "-w", to])
        .args(extra)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let (packets, files) = err
        .lines()
        .find_map(|l| {
            let (n, rest) = l.split_once(&format!(" packets written to {to} in "))?;
            let files = rest.split_once(" file")?.0;
            Some((n.parse().ok()?, files.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no 'N packets written to {to} in K files' line: {err}"));
    (out.status.code(), err, packets, files)
}

/// The files in `dir` whose names start with `prefix`, sorted.
fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// The packet count capinfos gives, when it is installed (it is optional: tcpdump is the
/// reader every test requires).
fn capinfos_packets(file: &Path) -> Option<usize> {
    let capinfos = which("capinfos")?;
    let out = Command::new(capinfos)
        .args(["-c", "-M"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "capinfos reads {}", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text
        .lines()
        .find_map(|l| l.strip_prefix("Number of packets:")?.trim().parse().ok());
    Some(n.unwrap_or_else(|| panic!("capinfos gives a packet count: {text}")))
}

/// tcpdump's `-tt` times of `file`'s packets, in whole seconds.
fn packet_seconds(tcpdump: &Path, file: &Path) -> Vec<u64> {
    let out = Command::new(tcpdump)
        .args(["-nn", "-tt", "-r"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('.').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn dash_c_1_splits_a_replay_into_files_each_readable_and_together_every_packet_written() {
    let Some(td) = tcpdump("dash_c_1_splits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let capture = generated(dir.path());
    let (code, err, written, files) = rotate(dir.path(), &capture, "out.pcap", &["-C", "1"]);
    assert_eq!(code, Some(1), "problems seen, no error: {err}");
    let made = files_named(dir.path(), "out.pcap");
    let names: Vec<_> = made
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["out.pcap", "out.pcap1", "out.pcap2", "out.pcap3"],
        "tcpdump's names: the first as given, then numbered from 1"
    );
    assert_eq!(files, 4, "{err}");
    let mut total = 0;
    for f in &made {
        let n = tcpdump_lines(&td, f);
        if let Some(c) = capinfos_packets(f) {
            assert_eq!(c, n, "capinfos and tcpdump agree on {}", f.display());
        }
        let size = std::fs::metadata(f).unwrap().len();
        assert!(
            size <= 1_000_000 + 16 + 262_144,
            "{} ends at the first packet past 1,000,000 bytes: {size}",
            f.display()
        );
        total += n as u64;
    }
    assert_eq!(total, written, "the files hold every packet written");
    let hidden = files_named(dir.path(), ".");
    assert!(hidden.is_empty(), "no temporary file left: {hidden:?}");
}

#[test]
fn dash_g_1_writes_one_file_per_second_of_packet_time_named_by_that_second() {
    let Some(td) = tcpdump("dash_g_1_writes") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let capture = generated(dir.path());
    let (_, err, written, files) = rotate(dir.path(), &capture, "rot-%S.pcap", &["-G", "1"]);
    let made = files_named(dir.path(), "rot-");
    assert!(
        made.len() >= 2,
        "a replay over 3 s makes several files: {made:?} {err}"
    );
    assert_eq!(made.len() as u32, files, "{err}");
    let mut total = 0;
    for f in &made {
        let seconds = packet_seconds(&td, f);
        assert!(!seconds.is_empty(), "{} has packets", f.display());
        let first = seconds[0];
        assert!(
            seconds.iter().all(|&s| s == first),
            "-G 1: {} holds one second of packets: {seconds:?}",
            f.display()
        );
        assert_eq!(
            f.file_name().unwrap().to_str().unwrap(),
            format!("rot-{:02}.pcap", first % 60),
            "named by the second of its first packet"
        );
        total += seconds.len() as u64;
    }
    assert_eq!(total, written);
}

#[test]
fn dash_w_3_with_dash_c_keeps_a_ring_of_three_files_the_oldest_overwritten() {
    let Some(td) = tcpdump("dash_w_3_with_dash_c") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let capture = generated(dir.path());
    let (_, err, _, files) = rotate(dir.path(), &capture, "ring.pcap", &["-C", "1", "-W", "3"]);
    assert_eq!(files, 4, "four files' worth was written: {err}");
    let made = files_named(dir.path(), "ring.pcap");
    let names: Vec<_> = made
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ring.pcap0", "ring.pcap1", "ring.pcap2"]);
    // The fourth file went to ring.pcap0 again: it now holds the newest packets.
    let first_of = |f: &Path| packet_seconds(&td, f)[0];
    let last_of = |f: &Path| *packet_seconds(&td, f).last().unwrap();
    assert!(
        first_of(&made[0]) >= last_of(&made[2]),
        "ring.pcap0 was overwritten last"
    );
    for f in &made {
        assert!(tcpdump_lines(&td, f) > 0);
    }
}

#[test]
fn dash_g_with_dash_w_stops_the_capture_after_that_many_files() {
    let dir = tempfile::tempdir().unwrap();
    let capture = generated(dir.path());
    let (code, err, _, files) = rotate(dir.path(), &capture, "g-%S.pcap", &["-G", "1", "-W", "2"]);
    assert_eq!(files, 2, "{err}");
    assert_eq!(files_named(dir.path(), "g-").len(), 2);
    assert!(err.contains("maximum file limit reached: 2"), "{err}");
    assert_eq!(
        code,
        Some(1),
        "ends as a capture ends, its exit status by problems: {err}"
    );
}

#[test]
fn rotation_is_refused_for_standard_output_a_fifo_and_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (to, flag, says) in [
        ("-", "-C", "standard output (-w -) cannot be rotated"),
        (fifo.to_str().unwrap(), "-G", "is a FIFO"),
        ("/dev/null", "-C", "is a device"),
    ] {
        let out = write_mixed(to, &[flag, "1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to} {flag}: {err}");
        assert!(err.contains(says), "{to} {flag}: {err}");
        assert!(
            !err.contains("reading from"),
            "refused before reading: {err}"
        );
    }
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device(), "/dev/null untouched");
    let alone = write_mixed(dir.path().join("w.pcap").to_str().unwrap(), &["-W", "3"]);
    let err = String::from_utf8_lossy(&alone.stderr);
    assert_eq!(alone.status.code(), Some(2), "{err}");
    assert!(err.contains("-W N counts the files of -C or -G"), "{err}");
}

#[test]
fn dash_z_rotation_opens_each_new_file_as_the_user_it_runs_as() {
    if !have_root("dash_z_rotation_opens_each_new_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let capture = generated(dir.path());
    let out_dir = dir.path().join("nobody");
    std::fs::create_dir(&out_dir).unwrap();
    nix::unistd::chown(&out_dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let (_, err, _, files) = rotate(
        dir.path(),
        &capture,
        "nobody/z.pcap",
        &["-C", "1", "-Z", "nobody"],
    );
    assert_eq!(files, 4, "{err}");
    let made = files_named(&out_dir, "z.pcap");
    assert_eq!(made.len(), 4, "{made:?}");
    for f in &made {
        assert_eq!(
            std::fs::metadata(f).unwrap().uid(),
            65534,
            "{} belongs to the user portsniff ran as",
            f.display()
        );
    }
    // A directory that user cannot write fails before reading, with -G as with -w alone.
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = write_mixed(
        private.join("p-%S.pcap").to_str().unwrap(),
        &["-G", "1", "-Z", "nobody"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("uid 65534") && !err.contains("reading from"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&private).unwrap().count(), 0);
}

#[test]
fn w_dash_into_a_reader_that_stops_early_ends_quietly_as_tcpdump_does() {
    let dir = tempfile::tempdir().unwrap();
    let capture = generated(dir.path());
    let mut child = support::portsniff()
        .args(["-r", capture.to_str().unwrap(), "--port", PORT, "-w", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -c 100`: read 100 bytes, then close the pipe.
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = wait_bounded(child, "-w - | head -c 100");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "the exit status of a run whose stdout closed, not an error: {:?} {err}",
        out.status.code()
    );
    // The report is on stderr too (its findings say "[error]"): look for portsniff's
    // own error line.
    assert!(
        !err.contains("portsniff: error") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(err.contains("packets written to standard output"), "{err}");
}

#[test]
fn only_problems_with_dash_g_puts_each_connection_whole_in_the_file_current_at_its_end() {
    let Some(td) = tcpdump("only_problems_with_dash_g") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let capture = generated(dir.path());
    let (_, err, written, files) = rotate(
        dir.path(),
        &capture,
        "op-%S.pcap",
        &["-G", "1", "--only-problems"],
    );
    let made = files_named(dir.path(), "op-");
    assert_eq!(made.len() as u32, files, "{err}");
    let mut total = 0;
    for f in &made {
        let seconds = packet_seconds(&td, f);
        let named: u64 = f.file_name().unwrap().to_str().unwrap()[3..5]
            .parse()
            .unwrap();
        // A problem connection's packets are held until its outcome is known, then
        // written to the file open at that moment: a file may hold packets from before
        // the second it is named by, never from after it (the generated capture stays
        // within one minute, so seconds compare as they are).
        assert!(
            seconds.iter().all(|&s| s % 60 <= named),
            "{} holds no packet from after the second it is named by: {seconds:?}",
            f.display()
        );
        total += seconds.len() as u64;
    }
    assert_eq!(total, written, "{err}");
}

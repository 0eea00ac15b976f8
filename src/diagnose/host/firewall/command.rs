//! Runs one read-only ruleset command with a deadline: stdin closed, stdout and stderr
//! captured (never portsniff's own), both pipes drained as the command writes (a large
//! ruleset overflows a pipe, and a command blocked on a full pipe would look hung), and
//! the command killed if it outlives the deadline.

use super::FirewallError;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where the tools live when PATH lacks the sbin directories (a user's PATH under sudo
/// on some distributions).
const SBIN: [&str; 2] = ["/usr/sbin", "/sbin"];

/// Runs `command` ("nft -j list ruleset": words without quoting) and returns its stdout
/// when it exits with status 0.
pub(super) fn run(command: &'static str, deadline: Duration) -> Result<String, FirewallError> {
    let argv: Vec<&str> = command.split_whitespace().collect();
    run_argv(&argv, command, deadline)
}

/// Runs `argv`, named `command` in errors.
pub(super) fn run_argv(
    argv: &[&str],
    command: &'static str,
    deadline: Duration,
) -> Result<String, FirewallError> {
    let mut child = spawn(argv).map_err(|e| match e.kind() {
        ErrorKind::NotFound => FirewallError::NotInstalled { command },
        _ => FirewallError::Spawn { command, source: e },
    })?;
    let until = Instant::now() + deadline;
    let finished = drain(&mut child, until).and_then(|(out, err)| {
        let status = wait(&mut child, until)?;
        Ok((out, err, status))
    });
    let (stdout, stderr, status) = match finished {
        Ok(done) => done,
        Err(e) => {
            // Our own child, not yet reaped: its pid cannot have been reused.
            let _ = child.kill();
            let _ = child.wait();
            return Err(match e {
                Stop::TimedOut => FirewallError::TimedOut {
                    command,
                    after: deadline,
                },
                Stop::Io(source) => FirewallError::Spawn { command, source },
            });
        }
    };
    if !status.success() {
        return Err(FirewallError::Failed {
            command,
            status,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

fn spawn(argv: &[&str]) -> std::io::Result<Child> {
    let (program, args) = argv.split_first().unwrap_or((&"", &[]));
    let start = |program: &Path| {
        Command::new(program)
            .args(args)
            // The tools' messages in English, as the hints expect them.
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    match start(Path::new(program)) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            for dir in SBIN {
                let path = Path::new(dir).join(program);
                if path.exists() {
                    return start(&path);
                }
            }
            Err(e)
        }
        other => other,
    }
}

/// Why the command was stopped.
enum Stop {
    TimedOut,
    Io(std::io::Error),
}

/// Reads stdout and stderr until both are closed, or the deadline passes.
fn drain(child: &mut Child, until: Instant) -> Result<(Vec<u8>, Vec<u8>), Stop> {
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut bufs = (Vec::new(), Vec::new());
    let mut open = (true, true);
    let mut chunk = [0u8; 16 * 1024];
    while open.0 || open.1 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::TimedOut);
        }
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let (ready_out, ready_err) = {
            let mut fds = Vec::with_capacity(2);
            if open.0 {
                fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
            }
            if open.1 {
                fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Stop::Io(e.into())),
            }
            // Readable, or closed (POLLHUP): either way a read does not block.
            let ready = |fd: &PollFd| fd.any().unwrap_or(true);
            let mut fds = fds.iter();
            let o = open.0 && fds.next().is_some_and(ready);
            let e = open.1 && fds.next().is_some_and(ready);
            (o, e)
        };
        if ready_out {
            match out.read(&mut chunk).map_err(Stop::Io)? {
                0 => open.0 = false,
                n => bufs.0.extend_from_slice(&chunk[..n]),
            }
        }
        if ready_err {
            match err.read(&mut chunk).map_err(Stop::Io)? {
                0 => open.1 = false,
                n => bufs.1.extend_from_slice(&chunk[..n]),
            }
        }
    }
    Ok(bufs)
}

/// Waits for the command to exit once its pipes are closed (it may still be finishing).
fn wait(child: &mut Child, until: Instant) -> Result<ExitStatus, Stop> {
    loop {
        if let Some(status) = child.try_wait().map_err(Stop::Io)? {
            return Ok(status);
        }
        if Instant::now() >= until {
            return Err(Stop::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

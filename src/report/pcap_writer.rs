//! `-w FILE`: the packets of the port's flows, as a classic pcap file (microsecond
//! timestamps, the capture's own link type) that tcpdump and Wireshark read.
//!
//! Written with std I/O rather than libpcap's `pcap_dump`, which is `void` and loses a
//! write error (a full disk) inside stdio's buffer: here every error reaches the user.
//!
//! With `--only-problems` a flow's packets are held until its outcome is known and
//! written only if it is a problem; the file is then grouped by flow, not strictly in
//! time order. Holding is bounded per flow and in total so a flood cannot exhaust memory.
//!
//! Where the packets go is decided once, in [`Output::open`], and only there (a rotating
//! writer opens its files the same way):
//!
//! - `-w -` (or a path that is our own standard output, e.g. `/dev/stdout` with stdout
//!   redirected to a file or a pipe) writes to standard output, as tcpdump does; the
//!   report then goes to stderr, so pcap and text never share a stream.
//! - A symlink is followed, as tcpdump's `fopen` follows it: its target is written and
//!   the link stays a link.
//! - A device, a FIFO or a socket is written in place: there is nothing to replace, and
//!   replacing `/dev/null` with a file would damage the machine.
//! - A regular file (or a new one) is written under a temporary name in the target's own
//!   directory and renamed onto the target only once complete and flushed, so an error
//!   (a full disk) never leaves a half-written capture under the name the user asked
//!   for. Records reach the file whole (the buffer is flushed before a record that would
//!   not fit), so on a forced exit (a second Ctrl-C) what is on disk is a readable
//!   capture and is renamed into place too.
//!
//! Rotation (`-C`, `-G`, `-W`, as tcpdump's) applies to regular files only ([`Files`]):
//! each file is closed (renamed into place, complete) before the next is opened, so every
//! file has its own header and whole records. Files are created relative to the
//! directory opened at the start, while still privileged: after `-Z` only that
//! directory's own permissions matter, and they are checked before capturing.

use crate::capture::RawPacket;
use crate::decode::LinkType;
use crate::flow::FlowRecord;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// What `-w` names: a file, or standard output (`-w -`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PcapOutput {
    File(PathBuf),
    Stdout,
}

impl PcapOutput {
    /// How it is named in messages: the path as the user gave it.
    pub fn name(&self) -> PathBuf {
        match self {
            PcapOutput::File(p) => p.clone(),
            PcapOutput::Stdout => PathBuf::from("standard output"),
        }
    }

    /// Whether `path` is the file our standard output already goes to (`-w /dev/stdout`,
    /// or `-w out.pcap > out.pcap`): then it is standard output, and the report must go
    /// elsewhere. A character device that is not a terminal (`/dev/null`) is shared
    /// harmlessly and stays a file.
    pub fn is_our_stdout(path: &Path) -> bool {
        let Ok(target) = std::fs::metadata(path) else {
            return false;
        };
        let Ok(stdout) = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|f| f.metadata())
        else {
            return false;
        };
        let same = target.dev() == stdout.dev() && target.ino() == stdout.ino();
        let harmless = target.file_type().is_char_device()
            && !std::io::IsTerminal::is_terminal(&std::io::stdout());
        same && !harmless
    }
}

/// Why the `-w` file could not be written, naming the file the user asked for (never
/// the temporary one, unless the complete capture was left there).
#[derive(Debug, Error)]
pub enum WriteError {
    /// The file's directory does not exist; checked first, so that the message names
    /// the user's own path and not the temporary file beside it.
    #[error("cannot write {path}: no such directory {dir}")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The temporary file beside the target could not be created (`-w /proc/version`).
    #[error(
        "cannot write {path}: cannot create a new file in {dir} ({source}); portsniff writes \
         a capture under a temporary name there and renames it into place when complete"
    )]
    NoTemporary {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// After giving up root (`-Z USER`, or the sudo caller), portsniff could not rename
    /// the finished capture into place: said before capturing, not after an hour of it.
    #[error(
        "cannot write {path}: {dir} is not writable by uid {uid}, whom portsniff runs as \
         once the capture is open (-Z, or the user who ran sudo); choose a directory that \
         user can write"
    )]
    NotWritableAfterDrop {
        path: PathBuf,
        dir: PathBuf,
        uid: u32,
    },
    /// `-C`/`-G` onto something that is not a regular file: a FIFO, a device or standard
    /// output cannot be closed and reopened under a new name.
    #[error(
        "cannot rotate {path}: -C and -G write a series of regular files, and {path} is {what}; \
         name a file in a directory (e.g. -w /var/tmp/problems.pcap)"
    )]
    NotRegular { path: PathBuf, what: &'static str },
    /// `-G`'s strftime format in the `-w` name could not be used.
    #[error("cannot write {path}: its time format (-G) cannot be used: {why}")]
    TimeFormat { path: PathBuf, why: String },
    /// Written and flushed, but not renamed into place: the capture is complete under
    /// its temporary name.
    #[error("cannot write {path}: {source}; the complete capture is in {temp}")]
    Rename {
        path: PathBuf,
        temp: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Most packets held per flow while its outcome is unknown (`--only-problems`): a failed
/// connection shows its cause in its first packets.
const HELD_PER_FLOW: usize = 64;
/// Most bytes held in total.
const HELD_TOTAL_BYTES: usize = 64 << 20;
/// The write buffer. A record is flushed whole or not at all, so it holds at least one
/// largest record (16 + 262144 bytes).
const BUFFER: usize = 1 << 19;
/// Symlinks followed before giving up, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

/// Captures still under their temporary names.
static UNFINISHED: Mutex<Vec<Replace>> = Mutex::new(Vec::new());

/// On a forced exit (a second Ctrl-C, which does not unwind): every capture still being
/// written is renamed into place with what reached the disk, whole records only, as
/// tcpdump keeps what it wrote.
pub fn keep_unfinished() {
    let files = std::mem::take(&mut *UNFINISHED.lock().unwrap_or_else(|p| p.into_inner()));
    for r in files {
        let _ = r.rename();
    }
}

fn forget_unfinished(r: &Replace) {
    UNFINISHED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|u| u.temp_name != r.temp_name || u.dir_path != r.dir_path);
}

/// A regular file written under a temporary name in its target's directory. The
/// directory is held open (opened while still privileged), and the rename at the end is
/// made relative to it: after `-Z` only that directory's own permissions matter, not
/// whether the new user may walk the path to it.
#[derive(Clone, Debug)]
struct Replace {
    dir: Arc<OwnedFd>,
    dir_path: PathBuf,
    temp_name: OsString,
    target_name: OsString,
}

impl Replace {
    fn temp_path(&self) -> PathBuf {
        self.dir_path.join(&self.temp_name)
    }

    fn target_path(&self) -> PathBuf {
        self.dir_path.join(&self.target_name)
    }

    fn rename(&self) -> std::io::Result<()> {
        nix::fcntl::renameat(
            &*self.dir,
            self.temp_name.as_os_str(),
            &*self.dir,
            self.target_name.as_os_str(),
        )
        .map_err(std::io::Error::from)
    }

    fn remove(&self) {
        let _ = nix::unistd::unlinkat(
            &*self.dir,
            self.temp_name.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
}

/// `path` with its symlinks followed (the last component's, repeatedly; a link's relative
/// target is relative to the link's directory). A dangling link resolves to the file it
/// names, which is then created, as `fopen` does.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::ELOOP))
}

/// One open `-w` destination: how it was opened decides how it is closed. Opening,
/// writing whole records and closing live here, so rotation can open one after another.
pub struct Output {
    /// As the user gave it, for messages.
    path: PathBuf,
    /// A regular file: renamed onto its target (links resolved) when complete.
    replace: Option<Replace>,
    file: BufWriter<File>,
}

impl Output {
    /// Opens `to` and writes the file header.
    pub fn open(to: &PcapOutput, link: LinkType) -> Result<Output, WriteError> {
        let path = to.name();
        let io = |source| WriteError::Io {
            path: path.clone(),
            source,
        };
        let (file, replace) = match to {
            PcapOutput::Stdout => (
                File::from(std::io::stdout().as_fd().try_clone_to_owned().map_err(io)?),
                None,
            ),
            PcapOutput::File(given) => {
                let target = resolve(given).map_err(io)?;
                match std::fs::metadata(&target) {
                    // Devices, FIFOs, sockets: written where they are, never replaced.
                    Ok(m) if !m.is_file() => {
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&target)
                            .map_err(io)?;
                        (f, None)
                    }
                    existing => {
                        // tcpdump would open it for writing: refuse what it would refuse
                        // (a read-only file), with the system's reason.
                        if existing.is_ok() {
                            std::fs::OpenOptions::new()
                                .write(true)
                                .open(&target)
                                .map_err(io)?;
                        }
                        let (replace, f) = create_beside(&path, &target)?;
                        (f, Some(replace))
                    }
                }
            }
        };
        Output::start(path, replace, file, link)
    }

    /// Opens the rotated file `name` in `files`' directory (relative to the directory
    /// held open, so it works after `-Z` with that directory's permissions alone).
    fn create_in(files: &Files, name: &str) -> Result<Output, WriteError> {
        let path = files.given.with_file_name(name);
        let io = |source: nix::Error| WriteError::Io {
            path: path.clone(),
            source: source.into(),
        };
        // What is already there is replaced only if it is a regular file: a link, a FIFO
        // or a device under a rotated name is a mistake to report, not to overwrite.
        match nix::sys::stat::fstatat(&*files.dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFREG => {
                return Err(WriteError::NotRegular {
                    path,
                    what: file_kind(st.st_mode),
                });
            }
            Ok(_) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(io(e)),
        }
        let replace = Replace {
            dir: Arc::clone(&files.dir),
            dir_path: files.dir_path.clone(),
            temp_name: OsString::from(format!(".{name}.portsniff-{}.tmp", std::process::id())),
            target_name: OsString::from(name),
        };
        let fd = nix::fcntl::openat(
            &*files.dir,
            replace.temp_name.as_os_str(),
            nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_TRUNC
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| WriteError::NoTemporary {
            path: path.clone(),
            dir: files.dir_path.clone(),
            source: e.into(),
        })?;
        Output::start(path, Some(replace), File::from(fd), files.link)
    }

    /// Registers a temporary file and writes the file header.
    fn start(
        path: PathBuf,
        replace: Option<Replace>,
        file: File,
        link: LinkType,
    ) -> Result<Output, WriteError> {
        if let Some(pair) = &replace {
            UNFINISHED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(pair.clone());
        }
        let mut out = Output {
            path,
            replace,
            file: BufWriter::with_capacity(BUFFER, file),
        };
        out.file
            .write_all(&file_header(link.linktype()))
            .map_err(|source| WriteError::Io {
                path: out.path.clone(),
                source,
            })?;
        Ok(out)
    }

    /// The file portsniff created and may hand to the user it will run as: only its own
    /// temporary file, never a device or a file that was already there.
    pub fn created_file(&self) -> Option<PathBuf> {
        self.replace.as_ref().map(Replace::temp_path)
    }

    /// The destination as the user named it.
    pub fn name(&self) -> &Path {
        &self.path
    }

    /// Whether the finished file can be renamed into place by `user` (uid, gid; `None`:
    /// whoever we are now), whom portsniff becomes once the capture is open with only
    /// that group (`setgroups([gid])`): a directory that user cannot write fails before
    /// capturing, not when the capture ends. Decided from the mode bits, as the kernel
    /// does for a user without capabilities (ACLs are not read).
    pub fn check_can_finish(&self, user: Option<(u32, u32)>) -> Result<(), WriteError> {
        let Some(replace) = &self.replace else {
            return Ok(());
        };
        writable_by(
            &replace.dir,
            &replace.dir_path,
            Some(&replace.target_path()),
            &self.path,
            user,
        )
    }

    /// One record, whole: if it does not fit beside what is buffered, the buffer goes to
    /// the file first, so the file only ever ends between records.
    fn record(&mut self, h: &RecordHeader, data: &[u8]) -> std::io::Result<()> {
        if self.file.capacity() - self.file.buffer().len() < h.0.len() + data.len() {
            self.file.flush()?;
        }
        self.file.write_all(&h.0)?;
        self.file.write_all(data)
    }

    fn flush(&mut self) -> Result<(), WriteError> {
        self.file.flush().map_err(|source| WriteError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes and moves a replaced file into place.
    pub fn finish(mut self) -> Result<(), WriteError> {
        self.flush()?;
        if let Some(r) = self.replace.take() {
            forget_unfinished(&r);
            if let Err(source) = r.rename() {
                return Err(WriteError::Rename {
                    path: self.path.clone(),
                    temp: r.temp_path(),
                    source,
                });
            }
        }
        Ok(())
    }
}

impl Drop for Output {
    /// Not finished (an error ended the run): no half-written file stays behind.
    fn drop(&mut self) {
        if let Some(r) = self.replace.take() {
            forget_unfinished(&r);
            r.remove();
        }
    }
}

/// Whether `user` (uid, gid; `None`: whoever we are now) may create and rename files in
/// the directory `dir`: see [`Output::check_can_finish`]. `target`: the file that would
/// be replaced, which a sticky directory protects.
fn writable_by(
    dir: &OwnedFd,
    dir_path: &Path,
    target: Option<&Path>,
    path: &Path,
    user: Option<(u32, u32)>,
) -> Result<(), WriteError> {
    let (uid, gid) = user.unwrap_or_else(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    if uid == 0 {
        return Ok(());
    }
    let Ok(d) = File::from(dir.try_clone().map_err(|source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    })?)
    .metadata() else {
        return Ok(());
    };
    // Write and search: the owner's bits, else the group's, else the others'.
    let bits = match (d.uid() == uid, d.gid() == gid) {
        (true, _) => d.mode() >> 6,
        (false, true) => d.mode() >> 3,
        (false, false) => d.mode(),
    } & 0o3;
    // In a sticky directory (/tmp) only a file's owner (or the directory's) may
    // replace it.
    let sticky_blocks = d.mode() & libc::S_ISVTX != 0
        && d.uid() != uid
        && target.is_some_and(|t| std::fs::symlink_metadata(t).is_ok_and(|t| t.uid() != uid));
    if bits == 0o3 && !sticky_blocks {
        return Ok(());
    }
    Err(WriteError::NotWritableAfterDrop {
        path: path.to_path_buf(),
        dir: dir_path.to_path_buf(),
        uid,
    })
}

/// The directory a path is in (`.` for a bare name).
fn parent_dir(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `target`'s directory, checked first so that a missing one is named as such, with the
/// user's own path (`given`), not as a failure to create the temporary file.
fn existing_dir<'a>(given: &Path, target: &'a Path) -> Result<&'a Path, WriteError> {
    let dir = parent_dir(target);
    if !dir.is_dir() {
        return Err(WriteError::NoDirectory {
            path: given.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(dir)
}

/// Creates the temporary file in `target`'s directory (so that the rename stays on one
/// filesystem), naming `given` in errors.
fn create_beside(given: &Path, target: &Path) -> Result<(Replace, File), WriteError> {
    let dir = existing_dir(given, target)?;
    let io = |source| WriteError::Io {
        path: given.to_path_buf(),
        source,
    };
    let target_name = target.file_name().map(OsString::from).ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let temp_name = OsString::from(format!(
        ".{}.portsniff-{}.tmp",
        target_name.to_string_lossy(),
        std::process::id()
    ));
    let dir_fd = Arc::new(OwnedFd::from(File::open(dir).map_err(io)?));
    let replace = Replace {
        dir: dir_fd,
        dir_path: dir.to_path_buf(),
        temp_name,
        target_name,
    };
    let file = File::create(replace.temp_path()).map_err(|source| WriteError::NoTemporary {
        path: given.to_path_buf(),
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok((replace, file))
}

struct Held {
    header: RecordHeader,
    data: Vec<u8>,
}

/// A pcap record header: ts_sec, ts_usec, caplen, len (the pcap file format, §4.3 of
/// draft-ietf-opsawg-pcap).
#[derive(Clone, Copy)]
struct RecordHeader([u8; 16]);

impl RecordHeader {
    fn of(p: &RawPacket) -> RecordHeader {
        let mut h = [0u8; 16];
        // Classic pcap has 32-bit seconds; clamp rather than wrap a corrupt timestamp.
        h[0..4].copy_from_slice(&(p.ts_sec.clamp(0, i64::from(u32::MAX)) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(p.ts_usec.clamp(0, 999_999) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&p.caplen.to_le_bytes());
        h[12..16].copy_from_slice(&p.len.max(p.caplen).to_le_bytes());
        RecordHeader(h)
    }
}

/// The 24-byte global header, little-endian, microsecond resolution.
fn file_header(linktype: i32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0; snaplen is the largest libpcap accepts.
    h[16..20].copy_from_slice(&262_144u32.to_le_bytes());
    h[20..24].copy_from_slice(&(linktype as u32).to_le_bytes());
    h
}

/// `-C`, `-G` and `-W`, as tcpdump(8) defines them: when a `-w` file is closed and the
/// next one opened, and how the files are named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// `-C`: before a packet is written, a file already larger than this many bytes is
    /// closed and the next one opened (`file`, `file1`, `file2`…).
    pub max_bytes: Option<u64>,
    /// `-G`: a file is closed once a packet comes this many seconds after the one that
    /// opened it, and the name is a strftime(3) format of that packet's time.
    pub seconds: Option<u32>,
    /// `-W`: with `-C`, a ring of this many files (`file0`…, zero-padded), the oldest
    /// overwritten; with `-G` alone, the capture stops when one more file would open.
    pub files: Option<u32>,
}

impl Rotation {
    pub fn is_on(&self) -> bool {
        self.max_bytes.is_some() || self.seconds.is_some()
    }
}

/// What a path is, for [`WriteError::NotRegular`].
fn file_kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFDIR => "a directory",
        _ => "not a regular file",
    }
}

/// The series of files `-C`/`-G` write, named from the `-w` name as tcpdump names them
/// (its `MakeFilename`), all in the directory opened at the start.
struct Files {
    rotation: Rotation,
    /// The `-w` path as given, for messages.
    given: PathBuf,
    dir: Arc<OwnedFd>,
    dir_path: PathBuf,
    /// The file name as given: with `-G`, a strftime format.
    pattern: String,
    link: LinkType,
    /// `-C`: the current file's number (tcpdump's `Cflag_count`).
    number: u32,
    /// Files opened so far, for `-G` with `-W`.
    opened: u32,
    /// `-G`: the packet second that opened the current file.
    began: i64,
    /// Bytes in the current file, its header included (tcpdump's `pcap_dump_ftell`).
    bytes: u64,
}

impl Files {
    /// Checks everything that can be checked before capturing: a regular file (or none)
    /// under the name, its directory, and the time format.
    fn new(to: &PcapOutput, rotation: Rotation, link: LinkType) -> Result<Files, WriteError> {
        let given = match to {
            PcapOutput::File(p) if !PcapOutput::is_our_stdout(p) => p.clone(),
            _ => {
                return Err(WriteError::NotRegular {
                    path: to.name(),
                    what: "not a file",
                })
            }
        };
        if let Ok(m) = std::fs::metadata(&given) {
            if !m.is_file() {
                return Err(WriteError::NotRegular {
                    what: file_kind(m.mode()),
                    path: given,
                });
            }
        }
        let dir = existing_dir(&given, &given)?;
        let io = |source| WriteError::Io {
            path: given.clone(),
            source,
        };
        let pattern = given
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a file name in UTF-8",
                ))
            })?;
        let files = Files {
            rotation,
            dir: Arc::new(OwnedFd::from(File::open(dir).map_err(io)?)),
            dir_path: dir.to_path_buf(),
            pattern,
            link,
            number: 0,
            opened: 0,
            began: 0,
            bytes: 0,
            given,
        };
        files.name()?;
        Ok(files)
    }

    /// Whether the current file is to be closed before a packet at second `now`.
    #[inline]
    fn due(&self, now: i64) -> bool {
        self.rotation.max_bytes.is_some_and(|m| self.bytes > m)
            || self
                .rotation
                .seconds
                .is_some_and(|s| now - self.began >= i64::from(s))
    }

    /// Moves on to the next file for a packet at second `now`: a new period (`-G`, or
    /// the first file) numbers from 0 again, a full file (`-C`) takes the next number,
    /// around the ring with `-W`. `false`: `-G -W`'s last file is done.
    fn advance(&mut self, now: i64) -> bool {
        let new_period = self.opened == 0
            || self
                .rotation
                .seconds
                .is_some_and(|s| now - self.began >= i64::from(s));
        if new_period {
            // tcpdump ignores -W's limit when -C is given too: -W then only sets the width.
            if self.rotation.max_bytes.is_none()
                && self.rotation.files.is_some_and(|n| self.opened >= n)
            {
                return false;
            }
            self.began = now;
            self.number = 0;
        } else {
            self.number += 1;
            if self.rotation.files.is_some_and(|n| self.number >= n) {
                self.number = 0;
            }
        }
        self.opened += 1;
        true
    }

    /// The current file's name: the strftime format at `began` (`-G`), then with `-C`
    /// its number, zero-padded to the digits of `-W`'s last number.
    fn name(&self) -> Result<String, WriteError> {
        let base = match self.rotation.seconds {
            Some(_) => self.strftime()?,
            None => self.pattern.clone(),
        };
        let width = self.rotation.files.map_or(0, |n| digits(n - 1));
        Ok(match self.rotation.max_bytes {
            Some(_) if self.number > 0 || width > 0 => {
                format!("{base}{:0width$}", self.number)
            }
            _ => base,
        })
    }

    /// The name's strftime format at `began`, in local time as tcpdump's `localtime`.
    fn strftime(&self) -> Result<String, WriteError> {
        let bad = |why: String| WriteError::TimeFormat {
            path: self.given.clone(),
            why,
        };
        let at = jiff::Timestamp::from_second(self.began)
            .map_err(|e| bad(e.to_string()))?
            .to_zoned_datetime(jiff::tz::TimeZone::system());
        let name =
            jiff::fmt::strtime::format(&self.pattern, &at).map_err(|e| bad(e.to_string()))?;
        // The format applies to the file name; the directory is fixed at the start.
        if name.contains('/') || name.is_empty() || name == "." || name == ".." {
            return Err(bad(format!("it makes \"{name}\", not a file name")));
        }
        Ok(name)
    }
}

/// Digits of `n` as tcpdump's `getWflagChars(n + 1)` counts them: 0 for 0.
fn digits(mut n: u32) -> usize {
    let mut d = 0;
    while n > 0 {
        d += 1;
        n /= 10;
    }
    d
}

pub struct PcapWriter {
    /// The file being written; `None` before `-G`'s first packet and after `-W`'s limit.
    out: Option<Output>,
    /// `-C`/`-G`: the series `out` belongs to.
    files: Option<Files>,
    /// The latest packet second seen: `-G`'s clock. Packets held by `--only-problems` go
    /// to the file that is current when they are written, not back to an older one.
    now: i64,
    /// The first write error, reported at the next flush.
    error: Option<WriteError>,
    /// Nothing more is written: `-G -W`'s last file is done, or the reader of `-w -`
    /// went away. Either ends the capture, as it ends tcpdump.
    ended: Option<Ended>,
    /// Told when the writer ends the capture.
    stop: Option<Arc<AtomicBool>>,
    only_problems: bool,
    held: HashMap<u64, Vec<Held>>,
    held_bytes: usize,
    pub written: u64,
}

/// Why the writer ended the capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// `-G` with `-W N`: N files were written.
    FileLimit(u32),
    /// The pipe or FIFO's reader closed it (`-w - | head -c 100`).
    ReaderGone,
}

impl PcapWriter {
    pub fn create(
        to: &PcapOutput,
        link: LinkType,
        only_problems: bool,
        rotation: Rotation,
    ) -> Result<PcapWriter, WriteError> {
        let (out, files) = if rotation.is_on() {
            let mut files = Files::new(to, rotation, link)?;
            // -C alone opens its first file now, as tcpdump does; -G names its first file
            // by the time of its first packet, so a replay's names are its own times.
            let out = match rotation.seconds {
                None => {
                    files.advance(0);
                    files.bytes = 24;
                    Some(Output::create_in(&files, &files.name()?)?)
                }
                Some(_) => None,
            };
            (out, Some(files))
        } else {
            (Some(Output::open(to, link)?), None)
        };
        Ok(PcapWriter {
            out,
            files,
            now: 0,
            error: None,
            ended: None,
            stop: None,
            only_problems,
            held: HashMap::new(),
            held_bytes: 0,
            written: 0,
        })
    }

    /// The flag that ends the capture, set when the writer ends it.
    pub fn stop_with(&mut self, stop: Arc<AtomicBool>) {
        self.stop = Some(stop);
    }

    /// `-C`/`-G`: how many files were opened (a ring's overwritten ones included).
    pub fn files_opened(&self) -> Option<u32> {
        self.files.as_ref().map(|f| f.opened)
    }

    /// Whether, and why, the writer ended the capture.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// One packet of flow `flow` (`None`: an ICMP error that matched no flow).
    pub fn packet(&mut self, flow: Option<u64>, raw: &RawPacket, data: &[u8]) {
        self.now = self.now.max(raw.ts_sec);
        let h = RecordHeader::of(raw);
        match (self.only_problems, flow) {
            (false, _) => self.write(h, data),
            (true, Some(id)) => {
                let held = self.held.entry(id).or_default();
                if held.len() < HELD_PER_FLOW && self.held_bytes + data.len() <= HELD_TOTAL_BYTES {
                    self.held_bytes += data.len();
                    held.push(Held {
                        header: h,
                        data: data.to_vec(),
                    });
                }
            }
            (true, None) => {}
        }
    }

    /// A flow's final record: with `--only-problems`, write or forget its held packets.
    pub fn flow_finished(&mut self, r: &FlowRecord) {
        if let Some(held) = self.held.remove(&r.id) {
            for p in &held {
                self.held_bytes -= p.data.len();
                if r.outcome.is_problem() {
                    self.write(p.header, &p.data);
                }
            }
        }
    }

    /// The file portsniff created for this capture (its temporary name until
    /// [`finish`](Self::finish)), so its owner can be handed to the user portsniff will
    /// run as; `None` for what it writes in place (a device, a FIFO, standard output),
    /// which it must never chown.
    pub fn created_file(&self) -> Option<PathBuf> {
        self.out.as_ref().and_then(Output::created_file)
    }

    /// See [`Output::check_can_finish`]; with rotation, whether `user` can create files
    /// in the directory, as it will once privileges are dropped.
    pub fn check_can_finish(&self, user: Option<(u32, u32)>) -> Result<(), WriteError> {
        match (&self.files, &self.out) {
            (Some(f), _) => writable_by(&f.dir, &f.dir_path, None, &f.given, user),
            (None, Some(out)) => out.check_can_finish(user),
            (None, None) => Ok(()),
        }
    }

    fn write(&mut self, h: RecordHeader, data: &[u8]) {
        if self.error.is_some() || self.ended.is_some() {
            return;
        }
        if let Some(files) = &self.files {
            if self.out.is_none() || files.due(self.now) {
                if let Err(e) = self.rotate() {
                    self.error = Some(e);
                }
                if self.error.is_some() || self.ended.is_some() {
                    return;
                }
            }
        }
        let Some(out) = self.out.as_mut() else {
            return;
        };
        match out.record(&h, data) {
            Ok(()) => {
                self.written += 1;
                if let Some(files) = self.files.as_mut() {
                    files.bytes += (h.0.len() + data.len()) as u64;
                }
            }
            Err(e) => self.failed(e),
        }
    }

    /// Closes the current file (complete, renamed into place) and opens the next.
    #[cold]
    fn rotate(&mut self) -> Result<(), WriteError> {
        if let Some(out) = self.out.take() {
            out.finish()?;
        }
        let Some(files) = self.files.as_mut() else {
            return Ok(());
        };
        if !files.advance(self.now) {
            let n = files.opened;
            self.end(Ended::FileLimit(n));
            return Ok(());
        }
        files.bytes = 24;
        let name = files.name()?;
        self.out = Some(Output::create_in(files, &name)?);
        Ok(())
    }

    fn end(&mut self, why: Ended) {
        self.ended = Some(why);
        if let Some(stop) = &self.stop {
            stop.store(true, Ordering::SeqCst);
        }
    }

    /// A write failed: a reader that went away ends the capture quietly, as a closed
    /// standard output does; anything else (a full disk) is an error.
    fn failed(&mut self, source: std::io::Error) {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            self.end(Ended::ReaderGone);
        } else if let Some(out) = &self.out {
            self.error = Some(WriteError::Io {
                path: out.name().to_path_buf(),
                source,
            });
        }
    }

    /// Pushes buffered packets to the file; reports the first write error (a full disk).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.ended == Some(Ended::ReaderGone) {
            return Ok(());
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        if let Err(e) = out.file.flush() {
            self.failed(e);
            if let Some(e) = self.error.take() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Flushes everything and moves the complete file into place; the packets written.
    pub fn finish(mut self) -> Result<u64, WriteError> {
        self.flush()?;
        if self.ended != Some(Ended::ReaderGone) {
            if let Some(out) = self.out.take() {
                out.finish()?;
            }
        }
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(rotation: Rotation, pattern: &str) -> Files {
        Files {
            rotation,
            given: PathBuf::from(pattern),
            dir: Arc::new(OwnedFd::from(File::open(".").unwrap())),
            dir_path: PathBuf::from("."),
            pattern: pattern.to_owned(),
            link: LinkType::Ethernet,
            number: 0,
            opened: 0,
            began: 0,
            bytes: 0,
        }
    }

    fn names(f: &mut Files, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                assert!(f.advance(0));
                f.name().unwrap()
            })
            .collect()
    }

    #[test]
    fn dash_c_names_the_first_file_as_given_then_numbers_from_1() {
        let mut f = files(
            Rotation {
                max_bytes: Some(1),
                ..Rotation::default()
            },
            "out.pcap",
        );
        assert_eq!(names(&mut f, 3), ["out.pcap", "out.pcap1", "out.pcap2"]);
    }

    #[test]
    fn dash_c_with_dash_w_is_a_ring_numbered_from_0_padded_to_the_last_number() {
        let mut f = files(
            Rotation {
                max_bytes: Some(1),
                files: Some(11),
                ..Rotation::default()
            },
            "out.pcap",
        );
        let n = names(&mut f, 12);
        assert_eq!(n[0], "out.pcap00");
        assert_eq!(n[10], "out.pcap10");
        assert_eq!(n[11], "out.pcap00", "the ring starts over");
    }

    #[test]
    fn dash_g_names_each_file_by_the_packet_second_that_opened_it() {
        let mut f = files(
            Rotation {
                seconds: Some(1),
                files: Some(2),
                ..Rotation::default()
            },
            "rot-%S.pcap",
        );
        assert!(f.advance(62));
        assert_eq!(f.name().unwrap(), "rot-02.pcap");
        assert!(!f.due(62));
        assert!(f.due(63));
        assert!(f.advance(63));
        assert_eq!(f.name().unwrap(), "rot-03.pcap");
        assert!(!f.advance(64), "-W 2: a third file is not opened");
    }

    #[test]
    fn a_time_format_that_makes_a_path_is_refused() {
        let f = files(
            Rotation {
                seconds: Some(1),
                ..Rotation::default()
            },
            "%D.pcap",
        );
        assert!(matches!(f.name(), Err(WriteError::TimeFormat { .. })));
    }
}

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
        let (uid, gid) = user.unwrap_or_else(|| {
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        });
        if uid == 0 {
            return Ok(());
        }
        let Ok(d) = File::from(replace.dir.try_clone().map_err(|source| WriteError::Io {
            path: self.path.clone(),
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
            && std::fs::symlink_metadata(replace.target_path()).is_ok_and(|t| t.uid() != uid);
        if bits == 0o3 && !sticky_blocks {
            return Ok(());
        }
        Err(WriteError::NotWritableAfterDrop {
            path: self.path.clone(),
            dir: replace.dir_path.clone(),
            uid,
        })
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

/// The directory a path is in (`.` for a bare name).
fn parent_dir(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates the temporary file in `target`'s directory (so that the rename stays on one
/// filesystem), naming `given` in errors.
fn create_beside(given: &Path, target: &Path) -> Result<(Replace, File), WriteError> {
    let dir = parent_dir(target);
    if !dir.is_dir() {
        return Err(WriteError::NoDirectory {
            path: given.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
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

pub struct PcapWriter {
    out: Output,
    /// The first write error, reported at the next flush.
    error: Option<std::io::Error>,
    only_problems: bool,
    held: HashMap<u64, Vec<Held>>,
    held_bytes: usize,
    pub written: u64,
}

impl PcapWriter {
    pub fn create(
        to: &PcapOutput,
        link: LinkType,
        only_problems: bool,
    ) -> Result<PcapWriter, WriteError> {
        Ok(PcapWriter {
            out: Output::open(to, link)?,
            error: None,
            only_problems,
            held: HashMap::new(),
            held_bytes: 0,
            written: 0,
        })
    }

    /// One packet of flow `flow` (`None`: an ICMP error that matched no flow).
    pub fn packet(&mut self, flow: Option<u64>, raw: &RawPacket, data: &[u8]) {
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
        self.out.created_file()
    }

    /// See [`Output::check_can_finish`].
    pub fn check_can_finish(&self, user: Option<(u32, u32)>) -> Result<(), WriteError> {
        self.out.check_can_finish(user)
    }

    fn write(&mut self, h: RecordHeader, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        match self.out.record(&h, data) {
            Ok(()) => self.written += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// Pushes buffered packets to the file; reports the first write error (a full disk).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if let Some(source) = self.error.take() {
            return Err(WriteError::Io {
                path: self.out.name().to_path_buf(),
                source,
            });
        }
        self.out.flush()
    }

    /// Flushes everything and moves the complete file into place; the packets written.
    pub fn finish(mut self) -> Result<u64, WriteError> {
        self.flush()?;
        self.out.finish()?;
        Ok(self.written)
    }
}

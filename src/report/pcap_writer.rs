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
//! A regular file is written under a temporary name beside it and renamed into place
//! only once complete and flushed, so an error (a full disk) or a forced exit never leaves
//! a half-written capture under the name the user asked for. Device paths (`/dev/null`,
//! a FIFO) are written directly.

use crate::capture::RawPacket;
use crate::decode::LinkType;
use crate::flow::FlowRecord;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thiserror::Error;

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

/// Temporary files not yet renamed into place, for [`remove_unfinished`].
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Deletes every temporary capture file still being written: called on a forced exit
/// (a second Ctrl-C), which does not unwind.
pub fn remove_unfinished() {
    let paths = std::mem::take(&mut *UNFINISHED.lock().unwrap_or_else(|p| p.into_inner()));
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

fn forget_unfinished(path: &Path) {
    UNFINISHED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| p != path);
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
    path: PathBuf,
    /// Where the packets go until `finish` renames it to `path` (`None`: written directly).
    temp: Option<PathBuf>,
    file: BufWriter<File>,
    /// The first write error, reported at the next flush.
    error: Option<std::io::Error>,
    only_problems: bool,
    held: HashMap<u64, Vec<Held>>,
    held_bytes: usize,
    pub written: u64,
}

impl PcapWriter {
    pub fn create(
        path: &Path,
        link: LinkType,
        only_problems: bool,
    ) -> Result<PcapWriter, WriteError> {
        let regular = std::fs::metadata(path).map_or(true, |m| m.is_file());
        let temp = regular.then(|| {
            let name = path
                .file_name()
                .map_or_else(|| "capture".into(), |n| n.to_string_lossy().into_owned());
            path.with_file_name(format!(".{name}.portsniff-{}.tmp", std::process::id()))
        });
        let target = temp.as_deref().unwrap_or(path);
        // Refuse early with the user's own path in the message: libpcap's would name the
        // temporary file.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(WriteError::NoDirectory {
                    path: path.to_path_buf(),
                    dir: dir.to_path_buf(),
                });
            }
        }
        let mut file = File::create(target)
            .map(|f| BufWriter::with_capacity(1 << 16, f))
            .map_err(|source| WriteError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let header = file.write_all(&file_header(link.linktype()));
        if let Some(t) = &temp {
            UNFINISHED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t.clone());
        }
        Ok(PcapWriter {
            path: path.to_path_buf(),
            temp,
            file,
            error: header.err(),
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

    /// The file being written (the temporary one until [`finish`](Self::finish)), so
    /// its owner can be handed to the user portsniff will run as.
    pub fn file_path(&self) -> &Path {
        self.temp.as_deref().unwrap_or(&self.path)
    }

    fn write(&mut self, h: RecordHeader, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        match self
            .file
            .write_all(&h.0)
            .and_then(|()| self.file.write_all(data))
        {
            Ok(()) => self.written += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// Pushes buffered packets to the file; reports the first write error (a full disk).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        let res = match self.error.take() {
            Some(e) => Err(e),
            None => self.file.flush(),
        };
        res.map_err(|source| WriteError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes everything and moves the complete file into place.
    pub fn finish(mut self) -> Result<u64, WriteError> {
        self.flush()?;
        if let Some(temp) = self.temp.take() {
            forget_unfinished(&temp);
            if let Err(source) = std::fs::rename(&temp, &self.path) {
                return Err(WriteError::Rename {
                    path: self.path.clone(),
                    temp,
                    source,
                });
            }
        }
        Ok(self.written)
    }
}

impl Drop for PcapWriter {
    /// Not finished (an error ended the run): no half-written file stays behind.
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            forget_unfinished(&temp);
            let _ = std::fs::remove_file(temp);
        }
    }
}

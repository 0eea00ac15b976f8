//! `-w FILE`: the packets of the port's flows, as a pcap file of the capture's own link
//! type, written by libpcap's savefile code so tcpdump and Wireshark read it as their own.
//!
//! With `--only-problems` a flow's packets are held until its outcome is known and
//! written only if it is a problem; the file is then grouped by flow, not strictly in
//! time order. Holding is bounded per flow and in total so a flood cannot exhaust memory.

use crate::capture::RawPacket;
use crate::decode::LinkType;
use crate::flow::FlowRecord;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot write {path}: {detail}")]
pub struct WriteError {
    pub path: PathBuf,
    pub detail: String,
}

/// Most packets held per flow while its outcome is unknown (`--only-problems`): a failed
/// connection shows its cause in its first packets.
const HELD_PER_FLOW: usize = 64;
/// Most bytes held in total.
const HELD_TOTAL_BYTES: usize = 64 << 20;

struct Held {
    header: pcap::PacketHeader,
    data: Vec<u8>,
}

pub struct PcapWriter {
    path: PathBuf,
    file: pcap::Savefile,
    only_problems: bool,
    held: HashMap<u64, Vec<Held>>,
    held_bytes: usize,
    pub written: u64,
}

fn header(p: &RawPacket) -> pcap::PacketHeader {
    pcap::PacketHeader {
        ts: libc::timeval {
            tv_sec: p.ts_sec as libc::time_t,
            tv_usec: p.ts_usec as libc::suseconds_t,
        },
        caplen: p.caplen,
        len: p.len,
    }
}

impl PcapWriter {
    pub fn create(
        path: &Path,
        link: LinkType,
        only_problems: bool,
    ) -> Result<PcapWriter, WriteError> {
        let err = |detail: String| WriteError {
            path: path.to_path_buf(),
            detail,
        };
        let dead =
            pcap::Capture::dead(pcap::Linktype(link.linktype())).map_err(|e| err(e.to_string()))?;
        let file = dead.savefile(path).map_err(|e| err(e.to_string()))?;
        Ok(PcapWriter {
            path: path.to_path_buf(),
            file,
            only_problems,
            held: HashMap::new(),
            held_bytes: 0,
            written: 0,
        })
    }

    /// One packet of flow `flow` (`None`: an ICMP error that matched no flow).
    pub fn packet(&mut self, flow: Option<u64>, raw: &RawPacket, data: &[u8]) {
        let h = header(raw);
        match (self.only_problems, flow) {
            (false, _) => {
                self.file.write(&pcap::Packet::new(&h, data));
                self.written += 1;
            }
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
                    self.file.write(&pcap::Packet::new(&p.header, &p.data));
                    self.written += 1;
                }
            }
        }
    }

    /// Flushes everything to disk.
    pub fn finish(mut self) -> Result<u64, WriteError> {
        self.file.flush().map_err(|e| WriteError {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        Ok(self.written)
    }
}

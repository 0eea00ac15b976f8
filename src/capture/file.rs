//! Capture files (pcap and pcapng, from a file or standard input), read in large chunks and
//! parsed in place by `pcap-parser`.
//!
//! libpcap reads a savefile through stdio in 4 KiB pieces and copies every record into a
//! buffer of its own before handing it over; on a large replay that copying and the
//! per-record calls were a third of the capture thread's time. Here one `read` fills a
//! 1 MiB buffer and each record is handed over as a slice of it. libpcap still does all
//! live capture.
//!
//! What libpcap rejects, this rejects too, with a message that says where: a record longer
//! than any snapshot length (262144), a file cut inside a record, a pcapng interface with
//! a link type other than the first one's.

use super::{CaptureError, Damage};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

/// Bytes read at once, and the buffer's starting size.
const BUFFER: usize = 1 << 20;
/// The buffer grows (doubling) to hold a record bigger than itself, up to this.
const MAX_BUFFER: usize = 16 << 20;
/// libpcap's MAXIMUM_SNAPLEN: no capture tool writes a longer record.
const MAX_CAPLEN: u32 = 262_144;

/// One packet record, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub ts_sec: i64,
    pub ts_usec: i64,
    /// Length on the wire (the record's `len`/`origlen`).
    pub len: u32,
    pub data: &'a [u8],
}

/// A pcapng interface: what its packets' timestamps mean.
#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: i32,
    /// Timestamp units per second.
    resolution: u64,
    offset_secs: i64,
}

/// Why reading stopped before the end of the file.
#[derive(Debug)]
pub enum ReadError {
    /// What follows the records read so far is not a valid record.
    Damaged(Damage),
}

/// Keeps the `io::Error` behind a failed read, which `pcap-parser` reduces to "read
/// error", and retries reads interrupted by a signal.
struct Source<R> {
    inner: R,
    error: Arc<Mutex<Option<io::Error>>>,
    /// The file header, read ahead to tell the format; handed out by the first read.
    header: Vec<u8>,
}

/// The whole file header's length, from its first bytes. `pcap-parser` wants it whole in
/// its first read, and a pipe may hand over fewer bytes at a time.
fn header_len(start: &[u8]) -> usize {
    const PCAPNG: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    match start.get(..12) {
        // A section header block says its own length, in the byte order of its
        // byte-order magic.
        Some(b) if b[..4] == PCAPNG => {
            let len: [u8; 4] = b[4..8].try_into().unwrap_or_default();
            let len = if b[8..12] == [0x4d, 0x3c, 0x2b, 0x1a] {
                u32::from_le_bytes(len)
            } else {
                u32::from_be_bytes(len)
            };
            (len as usize).max(12)
        }
        Some(_) => 24,
        None => 12,
    }
}

impl<R: Read> Source<R> {
    /// Reads the file header ahead (all of it, or what there is before the end).
    fn read_header(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let want = header_len(&self.header).min(BUFFER);
            if self.header.len() >= want {
                return Ok(());
            }
            let n = (want - self.header.len()).min(buf.len());
            match self.read_once(&mut buf[..n])? {
                0 => return Ok(()),
                got => self.header.extend_from_slice(&buf[..got]),
            }
        }
    }

    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The reader only sees that a read failed; the error itself is kept
                    // for the message.
                    let kind = e.kind();
                    return match self.error.lock() {
                        Ok(mut slot) => {
                            *slot = Some(e);
                            Err(kind.into())
                        }
                        Err(_) => Err(e),
                    };
                }
                ok => return ok,
            }
        }
    }
}

impl<R: Read> Read for Source<R> {
    /// The header read ahead first, then the file: each read returns what one `read(2)`
    /// gives, so a pipe's packets are handed over as they come.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.header.is_empty() {
            return self.read_once(buf);
        }
        let n = self.header.len().min(buf.len());
        buf[..n].copy_from_slice(&self.header[..n]);
        self.header.drain(..n);
        Ok(n)
    }
}

/// The compressor whose magic number `header` starts with, if any: a `.gz` capture is a
/// common mistake, and the tool's name makes the fix obvious.
fn compression(header: &[u8]) -> Option<&'static str> {
    const MAGIC: [(&[u8], &str); 4] = [
        (&[0x1f, 0x8b], "gzip"),
        (b"BZh", "bzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    ];
    MAGIC
        .iter()
        .find(|(magic, _)| header.starts_with(magic))
        .map(|&(_, tool)| tool)
}

/// The formats, by the first four bytes (in the file's own byte order).
enum Format {
    Pcap,
    Pcapng,
}

fn format_of(header: &[u8]) -> Option<Format> {
    let magic: [u8; 4] = header.get(..4)?.try_into().ok()?;
    let le = u32::from_le_bytes(magic);
    let be = u32::from_be_bytes(magic);
    // Microsecond, nanosecond and Kuznetzov's modified pcap, either byte order.
    const PCAP: [u32; 3] = [0xa1b2_c3d4, 0xa1b2_3c4d, 0xa1b2_cd34];
    if PCAP.contains(&le) || PCAP.contains(&be) {
        Some(Format::Pcap)
    } else if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        Some(Format::Pcapng)
    } else {
        None
    }
}

/// An open capture file, positioned at its first packet.
pub struct FileReader {
    inner: Box<dyn PcapReaderIterator + Send>,
    read_error: Arc<Mutex<Option<io::Error>>>,
    /// Classic pcap: the file header's link type and whether times are in nanoseconds.
    legacy: Option<(i32, bool)>,
    /// Classic pcap written on a big-endian machine.
    big_endian: bool,
    /// Classic pcap in Kuznetzov's "modified" format (24-byte record headers).
    modified: bool,
    /// pcapng: the current section's interfaces.
    interfaces: Vec<Interface>,
    /// A pipe, FIFO or other stream (not a regular file): polled before each read, so
    /// that the caller hears when the writer has nothing more for now (see
    /// [`FileReader::read`]).
    stream: Option<OwnedFd>,
}

impl FileReader {
    /// Opens `reader` (named `name` in errors) and reads up to its first packet, so that
    /// the link type is known.
    pub fn open<R: Read + Send + 'static>(
        reader: R,
        name: &str,
    ) -> Result<FileReader, CaptureError> {
        let read_error = Arc::new(Mutex::new(None));
        let mut source = Source {
            inner: reader,
            error: Arc::clone(&read_error),
            header: Vec::new(),
        };
        let not_a_capture = |damage: Damage| CaptureError::NotACapture {
            path: name.to_string(),
            damage,
        };
        source
            .read_header()
            .map_err(|_| not_a_capture(failed_read(&read_error)))?;
        let compressed = compression(&source.header);
        let unrecognised = || {
            not_a_capture(match compressed {
                Some(tool) => Damage::Compressed(tool),
                None => Damage::UnknownFormat,
            })
        };
        let inner: Box<dyn PcapReaderIterator + Send> =
            match (source.header.len(), format_of(&source.header)) {
                (0, _) => return Err(not_a_capture(Damage::Empty)),
                (_, None) => return Err(unrecognised()),
                (got, Some(_)) if got < header_len(&source.header) => {
                    return Err(not_a_capture(Damage::HeaderCut { got }))
                }
                // The reader's one read at creation gets exactly the header read ahead, so
                // creating it never waits on a pipe for packets.
                (_, Some(Format::Pcap)) => {
                    Box::new(LegacyPcapReader::new(BUFFER, source).map_err(|_| unrecognised())?)
                }
                (_, Some(Format::Pcapng)) => {
                    Box::new(PcapNGReader::new(BUFFER, source).map_err(|_| unrecognised())?)
                }
            };
        let mut file = FileReader {
            inner,
            read_error,
            legacy: None,
            big_endian: false,
            modified: false,
            interfaces: Vec::new(),
            stream: None,
        };
        // The headers up to the first packet: the file header, or a section header and its
        // interfaces. The first packet itself stays in the buffer.
        if let Err(ReadError::Damaged(damage)) = file.run(&mut |_| ControlFlow::Continue(()), true)
        {
            return Err(not_a_capture(damage));
        }
        if file.legacy.is_none() && file.interfaces.is_empty() {
            return Err(not_a_capture(Damage::NoInterface));
        }
        Ok(file)
    }

    /// The link type of the file (of its first interface, for pcapng).
    pub fn linktype(&self) -> i32 {
        match (self.legacy, self.interfaces.first()) {
            (Some((link, _)), _) => link,
            (None, Some(i)) => i.linktype,
            (None, None) => 0,
        }
    }

    /// Whether it is read as a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Reads `fd` as a stream (a pipe, a FIFO): before a read that would wait for the
    /// writer, `read` tells its caller.
    pub fn streaming(mut self, fd: OwnedFd) -> FileReader {
        self.stream = Some(fd);
        self
    }

    /// Hands each packet to `each` until it breaks (after taking its packet), the file
    /// ends, or the file turns out damaged. From a stream, `each` also gets `None` when
    /// the next read would wait for the writer: what it holds should go out now, as a
    /// slow writer (`tcpdump -U -w - |`) may not write again for a long time.
    pub fn read(
        &mut self,
        each: &mut impl FnMut(Option<Packet<'_>>) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        match self.legacy {
            // `open` has read the file header: only records follow.
            Some((_, nanos)) => self.run_records(each, nanos),
            None => self.run(each, false),
        }
    }

    /// Classic pcap's records, parsed straight from the reader's buffer with
    /// `pcap-parser`'s record parser. Going through its `next()` built a block enum
    /// (sized for pcapng's blocks) per record: 9 % of a replay's samples.
    fn run_records(
        &mut self,
        each: &mut impl FnMut(Option<Packet<'_>>) -> ControlFlow<()>,
        nanos: bool,
    ) -> Result<(), ReadError> {
        use pcap_parser::nom;
        use pcap_parser::pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified};
        let parse = match (self.modified, self.big_endian) {
            (true, _) => parse_pcap_frame_modified,
            (false, true) => parse_pcap_frame_be,
            (false, false) => parse_pcap_frame,
        };
        loop {
            let data = self.inner.data();
            match parse(data) {
                Ok((rest, b)) => {
                    if b.caplen > MAX_CAPLEN {
                        return Err(too_long(b.caplen));
                    }
                    let offset = data.len() - rest.len();
                    let usec = if nanos { b.ts_usec / 1000 } else { b.ts_usec };
                    let flow = each(Some(Packet {
                        ts_sec: i64::from(b.ts_sec),
                        ts_usec: i64::from(usec),
                        len: b.origlen,
                        data: b.data,
                    }));
                    self.consume(offset);
                    if flow.is_break() {
                        return Ok(());
                    }
                }
                Err(nom::Err::Incomplete(_)) => {
                    let (have, exhausted) = (data.len(), self.inner.reader_exhausted());
                    match (have, exhausted) {
                        (0, true) => return Ok(()),
                        (_, true) => return Err(self.cut_record()),
                        (_, false) => {}
                    }
                    // A record is at most 16 + MAX_CAPLEN bytes, which the buffer always
                    // holds: refilling makes room. A longer one is damage, said now.
                    if let Some(caplen) = self.record_caplen(data) {
                        if caplen > MAX_CAPLEN {
                            return Err(too_long(caplen));
                        }
                    }
                    if self.before_waiting(each).is_break() {
                        return Ok(());
                    }
                    self.refill()?;
                }
                Err(_) => {
                    return Err(ReadError::Damaged(Damage::UnreadableRecord));
                }
            }
        }
    }

    /// pcapng's blocks for `read`, or with `headers_only` those before the next packet,
    /// which is left in the buffer. For classic pcap only the file header: it stops at the
    /// first record, for `run_records`.
    fn run(
        &mut self,
        each: &mut impl FnMut(Option<Packet<'_>>) -> ControlFlow<()>,
        headers_only: bool,
    ) -> Result<(), ReadError> {
        loop {
            let (offset, flow) = match self.inner.next() {
                Ok((offset, block)) => match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        self.legacy = Some((h.network.0, h.is_nanosecond_precision()));
                        self.big_endian = h.is_bigendian();
                        self.modified = h.is_modified_format();
                        (offset, ControlFlow::Continue(()))
                    }
                    // The first record: the header is read, and `run_records` reads the
                    // records (this one included: it stays in the buffer).
                    PcapBlockOwned::Legacy(_) => return Ok(()),
                    PcapBlockOwned::NG(block) => match block {
                        Block::SectionHeader(_) => {
                            self.interfaces.clear();
                            (offset, ControlFlow::Continue(()))
                        }
                        Block::InterfaceDescription(idb) => {
                            let linktype = idb.linktype.0;
                            let first_link = self.interfaces.first().map(|i| i.linktype);
                            if first_link.is_some_and(|first| first != linktype) {
                                return Err(ReadError::Damaged(Damage::MixedLinkTypes {
                                    index: self.interfaces.len(),
                                    linktype,
                                    first: first_link.unwrap_or_default(),
                                }));
                            }
                            self.interfaces.push(Interface {
                                linktype,
                                resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                                offset_secs: idb.ts_offset(),
                            });
                            (offset, ControlFlow::Continue(()))
                        }
                        Block::EnhancedPacket(epb) => {
                            let Some(iface) = self.interfaces.get(epb.if_id as usize).copied()
                            else {
                                return Err(ReadError::Damaged(Damage::UndescribedInterface(
                                    epb.if_id,
                                )));
                            };
                            if epb.caplen > MAX_CAPLEN {
                                return Err(too_long(epb.caplen));
                            }
                            let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let secs = ticks / iface.resolution;
                            let frac = ticks % iface.resolution;
                            let usec = u128::from(frac) * 1_000_000 / u128::from(iface.resolution);
                            let packet = Packet {
                                ts_sec: i64::try_from(secs)
                                    .unwrap_or(i64::MAX)
                                    .saturating_add(iface.offset_secs),
                                ts_usec: usec as i64,
                                len: epb.origlen,
                                data: pcap_parser::traits::PcapNGPacketBlock::packet_data(&epb),
                            };
                            if headers_only {
                                return Ok(());
                            }
                            (offset, each(Some(packet)))
                        }
                        // No timestamp: libpcap gives such packets time 0 too.
                        Block::SimplePacket(spb) => {
                            let packet = Packet {
                                ts_sec: 0,
                                ts_usec: 0,
                                len: spb.origlen,
                                data: pcap_parser::traits::PcapNGPacketBlock::packet_data(&spb),
                            };
                            if headers_only {
                                return Ok(());
                            }
                            (offset, each(Some(packet)))
                        }
                        // Name resolution, statistics, comments, custom and unknown blocks
                        // say nothing about connections.
                        _ => (offset, ControlFlow::Continue(())),
                    },
                },
                Err(PcapError::Eof) => return Ok(()),
                Err(PcapError::Incomplete(_)) => {
                    if !headers_only && self.before_waiting(each).is_break() {
                        return Ok(());
                    }
                    self.refill()?;
                    continue;
                }
                Err(PcapError::BufferTooSmall) => {
                    let bigger = self.inner.data().len().max(BUFFER) * 2;
                    if bigger > MAX_BUFFER || !self.inner.grow(bigger) {
                        return Err(ReadError::Damaged(Damage::BlockTooLong {
                            max_mib: MAX_BUFFER >> 20,
                        }));
                    }
                    self.refill()?;
                    continue;
                }
                Err(PcapError::UnexpectedEof) => return Err(self.cut_record()),
                Err(PcapError::ReadError) => {
                    return Err(ReadError::Damaged(failed_read(&self.read_error)))
                }
                Err(e) => {
                    return Err(ReadError::Damaged(Damage::UnreadableBlock(
                        e.to_owned_vec(),
                    )))
                }
            };
            self.consume(offset);
            if flow.is_break() {
                return Ok(());
            }
        }
    }

    fn consume(&mut self, offset: usize) {
        // No shift here: `refill` moves the unread tail once per buffer, not per record.
        self.inner.consume_noshift(offset);
    }

    /// A classic pcap record's captured length, from its header at the start of `data`.
    fn record_caplen(&self, data: &[u8]) -> Option<u32> {
        let field: [u8; 4] = data.get(8..12)?.try_into().ok()?;
        self.legacy.map(|_| {
            if self.big_endian {
                u32::from_be_bytes(field)
            } else {
                u32::from_le_bytes(field)
            }
        })
    }

    /// The file ends inside a record: say how much of it is missing, as libpcap does
    /// ("truncated dump file; tried to read 66 captured bytes, only got 33").
    fn cut_record(&self) -> ReadError {
        let left = self.inner.data();
        let caplen = self.record_caplen(left).filter(|_| left.len() >= 16);
        ReadError::Damaged(match caplen {
            Some(caplen) => Damage::CutRecord {
                caplen,
                left: left.len() - 16,
            },
            None => Damage::EndsInRecord(left.len()),
        })
    }

    /// From a stream, before a refill: if the writer has nothing ready, the next read
    /// would wait for it, so `each` hears `None` first.
    fn before_waiting(
        &self,
        each: &mut impl FnMut(Option<Packet<'_>>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let Some(fd) = &self.stream else {
            return ControlFlow::Continue(());
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => each(None),
            _ => ControlFlow::Continue(()),
        }
    }

    fn refill(&mut self) -> Result<(), ReadError> {
        self.inner
            .refill()
            .map_err(|_| ReadError::Damaged(failed_read(&self.read_error)))
    }
}

fn too_long(caplen: u32) -> ReadError {
    ReadError::Damaged(Damage::RecordTooLong {
        caplen,
        max: MAX_CAPLEN,
    })
}

/// The failed read's own error, kept by [`Source`] (`pcap-parser` only says "read
/// error").
fn failed_read(slot: &Mutex<Option<io::Error>>) -> Damage {
    match slot.lock().ok().and_then(|mut e| e.take()) {
        Some(e) => Damage::Read(e),
        None => Damage::ReadUnknown,
    }
}

#[cfg(test)]
mod tests;

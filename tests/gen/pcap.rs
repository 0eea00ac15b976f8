//! The generator's per-packet pcap writer: the headers come from `wire` (the one pcap
//! builder), but each record is filled into one reused buffer in place (a debug build
//! writes a million packets in about a second) instead of building each frame in a `Vec`
//! as `wire` does for the few packets of a hand-made test.
//!
//! The format is written with `std`, not `pcap::Capture::dead(..).savefile(..)`: it is
//! two fixed little headers, and this needs no libpcap, no FFI call per packet, and can
//! stream into any `Write`.

use crate::wire::{file_header, record_header};
use std::io::{self, Write};
use std::net::IpAddr;

pub const LINKTYPE_ETHERNET: u32 = 1;
/// Global snaplen: the deepest headers written (14 + 40 + 40) fit.
pub(super) const SNAPLEN: u32 = 128;
/// 2023-11-14 22:13:20 UTC: any fixed start keeps files identical run to run.
pub(super) const START_US: u64 = 1_700_000_000_000_000;

pub(super) struct PcapOut<W: Write> {
    out: W,
    buf: [u8; 16 + SNAPLEN as usize],
    pub(super) written: u64,
    first_ts: Option<u64>,
    last_ts: u64,
}

/// One TCP segment to write.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tcp {
    pub(super) src: IpAddr,
    pub(super) sport: u16,
    pub(super) dst: IpAddr,
    pub(super) dport: u16,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: u8,
    pub(super) window: u16,
    pub(super) payload: u32,
    /// SYN / SYN-ACK options (MSS, SACK permitted, timestamps, window scale) instead of
    /// the timestamps-only option block of an established segment.
    pub(super) syn_options: bool,
    pub(super) tsval: u32,
    pub(super) tsecr: u32,
}

pub(super) const FIN: u8 = 0x01;
pub(super) const SYN: u8 = 0x02;
pub(super) const RST: u8 = 0x04;
pub(super) const PSH: u8 = 0x08;
pub(super) const ACK: u8 = 0x10;

impl<W: Write> PcapOut<W> {
    pub(super) fn new(mut out: W) -> io::Result<PcapOut<W>> {
        out.write_all(&file_header(LINKTYPE_ETHERNET, SNAPLEN))?;
        Ok(PcapOut {
            out,
            buf: [0; 16 + SNAPLEN as usize],
            written: 0,
            first_ts: None,
            last_ts: 0,
        })
    }

    /// Writes one record: the headers of `t` (caplen), the length it would have with its
    /// payload (len).
    pub(super) fn tcp(&mut self, ts_us: u64, t: &Tcp) -> io::Result<()> {
        let b = &mut self.buf;
        let mut at = 16;
        // Ethernet: zero MACs (Linux lo), then the ethertype.
        b[at..at + 12].fill(0);
        at += 12;
        let v6 = t.src.is_ipv6();
        b[at..at + 2].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
        at += 2;
        let tcp_len: usize = if t.syn_options { 40 } else { 32 };
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = 20 + tcp_len as u32 + t.payload;
                let ip = &mut b[at..at + 20];
                ip[0] = 0x45;
                ip[1] = 0;
                ip[2..4].copy_from_slice(&(total.min(65535) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&((t.seq ^ t.ack) as u16).to_be_bytes()); // id
                ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
                ip[8] = 64;
                ip[9] = 6;
                ip[10..12].fill(0);
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                at += 20;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let plen = tcp_len as u32 + t.payload;
                let ip = &mut b[at..at + 40];
                ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
                ip[4..6].copy_from_slice(&(plen.min(65535) as u16).to_be_bytes());
                ip[6] = 6;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                at += 40;
            }
            _ => unreachable!("a segment's endpoints are of one family"),
        }
        let tcp = &mut b[at..at + tcp_len];
        tcp[0..2].copy_from_slice(&t.sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&t.dport.to_be_bytes());
        tcp[4..8].copy_from_slice(&t.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&t.ack.to_be_bytes());
        tcp[12] = ((tcp_len / 4) as u8) << 4;
        tcp[13] = t.flags;
        tcp[14..16].copy_from_slice(&t.window.to_be_bytes());
        tcp[16..20].fill(0); // checksum, urgent pointer
        let o = &mut tcp[20..];
        if t.syn_options {
            // Linux's order: MSS, SACK permitted, timestamps, NOP, window scale.
            o[0..4].copy_from_slice(&[2, 4, 0xff, 0xd7]); // MSS 65495 (lo's MTU)
            o[4..6].copy_from_slice(&[4, 2]);
            o[6] = 8;
            o[7] = 10;
            o[8..12].copy_from_slice(&t.tsval.to_be_bytes());
            o[12..16].copy_from_slice(&t.tsecr.to_be_bytes());
            o[16..20].copy_from_slice(&[1, 3, 3, 7]);
        } else {
            o[0..2].copy_from_slice(&[1, 1]);
            o[2] = 8;
            o[3] = 10;
            o[4..8].copy_from_slice(&t.tsval.to_be_bytes());
            o[8..12].copy_from_slice(&t.tsecr.to_be_bytes());
        }
        at += tcp_len;
        let caplen = (at - 16) as u32;
        let len = caplen + t.payload;
        b[0..16].copy_from_slice(&record_header(ts_us, caplen, len));
        self.out.write_all(&b[..at])?;
        self.written += 1;
        self.first_ts.get_or_insert(ts_us);
        self.last_ts = ts_us;
        Ok(())
    }

    pub(super) fn span_us(&self) -> u64 {
        self.first_ts.map_or(0, |f| self.last_ts - f)
    }
}

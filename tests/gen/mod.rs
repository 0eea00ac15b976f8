//! A deterministic generator of large captures for load tests and soak benchmarks:
//! [`generate`] and [`generate_file`]. The same code is the `gen_capture` example:
//!
//! ```sh
//! cargo run --release --example gen_capture -- --packets 1000000 --out /tmp/mix.pcap
//! cargo run --release --example gen_capture -- --packets 1000000 --out /tmp/flood.pcap --mode synflood
//! ```
//!
//! Options: `--packets N` (exactly N packet records are written), `--out FILE`,
//! `--port PORT` (default 61999), `--seed S` (default 1), `--mode mix|synflood`
//! (default `mix`). The counts of what was written go to stderr at the end, as one
//! `gen_capture: {…}` JSON object, so a test can compare them with portsniff's summary.
//!
//! The file is classic pcap (microsecond timestamps) with Linux-loopback Ethernet frames
//! (linktype 1: 14-byte header, zero MACs, ethertype 0x0800 or 0x86dd), as `tcpdump -i lo`
//! writes them. IPv4 total length, IPv6 payload length and TCP data offset are right;
//! checksums are zero (portsniff never checks them: loopback checksums are offloaded).
//!
//! Each record holds the headers only (caplen = link + IP + TCP header, len = the whole
//! packet, global snaplen 128), exactly what `tcpdump -s 128` keeps: portsniff takes
//! payload sizes from the IP header, and leaving the payload bytes out keeps a 10M-packet
//! file near 1 GB instead of several.
//!
//! Written by `pcap.rs` on `wire`'s pcap headers (no libpcap), into any `Write`: the load
//! and view tests generate into a file or memory, `examples/gen_capture.rs` is the command
//! line over [`generate_file`].
//!
//! Modes:
//! - `mix`: several hundred concurrent, interleaved connections to the port: ~91 % clean
//!   exchanges (SYN with MSS/SACK/TS/WS options, SYN-ACK, ACK, a request, a response in
//!   1–4 segments, FIN/ACK both ways, the client closing first in ~85 % of them), ~3 %
//!   refused (SYN → RST/ACK), ~3 % unanswered (the SYN retransmitted at +1 s and +3 s),
//!   ~3 % reset mid-stream (by the server in ~70 % of them); ~10 % of the connections over
//!   IPv6 (`[::1]`). About 10 % of all packets are background traffic on other ports:
//!   data and ACKs of a few long-lived connections, and now and then a SYN to another
//!   port (portsniff counts those as SYNs elsewhere; the rest it skips as other_port).
//! - `synflood`: N SYNs from N distinct client endpoints (`10.x.y.z:port`) to
//!   `127.0.0.1:PORT`, 1 µs apart, never answered.
//!
//! Every connection the generator starts is finished within the N packets (it stops
//! starting new ones when their packets would not fit, then pads with background
//! traffic), so each one has exactly the outcome it was generated for. Client endpoints
//! are never reused, so no connection is a port reuse: beyond the ephemeral range of
//! 127.0.0.1 (or `::1`) the clients move on to 127.0.0.2, … (or `::2`, …).
#![allow(dead_code)] // each test binary that declares it uses its own subset

mod mix;
pub mod pcap;

use mix::Mix;
use pcap::{PcapOut, Tcp, START_US, SYN};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Mix,
    SynFlood,
}

/// Generation parameters (the command line, or a test).
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// Exactly this many packet records are written.
    pub packets: u64,
    pub port: u16,
    pub seed: u64,
    pub mode: Mode,
}

impl GenOptions {
    pub fn new(packets: u64, mode: Mode) -> GenOptions {
        GenOptions {
            packets,
            port: DEFAULT_PORT,
            seed: 1,
            mode,
        }
    }
}

pub const DEFAULT_PORT: u16 = 61999;

/// What was written: the expected answers for portsniff's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packet records in the file.
    pub packets: u64,
    /// Packets of connections to the port.
    pub port_packets: u64,
    /// Packets on other ports (all of them, SYNs included).
    pub background_packets: u64,
    /// Of those, SYNs to other ports: portsniff counts them as `syns_elsewhere` (and
    /// they pass its live BPF filter); the others it skips as `other_port`.
    pub background_syns: u64,
    /// Connections to the port.
    pub flows: u64,
    pub ipv6_flows: u64,
    pub closed: u64,
    pub closed_client_first: u64,
    pub closed_server_first: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub reset: u64,
    pub reset_by_client: u64,
    pub reset_by_server: u64,
    /// Retransmitted SYNs (beyond each connection's first).
    pub syn_retransmits: u64,
    /// Most connections to the port open at once (unanswered ones included).
    pub peak_concurrent: u64,
    /// Capture time from the first packet to the last, in µs.
    pub span_us: u64,
}

impl Counts {
    /// Connections whose outcome is a problem.
    pub fn problems(&self) -> u64 {
        self.refused + self.unanswered + self.reset
    }
}

impl fmt::Display for Counts {
    /// One JSON object, the field names of the struct.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{\"packets\":{},\"port_packets\":{},\"background_packets\":{},\
             \"background_syns\":{},\"flows\":{},\"ipv6_flows\":{},\"closed\":{},\
             \"closed_client_first\":{},\"closed_server_first\":{},\"refused\":{},\
             \"unanswered\":{},\"reset\":{},\"reset_by_client\":{},\"reset_by_server\":{},\
             \"syn_retransmits\":{},\"peak_concurrent\":{},\"span_us\":{}}}",
            self.packets,
            self.port_packets,
            self.background_packets,
            self.background_syns,
            self.flows,
            self.ipv6_flows,
            self.closed,
            self.closed_client_first,
            self.closed_server_first,
            self.refused,
            self.unanswered,
            self.reset,
            self.reset_by_client,
            self.reset_by_server,
            self.syn_retransmits,
            self.peak_concurrent,
            self.span_us
        )
    }
}

/// Writes the capture to `path`.
pub fn generate_file(opts: &GenOptions, path: &Path) -> io::Result<Counts> {
    let file = File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let counts = generate(opts, &mut out)?;
    out.flush()?;
    Ok(counts)
}

/// Writes the capture to `out` (buffer it: one small write per packet).
pub fn generate<W: Write>(opts: &GenOptions, out: W) -> io::Result<Counts> {
    let mut w = PcapOut::new(out)?;
    match opts.mode {
        Mode::Mix => Mix::new(opts).run(&mut w),
        Mode::SynFlood => synflood(opts, &mut w),
    }
}

// ---------------------------------------------------------------------------------------
// PRNG

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for traffic shapes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `per_mille`/1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }
}

// ---------------------------------------------------------------------------------------
// synflood

fn synflood<W: Write>(opts: &GenOptions, w: &mut PcapOut<W>) -> io::Result<Counts> {
    let mut rng = Rng::new(opts.seed);
    let server = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const PORTS: u64 = 50_000;
    for k in 0..opts.packets {
        // 10.0.0.0/8: 50,000 source ports per address, addresses counted up from 10.0.0.1.
        let host = 0x0a00_0001u32 + (k / PORTS) as u32;
        let sport = 10_000 + (k % PORTS) as u16;
        let ts = START_US + k;
        w.tcp(
            ts,
            &Tcp {
                src: IpAddr::V4(Ipv4Addr::from(host)),
                sport,
                dst: server,
                dport: opts.port,
                seq: rng.next_u32(),
                ack: 0,
                flags: SYN,
                window: 64_240,
                payload: 0,
                syn_options: true,
                tsval: (ts / 1000) as u32,
                tsecr: 0,
            },
        )?;
    }
    Ok(Counts {
        packets: w.written,
        port_packets: w.written,
        flows: w.written,
        unanswered: w.written,
        peak_concurrent: w.written,
        span_us: w.span_us(),
        ..Counts::default()
    })
}

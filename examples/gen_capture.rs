//! A deterministic generator of large captures for load tests and soak benchmarks.
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
//! The pcap format is written directly with `std` rather than through
//! `pcap::Capture::dead(..).savefile(..)`: the format is two fixed little headers, this
//! avoids one FFI call and one libpcap-owned copy per packet (1M packets take well under
//! a second), needs no libpcap at generation time, and lets the load tests include this
//! file as a module and stream a capture into any `Write`.
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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

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
// pcap writing

const LINKTYPE_ETHERNET: u32 = 1;
/// Global snaplen: the deepest headers written (14 + 40 + 40) fit.
const SNAPLEN: u32 = 128;
/// 2023-11-14 22:13:20 UTC: any fixed start keeps files identical run to run.
const START_US: u64 = 1_700_000_000_000_000;

struct PcapOut<W: Write> {
    out: W,
    buf: [u8; 16 + SNAPLEN as usize],
    written: u64,
    first_ts: Option<u64>,
    last_ts: u64,
}

/// One TCP segment to write.
#[derive(Clone, Copy, Debug)]
struct Tcp {
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: u32,
    /// SYN / SYN-ACK options (MSS, SACK permitted, timestamps, window scale) instead of
    /// the timestamps-only option block of an established segment.
    syn_options: bool,
    tsval: u32,
    tsecr: u32,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

impl<W: Write> PcapOut<W> {
    fn new(mut out: W) -> io::Result<PcapOut<W>> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // µs timestamps
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone 0, sigfigs 0
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
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
    fn tcp(&mut self, ts_us: u64, t: &Tcp) -> io::Result<()> {
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
        b[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        b[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        b[8..12].copy_from_slice(&caplen.to_le_bytes());
        b[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&b[..at])?;
        self.written += 1;
        self.first_ts.get_or_insert(ts_us);
        self.last_ts = ts_us;
        Ok(())
    }

    fn span_us(&self) -> u64 {
        self.first_ts.map_or(0, |f| self.last_ts - f)
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

// ---------------------------------------------------------------------------------------
// mix

/// Connections to the port kept going at once (not counting unanswered ones waiting for
/// their SYN retransmissions).
const CONCURRENT: usize = 400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Closed { client_first: bool },
    Refused,
    Unanswered,
    Reset { by_client: bool },
}

/// One planned packet of a connection.
#[derive(Clone, Copy, Debug)]
struct Step {
    /// After the connection's previous packet.
    delay_us: u64,
    from_client: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: u32,
}

struct Conn {
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    steps: Vec<Step>,
    next: usize,
    waits: bool,
}

/// A long-lived connection on another port, carrying background data and ACKs.
struct Background {
    a: (IpAddr, u16),
    b: (IpAddr, u16),
    seq: [u32; 2],
}

struct Mix {
    rng: Rng,
    port: u16,
    budget: u64,
    now: u64,
    counts: Counts,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// (due time, tie-break, slot).
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    order: u64,
    active: usize,
    open: u64,
    /// Packets written plus packets still planned for open connections.
    committed: u64,
    next_client: [u64; 2],
    client_ports: Vec<u16>,
    background: Vec<Background>,
    background_syn_port: u16,
}

impl Mix {
    fn new(opts: &GenOptions) -> Mix {
        let mut rng = Rng::new(opts.seed);
        // Linux's ephemeral range, without the watched port, visited in a scattered
        // order (a stride coprime to the range's length).
        let ports: Vec<u16> = (32_768..=60_999u16).filter(|&p| p != opts.port).collect();
        let n = ports.len();
        let stride = (1..n)
            .rev()
            .find(|s| gcd(*s, n) == 1 && *s < n / 3)
            .unwrap_or(1);
        let client_ports = (0..n).map(|i| ports[(i * stride) % n]).collect();
        let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut background = Vec::new();
        for (i, sport) in [22u16, 5432, 6379, 8080, 443, 3306, 9200, 11211]
            .into_iter()
            .filter(|&p| p != opts.port)
            .enumerate()
        {
            let ip = if i % 4 == 3 { lo6 } else { lo4 };
            let cport = 20_000 + i as u16;
            let cport = if cport == opts.port {
                cport + 100
            } else {
                cport
            };
            background.push(Background {
                a: (ip, cport),
                b: (ip, sport),
                seq: [rng.next_u32(), rng.next_u32()],
            });
        }
        Mix {
            rng,
            port: opts.port,
            budget: opts.packets,
            now: START_US,
            counts: Counts::default(),
            conns: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            order: 0,
            active: 0,
            open: 0,
            committed: 0,
            next_client: [0; 2],
            client_ports,
            background,
            background_syn_port: if opts.port == 8081 { 8082 } else { 8081 },
        }
    }

    fn run<W: Write>(mut self, w: &mut PcapOut<W>) -> io::Result<Counts> {
        let mut starting = true;
        loop {
            while starting && self.active < CONCURRENT {
                starting = self.start_conn();
            }
            let Some(Reverse((due, _, slot))) = self.heap.pop() else {
                break;
            };
            // A few µs per packet, or a jump to the next one due when all are waiting.
            self.now = (self.now + self.rng.range(1, 5)).max(due);
            self.emit(w, slot)?;
            // ~10 % of all packets: one background packet per nine of the port's.
            if self.committed < self.budget && self.rng.next_u64() % 9 == 0 {
                self.committed += 1;
                self.now += self.rng.range(1, 5);
                self.background_packet(w)?;
            }
        }
        while w.written < self.budget {
            self.now += self.rng.range(1, 5);
            self.background_packet(w)?;
        }
        self.counts.packets = w.written;
        self.counts.span_us = w.span_us();
        Ok(self.counts)
    }

    /// Plans one connection and schedules its first packet; false (and nothing started)
    /// once its packets would not fit in the budget.
    fn start_conn(&mut self) -> bool {
        let r = self.rng.next_u64() % 1000;
        let kind = if r < 30 {
            Kind::Refused
        } else if r < 60 {
            Kind::Unanswered
        } else if r < 90 {
            Kind::Reset {
                by_client: self.rng.chance(300),
            }
        } else {
            Kind::Closed {
                client_first: self.rng.chance(850),
            }
        };
        let steps = self.plan(kind);
        if self.committed + steps.len() as u64 > self.budget {
            return false;
        }
        self.committed += steps.len() as u64;
        let v6 = self.rng.chance(100);
        let client = self.client_endpoint(v6);
        let server_ip = if v6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let c = &mut self.counts;
        c.flows += 1;
        c.ipv6_flows += u64::from(v6);
        match kind {
            Kind::Closed { client_first } => {
                c.closed += 1;
                if client_first {
                    c.closed_client_first += 1;
                } else {
                    c.closed_server_first += 1;
                }
            }
            Kind::Refused => c.refused += 1,
            Kind::Unanswered => {
                c.unanswered += 1;
                c.syn_retransmits += 2;
            }
            Kind::Reset { by_client } => {
                c.reset += 1;
                if by_client {
                    c.reset_by_client += 1;
                } else {
                    c.reset_by_server += 1;
                }
            }
        }
        let waits = kind == Kind::Unanswered;
        let first_delay = steps[0].delay_us;
        let conn = Conn {
            client,
            server: (server_ip, self.port),
            steps,
            next: 0,
            waits,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.conns[s] = Some(conn);
                s
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        if !waits {
            self.active += 1;
        }
        self.open += 1;
        self.counts.peak_concurrent = self.counts.peak_concurrent.max(self.open);
        self.schedule(self.now + first_delay, slot);
        true
    }

    fn schedule(&mut self, due: u64, slot: usize) {
        self.order += 1;
        self.heap.push(Reverse((due, self.order, slot)));
    }

    /// The next unused client endpoint of a family.
    fn client_endpoint(&mut self, v6: bool) -> (IpAddr, u16) {
        let k = self.next_client[usize::from(v6)];
        self.next_client[usize::from(v6)] += 1;
        let n = self.client_ports.len() as u64;
        let port = self.client_ports[(k % n) as usize];
        let host = k / n + 1;
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(u128::from(host)))
        } else {
            IpAddr::V4(Ipv4Addr::from(0x7f00_0000u32 + host as u32))
        };
        (ip, port)
    }

    /// The packets of one connection, with the gaps between them.
    fn plan(&mut self, kind: Kind) -> Vec<Step> {
        let rng = &mut self.rng;
        let ci = rng.next_u32();
        let si = rng.next_u32();
        let mut v = Vec::with_capacity(16);
        let mut step =
            |delay_us: u64, from_client: bool, flags: u8, seq: u32, ack: u32, payload: u32| {
                v.push(Step {
                    delay_us,
                    from_client,
                    flags,
                    seq,
                    ack,
                    payload,
                })
            };
        // Start within the next 50 µs.
        step(rng.range(0, 50), true, SYN, ci, 0, 0);
        match kind {
            Kind::Refused => step(rng.range(5, 30), false, RST | ACK, 0, ci.wrapping_add(1), 0),
            Kind::Unanswered => {
                // Linux's backoff: the first retransmission after 1 s, the next 2 s later.
                step(1_000_000 + rng.range(0, 2_000), true, SYN, ci, 0, 0);
                step(2_000_000 + rng.range(0, 4_000), true, SYN, ci, 0, 0);
            }
            Kind::Closed { .. } | Kind::Reset { .. } => {
                let (mut c, mut s) = (ci.wrapping_add(1), si.wrapping_add(1));
                step(rng.range(10, 60), false, SYN | ACK, si, c, 0);
                step(rng.range(5, 40), true, ACK, c, s, 0);
                let req = rng.range(40, 1_000) as u32;
                step(rng.range(20, 500), true, PSH | ACK, c, s, req);
                c = c.wrapping_add(req);
                if let Kind::Reset { by_client } = kind {
                    // The server answers part of it, then one side aborts.
                    if rng.chance(500) {
                        let part = rng.range(100, 4_000) as u32;
                        step(rng.range(50, 2_000), false, PSH | ACK, s, c, part);
                        s = s.wrapping_add(part);
                    }
                    if by_client {
                        step(rng.range(50, 3_000), true, RST | ACK, c, s, 0);
                    } else {
                        step(rng.range(50, 3_000), false, RST | ACK, s, c, 0);
                    }
                    return v;
                }
                if rng.chance(500) {
                    step(rng.range(5, 40), false, ACK, s, c, 0);
                }
                let segments = rng.range(1, 4);
                for i in 0..segments {
                    let len = rng.range(100, 16_000) as u32;
                    let gap = if i == 0 {
                        rng.range(100, 5_000)
                    } else {
                        rng.range(10, 100)
                    };
                    step(gap, false, PSH | ACK, s, c, len);
                    s = s.wrapping_add(len);
                }
                step(rng.range(5, 40), true, ACK, c, s, 0);
                let Kind::Closed { client_first } = kind else {
                    unreachable!()
                };
                // The first closer's FIN, the other side's ACK and FIN (separate, or one
                // segment when the application closes at once), the first closer's ACK.
                let (mut first, mut second) = if client_first { (c, s) } else { (s, c) };
                step(
                    rng.range(50, 2_000),
                    client_first,
                    FIN | ACK,
                    first,
                    second,
                    0,
                );
                first = first.wrapping_add(1);
                if rng.chance(500) {
                    step(rng.range(5, 40), !client_first, ACK, second, first, 0);
                    step(
                        rng.range(10, 500),
                        !client_first,
                        FIN | ACK,
                        second,
                        first,
                        0,
                    );
                } else {
                    step(
                        rng.range(10, 100),
                        !client_first,
                        FIN | ACK,
                        second,
                        first,
                        0,
                    );
                }
                second = second.wrapping_add(1);
                step(rng.range(5, 40), client_first, ACK, first, second, 0);
            }
        }
        v
    }

    /// Writes the next packet of the connection in `slot` and schedules the one after.
    fn emit<W: Write>(&mut self, w: &mut PcapOut<W>, slot: usize) -> io::Result<()> {
        let now = self.now;
        let conn = self.conns[slot].as_mut().expect("a scheduled connection");
        let s = conn.steps[conn.next];
        conn.next += 1;
        let ((src, sport), (dst, dport)) = if s.from_client {
            (conn.client, conn.server)
        } else {
            (conn.server, conn.client)
        };
        let syn = s.flags & SYN != 0;
        let ms = (now / 1000) as u32;
        w.tcp(
            now,
            &Tcp {
                src,
                sport,
                dst,
                dport,
                seq: s.seq,
                ack: s.ack,
                flags: s.flags,
                window: if syn { 65_483 } else { 512 },
                payload: s.payload,
                syn_options: syn,
                tsval: ms.wrapping_add(if s.from_client { 0 } else { 7_777 }),
                tsecr: if s.flags & ACK != 0 { ms } else { 0 },
            },
        )?;
        self.counts.port_packets += 1;
        match conn.steps.get(conn.next) {
            Some(next) => {
                let due = now + next.delay_us;
                self.schedule(due, slot);
            }
            None => {
                if !conn.waits {
                    self.active -= 1;
                }
                self.open -= 1;
                self.conns[slot] = None;
                self.free.push(slot);
            }
        }
        Ok(())
    }

    /// One packet on another port: data or an ACK of a long-lived connection, or (1 in
    /// 50) a SYN to another port that nobody answers.
    fn background_packet<W: Write>(&mut self, w: &mut PcapOut<W>) -> io::Result<()> {
        let now = self.now;
        let ms = (now / 1000) as u32;
        self.counts.background_packets += 1;
        if self.rng.chance(20) {
            self.counts.background_syns += 1;
            let v6 = self.rng.chance(100);
            let (src, dst) = if v6 {
                (
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                )
            } else {
                (
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                )
            };
            let sport = 1_024 + (self.rng.next_u64() % 30_000) as u16;
            return w.tcp(
                now,
                &Tcp {
                    src,
                    sport,
                    dst,
                    dport: self.background_syn_port,
                    seq: self.rng.next_u32(),
                    ack: 0,
                    flags: SYN,
                    window: 65_483,
                    payload: 0,
                    syn_options: true,
                    tsval: ms,
                    tsecr: 0,
                },
            );
        }
        let i = (self.rng.next_u64() % self.background.len() as u64) as usize;
        let data = self.rng.chance(600);
        let from_a = self.rng.chance(500);
        let payload = if data {
            self.rng.range(1, 8_000) as u32
        } else {
            0
        };
        let bg = &mut self.background[i];
        let (d, o) = if from_a { (0, 1) } else { (1, 0) };
        let ((src, sport), (dst, dport)) = if from_a { (bg.a, bg.b) } else { (bg.b, bg.a) };
        let (seq, ack) = (bg.seq[d], bg.seq[o]);
        bg.seq[d] = seq.wrapping_add(payload);
        w.tcp(
            now,
            &Tcp {
                src,
                sport,
                dst,
                dport,
                seq,
                ack,
                flags: if data { PSH | ACK } else { ACK },
                window: 512,
                payload,
                syn_options: false,
                tsval: ms,
                tsecr: ms,
            },
        )
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

// ---------------------------------------------------------------------------------------
// command line

const USAGE: &str = "usage: gen_capture --packets N --out FILE [--port PORT] [--seed S] \
                     [--mode mix|synflood]";

/// Parses the command line (without the program name).
#[allow(dead_code)] // the load tests include this file for `generate` only
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<(GenOptions, PathBuf), String> {
    let mut opts = GenOptions::new(0, Mode::Mix);
    let mut packets = None;
    let mut out = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn fmt::Display| format!("bad value {value:?} for {flag}: {e}\n{USAGE}");
        match flag.as_str() {
            "--packets" => packets = Some(value.parse::<u64>().map_err(|e| bad(&e))?),
            "--out" => out = Some(PathBuf::from(&value)),
            "--port" => {
                opts.port = value.parse::<u16>().map_err(|e| bad(&e))?;
                if opts.port == 0 {
                    return Err(bad(&"port 0"));
                }
            }
            "--seed" => opts.seed = value.parse::<u64>().map_err(|e| bad(&e))?,
            "--mode" => {
                opts.mode = match value.as_str() {
                    "mix" => Mode::Mix,
                    "synflood" => Mode::SynFlood,
                    _ => return Err(bad(&"expected mix or synflood")),
                }
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    opts.packets = packets.ok_or_else(|| format!("--packets is required\n{USAGE}"))?;
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    Ok((opts, out))
}

#[allow(dead_code)] // unused when the load tests include this file as a module
fn main() {
    let (opts, path) = match parse_args(std::env::args().skip(1)) {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    match generate_file(&opts, &path) {
        Ok(counts) => {
            eprintln!(
                "gen_capture: wrote {} packets to {} in {:.2?}",
                counts.packets,
                path.display(),
                started.elapsed()
            );
            eprintln!("gen_capture: {counts}");
        }
        Err(e) => {
            eprintln!("gen_capture: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}

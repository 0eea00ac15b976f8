//! The `mix` mode: hundreds of interleaved connections to the port with the outcome
//! each was planned for, and background traffic on other ports (see the parent module).

use super::pcap::{PcapOut, Tcp, ACK, FIN, PSH, RST, START_US, SYN};
use super::{Counts, GenOptions, Rng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

pub(super) struct Mix {
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
    pub(super) fn new(opts: &GenOptions) -> Mix {
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

    pub(super) fn run<W: Write>(mut self, w: &mut PcapOut<W>) -> io::Result<Counts> {
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

//! One record of the kernel witness, as the BPF program writes it (`struct
//! witness_event` in `bpf/witness.bpf.c`) and as the flow stage reads it: a `Copy` value
//! with the endpoints, the segment and what the kernel did to it.

use crate::decode::{Endpoint, TcpFlags, Timestamp};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The size of `struct witness_event`; records of any other size are not ours.
pub const RAW_SIZE: usize = 88;

const KIND_DROP: u8 = 1;
const KIND_RESET_SENT: u8 = 2;
const KIND_RESET_RECEIVED: u8 = 3;
const KIND_STATE: u8 = 4;
const KIND_SYNACK_RETRANSMIT: u8 = 5;
const KIND_STATE_PATH: u8 = 7;
const KIND_STORM: u8 = 8;

const WF_HAS_SOCKET: u8 = 1;
const WF_PROCESS: u8 = 4;
const WF_RECEIVED: u8 = 8;

/// A TCP socket state, numbered as the kernel numbers them (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
    /// A number this build does not know.
    Other(u8),
}

impl TcpState {
    pub fn from_kernel(n: u32) -> TcpState {
        match n {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            13 => TcpState::BoundInactive,
            n => TcpState::Other(n as u8),
        }
    }

    /// The kernel's number for it (the inverse of [`from_kernel`](Self::from_kernel)).
    pub fn number(self) -> u8 {
        match self {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRecv => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
            TcpState::NewSynRecv => 12,
            TcpState::BoundInactive => 13,
            TcpState::Other(n) => n,
        }
    }

    /// The kernel's (and `ss`'s) name.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
            TcpState::BoundInactive => "BOUND_INACTIVE",
            TcpState::Other(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a dropped packet was when the kernel dropped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Path {
    /// Received from a device (PREROUTING, INPUT, FORWARD, the TCP receive path).
    Ingress,
    /// Sent by a local socket (OUTPUT, POSTROUTING, the qdisc).
    Egress,
}

/// What the kernel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `skb:kfree_skb`: the packet was dropped, with the kernel's `enum skb_drop_reason`,
    /// the address of the code that dropped it and the function that is, as the kernel
    /// names it (`nft_do_chain`; `None` where it could not).
    Drop {
        reason: u32,
        location: u64,
        path: Path,
        place: Option<&'static str>,
    },
    /// `tcp:tcp_send_reset`: TCP itself sent a reset. `by_socket`: a socket reset its own
    /// connection (an abortive close); otherwise it answered a packet (no socket for
    /// it, a segment out of place). `reason`: `enum sk_rst_reason`, where the kernel has
    /// it.
    ResetSent {
        reason: Option<u32>,
        by_socket: bool,
    },
    /// `tcp:tcp_receive_reset`: a socket took a reset and closed.
    ResetReceived,
    /// `sock:inet_sock_set_state`.
    State { old: TcpState, new: TcpState },
    /// `tcp:tcp_retransmit_synack`: the listener sent its SYN-ACK again (no ACK came).
    SynAckRetransmit,
    /// A connection's socket reached TCP_CLOSE: every state `sock:inet_sock_set_state`
    /// moved it through, aggregated in the kernel, and the segments it retransmitted
    /// (`tcp:tcp_retransmit_skb`).
    Closed { path: StatePath, retransmits: u32 },
    /// The program began counting this CPU's drops and reset replies by kind instead of
    /// sending them, for the rest of its 10 ms window (a storm: [`super::storm`]). No
    /// endpoints.
    Storm,
}

/// The states one socket went through, oldest first, as the BPF program packs them: 4
/// bits a state in a `u64`, at most 16; `cut` when older ones were shifted out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatePath {
    states: u64,
    len: u8,
    pub cut: bool,
}

/// Bit of the record's state count: older states were shifted out (`PATH_CUT`).
const PATH_CUT: u32 = 0x100;

impl StatePath {
    fn from_raw(states: u64, n: u32) -> StatePath {
        StatePath {
            states,
            len: (n & 0xff).min(16) as u8,
            cut: n & PATH_CUT != 0,
        }
    }

    /// Packs `states` as the BPF program does (tests build records with it).
    #[cfg(test)]
    pub fn of(states: &[TcpState]) -> StatePath {
        let packed = states.iter().enumerate().fold(0u64, |acc, (i, &s)| {
            acc | u64::from(s.number() & 0xf) << (4 * i)
        });
        StatePath::from_raw(packed, states.len() as u32)
    }

    /// A path that starts at `first` (a socket whose changes came one at a time).
    pub fn starting(first: TcpState) -> StatePath {
        let mut path = StatePath {
            states: 0,
            len: 0,
            cut: false,
        };
        path.push(first);
        path
    }

    /// Appends `state`; a full path (16) shifts its oldest out and is marked cut, as the
    /// BPF program does.
    pub fn push(&mut self, state: TcpState) {
        if self.len >= 16 {
            self.states >>= 4;
            self.len = 15;
            self.cut = true;
        }
        self.states |= u64::from(state.number() & 0xf) << (4 * u32::from(self.len));
        self.len += 1;
    }

    /// The states, oldest first.
    pub fn states(self) -> impl Iterator<Item = TcpState> {
        (0..u32::from(self.len))
            .map(move |i| TcpState::from_kernel(((self.states >> (4 * i)) & 0xf) as u32))
    }
}

/// `SYN_SENT→ESTABLISHED→…→CLOSE`, with a leading `…` when older states were shifted
/// out: the flow line's `states`.
impl fmt::Display for StatePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cut {
            f.write_str("…")?;
        }
        for (i, state) in self.states().enumerate() {
            if i > 0 || self.cut {
                f.write_str("→")?;
            }
            f.write_str(state.as_str())?;
        }
        Ok(())
    }
}

impl serde::Serialize for StatePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The process the kernel ran on behalf of, where that is meaningful (listen, connect,
/// close, an abortive close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    comm: [u8; 16],
}

impl Process {
    /// Built by hand in tests.
    #[cfg(test)]
    pub fn test(comm: &str, pid: u32) -> Process {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        Process { pid, comm: c }
    }

    /// The command name, as `ps -o comm` shows it.
    pub fn comm(&self) -> &str {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        std::str::from_utf8(&self.comm[..end]).unwrap_or("?")
    }
}

/// One thing the kernel did to the watched port. The endpoints are as the packet
/// travelled (a drop, a reset: from `src` to `dst`), or a socket's local → remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    /// On the capture's clock (CLOCK_REALTIME, µs).
    pub ts: Timestamp,
    pub kind: EventKind,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// The segment's sequence number and flags, where a packet (or TCP's control block)
    /// was read.
    pub seq: u32,
    pub flags: TcpFlags,
    /// The ICMP error (type, code) that quoted the segment, when the packet was one.
    pub icmp: Option<(u8, u8)>,
    pub process: Option<Process>,
}

/// Monotonic nanoseconds (the BPF clock) → the capture's wall clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Realtime minus monotonic, in nanoseconds, measured once at attach.
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
        }
    }

    /// A clock `offset_ns` ahead of the BPF clock (tests).
    #[cfg(test)]
    pub fn fixed(offset_ns: i128) -> Clock {
        Clock { offset_ns }
    }

    pub fn realtime(&self, mono_ns: u64) -> Timestamp {
        let ns = i128::from(mono_ns) + self.offset_ns;
        Timestamp(u64::try_from(ns / 1000).unwrap_or(0))
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl KernelEvent {
    /// Parses one ring-buffer record. `None` for a record of the wrong size or kind (a
    /// BPF program from another build).
    pub fn parse(raw: &[u8], clock: &Clock) -> Option<KernelEvent> {
        if raw.len() != RAW_SIZE {
            return None;
        }
        let u64_at = |i: usize| u64::from_ne_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_ne_bytes(raw[i..i + 4].try_into().unwrap_or([0; 4]));
        let u16_at = |i: usize| u16::from_ne_bytes(raw[i..i + 2].try_into().unwrap_or([0; 2]));
        let ts_ns = u64_at(0);
        let location = u64_at(8);
        let reason = u32_at(16);
        let pid = u32_at(20);
        let seq = u32_at(24);
        let (sport, dport) = (u16_at(28), u16_at(30));
        let (kind, family, tcp_flags, icmp_type, icmp_code, old_state, flags) = (
            raw[32], raw[33], raw[34], raw[35], raw[36], raw[37], raw[38],
        );
        let addr = |at: usize| -> Option<IpAddr> {
            match family {
                4 => Some(IpAddr::V4(Ipv4Addr::new(
                    raw[at],
                    raw[at + 1],
                    raw[at + 2],
                    raw[at + 3],
                ))),
                6 => {
                    let bytes: [u8; 16] = raw[at..at + 16].try_into().ok()?;
                    let v6 = Ipv6Addr::from(bytes);
                    // A dual-stack socket's IPv4 peer: the capture shows IPv4.
                    Some(match v6.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(v6),
                    })
                }
                _ => None,
            }
        };
        let src = Endpoint::new(addr(40)?, sport);
        let dst = Endpoint::new(addr(56)?, dport);
        let kind = match kind {
            // Named by the reader, which looks the address up in the program's map.
            KIND_DROP => EventKind::Drop {
                reason,
                location,
                path: if flags & WF_RECEIVED != 0 {
                    Path::Ingress
                } else {
                    Path::Egress
                },
                place: None,
            },
            KIND_RESET_SENT => EventKind::ResetSent {
                reason: (reason != u32::MAX).then_some(reason),
                by_socket: flags & WF_HAS_SOCKET != 0,
            },
            KIND_RESET_RECEIVED => EventKind::ResetReceived,
            KIND_STATE => EventKind::State {
                old: TcpState::from_kernel(u32::from(old_state)),
                new: TcpState::from_kernel(reason),
            },
            KIND_SYNACK_RETRANSMIT => EventKind::SynAckRetransmit,
            KIND_STATE_PATH => EventKind::Closed {
                path: StatePath::from_raw(location, reason),
                retransmits: seq,
            },
            KIND_STORM => EventKind::Storm,
            _ => return None,
        };
        let process = (flags & WF_PROCESS != 0).then(|| Process {
            pid,
            comm: raw[72..88].try_into().unwrap_or([0; 16]),
        });
        Some(KernelEvent {
            ts: clock.realtime(ts_ns),
            kind,
            src,
            dst,
            seq,
            flags: TcpFlags(tcp_flags),
            icmp: (icmp_type != 0).then_some((icmp_type, icmp_code)),
            process,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record laid out as `struct witness_event` is (offsets from the C source).
    fn raw(kind: u8, family: u8, flags: u8) -> Vec<u8> {
        let mut r = vec![0u8; RAW_SIZE];
        r[0..8].copy_from_slice(&5_000_000u64.to_ne_bytes());
        r[8..16].copy_from_slice(&0xffff_ffff_8100_0000u64.to_ne_bytes());
        r[16..20].copy_from_slice(&6u32.to_ne_bytes());
        r[20..24].copy_from_slice(&4242u32.to_ne_bytes());
        r[24..28].copy_from_slice(&1000u32.to_ne_bytes());
        r[28..30].copy_from_slice(&40000u16.to_ne_bytes());
        r[30..32].copy_from_slice(&61999u16.to_ne_bytes());
        r[32] = kind;
        r[33] = family;
        r[34] = TcpFlags::SYN;
        r[38] = flags;
        r[40..44].copy_from_slice(&[127, 0, 0, 1]);
        r[56..60].copy_from_slice(&[127, 0, 0, 2]);
        r[72..79].copy_from_slice(b"python3");
        r
    }

    #[test]
    fn a_dropped_syn_reads_back_with_its_reason_and_endpoints() {
        let clock = Clock { offset_ns: 0 };
        let e = KernelEvent::parse(&raw(KIND_DROP, 4, WF_RECEIVED), &clock).unwrap();
        assert_eq!(e.ts, Timestamp(5000));
        assert_eq!(e.src.to_string(), "127.0.0.1:40000");
        assert_eq!(e.dst.to_string(), "127.0.0.2:61999");
        assert!(e.flags.syn());
        assert_eq!(
            e.kind,
            EventKind::Drop {
                reason: 6,
                location: 0xffff_ffff_8100_0000,
                path: Path::Ingress,
                place: None,
            }
        );
        assert_eq!(e.process, None);
    }

    #[test]
    fn a_listen_names_its_process() {
        let clock = Clock { offset_ns: 0 };
        let mut r = raw(KIND_STATE, 4, WF_HAS_SOCKET | WF_PROCESS);
        r[16..20].copy_from_slice(&10u32.to_ne_bytes());
        r[37] = 7;
        let e = KernelEvent::parse(&r, &clock).unwrap();
        assert_eq!(
            e.kind,
            EventKind::State {
                old: TcpState::Close,
                new: TcpState::Listen
            }
        );
        let p = e.process.unwrap();
        assert_eq!((p.pid, p.comm()), (4242, "python3"));
    }

    #[test]
    fn a_path_built_one_change_at_a_time_keeps_its_last_sixteen_states_and_says_it_was_cut() {
        use TcpState::*;
        let mut path = StatePath::starting(SynSent);
        path.push(Established);
        assert_eq!(path, StatePath::of(&[SynSent, Established]));
        assert_eq!(path.to_string(), "SYN_SENT→ESTABLISHED");
        // A socket flapping between two states (as single changes can, unlike a closed
        // socket's one record): the oldest go, as the program shifts them out.
        for _ in 0..8 {
            path.push(FinWait1);
            path.push(Established);
        }
        assert!(path.cut);
        assert_eq!(path.states().count(), 16);
        assert_eq!(path.states().next(), Some(FinWait1));
        assert!(path.to_string().starts_with("…→FIN_WAIT1→ESTABLISHED→"));
        assert_eq!(
            serde_json::to_string(&path).unwrap(),
            format!("\"{path}\""),
            "serialized as it is written"
        );
    }

    #[test]
    fn a_closed_sockets_path_reads_back_oldest_first() {
        let clock = Clock { offset_ns: 0 };
        let mut r = raw(KIND_STATE_PATH, 4, WF_HAS_SOCKET);
        // SYN_SENT(2) → ESTABLISHED(1) → FIN_WAIT1(4) → FIN_WAIT2(5) → CLOSE(7).
        r[8..16].copy_from_slice(&0x75412u64.to_ne_bytes());
        r[16..20].copy_from_slice(&5u32.to_ne_bytes());
        r[24..28].copy_from_slice(&2u32.to_ne_bytes());
        let e = KernelEvent::parse(&r, &clock).unwrap();
        let EventKind::Closed { path, retransmits } = e.kind else {
            panic!("{e:?}")
        };
        let names: Vec<_> = path.states().map(TcpState::as_str).collect();
        assert_eq!(
            names,
            ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"]
        );
        assert_eq!((retransmits, path.cut), (2, false));
        assert_eq!(
            path,
            StatePath::of(&[
                TcpState::SynSent,
                TcpState::Established,
                TcpState::FinWait1,
                TcpState::FinWait2,
                TcpState::Close
            ])
        );
    }

    #[test]
    fn a_v4_mapped_socket_address_reads_as_ipv4() {
        let clock = Clock { offset_ns: 0 };
        let mut r = raw(KIND_STATE, 6, WF_HAS_SOCKET);
        r[40..56].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets());
        r[56..72].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        let e = KernelEvent::parse(&r, &clock).unwrap();
        assert_eq!(e.src.to_string(), "10.0.0.1:40000");
        assert_eq!(e.dst.to_string(), "[::1]:61999");
    }

    #[test]
    fn records_of_another_size_or_kind_are_not_ours() {
        let clock = Clock::now();
        assert!(KernelEvent::parse(&[0u8; 40], &clock).is_none());
        assert!(KernelEvent::parse(&raw(99, 4, 0), &clock).is_none());
        assert!(KernelEvent::parse(&raw(KIND_DROP, 5, 0), &clock).is_none());
    }
}

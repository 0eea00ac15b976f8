//! Storms: when the kernel drops (or answers with a reset) more of the watched port's
//! packets than a few thousand a second, the BPF program stops sending them one record
//! each and counts them by kind instead (`tallies` in `bpf/witness.bpf.c`), one CPU's
//! 10 ms window at a time. Here: the counts as user space reads them ([`Tally`]), and the
//! times those windows cover ([`Storms`]), so the connections inside one are marked:
//! their lines may lack drops the summary counts.
//!
//! Why: one record per dropped packet is a record to read, join and write on its line.
//! Under a flood of spoofed SYNs or a stream of packets the kernel discards, that cost
//! 40 % more CPU than capturing without the witness (benches/witness.sh); a count per
//! kind says what such a storm is, and the rules read it beside the connections' own.

use super::event::{Clock, Path};
use super::facts::Dir;
use super::names::{Name, Names};
use crate::decode::{TcpFlags, Timestamp};
use serde::Serialize;
use std::collections::VecDeque;

/// The program's window: a storm record covers this long from its time, at most.
pub const WINDOW_US: u64 = 10_000;

/// `struct tally_key`'s size, and `struct tally`'s.
pub const KEY_SIZE: usize = 16;
pub const VALUE_SIZE: usize = 24;

const TK_RECEIVED: u8 = 1;
const TK_FROM_PORT: u8 = 2;
const KIND_DROP: u8 = 1;
const KIND_RESET_SENT: u8 = 2;

/// What a kind of counted record was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TallyKind {
    /// Dropped, for `reason` (`enum skb_drop_reason`) at `location`, named `place`.
    Drop {
        reason: u32,
        location: u64,
        path: Path,
        place: Option<&'static str>,
    },
    /// A reset TCP sent in answer to a packet; `reason`: `enum sk_rst_reason` where the
    /// kernel has it.
    ResetSent { reason: Option<u32> },
}

/// Records of one kind the program counted instead of sending, over the run so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub kind: TallyKind,
    /// Who sent the segment: the watched port's side is the server's (`s2c`).
    pub dir: Dir,
    /// The segment's flags (the quoted segment's, for an ICMP error).
    pub flags: TcpFlags,
    pub icmp: bool,
    pub count: u64,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
}

impl Tally {
    /// Whether these are frees that lost nothing (as a connection's own facts leave them
    /// out: a copy's drop, a RST a mini-socket took).
    pub fn lost_nothing(&self, names: &Names) -> bool {
        match self.kind {
            TallyKind::Drop {
                reason,
                path,
                place,
                ..
            } => super::facts::not_lost(
                names.reasons().drop_known(reason),
                place,
                path,
                self.flags,
                self.icmp,
            ),
            TallyKind::ResetSent { .. } => false,
        }
    }

    /// `SYN`, `RST`, … as the flow lines' `what`.
    pub fn what(&self) -> &'static str {
        super::facts::what(self.flags, self.icmp)
    }

    /// One kind, from the map's key and its per-CPU values (summed: count, the earliest
    /// first, the latest last). `None` for a key of another layout or a kind nothing
    /// counted.
    pub fn parse<V: AsRef<[u8]>>(
        key: &[u8],
        per_cpu: impl IntoIterator<Item = V>,
        clock: &Clock,
    ) -> Option<Tally> {
        if key.len() != KEY_SIZE {
            return None;
        }
        let location = u64::from_ne_bytes(key[0..8].try_into().ok()?);
        let reason = u32::from_ne_bytes(key[8..12].try_into().ok()?);
        let (kind, tcp_flags, icmp, bits) = (key[12], key[13], key[14], key[15]);
        let (mut count, mut first, mut last) = (0u64, u64::MAX, 0u64);
        for v in per_cpu {
            let v = v.as_ref().get(..VALUE_SIZE)?;
            let at = |i: usize| u64::from_ne_bytes(v[i..i + 8].try_into().unwrap_or([0; 8]));
            if at(0) == 0 {
                continue;
            }
            count += at(0);
            first = first.min(at(8));
            last = last.max(at(16));
        }
        if count == 0 {
            return None;
        }
        let kind = match kind {
            KIND_DROP => TallyKind::Drop {
                reason,
                location,
                path: if bits & TK_RECEIVED != 0 {
                    Path::Ingress
                } else {
                    Path::Egress
                },
                place: None,
            },
            KIND_RESET_SENT => TallyKind::ResetSent {
                reason: (reason != u32::MAX).then_some(reason),
            },
            _ => return None,
        };
        // The watched port sent it: the server did. An ICMP error quotes the segment it
        // answers, and travels the other way.
        let from_port = (bits & TK_FROM_PORT != 0) != (icmp != 0);
        Some(Tally {
            kind,
            dir: if from_port { Dir::S2c } else { Dir::C2s },
            flags: TcpFlags(tcp_flags),
            icmp: icmp != 0,
            count,
            first_ts: clock.realtime(first),
            last_ts: clock.realtime(last),
        })
    }
}

/// One kind a storm counted, named, as the summary's `kernel_events.storm` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StormCount {
    /// `drop`, or `reset_sent` (TCP answered a packet with a RST).
    pub kind: &'static str,
    /// The drop reason, or the reset's (`null` where the kernel gives none).
    pub reason: Option<Name>,
    /// A drop's kernel function.
    #[serde(rename = "where")]
    pub place: Option<&'static str>,
    /// A drop's `ingress` or `egress`.
    pub path: Option<&'static str>,
    pub dir: Dir,
    pub what: &'static str,
    pub count: u64,
    #[serde(serialize_with = "super::facts::seconds")]
    pub first_ts: Timestamp,
    #[serde(serialize_with = "super::facts::seconds")]
    pub last_ts: Timestamp,
}

impl Tally {
    /// Named with the running kernel's names.
    pub fn named(&self, names: &Names) -> StormCount {
        let (kind, reason, place, path) = match self.kind {
            TallyKind::Drop {
                reason,
                path,
                place,
                ..
            } => (
                "drop",
                Some(names.reasons().drop_name(reason)),
                place,
                Some(match path {
                    Path::Ingress => "ingress",
                    Path::Egress => "egress",
                }),
            ),
            TallyKind::ResetSent { reason } => {
                ("reset_sent", names.reasons().reset_name(reason), None, None)
            }
        };
        StormCount {
            kind,
            reason,
            place,
            path,
            dir: self.dir,
            what: self.what(),
            count: self.count,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
        }
    }
}

/// The stretches of time the program counted records instead of sending them (from its
/// storm records), merged: a storm of minutes is one stretch, not thousands of windows.
#[derive(Debug, Default)]
pub struct Storms {
    /// Sorted, apart, each `(from, to)`.
    stretches: VecDeque<(Timestamp, Timestamp)>,
}

/// Stretches kept, at most: the oldest go first (a connection longer than hundreds of
/// separate storms is still marked by the later ones).
const MAX_STRETCHES: usize = 4096;

impl Storms {
    /// A window that began counting at `ts` (a storm record's time).
    pub fn add(&mut self, ts: Timestamp) {
        let end = ts.add_micros(WINDOW_US);
        match self.stretches.back_mut() {
            Some((_, to)) if ts <= *to => *to = (*to).max(end),
            _ => {
                if self.stretches.len() >= MAX_STRETCHES {
                    self.stretches.pop_front();
                }
                self.stretches.push_back((ts, end));
            }
        }
    }

    /// Whether a connection whose events fall between `from` and `to` overlaps a storm:
    /// some of its drops may have been counted instead of sent. A window starts counting
    /// partway through (after its first records went out whole), so a window's stretch
    /// begins up to [`WINDOW_US`] before its record.
    pub fn cover(&self, from: Timestamp, to: Timestamp) -> bool {
        let begins = |start: Timestamp| Timestamp(start.0.saturating_sub(WINDOW_US));
        let n = self.stretches.len();
        let Some(&(start, end)) = self.stretches.back() else {
            return false;
        };
        // Asked once a connection, nearly always about the latest stretch (lines come in
        // time order): answered without a search then. A binary search over a long
        // storm's thousands of stretches was a tenth of the flow stage's extra work under
        // a flood (benches/witness.sh, synflood).
        if end < from {
            return false;
        }
        if n == 1 || self.stretches[n - 2].1 < from {
            return begins(start) <= to;
        }
        // The first stretch ending at or after `from`.
        let i = self.stretches.partition_point(|&(_, end)| end < from);
        self.stretches
            .get(i)
            .is_some_and(|&(start, _)| begins(start) <= to)
    }

    pub fn is_empty(&self) -> bool {
        self.stretches.is_empty()
    }

    /// When the last storm's stretch ends (it may still be counting until then).
    pub fn last_end(&self) -> Option<Timestamp> {
        self.stretches.back().map(|&(_, end)| end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: u8, flags: u8, icmp: u8, bits: u8) -> Vec<u8> {
        let mut k = vec![0u8; KEY_SIZE];
        k[0..8].copy_from_slice(&0xffff_ffff_8100_0000u64.to_ne_bytes());
        k[8..12].copy_from_slice(&2u32.to_ne_bytes());
        k[12] = kind;
        k[13] = flags;
        k[14] = icmp;
        k[15] = bits;
        k
    }

    fn value(count: u64, first_ns: u64, last_ns: u64) -> Vec<u8> {
        [count, first_ns, last_ns]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    #[test]
    fn a_kind_counted_on_two_cpus_reads_back_summed_with_its_earliest_and_latest_times() {
        let clock = Clock::fixed(0);
        let per_cpu = [
            value(300, 5_000_000, 9_000_000),
            value(0, 0, 0),
            value(200, 4_000_000, 8_000_000),
        ];
        let t = Tally::parse(
            &key(KIND_DROP, TcpFlags::SYN, 0, TK_RECEIVED),
            &per_cpu,
            &clock,
        )
        .unwrap();
        assert_eq!(t.count, 500);
        assert_eq!((t.first_ts, t.last_ts), (Timestamp(4000), Timestamp(9000)));
        assert_eq!(t.dir, Dir::C2s);
        assert!(t.flags.syn() && !t.icmp);
        assert_eq!(
            t.kind,
            TallyKind::Drop {
                reason: 2,
                location: 0xffff_ffff_8100_0000,
                path: Path::Ingress,
                place: None
            }
        );
    }

    #[test]
    fn the_ports_own_segments_are_the_servers_and_an_icmp_error_travels_the_other_way() {
        let clock = Clock::fixed(0);
        let one = [value(1, 1, 1)];
        let reset =
            Tally::parse(&key(KIND_RESET_SENT, 0x14, 0, TK_FROM_PORT), &one, &clock).unwrap();
        assert_eq!(reset.dir, Dir::S2c);
        assert_eq!(reset.kind, TallyKind::ResetSent { reason: Some(2) });
        // An ICMP error quoting the server's SYN-ACK was sent by the client's side.
        let icmp = Tally::parse(&key(KIND_DROP, 0x12, 3, TK_FROM_PORT), &one, &clock).unwrap();
        assert_eq!(icmp.dir, Dir::C2s);
        // A kind no CPU counted, or of another layout, is nothing.
        assert!(Tally::parse(&key(KIND_DROP, 0, 0, 0), &[value(0, 0, 0)], &clock).is_none());
        assert!(Tally::parse(&key(9, 0, 0, 0), &one, &clock).is_none());
        assert!(Tally::parse(&[0u8; 8], &one, &clock).is_none());
    }

    #[test]
    fn a_long_storm_is_one_stretch_and_covers_only_connections_that_overlap_it() {
        let mut s = Storms::default();
        assert!(!s.cover(Timestamp(0), Timestamp(u64::MAX)));
        // Windows back to back for a second: one stretch.
        for i in 0..100 {
            s.add(Timestamp(1_000_000 + i * WINDOW_US));
        }
        // A later, separate one.
        s.add(Timestamp(5_000_000));
        assert_eq!(s.stretches.len(), 2);
        assert!(s.cover(Timestamp(1_500_000), Timestamp(1_500_100)));
        // Ended before it, started after it, between the two: not covered.
        assert!(!s.cover(Timestamp(100_000), Timestamp(900_000)));
        assert!(!s.cover(Timestamp(2_100_000), Timestamp(4_000_000)));
        // The window before a record's time counts too (it began counting partway).
        assert!(s.cover(Timestamp(4_995_000), Timestamp(4_995_000)));
        assert!(s.cover(Timestamp(0), Timestamp(5_000_001)));
    }

    #[test]
    fn a_storm_of_separate_windows_covers_what_overlaps_one_whether_latest_or_earlier() {
        // A flood's windows: each storm record comes a little after its window began
        // (its first records went out whole), so the stretches stay apart.
        let mut s = Storms::default();
        for i in 0..500u64 {
            s.add(Timestamp(1_000_000 + i * 10_300));
        }
        assert_eq!(s.stretches.len(), 500);
        // Any connection, against the definition: some stretch ends at or after its
        // start and begins (a window before its record) at or before its end.
        let overlaps = |from: Timestamp, to: Timestamp| {
            s.stretches
                .iter()
                .any(|&(start, end)| end >= from && start.0.saturating_sub(WINDOW_US) <= to.0)
        };
        for from in (0..7_000_000u64).step_by(1_337) {
            for len in [0, 50, 400, 20_000] {
                let (from, to) = (Timestamp(from), Timestamp(from + len));
                assert_eq!(s.cover(from, to), overlaps(from, to), "{from:?}..{to:?}");
            }
        }
    }
}

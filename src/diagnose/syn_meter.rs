//! The rate and spread of connection attempts: every client SYN to the port, as it is
//! captured, by second and by source address. A SYN flood is told from a crowd of failing
//! clients by these numbers (many distinct sources, many SYNs a second), and it must be
//! told live while its half-open attempts are still waiting (they end only when the
//! capture does), so the flow records alone come too late.
//!
//! Called once per client SYN on the flow stage: it never allocates (the source table is
//! allocated once, with the `Diagnoser`) and does a hash and a short probe.

use crate::decode::Timestamp;
use std::net::IpAddr;

/// Slots in the source table: a power of two.
const SLOTS: usize = 8192;
/// Distinct sources counted exactly, at most (three quarters of the slots, so that a
/// probe stays short); beyond, counts are "at least".
const SOURCES_CAP: u64 = (SLOTS as u64 / 4) * 3;
/// Up to this many sources, each is named with its SYNs ([`SynRate::few`]): a flood
/// from a handful of hosts (a flooding tool changes its port, not its address) is
/// stopped by naming them.
pub const FEW: usize = 8;

/// One of a few sources and the SYNs it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceSyns {
    #[serde(rename = "address")]
    pub addr: IpAddr,
    pub syns: u64,
}

/// What the meter saw, for the rules: a plain copy taken before they run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynRate {
    /// Client SYNs to the port, retransmissions included.
    pub syns: u64,
    /// Distinct client addresses that sent them (exact up to the cap).
    pub sources: u64,
    pub sources_capped: bool,
    /// The most SYNs in one second of the capture's clock.
    pub peak_syns_per_sec: u64,
    /// The most distinct sources in one second.
    pub peak_sources_per_sec: u64,
    /// The first and last SYN's time.
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// The first [`FEW`] sources seen, with their SYNs, in the order they came: see
    /// [`few`](Self::few).
    pub named: [Option<SourceSyns>; FEW],
}

impl SynRate {
    /// From the first SYN to the last, in microseconds.
    pub fn span_us(&self) -> u64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) => b.micros_since(a),
            _ => 0,
        }
    }

    /// Every source with its SYNs, most first, when there were at most [`FEW`].
    pub fn few(&self) -> Option<Vec<SourceSyns>> {
        if self.sources_capped || self.sources > FEW as u64 {
            return None;
        }
        let mut few: Vec<SourceSyns> = self.named.iter().flatten().copied().collect();
        if few.is_empty() {
            return None;
        }
        few.sort_by(|a, b| b.syns.cmp(&a.syns).then(a.addr.cmp(&b.addr)));
        Some(few)
    }
}

/// One source address, the last second it sent a SYN in (`second` 0: an empty slot),
/// and its SYNs (in what would be the slot's padding: still 32 bytes).
#[derive(Clone, Copy, Default)]
struct Slot {
    addr: u128,
    second: u64,
    syns: u64,
}

pub struct SynMeter {
    slots: Box<[Slot]>,
    rate: SynRate,
    /// The current second (the capture's clock, in whole seconds, plus one so that 0
    /// marks an empty slot) and what arrived in it.
    second: u64,
    syns_this_second: u64,
    sources_this_second: u64,
    /// The slots of the first [`FEW`] sources, in the order they came.
    first_slots: [u32; FEW],
}

impl Default for SynMeter {
    fn default() -> Self {
        SynMeter {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            rate: SynRate::default(),
            second: 0,
            syns_this_second: 0,
            sources_this_second: 0,
            first_slots: [0; FEW],
        }
    }
}

impl SynMeter {
    /// A client SYN from `src` at `ts`. Returns true when a second ended (or the first
    /// began): the moment a new rate is known.
    pub fn syn(&mut self, src: IpAddr, ts: Timestamp) -> bool {
        let second = ts.as_micros() / 1_000_000 + 1;
        let r = &mut self.rate;
        r.syns += 1;
        r.first.get_or_insert(ts);
        r.last = Some(r.last.map_or(ts, |l| l.max(ts)));
        // A SYN stamped earlier than the current second (another interface's clock) is
        // counted in the current one.
        let new_second = second > self.second;
        if new_second {
            self.second = second;
            self.syns_this_second = 0;
            self.sources_this_second = 0;
        }
        self.syns_this_second += 1;
        r.peak_syns_per_sec = r.peak_syns_per_sec.max(self.syns_this_second);
        let addr = match src {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        // Fibonacci hashing of the address folded to 64 bits.
        let h = ((addr as u64) ^ ((addr >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mask = SLOTS - 1;
        let mut i = (h >> 51) as usize & mask;
        let seen_this_second = loop {
            let slot = &mut self.slots[i];
            if slot.second == 0 {
                if r.sources >= SOURCES_CAP {
                    // Not remembered: counted as new in this second, every time.
                    r.sources_capped = true;
                    break false;
                }
                *slot = Slot {
                    addr,
                    second: self.second,
                    syns: 1,
                };
                if let Some(first) = self.first_slots.get_mut(r.sources as usize) {
                    *first = i as u32;
                }
                r.sources += 1;
                break false;
            }
            if slot.addr == addr {
                let seen = slot.second == self.second;
                slot.second = self.second;
                slot.syns += 1;
                break seen;
            }
            i = (i + 1) & mask;
        };
        if !seen_this_second {
            self.sources_this_second += 1;
            r.peak_sources_per_sec = r.peak_sources_per_sec.max(self.sources_this_second);
        }
        new_second
    }

    /// A copy for the rules, with the first few sources' SYNs as of now.
    pub fn rate(&self) -> SynRate {
        let mut r = self.rate;
        let named = (r.sources as usize).min(FEW);
        for (n, &i) in r.named[..named].iter_mut().zip(&self.first_slots) {
            let slot = self.slots[i as usize];
            *n = Some(SourceSyns {
                addr: IpAddr::V6(std::net::Ipv6Addr::from(slot.addr)).to_canonical(),
                syns: slot.syns,
            });
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(a))
    }

    fn at(sec: u64, us: u64) -> Timestamp {
        Timestamp(sec * 1_000_000 + us)
    }

    #[test]
    fn a_flood_from_many_sources_counts_each_source_once_and_peaks_per_second() {
        let mut m = SynMeter::default();
        // Second 10: 300 SYNs from 300 sources; second 11: 50 SYNs, 10 of them from
        // sources already seen in second 10.
        for i in 0..300u32 {
            m.syn(v4(0x0aca_0000 + i), at(10, u64::from(i)));
        }
        for i in 0..50u32 {
            m.syn(v4(0x0aca_0000 + 290 + i), at(11, 5));
        }
        let r = m.rate();
        assert_eq!((r.syns, r.sources), (350, 340));
        assert_eq!((r.peak_syns_per_sec, r.peak_sources_per_sec), (300, 300));
        assert!(!r.sources_capped);
        assert_eq!(r.span_us(), 1_000_005);
    }

    #[test]
    fn one_client_retransmitting_is_one_source() {
        let mut m = SynMeter::default();
        let c = IpAddr::from([127, 0, 0, 1]);
        for s in [0, 1, 3, 7] {
            m.syn(c, at(100 + s, 0));
        }
        let r = m.rate();
        assert_eq!((r.syns, r.sources, r.peak_sources_per_sec), (4, 1, 1));
    }

    #[test]
    fn sources_beyond_the_table_are_counted_as_at_least() {
        let mut m = SynMeter::default();
        for i in 0..(SOURCES_CAP as u32 + 100) {
            m.syn(v4(0x0b00_0000 + i), at(1, 0));
        }
        let r = m.rate();
        assert_eq!(r.sources, SOURCES_CAP);
        assert!(r.sources_capped);
        assert_eq!(r.few(), None, "thousands of sources are counted, not named");
    }

    #[test]
    fn a_flood_from_a_few_hosts_names_each_with_its_syns_most_first() {
        let mut m = SynMeter::default();
        let (a, b) = (
            v4(0x0a00_0001),
            IpAddr::from("2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap()),
        );
        for i in 0..1000u64 {
            m.syn(if i % 4 == 0 { a } else { b }, at(5, i));
        }
        let few = m.rate().few().expect("two sources are few");
        assert_eq!(
            few,
            [
                SourceSyns { addr: b, syns: 750 },
                SourceSyns { addr: a, syns: 250 }
            ],
            "an IPv4 source is named as IPv4, not as its mapped IPv6 form"
        );
        for i in 0..FEW as u32 {
            m.syn(v4(0x0b00_0000 + i), at(6, 0));
        }
        assert_eq!(
            m.rate().few(),
            None,
            "{} sources are more than a few",
            FEW + 2
        );
    }
}

//! Live: how long the capture thread sleeps when the kernel's ring is empty and its
//! batch is young, so that packets are handed on in batches and not one wake-up each.
//!
//! Every wake-up costs the capture thread, then the flow stage and the report stage,
//! each a switch in and out (tens of microseconds in a VM): at a few hundred thousand
//! packets a second those wake-ups, not the packets, were most of portsniff's CPU. With
//! a millisecond's sleep and a hand-over as soon as 64 segments waited, a million
//! packets cost 1.8 CPU seconds at 100 kpps and 1.05 at 240 kpps; sleeping up to
//! [`LONGEST`] and handing over full batches, 1.19 and 0.66 (benches/witness.sh's mix,
//! `--no-kernel-events`). Five milliseconds is nothing to a person watching.
//!
//! The ring must hold what arrives while the thread sleeps: a sleep that let in more
//! than [`Nap::budget`] packets makes the next one half as long, down to [`SHORTEST`],
//! and quiet sleeps make it long again. The ring's size is known only roughly (libpcap
//! sizes its frames from the snaplen and the interface's MTU, and a loopback packet
//! takes two frames: out and back in), so the budget is an eighth of the estimate.

use std::time::Duration;

/// The longest sleep: the most a live packet waits for company before it goes on.
pub(super) const LONGEST: Duration = Duration::from_millis(5);
/// The shortest: below this a sleep costs more than it saves; at rates that need it the
/// ring is rarely empty and the thread rarely sleeps at all.
pub(super) const SHORTEST: Duration = Duration::from_micros(50);

/// The capture thread's next sleep, adapted to what arrived during the last ones.
#[derive(Clone, Copy, Debug)]
pub(super) struct Nap {
    length: Duration,
    /// Packets a sleep may let in before the next one is shortened.
    budget: u64,
}

impl Nap {
    /// For a ring of `buffer_bytes` holding records of up to `snaplen` bytes on an
    /// interface whose MTU is `mtu` (`None`: unknown, taken as loopback's 64 KiB).
    pub(super) fn new(buffer_bytes: u32, snaplen: u32, mtu: Option<u32>) -> Nap {
        Nap {
            length: LONGEST,
            budget: (ring_frames(buffer_bytes, snaplen, mtu) / 8).max(1),
        }
    }

    pub(super) fn length(&self) -> Duration {
        self.length
    }

    /// After a sleep: `arrived` packets had come in while it lasted (read before the
    /// ring was empty again).
    pub(super) fn slept(&mut self, arrived: u64) {
        if arrived > self.budget {
            self.length = (self.length / 2).max(SHORTEST);
        } else if arrived < self.budget / 4 {
            self.length = (self.length * 2).min(LONGEST);
        }
    }
}

/// Frames in libpcap's TPACKET_V2 ring (pcap-linux.c, `create_ring`): a frame holds the
/// record cut to the snaplen or to what the MTU lets through, behind libpcap's and the
/// kernel's headers (about a hundred bytes, rounded up here).
fn ring_frames(buffer_bytes: u32, snaplen: u32, mtu: Option<u32>) -> u64 {
    // The MTU plus a link header and VLAN tags, as libpcap allows for.
    let longest = mtu.unwrap_or(65_536).saturating_add(18);
    let frame = u64::from(snaplen.min(longest)) + 128;
    u64::from(buffer_bytes) / frame
}

/// The interface's MTU from sysfs (`None` for `any` and anything unreadable).
pub(super) fn mtu_of(interface: &str) -> Option<u32> {
    if interface.contains('/') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{FULL_BUFFER_BYTES, FULL_SNAPLEN, HEADERS_BUFFER_BYTES, HEADERS_SNAPLEN};

    #[test]
    fn the_default_ring_holds_thousands_of_packets_a_sleep() {
        // ~22k header-sized frames: a 5 ms sleep is safe up to ~550 kpps on lo.
        let nap = Nap::new(HEADERS_BUFFER_BYTES, HEADERS_SNAPLEN, Some(65_536));
        assert_eq!(nap.length(), LONGEST);
        assert!((2_000..3_500).contains(&nap.budget), "{}", nap.budget);
    }

    #[test]
    fn whole_loopback_packets_leave_a_small_budget_and_ethernet_a_large_one() {
        // -w on lo: ~500 frames of 64 KiB; on a 1500-byte MTU, ~20k.
        let lo = Nap::new(FULL_BUFFER_BYTES, FULL_SNAPLEN, Some(65_536));
        let eth = Nap::new(FULL_BUFFER_BYTES, FULL_SNAPLEN, Some(1_500));
        let unknown = Nap::new(FULL_BUFFER_BYTES, FULL_SNAPLEN, None);
        assert!((50..70).contains(&lo.budget), "{}", lo.budget);
        assert!((2_000..3_000).contains(&eth.budget), "{}", eth.budget);
        assert_eq!(unknown.budget, lo.budget);
    }

    #[test]
    fn a_sleep_that_let_in_too_much_halves_the_next_down_to_the_shortest() {
        let mut nap = Nap::new(FULL_BUFFER_BYTES, FULL_SNAPLEN, None);
        nap.slept(nap.budget + 1);
        assert_eq!(nap.length(), LONGEST / 2);
        for _ in 0..20 {
            nap.slept(nap.budget * 10);
        }
        assert_eq!(nap.length(), SHORTEST);
    }

    #[test]
    fn quiet_sleeps_lengthen_it_back_and_a_middling_one_keeps_it() {
        let mut nap = Nap::new(HEADERS_BUFFER_BYTES, HEADERS_SNAPLEN, None);
        for _ in 0..4 {
            nap.slept(nap.budget * 2);
        }
        let short = nap.length();
        assert!(short < LONGEST);
        // Between a quarter of the budget and the budget: no change.
        nap.slept(nap.budget / 2);
        assert_eq!(nap.length(), short);
        for _ in 0..10 {
            nap.slept(0);
        }
        assert_eq!(nap.length(), LONGEST);
    }

    #[test]
    fn the_mtu_of_loopback_is_read_and_of_any_is_unknown() {
        assert_eq!(mtu_of("lo"), Some(65_536));
        assert_eq!(mtu_of("any"), None);
        assert_eq!(mtu_of("../lo"), None);
    }
}

//! TCP sequence numbers: 32-bit values that wrap, compared in serial-number arithmetic.
//!
//! Responsible for the arithmetic only (RFC 9293 §3.4, RFC 1982); it knows nothing of
//! flows, sides or which number means what.

use std::cmp::Ordering;
use std::ops::{Add, Sub};

/// A TCP sequence (or acknowledgment) number. Ordered across wrap-around (RFC 1982
/// serial arithmetic, as RFC 9293 §3.4 requires): `a < b` when `b` is less than 2³¹
/// ahead of `a`, even if `b` wrapped past zero. Like smoltcp's `TcpSeqNumber`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Whether `self` is at or before `other`, across wrap-around.
    pub fn at_or_before(self, other: SeqNumber) -> bool {
        self <= other
    }

    /// How far `self` lies past `origin` (an ISN), modulo 2³²: the relative number tcpdump
    /// and Wireshark print, never negative.
    pub fn offset_from(self, origin: SeqNumber) -> u32 {
        self.0.wrapping_sub(origin.0)
    }
}

/// Not `Ord`: the order holds only within a window of 2³¹ (enough for one connection's
/// numbers, which RFC 9293 keeps within the window), so it is not transitive overall.
impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        // Reinterpreting the wrapped difference as signed is RFC 1982's comparison.
        Some((*self - *other).cmp(&0))
    }
}

/// `seq + n`: `n` octets (or SYN/FIN flags) further on, wrapping.
impl Add<usize> for SeqNumber {
    type Output = SeqNumber;

    fn add(self, n: usize) -> SeqNumber {
        // Sequence space is modulo 2³²: only the low 32 bits of the length matter.
        SeqNumber(self.0.wrapping_add(n as u32))
    }
}

/// `seq - n`: `n` octets earlier, wrapping.
impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;

    fn sub(self, n: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(n as u32))
    }
}

/// `a - b`: how far `a` is past `b`, across wrap-around (negative if it is before).
impl Sub for SeqNumber {
    type Output = i32;

    fn sub(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl From<u32> for SeqNumber {
    fn from(v: u32) -> SeqNumber {
        SeqNumber(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEAR_MAX: SeqNumber = SeqNumber(u32::MAX - 9);

    #[test]
    fn offset_from_an_isn_counts_across_the_wrap_and_is_never_negative() {
        assert_eq!((NEAR_MAX + 20usize).offset_from(NEAR_MAX), 20);
        assert_eq!(NEAR_MAX.offset_from(NEAR_MAX + 1usize), u32::MAX);
    }

    #[test]
    fn a_number_past_the_wrap_is_after_one_before_it() {
        let wrapped = NEAR_MAX + 20;
        assert_eq!(wrapped, SeqNumber(10));
        assert!(NEAR_MAX < wrapped);
        assert!(wrapped > NEAR_MAX);
        assert!(NEAR_MAX.at_or_before(wrapped));
        assert!(!wrapped.at_or_before(NEAR_MAX));
    }

    #[test]
    fn a_number_is_at_or_before_itself() {
        assert!(NEAR_MAX.at_or_before(NEAR_MAX));
        assert_eq!(NEAR_MAX.partial_cmp(&NEAR_MAX), Some(Ordering::Equal));
    }

    #[test]
    fn subtracting_across_the_wrap_gives_the_signed_distance() {
        assert_eq!((NEAR_MAX + 20) - NEAR_MAX, 20);
        assert_eq!(NEAR_MAX - (NEAR_MAX + 20), -20);
        assert_eq!(SeqNumber(0) - 1, SeqNumber(u32::MAX));
    }

    #[test]
    fn half_the_space_ahead_is_still_after_and_beyond_it_is_before() {
        let a = SeqNumber(5);
        assert!(a < a + (i32::MAX as usize));
        // 2³¹ + 1 ahead is, in serial arithmetic, 2³¹ - 1 behind.
        assert!(a > a + (1usize << 31) + 1);
    }
}

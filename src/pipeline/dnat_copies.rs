//! `-i any` on a host that forwards the port (a DNAT port map) sees each forwarded
//! connection twice: before the translation, to host:P on the interface it came in by,
//! and after it, to the backend on the interface it leaves by. Both copies carry the same
//! client endpoint and initial sequence number. The second copy to finish is the same
//! connection again: the flow stage drops it, so the lines, the summary's connection
//! count and its TIME_WAIT counts are the connections made.
//!
//! The copy after the DNAT often finishes first: it is shown with the address the client
//! used (its SYN's destination before the translation, remembered here), so the line reads
//! `client → host:P ⇒ backend:Q` whichever copy is kept.
//!
//! A local client's connection is translated before any capture point (OUTPUT DNAT):
//! it has one copy, to the backend, and stays unmatched here until it ages out.

use crate::decode::{Endpoint, Segment, SegmentKind, Timestamp};
use crate::flow::FlowRecord;
use std::collections::HashMap;

/// Unmatched copies kept at most; beyond it the ones older than [`KEEP_US`] go.
pub(super) const CAP: usize = 4096;
/// How long an unmatched copy waits for its twin (both finish within microseconds).
pub(super) const KEEP_US: u64 = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Copy_ {
    /// To host:P, before the translation.
    Before,
    /// To the backend, after it.
    After,
}

/// The copies of forwarded connections seen finishing, waiting for their twins.
#[derive(Debug)]
pub(super) struct DnatCopies {
    port: u16,
    backend: Endpoint,
    waiting: HashMap<(Endpoint, u32), (Copy_, Timestamp)>,
    /// By client endpoint and ISN: the host:P its SYN was addressed to, before the DNAT.
    addressed: HashMap<(Endpoint, u32), Endpoint>,
    /// By flow id, for a flow in its close delay (its `Settled` record is to come): `Err`
    /// with its segments then if it was dropped as a second copy, else the address it was
    /// shown with.
    settling: HashMap<u64, Result<Endpoint, u64>>,
}

impl DnatCopies {
    /// `None` without a DNAT backend for the port: nothing to merge.
    pub(super) fn new(port: u16, backend: Option<Endpoint>) -> Option<DnatCopies> {
        backend.map(|backend| DnatCopies {
            port,
            backend,
            waiting: HashMap::with_capacity(CAP),
            addressed: HashMap::with_capacity(CAP),
            settling: HashMap::new(),
        })
    }

    /// A client's SYN: remembers where it was addressed when that is host:P (before the
    /// translation). Returns whether it is the translated copy of a SYN already seen
    /// before the translation: the same attempt, which the SYN meter must not count
    /// twice (the capture sees the copy before the DNAT first: on the way in, before
    /// PREROUTING; the translated one only as it leaves). No allocation: the map is
    /// reserved, and emptied when full.
    pub(super) fn syn(&mut self, seg: &Segment) -> bool {
        let SegmentKind::Tcp(t) = seg.kind else {
            return false;
        };
        if seg.dst == self.backend {
            return self.addressed.contains_key(&(seg.src, t.seq));
        }
        if seg.dst.port != self.port {
            return false;
        }
        if self.addressed.len() >= CAP {
            self.addressed.clear();
        }
        self.addressed.insert((seg.src, t.seq), seg.dst);
        false
    }

    /// Remembers what became of a `Finished` record whose `Settled` one follows: shown to
    /// the server `Ok(shown)`, or dropped (`Err` with its segments).
    pub(super) fn settles_later(&mut self, r: &FlowRecord, shown: Result<Endpoint, u64>) {
        self.settling.insert(r.id, shown);
    }

    /// A `Settled` record as its `Finished` one went: `Err` with the segments that record
    /// had if it was dropped as a second copy; else readdressed to the same server.
    pub(super) fn settled(&mut self, r: &mut FlowRecord) -> Result<(), u64> {
        match self.settling.remove(&r.id) {
            Some(Err(before)) => Err(before),
            Some(Ok(shown)) => {
                r.server = shown;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Where the client addressed the connection `r` (host:P), when `r` is the copy after
    /// the translation and its SYN was seen before it.
    pub(super) fn addressed(&mut self, r: &FlowRecord) -> Option<Endpoint> {
        let key = (r.client, r.client_isn?);
        let before = self.addressed.remove(&key)?;
        (r.server == self.backend).then_some(before)
    }

    /// Whether `r` is the second copy of a connection whose first copy already finished
    /// (same client endpoint and ISN, one to host:P and one to the backend).
    pub(super) fn is_second_copy(&mut self, r: &FlowRecord) -> bool {
        let Some(isn) = r.client_isn else {
            return false;
        };
        let copy = if r.server == self.backend {
            Copy_::After
        } else if r.server.port == self.port {
            Copy_::Before
        } else {
            return false;
        };
        let key = (r.client, isn);
        match self.waiting.get(&key) {
            Some(&(other, _)) if other != copy => {
                self.waiting.remove(&key);
                true
            }
            _ => {
                wait_for_twin(&mut self.waiting, key, copy, r.last_ts);
                false
            }
        }
    }
}

/// Keeps an unpaired copy (`what` it was, ended `at`) until its twin comes, in a map
/// bounded by [`CAP`]: when full, the copies older than [`KEEP_US`] go, or all of them.
pub(super) fn wait_for_twin<K: std::hash::Hash + Eq, V>(
    waiting: &mut HashMap<K, (V, Timestamp)>,
    key: K,
    what: V,
    at: Timestamp,
) {
    if waiting.len() >= CAP {
        waiting.retain(|_, (_, ts)| at.micros_since(*ts) < KEEP_US);
        if waiting.len() >= CAP {
            waiting.clear();
        }
    }
    waiting.insert(key, (what, at));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::tests::record;
    use crate::flow::Outcome;

    fn ep(s: &str) -> Endpoint {
        let a: std::net::SocketAddr = s.parse().unwrap();
        Endpoint::new(a.ip(), a.port())
    }

    fn copy(server: &str, isn: u32) -> FlowRecord {
        FlowRecord {
            client: ep("10.78.0.2:47652"),
            server: ep(server),
            client_isn: Some(isn),
            ..record(Outcome::Closed, server)
        }
    }

    #[test]
    fn the_translated_twin_of_a_forwarded_connection_is_dropped_whichever_finishes_first() {
        let mut d = DnatCopies::new(8080, Some(ep("10.77.0.2:80"))).unwrap();
        assert!(!d.is_second_copy(&copy("10.78.0.1:8080", 7)));
        assert!(d.is_second_copy(&copy("10.77.0.2:80", 7)));
        assert!(!d.is_second_copy(&copy("10.77.0.2:80", 8)));
        assert!(d.is_second_copy(&copy("10.78.0.1:8080", 8)));
    }

    #[test]
    fn the_copy_after_the_translation_is_shown_with_the_address_the_client_used() {
        use crate::decode::{HandshakeOptions, TcpFlags, TcpSegment};
        let mut d = DnatCopies::new(8080, Some(ep("10.77.0.2:80"))).unwrap();
        let syn = |dst: &str| Segment {
            encap: crate::decode::Encap::None,
            ts: Timestamp(1),
            src: ep("10.78.0.2:47652"),
            dst: ep(dst),
            kind: SegmentKind::Tcp(TcpSegment {
                seq: 7,
                ack: 0,
                flags: TcpFlags(TcpFlags::SYN),
                window: 0,
                payload_len: 0,
                options: HandshakeOptions::default(),
            }),
        };
        assert!(!d.syn(&syn("10.78.0.1:8080")));
        assert!(d.syn(&syn("10.77.0.2:80")));
        assert_eq!(
            d.addressed(&copy("10.77.0.2:80", 7)),
            Some(ep("10.78.0.1:8080"))
        );
        assert_eq!(
            d.addressed(&copy("10.77.0.2:80", 7)),
            None,
            "forgotten once used"
        );
    }

    #[test]
    fn each_forwarded_syn_is_metered_once_and_a_local_clients_once_too() {
        use crate::decode::{HandshakeOptions, TcpFlags, TcpSegment};
        // The backend on the port itself (`-p 8080:8080`): both copies are SYNs to the
        // port, and `-i any` captures both.
        let mut d = DnatCopies::new(8080, Some(ep("10.77.0.2:8080"))).unwrap();
        let mut meter = crate::diagnose::syn_meter::SynMeter::default();
        let syn = |src: &str, dst: &str, seq: u32, ts: u64| Segment {
            ts: Timestamp(ts),
            src: ep(src),
            dst: ep(dst),
            kind: SegmentKind::Tcp(TcpSegment {
                seq,
                ack: 0,
                flags: TcpFlags(TcpFlags::SYN),
                window: 0,
                payload_len: 0,
                options: HandshakeOptions::default(),
            }),
            encap: crate::decode::Encap::None,
        };
        let captured = [
            // A forwarded client: before and after the DNAT, then its retransmission's
            // two copies.
            syn("10.78.0.2:47652", "10.78.0.1:8080", 7, 1),
            syn("10.78.0.2:47652", "10.77.0.2:8080", 7, 2),
            syn("10.78.0.2:47652", "10.78.0.1:8080", 7, 1_000_001),
            syn("10.78.0.2:47652", "10.77.0.2:8080", 7, 1_000_002),
            // A local client, translated before any capture point: one copy.
            syn("10.77.0.1:40000", "10.77.0.2:8080", 9, 3),
        ];
        for s in &captured {
            if !d.syn(s) {
                meter.syn(s.src.addr, s.ts);
            }
        }
        let rate = meter.rate();
        assert_eq!(rate.syns, 3, "each SYN sent counted once");
        assert_eq!(rate.sources, 2);
    }

    #[test]
    fn another_connection_on_the_same_endpoints_is_not_a_twin() {
        let mut d = DnatCopies::new(8080, Some(ep("10.77.0.2:80"))).unwrap();
        assert!(!d.is_second_copy(&copy("10.77.0.2:80", 1)));
        assert!(!d.is_second_copy(&copy("10.77.0.2:80", 1)));
        assert!(!d.is_second_copy(&copy("10.78.0.1:8080", 2)));
    }
}

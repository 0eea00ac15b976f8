//! `-i any` on a tunnel's endpoint (a Kubernetes node with flannel's VXLAN, a host with a
//! VLAN sub-interface) sees each tunnelled connection twice: inside the tunnel on the
//! underlay (`eth0`: VXLAN, or the tagged frame) and as it is once the kernel has opened
//! the tunnel (`flannel.1`, `eth0.100`). Both copies carry the same endpoints and
//! initial sequence number; one has the tunnel as its `encap`, the other none. The second
//! copy to finish is the same connection again: the flow stage drops it, so the lines,
//! the summary's connection count and the diagnosis count the connections made.
//!
//! Two tunnels carrying the same inner connection (two tenants' overlays reusing
//! addresses) are both tunnelled, with different `encap`: never paired here.

use super::dnat_copies::{wait_for_twin, CAP, KEEP_US};
use crate::decode::{Encap, Endpoint, Timestamp};
use crate::flow::FlowRecord;
use std::collections::HashMap;

/// The copies of tunnelled connections seen finishing, waiting for their twins.
#[derive(Debug, Default)]
pub(super) struct TunnelCopies {
    /// By client, server and ISN: whether the copy that finished was tunnelled, and when.
    waiting: HashMap<(Endpoint, Endpoint, u32), (bool, Timestamp)>,
    /// Copies dropped whose `Settled` record may still come (packets after their close),
    /// by id, with their segments then: it goes the same way.
    dropped: HashMap<u64, u64>,
}

impl TunnelCopies {
    /// Only on captures of every interface (`-i any`, or a file of one: Linux cooked
    /// headers), where one host sees both sides of its own tunnels.
    pub(super) fn new(any: bool) -> Option<TunnelCopies> {
        any.then(TunnelCopies::default)
    }

    /// Whether `r` is the second copy of a connection whose other copy (tunnelled where
    /// this one is not, or the reverse) already finished.
    pub(super) fn is_second_copy(&mut self, r: &FlowRecord) -> bool {
        let Some(isn) = r.client_isn else {
            return false;
        };
        let tunnelled = r.encap != Encap::None;
        let key = (r.client, r.server, isn);
        match self.waiting.get(&key) {
            Some(&(other, at)) if other != tunnelled && r.last_ts.micros_since(at) < KEEP_US => {
                self.waiting.remove(&key);
                if self.dropped.len() >= CAP {
                    self.dropped.clear();
                }
                self.dropped.insert(r.id, r.packets[0] + r.packets[1]);
                true
            }
            _ => {
                wait_for_twin(&mut self.waiting, key, tunnelled, r.last_ts);
                false
            }
        }
    }

    /// For a `Settled` record of a copy that was dropped: its segments when it was.
    pub(super) fn settled_was_dropped(&mut self, r: &FlowRecord) -> Option<u64> {
        self.dropped.remove(&r.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::tests::record;
    use crate::flow::Outcome;

    fn copy(id: u64, encap: Encap, last: u64) -> FlowRecord {
        FlowRecord {
            id,
            encap,
            client_isn: Some(1000),
            last_ts: Timestamp(last),
            ..record(Outcome::Closed, "10.244.0.2:8080")
        }
    }

    #[test]
    fn the_opened_copy_of_a_tunnelled_connection_is_dropped_as_its_second_copy() {
        let mut c = TunnelCopies::default();
        assert!(!c.is_second_copy(&copy(1, Encap::Vxlan(1), 5_000)));
        assert!(c.is_second_copy(&copy(2, Encap::None, 5_010)));
        assert!(c
            .settled_was_dropped(&copy(2, Encap::None, 9_000))
            .is_some());
        assert!(c
            .settled_was_dropped(&copy(1, Encap::Vxlan(1), 9_000))
            .is_none());
    }

    #[test]
    fn two_tunnels_carrying_the_same_connection_are_two_connections() {
        let mut c = TunnelCopies::default();
        assert!(!c.is_second_copy(&copy(1, Encap::Vxlan(42), 5_000)));
        assert!(!c.is_second_copy(&copy(2, Encap::Vxlan(43), 5_010)));
    }

    #[test]
    fn a_copy_ending_long_after_is_another_connection() {
        let mut c = TunnelCopies::default();
        assert!(!c.is_second_copy(&copy(1, Encap::None, 5_000)));
        assert!(!c.is_second_copy(&copy(2, Encap::Vlan(100), 5_000 + KEEP_US)));
    }
}

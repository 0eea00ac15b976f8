//! Handshakes that stall: the server's SYN-ACKs never get the client's ACK.

use crate::diagnose::cause::{Cause, HandshakeStall};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::Finding;
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;

pub fn findings(ev: &Evidence, _facts: Option<&HostFacts>, _scope: &Scope) -> Vec<Finding> {
    if ev.handshake_stalled == 0 {
        return Vec::new();
    }
    let cause = Cause::HandshakeStalled(HandshakeStall {
        flows: ev.handshake_stalled,
        synack_retransmits: ev.stalled_synack_retransmits,
    });
    vec![Finding::new(cause, ev.handshake_stalled)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome};

    #[test]
    fn synacks_retransmitted_without_an_ack_are_a_stalled_handshake() {
        let stalled = FlowRecord {
            synack_count: 5,
            ..record(Outcome::HandshakeIncomplete, "127.0.0.1:61999")
        };
        let found = findings(&evidence(&[stalled]), None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::HandshakeStalled);
        assert_eq!(evidence_json(&found[0])["synack_retransmits"], 4);
    }

    #[test]
    fn a_single_unacknowledged_synack_is_not_yet_a_stall() {
        let once = FlowRecord {
            synack_count: 1,
            ..record(Outcome::HandshakeIncomplete, "127.0.0.1:61999")
        };
        assert!(findings(&evidence(&[once]), None, &Scope::port(61999)).is_empty());
    }
}

//! Handshakes that stall: the server's SYN-ACKs never get the client's ACK.

use crate::diagnose::cause::{Cause, HandshakeStall};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::Finding;
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, _scope: &Scope) -> Vec<Finding> {
    // A flood's half-open attempts (spoofed sources never ACK) are the flood's story.
    let flood = if super::flood::recognised(ev, facts) {
        ev.one_shot_stalled
    } else {
        0
    };
    let stalled = ev.handshake_stalled.saturating_sub(flood);
    if stalled == 0 {
        return Vec::new();
    }
    // The SYN-ACKs of the flood's attempts were sent again as many times as the others'
    // on average: only the rest are counted.
    let synack_retransmits = ev.stalled_synack_retransmits * stalled / ev.handshake_stalled;
    let cause = Cause::HandshakeStalled(HandshakeStall {
        flows: stalled,
        synack_retransmits,
    });
    vec![Finding::new(cause, stalled)]
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

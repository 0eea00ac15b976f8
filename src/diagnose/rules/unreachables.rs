//! SYNs answered by ICMP destination unreachable: a filter's REJECT (port, protocol,
//! admin prohibited: Linux's TCP never answers a closed port with ICMP) or a routing
//! problem (network, host).

use crate::decode::Unreachable;
use crate::diagnose::cause::{Cause, IcmpErrors};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::Finding;
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;

pub fn findings(ev: &Evidence, _facts: Option<&HostFacts>, _scope: &Scope) -> Vec<Finding> {
    ev.unreachable
        .values()
        .map(|seen| {
            let errors = IcmpErrors {
                unreachable: seen.count,
                icmp: seen.kind,
                icmp_from: seen.from,
            };
            let cause = match seen.kind {
                Unreachable::Port | Unreachable::AdminProhibited | Unreachable::Protocol => {
                    Cause::IcmpRejected(errors)
                }
                Unreachable::Network | Unreachable::Host | Unreachable::Other { .. } => {
                    Cause::IcmpUnreachable(errors)
                }
            };
            Finding::new(cause, seen.count)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, IcmpAnswer, Outcome};

    fn answered_by(kind: Unreachable) -> FlowRecord {
        FlowRecord {
            icmp: Some(IcmpAnswer {
                kind,
                reporter: "10.0.0.1".parse().unwrap(),
            }),
            ..record(Outcome::Unreachable, "127.0.0.1:61999")
        }
    }

    #[test]
    fn icmp_admin_prohibited_is_a_firewall_reject() {
        let ev = evidence(&[answered_by(Unreachable::AdminProhibited)]);
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::RejectedByFirewall);
        assert_eq!(evidence_json(&found[0])["icmp"], "admin_prohibited");
        assert_eq!(evidence_json(&found[0])["icmp_from"], "10.0.0.1");
        assert!(found[0]
            .explanation()
            .contains("--reject-with icmp-admin-prohibited"));
    }

    #[test]
    fn icmp_host_unreachable_is_a_network_problem() {
        let ev = evidence(&[
            answered_by(Unreachable::Host),
            answered_by(Unreachable::Host),
        ]);
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found.len(), 1, "one finding per ICMP kind");
        assert_eq!(found[0].kind, FindingKind::NetworkUnreachable);
        assert_eq!(found[0].weight, 2);
    }
}

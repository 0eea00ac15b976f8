//! SYNs answered by ICMP destination unreachable: a filter's REJECT (port, protocol,
//! admin prohibited: Linux's TCP never answers a closed port with ICMP) or a routing
//! problem (network, host). Whatever the code, an error the server's own host sent is a
//! REJECT rule there: the kernel witnessed netfilter drop the SYN before the error came
//! back, or (without the witness) the error's source is the server's own address, which
//! never reports itself unreachable.

use super::{hook_of, rejecting_rule};
use crate::decode::Unreachable;
use crate::diagnose::cause::{Basis, Cause, IcmpErrors, LocalReject};
use crate::diagnose::evidence::{Evidence, IcmpSeen};
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::firewall::Hook;
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, _scope: &Scope) -> Vec<Finding> {
    ev.unreachable
        .values()
        .map(|seen| {
            let meant_for =
                facts.and_then(|f| f.now.listeners.iter().find(|l| l.accepts(&seen.server)));
            let errors = IcmpErrors {
                unreachable: seen.count,
                icmp: seen.kind,
                icmp_from: seen.from,
                local: local_reject(ev, facts, seen).map(|mut local| {
                    local.listener = meant_for.map(|l| l.local);
                    local
                }),
            };
            let cause = match (seen.kind, &errors.local) {
                (_, Some(_))
                | (
                    Unreachable::Port | Unreachable::AdminProhibited | Unreachable::Protocol,
                    None,
                ) => Cause::IcmpRejected(errors),
                (Unreachable::Network | Unreachable::Host | Unreachable::Other { .. }, None) => {
                    Cause::IcmpUnreachable(errors)
                }
            };
            let finding = Finding::new(cause, seen.count);
            match meant_for {
                Some(l) => finding.processes(&l.processes, Role::Listener),
                None => finding,
            }
        })
        .collect()
}

/// Whether the server's own host rejected these SYNs, and on what word. A replay's
/// port, protocol or admin-prohibited errors are a REJECT already, wherever it sits: only
/// the codes that would otherwise read as a routing problem are said to be local there.
fn local_reject(ev: &Evidence, facts: Option<&HostFacts>, seen: &IcmpSeen) -> Option<LocalReject> {
    let local = |hook, drop_reason: Option<&str>, basis| LocalReject {
        server: seen.server,
        listener: None,
        rule: rejecting_rule(facts, hook, true, false),
        drop_reason: drop_reason.map(str::to_string),
        hook,
        basis,
    };
    if let Some(&(path, _)) = ev.kernel.icmp_rejected.get(seen.kind.as_str()) {
        return Some(local(hook_of(path), Some("NETFILTER_DROP"), Basis::Host));
    }
    if seen.from_destination < seen.count {
        return None;
    }
    if ev.kernel.flows > 0 {
        // The witness ran and saw no netfilter drop here: the rule is on the server's
        // host, not this one, and this host's ruleset says nothing about it.
        return Some(LocalReject {
            rule: None,
            ..local(Hook::Input, None, Basis::Host)
        });
    }
    match (facts, seen.kind) {
        (Some(_), _) => Some(local(Hook::Input, None, Basis::Host)),
        (None, Unreachable::Network | Unreachable::Host | Unreachable::Other { .. }) => {
            Some(local(Hook::Input, None, Basis::Packets))
        }
        (None, Unreachable::Port | Unreachable::AdminProhibited | Unreachable::Protocol) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, IcmpAnswer, Outcome, Side};
    use crate::kernel::facts::PathName;

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

    /// A SYN to the server answered by ICMP `kind` sent from the server's own address.
    fn answered_by_itself(kind: Unreachable) -> FlowRecord {
        FlowRecord {
            icmp: Some(IcmpAnswer {
                kind,
                reporter: "127.0.0.1".parse().unwrap(),
            }),
            ..record(Outcome::Unreachable, "127.0.0.1:61999")
        }
    }

    const REJECT_HOST_UNREACHABLE: &str = "*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 61999 -j REJECT --reject-with icmp-host-unreachable
COMMIT
";

    #[test]
    fn host_unreachable_after_the_kernel_saw_netfilter_drop_the_syn_is_the_reject_rule_here() {
        let ev = witnessed(&[(
            answered_by_itself(Unreachable::Host),
            netfilter_drop(Side::Client, "SYN", PathName::Ingress),
        )]);
        let f = with_firewall(
            facts(vec![listener("0.0.0.0:61999")]),
            REJECT_HOST_UNREACHABLE,
        );
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::RejectedByFirewall);
        let w = found[0].words();
        assert!(
            w.headline
                .contains("rejected by a firewall rule on this host"),
            "{}",
            w.headline
        );
        assert!(!w
            .explanation
            .contains("a routing problem or a host that is down:"));
        assert!(
            w.explanation.contains("NETFILTER_DROP"),
            "{}",
            w.explanation
        );
        assert!(w.explanation.contains("A listener on 0.0.0.0:61999 exists"));
        let json = evidence_json(&found[0]);
        assert_eq!(json["icmp"], "host_unreachable");
        assert_eq!(json["drop_reason"], "NETFILTER_DROP");
        assert_eq!(
            json["rule"],
            "iptables -t filter rule \"-A INPUT -p tcp -m tcp --dport 61999 -j REJECT --reject-with icmp-host-unreachable\""
        );
        assert_eq!(found[0].processes[0].process.pid, 4567);
    }

    #[test]
    fn live_without_the_witness_an_error_from_the_server_itself_with_a_listener_is_a_local_reject()
    {
        let ev = evidence(&[answered_by_itself(Unreachable::Network)]);
        let f = with_firewall(
            facts(vec![listener("127.0.0.1:61999")]),
            REJECT_HOST_UNREACHABLE,
        );
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::RejectedByFirewall);
        let json = evidence_json(&found[0]);
        assert_eq!(json["drop_reason"], serde_json::Value::Null);
        assert_eq!(json["listener"], "127.0.0.1:61999");
        assert!(json["rule"]
            .as_str()
            .unwrap()
            .contains("icmp-host-unreachable"));
        assert!(found[0].explanation().contains("the server's own address"));
        assert!(found[0]
            .explanation()
            .contains("--reject-with icmp-net-unreachable"));
    }

    #[test]
    fn replayed_host_unreachable_from_the_destination_itself_is_a_reject_there() {
        let found = findings(
            &evidence(&[answered_by_itself(Unreachable::Host)]),
            None,
            &Scope::port(61999),
        );
        assert_eq!(found[0].kind, FindingKind::RejectedByFirewall);
        assert!(found[0].explanation().contains("from the packets alone"));
        assert!(found[0]
            .next_step()
            .starts_with("on 127.0.0.1's host, look for a REJECT rule"));
    }

    #[test]
    fn replayed_port_unreachable_from_the_destination_keeps_its_words() {
        let found = findings(
            &evidence(&[answered_by_itself(Unreachable::Port)]),
            None,
            &Scope::port(61999),
        );
        let json = evidence_json(&found[0]);
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["unreachable", "icmp", "icmp_from"]);
        assert!(found[0]
            .headline()
            .starts_with("1 connection attempt rejected by a firewall: ICMP port unreachable"));
    }

    #[test]
    fn with_the_witness_on_and_no_drop_here_the_rule_is_not_looked_for_on_this_host() {
        let ev = witnessed(&[(answered_by_itself(Unreachable::Host), Default::default())]);
        let f = with_firewall(facts(vec![]), REJECT_HOST_UNREACHABLE);
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::RejectedByFirewall);
        assert_eq!(evidence_json(&found[0])["rule"], serde_json::Value::Null);
    }
}

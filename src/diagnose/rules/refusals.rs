//! Refused connections (the server host answered the SYN with RST): is nothing
//! listening, or is the listener on another address, family or network namespace, or
//! does something in between answer for it?
//!
//! Live, a refusal is judged by the listeners when it happened
//! ([`HostFacts::listeners_when_refused`]): a server started a moment later did not
//! refuse it, and one that stopped since did.

use crate::diagnose::cause::{Basis, Cause, Refused, RefusedInNamespace, RefusedWithListener};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let port = scope.port;
    let mut out = Vec::new();
    for (&server, &refused) in &ev.refused {
        let with = |listener| RefusedWithListener {
            refused,
            server,
            listener,
            port,
            basis: if facts.is_some() {
                Basis::Host
            } else {
                Basis::Packets
            },
        };
        let nothing = |basis| {
            Finding::new(
                Cause::NothingListening(Refused {
                    refused,
                    server,
                    port,
                    basis,
                }),
                refused,
            )
        };
        let finding = match facts {
            Some(f) => {
                let here = f.listeners_when_refused(&server);
                if let Some(l) = here.iter().find(|l| l.accepts(&server)) {
                    // A listener that should have taken the SYNs: the RST came from a
                    // filter (`REJECT --reject-with tcp-reset`), not from the stack.
                    Finding::new(Cause::RefusedDespiteListener(with(l.local)), refused)
                        .processes(&l.processes, Role::Listener)
                } else if let Some(l) = here
                    .iter()
                    .find(|l| l.local.addr.is_ipv4() != server.addr.is_ipv4())
                {
                    Finding::new(Cause::ListenerOtherFamily(with(l.local)), refused)
                        .processes(&l.processes, Role::Listener)
                } else if let Some(l) = here.first() {
                    Finding::new(Cause::ListenerOtherAddress(with(l.local)), refused)
                        .processes(&l.processes, Role::Listener)
                } else if let Some(l) = f.now.foreign_listeners.first() {
                    let cause = Cause::ListenerOtherNamespace(RefusedInNamespace {
                        refused,
                        server,
                        listener: l.local,
                        namespace: l.namespace.clone().unwrap_or_default(),
                        port,
                        nsenter_pid: l.processes.first().map_or(0, |p| p.pid),
                    });
                    Finding::new(cause, refused).processes(&l.processes, Role::Listener)
                } else {
                    nothing(Basis::Host)
                }
            }
            None => {
                // Packets alone: did connections to the same port on another address or
                // family succeed in this very capture?
                let other = ev
                    .answered
                    .keys()
                    .find(|s| s.port == server.port && s.addr != server.addr);
                match other {
                    Some(&ok) if ok.addr.is_ipv4() != server.addr.is_ipv4() => {
                        Finding::new(Cause::ListenerOtherFamily(with(ok)), refused)
                    }
                    Some(&ok) => Finding::new(Cause::ListenerOtherAddress(with(ok)), refused),
                    None => nothing(Basis::Packets),
                }
            }
        };
        out.push(finding);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::host::Listener;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome};

    fn kinds(ev: &Evidence, f: Option<&HostFacts>) -> Vec<FindingKind> {
        findings(ev, f, &Scope::port(61999))
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn refused_with_no_listener_anywhere_is_nothing_listening() {
        let ev = evidence(&[refused("127.0.0.1:61999")]);
        assert_eq!(
            kinds(&ev, Some(&facts(vec![]))),
            [FindingKind::NothingListening]
        );
        assert_eq!(kinds(&ev, None), [FindingKind::NothingListening]);
    }

    #[test]
    fn refused_on_ipv4_with_an_ipv6_only_listener_is_the_localhost_trap() {
        let ev = evidence(&[refused("127.0.0.1:61999")]);
        let f = facts(vec![listener("[::1]:61999")]);
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ListenerOtherFamily);
        assert_eq!(evidence_json(&found[0])["listener"], "[::1]:61999");
        assert_eq!(found[0].processes[0].process.pid, 4567);
        assert_eq!(found[0].processes[0].role, Role::Listener);
        assert!(found[0].headline().contains("(IPv6 only)"));
    }

    #[test]
    fn refused_on_ipv4_with_a_v6only_wildcard_listener_is_the_other_family() {
        let ev = evidence(&[refused("127.0.0.1:61999")]);
        let f = facts(vec![listener("[::]:61999")]);
        assert_eq!(kinds(&ev, Some(&f)), [FindingKind::ListenerOtherFamily]);
    }

    #[test]
    fn refused_is_judged_by_the_listeners_when_it_happened_not_now() {
        let ev = evidence(&[refused("127.0.0.1:61999")]);
        // The server was on ::1 at the refusal, and has stopped since.
        let mut f = facts(vec![]);
        f.refused_at
            .insert(ep("127.0.0.1:61999"), vec![listener("[::1]:61999")]);
        assert_eq!(kinds(&ev, Some(&f)), [FindingKind::ListenerOtherFamily]);
        // Nothing listened at the refusal; a listener that matches started after it:
        // not a firewall.
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.refused_at.insert(ep("127.0.0.1:61999"), vec![]);
        assert_eq!(kinds(&ev, Some(&f)), [FindingKind::NothingListening]);
    }

    #[test]
    fn refused_while_bound_to_another_loopback_address() {
        let ev = evidence(&[refused("127.0.0.1:61999")]);
        let f = facts(vec![listener("127.0.0.2:61999")]);
        assert_eq!(kinds(&ev, Some(&f)), [FindingKind::ListenerOtherAddress]);
    }

    #[test]
    fn refused_although_a_matching_listener_exists_is_a_firewall() {
        let ev = evidence(&[refused("127.0.0.1:61999")]);
        for addr in ["127.0.0.1:61999", "0.0.0.0:61999"] {
            let f = facts(vec![listener(addr)]);
            assert_eq!(
                kinds(&ev, Some(&f)),
                [FindingKind::RejectedByFirewall],
                "{addr}"
            );
        }
    }

    #[test]
    fn refused_here_while_listening_in_another_namespace() {
        let ev = evidence(&[refused("127.0.0.1:61999")]);
        let mut f = facts(vec![]);
        f.now.foreign_listeners = vec![Listener {
            namespace: Some("net:[4026532000]".into()),
            ..listener("127.0.0.1:61999")
        }];
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ListenerOtherNamespace);
        assert_eq!(evidence_json(&found[0])["namespace"], "net:[4026532000]");
        assert!(found[0].next_step().contains("nsenter -t 4567 -n"));
    }

    #[test]
    fn replayed_refusals_while_the_other_family_succeeded_are_the_other_family() {
        let ok = FlowRecord {
            handshake_rtt_us: Some(10),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let found = findings(
            &evidence(&[refused("[::1]:61999"), ok]),
            None,
            &Scope::port(61999),
        );
        assert_eq!(found[0].kind, FindingKind::ListenerOtherFamily);
        assert!(found[0].explanation().contains("from the packets alone"));
    }

    #[test]
    fn replayed_refusals_while_another_address_succeeded_are_the_other_address() {
        let ok = FlowRecord {
            handshake_rtt_us: Some(10),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let ev = evidence(&[refused("127.0.0.2:61999"), ok]);
        assert_eq!(kinds(&ev, None), [FindingKind::ListenerOtherAddress]);
    }
}

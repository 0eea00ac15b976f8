//! Refused connections (a RST answered the SYN in the server's name): the kernel's word
//! first, on where that RST came from. This host's TCP (no socket for the SYN: is
//! nothing listening, or is the listener on another address, family or network
//! namespace?), a firewall's REJECT (netfilter dropped the SYN and answered it), or
//! neither (another host or a middlebox). Without the kernel witness, the same
//! questions are answered from the listeners alone.
//!
//! Live, a refusal is judged by the listeners when it happened
//! ([`HostFacts::listeners_when_refused`]): a server started a moment later did not
//! refuse it, and one that stopped since did.

use super::{hook_of, rejecting_rule, restarts};
use crate::decode::Endpoint;
use crate::diagnose::cause::{
    Basis, Cause, FirewallResets, ForwardedRefused, Refused, RefusedElsewhere, RefusedInNamespace,
    RefusedWithListener,
};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::firewall::nat::Dnat;
use crate::diagnose::host::firewall::Hook;
use crate::diagnose::host::{HostFacts, ProcessInfo};
use crate::diagnose::kernel::{PathKey, ResetSource};
use crate::diagnose::rules::Scope;

/// One server's refusals, split by where the kernel says their RSTs came from.
#[derive(Default)]
struct Sources {
    /// This host's TCP: how many, and the most common of its resets.
    tcp: u64,
    tcp_source: Option<(ResetSource, u64)>,
    /// A REJECT rule: how many, and where netfilter stopped most of the SYNs.
    firewall: u64,
    firewall_path: Option<(PathKey, u64)>,
    /// Neither.
    elsewhere: u64,
}

impl Sources {
    fn of(ev: &Evidence, server: Endpoint) -> Sources {
        let mut s = Sources::default();
        for ((to, source), &n) in &ev.kernel.refusals {
            if *to != server {
                continue;
            }
            match source {
                ResetSource::TcpReply { .. }
                | ResetSource::SocketClose { .. }
                | ResetSource::ListenerClosed { .. } => {
                    s.tcp += n;
                    most(&mut s.tcp_source, source.clone(), n);
                }
                ResetSource::FirewallReject { path } => {
                    s.firewall += n;
                    most(&mut s.firewall_path, *path, n);
                }
                ResetSource::NotLocalTcp => s.elsewhere += n,
            }
        }
        s
    }
}

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let mut out = Vec::new();
    for (&server, &refused) in &ev.refused {
        let mut kernel = Sources::of(ev, server);
        // Refusals that accepted connections ended are a startup race or a restart,
        // whatever sent their RSTs, unless a firewall's REJECT did (a rule, not a
        // server's absence).
        let mut refused = refused;
        if kernel.firewall == 0 {
            let backend =
                port_map(facts, server).map(|d| (Endpoint::new(d.to.ip(), d.to.port()), d.port));
            if let Some((f, n)) = restarts::finding(ev, facts, server, backend) {
                out.push(f);
                refused = refused.saturating_sub(n);
                let from_tcp = kernel.tcp.min(n);
                kernel.tcp -= from_tcp;
                kernel.elsewhere = kernel.elsewhere.saturating_sub(n - from_tcp);
                if refused == 0 {
                    continue;
                }
            }
        }
        if let Some(f) = forwarded(facts, scope, server, refused) {
            out.push(f);
            continue;
        }
        // Live, the listener the SYNs were meant for, if one listened when they were
        // refused.
        let meant_for = facts.and_then(|f| {
            f.listeners_when_refused(&server)
                .iter()
                .find(|l| l.accepts(&server))
        });
        let named = |f: Finding| match meant_for {
            Some(l) => f.processes(&l.processes, Role::Listener),
            None => f,
        };
        if kernel.firewall > 0 {
            let hook = kernel
                .firewall_path
                .map_or(Hook::Input, |(p, _)| hook_of(p));
            let cause = Cause::RejectedWithReset(FirewallResets {
                refused: kernel.firewall,
                server,
                listener: meant_for.map(|l| l.local),
                rule: rejecting_rule(facts, hook, true, true),
                drop_reason: Some("NETFILTER_DROP".into()),
                hook,
            });
            out.push(named(Finding::new(cause, kernel.firewall)));
        }
        if kernel.elsewhere > 0 {
            let cause = Cause::RefusedElsewhere(RefusedElsewhere {
                refused: kernel.elsewhere,
                server,
                listener: meant_for.map(|l| l.local),
                own_address: facts.is_some_and(|f| f.now.is_own_address(server.addr)),
            });
            out.push(named(Finding::new(cause, kernel.elsewhere)));
        }
        if kernel.tcp > 0 {
            // The kernel's TCP found no socket for the SYN: a listener the last look
            // found for this address was not there yet (or not any more).
            let source = kernel.tcp_source.map(|(s, _)| s);
            out.push(no_socket(ev, facts, scope, server, kernel.tcp, source));
        }
        let unwitnessed = refused.saturating_sub(kernel.tcp + kernel.firewall + kernel.elsewhere);
        if unwitnessed > 0 {
            out.push(match meant_for {
                // A listener that should have taken the SYNs: the RST came from a filter
                // (`REJECT --reject-with tcp-reset`), not from the stack.
                Some(l) => named(Finding::new(
                    Cause::RejectedWithReset(FirewallResets {
                        refused: unwitnessed,
                        server,
                        listener: Some(l.local),
                        rule: rejecting_rule(facts, Hook::Input, true, true),
                        drop_reason: None,
                        hook: Hook::Input,
                    }),
                    unwitnessed,
                )),
                None => no_socket(ev, facts, scope, server, unwitnessed, None),
            });
        }
    }
    out
}

/// Refusals at the backend a DNAT rule forwards the port to: the translation, the
/// backend's namespace and what listens there instead.
fn forwarded(
    facts: Option<&HostFacts>,
    scope: &Scope,
    server: Endpoint,
    refused: u64,
) -> Option<Finding> {
    let facts = facts?;
    let dnat = port_map(Some(facts), server)?;
    let backend = Endpoint::new(dnat.to.ip(), dnat.to.port());
    let (namespace, listeners) = match (&facts.backend_at_refusal, &dnat.backend) {
        (Some((ns, ls)), _) => (ns.clone(), ls.as_slice()),
        (None, Some((ns, ls))) => (Some(ns.clone()), ls.as_slice()),
        (None, None) => (None, &[][..]),
    };
    let first = listeners.iter().find(|l| !l.processes.is_empty());
    let cause = Cause::ForwardedNothingListening(ForwardedRefused {
        refused,
        server,
        backend,
        forwarded_port: scope.port,
        rule: dnat.rule.clone(),
        namespace,
        listening_there: listeners.iter().map(|l| l.local).collect(),
        listener_process: first
            .and_then(|l| l.processes.first())
            .map(|p| (p.name.clone(), p.pid)),
    });
    let finding = Finding::new(cause, refused);
    Some(match first {
        Some(l) => finding.processes(&l.processes, Role::Listener),
        None => finding,
    })
}

/// The DNAT rule whose connections `server` stands for: refused at the backend (the copy
/// after the translation), or to host:P with no listener of its own (the copy before it,
/// `-i any`): both are the port map's.
fn port_map(facts: Option<&HostFacts>, server: Endpoint) -> Option<&Dnat> {
    let facts = facts?;
    let no_listener_here = !facts
        .listeners_when_refused(&server)
        .iter()
        .any(|l| l.accepts(&server));
    facts.firewall.as_ref()?.dnat().iter().find(|d| {
        let backend = Endpoint::new(d.to.ip(), d.to.port());
        backend == server || (server.port == d.port && no_listener_here)
    })
}

/// Keeps `value` in `slot` if it is the most common so far.
fn most<T>(slot: &mut Option<(T, u64)>, value: T, n: u64) {
    if slot.as_ref().is_none_or(|(_, m)| n > *m) {
        *slot = Some((value, n));
    }
}

/// `refused` connections to `server` that found no socket: where the listener is
/// instead, if anywhere. `kernel`: the reset TCP sent, when the witness saw it.
fn no_socket(
    ev: &Evidence,
    facts: Option<&HostFacts>,
    scope: &Scope,
    server: Endpoint,
    refused: u64,
    kernel: Option<ResetSource>,
) -> Finding {
    let port = scope.port;
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
                kernel: kernel.clone(),
                port,
                basis,
            }),
            refused,
        )
    };
    let listed = |procs: &[ProcessInfo], cause| {
        Finding::new(cause, refused).processes(procs, Role::Listener)
    };
    match facts {
        Some(f) => {
            let here: Vec<_> = f
                .listeners_when_refused(&server)
                .iter()
                .filter(|l| !l.accepts(&server))
                .collect();
            if let Some(l) = here
                .iter()
                .find(|l| l.local.addr.is_ipv4() != server.addr.is_ipv4())
            {
                listed(&l.processes, Cause::ListenerOtherFamily(with(l.local)))
            } else if let Some(l) = here.first() {
                listed(&l.processes, Cause::ListenerOtherAddress(with(l.local)))
            } else if let Some(l) = f.now.foreign_listeners.first() {
                let cause = Cause::ListenerOtherNamespace(RefusedInNamespace {
                    refused,
                    server,
                    listener: l.local,
                    namespace: l.namespace.clone().unwrap_or_default(),
                    port,
                    nsenter_pid: l.processes.first().map_or(0, |p| p.pid),
                });
                listed(&l.processes, cause)
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::host::Listener;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome, Side};
    use crate::kernel::facts::PathName;
    use crate::kernel::{KernelFacts, ResetOrigin};

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
    fn a_wildcard_listener_of_the_other_family_is_reached_on_its_loopback() {
        let ev = evidence(&[refused("127.0.0.1:61999")]);
        let f = facts(vec![listener("[::]:61999")]);
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        let next = found[0].next_step();
        assert!(next.starts_with("connect to [::1]:61999 instead"), "{next}");
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
    fn a_port_map_whose_backend_listens_on_another_port_names_the_translation_and_the_process() {
        use crate::diagnose::host::firewall::{nat, Ruleset};
        let ev = evidence(&[refused("10.77.0.2:80")]);
        let mut f = facts(vec![]);
        let mut dnat = nat::parse(
            "*nat\n-A PREROUTING -p tcp -m tcp --dport 61999 -j DNAT --to-destination 10.77.0.2:80\nCOMMIT\n",
            61999,
        );
        dnat[0].backend = Some(("net:[4026532000]".into(), vec![listener("0.0.0.0:81")]));
        f.firewall = Some(std::sync::Arc::new(Ruleset::default().with_dnat(dnat)));
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, FindingKind::NothingListening);
        let json = evidence_json(&found[0]);
        assert_eq!(json["server"], "10.77.0.2:80");
        assert_eq!(json["backend"], "10.77.0.2:80");
        assert_eq!(json["namespace"], "net:[4026532000]");
        assert_eq!(json["listening_there"][0], "0.0.0.0:81");
        let why = found[0].explanation();
        assert!(
            why.contains("java (pid 4567) listens on 81 in that namespace"),
            "{why}"
        );
        let headline = found[0].headline();
        assert!(
            headline.contains("host:61999 is forwarded to 10.77.0.2:80 in net:[4026532000]"),
            "{headline}"
        );
    }

    const REJECT_TCP_RESET: &str = "*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 61999 -j REJECT --reject-with tcp-reset
COMMIT
";

    #[test]
    fn refused_with_a_reset_tcp_sent_for_no_socket_is_nothing_listening_in_the_kernels_words() {
        let ev = witnessed(&[(
            refused("127.0.0.1:61999"),
            kernel_reset(Side::Server, ResetOrigin::Reply, "NO_SOCKET", None),
        )]);
        let found = findings(&ev, Some(&facts(vec![])), &Scope::port(61999));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, FindingKind::NothingListening);
        assert!(
            found[0].explanation().starts_with(
                "The kernel answered with a RST: no socket for 127.0.0.1:61999 (NO_SOCKET)."
            ),
            "{}",
            found[0].explanation()
        );
        let json = evidence_json(&found[0]);
        assert_eq!(
            (&json["origin"], &json["reset_reason"]),
            (&"reply".into(), &"NO_SOCKET".into())
        );
    }

    #[test]
    fn a_tcp_reset_reject_with_nothing_listening_is_the_firewall_not_nothing_listening() {
        let ev = witnessed(&[(
            refused("127.0.0.1:61999"),
            netfilter_drop(Side::Client, "SYN", PathName::Ingress),
        )]);
        let f = with_firewall(facts(vec![]), REJECT_TCP_RESET);
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(kinds(&ev, Some(&f)), [FindingKind::RejectedByFirewall]);
        let json = evidence_json(&found[0]);
        assert_eq!(json["drop_reason"], "NETFILTER_DROP");
        assert_eq!(json["listener"], serde_json::Value::Null);
        assert_eq!(
            json["rule"],
            "iptables -t filter rule \"-A INPUT -p tcp -m tcp --dport 61999 -j REJECT --reject-with tcp-reset\""
        );
        assert!(found[0]
            .explanation()
            .contains("on arrival, in INPUT (NETFILTER_DROP)"));
        assert!(found[0]
            .next_step()
            .contains("remove or narrow iptables -t filter rule"));
    }

    #[test]
    fn a_tcp_reset_reject_in_front_of_a_listener_names_both() {
        let ev = witnessed(&[(
            refused("127.0.0.1:61999"),
            netfilter_drop(Side::Client, "SYN", PathName::Ingress),
        )]);
        let f = with_firewall(facts(vec![listener("0.0.0.0:61999")]), REJECT_TCP_RESET);
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::RejectedByFirewall);
        assert_eq!(evidence_json(&found[0])["listener"], "0.0.0.0:61999");
        assert_eq!(found[0].processes[0].process.pid, 4567);
        assert!(found[0].explanation().contains(
            "A listener on 0.0.0.0:61999 exists: without the rule the connection would succeed."
        ));
    }

    #[test]
    fn a_reject_in_output_is_said_to_stop_the_syn_as_it_leaves() {
        let ev = witnessed(&[(
            refused("127.0.0.1:61999"),
            netfilter_drop(Side::Client, "SYN", PathName::Egress),
        )]);
        let found = findings(&ev, Some(&facts(vec![])), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::RejectedByFirewall);
        assert!(found[0].explanation().contains("on the way out, in OUTPUT"));
        assert_eq!(evidence_json(&found[0])["rule"], serde_json::Value::Null);
    }

    #[test]
    fn the_kernels_no_socket_outweighs_a_listener_the_last_look_found() {
        // The listener came up after the refusal: the kernel's reset says there was no
        // socket, so this is no firewall.
        let ev = witnessed(&[(
            refused("127.0.0.1:61999"),
            kernel_reset(Side::Server, ResetOrigin::Reply, "NO_SOCKET", None),
        )]);
        let f = facts(vec![listener("127.0.0.1:61999")]);
        assert_eq!(kinds(&ev, Some(&f)), [FindingKind::NothingListening]);
    }

    #[test]
    fn a_refusal_neither_tcp_nor_the_firewall_here_sent_came_from_elsewhere() {
        let ev = witnessed(&[(refused("10.0.0.5:61999"), KernelFacts::default())]);
        let found = findings(&ev, Some(&facts(vec![])), &Scope::port(61999));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, FindingKind::RefusedElsewhere);
        assert!(found[0].headline().contains("not by this host"));
        assert!(
            found[0].explanation().contains("another host")
                || found[0].explanation().contains("middlebox")
        );
        assert!(found[0].next_step().starts_with("on 10.0.0.5's host"));
    }

    #[test]
    fn a_refusal_from_elsewhere_to_this_hosts_own_address_was_forwarded_from_here() {
        // An nft map or IPVS sent the SYNs on to a backend in another namespace, whose
        // TCP refused them: no remote host to look at.
        let ev = witnessed(&[(refused("10.81.0.1:61999"), KernelFacts::default())]);
        let mut f = facts(vec![]);
        f.now.own_addresses = vec!["10.81.0.1".parse().unwrap()];
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, FindingKind::RefusedElsewhere);
        assert!(
            found[0]
                .headline()
                .contains("10.81.0.1 is this host's own address"),
            "{}",
            found[0].headline()
        );
        assert!(found[0]
            .explanation()
            .contains("DNAT that portsniff could not read"));
        assert!(
            !found[0].next_step().contains("'s host"),
            "no other host to look at: {}",
            found[0].next_step()
        );
        assert!(found[0].next_step().contains("nft list ruleset"));
        // Loopback is always this host's, listed or not.
        let ev = witnessed(&[(refused("127.0.0.2:61999"), KernelFacts::default())]);
        let found = findings(&ev, Some(&facts(vec![])), &Scope::port(61999));
        assert!(found[0].headline().contains("this host's own address"));
    }

    #[test]
    fn refusals_of_different_origins_are_told_apart() {
        let ev = witnessed(&[
            (
                refused("127.0.0.1:61999"),
                kernel_reset(Side::Server, ResetOrigin::Reply, "NO_SOCKET", None),
            ),
            (
                refused("127.0.0.1:61999"),
                netfilter_drop(Side::Client, "SYN", PathName::Ingress),
            ),
            (
                refused("127.0.0.1:61999"),
                netfilter_drop(Side::Client, "SYN", PathName::Ingress),
            ),
        ]);
        let found = findings(&ev, Some(&facts(vec![])), &Scope::port(61999));
        let weights: Vec<_> = found.iter().map(|f| (f.kind, f.weight)).collect();
        assert_eq!(
            weights,
            [
                (FindingKind::RejectedByFirewall, 2),
                (FindingKind::NothingListening, 1)
            ]
        );
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
}

//! SYNs with no answer at all, and handshake ACKs the server threw away: a full accept
//! queue (the kernel's ListenOverflows says so, live) or a filter's DROP rule.
//!
//! Where the kernel witness saw the drops, its word comes first: the drop reason and
//! place, the firewall rule behind a `NETFILTER_DROP` (from the ruleset read when
//! portsniff started), the server's answers dropped on their way out, and sources the
//! kernel discarded as martians. Inference from packets and counters explains only the
//! unanswered connections the witness saw no drop for (and everything in a replay).

use crate::decode::Endpoint;
use crate::diagnose::cause::{
    AcksDropped, AnsweredUnseen, Cause, DropSite, DroppedReplies, DroppedSyns, FullListener,
    GroupHealth, MartianSyns, OverflowDrops, QueueOverflow, ReasonCount, RulesetSeen, Unanswered,
};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::firewall::{FirewallRule, Hook, Verdict};
use crate::diagnose::host::{Counter, HostFacts, SocketState};
use crate::diagnose::kernel::{DropClass, DropKey, DropTally, KernelEvidence, PathKey};
use crate::diagnose::rules::Scope;
use crate::flow::{Outcome, Side};
use std::collections::{BTreeMap, BTreeSet};

/// Source addresses named in an `invalid_source` finding, at most.
const EXAMPLES: usize = 5;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let port = scope.port;
    let k = &ev.kernel;
    // With the witness, the unanswered connections whose drop it saw are explained by
    // the kernel's findings below; inference is left with the others.
    // Attempts the capture's end cut short say nothing about drops (the `view` rule
    // says so): only those the client retransmitted count.
    // A SYN flood's one-shot attempts are the flood's story (`flood`), never a DROP
    // rule's nor a full accept queue's.
    let folded = super::flood::recognised(ev, facts);
    let flood = if folded {
        super::flood::unanswered_of(ev, facts)
    } else {
        0
    };
    let unanswered = k
        .unexplained(
            ev.count(Outcome::Unanswered)
                .saturating_sub(ev.unanswered_cut),
        )
        .saturating_sub(flood);
    let mut out = Vec::new();
    let overflow_drops = (k.flows > 0).then(|| overflow_drops(k));
    let overflows = facts.map_or(0, |f| f.delta(Counter::ListenOverflows));
    let listen_drops = facts.map_or(0, |f| f.delta(Counter::ListenDrops));
    let full = facts.and_then(|f| {
        f.now
            .listeners
            .iter()
            .chain(f.start.listeners.iter())
            .find(|l| l.queue_full())
            .or_else(|| (overflows > 0).then(|| f.now.listeners.first()).flatten())
    });
    // The handshake ACKs dropped: the kernel's count where it was asked, else inferred
    // from SYN-ACKs retransmitted after the client's ACK.
    let acks_dropped = overflow_drops
        .as_ref()
        .map_or(ev.ack_dropped, |(d, _)| d.flows);
    let witnessed_overflow = overflow_drops.as_ref().is_some_and(|(d, _)| d.packets > 0);
    // With tcp_abort_on_overflow=1, an ACK finding the queue full is answered with RST
    // (`tcp_check_req`'s listen_overflow path): the server resets right after the
    // handshake instead of dropping the ACK.
    let abort_on_overflow = facts.and_then(|f| f.now.abort_on_overflow);
    let handshake_resets = if resets_are_overflow(facts) {
        overflow_resets(ev)
    } else {
        0
    };
    let affected = unanswered + acks_dropped + handshake_resets;
    if affected > 0 && (overflows > 0 || full.is_some() || witnessed_overflow) {
        // Linux drops SYNs and handshake ACKs once the accept queue is over the backlog
        // (`sk_acceptq_is_full`), and counts each in ListenOverflows.
        let server = overflow_drops.as_ref().and_then(|(_, s)| *s);
        // The listener the kernel's drops were for, when none was seen full.
        let listener = full.or_else(|| {
            let f = facts?;
            let server = server?;
            f.now
                .listeners
                .iter()
                .chain(f.start.listeners.iter())
                .find(|l| l.accepts(&server))
        });
        // The other sockets of the full one's SO_REUSEPORT group, as seen in the same look.
        let group = full.and_then(|l| {
            let f = facts?;
            let look = if f.now.listeners.iter().any(|m| m.inode == l.inode) {
                &f.now.listeners
            } else {
                &f.start.listeners
            };
            let members: Vec<_> = look.iter().filter(|m| m.local == l.local).collect();
            let healthy = members.iter().filter(|m| !m.queue_full()).count();
            (members.len() > 1 && healthy > 0).then_some(GroupHealth {
                members: members.len(),
                healthy,
            })
        });
        let cause = Cause::AcceptQueueFull(QueueOverflow {
            unanswered,
            handshake_acks_dropped: acks_dropped,
            handshake_resets,
            abort_on_overflow,
            listen_overflows: overflows,
            listen_drops,
            full: full.map(|l| FullListener {
                listener: l.local,
                accept_queue: l.accept_queue,
                backlog: l.backlog,
            }),
            reuseport_group: group,
            kernel: overflow_drops.map(|(d, _)| d),
            port,
        });
        let procs = listener.map_or(&[][..], |l| &l.processes[..]);
        out.push(Finding::new(cause, affected).processes(procs, Role::Listener));
        out.extend(witnessed(k, facts, port, folded));
        return out;
    }
    out.extend(witnessed(k, facts, port, folded));
    if ev.ack_dropped > 0 && facts.is_none() {
        let cause = Cause::HandshakeAcksDropped(AcksDropped {
            handshake_acks_dropped: ev.ack_dropped,
            port,
        });
        out.push(Finding::new(cause, ev.ack_dropped));
    }
    // Without the answers' direction (or with packets cut by the snaplen) "no answer" is
    // what the view shows, not what happened: the `view` rule says so instead.
    if unanswered == 0
        || super::view::one_sided(ev, scope).is_some()
        || super::view::mostly_truncated(ev)
    {
        return out;
    }
    let mut servers = ev.unanswered_servers.clone();
    // Without the kernel's word, the socket table's: a SYN_RECV socket for an unanswered
    // connection's 4-tuple means its SYN arrived and the listener answered; the answer
    // was lost on its way out (`tcp_conn_request` creates the request socket, then sends
    // the SYN-ACK, which OUTPUT, tc or a cgroup program may drop).
    let unseen = answered_unseen(ev, facts, port, unanswered);
    let unanswered = match unseen {
        Some((finding, matched)) => {
            for (_, server) in &matched {
                if let Some(left) = servers.get_mut(server) {
                    *left = left.saturating_sub(1);
                }
            }
            out.push(finding);
            unanswered.saturating_sub(matched.len() as u64)
        }
        None => unanswered,
    };
    if unanswered == 0 {
        return out;
    }
    for (server, n) in &k.explained.servers {
        if let Some(left) = servers.get_mut(server) {
            *left = left.saturating_sub(*n);
        }
    }
    let cause = Cause::SilentlyDropped(Unanswered {
        unanswered,
        // The flood's attempts sent one SYN each (with cookies off a real client's
        // dropped retries are folded in too, leaving no finding here).
        syns: ev
            .unanswered_syns
            .saturating_sub(k.explained.syns)
            .saturating_sub(flood),
        servers: servers
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(s, _)| s)
            .collect(),
        port,
        listening: facts.map(|f| !f.now.listeners.is_empty()),
    });
    out.push(Finding::new(cause, unanswered));
    out
}

/// Unanswered connections with a SYN_RECV socket on the server's side for their
/// 4-tuple in the latest look (at most `unanswered` of them): a finding, and the
/// (client, server) pairs it explains.
#[allow(clippy::type_complexity)]
fn answered_unseen(
    ev: &Evidence,
    facts: Option<&HostFacts>,
    port: u16,
    unanswered: u64,
) -> Option<(Finding, Vec<(Endpoint, Endpoint)>)> {
    let f = facts?;
    // With the witness, its drops speak for the server's answers (`witnessed`).
    if ev.kernel.flows > 0 {
        return None;
    }
    let matched: Vec<(Endpoint, Endpoint)> = ev
        .unanswered_pairs
        .iter()
        .filter(|(client, server)| {
            f.now.sockets.iter().chain(f.start.sockets.iter()).any(|s| {
                s.state == SocketState::SynRecv && s.local == *server && s.remote == *client
            })
        })
        .copied()
        .take(usize::try_from(unanswered).unwrap_or(usize::MAX))
        .collect();
    if matched.is_empty() {
        return None;
    }
    let servers: BTreeSet<Endpoint> = matched.iter().map(|(_, s)| *s).collect();
    let rule = f
        .firewall
        .as_deref()
        .and_then(|set| rule_for(set, PathKey::Egress, false))
        .cloned();
    let cause = Cause::RepliesUnseen(AnsweredUnseen {
        unanswered: matched.len() as u64,
        servers: servers.into_iter().collect(),
        clients: matched.iter().map(|(c, _)| *c).take(EXAMPLES).collect(),
        rule,
        port,
    });
    let procs = matched
        .first()
        .and_then(|(_, server)| f.now.listeners.iter().find(|l| l.accepts(server)))
        .map_or(&[][..], |l| &l.processes[..]);
    let finding = Finding::new(cause, matched.len() as u64).processes(procs, Role::Listener);
    Some((finding, matched))
}

/// Connections the server reset before sending anything after its SYN-ACK: what
/// `tcp_abort_on_overflow=1` makes of a full accept queue (the RST answers the client's
/// ACK, or its first request when the ACK was lost).
pub(super) fn overflow_resets(ev: &Evidence) -> u64 {
    ev.silent_server_resets
}

/// Whether the server's resets right after the handshake are the accept queue's, by
/// `tcp_abort_on_overflow=1`: the sysctl is on and the queue overflowed.
pub(super) fn resets_are_overflow(facts: Option<&HostFacts>) -> bool {
    facts.is_some_and(|f| {
        f.now.abort_on_overflow == Some(true)
            && (f.delta(Counter::ListenOverflows) > 0
                || f.now
                    .listeners
                    .iter()
                    .chain(f.start.listeners.iter())
                    .any(|l| l.queue_full()))
    })
}

/// The packets the kernel dropped with `TCP_LISTEN_OVERFLOW`, and a server endpoint
/// they were for.
fn overflow_drops(k: &KernelEvidence) -> (OverflowDrops, Option<crate::decode::Endpoint>) {
    let mut d = OverflowDrops {
        reason: "TCP_LISTEN_OVERFLOW",
        place: None,
        what: Vec::new(),
        packets: 0,
        flows: 0,
    };
    let mut server = None;
    let mut by_what: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut top = 0;
    for (key, t) in k.all_drops().iter() {
        if DropClass::of(&key.reason, key.place) != DropClass::ListenOverflow {
            continue;
        }
        d.packets += t.packets;
        // A connection's ACK and data dropped for the same full queue are one connection.
        d.flows = d.flows.max(t.flows);
        *by_what.entry(key.what).or_default() += t.packets;
        if t.packets > top {
            top = t.packets;
            d.place = key.place.map(str::to_string);
            // TCP_LISTEN_OVERFLOW, or NO_SOCKET where a SYN cookie's ACK found no room.
            d.reason = if key.reason == "NO_SOCKET" {
                "NO_SOCKET"
            } else {
                "TCP_LISTEN_OVERFLOW"
            };
            server = Some(t.server);
        }
    }
    d.what = most_first(by_what);
    (d, server)
}

/// Segment kinds by packets, most first.
fn most_first(by_what: BTreeMap<&'static str, u64>) -> Vec<&'static str> {
    let mut v: Vec<_> = by_what.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(w, _)| w).collect()
}

/// Drops of one reason on one path, merged over the places and segment kinds.
#[derive(Default)]
struct Group {
    packets: u64,
    flows: u64,
    unanswered: u64,
    recovered: u64,
    servers: BTreeSet<crate::decode::Endpoint>,
    /// The place with the most packets.
    place: Option<String>,
    place_packets: u64,
    what: BTreeMap<&'static str, u64>,
}

impl Group {
    /// All of `t`'s drops.
    fn add(&mut self, key: &DropKey, t: &DropTally) {
        self.add_some(
            key,
            t,
            t.packets,
            t.flows,
            t.unanswered.flows,
            t.recovered.flows,
        );
    }

    /// Some of `t`'s drops: `packets` in `flows` connections.
    fn add_some(
        &mut self,
        key: &DropKey,
        t: &DropTally,
        packets: u64,
        flows: u64,
        unanswered: u64,
        recovered: u64,
    ) {
        self.packets += packets;
        self.flows += flows;
        self.unanswered += unanswered;
        self.recovered += recovered;
        self.servers.extend(t.servers.iter().copied());
        *self.what.entry(key.what).or_default() += packets;
        if packets > self.place_packets {
            self.place_packets = packets;
            self.place = key.place.map(str::to_string);
        }
    }
}

/// The findings the witness's drops support: the client's SYNs dropped (and why), the
/// server's answers dropped on their way out, and martian sources (unless a SYN flood
/// was recognised: `flood`, whose finding counts them).
fn witnessed(
    k: &KernelEvidence,
    facts: Option<&HostFacts>,
    port: u16,
    flood: bool,
) -> Vec<Finding> {
    let mut syns: BTreeMap<(&str, PathKey), Group> = BTreeMap::new();
    let mut replies: BTreeMap<&str, Group> = BTreeMap::new();
    let mut martians: BTreeMap<&str, Group> = BTreeMap::new();
    let mut sources = BTreeSet::new();
    let mut sources_capped = false;
    let all = k.all_drops();
    for (key, t) in all.iter() {
        let class = DropClass::of(&key.reason, key.place);
        match (key.sender, class) {
            (_, DropClass::ListenOverflow) => {}
            (Side::Client, DropClass::Martian) => {
                martians.entry(&key.reason).or_default().add(key, t);
                sources.extend(t.clients.iter().copied());
                sources_capped |= t.client_count().1;
            }
            // A SYN that stopped its connection, whatever the reason; one the connection
            // got past only when the path dropped it (TCP setting aside a duplicate SYN
            // is ordinary). Refusals and ICMP errors are other findings' stories.
            (Side::Client, _) if key.what == "SYN" => {
                let recovered = if class == DropClass::Path {
                    t.recovered
                } else {
                    Default::default()
                };
                let (packets, flows) = (
                    t.unanswered.packets + recovered.packets,
                    t.unanswered.flows + recovered.flows,
                );
                if flows > 0 {
                    syns.entry((&key.reason, key.path)).or_default().add_some(
                        key,
                        t,
                        packets,
                        flows,
                        t.unanswered.flows,
                        recovered.flows,
                    );
                }
            }
            (Side::Server, DropClass::Path) if key.path == PathKey::Egress => {
                replies.entry(&key.reason).or_default().add(key, t);
            }
            _ => {}
        }
    }
    let listening = facts.map(|f| !f.now.listeners.is_empty());
    let mut out = Vec::new();
    for ((reason, path), g) in syns {
        // Every connection got through on a retransmission: a slow connect, the `slow`
        // rule's story (with this drop as its kernel evidence), not a drop that failed.
        if g.unanswered == 0 {
            continue;
        }
        let site = site(facts, reason, path, true, g.place.clone());
        let cause = Cause::SynsDropped(DroppedSyns {
            unanswered: g.unanswered,
            syns: g.packets,
            servers: g.servers.iter().copied().collect(),
            recovered: g.recovered,
            site,
            port,
            listening,
        });
        out.push(Finding::new(cause, g.unanswered.max(g.recovered)));
    }
    for (reason, g) in replies {
        let site = site(facts, reason, PathKey::Egress, false, g.place.clone());
        let cause = Cause::RepliesDropped(DroppedReplies {
            connections: g.flows,
            unanswered: g.unanswered,
            recovered: g.recovered,
            packets: g.packets,
            what: most_first(g.what),
            servers: g.servers.iter().copied().collect(),
            site,
            port,
        });
        out.push(Finding::new(cause, g.flows));
    }
    if !martians.is_empty() && !flood {
        let mut reasons: Vec<ReasonCount> = martians
            .iter()
            .map(|(reason, g)| ReasonCount {
                reason: reason.to_string(),
                place: g.place.clone(),
                packets: g.packets,
                flows: g.flows,
            })
            .collect();
        reasons.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.reason.cmp(&b.reason)));
        let servers: BTreeSet<_> = martians
            .values()
            .flat_map(|g| g.servers.iter().copied())
            .collect();
        let unanswered = martians.values().map(|g| g.unanswered).sum();
        let cause = Cause::InvalidSource(MartianSyns {
            unanswered,
            syns: martians.values().map(|g| g.packets).sum(),
            sources: sources.len() as u64,
            sources_capped,
            examples: sources.iter().take(EXAMPLES).copied().collect(),
            reasons,
            servers: servers.into_iter().collect(),
            port,
        });
        let flows = martians.values().map(|g| g.flows).sum();
        out.push(Finding::new(cause, flows));
    }
    out
}

/// Where packets to the port (`to_port`) or from it were dropped, with the firewall rule
/// that likely did it for a `NETFILTER_DROP`.
pub(super) fn site(
    facts: Option<&HostFacts>,
    reason: &str,
    path: PathKey,
    to_port: bool,
    place: Option<String>,
) -> DropSite {
    let (rule, ruleset) = if reason == "NETFILTER_DROP" {
        match facts.and_then(|f| f.firewall.as_deref()) {
            Some(set) => {
                let unread = set.unread().first().map(ToString::to_string);
                (
                    rule_for(set, path, to_port).cloned(),
                    RulesetSeen::Read { unread },
                )
            }
            None => (None, RulesetSeen::NotRead),
        }
    } else {
        (None, RulesetSeen::NotAsked)
    };
    DropSite {
        reason: reason.to_string(),
        place,
        path,
        hook: rule.as_ref().map(|r| r.hook.as_str()),
        chain: rule.as_ref().map(|r| r.chain.clone()),
        rule,
        ruleset,
        to_port,
    }
}

/// The rule that likely dropped a packet on `path`: the witness knows whether it was
/// arriving or leaving, not the hook, so the hooks on that path are tried in the order
/// the kernel meets them. A silent drop is a DROP rule's doing (a REJECT answers); a
/// packet arriving is also looked for in FORWARD, last, when no input-side rule fits (the
/// server is then beyond this host).
fn rule_for(
    set: &crate::diagnose::host::firewall::Ruleset,
    path: PathKey,
    to_port: bool,
) -> Option<&FirewallRule> {
    let drop = |v: &Verdict| *v == Verdict::Drop;
    match path {
        PathKey::Ingress => set
            .matching_any(
                &[Hook::Ingress, Hook::Prerouting, Hook::Input],
                to_port,
                drop,
            )
            .or_else(|| set.matching_any(&[Hook::Forward], to_port, drop)),
        PathKey::Egress => set.matching_any(
            &[Hook::Output, Hook::Postrouting, Hook::Egress],
            to_port,
            drop,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::{FindingKind, Severity};
    use crate::diagnose::host::Listener;
    use crate::diagnose::tests::*;
    use crate::flow::FlowRecord;

    fn scope() -> Scope {
        Scope::port(61999)
    }

    /// Read live at a storm's start, before any of its connections ended: only the
    /// kernel's counts, no connection, no source, no server address.
    #[test]
    fn martians_a_storm_counted_before_any_connection_ended_are_told_by_port_not_as_nobody() {
        use crate::decode::TcpFlags;
        use crate::kernel::facts::Dir;
        use crate::kernel::names::{Names, Reasons};
        use crate::kernel::storm::{Tally, TallyKind};
        let mut ev = evidence(&[]);
        let names = Names::with(Reasons::with(&[(44, "IP_RPFILTER")], &[]));
        ev.kernel.flows = 1;
        ev.kernel.storm_counted(
            &[Tally {
                kind: TallyKind::Drop {
                    reason: 44,
                    location: 1,
                    path: crate::kernel::event::Path::Ingress,
                    place: Some("ip_rcv_finish_core"),
                },
                dir: Dir::C2s,
                flags: TcpFlags(TcpFlags::SYN),
                icmp: false,
                count: 372,
                first_ts: crate::decode::Timestamp(1),
                last_ts: crate::decode::Timestamp(2),
            }],
            &names,
        );
        let found = findings(&ev, None, &scope());
        let f = found
            .iter()
            .find(|f| f.kind == FindingKind::InvalidSource)
            .unwrap_or_else(|| panic!("{found:#?}"));
        assert_eq!(
            f.headline(),
            "372 SYNs to port 61999 from unnamed source addresses (counted in a storm) discarded \
             by the kernel as martians (IP_RPFILTER): spoofed or misrouted sources, not a firewall"
        );
        assert!(
            f.explanation().contains("Sources: not named yet (a storm"),
            "{}",
            f.explanation()
        );
    }

    #[test]
    fn unanswered_with_listen_overflows_is_a_full_accept_queue_not_a_firewall() {
        let ev = evidence(&[FlowRecord {
            syn_count: 3,
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        }]);
        let mut f = facts(vec![Listener {
            accept_queue: 2,
            backlog: Some(1),
            ..listener("127.0.0.1:61999")
        }]);
        f.start.counters.insert(Counter::ListenOverflows, 10);
        f.now.counters.insert(Counter::ListenOverflows, 14);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, FindingKind::AcceptQueueFull);
        assert_eq!(evidence_json(&found[0])["listen_overflows"], 4);
        assert_eq!(evidence_json(&found[0])["backlog"], 1);
        assert!(
            found[0].headline().contains("java (pid 4567)"),
            "{}",
            found[0].headline()
        );
    }

    #[test]
    fn an_unanswered_syn_with_a_syn_recv_socket_is_an_answer_dropped_on_the_way_out() {
        use crate::diagnose::host::{PortSocket, SocketState};
        let lost = FlowRecord {
            client: ep("127.0.0.1:40000"),
            syn_count: 3,
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        };
        let other = FlowRecord {
            client: ep("127.0.0.1:40001"),
            syn_count: 3,
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        };
        let ev = evidence(&[lost, other]);
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.now.sockets.push(PortSocket {
            local: ep("127.0.0.1:61999"),
            remote: ep("127.0.0.1:40000"),
            state: SocketState::SynRecv,
            recv_queue: 0,
        });
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(
            kinds(&found),
            [FindingKind::RepliesDropped, FindingKind::SilentlyDropped],
            "{found:#?}"
        );
        let r = &found[0];
        assert_eq!(r.severity, Severity::Error);
        assert_eq!(evidence_json(r)["unanswered"], 1);
        assert_eq!(evidence_json(r)["clients"][0], "127.0.0.1:40000");
        assert!(
            r.headline().contains("holds a SYN_RECV socket"),
            "{}",
            r.headline()
        );
        assert!(r.headline().contains("java (pid 4567)"), "{}", r.headline());
        assert!(r.explanation().contains("not a DROP of the incoming SYNs"));
        assert_eq!(
            evidence_json(&found[1])["unanswered"],
            1,
            "only the other one"
        );
    }

    #[test]
    fn a_dead_member_of_a_reuseport_group_takes_its_share_of_connections_not_a_backlog() {
        let ev = evidence(&[FlowRecord {
            syn_count: 3,
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        }]);
        let dead = Listener {
            accept_queue: 2,
            backlog: Some(1),
            inode: 8,
            processes: vec![process("python3", 4242)],
            ..listener("127.0.0.1:61999")
        };
        let mut f = facts(vec![listener("127.0.0.1:61999"), dead]);
        f.start.counters.insert(Counter::ListenOverflows, 10);
        f.now.counters.insert(Counter::ListenOverflows, 14);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(found[0].kind, FindingKind::AcceptQueueFull);
        assert_eq!(
            evidence_json(&found[0])["reuseport_group"],
            serde_json::json!({"members": 2, "healthy": 1})
        );
        assert_eq!(found[0].processes.len(), 1);
        assert_eq!(found[0].processes[0].process.pid, 4242);
        let w = found[0].words();
        assert!(
            w.headline.starts_with(
                "about 1 in 2 new connections to 127.0.0.1:61999 go to python3 (pid 4242), which stopped accepting"
            ),
            "{}",
            w.headline
        );
        assert!(
            w.headline.contains("1 other member is healthy"),
            "{}",
            w.headline
        );
        assert!(
            !w.next_step.contains("raise the backlog"),
            "{}",
            w.next_step
        );
    }

    #[test]
    fn resets_after_the_handshake_with_abort_on_overflow_are_the_full_accept_queue() {
        let reset = FlowRecord {
            reset_by: Some(Side::Server),
            handshake_rtt_us: Some(40),
            ..record(Outcome::Reset, "127.0.0.1:61999")
        };
        let ev = evidence(&[reset, reset]);
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.now.abort_on_overflow = Some(true);
        f.start.counters.insert(Counter::ListenOverflows, 1);
        f.now.counters.insert(Counter::ListenOverflows, 3);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(found[0].kind, FindingKind::AcceptQueueFull, "{found:#?}");
        assert_eq!(evidence_json(&found[0])["handshake_resets"], 2);
        assert_eq!(evidence_json(&found[0])["abort_on_overflow"], true);
        let x = found[0].explanation();
        assert!(x.contains("tcp_abort_on_overflow is 1"), "{x}");
        assert!(x.contains("instead of dropping it"), "{x}");
        assert!(!x.contains("Linux drops SYNs and handshake ACKs"), "{x}");
        let resets = super::super::resets::findings(&ev, Some(&f), &scope());
        assert!(resets.is_empty(), "not a server rejecting: {resets:#?}");
    }

    #[test]
    fn resets_after_the_handshake_without_abort_on_overflow_stay_the_servers() {
        let reset = FlowRecord {
            reset_by: Some(Side::Server),
            handshake_rtt_us: Some(40),
            ..record(Outcome::Reset, "127.0.0.1:61999")
        };
        let ev = evidence(&[reset]);
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.now.abort_on_overflow = Some(false);
        f.start.counters.insert(Counter::ListenOverflows, 1);
        f.now.counters.insert(Counter::ListenOverflows, 3);
        assert!(findings(&ev, Some(&f), &scope()).is_empty());
        let resets = super::super::resets::findings(&ev, Some(&f), &scope());
        assert_eq!(resets[0].kind, FindingKind::ResetByServer);
    }

    #[test]
    fn overflows_without_a_listener_in_view_name_the_port_and_no_listener_fields() {
        let ev = evidence(&[record(Outcome::Unanswered, "127.0.0.1:61999")]);
        let mut f = facts(vec![]);
        f.now.counters.insert(Counter::ListenOverflows, 2);
        f.start.counters.insert(Counter::ListenOverflows, 1);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(found[0].kind, FindingKind::AcceptQueueFull);
        assert!(evidence_json(&found[0]).get("listener").is_none());
        assert!(found[0].headline().contains("the listener on port 61999"));
    }

    #[test]
    fn unanswered_without_overflows_is_silently_dropped() {
        let ev = evidence(&[record(Outcome::Unanswered, "127.0.0.1:61999")]);
        let f = facts(vec![listener("127.0.0.1:61999")]);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(found[0].kind, FindingKind::SilentlyDropped);
        assert!(found[0]
            .explanation()
            .contains("A listener exists on port 61999"));
    }

    #[test]
    fn a_real_clients_retries_dropped_for_a_flooded_syn_queue_are_no_silent_drop() {
        // Cookies off: 40 spoofed one-shot SYNs filled the SYN queue, and the kernel
        // dropped a real client's three SYNs with them (TCPReqQFullDrop).
        let mut records: Vec<FlowRecord> = (0..40)
            .map(|i| FlowRecord {
                client: ep(&format!("10.202.0.{}:1024", i + 1)),
                ..record(Outcome::Unanswered, "10.201.0.1:61999")
            })
            .collect();
        records.push(FlowRecord {
            syn_count: 3,
            ..record(Outcome::Unanswered, "10.201.0.1:61999")
        });
        let mut ev = evidence(&records);
        ev.syn_rate.sources = 41;
        let mut f = facts(vec![listener("10.201.0.1:61999")]);
        f.start.counters.insert(Counter::TcpReqQFullDrop, 0);
        f.now.counters.insert(Counter::TcpReqQFullDrop, 43);
        let found = findings(&ev, Some(&f), &scope());
        assert!(found.is_empty(), "the flood's finding tells it: {found:#?}");
        // Without the counter's growth the same retries are a drop to report.
        f.now.counters.insert(Counter::TcpReqQFullDrop, 0);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, FindingKind::SilentlyDropped);
    }

    #[test]
    fn synack_retransmitted_after_the_clients_ack_points_at_the_accept_queue_on_replay() {
        let ev = evidence(&[FlowRecord {
            synack_count: 3,
            handshake_rtt_us: Some(40),
            ..record(Outcome::Established, "127.0.0.1:61999")
        }]);
        let found = findings(&ev, None, &scope());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, FindingKind::AcceptQueueFull);
        assert_eq!(found[0].severity, Severity::Warning, "inferred, not known");
    }

    // The kernel witness's scenarios: `Evidence` with the kernel's facts added by hand,
    // as the flow stage adds them, and rulesets parsed from what the tools print.

    use crate::decode::Timestamp;
    use crate::diagnose::host::firewall::{Ruleset, Tool};
    use crate::kernel::facts::{Dir, DropFact, PathName};
    use crate::kernel::KernelFacts;

    /// One kind of drop in a connection: (reason, kernel function, path, direction, what,
    /// count).
    type Drop = (&'static str, &'static str, PathName, Dir, &'static str, u32);

    fn facts_of(drops: &[Drop]) -> KernelFacts {
        KernelFacts {
            drops: drops
                .iter()
                .map(|&(reason, place, path, dir, what, count)| DropFact {
                    reason: reason.into(),
                    place: Some(place),
                    path,
                    dir,
                    what,
                    count,
                    first_ts: Timestamp(1),
                    last_ts: Timestamp(2),
                    reason_code: 0,
                })
                .collect(),
            ..KernelFacts::default()
        }
    }

    /// Evidence of these connections, each with the kernel's facts about it.
    fn witnessed(flows: &[(FlowRecord, &[Drop])]) -> Evidence {
        let mut ev = Evidence::default();
        for (r, drops) in flows {
            ev.add(r);
            ev.kernel.add(r, &facts_of(drops));
        }
        ev
    }

    fn unanswered_from(client: &str) -> FlowRecord {
        FlowRecord {
            client: ep(client),
            syn_count: 3,
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        }
    }

    const SYNS_DROPPED_AT_INPUT: Drop = (
        "NETFILTER_DROP",
        "nft_do_chain",
        PathName::Ingress,
        Dir::C2s,
        "SYN",
        3,
    );

    /// What `iptables-save` prints with one rule of `rules` per line, in table filter.
    fn iptables(rules: &[&str]) -> Ruleset {
        let text = format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{}\nCOMMIT\n",
            rules.join("\n")
        );
        Ruleset::parse_iptables_save(&text, Tool::Iptables, 61999)
    }

    fn with_firewall(set: Ruleset) -> HostFacts {
        HostFacts {
            firewall: Some(std::sync::Arc::new(set)),
            ..facts(vec![listener("127.0.0.1:61999")])
        }
    }

    fn kinds(found: &[Finding]) -> Vec<FindingKind> {
        found.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn syns_dropped_by_an_iptables_input_rule_name_the_rule_and_how_to_remove_it() {
        let ev = witnessed(&[(unanswered_from("127.0.0.1:40000"), &[SYNS_DROPPED_AT_INPUT])]);
        let f = with_firewall(iptables(&["-A INPUT -p tcp -m tcp --dport 61999 -j DROP"]));
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(kinds(&found), [FindingKind::SilentlyDropped], "{found:#?}");
        let d = &found[0];
        assert_eq!(d.severity, Severity::Error);
        assert_eq!(
            d.headline(),
            "1 connection attempt to 127.0.0.1:61999 got no answer: 3 SYNs dropped by the kernel: \
             NETFILTER_DROP (nft_do_chain, INPUT): iptables -t filter rule \
             \"-A INPUT -p tcp -m tcp --dport 61999 -j DROP\""
        );
        let e = evidence_json(d);
        assert_eq!(
            (
                &e["reason"],
                &e["where"],
                &e["path"],
                &e["hook"],
                &e["chain"]
            ),
            (
                &"NETFILTER_DROP".into(),
                &"nft_do_chain".into(),
                &"ingress".into(),
                &"input".into(),
                &"INPUT".into()
            )
        );
        assert_eq!(
            e["rule"]["text"],
            "-A INPUT -p tcp -m tcp --dport 61999 -j DROP"
        );
        assert_eq!((&e["unanswered"], &e["syns"]), (&1.into(), &3.into()));
        assert!(
            d.next_step()
                .contains("to remove it (portsniff never changes the ruleset): iptables -t filter -D INPUT -p tcp -m tcp --dport 61999 -j DROP"),
            "{}",
            d.next_step()
        );
        assert!(d
            .next_step()
            .starts_with("see it and its packet counters: iptables -t filter -L INPUT"));
    }

    #[test]
    fn syns_dropped_by_an_nft_rule_name_it_with_its_handle() {
        let ev = witnessed(&[(unanswered_from("127.0.0.1:40000"), &[SYNS_DROPPED_AT_INPUT])]);
        let nft = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/firewall/nft.json"
        ));
        let set = Ruleset::parse_nft_json(nft, 61999).expect("nft's own JSON");
        let found = findings(&ev, Some(&with_firewall(set)), &scope());
        let d = &found[0];
        assert_eq!(d.kind, FindingKind::SilentlyDropped);
        let e = evidence_json(d);
        assert_eq!(e["rule"]["tool"], "nft");
        assert_eq!(e["hook"], "input");
        let handle = e["rule"]["handle"]
            .as_u64()
            .expect("nft rules have handles");
        assert!(
            d.headline()
                .contains("NETFILTER_DROP (nft_do_chain, input hook): nft rule"),
            "{}",
            d.headline()
        );
        assert!(
            d.next_step().ends_with(&format!("handle {handle}")),
            "{}",
            d.next_step()
        );
    }

    #[test]
    fn a_netfilter_drop_with_no_rule_for_the_port_says_the_ruleset_read_at_start_had_none() {
        let ev = witnessed(&[(unanswered_from("127.0.0.1:40000"), &[SYNS_DROPPED_AT_INPUT])]);
        let f = with_firewall(iptables(&["-A INPUT -p tcp -m tcp --dport 80 -j DROP"]));
        let found = findings(&ev, Some(&f), &scope());
        let d = &found[0];
        assert_eq!(d.kind, FindingKind::SilentlyDropped);
        assert!(evidence_json(d)["rule"].is_null());
        assert!(
            d.headline()
                .ends_with("NETFILTER_DROP (nft_do_chain, on arrival)"),
            "{}",
            d.headline()
        );
        assert!(
            d.explanation().contains(
                "The ruleset read when portsniff started had no DROP rule for TCP to port 61999"
            ) && d.explanation().contains("it may have changed since"),
            "{}",
            d.explanation()
        );
    }

    #[test]
    fn a_netfilter_drop_with_the_ruleset_unread_says_why_no_rule_is_named() {
        let ev = witnessed(&[(unanswered_from("127.0.0.1:40000"), &[SYNS_DROPPED_AT_INPUT])]);
        let f = facts(vec![listener("127.0.0.1:61999")]);
        let found = findings(&ev, Some(&f), &scope());
        assert!(
            found[0]
                .explanation()
                .contains("The ruleset could not be read"),
            "{}",
            found[0].explanation()
        );
    }

    #[test]
    fn a_blanket_conditional_rule_does_not_outrank_the_rule_naming_the_port() {
        let ev = witnessed(&[(unanswered_from("127.0.0.1:40000"), &[SYNS_DROPPED_AT_INPUT])]);
        let f = with_firewall(iptables(&[
            "-A INPUT -m conntrack --ctstate INVALID -j DROP",
            "-A INPUT -p tcp -m tcp --dport 61999 -j DROP",
        ]));
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(
            evidence_json(&found[0])["rule"]["text"],
            "-A INPUT -p tcp -m tcp --dport 61999 -j DROP"
        );
    }

    #[test]
    fn syn_acks_dropped_in_output_are_the_servers_replies_not_dropped_syns() {
        let ev = witnessed(&[(
            unanswered_from("127.0.0.1:40000"),
            &[(
                "NETFILTER_DROP",
                "nft_do_chain",
                PathName::Egress,
                Dir::S2c,
                "SYN-ACK",
                5,
            )],
        )]);
        let f = with_firewall(iptables(&[
            "-A INPUT -p tcp -m tcp --dport 61998 -j DROP",
            "-A OUTPUT -p tcp -m tcp --sport 61999 -j DROP",
        ]));
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(kinds(&found), [FindingKind::RepliesDropped], "{found:#?}");
        let d = &found[0];
        assert_eq!(d.severity, Severity::Error);
        assert_eq!(
            d.headline(),
            "5 SYN-ACKs from 127.0.0.1:61999 dropped on the server's way out: NETFILTER_DROP \
             (nft_do_chain, OUTPUT): iptables -t filter rule \"-A OUTPUT -p tcp -m tcp --sport 61999 -j DROP\""
        );
        assert!(
            !d.headline().contains("SYNs dropped") && d.explanation().contains("on the way back"),
            "{}",
            d.explanation()
        );
        let e = evidence_json(d);
        assert_eq!(
            (&e["path"], &e["hook"]),
            (&"egress".into(), &"output".into())
        );
        assert_eq!(e["what"], serde_json::json!(["SYN-ACK"]));
        assert!(d
            .next_step()
            .contains("iptables -t filter -D OUTPUT -p tcp -m tcp --sport 61999 -j DROP"));
    }

    #[test]
    fn handshake_acks_dropped_for_listen_overflow_name_the_listeners_pid() {
        let ev = witnessed(&[(
            FlowRecord {
                handshake_rtt_us: Some(200_000),
                ..record(Outcome::Established, "127.0.0.1:61999")
            },
            &[(
                "TCP_LISTEN_OVERFLOW",
                "tcp_v4_rcv",
                PathName::Ingress,
                Dir::C2s,
                "ACK",
                2,
            )],
        )]);
        // The queue was not seen full and the counters were not read: the kernel's word
        // alone.
        let f = facts(vec![listener("0.0.0.0:61999")]);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(kinds(&found), [FindingKind::AcceptQueueFull], "{found:#?}");
        let d = &found[0];
        assert_eq!(d.severity, Severity::Error);
        assert!(
            d.headline()
                .contains("java (pid 4567) is not calling accept()"),
            "{}",
            d.headline()
        );
        let e = evidence_json(d);
        assert_eq!(e["kernel"]["reason"], "TCP_LISTEN_OVERFLOW");
        assert_eq!(e["kernel"]["where"], "tcp_v4_rcv");
        assert_eq!(
            (&e["kernel"]["packets"], &e["kernel"]["flows"]),
            (&2.into(), &1.into())
        );
        assert_eq!(e["handshake_acks_dropped"], 1);
        assert!(
            d.explanation().contains(
                "The kernel dropped 2 handshake ACKs with reason TCP_LISTEN_OVERFLOW in tcp_v4_rcv"
            ),
            "{}",
            d.explanation()
        );
    }

    #[test]
    fn spoofed_sources_are_an_invalid_source_finding_never_a_firewall() {
        let rpf: Drop = (
            "IP_RPFILTER",
            "ip_rcv_finish_core",
            PathName::Ingress,
            Dir::C2s,
            "SYN",
            1,
        );
        let ev = witnessed(&[
            (unanswered_from("192.0.2.1:40000"), &[rpf]),
            (unanswered_from("192.0.2.2:40000"), &[rpf]),
            (unanswered_from("198.51.100.7:40001"), &[rpf]),
            (
                unanswered_from("10.0.0.1:40002"),
                &[(
                    "IP_LOCAL_SOURCE",
                    "ip_rcv_finish_core",
                    PathName::Ingress,
                    Dir::C2s,
                    "SYN",
                    1,
                )],
            ),
        ]);
        // A DROP rule for the port exists, and still is not blamed.
        let f = with_firewall(iptables(&["-A INPUT -p tcp -m tcp --dport 61999 -j DROP"]));
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(kinds(&found), [FindingKind::InvalidSource], "{found:#?}");
        let d = &found[0];
        assert_eq!(
            d.headline(),
            "4 SYNs to 127.0.0.1:61999 from 4 source addresses discarded by the kernel as martians \
             (IP_RPFILTER, IP_LOCAL_SOURCE): spoofed or misrouted sources, not a firewall"
        );
        let e = evidence_json(d);
        assert_eq!((&e["sources"], &e["unanswered"]), (&4.into(), &4.into()));
        assert_eq!(e["reasons"][0]["reason"], "IP_RPFILTER");
        assert_eq!(e["reasons"][0]["packets"], 3);
        assert!(!d.explanation().contains("iptables") && !d.next_step().contains("iptables"));
        assert!(d.next_step().contains("rp_filter"));
    }

    #[test]
    fn a_qdisc_drop_is_said_in_plain_words() {
        let ev = witnessed(&[(
            unanswered_from("127.0.0.1:40000"),
            &[(
                "QDISC_DROP",
                "__dev_queue_xmit",
                PathName::Egress,
                Dir::C2s,
                "SYN",
                3,
            )],
        )]);
        let found = findings(&ev, Some(&facts(vec![])), &scope());
        let d = &found[0];
        assert_eq!(d.kind, FindingKind::SilentlyDropped);
        assert!(
            d.headline()
                .ends_with("QDISC_DROP (__dev_queue_xmit, on the way out)"),
            "{}",
            d.headline()
        );
        assert!(
            d.explanation()
                .contains("the interface's queueing discipline"),
            "{}",
            d.explanation()
        );
        assert!(d.next_step().contains("tc -s qdisc show"));
        assert!(evidence_json(d)["rule"].is_null(), "not a firewall's drop");
    }

    #[test]
    fn a_syn_the_path_dropped_before_a_retransmission_got_through_is_a_slow_connect_not_a_drop() {
        let ev = witnessed(&[(
            FlowRecord {
                syn_count: 2,
                handshake_rtt_us: Some(30),
                ..record(Outcome::Closed, "127.0.0.1:61999")
            },
            &[(
                "QDISC_DROP",
                "__dev_queue_xmit",
                PathName::Egress,
                Dir::C2s,
                "SYN",
                1,
            )],
        )]);
        let f = facts(vec![]);
        assert_eq!(kinds(&findings(&ev, Some(&f), &scope())), []);
        let slow = super::super::slow::findings(&ev, Some(&f), &scope());
        assert_eq!(kinds(&slow), [FindingKind::SlowConnect]);
        assert_eq!(slow[0].severity, Severity::Warning);
        assert_eq!(evidence_json(&slow[0])["kernel"][0]["reason"], "QDISC_DROP");
        let x = slow[0].explanation();
        assert!(
            x.contains("The kernel witnessed 1 SYN of 1 of these connections dropped"),
            "{x}"
        );
        assert!(x.contains("QDISC_DROP (__dev_queue_xmit"), "{x}");
    }

    #[test]
    fn tcp_setting_aside_a_duplicate_syn_of_a_connection_that_completed_is_no_finding() {
        let ev = witnessed(&[(
            FlowRecord {
                handshake_rtt_us: Some(30),
                ..record(Outcome::Closed, "127.0.0.1:61999")
            },
            &[(
                "TCP_OLD_SEQUENCE",
                "tcp_validate_incoming",
                PathName::Ingress,
                Dir::C2s,
                "SYN",
                1,
            )],
        )]);
        assert!(findings(&ev, Some(&facts(vec![])), &scope()).is_empty());
    }

    #[test]
    fn a_reject_rules_refusal_is_not_a_silent_drop() {
        let ev = witnessed(&[(
            refused("127.0.0.1:61999"),
            &[(
                "NETFILTER_DROP",
                "nft_do_chain",
                PathName::Ingress,
                Dir::C2s,
                "SYN",
                1,
            )],
        )]);
        let found = findings(&ev, Some(&facts(vec![])), &scope());
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn unanswered_attempts_the_witness_saw_no_drop_for_are_left_to_inference() {
        let ev = witnessed(&[
            (unanswered_from("127.0.0.1:40000"), &[SYNS_DROPPED_AT_INPUT]),
            (
                FlowRecord {
                    server: ep("127.0.0.2:61999"),
                    ..unanswered_from("127.0.0.1:40001")
                },
                &[],
            ),
        ]);
        let f = with_firewall(iptables(&["-A INPUT -p tcp -m tcp --dport 61999 -j DROP"]));
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(
            kinds(&found),
            [FindingKind::SilentlyDropped, FindingKind::SilentlyDropped]
        );
        let inferred = evidence_json(&found[1]);
        assert_eq!(
            (&inferred["unanswered"], &inferred["syns"]),
            (&1.into(), &3.into())
        );
        assert_eq!(inferred["servers"], serde_json::json!(["127.0.0.2:61999"]));
        assert!(
            inferred.get("reason").is_none(),
            "inference has no kernel reason"
        );
    }
}

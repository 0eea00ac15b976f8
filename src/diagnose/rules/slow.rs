//! Slow connects: connections that completed only after the client sent its SYN again,
//! so connect() took a second or more (Linux retransmits a SYN after 1 s, then 2 s, 4 s…).
//! Nothing failed, so this is a warning; but a user sees a service that is "sometimes
//! slow to connect", and a live "silently dropped" report may have been these very
//! connections before their retransmission got through.
//!
//! Likely causes, in the order a server's host usually has them: a rate limit on new
//! connections (`-m limit`, `-m hashlimit`, an nft `limit` letting some SYNs through),
//! the listener's SYN queue full, a lossy path. Where the kernel witness saw the first
//! SYNs dropped, its reason and the rule come first.

use crate::diagnose::cause::{Cause, RecoveredDrops, SlowCause, SlowConnects};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::firewall::{FirewallRule, Verdict};
use crate::diagnose::host::{Counter, HostFacts};
use crate::diagnose::kernel::{DropClass, KernelEvidence};
use crate::diagnose::rules::{drops, Scope};
use crate::flow::Side;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    if ev.slow_connects == 0 {
        return Vec::new();
    }
    let delay = ev.connect_delay();
    let listener = facts.and_then(|f| f.now.listeners.first().or(f.start.listeners.first()));
    let kernel = recovered_drops(&ev.kernel, facts);
    let limit_rule = facts
        .and_then(|f| f.firewall.as_deref())
        .and_then(|set| set.rules().iter().find(|r| is_limit(r)))
        .or_else(|| kernel.iter().find_map(|d| d.site.rule.as_ref()))
        .cloned();
    // One number, from one named counter: the one that grew most (ListenDrops also
    // counts the SYN queue's drops, and the accept queue's).
    let (syn_queue_counter, syn_queue_drops) = facts
        .map(|f| {
            [Counter::TcpReqQFullDrop, Counter::ListenDrops]
                .map(|c| (c, f.delta(c)))
                .into_iter()
                .fold(
                    (Counter::TcpReqQFullDrop, 0),
                    |a, b| if b.1 > a.1 { b } else { a },
                )
        })
        .filter(|&(_, n)| n > 0)
        .map_or((None, 0), |(c, n)| (Some(c), n));
    let netfilter = kernel.iter().any(|d| d.site.reason == "NETFILTER_DROP");
    let listen_overflows = facts.map_or(0, |f| f.delta(Counter::ListenOverflows));
    let full_syn_queue = facts.is_some_and(|f| f.delta(Counter::TcpReqQFullDrop) > 0);
    let likely_causes = if listen_overflows > 0 && limit_rule.is_none() && !netfilter {
        // ListenDrops counts these overflows too: the accept queue is the story, and the
        // SYN queue a cause of its own only where TCPReqQFullDrop grew.
        let mut c = vec![SlowCause::AcceptQueue];
        if full_syn_queue {
            c.push(SlowCause::SynQueue);
        }
        c.extend([SlowCause::RateLimit, SlowCause::LossyPath]);
        c
    } else if syn_queue_drops > 0 && limit_rule.is_none() && !netfilter {
        vec![
            SlowCause::SynQueue,
            SlowCause::RateLimit,
            SlowCause::LossyPath,
        ]
    } else if !kernel.is_empty() && !netfilter && limit_rule.is_none() {
        // The kernel dropped them on the path for another reason (a queue, routing).
        vec![
            SlowCause::LossyPath,
            SlowCause::RateLimit,
            SlowCause::SynQueue,
        ]
    } else {
        vec![
            SlowCause::RateLimit,
            SlowCause::SynQueue,
            SlowCause::LossyPath,
        ]
    };
    let cause = Cause::SlowConnect(SlowConnects {
        slow: ev.slow_connects,
        completed: ev.connected,
        connect_delay_p50_us: delay.p50,
        connect_delay_max_us: delay.max,
        through_on_syn: ev.slow_through.clone(),
        likely_causes,
        limit_rule,
        syn_queue_drops,
        syn_queue_counter,
        kernel,
        listen_overflows,
        accept_queue: listener.map(|l| l.accept_queue),
        backlog: listener.and_then(|l| l.backlog),
        port: scope.port,
    });
    let procs = listener.map_or(&[][..], |l| &l.processes[..]);
    vec![Finding::new(cause, ev.slow_connects).processes(procs, Role::Listener)]
}

/// A rule that drops some new connections to the port by rate: a `limit` or `hashlimit`
/// match (iptables), or nft's `limit rate`.
fn is_limit(r: &FirewallRule) -> bool {
    r.verdict == Verdict::Drop && r.direction.includes(true) && r.text.contains("limit")
}

/// What the witness saw dropped of the client's SYNs in connections that completed
/// anyway, by reason and path; the drop findings leave these to this one when no
/// connection of theirs failed.
fn recovered_drops(k: &KernelEvidence, facts: Option<&HostFacts>) -> Vec<RecoveredDrops> {
    let mut out: Vec<RecoveredDrops> = Vec::new();
    for (key, t) in k.all_drops().iter() {
        if key.sender != Side::Client
            || key.what != "SYN"
            || DropClass::of(&key.reason, key.place) != DropClass::Path
            || t.recovered.flows == 0
        {
            continue;
        }
        if let Some(d) = out
            .iter_mut()
            .find(|d| d.site.reason == key.reason && d.site.path == key.path)
        {
            d.syns += t.recovered.packets;
            d.connections += t.recovered.flows;
            continue;
        }
        out.push(RecoveredDrops {
            syns: t.recovered.packets,
            connections: t.recovered.flows,
            site: drops::site(
                facts,
                &key.reason,
                key.path,
                true,
                key.place.map(str::to_string),
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::{FindingKind, Severity};
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome, SynGaps};

    /// A connection that got through on SYN number `syns`, Linux's schedule (1 s, 2 s…).
    fn slow(syns: u32) -> FlowRecord {
        let mut gaps = SynGaps::default();
        for i in 0..syns.saturating_sub(1) {
            gaps.push(1_000_000 << i);
        }
        FlowRecord {
            syn_count: syns,
            syn_gaps_us: gaps,
            synack_count: 1,
            handshake_rtt_us: Some(100),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        }
    }

    #[test]
    fn connections_through_on_a_retransmitted_syn_are_a_slow_connect_warning() {
        let fast = FlowRecord {
            handshake_rtt_us: Some(100),
            synack_count: 1,
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let ev = evidence(&[fast, slow(2), slow(2), slow(3)]);
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(f.kind, FindingKind::SlowConnect);
        assert_eq!(f.severity, Severity::Warning);
        let e = evidence_json(f);
        assert_eq!(e["slow"], 3);
        assert_eq!(e["completed"], 4);
        assert_eq!(e["through_on_syn"]["2"], 2);
        assert_eq!(e["through_on_syn"]["3"], 1);
        let max = e["connect_delay_max_us"].as_u64().unwrap_or(0);
        assert!((2_990_000..=3_010_000).contains(&max), "{e}");
        assert_eq!(e["likely_causes"][0], "rate_limit");
        let h = f.headline();
        assert!(h.contains("3 of 4 connections"), "{h}");
        assert!(h.contains("retransmitted SYN"), "{h}");
        let x = f.explanation();
        assert!(x.contains("2 on the 2nd SYN"), "{x}");
        assert!(x.contains("rate limit"), "{x}");
        assert!(x.contains("4 s…); they got through 2 on"), "{x}");
    }

    #[test]
    fn fast_connections_are_no_slow_connect() {
        let fast = FlowRecord {
            handshake_rtt_us: Some(100),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        assert!(findings(&evidence(&[fast]), None, &Scope::port(61999)).is_empty());
    }

    #[test]
    fn syn_queue_drops_put_the_syn_queue_first() {
        let ev = evidence(&[slow(2)]);
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.start.counters.insert(Counter::TcpReqQFullDrop, 1);
        f.now.counters.insert(Counter::TcpReqQFullDrop, 6);
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(evidence_json(&found[0])["likely_causes"][0], "syn_queue");
        assert_eq!(found[0].processes[0].process.name, "java");
    }

    #[test]
    fn a_burst_into_a_slow_acceptor_blames_its_accept_queue_not_the_syn_queue() {
        // A backlog of 4 and a server accepting five a second: 30 clients at once fill the
        // accept queue; ListenDrops grows with ListenOverflows (it counts them too), while
        // TCPReqQFullDrop does not: the SYN queue is not the story.
        let ev = evidence(&[slow(2), slow(2)]);
        let full = crate::diagnose::host::Listener {
            accept_queue: 4,
            backlog: Some(4),
            ..listener("127.0.0.1:61999")
        };
        let mut f = facts(vec![full]);
        for (c, grew) in [(Counter::ListenOverflows, 114), (Counter::ListenDrops, 114)] {
            f.start.counters.insert(c, 0);
            f.now.counters.insert(c, grew);
        }
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        let e = evidence_json(&found[0]);
        assert_eq!(e["likely_causes"][0], "accept_queue", "{e}");
        assert!(
            !e["likely_causes"]
                .as_array()
                .unwrap()
                .contains(&"syn_queue".into()),
            "{e}"
        );
        assert_eq!(e["listen_overflows"], 114);
        assert_eq!((&e["accept_queue"], &e["backlog"]), (&4.into(), &4.into()));
        let x = found[0].explanation();
        assert!(
            x.contains(
                "accept queue full: 114 handshakes found no room (ListenOverflows grew by 114"
            ),
            "{x}"
        );
        assert!(x.contains("its queue 4/4"), "{x}");
        assert!(found[0].next_step().contains("accept() faster"));
    }
}

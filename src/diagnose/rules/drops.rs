//! SYNs with no answer at all, and handshake ACKs the server threw away: a full accept
//! queue (the kernel's ListenOverflows says so, live) or a filter's DROP rule.

use crate::diagnose::cause::{AcksDropped, Cause, FullListener, QueueOverflow, Unanswered};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::{Counter, HostFacts};
use crate::diagnose::rules::Scope;
use crate::flow::Outcome;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let port = scope.port;
    let unanswered = ev.count(Outcome::Unanswered);
    let mut out = Vec::new();
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
    let affected = unanswered + ev.ack_dropped;
    if affected > 0 && (overflows > 0 || full.is_some()) {
        // Linux drops SYNs and handshake ACKs once the accept queue is over the backlog
        // (`sk_acceptq_is_full`), and counts each in ListenOverflows.
        let cause = Cause::AcceptQueueFull(QueueOverflow {
            unanswered,
            handshake_acks_dropped: ev.ack_dropped,
            listen_overflows: overflows,
            listen_drops,
            full: full.map(|l| FullListener {
                listener: l.local,
                accept_queue: l.accept_queue,
                backlog: l.backlog,
            }),
            port,
        });
        let procs = full.map_or(&[][..], |l| &l.processes[..]);
        out.push(Finding::new(cause, affected).processes(procs, Role::Listener));
        return out;
    }
    if ev.ack_dropped > 0 && facts.is_none() {
        let cause = Cause::HandshakeAcksDropped(AcksDropped {
            handshake_acks_dropped: ev.ack_dropped,
            port,
        });
        out.push(Finding::new(cause, ev.ack_dropped));
    }
    if unanswered == 0 {
        return out;
    }
    let cause = Cause::SilentlyDropped(Unanswered {
        unanswered,
        syns: ev.unanswered_syns,
        servers: ev.unanswered_servers.keys().copied().collect(),
        port,
        listening: facts.map(|f| !f.now.listeners.is_empty()),
    });
    out.push(Finding::new(cause, unanswered));
    out
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
}

//! Accepted connections torn down by a RST, per side: what most of them looked like
//! (right after the handshake, with the peer's data unread, mid-transfer), and live, the
//! kernel's word: which socket reset its own connection as its process closed it, and
//! why (the witness's `sk_rst_reason`), or whether TCP answered a segment, a firewall
//! answered for it, or the RST came from elsewhere; without the witness, the kernel's
//! count of closes with unread data (TCPAbortOnClose).

use super::{drops, hook_of, rejecting_rule};
use crate::diagnose::cause::{Cause, Resets};
use crate::diagnose::evidence::{Deed, Evidence, ResetContext};
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::{Counter, HostFacts};
use crate::diagnose::kernel::ResetSource;
use crate::diagnose::rules::Scope;
use crate::flow::Side;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, _scope: &Scope) -> Vec<Finding> {
    let mut out = Vec::new();
    // With tcp_abort_on_overflow=1 and the queue overflowing, the server's resets before
    // it sent anything are the kernel's answer to a full accept queue: that finding tells
    // them (`drops`), not a server rejecting connections.
    let overflow = drops::resets_are_overflow(facts);
    for side in [Side::Server, Side::Client] {
        let mut total = 0;
        let mut top: Option<(ResetContext, u64)> = None;
        for (&(by, ctx), &n) in &ev.resets {
            if by == side {
                total += n;
                if top.is_none_or(|(_, m)| n > m) {
                    top = Some((ctx, n));
                }
            }
        }
        if overflow && side == Side::Server {
            total = total.saturating_sub(drops::overflow_resets(ev));
        }
        let Some((context, _)) = top.filter(|_| total > 0) else {
            continue;
        };
        // The kernel's word on most of them, when the witness ran.
        let mut witnessed: Option<(&ResetSource, u64)> = None;
        for ((by, source), &n) in &ev.kernel.resets {
            if *by == side && witnessed.is_none_or(|(_, m)| n > m) {
                witnessed = Some((source, n));
            }
        }
        let kernel = witnessed.map(|(s, _)| s.clone());
        let witnessed = witnessed.map(|(_, n)| n.min(total));
        // A RST in this side's name that netfilter sent for the peer's packet.
        let rule = match &kernel {
            Some(ResetSource::FirewallReject { path }) => {
                rejecting_rule(facts, hook_of(*path), side == Side::Server, true)
            }
            _ => None,
        };
        let cause = Cause::Reset(Resets {
            resets: total,
            context,
            // Linux counts a close() with unread data, answered with RST, here.
            abort_on_close: facts.map(|f| f.delta(Counter::TcpAbortOnClose)),
            backend: (side == Side::Server)
                .then(|| facts?.firewall.as_ref()?.dnat().first().map(|d| d.to))
                .flatten()
                .map(|to| crate::decode::Endpoint::new(to.ip(), to.port())),
            kernel,
            witnessed,
            rule,
            by: side,
        });
        let (deed, role) = match side {
            Side::Server => (Deed::Reset(side), Role::Listener),
            Side::Client => (Deed::Reset(side), Role::Client),
        };
        out.push(Finding::new(cause, total).processes(ev.named_for(deed), role));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, History, Outcome};
    use crate::kernel::facts::PathName;
    use crate::kernel::{KernelFacts, ResetOrigin};

    fn reset_by(side: Side, bytes: [u64; 2], last: Option<Side>) -> FlowRecord {
        FlowRecord {
            reset_by: Some(side),
            bytes,
            last_payload_by: last,
            ..record(Outcome::Reset, "127.0.0.1:61999")
        }
    }

    #[test]
    fn a_server_reset_after_unread_client_data_is_a_close_with_unread_data() {
        let unread = reset_by(Side::Server, [1000, 0], Some(Side::Client));
        let found = findings(&evidence(&[unread]), None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ResetByServer);
        assert_eq!(evidence_json(&found[0])["context"], "unread_data");
        assert!(evidence_json(&found[0])["abort_on_close"].is_null());
    }

    #[test]
    fn a_server_reset_names_the_listeners_process_from_the_flow_lines() {
        let unread = reset_by(Side::Server, [1000, 0], Some(Side::Client));
        let ev = named(
            &[unread],
            Some(process("curl", 9)),
            Some(process("python3", 4242)),
        );
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found[0].processes.len(), 1, "{:?}", found[0].processes);
        assert_eq!(found[0].processes[0].process.pid, 4242);
        assert_eq!(found[0].processes[0].role, Role::Listener);
        assert!(found[0]
            .headline()
            .starts_with("1 connection reset by the server (python3 (pid 4242))"));
        assert!(found[0]
            .next_step()
            .contains("make the server (python3 (pid 4242)) read the whole request"));
    }

    #[test]
    fn a_client_closing_with_the_response_unread_is_told_to_read_the_response() {
        let unread = reset_by(Side::Client, [10, 5000], Some(Side::Server));
        let ev = named(
            &[unread],
            Some(process("curl", 9)),
            Some(process("python3", 4242)),
        );
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ResetByClient);
        assert_eq!(found[0].processes[0].process.pid, 9);
        assert_eq!(found[0].processes[0].role, Role::Client);
        let next = found[0].next_step();
        assert!(
            next.contains("curl (pid 9)) read the whole response"),
            "{next}"
        );
        assert!(!next.contains("request"), "{next}");
    }

    #[test]
    fn a_server_closing_new_connections_before_reading_them_is_not_closing_with_unread_data() {
        let mut history = History::new();
        for (side, letter) in [
            (Side::Client, b'S'),
            (Side::Server, b'H'),
            (Side::Client, b'A'),
            (Side::Server, b'F'),
            (Side::Client, b'D'),
            (Side::Server, b'R'),
        ] {
            history.push(side, letter);
        }
        let dropped = FlowRecord {
            history,
            ..reset_by(Side::Server, [20, 0], Some(Side::Client))
        };
        let ev = named(&[dropped], None, Some(process("python3", 4242)));
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ResetByServer);
        assert_eq!(evidence_json(&found[0])["context"], "closed_before_reading");
        let w = found[0].words();
        assert_eq!(
            w.headline,
            "1 connection reset by the server (python3 (pid 4242)): closed before any of the client's data was read"
        );
        assert!(
            w.explanation
                .contains("a connection limit, a protocol or TLS mismatch"),
            "{}",
            w.explanation
        );
        assert!(!w.next_step.contains("read the whole"), "{}", w.next_step);
        assert!(
            w.next_step
                .contains("check the logs of the server (python3 (pid 4242))"),
            "{}",
            w.next_step
        );
    }

    #[test]
    fn the_most_common_context_speaks_for_all_of_a_sides_resets() {
        let mid = reset_by(Side::Client, [10, 5000], Some(Side::Client));
        let quiet = reset_by(Side::Client, [0, 0], None);
        let found = findings(&evidence(&[mid, mid, quiet]), None, &Scope::port(61999));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, FindingKind::ResetByClient);
        assert_eq!(found[0].weight, 3);
        assert_eq!(evidence_json(&found[0])["context"], "mid_transfer");
    }

    #[test]
    fn resets_from_two_processes_say_how_many_the_named_one_sent() {
        // An old server closed its listener on 9 queued connections; its successor
        // closed on 2 more: the finding names the first, for 9 of the 11.
        let r = reset_by(Side::Server, [2, 0], Some(Side::Client));
        let mut ev = evidence(&[r; 11]);
        let closed_by = |pid| ResetSource::ListenerClosed {
            process: Some(("python3".to_string(), pid)),
        };
        ev.kernel.resets.insert((Side::Server, closed_by(100)), 9);
        ev.kernel.resets.insert((Side::Server, closed_by(200)), 2);
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(evidence_json(&found[0])["witnessed"], 9);
        assert_eq!(evidence_json(&found[0])["pid"], 100);
        let h = found[0].headline();
        assert!(
            h.starts_with("11 connections (9 of them this way) reset by the server: python3 (pid 100) closed its listening socket"),
            "{h}"
        );
    }

    #[test]
    fn live_the_kernels_abort_on_close_count_is_the_evidence() {
        let unread = reset_by(Side::Server, [1000, 0], Some(Side::Client));
        let mut f = facts(vec![]);
        f.start.counters.insert(Counter::TcpAbortOnClose, 3);
        f.now.counters.insert(Counter::TcpAbortOnClose, 8);
        let found = findings(&evidence(&[unread]), Some(&f), &Scope::port(61999));
        assert_eq!(evidence_json(&found[0])["abort_on_close"], 5);
        assert!(found[0].explanation().contains("TCPAbortOnClose grew by 5"));
    }

    #[test]
    fn a_counter_grown_more_than_the_resets_seen_says_it_counts_the_whole_namespace() {
        let unread = reset_by(Side::Server, [1000, 0], Some(Side::Client));
        let mut f = facts(vec![]);
        f.start.counters.insert(Counter::TcpAbortOnClose, 0);
        f.now.counters.insert(Counter::TcpAbortOnClose, 7);
        let found = findings(&evidence(&[unread, unread]), Some(&f), &Scope::port(61999));
        let text = found[0].explanation();
        assert!(
            text.contains("TCPAbortOnClose grew by 7, over the whole network namespace"),
            "{text}"
        );
        f.now.counters.insert(Counter::TcpAbortOnClose, 1);
        let found = findings(&evidence(&[unread, unread]), Some(&f), &Scope::port(61999));
        let text = found[0].explanation();
        assert!(
            text.contains("grew by 1: 1 of these 2 were such closes"),
            "{text}"
        );
    }

    #[test]
    fn closing_with_unread_data_names_the_process_and_the_kernels_reason() {
        let unread = reset_by(Side::Server, [1000, 0], Some(Side::Client));
        let k = kernel_reset(
            Side::Server,
            ResetOrigin::Socket,
            "TCP_ABORT_ON_CLOSE",
            Some(("python3", 4242)),
        );
        let found = findings(&witnessed(&[(unread, k)]), None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ResetByServer);
        assert_eq!(
            found[0].headline(),
            "1 connection reset by the server: python3 (pid 4242) closed its socket with the \
             client's data unread: the kernel reset the connection (TCP_ABORT_ON_CLOSE)"
        );
        let json = evidence_json(&found[0]);
        assert_eq!(json["origin"], "socket");
        assert_eq!(json["reset_reason"], "TCP_ABORT_ON_CLOSE");
        assert_eq!(
            (&json["process"], &json["pid"]),
            (&"python3".into(), &4242.into())
        );
        assert!(found[0]
            .next_step()
            .contains("make python3 (pid 4242) read the whole request"));
    }

    #[test]
    fn an_so_linger_zero_close_is_an_abort_by_its_process_not_a_rejected_connection() {
        let quiet = reset_by(Side::Server, [0, 0], None);
        let k = kernel_reset(
            Side::Server,
            ResetOrigin::Socket,
            "TCP_STATE",
            Some(("nginx", 77)),
        );
        let found = findings(&witnessed(&[(quiet, k)]), None, &Scope::port(61999));
        let w = found[0].words();
        assert!(
            w.headline.ends_with(
                "nginx (pid 77) closed its socket with SO_LINGER 0 (or disconnected it): the kernel \
                 reset the connection (TCP_STATE)"
            ),
            "{}",
            w.headline
        );
        assert!(
            w.explanation.contains("right after the handshake"),
            "{}",
            w.explanation
        );
        assert!(!w.explanation.contains("access rule"), "{}", w.explanation);
    }

    #[test]
    fn a_keepalive_timeout_does_not_blame_whichever_process_was_running() {
        let quiet = reset_by(Side::Client, [10, 10], Some(Side::Client));
        let k = kernel_reset(
            Side::Client,
            ResetOrigin::Socket,
            "TCP_KEEPALIVE_TIMEOUT",
            Some(("swapper/1", 0)),
        );
        let found = findings(&witnessed(&[(quiet, k)]), None, &Scope::port(61999));
        assert!(
            !found[0].headline().contains("swapper"),
            "{}",
            found[0].headline()
        );
        assert!(found[0]
            .headline()
            .contains("keepalive probes went unanswered"));
    }

    #[test]
    fn a_reset_tcp_sent_for_a_closed_socket_says_so() {
        let late = reset_by(Side::Server, [10, 10], Some(Side::Client));
        let k = kernel_reset(Side::Server, ResetOrigin::Reply, "NO_SOCKET", None);
        let found = findings(&witnessed(&[(late, k)]), None, &Scope::port(61999));
        assert!(found[0]
            .headline()
            .contains("its TCP answered a segment with RST (NO_SOCKET)"));
        assert!(found[0].explanation().contains("no socket for it any more"));
        assert_eq!(evidence_json(&found[0])["origin"], "reply");
    }

    #[test]
    fn a_reset_netfilter_sent_mid_connection_names_the_reject_rule() {
        let mid = reset_by(Side::Server, [10, 5000], Some(Side::Server));
        let k = netfilter_drop(Side::Client, "data", PathName::Ingress);
        let f = with_firewall(
            facts(vec![]),
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 61999 -m state --state ESTABLISHED -j REJECT --reject-with tcp-reset\nCOMMIT\n",
        );
        let found = findings(&witnessed(&[(mid, k)]), Some(&f), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ResetByServer);
        assert!(found[0]
            .headline()
            .contains("reset by a firewall rule in the server's name"));
        let json = evidence_json(&found[0]);
        assert_eq!(json["origin"], "firewall");
        assert!(
            json["rule"]
                .as_str()
                .unwrap()
                .contains("--reject-with tcp-reset"),
            "{json}"
        );
    }

    #[test]
    fn a_servers_reset_through_a_port_map_is_the_backends_not_a_middleboxs() {
        use crate::diagnose::host::firewall::{nat, Ruleset};
        let r = FlowRecord {
            reset_by: Some(Side::Server),
            handshake_rtt_us: Some(10),
            history: History::new(),
            ..record(Outcome::Reset, "10.77.0.2:8080")
        };
        let mut ev = evidence(&[r]);
        ev.kernel.add(&r, &KernelFacts::default());
        let mut f = facts(vec![]);
        let dnat = nat::parse(
            "*nat\n-A PREROUTING -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.77.0.2:8080\nCOMMIT\n",
            18080,
        );
        f.firewall = Some(std::sync::Arc::new(Ruleset::default().with_dnat(dnat)));
        let found = findings(&ev, Some(&f), &Scope::port(18080));
        assert_eq!(found[0].kind, FindingKind::ResetByServer, "{found:#?}");
        let words = format!("{} {}", found[0].headline(), found[0].explanation());
        assert!(
            words.contains("the port map's backend 10.77.0.2:8080"),
            "{words}"
        );
        assert!(!words.contains("middlebox"), "{words}");
    }

    /// The findings for one connection the witness saw and said nothing about.
    fn witnessed_quiet(r: FlowRecord) -> Vec<Finding> {
        findings(
            &witnessed(&[(r, KernelFacts::default())]),
            None,
            &Scope::port(61999),
        )
    }

    #[test]
    fn a_reset_neither_tcp_nor_the_firewall_here_sent_came_from_elsewhere() {
        let idle = reset_by(Side::Server, [10, 10], Some(Side::Server));
        let found = witnessed_quiet(idle);
        assert!(found[0].headline().contains("not by this host"));
        assert!(found[0].explanation().contains("middlebox"));
        assert_eq!(evidence_json(&found[0])["origin"], "elsewhere");
    }

    #[test]
    fn a_reset_from_elsewhere_right_after_the_handshake_points_at_the_peer_not_idle_timeouts() {
        // The client's host answering the SYN-ACK of a SYN it never sent (staged: a
        // scanner's, or a spoofer's victim's): no data, no idle timeout.
        let half_open = FlowRecord {
            reset_by: Some(Side::Client),
            ..record(Outcome::HandshakeIncomplete, "127.0.0.1:61999")
        };
        let found = witnessed_quiet(half_open);
        let f = &found[0];
        assert!(
            f.headline().contains("not by this host"),
            "{}",
            f.headline()
        );
        assert!(
            f.next_step()
                .contains("whether a socket there made these connections")
                && !f.next_step().contains("idle timeouts"),
            "{}",
            f.next_step()
        );
        // Mid-transfer, the idle timeouts stay the next step.
        let idle = reset_by(Side::Server, [10, 10], Some(Side::Server));
        let found = witnessed_quiet(idle);
        assert!(found[0].next_step().contains("idle timeouts"));
    }

    #[test]
    fn refusals_are_not_counted_among_the_resets_of_accepted_connections() {
        let ev = witnessed(&[(
            refused("127.0.0.1:61999"),
            kernel_reset(Side::Server, ResetOrigin::Reply, "NO_SOCKET", None),
        )]);
        assert!(ev.kernel.resets.is_empty());
        assert!(findings(&ev, None, &Scope::port(61999)).is_empty());
    }

    #[test]
    fn a_replay_has_no_kernel_keys_in_its_evidence() {
        let unread = reset_by(Side::Server, [1000, 0], Some(Side::Client));
        let found = findings(&evidence(&[unread]), None, &Scope::port(61999));
        let json = evidence_json(&found[0]);
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["resets", "context", "abort_on_close"]);
    }
}

//! TIME_WAIT: a new connection on a 4-tuple still held, sockets piling up on one side,
//! and clients running out of ephemeral ports.

use crate::diagnose::cause::{
    Cause, PortsExhausted, ServerClosesFirst, TimeWaitBuildup, TimeWaitReuse,
};
use crate::diagnose::evidence::{Deed, Evidence};
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::{HostFacts, PortSocket, SocketState};
use crate::diagnose::rules::Scope;
use crate::flow::Side;

/// TIME_WAIT sockets on the port before it counts as a build-up.
const TIME_WAIT_BUILDUP: usize = 1000;

/// Whether connect() may take the port of this client TIME_WAIT socket again:
/// net.ipv4.tcp_tw_reuse is 1, or 2 (the default) and the connection is a loopback one
/// (`tcp_twsk_unique`).
fn reusable(tw_reuse: Option<u8>, s: &PortSocket) -> bool {
    match tw_reuse {
        Some(1) => true,
        Some(2) => s.local.addr.is_loopback() || s.remote.addr.is_loopback(),
        _ => false,
    }
}

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let port = scope.port;
    let mut out = Vec::new();
    if ev.port_reused > 0 {
        // connect() on an unbound socket picks a port in ip_local_port_range, and one in
        // TIME_WAIT only when tcp_tw_reuse allows it; bind() takes any port, again and
        // again. One reuse of a port in the range, with tw_reuse on, can be either.
        let clients = &ev.reused_clients;
        let range = facts.and_then(|f| f.now.local_port_range);
        let outside =
            range.is_some_and(|(lo, hi)| clients.iter().any(|c| !(lo..=hi).contains(&c.port)));
        let one_port = clients.len() == 1 && ev.port_reused > 1;
        let tw_reuse = facts.and_then(|f| f.now.tw_reuse);
        let kernel_may_pick = |c: &crate::decode::Endpoint| match tw_reuse {
            Some(1) => true,
            Some(2) => c.addr.is_loopback(),
            _ => false,
        };
        let fixed_port = if outside
            || one_port
            || (tw_reuse.is_some() && !clients.iter().all(kernel_may_pick))
        {
            Some(true)
        } else if range.is_some() && tw_reuse.is_some() && clients.len() > 1 {
            Some(false)
        } else {
            None
        };
        let cause = Cause::TimeWaitReuse(TimeWaitReuse {
            flows: ev.port_reused,
            time_wait_sockets: facts.map(|f| f.now.count(SocketState::TimeWait)),
            fixed_port,
            tw_reuse,
        });
        out.push(Finding::new(cause, ev.port_reused));
    }
    let Some(f) = facts else {
        let n = ev.time_wait_on(Side::Server);
        if n as usize >= TIME_WAIT_BUILDUP {
            let cause = Cause::ServerClosesFirst(ServerClosesFirst {
                closed_first_by_server: n,
                holder: Side::Server,
            });
            out.push(Finding::new(cause, n));
        }
        return out;
    };
    let tw: Vec<_> = f
        .now
        .sockets
        .iter()
        .filter(|s| s.state == SocketState::TimeWait)
        .collect();
    let on_server = tw.iter().filter(|s| s.local.port == port).count();
    let on_client = tw.len() - on_server;
    if tw.len() >= TIME_WAIT_BUILDUP {
        let cause = Cause::TimeWaitBuildup(TimeWaitBuildup {
            time_wait: tw.len(),
            on_server,
            on_client,
            holder: if on_server >= on_client {
                Side::Server
            } else {
                Side::Client
            },
            port,
        });
        let side = if on_server >= on_client {
            Side::Server
        } else {
            Side::Client
        };
        let mut holders = ev.named_for(Deed::ClosedFirst(side)).to_vec();
        if holders.is_empty() && side == Side::Server {
            // Connections too short for their processes to be looked up: the server's
            // TIME_WAIT sockets are the port's listener's.
            holders = f
                .now
                .listeners
                .iter()
                .filter(|l| l.local.port == port && l.namespace.is_none())
                .flat_map(|l| l.processes.iter().cloned())
                .collect();
        }
        out.push(Finding::new(cause, tw.len() as u64).processes(&holders, Role::Holder));
    }
    if let Some((lo, hi)) = f.now.local_port_range {
        // Every connection to one server address and port needs its own local port, and
        // TIME_WAIT holds it for 60 s, unless tcp_tw_reuse lets connect() take it again
        // (once the socket is tcp_tw_reuse_delay old, with timestamps on): those ports are
        // not lost. connect() fails (EADDRNOTAVAIL, no SYN at all) only once nearly
        // every port is held: most of the range, not half, so that a steady rate of short
        // connections does not flip the verdict between runs.
        let range = u64::from(hi.saturating_sub(lo)) + 1;
        let recyclable = tw
            .iter()
            .filter(|s| s.local.port != port && reusable(f.now.tw_reuse, s))
            .count();
        let held = (on_client - recyclable) as u64;
        if held * 10 >= range * 9 && range > 1 {
            let cause = Cause::EphemeralPortsExhausted(PortsExhausted {
                time_wait: on_client,
                port_range: (lo, hi),
                recyclable,
                tw_reuse: f.now.tw_reuse,
                tw_reuse_delay_ms: f.now.tw_reuse_delay_ms,
                port,
            });
            let holders = ev.named_for(Deed::ClosedFirst(Side::Client));
            out.push(Finding::new(cause, on_client as u64).processes(holders, Role::Holder));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome};

    fn time_wait(local: &str, remote: &str) -> PortSocket {
        PortSocket {
            local: ep(local),
            remote: ep(remote),
            state: SocketState::TimeWait,
            recv_queue: 0,
        }
    }

    #[test]
    fn many_time_wait_sockets_on_the_server_are_a_buildup() {
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.now.sockets = (0..1500u32)
            .map(|i| time_wait("127.0.0.1:61999", &format!("127.0.0.1:{}", 20000 + i)))
            .collect();
        let found = findings(&Evidence::default(), Some(&f), &Scope::port(61999));
        let b = found
            .iter()
            .find(|x| x.kind == FindingKind::TimeWaitBuildup)
            .expect("a build-up");
        assert_eq!(evidence_json(b)["holder"], "server");
        assert_eq!(evidence_json(b)["on_server"], 1500);
    }

    #[test]
    fn a_server_closing_first_too_fast_to_look_up_is_named_by_its_listener() {
        let mut l = listener("127.0.0.1:61999");
        l.processes = vec![process("python3", 4242)];
        let mut f = facts(vec![l]);
        f.now.sockets = (0..1500u32)
            .map(|i| time_wait("127.0.0.1:61999", &format!("127.0.0.1:{}", 20000 + i)))
            .collect();
        let found = findings(&Evidence::default(), Some(&f), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::TimeWaitBuildup);
        assert_eq!(found[0].processes[0].process.pid, 4242);
        assert_eq!(found[0].processes[0].role, Role::Holder);
        assert!(found[0]
            .headline()
            .contains("mostly on the server (python3 (pid 4242) closed first)"));
    }

    /// `n` client sockets to port 61999 in TIME_WAIT from `from`, ports 40000 up, with
    /// the range 40000-40000+`range`-1 and tcp_tw_reuse at `reuse`.
    fn client_time_wait(from: &str, n: u32, range: u16, reuse: u8) -> HostFacts {
        let mut f = facts(vec![listener("0.0.0.0:61999")]);
        f.now.local_port_range = Some((40000, 40000 + range - 1));
        f.now.tw_reuse = Some(reuse);
        f.now.sockets = (0..n)
            .map(|i| time_wait(&format!("{from}:{}", 40000 + i), "10.0.0.1:61999"))
            .collect();
        if from.starts_with("127.") {
            for s in &mut f.now.sockets {
                s.remote = ep("127.0.0.1:61999");
            }
        }
        f
    }

    #[test]
    fn client_time_wait_filling_the_range_without_tw_reuse_exhausts_ports() {
        let f = client_time_wait("10.0.0.2", 950, 1000, 0);
        let found = findings(&Evidence::default(), Some(&f), &Scope::port(61999));
        assert_eq!(found.len(), 1, "950 < 1000: no build-up");
        assert_eq!(found[0].kind, FindingKind::EphemeralPortsExhausted);
        let json = evidence_json(&found[0]);
        assert_eq!(json["port_range"], serde_json::json!([40000, 40999]));
        assert_eq!(
            (&json["recyclable"], &json["tw_reuse"]),
            (&0.into(), &0.into())
        );
        let w = found[0].words();
        assert!(
            w.headline.contains("hold 950 of 1000 ephemeral ports"),
            "{}",
            w.headline
        );
        assert!(
            w.explanation.contains("tcp_tw_reuse is 0"),
            "{}",
            w.explanation
        );
    }

    #[test]
    fn clients_that_already_close_first_are_named_and_told_to_reuse_not_to_close_first() {
        let closed = FlowRecord {
            closed_first_by: Some(Side::Client),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let ev = named(
            &[closed],
            Some(process("curl", 9)),
            Some(process("python3", 4242)),
        );
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.now.sockets = (0..1500u32)
            .map(|i| time_wait(&format!("10.0.0.2:{}", 20000 + i), "127.0.0.1:61999"))
            .collect();
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        let b = found
            .iter()
            .find(|x| x.kind == FindingKind::TimeWaitBuildup)
            .expect("a build-up");
        assert_eq!(b.processes[0].process.pid, 9);
        assert_eq!(b.processes[0].role, Role::Holder);
        let w = b.words();
        assert!(
            w.headline
                .contains("mostly on the client (curl (pid 9) closed first)"),
            "{}",
            w.headline
        );
        assert!(
            w.next_step.contains("already close first"),
            "{}",
            w.next_step
        );
        assert!(
            !w.next_step.contains("let the clients close first"),
            "{}",
            w.next_step
        );
    }

    #[test]
    fn half_the_range_in_time_wait_is_a_rate_not_a_failure() {
        let f = client_time_wait("10.0.0.2", 600, 1000, 0);
        assert!(findings(&Evidence::default(), Some(&f), &Scope::port(61999)).is_empty());
    }

    #[test]
    fn ports_tw_reuse_recycles_are_not_exhausted_even_when_time_wait_fills_the_range() {
        let f = client_time_wait("10.0.0.2", 64, 64, 1);
        assert!(findings(&Evidence::default(), Some(&f), &Scope::port(61999)).is_empty());
    }

    #[test]
    fn the_default_tw_reuse_recycles_loopback_ports_only() {
        let loopback = client_time_wait("127.0.0.1", 64, 64, 2);
        assert!(findings(&Evidence::default(), Some(&loopback), &Scope::port(61999)).is_empty());
        let remote = client_time_wait("10.0.0.2", 64, 64, 2);
        let found = findings(&Evidence::default(), Some(&remote), &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::EphemeralPortsExhausted);
        assert!(found[0].explanation().contains("only for loopback"));
    }

    #[test]
    fn a_new_connection_on_a_4_tuple_in_time_wait_is_port_reuse() {
        let reused = FlowRecord {
            port_reused: true,
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let found = findings(&evidence(&[reused]), None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::TimeWaitReuse);
        assert!(evidence_json(&found[0])["time_wait_sockets"].is_null());
        assert!(evidence_json(&found[0])["fixed_port"].is_null());
    }

    #[test]
    fn reused_ports_from_the_ephemeral_range_with_tw_reuse_on_are_not_fixed_ports() {
        let reused = |port: u16| FlowRecord {
            port_reused: true,
            client: ep(&format!("127.0.0.1:{port}")),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.now.local_port_range = Some((1024, 65000));
        f.now.tw_reuse = Some(1);
        let ev = evidence(&[reused(40000), reused(40001)]);
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(evidence_json(&found[0])["fixed_port"], false);
        let w = found[0].words();
        assert!(
            !w.next_step.contains("fixed source port"),
            "{}",
            w.next_step
        );
        assert!(
            w.explanation.contains("tcp_tw_reuse is 1"),
            "{}",
            w.explanation
        );
        f.now.tw_reuse = Some(0);
        let found = findings(&ev, Some(&f), &Scope::port(61999));
        assert_eq!(
            evidence_json(&found[0])["fixed_port"],
            true,
            "without tw_reuse the kernel never picks a port in TIME_WAIT"
        );
    }

    #[test]
    fn one_client_port_reused_again_and_again_was_bound_on_purpose() {
        let reused = FlowRecord {
            port_reused: true,
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let found = findings(&evidence(&[reused, reused]), None, &Scope::port(61999));
        assert_eq!(evidence_json(&found[0])["fixed_port"], true);
        assert!(found[0]
            .next_step()
            .contains("do not bind a fixed source port"));
    }

    #[test]
    fn on_replay_a_server_that_closes_first_a_thousand_times_builds_up_time_wait() {
        let closed = FlowRecord {
            closed_first_by: Some(Side::Server),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let ev = evidence(&vec![closed; 1000]);
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::TimeWaitBuildup);
        assert_eq!(evidence_json(&found[0])["closed_first_by_server"], 1000);
        assert!(
            findings(&ev, Some(&facts(vec![])), &Scope::port(61999)).is_empty(),
            "live, /proc's sockets are counted instead"
        );
    }
}

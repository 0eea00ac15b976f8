//! TIME_WAIT: a new connection on a 4-tuple still held, sockets piling up on one side,
//! and clients running out of ephemeral ports.

use crate::diagnose::cause::{
    Cause, PortsExhausted, ServerClosesFirst, TimeWaitBuildup, TimeWaitReuse,
};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::Finding;
use crate::diagnose::host::{HostFacts, SocketState};
use crate::diagnose::rules::Scope;
use crate::flow::Side;

/// TIME_WAIT sockets on the port before it counts as a build-up.
const TIME_WAIT_BUILDUP: usize = 1000;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let port = scope.port;
    let mut out = Vec::new();
    if ev.port_reused > 0 {
        let cause = Cause::TimeWaitReuse(TimeWaitReuse {
            flows: ev.port_reused,
            time_wait_sockets: facts.map(|f| f.now.count(SocketState::TimeWait)),
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
        out.push(Finding::new(cause, tw.len() as u64));
    }
    if let Some((lo, hi)) = f.now.local_port_range {
        // Every connection to one server address and port needs its own local port, and
        // TIME_WAIT holds it for 60 s: past half the range, connect() soon fails.
        let range = u64::from(hi.saturating_sub(lo)) + 1;
        if on_client as u64 * 2 >= range && range > 1 {
            let cause = Cause::EphemeralPortsExhausted(PortsExhausted {
                time_wait: on_client,
                port_range: (lo, hi),
                port,
            });
            out.push(Finding::new(cause, on_client as u64));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::host::PortSocket;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome};

    fn time_wait(local: &str, remote: &str) -> PortSocket {
        PortSocket {
            local: ep(local),
            remote: ep(remote),
            state: SocketState::TimeWait,
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
    fn client_time_wait_near_the_ephemeral_range_exhausts_ports() {
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.now.local_port_range = Some((40000, 40999));
        f.now.sockets = (0..600u32)
            .map(|i| time_wait(&format!("127.0.0.1:{}", 40000 + i), "127.0.0.1:61999"))
            .collect();
        let found = findings(&Evidence::default(), Some(&f), &Scope::port(61999));
        assert_eq!(found.len(), 1, "600 < 1000: no build-up");
        assert_eq!(found[0].kind, FindingKind::EphemeralPortsExhausted);
        assert_eq!(
            evidence_json(&found[0])["port_range"],
            serde_json::json!([40000, 40999])
        );
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

//! Receivers that stopped reading: a zero window held for a second or more.

use crate::diagnose::cause::{Cause, ZeroWindowStall};
use crate::diagnose::evidence::{Deed, Evidence};
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;
use crate::flow::Side;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    [Side::Server, Side::Client]
        .into_iter()
        .filter(|side| ev.zero_window_stalls[side.index()] > 0)
        .map(|side| {
            let i = side.index();
            let cause = Cause::ReceiverStalled(ZeroWindowStall {
                side,
                flows: ev.zero_window_stalls[i],
                longest_zero_window_us: ev.longest_zero_window_us[i],
                recv_queue: facts.map(|f| unread(f, side, scope.port)),
            });
            let role = match side {
                Side::Server => Role::Listener,
                Side::Client => Role::Client,
            };
            Finding::new(cause, ev.zero_window_stalls[i])
                .processes(ev.named_for(Deed::Stalled(side)), role)
        })
        .collect()
}

/// The most bytes waiting unread in one of `side`'s connected sockets on `port`: the
/// server's are those whose local port is the port.
fn unread(f: &HostFacts, side: Side, port: u16) -> u32 {
    f.now
        .sockets
        .iter()
        .filter(|s| (s.local.port == port) == (side == Side::Server))
        .map(|s| s.recv_queue)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::host::{PortSocket, SocketState};
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome};

    #[test]
    fn a_zero_window_held_for_a_second_is_a_stalled_receiver() {
        let ev = evidence(&[FlowRecord {
            zero_window_us: [0, 2_500_000],
            ..record(Outcome::Closed, "127.0.0.1:61999")
        }]);
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ReceiverStalled);
        assert_eq!(evidence_json(&found[0])["side"], "server");
        assert!(found[0].headline().contains("zero window held up to 2.5s"));
    }

    #[test]
    fn a_stalled_server_is_named_by_its_process() {
        let stalled = FlowRecord {
            zero_window_us: [0, 2_500_000],
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let ev = named(
            &[stalled],
            Some(process("curl", 9)),
            Some(process("python3", 4242)),
        );
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found[0].processes.len(), 1);
        assert_eq!(found[0].processes[0].process.pid, 4242);
        let w = found[0].words();
        assert!(
            w.headline
                .starts_with("the server (python3 (pid 4242)) stopped reading"),
            "{}",
            w.headline
        );
        assert!(
            w.next_step
                .contains("what blocks python3 (pid 4242)'s reading loop"),
            "{}",
            w.next_step
        );
    }

    #[test]
    fn live_the_stalled_servers_unread_bytes_are_its_recv_q() {
        let stalled = FlowRecord {
            zero_window_us: [0, 2_500_000],
            ..record(Outcome::Closed, "127.0.0.1:61999")
        };
        let mut f = facts(vec![listener("127.0.0.1:61999")]);
        f.now.sockets = vec![
            PortSocket {
                local: ep("127.0.0.1:61999"),
                remote: ep("127.0.0.1:40000"),
                state: SocketState::Established,
                recv_queue: 65536,
            },
            PortSocket {
                local: ep("127.0.0.1:40000"),
                remote: ep("127.0.0.1:61999"),
                state: SocketState::Established,
                recv_queue: 9,
            },
        ];
        let found = findings(&evidence(&[stalled]), Some(&f), &Scope::port(61999));
        assert_eq!(evidence_json(&found[0])["recv_queue"], 65536);
        assert!(
            found[0].explanation().contains("65536 bytes wait unread"),
            "{}",
            found[0].explanation()
        );
    }

    #[test]
    fn a_brief_zero_window_is_flow_control_not_a_stall() {
        let ev = evidence(&[FlowRecord {
            zero_window_us: [999_999, 0],
            ..record(Outcome::Closed, "127.0.0.1:61999")
        }]);
        assert!(findings(&ev, None, &Scope::port(61999)).is_empty());
    }
}

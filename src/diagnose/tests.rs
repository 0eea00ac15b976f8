//! The reasoning from evidence and system facts to findings, on hand-made facts: the
//! namespace tests in `tests/diagnose.rs` prove the same against the real kernel.

use super::system::{Listener, Snapshot};
use super::*;
use crate::flow::{EndReason, History, SynGaps};

fn ep(s: &str) -> Endpoint {
    let a: std::net::SocketAddr = s.parse().unwrap();
    Endpoint::new(a.ip(), a.port())
}

/// A final record with nothing remarkable but its outcome (also used by other modules'
/// tests, with struct update syntax for the fields they care about).
pub(crate) fn record(outcome: Outcome, server: &str) -> FlowRecord {
    FlowRecord {
        id: 1,
        client: ep("127.0.0.1:40000"),
        server: ep(server),
        outcome,
        // Not read by the diagnosis; the Zeek printer's tests set their own.
        conn_state: crate::flow::ConnState::Oth,
        reset_by: None,
        closed_first_by: None,
        syn_count: 1,
        syn_gaps_us: SynGaps::default(),
        synack_count: 0,
        port_reused: false,
        midstream: false,
        history: History::new(),
        first_ts: Timestamp(1),
        last_ts: Timestamp(2),
        handshake_rtt_us: None,
        packets: [1, 1],
        bytes: [0, 0],
        retransmits: [0, 0],
        zero_windows: [0, 0],
        zero_window_us: [0, 0],
        last_payload_by: None,
        icmp: None,
        client_options: None,
        server_options: None,
        end: Some(EndReason::Packets),
    }
}

fn refused(server: &str) -> FlowRecord {
    FlowRecord {
        reset_by: Some(Side::Server),
        ..record(Outcome::Refused, server)
    }
}

fn listener(addr: &str) -> Listener {
    Listener {
        local: ep(addr),
        accept_queue: 0,
        backlog: Some(128),
        inode: 7,
        processes: vec![ProcessInfo {
            pid: 4567,
            name: "java".into(),
            cmdline: "java -jar server.jar".into(),
            user: "app".into(),
        }],
        namespace: None,
    }
}

fn facts(listeners: Vec<Listener>) -> Facts {
    let snap = Snapshot {
        listeners,
        ..Snapshot::default()
    };
    Facts {
        start: snap.clone(),
        now: snap,
    }
}

fn kinds(ev: &Evidence, f: Option<&Facts>) -> Vec<FindingKind> {
    let mut all = evaluate(ev, f, 61999);
    findings::rank(&mut all);
    all.into_iter().map(|f| f.kind).collect()
}

fn evidence(records: &[FlowRecord]) -> Evidence {
    let mut ev = Evidence::default();
    for r in records {
        ev.add(r);
    }
    ev
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
    let found = evaluate(&ev, Some(&f), 61999);
    assert_eq!(found[0].kind, FindingKind::ListenerOtherFamily);
    assert_eq!(found[0].evidence["listener"], "[::1]:61999");
    assert_eq!(found[0].processes[0].process.pid, 4567);
    assert_eq!(found[0].processes[0].role, Role::Listener);
}

#[test]
fn refused_on_ipv4_with_a_v6only_wildcard_listener_is_the_other_family() {
    let ev = evidence(&[refused("127.0.0.1:61999")]);
    let f = facts(vec![listener("[::]:61999")]);
    assert_eq!(kinds(&ev, Some(&f)), [FindingKind::ListenerOtherFamily]);
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
    let found = evaluate(&ev, Some(&f), 61999);
    assert_eq!(found[0].kind, FindingKind::ListenerOtherNamespace);
    assert_eq!(found[0].evidence["namespace"], "net:[4026532000]");
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
    f.start.counters.insert("ListenOverflows", 10);
    f.now.counters.insert("ListenOverflows", 14);
    let found = evaluate(&ev, Some(&f), 61999);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, FindingKind::AcceptQueueFull);
    assert_eq!(found[0].evidence["listen_overflows"], 4);
    assert!(
        found[0].headline.contains("java (pid 4567)"),
        "{}",
        found[0].headline
    );
}

#[test]
fn unanswered_without_overflows_is_silently_dropped() {
    let ev = evidence(&[record(Outcome::Unanswered, "127.0.0.1:61999")]);
    let f = facts(vec![listener("127.0.0.1:61999")]);
    assert_eq!(kinds(&ev, Some(&f)), [FindingKind::SilentlyDropped]);
}

#[test]
fn synack_retransmitted_after_the_clients_ack_points_at_the_accept_queue_on_replay() {
    let ev = evidence(&[FlowRecord {
        synack_count: 3,
        handshake_rtt_us: Some(40),
        ..record(Outcome::Established, "127.0.0.1:61999")
    }]);
    assert_eq!(kinds(&ev, None), [FindingKind::AcceptQueueFull]);
}

#[test]
fn reset_contexts_are_told_apart() {
    let base = FlowRecord {
        reset_by: Some(Side::Server),
        ..record(Outcome::Reset, "127.0.0.1:61999")
    };
    let quiet = base;
    assert_eq!(
        ResetContext::of(&quiet, Side::Server),
        ResetContext::AfterHandshake
    );
    let unread = FlowRecord {
        bytes: [1000, 0],
        last_payload_by: Some(Side::Client),
        ..base
    };
    assert_eq!(
        ResetContext::of(&unread, Side::Server),
        ResetContext::UnreadData
    );
    let mid = FlowRecord {
        bytes: [10, 5000],
        last_payload_by: Some(Side::Server),
        ..base
    };
    assert_eq!(
        ResetContext::of(&mid, Side::Server),
        ResetContext::MidTransfer
    );
    let found = evaluate(&evidence(&[unread]), None, 61999);
    assert_eq!(found[0].kind, FindingKind::ResetByServer);
    assert_eq!(found[0].evidence["context"], "unread_data");
}

#[test]
fn a_zero_window_held_for_a_second_is_a_stalled_receiver() {
    let ev = evidence(&[FlowRecord {
        zero_window_us: [0, 2_500_000],
        ..record(Outcome::Closed, "127.0.0.1:61999")
    }]);
    let found = evaluate(&ev, None, 61999);
    assert_eq!(found[0].kind, FindingKind::ReceiverStalled);
    assert_eq!(found[0].evidence["side"], "server");
}

#[test]
fn no_traffic_names_where_the_syns_went() {
    let mut ev = Evidence::default();
    ev.syns_elsewhere.insert(ep("127.0.0.1:8080"), 3);
    ev.syns_elsewhere.insert(ep("127.0.0.1:5432"), 1);
    let found = evaluate(&ev, None, 61999);
    assert_eq!(found[0].kind, FindingKind::NoTraffic);
    assert_eq!(
        found[0].evidence["syns_elsewhere"][0]["dst"],
        "127.0.0.1:8080"
    );
    assert!(
        found[0].explanation.contains("proxy port"),
        "{}",
        found[0].explanation
    );
}

#[test]
fn no_traffic_under_a_filter_expression_names_the_expression_first() {
    let mut ev = Evidence::default();
    ev.syns_elsewhere.insert(ep("127.0.0.1:8080"), 3);
    ev.expression = Some("host 127.0.0.2".to_string());
    let found = evaluate(&ev, None, 61999);
    assert_eq!(found[0].kind, FindingKind::NoTraffic);
    assert!(
        found[0].headline.contains("\"host 127.0.0.2\""),
        "{}",
        found[0].headline
    );
    assert!(!found[0].headline.contains("pointed elsewhere"));
    assert!(found[0].next_step.contains("without the expression"));
}

#[test]
fn errors_rank_before_warnings_and_bigger_causes_first() {
    let mut recs = vec![FlowRecord {
        reset_by: Some(Side::Server),
        ..record(Outcome::Reset, "127.0.0.1:61999")
    }];
    recs.extend((0..3).map(|_| refused("127.0.0.1:61999")));
    recs.push(record(Outcome::Unanswered, "127.0.0.1:61999"));
    assert_eq!(
        kinds(&evidence(&recs), None),
        [
            FindingKind::NothingListening,
            FindingKind::SilentlyDropped,
            FindingKind::ResetByServer
        ]
    );
}

#[test]
fn healthy_traffic_has_no_findings() {
    let ev = evidence(&[record(Outcome::Closed, "127.0.0.1:61999")]);
    assert!(kinds(&ev, Some(&facts(vec![listener("127.0.0.1:61999")]))).is_empty());
}

fn time_wait(local: &str, remote: &str) -> system::PortSocket {
    system::PortSocket {
        local: ep(local),
        remote: ep(remote),
        state: system::SocketState::TimeWait,
    }
}

#[test]
fn many_time_wait_sockets_on_the_server_are_a_buildup() {
    let mut f = facts(vec![listener("127.0.0.1:61999")]);
    f.now.sockets = (0..1500u32)
        .map(|i| time_wait("127.0.0.1:61999", &format!("127.0.0.1:{}", 20000 + i)))
        .collect();
    let found = evaluate(&Evidence::default(), Some(&f), 61999);
    let b = found
        .iter()
        .find(|x| x.kind == FindingKind::TimeWaitBuildup)
        .expect("a build-up");
    assert_eq!(b.evidence["holder"], "server");
    assert_eq!(b.evidence["on_server"], 1500);
}

#[test]
fn client_time_wait_near_the_ephemeral_range_exhausts_ports() {
    let mut f = facts(vec![listener("127.0.0.1:61999")]);
    f.now.local_port_range = Some((40000, 40999));
    f.now.sockets = (0..600u32)
        .map(|i| time_wait(&format!("127.0.0.1:{}", 40000 + i), "127.0.0.1:61999"))
        .collect();
    let mut found = evaluate(&Evidence::default(), Some(&f), 61999);
    findings::rank(&mut found);
    assert_eq!(
        found[0].kind,
        FindingKind::EphemeralPortsExhausted,
        "{found:#?}"
    );
    assert_eq!(found[0].evidence["port_range"], json!([40000, 40999]));
    assert!(
        !found.iter().any(|x| x.kind == FindingKind::TimeWaitBuildup),
        "600 < 1000"
    );
}

#[test]
fn so_reuseport_listeners_show_as_one_group_with_their_backlog() {
    use socket2::{Domain, Socket, Type};
    let bind = |port: u16| {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
            .unwrap();
        s.listen(7).unwrap();
        s
    };
    let first = bind(0);
    let port = first.local_addr().unwrap().as_socket().unwrap().port();
    let _second = bind(port);
    let d = Diagnoser::new(port, true, true);
    let view = d.system_view().expect("live facts on Linux");
    assert_eq!(view.listeners.len(), 2, "{view:?}");
    for l in &view.listeners {
        assert_eq!(l.group, 2, "an SO_REUSEPORT group of two: {l:?}");
        assert_eq!(l.backlog, Some(7));
        assert!(l
            .processes
            .iter()
            .any(|p| p.pid == std::process::id() as i32));
    }
}

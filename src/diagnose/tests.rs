//! Hand-made inputs shared by the rules' tests (and other modules' tests), and the
//! diagnoser's own scenarios: ranking, live polling, the end. The namespace tests in
//! `tests/diagnose.rs` prove the rules against the real kernel.

use super::host::{Counter, Listener, Snapshot};
use super::*;
use crate::decode::Timestamp;
use crate::flow::{EndReason, History, Outcome, Side, SynGaps};
use crate::kernel::facts::{Dir, DropFact, PathName, ResetFact};
use crate::kernel::ResetOrigin;
use listeners::ChangeKind;

pub(crate) fn ep(s: &str) -> Endpoint {
    let a: std::net::SocketAddr = s.parse().unwrap();
    Endpoint::new(a.ip(), a.port())
}

/// A final record with nothing remarkable but its outcome (also used by other modules'
/// tests, with struct update syntax for the fields they care about).
pub(crate) fn record(outcome: Outcome, server: &str) -> FlowRecord {
    FlowRecord {
        encap: crate::decode::Encap::None,
        id: 1,
        client: ep("127.0.0.1:40000"),
        client_isn: None,
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

pub(crate) fn refused(server: &str) -> FlowRecord {
    FlowRecord {
        reset_by: Some(Side::Server),
        ..record(Outcome::Refused, server)
    }
}

/// A listener owned by `java (pid 4567)`, its queue empty.
pub(crate) fn listener(addr: &str) -> Listener {
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

/// Host facts with these listeners, unchanged since the start.
pub(crate) fn facts(listeners: Vec<Listener>) -> HostFacts {
    HostFacts::from(Snapshot {
        listeners,
        ..Snapshot::default()
    })
}

pub(crate) fn evidence(records: &[FlowRecord]) -> Evidence {
    let mut ev = Evidence::default();
    for r in records {
        ev.add(r);
    }
    ev
}

/// The kernel witness's facts of one connection: `by`'s TCP sent a reset.
/// A process by name and pid.
pub(crate) fn process(name: &str, pid: i32) -> ProcessInfo {
    ProcessInfo {
        pid,
        name: name.into(),
        cmdline: name.into(),
        user: "root".into(),
    }
}

/// The evidence of `records`, each with the processes the flow lines named: `client`
/// and `server`.
pub(crate) fn named(
    records: &[FlowRecord],
    client: Option<ProcessInfo>,
    server: Option<ProcessInfo>,
) -> Evidence {
    let mut ev = evidence(records);
    let procs = FlowProcesses { client, server };
    for r in records {
        ev.named(r, &procs);
    }
    ev
}

pub(crate) fn kernel_reset(
    by: Side,
    origin: ResetOrigin,
    reason: &str,
    process: Option<(&str, u32)>,
) -> KernelFacts {
    KernelFacts {
        resets_sent: vec![ResetFact {
            by,
            origin,
            reason: Some(reason.to_string().into()),
            pid: process.map(|(_, pid)| pid),
            process: process.map(|(name, _)| name.to_string()),
        }],
        ..KernelFacts::default()
    }
}

/// The kernel witness's facts of one connection: netfilter dropped a packet of kind
/// `what` that `sender` sent, on `path`, and TCP sent no reset.
pub(crate) fn netfilter_drop(sender: Side, what: &'static str, path: PathName) -> KernelFacts {
    KernelFacts {
        drops: vec![DropFact {
            reason: "NETFILTER_DROP".into(),
            place: Some("nft_do_chain"),
            path,
            dir: match sender {
                Side::Client => Dir::C2s,
                Side::Server => Dir::S2c,
            },
            what,
            count: 1,
            first_ts: Timestamp(1),
            last_ts: Timestamp(1),
            reason_code: 6,
        }],
        ..KernelFacts::default()
    }
}

/// Evidence from connections the kernel witness saw, each with its facts.
pub(crate) fn witnessed(flows: &[(FlowRecord, KernelFacts)]) -> Evidence {
    let mut ev = Evidence::default();
    for (r, k) in flows {
        ev.add(r);
        ev.kernel.add(r, k);
    }
    ev
}

/// Host facts whose firewall holds what `iptables-save` printed.
pub(crate) fn with_firewall(mut f: HostFacts, iptables_save: &str) -> HostFacts {
    use super::host::firewall::{Ruleset, Tool};
    f.firewall = Some(std::sync::Arc::new(Ruleset::parse_iptables_save(
        iptables_save,
        Tool::Iptables,
        61999,
    )));
    f
}

/// A finding's JSON `evidence` object, as printed.
pub(crate) fn evidence_json(f: &Finding) -> serde_json::Value {
    serde_json::to_value(&f.cause).unwrap()
}

fn diagnose(records: &[FlowRecord], facts: Option<HostFacts>) -> Vec<Finding> {
    let mut d = Diagnoser::new(Scope::port(61999), facts, false);
    for r in records {
        d.flow_finished(r, None);
    }
    d.finish(None).findings
}

fn kinds(found: &[Finding]) -> Vec<FindingKind> {
    found.iter().map(|f| f.kind).collect()
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
        kinds(&diagnose(&recs, None)),
        [
            FindingKind::NothingListening,
            FindingKind::SilentlyDropped,
            FindingKind::ResetByServer
        ]
    );
}

#[test]
fn healthy_traffic_has_no_findings() {
    let found = diagnose(
        &[record(Outcome::Closed, "127.0.0.1:61999")],
        Some(facts(vec![listener("127.0.0.1:61999")])),
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_replay_with_no_packets_on_the_port_ends_with_no_traffic() {
    assert_eq!(kinds(&diagnose(&[], None)), [FindingKind::NoTraffic]);
}

#[test]
fn live_a_problem_is_reported_at_the_next_poll_and_only_once() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    assert!(!d.poll_due(t0), "nothing happened yet");
    d.flow_finished(&refused("127.0.0.1:61999"), None);
    assert!(d.poll_due(t0));
    let first = d.poll(t0, Timestamp(0), Counters::new());
    assert_eq!(kinds(&first), [FindingKind::NothingListening]);
    d.flow_finished(&refused("127.0.0.1:61999"), None);
    assert!(!d.poll_due(t0 + POLL / 2), "at most one poll per POLL");
    assert!(
        d.poll(t0 + POLL, Timestamp(0), Counters::new()).is_empty(),
        "said once"
    );
}

#[test]
fn live_a_pending_notice_is_enough_to_say_the_syns_are_dropped() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    d.flow_pending(&record(Outcome::Unanswered, "127.0.0.1:61999"), None);
    let found = d.poll(t0, Timestamp(0), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::SilentlyDropped]);
    assert_eq!(
        d.evidence().flows(),
        0,
        "a pending notice is not a finished flow"
    );
}

#[test]
fn live_a_pending_notice_with_the_kernels_drops_names_what_dropped_them_already() {
    use crate::kernel::facts::{Dir, DropFact, PathName};
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    let k = KernelFacts {
        drops: vec![DropFact {
            reason: "NETFILTER_DROP".into(),
            place: Some("nft_do_chain"),
            path: PathName::Egress,
            dir: Dir::S2c,
            what: "SYN-ACK",
            count: 2,
            first_ts: Timestamp(1),
            last_ts: Timestamp(2),
            reason_code: 0,
        }],
        ..KernelFacts::default()
    };
    d.flow_pending(&record(Outcome::Unanswered, "127.0.0.1:61999"), Some(&k));
    let found = d.poll(t0, Timestamp(0), Counters::new());
    assert_eq!(
        kinds(&found),
        [FindingKind::RepliesDropped],
        "the first finding printed is already the kernel's, not an inferred silent drop"
    );
}

/// 1500 server sockets on port 61999 in TIME_WAIT, as a look taken at `taken` sees them.
fn time_wait_look(taken: u64) -> Snapshot {
    Snapshot {
        taken: Timestamp(taken),
        sockets: (0..1500u16)
            .map(|i| host::PortSocket {
                local: ep("127.0.0.1:61999"),
                remote: ep(&format!("127.0.0.1:{}", 20000 + i)),
                state: host::SocketState::TimeWait,
                recv_queue: 0,
            })
            .collect(),
        ..Snapshot::default()
    }
}

#[test]
fn live_a_time_wait_buildup_is_said_at_the_look_that_counts_it_and_kept_at_the_end() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    d.flow_finished(&record(Outcome::Closed, "127.0.0.1:61999"), None);
    assert!(!d.poll_due(t0), "a clean close is no news");
    d.facts_refreshed(time_wait_look(1_000_000));
    assert!(
        d.poll_due(t0),
        "a look with TIME_WAIT sockets is worth a poll"
    );
    let live = kinds(&d.poll(t0, Timestamp(1_000_000), Counters::new()));
    assert_eq!(live, [FindingKind::TimeWaitBuildup]);
    d.facts_refreshed(time_wait_look(2_000_000));
    let again = kinds(&d.poll(t0 + POLL, Timestamp(2_000_000), Counters::new()));
    assert!(again.is_empty(), "printed once: {again:?}");
    // The sockets expired before the end: what was printed happened, and stays.
    let end = d.finish(Some(Snapshot::default()));
    assert!(
        kinds(&end.findings).contains(&FindingKind::TimeWaitBuildup),
        "{end:?}"
    );
    assert!(end.superseded.is_empty(), "{end:?}");
}

#[test]
fn live_no_traffic_is_said_once_syns_went_elsewhere_for_the_stated_time() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    d.syn_elsewhere(ep("127.0.0.1:8080"));
    let look = |us| Snapshot {
        taken: Timestamp(us),
        ..Snapshot::default()
    };
    d.facts_refreshed(look(NO_TRAFFIC_AFTER_US - 1));
    let early = kinds(&d.poll(t0, Timestamp(NO_TRAFFIC_AFTER_US - 1), Counters::new()));
    assert!(early.is_empty(), "too early to be sure: {early:?}");
    d.facts_refreshed(look(NO_TRAFFIC_AFTER_US));
    let live = kinds(&d.poll(t0 + POLL, Timestamp(NO_TRAFFIC_AFTER_US), Counters::new()));
    assert_eq!(live, [FindingKind::NoTraffic]);
}

#[test]
fn live_a_quiet_port_with_no_syns_anywhere_is_not_yet_no_traffic() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    d.facts_refreshed(Snapshot {
        taken: Timestamp(NO_TRAFFIC_AFTER_US * 2),
        ..Snapshot::default()
    });
    assert!(!d.poll_due(t0));
    let end = kinds(&d.finish(None).findings);
    assert_eq!(end, [FindingKind::NoTraffic], "the end still says it");
}

#[test]
fn a_live_no_traffic_the_port_then_got_is_superseded_with_why() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    d.syn_elsewhere(ep("127.0.0.1:8080"));
    d.facts_refreshed(Snapshot {
        taken: Timestamp(NO_TRAFFIC_AFTER_US),
        ..Snapshot::default()
    });
    let live = kinds(&d.poll(t0, Timestamp(NO_TRAFFIC_AFTER_US), Counters::new()));
    assert_eq!(live, [FindingKind::NoTraffic]);
    d.flow_finished(&record(Outcome::Closed, "127.0.0.1:61999"), None);
    let end = d.finish(None);
    assert!(!kinds(&end.findings).contains(&FindingKind::NoTraffic));
    assert_eq!(end.superseded.len(), 1);
    assert_eq!(end.superseded[0].live.kind, FindingKind::NoTraffic);
    assert_eq!(end.superseded[0].later, Some(Later::TrafficArrived));
}

#[test]
fn live_a_slow_connect_is_said_when_its_handshake_completes() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    let mut gaps = SynGaps::default();
    gaps.push(1_000_000);
    let through_on_a_retry = FlowRecord {
        syn_count: 2,
        syn_gaps_us: gaps,
        handshake_rtt_us: Some(50),
        end: None,
        ..record(Outcome::Established, "127.0.0.1:61999")
    };
    d.flow_pending(&through_on_a_retry, None);
    let live = kinds(&d.poll(t0, Timestamp(0), Counters::new()));
    assert_eq!(live, [FindingKind::SlowConnect]);
}

#[test]
fn live_a_pending_stalled_handshake_is_said_before_its_flow_ends() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    let stalled = FlowRecord {
        synack_count: 3,
        end: None,
        ..record(Outcome::HandshakeIncomplete, "127.0.0.1:61999")
    };
    d.flow_pending(&stalled, None);
    let live = kinds(&d.poll(t0, Timestamp(0), Counters::new()));
    assert_eq!(live, [FindingKind::HandshakeStalled]);
    d.flow_finished(
        &FlowRecord {
            synack_count: 6,
            ..record(Outcome::HandshakeIncomplete, "127.0.0.1:61999")
        },
        None,
    );
    let end = d.finish(None);
    assert!(kinds(&end.findings).contains(&FindingKind::HandshakeStalled));
    assert!(end.superseded.is_empty());
}

#[test]
fn live_a_stalled_receiver_is_said_as_soon_as_its_connection_ends() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(facts(vec![])), false);
    d.flow_finished(
        &FlowRecord {
            zero_window_us: [0, 2_000_000],
            ..record(Outcome::Closed, "127.0.0.1:61999")
        },
        None,
    );
    assert!(
        d.poll_due(t0),
        "a stall is news, though the connection closed cleanly"
    );
    let live = kinds(&d.poll(t0, Timestamp(0), Counters::new()));
    assert_eq!(live, [FindingKind::ReceiverStalled]);
}

#[test]
fn client_lookups_are_rate_limited_per_second() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(
        Scope::port(61999),
        Some(facts(vec![listener("127.0.0.1:61999")])),
        true,
    );
    let (client, server) = (ep("127.0.0.1:40000"), ep("127.0.0.1:61999"));
    let asked: Vec<_> = (0..10)
        .filter_map(|id| d.syn_seen(id, client, server, t0))
        .collect();
    assert_eq!(asked.len(), LOOKUPS_PER_SEC as usize);
    assert_eq!(
        asked[0].server.as_ref().map(|p| p.pid),
        Some(4567),
        "the listener's owner is known from the facts"
    );
    assert!(d
        .syn_seen(11, client, server, t0 + Duration::from_secs(1))
        .is_some());
    d.processes_found(3, FlowProcesses::default());
    assert_eq!(d.processes_of(3), Some(FlowProcesses::default()));
    assert_eq!(d.processes_of(3), None, "forgotten once handed out");
}

#[test]
fn a_long_watch_names_processes_after_many_lookups_finished_late() {
    // Each connection ends before its lookup does (a short request, a slow /proc walk):
    // the late answer must not be kept, or after PROCESSES_CAP of them no later flow
    // would be named.
    let mut d = Diagnoser::new(
        Scope::port(61999),
        Some(facts(vec![listener("127.0.0.1:61999")])),
        true,
    );
    let (client, server) = (ep("127.0.0.1:40000"), ep("127.0.0.1:61999"));
    let t0 = Instant::now();
    let named = |pid| FlowProcesses {
        client: Some(ProcessInfo {
            pid,
            name: "curl".into(),
            cmdline: "curl".into(),
            user: "root".into(),
        }),
        server: None,
    };
    let late = PROCESSES_CAP as u64 + 10;
    for id in 0..late {
        let now = t0 + Duration::from_secs(id);
        assert!(d.syn_seen(id, client, server, now).is_some(), "flow {id}");
        assert_eq!(d.processes_of(id), None, "finished before its answer");
        d.processes_found(id, named(id as i32));
    }
    let id = late;
    assert!(d
        .syn_seen(id, client, server, t0 + Duration::from_secs(id))
        .is_some());
    d.processes_found(id, named(7));
    assert_eq!(d.processes_of(id), Some(named(7)));
}

#[test]
fn replays_ask_for_no_lookups() {
    let mut d = Diagnoser::new(Scope::port(61999), None, true);
    let (client, server) = (ep("127.0.0.1:40000"), ep("127.0.0.1:61999"));
    assert!(d.syn_seen(1, client, server, Instant::now()).is_none());
    assert!(d.system_view().is_none());
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
    let d = Diagnoser::new(Scope::port(port), HostFacts::first_look(port, true), true);
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

/// The witness's word that a socket on `addr` entered (or left) LISTEN at `ts`.
fn listen_event(addr: &str, listening: bool, ts: u64) -> crate::kernel::KernelEvent {
    use crate::kernel::{EventKind, KernelEvent, TcpState};
    let (old, new) = if listening {
        (TcpState::Close, TcpState::Listen)
    } else {
        (TcpState::Listen, TcpState::Close)
    };
    KernelEvent {
        ts: Timestamp(ts),
        kind: EventKind::State { old, new },
        src: ep(addr),
        dst: ep("0.0.0.0:0"),
        seq: 0,
        flags: crate::decode::TcpFlags(0),
        icmp: None,
        process: None,
    }
}

fn python() -> ProcessInfo {
    ProcessInfo {
        pid: 4242,
        name: "python3".into(),
        cmdline: "python3 -m http.server".into(),
        user: "root".into(),
    }
}

/// A refusal whose RST came at `ts`.
fn refused_at(server: &str, ts: u64) -> FlowRecord {
    FlowRecord {
        first_ts: Timestamp(ts),
        last_ts: Timestamp(ts),
        ..refused(server)
    }
}

/// A connection to 127.0.0.1:61999 that completed its handshake and closed, from `first`
/// to `last`.
fn accepted_between(first: u64, last: u64) -> FlowRecord {
    FlowRecord {
        first_ts: Timestamp(first),
        last_ts: Timestamp(last),
        handshake_rtt_us: Some(10),
        ..record(Outcome::Closed, "127.0.0.1:61999")
    }
}

/// A live diagnoser whose first look, at 100, saw `listeners`.
fn live(listeners: Vec<Listener>) -> Diagnoser {
    let mut f = facts(listeners);
    f.now.taken = Timestamp(100);
    Diagnoser::new(Scope::port(61999), Some(f), false)
}

#[test]
fn live_a_refusal_just_after_a_listener_started_on_the_other_family_says_so_and_names_it() {
    let t0 = Instant::now();
    let mut d = live(vec![]);
    d.listener_changed(&listen_event("[::1]:61999", true, 1_000), Some(python()));
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_500), None);
    let found = d.poll(t0, Timestamp(1_600), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::ListenerOtherFamily]);
    assert_eq!(found[0].processes[0].process, python());
    assert!(d.updates().is_empty(), "the finding already rests on it");
}

#[test]
fn live_a_problem_asks_for_a_look_at_the_sockets_at_most_every_10_ms() {
    let t0 = Instant::now();
    let mut d = live(vec![]);
    assert!(!d.look_due(t0));
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_500), None);
    assert!(d.look_due(t0));
    // The look at the moment found the server, which the refresher had not seen yet.
    let found = Listener {
        processes: vec![],
        ..listener("[::1]:61999")
    };
    d.sockets_looked(Some(vec![found]), Timestamp(1_600), t0);
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_700), None);
    assert!(!d.look_due(t0 + LOOK_EVERY / 2));
    assert!(d.look_due(t0 + LOOK_EVERY));
    let found = d.poll(t0, Timestamp(1_800), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::ListenerOtherFamily]);
}

#[test]
fn live_a_listener_started_after_a_printed_refusal_is_an_update_said_once() {
    let t0 = Instant::now();
    let mut d = live(vec![]);
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_000), None);
    let found = d.poll(t0, Timestamp(1_100), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::NothingListening]);
    d.listener_changed(
        &listen_event("127.0.0.1:61999", true, 2_000),
        Some(python()),
    );
    let updates = d.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].change.kind, ChangeKind::ListenerStarted);
    assert_eq!(updates[0].change.at, Timestamp(2_000));
    assert_eq!(updates[0].earlier, [FindingKind::NothingListening]);
    assert!(d.updates().is_empty(), "said once");
    // The final diagnosis judges the refusal by its moment (not a firewall: nothing
    // listened then) and says what changed since.
    let end = d.finish(None);
    assert_eq!(kinds(&end.findings), [FindingKind::NothingListening]);
    assert_eq!(end.findings[0].facts_changed.len(), 1);
    assert!(end.superseded.is_empty());
}

#[test]
fn the_final_diagnosis_keeps_the_listener_a_refusal_met_after_it_stopped() {
    let t0 = Instant::now();
    let mut d = live(vec![]);
    d.listener_changed(&listen_event("[::1]:61999", true, 1_000), Some(python()));
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_500), None);
    let live = kinds(&d.poll(t0, Timestamp(1_600), Counters::new()));
    assert_eq!(live, [FindingKind::ListenerOtherFamily]);
    d.listener_changed(&listen_event("[::1]:61999", false, 3_000), Some(python()));
    assert_eq!(d.updates()[0].change.kind, ChangeKind::ListenerStopped);
    // The last look finds nothing listening.
    let end = d.finish(Some(Snapshot {
        taken: Timestamp(5_000),
        ..Snapshot::default()
    }));
    assert_eq!(kinds(&end.findings), [FindingKind::ListenerOtherFamily]);
    let changed = &end.findings[0].facts_changed;
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].kind, changed[0].at),
        (ChangeKind::ListenerStopped, Timestamp(3_000))
    );
}

#[test]
fn a_live_finding_the_final_diagnosis_does_not_repeat_is_listed_as_superseded_with_why() {
    let t0 = Instant::now();
    let mut d = live(vec![]);
    d.listener_changed(&listen_event("[::1]:61999", true, 1_000), Some(python()));
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_500), None);
    d.poll(t0, Timestamp(1_600), Counters::new());
    d.listener_changed(&listen_event("[::1]:61999", false, 3_000), Some(python()));
    // Refused again after the server stopped: the endpoint is judged at its last
    // refusal now.
    d.flow_finished(&refused_at("127.0.0.1:61999", 4_000), None);
    let live = kinds(&d.poll(t0 + POLL, Timestamp(4_100), Counters::new()));
    assert_eq!(live, [FindingKind::NothingListening]);
    let end = d.finish(None);
    assert_eq!(kinds(&end.findings), [FindingKind::NothingListening]);
    assert_eq!(end.superseded.len(), 1);
    let s = &end.superseded[0];
    assert_eq!(s.live.kind, FindingKind::ListenerOtherFamily);
    assert_eq!(s.printed_at, Timestamp(1_600));
    assert_eq!(s.changes[0].kind, ChangeKind::ListenerStopped);
}

#[test]
fn listener_changes_before_any_finding_are_not_updates() {
    let mut d = live(vec![]);
    d.listener_changed(&listen_event("127.0.0.1:61999", true, 1_000), None);
    assert!(d.updates().is_empty());
}

#[test]
fn a_listener_change_is_no_update_to_findings_that_do_not_rest_on_listeners() {
    let t0 = Instant::now();
    let mut d = live(vec![listener("127.0.0.1:61999")]);
    d.flow_finished(
        &FlowRecord {
            reset_by: Some(Side::Server),
            ..record(Outcome::Reset, "127.0.0.1:61999")
        },
        None,
    );
    let found = d.poll(t0, Timestamp(1_100), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::ResetByServer]);
    d.listener_changed(&listen_event("127.0.0.1:61999", false, 2_000), None);
    assert!(d.updates().is_empty());
    let end = d.finish(None);
    assert!(end.findings.iter().all(|f| f.facts_changed.is_empty()));
}

#[test]
fn a_live_silent_drop_whose_connection_got_through_on_a_retransmission_is_superseded_by_a_slow_connect(
) {
    let t0 = Instant::now();
    let mut d = live(vec![listener("127.0.0.1:61999")]);
    let waiting = FlowRecord {
        syn_count: 2,
        end: None,
        ..record(Outcome::Unanswered, "127.0.0.1:61999")
    };
    d.flow_pending(&waiting, None);
    let first = kinds(&d.poll(t0, Timestamp(1_100), Counters::new()));
    assert_eq!(first, [FindingKind::SilentlyDropped]);
    let mut gaps = crate::flow::SynGaps::default();
    gaps.push(1_000_000);
    d.flow_finished(
        &FlowRecord {
            syn_count: 2,
            syn_gaps_us: gaps,
            synack_count: 1,
            handshake_rtt_us: Some(50),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        },
        None,
    );
    let then = kinds(&d.poll(t0 + POLL, Timestamp(2_100), Counters::new()));
    assert_eq!(then, [FindingKind::SlowConnect], "printed live too");
    let end = d.finish(None);
    assert_eq!(kinds(&end.findings), [FindingKind::SlowConnect]);
    assert_eq!(end.superseded.len(), 1);
    assert_eq!(end.superseded[0].live.kind, FindingKind::SilentlyDropped);
    assert_eq!(end.superseded[0].by, Some(FindingKind::SlowConnect));
}

/// Host facts whose first look read every counter at 0.
fn counted_facts() -> HostFacts {
    let mut f = facts(vec![]);
    f.start.counters = Counter::ALL.iter().map(|&c| (c, 0)).collect();
    f
}

/// `n` SYNs to port 61999 from `n` sources in 10.202.0.0/16, 1 ms apart from `t`.
fn spoofed_syns(d: &mut Diagnoser, n: u32, t: u64) {
    for i in 0..n {
        let src = std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0aca_0000 + i));
        d.syn_arrived(
            src,
            ep("10.201.0.1:61999"),
            Timestamp(t + u64::from(i) * 1000),
        );
    }
}

#[test]
fn live_a_syn_flood_is_said_while_its_half_open_attempts_still_wait() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(counted_facts()), false);
    spoofed_syns(&mut d, 40, 5_000_000);
    assert!(
        d.poll_due(t0),
        "many sources make a poll due, with no flow finished"
    );
    let cookies = Counters::from([
        (Counter::SyncookiesSent, 32),
        (Counter::TcpReqQFullDoCookies, 32),
    ]);
    let found = d.poll(t0, Timestamp(5_040_000), cookies);
    assert_eq!(kinds(&found), [FindingKind::SynFlood]);
    assert_eq!(evidence_json(&found[0])["cookies_sent"], 32);
}

#[test]
fn live_a_silent_drop_printed_before_the_flood_was_known_is_superseded_by_it() {
    let t0 = Instant::now();
    let mut d = Diagnoser::new(Scope::port(61999), Some(counted_facts()), false);
    let lone = FlowRecord {
        client: ep("192.0.2.1:1024"),
        ..record(Outcome::Unanswered, "10.201.0.1:61999")
    };
    d.flow_pending(&lone, None);
    assert_eq!(
        kinds(&d.poll(t0, Timestamp(0), Counters::new())),
        [FindingKind::SilentlyDropped]
    );
    spoofed_syns(&mut d, 40, 5_000_000);
    d.flow_finished(&lone, None);
    let full = Counters::from([(Counter::TcpReqQFullDrop, 40)]);
    d.poll(t0 + POLL, Timestamp(5_100_000), full.clone());
    let end = Snapshot {
        counters: full,
        ..Snapshot::default()
    };
    let diagnosis = d.finish(Some(end));
    assert_eq!(kinds(&diagnosis.findings), [FindingKind::SynFlood]);
    assert_eq!(diagnosis.superseded.len(), 1, "{diagnosis:#?}");
    assert_eq!(diagnosis.superseded[0].by, Some(FindingKind::SynFlood));
}

/// A number a finding takes from a kernel counter: where its evidence has it (a JSON
/// pointer), which counter, and how its words say it.
struct Cited {
    key: &'static str,
    counter: Counter,
    said: &'static str,
}

/// Every finding that cites a counter (`grep -n 'Counter::' src/diagnose/rules`):
/// `accept_queue_full`, `slow_connect`, `reset_by_*`, `syn_flood`. Each counter grew by a
/// different amount, so a number taken from the wrong one, or from another window,
/// shows.
#[test]
fn every_count_a_finding_takes_from_a_counter_is_that_counters_growth_in_its_words_too() {
    use crate::flow::SynGaps;
    let grown = |deltas: &[(Counter, u64)], listeners: Vec<Listener>| {
        let mut f = facts(listeners);
        f.start.counters = Counter::ALL.iter().map(|&c| (c, 1000)).collect();
        f.now.counters = f.start.counters.clone();
        for &(c, d) in deltas {
            f.now.counters.insert(c, 1000 + d);
        }
        f
    };
    let full = Listener {
        accept_queue: 9,
        backlog: Some(8),
        ..listener("127.0.0.1:61999")
    };
    let mut gaps = SynGaps::default();
    gaps.push(1_000_000);
    let mut flood = evidence(&[]);
    flood.syn_rate = syn_meter::SynRate {
        syns: 3000,
        sources: 2900,
        peak_syns_per_sec: 1500,
        ..Default::default()
    };
    // Through on its second SYN.
    let slow = FlowRecord {
        syn_count: 2,
        syn_gaps_us: gaps,
        synack_count: 1,
        handshake_rtt_us: Some(100),
        ..record(Outcome::Closed, "127.0.0.1:61999")
    };
    let cases: Vec<(FindingKind, Evidence, HostFacts, Vec<Cited>)> = vec![
        (
            FindingKind::AcceptQueueFull,
            evidence(&[FlowRecord {
                syn_count: 3,
                ..record(Outcome::Unanswered, "127.0.0.1:61999")
            }]),
            grown(
                &[(Counter::ListenOverflows, 4), (Counter::ListenDrops, 7)],
                vec![full],
            ),
            vec![
                Cited {
                    key: "/listen_overflows",
                    counter: Counter::ListenOverflows,
                    said: "ListenOverflows grew by 4",
                },
                Cited {
                    key: "/listen_drops",
                    counter: Counter::ListenDrops,
                    said: "ListenDrops by 7",
                },
            ],
        ),
        (
            FindingKind::SlowConnect,
            evidence(&[slow]),
            grown(
                &[(Counter::TcpReqQFullDrop, 5), (Counter::ListenDrops, 9)],
                vec![listener("127.0.0.1:61999")],
            ),
            vec![Cited {
                key: "/syn_queue_drops",
                counter: Counter::ListenDrops,
                said: "9 dropped SYNs (ListenDrops grew by 9",
            }],
        ),
        (
            FindingKind::SlowConnect,
            evidence(&[slow]),
            grown(
                &[(Counter::ListenOverflows, 13), (Counter::ListenDrops, 14)],
                vec![listener("127.0.0.1:61999")],
            ),
            vec![Cited {
                key: "/listen_overflows",
                counter: Counter::ListenOverflows,
                said: "13 handshakes found no room (ListenOverflows grew by 13",
            }],
        ),
        (
            FindingKind::ResetByServer,
            evidence(&[FlowRecord {
                reset_by: Some(Side::Server),
                bytes: [1000, 0],
                last_payload_by: Some(Side::Client),
                ..record(Outcome::Reset, "127.0.0.1:61999")
            }]),
            grown(
                &[(Counter::TcpAbortOnClose, 3)],
                vec![listener("127.0.0.1:61999")],
            ),
            vec![Cited {
                key: "/abort_on_close",
                counter: Counter::TcpAbortOnClose,
                said: "TCPAbortOnClose grew by 3",
            }],
        ),
        (
            FindingKind::SynFlood,
            flood,
            grown(
                &[
                    (Counter::SyncookiesSent, 2992),
                    (Counter::TcpReqQFullDoCookies, 2990),
                    (Counter::SyncookiesRecv, 2),
                    (Counter::SyncookiesFailed, 1),
                    (Counter::TcpReqQFullDrop, 6),
                    (Counter::ListenDrops, 11),
                ],
                vec![listener("127.0.0.1:61999")],
            ),
            vec![
                Cited {
                    key: "/cookies_sent",
                    counter: Counter::SyncookiesSent,
                    said: "2992 SYN cookies sent",
                },
                Cited {
                    key: "/counters/SyncookiesSent",
                    counter: Counter::SyncookiesSent,
                    said: "SyncookiesSent grew by 2992",
                },
                Cited {
                    key: "/counters/TCPReqQFullDoCookies",
                    counter: Counter::TcpReqQFullDoCookies,
                    said: "TCPReqQFullDoCookies grew by 2990",
                },
                Cited {
                    key: "/counters/TCPReqQFullDrop",
                    counter: Counter::TcpReqQFullDrop,
                    said: "6 SYNs dropped for a full SYN queue",
                },
                Cited {
                    key: "/counters/ListenDrops",
                    counter: Counter::ListenDrops,
                    said: "ListenDrops by 11",
                },
                Cited {
                    key: "/counters/SyncookiesRecv",
                    counter: Counter::SyncookiesRecv,
                    said: "2 came back valid (SyncookiesRecv)",
                },
                Cited {
                    key: "/counters/SyncookiesFailed",
                    counter: Counter::SyncookiesFailed,
                    said: "1 did not validate (SyncookiesFailed)",
                },
            ],
        ),
    ];
    for (kind, ev, f, cited) in cases {
        let found = rules::evaluate(&ev, Some(&f), &Scope::port(61999));
        let finding = found
            .iter()
            .find(|x| x.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} among {found:#?}"));
        let e = evidence_json(finding);
        let w = finding.words();
        let words = format!("{} {} {}", w.headline, w.explanation, w.next_step);
        for c in cited {
            let delta = f.delta(c.counter);
            assert_eq!(
                e.pointer(c.key).and_then(serde_json::Value::as_u64),
                Some(delta),
                "{kind:?}: evidence {} is {}'s growth: {e}",
                c.key,
                c.counter
            );
            assert!(
                c.said.contains(&delta.to_string()) && words.contains(c.said),
                "{kind:?} says {}'s growth ({delta}) as {:?}: {words}",
                c.counter,
                c.said
            );
        }
    }
}

#[test]
fn a_live_nothing_listening_whose_server_came_up_and_accepted_is_superseded_by_the_startup_race() {
    let t0 = Instant::now();
    let mut d = live(vec![]);
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_000), None);
    let found = d.poll(t0, Timestamp(1_100), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::NothingListening]);
    d.listener_changed(
        &listen_event("127.0.0.1:61999", true, 2_000),
        Some(python()),
    );
    assert_eq!(d.updates().len(), 1, "the listener's start is said live");
    d.flow_finished(&accepted_between(2_500, 2_600), None);
    let end = d.finish(None);
    assert_eq!(kinds(&end.findings), [FindingKind::StartupRace]);
    // The listener timeline ended the window: the process and its time are facts.
    let Cause::RefusalWindows(w) = &end.findings[0].cause else {
        panic!("{:?}", end.findings[0].cause)
    };
    let started = w
        .listener_started
        .as_ref()
        .expect("the listen() that ended it");
    assert_eq!((started.at, started.pid), (2_000, Some(4242)));
    assert!(end.findings[0]
        .explanation()
        .contains("python3 (pid 4242) started listening on 127.0.0.1:61999 at "));
    // How late the server was is the listen() call's time (1 ms after the refusal), not
    // the bound the accepted SYN gives (1.5 ms).
    let headline = end.findings[0].headline();
    assert!(
        headline.contains("refused: the server listened 1 ms after it (its listen() call)")
            && !headline.contains("up to"),
        "{headline}"
    );
    assert_eq!(end.superseded.len(), 1);
    assert_eq!(end.superseded[0].by, Some(FindingKind::StartupRace));
}

#[test]
fn a_startup_race_without_the_listen_call_is_bounded_by_the_first_accepted_syn() {
    // From the packets alone: the server listened at some moment before it accepted.
    let t0 = Instant::now();
    let mut d = live(vec![]);
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_000), None);
    let _ = d.poll(t0, Timestamp(1_100), Counters::new());
    d.flow_finished(&accepted_between(3_000, 3_100), None);
    let end = d.finish(None);
    assert_eq!(kinds(&end.findings), [FindingKind::StartupRace]);
    let headline = end.findings[0].headline();
    assert!(
        headline.contains("it accepted 2 ms after the first")
            && headline.contains("started up to 2 ms before the server listened"),
        "{headline}"
    );
}

#[test]
fn a_live_refusal_from_elsewhere_whose_server_came_up_and_accepted_is_superseded_by_the_startup_race(
) {
    // A port map's backend (another namespace or host) refuses: the witness saw this
    // host's TCP send no RST. Then the backend starts and accepts. The live finding is
    // not "no listener changed": the server the SYNs went to started listening.
    let t0 = Instant::now();
    let mut d = live(vec![]);
    d.flow_finished(
        &refused_at("127.0.0.1:61999", 1_000),
        Some(&KernelFacts::default()),
    );
    let found = d.poll(t0, Timestamp(1_100), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::RefusedElsewhere]);
    d.flow_finished(
        &accepted_between(2_500, 2_600),
        Some(&KernelFacts::default()),
    );
    let end = d.finish(None);
    assert_eq!(kinds(&end.findings), [FindingKind::StartupRace]);
    assert_eq!(end.superseded.len(), 1, "{end:#?}");
    assert_eq!(end.superseded[0].live.kind, FindingKind::RefusedElsewhere);
    assert_eq!(end.superseded[0].by, Some(FindingKind::StartupRace));
}

#[test]
fn a_startup_race_is_printed_live_at_the_servers_first_syn_ack_after_printed_refusals() {
    let t0 = Instant::now();
    let mut d = live(vec![]);
    d.flow_finished(&refused_at("127.0.0.1:61999", 1_000), None);
    let found = d.poll(t0, Timestamp(1_100), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::NothingListening]);
    d.listener_changed(
        &listen_event("127.0.0.1:61999", true, 2_000),
        Some(python()),
    );
    // The accepted connection goes on (no final record yet): its SYN-ACK is enough.
    d.synack_seen(ep("127.0.0.1:61999"), Timestamp(2_500));
    let found = d.poll(t0 + POLL, Timestamp(2_600), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::StartupRace], "{found:#?}");
    assert!(
        found[0]
            .explanation()
            .contains("python3 (pid 4242) started listening on 127.0.0.1:61999 at "),
        "{}",
        found[0].explanation()
    );
    // Said once: later SYN-ACKs, and the connection's own record, add no line.
    d.synack_seen(ep("127.0.0.1:61999"), Timestamp(2_700));
    d.flow_finished(
        &FlowRecord {
            first_ts: Timestamp(2_490),
            last_ts: Timestamp(9_000),
            handshake_rtt_us: Some(10),
            ..record(Outcome::Closed, "127.0.0.1:61999")
        },
        None,
    );
    assert!(d
        .poll(t0 + 2 * POLL, Timestamp(9_100), Counters::new())
        .is_empty());
    let end = d.finish(None);
    assert_eq!(kinds(&end.findings), [FindingKind::StartupRace]);
    assert_eq!(end.findings[0].weight, 1, "one refusal, counted once");
    assert_eq!(end.superseded.len(), 1);
    assert_eq!(
        (end.superseded[0].live.kind, end.superseded[0].by),
        (
            FindingKind::NothingListening,
            Some(FindingKind::StartupRace)
        )
    );
}

#[test]
fn a_syn_ack_from_a_server_never_refused_asks_for_no_poll() {
    let t0 = Instant::now();
    let mut d = live(vec![listener("127.0.0.1:61999")]);
    d.synack_seen(ep("127.0.0.1:61999"), Timestamp(2_500));
    assert!(!d.poll_due(t0));
}

/// A live diagnoser for port 61999 forwarded to 10.77.0.2:80 in net:[1], whose
/// backend listened there at the first look, at 100.
fn live_port_map() -> Diagnoser {
    use crate::diagnose::host::firewall::{nat, Ruleset};
    let mut f = facts(vec![]);
    f.now.taken = Timestamp(100);
    let mut dnat = nat::parse(
        "*nat\n-A PREROUTING -p tcp -m tcp --dport 61999 -j DNAT --to-destination 10.77.0.2:80\nCOMMIT\n",
        61999,
    );
    dnat[0].backend = Some(("net:[1]".into(), vec![backend_listener()]));
    f.firewall = Some(std::sync::Arc::new(Ruleset::default().with_dnat(dnat)));
    Diagnoser::new(Scope::port(61999), Some(f), false)
}

fn backend_listener() -> Listener {
    Listener {
        namespace: Some("net:[1]".into()),
        processes: vec![python()],
        ..listener("10.77.0.2:80")
    }
}

#[test]
fn live_a_port_maps_backend_is_judged_as_it_was_at_the_refusal_and_its_start_is_an_update() {
    let t0 = Instant::now();
    let mut d = live_port_map();
    // The backend stopped after the first look; the refusal through the map asks for a
    // look at it.
    d.backend_looked(Some(Some(("net:[1]".into(), vec![]))), Timestamp(500), t0);
    d.flow_finished(&refused_at("10.77.0.2:80", 1_000), None);
    assert_eq!(
        d.backend_look_due(t0 + LOOK_EVERY),
        Some(("10.77.0.2".parse().unwrap(), true)),
        "a refusal through the map: the backend is looked at now"
    );
    d.backend_looked(
        Some(Some(("net:[1]".into(), vec![]))),
        Timestamp(1_010),
        t0 + LOOK_EVERY,
    );
    let found = d.poll(t0 + LOOK_EVERY, Timestamp(1_020), Counters::new());
    assert_eq!(kinds(&found), [FindingKind::NothingListening]);
    let json = serde_json::to_value(&found[0].cause).unwrap();
    assert_eq!(
        json["listening_there"],
        serde_json::json!([]),
        "nothing listened in the backend's namespace at the refusal: {json}"
    );
    assert!(d.updates().is_empty());
    // It starts again: said as an update at the next look.
    assert_eq!(d.backend_look_due(t0 + 2 * LOOK_EVERY), None, "not due yet");
    let later = t0 + BACKEND_LOOK_EVERY + LOOK_EVERY;
    assert!(
        d.backend_look_due(later).is_some(),
        "looked at every second"
    );
    d.backend_looked(
        Some(Some(("net:[1]".into(), vec![backend_listener()]))),
        Timestamp(2_000),
        later,
    );
    let updates = d.updates();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(
        (
            updates[0].change.kind,
            updates[0].change.endpoint,
            updates[0].change.process.as_ref().map(|p| p.pid)
        ),
        (ChangeKind::ListenerStarted, ep("10.77.0.2:80"), Some(4242))
    );
    // The end still judges the refusal by its moment, and says what changed since.
    let end = d.finish(None);
    let f = end
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::NothingListening)
        .expect("nothing_listening");
    let json = serde_json::to_value(&f.cause).unwrap();
    assert_eq!(json["listening_there"], serde_json::json!([]), "{json}");
    assert!(
        f.facts_changed
            .iter()
            .any(|c| c.kind == ChangeKind::ListenerStarted && c.endpoint == ep("10.77.0.2:80")),
        "{:?}",
        f.facts_changed
    );
}

#[test]
fn refusals_after_the_last_accepted_connection_stay_nothing_listening_beside_the_restart() {
    let accepted = |ts| accepted_between(ts, ts);
    let ev = evidence(&[
        accepted(1_000),
        refused_at("127.0.0.1:61999", 2_000),
        accepted(3_000),
        refused_at("127.0.0.1:61999", 4_000),
        refused_at("127.0.0.1:61999", 5_000),
    ]);
    let found = rules::evaluate(&ev, None, &Scope::port(61999));
    let weights: Vec<_> = found
        .iter()
        .filter(|f| f.kind != FindingKind::PartialView)
        .map(|f| (f.kind, f.weight))
        .collect();
    assert_eq!(
        weights,
        [
            (FindingKind::ServerRestarted, 1),
            (FindingKind::NothingListening, 2)
        ]
    );
}

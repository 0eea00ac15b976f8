use super::*;
use crate::diagnose::tests::{ep, listener};

fn python(pid: i32) -> ProcessInfo {
    ProcessInfo {
        pid,
        name: "python3".into(),
        cmdline: "python3 server.py".into(),
        user: "root".into(),
    }
}

/// A socket as a look (sock_diag) reports it: an inode, no owner.
fn looked(addr: &str, inode: u64) -> Listener {
    Listener {
        inode,
        processes: vec![],
        ..listener(addr)
    }
}

fn endpoints(ls: &[Listener]) -> Vec<String> {
    ls.iter().map(|l| l.local.to_string()).collect()
}

const V6: &str = "[::1]:61999";

#[test]
fn a_listener_started_after_the_first_look_counts_from_its_listen_call() {
    let mut t = Timeline::first_look(&[], Timestamp(100));
    t.witnessed(ep(V6), true, Timestamp(500), Some(python(42)));
    assert!(t.at(Timestamp(499)).is_empty(), "not yet listening");
    assert_eq!(endpoints(&t.at(Timestamp(500))), [V6]);
    assert_eq!(t.current()[0].processes, [python(42)]);
    let c: Vec<_> = t.changes_from(0).collect();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].kind, c[0].at, c[0].exact),
        (ChangeKind::ListenerStarted, Timestamp(500), true)
    );
}

#[test]
fn what_listened_at_the_first_look_listens_since_before_the_capture() {
    let t = Timeline::first_look(&[listener(V6)], Timestamp(100));
    assert_eq!(endpoints(&t.at(Timestamp(1))), [V6]);
    assert_eq!(t.changes_from(0).count(), 0, "not a change");
}

#[test]
fn a_look_that_overtakes_the_witness_is_refined_to_the_exact_time_and_process() {
    let mut t = Timeline::first_look(&[], Timestamp(100));
    t.look(&[looked(V6, 9)], Timestamp(600));
    let first = t.changes_from(0).next().unwrap().clone();
    assert!(!first.exact && first.at == Timestamp(600));
    t.witnessed(ep(V6), true, Timestamp(550), Some(python(42)));
    let c = t.changes_from(0).next().unwrap();
    assert_eq!((c.at, c.exact), (Timestamp(550), true));
    assert_eq!(c.process, Some(python(42)));
    assert_eq!(t.current().len(), 1, "the same socket, not a second one");
    assert_eq!(t.current()[0].inode, 9);
    assert_eq!(t.current()[0].processes, [python(42)]);
    assert!(t.at(Timestamp(540)).is_empty());
}

#[test]
fn a_refusal_between_two_looks_counts_the_listener_the_second_one_found() {
    let mut t = Timeline::first_look(&[], Timestamp(100));
    t.look(&[looked(V6, 9)], Timestamp(1_000));
    assert_eq!(
        endpoints(&t.at(Timestamp(700))),
        [V6],
        "it may have listened since the look at 100: the refusal at 700 is not blamed on nothing listening"
    );
    assert!(t.at(Timestamp(50)).is_empty());
}

#[test]
fn a_stop_seen_by_a_look_is_refined_by_the_witness() {
    let mut t = Timeline::first_look(&[listener(V6)], Timestamp(100));
    t.look(&[], Timestamp(900));
    assert!(t.current().is_empty());
    t.witnessed(ep(V6), false, Timestamp(800), Some(python(42)));
    let c = t.changes_from(0).next().unwrap();
    assert_eq!(
        (c.kind, c.at, c.exact),
        (ChangeKind::ListenerStopped, Timestamp(800), true)
    );
    assert_eq!(endpoints(&t.at(Timestamp(799))), [V6]);
    assert!(t.at(Timestamp(800)).is_empty());
}

#[test]
fn an_older_snapshot_does_not_undo_a_newer_witness_event() {
    let mut t = Timeline::first_look(&[], Timestamp(100));
    t.witnessed(ep(V6), true, Timestamp(500), Some(python(42)));
    // Taken at 400, before the listen(), handed over after it.
    t.look(&[], Timestamp(400));
    assert_eq!(endpoints(&t.current()), [V6]);
    // Taken after the listen() but before the witness's own event had been stamped
    // newer: still listening.
    t.look(&[looked(V6, 9)], Timestamp(450));
    assert_eq!(endpoints(&t.current()), [V6]);
    assert_eq!(t.changes_from(0).count(), 1);
}

#[test]
fn a_reuseport_group_stops_when_its_last_socket_closes() {
    let mut t = Timeline::first_look(&[], Timestamp(100));
    t.witnessed(ep(V6), true, Timestamp(200), Some(python(1)));
    t.witnessed(ep(V6), true, Timestamp(300), Some(python(2)));
    assert_eq!(t.current().len(), 2);
    t.witnessed(ep(V6), false, Timestamp(400), Some(python(1)));
    assert_eq!(t.current()[0].processes, [python(2)]);
    t.witnessed(ep(V6), false, Timestamp(500), Some(python(2)));
    assert!(t.current().is_empty());
    let kinds: Vec<_> = t.changes_from(0).map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [ChangeKind::ListenerStarted, ChangeKind::ListenerStopped]
    );
}

#[test]
fn a_close_a_newer_look_overrode_gives_the_exact_stop_when_the_next_look_finds_it_gone() {
    let mut t = Timeline::first_look(&[listener(V6)], Timestamp(100));
    t.look(&[looked(V6, 7)], Timestamp(1_000));
    t.witnessed(ep(V6), false, Timestamp(990), Some(python(42)));
    assert_eq!(
        endpoints(&t.current()),
        [V6],
        "the look at 1000 saw it listen"
    );
    t.look(&[], Timestamp(2_000));
    let c = t.changes_from(0).next().unwrap();
    assert_eq!((c.at, c.exact), (Timestamp(990), true));
    assert_eq!(c.process, Some(python(42)));
}

#[test]
fn changes_are_numbered_in_arrival_order_for_updates() {
    let mut t = Timeline::first_look(&[], Timestamp(100));
    t.witnessed(ep(V6), true, Timestamp(200), None);
    let seq = t.next_seq();
    t.witnessed(ep(V6), false, Timestamp(300), None);
    let later: Vec<_> = t.changes_from(seq).map(|c| c.kind).collect();
    assert_eq!(later, [ChangeKind::ListenerStopped]);
    assert_eq!(t.changes_after(Timestamp(250)).count(), 1);
    assert_eq!(
        t.last_change().map(|c| c.kind),
        Some(ChangeKind::ListenerStopped)
    );
}

//! Refusals that accepted connections ended, read from when they happened: refused only
//! before the first accepted connection is a startup race; refused between accepted
//! connections is a restart or deploy; repeatedly so, a crash or restart loop. Refusals
//! to the end with nothing accepted after stay with the other refusal rules
//! (`nothing_listening` and co.).
//!
//! Live, the listener timeline turns the inference into a fact: which process started
//! listening as the window ended, and when its predecessor stopped.

use crate::decode::Endpoint;
use crate::diagnose::cause::{Basis, Cause, ListenerSeen, Pattern, RefusalWindows};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::Finding;
use crate::diagnose::host::HostFacts;
use crate::diagnose::listeners::{ChangeKind, FactChange};
use crate::diagnose::windows::{Fate, Window};

/// The witness's time and the capture's can disagree by this much (see `listeners`).
const SLACK_US: u64 = 2_000;

/// `server`'s refusals that accepted connections ended, as one finding, and how many
/// refusals it explains (the rest are still refused at the end). `backend`: the port
/// map's backend and the port clients addressed, when the port is forwarded.
pub fn finding(
    ev: &Evidence,
    facts: Option<&HostFacts>,
    server: Endpoint,
    backend: Option<(Endpoint, u16)>,
) -> Option<(Finding, u64)> {
    let (all, folded) = ev.timelines.windows(&server, Fate::Refused);
    let ended: Vec<_> = all
        .iter()
        .filter(|w| w.accepted_after > 0)
        .copied()
        .collect();
    let last = *ended.last()?;
    let restarts = ended.iter().filter(|w| w.accepted_before > 0).count() as u64 + folded.windows;
    let pattern = match restarts {
        0 => Pattern::StartupRace,
        1 => Pattern::Restarted,
        _ => Pattern::RestartLoop,
    };
    let refused = ended.iter().map(|w| w.attempts).sum::<u64>() + folded.attempts;
    let still_refused = all
        .iter()
        .filter(|w| w.accepted_after == 0)
        .map(|w| w.attempts)
        .sum();
    // Mean time from one window's start to the next, over the windows kept.
    let period_us = (pattern == Pattern::RestartLoop && ended.len() >= 2).then(|| {
        let first = ended[0].start;
        last.start.micros_since(first) / (ended.len() as u64 - 1)
    });
    let changes = facts.map_or(&[][..], |f| f.listener_changes.as_slice());
    let listens = |c: &&FactChange| {
        c.endpoint.port == server.port
            && (c.endpoint.addr == server.addr || c.endpoint.addr.is_unspecified())
    };
    // The listen() that ended the last window: after its last refusal, by the first
    // accepted connection. A start a look saw happened somewhere from the look before
    // (`from`) to that look (`at`), which may come after the accepted connection: a
    // look is taken as the server answers again, not at its listen().
    let started = last.reopened.and_then(|open| {
        changes.iter().filter(listens).find(|c| {
            c.kind == ChangeKind::ListenerStarted
                && c.at.add_micros(SLACK_US) >= last.end
                && c.from <= open.add_micros(SLACK_US)
        })
    });
    let predecessor = started.and_then(|s| {
        changes
            .iter()
            .rev()
            .filter(listens)
            .find(|c| c.kind == ChangeKind::ListenerStopped && c.at <= s.at)
    });
    let cause = Cause::RefusalWindows(RefusalWindows {
        refused,
        server,
        pattern,
        windows: ended,
        windows_folded: folded.windows,
        attempts_folded: folded.attempts,
        period_us,
        listener_started: started.map(seen),
        predecessor_stopped: predecessor.map(seen),
        backend: backend.map(|(b, _)| b),
        forwarded_port: backend.map(|(_, p)| p),
        still_refused,
        basis: if facts.is_some() {
            Basis::Host
        } else {
            Basis::Packets
        },
    });
    Some((Finding::new(cause, refused), refused))
}

/// The windows SYNs to a dropped finding's servers were dropped in, when every drop came
/// in one between answered connections (a firewall reload, a full accept queue during a
/// burst): empty otherwise, and for other causes.
pub fn drop_windows(ev: &Evidence, cause: &Cause) -> Vec<Window> {
    let servers = match cause {
        Cause::SilentlyDropped(u) => &u.servers,
        Cause::SynsDropped(d) => &d.servers,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for server in servers {
        let (windows, folded) = ev.timelines.windows(server, Fate::Dropped);
        if windows.is_empty()
            || folded.windows > 0
            || windows
                .iter()
                .any(|w| w.accepted_before == 0 || w.accepted_after == 0)
        {
            return Vec::new();
        }
        out.extend(windows);
    }
    out.sort_by_key(|w| w.start);
    out
}

fn seen(c: &FactChange) -> ListenerSeen {
    ListenerSeen {
        endpoint: c.endpoint,
        at: c.at.as_micros(),
        from: c.from.as_micros(),
        exact: c.exact,
        process: c.process.as_ref().map(|p| p.name.clone()),
        pid: c.process.as_ref().map(|p| p.pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Timestamp;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::rules::Scope;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome};

    fn at(r: FlowRecord, ms: u64) -> FlowRecord {
        FlowRecord {
            first_ts: Timestamp(1_000_000_000 + ms * 1000),
            last_ts: Timestamp(1_000_000_000 + ms * 1000),
            ..r
        }
    }

    fn accepted(ms: u64) -> FlowRecord {
        at(
            FlowRecord {
                handshake_rtt_us: Some(10),
                ..record(Outcome::Closed, "127.0.0.1:61999")
            },
            ms,
        )
    }

    fn no(ms: u64) -> FlowRecord {
        at(refused("127.0.0.1:61999"), ms)
    }

    fn found(records: &[FlowRecord]) -> Option<(Finding, u64)> {
        finding(&evidence(records), None, ep("127.0.0.1:61999"), None)
    }

    #[test]
    fn refused_only_before_the_first_accepted_connection_is_a_startup_race() {
        let (f, n) = found(&[no(0), no(100), accepted(200), accepted(300)]).unwrap();
        assert_eq!((f.kind, n), (FindingKind::StartupRace, 2));
        assert!(f.headline().contains("200 ms"), "{}", f.headline());
    }

    #[test]
    fn refused_between_accepted_connections_is_a_restart() {
        let (f, n) = found(&[accepted(0), no(100), no(200), accepted(1400)]).unwrap();
        assert_eq!((f.kind, n), (FindingKind::ServerRestarted, 2));
        assert!(
            f.headline().contains("closed for 1.3 s"),
            "{}",
            f.headline()
        );
    }

    #[test]
    fn repeated_windows_are_a_loop_with_its_period() {
        let mut rs = vec![accepted(0)];
        for i in 1..=3 {
            rs.extend([no(i * 1000), accepted(i * 1000 + 500)]);
        }
        let (f, n) = found(&rs).unwrap();
        assert_eq!((f.kind, n), (FindingKind::RestartLoop, 3));
        let json = evidence_json(&f);
        assert_eq!(json["period_us"], 1_000_000);
        assert_eq!(json["windows"].as_array().unwrap().len(), 3);
        assert_eq!(json["windows"][0]["accepted_before"], 1);
    }

    fn lost(ms: u64) -> FlowRecord {
        at(record(Outcome::Unanswered, "127.0.0.1:61999"), ms)
    }

    #[test]
    fn syns_dropped_only_between_answered_connections_are_a_window() {
        let ev = evidence(&[accepted(0), lost(100), lost(200), accepted(2500)]);
        let found = crate::diagnose::rules::evaluate(&ev, None, &Scope::port(61999));
        let dropped = found
            .iter()
            .find(|f| f.kind == FindingKind::SilentlyDropped)
            .expect("silently_dropped");
        assert_eq!(dropped.windows.len(), 1, "{dropped:?}");
        assert_eq!(
            (
                dropped.windows[0].attempts,
                dropped.windows[0].accepted_before
            ),
            (2, 1)
        );
        // Dropped to the end: no window, the drop still stands.
        let ev = evidence(&[accepted(0), lost(100)]);
        let found = crate::diagnose::rules::evaluate(&ev, None, &Scope::port(61999));
        assert!(found.iter().all(|f| f.windows.is_empty()), "{found:?}");
    }

    #[test]
    fn refused_to_the_end_with_nothing_accepted_is_not_a_window() {
        assert!(found(&[no(0), no(100)]).is_none());
        assert!(found(&[accepted(0), no(100)]).is_none());
    }
}

//! SYN floods: many sources sending one SYN each, never completing, fast enough to
//! overflow the listener's SYN queue. Said as a flood, never as a firewall: its
//! unanswered SYNs are no DROP rule's, its half-open attempts no stalled handshake, its
//! martian sources part of it (the `drops` and `handshakes` rules leave them here).
//!
//! When is it a flood? Not at a number of SYNs taken from a test, but where the kernel
//! itself says its SYN queue overflowed, from many sources:
//! - live, `TCPReqQFullDoCookies` or `TCPReqQFullDrop` grew: SYNs found the listener's
//!   SYN queue full (`tcp_syn_flood_action`, where the kernel logs "Possible SYN flooding
//!   on port"), and most cookies sent never came back (`SyncookiesRecv` under half of
//!   `SyncookiesSent`): a burst of real clients also fills the queue, but they answer
//!   their cookies;
//! - in a replay (no counters): at least [`FLOOD_RATE`] SYNs in one second, the smallest
//!   SYN queue Linux sizes by default (`tcp_max_syn_backlog`'s floor, 128) filled in the
//!   time a SYN-ACK waits for its first retransmission, with most finished attempts
//!   one-shot and never completed;
//! - and in both, at least [`FLOOD_SOURCES`] distinct source addresses: fewer is a
//!   handful of clients (a load test, a retry loop) the operator can name, which the
//!   per-connection findings (accept queue, drops) describe better. Except live, when
//!   most finished attempts were also one-shot and never completed: `hping3 --flood`
//!   from one host changes its source port, not its address, and its cookie-answered
//!   attempts (one SYN-ACK each, never retransmitted) are no per-connection finding's,
//!   so without this a flood from four addresses was 65 "stalled handshakes" and
//!   200,000 attempts said nothing. Real clients, however few, retry their SYNs or
//!   complete.

use crate::diagnose::cause::{Basis, Cause, Flood};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::{Finding, Role};
use crate::diagnose::host::{Counter, Counters, HostFacts};
use crate::diagnose::kernel::{DropClass, KernelEvidence};
use crate::diagnose::rules::Scope;
use crate::flow::Side;
use std::collections::BTreeSet;

/// Distinct source addresses below which many SYNs are a few clients, not a flood.
pub const FLOOD_SOURCES: u64 = 16;
/// Replays: SYNs in one second that would fill Linux's smallest default SYN queue.
pub const FLOOD_RATE: u64 = 128;

/// The counters a flood moves, cited in its evidence.
const FLOOD_COUNTERS: [Counter; 6] = [
    Counter::ListenDrops,
    Counter::SyncookiesFailed,
    Counter::SyncookiesRecv,
    Counter::SyncookiesSent,
    Counter::TcpReqQFullDoCookies,
    Counter::TcpReqQFullDrop,
];

/// Whether the evidence shows a SYN flood (see the module doc for why these tests).
pub(super) fn recognised(ev: &Evidence, facts: Option<&HostFacts>) -> bool {
    let r = &ev.syn_rate;
    let one_shot = ev.one_shot_unanswered + ev.one_shot_half_open;
    let mostly_one_shot = one_shot * 2 > ev.flows();
    if r.sources < FLOOD_SOURCES && !(facts.is_some() && mostly_one_shot) {
        return false;
    }
    match facts {
        Some(f) => {
            let overflowed =
                f.delta(Counter::TcpReqQFullDoCookies) + f.delta(Counter::TcpReqQFullDrop) > 0;
            let sent = f.delta(Counter::SyncookiesSent);
            overflowed && f.delta(Counter::SyncookiesRecv).saturating_mul(2) < sent.max(1)
        }
        None => r.peak_syns_per_sec >= FLOOD_RATE && mostly_one_shot,
    }
}

/// A recognised flood's unanswered attempts, which the drop findings must not explain:
/// its one-shot ones, and the real clients' it made the kernel drop. Attempts the
/// capture's end cut short are all one-shot and already left out there.
pub(super) fn unanswered_of(ev: &Evidence, facts: Option<&HostFacts>) -> u64 {
    one_shot_unanswered(ev) + clients_dropped(ev, facts)
}

fn one_shot_unanswered(ev: &Evidence) -> u64 {
    ev.one_shot_unanswered.saturating_sub(ev.unanswered_cut)
}

/// Live, with SYN cookies off: unanswered attempts that retransmitted their SYN while
/// SYNs were dropped for a full SYN queue (`TCPReqQFullDrop` grew). A spoofed source
/// has no socket to retransmit from, so these are real clients; with no cookie to
/// answer with, `tcp_conn_request` drops every SYN that finds the queue full, theirs
/// among the flood's: the flood explains them, not a firewall.
fn clients_dropped(ev: &Evidence, facts: Option<&HostFacts>) -> u64 {
    match facts {
        Some(f) if f.delta(Counter::TcpReqQFullDrop) > 0 => ev
            .count(crate::flow::Outcome::Unanswered)
            .saturating_sub(ev.one_shot_unanswered),
        _ => 0,
    }
}

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    if !recognised(ev, facts) {
        return Vec::new();
    }
    let r = &ev.syn_rate;
    let connect = ev.connect_time();
    let (martian_syns, martian_sources) = match martians(&ev.kernel) {
        Some((syns, sources)) => (Some(syns), Some(sources)),
        None => (None, None),
    };
    let clients_dropped = clients_dropped(ev, facts);
    let half_open = one_shot_unanswered(ev) + ev.one_shot_half_open;
    let cause = Cause::SynFlood(Flood {
        syns: r.syns,
        syns_per_sec_peak: r.peak_syns_per_sec,
        sources: r.sources,
        sources_capped: r.sources_capped,
        sources_per_sec_peak: r.peak_sources_per_sec,
        sources_named: r.few(),
        span_us: r.span_us(),
        half_open,
        clients_dropped,
        completed: ev.connected,
        connect_p50_us: connect.p50,
        connect_max_us: connect.max,
        cookies_sent: facts.map(|f| f.delta(Counter::SyncookiesSent)),
        counters: facts.map(|f| {
            FLOOD_COUNTERS
                .iter()
                .map(|&c| (c, f.delta(c)))
                .collect::<Counters>()
        }),
        martian_syns,
        martian_sources,
        basis: if facts.is_some() {
            Basis::Host
        } else {
            Basis::Packets
        },
        port: scope.port,
    });
    let procs = facts
        .and_then(|f| f.now.listeners.first().or(f.start.listeners.first()))
        .map_or(&[][..], |l| &l.processes[..]);
    vec![Finding::new(cause, r.syns.max(half_open)).processes(procs, Role::Listener)]
}

/// SYNs the witness saw discarded as martians, and their distinct sources; `None` when
/// it saw nothing at all (off, or a replay).
fn martians(k: &KernelEvidence) -> Option<(u64, u64)> {
    if k.flows == 0 {
        return None;
    }
    let mut syns = 0;
    let mut sources = BTreeSet::new();
    for (key, t) in k.all_drops().iter() {
        if key.sender == Side::Client && DropClass::of(&key.reason, key.place) == DropClass::Martian
        {
            syns += t.packets;
            sources.extend(t.clients.iter().copied());
        }
    }
    Some((syns, sources.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Timestamp;
    use crate::diagnose::findings::{FindingKind, Severity};
    use crate::diagnose::syn_meter::SynRate;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome};

    fn scope() -> Scope {
        Scope::port(61999)
    }

    /// A spoofed source's attempt: one SYN, answered with a SYN-ACK (a cookie) never
    /// acknowledged.
    fn half_open(i: u32) -> FlowRecord {
        FlowRecord {
            client: ep(&format!("10.202.{}.{}:1024", i / 250, i % 250 + 1)),
            synack_count: 1,
            ..record(Outcome::HandshakeIncomplete, "10.201.0.1:61999")
        }
    }

    /// A real client that completed in `rtt_us`.
    fn real(rtt_us: u64) -> FlowRecord {
        FlowRecord {
            client: ep("10.201.0.2:40000"),
            synack_count: 1,
            handshake_rtt_us: Some(rtt_us),
            ..record(Outcome::Closed, "10.201.0.1:61999")
        }
    }

    /// `n` spoofed attempts and `real` real clients, `syns` SYNs metered from `sources`
    /// addresses at up to `peak` a second.
    fn flood(n: u32, real_rtts: &[u64], sources: u64, peak: u64) -> Evidence {
        let mut records: Vec<FlowRecord> = (0..n).map(half_open).collect();
        records.extend(real_rtts.iter().map(|&rtt| real(rtt)));
        let mut ev = evidence(&records);
        ev.syn_rate = SynRate {
            syns: u64::from(n) + real_rtts.len() as u64,
            sources,
            sources_capped: false,
            peak_syns_per_sec: peak,
            peak_sources_per_sec: peak.min(sources),
            first: Some(Timestamp(1_000_000)),
            last: Some(Timestamp(2_500_000)),
            ..SynRate::default()
        };
        ev
    }

    fn with_counters(deltas: &[(Counter, u64)]) -> HostFacts {
        let mut f = facts(vec![listener("10.201.0.1:61999")]);
        for &(c, d) in deltas {
            f.start.counters.insert(c, 100);
            f.now.counters.insert(c, 100 + d);
        }
        f
    }

    #[test]
    fn live_cookies_for_a_full_syn_queue_from_many_sources_are_a_syn_flood() {
        let ev = flood(3000, &[400, 900], 3001, 2000);
        let f = with_counters(&[
            (Counter::SyncookiesSent, 2992),
            (Counter::TcpReqQFullDoCookies, 2992),
            (Counter::SyncookiesRecv, 2),
        ]);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(found.len(), 1, "{found:#?}");
        let d = &found[0];
        assert_eq!(
            (d.kind, d.severity),
            (FindingKind::SynFlood, Severity::Error)
        );
        let e = evidence_json(d);
        assert_eq!(e["cookies_sent"], 2992);
        assert_eq!(e["counters"]["SyncookiesSent"], 2992);
        assert_eq!(e["counters"]["SyncookiesRecv"], 2);
        assert_eq!(
            (&e["sources"], &e["half_open"]),
            (&3001.into(), &3000.into())
        );
        assert_eq!(e["completed"], 2);
        assert_eq!(e["connect_max_us"], 900);
        let h = d.headline();
        assert!(
            h.starts_with("SYN flood on port 61999: 3002 SYNs from 3001 source addresses (up to 2000 a second)"),
            "{h}"
        );
        assert!(h.contains("2992 SYN cookies sent"), "{h}");
        assert!(h.contains("2 real connections still completed"), "{h}");
        let words = format!("{h} {} {}", d.explanation(), d.next_step());
        assert!(
            !words.contains("firewall DROP") && !words.contains("DROP rule"),
            "{words}"
        );
        assert!(
            d.next_step().contains("tcp_syncookies"),
            "{}",
            d.next_step()
        );
        assert_eq!(d.processes[0].process.name, "java");
    }

    #[test]
    fn live_syn_queue_drops_with_cookies_off_say_to_turn_cookies_on() {
        let ev = flood(500, &[], 500, 500);
        let f = with_counters(&[(Counter::TcpReqQFullDrop, 380), (Counter::ListenDrops, 380)]);
        let found = findings(&ev, Some(&f), &scope());
        let d = &found[0];
        assert_eq!(d.kind, FindingKind::SynFlood);
        assert_eq!(evidence_json(d)["cookies_sent"], 0);
        assert!(
            d.headline().ends_with(
                "380 SYNs dropped for a full SYN queue; no real connection has completed"
            ),
            "{}",
            d.headline()
        );
        assert!(
            d.next_step()
                .starts_with("turn SYN cookies on: sysctl -w net.ipv4.tcp_syncookies=1"),
            "{}",
            d.next_step()
        );
    }

    #[test]
    fn a_burst_of_real_clients_answering_their_cookies_is_no_flood() {
        let ev = flood(0, &[300; 40], 40, 40);
        let f = with_counters(&[
            (Counter::SyncookiesSent, 30),
            (Counter::TcpReqQFullDoCookies, 30),
            (Counter::SyncookiesRecv, 30),
        ]);
        assert!(findings(&ev, Some(&f), &scope()).is_empty());
    }

    #[test]
    fn a_few_clients_retrying_while_the_syn_queue_is_full_are_no_flood() {
        // Real clients whose SYN-ACKs do not reach them: each retries its SYN.
        let mut ev = flood(0, &[], FLOOD_SOURCES - 1, 200);
        for i in 0..200 {
            ev.add(&FlowRecord {
                syn_count: 3,
                ..half_open(i % 15)
            });
        }
        let f = with_counters(&[
            (Counter::TcpReqQFullDoCookies, 150),
            (Counter::SyncookiesSent, 150),
        ]);
        assert!(findings(&ev, Some(&f), &scope()).is_empty());
    }

    /// The SYN meter's first sources, as it would have named them.
    fn name_sources(ev: &mut Evidence, hosts: &[(&str, u64)]) {
        for (slot, &(host, syns)) in ev.syn_rate.named.iter_mut().zip(hosts) {
            *slot = Some(crate::diagnose::syn_meter::SourceSyns {
                addr: host.parse().unwrap(),
                syns,
            });
        }
    }

    #[test]
    fn a_flood_from_one_host_changing_only_its_port_is_a_syn_flood_live() {
        // hping3 --flood -S: one address, a new port a SYN, each answered by a cookie.
        let mut ev = flood(2000, &[], 1, 2000);
        name_sources(&mut ev, &[("10.9.0.1", 2000)]);
        let f = with_counters(&[
            (Counter::TcpReqQFullDoCookies, 1990),
            (Counter::SyncookiesSent, 1990),
        ]);
        let found = findings(&ev, Some(&f), &scope());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, FindingKind::SynFlood);
        let h = found[0].headline();
        assert!(
            h.contains("2000 SYNs from 1 source address, 10.9.0.1 ("),
            "{h}"
        );
        // Not spoofed: a tool that keeps no socket, on a host to block by address.
        let why = found[0].explanation();
        assert!(
            why.contains("flooding tool") && !why.contains("spoofed source has no socket"),
            "{why}"
        );
        assert!(
            found[0]
                .next_step()
                .starts_with("block 10.9.0.1 if it is not a client of yours: iptables -I INPUT -p tcp --dport 61999 -s 10.9.0.1 -j DROP"),
            "{}",
            found[0].next_step()
        );
        assert_eq!(
            evidence_json(&found[0])["sources_named"],
            serde_json::json!([{"address": "10.9.0.1", "syns": 2000}])
        );
        // In a replay (no counters to say the SYN queue overflowed) one host stays a
        // client to name.
        assert!(findings(&ev, None, &scope()).is_empty());
    }

    #[test]
    fn a_flood_from_three_hosts_names_each_with_its_syns_and_blocks_them_all() {
        let mut ev = flood(3000, &[], 3, 3000);
        name_sources(
            &mut ev,
            &[("10.9.0.3", 500), ("10.9.0.1", 1500), ("10.9.0.2", 1000)],
        );
        let f = with_counters(&[
            (Counter::TcpReqQFullDoCookies, 2990),
            (Counter::SyncookiesSent, 2990),
        ]);
        let found = findings(&ev, Some(&f), &scope());
        let h = found[0].headline();
        // Most SYNs first.
        assert!(
            h.contains("from 3 source addresses, 10.9.0.1, 10.9.0.2 and 10.9.0.3 ("),
            "{h}"
        );
        let why = found[0].explanation();
        assert!(
            why.contains("By source: 10.9.0.1 1500 SYNs, 10.9.0.2 1000 SYNs, 10.9.0.3 500 SYNs."),
            "{why}"
        );
        assert!(
            found[0].next_step().starts_with(
                "block 10.9.0.1, 10.9.0.2 and 10.9.0.3 if they are not clients of yours: \
                 iptables -I INPUT -p tcp --dport 61999 -s 10.9.0.1 -j DROP (a rule for each); "
            ),
            "{}",
            found[0].next_step()
        );
    }

    #[test]
    fn many_sources_with_the_syn_queue_never_full_are_no_flood_live() {
        let ev = flood(300, &[], 300, 300);
        assert!(findings(&ev, Some(&with_counters(&[])), &scope()).is_empty());
    }

    #[test]
    fn a_replay_of_a_flood_is_told_from_its_packets_and_says_what_it_cannot_judge() {
        let ev = flood(1000, &[500], 1000, 600);
        let found = findings(&ev, None, &scope());
        let d = &found[0];
        assert_eq!(d.kind, FindingKind::SynFlood);
        let e = evidence_json(d);
        assert!(
            e["cookies_sent"].is_null() && e["counters"].is_null(),
            "{e}"
        );
        assert!(
            d.explanation()
                .contains("cannot tell whether the kernel sent SYN cookies"),
            "{}",
            d.explanation()
        );
    }

    #[test]
    fn a_replay_below_the_smallest_syn_queue_a_second_is_no_flood() {
        let ev = flood(1000, &[], 1000, FLOOD_RATE - 1);
        assert!(findings(&ev, None, &scope()).is_empty());
    }

    #[test]
    fn with_cookies_off_a_real_clients_dropped_syns_are_the_floods_not_a_firewalls() {
        // Cookies off, the queue full: the flood's SYNs go unanswered, and so do a real
        // client's, retransmitted: the kernel dropped them for the full SYN queue
        // (TCPReqQFullDrop grew), which the flood filled.
        let mut records: Vec<FlowRecord> = (0..400)
            .map(|i| FlowRecord {
                client: ep(&format!("10.202.0.{}:1024", i % 250 + 1)),
                ..record(Outcome::Unanswered, "10.201.0.1:61999")
            })
            .collect();
        records.push(FlowRecord {
            syn_count: 3,
            ..record(Outcome::Unanswered, "10.201.0.1:61999")
        });
        let mut ev = evidence(&records);
        ev.syn_rate = SynRate {
            syns: 403,
            sources: 251,
            peak_syns_per_sec: 400,
            ..SynRate::default()
        };
        let f = with_counters(&[(Counter::TcpReqQFullDrop, 400)]);
        let all = crate::diagnose::rules::evaluate(&ev, Some(&f), &scope());
        let mut all = all;
        crate::diagnose::findings::rank(&mut all);
        assert_eq!(all[0].kind, FindingKind::SynFlood, "{all:#?}");
        assert!(
            !all.iter().any(|f| f.kind == FindingKind::SilentlyDropped),
            "{all:#?}"
        );
        let flood = &all[0];
        let e = evidence_json(flood);
        assert_eq!(
            (&e["half_open"], &e["clients_dropped"]),
            (&400.into(), &1.into())
        );
        assert!(
            flood
                .headline()
                .contains("1 real connection attempt got no answer"),
            "{}",
            flood.headline()
        );
        let words = format!("{} {}", flood.explanation(), flood.next_step());
        assert!(words.contains("TCPReqQFullDrop"), "{words}");
        assert!(!words.contains("DROP rule"), "{words}");
        assert!(
            flood.next_step().starts_with("turn SYN cookies on"),
            "{}",
            flood.next_step()
        );
    }

    #[test]
    fn with_cookies_on_a_real_clients_unanswered_retries_stay_a_drop_to_report() {
        // Cookies answer every SYN that finds the queue full: a real client's SYNs that
        // still got no answer were dropped by something else.
        let mut records: Vec<FlowRecord> = (0..400).map(half_open).collect();
        records.push(FlowRecord {
            syn_count: 3,
            ..record(Outcome::Unanswered, "10.201.0.1:61999")
        });
        let mut ev = evidence(&records);
        ev.syn_rate = SynRate {
            syns: 403,
            sources: 400,
            peak_syns_per_sec: 400,
            ..SynRate::default()
        };
        let f = with_counters(&[
            (Counter::SyncookiesSent, 390),
            (Counter::TcpReqQFullDoCookies, 390),
        ]);
        let all = crate::diagnose::rules::evaluate(&ev, Some(&f), &scope());
        assert!(
            all.iter().any(|f| f.kind == FindingKind::SynFlood),
            "{all:#?}"
        );
        let dropped: Vec<&Finding> = all
            .iter()
            .filter(|f| f.kind == FindingKind::SilentlyDropped)
            .collect();
        assert_eq!(dropped.len(), 1, "{all:#?}");
        assert_eq!(evidence_json(dropped[0])["unanswered"], 1);
    }
}

//! The flow table's promises over generated traffic (see `check_run`).

use super::*;

/// Everything a run of the table produced.
#[derive(Debug, PartialEq)]
pub(super) struct TableRun {
    pub(super) events: Vec<FlowEvent>,
    /// Where the events `finish_all` emitted start.
    pub(super) finish_all_at: usize,
    /// What `process` returned, per segment.
    pub(super) ids: Vec<Option<u64>>,
    pub(super) tcp_segments: u64,
    pub(super) icmp_segments: u64,
    pub(super) stats: TableStats,
}

pub(super) fn run_table(cfg: FlowConfig, steps: &[Step]) -> Result<TableRun, TestCaseError> {
    let mut table = FlowTable::new(cfg);
    let mut events = Vec::new();
    let mut ids = Vec::new();
    let mut tcp_segments = 0;
    let mut icmp_segments = 0;
    let mut clock = EPOCH_US;
    for step in steps {
        clock = (clock + step.dt).max(0);
        let ts = Timestamp(clock as u64);
        match segment_of(&step.op, ts) {
            Some(seg) => {
                tcp_segments += u64::from(matches!(seg.kind, SegmentKind::Tcp(_)));
                icmp_segments += u64::from(matches!(seg.kind, SegmentKind::Icmp(_)));
                ids.push(table.process(&seg, &mut events));
            }
            None => table.tick(ts, &mut events),
        }
        prop_assert!(
            table.len() <= cfg.max_flows,
            "{} flows held, cap {}",
            table.len(),
            cfg.max_flows
        );
    }
    let finish_all_at = events.len();
    table.finish_all(&mut events);
    prop_assert!(table.is_empty(), "finish_all left {} flows", table.len());
    Ok(TableRun {
        events,
        finish_all_at,
        ids,
        tcp_segments,
        icmp_segments,
        stats: table.stats(),
    })
}

/// The invariants of one run: one outcome per flow, and records that add up.
pub(super) fn check_run(cfg: &FlowConfig, run: &TableRun) -> Result<(), TestCaseError> {
    let mut finished_at: HashMap<u64, usize> = HashMap::new();
    for (i, ev) in run.events.iter().enumerate() {
        if let FlowEvent::Finished(r) = ev {
            if let Some(prev) = finished_at.insert(r.id, i) {
                return Err(TestCaseError::fail(format!(
                    "flow {} finished twice: event {prev} {:?} and event {i} {r:?}",
                    r.id, run.events[prev]
                )));
            }
        }
    }
    for (i, ev) in run.events.iter().enumerate() {
        let r = ev.record();
        match ev {
            FlowEvent::Pending(_) => {
                prop_assert!(cfg.pending_notices, "pending notice in a replay: {r:?}");
                prop_assert!(r.end.is_none(), "pending with an end: {r:?}");
                let Some(&fin) = finished_at.get(&r.id) else {
                    return Err(TestCaseError::fail(format!(
                        "pending flow {} never finished",
                        r.id
                    )));
                };
                prop_assert!(
                    i < fin,
                    "flow {}: pending (#{i}) after finished (#{fin})",
                    r.id
                );
            }
            FlowEvent::Settled { record, late } => {
                // One per flow its packets ended, after its Finished, with the same
                // outcome and at least its packets; `late` exactly when more came.
                let Some(&fin) = finished_at.get(&r.id) else {
                    return Err(TestCaseError::fail(format!(
                        "settled flow {} never finished",
                        r.id
                    )));
                };
                prop_assert!(
                    i > fin,
                    "flow {}: settled (#{i}) before finished (#{fin})",
                    r.id
                );
                let FlowEvent::Finished(f) = &run.events[fin] else {
                    unreachable!()
                };
                prop_assert_eq!(
                    f.end,
                    Some(EndReason::Packets),
                    "settled, yet ended by {:?}",
                    f.end
                );
                prop_assert_eq!(record.outcome, f.outcome);
                let (before, after) = (
                    f.packets[0] + f.packets[1],
                    record.packets[0] + record.packets[1],
                );
                prop_assert!(
                    after >= before,
                    "flow {}: {after} packets settled < {before} at the close",
                    r.id
                );
                prop_assert_eq!(
                    *late,
                    after > before,
                    "late vs packets: {:?} then {:?}",
                    f,
                    record
                );
                prop_assert!(record.last_ts >= f.last_ts);
                let again = run.events[i + 1..]
                    .iter()
                    .any(|e| matches!(e, FlowEvent::Settled { record: o, .. } if o.id == r.id));
                prop_assert!(!again, "flow {} settled twice", r.id);
            }
            FlowEvent::Finished(_) => {
                prop_assert!(r.end.is_some(), "final record without an end: {r:?}");
                prop_assert!(r.first_ts <= r.last_ts, "{r:?}");
                prop_assert!(
                    r.packets[0] + r.packets[1] >= 1,
                    "a flow without packets: {r:?}"
                );
                prop_assert!(
                    r.id >= 1 && r.id <= run.stats.flows,
                    "id out of range: {r:?}"
                );
                prop_assert_eq!(
                    r.syn_gaps_us.as_slice().len() as u32,
                    r.syn_count.saturating_sub(1).min(6),
                    "syn gaps vs syn_count: {:?}",
                    r
                );
                // Zeek's letters (README, "update_history"): S/h handshake, A/D ack and
                // data, F/R, T/W retransmission and zero window, Q/I multi-flag segments.
                prop_assert!(
                    r.history
                        .as_str()
                        .bytes()
                        .all(|b| b"SsHhAaDdFfRrTtWwQqIi".contains(&b)),
                    "history {:?}",
                    r.history
                );
                if let Some(by) = r.reset_by {
                    prop_assert!(
                        matches!(
                            r.outcome,
                            Outcome::Refused
                                | Outcome::Reset
                                | Outcome::HandshakeIncomplete
                                | Outcome::Unanswered
                        ),
                        "reset_by {by:?} with outcome {:?}",
                        r.outcome
                    );
                }
                match r.outcome {
                    Outcome::Refused => prop_assert_eq!(r.reset_by, Some(Side::Server)),
                    Outcome::Reset => prop_assert!(r.reset_by.is_some(), "{r:?}"),
                    Outcome::Unreachable => prop_assert!(r.icmp.is_some(), "{r:?}"),
                    Outcome::Closed | Outcome::HalfClosed => {
                        prop_assert!(r.closed_first_by.is_some(), "{r:?}")
                    }
                    _ => {}
                }
                // A handshake RTT means the handshake completed: not a failed attempt.
                if r.handshake_rtt_us.is_some() {
                    prop_assert!(
                        !matches!(
                            r.outcome,
                            Outcome::Unanswered
                                | Outcome::Refused
                                | Outcome::Unreachable
                                | Outcome::HandshakeIncomplete
                        ),
                        "{r:?}"
                    );
                }
            }
        }
    }
    for (i, id) in run.ids.iter().enumerate() {
        if let Some(id) = id {
            prop_assert!(
                finished_at.contains_key(id),
                "segment #{i} went to flow {id}, which never finished"
            );
        }
    }
    let finished: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Finished(r) => Some(*r),
            FlowEvent::Pending(_) | FlowEvent::Settled { .. } => None,
        })
        .collect();
    // Every flow its packets ended is settled (by its delay, a new connection on its
    // 4-tuple, eviction or finish_all) with `settle_all`; without it, those a packet came
    // to after the close, and no other.
    let settled: HashMap<u64, FlowRecord> = run
        .events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Settled { record, .. } => Some((record.id, *record)),
            _ => None,
        })
        .collect();
    // Without `settle_all` a flow with no trailing packet has no settlement (one whose
    // trailing packets went unsettled would fail the count of segments below).
    let quiet_settlements = run
        .events
        .iter()
        .filter(|e| matches!(e, FlowEvent::Settled { late: false, .. }))
        .count();
    prop_assert!(
        cfg.settle_all || quiet_settlements == 0,
        "{} settlements without late packets, settle_all off",
        quiet_settlements
    );
    for r in &finished {
        if cfg.settle_all || settled.contains_key(&r.id) {
            prop_assert_eq!(
                settled.contains_key(&r.id),
                r.end == Some(EndReason::Packets),
                "settled or not: {:?}",
                r
            );
        }
    }
    // Every TCP segment is counted once: in its flow's last record, or as after_close.
    let packets: u64 = finished
        .iter()
        .map(|r| settled.get(&r.id).unwrap_or(r))
        .map(|r| r.packets[0] + r.packets[1])
        .sum();
    prop_assert_eq!(
        packets + run.stats.after_close,
        run.tcp_segments,
        "{} packets in records + {} after close, {} TCP segments fed",
        packets,
        run.stats.after_close,
        run.tcp_segments
    );
    prop_assert_eq!(
        run.stats.icmp_errors,
        run.icmp_segments,
        "table stats: icmp_errors"
    );
    prop_assert_eq!(run.stats.flows, finished.len() as u64, "table stats: flows");
    let evicted = finished
        .iter()
        .filter(|r| r.end == Some(EndReason::Evicted))
        .count() as u64;
    prop_assert_eq!(run.stats.evicted, evicted, "table stats: evicted");
    prop_assert!(run.stats.peak_flows <= cfg.max_flows as u64);
    // finish_all reports in order of first packet.
    let tail: Vec<_> = run.events[run.finish_all_at..]
        .iter()
        .map(|e| (e.record().first_ts, e.record().id))
        .collect();
    prop_assert!(
        tail.windows(2).all(|w| w[0] < w[1]),
        "finish_all order: {tail:?}"
    );
    let ends_or_settles = run.events[run.finish_all_at..].iter().all(|e| match e {
        FlowEvent::Finished(r) => r.end == Some(EndReason::CaptureEnd),
        FlowEvent::Settled { .. } => true,
        FlowEvent::Pending(_) => false,
    });
    prop_assert!(
        ends_or_settles,
        "finish_all: only capture ends and settlements"
    );

    let mut evidence = Evidence::default();
    for r in &finished {
        evidence.add(r);
    }
    prop_assert_eq!(evidence.flows(), finished.len() as u64);
    let by_outcome: u64 = Outcome::ALL.iter().map(|&o| evidence.count(o)).sum();
    prop_assert_eq!(by_outcome, evidence.flows());
    let problems = finished.iter().filter(|r| r.outcome.is_problem()).count() as u64;
    prop_assert_eq!(evidence.problems(), problems);
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Generated traffic never breaks the table's promises (see `check_run`).
    #[test]
    fn flow_table_gives_every_flow_one_outcome(
        cfg in flow_config(),
        steps in steps(80, 4),
    ) {
        let run = run_table(cfg, &steps)?;
        check_run(&cfg, &run)?;
    }

    /// The same segments into a fresh table (with a fresh hash seed) give the same
    /// events, in the same order.
    #[test]
    fn flow_table_is_deterministic(
        cfg in flow_config(),
        steps in steps(60, 3),
    ) {
        let first = run_table(cfg, &steps)?;
        let second = run_table(cfg, &steps)?;
        prop_assert_eq!(first, second);
    }

    /// Many connections through a tiny table: eviction and tombstone reuse under load.
    #[test]
    fn flow_table_under_a_small_cap(
        max_flows in 1usize..6,
        pending_notices in any::<bool>(),
        settle_all in any::<bool>(),
        steps in steps(40, 12),
    ) {
        let cfg = FlowConfig {
            port: PORT,
            max_flows,
            syn_timeout_us: 1_000_000,
            pending_notices,
            settle_all,
        };
        let run = run_table(cfg, &steps)?;
        check_run(&cfg, &run)?;
    }
}

/// A SYN sent *from* the watched port (an outbound `connect()` whose source port is the
/// watched one: `nc -p 61999 HOST 40000`, or any connection whose ephemeral port happens
/// to be the watched port when that lies in `ip_local_port_range`) is that side's own
/// attempt: the table orients a flow by its first SYN (its sender is the client) or
/// SYN-ACK (its receiver is), whatever the ports (`orient` in src/flow/table.rs). The
/// README defines `unanswered` and `refused` by the client's SYNs, so the record of a
/// failed attempt counts that SYN.
#[test]
pub(super) fn failed_attempts_count_the_client_syn() {
    let peer = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let local = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT);
    let tcp = |flags, seq, ack| {
        SegmentKind::Tcp(TcpSegment {
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 65535,
            payload_len: 0,
            options: HandshakeOptions::default(),
        })
    };
    let seg = |us: i64, src, dst, kind| Segment {
        encap: Encap::None,
        ts: Timestamp((EPOCH_US + us) as u64),
        src,
        dst,
        kind,
    };
    let cfg = FlowConfig {
        port: PORT,
        max_flows: 100,
        syn_timeout_us: 3_000_000,
        pending_notices: false,
        settle_all: false,
    };
    // Two SYNs from the watched port and nothing back; one SYN and the peer's RST.
    let scenarios = [
        vec![
            seg(0, local, peer, tcp(SYN, 1000, 0)),
            seg(1_000_000, local, peer, tcp(SYN, 1000, 0)),
        ],
        vec![
            seg(0, local, peer, tcp(SYN, 1000, 0)),
            seg(50, peer, local, tcp(RST | ACK, 0, 1001)),
        ],
    ];
    for segments in scenarios {
        let mut table = FlowTable::new(cfg);
        let mut events = Vec::new();
        for s in &segments {
            table.process(s, &mut events);
        }
        table.finish_all(&mut events);
        for ev in &events {
            let r = ev.record();
            if matches!(r.outcome, Outcome::Unanswered | Outcome::Refused) {
                assert!(
                    r.syn_count >= 1,
                    "a failed attempt without a client SYN: {} → {} {} syn_count {} history {:?}",
                    r.client,
                    r.server,
                    r.outcome,
                    r.syn_count,
                    r.history
                );
            }
        }
    }
}

//! End to end: the real binary on the fixtures and on generated captures.

use super::*;

pub(super) fn replay(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["-r", path.to_str().expect("UTF-8 path"), "--port", "61999"];
    args.extend_from_slice(extra);
    crate::support::run(&args)
}

pub(super) fn json_lines(stdout: &[u8]) -> Result<Vec<Value>, TestCaseError> {
    crate::support::try_json_lines(stdout).map_err(TestCaseError::fail)
}

#[test]
pub(super) fn binary_output_is_deterministic_on_fixtures() {
    let dir = crate::support::fixtures_dir();
    for name in [
        "mixed.pcap",
        "closed.pcapng",
        "port_reuse.pcap",
        "null_loopback.pcap",
        "any_sll2.pcap",
        "unreachable.pcap",
        "truncated.pcap",
    ] {
        let path = dir.join(name);
        for extra in [&["--json"][..], &["--json", "--ladder"], &[]] {
            let a = replay(&path, extra);
            let b = replay(&path, extra);
            assert!(!a.stdout.is_empty(), "{name} {extra:?}: no output");
            assert_eq!(a.status.code(), b.status.code(), "{name} {extra:?}: exit");
            assert!(
                a.stdout == b.stdout,
                "{name} {extra:?}: two runs differ:\n{}\n---\n{}",
                String::from_utf8_lossy(&a.stdout),
                String::from_utf8_lossy(&b.stdout)
            );
        }
    }
}

/// A generated capture: the frames of scripted and random traffic, plus frames that
/// are garbage or cut by a snaplen.
#[derive(Clone, Debug)]
pub(super) struct Capture {
    pub(super) link: LinkType,
    pub(super) steps: Vec<Step>,
    /// Per step: cut the frame to this many bytes (a snaplen), if shorter.
    pub(super) snaplen: Option<usize>,
    pub(super) garbage: Vec<(usize, Vec<u8>)>,
}

pub(super) fn capture() -> impl Strategy<Value = Capture> {
    (
        decoded_link(),
        steps(25, 4),
        prop_oneof![4 => Just(None), 1 => (14usize..120).prop_map(Some)],
        proptest::collection::vec(
            (
                any::<usize>(),
                proptest::collection::vec(any::<u8>(), 0..80),
            ),
            0..4,
        ),
    )
        .prop_map(|(link, steps, snaplen, garbage)| Capture {
            link,
            steps,
            snaplen,
            garbage,
        })
}

/// The frame an op stands for (`None` for a tick).
pub(super) fn frame_of(op: &Op, link: LinkType) -> Option<Vec<u8>> {
    let ip = match *op {
        Op::Tcp {
            c,
            s,
            from_client,
            flags,
            seq,
            ack,
            window,
            payload,
        } => {
            let (cl, sv) = (client(c, s), server(s));
            let (src, dst) = if from_client { (cl, sv) } else { (sv, cl) };
            let opts = if flags & SYN != 0 {
                wire::handshake_options(
                    &HandshakeOptions {
                        mss: Some(65495),
                        window_scale: Some(7),
                        sack_permitted: true,
                        timestamps: true,
                    },
                    false,
                )
            } else {
                vec![]
            };
            let tcp = wire::tcp(src.port, dst.port, seq, ack, flags, window, &opts);
            let payload = (payload as usize).min(1400);
            wire::ip_packet(src.addr, dst.addr, wire::PROTO_TCP, &tcp, payload)
        }
        Op::Icmp {
            c,
            s,
            code,
            quoted_seq,
        } => {
            let (cl, sv) = (client(c, s), server(s));
            let tcp = wire::tcp(cl.port, sv.port, quoted_seq, 0, SYN, 65535, &[]);
            let quoted = wire::ip_packet(cl.addr, sv.addr, wire::PROTO_TCP, &tcp, 0);
            wire::icmp_unreachable(sv.addr, cl.addr, code, &quoted)
        }
        Op::SynElsewhere { c, s } => {
            let (cl, sv) = (client(c, s), server(s));
            let tcp = wire::tcp(cl.port, 22, 1, 0, SYN, 65535, &[]);
            wire::ip_packet(cl.addr, sv.addr, wire::PROTO_TCP, &tcp, 0)
        }
        Op::Tick => return None,
    };
    Some(wire::frame(link, &ip, false))
}

pub(super) fn records_of(cap: &Capture) -> Vec<(u64, Vec<u8>, u32)> {
    let mut records = Vec::new();
    let mut clock = EPOCH_US;
    for (i, step) in cap.steps.iter().enumerate() {
        clock = (clock + step.dt).max(0);
        for (at, bytes) in &cap.garbage {
            if at % (cap.steps.len() + 1) == i {
                records.push((clock as u64, bytes.clone(), bytes.len() as u32));
            }
        }
        if let Some(mut frame) = frame_of(&step.op, cap.link) {
            let len = frame.len() as u32;
            if let Some(snap) = cap.snaplen {
                frame.truncate(snap);
            }
            records.push((clock as u64, frame, len));
        }
    }
    records
}

pub(super) fn check_replay(
    path: &Path,
    records: &[(u64, Vec<u8>, u32)],
    link: LinkType,
) -> Result<(), TestCaseError> {
    let a = replay(path, &["--json"]);
    let b = replay(path, &["--json"]);
    let stderr = String::from_utf8_lossy(&a.stderr);
    prop_assert!(
        !stderr.contains("panicked"),
        "the binary panicked: {stderr}"
    );
    prop_assert!(
        a.stdout == b.stdout,
        "two runs differ:\n{}\n---\n{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    let lines = json_lines(&a.stdout)?;
    let Some(summary) = lines.last().filter(|l| l["type"] == "summary") else {
        return Err(TestCaseError::fail(format!(
            "no summary last (exit {:?}, stderr {stderr})",
            a.status.code()
        )));
    };
    let flows: Vec<&Value> = lines.iter().filter(|l| l["type"] == "flow").collect();
    prop_assert!(
        flows.iter().all(|f| f["final"] == true),
        "a pending notice in a replay"
    );
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    let p = &summary["packets"];
    prop_assert_eq!(
        n(&p["captured"]),
        n(&p["decoded"]) + n(&p["skipped"]) + n(&p["syns_elsewhere"]),
        "packet accounting: {}",
        p
    );
    prop_assert!(n(&p["captured"]) <= records.len() as u64);
    // A file is read unfiltered and decoded by the library's decoder, so at most what
    // that decoder makes of every record.
    let decoder = Decoder::new(link, PORT);
    let decodable = records
        .iter()
        .filter(|(ts, data, _)| {
            matches!(
                decoder.decode(Timestamp(*ts), data),
                Ok(Segment {
                    kind: SegmentKind::Tcp(_) | SegmentKind::Icmp(_),
                    ..
                })
            )
        })
        .count() as u64;
    prop_assert!(n(&p["decoded"]) <= decodable, "{} decoded > {decodable}", p);
    prop_assert_eq!(
        n(&summary["flows"]),
        flows.len() as u64,
        "summary flows vs flow lines"
    );
    let mut ids: Vec<u64> = flows.iter().map(|f| n(&f["id"])).collect();
    ids.sort_unstable();
    ids.dedup();
    prop_assert_eq!(ids.len(), flows.len(), "flow ids repeat");
    // Every decoded packet is counted once: in its flow's last line (its `flow_update`
    // when packets trailed the close), or in a named bucket of packets in no flow.
    let mut last: HashMap<u64, u64> = HashMap::new();
    for l in &lines {
        if l["type"] == "flow" || l["type"] == "flow_update" {
            let sum = n(&l["packets_c2s"]).saturating_add(n(&l["packets_s2c"]));
            if l["type"] == "flow_update" {
                prop_assert!(
                    last.contains_key(&n(&l["id"])),
                    "an update before its flow: {l}"
                );
            }
            last.insert(n(&l["id"]), sum);
        }
    }
    let in_flows: u64 = last.values().sum();
    let not = &p["not_in_flows"];
    prop_assert_eq!(
        n(&p["decoded"]),
        in_flows + n(&not["icmp_errors"]) + n(&not["after_close"]) + n(&not["copies"]),
        "decoded vs flows' packets + not in flows: {}",
        p
    );
    let outcomes: u64 = summary["outcomes"]
        .as_object()
        .map_or(0, |o| o.values().map(n).sum());
    prop_assert_eq!(outcomes, flows.len() as u64);
    let problems = flows
        .iter()
        .filter(|f| {
            matches!(
                f["outcome"].as_str(),
                Some("unanswered" | "refused" | "unreachable" | "handshake_incomplete" | "reset")
            )
        })
        .count() as u64;
    // Attempts the capture's end cut short (one SYN, never retransmitted, the end less
    // than a retransmission timeout later) are a partial view, not a problem: the
    // `partial_view` finding counts them, and only lone-SYN attempts ended by the
    // capture's end can be among them.
    let cut: u64 = lines
        .iter()
        .filter(|l| l["type"] == "finding" && l["kind"] == "partial_view")
        .map(|l| l["evidence"]["waiting"].as_u64().unwrap_or(0))
        .sum();
    let candidates = flows
        .iter()
        .filter(|f| {
            f["outcome"] == "unanswered"
                && n(&f["syn_count"]) <= 1
                && f["ended_by"] == "capture_end"
        })
        .count() as u64;
    prop_assert!(
        cut <= candidates,
        "cut short {cut} of {candidates} lone SYNs"
    );
    prop_assert_eq!(n(&summary["problems"]), problems - cut);
    // Every count in the summary is the sum of what the flow lines say.
    let count = |f: &dyn Fn(&Value) -> u64| flows.iter().map(|l| f(l)).sum::<u64>();
    let is = |v: &Value, s: &str| u64::from(v.as_str() == Some(s));
    if let Some(outcomes) = summary["outcomes"].as_object() {
        for (name, v) in outcomes {
            prop_assert_eq!(
                n(v),
                count(&|l| is(&l["outcome"], name)),
                "outcome {}",
                name
            );
        }
    }
    let torn_down = |l: &Value| {
        matches!(
            l["outcome"].as_str(),
            Some("reset" | "handshake_incomplete")
        )
    };
    for side in ["client", "server"] {
        let resets = count(&|l| u64::from(torn_down(l)) * is(&l["reset_by"], side));
        prop_assert_eq!(n(&summary["resets"][side]), resets, "resets by {}", side);
        let tw = count(&|l| is(&l["outcome"], "closed") * is(&l["closed_first_by"], side));
        prop_assert_eq!(n(&summary["time_wait"][side]), tw, "time_wait on {}", side);
    }
    for (key, field) in [("port_reused", "port_reused"), ("midstream", "midstream")] {
        let c = count(&|l| u64::from(l[field] == true));
        prop_assert_eq!(n(&summary[key]), c, "{}", key);
    }
    let retrans = |l: &Value, f: &str| n(&l[f]).saturating_sub(1);
    prop_assert_eq!(
        n(&summary["syn_retransmits"]),
        count(&|l| retrans(l, "syn_count"))
    );
    prop_assert_eq!(
        n(&summary["synack_retransmits"]),
        count(&|l| retrans(l, "synack_count"))
    );
    prop_assert_eq!(
        n(&summary["retransmits"]),
        count(&|l| n(&l["retransmits_c2s"]) + n(&l["retransmits_s2c"]))
    );
    prop_assert_eq!(
        n(&summary["zero_windows"]),
        count(&|l| n(&l["zero_windows_c2s"]) + n(&l["zero_windows_s2c"]))
    );
    prop_assert_eq!(
        n(&summary["handshake_rtt_us"]["count"]),
        count(&|l| u64::from(!l["handshake_rtt_us"].is_null()))
    );
    prop_assert_eq!(n(&summary["duration_us"]["count"]), flows.len() as u64);
    prop_assert_eq!(
        n(&summary["flows_evicted"]),
        count(&|l| is(&l["ended_by"], "evicted"))
    );
    // The exit status follows the summary's problems (cut-short attempts are not).
    prop_assert_eq!(
        a.status.code(),
        Some(if n(&summary["problems"]) > 0 { 1 } else { 0 })
    );

    // Text with ladders and a -w file: the other reporters and the writer, same verdict.
    let dir = path.parent().expect("a directory");
    let w = dir.join("written.pcap");
    let t = replay(path, &["--ladder", "-w", w.to_str().expect("UTF-8 path")]);
    let stderr_t = String::from_utf8_lossy(&t.stderr);
    prop_assert!(
        !stderr_t.contains("panicked"),
        "the binary panicked: {stderr_t}"
    );
    prop_assert_eq!(
        t.status.code(),
        a.status.code(),
        "text --ladder -w exit: {}",
        stderr_t
    );
    prop_assert!(w.is_file(), "no -w file");

    // --only-problems prints every flow whose outcome is a problem (cut-short attempts
    // too: the line shows what the packets showed), and the same summary.
    let c = replay(path, &["--json", "--only-problems"]);
    let lines_c = json_lines(&c.stdout)?;
    let flows_c = lines_c.iter().filter(|l| l["type"] == "flow").count() as u64;
    prop_assert_eq!(flows_c, problems, "--only-problems flow lines");
    prop_assert_eq!(lines_c.last(), Some(summary), "--only-problems summary");
    Ok(())
}

proptest! {
    // Each case runs the binary four times: keep the count small.
    #![proptest_config(config(48))]

    #[test]
    fn binary_on_generated_captures(cap in capture()) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("generated.pcap");
        let records = records_of(&cap);
        std::fs::write(&path, wire::pcap_file(cap.link, &records)).expect("pcap written");
        check_replay(&path, &records, cap.link)?;
    }
}

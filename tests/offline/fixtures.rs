//! Every bundled capture, replayed by the real binary: the outcomes a user must see
//! (asserted field by field here) and the complete JSON output (checked against the
//! reviewed golden file beside the capture, `fixtures/NAME.expected.json`).
//!
//! Regenerate the golden files after an intended change with
//! `PORTSNIFF_BLESS=1 cargo test --test offline fixtures::`, then review the diff like code.

use crate::support::*;
use serde_json::Value;

/// What a user must see for one flow of a fixture.
struct Flow {
    outcome: &'static str,
    reset_by: Option<&'static str>,
    closed_first_by: Option<&'static str>,
    history: &'static str,
}

const fn flow(
    outcome: &'static str,
    reset_by: Option<&'static str>,
    closed_first_by: Option<&'static str>,
    history: &'static str,
) -> Flow {
    Flow {
        outcome,
        reset_by,
        closed_first_by,
        history,
    }
}

const REFUSED: Flow = flow("refused", Some("server"), None, "Sr");
const CLOSED_BY_CLIENT: Flow = flow("closed", None, Some("client"), "ShADadFf");

fn check(name: &str, exit: i32, expected: &[Flow]) -> (Vec<Value>, Value) {
    let (code, flows, summary) = replay_json(name, &[]);
    assert_eq!(code, exit, "{name}: exit status");
    assert_eq!(
        flows.len(),
        expected.len(),
        "{name}: number of connections: {flows:#?}"
    );
    for (i, (got, want)) in flows.iter().zip(expected).enumerate() {
        let ctx = format!("{name} flow #{i}: {got}");
        assert_eq!(got["final"], true, "{ctx}");
        assert_eq!(got["outcome"], want.outcome, "{ctx}");
        assert_eq!(got["reset_by"].as_str(), want.reset_by, "{ctx}");
        assert_eq!(
            got["closed_first_by"].as_str(),
            want.closed_first_by,
            "{ctx}"
        );
        assert_eq!(got["history"], want.history, "{ctx}");
        assert_eq!(
            got["server"].as_str().unwrap().rsplit(':').next(),
            Some(PORT),
            "{ctx}"
        );
    }
    assert_eq!(
        summary["flows"],
        expected.len(),
        "{name}: summary flow count"
    );
    let problems = expected
        .iter()
        .filter(|f| {
            matches!(
                f.outcome,
                "unanswered" | "refused" | "unreachable" | "handshake_incomplete" | "reset"
            )
        })
        .count();
    assert_eq!(summary["problems"], problems, "{name}: summary problems");
    (flows, summary)
}

#[test]
fn refused_when_nothing_listens() {
    let (flows, s) = check("refused.pcap", 1, &[REFUSED]);
    assert_eq!(flows[0]["syn_count"], 1);
    assert_eq!(flows[0]["synack_count"], 0);
    assert_eq!(flows[0]["handshake_rtt_us"], Value::Null);
    assert_eq!(s["outcomes"]["refused"], 1);
    assert_eq!(
        s["resets"]["server"], 0,
        "a refusal is not counted as a reset"
    );
}

#[test]
fn clean_close_client_first_leaves_time_wait_on_the_client() {
    let (flows, s) = check("closed_client_first.pcap", 0, &[CLOSED_BY_CLIENT]);
    let f = &flows[0];
    assert_eq!(
        (f["bytes_c2s"].as_u64(), f["bytes_s2c"].as_u64()),
        (Some(100), Some(200))
    );
    assert_eq!(
        (f["packets_c2s"].as_u64(), f["packets_s2c"].as_u64()),
        (Some(6), Some(5))
    );
    assert!(f["handshake_rtt_us"]
        .as_u64()
        .is_some_and(|rtt| rtt < 10_000));
    assert_eq!(f["client_options"]["mss"], 65495);
    assert_eq!(f["server_options"]["window_scale"], 10);
    assert_eq!(s["time_wait"]["client"], 1);
}

#[test]
fn clean_close_server_first_leaves_time_wait_on_the_server() {
    let (_, s) = check(
        "closed_server_first.pcap",
        0,
        &[flow("closed", None, Some("server"), "ShADadfF")],
    );
    assert_eq!(s["time_wait"]["server"], 1);
}

#[test]
fn abortive_close_by_the_server_is_a_reset_by_the_server() {
    let (flows, _) = check(
        "reset_by_server.pcap",
        1,
        &[flow("reset", Some("server"), None, "ShADar")],
    );
    assert_eq!(flows[0]["bytes_c2s"], 100);
}

#[test]
fn abortive_close_by_the_client_is_a_reset_by_the_client() {
    check(
        "reset_by_client.pcap",
        1,
        &[flow("reset", Some("client"), None, "ShADadR")],
    );
}

#[test]
fn dropped_syns_are_one_unanswered_attempt_with_its_retransmissions() {
    let (flows, s) = check("unanswered.pcap", 1, &[flow("unanswered", None, None, "S")]);
    assert_eq!(flows[0]["syn_count"], 3);
    let gaps: Vec<u64> = flows[0]["syn_gaps_us"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap())
        .collect();
    assert_eq!(gaps.len(), 2);
    // The kernel's exponential backoff: ~1 s, then ~2 s.
    assert!((900_000..1_500_000).contains(&gaps[0]), "{gaps:?}");
    assert!((1_800_000..2_500_000).contains(&gaps[1]), "{gaps:?}");
    assert_eq!(s["syn_retransmits"], 2);
}

#[test]
fn icmp_port_unreachable_answers_the_syn() {
    let (flows, _) = check(
        "unreachable.pcap",
        1,
        &[flow("unreachable", None, None, "S")],
    );
    assert_eq!(flows[0]["icmp"], "port_unreachable");
    assert_eq!(flows[0]["icmp_from"], "127.0.0.1");
}

#[test]
fn icmp_admin_prohibited_names_the_firewall() {
    let (flows, _) = check(
        "unreachable_admin.pcap",
        1,
        &[flow("unreachable", None, None, "S")],
    );
    assert_eq!(flows[0]["icmp"], "admin_prohibited");
}

#[test]
fn synacks_that_never_reach_the_client_leave_the_handshake_incomplete() {
    let (flows, s) = check(
        "handshake_incomplete.pcap",
        1,
        &[flow("handshake_incomplete", None, None, "Sh")],
    );
    assert_eq!(flows[0]["syn_count"], 3);
    assert_eq!(flows[0]["synack_count"], 5);
    assert_eq!(s["synack_retransmits"], 4);
}

#[test]
fn connection_open_at_the_end_of_the_capture_is_established() {
    let (flows, _) = check(
        "established.pcap",
        0,
        &[flow("established", None, None, "ShADad")],
    );
    assert_eq!(flows[0]["ended_by"], "capture_end");
    assert_eq!(flows[0]["bytes_c2s"], 150);
}

#[test]
fn fin_one_way_only_is_half_closed() {
    check(
        "half_closed.pcap",
        0,
        &[flow("half_closed", None, Some("client"), "ShADaF")],
    );
}

#[test]
fn ipv6_endpoints_are_bracketed() {
    let (flows, _) = check("ipv6_refused.pcap", 1, &[REFUSED]);
    assert!(flows[0]["client"].as_str().unwrap().starts_with("[::1]:"));
    assert_eq!(flows[0]["server"], "[::1]:61999");
    check("ipv6_closed.pcap", 0, &[CLOSED_BY_CLIENT]);
}

#[test]
fn linux_cooked_captures_from_any_decode_like_ethernet() {
    let (_, s1) = check("any_sll.pcap", 0, &[CLOSED_BY_CLIENT]);
    assert_eq!(s1["link_type"], "LINUX_SLL");
    let (_, s2) = check("any_sll2.pcap", 0, &[CLOSED_BY_CLIENT]);
    assert_eq!(s2["link_type"], "LINUX_SLL2");
}

#[test]
fn pcapng_with_nanosecond_timestamps_is_read() {
    let (flows, _) = check("closed.pcapng", 0, &[CLOSED_BY_CLIENT]);
    assert!(flows[0]["first_ts"].as_f64().unwrap() > 1.7e9);
}

#[test]
fn bsd_null_loopback_carries_ipv4_and_ipv6() {
    let (_, s) = check("null_loopback.pcap", 1, &[CLOSED_BY_CLIENT, REFUSED]);
    assert_eq!(s["link_type"], "NULL");
}

#[test]
fn small_snaplen_still_gives_every_outcome_and_real_byte_counts() {
    let (flows, s) = check("snaplen60.pcap", 0, &[CLOSED_BY_CLIENT]);
    assert_eq!(
        flows[0]["bytes_s2c"], 200,
        "payload length comes from the IP header"
    );
    assert_eq!(s["packets"]["skipped"], 0);
}

#[test]
fn truncated_capture_reports_what_it_read_then_the_error() {
    let (flows, s) = check(
        "truncated.pcap",
        2,
        &[
            REFUSED,
            REFUSED,
            REFUSED,
            flow("half_closed", None, Some("client"), "ShADadF"),
        ],
    );
    assert_eq!(flows.len(), 4);
    assert_eq!(s["packets"]["captured"], 15);
    assert!(s["error"].as_str().unwrap().contains("truncated"), "{s}");
    let text = run(&[
        "-r",
        fixture("truncated.pcap").to_str().unwrap(),
        "--port",
        PORT,
    ]);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(stderr.contains("damaged after packet 15"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&text.stdout)
            .matches("SYN answered by RST")
            .count(),
        3,
        "every refused connection read before the damage is printed"
    );
}

#[test]
fn connection_seen_without_its_handshake_is_midstream() {
    let (flows, s) = check(
        "midstream.pcap",
        0,
        &[flow("closed", None, Some("client"), "DadAFf")],
    );
    assert_eq!(flows[0]["midstream"], true);
    assert_eq!(flows[0]["syn_count"], 0);
    assert_ne!(
        flows[0]["client"].as_str().unwrap().rsplit(':').next(),
        Some(PORT),
        "the client is the endpoint not on the port"
    );
    assert_eq!(s["midstream"], 1);
}

#[test]
fn new_syn_on_a_tuple_in_time_wait_is_a_second_connection_marked_port_reused() {
    let (flows, s) = check("port_reuse.pcap", 0, &[CLOSED_BY_CLIENT, CLOSED_BY_CLIENT]);
    assert_eq!(flows[0]["client"], flows[1]["client"]);
    assert_eq!(flows[0]["port_reused"], false);
    assert_eq!(flows[1]["port_reused"], true);
    assert_eq!(s["port_reused"], 1);
}

#[test]
fn mixed_capture_summary_counts_every_outcome() {
    let (_, s) = check(
        "mixed.pcap",
        1,
        &[
            REFUSED,
            REFUSED,
            CLOSED_BY_CLIENT,
            CLOSED_BY_CLIENT,
            CLOSED_BY_CLIENT,
            flow("reset", Some("server"), None, "ShADar"),
        ],
    );
    assert_eq!(s["outcomes"]["refused"], 2);
    assert_eq!(s["outcomes"]["closed"], 3);
    assert_eq!(s["outcomes"]["reset"], 1);
    assert_eq!(s["handshake_rtt_us"]["count"], 4);
    assert_eq!(s["resets"]["server"], 1);
    let max = s["duration_us"]["max"].as_u64().unwrap();
    assert!(
        (700_000..703_000).contains(&max),
        "clean connections last ~701 ms: {s}"
    );
    assert_eq!(s["packets"]["captured"], 43);
    assert_eq!(s["packets"]["decoded"], 43);
}

#[test]
fn syn_retried_after_host_unreachable_and_answered_is_one_closed_connection() {
    for file in ["unreachable_retried.pcap", "ipv6_unreachable_retried.pcap"] {
        let (flows, s) = check(file, 0, &[CLOSED_BY_CLIENT]);
        let f = &flows[0];
        assert_eq!(f["syn_count"], 2, "{file}");
        assert_eq!(
            f["icmp"], "host_unreachable",
            "{file}: the error stays in the record"
        );
        assert_eq!(
            (f["bytes_c2s"].as_u64(), f["bytes_s2c"].as_u64()),
            (Some(100), Some(200)),
            "{file}"
        );
        assert!(
            f["duration_us"].as_u64().unwrap() > 1_000_000,
            "{file}: the duration runs from the first SYN: {f}"
        );
        assert_eq!(s["outcomes"]["unreachable"], 0, "{file}");
    }
}

#[test]
fn syn_cut_by_the_capture_end_is_a_partial_view_not_a_firewall() {
    let (code, flows, s) = replay_json("cut_by_count.pcap", &[]);
    assert_eq!(code, 0, "an attempt cut short is not a failure");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["outcome"], "unanswered");
    assert_eq!(flows[0]["ended_by"], "capture_end");
    assert_eq!(s["problems"], 0);
    let findings = replay_findings("cut_by_count.pcap");
    let kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["partial_view"], "never silently_dropped");
    assert_eq!(findings[0]["severity"], "warning");
    assert!(findings[0]["headline"]
        .as_str()
        .unwrap()
        .contains("the capture ended before an answer"));
}

/// The finding lines of a replay with `extra` arguments (a trailing expression).
fn findings_with(name: &str, extra: &[&str]) -> Vec<Value> {
    let path = fixture(name);
    let mut args = vec!["-r", path.to_str().unwrap(), "--port", "61999", "--json"];
    args.extend_from_slice(extra);
    json_lines(&run(&args).stdout)
        .into_iter()
        .filter(|v| v["type"] == "finding")
        .collect()
}

#[test]
fn filter_hiding_the_answers_warns_of_a_one_sided_view_and_judges_nothing() {
    let found = findings_with("mixed.pcap", &["dst", "port", "61999"]);
    let one_sided: Vec<&Value> = found
        .iter()
        .filter(|f| f["evidence"]["expression"] == "dst port 61999")
        .collect();
    assert_eq!(one_sided.len(), 1, "{found:#?}");
    assert_eq!(one_sided[0]["kind"], "partial_view");
    assert_eq!(one_sided[0]["evidence"]["seen"], "client");
    assert!(one_sided[0]["headline"]
        .as_str()
        .unwrap()
        .contains("shows only one direction"));
    for f in &found {
        assert_eq!(
            f["kind"], "partial_view",
            "no verdict on a one-sided view: {f}"
        );
        assert_ne!(f["severity"], "error", "{f}");
    }
}

#[test]
fn snaplen_too_short_for_tcp_headers_warns_instead_of_no_traffic() {
    let (_, flows, s) = replay_json("snaplen40.pcap", &[]);
    assert!(flows.is_empty());
    assert_eq!(s["packets"]["skipped_by_reason"]["truncated"], 11);
    let found = replay_findings("snaplen40.pcap");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["kind"], "partial_view");
    assert_eq!(found[0]["evidence"]["truncated"], 11);
    assert!(found[0]["next_step"].as_str().unwrap().contains("snaplen"));
}

/// A connection and a refusal inside a tunnel, captured on the underlay: the inner
/// connections are reported, tagged with their tunnel. VXLAN and Geneve carry Ethernet,
/// whose ARP exchange inside is not IP; this GRE carries IP packets, with no ARP.
#[test]
fn connections_inside_vxlan_geneve_and_gre_are_seen_and_tagged() {
    for (file, encap, arp) in [
        ("vxlan.pcap", "vxlan vni 42", Some(2)),
        ("geneve.pcap", "geneve vni 7", Some(2)),
        ("gre.pcap", "gre key 5", None),
    ] {
        let (flows, s) = check(file, 1, &[CLOSED_BY_CLIENT, REFUSED]);
        for f in &flows {
            assert_eq!(f["encap"], encap, "{file}: {f}");
            assert_eq!(f["server"], "10.42.0.2:61999", "{file}: {f}");
        }
        assert_eq!(flows[0]["bytes_c2s"], 100, "{file}");
        assert_eq!(flows[0]["bytes_s2c"], 200, "{file}");
        assert_eq!(
            s["packets"]["skipped_by_reason"]["not_ip"].as_u64(),
            arp,
            "{file}: the inner ARP"
        );
        assert_eq!(
            s["packets"]["decoded"], 12,
            "{file}: every inner TCP packet"
        );
    }
}

/// Linux's own VXLAN port (a device made without `dstport`, flannel's overlay) is opened
/// without being asked; another protocol's datagrams to it are counted as such, not read
/// as VXLAN (tcpdump reads them as OTV).
#[test]
fn connections_inside_vxlan_on_linuxs_port_8472_are_seen_and_other_datagrams_counted() {
    let (flows, s) = check("vxlan_8472.pcap", 1, &[CLOSED_BY_CLIENT, REFUSED]);
    for f in &flows {
        assert_eq!(f["encap"], "vxlan vni 42", "{f}");
        assert_eq!(f["server"], "10.42.0.2:61999", "{f}");
    }
    assert_eq!(s["packets"]["skipped_by_reason"]["bad_tunnel_header"], 2);
    assert_eq!(
        s["packets"]["skipped_by_reason"]["not_ip"], 2,
        "the inner ARP"
    );
}

/// VXLAN on a port of the operator's choosing is only UDP until `--vxlan-port` names it.
#[test]
fn vxlan_on_a_port_of_ones_own_is_opened_when_vxlan_port_names_it() {
    let (code, flows, s) = replay_json("vxlan_14789.pcap", &[]);
    assert_eq!((code, flows.len()), (0, 0), "{s}");
    assert_eq!(s["packets"]["skipped_by_reason"]["not_tcp"], 14, "{s}");
    let (code, flows, s) = replay_json("vxlan_14789.pcap", &["--vxlan-port", "14789"]);
    assert_eq!(code, 1);
    let outcomes: Vec<&str> = flows
        .iter()
        .map(|f| f["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["closed", "refused"], "{s}");
    assert!(
        flows.iter().all(|f| f["encap"] == "vxlan vni 42"),
        "{flows:?}"
    );
    assert_eq!(flows[0]["bytes_c2s"], 100);
}

/// Two tenants' overlays reusing addresses: one inner 4-tuple in VNIs 42 and 43 is two
/// connections, never one with doubled counts.
#[test]
fn the_same_connection_in_two_vnis_is_two_connections() {
    let (flows, _) = check(
        "vxlan_two_vnis.pcap",
        1,
        &[CLOSED_BY_CLIENT, CLOSED_BY_CLIENT, REFUSED, REFUSED],
    );
    let encaps: Vec<&str> = flows.iter().map(|f| f["encap"].as_str().unwrap()).collect();
    assert_eq!(
        encaps,
        [
            "vxlan vni 42",
            "vxlan vni 43",
            "vxlan vni 42",
            "vxlan vni 43"
        ]
    );
    assert_eq!(flows[0]["client"], flows[1]["client"]);
    assert_eq!(flows[0]["packets_c2s"], flows[1]["packets_c2s"]);
    assert_eq!(
        flows[0]["packets_c2s"], 6,
        "each tunnel's packets counted once"
    );
}

#[test]
fn connections_inside_mpls_qinq_pppoe_and_erspan_are_seen_and_tagged() {
    for (file, encap) in [
        ("mpls.pcap", "mpls label 2001"),
        ("qinq.pcap", "qinq 100.200"),
        ("pppoe.pcap", "pppoe session 4660"),
        ("erspan.pcap", "erspan session 3"),
    ] {
        let (flows, s) = check(file, 0, &[CLOSED_BY_CLIENT]);
        assert_eq!(flows[0]["encap"], encap, "{file}");
        assert_eq!(s["packets"]["skipped"], 0, "{file}");
    }
}

/// `-i any` on a tunnel's endpoint captures each packet twice, inside VXLAN on the
/// underlay and again on the opened tunnel's device: each connection is one line, and the
/// copy's segments are counted as such, so the decoded packets still add up.
#[test]
fn on_a_tunnel_endpoint_any_sees_each_connection_twice_and_shows_it_once() {
    let (flows, s) = check("vxlan_any.pcap", 1, &[CLOSED_BY_CLIENT, REFUSED]);
    let p = &s["packets"];
    let in_flows: u64 = flows
        .iter()
        .map(|f| f["packets_c2s"].as_u64().unwrap() + f["packets_s2c"].as_u64().unwrap())
        .sum();
    assert_eq!(in_flows, 12, "each connection's packets once: {flows:#?}");
    assert_eq!(p["not_in_flows"]["copies"], 12, "{p}");
    assert_eq!(p["decoded"], 24, "{p}");
}

#[test]
fn the_text_line_says_which_tunnel() {
    let out = run(&[
        "-r",
        fixture("vxlan_two_vnis.pcap").to_str().unwrap(),
        "--port",
        PORT,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("→ 10.42.0.2:61999 via vxlan vni 43 closed"),
        "{text}"
    );
}

/// The JSON lines of a replay of `name`: flow and flow_update lines by type.
fn flows_and_updates(name: &str) -> (Vec<Value>, Vec<Value>, Value) {
    let out = portsniff()
        .args([
            "-r",
            fixture(name).to_str().unwrap(),
            "--port",
            PORT,
            "--json",
        ])
        .output()
        .unwrap();
    let lines = json_lines(&out.stdout);
    let of = |t: &str| {
        lines
            .iter()
            .filter(|l| l["type"] == t)
            .cloned()
            .collect::<Vec<_>>()
    };
    let summary = of("summary").pop().unwrap();
    (of("flow"), of("flow_update"), summary)
}

fn packets(v: &Value) -> (u64, u64) {
    (
        v["packets_c2s"].as_u64().unwrap(),
        v["packets_s2c"].as_u64().unwrap(),
    )
}

/// Issue 15: FIN, FIN, the first FIN again (acknowledging the second), ACK, ACK. The
/// line is printed at the retransmitted FIN, which ends the close; the two ACKs after it
/// are in the update, and the duration runs to the last of them.
#[test]
fn acks_after_the_last_fin_are_counted_in_an_update() {
    let (flows, updates, s) = flows_and_updates("trailing_acks.pcap");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["outcome"], "closed");
    assert_eq!(packets(&flows[0]), (6, 4));
    assert_eq!(updates.len(), 1, "one update with the trailing ACKs");
    let u = &updates[0];
    assert_eq!(u["id"], flows[0]["id"]);
    assert_eq!(u["outcome"], "closed", "the outcome is the line's");
    assert_eq!(packets(u), (7, 5));
    assert_eq!(u["duration_us"], 300_060);
    assert_eq!(s["packets"]["decoded"], 12);
    assert_eq!(s["packets"]["not_in_flows"]["after_close"], 0);
}

/// Issue 15: the client's FIN then RST, the server's FIN, the client's RST again. The
/// line says reset (by the client, after closing its side); the update holds the
/// server's FIN and the second RST, and Zeek's conn_state turns SF.
#[test]
fn fin_then_rst_then_the_peers_fin_is_zeeks_normal_close() {
    let (flows, updates, _) = flows_and_updates("fin_rst_fin.pcap");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["outcome"], "reset");
    assert_eq!(flows[0]["reset_by"], "client");
    assert_eq!(flows[0]["history"], "ShADadFR");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["outcome"], "reset");
    assert_eq!(updates[0]["history"], "ShADadFRf");
    assert_eq!(packets(&updates[0]), (7, 4));
}

/// Issue 15: a second RST from the same side is counted.
#[test]
fn a_second_rst_from_the_same_side_is_counted() {
    let (flows, updates, _) = flows_and_updates("second_rst.pcap");
    assert_eq!(packets(&flows[0]), (5, 3));
    assert_eq!(updates.len(), 1);
    assert_eq!(packets(&updates[0]), (6, 4));
    assert_eq!(updates[0]["bytes_s2c"], 250);
}

/// Issue 15: a RST 16 s after a clean close, past the close delay, is in no flow and
/// counted as such: decoded = the flows' packets + the named bucket.
#[test]
fn a_rst_long_after_a_clean_close_is_counted_in_no_flow() {
    let (flows, updates, s) = flows_and_updates("late_rst.pcap");
    assert_eq!(flows.len(), 1);
    assert!(updates.is_empty(), "{updates:?}");
    assert_eq!(packets(&flows[0]), (6, 4));
    assert_eq!(s["packets"]["decoded"], 11);
    assert_eq!(s["packets"]["not_in_flows"]["after_close"], 1);
    assert_eq!(s["packets"]["not_in_flows"]["icmp_errors"], 0);
    let text = portsniff()
        .args([
            "-r",
            fixture("late_rst.pcap").to_str().unwrap(),
            "--port",
            PORT,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("11 decoded (1 in no flow: after their connection's close delay)"),
        "{text}"
    );
}

/// Issue 15 (and the field diagnosis's retried SYN): a SYN refused by RST and retried
/// with the same ISN is a new attempt each time, as Zeek logs a REJ row for each.
#[test]
fn each_same_isn_retry_after_a_refusal_is_its_own_attempt() {
    let (flows, updates, s) = flows_and_updates("refused_retried.pcap");
    assert_eq!(flows.len(), 3);
    assert!(flows
        .iter()
        .all(|f| f["outcome"] == "refused" && f["history"] == "Sr"));
    assert!(updates.is_empty());
    assert_eq!(s["outcomes"]["refused"], 3);
}

/// The whole JSON output of every fixture, against its reviewed golden file.
#[test]
fn every_fixture_matches_its_golden_json() {
    let dir = fixtures_dir();
    let bless = std::env::var_os("PORTSNIFF_BLESS").is_some();
    let mut captures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    captures.sort();
    assert!(captures.len() >= 20, "fixtures are missing: {captures:?}");
    let mut mismatches = Vec::new();
    for capture in captures {
        let file = capture.file_name().unwrap().to_str().unwrap();
        let golden = dir.join(format!(
            "{}.expected.json",
            capture.file_stem().unwrap().to_str().unwrap()
        ));
        // A relative path, so the summary's "source" is the same on every machine.
        let out = crate::support::portsniff()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["-r", &format!("fixtures/{file}"), "--port", PORT, "--json"])
            .output()
            .unwrap();
        let actual = String::from_utf8(out.stdout).unwrap();
        if bless {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run PORTSNIFF_BLESS=1 cargo test --test offline fixtures::",
                golden.display()
            )
        });
        if json_lines(actual.as_bytes()) != json_lines(expected.as_bytes()) {
            mismatches.push(format!(
                "{file}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Every fixture's text report: no flow line contradicts a final finding.
#[test]
fn every_fixtures_flow_lines_agree_with_its_findings() {
    let dir = fixtures_dir();
    let mut captures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    captures.sort();
    for capture in captures {
        let path = capture.to_str().unwrap();
        let out = run(&["-r", path, "--port", PORT, "--color", "never"]);
        crate::support::agreement::assert_agreement(&String::from_utf8_lossy(&out.stdout), path);
    }
}

/// The agreement check itself: each pair of words that cannot stand together is caught,
/// and a report telling one story passes.
#[test]
fn a_flow_line_contradicting_a_final_finding_is_caught() {
    use crate::support::agreement::{contradictions, Clash};
    let report = |line: &str, kinds: &[&str]| {
        let mut t =
            format!("17:49:39.366720 127.0.0.1:59925 → 127.0.0.1:61110 {line}\n\nDiagnosis\n");
        for (i, k) in kinds.iter().enumerate() {
            t.push_str(&format!("  {}. [error] {k}: headline\n     why\n", i + 1));
        }
        t
    };
    let clashes = |line: &str, kinds: &[&str]| -> Vec<Clash> {
        contradictions(&report(line, kinds))
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    };
    let nothing = "refused              SYN answered by RST: nothing listens on 127.0.0.1:61110 (the kernel found no socket for it) [Sr]";
    assert_eq!(clashes(nothing, &["nothing_listening"]), []);
    assert_eq!(
        clashes(nothing, &["rejected_by_firewall"]),
        [Clash::NothingListensBesideAListener]
    );
    let firewall = "refused              SYN answered by a RST from a firewall REJECT rule, not from the server's TCP [Sr]";
    assert_eq!(
        clashes(firewall, &["nothing_listening"]),
        [Clash::FirewallBesideNoListener]
    );
    let reset = "reset                reset by the server after 1ms, no data exchanged [ShAr]";
    assert_eq!(clashes(reset, &["reset_by_server"]), []);
    assert_eq!(
        clashes(reset, &["reset_by_client"]),
        [Clash::ResetByTheOtherSide]
    );
}

/// Replaying the same bytes twice gives byte-identical output.
#[test]
fn replay_is_deterministic() {
    let a = run(&[
        "-r",
        fixture("mixed.pcap").to_str().unwrap(),
        "--port",
        PORT,
        "--json",
    ]);
    let b = run(&[
        "-r",
        fixture("mixed.pcap").to_str().unwrap(),
        "--port",
        PORT,
        "--json",
    ]);
    assert_eq!(a.stdout, b.stdout);
}

/// Replays have no system facts: each fixture's diagnosis rests on its packets, and says so.
#[test]
fn each_fixture_gets_the_diagnosis_its_packets_support() {
    let cases: &[(&str, &[&str])] = &[
        ("refused.pcap", &["nothing_listening"]),
        ("unanswered.pcap", &["silently_dropped"]),
        ("unreachable.pcap", &["rejected_by_firewall"]),
        ("unreachable_admin.pcap", &["rejected_by_firewall"]),
        ("handshake_incomplete.pcap", &["handshake_stalled"]),
        ("reset_by_server.pcap", &["reset_by_server"]),
        ("reset_by_client.pcap", &["reset_by_client"]),
        ("port_reuse.pcap", &["time_wait_reuse"]),
        // Refused before the listener started, accepted after: a startup race.
        ("mixed.pcap", &["startup_race", "reset_by_server"]),
        ("startup_race.pcap", &["startup_race"]),
        ("restarted.pcap", &["server_restarted"]),
        ("restart_loop.pcap", &["restart_loop"]),
        ("drop_window.pcap", &["silently_dropped"]),
        // IPv4 connections succeed, the IPv6 one is refused: one family only.
        ("null_loopback.pcap", &["listener_other_family"]),
        ("closed_client_first.pcap", &[]),
        ("established.pcap", &[]),
    ];
    for (file, kinds) in cases {
        let findings = replay_findings(file);
        let got: Vec<&str> = findings
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert_eq!(&got, kinds, "{file}: {findings:#?}");
        for f in &findings {
            assert!(!f["headline"].as_str().unwrap().is_empty(), "{file}: {f}");
            assert!(!f["next_step"].as_str().unwrap().is_empty(), "{file}: {f}");
            assert_eq!(
                f["processes"],
                serde_json::json!([]),
                "{file}: no processes on replay"
            );
        }
    }
}

#[test]
fn diagnosis_details_name_the_evidence() {
    let f = &replay_findings("unreachable_admin.pcap")[0];
    assert_eq!(f["severity"], "error");
    assert_eq!(f["evidence"]["icmp"], "admin_prohibited");
    assert!(
        f["explanation"]
            .as_str()
            .unwrap()
            .contains("icmp-admin-prohibited"),
        "{f}"
    );

    let f = &replay_findings("reset_by_server.pcap")[0];
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["evidence"]["context"], "unread_data");

    let f = &replay_findings("refused.pcap")[0];
    assert!(
        f["explanation"]
            .as_str()
            .unwrap()
            .contains("from the packets alone"),
        "{f}"
    );

    let f = &replay_findings("null_loopback.pcap")[0];
    assert_eq!(f["evidence"]["server"], "[::1]:61999");
    assert_eq!(f["evidence"]["listener"], "127.0.0.1:61999");

    let text = run(&[
        "-r",
        fixture("mixed.pcap").to_str().unwrap(),
        "--port",
        PORT,
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    let summary_at = text.find("Summary:").expect("summary");
    let diagnosis_at = text.find("Diagnosis").expect("a Diagnosis section");
    assert!(
        diagnosis_at > summary_at,
        "the Diagnosis comes after the summary:\n{text}"
    );
    assert!(text.contains("1. [error] startup_race"), "{text}");
    assert!(
        text.contains("window: ") && text.contains(": 2 refused; 0 accepted before, 4 after"),
        "one line per window under the finding:\n{text}"
    );
}

/// SYNs dropped only while a DROP rule was in place, with connections answered before
/// and after: the finding carries the window.
#[test]
fn syns_dropped_only_between_answered_connections_are_a_window_on_the_finding() {
    let f = &replay_findings("drop_window.pcap")[0];
    assert_eq!(f["kind"], "silently_dropped", "{f}");
    let w = &f["windows"];
    assert_eq!(w.as_array().map(Vec::len), Some(1), "{f}");
    assert_eq!(
        (
            &w[0]["attempts"],
            &w[0]["accepted_before"],
            &w[0]["accepted_after"]
        ),
        (&2.into(), &1.into(), &1.into()),
        "{f}"
    );
    // The two attempts gave up after 0.3 s each, 0.1 s apart.
    let span = w[0]["end"].as_f64().unwrap() - w[0]["start"].as_f64().unwrap();
    assert!((0.3..1.0).contains(&span), "{f}");
    // Refused-only and dropped-to-the-end findings carry no window.
    assert!(replay_findings("unanswered.pcap")[0]
        .get("windows")
        .is_none());
}

/// The windows a user reads in the JSON: when each began and ended, how many attempts it
/// refused, and the accepted connections around it.
#[test]
fn refusal_windows_are_typed_evidence_with_their_times_and_neighbours() {
    let f = &replay_findings("startup_race.pcap")[0];
    let w = &f["evidence"]["windows"];
    assert_eq!(w.as_array().unwrap().len(), 1, "{f}");
    assert_eq!(
        (
            &w[0]["attempts"],
            &w[0]["accepted_before"],
            &w[0]["accepted_after"]
        ),
        (&3.into(), &0.into(), &2.into())
    );
    // Three refusals 0.1 s apart; the server's child process started after them.
    // Times are seconds since the epoch, like every time in the JSON.
    let span = w[0]["end"].as_f64().unwrap() - w[0]["start"].as_f64().unwrap();
    assert!((0.19..0.4).contains(&span), "{f}");
    assert!(w[0]["reopened"].as_f64().unwrap() > w[0]["end"].as_f64().unwrap());
    assert!(
        f["headline"]
            .as_str()
            .unwrap()
            .contains("the first 3 attempts"),
        "{f}"
    );

    let f = &replay_findings("restarted.pcap")[0];
    let w = &f["evidence"]["windows"][0];
    assert_eq!(
        (&w["attempts"], &w["accepted_before"], &w["accepted_after"]),
        (&3.into(), &2.into(), &2.into()),
        "{f}"
    );
    assert!(
        f["headline"]
            .as_str()
            .unwrap()
            .contains("a restart or deploy"),
        "{f}"
    );

    let f = &replay_findings("restart_loop.pcap")[0];
    assert_eq!(f["evidence"]["windows"].as_array().unwrap().len(), 3, "{f}");
    assert_eq!(f["evidence"]["refused"], 6);
    assert_eq!(f["evidence"]["windows_folded"], 0);
    // Killed and started again every ~0.6 s (two refusals, a restart, one connection).
    let period = f["evidence"]["period_us"].as_u64().unwrap();
    assert!((300_000..2_000_000).contains(&period), "{f}");
    assert!(f["headline"].as_str().unwrap().contains("3 windows"), "{f}");
}

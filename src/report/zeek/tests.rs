//! The conn.log's formats: uid, times, the TSV header and rows, the JSON lines. (How
//! each `conn_state` is derived is tested in `flow/zeek/tests.rs`.)

use super::*;
use crate::decode::Endpoint;
use crate::flow::{ConnState, EndReason, History, Outcome, SynGaps};
use std::net::{IpAddr, Ipv4Addr};

/// A final record whose history is `letters` (upper case: client, lower case: server).
fn rec(letters: &str, outcome: Outcome, conn_state: ConnState) -> FlowRecord {
    let mut history = History::new();
    for l in letters.bytes() {
        let side = if l.is_ascii_uppercase() {
            Side::Client
        } else {
            Side::Server
        };
        history.push(side, l);
    }
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    FlowRecord {
        encap: crate::decode::Encap::None,
        id: 7,
        client: Endpoint::new(lo, 40000),
        client_isn: None,
        server: Endpoint::new(lo, 61999),
        outcome,
        conn_state,
        reset_by: None,
        closed_first_by: None,
        syn_count: u32::from(letters.contains('S')),
        syn_gaps_us: SynGaps::default(),
        synack_count: u32::from(letters.contains('h')),
        port_reused: false,
        midstream: !letters.starts_with('S') && !letters.starts_with('h'),
        history,
        first_ts: Timestamp(1_700_000_000_000_001),
        last_ts: Timestamp(1_700_000_000_250_000),
        handshake_rtt_us: None,
        packets: [3, 2],
        bytes: [0, 0],
        retransmits: [0; 2],
        zero_windows: [0; 2],
        zero_window_us: [0; 2],
        last_payload_by: None,
        icmp: None,
        client_options: None,
        server_options: None,
        end: Some(EndReason::Packets),
    }
}

#[test]
fn uid_is_stable_per_flow_and_distinct_between_flows() {
    let a = rec("S", Outcome::Unanswered, ConnState::S0);
    let mut b = a;
    b.id = 8;
    assert_eq!(uid(&a), uid(&a));
    assert_ne!(uid(&a), uid(&b));
    assert!(uid(&a).starts_with('C'));
    assert_eq!(uid(&a).len(), 23);
    assert!(uid(&a).bytes().all(|c| c.is_ascii_alphanumeric()));
}

#[test]
fn times_keep_six_decimals_in_tsv_and_the_shortest_form_in_json() {
    assert_eq!(secs6(1_700_000_000_000_001), "1700000000.000001");
    assert_eq!(secs6(21), "0.000021");
    assert_eq!(secs_json(1_700_000_000_500_000), "1700000000.5");
    assert_eq!(secs_json(3_000_000), "3.0");
    assert_eq!(secs_json(21), "0.000021");
}

#[test]
fn tsv_has_zeeks_header_one_row_and_close() {
    let mut log = ConnLog::new(false);
    log.clock(Timestamp(0));
    let mut out = Vec::new();
    log.write_flow(&mut out, &rec("Sr", Outcome::Refused, ConnState::Rej))
        .unwrap();
    log.finish(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#separator \\x09");
    assert_eq!(lines[1], "#set_separator\t,");
    assert_eq!(lines[2], "#empty_field\t(empty)");
    assert_eq!(lines[3], "#unset_field\t-");
    assert_eq!(lines[4], "#path\tconn");
    assert!(lines[5].starts_with("#open\t"), "{text}");
    assert_eq!(lines[6], format!("#fields\t{}", FIELDS.join("\t")));
    assert_eq!(lines[7], format!("#types\t{}", TYPES.join("\t")));
    let row: Vec<&str> = lines[8].split('\t').collect();
    assert_eq!(row.len(), FIELDS.len());
    assert_eq!(row[0], "1700000000.000001");
    assert_eq!(
        &row[2..7],
        ["127.0.0.1", "40000", "127.0.0.1", "61999", "tcp"]
    );
    assert_eq!(row[8], "0.249999", "duration");
    assert_eq!(row[11], "REJ");
    assert_eq!(row[15], "Sr");
    assert_eq!(row[20], "-", "tunnel_parents unset");
    assert!(lines[9].starts_with("#close\t"), "{text}");
    assert_eq!(lines.len(), 10);
}

#[test]
fn zero_duration_leaves_duration_and_bytes_unset_like_zeek() {
    let mut r = rec("S", Outcome::Unanswered, ConnState::S0);
    r.last_ts = r.first_ts;
    let mut out = Vec::new();
    ConnLog::new(true).write_flow(&mut out, &r).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v.get("duration").is_none(), "{v}");
    assert!(v.get("orig_bytes").is_none(), "{v}");
    assert_eq!(v["conn_state"], "S0");
    assert_eq!(v["orig_pkts"], 3);
}

#[test]
fn json_row_has_zeeks_keys_and_omits_unset_fields() {
    let mut out = Vec::new();
    let mut log = ConnLog::new(true);
    log.write_flow(&mut out, &rec("Sr", Outcome::Refused, ConnState::Rej))
        .unwrap();
    log.finish(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "no header or #close in JSON: {text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ts",
            "uid",
            "id.orig_h",
            "id.orig_p",
            "id.resp_h",
            "id.resp_p",
            "proto",
            "duration",
            "orig_bytes",
            "resp_bytes",
            "conn_state",
            "history",
            "orig_pkts",
            "resp_pkts"
        ]
    );
    assert_eq!(v["ts"].as_f64(), Some(1_700_000_000.000001));
    assert_eq!(v["id.resp_p"], 61999);
}

//! One test per Zeek `conn_state`, each quoting Zeek's definition
//! (`base/protocols/conn/main.zeek`), on records shaped like the ones portsniff's flow
//! stage produces for that scenario; then the conn.log's formats.

use super::*;
use crate::decode::Endpoint;
use crate::flow::{EndReason, History, Outcome, SynGaps};
use std::net::{IpAddr, Ipv4Addr};

/// A final record whose history is `letters` (upper case: client, lower case: server).
fn rec(letters: &str, outcome: Outcome) -> FlowRecord {
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
        id: 7,
        client: Endpoint::new(lo, 40000),
        server: Endpoint::new(lo, 61999),
        outcome,
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

fn with_data(mut r: FlowRecord) -> FlowRecord {
    r.bytes = [100, 200];
    r
}

#[test]
fn s0_unanswered_syns() {
    // Zeek: "S0: Connection attempt seen, no reply."
    let r = rec("S", Outcome::Unanswered);
    assert_eq!(conn_state(&r), ConnState::S0);
}

#[test]
fn s0_syn_answered_by_icmp_only() {
    // Zeek: "S0: Connection attempt seen, no reply." An ICMP error is no TCP reply: Zeek
    // logs it as a separate icmp connection and the TCP one stays S0.
    let r = rec("S", Outcome::Unreachable);
    assert_eq!(conn_state(&r), ConnState::S0);
}

#[test]
fn s1_established_and_still_open() {
    // Zeek: "S1: Connection established, not terminated."
    let r = with_data(rec("ShADad", Outcome::Established));
    assert_eq!(conn_state(&r), ConnState::S1);
}

#[test]
fn s1_handshake_without_the_final_ack() {
    // Zeek: "S1: Connection established, not terminated." Zeek's TCP analyzer establishes
    // both endpoints on the SYN-ACK that answers the SYN; the final ACK is not needed.
    let r = rec("Sh", Outcome::HandshakeIncomplete);
    assert_eq!(conn_state(&r), ConnState::S1);
}

#[test]
fn sf_closed_both_ways() {
    // Zeek: "SF: Normal establishment and termination."
    let mut r = with_data(rec("ShADadFf", Outcome::Closed));
    r.closed_first_by = Some(Side::Client);
    assert_eq!(conn_state(&r), ConnState::SF);
}

#[test]
fn sf_when_a_rst_follows_both_fins() {
    // Zeek: "SF: Normal establishment and termination." UpdateClosedState: "If our peer
    // was also closed, then don't change our state now on a RST".
    let mut r = with_data(rec("ShADadFfR", Outcome::Closed));
    r.closed_first_by = Some(Side::Client);
    assert_eq!(conn_state(&r), ConnState::SF);
}

#[test]
fn rej_syn_answered_by_rst() {
    // Zeek: "REJ: Connection attempt rejected."
    let mut r = rec("Sr", Outcome::Refused);
    r.reset_by = Some(Side::Server);
    assert_eq!(conn_state(&r), ConnState::Rej);
}

#[test]
fn s2_client_fin_unanswered() {
    // Zeek: "S2: Connection established and close attempt by originator seen (but no reply
    // from responder)."
    let mut r = with_data(rec("ShADaF", Outcome::HalfClosed));
    r.closed_first_by = Some(Side::Client);
    assert_eq!(conn_state(&r), ConnState::S2);
}

#[test]
fn s3_server_fin_unanswered() {
    // Zeek: "S3: Connection established and close attempt by responder seen (but no reply
    // from originator)."
    let mut r = with_data(rec("ShADadf", Outcome::HalfClosed));
    r.closed_first_by = Some(Side::Server);
    assert_eq!(conn_state(&r), ConnState::S3);
}

#[test]
fn rsto_client_aborts() {
    // Zeek: "RSTO: Connection established, originator aborted (sent a RST)."
    let mut r = with_data(rec("ShADadR", Outcome::Reset));
    r.reset_by = Some(Side::Client);
    assert_eq!(conn_state(&r), ConnState::Rsto);
}

#[test]
fn rstr_server_resets() {
    // Zeek: "RSTR: Responder sent a RST."
    let mut r = with_data(rec("ShADar", Outcome::Reset));
    r.reset_by = Some(Side::Server);
    assert_eq!(conn_state(&r), ConnState::Rstr);
}

#[test]
fn rstr_server_resets_after_the_client_fin() {
    // Zeek: "RSTR: Responder sent a RST." (the originator's FIN does not make it S2).
    let mut r = with_data(rec("ShADaFr", Outcome::Reset));
    r.reset_by = Some(Side::Server);
    r.closed_first_by = Some(Side::Client);
    assert_eq!(conn_state(&r), ConnState::Rstr);
}

#[test]
fn rstos0_client_gives_up_before_any_answer() {
    // Zeek: "RSTOS0: Originator sent a SYN followed by a RST, we never saw a SYN-ACK from
    // the responder."
    let mut r = rec("SR", Outcome::Unanswered);
    r.reset_by = Some(Side::Client);
    assert_eq!(conn_state(&r), ConnState::Rstos0);
}

#[test]
fn rstrh_synack_then_rst_without_the_syn() {
    // Zeek: "RSTRH: Responder sent a SYN ACK followed by a RST, we never saw a SYN from
    // the (purported) originator."
    let mut r = rec("hr", Outcome::HandshakeIncomplete);
    r.reset_by = Some(Side::Server);
    assert_eq!(conn_state(&r), ConnState::Rstrh);
}

#[test]
fn sh_client_syn_then_fin() {
    // Zeek: "SH: Originator sent a SYN followed by a FIN, we never saw a SYN ACK from the
    // responder (hence the connection was "half" open)."
    let mut r = rec("SF", Outcome::HalfClosed);
    r.closed_first_by = Some(Side::Client);
    assert_eq!(conn_state(&r), ConnState::Sh);
}

#[test]
fn shr_synack_then_fin_without_the_syn() {
    // Zeek: "SHR: Responder sent a SYN ACK followed by a FIN, we never saw a SYN from the
    // originator."
    let mut r = rec("hf", Outcome::HalfClosed);
    r.closed_first_by = Some(Side::Server);
    assert_eq!(conn_state(&r), ConnState::Shr);
}

#[test]
fn oth_midstream_traffic_not_closed() {
    // Zeek: "OTH: No SYN seen, just midstream traffic (one example of this is a "partial
    // connection" that was not later closed)."
    let r = with_data(rec("DadA", Outcome::Established));
    assert_eq!(conn_state(&r), ConnState::Oth);
}

#[test]
fn midstream_closed_both_ways_is_sf_as_in_zeek() {
    // Zeek's conn_state looks only at the endpoint states: two FINs are SF even without
    // a SYN (the midstream fixture).
    let mut r = with_data(rec("DadAFf", Outcome::Closed));
    r.closed_first_by = Some(Side::Client);
    assert_eq!(conn_state(&r), ConnState::SF);
}

#[test]
fn fins_and_rsts_a_full_history_could_not_hold_still_count() {
    // A history full of retransmission letters lost the final RST: the record's reset_by
    // still makes it RSTR.
    let mut r = with_data(rec("ShADad", Outcome::Reset));
    r.reset_by = Some(Side::Server);
    assert_eq!(conn_state(&r), ConnState::Rstr);
    let mut r = with_data(rec("ShADad", Outcome::Closed));
    r.closed_first_by = Some(Side::Server);
    assert_eq!(conn_state(&r), ConnState::SF);
}

#[test]
fn uid_is_stable_per_flow_and_distinct_between_flows() {
    let a = rec("S", Outcome::Unanswered);
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
    log.write_flow(&mut out, &rec("Sr", Outcome::Refused))
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
    let mut r = rec("S", Outcome::Unanswered);
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
    log.write_flow(&mut out, &rec("Sr", Outcome::Refused))
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

//! A SYN flood replayed: told from its packets alone (rate, sources, one-shot half-open
//! attempts), saying what a file cannot show (cookies, queue drops, martians).

use crate::support::{json_lines, portsniff, PORT};
use crate::wire::{frame, ip_packet, pcap_file, tcp, PROTO_TCP};
use portsniff::decode::LinkType;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

fn segment(src: (IpAddr, u16), dst: (IpAddr, u16), flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let t = tcp(src.1, dst.1, seq, ack, flags, 512, &[]);
    frame(
        LinkType::Ethernet,
        &ip_packet(src.0, dst.0, PROTO_TCP, &t, 0),
        false,
    )
}

#[test]
fn a_replayed_syn_flood_is_told_from_its_packets_and_says_what_it_cannot_judge() {
    let port: u16 = PORT.parse().expect("a port");
    let server = (IpAddr::V4(Ipv4Addr::new(10, 201, 0, 1)), port);
    let t0: u64 = 1_700_000_000_000_000;
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    // 600 spoofed sources, one SYN each over 0.6 s, each answered by a SYN-ACK (a cookie)
    // that is never acknowledged.
    for i in 0..600u32 {
        let src = (IpAddr::V4(Ipv4Addr::from(0x0aca_0100 + i)), 1024);
        let at = t0 + u64::from(i) * 1000;
        records.push((at, segment(src, server, SYN, 7, 0)));
        records.push((at + 20, segment(server, src, SYN | ACK, 9, 8)));
    }
    // Two real clients complete and close during it.
    for (k, at) in [(0u16, t0 + 200_000), (1, t0 + 400_000)] {
        let c = (IpAddr::V4(Ipv4Addr::new(10, 201, 0, 2)), 40000 + k);
        records.push((at, segment(c, server, SYN, 100, 0)));
        records.push((at + 30, segment(server, c, SYN | ACK, 500, 101)));
        records.push((at + 60, segment(c, server, ACK, 101, 501)));
        records.push((at + 90, segment(c, server, FIN | ACK, 101, 501)));
        records.push((at + 120, segment(server, c, FIN | ACK, 501, 102)));
        records.push((at + 150, segment(c, server, ACK, 102, 502)));
    }
    records.sort_by_key(|r| r.0);
    let file: Vec<(u64, Vec<u8>, u32)> = records
        .into_iter()
        .map(|(t, f)| {
            let len = f.len() as u32;
            (t, f, len)
        })
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("flood.pcap");
    std::fs::write(&path, pcap_file(LinkType::Ethernet, &file)).expect("write the capture");

    let out = portsniff()
        .arg("-r")
        .arg(&path)
        .args(["--port", PORT, "--json"])
        .output()
        .expect("the portsniff binary runs");
    let lines = json_lines(&out.stdout);
    let findings: Vec<&Value> = lines.iter().filter(|v| v["type"] == "finding").collect();
    let kinds: Vec<&str> = findings.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(kinds.first().copied(), Some("syn_flood"), "{kinds:?}");
    assert!(
        !kinds
            .iter()
            .any(|k| ["silently_dropped", "handshake_stalled"].contains(k)),
        "the flood's attempts are its own story: {kinds:?}"
    );
    let f = findings[0];
    let e = &f["evidence"];
    assert_eq!(
        (e["sources"].as_u64(), e["half_open"].as_u64()),
        (Some(601), Some(600)),
        "{f}"
    );
    assert_eq!(e["completed"], 2, "{f}");
    assert!(
        e["cookies_sent"].is_null() && e["counters"].is_null(),
        "{f}"
    );
    let x = f["explanation"].as_str().unwrap_or("");
    assert!(
        x.contains("a replay cannot tell whether the kernel sent SYN cookies"),
        "{x}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the half-open attempts never completed"
    );
}

//! Broken and hostile captures (`fixtures/malformed/`, made by its `make.py`): each one is
//! replayed by the real binary, a debug build with overflow checks, and what portsniff
//! does with it is asserted. That covers the exit status, stderr, the flows and the
//! summary's packet counters. Nothing may panic, and what was read before any damage must
//! still be reported.
//!
//! A file is read unfiltered: every record is counted, and the decoder picks out the
//! port's packets (see fixtures/malformed/README.md).

use crate::support::{malformed_fixture as malformed, PORT};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One run of the binary.
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn portsniff(path: &Path, args: &[&str]) -> Run {
    let out = crate::support::portsniff()
        .arg("-r")
        .arg(path)
        .args(["--port", PORT])
        .args(args)
        .output()
        .expect("the portsniff binary runs");
    let run = Run {
        what: format!("{} {}", path.display(), args.join(" ")),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.assert_no_crash();
    run
}

/// `portsniff -r fixtures/malformed/NAME --port 61999 --json`.
fn json(name: &str) -> Run {
    portsniff(&malformed(name), &["--json"])
}

impl Run {
    /// Exit 0, 1 or 2, never a signal or Rust's panic status 101, and no panic message.
    fn assert_no_crash(&self) {
        assert!(
            matches!(self.code, Some(0..=2)),
            "{}: exit status {:?} (a signal or a panic)\nstderr:\n{}",
            self.what,
            self.code,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "{}: panicked\n{}",
            self.what,
            self.stderr
        );
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "{}: exit status\nstderr:\n{}\nstdout:\n{}",
            self.what,
            self.stderr,
            self.stdout
        );
    }

    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", self.what))
            })
            .collect()
    }

    /// The summary: exactly one, the last line. Its packet counters always add up.
    fn summary(&self) -> Value {
        let lines = self.lines();
        let summaries = lines.iter().filter(|v| v["type"] == "summary").count();
        assert_eq!(
            summaries, 1,
            "{}: one summary line\n{}",
            self.what, self.stdout
        );
        let last = lines.last().expect("some output").clone();
        assert_eq!(last["type"], "summary", "{}: summary comes last", self.what);
        let p = &last["packets"];
        assert_eq!(
            count(p, "captured"),
            count(p, "decoded") + count(p, "skipped") + count(p, "syns_elsewhere"),
            "{}: every captured packet is decoded, skipped or a SYN elsewhere: {p}",
            self.what
        );
        let by_reason: u64 = p["skipped_by_reason"]
            .as_object()
            .expect("skipped_by_reason is an object")
            .values()
            .map(|v| v.as_u64().expect("a count"))
            .sum();
        assert_eq!(by_reason, count(p, "skipped"), "{}: {p}", self.what);
        last
    }

    /// The final flow lines, in output order.
    fn flows(&self) -> Vec<Value> {
        let flows: Vec<Value> = self
            .lines()
            .into_iter()
            .filter(|v| v["type"] == "flow")
            .collect();
        for f in &flows {
            assert_eq!(
                f["final"], true,
                "{}: a replay has no pending notices",
                self.what
            );
            let (first, last) = (
                f["first_ts"].as_f64().expect("first_ts"),
                f["last_ts"].as_f64().expect("last_ts"),
            );
            assert!(last >= first, "{}: last_ts < first_ts in {f}", self.what);
            assert!(
                f["duration_us"].as_u64().is_some(),
                "{}: duration_us must be a non-negative integer: {f}",
                self.what
            );
        }
        flows
    }

    fn outcomes(&self) -> Vec<String> {
        self.flows()
            .iter()
            .map(|f| f["outcome"].as_str().expect("outcome").to_string())
            .collect()
    }

    /// The error line portsniff printed (`portsniff: error: …`).
    fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("portsniff: error: "))
            .unwrap_or_else(|| panic!("{}: no error line in\n{}", self.what, self.stderr))
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {v}"))
}

/// Asserts `packets` in the summary: captured, decoded, skipped, and the skip reasons
/// exactly (reasons not listed must be absent).
fn assert_packets(summary: &Value, captured: u64, decoded: u64, reasons: &[(&str, u64)]) {
    let p = &summary["packets"];
    let skipped: u64 = reasons.iter().map(|&(_, n)| n).sum();
    assert_eq!(
        (
            count(p, "captured"),
            count(p, "decoded"),
            count(p, "skipped")
        ),
        (captured, decoded, skipped),
        "captured, decoded, skipped: {p}"
    );
    let expected: serde_json::Map<String, Value> = reasons
        .iter()
        .map(|&(r, n)| (r.to_string(), Value::from(n)))
        .collect();
    assert_eq!(
        p["skipped_by_reason"],
        Value::Object(expected),
        "skipped_by_reason: {p}"
    );
}

/// The one flow of a refused-connection case.
fn assert_one_refused(run: &Run, client: &str, server: &str) -> Value {
    let flows = run.flows();
    assert_eq!(flows.len(), 1, "{}: one flow\n{}", run.what, run.stdout);
    let f = flows[0].clone();
    assert_eq!(f["outcome"], "refused", "{f}");
    assert_eq!(f["history"], "Sr", "{f}");
    assert_eq!(f["reset_by"], "server", "{f}");
    assert_eq!(f["client"], client, "{f}");
    assert_eq!(f["server"], server, "{f}");
    assert_eq!(
        (f["packets_c2s"].clone(), f["packets_s2c"].clone()),
        (1.into(), 1.into())
    );
    f
}

const CLIENT: &str = "127.0.0.1:40000";
const CLIENT_40001: &str = "127.0.0.1:40001";
const SERVER: &str = "127.0.0.1:61999";

// --- 1, 2: not a capture file -----------------------------------------------------------

#[test]
fn bad_magic_is_not_a_capture_file() {
    let run = json("bad_magic.pcap");
    run.assert_code(2);
    let e = run.error_line();
    assert!(
        e.contains("bad_magic.pcap is not a capture file") && e.contains("unknown file format"),
        "{e}"
    );
    assert!(run.stderr.contains("hint: portsniff reads pcap and pcapng"));
    assert!(run.stdout.is_empty(), "nothing was read: {}", run.stdout);
}

#[test]
fn empty_file_is_a_clear_error() {
    let run = json("empty.pcap");
    run.assert_code(2);
    let e = run.error_line();
    assert!(
        e.contains("empty.pcap is not a capture file") && e.contains("only got 0"),
        "{e}"
    );
    assert!(run.stdout.is_empty(), "nothing was read: {}", run.stdout);
}

// --- 3: pcapng blocks the reader does not know ---------------------------------------------

#[test]
fn pcapng_unknown_blocks_between_packets_are_skipped() {
    let run = json("unknown_blocks.pcapng");
    run.assert_code(1);
    assert_one_refused(&run, CLIENT, SERVER);
    let s = run.summary();
    assert_packets(&s, 2, 2, &[]);
    assert_eq!(s["error"], Value::Null);
}

// --- 4: caplen beyond any snaplen --------------------------------------------------------

#[test]
fn caplen_over_snaplen_reports_what_came_before_then_fails() {
    let run = json("caplen_over_snaplen.pcap");
    run.assert_code(2);
    assert_one_refused(&run, CLIENT, SERVER);
    let s = run.summary();
    assert_packets(&s, 2, 2, &[]);
    let e = run.error_line();
    assert!(
        e.contains("caplen_over_snaplen.pcap: the capture is damaged after packet 2")
            && e.contains("300000")
            && e.contains("everything before it has been reported"),
        "{e}"
    );
    let in_summary = s["error"].as_str().expect("the summary carries the error");
    assert!(in_summary.contains("damaged"), "{in_summary}");
}

// --- 5: zero-length records ---------------------------------------------------------------

#[test]
fn zero_length_records_do_not_hide_the_packets_around_them() {
    let run = json("zero_length_records.pcap");
    run.assert_code(1);
    let f = assert_one_refused(&run, CLIENT, SERVER);
    assert_eq!(f["first_ts"], 1_700_000_000.000_01);
    // Every record is counted: the 3 empty ones as truncated.
    assert_packets(&run.summary(), 5, 2, &[("truncated", 3)]);
}

// --- 6: time going backwards -------------------------------------------------------------

#[test]
fn timestamps_going_backwards_give_non_negative_times_and_a_stable_answer() {
    let run = json("backwards_timestamps.pcap");
    run.assert_code(0);
    let flows = run.flows();
    assert_eq!(flows.len(), 1, "{}", run.stdout);
    let f = &flows[0];
    assert_eq!(f["outcome"], "closed", "{f}");
    assert_eq!(f["history"], "ShADadFf", "{f}");
    assert_eq!(f["closed_first_by"], "client", "{f}");
    assert_eq!(
        (f["bytes_c2s"].clone(), f["bytes_s2c"].clone()),
        (100.into(), 200.into())
    );
    // first_ts is the first packet's time (10.010 s), last_ts the latest seen (10.050 s).
    assert_eq!(f["first_ts"], 1_700_000_010.01);
    assert_eq!(f["last_ts"], 1_700_000_010.05);
    assert_eq!(f["duration_us"], 40_000);
    // The final ACK is stamped before the SYN: the RTT clamps to 0 instead of wrapping.
    assert_eq!(f["handshake_rtt_us"], 0);
    let s = run.summary();
    assert_packets(&s, 11, 11, &[]);
    for key in ["p50", "p90", "p99", "max"] {
        assert!(s["duration_us"][key].as_u64().is_some(), "{s}");
        assert!(s["handshake_rtt_us"][key].as_u64().is_some(), "{s}");
    }

    let again = json("backwards_timestamps.pcap");
    assert_eq!(run.stdout, again.stdout, "JSON: same file, same answer");
    let path = malformed("backwards_timestamps.pcap");
    let (text1, text2) = (portsniff(&path, &[]), portsniff(&path, &[]));
    text1.assert_code(0);
    assert_eq!(text1.stdout, text2.stdout, "text: same file, same answer");
    assert!(
        text1.stdout.contains("closed after 40.00ms"),
        "{}",
        text1.stdout
    );
}

// --- 7: IPv4 header length ---------------------------------------------------------------

#[test]
fn ipv4_options_are_stepped_over() {
    let run = json("ip_options.pcap");
    run.assert_code(1);
    let f = assert_one_refused(&run, CLIENT, SERVER);
    // The TCP options are found after 40 bytes of IP options.
    assert_eq!(f["client_options"]["mss"], 65495, "{f}");
    assert_eq!(f["client_options"]["window_scale"], 7, "{f}");
    assert_packets(&run.summary(), 2, 2, &[]);
}

#[test]
fn ipv4_ihl_below_five_is_a_bad_ip_header() {
    let run = json("bad_ihl.pcap");
    run.assert_code(1);
    assert_one_refused(&run, CLIENT, SERVER);
    // IHL 4, 3 and 0: each counted and skipped.
    assert_packets(&run.summary(), 5, 2, &[("bad_ip_header", 3)]);
}

// --- 8: fragments ------------------------------------------------------------------------

#[test]
fn ip_fragments_are_skipped() {
    let run = json("fragments.pcap");
    run.assert_code(1);
    assert_one_refused(&run, CLIENT_40001, SERVER);
    // The IPv4 first fragment, the two at a non-zero offset and the IPv6 fragment.
    assert_packets(&run.summary(), 6, 2, &[("ip_fragment", 4)]);
}

// --- 9: TCP data offset ------------------------------------------------------------------

#[test]
fn tcp_data_offset_below_five_is_a_bad_tcp_header() {
    let run = json("bad_tcp_offset.pcap");
    run.assert_code(1);
    assert_one_refused(&run, CLIENT_40001, SERVER);
    assert_packets(&run.summary(), 4, 2, &[("bad_tcp_header", 2)]);
}

// --- 10: TCP options cut by the packet's own length ---------------------------------------

#[test]
fn tcp_header_longer_than_the_packet_decodes_with_the_options_present() {
    let run = json("truncated_tcp_options.pcap");
    run.assert_code(1);
    let f = assert_one_refused(&run, CLIENT, SERVER);
    // Current behaviour: the SYN is used, with the one option its 24 bytes hold.
    assert_eq!(
        f["client_options"],
        serde_json::json!({"mss": 65495, "window_scale": null, "sack_permitted": false, "timestamps": false}),
        "{f}"
    );
    assert_eq!(
        f["bytes_c2s"], 0,
        "no payload: the header already overruns the packet"
    );
    assert_packets(&run.summary(), 2, 2, &[]);
}

// --- 11: IPv6 extension header chain -------------------------------------------------------

#[test]
fn ipv6_extension_header_chain_is_walked_to_tcp() {
    let run = json("ipv6_ext_chain.pcap");
    run.assert_code(1);
    let f = assert_one_refused(&run, "[::1]:40000", "[::1]:61999");
    assert_eq!(f["client_options"]["mss"], 65495, "{f}");
    assert_eq!(f["client_options"]["window_scale"], 7, "{f}");
    assert_packets(&run.summary(), 2, 2, &[]);
}

// --- 12: ICMP errors quoting too little -----------------------------------------------------

#[test]
fn icmp_errors_quoting_truncated_headers_are_skipped() {
    let run = json("icmp_truncated_quote.pcap");
    // The lone SYN is the file's last packet: the file ended before an answer could
    // come, a partial view, not a problem (exit 0).
    run.assert_code(0);
    let flows = run.flows();
    assert_eq!(flows.len(), 1, "{}", run.stdout);
    let f = &flows[0];
    assert_eq!(f["outcome"], "unanswered", "{f}");
    assert_eq!(f["history"], "S", "{f}");
    assert_eq!(f["icmp"], Value::Null, "{f}");
    let s = run.summary();
    assert_packets(&s, 4, 1, &[("truncated", 3)]);
    assert_eq!(s["icmp_unmatched"], 0);
}

// --- 13: a file cut inside a record ----------------------------------------------------------

#[test]
fn file_cut_inside_a_record_reports_the_flows_read_before() {
    let run = json("cut_mid_record.pcap");
    run.assert_code(2);
    let flows = run.flows();
    assert_eq!(run.outcomes(), ["refused", "closed"], "{}", run.stdout);
    assert_eq!(flows[0]["client"], CLIENT_40001);
    assert_eq!(flows[1]["client"], CLIENT);
    assert_eq!(flows[1]["history"], "ShADadFf");
    let s = run.summary();
    assert_packets(&s, 12, 12, &[]);
    let e = run.error_line();
    assert!(
        e.contains("cut_mid_record.pcap: the capture is damaged after packet 12")
            && e.contains("holds 54 captured bytes, only 20 are left")
            && e.contains("everything before it has been reported"),
        "{e}"
    );
    assert!(
        s["error"].as_str().is_some_and(|m| m.contains("damaged")),
        "{s}"
    );
}

/// The damage's position counts every record read, not only the port's packets: three
/// UDP records and a refused connection precede the cut record, so a user looking in
/// Wireshark or `tcpdump -r` finds the damage after record 5.
#[test]
fn damage_position_counts_every_record_read() {
    let run = json("damaged_after_filtered.pcap");
    run.assert_code(2);
    assert_one_refused(&run, CLIENT, SERVER);
    assert_packets(&run.summary(), 5, 2, &[("not_tcp", 3)]);
    let e = run.error_line();
    assert!(e.contains("the capture is damaged"), "{e}");
    assert!(
        e.contains("after packet 5"),
        "5 intact records precede the damage, but: {e}"
    );
}

// --- 14: orig len far beyond caplen ---------------------------------------------------------

#[test]
fn huge_original_length_with_a_small_caplen_is_handled() {
    let run = json("huge_len.pcap");
    run.assert_code(1);
    let f = assert_one_refused(&run, CLIENT, SERVER);
    assert_eq!(
        (f["bytes_c2s"].clone(), f["bytes_s2c"].clone()),
        (0.into(), 0.into())
    );
    assert_packets(&run.summary(), 2, 2, &[]);

    // `-w` copies the records, lengths and all.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.pcap");
    let w = portsniff(&malformed("huge_len.pcap"), &["-w", out.to_str().unwrap()]);
    w.assert_code(1);
    let written = std::fs::read(&out).expect("the -w file exists");
    assert_eq!(
        written.len(),
        24 + 16 + 74 + 16 + 54,
        "both records written"
    );
    assert_eq!(
        &written[36..40],
        &u32::MAX.to_le_bytes(),
        "the SYN's len is kept"
    );
}

// --- 15: random bytes -------------------------------------------------------------------------

#[test]
fn random_packet_bodies_are_all_rejected_without_a_panic() {
    let run = json("garbage.pcap");
    run.assert_code(0);
    assert!(run.flows().is_empty(), "{}", run.stdout);
    // All 100 random records are counted, none decoded.
    assert_packets(&run.summary(), 100, 0, &[("truncated", 11), ("not_ip", 89)]);
}

#[test]
fn random_tcp_to_the_port_is_all_counted_and_never_panics() {
    let run = json("garbage_tcp.pcap");
    assert!(matches!(run.code, Some(0 | 1)), "{:?}", run.code);
    let s = run.summary();
    assert_eq!(s["packets"]["syns_elsewhere"], 0, "{s}");
    assert_packets(&s, 100, 63, &[("truncated", 4), ("bad_tcp_header", 33)]);
    let flows = run.flows();
    assert!(!flows.is_empty());
    let in_flows: u64 = flows
        .iter()
        .map(|f| count(f, "packets_c2s") + count(f, "packets_s2c"))
        .sum();
    assert!(
        in_flows <= 63,
        "flows hold {in_flows} of 63 decoded packets"
    );
    assert_eq!(s["flows"], flows.len(), "{s}");
}

// --- mutated real captures ---------------------------------------------------------------------

fn mutated_files() -> Vec<PathBuf> {
    let dir = malformed("mutated");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    files.sort();
    files
}

#[test]
fn mutated_captures_never_crash_and_always_add_up() {
    let files = mutated_files();
    assert!(files.len() >= 30, "{} mutated files", files.len());
    for path in files {
        let run = portsniff(&path, &["--json"]);
        let s = run.summary();
        assert!(
            count(&s["packets"], "captured") <= 43,
            "{}: more packets than the file holds: {s}",
            run.what
        );
        run.flows();
    }
}

/// Every file here, through every output path (text, JSON, ladders, `-w`): no crash,
/// and the same exit status whatever the output.
#[test]
fn every_malformed_file_survives_every_output_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.pcap");
    let out = out.to_str().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(malformed(""))
        .expect("fixtures/malformed")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(files.len() >= 18, "{files:?}");
    files.extend(mutated_files());
    for path in &files {
        let json = portsniff(path, &["--json"]);
        if !json.stdout.is_empty() {
            json.summary();
        }
        for args in [
            &[][..],
            &["--ladder"][..],
            &["--flow", "40000"][..],
            &["--json", "--ladder"][..],
            &["-w", out][..],
        ] {
            let run = portsniff(path, args);
            assert_eq!(
                run.code, json.code,
                "{}: exit status differs from --json",
                run.what
            );
        }
    }
}

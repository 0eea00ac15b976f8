//! `--json`: one object per line, for `jq` and scripts. The schema is a stable interface,
//! documented in the README; add fields, never rename or remove them.

use super::summary::{Percentiles, Summary};
use crate::decode::{Endpoint, HandshakeOptions, Timestamp};
use crate::diagnose::{Finding, FlowProcesses, ProcessInfo};
use crate::flow::{FlowRecord, Outcome, Side};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::io::{self, Write};
use std::net::IpAddr;

#[derive(Serialize)]
struct ProcessJson<'a> {
    pid: i32,
    name: &'a str,
}

impl<'a> From<&'a ProcessInfo> for ProcessJson<'a> {
    fn from(p: &'a ProcessInfo) -> ProcessJson<'a> {
        ProcessJson {
            pid: p.pid,
            name: &p.name,
        }
    }
}

fn side(s: Option<Side>) -> Option<&'static str> {
    s.map(Side::as_str)
}

/// One `{"type":"flow",…}` line, appended to `buf` field by field: every value but a
/// process name is ASCII with nothing to escape (endpoints, enum names, history letters,
/// numbers), and serde_json's escaping scan was the largest cost of a big replay (17 % of
/// its instructions). Building the line in a reused buffer and handing it to the writer
/// in one call replaced ~90 small `write_all`s per line (each a call and a bounds check
/// through `BufWriter`). Process names go through serde_json.
pub fn write_flow(buf: &mut Vec<u8>, r: &FlowRecord, procs: Option<&FlowProcesses>) {
    let c = Side::Client.index();
    let s = Side::Server.index();
    let mut l = Line {
        out: buf,
        first: true,
    };
    l.out.push(b'{');
    l.text("type", "flow");
    l.boolean("final", r.is_final());
    l.uint("id", r.id);
    l.endpoint("client", r.client);
    l.endpoint("server", r.server);
    l.text("outcome", r.outcome.as_str());
    l.opt_text("reset_by", side(r.reset_by));
    l.opt_text("closed_first_by", side(r.closed_first_by));
    l.uint("syn_count", u64::from(r.syn_count));
    l.key("syn_gaps_us");
    l.out.push(b'[');
    for (i, g) in r.syn_gaps_us.as_slice().iter().enumerate() {
        if i > 0 {
            l.out.push(b',');
        }
        l.number(u64::from(*g));
    }
    l.out.push(b']');
    l.uint("synack_count", u64::from(r.synack_count));
    l.boolean("port_reused", r.port_reused);
    l.boolean("midstream", r.midstream);
    l.text("history", r.history.as_str());
    l.timestamp("first_ts", r.first_ts);
    l.timestamp("last_ts", r.last_ts);
    l.uint("duration_us", r.duration_us());
    l.opt_uint("handshake_rtt_us", r.handshake_rtt_us);
    l.uint("packets_c2s", r.packets[c]);
    l.uint("packets_s2c", r.packets[s]);
    l.uint("bytes_c2s", r.bytes[c]);
    l.uint("bytes_s2c", r.bytes[s]);
    l.uint("retransmits_c2s", u64::from(r.retransmits[c]));
    l.uint("retransmits_s2c", u64::from(r.retransmits[s]));
    l.uint("zero_windows_c2s", u64::from(r.zero_windows[c]));
    l.uint("zero_windows_s2c", u64::from(r.zero_windows[s]));
    l.uint("zero_window_us_c2s", r.zero_window_us[c]);
    l.uint("zero_window_us_s2c", r.zero_window_us[s]);
    l.opt_text("icmp", r.icmp.map(|i| i.kind.as_str()));
    match r.icmp {
        Some(i) => l.address("icmp_from", i.reporter),
        None => l.raw("icmp_from", b"null"),
    }
    l.options("client_options", r.client_options);
    l.options("server_options", r.server_options);
    l.opt_text("ended_by", r.end.map(|e| e.as_str()));
    if let Some(p) = procs.and_then(|p| p.client.as_ref()) {
        l.key("client_process");
        l.serialize(&ProcessJson::from(p));
    }
    if let Some(p) = procs.and_then(|p| p.server.as_ref()) {
        l.key("server_process");
        l.serialize(&ProcessJson::from(p));
    }
    l.out.extend_from_slice(b"}\n");
}

/// Appends `"key":value` pairs of an object whose keys and text values need no escaping.
struct Line<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Line<'_> {
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn raw(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.out.extend_from_slice(v);
    }

    fn number(&mut self, v: u64) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn uint(&mut self, k: &str, v: u64) {
        self.key(k);
        self.number(v);
    }

    fn opt_uint(&mut self, k: &str, v: Option<u64>) {
        match v {
            Some(v) => self.uint(k, v),
            None => self.raw(k, b"null"),
        }
    }

    fn boolean(&mut self, k: &str, v: bool) {
        self.raw(k, if v { b"true" } else { b"false" });
    }

    /// Seconds since the epoch with the capture's microseconds, exactly: `1700000000.000016`,
    /// `1700000000.01`, `1700000000.0`. The same text serde_json's shortest round-trip
    /// formatting gives for such an `f64` (its spacing near 2^31 s is 0.24 µs, so six
    /// decimals always round-trip and none can be dropped), without float formatting.
    fn timestamp(&mut self, k: &str, ts: Timestamp) {
        self.key(k);
        self.number(ts.0 / 1_000_000);
        let mut micros = ts.0 % 1_000_000;
        if micros == 0 {
            self.out.extend_from_slice(b".0");
            return;
        }
        let mut digits = 6;
        while micros % 10 == 0 {
            micros /= 10;
            digits -= 1;
        }
        let text = itoa::Buffer::new().format(micros).len();
        self.out.push(b'.');
        self.out.extend(std::iter::repeat_n(b'0', digits - text));
        self.number(micros);
    }

    /// A text value known to need no escaping (an enum name, history letters).
    fn text(&mut self, k: &str, v: &str) {
        debug_assert!(v
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        self.key(k);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }

    fn opt_text(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.text(k, v),
            None => self.raw(k, b"null"),
        }
    }

    /// IPv4 octet by octet (the common case, and `fmt` was a visible cost); IPv6 through
    /// its Display, which compresses zeros as RFC 5952 says.
    fn ip(&mut self, a: IpAddr) {
        match a {
            IpAddr::V4(a) => {
                for (i, o) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(b'.');
                    }
                    self.number(u64::from(o));
                }
            }
            IpAddr::V6(a) => {
                let _ = write!(self.out, "[{a}]");
            }
        }
    }

    /// `"127.0.0.1:61999"` or `"[::1]:61999"`, as [`Endpoint`]'s Display writes them.
    fn endpoint(&mut self, k: &str, e: Endpoint) {
        self.key(k);
        self.out.push(b'"');
        self.ip(e.addr);
        self.out.push(b':');
        self.number(u64::from(e.port));
        self.out.push(b'"');
    }

    fn address(&mut self, k: &str, a: IpAddr) {
        self.key(k);
        let _ = write!(self.out, "\"{a}\"");
    }

    fn serialize(&mut self, v: &impl Serialize) {
        // Writing into a Vec cannot fail, and these types always serialize.
        let _ = serde_json::to_writer(&mut *self.out, v);
    }

    fn options(&mut self, k: &str, o: Option<HandshakeOptions>) {
        let Some(o) = o else {
            return self.raw(k, b"null");
        };
        self.key(k);
        self.out.push(b'{');
        let mut inner = Line {
            out: &mut *self.out,
            first: true,
        };
        inner.opt_uint("mss", o.mss.map(u64::from));
        inner.opt_uint("window_scale", o.window_scale.map(u64::from));
        inner.boolean("sack_permitted", o.sack_permitted);
        inner.boolean("timestamps", o.timestamps);
        self.out.push(b'}');
    }
}

fn percentiles(p: &Percentiles) -> Value {
    json!({"count": p.count, "p50": p.p50, "p90": p.p90, "p99": p.p99, "max": p.max})
}

pub fn write_summary(out: &mut dyn Write, s: &Summary<'_>) -> io::Result<()> {
    let t = s.tally;
    let outcomes: Map<String, Value> = Outcome::ALL
        .iter()
        .map(|o| (o.as_str().to_string(), json!(t.count(*o))))
        .collect();
    let skipped: Map<String, Value> = s
        .skipped
        .iter()
        .map(|(r, n)| (r.as_str().to_string(), json!(n)))
        .collect();
    let v = json!({
        "type": "summary",
        "source": s.source,
        "live": s.live,
        "link_type": s.link,
        "port": s.port,
        "flows": t.flows(),
        "problems": t.problems(),
        "outcomes": outcomes,
        "syn_retransmits": t.syn_retransmits,
        "synack_retransmits": t.synack_retransmits,
        "resets": {"client": t.resets_by(Side::Client), "server": t.resets_by(Side::Server)},
        "time_wait": {"client": t.time_wait_on(Side::Client), "server": t.time_wait_on(Side::Server)},
        "port_reused": t.port_reused,
        "midstream": t.midstream,
        "retransmits": t.retransmits,
        "zero_windows": t.zero_windows,
        "handshake_rtt_us": percentiles(&s.handshake_rtt),
        "duration_us": percentiles(&s.duration),
        "packets": {
            "captured": s.packets,
            "decoded": s.decoded,
            "syns_elsewhere": s.syns_elsewhere,
            "skipped": s.skipped.total(),
            "skipped_by_reason": skipped,
            "expression": s.expression,
            "filtered_out": s.filtered_out,
        },
        "kernel": s.kernel.map(|k| json!({
            "received": k.received, "dropped": k.dropped, "if_dropped": k.if_dropped,
        })),
        "internal_dropped": s.internal_dropped,
        "flows_evicted": s.table.evicted,
        "peak_flows": s.table.peak_flows,
        "icmp_unmatched": s.table.icmp_unmatched,
        "error": s.error,
        "credentials": s.credentials.as_ref().map(|c| json!({
            "uid": c.uid, "gid": c.gid,
            "cap_effective": c.cap_effective, "cap_permitted": c.cap_permitted,
            "cap_inheritable": c.cap_inheritable, "cap_bounding": c.cap_bounding,
            "cap_ambient": c.cap_ambient,
        })),
        "system": s.system.as_ref().map(|sys| json!({
            "listeners": sys.listeners.iter().map(|l| json!({
                "local": l.local,
                "accept_queue": l.accept_queue,
                "backlog": l.backlog,
                "group": l.group,
                "namespace": l.namespace,
                "processes": l.processes,
            })).collect::<Vec<_>>(),
            "sockets": sys.sockets.iter().map(|((state, side), n)| json!({
                "state": state, "held_by": side, "count": n,
            })).collect::<Vec<_>>(),
            "counters_delta": sys.counters,
        })),
    });
    serde_json::to_writer(&mut *out, &v)?;
    out.write_all(b"\n")
}

/// `{"type":"finding",…}`: the kind and severity names are a stable vocabulary.
pub fn write_finding(out: &mut dyn Write, f: &Finding) -> io::Result<()> {
    let v = json!({
        "type": "finding",
        "kind": f.kind.as_str(),
        "severity": f.severity.as_str(),
        "headline": f.headline,
        "explanation": f.explanation,
        "evidence": f.evidence,
        "processes": f.processes,
        "next_step": f.next_step,
    });
    serde_json::to_writer(&mut *out, &v)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts_text(micros: u64) -> String {
        let mut buf = Vec::new();
        Line {
            out: &mut buf,
            first: true,
        }
        .timestamp("t", Timestamp(micros));
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn timestamps_print_exact_microseconds_like_serde_json_floats() {
        for micros in [
            1_700_000_000_000_000,
            1_700_000_000_010_000,
            1_700_000_000_000_016,
            1_700_000_000_123_456,
            1_700_000_000_100_000,
            0,
            999_999,
        ] {
            let ours = ts_text(micros);
            let serde = format!(
                "\"t\":{}",
                serde_json::to_string(&Timestamp(micros).as_secs_f64()).unwrap()
            );
            if micros >= 1_000_000_000 {
                assert_eq!(ours, serde, "{micros}");
            }
            let back: f64 = ours["\"t\":".len()..].parse().unwrap();
            assert_eq!(back, Timestamp(micros).as_secs_f64(), "{ours}");
        }
        assert_eq!(ts_text(1_700_000_000_010_000), "\"t\":1700000000.01");
        assert_eq!(ts_text(999_999), "\"t\":0.999999");
    }
}

//! `--json`: one object per line, for `jq` and scripts. The schema is a stable interface,
//! documented in the README; add fields, never rename or remove them.

use super::summary::{Percentiles, Summary};
use crate::decode::HandshakeOptions;
use crate::diagnose::{Finding, FlowProcesses, ProcessInfo};
use crate::flow::{FlowRecord, Outcome, Side};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::fmt;
use std::io::{self, Write};

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

/// One `{"type":"flow",…}` line, written field by field: every value but a process
/// name is ASCII with nothing to escape (endpoints, enum names, history letters,
/// numbers), and serde_json's escaping scan was the largest cost of a big replay
/// (17 % of its instructions). Process names go through serde_json.
pub fn write_flow<W: Write>(
    out: &mut W,
    r: &FlowRecord,
    procs: Option<&FlowProcesses>,
) -> io::Result<()> {
    let c = Side::Client.index();
    let s = Side::Server.index();
    let mut l = Line { out, first: true };
    l.out.write_all(b"{")?;
    l.text("type", "flow")?;
    l.boolean("final", r.is_final())?;
    l.uint("id", r.id)?;
    l.display("client", r.client)?;
    l.display("server", r.server)?;
    l.text("outcome", r.outcome.as_str())?;
    l.opt_text("reset_by", side(r.reset_by))?;
    l.opt_text("closed_first_by", side(r.closed_first_by))?;
    l.uint("syn_count", u64::from(r.syn_count))?;
    l.key("syn_gaps_us")?;
    l.out.write_all(b"[")?;
    for (i, g) in r.syn_gaps_us.as_slice().iter().enumerate() {
        if i > 0 {
            l.out.write_all(b",")?;
        }
        l.number(u64::from(*g))?;
    }
    l.out.write_all(b"]")?;
    l.uint("synack_count", u64::from(r.synack_count))?;
    l.boolean("port_reused", r.port_reused)?;
    l.boolean("midstream", r.midstream)?;
    l.text("history", r.history.as_str())?;
    l.float("first_ts", r.first_ts.as_secs_f64())?;
    l.float("last_ts", r.last_ts.as_secs_f64())?;
    l.uint("duration_us", r.duration_us())?;
    l.opt_uint("handshake_rtt_us", r.handshake_rtt_us)?;
    l.uint("packets_c2s", r.packets[c])?;
    l.uint("packets_s2c", r.packets[s])?;
    l.uint("bytes_c2s", r.bytes[c])?;
    l.uint("bytes_s2c", r.bytes[s])?;
    l.uint("retransmits_c2s", u64::from(r.retransmits[c]))?;
    l.uint("retransmits_s2c", u64::from(r.retransmits[s]))?;
    l.uint("zero_windows_c2s", u64::from(r.zero_windows[c]))?;
    l.uint("zero_windows_s2c", u64::from(r.zero_windows[s]))?;
    l.uint("zero_window_us_c2s", r.zero_window_us[c])?;
    l.uint("zero_window_us_s2c", r.zero_window_us[s])?;
    l.opt_text("icmp", r.icmp.map(|i| i.kind.as_str()))?;
    match r.icmp {
        Some(i) => l.display("icmp_from", i.reporter)?,
        None => l.raw("icmp_from", b"null")?,
    }
    l.options("client_options", r.client_options)?;
    l.options("server_options", r.server_options)?;
    l.opt_text("ended_by", r.end.map(|e| e.as_str()))?;
    if let Some(p) = procs.and_then(|p| p.client.as_ref()) {
        l.key("client_process")?;
        serde_json::to_writer(&mut *l.out, &ProcessJson::from(p))?;
    }
    if let Some(p) = procs.and_then(|p| p.server.as_ref()) {
        l.key("server_process")?;
        serde_json::to_writer(&mut *l.out, &ProcessJson::from(p))?;
    }
    l.out.write_all(b"}\n")
}

/// Writes `"key":value` pairs of an object whose keys and text values need no escaping.
struct Line<'a, W: Write> {
    out: &'a mut W,
    first: bool,
}

impl<W: Write> Line<'_, W> {
    fn key(&mut self, k: &str) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        self.out.write_all(b"\"")?;
        self.out.write_all(k.as_bytes())?;
        self.out.write_all(b"\":")
    }

    fn raw(&mut self, k: &str, v: &[u8]) -> io::Result<()> {
        self.key(k)?;
        self.out.write_all(v)
    }

    fn number(&mut self, v: u64) -> io::Result<()> {
        self.out.write_all(itoa::Buffer::new().format(v).as_bytes())
    }

    fn uint(&mut self, k: &str, v: u64) -> io::Result<()> {
        self.key(k)?;
        self.number(v)
    }

    fn opt_uint(&mut self, k: &str, v: Option<u64>) -> io::Result<()> {
        match v {
            Some(v) => self.uint(k, v),
            None => self.raw(k, b"null"),
        }
    }

    fn boolean(&mut self, k: &str, v: bool) -> io::Result<()> {
        self.raw(k, if v { b"true" } else { b"false" })
    }

    /// Seconds with serde_json's own float formatting, so the output does not change.
    fn float(&mut self, k: &str, v: f64) -> io::Result<()> {
        self.key(k)?;
        serde_json::to_writer(&mut *self.out, &v).map_err(io::Error::from)
    }

    /// A text value known to need no escaping (an enum name, history letters).
    fn text(&mut self, k: &str, v: &str) -> io::Result<()> {
        debug_assert!(v
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        self.key(k)?;
        self.out.write_all(b"\"")?;
        self.out.write_all(v.as_bytes())?;
        self.out.write_all(b"\"")
    }

    fn opt_text(&mut self, k: &str, v: Option<&str>) -> io::Result<()> {
        match v {
            Some(v) => self.text(k, v),
            None => self.raw(k, b"null"),
        }
    }

    /// An endpoint or address: its Display is digits, hex, dots, colons and brackets.
    fn display(&mut self, k: &str, v: impl fmt::Display) -> io::Result<()> {
        self.key(k)?;
        write!(self.out, "\"{v}\"")
    }

    fn options(&mut self, k: &str, o: Option<HandshakeOptions>) -> io::Result<()> {
        let Some(o) = o else {
            return self.raw(k, b"null");
        };
        self.key(k)?;
        self.out.write_all(b"{")?;
        let mut inner = Line {
            out: &mut *self.out,
            first: true,
        };
        inner.opt_uint("mss", o.mss.map(u64::from))?;
        inner.opt_uint("window_scale", o.window_scale.map(u64::from))?;
        inner.boolean("sack_permitted", o.sack_permitted)?;
        inner.boolean("timestamps", o.timestamps)?;
        self.out.write_all(b"}")
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

//! `--json`: one object per line, for `jq` and scripts. The schema is a stable interface,
//! documented in the README; add fields, never rename or remove them.

use super::summary::{Percentiles, Summary};
use crate::decode::{Endpoint, HandshakeOptions};
use crate::diagnose::{Finding, FlowProcesses, ProcessInfo};
use crate::flow::{FlowRecord, Outcome, Side};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;

#[derive(Serialize)]
struct Options {
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    timestamps: bool,
}

impl From<HandshakeOptions> for Options {
    fn from(o: HandshakeOptions) -> Options {
        Options {
            mss: o.mss,
            window_scale: o.window_scale,
            sack_permitted: o.sack_permitted,
            timestamps: o.timestamps,
        }
    }
}

/// A value written as its `Display` string, straight into the output (no `String`).
struct Disp<T>(T);

impl<T: fmt::Display> Serialize for Disp<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(Serialize)]
struct FlowJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// false for a live "still unanswered" notice; a final record follows.
    #[serde(rename = "final")]
    is_final: bool,
    id: u64,
    client: Disp<Endpoint>,
    server: Disp<Endpoint>,
    outcome: &'static str,
    reset_by: Option<&'static str>,
    closed_first_by: Option<&'static str>,
    syn_count: u32,
    syn_gaps_us: &'a [u32],
    synack_count: u32,
    port_reused: bool,
    midstream: bool,
    history: &'a str,
    first_ts: f64,
    last_ts: f64,
    duration_us: u64,
    handshake_rtt_us: Option<u64>,
    packets_c2s: u64,
    packets_s2c: u64,
    bytes_c2s: u64,
    bytes_s2c: u64,
    retransmits_c2s: u32,
    retransmits_s2c: u32,
    zero_windows_c2s: u32,
    zero_windows_s2c: u32,
    zero_window_us_c2s: u64,
    zero_window_us_s2c: u64,
    icmp: Option<&'static str>,
    icmp_from: Option<Disp<IpAddr>>,
    client_options: Option<Options>,
    server_options: Option<Options>,
    ended_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_process: Option<ProcessJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_process: Option<ProcessJson<'a>>,
}

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

/// Generic over the writer (not `dyn Write`): serde writes each field separately, and a
/// virtual call per field showed in profiles of large replays.
pub fn write_flow<W: Write>(
    out: &mut W,
    r: &FlowRecord,
    procs: Option<&FlowProcesses>,
) -> io::Result<()> {
    let c = Side::Client.index();
    let s = Side::Server.index();
    let j = FlowJson {
        kind: "flow",
        is_final: r.is_final(),
        id: r.id,
        client: Disp(r.client),
        server: Disp(r.server),
        outcome: r.outcome.as_str(),
        reset_by: side(r.reset_by),
        closed_first_by: side(r.closed_first_by),
        syn_count: r.syn_count,
        syn_gaps_us: r.syn_gaps_us.as_slice(),
        synack_count: r.synack_count,
        port_reused: r.port_reused,
        midstream: r.midstream,
        history: r.history.as_str(),
        first_ts: r.first_ts.as_secs_f64(),
        last_ts: r.last_ts.as_secs_f64(),
        duration_us: r.duration_us(),
        handshake_rtt_us: r.handshake_rtt_us,
        packets_c2s: r.packets[c],
        packets_s2c: r.packets[s],
        bytes_c2s: r.bytes[c],
        bytes_s2c: r.bytes[s],
        retransmits_c2s: r.retransmits[c],
        retransmits_s2c: r.retransmits[s],
        zero_windows_c2s: r.zero_windows[c],
        zero_windows_s2c: r.zero_windows[s],
        zero_window_us_c2s: r.zero_window_us[c],
        zero_window_us_s2c: r.zero_window_us[s],
        icmp: r.icmp.map(|i| i.kind.as_str()),
        icmp_from: r.icmp.map(|i| Disp(i.reporter)),
        client_options: r.client_options.map(Options::from),
        server_options: r.server_options.map(Options::from),
        ended_by: r.end.map(|e| e.as_str()),
        client_process: procs.and_then(|p| p.client.as_ref()).map(ProcessJson::from),
        server_process: procs.and_then(|p| p.server.as_ref()).map(ProcessJson::from),
    };
    serde_json::to_writer(&mut *out, &j)?;
    out.write_all(b"\n")
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

//! `--json`: one object per line, for `jq` and scripts. The schema is a stable interface,
//! documented in the README; add fields, never rename or remove them.
//!
//! The flow line, written once per connection, is assembled by hand ([`write_flow`]: the
//! measured hot path of a replay); the summary ([`summary`]) and the finding line
//! ([`write_finding`]) are typed structs whose field order is the schema; a ladder
//! is its own serde struct (`ladder::draw`). Nothing here decides what is printed when:
//! the JSON printer (`printer::json`) does.

use super::FlowContext;
use crate::decode::{Encap, Endpoint, HandshakeOptions, Timestamp};
use crate::diagnose::windows::Window;
use crate::diagnose::{Cause, FactChange, Finding, NamedProcess, ProcessInfo, Superseded, Update};
use crate::flow::{FlowRecord, Side};
use crate::kernel::event::StatePath;
use crate::kernel::KernelFacts;
use serde::Serialize;
use std::io::{self, Write};
use std::net::IpAddr;

mod summary;
pub use summary::write_summary;

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

/// One `{"type":"flow",…}` line, appended to `buf`: every value but a process name is
/// ASCII with nothing to escape (endpoints, enum names, history letters, numbers), so the
/// line is assembled directly. serde_json's escaping scan was the largest cost of a big
/// replay (17 % of its instructions); then ~90 small `write_all`s per line through
/// `BufWriter`; then, appending to a `Vec`, a `memcpy` call and a capacity check per key
/// (6,700 instructions a line). Keys are now literals joined at compile time with their
/// quotes, colon and the comma before them, and appended into reserved space. Process
/// names go through serde_json.
pub fn write_flow(buf: &mut Vec<u8>, r: &FlowRecord, context: Option<&FlowContext>) {
    write_flow_as(buf, b"{\"type\":\"flow\",\"final\":", r, context);
}

/// A flow's record again at the end of its close delay, with the packets that came after
/// its `flow` line (same `id`, same fields).
pub fn write_flow_update(buf: &mut Vec<u8>, r: &FlowRecord, context: Option<&FlowContext>) {
    write_flow_as(buf, b"{\"type\":\"flow_update\",\"final\":", r, context);
}

fn write_flow_as(buf: &mut Vec<u8>, start: &[u8], r: &FlowRecord, context: Option<&FlowContext>) {
    let procs = context.and_then(|c| c.processes.as_ref());
    /// `,"key":` as one literal.
    macro_rules! key {
        ($k:literal) => {
            buf.extend_from_slice(concat!(",\"", $k, "\":").as_bytes())
        };
    }
    let c = Side::Client.index();
    let s = Side::Server.index();
    buf.reserve(1024);
    buf.extend_from_slice(start);
    boolean(buf, r.is_final());
    key!("id");
    number(buf, r.id);
    key!("client");
    endpoint(buf, r.client);
    key!("server");
    endpoint(buf, r.server);
    if let Some(t) = context.and_then(|c| c.onward.translated()) {
        key!("translated_to");
        endpoint(buf, t.to);
    }
    // Only on a tunnelled flow, so the common line is unchanged and unformatted.
    if r.encap != Encap::None {
        key!("encap");
        let _ = write!(buf, "\"{}\"", r.encap);
    }
    key!("outcome");
    text(buf, r.outcome.as_str());
    key!("reset_by");
    opt_text(buf, side(r.reset_by));
    key!("closed_first_by");
    opt_text(buf, side(r.closed_first_by));
    key!("syn_count");
    number(buf, u64::from(r.syn_count));
    key!("syn_gaps_us");
    buf.push(b'[');
    for (i, g) in r.syn_gaps_us.as_slice().iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        number(buf, u64::from(*g));
    }
    buf.push(b']');
    key!("synack_count");
    number(buf, u64::from(r.synack_count));
    key!("port_reused");
    boolean(buf, r.port_reused);
    key!("midstream");
    boolean(buf, r.midstream);
    key!("history");
    text(buf, r.history.as_str());
    key!("first_ts");
    timestamp(buf, r.first_ts);
    key!("last_ts");
    timestamp(buf, r.last_ts);
    key!("duration_us");
    number(buf, r.duration_us());
    key!("handshake_rtt_us");
    opt_number(buf, r.handshake_rtt_us);
    key!("packets_c2s");
    number(buf, r.packets[c]);
    key!("packets_s2c");
    number(buf, r.packets[s]);
    key!("bytes_c2s");
    number(buf, r.bytes[c]);
    key!("bytes_s2c");
    number(buf, r.bytes[s]);
    key!("retransmits_c2s");
    number(buf, u64::from(r.retransmits[c]));
    key!("retransmits_s2c");
    number(buf, u64::from(r.retransmits[s]));
    key!("zero_windows_c2s");
    number(buf, u64::from(r.zero_windows[c]));
    key!("zero_windows_s2c");
    number(buf, u64::from(r.zero_windows[s]));
    key!("zero_window_us_c2s");
    number(buf, r.zero_window_us[c]);
    key!("zero_window_us_s2c");
    number(buf, r.zero_window_us[s]);
    key!("icmp");
    opt_text(buf, r.icmp.map(|i| i.kind.as_str()));
    key!("icmp_from");
    match r.icmp {
        Some(i) => {
            let _ = write!(buf, "\"{}\"", i.reporter);
        }
        None => buf.extend_from_slice(b"null"),
    }
    key!("client_options");
    options(buf, r.client_options);
    key!("server_options");
    options(buf, r.server_options);
    key!("ended_by");
    opt_text(buf, r.end.map(|e| e.as_str()));
    if let Some(p) = procs.and_then(|p| p.client.as_ref()) {
        key!("client_process");
        serialize(buf, &ProcessJson::from(p));
    }
    if let Some(p) = procs.and_then(|p| p.server.as_ref()) {
        key!("server_process");
        serialize(buf, &ProcessJson::from(p));
    }
    // The kernel's word (README: "The kernel object"); null without the witness.
    key!("kernel");
    match context.and_then(|c| c.kernel.as_ref()) {
        Some(k) => kernel_facts(buf, k),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b"}\n");
}

#[inline(always)]
fn number(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

#[inline(always)]
fn opt_number(buf: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => number(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

#[inline(always)]
fn boolean(buf: &mut Vec<u8>, v: bool) {
    buf.extend_from_slice(if v { b"true" } else { b"false" });
}

/// A text value known to need no escaping (an enum name, history letters).
#[inline(always)]
fn text(buf: &mut Vec<u8>, v: &str) {
    debug_assert!(v
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
    buf.push(b'"');
    buf.extend_from_slice(v.as_bytes());
    buf.push(b'"');
}

#[inline(always)]
fn opt_text(buf: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(v) => text(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

/// Seconds since the epoch with the capture's microseconds, exactly: `1700000000.000016`,
/// `1700000000.01`, `1700000000.0`. The same text serde_json's shortest round-trip
/// formatting gives for such an `f64` (its spacing near 2^31 s is 0.24 µs, so six
/// decimals always round-trip and none can be dropped), without float formatting.
fn timestamp(buf: &mut Vec<u8>, ts: Timestamp) {
    number(buf, ts.0 / 1_000_000);
    let mut micros = ts.0 % 1_000_000;
    if micros == 0 {
        buf.extend_from_slice(b".0");
        return;
    }
    let mut digits = 6;
    while micros % 10 == 0 {
        micros /= 10;
        digits -= 1;
    }
    let mut itoa = itoa::Buffer::new();
    let text = itoa.format(micros);
    buf.push(b'.');
    buf.extend(std::iter::repeat_n(b'0', digits - text.len()));
    buf.extend_from_slice(text.as_bytes());
}

/// `"127.0.0.1:61999"` or `"[::1]:61999"`, as [`Endpoint`]'s Display writes them: IPv4
/// octet by octet (the common case, and `fmt` was a visible cost), IPv6 through its
/// Display, which compresses zeros as RFC 5952 says.
fn endpoint(buf: &mut Vec<u8>, e: Endpoint) {
    buf.push(b'"');
    match e.addr {
        IpAddr::V4(a) => {
            let [a, b, c, d] = a.octets();
            number(buf, u64::from(a));
            buf.push(b'.');
            number(buf, u64::from(b));
            buf.push(b'.');
            number(buf, u64::from(c));
            buf.push(b'.');
            number(buf, u64::from(d));
        }
        IpAddr::V6(a) => {
            let _ = write!(buf, "[{a}]");
        }
    }
    buf.push(b':');
    number(buf, u64::from(e.port));
    buf.push(b'"');
}

/// The `kernel` object of a connection the kernel said nothing about, as
/// [`kernel_facts`] writes it (a test checks they agree).
const QUIET: &[u8] = br#"{"drops":[],"resets_sent":[],"resets_received":[],"states":{"client":null,"server":null},"synack_retransmits":0,"summarised":false}"#;
const QUIET_IN_STORM: &[u8] = br#"{"drops":[],"resets_sent":[],"resets_received":[],"states":{"client":null,"server":null},"synack_retransmits":0,"summarised":true}"#;

/// The `kernel` object, as serde would write [`KernelFacts`] (a test holds them equal),
/// assembled directly like the rest of the line: with the witness on, every flow line has
/// one, and serde's escaping scan and float formatting made it a third of the line's
/// cost. Reason and function names are the kernel's identifiers and state paths its state
/// names, none with anything to escape; a process name goes through serde.
fn kernel_facts(buf: &mut Vec<u8>, k: &KernelFacts) {
    // Most lines under a stream of connections: the kernel said nothing about them.
    if k.is_quiet() {
        buf.extend_from_slice(if k.summarised { QUIET_IN_STORM } else { QUIET });
        return;
    }
    buf.extend_from_slice(b"{\"drops\":[");
    for (i, d) in k.drops.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"reason\":");
        kernel_name(buf, &d.reason);
        buf.extend_from_slice(b",\"where\":");
        match d.place {
            Some(p) => kernel_name(buf, p),
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"path\":");
        text(buf, d.path.as_str());
        buf.extend_from_slice(b",\"dir\":");
        text(buf, d.dir.as_str());
        buf.extend_from_slice(b",\"what\":");
        text(buf, d.what);
        buf.extend_from_slice(b",\"count\":");
        number(buf, u64::from(d.count));
        buf.extend_from_slice(b",\"first_ts\":");
        timestamp(buf, d.first_ts);
        buf.extend_from_slice(b",\"last_ts\":");
        timestamp(buf, d.last_ts);
        buf.push(b'}');
    }
    buf.extend_from_slice(b"],\"resets_sent\":[");
    for (i, r) in k.resets_sent.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"by\":");
        text(buf, r.by.as_str());
        buf.extend_from_slice(b",\"origin\":");
        text(buf, r.origin.as_str());
        buf.extend_from_slice(b",\"reason\":");
        match &r.reason {
            Some(n) => kernel_name(buf, n),
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"pid\":");
        opt_number(buf, r.pid.map(u64::from));
        buf.extend_from_slice(b",\"process\":");
        serialize(buf, &r.process);
        buf.push(b'}');
    }
    buf.extend_from_slice(b"],\"resets_received\":[");
    for (i, side) in k.resets_received.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        text(buf, side.as_str());
    }
    buf.extend_from_slice(b"],\"states\":{\"client\":");
    state_path(buf, k.states.client);
    buf.extend_from_slice(b",\"server\":");
    state_path(buf, k.states.server);
    buf.extend_from_slice(b"},\"synack_retransmits\":");
    number(buf, u64::from(k.synack_retransmits));
    buf.extend_from_slice(b",\"summarised\":");
    boolean(buf, k.summarised);
    buf.push(b'}');
}

/// A name the kernel gave (`NETFILTER_DROP`, `nft_do_chain`): an identifier, escaped by
/// serde should it ever not be one.
fn kernel_name(buf: &mut Vec<u8>, name: &str) {
    if name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        text(buf, name);
    } else {
        serialize(buf, &name);
    }
}

/// `"SYN_SENT→ESTABLISHED→…"`: state names and arrows, written as serde writes them
/// (UTF-8 as is, nothing to escape).
fn state_path(buf: &mut Vec<u8>, path: Option<StatePath>) {
    match path {
        Some(p) => {
            buf.push(b'"');
            if p.cut {
                buf.extend_from_slice("…".as_bytes());
            }
            for (i, state) in p.states().enumerate() {
                if i > 0 || p.cut {
                    buf.extend_from_slice("→".as_bytes());
                }
                buf.extend_from_slice(state.as_str().as_bytes());
            }
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
}

fn serialize(buf: &mut Vec<u8>, v: &impl Serialize) {
    // Writing into a Vec cannot fail, and these types always serialize.
    let _ = serde_json::to_writer(&mut *buf, v);
}

fn options(buf: &mut Vec<u8>, o: Option<HandshakeOptions>) {
    let Some(o) = o else {
        buf.extend_from_slice(b"null");
        return;
    };
    buf.extend_from_slice(b"{\"mss\":");
    opt_number(buf, o.mss.map(u64::from));
    buf.extend_from_slice(b",\"window_scale\":");
    opt_number(buf, o.window_scale.map(u64::from));
    buf.extend_from_slice(b",\"sack_permitted\":");
    boolean(buf, o.sack_permitted);
    buf.extend_from_slice(b",\"timestamps\":");
    boolean(buf, o.timestamps);
    buf.push(b'}');
}

/// `{"type":"finding",…}`: the kind and severity names are a stable vocabulary, and
/// the field order here is the documented schema (README, "JSON output").
#[derive(Serialize)]
struct FindingLine<'a> {
    r#type: &'static str,
    /// `false` for a finding printed live, `true` in the final diagnosis.
    r#final: bool,
    kind: &'static str,
    severity: &'static str,
    headline: &'a str,
    explanation: &'a str,
    evidence: &'a Cause,
    processes: &'a [NamedProcess],
    next_step: &'a str,
    facts_changed: Vec<ChangeJson<'a>>,
    /// SYNs dropped only in windows between answered connections (absent otherwise).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    windows: &'a [Window],
}

/// A listener change: `{"change","listener","at","exact","process"}`.
#[derive(Serialize)]
struct ChangeJson<'a> {
    change: &'static str,
    #[serde(serialize_with = "display")]
    listener: Endpoint,
    /// Seconds since the epoch; the kernel's time of listen()/close() when `exact`,
    /// else when a look first saw the change.
    at: f64,
    exact: bool,
    process: Option<&'a ProcessInfo>,
}

impl<'a> From<&'a FactChange> for ChangeJson<'a> {
    fn from(c: &'a FactChange) -> ChangeJson<'a> {
        ChangeJson {
            change: c.kind.as_str(),
            listener: c.endpoint,
            // Microseconds as f64 seconds print back exactly (see `timestamp`).
            at: c.at.as_secs_f64(),
            exact: c.exact,
            process: c.process.as_ref(),
        }
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A finding as one JSON line; `last`: part of the final diagnosis.
pub fn write_finding(out: &mut dyn Write, f: &Finding, last: bool) -> io::Result<()> {
    let words = f.words();
    let line = FindingLine {
        r#type: "finding",
        r#final: last,
        kind: f.kind.as_str(),
        severity: f.severity.as_str(),
        headline: &words.headline,
        explanation: &words.explanation,
        evidence: &f.cause,
        processes: &f.processes,
        next_step: &words.next_step,
        facts_changed: f.facts_changed.iter().map(ChangeJson::from).collect(),
        windows: &f.windows,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// `{"type":"update","final":false,"change":"listener_started"|"listener_stopped",…}`: a
/// fact live findings rested on changed.
#[derive(Serialize)]
struct UpdateLine<'a> {
    r#type: &'static str,
    r#final: bool,
    #[serde(flatten)]
    change: ChangeJson<'a>,
    /// The live findings printed before the change.
    earlier_findings: Vec<&'static str>,
}

pub fn write_update(out: &mut dyn Write, u: &Update) -> io::Result<()> {
    let line = UpdateLine {
        r#type: "update",
        r#final: false,
        change: ChangeJson::from(&u.change),
        earlier_findings: u.earlier.iter().map(|k| k.as_str()).collect(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// `{"type":"update","final":true,"change":"superseded",…}`: a live finding the final
/// diagnosis does not repeat, and the listener changes since it was printed (empty: the
/// whole capture and the last look outweighed it).
#[derive(Serialize)]
struct SupersededLine<'a> {
    r#type: &'static str,
    r#final: bool,
    change: &'static str,
    finding: &'static str,
    headline: String,
    printed_at: f64,
    facts_changed: Vec<ChangeJson<'a>>,
    /// The final finding that tells what it saw instead, if one does.
    superseded_by: Option<&'static str>,
    /// What the capture saw after it was printed that took its ground away, if that is
    /// why.
    later: Option<&'static str>,
}

pub fn write_superseded(out: &mut dyn Write, s: &Superseded) -> io::Result<()> {
    let line = SupersededLine {
        r#type: "update",
        r#final: true,
        change: "superseded",
        finding: s.live.kind.as_str(),
        headline: s.live.headline(),
        printed_at: s.printed_at.as_secs_f64(),
        facts_changed: s.changes.iter().map(ChangeJson::from).collect(),
        superseded_by: s.by.map(crate::diagnose::FindingKind::as_str),
        later: s.later.map(crate::diagnose::Later::as_str),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{ChangeKind, FindingKind, Superseded, Update};

    /// The hand-made `kernel` object is byte for byte what serde writes for the same
    /// facts, in every shape a field takes.
    #[test]
    fn the_kernel_object_is_written_as_serde_would_write_it() {
        use crate::kernel::facts::{Dir, DropFact, PathName, ResetFact, ResetOrigin, States};
        use crate::kernel::TcpState;
        let drop = |reason: crate::kernel::names::Name, place, ts: u64| DropFact {
            reason,
            place,
            path: PathName::Egress,
            dir: Dir::S2c,
            what: "SYN-ACK",
            count: 3,
            first_ts: Timestamp(ts),
            last_ts: Timestamp(ts + 1_500_000),
            reason_code: 6,
        };
        let reset = |reason, process: Option<&str>| ResetFact {
            by: Side::Server,
            origin: ResetOrigin::Socket,
            reason,
            pid: process.map(|_| 4242),
            process: process.map(str::to_string),
        };
        let full = KernelFacts {
            drops: vec![
                drop(
                    "NETFILTER_DROP".into(),
                    Some("nft_do_chain"),
                    1_700_000_000_000_016,
                ),
                drop(
                    "DROP_REASON_999".to_string().into(),
                    None,
                    1_700_000_001_000_000,
                ),
                drop(
                    "ODD \"NAME\"".into(),
                    Some("a.isra.0"),
                    1_700_000_002_100_000,
                ),
            ],
            resets_sent: vec![
                reset(Some("TCP_ABORT_ON_CLOSE".into()), Some("py \"srv\"\u{1}")),
                reset(None, None),
            ],
            resets_received: vec![Side::Client, Side::Server],
            states: States {
                client: Some({
                    let mut p = StatePath::of(&[TcpState::FinWait2, TcpState::TimeWait]);
                    p.cut = true;
                    p
                }),
                server: None,
            },
            synack_retransmits: 2,
            summarised: true,
        };
        // The quiet ones too (written from constants), in a storm and not.
        for k in [full, KernelFacts::default(), KernelFacts::quiet(true)] {
            let mut ours = Vec::new();
            kernel_facts(&mut ours, &k);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&k).unwrap()
            );
        }
    }

    fn stopped() -> FactChange {
        FactChange {
            kind: ChangeKind::ListenerStopped,
            endpoint: crate::diagnose::tests::ep("[::1]:61999"),
            at: Timestamp(1_700_000_005_100_000),
            exact: true,
            from: Timestamp(1_700_000_005_100_000),
            process: Some(ProcessInfo {
                pid: 4242,
                name: "python3".into(),
                cmdline: "python3 server.py".into(),
                user: "root".into(),
            }),
            seq: 0,
        }
    }

    fn refused_finding() -> Finding {
        crate::diagnose::Finding::new(
            Cause::NothingListening(crate::diagnose::cause::Refused {
                refused: 1,
                server: crate::diagnose::tests::ep("127.0.0.1:61999"),
                kernel: None,
                port: 61999,
                basis: crate::diagnose::cause::Basis::Host,
            }),
            1,
        )
    }

    fn line(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> serde_json::Value {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        assert!(out.ends_with(b"\n"));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_finding_line_says_whether_it_is_live_or_final_and_what_changed_since() {
        let live = line(|o| write_finding(o, &refused_finding(), false));
        assert_eq!(live["final"], false);
        assert_eq!(live["facts_changed"], serde_json::json!([]));
        let mut f = refused_finding();
        f.facts_changed.push(stopped());
        let last = line(|o| write_finding(o, &f, true));
        assert_eq!(last["final"], true);
        assert_eq!(
            last["facts_changed"][0],
            serde_json::json!({"change":"listener_stopped","listener":"[::1]:61999","at":1700000005.1,
                "exact":true,"process":{"pid":4242,"name":"python3","cmdline":"python3 server.py","user":"root"}})
        );
        let keys: Vec<&String> = last.as_object().unwrap().keys().collect();
        assert_eq!(
            keys[..3],
            ["type", "final", "kind"],
            "serde_json keeps the order: {keys:?}"
        );
    }

    #[test]
    fn an_update_line_names_the_change_and_the_findings_printed_before_it() {
        let u = Update {
            change: stopped(),
            earlier: vec![FindingKind::ListenerOtherFamily],
        };
        let v = line(|o| write_update(o, &u));
        assert_eq!(v["type"], "update");
        assert_eq!(v["final"], false);
        assert_eq!(v["change"], "listener_stopped");
        assert_eq!(v["listener"], "[::1]:61999");
        assert_eq!(v["process"]["pid"], 4242);
        assert_eq!(
            v["earlier_findings"],
            serde_json::json!(["listener_other_family"])
        );
    }

    #[test]
    fn a_superseded_live_finding_is_a_final_update_with_why() {
        let s = Superseded {
            live: refused_finding(),
            printed_at: Timestamp(1_700_000_002_400_000),
            changes: vec![stopped()],
            by: None,
            later: None,
        };
        let v = line(|o| write_superseded(o, &s));
        assert_eq!((&v["type"], &v["final"]), (&"update".into(), &true.into()));
        assert_eq!(v["change"], "superseded");
        assert_eq!(v["finding"], "nothing_listening");
        assert_eq!(v["printed_at"], 1_700_000_002.4);
        assert_eq!(v["facts_changed"][0]["change"], "listener_stopped");
    }

    fn ts_text(micros: u64) -> String {
        let mut buf = b"\"t\":".to_vec();
        timestamp(&mut buf, Timestamp(micros));
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

//! The `{"type":"summary",…}` line as typed structs: the field order of each struct is
//! the documented schema (README, "JSON output"), so a field is added in one place and
//! cannot be misspelt. The last line of a `--json` run, written once: not a hot path.
//!
//! This module only lays out what [`Summary`] holds; it counts and decides nothing.

use crate::capture::KernelStats;
use crate::decode::SkipCounts;
use crate::diagnose::host::Counter;
use crate::diagnose::Evidence;
use crate::diagnose::{ListenerView, ProcessInfo, SystemView};
use crate::flow::{Outcome, Side};
use crate::privileges::Credentials;
use crate::report::summary::{KernelEventsView, Percentiles, Summary};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};

/// The summary line, last of a `--json` run.
pub fn write_summary(out: &mut dyn Write, s: &Summary<'_>) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &SummaryLine::new(s))?;
    out.write_all(b"\n")
}

#[derive(Serialize)]
struct SummaryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    source: &'a str,
    live: bool,
    link_type: &'a str,
    port: u16,
    flows: u64,
    problems: u64,
    /// Every outcome, zero or not, in [`Outcome::ALL`] order.
    outcomes: Outcomes<'a>,
    syn_retransmits: u64,
    synack_retransmits: u64,
    resets: BySide,
    /// Who closed first, hence holds TIME_WAIT.
    time_wait: BySide,
    port_reused: u64,
    midstream: u64,
    retransmits: u64,
    zero_windows: u64,
    handshake_rtt_us: PercentilesJson,
    duration_us: PercentilesJson,
    packets: Packets<'a>,
    kernel: Option<Kernel>,
    internal_dropped: u64,
    flows_evicted: u64,
    peak_flows: u64,
    icmp_unmatched: u64,
    error: Option<&'a str>,
    credentials: Option<CredentialsJson<'a>>,
    system: Option<System<'a>>,
    kernel_events: &'a KernelEventsView,
}

impl<'a> SummaryLine<'a> {
    fn new(s: &'a Summary<'a>) -> SummaryLine<'a> {
        let t = s.tally;
        SummaryLine {
            kind: "summary",
            source: s.source,
            live: s.live,
            link_type: s.link,
            port: s.port,
            flows: t.flows(),
            problems: t.problems(),
            outcomes: Outcomes(t),
            syn_retransmits: t.syn_retransmits,
            synack_retransmits: t.synack_retransmits,
            resets: BySide {
                client: t.resets_by(Side::Client),
                server: t.resets_by(Side::Server),
            },
            time_wait: BySide {
                client: t.time_wait_on(Side::Client),
                server: t.time_wait_on(Side::Server),
            },
            port_reused: t.port_reused,
            midstream: t.midstream,
            retransmits: t.retransmits,
            zero_windows: t.zero_windows,
            handshake_rtt_us: PercentilesJson::from(&s.handshake_rtt),
            duration_us: PercentilesJson::from(&s.duration),
            packets: Packets {
                captured: s.packets,
                decoded: s.decoded,
                not_in_flows: NotInFlows {
                    icmp_errors: s.table.icmp_errors,
                    after_close: s.table.after_close,
                    copies: s.table.copies,
                },
                syns_elsewhere: s.syns_elsewhere,
                skipped: s.skipped.total(),
                skipped_by_reason: Skipped(&s.skipped),
                expression: s.expression,
                filtered_out: s.filtered_out,
            },
            kernel: s.kernel.map(Kernel::from),
            internal_dropped: s.internal_dropped,
            flows_evicted: s.table.evicted,
            peak_flows: s.table.peak_flows,
            icmp_unmatched: s.table.icmp_unmatched,
            error: s.error.as_deref(),
            credentials: s.credentials.as_ref().map(CredentialsJson::from),
            system: s.system.as_ref().map(System::from),
            kernel_events: &s.kernel_events,
        }
    }
}

/// `{"unanswered":0,"refused":1,…}`: every outcome by name.
struct Outcomes<'a>(&'a Evidence);

impl Serialize for Outcomes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Outcome::ALL.len()))?;
        for o in Outcome::ALL {
            map.serialize_entry(o.as_str(), &self.0.count(o))?;
        }
        map.end()
    }
}

/// `{"truncated":3,…}`: only the reasons that occurred, in a fixed order.
struct Skipped<'a>(&'a SkipCounts);

impl Serialize for Skipped<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (reason, n) in self.0.iter() {
            map.serialize_entry(reason.as_str(), &n)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct BySide {
    client: u64,
    server: u64,
}

#[derive(Serialize)]
struct PercentilesJson {
    count: u64,
    p50: Option<u64>,
    p90: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
}

impl From<&Percentiles> for PercentilesJson {
    fn from(p: &Percentiles) -> PercentilesJson {
        PercentilesJson {
            count: p.count,
            p50: p.p50,
            p90: p.p90,
            p99: p.p99,
            max: p.max,
        }
    }
}

#[derive(Serialize)]
struct Packets<'a> {
    captured: u64,
    decoded: u64,
    /// The decoded packets counted in no flow's `packets`: `decoded` is their sum plus
    /// the flows' (each flow's last record: its `flow_update` if it has one).
    not_in_flows: NotInFlows,
    syns_elsewhere: u64,
    skipped: u64,
    skipped_by_reason: Skipped<'a>,
    expression: Option<&'a str>,
    filtered_out: u64,
}

/// Decoded packets that are no flow's packets.
#[derive(Serialize)]
struct NotInFlows {
    /// ICMP errors: they end a flow's attempt (or match none) but are not its packets.
    icmp_errors: u64,
    /// TCP segments to a connection past its close delay, while its tombstone still held
    /// the 4-tuple: its record was written, and they start no new connection.
    after_close: u64,
    /// The segments of connections captured twice but shown once (`-i any`: a tunnel
    /// this host ends, a DNAT port map), in the copy not shown.
    copies: u64,
}

#[derive(Serialize)]
struct Kernel {
    received: u64,
    dropped: u64,
    if_dropped: u64,
}

impl From<KernelStats> for Kernel {
    fn from(k: KernelStats) -> Kernel {
        Kernel {
            received: k.received,
            dropped: k.dropped,
            if_dropped: k.if_dropped,
        }
    }
}

#[derive(Serialize)]
struct CredentialsJson<'a> {
    uid: u32,
    gid: u32,
    cap_effective: &'a str,
    cap_permitted: &'a str,
    cap_inheritable: &'a str,
    cap_bounding: &'a str,
    cap_ambient: &'a str,
}

impl<'a> From<&'a Credentials> for CredentialsJson<'a> {
    fn from(c: &'a Credentials) -> CredentialsJson<'a> {
        CredentialsJson {
            uid: c.uid,
            gid: c.gid,
            cap_effective: &c.cap_effective,
            cap_permitted: &c.cap_permitted,
            cap_inheritable: &c.cap_inheritable,
            cap_bounding: &c.cap_bounding,
            cap_ambient: &c.cap_ambient,
        }
    }
}

#[derive(Serialize)]
struct System<'a> {
    listeners: Vec<ListenerJson<'a>>,
    sockets: Vec<Sockets>,
    /// Kernel counters that grew during the capture, by name.
    counters_delta: &'a BTreeMap<Counter, u64>,
}

impl<'a> From<&'a SystemView> for System<'a> {
    fn from(sys: &'a SystemView) -> System<'a> {
        System {
            listeners: sys.listeners.iter().map(ListenerJson::from).collect(),
            sockets: sys
                .sockets
                .iter()
                .map(|(&(state, held_by), &count)| Sockets {
                    state,
                    held_by,
                    count,
                })
                .collect(),
            counters_delta: &sys.counters,
        }
    }
}

#[derive(Serialize)]
struct ListenerJson<'a> {
    local: &'a str,
    accept_queue: u32,
    backlog: Option<u32>,
    group: usize,
    namespace: Option<&'a str>,
    processes: &'a [ProcessInfo],
}

impl<'a> From<&'a ListenerView> for ListenerJson<'a> {
    fn from(l: &'a ListenerView) -> ListenerJson<'a> {
        ListenerJson {
            local: &l.local,
            accept_queue: l.accept_queue,
            backlog: l.backlog,
            group: l.group,
            namespace: l.namespace.as_deref(),
            processes: &l.processes,
        }
    }
}

/// Sockets on the port in one state, held by one side.
#[derive(Serialize)]
struct Sockets {
    state: &'static str,
    held_by: &'static str,
    count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureReport;
    use crate::decode::SkipReason;
    use crate::flow::TableStats;

    /// A summary with every optional part present, so each nested struct is written.
    fn full(tally: &Evidence, system: SystemView) -> String {
        let mut capture = CaptureReport {
            packets: 10,
            decoded: 7,
            syns_elsewhere: 1,
            internal_dropped: 2,
            filtered_out: 4,
            kernel: Some(KernelStats {
                received: 11,
                dropped: 1,
                if_dropped: 0,
            }),
            ..CaptureReport::default()
        };
        capture.skipped.add(SkipReason::ALL[0]);
        capture.skipped.add(SkipReason::ALL[2]);
        capture.skipped.add(SkipReason::ALL[2]);
        let table = TableStats {
            flows: 3,
            evicted: 1,
            icmp_unmatched: 2,
            peak_flows: 3,
            icmp_errors: 0,
            after_close: 0,
            copies: 0,
        };
        let s = Summary {
            expression: Some("host 10.0.0.1"),
            system: Some(system),
            credentials: Some(Credentials {
                uid: 1000,
                gid: 1000,
                cap_effective: "0000000000002000".into(),
                cap_permitted: "0000000000002000".into(),
                cap_inheritable: "0".into(),
                cap_bounding: "000001ffffffffff".into(),
                cap_ambient: "0".into(),
            }),
            error: Some("truncated \"file\"".into()),
            kernel_events: KernelEventsView {
                enabled: true,
                why: None,
                events: 12,
                lost: 1,
                summarised: 0,
                storm: Vec::new(),
            },
            ..Summary::new("eth0", true, "EN10MB", 61999, tally, &capture, table)
        };
        let mut out = Vec::new();
        write_summary(&mut out, &s).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn summary_line_keeps_the_documented_field_order() {
        let mut tally = Evidence::default();
        let r = crate::diagnose::tests::record(Outcome::Refused, "127.0.0.1:61999");
        tally.add(&r);
        let p = ProcessInfo {
            pid: 42,
            name: "srv".into(),
            cmdline: "srv --port 61999".into(),
            user: "www".into(),
        };
        let system = SystemView {
            listeners: vec![ListenerView {
                local: "0.0.0.0:61999".into(),
                accept_queue: 3,
                backlog: Some(128),
                group: 2,
                namespace: Some("net:[4026531840]".into()),
                processes: vec![p],
            }],
            sockets: [(("time_wait", "client"), 5), (("established", "server"), 1)]
                .into_iter()
                .collect(),
            counters: [(Counter::ListenOverflows, 3), (Counter::TcpAbortOnClose, 1)]
                .into_iter()
                .collect(),
        };
        let line = full(&tally, system);
        assert_eq!(line, EXPECTED, "\n{line}");
    }

    const EXPECTED: &str = concat!(
        r#"{"type":"summary","source":"eth0","live":true,"link_type":"EN10MB","port":61999,"flows":1,"problems":1,"outcomes":{"unanswered":0,"refused":1,"unreachable":0,"handshake_incomplete":0,"established":0,"closed":0,"half_closed":0,"reset":0},"syn_retransmits":0,"synack_retransmits":0,"resets":{"client":0,"server":0},"time_wait":{"client":0,"server":0},"port_reused":0,"midstream":0,"retransmits":0,"zero_windows":0,"handshake_rtt_us":{"count":0,"p50":null,"p90":null,"p99":null,"max":null},"duration_us":{"count":1,"p50":1,"p90":1,"p99":1,"max":1},"packets":{"captured":10,"decoded":7,"not_in_flows":{"icmp_errors":0,"after_close":0,"copies":0},"syns_elsewhere":1,"skipped":3,"skipped_by_reason":{"truncated":1,"bad_ip_header":2},"expression":"host 10.0.0.1","filtered_out":4},"kernel":{"received":11,"dropped":1,"if_dropped":0},"internal_dropped":2,"flows_evicted":1,"peak_flows":3,"icmp_unmatched":2,"error":"truncated \"file\"","credentials":{"uid":1000,"gid":1000,"cap_effective":"0000000000002000","cap_permitted":"0000000000002000","cap_inheritable":"0","cap_bounding":"000001ffffffffff","cap_ambient":"0"},"system":{"listeners":[{"local":"0.0.0.0:61999","accept_queue":3,"backlog":128,"group":2,"namespace":"net:[4026531840]","processes":[{"pid":42,"name":"srv","cmdline":"srv --port 61999","user":"www"}]}],"sockets":[{"state":"established","held_by":"server","count":1},{"state":"time_wait","held_by":"client","count":5}],"counters_delta":{"ListenOverflows":3,"TCPAbortOnClose":1}},"kernel_events":{"enabled":true,"why":null,"events":12,"lost":1,"summarised":0,"storm":[]}}"#,
        "\n"
    );
}

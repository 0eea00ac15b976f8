//! `--metrics`: the run's counts in the OpenMetrics text format, and the HTTP answer to a
//! scrape. Laid out only: every value is read from a [`Snapshot`] of the run's one count
//! ([`Evidence`], the same the summary and the exit status read) and the capture's
//! counters, taken by the flow stage; nothing here counts. No client address is a label:
//! a series per client would grow without bound.
//!
//! The pipeline's `metrics` thread owns the socket; this module only turns a request's
//! head into response bytes.

use super::live::CaptureNow;
use crate::diagnose::findings::FindingKind;
use crate::diagnose::{Buckets, Evidence};
use crate::flow::{Outcome, Side};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;

/// Handshake RTT bucket bounds, µs: loopback (tens of µs) to an intercontinental path
/// or a retransmitted SYN-ACK (seconds).
const RTT_BOUNDS_US: [u64; 10] = [
    100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000,
];
/// Connection duration bounds, µs: a refusal (µs) to a long-lived connection (an hour).
const DURATION_BOUNDS_US: [u64; 9] = [
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    60_000_000,
    300_000_000,
    900_000_000,
    3_600_000_000,
];

/// The counts a scrape shows, as of the flow stage's last look.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub capture: CaptureNow,
    outcomes: [u64; Outcome::ALL.len()],
    resets: [u64; 2],
    syn_retransmits: u64,
    handshake_rtt: Buckets,
    duration: Buckets,
    /// By `FindingKind::ALL`'s order: whether the live diagnosis has said it.
    said: [bool; FindingKind::ALL.len()],
    kernel_events_lost: u64,
    kernel_events_summarised: u64,
}

/// The kernel witness's counts a scrape shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelEventCounts {
    /// Events lost so far (its ring buffer full, or portsniff behind).
    pub lost: u64,
    /// Events storms counted by kind so far, as last read.
    pub summarised: u64,
}

impl Snapshot {
    /// Before the first connection: every series at 0 from the first scrape, so that
    /// `rate()` has a start.
    pub fn empty(port: u16) -> Snapshot {
        Snapshot {
            capture: CaptureNow {
                port,
                ..CaptureNow::default()
            },
            ..Snapshot::default()
        }
    }

    /// `said`: the finding kinds printed live so far; `kernel`: the witness's counts so
    /// far.
    pub fn of(
        ev: &Evidence,
        said: impl Iterator<Item = FindingKind>,
        capture: CaptureNow,
        kernel: KernelEventCounts,
    ) -> Snapshot {
        let mut said_kinds = [false; FindingKind::ALL.len()];
        for kind in said {
            if let Some(i) = FindingKind::ALL.iter().position(|&k| k == kind) {
                said_kinds[i] = true;
            }
        }
        Snapshot {
            capture,
            outcomes: Outcome::ALL.map(|o| ev.count(o)),
            resets: [ev.resets_by(Side::Client), ev.resets_by(Side::Server)],
            syn_retransmits: ev.syn_retransmits,
            handshake_rtt: ev.handshake_rtt_buckets(&RTT_BOUNDS_US),
            duration: ev.duration_buckets(&DURATION_BOUNDS_US),
            said: said_kinds,
            kernel_events_lost: kernel.lost,
            kernel_events_summarised: kernel.summarised,
        }
    }

    /// The OpenMetrics text exposition, `# EOF` last.
    pub fn exposition(&self) -> String {
        let mut registry = Registry::with_labels(
            [("port".into(), self.capture.port.to_string().into())].into_iter(),
        );
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; the encoder's errors come from the writer.
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            text.clear();
        }
        text
    }
}

/// A counter family with one label.
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'static str, u64)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        ConstCounter::new(n).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, n: u64) -> fmt::Result {
    ConstCounter::new(n).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    b: &Buckets,
    bounds_us: &[u64],
) -> fmt::Result {
    let mut metric =
        enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    // The encoder takes each bucket's own count and adds them up; `f64::MAX` is +Inf.
    let mut below = 0;
    let mut buckets: Vec<(f64, u64)> = bounds_us
        .iter()
        .zip(&b.at_or_below)
        .map(|(&bound, &at)| {
            let own = at.saturating_sub(below);
            below = below.max(at);
            (bound as f64 / 1e6, own)
        })
        .collect();
    buckets.push((f64::MAX, b.count.saturating_sub(below)));
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        b.sum_us as f64 / 1e6,
        b.count,
        &buckets,
        None,
    )
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        counters(
            &mut enc,
            "portsniff_connections",
            "Finished connections to the port, by outcome (problems: unanswered, refused, unreachable, handshake_incomplete, reset).",
            "outcome",
            Outcome::ALL.iter().map(|&o| (o.as_str(), self.outcomes[o.index()])),
        )?;
        counters(
            &mut enc,
            "portsniff_resets",
            "Accepted connections torn down by a RST, by the side that sent it.",
            "by",
            [("client", self.resets[0]), ("server", self.resets[1])].into_iter(),
        )?;
        counter(
            &mut enc,
            "portsniff_syn_retransmits",
            "Client SYNs sent again (a lost SYN, or no answer).",
            self.syn_retransmits,
        )?;
        histogram(
            &mut enc,
            "portsniff_handshake_rtt",
            "From the SYN the SYN-ACK answered to the client's final ACK.",
            &self.handshake_rtt,
            &RTT_BOUNDS_US,
        )?;
        histogram(
            &mut enc,
            "portsniff_connection_duration",
            "Finished connections' first to last packet.",
            &self.duration,
            &DURATION_BOUNDS_US,
        )?;
        let mut findings = enc.encode_descriptor(
            "portsniff_findings_active",
            "1 once the live diagnosis has said a finding of this kind (a finding, once said, stands for the run).",
            None,
            MetricType::Gauge,
        )?;
        for (kind, said) in FindingKind::ALL.iter().zip(self.said) {
            ConstGauge::new(i64::from(said))
                .encode(findings.encode_family(&[("kind", kind.as_str())])?)?;
        }
        counter(
            &mut enc,
            "portsniff_packets_captured",
            "Packets read from the capture (those the kernel filter passed).",
            self.capture.packets,
        )?;
        counters(
            &mut enc,
            "portsniff_packets_dropped",
            "Packets lost: the kernel's capture buffer was full (kernel), or portsniff's flow stage fell behind (portsniff).",
            "by",
            [
                ("kernel", self.capture.kernel_dropped),
                ("portsniff", self.capture.internal_dropped),
            ]
            .into_iter(),
        )?;
        counter(
            &mut enc,
            "portsniff_kernel_events_lost",
            "Kernel witness events lost (its ring buffer full, or portsniff behind).",
            self.kernel_events_lost,
        )?;
        counter(
            &mut enc,
            "portsniff_kernel_events_summarised",
            "Kernel witness events counted by kind in storms instead of sent one by one.",
            self.kernel_events_summarised,
        )?;
        ConstGauge::new(i64::try_from(self.capture.tracked).unwrap_or(i64::MAX))
            .encode(enc.encode_descriptor(
            "portsniff_flows_tracked",
            "Connections held in the flow table now (open, closing, or kept to spot port reuse).",
            None,
            MetricType::Gauge,
        )?)
    }
}

/// The OpenMetrics media type; Prometheus asks for it and parses `# EOF` and units.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus's older text format, for clients that do not ask for OpenMetrics (curl,
/// `promtool check metrics`, older scrapers), as the official Go client negotiates.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition in Prometheus's text format 0.0.4. It differs from OpenMetrics, for
/// what this module writes, in three ways: a counter's HELP and TYPE name its samples
/// (`x_total`, where OpenMetrics names the family `x`), there are no `# UNIT` lines, and
/// no `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(&name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Whether the request's `Accept` header asks for OpenMetrics (Prometheus's does).
fn wants_openmetrics(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value.contains("application/openmetrics-text")
        })
    })
}

/// The whole HTTP/1.1 response to a request whose head (request line and headers) is
/// `head`: `GET /metrics` (or `HEAD`) gets the exposition, in OpenMetrics when the
/// client accepts it, else in Prometheus's text format; anything else a short error.
/// The connection is closed after it.
pub fn respond(head: &[u8], snapshot: &Snapshot) -> Vec<u8> {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut words = line.split(|&b| b == b' ');
    let (method, target) = (words.next().unwrap_or(&[]), words.next().unwrap_or(&[]));
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    let (status, content_type, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") if wants_openmetrics(head) => {
            ("200 OK", OPENMETRICS, snapshot.exposition())
        }
        (b"GET" | b"HEAD", b"/metrics") => (
            "200 OK",
            PROMETHEUS_TEXT,
            prometheus_text(&snapshot.exposition()),
        ),
        (b"GET" | b"HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "portsniff serves its metrics at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != b"HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::tests::{record, refused};

    fn snapshot() -> Snapshot {
        let mut ev = Evidence::default();
        ev.add(&refused("127.0.0.1:61999"));
        ev.add(&refused("127.0.0.1:61999"));
        ev.add(&record(Outcome::Closed, "127.0.0.1:61999"));
        Snapshot::of(
            &ev,
            [FindingKind::NothingListening].into_iter(),
            CaptureNow {
                port: 61999,
                packets: 9,
                ..CaptureNow::default()
            },
            KernelEventCounts {
                lost: 0,
                summarised: 29_900,
            },
        )
    }

    #[test]
    fn a_scrape_shows_connections_by_outcome_with_the_port_and_no_client() {
        let text = snapshot().exposition();
        assert!(
            text.contains(r#"portsniff_connections_total{port="61999",outcome="refused"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"portsniff_connections_total{port="61999",outcome="closed"} 1"#));
        assert!(
            text.contains(r#"portsniff_kernel_events_summarised_total{port="61999"} 29900"#),
            "{text}"
        );
        assert!(
            text.contains(r#"portsniff_findings_active{port="61999",kind="nothing_listening"} 1"#)
        );
        assert!(text.contains("# TYPE portsniff_handshake_rtt_seconds histogram"));
        assert!(text.contains("portsniff_connection_duration_seconds_count{port=\"61999\"} 3"));
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("127.0.0.1"), "no addresses as labels");
    }

    #[test]
    fn only_get_metrics_is_served() {
        let s = snapshot();
        let om = b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n";
        let ok = String::from_utf8(respond(om, &s)).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.contains("# EOF"));
        let plain = String::from_utf8(respond(b"GET /metrics HTTP/1.1\r\n\r\n", &s)).unwrap();
        assert!(plain.contains("text/plain; version=0.0.4"));
        assert!(plain.contains("# TYPE portsniff_connections_total counter\n"));
        assert!(!plain.contains("# EOF") && !plain.contains("# UNIT"));
        let head = String::from_utf8(respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &s)).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && !head.contains("# HELP"));
        assert!(respond(b"GET / HTTP/1.1\r\n\r\n", &s).starts_with(b"HTTP/1.1 404"));
        assert!(respond(b"POST /metrics HTTP/1.1\r\n\r\n", &s).starts_with(b"HTTP/1.1 405"));
    }
}

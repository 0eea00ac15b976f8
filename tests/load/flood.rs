//! A SYN flood from many sources inside a network namespace, captured live.

use super::harness::{mib, proc_comm, proc_status_kib, RssSampler};
use crate::support::live::{flows, have_root, skip, summary, which, Netns, Sniffer, EXIT_TIMEOUT};
use crate::{extra_args, heavy, u};
use serde_json::Value;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What the live SYN flood saw.
struct Flood {
    /// SYNs sent (non-blocking connects in progress).
    sent: u64,
    code: Option<i32>,
    stderr: String,
    summary: Value,
    /// Final flow records printed, and those with `ended_by` `evicted`.
    finals: u64,
    evicted_lines: u64,
    /// VmRSS (KiB) every 500 ms during the flood; VmHWM at its end.
    rss: Vec<u64>,
    hwm: u64,
}

/// The SYN flood of [`live_syn_flood_at_a_bounded_rate`], run once for the two tests
/// that judge it. `None` when skipped (no root, no iptables, no namespaces).
fn shared_flood(test: &str) -> Option<&'static Flood> {
    static FLOOD: OnceLock<Option<Flood>> = OnceLock::new();
    if !have_root(test) {
        return None;
    }
    let _heavy = heavy();
    FLOOD.get_or_init(|| syn_flood(test)).as_ref()
}

/// SYNs sent by [`syn_flood`], their rate, and the flow cap.
const FLOOD_ATTEMPTS: u16 = 20_000;
const FLOOD_SYN_INTERVAL_US: u64 = 250; // 4,000 a second
const FLOOD_CAP: u64 = 1_000;

/// 20,000 SYNs over 5 s, each from its own source port, inside a fresh network namespace
/// whose firewall drops them, captured with `--max-flows 1000`.
fn syn_flood(test: &str) -> Option<Flood> {
    const FIRST_PORT: u16 = 20_000;
    const PORT: u16 = 61_999; // a fresh namespace: nothing else uses it
    if which("iptables").is_none() {
        skip(
            test,
            "needs iptables to drop SYNs inside a network namespace",
        );
        return None;
    }
    let ns = Netns::create(test)?;
    let port_s = PORT.to_string();
    ns.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", &port_s, "--syn", "-j", "DROP",
    ]);
    let cap_s = FLOOD_CAP.to_string();
    let extra = extra_args();
    let mut args = vec![
        "-i",
        "lo",
        "--port",
        &port_s,
        "--json",
        "--max-flows",
        &cap_s,
        "--duration",
        "60",
    ];
    args.extend(extra.iter().map(String::as_str));
    let mut sniffer = Sniffer::spawn(
        ns.portsniff(&args),
        "ip netns exec NS portsniff -i lo --max-flows 1000",
    );
    sniffer.wait_for_banner();
    let pid = sniffer.pid();
    assert_eq!(
        proc_comm(pid).as_deref(),
        Some("portsniff"),
        "test setup: `ip netns exec` should exec portsniff in place, so the child's PID is \
         portsniff's"
    );
    eprintln!("{test}: portsniff is pid {pid}");
    let sampler = RssSampler::start(pid, Duration::from_millis(500));

    // At most 256 sockets open at a time (64 ms each: closed long before the first SYN
    // retransmission at 1 s, and closing a SYN_SENT socket sends nothing). Bounded by
    // count and by time (10 s).
    let attacker = ns.on_thread(move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let start = Instant::now();
        let give_up = start + Duration::from_secs(10);
        let server: SocketAddr = (Ipv4Addr::LOCALHOST, PORT).into();
        let mut open: VecDeque<Socket> = VecDeque::with_capacity(257);
        let mut sent = 0u64;
        for i in 0..FLOOD_ATTEMPTS {
            if Instant::now() >= give_up {
                break;
            }
            let due = start + Duration::from_micros(FLOOD_SYN_INTERVAL_US * u64::from(i));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
                .expect("attacker socket");
            sock.set_nonblocking(true).expect("non-blocking socket");
            let local: SocketAddr = (Ipv4Addr::LOCALHOST, FIRST_PORT + i).into();
            sock.bind(&local.into())
                .unwrap_or_else(|e| panic!("test setup: bind {local}: {e}"));
            match sock.connect(&server.into()) {
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => sent += 1,
                other => panic!(
                    "test setup: a non-blocking connect should be in progress, got {other:?}"
                ),
            }
            open.push_back(sock);
            if open.len() > 256 {
                open.pop_front();
            }
        }
        (sent, start.elapsed())
    });
    let (sent, took) = attacker.join().expect("attacker thread");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        proc_status_kib(pid, "VmRSS").is_some(),
        "portsniff exited during the SYN flood"
    );
    let rss: Vec<u64> = sampler.finish().into_iter().map(|(_, k)| k).collect();
    let hwm = proc_status_kib(pid, "VmHWM").unwrap_or(0);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    drop(ns);
    let lines = run.json();
    let summary = summary(&lines, "(flood output not shown)").clone();
    let finals: Vec<&Value> = flows(&lines)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["final"] == true)
        .collect();
    let flood = Flood {
        sent,
        code: run.code(),
        stderr: run.stderr.clone(),
        finals: finals.len() as u64,
        evicted_lines: finals.iter().filter(|v| v["ended_by"] == "evicted").count() as u64,
        summary,
        rss,
        hwm,
    };
    let s = &flood.summary;
    eprintln!(
        "{test}: {sent} SYNs in {took:.2?}; portsniff: captured {}, flows {}, unanswered \
         {}, evicted {}, peak_flows {}, kernel dropped {}, internal dropped {}; VmRSS \
         first {}, max {}, VmHWM {}",
        s["packets"]["captured"],
        s["flows"],
        s["outcomes"]["unanswered"],
        s["flows_evicted"],
        s["peak_flows"],
        s["kernel"]["dropped"],
        s["internal_dropped"],
        mib(flood.rss.first().copied().unwrap_or(0)),
        mib(flood.rss.iter().copied().max().unwrap_or(0)),
        mib(hwm)
    );
    Some(flood)
}

/// A SYN flood at a bounded rate (20,000 SYNs over ~5 s from distinct source ports)
/// inside a network namespace whose firewall drops the SYNs, captured with
/// `--max-flows 1000`: portsniff keeps running, evicts, keeps its memory bounded, and
/// every captured SYN is one unanswered connection in its summary.
#[test]
fn live_syn_flood_at_a_bounded_rate() {
    const TEST: &str = "live_syn_flood_at_a_bounded_rate";
    let Some(f) = shared_flood(TEST) else {
        return;
    };
    let s = &f.summary;
    let captured = u(&s["packets"]["captured"]);
    let unanswered = u(&s["outcomes"]["unanswered"]);
    let evicted = u(&s["flows_evicted"]);
    let flows_n = u(&s["flows"]);
    let kernel_dropped = s["kernel"]["dropped"].as_u64().unwrap_or(0);
    let internal = u(&s["internal_dropped"]);
    assert_eq!(
        f.code,
        Some(1),
        "portsniff should run through the flood and exit 1 (unanswered connections) on \
         SIGINT; stderr:\n{}",
        f.stderr
    );
    assert!(
        evicted > 0 && u(&s["peak_flows"]) <= FLOOD_CAP,
        "with {} SYNs and --max-flows {FLOOD_CAP}, flows must be evicted and the table \
         must never hold more than {FLOOD_CAP}: {s}",
        f.sent
    );
    // Every SYN portsniff received is one connection attempt: reported unanswered, once.
    assert_eq!(
        (unanswered + internal, flows_n, f.finals, f.evicted_lines),
        (captured, unanswered, unanswered, evicted),
        "each captured SYN (captured {captured}, of which internal_dropped {internal}) \
         should be one unanswered connection with one final record, the evicted ones \
         marked ended_by evicted (flows {flows_n}, unanswered {unanswered}, final records \
         {}, evicted {evicted} / {} records): {s}",
        f.finals,
        f.evicted_lines
    );
    // All but the flows still in the table at the end were evicted.
    assert_eq!(
        evicted,
        flows_n.saturating_sub(FLOOD_CAP),
        "all but the last {FLOOD_CAP} flows should have been evicted: {s}"
    );
    if kernel_dropped + internal == 0 {
        assert_eq!(
            captured, f.sent,
            "no drops were reported, so every one of the {} SYNs should have been \
             captured: {s}",
            f.sent
        );
    } else {
        eprintln!(
            "{TEST}: DROPS REPORTED (kernel {kernel_dropped}, internal {internal}): \
             captured {captured} of {} SYNs",
            f.sent
        );
    }
    let max_rss = f.rss.iter().copied().max().unwrap_or(0);
    let first = *f.rss.first().expect("RSS samples");
    assert!(
        max_rss <= first * 3 / 2 + 4096 && f.hwm <= 64 * 1024,
        "portsniff's memory should stay bounded by --max-flows {FLOOD_CAP} during the \
         flood: VmRSS from {} to a maximum of {}, VmHWM {}; samples (KiB): {:?}",
        mib(first),
        mib(max_rss),
        mib(f.hwm),
        f.rss
    );
}

/// The strict reading of the same flood: 4,000 SYNs a second is a modest rate for a
/// live capture, and nothing should be dropped, neither by the kernel nor internally.
///
/// FAILS at 0fb04f9, for two reasons:
/// - The channel bound counts batches, not packets. The capture thread hands the flow
///   stage a batch each time the ring is momentarily empty (`Reader::run_live` → `flush`
///   on `TimeoutExpired`), so at this rate almost every batch holds one packet (`perf
///   sched`: the capture thread is woken ~4,000 times a second), and `CHANNEL_BATCHES`
///   = 64, documented as "room for 32k packets of burst", absorbs ~64 packets: 16 ms of
///   this flood. The flow stage runs 10–26 ms at a stretch about once a second, and each
///   such burst overflows it: 8–240 packets dropped with a release build (from f7b4935).
/// - Since 2754707 every problem flow that ends live (here: every evicted SYN, 4,000 a
///   second) makes `Diagnoser::live_findings` → `refresh` → `system::read_counters` read
///   and parse `/proc/net/netstat` and `/proc/net/snmp` on the flow stage: `perf` puts
///   56 % of the flow stage there, and the debug binary drops ~9,500–11,000 of the 20,000
///   SYNs (233–411 before that commit).
#[test]
fn live_syn_flood_loses_nothing() {
    const TEST: &str = "live_syn_flood_loses_nothing";
    let Some(f) = shared_flood(TEST) else {
        return;
    };
    let s = &f.summary;
    assert!(
        s["kernel"]["dropped"] == 0 && s["internal_dropped"] == 0,
        "{} SYNs at {} a second (one packet each) must all reach the flow stage: \
         packets.captured {}, kernel.dropped {}, internal_dropped {} ({} flows reported \
         instead of {})",
        f.sent,
        1_000_000 / FLOOD_SYN_INTERVAL_US,
        s["packets"]["captured"],
        s["kernel"]["dropped"],
        s["internal_dropped"],
        s["flows"],
        f.sent
    );
}

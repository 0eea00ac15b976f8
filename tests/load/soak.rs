//! A soak of real connections on `lo` at a steady rate, captured live.

use super::harness::{env_u64, mib, proc_status_kib, RssSampler};
use crate::support::live::{
    flows, have_root, live_command, summary, ReservedPort, Sniffer, EXIT_TIMEOUT,
};
use crate::{extra_args, heavy, u};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Request and reply sizes of the soak's connections.
const REQUEST: usize = 64;
const REPLY: usize = 512;

/// Serves soak connections: read the request, reply, read to EOF (the client closes
/// first), close. Several threads share the (non-blocking) listener.
fn soak_server(listener: TcpListener, stop: Arc<AtomicBool>, served: Arc<AtomicU64>) {
    let reply = [b'r'; REPLY];
    loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).expect("blocking accepted stream");
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("read timeout");
                let mut req = [0u8; REQUEST];
                if s.read_exact(&mut req).is_err() || s.write_all(&reply).is_err() {
                    continue;
                }
                let mut rest = [0u8; 64];
                while matches!(s.read(&mut rest), Ok(n) if n > 0) {}
                served.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("test setup: accept() failed: {e}"),
        }
    }
}

/// One request and reply; the client closes first (on drop).
fn soak_connection(server: SocketAddr, request: &[u8]) -> std::io::Result<()> {
    let mut c = TcpStream::connect_timeout(&server, Duration::from_secs(3))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(request)?;
    let mut reply = [0u8; REPLY];
    c.read_exact(&mut reply)
}

/// One soak client: connections at `rate` per second until `until`. Returns (completed,
/// failures with their reasons).
fn soak_client(server: SocketAddr, rate: u64, until: Instant) -> (u64, Vec<String>) {
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = Instant::now();
    let (mut done, mut failed) = (0u64, Vec::new());
    let request = [b'q'; REQUEST];
    while Instant::now() < until {
        match soak_connection(server, &request) {
            Ok(()) => done += 1,
            Err(e) => failed.push(e.to_string()),
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    (done, failed)
}

/// What a soak run saw.
struct Soak {
    secs: u64,
    rate: u64,
    /// Connections the clients completed (connect, request, whole reply, close).
    completed: u64,
    /// Final flow records portsniff printed, and how many of them were `closed`.
    finals: u64,
    closed: u64,
    /// Outcomes other than `closed`, with their counts.
    others: BTreeMap<String, u64>,
    summary: Value,
    kernel_dropped: u64,
    internal_dropped: u64,
    /// (time since portsniff started, VmRSS KiB), one a second.
    rss: Vec<(Duration, u64)>,
    hwm: u64,
}

/// Runs portsniff live on `lo` while real clients make `rate` connections a second to
/// a real listener for `secs` seconds, then stops it with SIGINT.
fn soak(test: &str, secs: u64, rate: u64) -> Soak {
    const CLIENTS: u64 = 3;
    const SERVERS: usize = 3;
    let reserved = ReservedPort::on(Ipv4Addr::LOCALHOST.into()).expect("bind 127.0.0.1:0");
    let port = reserved.port();
    let server = reserved.addr;
    // --duration only as a safety net: the test stops it with SIGINT.
    let limit = (secs + 60).to_string();
    let extra = extra_args();
    let mut args = vec!["--duration", &limit];
    args.extend(extra.iter().map(String::as_str));
    let mut sniffer = Sniffer::spawn(live_command(port, &args), "portsniff -i lo (soak)");
    sniffer.wait_for_banner();
    let pid = sniffer.pid();
    eprintln!("{test}: portsniff is pid {pid}");
    let sampler = RssSampler::start(pid, Duration::from_secs(1));

    let listener = reserved.listen();
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let servers: Vec<_> = (0..SERVERS)
        .map(|_| {
            let l = listener.try_clone().expect("clone the listener");
            let (st, sv) = (Arc::clone(&stop), Arc::clone(&served));
            std::thread::spawn(move || soak_server(l, st, sv))
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(secs);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || soak_client(server, rate / CLIENTS, until)))
        .collect();
    let (mut completed, mut failures) = (0u64, Vec::new());
    for c in clients {
        let (d, f) = c.join().expect("soak client thread");
        completed += d;
        failures.extend(f);
    }
    stop.store(true, Ordering::SeqCst);
    for s in servers {
        s.join().expect("soak server thread");
    }
    drop(listener);
    assert!(
        proc_status_kib(pid, "VmRSS").is_some(),
        "portsniff exited during the soak"
    );
    // Time for the last closes to go through the capture.
    std::thread::sleep(Duration::from_millis(500));
    let rss = sampler.finish();
    let hwm = proc_status_kib(pid, "VmHWM").unwrap_or(0);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    assert!(
        failures.is_empty(),
        "test setup: {} of the soak's connections failed on the client side (first: {:?})",
        failures.len(),
        failures.first()
    );
    let lines = run.json();
    let summary = summary(&lines, "(soak output not shown)").clone();
    // Only clean closes were made: exit 0, unless lost packets made some connections
    // look like problems (then the summary says how many).
    let want = if u(&summary["problems"]) == 0 { 0 } else { 1 };
    assert_eq!(
        run.code(),
        Some(want),
        "portsniff should exit {want} (problems: {}); it exited {:?}; stderr:\n{}",
        summary["problems"],
        run.status,
        run.stderr
    );
    let mut soak = Soak {
        secs,
        rate,
        completed,
        finals: 0,
        closed: 0,
        others: BTreeMap::new(),
        kernel_dropped: summary["kernel"]["dropped"].as_u64().unwrap_or(0),
        internal_dropped: u(&summary["internal_dropped"]),
        summary,
        rss,
        hwm,
    };
    for (_, v) in flows(&lines) {
        if v["final"] != true {
            continue;
        }
        soak.finals += 1;
        match v["outcome"].as_str() {
            Some("closed") => soak.closed += 1,
            other => *soak.others.entry(format!("{other:?}")).or_default() += 1,
        }
    }
    eprintln!(
        "{test}: {secs} s at ~{rate}/s: {} ({} served by the listener); VmHWM {}",
        soak.accounting(),
        served.load(Ordering::SeqCst),
        mib(hwm),
    );
    eprintln!(
        "{test}: VmRSS samples (KiB, one a second): {:?}",
        soak.rss.iter().map(|&(_, k)| k).collect::<Vec<_>>()
    );
    assert!(
        completed >= secs * rate / 2,
        "test setup: the clients completed only {completed} connections in {secs} s \
         (aimed at {rate}/s)"
    );
    soak
}

impl Soak {
    fn all_accounted(&self) -> bool {
        self.closed == self.completed && self.finals == self.completed
    }

    fn accounting(&self) -> String {
        format!(
            "{} connections completed by the clients; portsniff printed {} final flow \
             records, {} closed, other outcomes {:?}; kernel.dropped {}, \
             internal_dropped {}, packets.captured {}, kernel.received {}",
            self.completed,
            self.finals,
            self.closed,
            self.others,
            self.kernel_dropped,
            self.internal_dropped,
            self.summary["packets"]["captured"],
            self.summary["kernel"]["received"]
        )
    }
}

/// The soak, run once for the two tests that judge it (whichever comes first runs it,
/// holding the heavy-test lock). `None` when the machine cannot capture (skipped).
fn shared_soak(test: &str) -> Option<&'static Soak> {
    static SOAK: OnceLock<Soak> = OnceLock::new();
    if !have_root(test) {
        return None;
    }
    let _heavy = heavy();
    Some(SOAK.get_or_init(|| {
        let secs = env_u64("PORTSNIFF_SOAK_SECS", 20).max(5);
        let rate = env_u64("PORTSNIFF_SOAK_RATE", 300).max(3);
        soak("live_soak", secs, rate)
    }))
}

/// Real connections to a real listener on `lo` for PORTSNIFF_SOAK_SECS (default 20) at
/// ~300 a second (PORTSNIFF_SOAK_RATE), while portsniff captures: its memory stays flat,
/// and every connection the clients completed is reported closed exactly once — or the
/// summary reports the drops that explain the difference. Drops must never be hidden.
#[test]
fn live_soak_accounts_for_every_connection() {
    const TEST: &str = "live_soak_accounts_for_every_connection";
    let Some(soak) = shared_soak(TEST) else {
        return;
    };
    // Closed connections stay in the flow table for TIME_WAIT (60 s), so memory rises
    // with the rate during the first minute, then levels off. The reference sample is
    // taken after a warm-up: 3 s, or past TIME_WAIT (65 s) when the soak is long enough
    // (benches/soak.sh runs 120 s).
    let warm_at = if soak.secs >= 90 { 65 } else { 3 };
    let reference = soak
        .rss
        .iter()
        .find(|(t, _)| t.as_secs() >= warm_at)
        .map(|&(_, k)| k)
        .unwrap_or_else(|| panic!("no RSS sample after {warm_at} s: {:?}", soak.rss));
    let last = soak.rss.last().expect("RSS samples").1;
    let bound = reference * 3 / 2 + 2048;
    eprintln!(
        "{TEST}: VmRSS after {warm_at} s {}, at the end {} (bound {}), VmHWM {}",
        mib(reference),
        mib(last),
        mib(bound),
        mib(soak.hwm)
    );
    assert!(
        last <= bound,
        "portsniff's memory kept growing under a steady load: VmRSS {} after {warm_at} s, \
         {} at the end (bound {}); samples (KiB): {:?}",
        mib(reference),
        mib(last),
        mib(bound),
        soak.rss
    );
    assert_eq!(
        u(&soak.summary["flows_evicted"]),
        0,
        "nothing should be evicted at ~{} connections/s (the table holds at most ~{} \
         closed connections in TIME_WAIT): {}",
        soak.rate,
        soak.rate * 60,
        soak.summary
    );
    if soak.kernel_dropped + soak.internal_dropped == 0 {
        assert!(
            soak.all_accounted(),
            "no drops were reported, so each connection the clients completed must be \
             reported exactly once, closed: {}",
            soak.accounting()
        );
    } else {
        // Allowed here: what is never allowed is losing connections without saying so
        // (live_syn_flood_loses_nothing pins down where these drops come from).
        eprintln!(
            "{TEST}: DROPS REPORTED, so not every connection can be accounted for: {}",
            soak.accounting()
        );
        assert!(
            soak.closed <= soak.completed,
            "more closed connections reported than were made: {}",
            soak.accounting()
        );
    }
}

/// The same soak must not lose a noticeable share of its packets: at most 0.5 %, where
/// the flow stage's own `/proc` work once made it lose 10–40 %.
///
/// Regression test: before commit f7b4935 the flow stage ran the diagnosis's `/proc`
/// scans inline (`Diagnoser::syn_seen` → `system::owner_of` read all of
/// `/proc/net/tcp{,6}` for up to 10 SYNs a second, each read walking the kernel's whole
/// established hash, ≥7 ms per file even when empty; `perf`: 32 % of the flow stage in
/// `established_get_first`), and this soak lost 24,600 of 59,950 packets in debug, 5,686
/// of 60,000 in release, 0 with `--no-attribution`. Fixed by f7b4935 (/proc work on its
/// own threads). Zero loss is not asserted here: the remaining, rarer drops (60 of
/// 359,870 packets in a 120 s release soak) come from the channel bound that
/// `live_syn_flood_loses_nothing` pins down.
#[test]
fn live_soak_is_not_stalled_by_proc_scans() {
    const TEST: &str = "live_soak_is_not_stalled_by_proc_scans";
    let Some(soak) = shared_soak(TEST) else {
        return;
    };
    let captured = u(&soak.summary["packets"]["captured"]);
    let lost = soak.kernel_dropped + soak.internal_dropped;
    let missing = soak.completed.saturating_sub(soak.closed);
    assert!(
        lost * 200 <= captured && missing * 200 <= soak.completed,
        "a live capture of ~{} connections a second on lo for {} s lost {lost} of {captured} \
         packets and {missing} of {} connections (more than 0.5 %): {}",
        soak.rate,
        soak.secs,
        soak.completed,
        soak.accounting()
    );
}

//! Load tests: large generated captures replayed through the real binary (every
//! connection accounted for; memory bounded by `--max-flows`, not by the number of
//! sources), and live captures under sustained traffic (a soak of real connections on
//! `lo`, and a SYN flood inside a network namespace).
//!
//! The captures come from `support::gen` (the engine of `examples/gen_capture.rs`), so
//! the tests need no `cargo run`. The binary under test is the one `cargo test` builds (a
//! debug build), so the sizes are chosen to keep this file under ~60 s on a 2-core
//! machine; `benches/soak.sh` runs the full sizes against a release build.
//!
//! The live tests need root (and `ip`/`iptables` for the namespace one): without it they
//! print why they skip and pass, except in CI (`CI=true`), where they fail instead. Each
//! live run (the soak, the SYN flood) is judged by two tests: one as the brief for this
//! file asks (every connection accounted for, or the drops reported: never hidden), and
//! a stricter one (almost nothing lost in the soak; nothing at all in the flood).
//! `live_syn_flood_loses_nothing` fails at 0fb04f9: see its comment.
//!
//! Knobs (environment): PORTSNIFF_SOAK_SECS (default 20) and PORTSNIFF_SOAK_RATE
//! (connections a second, default 300) for the soak; PORTSNIFF_FLOOD_SOURCES (default
//! 300,000) and PORTSNIFF_FLOOD_CAP (default 1 % of the sources) for the replayed flood;
//! PORTSNIFF_LOAD_ARGS, extra portsniff arguments for the live runs (e.g.
//! `--no-attribution`), to compare configurations by hand.

mod support;

use support::gen;

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use support::gen::{Counts, GenOptions, Mode};
use support::live::{
    flows, have_root, live_command, skip, summary, which, Netns, ReservedPort, Sniffer,
    EXIT_TIMEOUT,
};
use support::load::{
    env_u64, mib, proc_comm, proc_status_kib, replay_command, run_streamed, RssSampler,
};

/// The heavy tests (large replays, live captures) run one at a time: on a 2-core machine
/// two of them at once would measure each other (CPU for a live capture's flow stage,
/// replay times). The light ones run alongside.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The mix replayed by `generated_mix_is_fully_accounted`: ~16,800 connections. The
/// debug binary replays it in about a second.
const MIX_PACKETS: u64 = 200_000;
const REPLAY_TIMEOUT: Duration = Duration::from_secs(120);

fn generate(dir: &Path, name: &str, opts: &GenOptions) -> (PathBuf, Counts) {
    let path = dir.join(name);
    let counts = gen::generate_file(opts, &path)
        .unwrap_or_else(|e| panic!("test setup: writing {}: {e}", path.display()));
    assert_eq!(
        counts.packets, opts.packets,
        "test setup: the generator wrote {} packets, asked for {}",
        counts.packets, opts.packets
    );
    (path, counts)
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a non-negative integer in the summary, got {v}"))
}

/// Checks every count of a replayed mix against what the generator wrote.
fn assert_mix_accounted(s: &Value, c: &Counts, what: &str) {
    let o = &s["outcomes"];
    let got = [
        ("flows", u(&s["flows"])),
        ("problems", u(&s["problems"])),
        ("outcomes.closed", u(&o["closed"])),
        ("outcomes.refused", u(&o["refused"])),
        ("outcomes.unanswered", u(&o["unanswered"])),
        ("outcomes.reset", u(&o["reset"])),
        ("outcomes.established", u(&o["established"])),
        ("outcomes.half_closed", u(&o["half_closed"])),
        (
            "outcomes.handshake_incomplete",
            u(&o["handshake_incomplete"]),
        ),
        ("outcomes.unreachable", u(&o["unreachable"])),
        ("resets.client", u(&s["resets"]["client"])),
        ("resets.server", u(&s["resets"]["server"])),
        ("time_wait.client", u(&s["time_wait"]["client"])),
        ("time_wait.server", u(&s["time_wait"]["server"])),
        ("syn_retransmits", u(&s["syn_retransmits"])),
        ("port_reused", u(&s["port_reused"])),
        ("midstream", u(&s["midstream"])),
        ("retransmits", u(&s["retransmits"])),
        ("packets.captured", u(&s["packets"]["captured"])),
        ("packets.decoded", u(&s["packets"]["decoded"])),
        ("packets.syns_elsewhere", u(&s["packets"]["syns_elsewhere"])),
        ("packets.skipped", u(&s["packets"]["skipped"])),
        (
            "packets.skipped_by_reason.other_port",
            s["packets"]["skipped_by_reason"]["other_port"]
                .as_u64()
                .unwrap_or(0),
        ),
        ("flows_evicted", u(&s["flows_evicted"])),
    ];
    let want = [
        c.flows,
        c.problems(),
        c.closed,
        c.refused,
        c.unanswered,
        c.reset,
        0,
        0,
        0,
        0,
        c.reset_by_client,
        c.reset_by_server,
        c.closed_client_first,
        c.closed_server_first,
        c.syn_retransmits,
        0,
        0,
        0,
        // A file is not BPF-filtered: every record is counted, the decoder picks out
        // the port's packets, SYNs to other ports, and skips the rest as other_port.
        c.packets,
        c.port_packets,
        c.background_syns,
        c.background_packets - c.background_syns,
        c.background_packets - c.background_syns,
        0,
    ];
    let wrong: Vec<String> = got
        .iter()
        .zip(want)
        .filter(|((_, g), w)| g != w)
        .map(|((k, g), w)| format!("{k}: portsniff says {g}, the file holds {w}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: the summary does not account for what the generator wrote:\n  {}\n\
         generator: {c}\nsummary: {s}",
        wrong.join("\n  ")
    );
}

/// The generator is deterministic: the same options give the same bytes (and counts),
/// another seed another capture.
#[test]
fn generator_is_deterministic() {
    let capture = |opts: &GenOptions| {
        let mut bytes = Vec::new();
        let counts = gen::generate(opts, &mut bytes).expect("generate into memory");
        (bytes, counts)
    };
    for mode in [Mode::Mix, Mode::SynFlood] {
        let opts = GenOptions::new(20_000, mode);
        let (a, ca) = capture(&opts);
        let (b, cb) = capture(&opts);
        assert!(a == b && ca == cb, "{mode:?}: two runs with seed 1 differ");
        assert_eq!(ca.packets, 20_000, "{mode:?}: {ca}");
        let (c, _) = capture(&GenOptions { seed: 2, ..opts });
        assert!(a != c, "{mode:?}: seeds 1 and 2 gave the same capture");
    }
}

/// ~16,800 interleaved connections (several hundred at once, 10 % over IPv6, background
/// traffic on other ports): every one must get exactly the outcome it was generated with.
#[test]
fn generated_mix_is_fully_accounted() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let (file, c) = generate(
        dir.path(),
        "mix.pcap",
        &GenOptions::new(MIX_PACKETS, Mode::Mix),
    );
    assert!(
        c.peak_concurrent >= 300 && c.ipv6_flows > 0 && c.background_syns > 0,
        "test setup: the mix should hold several hundred concurrent connections, IPv6 ones \
         and SYNs to other ports: {c}"
    );
    // Only the problem connections are printed (~1,500 lines): the summary counts all.
    let run = run_streamed(
        replay_command(&file, gen::DEFAULT_PORT, &["--only-problems"]),
        "portsniff -r mix.pcap --only-problems",
        REPLAY_TIMEOUT,
    );
    eprintln!(
        "generated_mix_is_fully_accounted: {} packets, {} connections replayed in {:.2?}, \
         peak RSS {}",
        c.packets,
        c.flows,
        run.elapsed,
        mib(run.max_rss_kib)
    );
    let s = run.out.summary("mix replay", &run.stderr);
    assert_mix_accounted(&s, &c, "replay of the generated mix");
    assert_eq!(
        run.out.final_flows,
        c.problems(),
        "with --only-problems, one flow line per problem connection (refused, unanswered, \
         reset) should be printed; first lines:\n{}",
        run.out.head.join("\n")
    );
    assert_eq!(
        run.code,
        Some(1),
        "problem connections were replayed, so the exit status should be 1; stderr:\n{}",
        run.stderr
    );
}

/// The file also replays from standard input (`-r -`) with the same answers: the reader
/// keeps no seekable file state.
#[test]
fn generated_mix_replays_identically_from_stdin() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let opts = GenOptions {
        seed: 7,
        ..GenOptions::new(MIX_PACKETS / 4, Mode::Mix)
    };
    let (file, c) = generate(dir.path(), "mix-stdin.pcap", &opts);
    let mut cmd = support::portsniff();
    cmd.args([
        "-r",
        "-",
        "--port",
        &gen::DEFAULT_PORT.to_string(),
        "--json",
    ])
    .arg("--only-problems")
    .stdin(std::fs::File::open(&file).expect("open the generated file"));
    let run = run_streamed(cmd, "portsniff -r - < mix-stdin.pcap", REPLAY_TIMEOUT);
    let s = run.out.summary("replay from stdin", &run.stderr);
    assert_mix_accounted(&s, &c, "replay of the generated mix from stdin");
}

/// A SYN flood from distinct sources, replayed with `--max-flows CAP`: the table never
/// holds more than CAP flows, every source is still reported once (unanswered), all but
/// the last CAP are reported as evicted, and peak memory follows the cap, not the number
/// of sources.
///
/// Size: the debug binary reports ~25–35k flows/s (each one a ~800-byte JSON line), so
/// the full 1,000,000 sources took 39.5 s here (peak RSS 21.6 MiB with a 10,000 cap),
/// two thirds of this file's budget. The test uses
/// 300,000 sources and a cap of 3,000: the same 1 % ratio. `benches/soak.sh` replays the
/// full 1,000,000 with caps 10,000 and 100,000 against a release build.
#[test]
fn syn_flood_of_1m_sources_is_bounded_by_the_flow_cap() {
    let _heavy = heavy();
    let sources = env_u64("PORTSNIFF_FLOOD_SOURCES", 300_000);
    let cap = env_u64("PORTSNIFF_FLOOD_CAP", sources / 100);
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let (flood, c) = generate(
        dir.path(),
        "flood.pcap",
        &GenOptions::new(sources, Mode::SynFlood),
    );
    assert!(
        c.span_us < 75_000_000,
        "test setup: the flood must span less than the 75 s SYN idle timeout, so that only \
         the cap (not idle expiry) ends flows: {c}"
    );
    let cap_s = cap.to_string();
    let run = run_streamed(
        replay_command(
            &flood,
            gen::DEFAULT_PORT,
            &["--max-flows", &cap_s, "--only-problems"],
        ),
        "portsniff -r flood.pcap --max-flows CAP",
        REPLAY_TIMEOUT,
    );
    // The same table size, without the flood: as many sources as the cap holds.
    let (small, _) = generate(
        dir.path(),
        "flood-small.pcap",
        &GenOptions::new(cap, Mode::SynFlood),
    );
    let baseline = run_streamed(
        replay_command(
            &small,
            gen::DEFAULT_PORT,
            &["--max-flows", &cap_s, "--only-problems"],
        ),
        "portsniff -r flood-small.pcap --max-flows CAP",
        REPLAY_TIMEOUT,
    );
    eprintln!(
        "syn_flood_of_1m_sources_is_bounded_by_the_flow_cap: {sources} sources, cap {cap}: \
         {:.2?}, peak RSS {}; {cap} sources, same cap: {:.2?}, peak RSS {}",
        run.elapsed,
        mib(run.max_rss_kib),
        baseline.elapsed,
        mib(baseline.max_rss_kib)
    );

    let s = run.out.summary("flood replay", &run.stderr);
    let expect = [
        ("flows", u(&s["flows"]), sources),
        (
            "outcomes.unanswered",
            u(&s["outcomes"]["unanswered"]),
            sources,
        ),
        ("problems", u(&s["problems"]), sources),
        ("flows_evicted", u(&s["flows_evicted"]), sources - cap),
        ("peak_flows", u(&s["peak_flows"]), cap),
        ("packets.captured", u(&s["packets"]["captured"]), sources),
        ("final flow lines printed", run.out.final_flows, sources),
        (
            "flow lines with ended_by evicted",
            run.out.evicted,
            sources - cap,
        ),
    ];
    let wrong: Vec<String> = expect
        .iter()
        .filter(|(_, g, w)| g != w)
        .map(|(k, g, w)| format!("{k}: {g}, expected {w}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "a flood of {sources} SYNs from distinct sources with --max-flows {cap}: every \
         source must be reported once, all but the last {cap} as evicted:\n  {}\n\
         summary: {s}\nfirst lines:\n{}",
        wrong.join("\n  "),
        run.out.head.join("\n")
    );
    assert_eq!(
        run.code,
        Some(1),
        "unanswered SYNs are problems: exit status 1; stderr:\n{}",
        run.stderr
    );

    // Memory follows the cap: 100× the sources may cost little more than a run whose
    // sources all fit in the table (measured: within a few MiB; without the cap the flood
    // would hold every source, ~0.8 KiB each: ~230 MiB for 300,000).
    let bound = baseline.max_rss_kib * 5 / 4 + 8 * 1024;
    assert!(
        run.max_rss_kib <= bound,
        "peak RSS with {sources} sources and --max-flows {cap} is {}, but only {} with \
         {cap} sources and the same cap (bound {}): memory grows with the number of \
         sources, not with the flow cap",
        mib(run.max_rss_kib),
        mib(baseline.max_rss_kib),
        mib(bound)
    );
}

/// Closed connections stay in the table as tombstones for TIME_WAIT (60 s), and count
/// against `--max-flows`. When the table is full of them, a new connection must displace
/// a tombstone, not a connection still in progress.
///
/// The mix never has more than ~1,000 connections open at once (unanswered ones waiting
/// for their SYN retransmissions included); with a cap four times that, nothing open
/// may be evicted. Regression test: up to commit 677d3c5, `FlowTable::evict` looked for
/// a tombstone among the 32 least recently active entries only; unanswered flows waiting
/// between two SYN retransmissions piled up there and were evicted (407 of them here),
/// and each retransmitted SYN then started a second, phantom "unanswered" connection
/// for the same attempt (flows 17,188 instead of 16,781). Fixed by 289971d (one LRU
/// list per timeout class, tombstones evicted first).
#[test]
fn closed_connections_in_time_wait_do_not_evict_open_ones() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let (file, c) = generate(
        dir.path(),
        "mix-cap.pcap",
        &GenOptions::new(MIX_PACKETS, Mode::Mix),
    );
    let cap = c.peak_concurrent * 4;
    assert!(
        cap < c.flows,
        "test setup: the cap ({cap}) must be below the number of connections ({}), so \
         that TIME_WAIT tombstones fill the table: {c}",
        c.flows
    );
    let cap_s = cap.to_string();
    let run = run_streamed(
        replay_command(
            &file,
            gen::DEFAULT_PORT,
            &["--only-problems", "--max-flows", &cap_s],
        ),
        "portsniff -r mix.pcap --max-flows CAP",
        REPLAY_TIMEOUT,
    );
    let s = run.out.summary("mix replay with a flow cap", &run.stderr);
    assert_mix_accounted(
        &s,
        &c,
        &format!(
            "replay of the generated mix with --max-flows {cap} (at most {} connections \
             were ever open at once; the rest of the table holds closed connections in \
             TIME_WAIT)",
            c.peak_concurrent
        ),
    );
}

// ---------------------------------------------------------------------------------------
// Live

/// Extra portsniff arguments for the live tests, from PORTSNIFF_LOAD_ARGS (split on
/// whitespace), to compare configurations by hand (e.g. `--no-attribution`, `-B 65536`).
fn extra_args() -> Vec<String> {
    std::env::var("PORTSNIFF_LOAD_ARGS")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

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

/// `-vv` tells why flows ended early: the table's evictions (at the 1st, 10th, 100th…, not
/// one line per packet of a flood) and the idle timers, on stderr only.
#[test]
fn verbose_logs_name_evictions_and_idle_timers_without_flooding_stderr() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let (flood, _) = generate(
        dir.path(),
        "flood.pcap",
        &GenOptions::new(2_000, Mode::SynFlood),
    );
    let out = replay_command(&flood, gen::DEFAULT_PORT, &["--max-flows", "10", "-vv"])
        .output()
        .expect("run portsniff");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let evictions: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("flow table full (10 flows)"))
        .collect();
    assert!(
        evictions.len() >= 3 && evictions.len() <= 4,
        "1st, 10th, 100th (and 1000th) eviction logged once each:\n{stderr}"
    );
    assert!(
        evictions[0].contains("1 open flows evicted so far"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("flow table full"),
        "logs never reach stdout"
    );

    // The refused fixture twice, the copy 10 s later: by then the first attempt's
    // tombstone (kept 5 s) is due, and the copy's first packet runs the timers.
    let fixture =
        std::fs::read(support::fixture("refused.pcap")).expect("read fixtures/refused.pcap");
    assert_eq!(
        fixture[..4],
        [0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian classic pcap"
    );
    let mut twice = fixture.clone();
    let mut at = 24;
    while at + 16 <= fixture.len() {
        let mut header: [u8; 16] = fixture[at..at + 16].try_into().expect("16 bytes");
        let sec = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) + 10;
        header[..4].copy_from_slice(&sec.to_le_bytes());
        let caplen = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        twice.extend_from_slice(&header);
        twice.extend_from_slice(&fixture[at + 16..at + 16 + caplen]);
        at += 16 + caplen;
    }
    let path = dir.path().join("refused-twice.pcap");
    std::fs::write(&path, twice).expect("write the capture");
    let out = replay_command(&path, 61999, &["-vv"])
        .output()
        .expect("run portsniff");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("idle timers: ended 0 idle flows, forgot 1 tombstones"),
        "the idle timers' work is logged at -vv:\n{}",
        stderr.lines().take(20).collect::<Vec<_>>().join("\n")
    );
}

/// The memory budget per tracked flow (issue: at most 200 bytes): the peak RSS of a flood
/// whose sources all stay in the table, minus that of a small one, divided by the extra
/// flows. Everything a flow costs counts: its slab slot, its share of the index, and any
/// rare part. 200,000 sources keep the debug binary's run to a few seconds;
/// `benches/soak.sh` measures a million with the release build.
#[test]
fn each_tracked_flow_costs_at_most_200_bytes() {
    let _heavy = heavy();
    let (big, small) = (200_000u64, 2_000u64);
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let peak = |n: u64| {
        let (flood, c) = generate(
            dir.path(),
            &format!("flood-{n}.pcap"),
            &GenOptions::new(n, Mode::SynFlood),
        );
        assert!(
            c.span_us < 75_000_000,
            "test setup: no SYN may expire before the end: {c}"
        );
        let run = run_streamed(
            replay_command(&flood, gen::DEFAULT_PORT, &["--max-flows", "1000000"]),
            "portsniff -r flood.pcap --max-flows 1000000",
            REPLAY_TIMEOUT,
        );
        let s = run.out.summary("flood replay", &run.stderr);
        assert_eq!(u(&s["peak_flows"]), n, "every source held at once: {s}");
        run.max_rss_kib
    };
    let (rss_big, rss_small) = (peak(big), peak(small));
    let per_flow = (rss_big.saturating_sub(rss_small) * 1024) / (big - small);
    eprintln!(
        "each_tracked_flow_costs_at_most_200_bytes: peak RSS {} with {big} flows, {} with \
         {small}: {per_flow} bytes per flow",
        mib(rss_big),
        mib(rss_small)
    );
    assert!(
        per_flow <= 200,
        "{per_flow} bytes per tracked flow (peak RSS {} with {big} flows, {} with {small})",
        mib(rss_big),
        mib(rss_small)
    );
}

//! A storm of kernel events, staged for real: thousands of SYNs a second to a port where
//! nothing listens, each dropped (NO_SOCKET) and answered by TCP's RST. Past a few
//! thousand events a second the witness counts them by kind in the kernel instead of
//! sending each; nothing may go missing for it: every SYN the kernel dropped is either
//! on its connection's line or in the summary's storm counts, the lines in the storm say
//! so, the finding still rests on the kernel's word (TCP's own RSTs, NO_SOCKET), and
//! a `--metrics` scrape during the capture shows the storm's count.

use crate::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{Read, Write};
use std::time::Instant;

/// SYNs in the storm: at the pace below, far above the witness's limit (100 events a CPU
/// in 10 ms, three events a SYN here), and few enough for the capture to keep.
const BURST: u16 = 12_000;
/// SYNs sent alone, well before the storm: their lines carry their own drops.
const BEFORE: u16 = 3;

#[test]
fn live_a_storm_of_drops_is_counted_whole_and_still_told_from_the_kernels_word() {
    const TEST: &str =
        "live_a_storm_of_drops_is_counted_whole_and_still_told_from_the_kernels_word";
    let Some((ns, port)) = namespace_and_port(TEST) else {
        return;
    };
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let port_arg = port.to_string();
    // Inside the namespace: any port serves the metrics.
    let metrics = "127.0.0.1:9464";
    let mut sniffer = Sniffer::spawn(
        ns.portsniff(&[
            "-i",
            "lo",
            "--port",
            &port_arg,
            "--json",
            "--duration",
            "4",
            "--metrics",
            metrics,
        ]),
        "ip netns exec NS portsniff -i lo",
    );
    sniffer.wait_for_banner();

    // Raw SYNs from 127.0.0.1, each from its own port (a connection each): the kernel's
    // TCP finds no socket, drops it and answers with a RST, which comes back to a port
    // with no socket either and is dropped too.
    let started = Instant::now();
    ns.on_thread(move || {
        let raw = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("a raw socket in the namespace");
        let src = Ipv4Addr::LOCALHOST;
        for i in 0..BEFORE {
            raw.send_to(&spoofed_syn(src, 20_000 + i, server), &server.into())
                .expect("send a SYN");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Well apart from the storm's first window.
        std::thread::sleep(Duration::from_millis(300));
        // From 30000 up, never from the watched port itself (a SYN to its own
        // endpoint would be no refusal).
        let mut sports = (30_000..).filter(|&p| p != server.port());
        for _ in 0..BURST / 1000 {
            for sport in sports.by_ref().take(1000) {
                raw.send_to(&spoofed_syn(src, sport, server), &server.into())
                    .expect("send a SYN");
            }
            // Paced in bursts: tens of thousands a second, which the capture keeps.
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .join()
    .expect("sending thread");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the SYNs were sent within the capture's time"
    );
    // A scrape after the storm (counts read at most every 100 ms, published as often):
    // the fleet sees it while the capture goes on.
    std::thread::sleep(Duration::from_millis(400));
    let scraped = ns
        .on_thread(move || {
            let mut s = std::net::TcpStream::connect(metrics).expect("connect to --metrics");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(s, "GET /metrics HTTP/1.0\r\nHost: {metrics}\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).expect("read the scrape");
            body
        })
        .join()
        .expect("scraping thread");
    let series = format!("portsniff_kernel_events_summarised_total{{port=\"{port}\"}} ");
    let live_count: u64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} in the scrape:\n{scraped}"))
        .trim()
        .parse()
        .expect("a count");
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    let s = summary(&lines, &out);
    let k = &s["kernel_events"];
    if k["enabled"] != true {
        skip(
            TEST,
            &format!("the kernel witness did not run: {}", k["why"]),
        );
        return;
    }
    assert_no_capture_loss(s, &out);
    assert_eq!(k["lost"], 0, "no kernel event lost: {k}");

    let flows = final_flows_from_all(&lines);
    let total = u64::from(BURST + BEFORE);
    assert_eq!(flows.len() as u64, total, "a connection a SYN: {s}");
    let odd: Vec<_> = flows.iter().filter(|f| f["outcome"] != "refused").collect();
    assert!(odd.is_empty(), "every SYN refused: {odd:?}");

    // The SYNs the kernel dropped: on their lines, or counted by the storm.
    let syn_drops =
        |d: &Value| d["reason"] == "NO_SOCKET" && d["dir"] == "c2s" && d["what"] == "SYN";
    let on_lines: u64 = flows
        .iter()
        .flat_map(|f| f["kernel"]["drops"].as_array().into_iter().flatten())
        .filter(|d| syn_drops(d))
        .map(|d| d["count"].as_u64().unwrap())
        .sum();
    let storm = k["storm"]
        .as_array()
        .expect("kernel_events.storm is a list");
    let counted: u64 = storm
        .iter()
        .filter(|c| c["kind"] == "drop" && syn_drops(c))
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert!(counted > 0, "the storm was counted in the kernel: {k}");
    assert!(
        storm
            .iter()
            .filter(|c| c["kind"] == "drop" && syn_drops(c))
            .all(|c| c["where"] == "tcp_v4_rcv" && c["path"] == "ingress"),
        "the counted drops are named where they happened: {k}"
    );
    assert_eq!(
        on_lines + counted,
        total,
        "every SYN dropped is on its line or in the storm's counts ({on_lines} + {counted}): {k}"
    );
    let sum: u64 = storm.iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(k["summarised"], sum, "summarised is the counts' sum: {k}");
    assert!(
        live_count > 0 && live_count <= sum,
        "the scrape during the capture showed the storm ({live_count} of {sum})"
    );
    assert!(
        storm
            .iter()
            .any(|c| c["kind"] == "reset_sent" && c["reason"] == "NO_SOCKET" && c["dir"] == "s2c"),
        "TCP's RSTs counted too, in the server's name: {k}"
    );
    for c in storm {
        assert!(
            c["first_ts"].as_f64() <= c["last_ts"].as_f64()
                && c["first_ts"].as_f64().unwrap() > 1.6e9,
            "times on the capture's clock: {c}"
        );
    }

    // The lines: alone before the storm, their own drops and not marked; inside it,
    // marked (their drops may be in the counts).
    for f in &flows {
        let sport = f["client"].as_str().unwrap().rsplit(':').next().unwrap();
        let sport: u16 = sport.parse().unwrap();
        let summarised = &f["kernel"]["summarised"];
        if sport < 30_000 {
            assert_eq!(summarised, false, "before the storm: {f}");
            assert!(
                f["kernel"]["drops"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(syn_drops),
                "its own drop on its line: {f}"
            );
        }
    }
    let marked = flows
        .iter()
        .filter(|f| f["kernel"]["summarised"] == true)
        .count() as u64;
    assert!(
        marked >= counted.min(u64::from(BURST)) / 2 && marked <= u64::from(BURST),
        "the storm's lines are marked ({marked} of {BURST}): {k}"
    );

    // The finding rests on the kernel's word, storm or not: TCP's own RSTs.
    let f = lines
        .iter()
        .rev()
        .map(|(_, v)| v)
        .find(|v| v["type"] == "finding" && v["final"] == true && v["kind"] == "nothing_listening")
        .unwrap_or_else(|| panic!("a final nothing_listening finding\n{out}"));
    assert_eq!(f["evidence"]["refused"], total, "{f}");
    assert_eq!(f["evidence"]["origin"], "reply", "{f}");
    assert_eq!(f["evidence"]["reset_reason"], "NO_SOCKET", "{f}");
    for (_, v) in lines.iter().filter(|(_, v)| v["type"] == "finding") {
        let words = format!("{} {}", v["headline"], v["explanation"]);
        assert!(
            !words.contains("did not send") && !words.contains("firewall"),
            "no finding doubts the RSTs were TCP's: {v}"
        );
    }
}

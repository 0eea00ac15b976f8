//! Diagnosis tests: each one builds a real cause of failing (or surprising) connections
//! inside a network namespace of its own, runs the real `portsniff` binary inside it, and
//! checks that portsniff names the cause: a `{"type":"finding"}` line of the right kind,
//! severity and evidence, naming the processes the test started (by PID).
//!
//! Every test first checks the flow records (the connection outcomes the scenario must
//! produce), so a broken setup fails with a setup message rather than a wrong diagnosis.
//!
//! They need root (capture, namespaces, iptables, sysctls inside the namespace). Without it
//! they print "skipping: …" and pass, except under `CI=true`, where they fail. Firewall
//! rules and sysctls are set only inside the test's own namespaces, which are deleted when
//! the test ends (also on panic); helper processes are killed by PID.

mod diag;
mod support;

use support::live;

use diag::recipe::check_recipe;
use diag::{
    fresh_port, listen_overflows, loopback_stage, owned_socket, prerequisites, refused_client,
    spawn_closing_server, spawn_connecting_client, spawn_listener, spawn_reuseport_member,
    start_capture, start_capture_on, tcp_ext, v4, LISTENER_MARK, TCP_LISTEN, TCP_SYN_SENT,
};
use socket2::{Domain, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use support::live::{accept_within, connect_from_known_port, Netns};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The scenarios, by cause family (as `src/diagnose/rules/`).
mod diagnose {
    mod firewalls;
    mod floods;
    mod listeners;
    mod nat;
    mod sanity;
    mod server_side;
    mod timely;
}

#[test]
fn no_traffic_says_where_the_syns_went() {
    const TEST: &str = "no_traffic_says_where_the_syns_went";
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let elsewhere = v4([127, 0, 0, 1], fresh_port());
    let _listener = spawn_listener(&ns, elsewhere, 128, false);

    let capture = start_capture(&ns, port, 3, &[]);
    // The client connects to the other port (its connection is queued, never accepted).
    ns.on_thread(move || {
        let (_, res) = connect_from_known_port(elsewhere);
        res.unwrap_or_else(|e| panic!("test setup: connect to {elsewhere}: {e}"));
    })
    .join()
    .expect("client thread");
    let report = capture.finish();

    assert!(
        report.flows().is_empty() && report.summary()["flows"] == 0,
        "nothing connected to port {port}, so there should be no flow records\n{}",
        report.context()
    );
    report.assert_exit(0, "no connection to the port failed");

    let d = report.finding("no_traffic");
    report.assert_severity(d, &["warning"]);
    let elsewhere_s = elsewhere.to_string();
    let entries = d["evidence"]["syns_elsewhere"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let entry = entries
        .iter()
        .find(|e| e["dst"] == elsewhere_s.as_str())
        .unwrap_or_else(|| {
            panic!(
                "evidence.syns_elsewhere should list {elsewhere_s}, where the client's SYN \
                 went; it is {}: {d}\n{}",
                d["evidence"]["syns_elsewhere"],
                report.context()
            )
        });
    assert!(
        entry["syns"].as_u64().is_some_and(|n| n >= 1),
        "the entry for {elsewhere_s} should count at least one SYN: {entry}\n{}",
        report.context()
    );
    report.assert_top("no_traffic");
}

/// The finding helpers themselves (no root needed): one finding per kind, its last
/// occurrence, ranked in the order of the final list; the schema is checked.
#[test]
fn finding_helpers_keep_the_last_occurrence_of_each_kind() {
    use std::os::unix::process::ExitStatusExt;
    let finding = |kind: &str, sev: &str, n: u64| {
        format!(
            r#"{{"type":"finding","kind":"{kind}","severity":"{sev}","headline":"h","explanation":"e","evidence":{{"unanswered":{n}}},"processes":[{{"pid":42,"name":"python3","cmdline":"python3 -c x psd-listener","user":"root","role":"listener"}}],"next_step":"n"}}"#
        )
    };
    let texts = [
        r#"{"type":"flow","final":false,"id":1,"client":"127.0.0.1:40000"}"#.to_string(),
        finding("silently_dropped", "error", 1), // live, early
        r#"{"type":"flow","final":true,"id":1,"client":"127.0.0.1:40000"}"#.to_string(),
        finding("accept_queue_full", "error", 7),
        finding("silently_dropped", "warning", 3), // final list: ranked second
        r#"{"type":"summary","flows":1}"#.to_string(),
    ];
    let lines: Vec<(live::Line, serde_json::Value)> = texts
        .iter()
        .map(|t| {
            let line = live::Line {
                arrived: std::time::SystemTime::now(),
                text: t.clone(),
            };
            (line, serde_json::from_str(t).expect("valid JSON"))
        })
        .collect();
    let report = diag::Report {
        text: None,
        run: live::Finished {
            status: std::process::ExitStatus::from_raw(1 << 8),
            stdout: lines.iter().map(|(l, _)| l.clone()).collect(),
            stderr: String::new(),
        },
        out: texts.join("\n"),
        lines,
    };
    assert_eq!(report.kinds(), ["accept_queue_full", "silently_dropped"]);
    report.assert_top("accept_queue_full");
    report.assert_ranked_above("accept_queue_full", "silently_dropped");
    report.assert_absent("nothing_listening", "not printed");
    let d = report.finding("silently_dropped");
    report.assert_severity(d, &["warning"]);
    assert_eq!(report.evidence_u64(d, "unanswered"), 3);
    report.assert_names_process(d, 42, "listener", LISTENER_MARK);
    report.assert_exit(1, "synthetic");
    assert_eq!(report.finals_from(40000).len(), 1);
    assert_eq!(report.flows_from(40000).len(), 2);
    assert_eq!(report.summary()["flows"], 1);
}

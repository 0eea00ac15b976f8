//! `--generate`: the man page and the shell completions, built from the clap definitions
//! (so they never disagree with `--help`) and written by the binary itself, so whoever
//! has only the binary has its reference too.
//!
//! The man page adds what `--help` cannot hold: every outcome and finding kind (an
//! exhaustive `match` each, so a new one cannot be left out), the history letters, the
//! JSON lines, the metrics, exit status, examples and SEE ALSO. No I/O beyond the writer
//! it is given.

use crate::diagnose::findings::FindingKind;
use crate::flow::Outcome;
use clap::ValueEnum;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use std::io::{self, Write};

/// What `--generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page (roff): `portsniff --generate man | man -l -`.
    Man,
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// Writes what `what` names for the command `cmd` to `out`.
pub fn generate(what: Generate, mut cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let shell = match what {
        Generate::Man => return man_page(&cmd, out),
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
        Generate::Elvish => Shell::Elvish,
        Generate::Powershell => Shell::PowerShell,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "portsniff", &mut script);
    let script = String::from_utf8_lossy(&script);
    out.write_all(interfaces_for_dash_i(what, &script).as_bytes())
}

/// clap_complete completes `-i` with file names; these offer the machine's interfaces
/// (`/sys/class/net`, and libpcap's `any`) instead, where the shell has a way to say so.
/// Elvish and PowerShell keep clap's generic completion.
fn interfaces_for_dash_i(what: Generate, script: &str) -> String {
    const SYS: &str = "$(ls /sys/class/net 2>/dev/null) any";
    match what {
        Generate::Bash => {
            let files = "COMPREPLY=($(compgen -f \"${cur}\"))";
            let ifaces = format!("COMPREPLY=($(compgen -W \"{SYS}\" -- \"${{cur}}\"))");
            // Only the `--interface` and `-i` arms: every other option keeps its files.
            let mut out = String::with_capacity(script.len());
            let mut in_interface_arm = false;
            for line in script.split_inclusive('\n') {
                let t = line.trim_start();
                if t.starts_with("--interface)") || t.starts_with("-i)") {
                    in_interface_arm = true;
                } else if t.ends_with(")\n") && !t.starts_with("COMPREPLY") {
                    in_interface_arm = false;
                }
                if in_interface_arm && t.starts_with(files) {
                    out.push_str(&line.replace(files, &ifaces));
                } else {
                    out.push_str(line);
                }
            }
            out
        }
        Generate::Zsh => {
            script
                .lines()
                .map(|l| {
                    if l.contains("'-i+[") || l.contains("'--interface=[") {
                        l.replace(":IFACE:_default", ":IFACE:_net_interfaces")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
        Generate::Fish => {
            script
                .lines()
                .map(|l| {
                    if l.contains("-s i -l interface") {
                        format!("{l} -f -a \"(ls /sys/class/net) any\"")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
        Generate::Man | Generate::Elvish | Generate::Powershell => script.to_string(),
    }
}

/// What each outcome means, for the man page.
fn outcome_meaning(o: Outcome) -> &'static str {
    match o {
        Outcome::Unanswered => "client SYNs and no reply at all: a firewall DROP, a black hole, a full SYN queue",
        Outcome::Refused => "SYN answered by RST: nothing listens on that address and port, or a REJECT with tcp-reset",
        Outcome::Unreachable => "SYN answered by an ICMP destination unreachable (a REJECT rule, no route)",
        Outcome::HandshakeIncomplete => "SYN-ACK seen, the client's final ACK never",
        Outcome::Established => "handshake done, still open at the end",
        Outcome::Closed => "FIN both ways: a normal close",
        Outcome::HalfClosed => "FIN one way only at the end (a peer in CLOSE_WAIT)",
        Outcome::Reset => "RST after the connection was established (reset_by says who)",
    }
}

/// What each finding kind means, for the man page.
fn finding_meaning(k: FindingKind) -> &'static str {
    match k {
        FindingKind::NothingListening => "SYNs refused and no listener on the port, in any family, address or namespace",
        FindingKind::StartupRace => "refusals only before the first accepted connection: the client started before the server listened",
        FindingKind::ServerRestarted => "the port was closed for a while between accepted connections: a restart or deploy",
        FindingKind::RestartLoop => "the port closed and reopened again and again: a crash or restart loop",
        FindingKind::RefusedElsewhere => "the RST that refused the SYNs came neither from this host's TCP nor its firewall",
        FindingKind::ListenerOtherFamily => "refused on one address family while the server listens on the other (the localhost trap)",
        FindingKind::ListenerOtherAddress => "the listener is bound to another address",
        FindingKind::ListenerOtherNamespace => "nothing listens here, but something does in another network namespace",
        FindingKind::SilentlyDropped => "SYNs got no answer: a firewall DROP or a black hole (with the kernel's drop reason and the rule)",
        FindingKind::RepliesDropped => "the server's answers were dropped on their way out (an OUTPUT rule)",
        FindingKind::SlowConnect => "connections that completed only on a retransmitted SYN: connect() took a second or more",
        FindingKind::SynFlood => "a SYN flood: one-shot SYNs from many sources (cookies, sources per second, whether real clients complete), never a firewall",
        FindingKind::InvalidSource => "SYNs the kernel discarded as martians (spoofed sources, a return route elsewhere)",
        FindingKind::AcceptQueueFull => "SYNs or handshake ACKs dropped while the listener's accept queue was full",
        FindingKind::RejectedByFirewall => "a REJECT rule: RSTs although a listener exists, or ICMP errors from the server's host",
        FindingKind::NetworkUnreachable => "ICMP host or network unreachable from a router on the path",
        FindingKind::HandshakeStalled => "SYN-ACKs retransmitted, the final ACK never arrives",
        FindingKind::ResetByServer => "connections torn down by the server's RST, with the context (unread data, ...)",
        FindingKind::ResetByClient => "connections torn down by the client's RST, with the context",
        FindingKind::ReceiverStalled => "a zero window held a second or more: the application stopped reading",
        FindingKind::TimeWaitReuse => "a new SYN on a 4-tuple still in TIME_WAIT",
        FindingKind::TimeWaitBuildup => "1000 or more TIME_WAIT sockets on the port",
        FindingKind::EphemeralPortsExhausted => "client TIME_WAIT sockets hold 90% of ip_local_port_range",
        FindingKind::PartialView => "the capture cannot judge (cut short, a one-sided filter, headers cut by the snaplen)",
        FindingKind::NoTraffic => "nothing reached the port; where SYNs went instead",
    }
}

const HISTORY: &[(&str, &str)] = &[
    ("S", "SYN"),
    ("h", "SYN-ACK"),
    ("A a", "pure ACK"),
    ("D d", "data"),
    ("F f", "FIN"),
    ("R r", "RST"),
    ("T t", "retransmitted data"),
    ("W w", "zero window"),
    ("Q q", "SYN with FIN or RST"),
    ("I i", "FIN with RST"),
];

const JSON_LINES: &[(&str, &str)] = &[
    ("flow", "one per connection as it ends (fields below); live, a pending notice first (final false) for a SYN unanswered past --syn-timeout"),
    ("finding", "final, kind, severity, headline, explanation, evidence (object), processes ([{pid, name, cmdline, user, role}]), next_step, facts_changed; live ones (final false) as they become certain, the ranked diagnosis (final true) at the end"),
    ("update", "live: change, listener, at, exact, process, earlier_findings: a listener started or stopped after printed findings that rest on it"),
    ("ladder", "with --ladder or --flow: a connection's first packets as a sequence diagram"),
    ("summary", "the last line: counts by outcome, retransmissions, resets, TIME_WAIT, handshake RTT and duration percentiles, packets, drops, kernel events"),
];

/// The flow line's fields, in the order they are written: name (type), meaning.
const FLOW_FIELDS: &[(&str, &str)] = &[
    ("type", "\"flow\""),
    ("final", "bool: false only for a live pending notice; a final line with the same id follows"),
    ("id", "int: unique per connection within a run"),
    ("client, server", "string: 127.0.0.1:36690, [::1]:61999"),
    ("translated_to", "string, only when a DNAT rule forwards the port: the backend the connection went to"),
    ("outcome", "string: see OUTCOMES"),
    ("reset_by", "\"client\", \"server\" or null: who sent the RST that ended it"),
    ("closed_first_by", "\"client\", \"server\" or null: who sent the first FIN (it holds TIME_WAIT)"),
    ("syn_count, syn_gaps_us", "int, [int]: client SYNs including retransmissions, and the gaps between them"),
    ("synack_count", "int: server SYN-ACKs including retransmissions"),
    ("port_reused", "bool: the 4-tuple was still held by a previous connection"),
    ("midstream", "bool: first seen without its handshake"),
    ("history", "string: the Zeek history (see HISTORY)"),
    ("first_ts, last_ts", "float: seconds since the epoch"),
    ("duration_us", "int: last_ts - first_ts in microseconds"),
    ("handshake_rtt_us", "int or null: from the SYN the SYN-ACK answered to the client's final ACK"),
    ("packets_c2s, packets_s2c, bytes_c2s, bytes_s2c", "int: packets and payload bytes each way"),
    ("retransmits_c2s, retransmits_s2c", "int: retransmitted data/FIN segments each way"),
    ("zero_windows_c2s, zero_windows_s2c", "int: times each side advertised a zero window"),
    ("zero_window_us_c2s, zero_window_us_s2c", "int: how long each side's window stayed shut, in microseconds"),
    ("icmp, icmp_from", "string or null: for unreachable, the ICMP kind (port_unreachable, admin_prohibited, host_unreachable, network_unreachable, protocol_unreachable, unreachable_other) and who sent it"),
    ("client_options, server_options", "object or null: mss, window_scale, sack_permitted, timestamps from the SYN and the SYN-ACK"),
    ("ended_by", "string or null: packets, capture_end, idle_timeout, evicted, superseded"),
    ("client_process, server_process", "object, live when known: pid, name"),
    ("kernel", "object or null: live with the kernel witness, what the kernel did to the connection: drops ([{reason, where, path, dir, what, count, first_ts, last_ts}]), resets_sent ([{by, origin, reason, pid, process}]), resets_received, states ({client, server}), synack_retransmits"),
];

const METRICS: &[(&str, &str)] = &[
    (
        "portsniff_connections_total{port,outcome}",
        "finished connections by outcome",
    ),
    (
        "portsniff_resets_total{port,by}",
        "accepted connections torn down by a RST, by client or server",
    ),
    (
        "portsniff_syn_retransmits_total{port}",
        "client SYNs sent again",
    ),
    (
        "portsniff_handshake_rtt_seconds{port}",
        "histogram: SYN to the client's final ACK",
    ),
    (
        "portsniff_connection_duration_seconds{port}",
        "histogram: first to last packet",
    ),
    (
        "portsniff_findings_active{port,kind}",
        "1 once the live diagnosis has said this finding",
    ),
    ("portsniff_packets_captured_total{port}", "packets read"),
    (
        "portsniff_packets_dropped_total{port,by}",
        "packets lost by the kernel's capture buffer or by portsniff",
    ),
    (
        "portsniff_kernel_events_lost_total{port}",
        "kernel witness events lost",
    ),
    (
        "portsniff_flows_tracked{port}",
        "connections held in the flow table now",
    ),
];

const EXAMPLES: &[(&str, &str)] = &[
    (
        "portsniff -i lo --port 61999",
        "watch connections to port 61999 on loopback until Ctrl-C",
    ),
    (
        "portsniff -r saved.pcap --port 61999",
        "explain every connection in a capture file",
    ),
    (
        "portsniff -i any --port 5432 --json | jq .",
        "JSON lines for scripts",
    ),
    (
        "portsniff -i eth0 --port 443 'host 10.0.0.7'",
        "only what a pcap-filter expression matches",
    ),
    (
        "portsniff -i lo --port 8080 --live-summary",
        "a one-screen table redrawn every second",
    ),
    (
        "portsniff -i eth0 --port 443 --metrics 9464",
        "serve OpenMetrics on 127.0.0.1:9464/metrics for Prometheus",
    ),
    (
        "portsniff -i eth0 --port 443 --only-problems -w problems-%Y%m%d-%H%M.pcap -G 3600 -W 48",
        "the problem connections' packets in an hourly file named by its hour, for two days \
         (as tcpdump, -G with -W stops after that many files; -C 100 -W 10 is a ring instead)",
    ),
    (
        "portsniff -r saved.pcap --port 443 --format zeek | zeek-cut id.orig_h conn_state",
        "a Zeek conn.log for Zeek tools",
    ),
    (
        "portsniff --generate man | man -l -",
        "this page, from the binary",
    ),
];

/// A section of `.TP` entries: a bold tag, then its text.
fn tagged(roff: &mut Roff, title: &str, intro: Option<&str>, entries: &[(&str, &str)]) {
    roff.control("SH", [title]);
    if let Some(intro) = intro {
        roff.text([roman(intro)]);
    }
    for (tag, text) in entries {
        roff.control("TP", [])
            .text([bold(*tag)])
            .text([roman(*text)]);
    }
}

/// clap_mangen's title, synopsis, description and options, then the reference sections.
fn man_page(cmd: &clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone().after_help(None::<&str>))
        .section("1")
        .manual("portsniff manual");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    let mut r = Roff::new();
    let outcomes: Vec<(&str, &str)> = Outcome::ALL
        .iter()
        .map(|&o| (o.as_str(), outcome_meaning(o)))
        .collect();
    tagged(
        &mut r,
        "OUTCOMES",
        Some("Every connection gets exactly one outcome. Problems (exit status 1) are unanswered, refused, unreachable, handshake_incomplete and reset."),
        &outcomes,
    );
    let findings: Vec<(&str, &str)> = FindingKind::ALL
        .iter()
        .map(|&k| (k.as_str(), finding_meaning(k)))
        .collect();
    tagged(
        &mut r,
        "FINDINGS",
        Some("After the summary, the Diagnosis ranks the likely causes, each with its evidence, the processes involved and the next step. The kinds:"),
        &findings,
    );
    tagged(
        &mut r,
        "HISTORY",
        Some("The bracketed letters after each connection are its Zeek conn.log history: upper case from the client, lower case from the server."),
        HISTORY,
    );
    tagged(
        &mut r,
        "JSON OUTPUT",
        Some("With --json, one object per line, its \"type\" first, in time order. This is a stable interface: fields may be added, none are renamed or removed."),
        JSON_LINES,
    );
    r.control("SS", ["The flow line"]);
    for (tag, text) in FLOW_FIELDS {
        r.control("TP", []).text([bold(*tag)]).text([roman(*text)]);
    }
    tagged(
        &mut r,
        "METRICS",
        Some("With --metrics ADDR:PORT (live only; a bare port means 127.0.0.1), GET /metrics answers in the OpenMetrics text format. No client address is a label."),
        METRICS,
    );
    tagged(
        &mut r,
        "EXIT STATUS",
        None,
        &[
            ("0", "ran, and saw no problem connection"),
            ("1", "ran, and saw at least one problem connection"),
            ("2", "error: bad arguments, no permission, unknown interface, unreadable or damaged file"),
            ("130", "a second Ctrl-C"),
        ],
    );
    tagged(&mut r, "EXAMPLES", None, EXAMPLES);
    r.control("SH", ["SEE ALSO"]).text([
        bold("tcpdump"),
        roman("(8), "),
        bold("ss"),
        roman("(8), "),
        bold("pcap-filter"),
        roman("(7), "),
        bold("prometheus"),
        roman("(1); the README, for the recipes and the complete JSON schema."),
    ]);
    r.to_writer(out)?;
    man.render_version_section(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(what: Generate) -> String {
        let mut out = Vec::new();
        generate(what, crate::cli::command(), &mut out).expect("written to a Vec");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn the_man_page_names_every_outcome_and_finding_kind() {
        let page = generated(Generate::Man);
        for o in Outcome::ALL {
            assert!(page.contains(o.as_str()), "{o} missing");
        }
        for k in FindingKind::ALL {
            assert!(page.contains(k.as_str()), "{} missing", k.as_str());
        }
    }

    #[test]
    fn interface_completion_offers_interfaces_in_bash_zsh_and_fish() {
        assert!(generated(Generate::Bash).contains("compgen -W \"$(ls /sys/class/net"));
        assert!(generated(Generate::Zsh).contains(":IFACE:_net_interfaces"));
        assert!(generated(Generate::Fish).contains("(ls /sys/class/net) any"));
    }
}

//! Human text: one line per connection as it ends, in plain words, then a summary.

use super::expert::{self, ExpertFlag};
use super::summary::{Percentiles, Summary};
use super::{FlowContext, Onward};
use crate::decode::{Encap, Timestamp};
use crate::diagnose::kernel::DropClass;
use crate::diagnose::{
    ChangeKind, Diagnosis, FactChange, Finding, FindingKind, Later, ProcessInfo, Severity, Update,
};
use crate::flow::{EndReason, FlowRecord, Outcome, Side};
use crate::kernel::{facts::PathName, KernelFacts, ResetOrigin};
use std::fmt::{self, Write as _};
use std::io::{self, Write};

/// ANSI colours, only when writing to a terminal and `NO_COLOR` is unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub(super) fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Failures to connect in bold red, connections torn down in bold yellow, a half
    /// close (a peer not closing its side) in yellow, clean ones in green.
    fn outcome_code(o: Outcome) -> &'static str {
        match o {
            Outcome::Closed | Outcome::Established => "32",
            Outcome::HalfClosed => "33",
            Outcome::Reset | Outcome::HandshakeIncomplete => "33;1",
            Outcome::Refused | Outcome::Unanswered | Outcome::Unreachable => "31;1",
        }
    }

    pub(super) fn outcome(self, o: Outcome) -> String {
        self.paint(Style::outcome_code(o), &format!("{:<20}", o.as_str()))
    }

    fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// `52µs`, `1.25ms`, `3.02s`.
pub fn human_duration(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// One line per window under its finding, oldest first; `folded`: older windows (and
/// their attempts) no longer kept; `failed`: what the attempts in a window met.
fn window_lines(
    out: &mut dyn Write,
    windows: &[crate::diagnose::windows::Window],
    folded: u64,
    folded_attempts: u64,
    failed: &str,
) -> io::Result<()> {
    if folded > 0 {
        writeln!(
            out,
            "     window: {} earlier ({} {failed}) folded",
            plural(folded, "window", "windows"),
            plural(folded_attempts, "attempt", "attempts")
        )?;
    }
    for win in windows {
        writeln!(
            out,
            "     window: {}–{}: {} {failed}; {} accepted before, {} after{}",
            clock(win.start),
            clock(win.end),
            win.attempts,
            win.accepted_before,
            win.accepted_after,
            win.reopened
                .map_or(String::new(), |t| format!(" (from {})", clock(t)))
        )?;
    }
    Ok(())
}

/// Local wall-clock time like tcpdump's default: `20:53:18.123456`.
pub(super) fn clock(ts: Timestamp) -> String {
    ts.clock()
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The plain-words explanation of one flow.
pub fn explain(r: &FlowRecord, kernel: Option<&KernelFacts>) -> String {
    let c = Side::Client.index();
    let s = Side::Server.index();
    let mut why = match r.outcome {
        Outcome::Unanswered => {
            let span = human_duration(r.last_ts.micros_since(r.first_ts));
            // Where the kernel saw the drops, its lines below say where and why: no guess.
            let guess = if kernel.is_some_and(|k| !k.drops.is_empty()) {
                "dropped on this host (the kernel's word below)"
            } else if r.end == Some(EndReason::CaptureEnd) && r.syn_count <= 1 {
                // Never retransmitted: no evidence of a drop by itself. Whether it waited
                // long enough to count (the capture went on past a retransmission timeout,
                // so the client gave up) or was cut short is the diagnosis's to say: it
                // knows when the capture ended, this line does not.
                "not retransmitted before the capture ended"
            } else {
                "dropped on the way (firewall DROP) or by a full listen queue"
            };
            let mut w = format!(
                "{} and no answer over {span}: {guess}",
                plural(u64::from(r.syn_count), "SYN", "SYNs")
            );
            if r.reset_by == Some(Side::Client) {
                w.push_str("; the client gave up");
            } else if r.end.is_none() {
                w.push_str("; the client may still be retrying");
            }
            w
        }
        Outcome::Refused => refused(r, kernel),
        Outcome::Unreachable => match r.icmp {
            Some(i) => format!(
                "SYN answered by ICMP {} from {}",
                i.kind.as_str().replace('_', " "),
                i.reporter
            ),
            None => "SYN answered by an ICMP error".to_string(),
        },
        Outcome::HandshakeIncomplete => {
            let mut w = format!(
                "{} sent, the client's final ACK never arrived",
                plural(u64::from(r.synack_count), "SYN-ACK", "SYN-ACKs")
            );
            if let Some(side) = r.reset_by {
                let _ = write!(w, "; reset by the {}", side.as_str());
            }
            w
        }
        Outcome::Established => format!("open, {} so far", traffic(r)),
        Outcome::Closed => {
            let mut w = format!(
                "closed after {}, {}",
                human_duration(r.duration_us()),
                traffic(r)
            );
            if let Some(side) = r.closed_first_by {
                let _ = write!(w, "; {} closed first (TIME_WAIT on the {0})", side.as_str());
            }
            w
        }
        Outcome::HalfClosed => match r.closed_first_by {
            Some(side) => format!(
                "{} sent FIN, the {} has not closed yet, {}",
                side.as_str(),
                side.other().as_str(),
                traffic(r)
            ),
            None => format!("half closed, {}", traffic(r)),
        },
        Outcome::Reset => {
            let by = r.reset_by.map_or("?", Side::as_str);
            let mut w = format!(
                "reset by the {by} after {}",
                human_duration(r.duration_us())
            );
            if r.bytes[c] + r.bytes[s] == 0 {
                w.push_str(", no data exchanged");
            } else {
                let _ = write!(w, ", {}", traffic(r));
            }
            w
        }
    };
    if r.syn_count > 1 && r.outcome != Outcome::Unanswered {
        let n = r.syn_count - 1;
        let _ = write!(
            why,
            "; {n} SYN retransmission{}",
            if n == 1 { "" } else { "s" }
        );
    }
    if let Some(rtt) = r.handshake_rtt_us {
        let _ = write!(why, "; handshake {}", human_duration(rtt));
    }
    let retrans = u64::from(r.retransmits[c]) + u64::from(r.retransmits[s]);
    if retrans > 0 {
        let _ = write!(
            why,
            "; {}",
            plural(retrans, "retransmission", "retransmissions")
        );
    }
    if r.zero_windows[c] + r.zero_windows[s] > 0 {
        let _ = write!(
            why,
            "; zero window (client {}, server {})",
            r.zero_windows[c], r.zero_windows[s]
        );
    }
    if r.port_reused {
        why.push_str("; port reused while the previous connection held it");
    }
    if r.midstream {
        why.push_str("; seen mid-stream (no handshake in the capture)");
    }
    match r.end {
        Some(EndReason::IdleTimeout) => why.push_str("; idle, stopped tracking"),
        Some(EndReason::Evicted) => why.push_str("; evicted from a full flow table"),
        Some(EndReason::Superseded) => {
            why.push_str("; replaced by a new connection on the same ports")
        }
        Some(EndReason::Packets) | Some(EndReason::CaptureEnd) | None => {}
    }
    why
}

/// A refused attempt's words when the kernel did not see a firewall answer it
/// ([`explain_witnessed`] says that one): what the packets show (a RST answered the SYN)
/// and, with the witness, whether the server's TCP found no socket. The RST alone does
/// not say that nothing listens: a REJECT rule and a full queue under
/// tcp_abort_on_overflow send one too, beside a listener; the diagnosis weighs the
/// listeners.
fn refused(r: &FlowRecord, kernel: Option<&KernelFacts>) -> String {
    let no_socket = kernel.is_some_and(|k| {
        k.resets_sent.iter().any(|x| {
            x.by == Side::Server
                && x.origin == ResetOrigin::Reply
                && x.reason.as_deref().is_none_or(|why| why == "NO_SOCKET")
        })
    });
    if no_socket {
        format!(
            "SYN answered by RST: nothing listens on {} (the kernel found no socket for it)",
            r.server
        )
    } else {
        format!(
            "SYN answered by RST from {}: no listener took it there, or a rule rejected it (the diagnosis says which)",
            r.server
        )
    }
}

fn traffic(r: &FlowRecord) -> String {
    let c = Side::Client.index();
    let s = Side::Server.index();
    format!(
        "{}↑ {}↓ packets, {}↑ {}↓ bytes",
        r.packets[c], r.packets[s], r.bytes[c], r.bytes[s]
    )
}

pub fn write_flow(
    out: &mut dyn Write,
    r: &FlowRecord,
    context: Option<&FlowContext>,
    style: Style,
) -> io::Result<()> {
    let procs = context.and_then(|c| c.processes.as_ref());
    let pending = if r.is_final() { "" } else { " (pending)" };
    let who = match procs {
        Some(p) if p.client.is_some() || p.server.is_some() => {
            let name = |p: &Option<crate::diagnose::ProcessInfo>| {
                p.as_ref()
                    .map_or("?".to_string(), |p| format!("{} (pid {})", p.name, p.pid))
            };
            format!(" {} → {};", name(&p.client), name(&p.server))
        }
        _ => String::new(),
    };
    let flags = expert::flow_tags(r);
    let flags = if flags.is_empty() {
        flags
    } else {
        format!(" {}", style.paint("33", &format!("[{flags}]")))
    };
    let via = match r.encap {
        Encap::None => String::new(),
        e => format!(" via {e}"),
    };
    writeln!(
        out,
        "{} {} → {}{} {}{}{} {} {}{}",
        clock(r.first_ts),
        r.client,
        match context.and_then(|c| c.onward.translated()) {
            Some(t) => t.describe(r.server),
            None => r.server.to_string(),
        },
        via,
        style.outcome(r.outcome),
        pending,
        who,
        context
            .and_then(|c| c.kernel.as_ref())
            .and_then(|k| { explain_witnessed(r, k, context.map_or(Onward::Here, |c| c.onward)) })
            .unwrap_or_else(|| explain(r, context.and_then(|c| c.kernel.as_ref()))),
        style.dim(&format!("[{}]", r.history.as_str())),
        flags,
    )?;
    if let Some(k) = context.and_then(|c| c.kernel.as_ref()) {
        for line in kernel_lines(r, k, context.map_or(Onward::Here, |c| c.onward)) {
            writeln!(out, "    {} {line}", style.dim("kernel:"))?;
        }
    }
    Ok(())
}

/// The flow line's explanation where the kernel's facts settle what the packets only
/// suggest: who really sent a refusal's RST, what dropped the unanswered SYNs. `None`:
/// the packets' explanation stands.
pub fn explain_witnessed(r: &FlowRecord, k: &KernelFacts, onward: Onward) -> Option<String> {
    let reason_of = |sender: Side| k.drops_from(sender).next().map(|d| d.reason.clone());
    match r.outcome {
        Outcome::Refused => {
            // TCP itself answered: the packets' "nothing listens" is the kernel's too. In
            // a storm, its reset may have been counted instead of sent: the packets'
            // explanation stands.
            if k.reset_by(Side::Server).is_some() || k.summarised {
                return None;
            }
            let netfilter = k
                .drops_from(Side::Client)
                .any(|d| d.reason == "NETFILTER_DROP");
            Some(if netfilter {
                "SYN answered by a RST from a firewall REJECT rule, not from the server's TCP"
                    .to_string()
            } else if let Onward::Translated(t) = onward {
                // The port map's backend sits in another network namespace, whose TCP the
                // witness here does not see: the RST is the backend's.
                format!(
                    "SYN forwarded to {} and answered by its RST: nothing listens on the backend (another network namespace)",
                    t.to
                )
            } else if onward == Onward::Unread {
                // Addressed to this host, yet its TCP sent no RST: something took the SYN
                // on before TCP (a port map portsniff did not read) and it was refused
                // where it went.
                format!(
                    "SYN answered by a RST from elsewhere: {} is this host's own address, so \
                     the SYN was forwarded on and refused there",
                    r.server.addr
                )
            } else {
                "SYN answered by a RST this host's TCP did not send (another host or a middlebox)"
                    .to_string()
            })
        }
        Outcome::Unanswered => {
            let span = human_duration(r.last_ts.micros_since(r.first_ts));
            let syns = plural(u64::from(r.syn_count), "SYN", "SYNs");
            if let Some(reason) = reason_of(Side::Server) {
                Some(format!(
                    "{syns} and no answer over {span}: the server's replies were dropped by the kernel ({reason})"
                ))
            } else {
                reason_of(Side::Client).map(|reason| {
                    format!("{syns} and no answer over {span}: the kernel dropped them ({reason})")
                })
            }
        }
        _ => None,
    }
}

/// The kernel's word on a connection, one line per thing it did that a reader of the
/// flow line needs: drops, resets and where they came from. Socket states and SYN-ACK
/// retransmissions stay in the JSON.
pub fn kernel_lines(r: &FlowRecord, k: &KernelFacts, onward: Onward) -> Vec<String> {
    let mut lines = Vec::new();
    for d in &k.drops {
        let sender = d.dir.sender();
        let many = match d.count {
            1 => format!("{} from the {}", d.what, sender.as_str()),
            n => format!(
                "{} from the {}",
                segments(u64::from(n), d.what),
                sender.as_str()
            ),
        };
        let place = match d.path {
            PathName::Ingress => "on arrival".to_string(),
            PathName::Egress => format!("on the {}'s way out", sender.as_str()),
        };
        let func = d.place.map_or(String::new(), |f| format!(" (in {f})"));
        // NO_SOCKET names what the code found, not why: where a SYN cookie's ACK is
        // checked, it means the listener's accept queue had no room.
        let gloss = if DropClass::of(&d.reason, d.place) == DropClass::ListenOverflow
            && d.reason != "TCP_LISTEN_OVERFLOW"
        {
            ": the listener's accept queue was full"
        } else {
            ""
        };
        lines.push(format!("{many} dropped {place}: {}{func}{gloss}", d.reason));
    }
    for reset in &k.resets_sent {
        let why = reset
            .reason
            .as_deref()
            .map_or(String::new(), |r| format!(": {r}"));
        lines.push(match reset.origin {
            ResetOrigin::Reply => format!(
                "RST sent by the {}'s TCP in reply to a segment{why}",
                reset.by.as_str()
            ),
            ResetOrigin::Socket => {
                let who = match (&reset.process, reset.pid) {
                    (Some(name), Some(pid)) => format!(" by {name} (pid {pid})"),
                    _ => String::new(),
                };
                format!(
                    "RST sent by the {}'s socket as it was closed{who}{why}",
                    reset.by.as_str()
                )
            }
        });
    }
    // A reset in the capture that this host's TCP did not send: something else made it.
    // In a storm its reset may have been counted instead of sent: nothing to say here.
    if let Some(side) = r.reset_by.filter(|_| !k.summarised) {
        if k.reset_by(side).is_none() {
            let netfilter = k
                .drops_from(side.other())
                .any(|d| d.reason == "NETFILTER_DROP");
            // A port map's backend sits in another network namespace, whose TCP the
            // witness (attached to this one) does not watch: its RST is the backend's.
            let backend = onward
                .translated()
                .filter(|_| side == Side::Server && !netfilter);
            lines.push(if let Some(t) = backend {
                format!(
                    "the server's RST came from the port map's backend {} in another network \
                     namespace (its TCP is not watched from here)",
                    t.to
                )
            } else if netfilter {
                format!(
                    "the {}'s RST was not sent by TCP: netfilter dropped the {}'s packet and \
                     answered it (a REJECT --reject-with tcp-reset rule)",
                    side.as_str(),
                    side.other().as_str()
                )
            } else if onward == Onward::Unread && side == Side::Server {
                format!(
                    "no RST from this host's TCP on port {}, though {} is this host's own \
                     address: the SYN was rewritten before TCP (a port map or REDIRECT \
                     portsniff did not read: an nft dnat map, IPVS, iptables REDIRECT) and \
                     refused where it was sent (a backend, or another port here)",
                    r.server.port, r.server.addr
                )
            } else {
                // True whether that side is here or elsewhere: said so that a remote peer's
                // own RST (the usual case) does not read as something amiss.
                format!(
                    "the {side}'s RST was not sent by this host's TCP: it came from elsewhere \
                     (the {side}'s own host when it is another, a middlebox, or a REJECT on a \
                     path the witness does not see)",
                    side = side.as_str()
                )
            });
        }
    }
    lines
}

/// `3 SYNs`, `2 data segments` ("data" has no plural of its own), `SYN` for one.
fn segments(n: u64, what: &str) -> String {
    match (n, what) {
        (1, what) => what.to_string(),
        (n, "data") => format!("{n} data segments"),
        (n, what) => format!("{n} {what}s"),
    }
}

/// Said once where a storm begins, above the first line inside it (not on each of its
/// thousands of lines), and once where it ends.
pub fn write_storm_change(out: &mut impl Write, began: bool, style: Style) -> io::Result<()> {
    let words = if began {
        "a storm of drops: the kernel counts them (and TCP's RSTs) by kind from here, not \
         each; the lines until it ends may lack theirs, and the summary has the counts"
    } else {
        "the storm is over: the kernel's drops are told on each connection again"
    };
    writeln!(out, "{} {words}", style.dim("kernel:"))
}

pub(super) fn severity(style: Style, s: Severity) -> String {
    let code = match s {
        Severity::Error => "31;1",
        Severity::Warning => "33;1",
    };
    style.paint(code, &format!("[{}]", s.as_str()))
}

/// A finding made certain during a live capture: one line, right away.
pub fn write_live_finding(out: &mut dyn Write, f: &Finding, style: Style) -> io::Result<()> {
    writeln!(
        out,
        "  {} {} {}: {}  (next: {})",
        style.paint("1", "⇒"),
        severity(style, f.severity),
        f.kind.as_str(),
        f.headline(),
        f.next_step()
    )
}

/// `python3, pid 4242` or `python3 (pid 4242)`.
fn who(p: &ProcessInfo, parenthesised: bool) -> String {
    if parenthesised {
        format!("{} (pid {})", p.name, p.pid)
    } else {
        format!("{}, pid {}", p.name, p.pid)
    }
}

/// A listener change as a live update says it: what is true from now on.
pub fn change_now(c: &FactChange) -> String {
    let at = clock(c.at);
    let ep = c.endpoint;
    match (c.kind, &c.process, c.exact) {
        (ChangeKind::ListenerStarted, Some(p), true) => {
            format!("now listens on {ep} ({}) since {at}", who(p, false))
        }
        (ChangeKind::ListenerStarted, Some(p), false) => {
            format!(
                "now listens on {ep} ({}; first seen at {at})",
                who(p, false)
            )
        }
        (ChangeKind::ListenerStarted, None, true) => format!("now listens on {ep} since {at}"),
        (ChangeKind::ListenerStarted, None, false) => {
            format!("now listens on {ep} (first seen at {at})")
        }
        (ChangeKind::ListenerStopped, Some(p), true) => format!(
            "nothing listens on {ep} any more ({} stopped at {at})",
            who(p, false)
        ),
        (ChangeKind::ListenerStopped, Some(p), false) => format!(
            "nothing listens on {ep} any more ({}; gone by {at})",
            who(p, false)
        ),
        (ChangeKind::ListenerStopped, None, true) => {
            format!("nothing listens on {ep} any more (stopped at {at})")
        }
        (ChangeKind::ListenerStopped, None, false) => {
            format!("nothing listens on {ep} any more (gone by {at})")
        }
    }
}

/// A listener change as the final diagnosis tells it: what happened, when.
pub fn change_then(c: &FactChange) -> String {
    let at = clock(c.at);
    let ep = c.endpoint;
    let by = c
        .process
        .as_ref()
        .map_or_else(|| "a socket".to_string(), |p| who(p, true));
    match (c.kind, c.exact) {
        (ChangeKind::ListenerStarted, true) => format!("{by} started listening on {ep} at {at}"),
        (ChangeKind::ListenerStarted, false) => {
            format!("{by} started listening on {ep} (first seen at {at})")
        }
        (ChangeKind::ListenerStopped, true) => format!("{by} stopped listening on {ep} at {at}"),
        (ChangeKind::ListenerStopped, false) => {
            format!("{by} stopped listening on {ep} (gone by {at})")
        }
    }
}

/// A live update: a fact that live findings rested on changed.
pub fn write_update(out: &mut dyn Write, u: &Update, style: Style) -> io::Result<()> {
    // A listener that stopped makes a nothing_listening printed before it started true
    // again: "describes what came before it" read as if it no longer held.
    let again = u.change.kind == ChangeKind::ListenerStopped;
    let (holds, earlier): (Vec<FindingKind>, Vec<FindingKind>) = u
        .earlier
        .iter()
        .partition(|&&k| again && k == FindingKind::NothingListening);
    let earlier: Vec<&str> = earlier.iter().map(|k| k.as_str()).collect();
    let mut predates = match earlier.as_slice() {
        [] => String::new(),
        [one] => format!("; {one} above describes what came before it"),
        many => format!("; {} above describe what came before it", many.join(", ")),
    };
    if !holds.is_empty() {
        predates.push_str("; nothing_listening above holds again");
    }
    writeln!(
        out,
        "  {} {}{predates}",
        style.paint("1", "⇒ update:"),
        change_now(&u.change)
    )
}

/// The "Diagnosis" section: ranked findings, each with its evidence and next step, what
/// changed since the moment it rests on, then the live findings it no longer repeats.
pub fn write_diagnosis(
    out: &mut dyn Write,
    diagnosis: &Diagnosis,
    live: bool,
    style: Style,
) -> io::Result<()> {
    let findings = &diagnosis.findings;
    writeln!(out)?;
    writeln!(out, "{}", style.paint("1", "Diagnosis"))?;
    if findings.is_empty() {
        writeln!(out, "  nothing wrong seen.")?;
    }
    for (i, f) in findings.iter().enumerate() {
        let words = f.words();
        writeln!(
            out,
            "  {}. {} {}: {}",
            i + 1,
            severity(style, f.severity),
            f.kind.as_str(),
            words.headline
        )?;
        writeln!(out, "     {}", words.explanation)?;
        for p in &f.processes {
            let role = match p.role {
                crate::diagnose::Role::Listener => "listening",
                crate::diagnose::Role::Client => "client",
                crate::diagnose::Role::Holder => "holding sockets",
            };
            writeln!(
                out,
                "     process ({role}): {} (pid {}, user {}): {}",
                OneLine(&p.process.name),
                p.process.pid,
                p.process.user,
                OneLine(&p.process.cmdline)
            )?;
        }
        writeln!(out, "     next: {}", words.next_step)?;
        if let crate::diagnose::Cause::RefusalWindows(w) = &f.cause {
            window_lines(
                out,
                &w.windows,
                w.windows_folded,
                w.attempts_folded,
                "refused",
            )?;
        }
        window_lines(out, &f.windows, 0, 0, "dropped")?;
        for c in &f.facts_changed {
            writeln!(out, "     since then: {}", change_then(c))?;
        }
    }
    for s in &diagnosis.superseded {
        writeln!(
            out,
            "  {} {} (printed at {}): {}",
            style.paint("1", "said live, no longer the diagnosis:"),
            s.live.kind.as_str(),
            clock(s.printed_at),
            s.live.headline()
        )?;
        if let Some(by) = s.by {
            let why = match by {
                FindingKind::SlowConnect => {
                    "the connections it saw unanswered got through on a retransmitted SYN"
                }
                FindingKind::SynFlood => {
                    "the attempts it spoke of were a SYN flood's, from spoofed sources"
                }
                // A startup race's server had not listened before: "again" would say
                // it had.
                FindingKind::StartupRace => {
                    "the server started listening after those refusals and accepted connections"
                }
                FindingKind::ServerRestarted | FindingKind::RestartLoop => {
                    "the server listened again after those refusals and accepted connections"
                }
                _ => "the SYNs it saw unanswered reached the listener, whose answers were lost on the way out",
            };
            writeln!(out, "     why: {why}: see {} above", by.as_str())?;
        } else if let Some(later) = s.later {
            let why = match later {
                Later::TrafficArrived => "connections reached the port after it was printed",
                Later::HandshakesCompleted => {
                    "the handshakes it saw stalled completed after it was printed"
                }
            };
            writeln!(out, "     why: {why}")?;
        } else if s.changes.is_empty() {
            writeln!(
                out,
                "     why: the whole capture and a complete last look at the machine (other namespaces too) support the findings above instead; no listener on the port changed since it was printed"
            )?;
        }
        for c in &s.changes {
            writeln!(out, "     why: since then {}", change_then(c))?;
        }
    }
    if !live {
        writeln!(
            out,
            "  {}",
            style.dim("(replay: findings rest on the packets alone; live captures also read the machine's sockets and counters)")
        )?;
    }
    Ok(())
}

fn pct(p: &Percentiles) -> String {
    match (p.p50, p.p90, p.p99, p.max) {
        (Some(a), Some(b), Some(c), Some(d)) => format!(
            "p50 {}  p90 {}  p99 {}  max {}  ({})",
            human_duration(a),
            human_duration(b),
            human_duration(c),
            human_duration(d),
            plural(p.count, "connection", "connections")
        ),
        _ => "none measured".to_string(),
    }
}

pub fn write_summary(out: &mut dyn Write, s: &Summary<'_>, style: Style) -> io::Result<()> {
    let t = s.tally;
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        style.paint(
            "1",
            &format!(
                "Summary: {} on port {} ({}, {})",
                plural(t.flows(), "connection", "connections"),
                s.port,
                s.source,
                s.link
            )
        )
    )?;
    let mut counts = Vec::new();
    for o in Outcome::ALL {
        if t.count(o) > 0 {
            counts.push(format!("{} {}", o.as_str(), t.count(o)));
        }
    }
    let counts = if counts.is_empty() {
        "none".to_string()
    } else {
        counts.join(", ")
    };
    writeln!(out, "  outcomes        {counts}")?;
    writeln!(
        out,
        "  problems        {}",
        plural(t.problems(), "connection", "connections")
    )?;
    writeln!(
        out,
        "  retransmitted   {} SYN, {} SYN-ACK, {} data/FIN segments",
        t.syn_retransmits, t.synack_retransmits, t.retransmits
    )?;
    // Resets count accepted connections torn down; a refusal's RST is its outcome, so
    // "0" under "refused 2" must not read as a contradiction.
    let refusals = if t.count(Outcome::Refused) > 0 {
        " (after a handshake; refusals are counted above)"
    } else {
        ""
    };
    writeln!(
        out,
        "  resets          by client {}, by server {}{refusals}",
        t.resets_by(Side::Client),
        t.resets_by(Side::Server)
    )?;
    writeln!(
        out,
        "  TIME_WAIT       on client {}, on server {} (the side that closed first)",
        t.time_wait_on(Side::Client),
        t.time_wait_on(Side::Server)
    )?;
    if t.port_reused > 0 || t.midstream > 0 || t.zero_windows > 0 {
        writeln!(
            out,
            "  also            port reused {}, mid-stream {}, zero-window events {}",
            t.port_reused, t.midstream, t.zero_windows
        )?;
    }
    let flags: Vec<String> = ExpertFlag::ALL
        .iter()
        .map(|f| (f.wireshark_name(), f.count_in_tally(t)))
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !flags.is_empty() {
        writeln!(out, "  Wireshark flags {}", flags.join(", "))?;
    }
    writeln!(out, "  handshake RTT   {}", pct(&s.handshake_rtt))?;
    writeln!(out, "  duration        {}", pct(&s.duration))?;
    let other: u64 = s
        .skipped
        .iter()
        .filter(|(r, _)| r.is_other_traffic())
        .map(|(_, n)| n)
        .sum::<u64>()
        + s.syns_elsewhere;
    let mut bad = String::new();
    let mut bad_total = 0;
    for (reason, n) in s.skipped.iter().filter(|(r, _)| !r.is_other_traffic()) {
        bad_total += n;
        let _ = write!(
            bad,
            "{}{} {n}",
            if bad.is_empty() { "" } else { ", " },
            reason.as_str()
        );
    }
    writeln!(
        out,
        "  packets         {} captured, {} decoded{}, {} other traffic, {} undecodable{}",
        s.packets,
        s.decoded,
        match (s.table.after_close, s.table.copies) {
            (0, 0) => String::new(),
            (n, 0) => format!(" ({n} in no flow: after their connection's close delay)"),
            (0, c) => format!(" ({c} in a second copy of a connection shown once)"),
            (n, c) => format!(
                " ({n} in no flow: after their connection's close delay; {c} in a second \
                 copy of a connection shown once)"
            ),
        },
        other,
        bad_total,
        if bad.is_empty() {
            String::new()
        } else {
            format!(" ({bad})")
        }
    )?;
    if let Some(expr) = s.expression {
        if s.live {
            writeln!(
                out,
                "  filter          {expr} (in the kernel, with portsniff's own)"
            )?;
        } else {
            writeln!(
                out,
                "  filter          {expr} ({} packets did not match, not counted above)",
                s.filtered_out
            )?;
        }
    }
    if let Some(k) = s.kernel {
        writeln!(
            out,
            "  kernel          {} received by filter, {} dropped by kernel, {} dropped by interface",
            k.received, k.dropped, k.if_dropped
        )?;
    }
    if s.live || s.internal_dropped > 0 || s.table.evicted > 0 {
        writeln!(
            out,
            "  portsniff       {} dropped (flow stage behind), {} flows evicted (table full)",
            s.internal_dropped, s.table.evicted
        )?;
    }
    if let Some(sys) = &s.system {
        if sys.listeners.is_empty() {
            writeln!(out, "  listeners       none on port {}", s.port)?;
        }
        for l in &sys.listeners {
            let procs: Vec<String> = l
                .processes
                .iter()
                .map(|p| format!("{} (pid {}, {})", p.name, p.pid, p.user))
                .collect();
            writeln!(
                out,
                "  listener        {}{}  queue {}/{}{}  {}",
                l.local,
                l.namespace
                    .as_ref()
                    .map_or(String::new(), |ns| format!(" in {ns}")),
                l.accept_queue,
                l.backlog.map_or("?".to_string(), |b| b.to_string()),
                if l.group > 1 {
                    format!("  (one of {} sockets: SO_REUSEPORT group)", l.group)
                } else {
                    String::new()
                },
                procs.join(", ")
            )?;
        }
        let sockets: Vec<String> = sys
            .sockets
            .iter()
            .map(|((state, side), n)| format!("{n} {} on the {side}", state.to_uppercase()))
            .collect();
        if !sockets.is_empty() {
            writeln!(out, "  sockets         {}", sockets.join(", "))?;
        }
        if !sys.counters.is_empty() {
            let c: Vec<String> = sys
                .counters
                .iter()
                .map(|(k, v)| format!("{k} +{v}"))
                .collect();
            writeln!(out, "  kernel counters {}", c.join(", "))?;
        }
    }
    if s.live {
        let k = &s.kernel_events;
        match &k.why {
            None => {
                writeln!(
                    out,
                    "  kernel events   {} witnessed, kernel events lost {}",
                    k.events, k.lost
                )?;
                if k.summarised > 0 {
                    // The kinds, most first: a storm is one or two of them.
                    let kinds: Vec<String> = k
                        .storm
                        .iter()
                        .take(3)
                        .map(|c| {
                            let reason = c.reason.as_deref().unwrap_or("no reason");
                            match c.kind {
                                "drop" => format!(
                                    "{} from the {} dropped: {reason}",
                                    segments(c.count, c.what),
                                    c.dir.sender().as_str()
                                ),
                                _ => format!(
                                    "{} RSTs sent by the {}'s TCP: {reason}",
                                    c.count,
                                    c.dir.sender().as_str()
                                ),
                            }
                        })
                        .collect();
                    writeln!(
                        out,
                        "  kernel storm    summarised {} (counted by kind, not each): {}",
                        k.summarised,
                        kinds.join("; ")
                    )?;
                }
            }
            Some(why) => writeln!(out, "  kernel events   off: {why}")?,
        }
    }
    if let Some(c) = &s.credentials {
        writeln!(
            out,
            "  running as      uid {} gid {}, capabilities effective {} permitted {}",
            c.uid, c.gid, c.cap_effective, c.cap_permitted
        )?;
    }
    if let Some(e) = &s.error {
        writeln!(out, "  {}", style.paint("31;1", &format!("error: {e}")))?;
    }
    Ok(())
}

/// A process's name or command line on one line of text: its control characters (a
/// `python3 -c` script's newlines, a terminal escape in a name a process gave itself)
/// escaped as Rust writes them (`\n`, `\u{1b}`), so the diagnosis keeps its layout and
/// the terminal its state. JSON keeps the exact text (its own escaping is lossless).
struct OneLine<'a>(&'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{FindingKind, Superseded};

    fn change(kind: ChangeKind, exact: bool, named: bool) -> FactChange {
        FactChange {
            kind,
            endpoint: crate::diagnose::tests::ep("[::1]:61999"),
            at: Timestamp(1_700_000_002_400_000),
            exact,
            from: Timestamp(1_700_000_002_400_000),
            process: named.then(|| ProcessInfo {
                pid: 4242,
                name: "python3".into(),
                cmdline: "python3 server.py".into(),
                user: "root".into(),
            }),
            seq: 0,
        }
    }

    fn nothing_listening() -> Finding {
        Finding::new(
            crate::diagnose::Cause::NothingListening(crate::diagnose::cause::Refused {
                refused: 1,
                server: crate::diagnose::tests::ep("127.0.0.1:61999"),
                kernel: None,
                port: 61999,
                basis: crate::diagnose::cause::Basis::Host,
            }),
            1,
        )
    }

    #[test]
    fn an_update_says_what_is_true_now_who_and_since_when() {
        let at = clock(Timestamp(1_700_000_002_400_000));
        let u = Update {
            change: change(ChangeKind::ListenerStarted, true, true),
            earlier: vec![FindingKind::NothingListening],
        };
        let mut out = Vec::new();
        write_update(&mut out, &u, Style { color: false }).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("  ⇒ update: now listens on [::1]:61999 (python3, pid 4242) since {at}; nothing_listening above describes what came before it\n")
        );
        let stopped = Update {
            change: change(ChangeKind::ListenerStopped, true, true),
            earlier: vec![FindingKind::NothingListening, FindingKind::StartupRace],
        };
        let mut out = Vec::new();
        write_update(&mut out, &stopped, Style { color: false }).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("  ⇒ update: nothing listens on [::1]:61999 any more (python3, pid 4242 stopped at {at}); startup_race above describes what came before it; nothing_listening above holds again\n"),
            "the listener gone again: nothing_listening is true again"
        );
        assert_eq!(
            change_now(&change(ChangeKind::ListenerStopped, true, true)),
            format!("nothing listens on [::1]:61999 any more (python3, pid 4242 stopped at {at})")
        );
        assert_eq!(
            change_now(&change(ChangeKind::ListenerStarted, false, false)),
            format!("now listens on [::1]:61999 (first seen at {at})"),
            "a look, not the kernel: when it was seen, not when it began"
        );
    }

    #[test]
    fn the_diagnosis_says_what_changed_since_and_which_live_findings_it_drops_and_why() {
        let mut f = nothing_listening();
        f.facts_changed
            .push(change(ChangeKind::ListenerStarted, true, true));
        let d = Diagnosis {
            findings: vec![f],
            superseded: vec![Superseded {
                live: nothing_listening(),
                printed_at: Timestamp(1_700_000_001_000_000),
                changes: vec![change(ChangeKind::ListenerStopped, false, true)],
                by: None,
                later: None,
            }],
        };
        let mut out = Vec::new();
        write_diagnosis(&mut out, &d, true, Style { color: false }).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "     since then: python3 (pid 4242) started listening on [::1]:61999 at "
            ),
            "{text}"
        );
        assert!(
            text.contains("  said live, no longer the diagnosis: nothing_listening (printed at "),
            "{text}"
        );
        assert!(
            text.contains("     why: since then python3 (pid 4242) stopped listening on [::1]:61999 (gone by "),
            "{text}"
        );
    }

    #[test]
    fn a_startup_race_says_the_server_started_listening_a_restart_that_it_listened_again() {
        let why = |by: FindingKind| {
            let d = Diagnosis {
                findings: vec![],
                superseded: vec![Superseded {
                    live: nothing_listening(),
                    printed_at: Timestamp(1_700_000_001_000_000),
                    changes: vec![],
                    by: Some(by),
                    later: None,
                }],
            };
            let mut out = Vec::new();
            write_diagnosis(&mut out, &d, true, Style { color: false }).unwrap();
            String::from_utf8(out).unwrap()
        };
        let race = why(FindingKind::StartupRace);
        assert!(
            race.contains("why: the server started listening after those refusals and accepted connections: see startup_race above"),
            "{race}"
        );
        assert!(!race.contains("again"), "it had never listened: {race}");
        for kind in [FindingKind::ServerRestarted, FindingKind::RestartLoop] {
            let restart = why(kind);
            assert!(
                restart.contains("why: the server listened again after those refusals"),
                "{restart}"
            );
        }
    }

    #[test]
    fn a_process_whose_command_line_has_newlines_is_named_on_one_line() {
        let mut f = nothing_listening();
        f.processes.push(crate::diagnose::NamedProcess {
            process: ProcessInfo {
                pid: 4242,
                name: "python3".into(),
                cmdline: "python3 -c \nimport socket\ns = socket.socket()\t# \u{1b}[31m".into(),
                user: "root".into(),
            },
            role: crate::diagnose::Role::Listener,
        });
        let d = Diagnosis {
            findings: vec![f],
            superseded: vec![],
        };
        let mut out = Vec::new();
        write_diagnosis(&mut out, &d, true, Style { color: false }).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("process (listening)"))
            .unwrap_or_else(|| panic!("no process line: {text}"));
        assert_eq!(
            line,
            "     process (listening): python3 (pid 4242, user root): python3 -c \\nimport socket\\ns = socket.socket()\\t# \\u{1b}[31m",
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("     next: ")),
            "the lines after it keep their layout: {text}"
        );
    }

    mod kernel {
        use super::super::*;
        use crate::decode::Timestamp;
        use crate::diagnose::tests::record;
        use crate::kernel::facts::{Dir, DropFact, PathName, ResetFact};

        fn drop(
            what: &'static str,
            dir: Dir,
            path: PathName,
            reason: &str,
            count: u32,
        ) -> DropFact {
            DropFact {
                reason: reason.to_string().into(),
                place: Some("nft_do_chain"),
                path,
                dir,
                what,
                count,
                first_ts: Timestamp(1),
                last_ts: Timestamp(2),
                reason_code: 0,
            }
        }

        fn refused() -> FlowRecord {
            FlowRecord {
                reset_by: Some(Side::Server),
                ..record(Outcome::Refused, "127.0.0.1:61999")
            }
        }

        #[test]
        fn a_refusal_says_nothing_listens_only_on_the_kernels_word() {
            let packets_only = explain(&refused(), None);
            assert!(
                packets_only.contains("no listener took it there, or a rule rejected it"),
                "{packets_only}"
            );
            assert!(!packets_only.contains("nothing listens"), "{packets_only}");
            let k = crate::diagnose::tests::kernel_reset(
                Side::Server,
                ResetOrigin::Reply,
                "NO_SOCKET",
                None,
            );
            let witnessed = explain(&refused(), Some(&k));
            assert!(
                witnessed
                    .contains("nothing listens on 127.0.0.1:61999 (the kernel found no socket"),
                "{witnessed}"
            );
        }

        #[test]
        fn a_syn_cookies_ack_dropped_for_no_socket_is_said_as_the_full_accept_queue() {
            let mut ack = drop("ACK", Dir::C2s, PathName::Ingress, "NO_SOCKET", 1);
            ack.place = Some("cookie_v4_check");
            let mut data = drop("data", Dir::C2s, PathName::Ingress, "NO_SOCKET", 3);
            data.place = Some("cookie_v4_check");
            let k = KernelFacts {
                drops: vec![ack, data],
                ..KernelFacts::default()
            };
            let r = record(Outcome::Established, "127.0.0.1:61999");
            assert_eq!(
                kernel_lines(&r, &k, Onward::Here),
                [
                    "ACK from the client dropped on arrival: NO_SOCKET (in cookie_v4_check): \
                     the listener's accept queue was full",
                    "3 data segments from the client dropped on arrival: NO_SOCKET (in \
                     cookie_v4_check): the listener's accept queue was full",
                ]
            );
        }

        #[test]
        fn a_refusal_netfilter_answered_is_not_called_nothing_listening() {
            let k = KernelFacts {
                drops: vec![drop(
                    "SYN",
                    Dir::C2s,
                    PathName::Ingress,
                    "NETFILTER_DROP",
                    1,
                )],
                ..KernelFacts::default()
            };
            let why = explain_witnessed(&refused(), &k, Onward::Here).unwrap();
            assert!(why.contains("firewall REJECT rule"), "{why}");
            let lines = kernel_lines(&refused(), &k, Onward::Here);
            assert_eq!(
                lines[0],
                "SYN from the client dropped on arrival: NETFILTER_DROP (in nft_do_chain)"
            );
            assert!(lines[1].contains("not sent by TCP"), "{lines:?}");
        }

        #[test]
        fn a_refusal_through_a_port_map_is_the_backends_rst_not_a_firewalls() {
            let to = crate::decode::Endpoint::new("10.77.0.2".parse().unwrap(), 8080);
            let t = crate::report::Translated { port: 18080, to };
            let lines = kernel_lines(&refused(), &KernelFacts::default(), Onward::Translated(t));
            assert_eq!(
                lines,
                [
                    "the server's RST came from the port map's backend 10.77.0.2:8080 in another \
                  network namespace (its TCP is not watched from here)"
                ]
            );
        }

        #[test]
        fn a_refusal_at_this_hosts_own_address_that_tcp_did_not_send_was_forwarded_on() {
            // refused() is to 127.0.0.1: this host's own address, whatever the host.
            let k = KernelFacts::default();
            let why = explain_witnessed(&refused(), &k, Onward::Unread).unwrap();
            assert_eq!(
                why,
                "SYN answered by a RST from elsewhere: 127.0.0.1 is this host's own address, \
                 so the SYN was forwarded on and refused there"
            );
            let lines = kernel_lines(&refused(), &k, Onward::Unread);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(
                lines[0].contains("127.0.0.1 is this host's own address")
                    && lines[0].contains("a port map or REDIRECT portsniff did not read")
                    && !lines[0].contains("own host when it is another"),
                "{lines:?}"
            );
            // Elsewhere (not this host's address), the other host's own RST is the story.
            let elsewhere = kernel_lines(&refused(), &k, Onward::Here);
            assert!(
                elsewhere[0].contains("came from elsewhere"),
                "{elsewhere:?}"
            );
        }

        #[test]
        fn a_refusal_tcp_answered_keeps_the_packets_explanation() {
            let k = KernelFacts {
                resets_sent: vec![ResetFact {
                    by: Side::Server,
                    origin: ResetOrigin::Reply,
                    reason: Some("NO_SOCKET".into()),
                    pid: None,
                    process: None,
                }],
                ..KernelFacts::default()
            };
            assert_eq!(explain_witnessed(&refused(), &k, Onward::Here), None);
            assert_eq!(
                kernel_lines(&refused(), &k, Onward::Here),
                ["RST sent by the server's TCP in reply to a segment: NO_SOCKET"]
            );
        }

        #[test]
        fn unanswered_syns_name_what_dropped_them_and_where() {
            let r = FlowRecord {
                syn_count: 3,
                last_ts: Timestamp(2_000_001),
                ..record(Outcome::Unanswered, "127.0.0.1:61999")
            };
            let k = KernelFacts {
                drops: vec![drop(
                    "SYN-ACK",
                    Dir::S2c,
                    PathName::Egress,
                    "NETFILTER_DROP",
                    3,
                )],
                ..KernelFacts::default()
            };
            let why = explain_witnessed(&r, &k, Onward::Here).unwrap();
            assert!(why.starts_with("3 SYNs and no answer over"), "{why}");
            assert!(
                why.ends_with("the server's replies were dropped by the kernel (NETFILTER_DROP)"),
                "{why}"
            );
            assert_eq!(
                kernel_lines(&r, &k, Onward::Here),
                ["3 SYN-ACKs from the server dropped on the server's way out: NETFILTER_DROP (in nft_do_chain)"]
            );
        }
    }

    #[test]
    fn every_outcome_is_coloured_problems_red_or_yellow_clean_ones_green() {
        for o in Outcome::ALL {
            let painted = Style { color: true }.outcome(o);
            let expected = match o {
                Outcome::Unanswered | Outcome::Refused | Outcome::Unreachable => "\x1b[31;1m",
                Outcome::HandshakeIncomplete | Outcome::Reset => "\x1b[33;1m",
                // Not a failure, but a peer that never closes its side is worth a look.
                Outcome::HalfClosed => "\x1b[33m",
                Outcome::Closed | Outcome::Established => "\x1b[32m",
            };
            assert!(painted.starts_with(expected), "{o}: {painted:?}");
            assert!(painted.ends_with("\x1b[0m"), "{o}: reset after it");
            let plain = Style { color: false }.outcome(o);
            assert_eq!(plain.trim_end(), o.as_str(), "no colour: the bare name");
        }
    }
}

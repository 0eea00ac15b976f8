//! How each finding is said: its headline, explanation and next step, produced from its
//! typed cause, one function per cause. Deciding is the rules' job; nothing here chooses
//! which finding to make.

use super::cause::*;
use super::evidence::ResetContext;
use super::findings::{Finding, Role};
use super::host::firewall::{FirewallRule, Hook, Tool};
use super::kernel::{reason_in_words, PathKey, ResetSource};
use crate::decode::{Endpoint, Timestamp, Unreachable};
use crate::flow::Side;
use std::fmt::Write as _;

/// A finding in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Words {
    pub headline: String,
    pub explanation: String,
    pub next_step: String,
}

fn say(headline: String, explanation: String, next_step: impl Into<String>) -> Words {
    Words {
        headline,
        explanation,
        next_step: next_step.into(),
    }
}

pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Said of conclusions a replay draws from packets alone.
const PACKETS_ONLY: &str =
    " (from the packets alone: a replay has no view of the machine's sockets)";

/// The words of a finding, from its cause.
pub(super) fn of(f: &Finding) -> Words {
    match &f.cause {
        Cause::RejectedWithReset(e) => rejected_with_reset(e),
        Cause::RefusedElsewhere(e) => refused_elsewhere(e),
        Cause::ListenerOtherFamily(e) => listener_other_family(e),
        Cause::ListenerOtherAddress(e) => listener_other_address(e),
        Cause::ListenerOtherNamespace(e) => listener_other_namespace(e),
        Cause::NothingListening(e) => nothing_listening(e),
        Cause::ForwardedNothingListening(e) => forwarded_nothing_listening(e),
        Cause::RefusalWindows(e) => refusal_windows(e),
        Cause::AcceptQueueFull(e) => accept_queue_full(e, f),
        Cause::HandshakeAcksDropped(e) => handshake_acks_dropped(e),
        Cause::SilentlyDropped(e) => silently_dropped(e),
        Cause::SynsDropped(e) => syns_dropped(e),
        Cause::RepliesDropped(e) => replies_dropped(e),
        Cause::RepliesUnseen(e) => replies_unseen(e, f),
        Cause::SlowConnect(e) => slow_connect(e, f),
        Cause::InvalidSource(e) => invalid_source(e),
        Cause::SynFlood(e) => syn_flood(e),
        Cause::IcmpRejected(e) => icmp_rejected(e),
        Cause::IcmpUnreachable(e) => icmp_unreachable(e),
        Cause::HandshakeStalled(e) => handshake_stalled(e),
        Cause::Reset(e) => reset(e, named(f, role_of(e.by))),
        Cause::ReceiverStalled(e) => receiver_stalled(e, named(f, role_of(e.side))),
        Cause::TimeWaitReuse(e) => time_wait_reuse(e),
        Cause::TimeWaitBuildup(e) => time_wait_buildup(e, named(f, Role::Holder)),
        Cause::ServerClosesFirst(e) => server_closes_first(e),
        Cause::EphemeralPortsExhausted(e) => ports_exhausted(e, named(f, Role::Holder)),
        Cause::NoTrafficFiltered(e) => no_traffic_filtered(e),
        Cause::NoTraffic(e) => no_traffic(e),
        Cause::CaptureCutShort(e) => capture_cut_short(e),
        Cause::OneSidedView(e) => one_sided_view(e),
        Cause::TruncatedView(e) => truncated_view(e),
    }
}

/// The role a side's process is named in: the server's is the listener's owner.
fn role_of(side: Side) -> Role {
    match side {
        Side::Server => Role::Listener,
        Side::Client => Role::Client,
    }
}

/// The processes a finding names in `role`, as "python3 (pid 42), nginx (pid 7)".
fn named(f: &Finding, role: Role) -> Option<String> {
    let names: Vec<String> = f
        .processes
        .iter()
        .filter(|p| p.role == role)
        .map(|p| format!("{} (pid {})", p.process.name, p.process.pid))
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

fn the_syns(n: u64) -> &'static str {
    if n == 1 {
        "the SYN"
    } else {
        "the SYNs"
    }
}

/// Where netfilter stopped a packet, in words.
fn stopped_at(hook: Hook) -> &'static str {
    match hook {
        Hook::Output | Hook::Postrouting | Hook::Egress => "on the way out, in OUTPUT",
        Hook::Ingress | Hook::Prerouting | Hook::Input | Hook::Forward => "on arrival, in INPUT",
    }
}

fn rejected_with_reset(e: &FirewallResets) -> Words {
    let (refused, server, port) = (
        plural(e.refused, "connection", "connections"),
        e.server,
        e.server.port,
    );
    let listener = match e.listener {
        Some(l) => {
            format!(" A listener on {l} exists: without the rule the connection would succeed.")
        }
        None => String::new(),
    };
    let rule = match &e.rule {
        Some(r) => format!(" The rule: {r}."),
        None => String::new(),
    };
    let next = match &e.rule {
        Some(r) => format!("if these connections should pass, remove or narrow {r}"),
        None => format!("look for a REJECT rule: iptables -S | grep -- '{port}'; nft list ruleset | grep {port}"),
    };
    match (&e.drop_reason, e.listener) {
        (Some(reason), _) => say(
            format!("{refused} to {server} rejected by a firewall rule: netfilter dropped the SYN and answered with a RST, not TCP"),
            format!(
                "The kernel saw netfilter drop {} {} ({reason}), and TCP send no reset: the RST the client got came \
                 from a `REJECT --reject-with tcp-reset` rule, which a client cannot tell from \"connection refused\".{listener}{rule}",
                the_syns(e.refused),
                stopped_at(e.hook)
            ),
            next,
        ),
        (None, listener) => {
            let listener = listener.map_or_else(|| "a listener".to_string(), |l| l.to_string());
            say(
                format!("{refused} to {server} refused although {listener} listens there: something in between answers with RST"),
                format!(
                    "A listener on {listener} should have answered the SYNs with SYN-ACK, but the host answered with RST. \
                     That is what a firewall rule `REJECT --reject-with tcp-reset` does (or a listener that closed \
                     and reopened between the attempts).{rule}"
                ),
                next,
            )
        }
    }
}

fn refused_elsewhere(e: &RefusedElsewhere) -> Words {
    let (refused, server, port) = (
        plural(e.refused, "connection", "connections"),
        e.server,
        e.server.port,
    );
    let listener = match e.listener {
        Some(l) => format!(" A listener on {l} exists here: the SYNs never reached it."),
        None => String::new(),
    };
    if e.own_address {
        // No other host or middlebox answers for an address of this host: the SYNs
        // were sent on from here, by a rule or program that rewrote their destination.
        return say(
            format!(
                "{refused} to {server} refused, but this host's TCP sent no RST on port {port}: {} is this host's own address, so the SYNs were forwarded elsewhere (a backend, or another port here) and refused there",
                server.addr
            ),
            format!(
                "The kernel saw this host's TCP send no RST on port {port} for these connections and its firewall drop \
                 none of their packets, yet {} is an address of this network namespace. Something here rewrote the SYNs' \
                 destination before they reached a socket (a DNAT that portsniff could not read: an nft map, IPVS, an eBPF \
                 load balancer; or a REDIRECT to another port), and where it sent them nothing listened and TCP answered \
                 with RST: a backend, or another port of this host (the witness watches port {port} only).{listener}",
                server.addr
            ),
            format!(
                "find where port {port} is forwarded: nft list ruleset | grep -nE 'dnat|redirect'; ipvsadm -Ln; then ss -ltn where it points (the backend, or this host's target port)"
            ),
        );
    }
    say(
        format!("{refused} to {server} refused, but not by this host: the RST came from another host or a middlebox"),
        format!(
            "The kernel saw this host's TCP send no RST for these connections and its firewall drop none of their \
             packets, so the RST came from outside this network namespace: {server}'s own host if it is remote (nothing \
             listens there, or its firewall rejects), or a middlebox on the path answering for it (a load balancer, a \
             firewall appliance, a NAT).{listener}"
        ),
        format!(
            "on {}'s host: ss -ltn 'sport = :{port}' and its firewall; then the load balancers and firewalls on the path",
            server.addr
        ),
    )
}

/// What the kernel's TCP said when it answered a SYN with RST.
fn tcp_refusal(server: Endpoint, kernel: &ResetSource) -> String {
    match kernel.reason() {
        Some(r @ "NO_SOCKET") => {
            format!("The kernel answered with a RST: no socket for {server} ({r}). ")
        }
        Some(r) => format!("The kernel's TCP answered the SYN with a RST ({r}). "),
        None => "The kernel's TCP answered the SYN with a RST (this kernel gives no reason). "
            .to_string(),
    }
}

/// Where a client can connect to reach `listener`: a wildcard ([::]:P, 0.0.0.0:P) is no
/// address to connect to; from this host, its family's loopback is.
fn connectable(listener: Endpoint, server: Endpoint) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    if !listener.addr.is_unspecified() {
        return listener.to_string();
    }
    let loopback = match listener.addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let local = Endpoint::new(loopback, listener.port);
    if server.addr.is_loopback() {
        local.to_string()
    } else {
        let family = if listener.addr.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        };
        format!(
            "an {family} address of the server's host on port {} ({local} from that host)",
            listener.port
        )
    }
}

fn listener_other_family(e: &RefusedWithListener) -> Words {
    let (refused, server, listener) = (
        plural(e.refused, "connection", "connections"),
        e.server,
        e.listener,
    );
    let target = connectable(listener, server);
    match e.basis {
        Basis::Host => {
            let family = if server.addr.is_ipv4() { "IPv6" } else { "IPv4" };
            say(
                format!("{refused} to {server} refused: the server listens on {listener} ({family} only)"),
                format!(
                    "Nothing listens on {server}, but {listener} does. The client and the server disagree on the \
                     address family: typically `localhost` resolves to ::1 for one and 127.0.0.1 for the other, \
                     or the server bound [::] with IPV6_V6ONLY."
                ),
                format!(
                    "connect to {target} instead, or make the server listen on both families (bind 0.0.0.0 and ::, or [::] without V6ONLY)"
                ),
            )
        }
        Basis::Packets => say(
            format!("{refused} to {server} refused while connections to {listener} succeeded"),
            format!(
                "The server answers on {listener} but refuses {server}: it listens on one address family only. \
                 Typically `localhost` resolves to ::1 for one program and 127.0.0.1 for another{PACKETS_ONLY}."
            ),
            format!("connect to {target}, or make the server listen on both families"),
        ),
    }
}

fn listener_other_address(e: &RefusedWithListener) -> Words {
    let (refused, server, listener, port) = (
        plural(e.refused, "connection", "connections"),
        e.server,
        e.listener,
        e.port,
    );
    match e.basis {
        Basis::Host => say(
            format!("{refused} to {server} refused: the server is bound to {listener} only"),
            format!(
                "A listener on port {port} exists but bound to {listener}, not to {} or a wildcard address, \
                 so SYNs to {server} find no socket.",
                server.addr
            ),
            format!(
                "connect to {listener}, or bind the server to {} or 0.0.0.0",
                server.addr
            ),
        ),
        Basis::Packets => say(
            format!("{refused} to {server} refused while connections to {listener} succeeded"),
            format!(
                "The server is bound to {} but not to {}{PACKETS_ONLY}.",
                listener.addr, server.addr
            ),
            format!(
                "connect to {listener}, or bind the server to {} or 0.0.0.0",
                server.addr
            ),
        ),
    }
}

fn listener_other_namespace(e: &RefusedInNamespace) -> Words {
    let (refused, server, listener, port, ns) = (
        plural(e.refused, "connection", "connections"),
        e.server,
        e.listener,
        e.port,
        &e.namespace,
    );
    say(
        format!("{refused} to {server} refused: port {port} listens in another network namespace ({ns})"),
        format!(
            "Nothing listens on port {port} in this network namespace, but {listener} does in {ns} \
             (a container or `ip netns`). Traffic on this side never reaches it unless the port is published or forwarded."
        ),
        format!(
            "publish the port (docker run -p {port}:{port} …), or connect from inside that namespace: nsenter -t {} -n",
            e.nsenter_pid
        ),
    )
}

fn forwarded_nothing_listening(e: &ForwardedRefused) -> Words {
    let (refused, port, backend) = (
        plural(e.refused, "connection", "connections"),
        e.forwarded_port,
        e.backend,
    );
    let ns = match &e.namespace {
        Some(ns) => format!(" in {ns}"),
        None => String::new(),
    };
    let instead = match (e.listening_there.first(), &e.listener_process) {
        (Some(l), Some((name, pid))) => format!("; {name} (pid {pid}) listens on {} in that namespace", l.port),
        (Some(l), None) => format!("; {l} listens in that namespace"),
        (None, _) if e.namespace.is_some() => "; nothing listens in that namespace at all".to_string(),
        (None, _) => "; no process sits in a network namespace holding that address (the container may be stopped)".to_string(),
    };
    let next = match e.listening_there.first() {
        Some(l) => format!(
            "point the port map at the port the server uses ({}:{}), or make the server listen on {backend}",
            backend.addr, l.port
        ),
        None => format!("start the container's server on {backend}, or fix the port map"),
    };
    say(
        format!("{refused} to port {port} refused: host:{port} is forwarded to {backend}{ns}, where nothing listens"),
        format!(
            "A DNAT rule (`{}`) forwards port {port} to {backend}{ns}: nothing listens there{instead}.",
            e.rule
        ),
        next,
    )
}

fn nothing_listening(e: &Refused) -> Words {
    let (refused, server, port) = (
        plural(e.refused, "connection", "connections"),
        e.server,
        e.port,
    );
    let kernel = match &e.kernel {
        Some(k) => tcp_refusal(server, k),
        None => String::new(),
    };
    let why = match e.basis {
        Basis::Host => format!("{kernel}No socket listens on port {port} in any address family here, nor in another network namespace."),
        Basis::Packets => format!(
            "The server host answered each SYN with RST, which is what a host does when no socket listens on that address and port{PACKETS_ONLY}."
        ),
    };
    say(
        format!("{refused} to {server} refused: nothing listens on port {port}"),
        why,
        format!(
            "start the server, or check which port and address it binds: ss -ltnp 'sport = :{port}'"
        ),
    )
}

fn refusal_windows(e: &RefusalWindows) -> Words {
    let server = match (e.backend, e.forwarded_port) {
        (Some(b), Some(p)) => format!("host:{p} (forwarded to {b})"),
        _ => e.server.to_string(),
    };
    let Some(last) = e.windows.last() else {
        return say(
            format!("connections to {server} refused in windows between accepted ones"),
            String::new(),
            "read the server's logs around each refusal",
        );
    };
    // When the port was open again, as the packets show it: the first accepted SYN.
    let open = last.reopened.unwrap_or(last.end);
    let closed_for = seconds(open.micros_since(last.start));
    let refused = plural(last.attempts, "attempt", "attempts");
    // The witness saw the listen() that ended the window: how late the server was is a
    // fact, not the bound the first accepted SYN gives.
    let listened = e
        .listener_started
        .as_ref()
        .filter(|s| s.exact && s.at >= last.start.as_micros() && s.at <= open.as_micros())
        .map(|s| seconds(s.at - last.start.as_micros()));
    let (headline, why, next) = match e.pattern {
        Pattern::StartupRace => (
            {
                let first = if last.attempts == 1 {
                    "the first attempt".to_string()
                } else {
                    format!("the first {refused}")
                };
                let was = if last.attempts == 1 { "was" } else { "were" };
                match listened {
                    Some(late) => format!(
                        "{first} to {server} {was} refused: the server listened {late} after {} \
                         (its listen() call), so the client started before the server was ready",
                        if last.attempts == 1 { "it" } else { "the first" }
                    ),
                    None => format!(
                        "{first} to {server} {was} refused; it accepted {closed_for} after the first: \
                         the client started up to {closed_for} before the server listened"
                    ),
                }
            },
            "Every refusal came before the first accepted connection, and none after: the server was not \
             listening yet when the client first tried (a startup race)."
                .to_string(),
            "make the client retry with backoff, or start it only once the server is ready (a readiness \
             check: systemd Type=notify, a health check, depends_on with condition: service_healthy)",
        ),
        Pattern::Restarted => (
            format!(
                "the port was closed for {closed_for} between accepted connections to {server}: a restart \
                 or deploy; {refused} refused in that window"
            ),
            format!(
                "{} accepted before the window and {} after it: the server stopped listening and came back.",
                plural(last.accepted_before, "connection", "connections"),
                plural(last.accepted_after, "connection", "connections"),
            ),
            "restart without closing the port: hand the listening socket over (SO_REUSEPORT with the new \
             process listening before the old one closes, systemd socket activation), or drain behind a load \
             balancer first",
        ),
        Pattern::RestartLoop => {
            let windows = e.windows.len() as u64 + e.windows_folded;
            let every = e
                .period_us
                .map_or(String::new(), |p| format!(", one every {}", seconds(p)));
            (
                format!(
                    "{server} refused connections in {windows} windows between accepted ones{every}: a crash \
                     or restart loop"
                ),
                format!(
                    "The server keeps going away and coming back: {} refused in all.",
                    plural(e.refused, "attempt", "attempts")
                ),
                "read the server's logs around each window for why it exits (journalctl -u SERVICE, docker \
                 logs CONTAINER, kubectl logs --previous), and its restart policy",
            )
        }
    };
    let mut why = why;
    if e.basis == Basis::Packets {
        why.push_str(" (From the packets alone: the times are the SYNs' in the capture.)");
    }
    if let Some(s) = &e.listener_started {
        let who = match (&s.process, s.pid) {
            (Some(name), Some(pid)) => format!("{name} (pid {pid})"),
            _ => "a process".to_string(),
        };
        let when = if s.exact || s.from >= s.at {
            format!("at {}", Timestamp(s.at).clock())
        } else {
            // Seen by a look: it listened by then, and not at the look before.
            format!(
                "between {} and {} (the looks at the sockets either side)",
                Timestamp(s.from).clock(),
                Timestamp(s.at).clock()
            )
        };
        let _ = write!(why, " {who} started listening on {} {when}", s.endpoint);
        match &e.predecessor_stopped {
            Some(p) => {
                let pred = match (&p.process, p.pid) {
                    (Some(_), Some(pid)) if p.pid != s.pid => format!(" (pid {pid})"),
                    _ => String::new(),
                };
                let _ = write!(
                    why,
                    ", {} after its predecessor{pred} stopped.",
                    seconds(s.at.saturating_sub(p.at))
                );
            }
            None => why.push('.'),
        }
    }
    if e.still_refused > 0 {
        let _ = write!(
            why,
            " {} after the last accepted connection {} said apart.",
            plural(e.still_refused, "attempt", "attempts"),
            if e.still_refused == 1 {
                "was refused, which is"
            } else {
                "were refused, which are"
            }
        );
    }
    say(headline, why, next)
}

fn accept_queue_full(e: &QueueOverflow, f: &Finding) -> Words {
    let port = e.port;
    let names: Vec<String> = f
        .processes
        .iter()
        .filter(|p| p.role == Role::Listener)
        .map(|p| format!("{} (pid {})", p.process.name, p.process.pid))
        .collect();
    let who = match &e.full {
        _ if !names.is_empty() => names.join(", "),
        Some(l) => format!("the listener on {}", l.listener),
        None => format!("the listener on port {port}"),
    };
    // Said whenever the witness was on, dropped packets or not, so that the words do not
    // change with how a race between clients went.
    let kernel = match &e.kernel {
        Some(k) if k.packets > 0 => {
            let place = k.place.as_deref().map_or(String::new(), |p| format!(" in {p}"));
            let dropped = match k.what.as_slice() {
                [] | ["ACK"] => plural(k.packets, "handshake ACK", "handshake ACKs"),
                [what] => segments(k.packets, what),
                kinds => format!(
                    "{} ({})",
                    plural(k.packets, "segment", "segments"),
                    kinds.join(", ")
                ),
            };
            // NO_SOCKET is what `cookie_v4_check` says when a SYN cookie's ACK cannot
            // become a socket: the queue had no room for it either.
            let cookie = if k.reason == "NO_SOCKET" {
                " (the ACK of a SYN cookie, which the kernel sent once the queue was full, could not become a connection)"
            } else {
                ""
            };
            format!(
                " The kernel dropped {dropped} with reason {}{place}{cookie} (retransmitted ones included): clients whose \
                 side of the handshake completed, who believe they are connected, found no room in the queue. \
                 SYNs meeting a full queue are discarded without a drop reason: only the counters count them.",
                k.reason,
            )
        }
        Some(k) => format!(
            " The kernel dropped {} with reason {}: the attempts that got no answer were turned away at the SYN, \
             which a full queue discards without a drop reason, so only the counters count them.",
            plural(0, "handshake ACK", "handshake ACKs"),
            k.reason,
        ),
        None => String::new(),
    };
    let headline = format!(
        "the accept queue on port {port} is full: {who} is not calling accept() fast enough"
    );
    let next = format!(
        "check the server's accept loop (stuck or too slow?); watch `ss -ltn 'sport = :{port}'` (Recv-Q vs Send-Q); raise the backlog (listen(), net.core.somaxconn)"
    );
    if e.abort_on_overflow == Some(true) {
        // tcp_check_req: with the sysctl on, the ACK that finds no room is answered with
        // RST (and counted in ListenOverflows), not dropped.
        return say(
            headline,
            format!(
                "{} reset by the server before it sent anything (at the handshake's ACK or the first request), and {} \
                 unanswered, while the listen queue was full \
                 (the kernel's ListenOverflows grew by {}, ListenDrops by {}). net.ipv4.tcp_abort_on_overflow is 1 here: \
                 Linux answers a handshake ACK that finds the accept queue full with a RST instead of dropping it, so the \
                 client's connect() succeeds and its first read or write fails with \"connection reset by peer\". \
                 No firewall or access rule is involved; SYNs meeting a full queue are still dropped silently.{kernel}",
                plural(e.handshake_resets, "connection", "connections"),
                plural(e.unanswered, "connection attempt", "connection attempts"),
                e.listen_overflows,
                e.listen_drops,
            ),
            format!(
                "{next}; with net.ipv4.tcp_abort_on_overflow=0 (the default) a client whose ACK finds the queue full retries \
                 instead of being reset, which rides out short bursts"
            ),
        );
    }
    if let Some(g) = &e.reuseport_group {
        let listener = e
            .full
            .as_ref()
            .map_or(format!("port {port}"), |l| l.listener.to_string());
        return say(
            format!(
                "about 1 in {} new connections to {listener} go to {who}, which stopped accepting: its SO_REUSEPORT \
                 queue is full while {} healthy",
                g.members,
                plural(g.healthy as u64, "other member is", "other members are"),
            ),
            format!(
                "{listener} is served by an SO_REUSEPORT group of {} listening sockets; the kernel hashes each new \
                 connection to one of them, so about 1/{} of them land on {who}, whose accept queue is full: it does not \
                 call accept(). {} and {} went unanswered or were dropped there (ListenOverflows grew by {}, ListenDrops \
                 by {}); the connections hashed to the other members succeed.{kernel}",
                g.members,
                g.members,
                plural(e.unanswered, "connection attempt", "connection attempts"),
                plural(e.handshake_acks_dropped, "handshake ACK", "handshake ACKs"),
                e.listen_overflows,
                e.listen_drops,
            ),
            format!(
                "fix or restart {who} (a stuck accept loop, a dead worker still holding its socket), or close its \
                 socket so that the group rebalances; a larger backlog would only delay the failures: \
                 ss -ltnp 'sport = :{port}' lists each member with its Recv-Q"
            ),
        );
    }
    say(
        headline,
        format!(
            "{} while the listen queue was full \
             (the kernel's ListenOverflows grew by {}, ListenDrops by {}). \
             Linux drops SYNs and handshake ACKs once completed connections wait beyond the listen() backlog.{kernel}",
            queue_losses(e),
            e.listen_overflows,
            e.listen_drops,
        ),
        next,
    )
}

/// What a full accept queue cost, without the counts that are zero.
fn queue_losses(e: &QueueOverflow) -> String {
    match (e.unanswered, e.handshake_acks_dropped) {
        (0, 0) => "Handshakes found no room".to_string(),
        (0, acks) => format!(
            "{} dropped",
            plural(acks, "handshake ACK was", "handshake ACKs were")
        ),
        (n, 0) => format!(
            "{} went unanswered",
            plural(n, "connection attempt", "connection attempts")
        ),
        (n, acks) => format!(
            "{} went unanswered and {} dropped",
            plural(n, "connection attempt", "connection attempts"),
            plural(acks, "handshake ACK was", "handshake ACKs were")
        ),
    }
}

fn handshake_acks_dropped(e: &AcksDropped) -> Words {
    say(
        format!(
            "the server dropped the final ACK of {}: its accept queue was probably full",
            plural(e.handshake_acks_dropped, "handshake", "handshakes")
        ),
        format!(
            "The client ACKed the SYN-ACK, yet the server retransmitted its SYN-ACK: Linux discards a \
             handshake's last ACK when the listener's accept queue is full{PACKETS_ONLY}."
        ),
        format!(
            "on the server: nstat -az TcpExtListenOverflows; ss -ltn 'sport = :{}'",
            e.port
        ),
    )
}

fn silently_dropped(e: &Unanswered) -> Words {
    let port = e.port;
    let servers: Vec<String> = e.servers.iter().map(ToString::to_string).collect();
    let because = match e.listening {
        Some(true) => format!(
            "A listener exists on port {port} and its queue is not full (ListenOverflows did not grow), so the SYNs are \
             dropped before they reach it: a firewall DROP rule, or a route that black-holes them."
        ),
        Some(false) => format!(
            "Nothing listens on port {port} here, yet no RST came back: something drops the SYNs before the host can refuse them \
             (a firewall DROP rule), or they are routed somewhere that never answers."
        ),
        None => format!(
            "No SYN-ACK, RST or ICMP error came back. A firewall DROP rule does this, and so does a listener whose accept queue is \
             full{PACKETS_ONLY}."
        ),
    };
    say(
        format!(
            "{} to {} got no answer at all: the SYNs are silently dropped",
            plural(e.unanswered, "connection attempt", "connection attempts"),
            servers.join(", ")
        ),
        format!(
            "{} ({} SYNs including retransmissions) and nothing answered. {because}",
            plural(e.unanswered, "attempt", "attempts"),
            e.syns
        ),
        format!(
            "look for a DROP rule: iptables -S | grep -- '{port}'; nft list ruleset | grep {port}; on the server: nstat -az TcpExtListenOverflows"
        ),
    )
}

/// `3 SYNs`, `1 SYN-ACK`, `2 data segments`: a count of one kind of segment.
fn segments(n: u64, what: &str) -> String {
    match what {
        "data" => plural(n, "data segment", "data segments"),
        "ICMP" => plural(n, "ICMP error", "ICMP errors"),
        w => plural(n, w, &format!("{w}s")),
    }
}

/// `(nft_do_chain, INPUT)`: the kernel function and, when a rule was found, its chain;
/// otherwise which way the packets were going.
fn where_dropped(site: &DropSite) -> String {
    let at = match (&site.rule, site.path) {
        (Some(r), _) if matches!(r.tool, Tool::Iptables | Tool::Ip6tables) => r.chain.clone(),
        (Some(r), _) => format!("{} hook", r.hook),
        (None, PathKey::Ingress) => "on arrival".to_string(),
        (None, PathKey::Egress) => "on the way out".to_string(),
    };
    match &site.place {
        Some(place) => format!("({place}, {at})"),
        None => format!("({at})"),
    }
}

/// `NETFILTER_DROP (nft_do_chain, INPUT): iptables -t filter rule "…"`.
fn dropped_by(site: &DropSite) -> String {
    let rule = site
        .rule
        .as_ref()
        .map_or(String::new(), |r| format!(": {r}"));
    format!("{} {}{rule}", site.reason, where_dropped(site))
}

/// `reason NETFILTER_DROP in nft_do_chain (a firewall rule)`.
fn reason_with_place(site: &DropSite) -> String {
    let place = site
        .place
        .as_deref()
        .map_or(String::new(), |p| format!(" in {p}"));
    let words = reason_in_words(&site.reason).map_or(String::new(), |w| format!(" ({w})"));
    format!("reason {}{place}{words}", site.reason)
}

/// For a firewall's drop, which rule did it, or why none is named: sentences for an
/// explanation (empty for other reasons).
fn rule_said(site: &DropSite, port: u16) -> String {
    let mut said = String::new();
    let (way, hooks) = match (site.to_port, site.path) {
        (true, PathKey::Ingress) => ("to", "prerouting and input"),
        (true, PathKey::Egress) => ("to", "output and postrouting"),
        (false, PathKey::Ingress) => ("from", "prerouting and input"),
        (false, PathKey::Egress) => ("from", "output and postrouting"),
    };
    match (&site.rule, &site.ruleset) {
        (Some(r), _) => {
            let which = if r.names_port && !r.conditional {
                "the rule that drops"
            } else {
                "the likeliest rule for"
            };
            let when = match site.path {
                PathKey::Ingress => "as it arrives",
                PathKey::Egress => "as it leaves",
            };
            said.push_str(&format!(
                " In the ruleset read when portsniff started, {which} TCP {way} port {port} {when} is {r} (hook {})",
                r.hook
            ));
            if r.policy {
                said.push_str(": no rule decided for these packets, so the chain's policy dropped them");
            }
            said.push('.');
            if r.conditional {
                said.push_str(" It also matches on other things (addresses, state, flags), so it is the likeliest rule, not a certainty.");
            }
        }
        (None, RulesetSeen::Read { unread }) => {
            said.push_str(&format!(
                " The ruleset read when portsniff started had no DROP rule for TCP {way} port {port} at the {hooks} hooks: \
                 it may have changed since, or a rule drops these packets on other grounds (a mark, a set, an address)."
            ));
            if let Some(why) = unread {
                said.push_str(&format!(" Part of it could not be read: {why}."));
            }
        }
        (None, RulesetSeen::NotRead) => said.push_str(
            " The ruleset could not be read when portsniff started (it needs root or CAP_NET_ADMIN), so no rule is named.",
        ),
        (None, RulesetSeen::NotAsked) => {}
    }
    said
}

/// How to see the rule (read-only), and the command that would remove it, as advice.
fn rule_next_step(r: &FirewallRule, port: u16, to_port: bool) -> String {
    const NEVER: &str = "(portsniff never changes the ruleset)";
    match r.tool {
        Tool::Iptables | Tool::Ip6tables => {
            let (tool, table, chain) = (r.tool.as_str(), &r.table, &r.chain);
            let see = format!(
                "see it and its packet counters: {tool} -t {table} -L {chain} -v -n --line-numbers"
            );
            if r.policy {
                let dport = if to_port { "--dport" } else { "--sport" };
                format!("{see}; to let the port through {NEVER}: {tool} -t {table} -I {chain} -p tcp {dport} {port} -j ACCEPT")
            } else {
                let delete = r.text.strip_prefix("-A ").map_or_else(
                    || r.text.clone(),
                    |rest| format!("{tool} -t {table} -D {rest}"),
                );
                format!("{see}; to remove it {NEVER}: {delete}")
            }
        }
        Tool::Nft => {
            let (table, chain) = (&r.table, &r.chain);
            let see = format!("see it: nft -a list chain {table} {chain}");
            match (r.policy, r.handle) {
                (true, _) => {
                    let dir = if to_port { "dport" } else { "sport" };
                    format!("{see}; to let the port through {NEVER}: nft insert rule {table} {chain} tcp {dir} {port} accept")
                }
                (false, Some(h)) => format!(
                    "{see}; to remove it {NEVER}: nft delete rule {table} {chain} handle {h}"
                ),
                (false, None) => format!(
                    "{see} (the -a shows its handle, for nft delete rule {table} {chain} handle N)"
                ),
            }
        }
    }
}

/// The next step for a drop: the rule's commands, or where to look for that reason.
fn drop_next_step(site: &DropSite, port: u16) -> String {
    if let Some(r) = &site.rule {
        return rule_next_step(r, port, site.to_port);
    }
    match site.reason.as_str() {
        "NETFILTER_DROP" => {
            "list the rules as they are now: iptables-save; nft -a list ruleset (look for drop rules at the hooks named above)".to_string()
        }
        "NO_SOCKET" => format!("see what listens: ss -ltnp 'sport = :{port}'"),
        r if r.starts_with("QDISC_") => "see the queueing disciplines and their drops: tc -s qdisc show".to_string(),
        r if r.starts_with("NEIGH_") => "see the neighbour table: ip neigh show; check the route: ip route get <peer address>".to_string(),
        "OTHERHOST" => "check the link-layer address the sender uses for this host: ip neigh on the sender, ip link here".to_string(),
        "IP_INNOROUTES" | "IP_OUTNOROUTES" => "check the route: ip route get <peer address>".to_string(),
        "XDP" | "TC_INGRESS" | "TC_EGRESS" | "BPF_CGROUP_EGRESS" => {
            "list the BPF programs attached: bpftool net show; bpftool cgroup tree".to_string()
        }
        "CPU_BACKLOG" => "raise net.core.netdev_max_backlog; watch /proc/net/softnet_stat".to_string(),
        _ => "watch the kernel's drop counters grow: nstat -az; ip -s link".to_string(),
    }
}

fn syns_dropped(e: &DroppedSyns) -> Words {
    let port = e.port;
    let servers: Vec<String> = e.servers.iter().map(ToString::to_string).collect();
    let servers = servers.join(", ");
    let syns = segments(e.syns, "SYN");
    let way = match e.site.path {
        PathKey::Ingress => "as they arrived",
        PathKey::Egress => "on their way out of the client's host",
    };
    let headline = if e.unanswered > 0 {
        format!(
            "{} to {servers} got no answer: {syns} dropped by the kernel: {}",
            plural(e.unanswered, "connection attempt", "connection attempts"),
            dropped_by(&e.site)
        )
    } else {
        format!(
            "{syns} to {servers} dropped by the kernel: {}",
            dropped_by(&e.site)
        )
    };
    let outcome = match (e.unanswered, e.recovered) {
        (0, r) => format!(
            "{} got through on a retransmitted SYN, a second or more late.",
            plural(r, "connection", "connections")
        ),
        (u, 0) => format!("{} never got an answer.", plural(u, "attempt", "attempts")),
        (u, r) => format!(
            "{} never got an answer; {} got through on a retransmitted SYN.",
            plural(u, "attempt", "attempts"),
            plural(r, "connection", "connections")
        ),
    };
    let listener = match e.listening {
        Some(true) if e.site.reason != "NO_SOCKET" => {
            format!(" A listener exists on port {port}: it would answer if the SYNs reached it.")
        }
        _ => String::new(),
    };
    say(
        headline,
        format!(
            "The kernel witnessed the client's SYNs dropped {way}, with {}.{} {outcome}{listener}",
            reason_with_place(&e.site),
            rule_said(&e.site, port),
        ),
        drop_next_step(&e.site, port),
    )
}

fn replies_unseen(e: &AnsweredUnseen, f: &Finding) -> Words {
    let port = e.port;
    let servers: Vec<String> = e.servers.iter().map(ToString::to_string).collect();
    let listener = match f.processes.first() {
        Some(p) => format!("the listener, {} (pid {}),", p.process.name, p.process.pid),
        None => "the listener".to_string(),
    };
    let rule = match &e.rule {
        Some(r) => {
            format!(" In the ruleset read when portsniff started, the likeliest rule is {r}.")
        }
        None => String::new(),
    };
    let next = match &e.rule {
        Some(r) => format!("if the server's answers should leave, remove or narrow {r}"),
        None => format!(
            "look on the server's way out: iptables -S OUTPUT; nft list ruleset | grep {port}; tc filter show dev <interface> egress; \
             bpftool cgroup tree (egress programs)"
        ),
    };
    say(
        format!(
            "{} to {} got no answer in the capture, yet the server holds a SYN_RECV socket for {}: \
             {listener} answered and its SYN-ACKs were dropped on the way out",
            plural(e.unanswered, "connection attempt", "connection attempts"),
            servers.join(", "),
            if e.unanswered == 1 { "it" } else { "each" },
        ),
        format!(
            "The SYNs arrived: the kernel made a request socket for each (SYN_RECV in the socket table, for the same \
             client address and port), which it does only when it answers with a SYN-ACK. No SYN-ACK was captured, so \
             something between TCP and the wire dropped it: an OUTPUT or POSTROUTING rule, a tc filter or qdisc, a cgroup \
             BPF program. This is not a DROP of the incoming SYNs.{rule} (Inferred from the socket table, not \
             witnessed by the kernel.)"
        ),
        next,
    )
}

/// `1.0 s`, `250 ms`.
fn seconds(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else {
        format!("{} ms", us / 1000)
    }
}

/// `2nd`, `3rd`, `4th`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn slow_connect(e: &SlowConnects, f: &Finding) -> Words {
    let port = e.port;
    let delay = match (e.connect_delay_p50_us, e.connect_delay_max_us) {
        (Some(p50), Some(max)) if max > p50 => {
            format!(
                "connect() took {} (median), up to {}",
                seconds(p50),
                seconds(max)
            )
        }
        (_, Some(max)) => format!("connect() took {}", seconds(max)),
        _ => "connect() took a second or more".to_string(),
    };
    let headline = format!(
        "{} of {} to port {port} got through only on a retransmitted SYN: {delay}",
        e.slow,
        plural(e.completed, "connection", "connections"),
    );
    let pattern: Vec<String> = e
        .through_on_syn
        .iter()
        .map(|(syn, n)| format!("{n} on the {} SYN", ordinal(*syn)))
        .collect();
    let mut x = format!(
        "Their first SYN got no answer and the client sent it again (Linux waits 1 s, then 2 s, 4 s…); they got through {}. Nothing failed, but every such connect waited a second or more.",
        pattern.join(", ")
    );
    for d in &e.kernel {
        x.push_str(&format!(
            " The kernel witnessed {} of {} of these connections dropped: {}.",
            segments(d.syns, "SYN"),
            d.connections,
            dropped_by(&d.site)
        ));
    }
    let causes: Vec<String> = e
        .likely_causes
        .iter()
        .map(|c| match c {
            SlowCause::RateLimit => match &e.limit_rule {
                Some(r) => format!("a rate limit on new connections: {r}"),
                None => "a rate limit on new connections (an iptables `limit`/`hashlimit` match, an nft `limit rate`, a cloud or proxy connection limit) that drops SYNs over the rate".to_string(),
            },
            SlowCause::AcceptQueue => {
                let queue = match (e.accept_queue, e.backlog) {
                    (Some(q), Some(b)) => format!(", its queue {q}/{b} when last looked at"),
                    _ => String::new(),
                };
                format!(
                    "the listener's accept queue full: {} found no room (ListenOverflows grew by {}, over the network namespace), so the kernel dropped their final ACK and the client sent again: the server does not accept() fast enough for the burst{queue}",
                    plural(e.listen_overflows, "handshake", "handshakes"),
                    e.listen_overflows
                )
            }
            SlowCause::SynQueue => {
                if let (Some(c), true) = (e.syn_queue_counter, e.syn_queue_drops > 0) {
                    format!(
                        "the listener's SYN queue full: the kernel counted {} ({c} grew by {}, over the network namespace)",
                        plural(e.syn_queue_drops, "dropped SYN", "dropped SYNs"),
                        e.syn_queue_drops
                    )
                } else {
                    "the listener's SYN queue full (watch TCPReqQFullDrop and ListenDrops in nstat)".to_string()
                }
            }
            SlowCause::LossyPath => "a lossy path dropping packets on the way".to_string(),
        })
        .collect();
    x.push_str(&format!(
        " Likely causes, likeliest first: {}.",
        causes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("({}) {c}", i + 1))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    if let Some(p) = f.processes.first() {
        x.push_str(&format!(
            " The listener: {} (pid {}).",
            p.process.name, p.process.pid
        ));
    }
    let next = match (e.likely_causes.first(), &e.limit_rule) {
        (Some(SlowCause::RateLimit), Some(r)) => format!(
            "if these clients should not be limited, raise the rate or burst of {r}, or exempt them"
        ),
        (Some(SlowCause::RateLimit), None) => format!(
            "look for a rate limit on new connections to port {port}: iptables -S | grep -E 'limit|{port}'; nft list ruleset | grep -E 'limit|{port}'"
        ),
        (Some(SlowCause::AcceptQueue), _) => format!(
            "make the server on port {port} accept() faster (more workers, a shorter loop between accept() calls) and raise its listen() backlog (and net.core.somaxconn, which caps it)"
        ),
        (Some(SlowCause::SynQueue), _) => format!(
            "raise the listen() backlog and net.ipv4.tcp_max_syn_backlog, and check that the server on port {port} accepts fast enough"
        ),
        _ => format!("measure loss on the path to port {port} (mtr, ping -i 0.2) and check interface drops (ip -s link)"),
    };
    say(headline, x, next)
}

fn replies_dropped(e: &DroppedReplies) -> Words {
    let port = e.port;
    let what = e.what.first().copied().unwrap_or("packet");
    let dropped = if e.what.len() > 1 {
        plural(e.packets, "packet", "packets")
    } else {
        segments(e.packets, what)
    };
    let story = if e.connections == 0 {
        "They were counted in a storm (the kernel counts drops by kind past 10,000 a second), \
         before any of their connections ended: which connections lost them is not known."
            .to_string()
    } else if e.unanswered > 0 {
        format!(
            "The SYNs arrived and the server answered, but its answers never left the host, so {} got no \
             answer and the client kept retrying. The block is on the way back, not on the way in.",
            plural(e.unanswered, "connection attempt", "connection attempts")
        )
    } else if e.connections == e.recovered {
        format!(
            "{} got past it on a retransmission, late.",
            plural(e.recovered, "connection", "connections")
        )
    } else {
        format!(
            "{} lost the server's packets this way, so the client waited for what never came.",
            plural(e.connections, "connection", "connections")
        )
    };
    say(
        format!(
            "{dropped} from {} dropped on the server's way out: {}",
            servers_or_port(&e.servers, port),
            dropped_by(&e.site)
        ),
        format!(
            "The kernel witnessed the server's {} dropped before they left the host, with {}.{} {story}",
            e.what
                .iter()
                .map(|w| segments(2, w).trim_start_matches("2 ").to_string())
                .collect::<Vec<_>>()
                .join(", "),
            reason_with_place(&e.site),
            rule_said(&e.site, port),
        ),
        drop_next_step(&e.site, port),
    )
}

/// The servers a finding is about, or the port when none is known yet: a storm's counts
/// (read before any of its connections ended) name no address.
fn servers_or_port(servers: &[crate::decode::Endpoint], port: u16) -> String {
    if servers.is_empty() {
        format!("port {port}")
    } else {
        servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn invalid_source(e: &MartianSyns) -> Words {
    let sources = if e.sources == 0 {
        // Only a storm's counts so far: the kernel counted them without their sources.
        "unnamed source addresses (counted in a storm)".to_string()
    } else if e.sources_capped {
        format!("{} or more source addresses", e.sources)
    } else {
        plural(e.sources, "source address", "source addresses")
    };
    let reasons: Vec<String> = e
        .reasons
        .iter()
        .map(|r| {
            let place = r
                .place
                .as_deref()
                .map_or(String::new(), |p| format!(" in {p}"));
            let words = reason_in_words(&r.reason).map_or(String::new(), |w| format!(" ({w})"));
            format!("{} ×{}{place}{words}", r.reason, r.packets)
        })
        .collect();
    let names: Vec<&str> = e.reasons.iter().map(|r| r.reason.as_str()).collect();
    let examples: Vec<String> = e.examples.iter().map(ToString::to_string).collect();
    let examples = if examples.is_empty() {
        "not named yet (a storm: the kernel counts them by kind)".to_string()
    } else {
        format!(
            "{}{}",
            examples.join(", "),
            if e.sources > examples.len() as u64 {
                ", …"
            } else {
                ""
            }
        )
    };
    say(
        format!(
            "{} to {} from {sources} discarded by the kernel as martians ({}): spoofed or misrouted sources, not a firewall",
            segments(e.syns, "SYN"),
            servers_or_port(&e.servers, e.port),
            names.join(", ")
        ),
        format!(
            "Before any firewall rule or socket saw them, the kernel's routing discarded these SYNs as martians: {}. \
             Sources: {examples}. Spoofed sources are what a SYN flood uses, and the kernel discarding them is the defence working; \
             a real client would instead have its return route through another interface (asymmetric routing, with \
             rp_filter on), or an address this host cannot answer.",
            reasons.join("; "),
        ),
        "if these clients are real: ip route get <source> (which interface the answer would leave by); \
         sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.<interface>.rp_filter (2 = loose); \
         if not (a flood): nothing to fix here, the kernel discards them; watch nstat -az TcpExtIPReversePathFilter",
    )
}

fn syn_flood(e: &Flood) -> Words {
    let port = e.port;
    // A handful of hosts is named: a flooding tool (hping3 --flood) changes its port, not
    // its address, and is stopped by blocking the address.
    let named = e.sources_named.as_deref().unwrap_or_default();
    let addresses = |sep_last: &str| {
        let all: Vec<String> = named.iter().map(|s| s.addr.to_string()).collect();
        match all.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{}{sep_last}{last}", rest.join(", ")),
            None => String::new(),
        }
    };
    let sources = if e.sources_capped {
        format!("{} or more source addresses", e.sources)
    } else if named.is_empty() {
        plural(e.sources, "source address", "source addresses")
    } else {
        format!(
            "{}, {}",
            plural(e.sources, "source address", "source addresses"),
            addresses(" and ")
        )
    };
    // Who keeps no socket to retransmit or acknowledge: spoofed addresses, or (a few
    // real hosts) a tool sending raw SYNs.
    let sender = match named.len() {
        0 => "a spoofed source",
        1 => "a flooding tool sending raw SYNs from that host",
        _ => "a flooding tool sending raw SYNs from those hosts",
    };
    let counter = |c: crate::diagnose::host::Counter| {
        e.counters
            .as_ref()
            .and_then(|m| m.get(&c).copied())
            .unwrap_or(0)
    };
    use crate::diagnose::host::Counter as C;
    let cookies = e.cookies_sent.unwrap_or(0);
    let queue_drops = counter(C::TcpReqQFullDrop);
    let mut headline = format!(
        "SYN flood on port {port}: {} from {sources} (up to {} a second)",
        segments(e.syns, "SYN"),
        e.syns_per_sec_peak
    );
    if e.cookies_sent.is_some() {
        headline.push_str(&format!(
            ", {}",
            plural(cookies, "SYN cookie sent", "SYN cookies sent")
        ));
        if queue_drops > 0 {
            headline.push_str(&format!(
                ", {} for a full SYN queue",
                plural(queue_drops, "SYN dropped", "SYNs dropped")
            ));
        }
    }
    let connect = match (e.connect_p50_us, e.connect_max_us) {
        (Some(p50), Some(max)) if max > p50 => {
            format!(
                "connect() took {} (median), up to {}",
                seconds(p50),
                seconds(max)
            )
        }
        (_, Some(max)) => format!("connect() took {}", seconds(max)),
        _ => String::new(),
    };
    if e.clients_dropped > 0 {
        headline.push_str(&format!(
            "; {} got no answer",
            plural(
                e.clients_dropped,
                "real connection attempt",
                "real connection attempts"
            )
        ));
    }
    headline.push_str(&if e.completed > 0 {
        format!(
            "; {} still completed",
            plural(e.completed, "real connection", "real connections")
        )
    } else {
        "; no real connection has completed".to_string()
    });
    let mut x = format!(
        "Over {} {} came from {sources}, up to {} of them in one second. ",
        seconds(e.span_us),
        segments(e.syns, "SYN"),
        e.sources_per_sec_peak,
    );
    // Live, the half-open attempts end only with the capture: until then none is counted.
    x.push_str(&if e.half_open > 0 {
        format!(
            "{} sent one SYN and never completed: {sender} has no socket to retransmit \
             its SYN or acknowledge the answer.",
            plural(e.half_open, "attempt", "attempts")
        )
    } else {
        format!("Their attempts are still half-open, waiting for an ACK {sender} never sends.")
    });
    if named.len() > 1 {
        let each: Vec<String> = named
            .iter()
            .map(|s| format!("{} {}", s.addr, segments(s.syns, "SYN")))
            .collect();
        let _ = write!(x, " By source: {}.", each.join(", "));
    }
    if e.counters.is_some() {
        x.push_str(&format!(
            " The listener's SYN queue overflowed (over the network namespace, other ports included: \
             TCPReqQFullDoCookies grew by {}, TCPReqQFullDrop by {}, ListenDrops by {}).",
            counter(C::TcpReqQFullDoCookies),
            queue_drops,
            counter(C::ListenDrops),
        ));
        if cookies > 0 {
            x.push_str(&format!(
                " The kernel answered with SYN cookies instead of holding a request socket: SyncookiesSent grew by {cookies}; \
                 {} came back valid (SyncookiesRecv), {} did not validate (SyncookiesFailed).",
                counter(C::SyncookiesRecv),
                counter(C::SyncookiesFailed),
            ));
        } else {
            x.push_str(
                " No SYN cookie was sent (net.ipv4.tcp_syncookies is off, or the queue never filled): \
                 SYNs that found the queue full were dropped, real clients' among them.",
            );
            if e.clients_dropped > 0 {
                x.push_str(&format!(
                    " {} by real clients (they retransmitted their SYN, which a spoofed source cannot) \
                     got no answer: their SYNs were among those the full SYN queue dropped (TCPReqQFullDrop).",
                    plural(e.clients_dropped, "attempt", "attempts")
                ));
            }
        }
    } else {
        x.push_str(
            " From the packets alone: a replay cannot tell whether the kernel sent SYN cookies, dropped SYNs for a \
             full SYN queue, or discarded martian sources; it was recognised by its rate (a second's SYNs would fill \
             Linux's smallest default SYN queue) and its many one-shot sources.",
        );
    }
    match (e.martian_syns, e.martian_sources) {
        (Some(syns), Some(n)) if syns > 0 => x.push_str(&format!(
            " The kernel discarded {} from {} as martians before TCP saw them (spoofed addresses its routing or \
             reverse-path filter rejects).",
            segments(syns, "SYN"),
            plural(n, "source", "sources")
        )),
        (Some(_), _) => {}
        (None, _) if e.counters.is_some() => x.push_str(
            " Whether the kernel discarded spoofed sources as martians needs the kernel witness (it was off).",
        ),
        (None, _) => {}
    }
    if e.completed > 0 {
        x.push_str(&format!(
            " Real clients still got through: {} completed while the SYNs came{}.",
            plural(e.completed, "connection", "connections"),
            if connect.is_empty() {
                String::new()
            } else {
                format!(", {connect}")
            },
        ));
    } else {
        x.push_str(" No real connection has completed since the SYNs began.");
    }
    x.push_str(
        " No firewall rule is involved: the unanswered and half-open attempts are the flood's own.",
    );
    let limit = format!(
        "limit new connections per source (iptables -A INPUT -p tcp --syn --dport {port} -m hashlimit \
         --hashlimit-mode srcip --hashlimit-above 20/sec -j DROP, or an nft meter) and ask upstream (the provider, \
         a scrubbing service) to filter the flood before it reaches this host"
    );
    let block = match named.first() {
        Some(first) => {
            let tool = if first.addr.is_ipv6() {
                "ip6tables"
            } else {
                "iptables"
            };
            let (them, it) = if named.len() == 1 {
                (addresses(""), "it is not a client")
            } else {
                (addresses(" and "), "they are not clients")
            };
            let each = if named.len() > 1 {
                " (a rule for each)"
            } else {
                ""
            };
            format!(
                "block {them} if {it} of yours: {tool} -I INPUT -p tcp --dport {port} -s {} -j DROP{each}; ",
                first.addr
            )
        }
        None => String::new(),
    };
    let next = if e.counters.is_none() {
        format!(
            "on the server, while it lasts: nstat -az TcpExtSyncookiesSent TcpExtTCPReqQFullDoCookies TcpExtTCPReqQFullDrop \
             (cookies or drops); keep net.ipv4.tcp_syncookies=1, raise net.ipv4.tcp_max_syn_backlog and the listen() \
             backlog (net.core.somaxconn); {limit}"
        )
    } else if cookies == 0 && queue_drops > 0 {
        format!(
            "turn SYN cookies on: sysctl -w net.ipv4.tcp_syncookies=1 (real clients then complete whatever the \
             flood); raise net.ipv4.tcp_max_syn_backlog and the listen() backlog (net.core.somaxconn); {limit}"
        )
    } else if e.completed > 0 {
        format!(
            "SYN cookies are holding (real clients complete): keep net.ipv4.tcp_syncookies=1; if connects slow \
             down, raise net.ipv4.tcp_max_syn_backlog and the listen() backlog (net.core.somaxconn); {limit}"
        )
    } else {
        format!(
            "check that real clients can still connect (net.ipv4.tcp_syncookies=1 lets them through a full SYN \
             queue); raise net.ipv4.tcp_max_syn_backlog and the listen() backlog (net.core.somaxconn); {limit}"
        )
    };
    say(headline, x, format!("{block}{next}"))
}

const ICMP_NEXT: &str = "list the filter rules on the path: iptables -S; nft list ruleset; check routes: ip route get <server address>";

fn icmp_rejected(e: &IcmpErrors) -> Words {
    if let Some(local) = &e.local {
        return icmp_rejected_locally(e, local);
    }
    let attempts = plural(e.unreachable, "connection attempt", "connection attempts");
    let (what, from) = (e.icmp.as_str().replace('_', " "), e.icmp_from);
    let reject_with = if e.icmp == Unreachable::AdminProhibited {
        "admin-prohibited"
    } else {
        "port-unreachable"
    };
    say(
        format!("{attempts} rejected by a firewall: ICMP {what} from {from}"),
        format!(
            "The SYNs were answered by ICMP {what} from {from}. Linux's TCP answers a closed port with RST, never \
             with ICMP, so this comes from a filter: `REJECT --reject-with icmp-{reject_with}`."
        ),
        ICMP_NEXT,
    )
}

/// The `--reject-with` value that sends this ICMP error, as iptables (or ip6tables)
/// names it.
fn reject_with(kind: Unreachable, v6: bool) -> String {
    let name = match (kind, v6) {
        (Unreachable::Network, false) => "icmp-net-unreachable",
        (Unreachable::Host, false) => "icmp-host-unreachable",
        (Unreachable::Protocol, false) => "icmp-proto-unreachable",
        (Unreachable::Port, false) => "icmp-port-unreachable",
        (Unreachable::AdminProhibited, false) => "icmp-admin-prohibited",
        (Unreachable::Network, true) => "icmp6-no-route",
        (Unreachable::Host, true) => "icmp6-addr-unreachable",
        (Unreachable::Port | Unreachable::Protocol, true) => "icmp6-port-unreachable",
        (Unreachable::AdminProhibited, true) => "icmp6-adm-prohibited",
        (Unreachable::Other { icmp_type, code }, _) => {
            return format!("an ICMP error of type {icmp_type} code {code}")
        }
    };
    format!("`--reject-with {name}`")
}

fn icmp_rejected_locally(e: &IcmpErrors, local: &LocalReject) -> Words {
    let attempts = plural(e.unreachable, "connection attempt", "connection attempts");
    let (what, from, server) = (e.icmp.as_str().replace('_', " "), e.icmp_from, local.server);
    let port = server.port;
    let with = reject_with(e.icmp, server.addr.is_ipv6());
    let (headline, how) = match (&local.drop_reason, local.basis) {
        (Some(reason), _) => (
            format!("{attempts} to {server} rejected by a firewall rule on this host: ICMP {what} from {from}"),
            format!(
                "The kernel saw netfilter drop {} {} ({reason}), and ICMP {what} come back from {from}: a REJECT \
                 rule on this host answered ({with}). Whatever its code says, this is not a routing problem or a \
                 host that is down.",
                the_syns(e.unreachable),
                stopped_at(local.hook)
            ),
        ),
        (None, basis) => (
            format!("{attempts} to {server} rejected by a firewall rule on the server's host: ICMP {what} from {from} itself"),
            format!(
                "The ICMP {what} came from {from}, the server's own address. A host does not report itself unreachable: \
                 a REJECT rule on it ({with}), or a firewall answering in its name, sent the error. This is not a \
                 routing problem or a host that is down{}.",
                if basis == Basis::Packets { PACKETS_ONLY } else { "" }
            ),
        ),
    };
    let listener = match local.listener {
        Some(l) => {
            format!(" A listener on {l} exists: without the rule the connection would succeed.")
        }
        None => String::new(),
    };
    let rule = match &local.rule {
        Some(r) => format!(" The rule: {r}."),
        None => String::new(),
    };
    let next = match &local.rule {
        Some(r) => format!("if these connections should pass, remove or narrow {r}"),
        None => format!(
            "on {}'s host, look for a REJECT rule: iptables -S | grep -- '{port}'; nft list ruleset | grep {port}",
            server.addr
        ),
    };
    say(headline, format!("{how}{listener}{rule}"), next)
}

fn icmp_unreachable(e: &IcmpErrors) -> Words {
    let attempts = plural(e.unreachable, "connection attempt", "connection attempts");
    let (what, from) = (e.icmp.as_str().replace('_', " "), e.icmp_from);
    say(
        format!("{attempts} failed: ICMP {what} from {from}"),
        format!("{from} reported that it cannot deliver the SYNs ({what}): a routing problem or a host that is down."),
        ICMP_NEXT,
    )
}

fn handshake_stalled(e: &HandshakeStall) -> Words {
    say(
        format!(
            "{} stalled in the handshake: the server's SYN-ACKs never got an ACK",
            plural(e.flows, "connection", "connections")
        ),
        format!(
            "The server answered with SYN-ACK and retransmitted it {} times, but the client's final ACK never came: the \
             SYN-ACKs do not reach the client (asymmetric filtering, a wrong return route) or the client gave up.",
            e.synack_retransmits
        ),
        "check the path from server to client: filters on the client's INPUT, reverse routes, NAT",
    )
}

/// How a kernel counter's growth `n` (counted over the network namespace) stands beside
/// the `seen` connections a finding counts, so that the two numbers never read as a
/// contradiction.
fn counted_beside(n: u64, seen: u64) -> String {
    match n.cmp(&seen) {
        std::cmp::Ordering::Greater => {
            ", over the whole network namespace: other ports and connections included".to_string()
        }
        std::cmp::Ordering::Less => format!(": {n} of these {seen} were such closes"),
        std::cmp::Ordering::Equal => String::new(),
    }
}

/// What the peer of the side `by` sends: what that side must read before it closes.
fn peers_message(by: Side) -> &'static str {
    match by {
        Side::Server => "request",
        Side::Client => "response",
    }
}

fn reset(e: &Resets, named: Option<String>) -> Words {
    let (who, peer) = (e.by.as_str(), e.by.other().as_str());
    let message = peers_message(e.by);
    // Who did it, as the flow lines name it.
    let actor = named
        .as_ref()
        .map_or_else(|| format!("the {who}"), |n| format!("the {who} ({n})"));
    let (what, next) = match e.context {
        ResetContext::UnreadData => (
            match e.abort_on_close {
                // Live, the kernel says which: TCPAbortOnClose counts closes with unread data.
                Some(n) if n > 0 => format!(
                    "the {who} closed its socket while the {peer}'s data was still unread, and Linux answers that close with RST \
                     (RFC 2525 §2.17; the kernel's TCPAbortOnClose grew by {n}{})",
                    counted_beside(n, e.resets)
                ),
                _ => format!(
                    "the {who} sent RST right after the {peer}'s last data: it closed its socket with that data unread (Linux \
                     answers such a close with RST, RFC 2525 §2.17) or aborted on purpose (SO_LINGER 0)"
                ),
            },
            format!("make {actor} read the whole {message} (or shut down writing and drain) before close()"),
        ),
        ResetContext::AfterHandshake => (
            format!("the {who} reset the connection right after the handshake, before any data: it rejected the connection (an access rule, too many connections, an aborted accept)"),
            format!("check the logs of {actor} for rejected connections at those times"),
        ),
        ResetContext::MidTransfer => (
            format!("the {who} aborted the connection in the middle of the transfer (SO_LINGER 0 close, a crash, a timeout)"),
            format!("check the logs and timeouts of {actor} at those times"),
        ),
        ResetContext::ClosedBeforeReading => (
            format!(
                "the {who} closed new connections before reading anything from them: its FIN came before the {peer}'s \
                 first data, and the data that followed was answered with RST. It accepts connections and drops them \
                 unread: a connection limit, a protocol or TLS mismatch (it expected something else first), or a \
                 handler that crashes or exits at once"
            ),
            format!(
                "check the logs of {actor} for refused, failed or crashed connections at those times (connection \
                 limits, TLS or protocol errors, handler crashes)"
            ),
        ),
    };
    // Closed unread: the packets tell the story; the kernel's RST for the data that came
    // after the close only confirms it.
    if let (ResetContext::ClosedBeforeReading, None | Some(ResetSource::TcpReply { .. })) =
        (e.context, &e.kernel)
    {
        let kernel = match &e.kernel {
            Some(ResetSource::TcpReply { reason }) => format!(
                " The kernel saw the {who}'s TCP send the RST ({}).",
                reason
                    .as_deref()
                    .unwrap_or("no reason given by this kernel")
            ),
            _ => String::new(),
        };
        return say(
            format!(
                "{} reset by {actor}: closed before any of the {peer}'s data was read",
                plural(e.resets, "connection", "connections")
            ),
            format!("Most were like this: {what}.{kernel}"),
            next,
        );
    }
    match &e.kernel {
        Some(k) => reset_witnessed(e, k, next, named.as_deref()),
        None => say(
            format!(
                "{} reset by {actor}: {}",
                plural(e.resets, "connection", "connections"),
                e.context.as_str().replace('_', " ")
            ),
            format!("Most were like this: {what}."),
            next,
        ),
    }
}

/// Resets whose origin the kernel witnessed: `next` is the packets' advice, for what the
/// kernel leaves open.
fn reset_witnessed(e: &Resets, k: &ResetSource, next: String, named: Option<&str>) -> Words {
    let (who, peer) = (e.by.as_str(), e.by.other().as_str());
    let message = peers_message(e.by);
    // The kernel's word is about most of them: say how many when not all.
    let n = match e.witnessed {
        Some(m) if m < e.resets => format!(
            "{} ({m} of them this way)",
            plural(e.resets, "connection", "connections")
        ),
        _ => plural(e.resets, "connection", "connections"),
    };
    // When, from the packets: only the moment, the kernel says the why.
    let when = match e.context {
        ResetContext::AfterHandshake => "right after the handshake, before any data".to_string(),
        ResetContext::UnreadData => format!("right after the {peer}'s last data"),
        ResetContext::MidTransfer => "in the middle of the transfer".to_string(),
        ResetContext::ClosedBeforeReading => {
            format!("after the {who} had closed the connection unread (its FIN before the {peer}'s first data)")
        }
    };
    let packets = format!(" Most came {when}.");
    match k {
        ResetSource::SocketClose { reason, process } => {
            let actor = match (process, named) {
                (Some((name, pid)), _) => format!("{name} (pid {pid})"),
                (None, Some(n)) => n.to_string(),
                (None, None) => format!("the {who}'s process"),
            };
            let reason_name = reason.as_deref().unwrap_or("no reason given by this kernel");
            // What the socket's owner did, and why Linux answers that with RST. The
            // timers' reasons happen in no process's name: the actor is not said.
            let (act, why, next) = match reason.as_deref() {
                Some("TCP_ABORT_ON_CLOSE") => (
                    format!("{actor} closed its socket with the {peer}'s data unread"),
                    match e.abort_on_close {
                        Some(n) if n > 0 => format!(
                            "Linux resets a connection whose socket is closed with received data unread (RFC 2525 §2.17; \
                             the kernel's TCPAbortOnClose grew by {n}{})",
                    counted_beside(n, e.resets)
                        ),
                        _ => "Linux resets a connection whose socket is closed with received data unread (RFC 2525 §2.17)".to_string(),
                    },
                    format!("make {actor} read the whole {message} (or shut down writing and drain) before close()"),
                ),
                Some("TCP_STATE") => (
                    format!("{actor} closed its socket with SO_LINGER 0 (or disconnected it)"),
                    "a close with SO_LINGER set to 0 (or a disconnect: connect(AF_UNSPEC), `ss -K`) aborts the connection \
                     with a RST instead of a FIN"
                        .to_string(),
                    format!("unless the abort is meant, drop SO_LINGER 0 from {actor}'s sockets and close normally (shutdown, then close)"),
                ),
                Some("TCP_DISCONNECT_WITH_DATA") => (
                    format!("{actor} disconnected its socket with data still unsent"),
                    "a disconnect while data waits to be sent aborts the connection with a RST".to_string(),
                    next,
                ),
                Some("TCP_KEEPALIVE_TIMEOUT") => (
                    format!("the {who}'s keepalive probes went unanswered"),
                    format!("the {peer} stopped answering keepalive probes, so the {who}'s kernel gave the connection up"),
                    format!("check that the {peer} is alive, and the idle timeouts of NATs and firewalls on the path"),
                ),
                Some("TCP_ABORT_ON_LINGER") => (
                    format!("the {who}'s socket waited in FIN_WAIT2 past its linger time"),
                    format!("the {peer} never closed its side within TCP_LINGER2 / net.ipv4.tcp_fin_timeout"),
                    format!("make the {peer} close its side when it is done"),
                ),
                Some("TCP_ABORT_ON_MEMORY") => (
                    format!("the {who}'s kernel ran out of memory for closed sockets"),
                    "too many orphaned sockets, or TCP memory pressure (net.ipv4.tcp_max_orphans, tcp_mem)".to_string(),
                    "check `ss -s` for orphans and TCP memory, and raise net.ipv4.tcp_mem or tcp_max_orphans".to_string(),
                ),
                _ => (
                    format!("{actor} closed its socket"),
                    "the socket reset its own connection as it was closed".to_string(),
                    next,
                ),
            };
            say(
                format!("{n} reset by the {who}: {act}: the kernel reset the connection ({reason_name})"),
                format!("The kernel saw the {who}'s own socket send the RST, {when}: {why}."),
                next,
            )
        }
        ResetSource::TcpReply { reason } => {
            let meaning = match reason.as_deref() {
                Some("NO_SOCKET") => ": no socket for it any more (the application had closed it, or its process was gone)",
                Some("TCP_ABORT_ON_DATA") => ": data arrived after the application had closed its socket",
                Some("TCP_TIMEWAIT_SOCKET") => ": a segment for a connection already in TIME_WAIT",
                Some(
                    "TCP_INVALID_ACK_SEQUENCE" | "TCP_OLD_ACK" | "TCP_TOO_OLD_ACK" | "TCP_ACK_UNSENT_DATA",
                ) => ": it acknowledged data never sent (a half-open connection: the two sides' states out of step)",
                Some("TCP_RFC7323_PAWS") => ": it failed the timestamp check (PAWS, RFC 7323)",
                Some("TCP_FLAGS" | "INVALID_SYN") => ": its flags did not fit the connection's state",
                _ => "",
            };
            let reason_name = reason.as_deref().unwrap_or("no reason given by this kernel");
            say(
                format!("{n} reset by the {who}: its TCP answered a segment with RST ({reason_name})"),
                format!("The kernel saw the {who}'s TCP answer a segment of the {peer}'s with RST{meaning}.{packets}"),
                next,
            )
        }
        ResetSource::FirewallReject { path } => {
            let rule = match &e.rule {
                Some(r) => format!(" The rule: {r}."),
                None => String::new(),
            };
            let next = match &e.rule {
                Some(r) => format!("if these connections should stay open, remove or narrow {r}"),
                None => "look for a REJECT --reject-with tcp-reset rule: iptables -S; nft list ruleset".to_string(),
            };
            say(
                format!("{n} reset by a firewall rule in the {who}'s name: netfilter dropped the {peer}'s packet and answered with a RST"),
                format!(
                    "The kernel saw netfilter drop the {peer}'s packets {}, and TCP send no reset: a `REJECT --reject-with \
                     tcp-reset` rule tore the connection down (one that catches packets of open connections: a connection \
                     state match, or a rule added while they were open).{rule}",
                    stopped_at(super::rules::hook_of(*path))
                ),
                next,
            )
        }
        ResetSource::ListenerClosed { process } => {
            let actor = match (process, named) {
                (Some((name, pid)), _) => format!("{name} (pid {pid})"),
                (None, Some(n)) => n.to_string(),
                (None, None) => format!("the {who}'s process"),
            };
            say(
                format!(
                    "{n} reset by the {who}: {actor} closed its listening socket with them still waiting in its accept \
                     queue, never accept()ed"
                ),
                format!(
                    "The kernel saw the RSTs sent as the listener stopped listening: closing a listening socket resets every \
                     connection that completed its handshake but was not yet accept()ed (the client had connected, and \
                     maybe sent its request, so it reads \"connection reset by peer\"). A server that exits, restarts or \
                     reloads this way loses the connections queued at that moment.{packets}"
                ),
                format!(
                    "stop {actor} gracefully: stop accepting new connections first (close the listener only after the \
                     queue is drained, or hand it to the new process: SO_REUSEPORT, socket activation), or make clients \
                     retry a reset request that is safe to repeat"
                ),
            )
        }
        ResetSource::NotLocalTcp if e.backend.is_some() => {
            let backend = e.backend.map(|b| b.to_string()).unwrap_or_default();
            say(
                format!(
                    "{n} reset in the server's name by the port map's backend {backend}, in another network namespace"
                ),
                format!(
                    "The port is forwarded (DNAT) to {backend}, in a network namespace whose TCP the kernel witness does \
                     not watch from here; this host's TCP sent no RST and its firewall dropped none of their packets: \
                     the backend reset them (its server closed them unread, or exited or restarted with them open).{packets}"
                ),
                "check the backend's server: its logs and whether it restarted (docker logs CONTAINER, journalctl), and \
                 its sockets from inside its namespace (nsenter -t PID -n ss -tanp)",
            )
        }
        ResetSource::NotLocalTcp => say(
            format!("{n} reset in the {who}'s name, but not by this host: the RST came from another host or a middlebox"),
            format!(
                "The kernel saw this host's TCP send no RST for these connections and its firewall drop none of their \
                 packets: the RST came from outside this network namespace, the {who}'s own host if it is remote, or a \
                 middlebox on the path{}.{packets}",
                match e.context {
                    ResetContext::AfterHandshake => "",
                    _ => " (NATs, load balancers and firewalls reset connections idle past their timeout)",
                }
            ),
            match e.context {
                // Before any data, an idle timeout is not the story: the other host's TCP
                // had no socket for the handshake (staged: a client host answering each
                // SYN-ACK to SYNs it never sent, as a scanner's or a spoofer's victim's
                // does), or a middlebox refused the connection.
                ResetContext::AfterHandshake => format!(
                    "check the {who}'s host: whether a socket there made these connections (ss -tan on it; SYNs it \
                     never sent, from a scanner or spoofed with its address, are answered with RST), and any \
                     middlebox on the path that refuses connections"
                ),
                _ => format!(
                    "check the {who}'s host, and the idle timeouts of NATs, load balancers and firewalls on the path \
                     (TCP keepalives shorter than those timeouts keep connections open)"
                ),
            },
        ),
    }
}

fn receiver_stalled(e: &ZeroWindowStall, named: Option<String>) -> Words {
    let who = e.side.as_str();
    let process = named.as_ref().map_or(String::new(), |n| format!(" ({n})"));
    let reader = named.map_or_else(|| format!("the {who}'s"), |n| format!("{n}'s"));
    say(
        format!(
            "the {who}{process} stopped reading: zero window held up to {:.1}s",
            e.longest_zero_window_us as f64 / 1e6
        ),
        format!(
            "In {} the {who} advertised a zero receive window for a second or more: its application did not read \
             what arrived, so the peer had to stop sending.{}",
            plural(e.flows, "connection", "connections"),
            match e.recv_queue {
                Some(n) if n > 0 => format!(" At the last look, {n} bytes wait unread in one of its sockets (Recv-Q)."),
                _ => String::new(),
            }
        ),
        format!("find what blocks {reader} reading loop (a slow consumer, a lock, a full downstream)"),
    )
}

fn time_wait_reuse(e: &TimeWaitReuse) -> Words {
    let headline = format!(
        "{} reused a 4-tuple still in TIME_WAIT",
        plural(e.flows, "new connection", "new connections")
    );
    let seen = "A client SYN with a new sequence number arrived on the same client port, server port and addresses \
                as a connection that had just closed. The side that closed first holds that 4-tuple in TIME_WAIT for 60 s";
    match e.fixed_port {
        Some(true) => say(
            headline,
            format!(
                "{seen}, and the client bound that source port itself. Linux lets the new SYN through only when \
                 timestamps or sequence numbers allow it, otherwise connect() fails with EADDRNOTAVAIL or an old \
                 segment can corrupt the new connection."
            ),
            "let the client pick ephemeral ports (do not bind a fixed source port), or keep connections open and reuse them",
        ),
        None => say(
            headline,
            format!(
                "{seen}. Either the client bound that source port itself, or its kernel picked a port still in \
                 TIME_WAIT from ip_local_port_range, which net.ipv4.tcp_tw_reuse allows once the socket is old \
                 enough (TCP timestamps tell the connections apart)."
            ),
            "if the client binds a fixed source port, let it pick ephemeral ports; otherwise reuse connections \
             (keep-alive, pooling) or widen net.ipv4.ip_local_port_range",
        ),
        Some(false) => {
            let reuse = match e.tw_reuse {
                Some(v) => format!("net.ipv4.tcp_tw_reuse is {v}"),
                None => "net.ipv4.tcp_tw_reuse".to_string(),
            };
            say(
                headline,
                format!(
                    "{seen}. The client's kernel picked the port from ip_local_port_range: it takes one still in \
                     TIME_WAIT only when {reuse} (1: always, 2: loopback connections) and the socket is old enough, \
                     with TCP timestamps telling the connections apart. Harmless in itself; it means the range runs \
                     short for the rate of new connections."
                ),
                "reuse connections (keep-alive, pooling), or widen net.ipv4.ip_local_port_range",
            )
        }
    }
}

fn time_wait_buildup(e: &TimeWaitBuildup, named: Option<String>) -> Words {
    let holder = e.holder.as_str();
    let closers = named.map_or(String::new(), |n| format!(" ({n} closed first)"));
    // Advice for the side that closes first now: the server closing first can hand
    // TIME_WAIT to its clients; clients that already close first can only reuse.
    let next = match e.holder {
        Side::Server => {
            "reuse connections (keep-alive, pooling), or let the clients close first (the server closes first now, \
             so it keeps the TIME_WAIT)"
        }
        Side::Client => {
            "reuse connections (keep-alive, pooling): the clients already close first, where TIME_WAIT belongs; if \
             their local ports run short, widen net.ipv4.ip_local_port_range or set net.ipv4.tcp_tw_reuse=1"
        }
    };
    say(
        format!(
            "{} sockets in TIME_WAIT on port {}, mostly on the {holder}{closers}",
            e.time_wait, e.port
        ),
        format!(
            "{} are held by the server side and {} by clients. The side that closes first keeps each \
             connection in TIME_WAIT for 60 s; many short connections pile them up.",
            e.on_server, e.on_client
        ),
        next,
    )
}

fn server_closes_first(e: &ServerClosesFirst) -> Words {
    let n = e.closed_first_by_server;
    say(
        format!("the server closed first {n} times: TIME_WAIT piles up on the server"),
        format!("Every one of those connections leaves the server holding a TIME_WAIT socket for 60 s{PACKETS_ONLY}."),
        "let clients close first, or reuse connections (keep-alive)",
    )
}

fn ports_exhausted(e: &PortsExhausted, named: Option<String>) -> Words {
    let clients = named.map_or(String::new(), |n| format!(" by {n}"));
    let (n, port, (lo, hi)) = (e.time_wait, e.port, e.port_range);
    let range = u64::from(hi.saturating_sub(lo)) + 1;
    let held = n - e.recyclable;
    let reuse = match e.tw_reuse {
        Some(0) => " net.ipv4.tcp_tw_reuse is 0: connect() never takes a port back from TIME_WAIT.".to_string(),
        Some(2) => " net.ipv4.tcp_tw_reuse is 2: connect() takes a port back from TIME_WAIT only for loopback \
                    connections, and these are not."
            .to_string(),
        Some(v) => format!(" net.ipv4.tcp_tw_reuse is {v}."),
        None => String::new(),
    };
    say(
        format!(
            "{n} client sockets to port {port} in TIME_WAIT{clients} hold {held} of {range} ephemeral ports: \
             connect() fails with EADDRNOTAVAIL once the rest are taken"
        ),
        format!(
            "Each new connection to the same server address and port needs a free local port from \
             ip_local_port_range ({lo}-{hi}); TIME_WAIT holds them for 60 s.{reuse} Past the range, connect() fails \
             with EADDRNOTAVAIL before any SYN is sent, so the capture shows nothing of those attempts."
        ),
        format!(
            "reuse connections (keep-alive, pooling); widen net.ipv4.ip_local_port_range; or set \
             net.ipv4.tcp_tw_reuse=1 on the client (it takes a TIME_WAIT port back once it is {} ms old, with TCP \
             timestamps on)",
            e.tw_reuse_delay_ms.unwrap_or(1000)
        ),
    )
}

fn no_traffic_filtered(e: &NoTrafficFiltered) -> Words {
    let (expr, port) = (&e.expression, e.port);
    say(
        format!("nothing on port {port} matched the filter expression {expr:?}"),
        format!(
            "No packet to or from port {port} that also matches {expr:?} was captured. \
             The expression narrows what portsniff sees, so the port's packets may have \
             been there and been left out by it."
        ),
        format!(
            "run again without the expression (or with a wider one) to see every \
             connection to port {port}"
        ),
    )
}

fn capture_cut_short(e: &CutShort) -> Words {
    let (n, port) = (e.waiting, e.port);
    let attempts = plural(n, "connection attempt", "connection attempts");
    say(
        format!("the capture ended before an answer to {attempts} to port {port} could arrive"),
        format!(
            "{attempts} sent one SYN and the capture stopped (-c, --duration or the end \
             of the file) before the client's first retransmission (1 s): the answer may \
             have come just after the end. {} no evidence of a drop or a firewall.",
            if n == 1 { "It is" } else { "They are" }
        ),
        format!(
            "capture for longer (a larger -c or --duration) to see whether port {port} \
             answers"
        ),
    )
}

fn one_sided_view(e: &OneSided) -> Words {
    let (expr, port) = (&e.expression, e.port);
    let (seen, unseen) = match e.seen {
        Side::Client => ("the clients'", "the server's answers (SYN-ACK, RST, data)"),
        Side::Server => ("the server's", "the clients' SYNs, ACKs and data"),
    };
    say(
        format!("the filter expression {expr:?} shows only one direction: nothing can be judged about port {port}'s answers"),
        format!(
            "Only {seen} packets matched {expr:?}; {unseen} were left out by the \
             expression, not necessarily by the network. Whether connections were \
             refused, dropped or completed cannot be judged from this view, so no such \
             finding is given."
        ),
        format!("run again with an expression that keeps both directions, e.g. 'port {port}' instead of 'dst port {port}'"),
    )
}

fn truncated_view(e: &TruncatedView) -> Words {
    let (n, port) = (e.truncated, e.port);
    let packets = plural(n, "packet was", "packets were");
    say(
        format!(
            "{packets} cut inside their headers by the snaplen: their connections cannot be judged"
        ),
        format!(
            "The capture kept too few bytes of {} to read the whole IP and TCP header \
             (ports, sequence numbers, flags), so portsniff could not tie {} to a \
             connection on port {port}. Connections whose packets were cut may be \
             missing or look unanswered; no finding rests on them.",
            if n == 1 { "it" } else { "them" },
            if n == 1 { "it" } else { "them" }
        ),
        // tcpdump keeps whole packets by default; portsniff keeps only the headers
        // (capture::HEADERS_SNAPLEN), which is enough: say which, so that a user who cut
        // the capture with -s knows dropping the option fixes it.
        format!(
            "capture again with a larger snaplen: without -s (portsniff keeps {} bytes, \
             every header), or -s 128 or more (an IPv6 header and a TCP header with all \
             options)",
            crate::capture::HEADERS_SNAPLEN
        ),
    )
}

fn no_traffic(e: &NoTraffic) -> Words {
    let port = e.port;
    let mut explanation = format!("No packet to or from port {port} was captured.");
    if e.syns_elsewhere.is_empty() {
        explanation.push_str(" No connection attempt to any other port was seen either: the client is not running, or it connects over another interface.");
    } else {
        let went: Vec<String> = e
            .syns_elsewhere
            .iter()
            .map(|s| format!("{} ({})", s.dst, s.syns))
            .collect();
        explanation.push_str(&format!(
            " Connection attempts went elsewhere instead: {}.",
            went.join(", ")
        ));
        if e.syns_elsewhere
            .iter()
            .any(|s| matches!(s.dst.port, 3128 | 8080 | 8888 | 1080))
        {
            explanation.push_str(" Some went to a proxy port: check http_proxy / no_proxy.");
        }
    }
    if let Some(p) = &e.proxy {
        explanation.push_str(&format!(" A proxy is set in the environment ({p}): clients that honour it connect there, not to port {port}."));
    }
    if !e.listening_nearby.is_empty() {
        let nearby: Vec<String> = e.listening_nearby.iter().map(ToString::to_string).collect();
        explanation.push_str(&format!(" Listening here: {}.", nearby.join(", ")));
    }
    say(
        format!("nothing reached port {port} during the capture: the client is pointed elsewhere"),
        explanation,
        "check the client's target host and port (config, DNS, /etc/hosts, proxy settings); capture on -i any if it uses another interface",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Side;

    #[test]
    fn counts_of_one_are_singular() {
        assert_eq!(plural(1, "connection", "connections"), "1 connection");
        assert_eq!(plural(0, "connection", "connections"), "0 connections");
        assert_eq!(plural(2, "connection", "connections"), "2 connections");
    }

    #[test]
    fn a_reset_by_the_client_names_the_server_as_the_peer() {
        let w = reset(
            &Resets {
                resets: 2,
                context: ResetContext::UnreadData,
                abort_on_close: Some(3),
                kernel: None,
                witnessed: None,
                rule: None,
                backend: None,
                by: Side::Client,
            },
            None,
        );
        assert_eq!(w.headline, "2 connections reset by the client: unread data");
        assert!(
            w.explanation
                .contains("while the server's data was still unread"),
            "{}",
            w.explanation
        );
        assert!(w.explanation.contains("TCPAbortOnClose grew by 3"));
    }
}

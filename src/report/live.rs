//! `--live-summary`: instead of a line per connection, a one-screen table redrawn every
//! second (outcome counts and rates, handshake RTT percentiles, the top problem, the
//! last change of listener, packets and drops), for watching a port while reproducing a
//! bug.
//!
//! On a terminal the table is redrawn in place on the alternate screen, as `top` and
//! `less` do (cursor home, then each line erased to its end, so nothing flickers), and
//! the user's screen and cursor come back on exit; anywhere else each snapshot is
//! printed whole, separated by a blank line, so a pipe or a file gets one readable block
//! per second.
//! The final summary and diagnosis still follow when the capture stops.
//!
//! The view counts nothing itself: each redraw is handed a [`Tick`] with the counts of
//! finished connections and the capture's counters, taken by the flow stage when its
//! [`Cadence`] says a table is due. It never reads clocks for the rates (the tick's
//! instant is used), so a table is the same whichever thread draws it.

use super::summary::Percentiles;
use super::text::{clock, human_duration, Style};
use crate::decode::Encap;
use crate::diagnose::{findings, ChangeKind, Evidence, FactChange, Finding, TunnelSeen};
use crate::flow::Outcome;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the table is redrawn.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// How the table reaches the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redraw {
    /// Standard output is a terminal: draw over the previous table.
    InPlace,
    /// A pipe or a file: one snapshot after another, separated by a blank line.
    Snapshots,
}

/// Switch to the alternate screen and hide the cursor (xterm private modes 1049, 25).
const TAKE_SCREEN: &str = "\x1b[?1049h\x1b[?25l";
/// Show the cursor and go back to the user's screen, as it was before.
const GIVE_BACK_SCREEN: &str = "\x1b[?25h\x1b[?1049l";
const HOME: &str = "\x1b[H";
const ERASE_LINE_END: &str = "\x1b[K";
const ERASE_BELOW: &str = "\x1b[J";

/// Set while the view holds the alternate screen, so a forced exit (a second Ctrl-C)
/// can give it back.
static SCREEN_TAKEN: AtomicBool = AtomicBool::new(false);

/// Gives the user's screen and cursor back if the live view took them. For the
/// forced-exit path, where the main thread may hold the stdout lock: writes to the
/// descriptor directly.
pub fn restore_terminal() {
    if SCREEN_TAKEN.swap(false, Ordering::SeqCst) {
        // SAFETY: write(2) on fd 1 with a pointer and length of a live static string; a
        // failure (stdout closed) leaves nothing to restore.
        unsafe {
            libc::write(1, GIVE_BACK_SCREEN.as_ptr().cast(), GIVE_BACK_SCREEN.len());
        }
    }
}

/// What the capture side knows right now (the capture thread's published counters and
/// the flow table), handed over at each redraw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureNow {
    pub port: u16,
    pub packets: u64,
    pub kernel_dropped: u64,
    pub internal_dropped: u64,
    /// Flows the table holds now: open ones, and closed ones kept for TIME_WAIT (a new
    /// SYN on their 4-tuple is a port reuse).
    pub tracked: u64,
}

/// How many tunnels a table names.
const TOP_TUNNELS: usize = 3;

/// The tunnels and tags finished connections came through, as a table shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tunnels {
    /// The busiest, most connections first (then by name, so a tie does not flicker).
    pub top: [Option<(Encap, TunnelSeen)>; TOP_TUNNELS],
    /// How many other tunnels were counted by name, and their connections with those of
    /// the tunnels beyond the count's cap.
    pub more: (usize, TunnelSeen),
    /// Every tunnelled connection.
    pub all: TunnelSeen,
}

impl Tunnels {
    fn of(t: &Evidence) -> Tunnels {
        let mut named: Vec<(Encap, TunnelSeen)> = t.tunnels.iter().map(|(e, s)| (*e, *s)).collect();
        named.sort_by(|a, b| b.1.connections.cmp(&a.1.connections).then(a.0.cmp(&b.0)));
        let mut out = Tunnels::default();
        let add = |sum: &mut TunnelSeen, s: TunnelSeen| {
            sum.connections += s.connections;
            sum.problems += s.problems;
        };
        for (i, (encap, seen)) in named.iter().enumerate() {
            match out.top.get_mut(i) {
                Some(slot) => *slot = Some((*encap, *seen)),
                None => {
                    out.more.0 += 1;
                    add(&mut out.more.1, *seen);
                }
            }
            add(&mut out.all, *seen);
        }
        add(&mut out.more.1, t.other_tunnels);
        add(&mut out.all, t.other_tunnels);
        out
    }
}

/// The counts of finished connections a table shows, taken from the run's one count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// By [`Outcome::index`].
    pub outcomes: [u64; Outcome::ALL.len()],
    pub handshake_rtt: Percentiles,
    pub tunnels: Tunnels,
}

impl Counts {
    pub fn of(t: &Evidence) -> Counts {
        Counts {
            outcomes: t.outcomes,
            handshake_rtt: t.handshake_rtt(),
            tunnels: Tunnels::of(t),
        }
    }

    pub fn flows(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes[o.index()]
    }
}

/// Everything one redraw shows, taken at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    pub at: Instant,
    pub capture: CaptureNow,
    pub counts: Counts,
    /// Live: the latest listener change on the port, when one was seen.
    pub listener: Option<FactChange>,
}

/// When a table is due: at the first chance, then once every [`INTERVAL`]. Kept by the
/// side that takes the counts, so they are only taken for a table that will be drawn.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cadence {
    last: Option<Instant>,
}

impl Cadence {
    /// Whether a table is due at `now`; if so, the next one is due an interval later.
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|at| now.duration_since(at) >= INTERVAL);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// The live view's state between redraws.
pub struct LiveView {
    redraw: Redraw,
    started: Instant,
    /// When the previous table was drawn, and the counts it showed (for the rates).
    last: Option<(Instant, [u64; Outcome::ALL.len()], u64)>,
    /// Flows with a pending ("still unanswered") notice and no final record yet.
    pending: HashSet<u64>,
    /// Findings the live diagnosis made certain, most important first.
    findings: Vec<Finding>,
}

impl LiveView {
    pub fn new(redraw: Redraw) -> LiveView {
        LiveView {
            redraw,
            started: Instant::now(),
            last: None,
            pending: HashSet::new(),
            findings: Vec::new(),
        }
    }

    /// A live pending notice for flow `id`; `finished` when its final record comes.
    pub fn pending(&mut self, id: u64) {
        self.pending.insert(id);
    }

    pub fn finished(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// A finding the live diagnosis made certain: kept for the "top problem" line.
    pub fn finding(&mut self, f: &Finding) {
        self.findings.push(f.clone());
        findings::rank(&mut self.findings);
    }

    /// Draws the table (in place or as the next snapshot).
    pub fn draw(&mut self, out: &mut dyn Write, tick: &Tick, style: Style) -> io::Result<()> {
        let first = self.last.is_none();
        let table = self.table(tick, style);
        match self.redraw {
            Redraw::InPlace => {
                let mut screen = String::with_capacity(table.len() + 256);
                if !SCREEN_TAKEN.swap(true, Ordering::SeqCst) {
                    screen.push_str(TAKE_SCREEN);
                }
                screen.push_str(HOME);
                for line in table.lines() {
                    let _ = writeln!(screen, "{line}{ERASE_LINE_END}");
                }
                screen.push_str(ERASE_BELOW);
                out.write_all(screen.as_bytes())?;
            }
            Redraw::Snapshots => {
                // A blank line between snapshots; the summary brings its own.
                if !first {
                    writeln!(out)?;
                }
                out.write_all(table.as_bytes())?;
            }
        }
        out.flush()
    }

    /// Leaves the terminal as it was (the summary that follows goes to the user's
    /// screen).
    pub fn finish(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if self.redraw == Redraw::InPlace && SCREEN_TAKEN.swap(false, Ordering::SeqCst) {
            out.write_all(GIVE_BACK_SCREEN.as_bytes())?;
        }
        Ok(())
    }

    /// The table's text: one line each, no blank line inside (snapshots are separated by
    /// blank lines).
    fn table(&mut self, tick: &Tick, style: Style) -> String {
        let (t, c, now) = (&tick.counts, tick.capture, tick.at);
        let (secs, prev, prev_packets) = match self.last {
            Some((at, prev, packets)) => (now.duration_since(at).as_secs_f64(), prev, packets),
            None => (
                now.duration_since(self.started).as_secs_f64(),
                [0; Outcome::ALL.len()],
                0,
            ),
        };
        let rate = |n: u64, before: u64| n.saturating_sub(before) as f64 / secs.max(1e-3);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}",
            style.paint(
                "1",
                &format!(
                    "portsniff live summary: port {}, {} connections, {}s (Ctrl-C to stop)",
                    c.port,
                    t.flows(),
                    now.duration_since(self.started).as_secs()
                )
            )
        );
        let _ = writeln!(s, "  {:<20} {:>9} {:>9}", "outcome", "total", "per sec");
        for o in Outcome::ALL {
            let n = t.count(o);
            let _ = writeln!(
                s,
                "  {} {n:>9} {:>9.1}",
                style.outcome(o),
                rate(n, prev[o.index()])
            );
        }
        let _ = writeln!(
            s,
            "  {:<20} {:>9}   (SYNs still unanswered, outcome not final yet)",
            "pending",
            self.pending.len()
        );
        let rtt = t.handshake_rtt;
        let rtt = match (rtt.p50, rtt.p90, rtt.p99) {
            (Some(a), Some(b), Some(c)) => format!(
                "p50 {}  p90 {}  p99 {}  ({} measured)",
                human_duration(a),
                human_duration(b),
                human_duration(c),
                rtt.count
            ),
            _ => "none measured yet".to_string(),
        };
        let _ = writeln!(s, "  handshake RTT   {rtt}");
        let _ = writeln!(s, "  top problem     {}", self.top_problem(t, style));
        if let Some(change) = &tick.listener {
            let _ = writeln!(s, "  listener        {}", listener_line(change));
        }
        if t.tunnels.all.connections > 0 {
            let _ = writeln!(
                s,
                "  tunnels         {}",
                tunnels_line(&t.tunnels, t.flows())
            );
        }
        let _ = writeln!(
            s,
            "  packets         {} captured ({:.0}/s), {} dropped by the kernel, {} by portsniff",
            c.packets,
            rate(c.packets, prev_packets),
            c.kernel_dropped,
            c.internal_dropped
        );
        let _ = writeln!(
            s,
            "  tracked         {} flows (open, closing, or kept a while to spot port reuse)",
            c.tracked
        );
        self.last = Some((now, t.outcomes, c.packets));
        s
    }

    /// The most important live finding; before any, the most frequent problem outcome.
    fn top_problem(&self, t: &Counts, style: Style) -> String {
        if let Some(f) = self.findings.first() {
            return format!(
                "{} {}: {}",
                super::text::severity(style, f.severity),
                f.kind.as_str(),
                f.headline()
            );
        }
        let worst = Outcome::ALL
            .into_iter()
            .filter(|o| o.is_problem() && t.count(*o) > 0)
            .max_by_key(|o| t.count(*o));
        match worst {
            Some(o) => format!("{} {} of {} connections", o.as_str(), t.count(o), t.flows()),
            None if !self.pending.is_empty() => "SYNs unanswered so far (see pending)".to_string(),
            None => "none".to_string(),
        }
    }
}

/// The table's tunnels line: `18 of 20 connections: vxlan vni 42 ×12 (3 problems),
/// vxlan vni 43 ×5, 2 more ×1`, so that problems confined to one tenant's overlay or one
/// VLAN show at a glance.
fn tunnels_line(t: &Tunnels, flows: u64) -> String {
    let count = |seen: TunnelSeen| match seen.problems {
        0 => format!("×{}", seen.connections),
        1 => format!("×{} (1 problem)", seen.connections),
        n => format!("×{} ({n} problems)", seen.connections),
    };
    let mut line = format!("{} of {flows} connections:", t.all.connections);
    for (i, (encap, seen)) in t.top.iter().flatten().enumerate() {
        let _ = write!(
            line,
            "{} {encap} {}",
            if i == 0 { "" } else { "," },
            count(*seen)
        );
    }
    let (more, seen) = t.more;
    if seen.connections > 0 {
        // 0 named: only tunnels beyond the count's cap, never told apart.
        let more = match more {
            0 => "others".to_string(),
            n => format!("{n} more"),
        };
        let _ = write!(line, ", {more} {}", count(seen));
    }
    line
}

/// The table's listener line: `python3 (pid 4242) on [::1]:61999 since 12:00:02.400000`.
fn listener_line(c: &FactChange) -> String {
    let (ep, at) = (c.endpoint, clock(c.at));
    let since = if c.exact { "since" } else { "first seen" };
    match (c.kind, &c.process) {
        (ChangeKind::ListenerStarted, Some(p)) => {
            format!("{} (pid {}) on {ep} {since} {at}", p.name, p.pid)
        }
        (ChangeKind::ListenerStarted, None) => format!("on {ep} {since} {at}"),
        (ChangeKind::ListenerStopped, Some(p)) => {
            format!(
                "none on {ep} since {at} ({}, pid {}, stopped)",
                p.name, p.pid
            )
        }
        (ChangeKind::ListenerStopped, None) => format!("none on {ep} since {at}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowRecord;

    fn record(id: u64, outcome: Outcome, rtt: Option<u64>) -> FlowRecord {
        FlowRecord {
            id,
            handshake_rtt_us: rtt,
            ..crate::diagnose::tests::record(outcome, "127.0.0.1:61999")
        }
    }

    fn snapshot(view: &mut LiveView, t: &Evidence, packets: u64, at: Instant) -> String {
        let mut out = Vec::new();
        let tick = Tick {
            at,
            capture: CaptureNow {
                port: 61999,
                packets,
                kernel_dropped: 0,
                internal_dropped: 0,
                tracked: 2,
            },
            counts: Counts::of(t),
            listener: None,
        };
        view.draw(&mut out, &tick, Style { color: false }).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn row<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{text}"))
            .split_whitespace()
            .collect()
    }

    #[test]
    fn snapshots_count_outcomes_and_rate_them_over_the_last_second() {
        let mut view = LiveView::new(Redraw::Snapshots);
        let mut t = Evidence::default();
        let start = view.started;
        for id in 0..4 {
            t.add(&record(id, Outcome::Closed, Some(30 + id)));
        }
        let first = snapshot(&mut view, &t, 40, start + Duration::from_secs(1));
        assert_eq!(row(&first, "closed"), ["closed", "4", "4.0"]);
        assert!(!first.contains("\n\n"), "no blank line inside a snapshot");

        t.add(&record(4, Outcome::Refused, None));
        t.add(&record(5, Outcome::Refused, None));
        let second = snapshot(&mut view, &t, 60, start + Duration::from_secs(3));
        assert!(
            second.starts_with("\nportsniff live summary"),
            "a blank line between"
        );
        assert_eq!(row(&second, "closed"), ["closed", "4", "0.0"]);
        assert_eq!(row(&second, "refused"), ["refused", "2", "1.0"], "2 in 2 s");
        assert!(second.contains("p50 31µs"), "{second}");
        assert!(second.contains("60 captured (10/s)"), "{second}");
        assert!(
            second.contains("top problem     refused 2 of 6 connections"),
            "{second}"
        );
        assert!(second.contains("6 connections"), "{second}");
    }

    fn tunnelled(id: u64, outcome: Outcome, encap: Encap) -> FlowRecord {
        FlowRecord {
            encap,
            ..record(id, outcome, None)
        }
    }

    #[test]
    fn the_table_names_the_busiest_tunnels_and_their_problems() {
        let mut view = LiveView::new(Redraw::Snapshots);
        let mut t = Evidence::default();
        let at = view.started;
        let plain = snapshot(&mut view, &t, 0, at);
        assert!(!plain.contains("tunnels"), "no tunnel, no line:\n{plain}");

        let mut id = 0;
        let mut add = |t: &mut Evidence, n: usize, outcome: Outcome, encap: Encap| {
            for _ in 0..n {
                id += 1;
                t.add(&tunnelled(id, outcome, encap));
            }
        };
        add(&mut t, 9, Outcome::Closed, Encap::Vxlan(42));
        add(&mut t, 3, Outcome::Refused, Encap::Vxlan(42));
        add(&mut t, 5, Outcome::Closed, Encap::Vxlan(43));
        add(&mut t, 2, Outcome::Closed, Encap::Vlan(100));
        add(&mut t, 1, Outcome::Unanswered, Encap::Mpls(2001));
        add(&mut t, 1, Outcome::Closed, Encap::Gre(None));
        add(&mut t, 2, Outcome::Closed, Encap::None);
        let text = snapshot(&mut view, &t, 0, at + Duration::from_secs(1));
        assert!(
            text.contains(
                "  tunnels         21 of 23 connections: vxlan vni 42 ×12 (3 problems), \
                 vxlan vni 43 ×5, vlan 100 ×2, 2 more ×2 (1 problem)\n"
            ),
            "{text}"
        );
    }

    /// A trunk of hundreds of VLANs: the count keeps 256 by name and the rest together,
    /// and the line stays one line.
    #[test]
    fn hundreds_of_tunnels_are_counted_within_a_bound_and_told_as_more() {
        let mut view = LiveView::new(Redraw::Snapshots);
        let mut t = Evidence::default();
        for id in 0..300u16 {
            t.add(&tunnelled(
                u64::from(id),
                Outcome::Closed,
                Encap::Vlan(id + 1),
            ));
        }
        let at = view.started;
        let text = snapshot(&mut view, &t, 0, at);
        assert!(
            text.contains(
                "  tunnels         300 of 300 connections: vlan 1 ×1, vlan 2 ×1, vlan 3 ×1, \
                 253 more ×297\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_table_is_due_at_once_then_once_a_second() {
        let start = Instant::now();
        let mut cadence = Cadence::default();
        assert!(cadence.due(start + Duration::from_secs(1)));
        assert!(!cadence.due(start + Duration::from_millis(1500)));
        assert!(cadence.due(start + Duration::from_secs(2)));
        assert!(!cadence.due(start + Duration::from_secs(2)));
    }

    #[test]
    fn a_live_finding_becomes_the_top_problem_and_pending_flows_are_counted() {
        let mut view = LiveView::new(Redraw::Snapshots);
        view.pending(7);
        view.pending(8);
        view.finished(7);
        let f = Finding::new(
            crate::diagnose::Cause::NothingListening(crate::diagnose::cause::Refused {
                refused: 3,
                server: crate::diagnose::tests::ep("127.0.0.1:61999"),
                kernel: None,
                port: 61999,
                basis: crate::diagnose::cause::Basis::Host,
            }),
            3,
        );
        view.finding(&f);
        let at = view.started;
        let text = snapshot(&mut view, &Evidence::default(), 0, at);
        assert_eq!(row(&text, "pending")[1], "1");
        assert!(
            text.contains(
                "top problem     [error] nothing_listening: 3 connections to 127.0.0.1:61999 refused"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_table_shows_the_last_change_of_listener() {
        let mut view = LiveView::new(Redraw::Snapshots);
        let at = view.started;
        let ts = crate::decode::Timestamp(1_700_000_002_400_000);
        let change = FactChange {
            kind: ChangeKind::ListenerStarted,
            endpoint: crate::diagnose::tests::ep("[::1]:61999"),
            at: ts,
            exact: true,
            from: ts,
            process: Some(crate::diagnose::ProcessInfo {
                pid: 4242,
                name: "python3".into(),
                cmdline: "python3 server.py".into(),
                user: "root".into(),
            }),
            seq: 0,
        };
        let mut out = Vec::new();
        let tick = Tick {
            at,
            capture: CaptureNow::default(),
            counts: Counts::default(),
            listener: Some(change),
        };
        view.draw(&mut out, &tick, Style { color: false }).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!(
                "  listener        python3 (pid 4242) on [::1]:61999 since {}",
                clock(ts)
            )),
            "{text}"
        );
    }

    #[test]
    fn in_place_redraw_takes_the_alternate_screen_and_finish_gives_it_back() {
        let mut view = LiveView::new(Redraw::InPlace);
        let at = view.started;
        let text = snapshot(&mut view, &Evidence::default(), 0, at);
        assert!(text.starts_with(TAKE_SCREEN), "{text:?}");
        assert!(
            text.contains(HOME) && text.ends_with(ERASE_BELOW),
            "{text:?}"
        );
        let mut out = Vec::new();
        view.finish(&mut out).unwrap();
        assert_eq!(out, GIVE_BACK_SCREEN.as_bytes());
    }
}

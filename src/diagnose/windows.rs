//! When each server endpoint refused and accepted connections, in order: refusals grouped
//! into windows separated by accepted handshakes, so that a refusal followed by accepted
//! connections reads as a startup race or a restart, not as "nothing listens".
//!
//! Bounded: each server keeps at most `MARKS_CAP` raw marks; beyond, they are compacted
//! into runs (a run: consecutive attempts with one fate), and beyond `RUNS_CAP` runs the
//! oldest window is folded into counts that the evidence reports. Pure: timestamps in,
//! windows out.

use crate::decode::{Endpoint, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;

/// Most server endpoints whose timeline is kept.
const SERVERS_CAP: usize = 64;
/// Most raw marks per server before they are compacted into runs.
const MARKS_CAP: usize = 1024;
/// Most runs kept per server (a window and the accepted run after it are two); older
/// windows are folded into counts.
const RUNS_CAP: usize = 64;

/// An attempt's fate, at its first SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    Refused,
    /// Never answered: its SYNs were dropped.
    Dropped,
    Accepted,
}

impl Fate {
    /// The failures windows are made of, by index into per-failure counts.
    fn failure(self) -> Option<usize> {
        match self {
            Fate::Refused => Some(0),
            Fate::Dropped => Some(1),
            Fate::Accepted => None,
        }
    }
}

/// Consecutive attempts with one fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    fate: Fate,
    first: Timestamp,
    last: Timestamp,
    count: u64,
}

/// A time the port refused (or dropped) connections, with the accepted connections
/// around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// The first failed attempt's first SYN; in the JSON, seconds since the Unix epoch
    /// like every other time there.
    #[serde(serialize_with = "secs")]
    pub start: Timestamp,
    /// The last failed attempt's first SYN.
    #[serde(serialize_with = "secs")]
    pub end: Timestamp,
    pub attempts: u64,
    /// Accepted connections since the window before (or the capture's start).
    pub accepted_before: u64,
    /// Accepted connections up to the next window (or the capture's end).
    pub accepted_after: u64,
    /// The first accepted connection after it (its first SYN): when the port was open
    /// again, as the packets show it.
    #[serde(serialize_with = "secs_opt")]
    pub reopened: Option<Timestamp>,
}

// Microseconds as f64 seconds print back exactly (see `report::json`'s timestamps).
fn secs<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(t.as_secs_f64())
}

fn secs_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_f64(t.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Windows folded out of memory: the oldest of a long run of restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    pub windows: u64,
    pub attempts: u64,
}

/// One server endpoint's attempts over time.
#[derive(Clone, Debug, Default)]
struct Marks {
    /// Compacted, in time order, alternating fates.
    runs: Vec<Run>,
    /// Raw, in arrival order (a long connection's record comes after later refusals).
    raw: Vec<(Timestamp, Fate)>,
    /// By [`Fate::failure`].
    folded: [Folded; 2],
}

impl Marks {
    fn add(&mut self, at: Timestamp, fate: Fate) {
        self.raw.push((at, fate));
        if self.raw.len() >= MARKS_CAP {
            self.compact();
        }
    }

    /// Raw marks into runs; the oldest windows folded beyond `RUNS_CAP`.
    fn compact(&mut self) {
        self.raw.sort_unstable();
        for (at, fate) in self.raw.drain(..) {
            push(&mut self.runs, at, fate, 1);
        }
        while self.runs.len() > RUNS_CAP {
            let run = self.runs.remove(0);
            if let Some(i) = run.fate.failure() {
                self.folded[i].windows += 1;
                self.folded[i].attempts += run.count;
            }
        }
    }

    /// The windows of `fate`'s failures: attempts that failed so with no accepted one
    /// between them (failures of the other kind neither split nor count).
    fn windows(&self, fate: Fate) -> (Vec<Window>, Folded) {
        let mut raw = self.raw.clone();
        raw.sort_unstable();
        let mut runs = self.runs.clone();
        for (at, fate) in raw {
            push(&mut runs, at, fate, 1);
        }
        let mut out: Vec<Window> = Vec::new();
        let mut accepted = 0;
        // Whether the last window is still open (no accepted attempt since it).
        let mut open = false;
        for r in &runs {
            match (r.fate == fate, r.fate) {
                (_, Fate::Accepted) => {
                    accepted += r.count;
                    open = false;
                    if let Some(w) = out.last_mut() {
                        w.accepted_after += r.count;
                        w.reopened.get_or_insert(r.first);
                    }
                }
                (true, _) if open => {
                    if let Some(w) = out.last_mut() {
                        w.end = r.last;
                        w.attempts += r.count;
                    }
                }
                (true, _) => {
                    out.push(Window {
                        start: r.first,
                        end: r.last,
                        attempts: r.count,
                        accepted_before: accepted,
                        accepted_after: 0,
                        reopened: None,
                    });
                    accepted = 0;
                    open = true;
                }
                (false, _) => {}
            }
        }
        let folded = fate
            .failure()
            .map_or_else(Folded::default, |i| self.folded[i]);
        (out, folded)
    }
}

/// Appends an attempt to time-ordered runs. One older than the last run (it arrived
/// after a compaction) joins the last run: its order among them is lost.
fn push(runs: &mut Vec<Run>, at: Timestamp, fate: Fate, count: u64) {
    match runs.last_mut() {
        Some(r) if r.fate == fate => {
            r.last = r.last.max(at);
            r.count += count;
        }
        Some(r) if at < r.last => {
            // Arrived late across a compaction: a run of its own at the last one's end,
            // rather than splitting a run whose order inside is lost.
            let at = r.last;
            runs.push(Run {
                fate,
                first: at,
                last: at,
                count,
            });
        }
        _ => runs.push(Run {
            fate,
            first: at,
            last: at,
            count,
        }),
    }
}

/// Every server endpoint's attempts over time (up to `SERVERS_CAP` endpoints).
#[derive(Clone, Debug, Default)]
pub struct Timelines {
    servers: BTreeMap<Endpoint, Marks>,
}

impl Timelines {
    /// An attempt to `server` whose first SYN was sent at `at`.
    pub fn add(&mut self, server: Endpoint, at: Timestamp, fate: Fate) {
        if let Some(m) = self.servers.get_mut(&server) {
            m.add(at, fate);
        } else if self.servers.len() < SERVERS_CAP {
            self.servers.entry(server).or_default().add(at, fate);
        }
    }

    /// `server`'s windows of `fate` in time order, and how many were folded out of
    /// memory.
    pub fn windows(&self, server: &Endpoint, fate: Fate) -> (Vec<Window>, Folded) {
        self.servers
            .get(server)
            .map_or((Vec::new(), Folded::default()), |m| m.windows(fate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp(ms * 1000)
    }

    fn server() -> Endpoint {
        Endpoint::new([127, 0, 0, 1].into(), 61999)
    }

    #[test]
    fn refusals_between_accepts_are_one_window_with_its_neighbours_counted() {
        let mut t = Timelines::default();
        for (ms, fate) in [
            (0, Fate::Accepted),
            (10, Fate::Accepted),
            (20, Fate::Refused),
            (30, Fate::Refused),
            (40, Fate::Accepted),
        ] {
            t.add(server(), at(ms), fate);
        }
        let (w, folded) = t.windows(&server(), Fate::Refused);
        assert_eq!(folded, Folded::default());
        assert_eq!(
            w,
            [Window {
                start: at(20),
                end: at(30),
                attempts: 2,
                accepted_before: 2,
                accepted_after: 1,
                reopened: Some(at(40)),
            }]
        );
    }

    #[test]
    fn a_long_connection_whose_record_comes_late_still_separates_by_its_first_syn() {
        let mut t = Timelines::default();
        t.add(server(), at(20), Fate::Refused);
        t.add(server(), at(40), Fate::Refused);
        t.add(server(), at(10), Fate::Accepted);
        let (w, _) = t.windows(&server(), Fate::Refused);
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].accepted_before, w[0].accepted_after), (1, 0));
    }

    #[test]
    fn drops_make_windows_of_their_own_and_refusals_do_not_split_them() {
        let mut t = Timelines::default();
        for (ms, fate) in [
            (0, Fate::Accepted),
            (10, Fate::Dropped),
            (20, Fate::Refused),
            (30, Fate::Dropped),
            (40, Fate::Accepted),
        ] {
            t.add(server(), at(ms), fate);
        }
        let (w, _) = t.windows(&server(), Fate::Dropped);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!((w[0].start, w[0].end, w[0].attempts), (at(10), at(30), 2));
        assert_eq!((w[0].accepted_before, w[0].accepted_after), (1, 1));
        assert_eq!(t.windows(&server(), Fate::Refused).0[0].attempts, 1);
    }

    #[test]
    fn a_long_restart_loop_keeps_a_bounded_number_of_windows_and_counts_the_folded() {
        let mut t = Timelines::default();
        let mut ms = 0;
        for _ in 0..1000 {
            for fate in [Fate::Refused, Fate::Refused, Fate::Accepted] {
                t.add(server(), at(ms), fate);
                ms += 1;
            }
        }
        let (w, folded) = t.windows(&server(), Fate::Refused);
        assert!(w.len() <= RUNS_CAP + MARKS_CAP, "{}", w.len());
        assert_eq!(folded.windows + w.len() as u64, 1000);
        assert_eq!(
            folded.attempts + w.iter().map(|w| w.attempts).sum::<u64>(),
            2000
        );
    }
}

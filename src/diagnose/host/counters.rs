//! The kernel's TCP counters that explain drops and resets (/proc/net/netstat TcpExt,
//! /proc/net/snmp Tcp), by name from an enum, and their growth over a capture.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A kernel counter portsniff reads. Declared in the order of their names, so that maps
/// keyed by them list them as `nstat` would sort them (see the test below).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// Tcp: connect() attempts that failed (SYN_SENT/SYN_RECV → CLOSED).
    AttemptFails,
    /// TcpExt: SYNs or handshake ACKs dropped at a listener for any reason.
    ListenDrops,
    /// TcpExt: the accept queue was full (`sk_acceptq_is_full`).
    ListenOverflows,
    /// Tcp: RSTs sent.
    OutRsts,
    /// TcpExt: ACKs carrying a SYN cookie that did not validate (a late or forged ACK).
    SyncookiesFailed,
    /// TcpExt: ACKs carrying a valid SYN cookie: clients that completed a handshake
    /// the SYN queue had no room for.
    SyncookiesRecv,
    /// TcpExt: SYN-ACKs sent with a SYN cookie instead of a request socket.
    SyncookiesSent,
    /// TcpExt: a socket closed with unread data, answered with RST (RFC 2525 §2.17).
    TcpAbortOnClose,
    /// TcpExt: data arrived after the application closed: answered with RST.
    TcpAbortOnData,
    /// TcpExt: segments dropped because the socket's backlog was full.
    TcpBacklogDrop,
    /// TcpExt: SYNs answered with a cookie because the SYN queue was full
    /// (`tcp_syn_flood_action`: the kernel's "possible SYN flooding" condition).
    TcpReqQFullDoCookies,
    /// TcpExt: SYNs dropped because the SYN queue was full and syncookies were off.
    TcpReqQFullDrop,
    /// TcpExt: no TIME_WAIT bucket could be allocated (tcp_max_tw_buckets).
    TcpTimeWaitOverflow,
}

impl Counter {
    pub const ALL: [Counter; 13] = [
        Counter::AttemptFails,
        Counter::ListenDrops,
        Counter::ListenOverflows,
        Counter::OutRsts,
        Counter::SyncookiesFailed,
        Counter::SyncookiesRecv,
        Counter::SyncookiesSent,
        Counter::TcpAbortOnClose,
        Counter::TcpAbortOnData,
        Counter::TcpBacklogDrop,
        Counter::TcpReqQFullDoCookies,
        Counter::TcpReqQFullDrop,
        Counter::TcpTimeWaitOverflow,
    ];

    /// The kernel's name, as in /proc/net/netstat and `nstat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::AttemptFails => "AttemptFails",
            Counter::ListenDrops => "ListenDrops",
            Counter::ListenOverflows => "ListenOverflows",
            Counter::OutRsts => "OutRsts",
            Counter::SyncookiesFailed => "SyncookiesFailed",
            Counter::SyncookiesRecv => "SyncookiesRecv",
            Counter::SyncookiesSent => "SyncookiesSent",
            Counter::TcpAbortOnClose => "TCPAbortOnClose",
            Counter::TcpAbortOnData => "TCPAbortOnData",
            Counter::TcpBacklogDrop => "TCPBacklogDrop",
            Counter::TcpReqQFullDoCookies => "TCPReqQFullDoCookies",
            Counter::TcpReqQFullDrop => "TCPReqQFullDrop",
            Counter::TcpTimeWaitOverflow => "TCPTimeWaitOverflow",
        }
    }

    fn from_name(name: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Counter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

pub type Counters = BTreeMap<Counter, u64>;

/// Reads /proc/net/netstat and /proc/net/snmp: pairs of lines `Prefix: names…` and
/// `Prefix: values…`. procfs parses /proc/net/snmp but not TcpExt, so both are read the
/// same simple way here.
pub fn read_counters() -> Counters {
    let mut out = Counters::new();
    for path in ["/proc/net/netstat", "/proc/net/snmp"] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            for (name, value) in names
                .split_whitespace()
                .zip(values.split_whitespace())
                .skip(1)
            {
                if let Some(known) = Counter::from_name(name) {
                    if let Ok(v) = value.parse::<u64>() {
                        out.insert(known, v);
                    }
                }
            }
        }
    }
    out
}

/// Counter growth between two readings (missing or shrinking counters read as 0).
pub fn counter_delta(start: &Counters, end: &Counters) -> Counters {
    end.iter()
        .map(|(k, v)| (*k, v.saturating_sub(start.get(k).copied().unwrap_or(*v))))
        .collect()
}

/// Growth of one counter (0 when it is missing from either reading).
pub fn grew(start: &Counters, end: &Counters, counter: Counter) -> u64 {
    let now = end.get(&counter).copied().unwrap_or(0);
    now.saturating_sub(start.get(&counter).copied().unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sort_as_their_kernel_names_do() {
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        let in_order: Vec<&str> = Counter::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, in_order);
        let mut sorted = Counter::ALL;
        sorted.sort();
        assert_eq!(sorted, Counter::ALL);
    }

    #[test]
    fn counters_are_read_from_proc_and_deltas_never_go_negative() {
        let start = read_counters();
        if std::path::Path::new("/proc/net/netstat").exists() {
            assert!(start.contains_key(&Counter::ListenOverflows), "{start:?}");
        }
        let mut end = start.clone();
        end.insert(Counter::ListenOverflows, 0);
        let d = counter_delta(&start, &end);
        assert_eq!(d.get(&Counter::ListenOverflows), Some(&0));
        assert_eq!(grew(&start, &end, Counter::ListenOverflows), 0);
    }

    #[test]
    fn a_counter_missing_at_the_start_counts_from_zero_growth() {
        let end = Counters::from([(Counter::TcpAbortOnClose, 5)]);
        assert_eq!(grew(&Counters::new(), &end, Counter::TcpAbortOnClose), 0);
        let start = Counters::from([(Counter::TcpAbortOnClose, 2)]);
        assert_eq!(grew(&start, &end, Counter::TcpAbortOnClose), 3);
    }
}

//! Wireshark's names for what a flow shows: its TCP expert flags (`tcp.analysis.*`),
//! spelled as Wireshark prints them in the Info column, so a user can go from a
//! portsniff line to the same packets in Wireshark (`tcp.analysis.retransmission`, …).

use crate::diagnose::Evidence;
use crate::flow::FlowRecord;

/// One Wireshark TCP expert flag portsniff can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertFlag {
    /// A segment sent again: a SYN, a SYN-ACK, or data/FIN already sent.
    Retransmission,
    /// A side advertised a zero receive window.
    ZeroWindow,
    /// A SYN reused the 4-tuple of a connection still held (open, closing or TIME_WAIT).
    PortNumbersReused,
}

impl ExpertFlag {
    pub const ALL: [ExpertFlag; 3] = [
        ExpertFlag::Retransmission,
        ExpertFlag::ZeroWindow,
        ExpertFlag::PortNumbersReused,
    ];

    /// The Info-column text of Wireshark's TCP dissector (`epan/dissectors/packet-tcp.c`:
    /// `[TCP Retransmission]`, `[TCP ZeroWindow]`, `[TCP Port numbers reused]`).
    pub fn wireshark_name(self) -> &'static str {
        match self {
            ExpertFlag::Retransmission => "TCP Retransmission",
            ExpertFlag::ZeroWindow => "TCP ZeroWindow",
            ExpertFlag::PortNumbersReused => "TCP Port numbers reused",
        }
    }

    /// How many times a flow showed it. Retransmissions count segments, as Wireshark
    /// does (SYNs and SYN-ACKs included). Zero windows count stalls: Wireshark flags
    /// every segment sent while the window stays shut, portsniff each time it shuts.
    pub fn count_in(self, r: &FlowRecord) -> u64 {
        match self {
            ExpertFlag::Retransmission => {
                u64::from(r.syn_count.saturating_sub(1))
                    + u64::from(r.synack_count.saturating_sub(1))
                    + u64::from(r.retransmits[0])
                    + u64::from(r.retransmits[1])
            }
            ExpertFlag::ZeroWindow => u64::from(r.zero_windows[0]) + u64::from(r.zero_windows[1]),
            ExpertFlag::PortNumbersReused => u64::from(r.port_reused),
        }
    }

    /// The same count over every connection of the run.
    pub fn count_in_tally(self, t: &Evidence) -> u64 {
        match self {
            ExpertFlag::Retransmission => t.syn_retransmits + t.synack_retransmits + t.retransmits,
            ExpertFlag::ZeroWindow => t.zero_windows,
            ExpertFlag::PortNumbersReused => t.port_reused,
        }
    }
}

/// `TCP Retransmission ×3, TCP ZeroWindow`: the flags seen, with a count above one;
/// empty when none.
pub fn tags(counts: impl IntoIterator<Item = (ExpertFlag, u64)>) -> String {
    let mut s = String::new();
    for (flag, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(flag.wireshark_name());
        if n > 1 {
            s.push_str(&format!(" ×{n}"));
        }
    }
    s
}

/// The tags of one flow.
pub fn flow_tags(r: &FlowRecord) -> String {
    tags(ExpertFlag::ALL.map(|f| (f, f.count_in(r))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_each_flag_once_with_its_count_above_one() {
        assert_eq!(tags([(ExpertFlag::Retransmission, 0)]), "");
        assert_eq!(
            tags([
                (ExpertFlag::Retransmission, 3),
                (ExpertFlag::ZeroWindow, 1),
                (ExpertFlag::PortNumbersReused, 0)
            ]),
            "TCP Retransmission ×3, TCP ZeroWindow"
        );
    }
}

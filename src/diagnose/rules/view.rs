//! What the capture could not show: attempts its end cut short, a filter expression that
//! let only one direction through, packets the snaplen cut inside their headers. Such
//! findings say what cannot be judged; the rules that would judge it ask [`one_sided`]
//! and [`truncated`] first, so that no verdict rests on a partial view.

use crate::diagnose::cause::{Cause, CutShort, OneSided, TruncatedView};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::Finding;
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;
use crate::flow::Side;

/// The only side whose packets the user's filter expression let through, if it let only
/// one: `dst port P` keeps the clients' packets and none of the answers.
pub(crate) fn one_sided(ev: &Evidence, scope: &Scope) -> Option<Side> {
    scope.expression.as_ref()?;
    match ev.packets_from.map(|n| n > 0) {
        [true, false] => Some(Side::Client),
        [false, true] => Some(Side::Server),
        [true, true] | [false, false] => None,
    }
}

/// Whether packets were cut inside their headers and so reached no connection.
pub(crate) fn truncated(ev: &Evidence) -> bool {
    ev.truncated > 0
}

/// Whether the cut packets are as many as those read: then a missing answer may well be
/// one of them, and absence proves nothing. A stray runt frame among thousands does not
/// silence the other rules.
pub(crate) fn mostly_truncated(ev: &Evidence) -> bool {
    truncated(ev) && ev.truncated >= ev.packets_from.iter().sum::<u64>()
}

pub fn findings(ev: &Evidence, _facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let mut out = Vec::new();
    if ev.unanswered_cut > 0 {
        let cause = Cause::CaptureCutShort(CutShort {
            waiting: ev.unanswered_cut,
            port: scope.port,
        });
        out.push(Finding::new(cause, ev.unanswered_cut));
    }
    if let (Some(seen), Some(expression)) = (one_sided(ev, scope), &scope.expression) {
        let cause = Cause::OneSidedView(OneSided {
            expression: expression.clone(),
            seen,
            port: scope.port,
        });
        out.push(Finding::new(cause, ev.flows()));
    }
    if truncated(ev) {
        let cause = Cause::TruncatedView(TruncatedView {
            truncated: ev.truncated,
            port: scope.port,
        });
        out.push(Finding::new(cause, ev.truncated));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::{FindingKind, Severity};
    use crate::diagnose::rules::evaluate as all;
    use crate::diagnose::tests::{evidence, record};
    use crate::flow::{EndReason, Outcome};

    fn waiting_at_capture_end(syns: u32) -> crate::flow::FlowRecord {
        crate::flow::FlowRecord {
            syn_count: syns,
            end: Some(EndReason::CaptureEnd),
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        }
    }

    /// Evidence of `r` in a capture that ended `after_us` after its last packet.
    fn ended_after(r: crate::flow::FlowRecord, after_us: u64) -> Evidence {
        let mut ev = evidence(&[r]);
        ev.capture_ended(r.last_ts.add_micros(after_us), 0);
        ev
    }

    #[test]
    fn syn_cut_by_the_capture_end_is_not_silently_dropped() {
        let ev = ended_after(waiting_at_capture_end(1), 200_000);
        let found = all(&ev, None, &Scope::port(61999));
        let kinds: Vec<FindingKind> = found.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FindingKind::PartialView]);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(
            found[0]
                .words()
                .headline
                .contains("capture ended before an answer"),
            "{}",
            found[0].words().headline
        );
        assert_eq!(ev.problems(), 0, "not a failed connection");
    }

    #[test]
    fn lone_syns_that_waited_past_the_first_retransmission_time_are_silently_dropped() {
        // A spoofed-source flood: one SYN per source, never retransmitted.
        let ev = ended_after(waiting_at_capture_end(1), 5_000_000);
        let kinds: Vec<FindingKind> = all(&ev, None, &Scope::port(61999))
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(kinds, [FindingKind::SilentlyDropped]);
        assert_eq!(ev.problems(), 1);
    }

    #[test]
    fn retransmitted_syns_at_the_capture_end_are_still_silently_dropped() {
        let ev = ended_after(waiting_at_capture_end(3), 200_000);
        let kinds: Vec<FindingKind> = all(&ev, None, &Scope::port(61999))
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(kinds, [FindingKind::SilentlyDropped]);
        assert_eq!(ev.problems(), 1);
    }

    fn dst_port_only(port: u16) -> Scope {
        Scope {
            expression: Some(format!("dst port {port}")),
            ..Scope::port(port)
        }
    }

    fn syns_only(syns: u32) -> crate::flow::FlowRecord {
        crate::flow::FlowRecord {
            syn_count: syns,
            packets: [u64::from(syns), 0],
            end: Some(EndReason::IdleTimeout),
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        }
    }

    #[test]
    fn filter_hiding_the_answers_warns_of_a_one_sided_view_instead_of_drops() {
        let ev = evidence(&[syns_only(3), syns_only(3)]);
        let found = all(&ev, None, &dst_port_only(61999));
        let kinds: Vec<FindingKind> = found.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FindingKind::PartialView], "no silently_dropped");
        let words = found[0].words();
        assert!(
            words.headline.contains("shows only one direction"),
            "{}",
            words.headline
        );
        assert!(
            words.next_step.contains("'port 61999'"),
            "{}",
            words.next_step
        );
        assert_eq!(
            found[0].cause,
            Cause::OneSidedView(OneSided {
                expression: "dst port 61999".into(),
                seen: Side::Client,
                port: 61999,
            })
        );
    }

    #[test]
    fn same_syns_without_a_filter_are_silently_dropped() {
        let ev = evidence(&[syns_only(3)]);
        let kinds: Vec<FindingKind> = all(&ev, None, &Scope::port(61999))
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(kinds, [FindingKind::SilentlyDropped]);
    }

    #[test]
    fn headers_cut_by_the_snaplen_warn_instead_of_no_traffic() {
        let mut ev = evidence(&[]);
        ev.truncated = 11;
        let found = all(&ev, None, &Scope::port(61999));
        let kinds: Vec<FindingKind> = found.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FindingKind::PartialView], "not no_traffic");
        assert!(found[0].words().headline.starts_with("11 packets were cut"));
    }

    #[test]
    fn a_few_cut_packets_among_many_warn_but_leave_drops_judged() {
        let mut ev = evidence(&[syns_only(3)]);
        ev.truncated = 1;
        let kinds: Vec<FindingKind> = all(&ev, None, &Scope::port(61999))
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(
            kinds,
            [FindingKind::SilentlyDropped, FindingKind::PartialView]
        );
    }

    #[test]
    fn syn_the_client_gave_up_on_is_still_silently_dropped() {
        let ev = evidence(&[crate::flow::FlowRecord {
            end: Some(EndReason::Packets),
            ..record(Outcome::Unanswered, "127.0.0.1:61999")
        }]);
        let kinds: Vec<FindingKind> = all(&ev, None, &Scope::port(61999))
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(kinds, [FindingKind::SilentlyDropped]);
    }
}

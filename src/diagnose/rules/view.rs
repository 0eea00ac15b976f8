//! What the capture could not show: attempts its end cut short. Such findings say what
//! cannot be judged, so that no other rule's verdict rests on a partial view.

use crate::diagnose::cause::{Cause, CutShort};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::Finding;
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;

pub fn findings(ev: &Evidence, _facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let mut out = Vec::new();
    if ev.unanswered_cut > 0 {
        let cause = Cause::CaptureCutShort(CutShort {
            waiting: ev.unanswered_cut,
            port: scope.port,
        });
        out.push(Finding::new(cause, ev.unanswered_cut));
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

    #[test]
    fn syn_cut_by_the_capture_end_is_not_silently_dropped() {
        let ev = evidence(&[waiting_at_capture_end(1)]);
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
    fn retransmitted_syns_at_the_capture_end_are_still_silently_dropped() {
        let ev = evidence(&[waiting_at_capture_end(3)]);
        let kinds: Vec<FindingKind> = all(&ev, None, &Scope::port(61999))
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(kinds, [FindingKind::SilentlyDropped]);
        assert_eq!(ev.problems(), 1);
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

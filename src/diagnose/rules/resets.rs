//! Accepted connections torn down by a RST, per side: what most of them looked like
//! (right after the handshake, with the peer's data unread, mid-transfer), and live, the
//! kernel's word on closes with unread data (TCPAbortOnClose).

use crate::diagnose::cause::{Cause, Resets};
use crate::diagnose::evidence::{Evidence, ResetContext};
use crate::diagnose::findings::Finding;
use crate::diagnose::host::{Counter, HostFacts};
use crate::diagnose::rules::Scope;
use crate::flow::Side;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, _scope: &Scope) -> Vec<Finding> {
    let mut out = Vec::new();
    for side in [Side::Server, Side::Client] {
        let mut total = 0;
        let mut top: Option<(ResetContext, u64)> = None;
        for (&(by, ctx), &n) in &ev.resets {
            if by == side {
                total += n;
                if top.is_none_or(|(_, m)| n > m) {
                    top = Some((ctx, n));
                }
            }
        }
        let Some((context, _)) = top else { continue };
        let cause = Cause::Reset(Resets {
            resets: total,
            context,
            // Linux counts a close() with unread data, answered with RST, here.
            abort_on_close: facts.map(|f| f.delta(Counter::TcpAbortOnClose)),
            by: side,
        });
        out.push(Finding::new(cause, total));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::tests::*;
    use crate::flow::{FlowRecord, Outcome};

    fn reset_by(side: Side, bytes: [u64; 2], last: Option<Side>) -> FlowRecord {
        FlowRecord {
            reset_by: Some(side),
            bytes,
            last_payload_by: last,
            ..record(Outcome::Reset, "127.0.0.1:61999")
        }
    }

    #[test]
    fn a_server_reset_after_unread_client_data_is_a_close_with_unread_data() {
        let unread = reset_by(Side::Server, [1000, 0], Some(Side::Client));
        let found = findings(&evidence(&[unread]), None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::ResetByServer);
        assert_eq!(evidence_json(&found[0])["context"], "unread_data");
        assert!(evidence_json(&found[0])["abort_on_close"].is_null());
    }

    #[test]
    fn the_most_common_context_speaks_for_all_of_a_sides_resets() {
        let mid = reset_by(Side::Client, [10, 5000], Some(Side::Client));
        let quiet = reset_by(Side::Client, [0, 0], None);
        let found = findings(&evidence(&[mid, mid, quiet]), None, &Scope::port(61999));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, FindingKind::ResetByClient);
        assert_eq!(found[0].weight, 3);
        assert_eq!(evidence_json(&found[0])["context"], "mid_transfer");
    }

    #[test]
    fn live_the_kernels_abort_on_close_count_is_the_evidence() {
        let unread = reset_by(Side::Server, [1000, 0], Some(Side::Client));
        let mut f = facts(vec![]);
        f.start.counters.insert(Counter::TcpAbortOnClose, 3);
        f.now.counters.insert(Counter::TcpAbortOnClose, 8);
        let found = findings(&evidence(&[unread]), Some(&f), &Scope::port(61999));
        assert_eq!(evidence_json(&found[0])["abort_on_close"], 5);
        assert!(found[0].explanation().contains("TCPAbortOnClose grew by 5"));
    }
}

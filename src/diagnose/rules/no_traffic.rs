//! Nothing reached the port at all: the filter expression left it out, or the client is
//! pointed elsewhere (SYNs to other ports, a proxy in the environment, other listeners).

use crate::decode::Endpoint;
use crate::diagnose::cause::{Cause, NoTraffic, NoTrafficFiltered, SynsTo};
use crate::diagnose::evidence::Evidence;
use crate::diagnose::findings::Finding;
use crate::diagnose::host::HostFacts;
use crate::diagnose::rules::Scope;

/// Most destinations and nearby listeners named.
const NAMED: usize = 10;

pub fn findings(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    // Packets cut inside their headers may have been the port's: the `view` rule says so.
    if ev.flows() > 0 || super::view::truncated(ev) {
        return Vec::new();
    }
    let port = scope.port;
    if let Some(expr) = &scope.expression {
        // The expression is the first suspect: it may be what kept the port's packets out.
        let cause = Cause::NoTrafficFiltered(NoTrafficFiltered {
            expression: expr.clone(),
            port,
        });
        return vec![Finding::new(cause, 1)];
    }
    let mut elsewhere: Vec<(&Endpoint, &u64)> = ev.syns_elsewhere.iter().collect();
    elsewhere.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let cause = Cause::NoTraffic(NoTraffic {
        syns_elsewhere: elsewhere
            .into_iter()
            .take(NAMED)
            .map(|(&dst, &syns)| SynsTo { dst, syns })
            .collect(),
        listening_nearby: facts
            .map(|f| {
                f.now
                    .other_listening_ports
                    .iter()
                    .take(NAMED)
                    .copied()
                    .collect()
            })
            .unwrap_or_default(),
        proxy: scope.proxy.clone(),
        port,
    });
    vec![Finding::new(cause, 1)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::FindingKind;
    use crate::diagnose::tests::*;
    use crate::flow::Outcome;

    #[test]
    fn no_traffic_names_where_the_syns_went() {
        let mut ev = Evidence::default();
        ev.syn_elsewhere(ep("127.0.0.1:5432"));
        for _ in 0..3 {
            ev.syn_elsewhere(ep("127.0.0.1:8080"));
        }
        let found = findings(&ev, None, &Scope::port(61999));
        assert_eq!(found[0].kind, FindingKind::NoTraffic);
        assert_eq!(
            evidence_json(&found[0])["syns_elsewhere"][0]["dst"],
            "127.0.0.1:8080"
        );
        assert!(
            found[0].explanation().contains("proxy port"),
            "{}",
            found[0].explanation()
        );
    }

    #[test]
    fn no_traffic_under_a_filter_expression_names_the_expression_first() {
        let mut ev = Evidence::default();
        ev.syn_elsewhere(ep("127.0.0.1:8080"));
        let scope = Scope {
            expression: Some("host 127.0.0.2".to_string()),
            ..Scope::port(61999)
        };
        let found = findings(&ev, None, &scope);
        assert_eq!(found[0].kind, FindingKind::NoTraffic);
        let headline = found[0].headline();
        assert!(headline.contains("\"host 127.0.0.2\""), "{headline}");
        assert!(!headline.contains("pointed elsewhere"));
        assert!(found[0].next_step().contains("without the expression"));
    }

    #[test]
    fn a_proxy_in_the_environment_is_named_as_where_clients_go() {
        let scope = Scope {
            proxy: Some("http://proxy:3128".to_string()),
            ..Scope::port(61999)
        };
        let found = findings(&Evidence::default(), None, &scope);
        assert_eq!(evidence_json(&found[0])["proxy"], "http://proxy:3128");
        assert!(found[0]
            .explanation()
            .contains("A proxy is set in the environment (http://proxy:3128)"));
    }

    #[test]
    fn any_connection_on_the_port_means_traffic() {
        let ev = evidence(&[record(Outcome::Closed, "127.0.0.1:61999")]);
        assert!(findings(&ev, None, &Scope::port(61999)).is_empty());
    }
}

//! The rules: from what happened ([`Evidence`]) and, live, the machine's facts
//! ([`HostFacts`]) to findings. One cause family per file, each a pure function of its
//! inputs: no /proc, no clock, no environment, no wording (see `wording`), so each is
//! tested with hand-built evidence and facts.
//!
//! A replay has no host facts: rules then conclude from the packets alone and their
//! findings say so ([`Basis::Packets`](super::cause::Basis)).

mod drops;
mod handshakes;
mod no_traffic;
mod receivers;
mod refusals;
mod resets;
mod time_wait;
mod unreachables;

use super::evidence::Evidence;
use super::findings::Finding;
use super::host::HostFacts;

/// What the user asked to watch, and the environment it ran in: read once at the edge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub port: u16,
    /// The user's filter expression (tcpdump's trailing one): what it excluded was never
    /// seen.
    pub expression: Option<String>,
    /// The proxy the environment sets for clients (`http_proxy` and co.).
    pub proxy: Option<String>,
}

#[cfg(test)]
impl Scope {
    pub fn port(port: u16) -> Scope {
        Scope {
            port,
            ..Scope::default()
        }
    }
}

/// A rule: every finding of its cause family that the evidence supports.
pub type Rule = fn(&Evidence, Option<&HostFacts>, &Scope) -> Vec<Finding>;

/// Every rule, in the order their findings are listed before ranking (ties in rank keep
/// it).
pub const RULES: [Rule; 8] = [
    refusals::findings,
    drops::findings,
    unreachables::findings,
    handshakes::findings,
    resets::findings,
    receivers::findings,
    time_wait::findings,
    no_traffic::findings,
];

/// All findings the evidence supports, unranked.
pub fn evaluate(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    RULES
        .iter()
        .flat_map(|rule| rule(ev, facts, scope))
        .collect()
}

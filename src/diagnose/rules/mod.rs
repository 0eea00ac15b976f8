//! The rules: from what happened ([`Evidence`]) and, live, the machine's facts
//! ([`HostFacts`]) to findings. One cause family per file, each a pure function of its
//! inputs: no /proc, no clock, no environment, no wording (see `wording`), so each is
//! tested with hand-built evidence and facts.
//!
//! A replay has no host facts: rules then conclude from the packets alone and their
//! findings say so ([`Basis::Packets`](super::cause::Basis)).

mod drops;
mod flood;
mod handshakes;
mod no_traffic;
mod receivers;
mod refusals;
mod resets;
mod restarts;
mod slow;
mod time_wait;
mod unreachables;
mod view;

pub use flood::FLOOD_SOURCES;

use super::evidence::Evidence;
use super::findings::Finding;
use super::host::firewall::Hook;
use super::host::HostFacts;
use super::kernel::PathKey;

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
pub const RULES: [Rule; 11] = [
    refusals::findings,
    flood::findings,
    drops::findings,
    slow::findings,
    unreachables::findings,
    handshakes::findings,
    resets::findings,
    receivers::findings,
    time_wait::findings,
    no_traffic::findings,
    view::findings,
];

/// The netfilter hook where a packet the kernel saw dropped on `path` was stopped: INPUT
/// for one that arrived, OUTPUT for one this host sent.
pub(super) fn hook_of(path: PathKey) -> Hook {
    match path {
        PathKey::Ingress => Hook::Input,
        PathKey::Egress => Hook::Output,
    }
}

/// The firewall rule most likely behind an answer (a TCP RST if `resets`, else ICMP) to
/// a packet stopped at `hook` (one going to the port if `to_port`, the client's), as its
/// tool prints it: a REJECT of that kind at that hook, or at another hook on the same
/// path (a reject in FORWARD, in nft's prerouting), else the rule
/// [`Ruleset::matching`](super::host::firewall::Ruleset::matching) names there. `None`
/// when the ruleset was not read or holds nothing for the port.
fn rejecting_rule(
    facts: Option<&HostFacts>,
    hook: Hook,
    to_port: bool,
    resets: bool,
) -> Option<String> {
    let set = facts?.firewall.as_ref()?;
    let same_path: &[Hook] = match hook {
        Hook::Output | Hook::Postrouting | Hook::Egress => &[Hook::Output, Hook::Postrouting],
        Hook::Ingress | Hook::Prerouting | Hook::Input | Hook::Forward => {
            &[Hook::Input, Hook::Prerouting, Hook::Forward]
        }
    };
    std::iter::once(hook)
        .chain(same_path.iter().copied())
        .find_map(|h| set.rejecting(h, to_port, resets))
        .or_else(|| set.matching(hook, to_port))
        .map(ToString::to_string)
}

/// All findings the evidence supports, unranked.
pub fn evaluate(ev: &Evidence, facts: Option<&HostFacts>, scope: &Scope) -> Vec<Finding> {
    let mut all: Vec<Finding> = RULES
        .iter()
        .flat_map(|rule| rule(ev, facts, scope))
        .collect();
    for f in &mut all {
        f.windows = restarts::drop_windows(ev, &f.cause);
    }
    all
}

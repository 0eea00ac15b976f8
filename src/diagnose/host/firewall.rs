//! The firewall rules that can drop or reject TCP to or from the watched port, read from
//! `iptables-save`, `ip6tables-save` and `nft -j list ruleset` in the calling thread's
//! network namespace, and which of them most likely stopped a packet at a given hook.
//!
//! Read-only by construction: those three commands only print the ruleset, and nothing
//! else is ever run. Each runs with a deadline and its own pipes (`command.rs`); the
//! parsers (`iptables.rs`, `nft.rs`) are pure text → [`Ruleset`] and are tested on real
//! outputs (`tests/data/firewall/make.sh`).
//!
//! Only protocol and port matches are evaluated. A rule that also matches on addresses,
//! interfaces, connection state, TCP flags or anything else is kept and marked
//! [`conditional`](FirewallRule::conditional): whether it caught a given packet is for
//! other evidence (the kernel's drop reason, the addresses seen) to say.

mod command;
mod iptables;
pub mod nat;
mod nft;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// How long each command may take. Big rulesets (kube-proxy's tens of thousands of rules)
/// take a second or more to print; the read runs on a helper thread, never on the flow
/// stage, so waiting that long costs nothing but the answer's delay.
const DEADLINE: Duration = Duration::from_secs(3);

/// Where in the kernel's path a chain is attached (netfilter hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// netdev ingress: before prerouting, per device (nft only).
    Ingress,
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
    /// netdev egress: after postrouting, per device (nft only).
    Egress,
}

impl Hook {
    /// nft's name for it, as in a chain's `hook input`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Ingress => "ingress",
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
            Hook::Egress => "egress",
        }
    }

    fn from_nft(name: &str) -> Option<Hook> {
        Some(match name {
            "ingress" => Hook::Ingress,
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            "egress" => Hook::Egress,
            _ => return None,
        })
    }

    /// The hook of an iptables built-in chain, named after it.
    fn from_iptables_chain(name: &str) -> Option<Hook> {
        Some(match name {
            "PREROUTING" => Hook::Prerouting,
            "INPUT" => Hook::Input,
            "FORWARD" => Hook::Forward,
            "OUTPUT" => Hook::Output,
            "POSTROUTING" => Hook::Postrouting,
            _ => return None,
        })
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule does to the packets it matches (only the verdicts that stop them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Silently: the client retransmits its SYN until it times out.
    Drop,
    /// With an answer, in the tool's words: iptables' `--reject-with` value
    /// ("tcp-reset", "icmp-host-unreachable") or nft's ("tcp reset", "icmpx
    /// host-unreachable"). `None` where the tool left it to its default.
    Reject { with: Option<String> },
}

impl Verdict {
    /// Whether the answer is a TCP RST, which the client cannot tell from "connection
    /// refused"; every other reject answers with ICMP.
    pub fn resets(&self) -> bool {
        matches!(self, Verdict::Reject { with: Some(w) } if w == "tcp-reset" || w == "tcp reset")
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Drop => f.write_str("drop"),
            Verdict::Reject { with: None } => f.write_str("reject"),
            Verdict::Reject { with: Some(w) } => write!(f, "reject with {w}"),
        }
    }
}

/// The tool a rule was read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tool {
    Iptables,
    Ip6tables,
    Nft,
}

impl Tool {
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Iptables => "iptables",
            Tool::Ip6tables => "ip6tables",
            Tool::Nft => "nft",
        }
    }

    /// The read-only command that prints its ruleset.
    fn read_command(self) -> &'static str {
        match self {
            Tool::Iptables => "iptables-save",
            Tool::Ip6tables => "ip6tables-save",
            Tool::Nft => "nft -j list ruleset",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which packets of a connection on the port a rule can catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Packets to the port (the client's: SYN, ACKs, data).
    ToPort,
    /// Packets from the port (the server's: SYN-ACK, data, RST).
    FromPort,
    Both,
}

impl Direction {
    pub fn includes(self, to_port: bool) -> bool {
        match self {
            Direction::Both => true,
            Direction::ToPort => to_port,
            Direction::FromPort => !to_port,
        }
    }
}

/// A jump (or goto) on the way from a base chain to a rule in a user chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jump {
    /// The chain holding the jump.
    pub chain: String,
    /// The jump rule as its tool prints it.
    pub text: String,
    /// nft's handle of the jump rule.
    pub handle: Option<u64>,
}

/// One rule (or a base chain's drop policy) that can drop or reject TCP to or from the
/// port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallRule {
    pub tool: Tool,
    /// iptables' table ("filter", "raw"), or nft's family and table ("inet filter").
    pub table: String,
    /// The chain holding the rule: a base chain, or a user chain reached from one.
    pub chain: String,
    /// The hook of the base chain it is reached from.
    pub hook: Hook,
    /// The hook priority of that base chain: where several chains share a hook, lower
    /// runs first (iptables: raw -300, mangle -150, filter 0).
    pub priority: i32,
    /// The jumps that lead from the base chain to `chain`, outermost first; empty for a
    /// rule in a base chain.
    pub via: Vec<Jump>,
    /// The rule as its tool prints it: iptables-save's line ("-A INPUT -p tcp -m tcp
    /// --dport 61999 -j DROP"), nft's statements rendered compactly from its JSON ("tcp
    /// dport 61999 drop"), or "policy DROP of chain INPUT (table filter)".
    pub text: String,
    /// nft's rule handle, for `nft delete rule … handle N`.
    pub handle: Option<u64>,
    pub verdict: Verdict,
    /// The rule (or a jump leading to it) names the port in a port match that covers it:
    /// dport, sport, a list, a range or a set. False for a blanket `-j DROP`, a policy,
    /// or a negated port match.
    pub names_port: bool,
    /// It also matches on something not evaluated here (addresses, interfaces, state,
    /// flags, the peer's port, a set that could not be read), so it may not catch every
    /// packet on the port.
    pub conditional: bool,
    pub direction: Direction,
    /// A base chain's default verdict, applied when no rule decided.
    pub policy: bool,
}

impl FirewallRule {
    /// How likely it is to be the cause of a drop at its hook, most likely first: a rule
    /// naming the port is meant for it; a blanket rule without conditions catches
    /// everything that reaches it; a policy everything no rule decided; a conditional
    /// blanket rule (`--ctstate INVALID`, a source range) only some packets.
    fn rank(&self) -> u8 {
        match (self.names_port, self.conditional, self.policy) {
            (true, false, _) => 0,
            (true, true, _) => 1,
            (false, false, false) => 2,
            (false, _, true) => 3,
            (false, true, false) => 4,
        }
    }
}

impl fmt::Display for FirewallRule {
    /// `iptables -t filter rule "-A INPUT -p tcp -m tcp --dport 61999 -j DROP"`, `nft rule
    /// "tcp dport 61999 drop" in inet filter input (handle 4)`, `iptables -t filter policy
    /// DROP of chain FORWARD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.tool, self.policy) {
            (Tool::Iptables | Tool::Ip6tables, true) => write!(
                f,
                "{} -t {} policy DROP of chain {}",
                self.tool, self.table, self.chain
            )?,
            (Tool::Nft, true) => write!(
                f,
                "nft policy drop of chain {} in {}",
                self.chain, self.table
            )?,
            (Tool::Iptables | Tool::Ip6tables, false) => write!(
                f,
                "{} -t {} rule {}",
                self.tool,
                self.table,
                Quoted(&self.text)
            )?,
            (Tool::Nft, false) => {
                write!(
                    f,
                    "nft rule {} in {} {}",
                    Quoted(&self.text),
                    self.table,
                    self.chain
                )?;
                if let Some(h) = self.handle {
                    write!(f, " (handle {h})")?;
                }
            }
        }
        for (i, jump) in self.via.iter().enumerate() {
            let lead = if i == 0 { ", reached by" } else { " then" };
            write!(f, "{lead} {}", Quoted(&jump.text))?;
            if self.tool == Tool::Nft {
                write!(f, " in {}", jump.chain)?;
            }
        }
        Ok(())
    }
}

/// Text in double quotes, or in single quotes when it holds double quotes itself (an
/// iptables comment), so that it can be read and pasted as one piece.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains('"') {
            write!(f, "'{}'", self.0)
        } else {
            write!(f, "\"{}\"", self.0)
        }
    }
}

/// Why (part of) the firewall could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("`{command}` is not installed (not on PATH, /usr/sbin or /sbin)")]
    NotInstalled { command: &'static str },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` did not finish within {} s", after.as_secs())]
    TimedOut {
        command: &'static str,
        after: Duration,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: &'static str,
        status: ExitStatus,
        stderr: String,
    },
    #[error("`nft -j list ruleset` printed JSON portsniff cannot read: {0}")]
    Json(#[source] serde_json::Error),
    #[error("`nft -j list ruleset` printed JSON without the \"nftables\" array")]
    NotNftJson,
    #[error("`{command}` says iptables-legacy tables are present: portsniff reads only the nf_tables ones")]
    LegacyTables { command: &'static str },
    #[error("{rules} rule(s) of nft table {table} use iptables extensions that nft cannot show")]
    Extensions { table: String, rules: usize },
}

impl FirewallError {
    /// What the user can do about it: the text after `hint: `.
    pub fn hint(&self) -> Option<String> {
        match self {
            FirewallError::Failed { stderr, .. }
                if stderr.contains("Permission denied")
                    || stderr.contains("Operation not permitted")
                    || stderr.contains("must be root") =>
            {
                Some(
                    "reading the firewall needs root or CAP_NET_ADMIN; run portsniff with sudo"
                        .to_string(),
                )
            }
            FirewallError::LegacyTables { .. } => {
                Some("see those rules with `iptables-legacy-save`".to_string())
            }
            FirewallError::Extensions { .. } => Some(
                "see those rules with `iptables-save` (or `ip6tables-save`), whose backend wrote them"
                    .to_string(),
            ),
            FirewallError::TimedOut { command, .. } => {
                Some(format!("run `{command}` by hand to see how long it takes"))
            }
            FirewallError::NotInstalled { .. }
            | FirewallError::Spawn { .. }
            | FirewallError::Failed { .. }
            | FirewallError::Json(_)
            | FirewallError::NotNftJson => None,
        }
    }
}

/// All the drop and reject rules (and drop policies) that could catch TCP to or from one
/// port, in the order the kernel meets them within each tool's chains.
#[derive(Debug, Default)]
pub struct Ruleset {
    rules: Vec<FirewallRule>,
    /// What could not be read (a tool missing, failing, or holding rules it cannot show).
    unread: Vec<FirewallError>,
    /// The DNAT rules for the port (where it is forwarded): iptables' nat table, then
    /// nft's `dnat to` rules, one per backend.
    dnat: Vec<nat::Dnat>,
}

impl Ruleset {
    /// Runs `iptables-save`, `ip6tables-save` and `nft -j list ruleset` (read-only, in the
    /// calling thread's network namespace) and keeps the rules that concern TCP on `port`.
    ///
    /// A tool that is missing or fails is noted in [`unread`](Self::unread) and the
    /// others are still read. `Err` only when none could be read and at least one failed
    /// (typically: not root); when none is installed the ruleset is empty, with the
    /// reasons in `unread`.
    ///
    /// The DNAT rules for the port ([`dnat`](Self::dnat)) come from the same outputs,
    /// each with a look at the namespace that holds its backend's address.
    pub fn read(port: u16) -> Result<Ruleset, FirewallError> {
        let outputs = [Tool::Iptables, Tool::Ip6tables, Tool::Nft]
            .map(|tool| (tool, command::run(tool.read_command(), DEADLINE)));
        let mut set = Ruleset::from_outputs(outputs, port)?;
        for d in &mut set.dnat {
            d.backend = crate::diagnose::host::backend_namespace(d.to.ip());
        }
        Ok(set)
    }

    /// The tools' outputs (or why there is none) → one ruleset; iptables' before nft's,
    /// which needs to know the tables iptables-nft showed.
    fn from_outputs(
        outputs: [(Tool, Result<String, FirewallError>); 3],
        port: u16,
    ) -> Result<Ruleset, FirewallError> {
        let mut set = Ruleset::default();
        let mut read_any = false;
        // Where in `unread` the first failure (not a mere absence) is.
        let mut failed = None;
        // iptables-nft's tables, which nft lists again (as `ip filter`, `ip6 raw`…).
        let mut shown_by_iptables = Vec::new();
        for (tool, output) in outputs {
            let part = output.and_then(|text| match tool {
                Tool::Iptables | Tool::Ip6tables => {
                    let parsed = iptables::parse(&text, tool, port);
                    if parsed.nf_tables {
                        let family = if tool == Tool::Iptables { "ip" } else { "ip6" };
                        shown_by_iptables
                            .extend(parsed.tables.into_iter().map(|t| format!("{family} {t}")));
                    }
                    // The same listing holds the nat table: its port maps.
                    Ok(Ruleset {
                        dnat: nat::parse(&text, port),
                        ..parsed.ruleset
                    })
                }
                Tool::Nft => nft::parse(&text, port, &shown_by_iptables),
            });
            match part {
                Ok(part) => {
                    read_any = true;
                    set.rules.extend(part.rules);
                    set.unread.extend(part.unread);
                    // One map per backend, in the order read: iptables' first.
                    for d in part.dnat {
                        if !set.dnat.iter().any(|o| o.to == d.to) {
                            set.dnat.push(d);
                        }
                    }
                }
                Err(e) => {
                    if !matches!(e, FirewallError::NotInstalled { .. }) {
                        failed.get_or_insert(set.unread.len());
                    }
                    set.unread.push(e);
                }
            }
        }
        match failed {
            Some(i) if !read_any => Err(set.unread.swap_remove(i)),
            _ => Ok(set),
        }
    }

    /// Parses what `iptables-save` (`tool` [`Tool::Iptables`]) or `ip6tables-save`
    /// ([`Tool::Ip6tables`]) printed.
    pub fn parse_iptables_save(text: &str, tool: Tool, port: u16) -> Ruleset {
        iptables::parse(text, tool, port).ruleset
    }

    /// Parses what `nft -j list ruleset` printed. Rules that use iptables extensions
    /// (`xt`, written by iptables-nft) are left out and counted in `unread`.
    pub fn parse_nft_json(text: &str, port: u16) -> Result<Ruleset, FirewallError> {
        nft::parse(text, port, &[])
    }

    /// The rule most likely responsible for a packet dropped or rejected at `hook`: one
    /// going to the port (`to_port`, the client's) or coming from it (the server's).
    /// Rules naming the port come first, then blanket rules, then drop policies, then
    /// blanket rules with conditions; among equals, the one the kernel meets first.
    pub fn matching(&self, hook: Hook, to_port: bool) -> Option<&FirewallRule> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.hook == hook && r.direction.includes(to_port))
            .min_by_key(|(i, r)| (r.rank(), r.priority, *i))
            .map(|(_, r)| r)
    }

    /// The rule most likely responsible for a packet dropped at one of `hooks` (in the
    /// order the kernel meets them: the witness knows the packet's path, not the hook),
    /// among those whose verdict `verdict` accepts. Ranked as [`matching`](Self::matching)
    /// ranks, the hooks' order breaking ties before the priority: a rule naming the port
    /// at a later hook is likelier than a blanket rule at an earlier one.
    pub fn matching_any(
        &self,
        hooks: &[Hook],
        to_port: bool,
        verdict: impl Fn(&Verdict) -> bool,
    ) -> Option<&FirewallRule> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let at = hooks.iter().position(|h| *h == r.hook)?;
                (r.direction.includes(to_port) && verdict(&r.verdict)).then_some((i, at, r))
            })
            .min_by_key(|(i, at, r)| (r.rank(), *at, r.priority, *i))
            .map(|(_, _, r)| r)
    }

    /// The REJECT rule most likely behind an answer sent for a packet stopped at `hook`:
    /// a TCP RST (`resets`) or an ICMP error (a reject whose answer the tool left to its
    /// default sends ICMP). Ranked as [`matching`](Self::matching) ranks.
    pub fn rejecting(&self, hook: Hook, to_port: bool, resets: bool) -> Option<&FirewallRule> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.hook == hook && r.direction.includes(to_port))
            .filter(|(_, r)| matches!(r.verdict, Verdict::Reject { .. }))
            .filter(|(_, r)| r.verdict.resets() == resets)
            .min_by_key(|(i, r)| (r.rank(), r.priority, *i))
            .map(|(_, r)| r)
    }

    /// The ruleset with the nat table's DNAT rules for the port.
    pub fn with_dnat(self, dnat: Vec<nat::Dnat>) -> Ruleset {
        Ruleset { dnat, ..self }
    }

    /// The DNAT rules that forward the port elsewhere (a docker-style port map).
    pub fn dnat(&self) -> &[nat::Dnat] {
        &self.dnat
    }

    pub fn rules(&self) -> &[FirewallRule] {
        &self.rules
    }

    /// What could not be read, each with its reason (and [`FirewallError::hint`]).
    pub fn unread(&self) -> &[FirewallError] {
        &self.unread
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

// What follows is shared by both parsers: each turns its tool's text into `Table`s of
// `RawRule`s with their port and protocol matches, and `walk` follows the jumps from the
// base chains to the verdicts.

/// Whether a rule's matches let packets on one side through to its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Catch {
    /// Its port or protocol matches exclude them.
    Never,
    /// Its port matches, if any, do not name the port but let them through.
    Any,
    /// A port match names the port.
    Port,
}

impl Catch {
    /// A rule reached through a jump catches what both the jump and the rule let through.
    fn then(self, inner: Catch) -> Catch {
        match (self, inner) {
            (Catch::Never, _) | (_, Catch::Never) => Catch::Never,
            (Catch::Port, _) | (_, Catch::Port) => Catch::Port,
            (Catch::Any, Catch::Any) => Catch::Any,
        }
    }
}

/// What a rule (with the jumps before it) does to the packets to and from the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reach {
    to: Catch,
    from: Catch,
    conditional: bool,
}

impl Reach {
    /// A base chain's start: every packet.
    const ALL: Reach = Reach {
        to: Catch::Any,
        from: Catch::Any,
        conditional: false,
    };

    fn then(self, inner: Reach) -> Reach {
        Reach {
            to: self.to.then(inner.to),
            from: self.from.then(inner.from),
            conditional: self.conditional || inner.conditional,
        }
    }

    fn direction(self) -> Option<Direction> {
        match (self.to != Catch::Never, self.from != Catch::Never) {
            (true, true) => Some(Direction::Both),
            (true, false) => Some(Direction::ToPort),
            (false, true) => Some(Direction::FromPort),
            (false, false) => None,
        }
    }
}

/// One port match: does its list, range or set cover the port (`None`: unknown, e.g. a
/// named set that was not in the listing), and is it negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortTest {
    covers: Option<bool>,
    negated: bool,
}

/// A rule's matches as far as TCP on the port is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Matches {
    /// A protocol match that excludes TCP (`-p udp`, `udp dport 53`).
    not_tcp: bool,
    dport: Vec<PortTest>,
    sport: Vec<PortTest>,
    /// Either port (multiport `--ports`).
    either: Vec<PortTest>,
    /// Anything else it matches on.
    conditional: bool,
}

impl Matches {
    fn reach(&self) -> Reach {
        if self.not_tcp {
            return Reach {
                to: Catch::Never,
                from: Catch::Never,
                conditional: false,
            };
        }
        // A packet to the port has dport = port and the client's port as sport; a packet
        // from the port the reverse.
        let (to, to_cond) = one_side(&self.dport, &self.either, &self.sport);
        let (from, from_cond) = one_side(&self.sport, &self.either, &self.dport);
        Reach {
            to,
            from,
            conditional: self.conditional
                || (to != Catch::Never && to_cond)
                || (from != Catch::Never && from_cond),
        }
    }
}

/// What the port matches say about packets whose port on this side is the watched one:
/// `ours` test that side, `either` either side, `peers` the other side (the peer's port,
/// unknown). The second value: whether a match could not be evaluated.
fn one_side(ours: &[PortTest], either: &[PortTest], peers: &[PortTest]) -> (Catch, bool) {
    let mut names = false;
    let mut unknown = false;
    for t in ours.iter().chain(either) {
        match (t.covers, t.negated) {
            (Some(true), false) => names = true,
            // Not our port, or "anything but our port". (For `either`: only the peer's
            // port could match it, which is not a rule about this port.)
            (Some(false), false) | (Some(true), true) => return (Catch::Never, false),
            // "Anything but some other port": our packets pass.
            (Some(false), true) => {}
            (None, _) => unknown = true,
        }
    }
    if ours.is_empty() && either.is_empty() && !peers.is_empty() {
        // Only the peer's port is tested: a rule about other traffic (the reverse
        // direction's rule, or another service), not a blanket one.
        return (Catch::Never, false);
    }
    let catch = if names { Catch::Port } else { Catch::Any };
    (catch, unknown || !peers.is_empty())
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Stop(Verdict),
    /// Jump or goto: the rules of that chain see the packet.
    Enter(String),
    /// Accept, return, log, mark, nat…: nothing this module reports.
    Other,
}

#[derive(Clone, Debug)]
struct RawRule {
    text: String,
    handle: Option<u64>,
    matches: Matches,
    action: Action,
}

#[derive(Clone, Debug)]
struct BaseChain {
    hook: Hook,
    priority: i32,
    policy_drop: bool,
}

#[derive(Clone, Debug)]
struct Chain {
    name: String,
    base: Option<BaseChain>,
    rules: Vec<RawRule>,
}

/// One table of one tool, as its parser read it.
#[derive(Clone, Debug)]
struct Table {
    tool: Tool,
    /// "filter", or nft's "inet filter".
    name: String,
    chains: Vec<Chain>,
}

impl Table {
    fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// Follows every base chain's rules, into the chains they jump to, and returns the
    /// drop and reject rules that can catch TCP on the port, in the order met.
    fn walk(&self) -> Vec<FirewallRule> {
        let mut out = Vec::new();
        for chain in &self.chains {
            let Some(base) = &chain.base else { continue };
            let mut path = Vec::new();
            self.visit(chain, base, Reach::ALL, &mut path, &mut out);
            if base.policy_drop {
                out.push(FirewallRule {
                    tool: self.tool,
                    table: self.name.clone(),
                    chain: chain.name.clone(),
                    hook: base.hook,
                    priority: base.priority,
                    via: Vec::new(),
                    text: match self.tool {
                        Tool::Nft => {
                            format!("policy drop of chain {} (table {})", chain.name, self.name)
                        }
                        Tool::Iptables | Tool::Ip6tables => {
                            format!("policy DROP of chain {} (table {})", chain.name, self.name)
                        }
                    },
                    handle: None,
                    verdict: Verdict::Drop,
                    names_port: false,
                    conditional: false,
                    direction: Direction::Both,
                    policy: true,
                });
            }
        }
        out
    }

    fn visit(
        &self,
        chain: &Chain,
        base: &BaseChain,
        reach: Reach,
        path: &mut Vec<Jump>,
        out: &mut Vec<FirewallRule>,
    ) {
        for rule in &chain.rules {
            let r = reach.then(rule.matches.reach());
            let Some(direction) = r.direction() else {
                continue;
            };
            match &rule.action {
                Action::Stop(verdict) => out.push(FirewallRule {
                    tool: self.tool,
                    table: self.name.clone(),
                    chain: chain.name.clone(),
                    hook: base.hook,
                    priority: base.priority,
                    via: path.clone(),
                    text: rule.text.clone(),
                    handle: rule.handle,
                    verdict: verdict.clone(),
                    names_port: r.to == Catch::Port || r.from == Catch::Port,
                    conditional: r.conditional,
                    direction,
                    policy: false,
                }),
                Action::Enter(target) => {
                    // The kernel refuses loops, but a listing is only text: never follow
                    // a chain already on the path.
                    let on_path = path.iter().any(|j| j.chain == *target) || chain.name == *target;
                    let Some(next) = self.chain(target).filter(|_| !on_path) else {
                        continue;
                    };
                    path.push(Jump {
                        chain: chain.name.clone(),
                        text: rule.text.clone(),
                        handle: rule.handle,
                    });
                    self.visit(next, base, r, path, out);
                    path.pop();
                }
                Action::Other => {}
            }
        }
    }
}

/// Port `port` against iptables' port syntax: "80", "1000:2000", ":1024", "1024:".
fn port_spec_covers(spec: &str, port: u16) -> Option<bool> {
    match spec.split_once(':') {
        None => spec.parse::<u16>().ok().map(|p| p == port),
        Some((lo, hi)) => {
            let lo = if lo.is_empty() { 0 } else { lo.parse().ok()? };
            let hi = if hi.is_empty() {
                u16::MAX
            } else {
                hi.parse().ok()?
            };
            Some((lo..=hi).contains(&port))
        }
    }
}

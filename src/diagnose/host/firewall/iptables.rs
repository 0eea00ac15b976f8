//! `iptables-save` / `ip6tables-save` text → tables of rules with their port matches.
//!
//! The format (iptables-save(8)): `*table`, then `:CHAIN POLICY [packets:bytes]` for each
//! chain (policy `-` for a user chain), then `-A CHAIN match… -j TARGET target-options`
//! lines, then `COMMIT`. Matches come before `-j`; a `!` negates the option after it.

use super::FirewallError;
use super::{
    port_spec_covers, Action, BaseChain, Chain, Hook, Matches, PortTest, RawRule, Ruleset, Table,
    Tool, Verdict,
};

/// A parsed save file.
pub(super) struct Parsed {
    pub ruleset: Ruleset,
    /// The tables listed ("filter", "raw"…).
    pub tables: Vec<String>,
    /// Written by the nf_tables backend ("iptables-save v1.8.9 (nf_tables)"), so its
    /// tables are nft tables too and `nft list ruleset` shows them again.
    pub nf_tables: bool,
}

pub(super) fn parse(text: &str, tool: Tool, port: u16) -> Parsed {
    let mut tables: Vec<Table> = Vec::new();
    let mut nf_tables = false;
    let mut legacy = false;
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix('#') {
            nf_tables |= comment.contains("(nf_tables)");
            // iptables-nft-save(8): "# Warning: iptables-legacy tables present, use
            // iptables-legacy-save to see them".
            legacy |= comment.contains("iptables-legacy tables present");
        } else if let Some(name) = line.strip_prefix('*') {
            tables.push(Table {
                tool,
                name: name.to_string(),
                chains: Vec::new(),
            });
        } else if let Some(decl) = line.strip_prefix(':') {
            let Some(table) = tables.last_mut() else {
                continue;
            };
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
                continue;
            };
            // Built-in chains have a policy; user chains "-".
            let base = (policy != "-")
                .then(|| Hook::from_iptables_chain(name))
                .flatten()
                .map(|hook| BaseChain {
                    hook,
                    priority: priority(&table.name, hook),
                    policy_drop: policy == "DROP",
                });
            table.chains.push(Chain {
                name: name.to_string(),
                base,
                rules: Vec::new(),
            });
        } else if line.starts_with("-A ") {
            let Some(table) = tables.last_mut() else {
                continue;
            };
            let words = split_words(line);
            let Some(chain_name) = words.get(1) else {
                continue;
            };
            let rule = parse_rule(line, &words[2..], port);
            if let Some(chain) = table.chains.iter_mut().find(|c| &c.name == chain_name) {
                chain.rules.push(rule);
            }
        }
    }
    let mut ruleset = Ruleset::default();
    for table in &tables {
        ruleset.rules.extend(table.walk());
    }
    if legacy {
        ruleset.unread.push(FirewallError::LegacyTables {
            command: tool.read_command(),
        });
    }
    Parsed {
        ruleset,
        tables: tables.into_iter().map(|t| t.name).collect(),
        nf_tables,
    }
}

/// The hook priority of iptables' tables (linux/netfilter_ipv4.h `nf_ip_hook_priorities`).
fn priority(table: &str, hook: Hook) -> i32 {
    match (table, hook) {
        ("raw", _) => -300,
        ("mangle", _) => -150,
        ("nat", Hook::Prerouting | Hook::Output) => -100,
        ("nat", _) => 100,
        ("security", _) => 50,
        _ => 0,
    }
}

fn parse_rule(line: &str, words: &[String], port: u16) -> RawRule {
    let mut m = Matches::default();
    let mut action = Action::Other;
    let mut negate = false;
    let mut i = 0;
    let value = |i: usize| words.get(i + 1).map(String::as_str).unwrap_or("");
    while i < words.len() {
        let word = words[i].as_str();
        match word {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-p" | "--protocol" => {
                let tcp = matches!(value(i), "tcp" | "6");
                let any = matches!(value(i), "all" | "0");
                if (negate && (tcp || any)) || (!negate && !tcp && !any) {
                    m.not_tcp = true;
                }
                i += 1;
            }
            // Loading a match module is not a match; its options are.
            "-m" | "--match" => i += 1,
            "--dport" | "--destination-port" | "--sport" | "--source-port" => {
                let test = PortTest {
                    covers: port_spec_covers(value(i), port),
                    negated: negate,
                };
                if matches!(word, "--dport" | "--destination-port") {
                    m.dport.push(test);
                } else {
                    m.sport.push(test);
                }
                i += 1;
            }
            "--dports" | "--destination-ports" | "--sports" | "--source-ports" | "--ports" => {
                let test = PortTest {
                    covers: list_covers(value(i), port),
                    negated: negate,
                };
                match word {
                    "--ports" => m.either.push(test),
                    "--dports" | "--destination-ports" => m.dport.push(test),
                    _ => m.sport.push(test),
                }
                i += 1;
            }
            // A comment matches every packet.
            "--comment" => i += 1,
            "-j" | "--jump" | "-g" | "--goto" => {
                action = match value(i) {
                    "DROP" => Action::Stop(Verdict::Drop),
                    "REJECT" => Action::Stop(Verdict::Reject {
                        with: reject_with(&words[i + 1..]),
                    }),
                    "ACCEPT" | "RETURN" | "" => Action::Other,
                    // A user chain (upper-case targets such as LOG, MARK, DNAT are
                    // extensions: they have no chain in the table and are skipped by
                    // the walk).
                    chain => Action::Enter(chain.to_string()),
                };
                // Target options follow the target; they match nothing.
                break;
            }
            w if w.starts_with('-') => {
                // -s, -d, -i, -o, --syn, --tcp-flags, --ctstate, --match-set…
                m.conditional = true;
                i += 1;
            }
            // The value of an option not evaluated.
            _ => {}
        }
        negate = false;
        i += 1;
    }
    RawRule {
        text: line.to_string(),
        handle: None,
        matches: m,
        action,
    }
}

/// A multiport list: "80,443,1000:2000".
fn list_covers(list: &str, port: u16) -> Option<bool> {
    let mut unknown = false;
    for spec in list.split(',') {
        match port_spec_covers(spec, port) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(false)
}

/// REJECT's `--reject-with` among its target options.
fn reject_with(target_options: &[String]) -> Option<String> {
    let at = target_options.iter().position(|w| w == "--reject-with")?;
    target_options.get(at + 1).cloned()
}

/// Splits a save line into words as the shell would: iptables-save double-quotes values
/// with spaces (comments) and escapes quotes inside them with a backslash.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

//! `nft -j list ruleset` → tables of rules with their port matches.
//!
//! The JSON (libnftables-json(5)): `{"nftables": [{"metainfo"}, {"table"}, {"set"},
//! {"chain"}, {"rule"}…]}`. A base chain has `hook`, `prio` and `policy`; a rule has an
//! `expr` array of statements: matches (`{"match": {"op", "left", "right"}}`), counters,
//! verdicts (`{"drop": null}`, `{"reject": {"type": "tcp reset"}}`, `{"jump": {"target"}}`)
//! and verdict maps (`{"vmap": {"key", "data"}}`).
//!
//! iptables-nft writes its rules as nft rules, most of them in native expressions (`-p
//! tcp --dport 22` becomes `tcp dport 22`) and the rest as `xt` expressions nft cannot
//! show (multiport, comment, conntrack, the REJECT target). Its tables are read from
//! iptables-save instead (the caller names them); an `xt` rule anywhere else is left out
//! and counted.

use super::nat::Dnat;
use super::{
    Action, BaseChain, Catch, Chain, FirewallError, Hook, Matches, PortTest, Quoted, RawRule,
    Ruleset, Table, Tool, Verdict,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

/// Named sets and maps of one table, by name: their elements.
type Sets<'a> = HashMap<&'a str, &'a [Value]>;

/// Parses the JSON, leaving out the tables in `skip` ("ip filter"), which iptables-save
/// already showed.
pub(super) fn parse(text: &str, port: u16, skip: &[String]) -> Result<Ruleset, FirewallError> {
    let doc: Value = serde_json::from_str(text).map_err(FirewallError::Json)?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or(FirewallError::NotNftJson)?;

    // Tables, their sets and chains first: rules refer to them.
    let mut tables: Vec<Table> = Vec::new();
    let mut sets: HashMap<String, Sets> = HashMap::new();
    for item in items {
        if let Some(t) = item.get("table") {
            let Some(name) = table_name(t) else { continue };
            if !skip.contains(&name) {
                tables.push(Table {
                    tool: Tool::Nft,
                    name,
                    chains: Vec::new(),
                });
            }
        } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
            let (Some(table), Some(name)) = (table_name(s), s.get("name").and_then(Value::as_str))
            else {
                continue;
            };
            let elems = s
                .get("elem")
                .and_then(Value::as_array)
                .map_or(&[][..], |e| e);
            sets.entry(table).or_default().insert(name, elems);
        } else if let Some(c) = item.get("chain") {
            let (Some(table), Some(name)) = (table_name(c), c.get("name").and_then(Value::as_str))
            else {
                continue;
            };
            let Some(table) = tables.iter_mut().find(|t| t.name == table) else {
                continue;
            };
            let base = c
                .get("hook")
                .and_then(Value::as_str)
                .and_then(Hook::from_nft)
                .map(|hook| BaseChain {
                    hook,
                    priority: c
                        .get("prio")
                        .and_then(Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                    policy_drop: c.get("policy").and_then(Value::as_str) == Some("drop"),
                });
            table.chains.push(Chain {
                name: name.to_string(),
                base,
                rules: Vec::new(),
            });
        }
    }

    let no_sets = Sets::new();
    let mut extensions: BTreeMap<String, usize> = BTreeMap::new();
    let mut dnat: Vec<Dnat> = Vec::new();
    for r in items.iter().filter_map(|i| i.get("rule")) {
        let (Some(table_key), Some(chain_name)) =
            (table_name(r), r.get("chain").and_then(Value::as_str))
        else {
            continue;
        };
        let Some(table) = tables.iter_mut().find(|t| t.name == table_key) else {
            continue;
        };
        let Some(chain) = table.chains.iter_mut().find(|c| c.name == chain_name) else {
            continue;
        };
        let exprs = r
            .get("expr")
            .and_then(Value::as_array)
            .map_or(&[][..], |e| e);
        if exprs.iter().any(|e| e.get("xt").is_some()) {
            *extensions.entry(table_key).or_default() += 1;
            continue;
        }
        let sets = sets.get(&table_key).unwrap_or(&no_sets);
        let handle = r.get("handle").and_then(Value::as_u64);
        let comment = r.get("comment").and_then(Value::as_str);
        if let Some(to) = dnat_to(exprs, sets, port) {
            if !dnat.iter().any(|d| d.to == to) {
                // As a drop rule is named (FirewallRule's Display): a comment's own
                // quotes stay readable.
                let mut rule = format!(
                    "nft rule {} in {table_key} {chain_name}",
                    Quoted(&rule_text(exprs, comment))
                );
                if let Some(h) = handle {
                    rule.push_str(&format!(" (handle {h})"));
                }
                dnat.push(Dnat {
                    port,
                    to,
                    rule,
                    backend: None,
                });
            }
        }
        chain
            .rules
            .extend(rules_of(exprs, comment, handle, sets, port));
    }

    let mut ruleset = Ruleset {
        dnat,
        ..Ruleset::default()
    };
    for table in &tables {
        ruleset.rules.extend(table.walk());
    }
    ruleset.unread.extend(
        extensions
            .into_iter()
            .map(|(table, rules)| FirewallError::Extensions { table, rules }),
    );
    Ok(ruleset)
}

/// "inet filter" for a table, or for the table a set, chain or rule belongs to. `None`
/// for families whose rules never see the host's TCP as such: bridge (bridged frames)
/// and arp.
fn table_name(v: &Value) -> Option<String> {
    let family = v.get("family").and_then(Value::as_str)?;
    // A table's own object names it in "name"; a set, chain or rule in "table".
    let name = v.get("table").or_else(|| v.get("name"))?.as_str()?;
    matches!(family, "ip" | "ip6" | "inet" | "netdev").then(|| format!("{family} {name}"))
}

/// One rule's statements as `RawRule`s: one, or one per entry of a verdict map.
fn rules_of(
    exprs: &[Value],
    comment: Option<&str>,
    handle: Option<u64>,
    sets: &Sets,
    port: u16,
) -> Vec<RawRule> {
    let mut m = Matches::default();
    let mut action = Action::Other;
    let mut vmap = None;
    for (key, val) in statements(exprs) {
        match key.as_str() {
            "match" => {
                let op = val.get("op").and_then(Value::as_str).unwrap_or("==");
                let (Some(left), Some(right)) = (val.get("left"), val.get("right")) else {
                    m.conditional = true;
                    continue;
                };
                add_match(&mut m, op, left, right, sets, port);
            }
            "vmap" => vmap = Some(val),
            // Statements that let only some packets through.
            "limit" | "quota" | "meter" | "synproxy" => m.conditional = true,
            _ => {
                if let Some(a) = action_of(key, val) {
                    action = a;
                }
            }
        }
    }
    let text = rule_text(exprs, comment);

    let Some(vmap) = vmap else {
        return vec![RawRule {
            text,
            handle,
            matches: m,
            action,
        }];
    };
    // `tcp dport vmap { 22 : accept, 61999 : drop }`: one rule per entry, matching its
    // key.
    let (Some(key), Some(data)) = (vmap.get("key"), vmap.get("data")) else {
        return Vec::new();
    };
    let entries: &[Value] = match data {
        Value::String(s) => s
            .strip_prefix('@')
            .and_then(|name| sets.get(name).copied())
            .unwrap_or(&[]),
        _ => data
            .get("set")
            .and_then(Value::as_array)
            .map_or(&[][..], |a| a),
    };
    entries
        .iter()
        .filter_map(|entry| {
            let pair = entry.as_array().filter(|p| p.len() == 2)?;
            let (k, v) = (&pair[0], &pair[1]);
            let (vkey, vval) = v.as_object().and_then(|o| o.iter().next())?;
            let mut matches = m.clone();
            add_match(&mut matches, "==", key, k, sets, port);
            Some(RawRule {
                text: text.clone(),
                handle,
                matches,
                action: action_of(vkey, vval)?,
            })
        })
        .collect()
}

/// A rule's statements, each as its one key (`match`, `drop`, `dnat`…) and value.
fn statements(exprs: &[Value]) -> impl Iterator<Item = (&String, &Value)> {
    exprs
        .iter()
        .filter_map(|e| e.as_object().and_then(|o| o.iter().next()))
}

/// A rule as nft would write it, compactly: its statements, then its comment.
fn rule_text(exprs: &[Value], comment: Option<&str>) -> String {
    let mut words: Vec<String> = statements(exprs)
        .map(|(key, val)| render_statement(key, val))
        .collect();
    if let Some(c) = comment {
        words.push(format!("comment \"{c}\""));
    }
    words.join(" ")
}

/// Where a rule's `dnat to ADDR[:PORT]` sends TCP to `port`, when its matches name the
/// port (`tcp dport 8080 dnat to 172.17.0.2:80`: a port map written in nftables, as
/// iptables-save's `-j DNAT` is one written in iptables). Only nft accepts `dnat` in a
/// nat chain (or one jumped to from it), so the statement alone says the rule rewrites
/// the destination. The first address and port of a range are taken, as the kernel
/// picks the first for a new connection when the range has one; a target looked up in a
/// map (`dnat to tcp dport map { … }`) is not read.
fn dnat_to(exprs: &[Value], sets: &Sets, port: u16) -> Option<SocketAddr> {
    // Most rules are not nat rules: their matches are evaluated once, by `rules_of`.
    if !statements(exprs).any(|(key, _)| key == "dnat") {
        return None;
    }
    let mut m = Matches::default();
    let mut target = None;
    for (key, val) in statements(exprs) {
        match key.as_str() {
            "match" => match (val.get("left"), val.get("right")) {
                (Some(left), Some(right)) => {
                    let op = val.get("op").and_then(Value::as_str).unwrap_or("==");
                    add_match(&mut m, op, left, right, sets, port);
                }
                _ => m.conditional = true,
            },
            "dnat" => target = Some(val),
            _ => {}
        }
    }
    // Only a rule that names the port is its map: a blanket `dnat` forwards everything,
    // and `tcp dport != P` everything but P.
    if m.reach().to != Catch::Port {
        return None;
    }
    let target = target?;
    let addr: IpAddr = first_of(target.get("addr")?)?.as_str()?.parse().ok()?;
    let to_port = match target.get("port") {
        Some(p) => u16::try_from(first_of(p)?.as_u64()?).ok()?,
        None => port,
    };
    Some(SocketAddr::new(addr, to_port))
}

/// The first of a range (`{"range": [lo, hi]}`), or the value itself.
fn first_of(v: &Value) -> Option<&Value> {
    match v.get("range").and_then(Value::as_array) {
        Some(range) => range.first(),
        None => Some(v),
    }
}

/// The action of a verdict statement; `None` for a statement that is not a verdict.
fn action_of(key: &str, val: &Value) -> Option<Action> {
    Some(match key {
        "drop" => Action::Stop(Verdict::Drop),
        "reject" => Action::Stop(Verdict::Reject {
            with: reject_with(val),
        }),
        "jump" | "goto" => Action::Enter(val.get("target")?.as_str()?.to_string()),
        "accept" | "return" | "continue" | "queue" => Action::Other,
        _ => return None,
    })
}

/// nft's words for a reject's answer: "tcp reset", "icmpx host-unreachable".
fn reject_with(val: &Value) -> Option<String> {
    let kind = val.get("type").and_then(Value::as_str)?;
    Some(match val.get("expr").and_then(Value::as_str) {
        Some(code) => format!("{kind} {code}"),
        None => kind.to_string(),
    })
}

/// Transport protocols whose header matches imply the packet is not TCP.
const OTHER_L4: [&str; 10] = [
    "udp", "udplite", "sctp", "dccp", "icmp", "icmpv6", "igmp", "esp", "ah", "comp",
];

/// What a match says about TCP on the port.
fn add_match(m: &mut Matches, op: &str, left: &Value, right: &Value, sets: &Sets, port: u16) {
    let payload = left.get("payload");
    let proto = payload
        .and_then(|p| p.get("protocol"))
        .and_then(Value::as_str);
    let field = payload.and_then(|p| p.get("field")).and_then(Value::as_str);
    match (proto, field) {
        // `th` is the transport header whatever the protocol; with the other matches
        // requiring TCP (or none), its ports are TCP's.
        (Some("tcp" | "th"), Some(side @ ("dport" | "sport"))) => {
            let test = port_test(op, right, sets, port);
            if side == "dport" {
                m.dport.push(test);
            } else {
                m.sport.push(test);
            }
        }
        (Some(p), _) if OTHER_L4.contains(&p) => m.not_tcp = true,
        (Some("ip"), Some("protocol")) | (Some("ip6"), Some("nexthdr")) => {
            protocol(m, op, right, sets)
        }
        _ if left
            .get("meta")
            .and_then(|k| k.get("key"))
            .and_then(Value::as_str)
            == Some("l4proto") =>
        {
            protocol(m, op, right, sets)
        }
        // Addresses, interfaces, TCP flags, conntrack state, marks…
        _ => m.conditional = true,
    }
}

fn port_test(op: &str, right: &Value, sets: &Sets, port: u16) -> PortTest {
    let bound = || right.as_u64();
    let covers = match op {
        "==" | "in" | "!=" => covers(right, Want::Port(port), sets),
        "<" => bound().map(|b| u64::from(port) < b),
        "<=" => bound().map(|b| u64::from(port) <= b),
        ">" => bound().map(|b| u64::from(port) > b),
        ">=" => bound().map(|b| u64::from(port) >= b),
        _ => None,
    };
    PortTest {
        covers,
        negated: op == "!=",
    }
}

/// `meta l4proto tcp`, `ip protocol { tcp, udp }`, `ip6 nexthdr != tcp`.
fn protocol(m: &mut Matches, op: &str, right: &Value, sets: &Sets) {
    match (op, covers(right, Want::Tcp, sets)) {
        ("==" | "in", Some(true)) | ("!=", Some(false)) => {}
        ("==" | "in", Some(false)) | ("!=", Some(true)) => m.not_tcp = true,
        _ => m.conditional = true,
    }
}

#[derive(Clone, Copy)]
enum Want {
    Port(u16),
    Tcp,
}

/// Whether a match's right-hand side (a value, an anonymous or named set, a range)
/// holds the port or TCP; `None` when it cannot be told.
fn covers(v: &Value, want: Want, sets: &Sets) -> Option<bool> {
    match v {
        Value::Number(n) => {
            let n = n.as_u64()?;
            Some(match want {
                Want::Port(p) => n == u64::from(p),
                Want::Tcp => n == 6,
            })
        }
        Value::String(s) => match (s.strip_prefix('@'), want) {
            (Some(name), _) => any_covers(sets.get(name)?, want, sets),
            (None, Want::Port(p)) => s.parse::<u16>().ok().map(|n| n == p),
            (None, Want::Tcp) => Some(s == "tcp"),
        },
        Value::Array(items) => any_covers(items, want, sets),
        Value::Object(o) => {
            if let Some(set) = o.get("set") {
                match set {
                    Value::Array(items) => any_covers(items, want, sets),
                    one => covers(one, want, sets),
                }
            } else if let Some(range) = o.get("range").and_then(Value::as_array) {
                let (lo, hi) = (range.first()?.as_u64()?, range.get(1)?.as_u64()?);
                let x = match want {
                    Want::Port(p) => u64::from(p),
                    Want::Tcp => 6,
                };
                Some((lo..=hi).contains(&x))
            } else if let Some(elem) = o.get("elem") {
                covers(elem.get("val")?, want, sets)
            } else {
                None
            }
        }
        Value::Null | Value::Bool(_) => None,
    }
}

fn any_covers(items: &[Value], want: Want, sets: &Sets) -> Option<bool> {
    let mut unknown = false;
    for item in items {
        match covers(item, want, sets) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(false)
}

/// One statement as nft would write it, compactly (counters without their numbers).
fn render_statement(key: &str, val: &Value) -> String {
    match key {
        "match" => {
            let op = match val.get("op").and_then(Value::as_str).unwrap_or("==") {
                "==" | "in" => " ".to_string(),
                op => format!(" {op} "),
            };
            format!(
                "{}{op}{}",
                render_value(val.get("left").unwrap_or(&Value::Null)),
                render_value(val.get("right").unwrap_or(&Value::Null))
            )
        }
        "vmap" => format!(
            "{} vmap {}",
            render_value(val.get("key").unwrap_or(&Value::Null)),
            render_value(val.get("data").unwrap_or(&Value::Null))
        ),
        "reject" => Verdict::Reject {
            with: reject_with(val),
        }
        .to_string(),
        "jump" | "goto" => format!(
            "{key} {}",
            val.get("target").and_then(Value::as_str).unwrap_or("?")
        ),
        "log" => match val.get("prefix").and_then(Value::as_str) {
            Some(prefix) => format!("log prefix \"{prefix}\""),
            None => "log".to_string(),
        },
        "limit" => match (val.get("rate"), val.get("per").and_then(Value::as_str)) {
            (Some(rate), Some(per)) => format!("limit rate {rate}/{per}"),
            _ => "limit".to_string(),
        },
        "counter" => "counter".to_string(),
        // `dnat to 10.0.0.2:80`, `dnat ip6 to [fd00::2]:80`, `dnat to 10.0.0.2`.
        "dnat" | "snat" => {
            let family = val
                .get("family")
                .and_then(Value::as_str)
                .map(|f| format!(" {f}"))
                .unwrap_or_default();
            let addr = render_value(val.get("addr").unwrap_or(&Value::Null));
            match val.get("port") {
                Some(p) if addr.contains(':') => {
                    format!("{key}{family} to [{addr}]:{}", render_value(p))
                }
                Some(p) => format!("{key}{family} to {addr}:{}", render_value(p)),
                None => format!("{key}{family} to {addr}"),
            }
        }
        _ if val.is_null() => key.to_string(),
        _ => format!("{key} {val}"),
    }
}

fn render_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items.iter().map(render_value).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            if let Some(p) = o.get("payload") {
                let word = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                return format!("{} {}", word("protocol"), word("field"));
            }
            for selector in ["meta", "ct", "rt", "socket", "fib"] {
                if let Some(k) = o.get(selector).and_then(|s| s.get("key")) {
                    return format!("{selector} {}", render_value(k));
                }
            }
            if let Some(set) = o.get("set") {
                let items = match set {
                    Value::Array(items) => items.iter().map(render_set_item).collect(),
                    one => vec![render_value(one)],
                };
                return format!("{{ {} }}", items.join(", "));
            }
            if let Some([lo, hi]) = o.get("range").and_then(Value::as_array).map(Vec::as_slice) {
                return format!("{}-{}", render_value(lo), render_value(hi));
            }
            if let Some(p) = o.get("prefix") {
                return format!(
                    "{}/{}",
                    render_value(p.get("addr").unwrap_or(&Value::Null)),
                    render_value(p.get("len").unwrap_or(&Value::Null))
                );
            }
            if let Some(e) = o.get("elem").and_then(|e| e.get("val")) {
                return render_value(e);
            }
            // A verdict inside a map, or an expression not rendered: its name and value.
            match o.iter().next() {
                Some((k, val)) if o.len() == 1 => render_statement(k, val),
                _ => v.to_string(),
            }
        }
    }
}

/// A set element; a map's is a `[key, value]` pair.
fn render_set_item(item: &Value) -> String {
    match item.as_array().map(Vec::as_slice) {
        Some([k, v]) => format!("{} : {}", render_value(k), render_value(v)),
        _ => render_value(item),
    }
}

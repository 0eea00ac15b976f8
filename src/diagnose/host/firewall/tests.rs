//! On real outputs: what iptables-save, ip6tables-save and `nft -j list ruleset` printed
//! for the rules `tests/data/firewall/make.sh` installs in a namespace (its header lists
//! which port each case uses).

use super::*;
use std::os::unix::process::ExitStatusExt;

const IPTABLES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/firewall/iptables-save.txt"
));
const IP6TABLES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/firewall/ip6tables-save.txt"
));
const NFT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/firewall/nft.json"
));

fn v4(port: u16) -> Ruleset {
    Ruleset::parse_iptables_save(IPTABLES, Tool::Iptables, port)
}

fn v6(port: u16) -> Ruleset {
    Ruleset::parse_iptables_save(IP6TABLES, Tool::Ip6tables, port)
}

fn nft(port: u16) -> Ruleset {
    Ruleset::parse_nft_json(NFT, port).expect("the sample is nft's own JSON")
}

/// All three samples, as `Ruleset::read` combines them.
fn all(port: u16) -> Ruleset {
    Ruleset::from_outputs(
        [
            (Tool::Iptables, Ok(IPTABLES.to_string())),
            (Tool::Ip6tables, Ok(IP6TABLES.to_string())),
            (Tool::Nft, Ok(NFT.to_string())),
        ],
        port,
    )
    .expect("all three samples read")
}

/// The rule `matching` names, as the user would read it.
fn said(set: &Ruleset, hook: Hook, to_port: bool) -> String {
    set.matching(hook, to_port)
        .map_or_else(|| "(none)".to_string(), |r| r.to_string())
}

fn nft_rules_of<'a>(set: &'a Ruleset, table: &str) -> Vec<&'a FirewallRule> {
    set.rules().iter().filter(|r| r.table == table).collect()
}

/// The rules of nft's own table that name the port (beside them: the negated rule, which
/// catches every port but 61999, and the forward policy).
fn naming(set: &Ruleset) -> Vec<&FirewallRule> {
    nft_rules_of(set, "inet ps_test")
        .into_iter()
        .filter(|r| r.names_port)
        .collect()
}

fn failed(command: &'static str, stderr: &str) -> FirewallError {
    FirewallError::Failed {
        command,
        status: ExitStatus::from_raw(4 << 8),
        stderr: stderr.to_string(),
    }
}

#[test]
fn iptables_drop_on_the_port_is_named_for_syns_at_input() {
    let set = v4(61999);
    assert_eq!(
        said(&set, Hook::Input, true),
        "iptables -t filter rule \"-A INPUT -p tcp -m tcp --dport 61999 -j DROP\""
    );
    let rule = set.matching(Hook::Input, true).unwrap();
    assert_eq!(rule.verdict, Verdict::Drop);
    assert!(rule.names_port && !rule.conditional && !rule.policy);
    assert_eq!(rule.direction, Direction::ToPort);
    assert_eq!(
        (rule.table.as_str(), rule.chain.as_str()),
        ("filter", "INPUT")
    );
}

#[test]
fn iptables_udp_rule_on_the_port_is_never_reported() {
    let set = v4(61999);
    assert!(
        !set.rules().iter().any(|r| r.text.contains("-p udp")),
        "{:#?}",
        set.rules()
    );
}

#[test]
fn iptables_negated_port_excludes_its_own_port() {
    let negated = |set: &Ruleset| {
        set.rules()
            .iter()
            .find(|r| r.text.contains("! --dport 61999"))
            .cloned()
    };
    assert_eq!(negated(&v4(61999)), None, "it matches anything but 61999");
    let other = negated(&v4(61998)).expect("61998 is not 61999: the rule can catch it");
    assert!(!other.names_port, "a negated port does not name the port");
    assert!(
        other.conditional,
        "it also needs a source in 198.51.100.0/24"
    );
}

#[test]
fn iptables_reject_with_tcp_reset_is_a_reset() {
    let set = v4(61998);
    let rule = set.matching(Hook::Input, true).unwrap();
    assert_eq!(
        rule.text,
        "-A INPUT -p tcp -m tcp --dport 61998 -j REJECT --reject-with tcp-reset"
    );
    assert_eq!(
        rule.verdict,
        Verdict::Reject {
            with: Some("tcp-reset".into())
        }
    );
    assert!(rule.verdict.resets());
}

#[test]
fn iptables_reject_with_icmp_host_unreachable_is_not_a_reset() {
    let rule = v4(61997).matching(Hook::Input, true).cloned().unwrap();
    assert_eq!(
        rule.verdict.to_string(),
        "reject with icmp-host-unreachable"
    );
    assert!(!rule.verdict.resets());
}

#[test]
fn iptables_multiport_list_names_each_of_its_ports() {
    for port in [80, 443, 61996] {
        assert_eq!(
            said(&v4(port), Hook::Input, true),
            "iptables -t filter rule \"-A INPUT -p tcp -m multiport --dports 80,443,61996 -j DROP\"",
            "port {port}"
        );
    }
}

#[test]
fn iptables_port_range_covers_its_inside_only() {
    let inside = v4(61993).matching(Hook::Input, true).cloned().unwrap();
    assert_eq!(
        inside.text,
        "-A INPUT -p tcp -m tcp --dport 61990:61995 -j REJECT --reject-with icmp-port-unreachable"
    );
    assert!(inside.names_port);
    let outside = v4(61989);
    assert!(
        !outside
            .rules()
            .iter()
            .any(|r| r.text.contains("61990:61995")),
        "61989 is outside 61990:61995"
    );
}

#[test]
fn iptables_rule_in_a_user_chain_is_reached_from_input_by_the_jump_naming_the_port() {
    let set = v4(61985);
    let rule = set.matching(Hook::Input, true).cloned().unwrap();
    assert_eq!(rule.text, "-A PS_GUARD -j DROP");
    assert_eq!(rule.chain, "PS_GUARD");
    assert_eq!(rule.hook, Hook::Input);
    assert!(rule.names_port, "the jump to PS_GUARD names the port");
    assert_eq!(
        rule.to_string(),
        "iptables -t filter rule \"-A PS_GUARD -j DROP\", reached by \
         \"-A INPUT -p tcp -m tcp --dport 61985 -j PS_GUARD\""
    );
}

#[test]
fn iptables_user_chain_behind_a_port_jump_is_not_reached_by_other_ports() {
    assert!(!v4(61999).rules().iter().any(|r| r.chain == "PS_GUARD"));
}

#[test]
fn iptables_user_chain_behind_a_blanket_jump_names_the_port_itself() {
    let rule = v4(61984).matching(Hook::Input, true).cloned().unwrap();
    assert_eq!(
        rule.text,
        "-A PS_BLOCK -p tcp -m tcp --dport 61984 -j REJECT --reject-with tcp-reset"
    );
    assert_eq!(rule.via.len(), 1);
    assert_eq!(rule.via[0].text, "-A INPUT -p tcp -j PS_BLOCK");
    assert_eq!(rule.via[0].chain, "INPUT");
}

#[test]
fn iptables_rule_with_a_quoted_comment_is_shown_whole_in_single_quotes() {
    assert_eq!(
        said(&v4(61983), Hook::Input, true),
        "iptables -t filter rule '-A INPUT -p tcp -m tcp --dport 61983 -m comment \
         --comment \"block the \\\"test\\\" port\" -j DROP'"
    );
}

#[test]
fn iptables_output_drop_on_sport_catches_the_servers_packets_only() {
    let set = v4(61999);
    assert_eq!(
        said(&set, Hook::Output, false),
        "iptables -t filter rule \"-A OUTPUT -p tcp -m tcp --sport 61999 -j DROP\""
    );
    assert_eq!(
        said(&set, Hook::Output, true),
        "(none)",
        "a local client's SYN to the port has the client's port as sport"
    );
}

#[test]
fn iptables_forward_policy_drop_is_the_rule_when_nothing_names_the_port() {
    let set = v4(61999);
    let rule = set.matching(Hook::Forward, true).cloned().unwrap();
    assert!(rule.policy);
    assert_eq!(rule.text, "policy DROP of chain FORWARD (table filter)");
    assert_eq!(
        rule.to_string(),
        "iptables -t filter policy DROP of chain FORWARD"
    );
}

#[test]
fn iptables_raw_prerouting_drop_is_met_before_filter() {
    let rule = v4(61982).matching(Hook::Prerouting, true).cloned().unwrap();
    assert_eq!(rule.table, "raw");
    assert_eq!(rule.priority, -300);
    assert_eq!(
        rule.to_string(),
        "iptables -t raw rule \"-A PREROUTING -p tcp -m tcp --dport 61982 -j DROP\""
    );
}

#[test]
fn a_packet_arriving_finds_the_raw_prerouting_rule_before_filter_input() {
    let drop = |v: &Verdict| *v == Verdict::Drop;
    let arriving = [Hook::Ingress, Hook::Prerouting, Hook::Input];
    let set = v4(61982);
    let rule = set.matching_any(&arriving, true, drop).unwrap();
    assert_eq!((rule.table.as_str(), rule.hook), ("raw", Hook::Prerouting));
    // For 61999 nothing at prerouting names the port: INPUT's rule does, and beats both
    // the blanket `--ctstate INVALID` rule and the forward policy.
    let set = v4(61999);
    let rule = set.matching_any(&arriving, true, drop).unwrap();
    assert_eq!(rule.text, "-A INPUT -p tcp -m tcp --dport 61999 -j DROP");
}

#[test]
fn the_verdict_filter_leaves_reject_rules_out_of_a_silent_drop() {
    let arriving = [Hook::Prerouting, Hook::Input];
    let set = v4(61998);
    let any = set.matching_any(&arriving, true, |_| true).unwrap();
    assert!(any.verdict.resets(), "{any:?}");
    let drop = set
        .matching_any(&arriving, true, |v| *v == Verdict::Drop)
        .unwrap();
    assert!(!drop.names_port, "only a blanket DROP is left: {drop:?}");
}

#[test]
fn iptables_conditional_blanket_rule_comes_after_explicit_ones() {
    // -m conntrack --ctstate INVALID -j DROP also sits in INPUT.
    let set = v4(61999);
    let invalid = set
        .rules()
        .iter()
        .find(|r| r.text.contains("INVALID"))
        .expect("a blanket rule is kept");
    assert!(!invalid.names_port && invalid.conditional);
    assert!(set
        .matching(Hook::Input, true)
        .is_some_and(|r| r.text.contains("--dport 61999")));
}

#[test]
fn iptables_rules_for_other_ports_leave_only_blanket_ones() {
    // 61970 is named by no rule: only the conditional blanket rules of INPUT remain, the
    // first of them in chain order.
    let set = v4(61970);
    let rule = set.matching(Hook::Input, true).cloned().unwrap();
    assert!(!rule.names_port && rule.conditional);
    assert_eq!(
        rule.text,
        "-A INPUT -s 198.51.100.0/24 -p tcp -m tcp ! --dport 61999 -j DROP"
    );
}

#[test]
fn ip6tables_reject_on_the_port_comes_before_the_input_policy() {
    let set = v6(61999);
    assert_eq!(
        said(&set, Hook::Input, true),
        "ip6tables -t filter rule \"-A INPUT -p tcp -m tcp --dport 61999 -j REJECT \
         --reject-with icmp6-adm-prohibited\""
    );
    assert_eq!(
        said(&v6(61970), Hook::Input, true),
        "ip6tables -t filter policy DROP of chain INPUT"
    );
}

#[test]
fn ip6tables_multiport_ports_catch_both_directions() {
    let set = v6(61981);
    let rule = set.matching(Hook::Input, false).cloned().unwrap();
    assert_eq!(
        rule.text,
        "-A INPUT -p tcp -m multiport --ports 61981 -j DROP"
    );
    assert_eq!(rule.direction, Direction::Both);
    assert_eq!(set.matching(Hook::Input, true), Some(&rule));
}

#[test]
fn ip6tables_output_reject_on_source_ports() {
    let rule = v6(62000).matching(Hook::Output, false).cloned().unwrap();
    assert_eq!(
        rule.text,
        "-A OUTPUT -p tcp -m multiport --sports 61999,62000 -j REJECT --reject-with tcp-reset"
    );
    assert!(rule.verdict.resets());
}

#[test]
fn nft_drop_on_the_port_is_rendered_with_its_table_chain_and_handle() {
    let set = nft(61999);
    let ours = nft_rules_of(&set, "inet ps_test");
    let input: Vec<String> = ours
        .iter()
        .filter(|r| r.hook == Hook::Input)
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        input,
        ["nft rule \"tcp dport 61999 counter drop\" in inet ps_test input (handle 8)"],
        "the udp rule and the negated one must not be there"
    );
}

#[test]
fn nft_negated_port_catches_other_ports_conditionally() {
    let set = nft(61998);
    let rule = nft_rules_of(&set, "inet ps_test")
        .into_iter()
        .find(|r| r.handle == Some(7))
        .cloned()
        .expect("61998 is not 61999");
    assert_eq!(rule.text, "tcp dport != 61999 ip saddr 192.0.2.0/24 drop");
    assert!(!rule.names_port && rule.conditional);
}

#[test]
fn nft_anonymous_set_with_reject_tcp_reset() {
    let set = nft(61996);
    let rule = naming(&set)[0].clone();
    assert_eq!(rule.text, "tcp dport { 443, 61996 } reject with tcp reset");
    assert!(rule.names_port && rule.verdict.resets());
}

#[test]
fn nft_range_with_reject_icmpx() {
    let set = nft(61990);
    let rule = naming(&set)[0].clone();
    assert_eq!(
        rule.text,
        "tcp dport 61990-61995 reject with icmpx host-unreachable"
    );
    assert_eq!(
        rule.verdict,
        Verdict::Reject {
            with: Some("icmpx host-unreachable".into())
        }
    );
}

#[test]
fn nft_named_set_is_looked_up() {
    for port in [61979, 61980] {
        let set = nft(port);
        let rules = naming(&set);
        assert_eq!(rules.len(), 1, "port {port}: {rules:#?}");
        assert_eq!(rules[0].text, "tcp dport @blocked drop");
        assert!(rules[0].names_port);
    }
}

#[test]
fn nft_verdict_map_entry_for_the_port() {
    let set = nft(61978);
    let rules = naming(&set);
    assert_eq!(rules.len(), 1, "{rules:#?}");
    assert_eq!(
        rules[0].to_string(),
        "nft rule \"tcp dport vmap { 22 : accept, 61978 : drop }\" in inet ps_test input (handle 14)"
    );
    assert_eq!(rules[0].verdict, Verdict::Drop);
    assert!(
        nft_rules_of(&nft(22), "inet ps_test")
            .iter()
            .all(|r| r.handle != Some(14)),
        "22 is accepted by the map"
    );
}

#[test]
fn nft_jump_to_a_chain_that_rejects() {
    let set = nft(61985);
    let rule = naming(&set)[0].clone();
    assert_eq!(
        rule.to_string(),
        "nft rule \"counter reject with icmpx port-unreachable\" in inet ps_test guard \
         (handle 16), reached by \"tcp dport 61985 jump guard\" in input"
    );
    assert!(rule.names_port);
    assert_eq!(rule.via[0].handle, Some(15));
}

#[test]
fn nft_output_drop_on_sport_and_forward_policy() {
    let set = nft(61999);
    let ours = nft_rules_of(&set, "inet ps_test");
    let output = ours.iter().find(|r| r.hook == Hook::Output).unwrap();
    assert_eq!(output.text, "tcp sport 61999 drop");
    assert_eq!(output.direction, Direction::FromPort);
    let forward = ours.iter().find(|r| r.hook == Hook::Forward).unwrap();
    assert_eq!(
        forward.to_string(),
        "nft policy drop of chain forward in inet ps_test"
    );
}

#[test]
fn nft_netdev_ingress_drop() {
    let set = nft(61977);
    let rule = set.matching(Hook::Ingress, true).unwrap();
    assert_eq!(
        rule.to_string(),
        "nft rule \"tcp dport 61977 drop\" in netdev ps_ingress ingress (handle 2)"
    );
}

#[test]
fn nft_alone_counts_iptables_extension_rules_it_cannot_show() {
    let set = nft(61999);
    let unread: Vec<String> = set.unread().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        unread,
        [
            "7 rule(s) of nft table ip filter use iptables extensions that nft cannot show",
            // iptables-nft's DNAT target: its port maps come from iptables-save.
            "2 rule(s) of nft table ip nat use iptables extensions that nft cannot show",
            "3 rule(s) of nft table ip6 filter use iptables extensions that nft cannot show",
        ]
    );
    // Without iptables-save, iptables-nft's native-looking rules are still nft's.
    assert_eq!(
        said(&set, Hook::Input, true),
        "nft rule \"tcp dport 61999 counter drop\" in ip filter INPUT (handle 5)"
    );
}

#[test]
fn combined_read_shows_iptables_nft_rules_once_in_iptables_words() {
    let set = all(61999);
    assert!(set.unread().is_empty(), "{:?}", set.unread());
    let tables: Vec<&str> = set
        .rules()
        .iter()
        .filter(|r| r.tool == Tool::Nft)
        .map(|r| r.table.as_str())
        .collect();
    assert!(
        tables.iter().all(|t| t.ends_with("ps_test")),
        "iptables-nft's tables came through nft too: {tables:?}"
    );
    assert_eq!(
        set.rules()
            .iter()
            .filter(|r| r.text.contains("--dport 61999 -j DROP"))
            .count(),
        1
    );
    // Both iptables (filter, priority 0) and nft (inet ps_test, priority 10) drop it at
    // input: the kernel meets iptables' first.
    assert_eq!(
        said(&set, Hook::Input, true),
        "iptables -t filter rule \"-A INPUT -p tcp -m tcp --dport 61999 -j DROP\""
    );
}

/// The port maps `set` holds for its port: (backend, rule).
fn maps(set: Ruleset) -> Vec<(String, String)> {
    set.dnat()
        .iter()
        .map(|d| (d.to.to_string(), d.rule.clone()))
        .collect()
}

#[test]
fn nft_dnat_to_the_port_is_its_port_map_once_with_table_chain_and_handle() {
    let set = nft(61971);
    assert_eq!(set.dnat()[0].port, 61971);
    let m = maps(set);
    // Prerouting and output forward it alike: one backend.
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].0, "10.81.1.2:8080");
    assert!(
        m[0].1.starts_with(
            "nft rule \"tcp dport 61971 dnat to 10.81.1.2:8080\" in ip ps_nat prerouting (handle "
        ),
        "{m:?}"
    );
}

#[test]
fn nft_negated_and_udp_dnat_rules_are_no_port_map() {
    assert!(
        maps(nft(61972)).is_empty(),
        "`tcp dport != 61972` is everything but it"
    );
    assert!(maps(nft(61973)).is_empty(), "a udp dnat forwards no TCP");
    assert!(maps(nft(61999)).is_empty(), "no dnat names 61999");
}

#[test]
fn nft_inet_dnat_ip6_is_read_with_its_v6_backend() {
    let m = maps(nft(61974));
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].0, "[fd00::2]:8080");
    assert!(
        m[0].1
            .contains("dnat ip6 to [fd00::2]:8080\" in inet ps_nat6 prerouting"),
        "{m:?}"
    );
}

#[test]
fn nft_dnat_to_a_range_takes_its_first_address_and_port() {
    let m = maps(nft(61976));
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].0, "10.81.2.1:9000");
    assert!(
        m[0].1.contains("dnat to 10.81.2.1-10.81.2.9:9000-9009"),
        "{m:?}"
    );
}

#[test]
fn combined_read_finds_iptables_and_nft_port_maps_iptables_first() {
    // iptables' map (its nat table, in the full iptables-save listing) is read once,
    // though iptables-nft also shows it to nft.
    let m = maps(all(61970));
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].0, "10.77.0.2:80");
    assert!(
        m[0].1
            .starts_with("-A PREROUTING -p tcp -m tcp --dport 61970 -j DNAT"),
        "{m:?}"
    );
    // nft's own.
    let m = maps(all(61971));
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].0, "10.81.1.2:8080");
}

#[test]
fn missing_nft_is_noted_and_iptables_still_read() {
    let set = Ruleset::from_outputs(
        [
            (Tool::Iptables, Ok(IPTABLES.to_string())),
            (Tool::Ip6tables, Ok(IP6TABLES.to_string())),
            (
                Tool::Nft,
                Err(FirewallError::NotInstalled {
                    command: "nft -j list ruleset",
                }),
            ),
        ],
        61999,
    )
    .expect("iptables was read");
    assert!(set.matching(Hook::Input, true).is_some());
    assert_eq!(
        set.unread()[0].to_string(),
        "`nft -j list ruleset` is not installed (not on PATH, /usr/sbin or /sbin)"
    );
}

#[test]
fn no_tool_installed_is_an_empty_ruleset_saying_so() {
    let missing = |command| Err(FirewallError::NotInstalled { command });
    let set = Ruleset::from_outputs(
        [
            (Tool::Iptables, missing("iptables-save")),
            (Tool::Ip6tables, missing("ip6tables-save")),
            (Tool::Nft, missing("nft -j list ruleset")),
        ],
        61999,
    )
    .expect("absence is not an error");
    assert!(set.is_empty());
    assert_eq!(set.unread().len(), 3);
}

#[test]
fn nothing_readable_because_not_root_is_an_error_with_a_hint() {
    let denied = "iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: \
                  Permission denied (you must be root)";
    let err = Ruleset::from_outputs(
        [
            (Tool::Iptables, Err(failed("iptables-save", denied))),
            (Tool::Ip6tables, Err(failed("ip6tables-save", denied))),
            (
                Tool::Nft,
                Err(FirewallError::NotInstalled {
                    command: "nft -j list ruleset",
                }),
            ),
        ],
        61999,
    )
    .expect_err("nothing was read");
    assert_eq!(
        err.to_string(),
        format!("`iptables-save` failed (exit status: 4): {denied}")
    );
    assert!(err.hint().is_some_and(|h| h.contains("root")));
}

#[test]
fn nft_output_that_is_not_json_is_an_error() {
    let err = Ruleset::parse_nft_json("Error: syntax error", 61999).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("`nft -j list ruleset` printed JSON portsniff cannot read"),
        "{err}"
    );
}

#[test]
fn legacy_tables_warning_is_noted() {
    let text = "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n";
    let set = Ruleset::parse_iptables_save(text, Tool::Iptables, 61999);
    assert!(matches!(
        set.unread(),
        [FirewallError::LegacyTables {
            command: "iptables-save"
        }]
    ));
}

#[test]
fn jump_loop_in_a_listing_is_followed_once() {
    // The kernel refuses such a loop; a hand-edited listing may still hold one.
    let text = "*filter\n\
                :INPUT ACCEPT [0:0]\n\
                :A - [0:0]\n\
                :B - [0:0]\n\
                -A INPUT -j A\n\
                -A A -j B\n\
                -A B -j A\n\
                -A B -p tcp --dport 61999 -j DROP\n\
                COMMIT\n";
    let set = Ruleset::parse_iptables_save(text, Tool::Iptables, 61999);
    assert_eq!(set.rules().len(), 1, "{:#?}", set.rules());
    let via: Vec<&str> = set.rules()[0].via.iter().map(|j| j.text.as_str()).collect();
    assert_eq!(via, ["-A INPUT -j A", "-A A -j B"]);
}

#[test]
fn rule_on_the_peers_port_only_is_not_a_blanket_rule() {
    // --sport 61999 at INPUT: our server's packets arriving (it is remote); a packet to
    // the port has the client's port there.
    let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --sport 61999 -j DROP\nCOMMIT\n";
    let set = Ruleset::parse_iptables_save(text, Tool::Iptables, 61999);
    assert_eq!(said(&set, Hook::Input, true), "(none)");
    assert!(set.matching(Hook::Input, false).is_some());
}

#[test]
fn command_that_outlives_its_deadline_is_killed() {
    let started = std::time::Instant::now();
    let err = command::run("sleep 10", Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, FirewallError::TimedOut { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn command_failure_carries_its_stderr() {
    let err =
        command::run_argv(&["sh", "-c", "echo oops >&2; exit 3"], "sh", DEADLINE).unwrap_err();
    assert_eq!(err.to_string(), "`sh` failed (exit status: 3): oops");
}

#[test]
fn command_output_larger_than_a_pipe_is_read_whole() {
    // A pipe holds 64 KiB: a command writing more blocks until it is read.
    let out = command::run_argv(
        &["sh", "-c", "head -c 300000 /dev/zero; echo x >&2"],
        "sh",
        DEADLINE,
    )
    .expect("the command succeeds");
    assert_eq!(out.len(), 300_000);
}

#[test]
fn command_not_installed_is_said_so() {
    let err = command::run("portsniff-no-such-tool", DEADLINE).unwrap_err();
    assert!(matches!(err, FirewallError::NotInstalled { .. }), "{err}");
}

/// A DROP and two REJECTs on the same port, as a user who tried several might leave them.
const DROP_THEN_REJECTS: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 61999 -j DROP
-A INPUT -p tcp -m tcp --dport 61999 -j REJECT --reject-with icmp-host-unreachable
-A INPUT -p tcp -m tcp --dport 61999 -j REJECT --reject-with tcp-reset
COMMIT
";

#[test]
fn a_reset_the_kernel_saw_netfilter_send_is_blamed_on_the_tcp_reset_reject() {
    let set = Ruleset::parse_iptables_save(DROP_THEN_REJECTS, Tool::Iptables, 61999);
    assert!(set
        .matching(Hook::Input, true)
        .unwrap()
        .text
        .ends_with("-j DROP"));
    let rule = set.rejecting(Hook::Input, true, true).unwrap();
    assert!(rule.text.ends_with("--reject-with tcp-reset"), "{rule}");
}

#[test]
fn an_icmp_error_from_the_server_itself_is_blamed_on_the_icmp_reject() {
    let set = Ruleset::parse_iptables_save(DROP_THEN_REJECTS, Tool::Iptables, 61999);
    let rule = set.rejecting(Hook::Input, true, false).unwrap();
    assert!(
        rule.text.ends_with("--reject-with icmp-host-unreachable"),
        "{rule}"
    );
}

#[test]
fn a_drop_rule_sends_no_answer_and_is_no_rejecting_rule() {
    let set = Ruleset::parse_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 61999 -j DROP\nCOMMIT\n",
        Tool::Iptables,
        61999,
    );
    assert!(set.matching(Hook::Input, true).is_some());
    assert_eq!(set.rejecting(Hook::Input, true, true), None);
    assert_eq!(set.rejecting(Hook::Input, true, false), None);
}

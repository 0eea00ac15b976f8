//! The firewall reader inside a network namespace the test makes: rules added there with
//! iptables, ip6tables and nft are the ones `Ruleset::read` names, in their tools' words,
//! read from a thread that entered the namespace, without changing them.

use crate::*;
use portsniff::firewall::{Direction, Hook, Ruleset, Tool, Verdict};

/// The namespace's ruleset as `nft list ruleset` prints it (iptables-nft's tables too).
fn listing(ns: &Netns, nft: &std::path::Path) -> String {
    let out = ns
        .command(nft, &["list", "ruleset"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run nft list ruleset in the namespace");
    assert!(out.status.success(), "nft list ruleset failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn live_firewall_rules_in_a_namespace_are_named_by_the_reader() {
    const TEST: &str = "live_firewall_rules_in_a_namespace_are_named_by_the_reader";
    if !have_root(TEST) {
        return;
    }
    let tools = [
        "iptables",
        "ip6tables",
        "iptables-save",
        "ip6tables-save",
        "nft",
    ];
    if let Some(missing) = tools.iter().find(|t| which(t).is_none()) {
        skip(
            TEST,
            &format!("needs {missing} to install and read firewall rules"),
        );
        return;
    }
    let nft = which("nft").expect("checked above");
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    // Any port works inside the fresh namespace; one no other test uses keeps the host
    // check below meaningful.
    let port = ReservedPort::on(Ipv4Addr::LOCALHOST.into())
        .expect("bind 127.0.0.1:0")
        .port();
    let p = port.to_string();
    ns.run(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &p,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]);
    ns.run(&[
        "ip6tables",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "--sport",
        &p,
        "-j",
        "DROP",
    ]);
    ns.run(&["nft", "add", "table", "inet", "pslive"]);
    ns.run(&[
        "nft",
        "add",
        "chain",
        "inet",
        "pslive",
        "input",
        "{ type filter hook input priority 10 ; }",
    ]);
    ns.run(&[
        "nft", "add", "rule", "inet", "pslive", "input", "tcp", "dport", &p, "drop",
    ]);
    let before = listing(&ns, &nft);

    let read = ns
        .on_thread(move || Ruleset::read(port))
        .join()
        .expect("the reading thread");
    let after = listing(&ns, &nft);
    drop(ns);

    let set = read.unwrap_or_else(|e| panic!("Ruleset::read failed inside the namespace: {e}"));
    assert_eq!(
        before, after,
        "reading the firewall changed the namespace's ruleset"
    );
    let unread: Vec<String> = set.unread().iter().map(|e| e.to_string()).collect();
    assert!(
        unread.is_empty(),
        "all three tools are installed, yet some could not be read: {unread:?}"
    );

    // iptables' filter (priority 0) meets the SYN before nft's chain (priority 10).
    let syn = set
        .matching(Hook::Input, true)
        .unwrap_or_else(|| panic!("no rule named for a SYN at input: {:#?}", set.rules()));
    assert_eq!(
        syn.to_string(),
        format!(
            "iptables -t filter rule \"-A INPUT -p tcp -m tcp --dport {port} -j REJECT \
             --reject-with tcp-reset\""
        )
    );
    assert!(syn.verdict.resets() && syn.names_port);

    let reply = set
        .matching(Hook::Output, false)
        .unwrap_or_else(|| panic!("no rule named for a reply at output: {:#?}", set.rules()));
    assert_eq!(
        reply.to_string(),
        format!("ip6tables -t filter rule \"-A OUTPUT -p tcp -m tcp --sport {port} -j DROP\"")
    );
    assert_eq!(reply.direction, Direction::FromPort);

    let native: Vec<String> = set
        .rules()
        .iter()
        .filter(|r| r.tool == Tool::Nft)
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        native.len(),
        1,
        "nft should add only its own table's rule (iptables-nft's tables come from \
         iptables-save): {native:?}"
    );
    assert!(
        native[0].starts_with(&format!(
            "nft rule \"tcp dport {port} drop\" in inet pslive input (handle "
        )),
        "{native:?}"
    );
    assert_eq!(
        set.rules()
            .iter()
            .filter(|r| r.tool == Tool::Nft)
            .map(|r| &r.verdict)
            .next(),
        Some(&Verdict::Drop)
    );

    // The same read in the test's own namespace does not see the namespace's rules.
    if let Ok(host) = Ruleset::read(port) {
        assert!(
            !host.rules().iter().any(|r| r.table == "inet pslive"
                || r.text.contains(&format!("--dport {port} -j REJECT"))),
            "the host's ruleset shows the namespace's rules: {:#?}",
            host.rules()
        );
    }
}

//! The DNAT rules for the port (a docker-style `-p P:Q` port map): connections to
//! host:P are really served by the backend they are forwarded to, so the capture follows
//! the backend too and the diagnosis looks for its listener there.
//!
//! Read from the listings the firewall module runs anyway: here iptables' `-j DNAT
//! --to-destination ADDR[:PORT]` rules that name the port with `--dport` (docker, podman
//! and kube-proxy's iptables mode write these); nft's own `dnat to` rules are read by
//! `nft.rs`, from its JSON. A target chosen by a map (`dnat to tcp dport map { … }`),
//! `REDIRECT` (to this host's own address, on another port) and DNAT done outside
//! netfilter (an eBPF load balancer) are not read.

use std::net::{IpAddr, SocketAddr};

/// One DNAT rule for the port: where connections to it are forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dnat {
    /// The watched port, as clients address it.
    pub port: u16,
    /// The backend the connections really go to.
    pub to: SocketAddr,
    /// The rule as its tool prints it: iptables-save's line, or `nft rule "tcp dport
    /// 8080 dnat to 10.0.0.2:80" in ip nat prerouting (handle 4)`.
    pub rule: String,
    /// Live, looked at when the capture started: the network namespace holding the
    /// backend's address (`net:[INODE]`) and every listener in it, when a process sits
    /// there.
    pub backend: Option<(String, Vec<crate::diagnose::host::Listener>)>,
}

/// The DNAT rules for TCP to `port` in `iptables-save` output, one per backend, in the
/// order printed.
pub fn parse(text: &str, port: u16) -> Vec<Dnat> {
    let mut out: Vec<Dnat> = Vec::new();
    let mut in_nat = false;
    for line in text.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table == "nat";
            continue;
        }
        if !in_nat || !line.starts_with("-A ") {
            continue;
        }
        if let Some(d) = rule(line, port) {
            if !out.iter().any(|o| o.to == d.to) {
                out.push(d);
            }
        }
    }
    out
}

fn rule(line: &str, port: u16) -> Option<Dnat> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1).copied())
    };
    if after("-j")? != "DNAT" || after("-p")? != "tcp" {
        return None;
    }
    // A negated port match (`! --dport P`) is everything but the port.
    let i = words.iter().position(|w| *w == "--dport")?;
    if i > 0 && words[i - 1] == "!" {
        return None;
    }
    let covers = words[i + 1].split(',').any(|p| match p.split_once(':') {
        Some((lo, hi)) => {
            lo.parse().is_ok_and(|lo: u16| lo <= port) && hi.parse().is_ok_and(|hi: u16| port <= hi)
        }
        None => p.parse() == Ok(port),
    });
    if !covers {
        return None;
    }
    let to = after("--to-destination")?;
    // ADDR, ADDR:PORT, ADDR-ADDR:PORT-PORT (the first of each range), [V6]:PORT.
    let (addr, to_port) = match to.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') || a.ends_with(']') => {
            (a, p.split('-').next()?.parse().ok()?)
        }
        _ => (to, port),
    };
    let addr = addr.split('-').next()?;
    let addr: IpAddr = addr.trim_matches(|c| c == '[' || c == ']').parse().ok()?;
    Some(Dnat {
        port,
        to: SocketAddr::new(addr, to_port),
        rule: line.to_string(),
        backend: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "\
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 1.2.3.4:1
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.77.0.2:80
-A OUTPUT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.77.0.2:80
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 9000:9100 -j DNAT --to-destination 172.17.0.3:9000
-A DOCKER -p tcp -m tcp ! --dport 8081 -j DNAT --to-destination 172.17.0.9:1
-A DOCKER -p udp -m udp --dport 8080 -j DNAT --to-destination 172.17.0.9:2
-A PREROUTING -p tcp -m tcp --dport 7070 -j DNAT --to-destination 10.0.0.7
COMMIT
";

    #[test]
    fn a_docker_style_port_map_names_its_backend_once() {
        let d = parse(SAVE, 8080);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].to, "10.77.0.2:80".parse().unwrap());
        assert!(d[0].rule.starts_with("-A PREROUTING"));
    }

    #[test]
    fn port_ranges_and_a_destination_without_port_are_understood() {
        assert_eq!(parse(SAVE, 9050)[0].to, "172.17.0.3:9000".parse().unwrap());
        assert_eq!(parse(SAVE, 7070)[0].to, "10.0.0.7:7070".parse().unwrap());
    }

    #[test]
    fn other_tables_protocols_and_negated_ports_are_not_a_port_map() {
        assert!(parse(SAVE, 8081).is_empty());
        assert!(parse(SAVE, 1).is_empty());
    }
}

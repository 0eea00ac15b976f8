#!/usr/bin/env bash
# Regenerate the firewall ruleset samples in this folder, which the unit tests of
# src/diagnose/host/firewall.rs parse:
#
#   sudo bash tests/data/firewall/make.sh        # from anywhere
#
# Needs root, iproute2, iptables (nf_tables backend), nftables and python3 (to indent
# nft's one-line JSON, whitespace only, so that a change reads as a diff). The rules are
# installed in a fresh network namespace (psfw-PID) that is deleted on exit, never
# on the host. The outputs are what `iptables-save`, `ip6tables-save` and
# `nft -j list ruleset` print inside it; only the generation date and the
# counters change from run to run.
#
# Ports (each case has its own, so a test picks a case by the port it asks about):
#   61999  iptables INPUT DROP, OUTPUT DROP on sport; ip6tables REJECT; nft drop,
#          nft output drop on sport; a udp rule and negated matches that must not match
#   61998  iptables REJECT tcp-reset
#   61997  iptables REJECT icmp-host-unreachable
#   61996  iptables multiport --dports; nft anonymous set with reject tcp reset
#   61990:61995  iptables range (REJECT default); nft range reject icmpx
#   61985  iptables jump to a user chain that drops everything it sees; nft jump
#   61984  iptables user chain reached by a blanket jump
#   61983  iptables rule with a quoted comment
#   61982  iptables raw PREROUTING DROP
#   61981  ip6tables multiport --ports (either direction)
#   61980  nft named set
#   61978  nft verdict map
#   61977  nft netdev ingress on lo
#   61970  iptables nat DNAT (PREROUTING and OUTPUT: one map) to 10.77.0.2:80
#   61971  nft dnat (prerouting and output: one map) to 10.81.1.2:8080; 61972 a negated
#          dnat and 61973 a udp dnat, which are no map for their ports; 61974 nft inet
#          dnat ip6 to [fd00::2]:8080; 61975 a port range forwarded to a range, whose
#          first address and port are taken
# Chain policies: iptables FORWARD DROP, ip6tables INPUT DROP, nft forward drop.
set -euo pipefail

OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS="psfw-$$"

die() { echo "make.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, iptables, nft)"
for tool in ip iptables ip6tables iptables-save ip6tables-save nft python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
iptables --version | grep -q nf_tables \
    || die "iptables must use the nf_tables backend (the samples show how its tables appear in nft's JSON)"

cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up

# IPv4, iptables. Order matters to the tests only where a comment says so.
ipt() { in_ns iptables "$@"; }
ipt -P FORWARD DROP
ipt -A INPUT -p udp --dport 61999 -j DROP
ipt -A INPUT -p tcp ! --dport 61999 -s 198.51.100.0/24 -j DROP
ipt -A INPUT -p tcp --dport 61999 -j DROP
ipt -A INPUT -p tcp --dport 61998 -j REJECT --reject-with tcp-reset
ipt -A INPUT -p tcp --dport 61997 -j REJECT --reject-with icmp-host-unreachable
ipt -A INPUT -p tcp -m multiport --dports 80,443,61996 -j DROP
ipt -A INPUT -p tcp --dport 61990:61995 -j REJECT
ipt -N PS_GUARD
ipt -A PS_GUARD -s 10.0.0.0/8 -j RETURN
ipt -A PS_GUARD -j DROP
ipt -A INPUT -p tcp --dport 61985 -j PS_GUARD
ipt -N PS_BLOCK
ipt -A PS_BLOCK -p tcp --dport 61984 -j REJECT --reject-with tcp-reset
ipt -A INPUT -p tcp -j PS_BLOCK
ipt -A INPUT -p tcp --dport 61983 -m comment --comment 'block the "test" port' -j DROP
ipt -A INPUT -m conntrack --ctstate INVALID -j DROP
ipt -A OUTPUT -p tcp --sport 61999 -j DROP
ipt -t raw -A PREROUTING -p tcp --dport 61982 -j DROP
ipt -t nat -A PREROUTING -p tcp --dport 61970 -j DNAT --to-destination 10.77.0.2:80
ipt -t nat -A OUTPUT -p tcp --dport 61970 -j DNAT --to-destination 10.77.0.2:80

# IPv6, ip6tables.
ip6t() { in_ns ip6tables "$@"; }
ip6t -P INPUT DROP
ip6t -A INPUT -p tcp --dport 61999 -j REJECT --reject-with icmp6-adm-prohibited
ip6t -A INPUT -p tcp -m multiport --ports 61981 -j DROP
ip6t -A OUTPUT -p tcp -m multiport --sports 61999,62000 -j REJECT --reject-with tcp-reset

# Native nftables, beside iptables-nft's own tables.
in_ns nft -f - <<'NFT'
table inet ps_test {
    set blocked {
        type inet_service
        elements = { 61980, 61979 }
    }
    chain input {
        type filter hook input priority 10; policy accept;
        udp dport 61999 drop
        tcp dport != 61999 ip saddr 192.0.2.0/24 drop
        tcp dport 61999 counter drop
        tcp dport { 443, 61996 } reject with tcp reset
        tcp dport 61990-61995 reject with icmpx type host-unreachable
        tcp dport @blocked drop
        tcp dport vmap { 22 : accept, 61978 : drop }
        tcp dport 61985 jump guard
    }
    chain guard {
        counter reject
    }
    chain output {
        type filter hook output priority 0; policy accept;
        tcp sport 61999 drop
    }
    chain forward {
        type filter hook forward priority 0; policy drop;
    }
}
table ip ps_nat {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport != 61972 ip daddr 203.0.113.9 dnat to 10.81.1.9:1
        udp dport 61973 dnat to 10.81.1.9:2
        tcp dport 61971 dnat to 10.81.1.2:8080
        tcp dport 61975-61976 ip daddr 203.0.113.7 dnat to 10.81.2.1-10.81.2.9:9000-9009
    }
    chain output {
        type nat hook output priority -100; policy accept;
        tcp dport 61971 dnat to 10.81.1.2:8080
    }
}
table inet ps_nat6 {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport 61974 dnat ip6 to [fd00::2]:8080
    }
}
table netdev ps_ingress {
    chain ingress {
        type filter hook ingress device lo priority 0; policy accept;
        tcp dport 61977 drop
    }
}
NFT

in_ns iptables-save >"$OUT/iptables-save.txt"
in_ns ip6tables-save >"$OUT/ip6tables-save.txt"
in_ns nft -j list ruleset | python3 -m json.tool --indent 1 >"$OUT/nft.json"
echo "make.sh: wrote $OUT/{iptables-save.txt,ip6tables-save.txt,nft.json}"

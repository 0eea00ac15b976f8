#!/usr/bin/env bash
# Live benchmark: replay a generated capture onto the loopback of a network namespace
# with tcpreplay at increasing rates while portsniff captures it, and compare what it
# received and dropped (kernel and its own channel, counted apart) with
# `tcpdump -Z root -i lo -w /dev/null` under the same load.
#
#   bash benches/live.sh [PACKETS] [RATES]    # defaults: 200000 packets, "20000 50000 100000 200000 topspeed"
#
# Root only (namespaces). Installs tcpreplay and tcpdump if missing. Everything happens
# inside a namespace this script creates and deletes: no traffic leaves it.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS=${1:-200000}
RATES=${2:-"20000 50000 100000 200000 topspeed"}
PORT=61999
export DEBIAN_FRONTEND=noninteractive
need=()
command -v tcpreplay >/dev/null || need+=(tcpreplay)
command -v tcpdump >/dev/null || need+=(tcpdump)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q --bin portsniff --example gen_capture
work=$(mktemp -d)
ns="psbench-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
./target/release/examples/gen_capture --packets "$PACKETS" --out "$work/mix.pcap" --port "$PORT" 2>/dev/null
bin=$(pwd)/target/release/portsniff

replay() { # rate
  if [ "$1" = topspeed ]; then
    ip netns exec "$ns" tcpreplay -q -i lo --topspeed "$work/mix.pcap" >/dev/null 2>&1
  else
    ip netns exec "$ns" tcpreplay -q -i lo --pps="$1" "$work/mix.pcap" >/dev/null 2>&1
  fi
}

printf '%-10s | %-44s | %s\n' rate "portsniff: captured / kernel dropped / own" "tcpdump: captured / kernel dropped"
for rate in $RATES; do
  ip netns exec "$ns" "$bin" -i lo --port "$PORT" --json --no-attribution >"$work/ps.json" 2>"$work/ps.err" &
  ps=$!
  for _ in $(seq 1 50); do grep -q "listening on" "$work/ps.err" && break; sleep 0.1; done
  replay "$rate"
  sleep 1
  kill -INT "$ps"; wait "$ps" || true
  p=$(tail -n 1 "$work/ps.json" | python3 -c 'import sys,json; s=json.load(sys.stdin); print(s["packets"]["captured"], s["kernel"]["dropped"], s["internal_dropped"])')

  # -Z root: Debian's tcpdump would drop to its own user and chown its -w file (/dev/null).
  ip netns exec "$ns" tcpdump -Z root -i lo -w /dev/null "tcp port $PORT or icmp" 2>"$work/td.err" &
  td=$!
  for _ in $(seq 1 50); do grep -q "listening on" "$work/td.err" && break; sleep 0.1; done
  replay "$rate"
  sleep 1
  kill -INT "$td"; wait "$td" || true
  t=$(grep -E "captured|dropped by kernel" "$work/td.err" | awk '{print $1}' | paste -sd' ' -)
  printf '%-10s | %-44s | %s\n' "$rate" "$p" "$t"
done
echo "(tcpreplay sends $PACKETS packets per rate; on lo the kernel's received counter counts each packet twice)"

#!/usr/bin/env bash
# Replay benchmark: portsniff against libpcap's read floor and the tools people use,
# on the same generated capture, in the same run, several times each (medians).
#
#   bash benches/replay.sh [PACKETS] [RUNS]      # defaults: 10000000 packets, 5 runs
#   BEFORE=/path/to/old/portsniff SKIP_SLOW=1 bash benches/replay.sh ...
#
# With BEFORE set, that binary (an earlier build, e.g. from `git stash; cargo build
# --release; cp target/release/portsniff /tmp/before`) is timed too, interleaved with the
# current build in the same runs, so a change is judged by the ratio of two medians taken
# under the same load. SKIP_SLOW=1 leaves out tcpdump's text output and tshark.
#
# Prints, per tool: median wall time, packets/s, ratio to portsniff, peak RSS
# (/usr/bin/time -v). Installs tcpdump, tshark and time if missing (Debian, root).
# The machine is shared and noisy: compare the ratios of one run, not absolute times.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS=${1:-10000000}
RUNS=${2:-5}
PORT=61999
export DEBIAN_FRONTEND=noninteractive
need=()
command -v tcpdump >/dev/null || need+=(tcpdump)
[ -n "${SKIP_SLOW:-}" ] || command -v tshark >/dev/null || need+=(tshark)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q --bin portsniff --example gen_capture
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file="$work/mix.pcap"
./target/release/examples/gen_capture --packets "$PACKETS" --out "$file" --port "$PORT" 2>"$work/gen.txt"
echo "capture: $PACKETS packets, $(du -h "$file" | cut -f1), $(tail -1 "$work/gen.txt")"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"

declare -A cmds=(
  [portsniff]="./target/release/portsniff -r $file --port $PORT --json"
  # -Z root: Debian's tcpdump would drop to its own user and chown its -w file (/dev/null).
  [tcpdump_w_devnull]="tcpdump -Z root -r $file -w /dev/null"
  [tcpdump_nn_port]="tcpdump -nn -r $file tcp\\ port\\ $PORT"
  [tshark_conv]="tshark -r $file -q -z conv,tcp"
)
order=(portsniff tcpdump_w_devnull tcpdump_nn_port tshark_conv)
if [ -n "${BEFORE:-}" ]; then
  cmds[portsniff_before]="$BEFORE -r $file --port $PORT --json"
  order=(portsniff portsniff_before tcpdump_w_devnull tcpdump_nn_port tshark_conv)
fi
if [ -n "${SKIP_SLOW:-}" ]; then
  # Only portsniff (and BEFORE) against libpcap's read floor: the minutes-long text tools
  # add nothing to a before/after comparison.
  fast=()
  for tool in "${order[@]}"; do
    case $tool in tcpdump_nn_port | tshark_conv) ;; *) fast+=("$tool") ;; esac
  done
  order=("${fast[@]}")
fi
# tshark and tcpdump's text output take minutes on big files: one run each is enough
# to see their ratio.
declare -A runs=([portsniff]=$RUNS [portsniff_before]=$RUNS [tcpdump_w_devnull]=$RUNS [tcpdump_nn_port]=1 [tshark_conv]=1)

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A wall rss
for r in $(seq 1 "$RUNS"); do
  for tool in "${order[@]}"; do
    [ "$r" -le "${runs[$tool]}" ] || continue
    /usr/bin/time -f "%e %M" -o "$work/t" bash -c "${cmds[$tool]} >/dev/null 2>&1" || true
    read -r secs kb < <(tail -n 1 "$work/t")
    wall[$tool]+="$secs "
    rss[$tool]+="$kb "
  done
done
base=$(echo "${wall[portsniff]}" | tr ' ' '\n' | grep . | median)
printf '%-20s %10s %14s %16s %12s\n' tool "median s" "packets/s" "x portsniff" "peak RSS MB"
for tool in "${order[@]}"; do
  m=$(echo "${wall[$tool]}" | tr ' ' '\n' | grep . | median)
  k=$(echo "${rss[$tool]}" | tr ' ' '\n' | grep . | median)
  awk -v t="$tool" -v m="$m" -v b="$base" -v p="$PACKETS" -v k="$k" \
    'BEGIN { printf "%-20s %10.2f %14.0f %16.2f %12.1f\n", t, m, p/m, m/b, k/1024 }'
done
echo "(x portsniff = that tool's time / portsniff's: above 1 means portsniff is faster)"

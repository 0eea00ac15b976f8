#!/usr/bin/env bash
# Soak and scale benchmark for portsniff (not run in CI: minutes, and gigabytes of /tmp).
#
# How to run, from the repository root, as root (the live soak captures on lo):
#
#     benches/soak.sh                 # everything: ~5 min on a 2-core machine, ~2 GB of /tmp
#     SOAK_SECS=300 benches/soak.sh   # a longer live soak (default 120 s)
#     SKIP_LIVE=1 benches/soak.sh     # replays only (no root needed)
#     KEEP=1 benches/soak.sh          # keep the generated captures and outputs
#
# Needs: cargo, libpcap-dev, /usr/bin/time (GNU time: `apt-get install time`), jq.
#
# What it does, against release builds:
#   1. Generates with examples/gen_capture.rs a 1,000,000-SYN flood from distinct sources
#      and a 10,000,000-packet mix (~835k connections, several hundred at once, 10 % IPv6,
#      background traffic on other ports).
#   2. Replays the flood with --max-flows 10000 and 100000 under `/usr/bin/time -v`: peak
#      RSS must follow the cap, not the 1M sources; every source must be reported once
#      (flows = unanswered = 1,000,000) and all but CAP of them evicted.
#   3. Replays the 10M mix: every outcome count must equal what the generator wrote.
#   4. Runs the live soak test for SOAK_SECS seconds (PORTSNIFF_SOAK_SECS):
#      `cargo test --release --test load live_soak -- --nocapture`. Past 90 s the test takes
#      its memory reference after TIME_WAIT (65 s), when the flow table has levelled off.
#
# Output: one line per check, a table of peak RSS and run times, and exit status 1 if any
# check failed. The load tests in tests/load.rs run the same checks at smaller sizes in
# plain `cargo test`.
set -euo pipefail

cd "$(dirname "$0")/.."
SOAK_SECS=${SOAK_SECS:-120}
FLOOD=${FLOOD:-1000000}
MIX=${MIX:-10000000}
PORT=61999
failed=0

for tool in /usr/bin/time jq cargo; do
    command -v "$tool" >/dev/null || { echo "soak.sh: needs $tool" >&2; exit 2; }
done

work=$(mktemp -d /tmp/portsniff-soak.XXXXXX)
if [[ -z "${KEEP:-}" ]]; then
    trap 'rm -rf "$work"' EXIT
else
    echo "keeping outputs in $work"
fi

check() { # check NAME GOT WANT
    if [[ "$2" == "$3" ]]; then
        printf '  ok    %-44s %s\n' "$1" "$2"
    else
        printf '  FAIL  %-44s got %s, want %s\n' "$1" "$2" "$3"
        failed=1
    fi
}

echo "== building (release)"
cargo build --release --quiet --bin portsniff --example gen_capture
bin=target/release/portsniff
gen=target/release/examples/gen_capture

echo "== generating"
$gen --packets "$FLOOD" --mode synflood --out "$work/flood.pcap" 2> "$work/flood.gen"
$gen --packets "$MIX" --mode mix --out "$work/mix.pcap" 2> "$work/mix.gen"
cat "$work/flood.gen" "$work/mix.gen" | grep -v '^gen_capture: {' || true
sed -n 's/^gen_capture: {/{/p' "$work/mix.gen" > "$work/mix.counts"

# replay NAME ARGS...: runs portsniff -r … --json under /usr/bin/time -v, keeps only the
# summary (the 1M-flow JSON output is ~800 MB) and the number of flow lines.
replay() {
    local name=$1
    shift
    /usr/bin/time -v -o "$work/$name.time" "$bin" --json "$@" 2> "$work/$name.err" \
        | awk -v lines="$work/$name.lines" \
            '/^\{"type":"flow"/ { n++ } { last = $0 } END { print n + 0 > lines; print last }' \
            > "$work/$name.summary" || true
    rss_kib=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/$name.time")
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/$name.time")
    printf '%-28s peak RSS %7.1f MiB   wall %s\n' "$name" "$(echo "$rss_kib / 1024" | bc -l)" "$wall" \
        >> "$work/table"
}

echo "== SYN flood replays ($FLOOD sources)"
for cap in 10000 100000; do
    name="flood-cap-$cap"
    replay "$name" -r "$work/flood.pcap" --port $PORT --only-problems --max-flows $cap
    s="$work/$name.summary"
    echo " --max-flows $cap"
    check "flows" "$(jq .flows "$s")" "$FLOOD"
    check "outcomes.unanswered" "$(jq .outcomes.unanswered "$s")" "$FLOOD"
    check "flows_evicted" "$(jq .flows_evicted "$s")" "$((FLOOD - cap))"
    check "peak_flows" "$(jq .peak_flows "$s")" "$cap"
    check "flow lines printed" "$(cat "$work/$name.lines")" "$FLOOD"
done
rss10=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/flood-cap-10000.time")
rss100=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/flood-cap-100000.time")
# Memory follows the cap: 10x the cap should cost clearly more, and the 10k-cap run must
# stay far below what 1M tracked flows would need (~0.8 KiB each: ~800 MiB).
check "peak RSS (cap 10k) < 64 MiB" "$((rss10 < 64 * 1024))" 1
check "peak RSS grows with the cap (100k > 2x 10k)" "$((rss100 > 2 * rss10))" 1

echo "== mix replay ($MIX packets)"
replay mix -r "$work/mix.pcap" --port $PORT --only-problems
s="$work/mix.summary"
c="$work/mix.counts"
check "flows" "$(jq .flows "$s")" "$(jq .flows "$c")"
check "outcomes.closed" "$(jq .outcomes.closed "$s")" "$(jq .closed "$c")"
check "outcomes.refused" "$(jq .outcomes.refused "$s")" "$(jq .refused "$c")"
check "outcomes.unanswered" "$(jq .outcomes.unanswered "$s")" "$(jq .unanswered "$c")"
check "outcomes.reset" "$(jq .outcomes.reset "$s")" "$(jq .reset "$c")"
check "time_wait.client" "$(jq .time_wait.client "$s")" "$(jq .closed_client_first "$c")"
check "time_wait.server" "$(jq .time_wait.server "$s")" "$(jq .closed_server_first "$c")"
check "syn_retransmits" "$(jq .syn_retransmits "$s")" "$(jq .syn_retransmits "$c")"
check "packets.captured" "$(jq .packets.captured "$s")" "$(jq .packets "$c")"
check "packets.decoded" "$(jq .packets.decoded "$s")" "$(jq .port_packets "$c")"
check "port_reused + midstream" "$(jq '.port_reused + .midstream' "$s")" 0
# At most a few thousand connections are open at once; the rest of the table is
# TIME_WAIT tombstones, which must give way before any open connection is evicted.
check "flows_evicted" "$(jq .flows_evicted "$s")" 0

echo
cat "$work/table"

if [[ -n "${SKIP_LIVE:-}" ]]; then
    echo "== live soak skipped (SKIP_LIVE set)"
elif [[ $(id -u) -ne 0 ]]; then
    echo "== live soak skipped: needs root to capture on lo"
else
    echo "== live soak: $SOAK_SECS s on lo"
    if ! PORTSNIFF_SOAK_SECS=$SOAK_SECS cargo test --release --quiet --test load \
        live_soak -- --nocapture 2>&1 | tee "$work/soak.log" | grep -E 'live_soak|test result'; then
        failed=1
    fi
    grep -q 'test result: ok' "$work/soak.log" || failed=1
fi

exit $failed

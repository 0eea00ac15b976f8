#!/usr/bin/env bash
# The kernel witness's cost, live: portsniff captures replayed traffic on the loopback of
# a namespace this script makes, once with the kernel witness and once with
# `--no-kernel-events`, and the two are compared run by run.
#
#   bash benches/witness.sh [RUNS] [PACKETS] [SYNS] [CONNS]
#                          # defaults: 5 runs, 1000000 packets, 500000 SYNs, 20000 connections
#
# Five loads, three of them replayed with tcpreplay:
#   idle     no traffic: start, a second's wait, Ctrl-C (what loading the witness and
#            reading the kernel's names cost once).
#   conns    CONNS real connections through the namespace's own sockets, one after the
#            other as fast as one Python process makes them (at most 30 s): connect, 64
#            bytes each way, the server closes first. About ten packets, about ten
#            state changes (each side's) and two kernel records (each socket's path,
#            sent when it closes) a connection, and no drop: the everyday case.
#   mix      PACKETS of the generated mix (examples/gen_capture.rs, as live.sh) at
#            MIX_PPS (300000), portsniff watching the mix's port. Replayed packets match
#            no socket and carry no checksums, so the kernel drops every one of them:
#            each packet on the port is one kernel event, far more than real traffic
#            (where a clean connection is a few state changes and no drop): a storm,
#            which the program counts by kind in the kernel past 100 events in 10 ms on
#            a CPU (the summary's kernel_events.summarised), sending only the first.
#   other    the same traffic with --port set to a port the capture does not hold: every
#            drop is still traced, and the witness filters each one out in the kernel.
#   synflood SYNS SYNs at SYN_PPS (100000), each from its own 10.x.y.z:port, to the port
#            where nothing listens (checksums fixed with tcprewrite so the kernel's TCP
#            takes them). Each SYN is dropped (NO_SOCKET) and answered by a RST (reset
#            sent), which a route for 10/8 via lo sends out where the capture sees it and
#            which comes back in to no socket (dropped again): three kernel events per
#            SYN, two captured packets; a storm too.
# For each: portsniff's CPU seconds (user + system, from the rusage wait4() returns when it
# exits, to the microsecond: GNU time prints hundredths, 10 ms steps that were a
# quarter of the difference being measured on the short loads) per million packets replayed, its capture drops (the kernel's and its
# own), the witness's events and lost events (the summary's kernel_events), and
# tcpdump's drops at the same rate. With BPF_STATS=1 the in-kernel cost of the programs
# is read too: run time and run count of portsniff's own programs from /proc/PID/fdinfo,
# with statistics turned on by a BPF_ENABLE_STATS file descriptor held for the script's
# run (machine-wide while held; the kernel turns it off again when the descriptor
# closes, however the script ends). Off by default: the statistics are two clock reads
# and a per-CPU update around every run of every BPF program on the machine, and with
# them on the "on" runs measured 1.47 where they measured 1.14 without (20,000
# connections, the same build): take the CPU ratios from a run without them, the
# programs' own cost from a run with them.
#
# LOADS="mix synflood" runs only those; BIN=/path/to/portsniff measures another build;
# TCPDUMP=0 leaves out tcpdump's runs (half the time: for many runs of the ratios alone).
# A single pair of runs moves by ±0.1 on a shared machine: the ratios' quartiles are
# printed with their medians, and where the median lies with 95 % confidence (from the
# runs' order, nothing assumed of their spread); many runs narrow it (15 runs: between the
# 4th smallest and 4th largest ratio).
#
# Root only (namespaces, BPF). Installs tcpreplay and tcpdump if missing. Everything
# happens inside the namespace, which the script deletes on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
PACKETS=${2:-1000000}
SYNS=${3:-500000}
CONNS=${4:-20000}
MIX_PPS=${MIX_PPS:-300000}
SYN_PPS=${SYN_PPS:-100000}
BPF_STATS=${BPF_STATS:-0}
TCPDUMP=${TCPDUMP:-1}
LOADS=${LOADS:-"idle conns mix other synflood"}
PORT=61999
OTHER=61998
export DEBIAN_FRONTEND=noninteractive
need=()
command -v tcpreplay >/dev/null || need+=(tcpreplay)
command -v tcpdump >/dev/null || need+=(tcpdump)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q --bin portsniff --example gen_capture
bin=${BIN:-$(pwd)/target/release/portsniff}
work=$(mktemp -d)
ns="pswitness-$$"
stats_pid=
cleanup() {
  [ -n "$stats_pid" ] && kill "$stats_pid" 2>/dev/null
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
# Replayed packets have no route entry attached: let the kernel route 127.0.0.1 for a
# packet that came in on lo, and send the RSTs to 10/8 back out on lo.
ip netns exec "$ns" sysctl -qw net.ipv4.conf.lo.route_localnet=1
ip -n "$ns" route add 10.0.0.0/8 dev lo

./target/release/examples/gen_capture --packets "$PACKETS" --out "$work/mix.pcap" --port "$PORT" 2>/dev/null
./target/release/examples/gen_capture --packets "$SYNS" --mode synflood --out "$work/raw.pcap" --port "$PORT" 2>/dev/null
tcprewrite --fixcsum -i "$work/raw.pcap" -o "$work/flood.pcap" 2>/dev/null
rm -f "$work/raw.pcap"

if [ "$BPF_STATS" = 1 ]; then
  # BPF_ENABLE_STATS (cmd 32, type BPF_STATS_RUN_TIME) through bpf(2) (syscall 321 on
  # x86-64): statistics stay on while the descriptor is open. Bounded: an hour at most.
  python3 -c '
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.create_string_buffer(16)
fd = libc.syscall(321, 32, attr, 16)
print("ok" if fd >= 0 else "no", flush=True)
if fd >= 0:
    time.sleep(3600)
' >"$work/stats" &
  stats_pid=$!
  for _ in $(seq 1 50); do [ -s "$work/stats" ] && break; sleep 0.1; done
  if [ "$(cat "$work/stats")" != ok ]; then
    echo "BPF_ENABLE_STATS refused: no in-kernel figures" >&2
    BPF_STATS=0
  fi
fi

replay() { # pcap pps -> prints the achieved rate
  if [ "$1" = conns ]; then
    connections "$2"
    return
  fi
  ip netns exec "$ns" tcpreplay -q -i lo --pps="$2" "$1" 2>/dev/null |
    awk '/^Rated:/ {printf "%d", $(NF-1)}'
}

connections() { # count -> prints the connections made a second
  ip netns exec "$ns" python3 - "$PORT" "$1" <<'PY'
import socket, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(4096)
def serve():
    while True:
        c, _ = srv.accept()
        c.recv(64)
        c.sendall(b"y" * 64)
        c.close()
threading.Thread(target=serve, daemon=True).start()
start = time.time()
done = 0
while done < n and time.time() - start < 30:
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"x" * 64)
    c.recv(64)
    c.close()
    done += 1
print(int(done / (time.time() - start)), end="")
PY
}

# Runs its arguments as its child and writes the child's user and system CPU seconds
# (with everything it waited for: the rule listings it runs) to the file named first.
timer_py='
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, _, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{ru.ru_utime:.6f} {ru.ru_stime:.6f}\n")
'

# One run of portsniff: load events(on|off) port pcap pps; appends a line to results.
sniff() {
  local load=$1 events=$2 port=$3 pcap=$4 pps=$5 flag=
  [ "$events" = off ] && flag=--no-kernel-events
  # Removed first: the wait below must not find the last run's banner.
  rm -f "$work/cpu" "$work/ps.err"
  # ip netns exec becomes the timer, whose child is portsniff.
  ip netns exec "$ns" python3 -c "$timer_py" "$work/cpu" \
    "$bin" -i lo --port "$port" --json --no-attribution $flag >"$work/ps.json" 2>"$work/ps.err" &
  local timer=$! ps=
  for _ in $(seq 1 100); do grep -qs "listening on" "$work/ps.err" && break; sleep 0.1; done
  ps=$(tr -d ' ' <"/proc/$timer/task/$timer/children")
  if [ -z "$ps" ]; then
    cat "$work/ps.err" >&2
    exit 1
  fi
  local rate=0
  [ "$load" = idle ] || rate=$(replay "$pcap" "$pps")
  sleep 1
  local bpf_ns=0 bpf_runs=0
  if [ "$BPF_STATS" = 1 ] && [ "$events" = on ]; then
    read -r bpf_ns bpf_runs < <(cat "/proc/$ps/fdinfo/"* 2>/dev/null |
      awk '/^run_time_ns:/ {t += $2} /^run_cnt:/ {n += $2} END {printf "%d %d\n", t, n}')
  fi
  kill -INT "$ps"
  for _ in $(seq 1 300); do kill -0 "$ps" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$ps" 2>/dev/null || true
  wait "$timer" || true
  local cpu
  cpu=$(tail -n 1 "$work/cpu" | awk '{print $1 + $2}')
  python3 -c '
import sys, json
# Connections whose line carries something the kernel said (a drop, a reset, a state),
# or says its drops were counted in a storm: under load, events that reach the flow stage
# too late to join their connection would show here as flows without either.
flows = joined = 0
last = None
with open(sys.argv[1]) as f:
    for line in f:
        if line.startswith("{\"type\":\"flow\",\"final\":true"):
            flows += 1
            said = "\"kernel\":{" in line and not ("\"drops\":[]" in line and "\"resets_sent\":[]" in line
                                                 and "\"states\":{\"client\":null,\"server\":null}" in line)
            if said or "\"summarised\":true" in line:
                joined += 1
        last = line
s = json.loads(last)
k = s["kernel_events"]
print(*sys.argv[2:], s["packets"]["captured"], s["kernel"]["dropped"], s["internal_dropped"],
      k["events"] if k["enabled"] else "-", k["lost"] if k["enabled"] else "-", flows, joined, sep="\t")
' "$work/ps.json" "$load" "$events" "$run" "$rate" "$cpu" "$bpf_ns" "$bpf_runs" >>"$work/results"
}

tcpdump_run() { # load port pcap pps
  rm -f "$work/td.err"
  # -Z root: Debian's tcpdump would drop to its own user and chown its -w file (/dev/null).
  ip netns exec "$ns" tcpdump -Z root -i lo -w /dev/null "tcp port $2 or icmp" 2>"$work/td.err" &
  local td=$!
  for _ in $(seq 1 100); do grep -qs "listening on" "$work/td.err" && break; sleep 0.1; done
  replay "$3" "$4" >/dev/null
  sleep 1
  # It may have ended already (its drops are then unknown): not the end of the script.
  kill -INT "$td" 2>/dev/null || true
  wait "$td" || true
  printf '%s\t%s\t%s\n' "$1" "$run" \
    "$(awk '/dropped by kernel/ {print $1}' "$work/td.err")" >>"$work/tcpdump"
}

: >"$work/results"
: >"$work/tcpdump"
for run in $(seq 1 "$RUNS"); do
  # Alternate which goes first, so a drift in the machine's load does not favour one.
  if [ $((run % 2)) = 1 ]; then order="on off"; else order="off on"; fi
  # A load's two runs back to back: the pair whose ratio is taken sees the same machine.
  for load in $LOADS; do
    for events in $order; do
      case $load in
        idle) sniff idle "$events" "$PORT" - 0 ;;
        conns) sniff conns "$events" "$PORT" conns "$CONNS" ;;
        mix) sniff mix "$events" "$PORT" "$work/mix.pcap" "$MIX_PPS" ;;
        other) sniff other "$events" "$OTHER" "$work/mix.pcap" "$MIX_PPS" ;;
        synflood) sniff synflood "$events" "$PORT" "$work/flood.pcap" "$SYN_PPS" ;;
      esac
    done
  done
  [ "$TCPDUMP" = 1 ] || { echo "run $run of $RUNS done" >&2; continue; }
  for load in $LOADS; do
    case $load in
      conns) tcpdump_run conns "$PORT" conns "$CONNS" ;;
      mix) tcpdump_run mix "$PORT" "$work/mix.pcap" "$MIX_PPS" ;;
      other) tcpdump_run other "$OTHER" "$work/mix.pcap" "$MIX_PPS" ;;
      synflood) tcpdump_run synflood "$PORT" "$work/flood.pcap" "$SYN_PPS" ;;
    esac
  done
  echo "run $run of $RUNS done" >&2
done

python3 - "$work/results" "$work/tcpdump" "$PACKETS" "$SYNS" "$BPF_STATS" <<'EOF'
import sys, statistics as st
results, tcpdump, packets, syns, bpf = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
sent = {"idle": 1e6, "mix": packets, "other": packets, "synflood": syns}
rows = {}
for line in open(results):
    load, events, run, rate, cpu, bpf_ns, bpf_runs, captured, kdrop, own, evs, lost, flows, joined = line.rstrip("\n").split("\t")
    rows.setdefault((load, events), []).append(dict(
        run=int(run), rate=int(rate or 0), cpu=float(cpu), bpf_ns=int(bpf_ns), bpf_runs=int(bpf_runs),
        captured=int(captured), kdrop=int(kdrop), own=int(own),
        events=None if evs == "-" else int(evs), lost=None if lost == "-" else int(lost),
        flows=int(flows), joined=int(joined)))
td = {}
for line in open(tcpdump):
    load, run, dropped = line.rstrip("\n").split("\t")
    td.setdefault(load, []).append(int(dropped or 0))
med = st.median
def runs_of(load, events):
    return {r["run"]: r for r in rows.get((load, events), [])}
def mw(xs):  # median/worst
    return f"{int(med(xs))}/{max(xs)}"
print(f"{'load':9} {'events':6} {'pps':>7} {'CPU s':>6} {'s/M pkts':>8} {'on/off':>6} "
      f"{'captured':>9} {'k.drop':>11} {'own':>13} {'events':>9} {'lost':>13} "
      f"{'BPF ns/run':>10} {'BPF s/M':>7} {'joined':>6} {'tcpdump drop':>12}")
for load in ("idle", "conns", "mix", "other", "synflood"):
    on, off = runs_of(load, "on"), runs_of(load, "off")
    ratios = [on[r]["cpu"] / off[r]["cpu"] for r in on if r in off and off[r]["cpu"] > 0]
    for events, rs in (("on", on), ("off", off)):
        if not rs:
            continue
        v = list(rs.values())
        cpu = med([r["cpu"] for r in v])
        # Real connections come as fast as they can: per million packets captured.
        per_m = ("-" if load == "idle" else
                 f"{med([r['cpu'] / r['captured'] * 1e6 for r in v if r['captured']] or [0]):8.2f}"
                 if load == "conns" else f"{cpu / sent[load] * 1e6:8.2f}")
        ratio = f"{med(ratios):6.3f}" if events == "on" and ratios else ""
        evs = "-" if events == "off" else f"{int(med([r['events'] for r in v])):9d}"
        lost = "-" if events == "off" else mw([r["lost"] for r in v])
        if bpf and events == "on":
            ns_run = med([r["bpf_ns"] / r["bpf_runs"] for r in v if r["bpf_runs"]] or [0])
            bpf_s = med([r["bpf_ns"] / 1e9 / (r["captured"] if load == "conns" else sent[load]) * 1e6
                         for r in v if load != "conns" or r["captured"]] or [0])
            bpf_cols = f"{ns_run:10.0f} {bpf_s:7.3f}" if load != "idle" else f"{ns_run:10.0f} {'-':>7}"
        else:
            bpf_cols = f"{'-':>10} {'-':>7}"
        tdd = (mw(td[load]) if load in td else "-") if events == "off" else ""
        joined = (f"{med([r['joined'] / r['flows'] for r in v]):6.1%}"
                  if events == "on" and load != "idle" and all(r["flows"] for r in v) else "-")
        print(f"{load:9} {events:6} {int(med([r['rate'] for r in v])):7d} {cpu:6.3f} {per_m:>8} {ratio:>6} "
              f"{int(med([r['captured'] for r in v])):9d} {mw([r['kdrop'] for r in v]):>11} "
              f"{mw([r['own'] for r in v]):>13} {evs:>9} {lost:>13} {bpf_cols} {joined:>6} {tdd:>12}")
# Loading the programs is a cost once a run, not once a connection or packet: the same
# ratios with each mode's idle run (start, a second, stop) taken off each run's CPU.
idle = {e: med([r["cpu"] for r in rows[("idle", e)]]) for e in ("on", "off") if ("idle", e) in rows}
if len(idle) == 2:
    print()
    print(f"start-up excluded (each mode's median idle run taken off: on {idle['on']:.3f} s, off {idle['off']:.3f} s):")
    for load in ("conns", "mix", "other", "synflood"):
        on, off = runs_of(load, "on"), runs_of(load, "off")
        net = [(on[r]["cpu"] - idle["on"]) / (off[r]["cpu"] - idle["off"])
               for r in on if r in off and off[r]["cpu"] - idle["off"] > 0]
        if net:
            print(f"  {load:9} on/off {med(net):6.3f}")
def quartiles(xs):
    if len(xs) < 4:
        return "-"
    q = st.quantiles(xs, n=4)
    return f"{q[0]:.3f} {q[1]:.3f} {q[2]:.3f}"
def median_interval(xs):
    # Where the median of the ratios lies, with 95 % confidence, from the runs alone (no
    # assumption about how they spread): between the k-th smallest and the k-th largest,
    # k the largest with P(Binomial(n, 1/2) < k) <= 2.5 %. The target holds when the
    # upper end is within it.
    from math import comb
    n = len(xs)
    k, below = 0, 0.0
    while k < n and below + comb(n, k) / 2**n <= 0.025:
        below += comb(n, k) / 2**n
        k += 1
    if k == 0:
        return "- (too few runs)"
    s = sorted(xs)
    return f"{s[k - 1]:.3f}-{s[n - k]:.3f}"
print()
print("the runs' own on/off ratios, quartiles (25 %, median, 75 %), and where their median")
print("lies with 95 % confidence:")
for load in ("idle", "conns", "mix", "other", "synflood"):
    on, off = runs_of(load, "on"), runs_of(load, "off")
    ratios = [on[r]["cpu"] / off[r]["cpu"] for r in on if r in off and off[r]["cpu"] > 0]
    if ratios:
        print(f"  {load:9} {quartiles(ratios)}   median within {median_interval(ratios)}   ({len(ratios)} runs)")
print()
print("medians over", len(next(iter(rows.values()))), "runs; on/off = median of the runs' own ratios;")
print("drops, lost events and tcpdump's drops: median/worst run; pps is tcpreplay's achieved rate;")
print("s/M pkts = portsniff's CPU seconds per million packets replayed (conns: captured; pps: its")
print("connections a second); BPF = the witness's programs,")
print("in the kernel, charged to whatever they interrupted (not in portsniff's CPU seconds);")
print("joined = the share of connections whose line carries the kernel's word (or says a storm")
print("counted its drops: \"summarised\":true).")
EOF

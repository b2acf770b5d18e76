#!/usr/bin/env bash
# CPU per operation of a three-node quorumkv cluster, by thread: the A/B tool
# behind the "What changed" figures of bench/RESULTS.md. It starts three
# kvservers from BINDIR on 127.0.0.1 (client ports 15379/16379/17379, peers
# +1), preloads the keys, runs one kvbench workload against the leader, and
# prints throughput, latency, and the servers' and kvbench's CPU per
# operation, with every server thread's CPU and context switches (kvserver
# names its event loop `raft-loop`; `nexting_thread` and `default-executo`
# are gRPC's). Compare two builds by running it on each, alternating.
#
#   bash bench/cpu_per_op.sh BINDIR MIX CONCURRENCY
#   bash bench/cpu_per_op.sh build/bin put=100 256
#   DURATION=10s EXTRA="--snapshot-min-entries 100000" bash bench/cpu_per_op.sh build/bin get=100 64
#
# Environment: DURATION (default 5s), EXTRA (more kvserver flags), KVBENCH
# (default BINDIR/kvbench), QUIET=1 (no per-thread lines).
set -euo pipefail

if [[ $# -ne 3 ]]; then
  sed -n '2,16p' "$0" >&2
  exit 2
fi
bindir=$1 mix=$2 concurrency=$3
kvbench=${KVBENCH:-$bindir/kvbench}
for f in "$bindir/kvserver" "$kvbench"; do
  [[ -x $f ]] || { echo "cpu_per_op.sh: $f is not an executable" >&2; exit 2; }
done
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 15379 15380 16379 16380 17379 17380; do
  if port_in_use "$p"; then
    echo "cpu_per_op.sh: port $p on 127.0.0.1 is in use; stop what holds it" >&2
    exit 1
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/cpu_per_op-XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

cluster="1=127.0.0.1:15380,2=127.0.0.1:16380,3=127.0.0.1:17380"
for i in 1 2 3; do
  # shellcheck disable=SC2086  # EXTRA is a list of flags
  "$bindir/kvserver" --id "$i" --data-dir "$work/d$i" --client-addr "127.0.0.1:1$((4 + i))379" \
    --peer-addr "127.0.0.1:1$((4 + i))380" --initial-cluster "$cluster" --log-level warn \
    --tick-ms 10 --heartbeat-ticks 10 --election-ticks 100 ${EXTRA:-} >"$work/node$i.log" 2>&1 &
  pids+=($!)
done
endpoints=127.0.0.1:15379,127.0.0.1:16379,127.0.0.1:17379
# The preload waits for a leader (kvbench retries until it has one).
"$kvbench" --endpoints "$endpoints" --target leader --preload-only --no-progress >/dev/null

snapshot() {
  for p in "${pids[@]}"; do
    for t in /proc/"$p"/task/*; do
      echo "$p $(basename "$t") $(tr ' ' '_' <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")" \
        "$(awk '/ctxt_switches/ {s += $2} END {print s}' "$t/status")"
    done
  done
}
snapshot >"$work/before"
"$kvbench" --endpoints "$endpoints" --target leader --mix "$mix" --concurrency "$concurrency" \
  --duration "${DURATION:-5s}" --warmup 0s --no-progress --json "$work/run.json" |
  grep -E '^  (put|get|delete) +n=' || true
snapshot >"$work/after"

python3 - "$work/before" "$work/after" "$work/run.json" "$(getconf CLK_TCK)" "${QUIET:-}" <<'PY'
import collections, json, sys
before = {tuple(l.split()[:2]): l.split() for l in open(sys.argv[1])}
tck = float(sys.argv[4])
run = json.load(open(sys.argv[3]))
r = run.get("results", run)
ops = r["ops"]
groups = collections.defaultdict(lambda: [0.0, 0, 0])
for line in open(sys.argv[2]):
    f = line.split()
    b = before.get(tuple(f[:2]), f[:3] + ["0", "0"])
    g = groups[(f[0], f[2])]
    g[0] += (int(f[3]) - int(b[3])) / tck
    g[1] += int(f[4]) - int(b[4])
    g[2] += 1
if not sys.argv[5]:
    for (pid, comm), (cpu, cs, n) in sorted(groups.items()):
        if cpu > 0 or cs > 50:
            print("  pid %s %-16s x%-2d cpu %6.2f s  context switches %d" % (pid, comm, n, cpu, cs))
cpu = sum(g[0] for g in groups.values())
cs = sum(g[1] for g in groups.values())
print("ops/s %.0f  servers' CPU per op %.1f us  kvbench's %.1f us  context switches per op %.1f"
      % (r["ops_per_sec"], cpu * 1e6 / ops, r["client_cpu_s"] * 1e6 / ops, cs / ops))
PY

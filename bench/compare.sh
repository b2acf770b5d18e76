#!/usr/bin/env bash
# quorumkv and etcd side by side on this machine: a three-node cluster of
# each on 127.0.0.1, the same kvbench workloads against both, the runs of
# the two systems interleaved, medians over repetitions.
#
#   bash bench/compare.sh                     # 10 s runs, 3 repetitions
#   bash bench/compare.sh --duration 5s --reps 3
#   bash bench/compare.sh --quick             # smoke: 16 and 64 in flight, 1 rep, 3 s
#
# Options:
#   --duration D       measured time of each run (default 10s); warm-up 1s
#   --reps N           repetitions of every (workload, concurrency, system)
#   --concurrency "L"  in-flight levels (default "1 16 64 256")
#   --workloads "L"    among put get-linearizable get-serializable get-lease
#                      mixed (default: all five)
#   --build-dir DIR    where to build kvserver and kvbench (default build-bench)
#   --out DIR          results directory (default bench/results/<date-time>)
#   --quick            --concurrency "16 64" --reps 1 --duration 3s
#   --quorumkv-flags "F"  extra kvserver flags (default "--tick-ms 10
#                      --heartbeat-ticks 10 --election-ticks 100": etcd's
#                      default timing, heartbeat 100 ms and election timeout
#                      1 s; kvserver's own default, 10 ms and 100 ms, makes
#                      leaders change under the CPU starvation of six
#                      servers and a client on two cores)
#
# What it does:
#   - installs Debian's etcd-server and etcd-client if `etcd` is missing;
#   - builds kvserver and kvbench;
#   - starts quorumkv on client ports 12379/13379/14379 (peers 12380/...)
#     and etcd on 12479/13479/14479 (peers 12480/...), data in a temporary
#     directory, fsync on for both (etcd's default; quorumkv always syncs
#     its Raft log). A system etcd service the package may have started
#     (2379) and scripts/start-cluster.sh (2379/22379/32379) are left alone:
#     no port is shared with them. gRPC servers bind with SO_REUSEPORT, so a
#     second server on one of these ports would silently take half of the
#     connections: before every run the script checks that each port has
#     exactly one listener, one of its own servers, and stops otherwise;
#   - preloads the 10,000 keys into each system, then runs every workload
#     at every concurrency, alternating which system goes first;
#   - around each run reads utime+stime of the six server processes in
#     /proc/PID/stat; kvbench reports its own CPU; the table shows CPU use
#     in cores (client / the system under test's servers / the idle other
#     system's servers) over the run's wall time;
#   - writes every run's kvbench JSON (with the CPU figures added) and the
#     summary (summary.md, summary.json) to the results directory;
#   - stops everything it started when it exits (also on Ctrl-C).
# Workloads: put = 100 % put; get-* = 100 % get at that consistency (etcd has
# no lease reads: get-lease is a serializable read there, and the JSON
# says so); mixed = 90 % linearizable get, 10 % put. Keys 16 bytes, values
# 256 bytes, 10,000 keys drawn uniformly, all load sent to the leader.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

duration=10s
reps=3
levels="1 16 64 256"
workloads="put get-linearizable get-serializable get-lease mixed"
build=build-bench
out=""
warmup=1s
qkv_flags="--tick-ms 10 --heartbeat-ticks 10 --election-ticks 100"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --duration=*) duration=${1#*=}; shift ;;
    --reps) reps=$2; shift 2 ;;
    --reps=*) reps=${1#*=}; shift ;;
    --concurrency) levels=$2; shift 2 ;;
    --concurrency=*) levels=${1#*=}; shift ;;
    --workloads) workloads=$2; shift 2 ;;
    --workloads=*) workloads=${1#*=}; shift ;;
    --build-dir) build=$2; shift 2 ;;
    --build-dir=*) build=${1#*=}; shift ;;
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --quick) levels="16 64"; reps=1; duration=3s; shift ;;
    --quorumkv-flags) qkv_flags=$2; shift 2 ;;
    --quorumkv-flags=*) qkv_flags=${1#*=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --reps must be a positive integer" >&2; exit 2; }
for w in $workloads; do
  case "$w" in put|get-linearizable|get-serializable|get-lease|mixed) ;;
    *) echo "compare.sh: unknown workload $w" >&2; exit 2 ;;
  esac
done
for c in $levels; do
  [[ $c =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: bad concurrency level $c" >&2; exit 2; }
done

# --- etcd ---------------------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
  echo "compare.sh: installing etcd-server and etcd-client (Debian)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q etcd-server etcd-client >/dev/null
fi
etcd_bin=$(command -v etcd)
etcd_version=$("$etcd_bin" --version 2>/dev/null | head -1 || true)

# --- build ----------------------------------------------------------------------
if [[ ! -f $build/build.ninja ]]; then
  cmake -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
ninja -C "$build" -j2 kvserver kvbench >/dev/null
kvserver=$root/$build/bin/kvserver
kvbench=$root/$build/bin/kvbench

# --- results and scratch --------------------------------------------------------
stamp=$(date +%Y-%m-%d_%H%M%S)
out=${out:-$root/bench/results/$stamp}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/quorumkv-compare-XXXXXX")
qkv_pids=()
etcd_pids=()
cleanup() {
  trap - EXIT INT TERM
  local all=("${qkv_pids[@]}" "${etcd_pids[@]}")
  if [[ ${#all[@]} -gt 0 ]]; then
    kill "${all[@]}" 2>/dev/null || true
    wait "${all[@]}" 2>/dev/null || true
  fi
  mkdir -p "$out/logs"
  cp "$work"/*.log "$out/logs/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports="12379 12380 13379 13380 14379 14380 12479 12480 13479 13480 14479 14480"
for p in $ports; do
  if port_in_use "$p"; then
    echo "compare.sh: port $p on 127.0.0.1 is in use; stop what holds it (compare.sh uses $ports)" >&2
    exit 1
  fi
done

# --- start both clusters ----------------------------------------------------------
qkv_cluster="1=127.0.0.1:12380@127.0.0.1:12379,2=127.0.0.1:13380@127.0.0.1:13379,3=127.0.0.1:14380@127.0.0.1:14379"
# shellcheck disable=SC2086  # $qkv_flags is a list of flags
for i in 1 2 3; do
  "$kvserver" --id "$i" --data-dir "$work/qkv$i" \
    --client-addr "127.0.0.1:1$((i + 1))379" --peer-addr "127.0.0.1:1$((i + 1))380" \
    --initial-cluster "$qkv_cluster" --log-level warn $qkv_flags >"$work/quorumkv$i.log" 2>&1 &
  qkv_pids+=($!)
done
etcd_cluster="e1=http://127.0.0.1:12480,e2=http://127.0.0.1:13480,e3=http://127.0.0.1:14480"
for i in 1 2 3; do
  "$etcd_bin" --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:1$((i + 1))479" --advertise-client-urls "http://127.0.0.1:1$((i + 1))479" \
    --listen-peer-urls "http://127.0.0.1:1$((i + 1))480" --initial-advertise-peer-urls "http://127.0.0.1:1$((i + 1))480" \
    --initial-cluster "$etcd_cluster" --initial-cluster-token "compare-$$" --initial-cluster-state new \
    --logger zap --log-level warn >"$work/etcd$i.log" 2>&1 &
  etcd_pids+=($!)
done
qkv_endpoints=127.0.0.1:12379,127.0.0.1:13379,127.0.0.1:14379
etcd_endpoints=127.0.0.1:12479,127.0.0.1:13479,127.0.0.1:14479

clk_tck=$(getconf CLK_TCK)
# Sum of utime + stime (clock ticks) of the given processes. The fields are
# counted after the last ')' so a process name with spaces cannot shift them.
cpu_ticks() {
  local total=0 pid rest
  for pid in "$@"; do
    if [[ -r /proc/$pid/stat ]]; then
      rest=$(sed 's/.*) //' "/proc/$pid/stat")
      # After "pid (comm) ": state is field 1, utime field 12, stime field 13.
      total=$((total + $(awk '{print $12 + $13}' <<<"$rest")))
    fi
  done
  echo "$total"
}
alive_or_die() {
  local pid p listeners mine
  for pid in "${qkv_pids[@]}" "${etcd_pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "compare.sh: a server (pid $pid) exited; logs in $out/logs" >&2
      exit 1
    fi
  done
  # Exactly one listener per port, and it is ours (see SO_REUSEPORT above).
  for p in $ports; do
    listeners=$(ss -Hltnp "sport = :$p" 2>/dev/null | grep -o 'pid=[0-9]*' | sort -u || true)
    mine=0
    for pid in "${qkv_pids[@]}" "${etcd_pids[@]}"; do
      [[ $listeners == "pid=$pid" ]] && mine=1
    done
    if [[ $mine != 1 ]]; then
      echo "compare.sh: port $p is not (only) ours: listeners ${listeners//$'\n'/ }; stopping" >&2
      exit 1
    fi
  done
}

common=(--keys 10000 --key-size 16 --value-size 256 --channels 4 --target leader --no-progress)
endpoints_of() { [[ $1 == quorumkv ]] && echo "$qkv_endpoints" || echo "$etcd_endpoints"; }

echo "compare.sh: preloading 10,000 keys into each system..."
for sys in quorumkv etcd; do
  # Puts are idempotent here: a preload that met errors (a leader change
  # on a starved machine) is simply run again, three times at most.
  for attempt in 1 2 3; do
    if "$kvbench" --system "$sys" --endpoints "$(endpoints_of "$sys")" "${common[@]}" \
        --preload-only --concurrency 64 >"$work/preload-$sys-$attempt.log" 2>&1; then
      break
    fi
    cat "$work/preload-$sys-$attempt.log" >&2
    if [[ $attempt == 3 ]]; then
      echo "compare.sh: preloading $sys failed three times" >&2
      exit 1
    fi
    echo "compare.sh: preloading $sys met errors; again" >&2
    sleep 2
  done
done

workload_flags() {
  case "$1" in
    put) echo "--mix put=100" ;;
    get-linearizable) echo "--mix get=100 --consistency linearizable" ;;
    get-serializable) echo "--mix get=100 --consistency serializable" ;;
    get-lease) echo "--mix get=100 --consistency lease" ;;
    mixed) echo "--mix put=10,get=90 --consistency linearizable" ;;
  esac
}

n_levels=$(wc -w <<<"$levels")
n_workloads=$(wc -w <<<"$workloads")
total=$((reps * n_levels * n_workloads * 2))
run=0
failed=0
echo "compare.sh: $total runs of $duration (+$warmup warm-up); results in $out"
for rep in $(seq 1 "$reps"); do
  for w in $workloads; do
    for c in $levels; do
      # Interleave: alternate which system goes first, so drift of the
      # machine (page cache, other load, thermal) falls on both.
      if (( (rep + run / 2) % 2 == 1 )); then order="quorumkv etcd"; else order="etcd quorumkv"; fi
      for sys in $order; do
        run=$((run + 1))
        alive_or_die
        if [[ $sys == quorumkv ]]; then own=("${qkv_pids[@]}"); other=("${etcd_pids[@]}");
        else own=("${etcd_pids[@]}"); other=("${qkv_pids[@]}"); fi
        json="$out/$sys-$w-c$c-r$rep.json"
        own0=$(cpu_ticks "${own[@]}"); other0=$(cpu_ticks "${other[@]}"); t0=$(date +%s.%N)
        rc=0
        # shellcheck disable=SC2046
        "$kvbench" --system "$sys" --endpoints "$(endpoints_of "$sys")" "${common[@]}" \
          $(workload_flags "$w") --concurrency "$c" --duration "$duration" --warmup "$warmup" \
          --seed "$rep" --label "$w" --json "$json" >"$work/run-$run.log" 2>&1 || rc=$?
        t1=$(date +%s.%N); own1=$(cpu_ticks "${own[@]}"); other1=$(cpu_ticks "${other[@]}")
        if [[ ! -s $json ]]; then
          echo "compare.sh: run $run ($sys $w x$c) produced no JSON (exit $rc):" >&2
          cat "$work/run-$run.log" >&2
          failed=$((failed + 1))
          continue
        fi
        [[ $rc == 0 ]] || failed=$((failed + 1))
        /usr/bin/python3 - "$json" "$clk_tck" "$own0" "$own1" "$other0" "$other1" "$t0" "$t1" "$rc" \
          "$run/$total" "$rep" <<'PY'
import json, sys
path, tck, own0, own1, other0, other1, t0, t1, rc, progress, rep = sys.argv[1:]
tck = float(tck)
with open(path) as f:
    j = json.load(f)
j["compare"] = {
    "servers_cpu_s": (int(own1) - int(own0)) / tck,
    "other_system_servers_cpu_s": (int(other1) - int(other0)) / tck,
    "client_cpu_s": j["process"]["cpu_s"],
    "wall_s": float(t1) - float(t0),
    "exit_code": int(rc),
}
with open(path, "w") as f:
    json.dump(j, f, indent=2)
r = j["results"]
print("[%s] %-8s %-17s x%-3s rep %s: %9.0f ops/s  p50 %8.1f us  p99 %8.1f us  errors %d" % (
    progress, j["parameters"]["system"], j["parameters"]["label"], j["parameters"]["concurrency"], rep,
    r["ops_per_sec"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["errors_total"]))
PY
      done
    done
  done
done

/usr/bin/python3 - "$out" "$etcd_version" "$qkv_flags" <<'PY'
import glob, json, os, statistics, sys
out, etcd_version, qkv_flags = sys.argv[1], sys.argv[2], sys.argv[3]
runs = []
for p in sorted(glob.glob(os.path.join(out, "*.json"))):
    if os.path.basename(p).startswith("summary"):
        continue
    with open(p) as f:
        runs.append(json.load(f))
if not runs:
    sys.exit("compare.sh: no results")
groups = {}
for j in runs:
    key = (j["parameters"]["label"], j["parameters"]["concurrency"], j["parameters"]["system"])
    groups.setdefault(key, []).append(j)
order = ["put", "get-linearizable", "get-serializable", "get-lease", "mixed"]
def med(vals):
    return statistics.median(vals) if vals else float("nan")
def stats(js):
    r = [j["results"] for j in js]
    c = [j["compare"] for j in js]
    return {
        "reps": len(js),
        "ops_per_sec": med([x["ops_per_sec"] for x in r]),
        "p50_us": med([x["latency_us"]["p50"] for x in r]),
        "p99_us": med([x["latency_us"]["p99"] for x in r]),
        "errors": sum(x["errors_total"] for x in r),
        "client_cores": med([x["client_cpu_s"] / x["wall_s"] for x in c]),
        "server_cores": med([x["servers_cpu_s"] / x["wall_s"] for x in c]),
        "other_cores": med([x["other_system_servers_cpu_s"] / x["wall_s"] for x in c]),
        "consistency_effective": js[0]["parameters"]["consistency_effective"],
    }
rows = []
keys = sorted({(k[0], k[1]) for k in groups}, key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[1]))
for w, c in keys:
    q = groups.get((w, c, "quorumkv"))
    e = groups.get((w, c, "etcd"))
    rows.append({"workload": w, "concurrency": c,
                 "quorumkv": stats(q) if q else None, "etcd": stats(e) if e else None})
m = runs[0]["machine"]
p = runs[0]["parameters"]
lines = []
lines.append("Machine: %s cores, %s, %s; etcd: %s" % (m["cores"], m["cpu_model"] or "unknown CPU", m["kernel"], etcd_version or "?"))
lines.append("Runs: %.0f s measured after %.0f s warm-up, medians of %d repetition(s); keys %d x %d B, values %d B, all to the leader." % (
    p["duration_s"], p["warmup_s"], max(len(v) for v in groups.values()), p["keys"], p["key_size"], p["value_size"]))
lines.append("kvserver flags: %s; etcd: defaults (heartbeat 100 ms, election 1 s, fsync on)." % (qkv_flags or "(defaults)"))
lines.append("")
lines.append("| workload | in flight | quorumkv ops/s | p50 ms | p99 ms | etcd ops/s | p50 ms | p99 ms | ops ratio q/e | CPU cores q: client/servers/idle etcd | CPU cores e: client/servers/idle q | errors q/e |")
lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
def f(x, fmt):
    return fmt % x
for row in rows:
    q, e = row["quorumkv"], row["etcd"]
    def cells(s):
        if s is None:
            return ["-", "-", "-"]
        return [f(s["ops_per_sec"], "%.0f"), f(s["p50_us"] / 1000, "%.2f"), f(s["p99_us"] / 1000, "%.2f")]
    def cpu(s):
        return "-" if s is None else "%.2f / %.2f / %.2f" % (s["client_cores"], s["server_cores"], s["other_cores"])
    ratio = "-" if not (q and e and e["ops_per_sec"] > 0) else "%.2f" % (q["ops_per_sec"] / e["ops_per_sec"])
    name = row["workload"]
    if e and e["consistency_effective"] != (q or e)["consistency_effective"]:
        name += " (etcd: %s)" % e["consistency_effective"]
    lines.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
        name, row["concurrency"], " | ".join(cells(q)), " | ".join(cells(e)), ratio, cpu(q), cpu(e),
        "%s/%s" % (q["errors"] if q else "-", e["errors"] if e else "-")))
text = "\n".join(lines) + "\n"
print()
print(text)
with open(os.path.join(out, "summary.md"), "w") as fh:
    fh.write(text)
with open(os.path.join(out, "summary.json"), "w") as fh:
    json.dump({"machine": m, "etcd_version": etcd_version, "quorumkv_flags": qkv_flags, "rows": rows}, fh, indent=2)
PY
echo "compare.sh: raw JSON and summary in $out"
if [[ $failed -gt 0 ]]; then
  echo "compare.sh: $failed run(s) had errors or failed; see the JSON and $out/logs" >&2
fi

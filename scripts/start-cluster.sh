#!/usr/bin/env bash
# The README's first command: installs what is missing (Debian 12), builds
# kvserver and kvctl, and starts a three-node cluster on 127.0.0.1 with its
# data under one directory. Ctrl-C (or `scripts/start-cluster.sh stop` from
# another terminal) stops all three.
#
#   bash scripts/start-cluster.sh            # data in ./cluster-data
#   QUORUMKV_DATA=/tmp/q bash scripts/start-cluster.sh
#   bash scripts/start-cluster.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
data=${QUORUMKV_DATA:-$root/cluster-data}
pidfile=$data/cluster.pids

if [[ "${1:-}" == stop ]]; then
  if [[ -f $pidfile ]]; then
    kill $(cat "$pidfile") 2>/dev/null || true
    echo "stopped the cluster in $data"
  else
    echo "no cluster is running from $data"
  fi
  exit 0
fi

bash scripts/install-deps.sh
cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build kvserver kvctl

mkdir -p "$data"
cluster="1=127.0.0.1:2380@127.0.0.1:2379,2=127.0.0.1:22380@127.0.0.1:22379,3=127.0.0.1:32380@127.0.0.1:32379"
pids=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "stopping the cluster..."
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -f "$pidfile"
  echo "stopped; data kept in $data"
}
trap stop_all INT TERM EXIT

for i in 1 2 3; do
  prefix=$([[ $i == 1 ]] && echo "" || echo "$i")
  build/bin/kvserver --id "$i" --data-dir "$data/node$i" \
    --client-addr "127.0.0.1:${prefix}2379" --peer-addr "127.0.0.1:${prefix}2380" \
    --metrics-addr "127.0.0.1:${prefix}2381" \
    --initial-cluster "$cluster" >"$data/node$i.log" 2>&1 &
  pids+=($!)
done
echo "${pids[*]}" >"$pidfile"

endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
for _ in $(seq 1 100); do
  if build/bin/kvctl --endpoints "$endpoints" --timeout 1s status 2>/dev/null | grep -q leader; then break; fi
  sleep 0.1
done
build/bin/kvctl --endpoints "$endpoints" status || true
cat <<MSG

quorumkv is running: three nodes on 127.0.0.1 (client ports 2379, 22379, 32379),
data and logs in $data. Try, in another terminal:

  build/bin/kvctl put greeting hello
  build/bin/kvctl get greeting
  build/bin/kvctl get greeting --consistency serializable
  build/bin/kvctl del greeting
  build/bin/kvctl status
  build/bin/kvctl member list --output json
  build/bin/kvctl leader transfer

Press Ctrl-C here (or run: bash scripts/start-cluster.sh stop) to stop all three.
MSG
wait "${pids[@]}"

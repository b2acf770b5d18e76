#!/usr/bin/env bash
# Installs, from Debian's archive, exactly what quorumkv needs to build and test.
# Idempotent: packages already present are skipped, and apt-get runs only when
# something is missing, so a second call costs a few dpkg look-ups.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  # libraries the build links against
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libleveldb-dev libsnappy-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  # tcmalloc for kvserver and kvbench (CMake option QUORUMKV_TCMALLOC)
  libgoogle-perftools-dev
  # sanitizer and fuzzer builds of the Raft core
  clang libclang-rt-14-dev
  # tests/prometheus: a real Prometheus server (and promtool) scraping a
  # cluster, driven by Debian's Python
  prometheus python3
  # Python tests (tests/docker, tests/python) and examples/python, all run
  # with /usr/bin/python3: gRPC and protobuf for the client example (its
  # stubs come from protoc + grpc_python_plugin, in protobuf-compiler-grpc
  # above), PyYAML to read docker/docker-compose.yml
  python3-grpcio python3-protobuf python3-yaml
  # tests/fault: clock-rate skew and wall-clock steps for one kvserver
  faketime
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

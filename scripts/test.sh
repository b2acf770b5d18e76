#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian 12), builds
# everything with warnings as errors, runs every test, then builds the Raft
# core, the history checker and the simulator with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs their tests again, and finally fuzzes
# the core's message handling and the record decoders with libFuzzer.
#
#   bash scripts/test.sh            # all of it
#   QUORUMKV_SKIP_SANITIZERS=1 ...  # skip the sanitizer and fuzzer passes (local iteration)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
echo "== build (build/)"
cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j "$jobs"

echo "== tests (build/)"
ctest --test-dir build --output-on-failure -j "$jobs"

if [[ "${QUORUMKV_SKIP_SANITIZERS:-0}" != 1 ]]; then
  echo "== build with ASan + UBSan (build-asan/: Raft core, checker, simulator)"
  cmake -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQUORUMKV_CORE_ONLY=ON \
        -DQUORUMKV_SANITIZE=address,undefined -DQUORUMKV_SIM_SEED_SCALE=25 >/dev/null
  ninja -C build-asan -j "$jobs"
  echo "== tests under ASan + UBSan (build-asan/)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs"

  # libFuzzer is clang's: the fuzzers of tests/fuzz get their own build.
  echo "== build the fuzzers with clang (build-fuzz/)"
  CC=clang CXX=clang++ cmake -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DQUORUMKV_CORE_ONLY=ON >/dev/null
  ninja -C build-fuzz -j "$jobs" raft_message_fuzzer storage_record_fuzzer
  echo "== fuzz (build-fuzz/: every committed input, then 20 s per fuzzer)"
  ctest --test-dir build-fuzz --output-on-failure -L fuzz
fi
echo "== all tests passed"

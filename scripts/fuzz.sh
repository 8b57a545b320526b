#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz (or $BUILD_DIR) and
# runs each for a bounded time:   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
# Targets: protocol (Dispatcher::Handle), token_answer (ParseTokenAnswer and
# ParseRetryAfter), config (LoadConfigString). FUZZ_TARGETS="a b" picks some.
# Each run starts from a copy of fuzz/corpus/<target>/, so the repository is
# not modified; new inputs stay in <build>/fuzz-run/<target>/corpus and a crash
# in <build>/fuzz-run/<target>/crash-*. Exits non-zero when a target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
build_dir=${BUILD_DIR:-build-fuzz}
targets=(${FUZZ_TARGETS:-protocol token_answer config})

CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTOKEND_FUZZ=ON -DTOKEND_BUILD_TESTS=OFF >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for target in "${targets[@]}"; do
  work="$build_dir/fuzz-run/$target"
  rm -rf "$work"
  mkdir -p "$work/corpus"
  cp fuzz/corpus/"$target"/* "$work/corpus/"
  echo "== fuzz_$target for ${seconds}s" >&2
  if ! "$build_dir/fuzz/fuzz_$target" "$work/corpus" -max_total_time="$seconds" \
      -rss_limit_mb=2048 -timeout=10 -max_len=8192 -print_final_stats=1 \
      -artifact_prefix="$work/" 2> "$work/log"; then
    failed+=("$target")
    tail -n 60 "$work/log" >&2
  else
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$work/log" | sed "s/^/  /" >&2 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in $build_dir/fuzz-run/<target>/)" >&2
  exit 1
fi

#!/usr/bin/env bash
# Builds everything with a sanitizer and runs the whole CTest suite (unit, net,
# integration) under it:
#   scripts/sanitize.sh address   ASan + UBSan (any report is fatal), in build-asan
#   scripts/sanitize.sh thread    TSan, in build-tsan
# Every sanitized process (tokend and tokenctl started by the integration tests
# too) writes its reports to <build>/sanitizer-reports/; the run fails if any
# report was written, even when the test that caused it passed.
# BUILD_DIR overrides the directory; extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
case "$kind" in
  address) default_dir=build-asan ;;
  thread) default_dir=build-tsan ;;
  *) echo "usage: scripts/sanitize.sh address|thread [cmake args...]" >&2; exit 2 ;;
esac
shift
build_dir=${BUILD_DIR:-$default_dir}
root=$PWD

# -O1: sanitized tests run several times faster than at -O0, and the build is
# quicker than at -O2; -g keeps the reports readable.
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
  -DTOKEND_SANITIZE="$kind" "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"

# Tests that measure memory or tight timings read this to relax.
export TOKEND_SANITIZER="$kind"
reports="$root/$build_dir/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:detect_stack_use_after_return=1:strict_init_order=1:check_initialization_order=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
# tests/tsan.supp lists (and explains) the third-party code TSan must ignore.
export TSAN_OPTIONS="log_path=$reports/tsan:suppressions=$root/tests/tsan.supp:second_deadlock_stack=1:halt_on_error=0:history_size=4"

status=0
(cd "$build_dir" && ctest --output-on-failure -j2 --timeout 1200) || status=$?

shopt -s nullglob
found=("$reports"/*)
if [ ${#found[@]} -gt 0 ]; then
  echo "== $kind sanitizer reports (${#found[@]} files) ==" >&2
  for f in "${found[@]}"; do
    echo "--- $f" >&2
    head -n 60 "$f" >&2
  done
  status=1
fi
exit "$status"

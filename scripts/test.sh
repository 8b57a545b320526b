#!/usr/bin/env bash
# Installs the dependencies, builds, and runs the whole test suite (unit and
# integration) with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh "$@"
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j2 --timeout 900

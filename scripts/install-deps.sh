#!/usr/bin/env bash
# Installs what tokend needs to build, test and run its demo, from Debian's packages.
# Idempotent: packages already present are left alone.
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libcurl4-openssl-dev nlohmann-json3-dev libspdlog-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libsystemd-dev
  python3 python3-pytest python3-prometheus-client openssl ca-certificates
)
if [ "${TOKEND_WITH_FUZZ:-0}" = 1 ]; then packages+=(clang libclang-rt-14-dev); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
echo "installing: ${missing[*]}" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

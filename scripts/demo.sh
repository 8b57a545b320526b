#!/usr/bin/env bash
# The built-in demo: a local fake token endpoint that answers some requests with
# 504 (a gateway of capacity 2, and one child org whose gateway flaps), three
# Genesys-style tenants, and tokend keeping their tokens fresh with text logs.
#
# In a second terminal:  build/tokenctl --socket /tmp/tokend-demo/tokend.sock get org-child-1
#                        build/tokenctl --socket /tmp/tokend-demo/tokend.sock status
# Stop with Ctrl-C. DEMO_SECONDS=N stops it by itself after N seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh

run=/tmp/tokend-demo
rm -rf "$run"
mkdir -p "$run/secrets"
chmod 700 "$run"

endpoint_pid=""
tokend_pid=""
cleanup() {
  [ -n "$tokend_pid" ] && kill "$tokend_pid" 2>/dev/null && wait "$tokend_pid" 2>/dev/null
  [ -n "$endpoint_pid" ] && kill "$endpoint_pid" 2>/dev/null && wait "$endpoint_pid" 2>/dev/null
  true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

clients=()
for tenant in org-parent org-child-1 org-child-2; do
  secret="demo-secret-$tenant-$RANDOM$RANDOM"
  printf '%s\n' "$secret" > "$run/secrets/$tenant"
  chmod 600 "$run/secrets/$tenant"
  clients+=(--client "demo-$tenant:$secret")
done

# Tokens live 40 s; the gateway holds 2 requests at once (more get 504 after
# 0.5 s), each takes 0.3 s, and 30% of org-child-2's requests get a 504.
python3 tests/fake_token_endpoint.py --port-file "$run/port" --lifetime 40 \
  --capacity 2 --hold 0.5 --service-time 0.3 --quiet "${clients[@]}" &
endpoint_pid=$!
for _ in $(seq 100); do [ -s "$run/port" ] && break; sleep 0.1; done
port=$(cat "$run/port")
python3 - "$port" <<'PY'
import json, sys, urllib.request
body = json.dumps({"client_id": "demo-org-child-2", "actions": [{"status": 504, "hold": 0.5}] * 2,
                   "always": None}).encode()
urllib.request.urlopen(urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/_control/script", body,
    {"Content-Type": "application/json"}), timeout=5).read()
PY

sed -e "s|@PORT@|$port|g" -e "s|@RUN@|$run|g" config/demo.yaml > "$run/tokend.yaml"
echo "fake token endpoint on http://127.0.0.1:$port/oauth/token; config $run/tokend.yaml"
echo "in a second terminal: build/tokenctl --socket $run/tokend.sock get org-child-1"
build/tokend --config "$run/tokend.yaml" &
tokend_pid=$!
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
  build/tokenctl --socket "$run/tokend.sock" status || true
  exit 0
fi
wait "$tokend_pid"

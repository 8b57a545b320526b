#!/usr/bin/env bash
# Lookup benchmark: tokend's `get` against redis-server's GET of a value of the
# same size, both on a Unix socket in a temp dir, with the same load generator
# (bench/lookup_bench.cc) at K = 1, 16, 64 connections.
#
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release -DTOKEND_BUILD_BENCH=ON
#   cmake --build build-rel -j2
#   bench/run_lookup.sh [SECONDS_PER_RUN]        (BUILD=build-rel, CLIENTS="1 16 64")
#
# PAUSE_US=N makes each client pause N microseconds after each answer (a paced
# load: compare the servers' cpu_us/req between requests). SERVERS="tokend" runs tokend only; TOKEND_WRAP="valgrind --tool=callgrind
# --callgrind-out-file=/tmp/cg.out" runs tokend under a profiler.
#
# Needs redis-server (Debian: apt-get install redis-server) and /usr/bin/python3
# for the fake token endpoint. Loopback and Unix sockets only; stops by itself.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$REPO/build-rel}
SECONDS_PER_RUN=${1:-5}
CLIENTS=${CLIENTS:-"1 16 64"}
SERVERS=${SERVERS:-"tokend redis"}
TOKEND_WRAP=${TOKEND_WRAP:-}
ROUNDS=${ROUNDS:-5}
PAUSE_US=${PAUSE_US:-0}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
TOKEND=$BUILD/tokend
TOKENCTL=$BUILD/tokenctl
LOADGEN=$BUILD/bench/tokend_lookup_bench
# The token is sized so tokend's answer line is about as long as redis's answer
# to GET of VALUE_BYTES (a Genesys Cloud access token is a few hundred bytes).
VALUE_BYTES=700
TOKEN_BYTES=600

for f in "$TOKEND" "$TOKENCTL" "$LOADGEN"; do
  [ -x "$f" ] || { echo "missing $f (build with -DTOKEND_BUILD_BENCH=ON)" >&2; exit 2; }
done
command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 2; }

TMP=$(mktemp -d /tmp/lookup-bench.XXXXXX)
PIDS=()
cleanup() {
  # pkill -P: a TOKEND_WRAP wrapper (perf stat) would leave tokend running.
  for pid in "${PIDS[@]}"; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

wait_for() {  # wait_for FILE: up to 10 s
  for _ in $(seq 1 200); do [ -e "$1" ] && return 0; sleep 0.05; done
  echo "timed out waiting for $1" >&2; exit 1
}

# --- fake token endpoint issuing one long token ---------------------------
$PY "$REPO/tests/fake_token_endpoint.py" --any-client --lifetime 86400 --quiet \
  --port 0 --port-file "$TMP/port" >/dev/null &
PIDS+=($!)
wait_for "$TMP/port"
PORT=$(cat "$TMP/port")
$PY - "$PORT" "$TOKEN_BYTES" <<'EOF'
import json, sys, urllib.request
port, size = int(sys.argv[1]), int(sys.argv[2])
token = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." * 100)[:size]
body = {"client_id": "client-t0", "actions": [],
        "always": {"status": 200, "json": {"access_token": token, "token_type": "Bearer",
                                            "expires_in": 86400}}}
req = urllib.request.Request(f"http://127.0.0.1:{port}/_control/script",
                             data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(req, timeout=5).read()
EOF

# --- tokend with one tenant -------------------------------------------------
printf 'secret-t0\n' > "$TMP/secret"
chmod 600 "$TMP/secret"
cat > "$TMP/tokend.yaml" <<EOF
socket:
  path: "$TMP/tokend.sock"
refresh:
  startup_spread: "0s"
logging:
  level: "warn"
tenants:
  - id: "t0"
    client_id: "client-t0"
    client_secret_file: "$TMP/secret"
    token_url: "http://127.0.0.1:$PORT/oauth/token"
EOF
# shellcheck disable=SC2086  # TOKEND_WRAP is a command line
$TOKEND_WRAP "$TOKEND" --config "$TMP/tokend.yaml" > "$TMP/tokend.log" 2>&1 &
TOKEND_PID=$!
PIDS+=($TOKEND_PID)
wait_for "$TMP/tokend.sock"
"$TOKENCTL" --timeout 30s --socket "$TMP/tokend.sock" get t0 --wait 10s >/dev/null

# --- redis-server with one value of the same size -----------------------------
redis-server --port 0 --unixsocket "$TMP/redis.sock" --unixsocketperm 700 --save "" \
  --appendonly no --daemonize no --logfile "$TMP/redis.log" --dir "$TMP" &
REDIS_PID=$!
PIDS+=($REDIS_PID)
wait_for "$TMP/redis.sock"
for _ in $(seq 1 100); do
  redis-cli -s "$TMP/redis.sock" ping >/dev/null 2>&1 && break
  sleep 0.05
done
head -c "$VALUE_BYTES" /dev/zero | tr '\0' 'x' | redis-cli -s "$TMP/redis.sock" -x set t0 >/dev/null

# --- runs: per K, ROUNDS rounds alternating the servers; medians of the rounds --
echo "# lookup: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); per K and server: median of $ROUNDS runs of ${SECONDS_PER_RUN}s (after 1s warm-up each), servers alternating, pause ${PAUSE_US} us"
echo "# $(redis-server --version | cut -d' ' -f1-3)"
cpu_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
printf '%-7s %3s %10s %8s %8s %9s %7s %11s   %s\n' server K req/s p50_us p99_us p99.9_us bytes cpu_us/req "req/s of each run"
for k in $CLIENTS; do
  declare -A RUNS=()
  for _ in $(seq 1 "$ROUNDS"); do
    for server in $SERVERS; do
      if [ "$server" = tokend ]; then sock=$TMP/tokend.sock pid=$TOKEND_PID
      else sock=$TMP/redis.sock pid=$REDIS_PID; fi
      before=$(cpu_ticks "$pid")
      line=$("$LOADGEN" --socket "$sock" --protocol "$server" \
        --key t0 --clients "$k" --seconds "$SECONDS_PER_RUN" --warmup 1 --pause-us "$PAUSE_US")
      after=$(cpu_ticks "$pid")
      # server CPU time (user + system, all threads) per request, in microseconds
      cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="${line##* }" \
        'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
      RUNS[$server]+="$line $cpu"$'\n'
    done
  done
  for server in $SERVERS; do
    runs=${RUNS[$server]}
    col() { printf '%s' "$runs" | awk -v c="$1" 'NF {print $c}'; }
    printf '%-7s %3s %10s %8s %8s %9s %7s %11s   %s\n' "$server" "$k" "$(col 3 | median)" \
      "$(col 4 | median)" "$(col 5 | median)" "$(col 6 | median)" "$(col 7 | median)" \
      "$(col 9 | median)" "$(col 3 | tr '\n' ' ')"
  done
done

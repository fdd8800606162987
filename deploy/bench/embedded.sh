#!/usr/bin/env bash
# What embedded mode costs per request: CPU time of `modelrouter up` (usage
# events, the SQLite log and the in-process ledger on, as shipped) against
# `modelrouter gateway` alone (no event log: nothing recorded), each pinned
# to core 0 and serving the same fast mock upstream (peers/mock.mjs) with
# the load generator on core 1; at a steady 200 req/s (oha, 20 s) and at
# saturation (wrk, 64 connections, 10 s). CPU comes from /proc (user +
# system of the whole process), divided by the requests answered.
#   MODELROUTER_BIN  the release binary (set by `make bench`)
#   BASE_BIN         optionally, an older binary measured the same way in
#                    the same run, alternating (before/after figures)
#   BENCH_ROUNDS     rounds (default 3)
# `up`'s ledger lag comes from its /metrics (modelrouter_ledger_lag_seconds)
# over the steady run (begun once the warm-up's backlog is folded, which
# would count otherwise) and over the saturation run: p50 and p99, interpolated
# within the buckets.
# RSS (MB, /proc VmRSS) is read idle, a second after the first answered
# request, and again after the saturation run.
# Latency at a steady 1,000 req/s (oha, 64 connections, latency correction,
# 10 s): p50 and p99 in ms, whole request as the client sees it (subtract
# the mock's own, as bench-peers does, for the added latency).
# A third mode, `fleet` (skipped with BENCH_FLEET=0, or when psql or NATS
# on 127.0.0.1:4222 is missing): `modelrouter gateway` doing a fleet
# gateway's whole job, its usage events published to NATS JetStream, with
# `modelrouter ledger` on a scratch PostgreSQL database beside it (on core
# 1, with the load) that folds them and publishes the account's state, its
# credit granted with `modelrouter grant`. Its CPU columns are the gateway
# process's own, as for the others; the last four columns give what the
# NATS server and the ledger spent a request on its behalf ("-" elsewhere).
set -euo pipefail
BIN=${MODELROUTER_BIN:?set MODELROUTER_BIN}
ROUNDS=${BENCH_ROUNDS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
for tool in wrk oha node taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (make bench-tools)" >&2; exit 1; }
done
MOCK=$(start mock taskset -c 1 node "$HERE/peers/mock.mjs")
FLEET=${BENCH_FLEET:-1}
if [ "$FLEET" = 1 ] && ! { command -v psql >/dev/null && (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }; then
  echo "no psql or no NATS on 127.0.0.1:4222: the fleet mode is skipped" >&2
  FLEET=0
fi
NATS_PID=$(pgrep -x nats-server | head -1 || true)
FLEET_DBS=()

# Drops fleet run $1's scratch database and its JetStream streams (the
# event stream and the buckets' streams named after its subject prefix)
# through JetStream's API over the NATS protocol: the bench leaves nothing
# behind on the machine's shared servers.
drop_fleet() {
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true
  python3 - "$1" <<'PY' || true
import json, socket, sys
prefix = sys.argv[1].lower()
s = socket.create_connection(("127.0.0.1", 4222), timeout=5)
f = s.makefile("rb")
f.readline()  # the server's INFO
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _bench.reply 1\r\n')
def request(subject):
    s.sendall(b"PUB %s _bench.reply 0\r\n\r\n" % subject.encode())
    while True:
        line = f.readline()
        if not line:
            return {}
        if line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith(b"MSG"):
            return json.loads(f.read(int(line.split()[-1]) + 2)[:-2])
for name in request("$JS.API.STREAM.NAMES").get("streams") or []:
    if name.lower() == prefix + "_events" or name.lower().startswith("kv_" + prefix + "_"):
        request("$JS.API.STREAM.DELETE." + name)
PY
}
# Processes first (a database still connected to is not dropped), then the scratch state.
trap 'cleanup; for db in "${FLEET_DBS[@]}"; do drop_fleet "$db"; done' EXIT
printf '{"model":"gpt-4.1-mini","max_tokens":16,"messages":[{"role":"user","content":"Summarise the benefits of routing LLM traffic through one gateway."}]}' >"$WORK/body.json"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The NATS server's and the fleet ledger's ticks ("0 0" when not in the fleet mode).
others() {
  if [ -n "${LEDGER_PID:-}" ]; then echo "$([ -n "$NATS_PID" ] && ticks "$NATS_PID" || echo 0) $(ticks "$LEDGER_PID")"; else echo "0 0"; fi
}
# µs a request of two tick counts ($1 before, $2 after, $3 requests), or "-".
per_request() { [ -n "${LEDGER_PID:-}" ] && python3 -c "print(f'{($2 - $1) * 10_000 / max($3, 1):.0f}')" || echo -; }

# The environment of the fleet mode's processes (database $FLEET_DB).
fleet_env() {
  unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY GEMINI_API_KEY ANTHROPIC_API_KEY AWS_ACCESS_KEY_ID
  export OPENAI_API_KEY=bench OPENAI_BASE_URL="$MOCK/v1" MODELROUTER_LOG=warn MODELROUTER_LISTEN=127.0.0.1:0 \
    MODELROUTER_BOOTSTRAP_KEY="$KEY" MODELROUTER_NATS_PREFIX="$FLEET_DB" MODELROUTER_EVENT_LOG=nats://127.0.0.1:4222 \
    MODELROUTER_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$FLEET_DB" \
    MODELROUTER_KEY_HASH_SECRET="bench-key-hash-secret-of-at-least-32-bytes"
}

# Starts the fleet mode as process $1 from binary $2: a scratch database and
# subject prefix, the ledger on core 1, credit for the gateway's account,
# the gateway on core 0; waits (bounded) for a 200; sets URL, PID, LEDGER_PID.
launch_fleet() {
  local name=$1 bin=$2
  FLEET_DB="bench_fleet_$$_${#FLEET_DBS[@]}"
  FLEET_DBS+=("$FLEET_DB")
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $FLEET_DB" >/dev/null
  (fleet_env; export MODELROUTER_DATA_DIR="$WORK/data-$name-ledger"; start "$name-ledger" taskset -c 1 "$bin" ledger >/dev/null)
  LEDGER_PID=$(cat "$WORK/$name-ledger.pid")
  (fleet_env; export MODELROUTER_DATA_DIR="$WORK/data-$name-ledger"
   "$bin" grant --account 00000000-0000-0000-0000-000000000000 --amount 1000000 >/dev/null)
  URL=$(fleet_env; export MODELROUTER_DATA_DIR="$WORK/data-$name"; start "$name" taskset -c 0 "$bin" gateway)
  PID=$(cat "$WORK/$name.pid")
  answers "$name"
}
rss_mb() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# Waits (at most 15 s) until the ledger's folded-events counter holds still
# for half a second: what came before has been folded.
settle() {
  local last=-1 now
  for _ in $(seq 30); do
    now=$(curl -s "$URL/metrics" | awk '/^modelrouter_ledger_events_folded_total/ {print $2}' || true)
    [ "$now" = "$last" ] && return
    last=$now
    sleep 0.5
  done
}

# Lag quantile $2 (0..1) from two /metrics texts ($1: before, $3: after).
lag_quantile() {
  python3 - "$1" "$2" "$3" <<'PY'
import re, sys
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'modelrouter_ledger_lag_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            out[float("inf") if m[1] == "+Inf" else float(m[1])] = int(m[2])
    return out
before, q, after = buckets(sys.argv[1]), float(sys.argv[2]), buckets(sys.argv[3])
edges = sorted(after)
counts = [after[e] - before.get(e, 0) for e in edges]
total = counts[-1] if counts else 0
if not total:
    print("-"); sys.exit()
rank, low, below = q * total, 0.0, 0
for edge, cum in zip(edges, counts):
    if cum >= rank:
        high = edge if edge != float("inf") else low * 2
        print(f"{(low + (high - low) * (rank - below) / max(cum - below, 1)) * 1000:.1f}")
        break
    low, below = edge, cum
PY
}

# One round for binary $1 named $2: prints, per mode, the columns of the header line below.
measure() {
  local bin=$1 name=$2 mode
  local modes=(gateway up)
  [ "$FLEET" = 1 ] && modes=(gateway fleet up)
  for mode in "${modes[@]}"; do
    LEDGER_PID=
    if [ "$mode" = fleet ]; then launch_fleet "$name-$mode" "$bin"; else launch "$name-$mode" "$bin" "$mode"; fi
    sleep 1
    local idle
    idle=$(rss_mb "$PID")
    BENCH_BODY="$WORK/body.json" BENCH_HEADERS="Authorization: Bearer $KEY" \
      taskset -c 1 wrk -t1 -c8 -d2s -s "$HERE/peers/chat.lua" "$URL/v1/chat/completions" >/dev/null
    # The warm-up's events fold before the steady run, so its lag is its own.
    settle
    local t0 t1 n o0 o1
    curl -s "$URL/metrics" >"$WORK/s0.txt" || true
    t0=$(ticks "$PID"); read -ra o0 < <(others)
    taskset -c 1 oha -z 20s -q 200 -c 16 --no-tui --output-format json -m POST -T application/json \
      -D "$WORK/body.json" -H "Authorization: Bearer $KEY" "$URL/v1/chat/completions" >"$WORK/oha.json" 2>/dev/null
    sleep 0.5
    t1=$(ticks "$PID"); read -ra o1 < <(others)
    curl -s "$URL/metrics" >"$WORK/s1.txt" || true
    n=$(python3 -c "import json,sys; r=json.load(open('$WORK/oha.json')); print(r['statusCodeDistribution'].get('200', 0))")
    local steady
    steady=$(python3 -c "print(f'{($t1 - $t0) * 10_000 / max($n, 1):.0f}')")
    local beside200="$(per_request "${o0[0]}" "${o1[0]}" "$n") $(per_request "${o0[1]}" "${o1[1]}" "$n")"
    taskset -c 1 oha -z 10s -q 1000 -c 64 --latency-correction --no-tui --output-format json -m POST -T application/json \
      -D "$WORK/body.json" -H "Authorization: Bearer $KEY" "$URL/v1/chat/completions" >"$WORK/oha1000.json" 2>/dev/null
    local at1000
    at1000=$(python3 -c "import json; p=json.load(open('$WORK/oha1000.json'))['latencyPercentiles']; print(f\"{p['p50'] * 1000:.2f} {p['p99'] * 1000:.2f}\")")
    curl -s "$URL/metrics" >"$WORK/m0.txt" || true
    t0=$(ticks "$PID"); read -ra o0 < <(others)
    BENCH_BODY="$WORK/body.json" BENCH_HEADERS="Authorization: Bearer $KEY" \
      taskset -c 1 wrk -t1 -c64 -d10s -s "$HERE/peers/chat.lua" "$URL/v1/chat/completions" >"$WORK/wrk.txt"
    sleep 1
    t1=$(ticks "$PID"); read -ra o1 < <(others)
    curl -s "$URL/metrics" >"$WORK/m1.txt" || true
    local loaded
    loaded=$(rss_mb "$PID")
    local rps req bad sat p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    read -r req bad < <(awk -F'[= ]' '/^requests=/ {print $2, $4 + $6}' "$WORK/wrk.txt")
    sat=$(python3 -c "print(f'{($t1 - $t0) * 10_000 / max($req - $bad, 1):.0f}')")
    local besidesat="$(per_request "${o0[0]}" "${o1[0]}" "$((req - bad))") $(per_request "${o0[1]}" "${o1[1]}" "$((req - bad))")"
    p50=$(lag_quantile "$WORK/m0.txt" 0.5 "$WORK/m1.txt")
    p99=$(lag_quantile "$WORK/m0.txt" 0.99 "$WORK/m1.txt")
    echo "$name $mode $steady $sat $rps $bad $p50 $p99 $idle $loaded $(lag_quantile "$WORK/s0.txt" 0.5 "$WORK/s1.txt") $(lag_quantile "$WORK/s0.txt" 0.99 "$WORK/s1.txt") $at1000 $beside200 $besidesat"
    stop "$name-$mode"
    if [ -n "$LEDGER_PID" ]; then
      stop "$name-$mode-ledger"
      drop_fleet "$FLEET_DB"
    fi
  done
}

echo "binary mode cpu_us_per_request_at_200 cpu_us_per_request_at_saturation rps_at_saturation errors lag_p50_ms lag_p99_ms rss_idle_mb rss_loaded_mb lag_p50_ms_at_200 lag_p99_ms_at_200 p50_ms_at_1000 p99_ms_at_1000 nats_cpu_us_at_200 ledger_cpu_us_at_200 nats_cpu_us_at_saturation ledger_cpu_us_at_saturation"
for _ in $(seq "$ROUNDS"); do
  [ -n "${BASE_BIN:-}" ] && measure "$BASE_BIN" base
  measure "$BIN" head
done

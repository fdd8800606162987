#!/usr/bin/env bash
# Publish cost per request, counted in CPU instructions rather than seconds:
# the same gateway binary serves the same requests with and without usage
# events, each under callgrind, and the instructions it executed while
# serving them are compared. Instruction counts do not depend on what else
# this shared machine is doing, so the ratio is repeatable where the
# wall-clock bench (run.sh) moves by ±20% between identical runs.
#   MODELROUTER_BIN  the release binary (set by `make bench`)
#   BENCH_REQUESTS   requests per measured run (default 2000)
#   BENCH_KEEP       a directory to keep the two callgrind profiles in
# Callgrind runs the gateway ~50× slower, so its usage publisher batches fewer
# events per append than at full speed: the events figure is an upper bound.
set -euo pipefail
BIN=${MODELROUTER_BIN:?set MODELROUTER_BIN}
REQUESTS=${BENCH_REQUESTS:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$HERE/chat.lua" >"$WORK/body.json"

SIM=$(export MODELROUTER_SIM_CHUNK_DELAY_MS=0; start sim "$BIN" simulator --listen 127.0.0.1:0)
NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/sbin/nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >/dev/null 2>&1 &
echo $! >"$WORK/nats.pid"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done

# Starts the gateway `name` under callgrind (counting off until zeroed) and
# waits, bounded, for its URL.
start_counted() {
  local name=$1
  (unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY
   export OPENAI_API_KEY=sim-key OPENAI_BASE_URL="$SIM/openai/v1" MODELROUTER_LOG=warn \
     MODELROUTER_LISTEN=127.0.0.1:0 MODELROUTER_DATA_DIR="$WORK/data-$name" MODELROUTER_BOOTSTRAP_KEY="$KEY"
   exec valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.callgrind" "$BIN" gateway) \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  echo $! >"$WORK/$name.pid"
  for _ in $(seq 600); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/$name.out" | head -1 || true)
    [ -n "$url" ] && { echo "$url"; return; }
    sleep 0.2
  done
  echo "$name did not start:" >&2; tail -20 "$WORK/$name.err" >&2; exit 1
}

# Sends $2 requests, 8 at a time over keep-alive connections, to the gateway
# at $1; prints how many did not get a 200. The client's speed does not
# matter here: only the gateway's instructions are counted.
send() {
  python3 - "$1" "$2" "$KEY" "$WORK/body.json" <<'PY'
import http.client, sys, threading, urllib.parse
url, n, key, body = sys.argv[1], int(sys.argv[2]), sys.argv[3], open(sys.argv[4], "rb").read()
host = urllib.parse.urlparse(url)
bad = []
def worker(count):
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    for _ in range(count):
        conn.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = conn.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
threads = [threading.Thread(target=worker, args=(n // 8 + (i < n % 8),)) for i in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print(len(bad))
PY
}

# Warms up, zeroes the counters, sends REQUESTS requests and prints the
# instructions the gateway executed meanwhile and the non-200 count.
count() {
  local name=$1 url=$2 pid
  pid=$(cat "$WORK/$name.pid")
  send "$url" 200 >/dev/null
  sleep 0.5
  callgrind_control -z "$pid" >/dev/null
  local bad ir
  bad=$(send "$url" "$REQUESTS")
  sleep 0.5   # the last linger and append of the usage publisher
  rm -f "$WORK/$name.callgrind"*
  callgrind_control -d "$pid" >/dev/null
  local dump
  dump=$(ls "$WORK/$name.callgrind"* | tail -1)
  ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
  # BENCH_KEEP=dir keeps the profiles, for callgrind_annotate.
  [ -n "${BENCH_KEEP:-}" ] && mkdir -p "$BENCH_KEEP" && cp "$dump" "$BENCH_KEEP/$name.callgrind"
  echo "$ir $bad"
}

GW=$(start_counted plain)
read -r PLAIN_IR PLAIN_BAD < <(count plain "$GW")
stop plain

export MODELROUTER_EVENT_LOG="nats://127.0.0.1:$NATS_PORT" MODELROUTER_NATS_PREFIX=bench
(export MODELROUTER_DATA_DIR="$WORK/ledger" MODELROUTER_LOG=warn; "$BIN" ledger >"$WORK/ledger.out" 2>"$WORK/ledger.err" & echo $! >"$WORK/ledger.pid")
MODELROUTER_DATA_DIR="$WORK/ledger" "$BIN" grant --account 00000000-0000-0000-0000-000000000000 --amount 1000000 >/dev/null
GWE=$(start_counted events)
for _ in $(seq 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d @"$WORK/body.json" "$GWE/v1/chat/completions")
  [ "$code" = 200 ] && break; sleep 0.2
done
[ "$code" = 200 ] || { echo "the gateway never saw the granted credit" >&2; exit 1; }
stop ledger   # the ledger's own work is not the gateway's publish cost
read -r EVENTS_IR EVENTS_BAD < <(count events "$GWE")
stop events

[ "$PLAIN_BAD$EVENTS_BAD" = 00 ] || { echo "FAILED: non-200 responses ($PLAIN_BAD without events, $EVENTS_BAD with)" >&2; exit 1; }
echo
echo "Gateway instructions per request (callgrind, $REQUESTS requests, 8 concurrent):"
awk -v p="$PLAIN_IR" -v e="$EVENTS_IR" -v n="$REQUESTS" 'BEGIN {
  printf "  without events %.0f, with usage events to NATS %.0f: x%.3f (+%.0f per request)\n", p/n, e/n, e/p, (e-p)/n }'

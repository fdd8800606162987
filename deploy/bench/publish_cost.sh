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
#   BENCH_SCALED_LINGER_MS  the usage linger of the third run (default 150)
# Callgrind runs the gateway ~20× slower, so with the default 5 ms linger its
# usage publisher gathers fewer events per append than at full speed (4.2
# against 30-45 in the load test). The third run lengthens the linger to make
# the batches larger; both are printed, with the batch size each really got
# (calls of the log's batch append). At callgrind's pace a 150 ms linger
# gathers 6.3 events per append, still below the load test's size: raise
# BENCH_SCALED_LINGER_MS for larger batches.
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
  local name=$1 linger=${2:-5}
  (unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY
   export MODELROUTER_USAGE_LINGER_MS="$linger"
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
  # Appends made: calls of the log's batch append (0 without events).
  local batches
  batches=$(callgrind_annotate --tree=calling --threshold=100 "$dump" 2>/dev/null \
    | grep -o 'EventLog>::append_batch ([0-9,]*x)' | head -1 | grep -o '[0-9,]*x' | tr -d ',x' || true)
  echo "${batches:-0}" >"$WORK/$name.batches"
  # Instructions in the API-key check: HMAC-SHA256, which valgrind runs in
  # software where the CPU has SHA instructions natively.
  callgrind_annotate --inclusive=yes "$dump" 2>/dev/null \
    | awk '/gateway::keys::KeyRing::verify \[/ && !done { gsub(",", "", $1); print $1; done = 1 }' >"$WORK/$name.keycheck"
  # BENCH_KEEP=dir keeps the profiles, for callgrind_annotate.
  [ -n "${BENCH_KEEP:-}" ] && mkdir -p "$BENCH_KEEP" && cp "$dump" "$BENCH_KEEP/$name.callgrind"
  echo "$ir $bad"
}

# The same gateway natively, for its CPU time per request: user and system
# time from /proc over NATIVE_REQUESTS requests.
NATIVE_REQUESTS=${BENCH_NATIVE_REQUESTS:-20000}
GWN=$(unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY
  export OPENAI_API_KEY=sim-key OPENAI_BASE_URL="$SIM/openai/v1" MODELROUTER_LOG=warn \
    MODELROUTER_LISTEN=127.0.0.1:0 MODELROUTER_DATA_DIR="$WORK/data-native" MODELROUTER_BOOTSTRAP_KEY="$KEY"
  start native "$BIN" gateway)
send "$GWN" 2000 >/dev/null
read -r U0 S0 < <(awk '{ print $14, $15 }' "/proc/$(cat "$WORK/native.pid")/stat")
NATIVE_BAD=$(send "$GWN" "$NATIVE_REQUESTS")
read -r U1 S1 < <(awk '{ print $14, $15 }' "/proc/$(cat "$WORK/native.pid")/stat")
stop native
[ "$NATIVE_BAD" = 0 ] || { echo "FAILED: non-200 responses natively" >&2; exit 1; }

GW=$(start_counted plain)
read -r PLAIN_IR PLAIN_BAD < <(count plain "$GW")
stop plain

export MODELROUTER_EVENT_LOG="nats://127.0.0.1:$NATS_PORT" MODELROUTER_NATS_PREFIX=bench
(export MODELROUTER_DATA_DIR="$WORK/ledger" MODELROUTER_LOG=warn; "$BIN" ledger >"$WORK/ledger.out" 2>"$WORK/ledger.err" & echo $! >"$WORK/ledger.pid")
MODELROUTER_DATA_DIR="$WORK/ledger" "$BIN" grant --account 00000000-0000-0000-0000-000000000000 --amount 1000000 >/dev/null
# Waits (bounded) until the gateway at $1 sees the granted credit.
credited() {
  for _ in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
      -d @"$WORK/body.json" "$1/v1/chat/completions")
    [ "$code" = 200 ] && return; sleep 0.2
  done
  echo "the gateway never saw the granted credit" >&2; exit 1
}
GWE=$(start_counted events)
GWS=$(start_counted scaled "${BENCH_SCALED_LINGER_MS:-150}")
credited "$GWE"; credited "$GWS"
stop ledger   # the ledger's own work is not the gateway's publish cost
read -r EVENTS_IR EVENTS_BAD < <(count events "$GWE")
stop events
read -r SCALED_IR SCALED_BAD < <(count scaled "$GWS")
stop scaled

[ "$PLAIN_BAD$EVENTS_BAD$SCALED_BAD" = 000 ] || { echo "FAILED: non-200 responses" >&2; exit 1; }
echo
echo "Gateway instructions per request (callgrind, $REQUESTS requests, 8 concurrent):"
awk -v p="$PLAIN_IR" -v e="$EVENTS_IR" -v s="$SCALED_IR" -v n="$REQUESTS" \
    -v eb="$(cat "$WORK/events.batches")" -v sb="$(cat "$WORK/scaled.batches")" -v sl="${BENCH_SCALED_LINGER_MS:-150}" 'BEGIN {
  printf "  without events:                     %7.0f\n", p/n
  printf "  usage events, linger 5 ms:          %7.0f  x%.3f (+%.0f per request; %.1f events per append)\n", e/n, e/p, (e-p)/n, (eb > 0 ? (n+0)/eb : 0)
  printf "  usage events, linger %2d ms:         %7.0f  x%.3f (+%.0f per request; %.1f events per append)\n", sl, s/n, s/p, (s-p)/n, (sb > 0 ? (n+0)/sb : 0) }'
# Instructions per microsecond of the gateway's own user time, natively, turn
# the added instructions into time; against user + system time per request
# (the kernel's share of a proxied request is large and does not change).
# The key check's software SHA is left out of the rate (counted as free
# natively), which makes the rate lower and the events' time higher.
awk -v p="$PLAIN_IR" -v s="$SCALED_IR" -v e="$EVENTS_IR" -v n="$REQUESTS" -v nn="$NATIVE_REQUESTS" \
    -v k="$(cat "$WORK/plain.keycheck")" \
    -v u0="$U0" -v u1="$U1" -v s0="$S0" -v s1="$S1" -v tck="$(getconf CLK_TCK)" 'BEGIN {
  user = (u1-u0)*1e6/tck/nn; sys = (s1-s0)*1e6/tck/nn; rate = ((p-k)/n)/user
  printf "Natively, without events: %.1f us user + %.1f us system CPU per request (%.0f instructions per us of user time, key check excluded)\n", user, sys, rate
  printf "  added by usage events: %.2f us (linger 5 ms) / %.2f us (full-speed batches) = %.1f%% / %.1f%% of the gateway CPU per request\n", (e-p)/n/rate, (s-p)/n/rate, 100*(e-p)/n/rate/(user+sys), 100*(s-p)/n/rate/(user+sys) }'

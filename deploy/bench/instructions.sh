#!/usr/bin/env bash
# Instructions per request (callgrind) of one or more gateway binaries, each
# in turn behind the same simulator: whole and streamed chat, 1,000 requests
# from 8 keep-alive clients after 200 warm-up ones. Unlike req/s on this
# shared machine, the counts repeat within 0.1%, so a change to the request
# path is compared by running the base and the head binary in one call:
#   deploy/bench/instructions.sh SIMULATOR_BIN BASE_BIN HEAD_BIN
#   BENCH_REQUESTS  measured requests per load (default 1000)
set -euo pipefail
SIMBIN=$1; shift
REQ=${BENCH_REQUESTS:-1000}
source "$(dirname "$0")/lib.sh"
sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$(dirname "$0")/chat.lua" >"$WORK/body.json"
sed 's/"max_tokens":16,/"max_tokens":16,"stream":true,/' "$WORK/body.json" >"$WORK/stream.json"
SIM=$(export MODELROUTER_SIM_CHUNK_DELAY_MS=0; start sim "$SIMBIN" simulator --listen 127.0.0.1:0)
i=0
for BIN in "$@"; do
  i=$((i+1)); name=g$i
  (unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY
   export OPENAI_API_KEY=sim-key OPENAI_BASE_URL="$SIM/openai/v1" MODELROUTER_LOG=warn \
     MODELROUTER_LISTEN=127.0.0.1:0 MODELROUTER_DATA_DIR="$WORK/data-$name" MODELROUTER_BOOTSTRAP_KEY="$KEY"
   exec valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.cg" "$BIN" gateway) >"$WORK/$name.out" 2>"$WORK/$name.err" &
  echo $! >"$WORK/$name.pid"
  url=""; for _ in $(seq 600); do url=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/$name.out" | head -1 || true); [ -n "$url" ] && break; sleep 0.2; done
  pid=$(cat "$WORK/$name.pid")
  for kind in body stream; do
    send "$url" 200 "$WORK/$kind.json" >/dev/null; sleep 0.3
    callgrind_control -z "$pid" >/dev/null
    bad=$(send "$url" "$REQ" "$WORK/$kind.json")
    callgrind_control -d "$pid" >/dev/null; sleep 0.5
    ir=$(ls -t "$WORK"/$name.cg.* | head -1 | xargs callgrind_annotate 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
    echo "$BIN $kind: $((ir / REQ)) Ir/request (non-200: $bad)"
  done
  stop "$name"
done

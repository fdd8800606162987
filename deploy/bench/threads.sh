#!/usr/bin/env bash
# Where a request's CPU goes, thread by thread: each binary in turn runs
# MODE (`up` or `gateway`) pinned to core 0 against the Node mock
# (peers/mock.mjs) with the load on core 1, and the script prints each
# thread's CPU (user and system, from /proc/<pid>/task) per request at
# saturation (wrk, 64 connections). With THREADS_CALLGRIND=1 it prints
# instructions per request per thread instead (callgrind, 2,000 requests
# from 8 keep-alive clients after 200): those repeat run to run, except
# what batching moves between threads. Callgrind numbers the threads in
# the order they started; the CPU mode names them.
#   deploy/bench/threads.sh BIN [BIN ...]
#   THREADS_MODE       up (default) or gateway
#   THREADS_SECONDS    length of the saturation run (default 10)
#   THREADS_CALLGRIND  1 for instructions instead of CPU time
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 BIN [BIN ...]" >&2; exit 2; }
MODE=${THREADS_MODE:-up}
SECONDS_RUN=${THREADS_SECONDS:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
MOCK=$(start mock taskset -c 1 node "$HERE/peers/mock.mjs")
printf '{"model":"gpt-4.1-mini","max_tokens":16,"messages":[{"role":"user","content":"Summarise the benefits of routing LLM traffic through one gateway."}]}' >"$WORK/body.json"

# "tid name user_ticks system_ticks" for every thread of PID.
snapshot() {
  local t
  for t in /proc/"$PID"/task/*; do
    # Fields after the `)` closing the name: utime and stime are the 12th and 13th.
    echo "$(basename "$t") $(tr ' ' _ <"$t/comm") $(cut -d')' -f2 "$t/stat" | awk '{print $12, $13}')"
  done | sort
}

wrk_load() {
  BENCH_BODY="$WORK/body.json" BENCH_HEADERS="Authorization: Bearer $KEY" \
    taskset -c 1 wrk -t1 -c"$1" -d"$2"s -s "$HERE/peers/chat.lua" "$URL/v1/chat/completions"
}

# CPU µs per request per thread at saturation.
cpu_per_thread() {
  wrk_load 8 2 >/dev/null
  sleep 2
  snapshot >"$WORK/before"
  wrk_load 64 "$SECONDS_RUN" >"$WORK/wrk.txt"
  sleep 2
  snapshot >"$WORK/after"
  local requests bad
  read -r requests bad < <(awk -F'[= ]' '/^requests=/ {print $2, $4 + $6}' "$WORK/wrk.txt")
  echo "$1 $MODE: $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt") req/s, $requests requests ($bad failed); CPU µs an answered request:"
  [ "$requests" -gt "$bad" ] || { echo "  nothing answered" >&2; exit 1; }
  join "$WORK/before" "$WORK/after" | awk -v n="$((requests - bad))" '{
      u = ($6 - $3) * 10000 / n; s = ($7 - $4) * 10000 / n
      if (u + s >= 0.05) printf "  %-8s %-16s user %6.1f  system %6.1f  total %6.1f\n", $1, $2, u, s, u + s
      all += u + s
    } END { printf "  all threads %.1f\n", all }'
}

# Instructions per request per thread (callgrind).
instructions_per_thread() {
  send "$URL" 200 >/dev/null
  sleep 2
  callgrind_control -z "$PID" >/dev/null
  local bad
  bad=$(send "$URL" 2000)
  sleep 3
  callgrind_control -d "$PID" >/dev/null
  sleep 1
  echo "$1 $MODE: 2000 requests ($bad not 200); instructions a request:"
  local f
  for f in "$WORK/$1".cg.*-[0-9]*; do
    echo "$(grep -m1 '^thread:' "$f" | awk '{print $2}') $(grep -m1 '^summary:' "$f" | awk '{print $2}')"
  done | awk '$2 > 0 {printf "  thread %-3s %10.0f\n", $1, $2 / 2000; all += $2} END {printf "  all threads %.0f\n", all / 2000}'
}

i=0
for BIN in "$@"; do
  i=$((i + 1))
  if [ "${THREADS_CALLGRIND:-}" = 1 ]; then
    launch "b$i" "$BIN" "$MODE" valgrind --tool=callgrind --separate-threads=yes --dump-instr=no \
      --callgrind-out-file="$WORK/b$i.cg"
    instructions_per_thread "b$i"
  else
    launch "b$i" "$BIN" "$MODE"
    cpu_per_thread "b$i"
  fi
  stop "b$i"
done

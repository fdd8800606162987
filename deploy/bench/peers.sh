#!/usr/bin/env bash
# Model Router beside its peers, in one run on this machine: the same fast
# mock upstream (peers/mock.mjs) served directly, through nginx (one worker,
# a plain reverse proxy with upstream keep-alive: what relaying alone costs
# on this machine, the floor no gateway can go under), through Model Router
# `up` (usage events and the ledger on, as shipped), through Portkey's
# gateway and through LiteLLM's proxy (one worker, no database). Each gateway runs
# pinned to core 0; the load generator and the mock share core 1. Every
# round starts each target afresh, in turn, so drift on this shared machine
# spreads over all of them; the summary gives medians and ranges.
#   MODELROUTER_BIN   the release binary (set by `make bench-peers`)
#   BENCH_PEERS_DIR   where the peers are installed (default ~/.cache/model-router/peers)
#   BENCH_ROUNDS      rounds (default 3)
#   BENCH_SECONDS     seconds per measured run (default 10)
#   BENCH_TARGETS     which targets, in order (default "direct nginx modelrouter portkey litellm")
# Per target: RSS idle (after start, before any request) and after load;
# req/s at saturation (wrk, 64 connections, one thread); CPU per request
# over that run (the gateway's own process tree, from /proc); p50/p90/p99
# at fixed rates (oha, 64 connections, latency correction) of 200 and 1,000
# req/s and 80% of its own saturation rate, each only if the target
# sustains it; streaming time to first byte (300 requests in a row); errors.
set -euo pipefail
BIN=${MODELROUTER_BIN:?set MODELROUTER_BIN}
PEERS=${BENCH_PEERS_DIR:-$HOME/.cache/model-router/peers}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-10}
TARGETS=${BENCH_TARGETS:-direct nginx modelrouter portkey litellm}
LITELLM_VERSION=1.108.7
PORTKEY_VERSION=1.15.2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
for tool in wrk oha node taskset nginx; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (make bench-tools)" >&2; exit 1; }
done

# The peers, in a scratch folder outside the project's own dependencies.
mkdir -p "$PEERS"
if [ ! -x "$PEERS/litellm/bin/litellm" ] || ! "$PEERS/litellm/bin/pip" show litellm 2>/dev/null | grep -qx "Version: $LITELLM_VERSION"; then
  python3 -m venv "$PEERS/litellm"
  "$PEERS/litellm/bin/pip" install -q --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
fi
PORTKEY_JS="$PEERS/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
if ! grep -q "\"version\": \"$PORTKEY_VERSION\"" "$PEERS/portkey/node_modules/@portkey-ai/gateway/package.json" 2>/dev/null; then
  mkdir -p "$PEERS/portkey"
  (cd "$PEERS/portkey" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install -q --no-audit --no-fund "@portkey-ai/gateway@$PORTKEY_VERSION" >/dev/null)
fi

MOCK=$(start mock taskset -c 1 node "$HERE/peers/mock.mjs")
# LiteLLM refuses to start without a master key (it would accept any caller).
LITELLM_KEY="sk-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.2; done
  echo "nothing listens on $1" >&2; exit 1
}
body() { # $1: stream (true/false)
  printf '{"model":"gpt-4.1-mini","max_tokens":16,"stream":%s%s,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the benefits of routing LLM traffic through one gateway."}]}' \
    "$1" "$([ "$1" = true ] && echo ',"stream_options":{"include_usage":true}')"
}
body false >"$WORK/body.json"
body true >"$WORK/stream.json"

# Starts target $1 pinned to core 0; sets URL (the chat completions URL),
# HEADERS ("name: value|…") and PID (empty for direct).
start_target() {
  local port
  HEADERS="" PID=""
  case $1 in
    direct) URL="$MOCK/v1/chat/completions" ;;
    modelrouter)
      rm -rf "$WORK/mr"
      local base
      base=$(unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY GEMINI_API_KEY ANTHROPIC_API_KEY AWS_ACCESS_KEY_ID
        export OPENAI_API_KEY=bench OPENAI_BASE_URL="$MOCK/v1" MODELROUTER_LOG=warn MODELROUTER_LISTEN=127.0.0.1:0 \
          MODELROUTER_DATA_DIR="$WORK/mr" MODELROUTER_BOOTSTRAP_KEY="$KEY" MODELROUTER_DEMO_CREDITS=1000000
        start modelrouter taskset -c 0 "$BIN" up)
      URL="$base/v1/chat/completions" HEADERS="Authorization: Bearer $KEY" PID=$(cat "$WORK/modelrouter.pid")
      ;;
    nginx)
      port=$(free_port)
      mkdir -p "$WORK/nginx"
      # Buffering off, so a stream's first byte is passed on as it arrives.
      cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  upstream mock { server ${MOCK#http://}; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF
      taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.out" 2>"$WORK/nginx.err" &
      echo $! >"$WORK/nginx.pid"
      wait_port "$port"
      URL="http://127.0.0.1:$port/v1/chat/completions" PID=$(cat "$WORK/nginx.pid")
      ;;
    portkey)
      port=$(free_port)
      taskset -c 0 node "$PORTKEY_JS" --port="$port" --headless >"$WORK/portkey.out" 2>"$WORK/portkey.err" &
      echo $! >"$WORK/portkey.pid"
      wait_port "$port"
      URL="http://127.0.0.1:$port/v1/chat/completions" PID=$(cat "$WORK/portkey.pid")
      HEADERS="Authorization: Bearer sk-bench|x-portkey-provider: openai|x-portkey-custom-host: $MOCK/v1"
      ;;
    litellm)
      port=$(free_port)
      cat >"$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4.1-mini
    litellm_params:
      model: openai/gpt-4.1-mini
      api_base: $MOCK/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
general_settings:
  master_key: $LITELLM_KEY
YAML
      LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
        taskset -c 0 "$PEERS/litellm/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$port" --num_workers 1 \
        >"$WORK/litellm.out" 2>"$WORK/litellm.err" &
      echo $! >"$WORK/litellm.pid"
      wait_port "$port"
      URL="http://127.0.0.1:$port/v1/chat/completions" PID=$(cat "$WORK/litellm.pid")
      HEADERS="Authorization: Bearer $LITELLM_KEY"
      ;;
  esac
  header_args
  local code
  for _ in $(seq 100); do
    code=$(curl -s -o "$WORK/first.json" -w '%{http_code}' -H 'Content-Type: application/json' "${H_ARGS[@]}" \
      --data-binary @"$WORK/body.json" "$URL" || true)
    [ "$code" = 200 ] && return
    sleep 0.2
  done
  echo "$1 never answered 200 (last: $code): $(head -c 300 "$WORK/first.json")" >&2
  exit 1
}

# H_ARGS: HEADERS as -H arguments; H_LIST: as bare "name: value" words.
header_args() {
  local h hs=()
  H_ARGS=() H_LIST=()
  [ -n "$HEADERS" ] && IFS='|' read -ra hs <<<"$HEADERS"
  for h in "${hs[@]}"; do H_ARGS+=(-H "$h"); H_LIST+=("$h"); done
}

# The process tree of $1 (the process and its descendants).
tree() { local p; echo "$1"; for p in $(pgrep -P "$1" || true); do tree "$p"; done; }
cpu_ticks() { local t=0 p; for p in $(tree "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
rss_mb() { local k=0 p; for p in $(tree "$1"); do k=$((k + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $((k / 1024)); }

# wrk at saturation: prints "rps requests errors".
saturate() {
  local args=(-t1 -c64 -s "$HERE/peers/chat.lua" "$URL")
  BENCH_BODY="$WORK/body.json" BENCH_HEADERS="$HEADERS" taskset -c 1 wrk -d3s "${args[@]}" >/dev/null
  BENCH_BODY="$WORK/body.json" BENCH_HEADERS="$HEADERS" taskset -c 1 wrk -d"${SECS}s" "${args[@]}" >"$WORK/wrk.txt"
  awk '/Requests\/sec/ {rps=$2} /^requests=/ {split($0, f, /[= ]/); req=f[2]; err=f[4]+f[6]} END {print rps, req, err}' "$WORK/wrk.txt"
}

# oha at a fixed rate $1: prints "p50 p90 p99 errors" in ms.
at_rate() {
  taskset -c 1 oha -z "${SECS}s" -q "$1" -c 64 --latency-correction --no-tui --output-format json \
    -m POST -T application/json -D "$WORK/body.json" "${H_ARGS[@]}" "$URL" >"$WORK/oha.json" 2>/dev/null || true
  python3 - "$WORK/oha.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
# Requests still in flight when the run's time is up are cut by oha itself, not failed.
errors = {k: v for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k}
bad = sum(v for k, v in codes.items() if k != "200") + sum(errors.values())
print(f'{p["p50"]*1000:.3f} {p["p90"]*1000:.3f} {p["p99"]*1000:.3f} {bad}')
PY
}

# Streaming time to first byte: prints "p50_ms errors".
ttfb() {
  taskset -c 1 node "$HERE/peers/ttfb.mjs" "$URL" 300 "$WORK/stream.json" "${H_LIST[@]}" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("%s %d" % ("-" if r["p50"] is None else "%.3f" % r["p50"], r["errors"]))'
}

RESULTS="$WORK/results.txt"
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    start_target "$target"
    idle=-; [ -n "$PID" ] && { sleep 2; idle=$(rss_mb "$PID"); }
    before=0; [ -n "$PID" ] && before=$(cpu_ticks "$PID")
    read -r rps requests errors < <(saturate)
    cpu=-
    if [ -n "$PID" ]; then
      after=$(cpu_ticks "$PID")
      # Warm-up and measured run both count (the warm-up's requests are estimated at the same rate).
      cpu=$(python3 -c "print(f'{($after - $before) * 10_000 / ($requests * (1 + 3 / $SECS)):.0f}')")
    fi
    for rate in 200 1000 sustained; do
      r=$rate; [ "$rate" = sustained ] && r=$(python3 -c "print(int($rps * 0.8))")
      if python3 -c "import sys; sys.exit(0 if $r <= $rps * 0.9 else 1)"; then
        echo "$round $target rate_$rate $r $(at_rate "$r")" >>"$RESULTS"
      else
        echo "$round $target rate_$rate $r - - - -" >>"$RESULTS"
      fi
    done
    loaded=-; [ -n "$PID" ] && loaded=$(rss_mb "$PID")
    echo "$round $target summary $rps $requests $errors $cpu $idle $loaded $(ttfb)" >>"$RESULTS"
    tail -4 "$RESULTS" | sed 's/^/  /' >&2
    [ -n "$PID" ] && stop "$target"
  done
done
python3 "$HERE/peers/summary.py" "$RESULTS" "$TARGETS"

#!/usr/bin/env bash
# Outage drill: Cerebras stops answering (every request hangs) while clients
# send economy traffic with the default `prefer` (balanced: Cerebras's
# qwen-3-235b and llama3.1-8b lead, both free and fast).
# The same fixed-rate load runs through a gateway with circuit breakers and
# through one without, and prints failed requests and latency for both.
#   MODELROUTER_BIN   the release binary (set by `make bench`)
#   OUTAGE_SECONDS    seconds per run (default 120)
#   OUTAGE_RATE       requests per second (default 50)
#   OUTAGE_TIMEOUT_MS Cerebras's first-byte timeout (default 10000)
set -euo pipefail
BIN=${MODELROUTER_BIN:?set MODELROUTER_BIN}
SECONDS_PER_RUN=${OUTAGE_SECONDS:-120}
RATE=${OUTAGE_RATE:-50}
TIMEOUT_MS=${OUTAGE_TIMEOUT_MS:-10000}
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
SIM=$(export MODELROUTER_SIM_CHUNK_DELAY_MS=0; start sim "$BIN" simulator --listen 127.0.0.1:0)
curl -sf -X POST "$SIM/_sim/faults" -H 'content-type: application/json' \
  -d '{"provider": "cerebras", "latency_ms": 600000}'
echo '{"model":"economy","max_tokens":16,"messages":[{"role":"user","content":"Is the router up?"}]}' >"$WORK/body.json"

# Prints "requests failed unanswered hung p50 p90 p99" for one fixed-rate run through a gateway
# whose breakers are on ($1 = true) or off.
drill() {
  cat >"$WORK/config.toml" <<TOML
[gateway.breaker]
enabled = $1
[gateway.providers.cerebras]
first_byte_timeout_ms = $TIMEOUT_MS
TOML
  local gw
  gw=$(export MODELROUTER_CONFIG="$WORK/config.toml" MODELROUTER_LOG=error \
      OPENAI_API_KEY=sim-key OPENAI_BASE_URL="$SIM/openai/v1" XAI_API_KEY=sim-key XAI_BASE_URL="$SIM/xai/v1" \
      GROQ_API_KEY=sim-key GROQ_BASE_URL="$SIM/groq/openai/v1" CEREBRAS_API_KEY=sim-key CEREBRAS_BASE_URL="$SIM/cerebras/v1" \
      MODELROUTER_LISTEN=127.0.0.1:0 MODELROUTER_DATA_DIR="$WORK/data-$1" MODELROUTER_BOOTSTRAP_KEY="$KEY"
    start gw "$BIN" gateway)
  oha --no-tui -z "${SECONDS_PER_RUN}s" -c 2000 -q "$RATE" --latency-correction -m POST -T application/json \
    -H "Authorization: Bearer $KEY" -D "$WORK/body.json" --output-format json "$gw/v1/chat/completions" >"$WORK/oha.json"
  stop gw
  python3 - "$WORK/oha.json" "$TIMEOUT_MS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
timeout_s = int(sys.argv[2]) / 1000
p = r["latencyPercentiles"]
errors = r.get("errorDistribution", {})
bad = sum(n for code, n in r["statusCodeDistribution"].items() if code != "200")
bad += sum(n for error, n in errors.items() if error != "aborted due to deadline")
# Requests still waiting when the run ends never got an answer.
unanswered = errors.get("aborted due to deadline", 0)
answered = sum(r["statusCodeDistribution"].values())
# Answered only after waiting out at least half a timeout: they sat in the hang.
slow = sum(n for upper, n in r["responseTimeHistogram"].items() if float(upper) >= timeout_s / 2)
ms = lambda q: "-" if p[q] is None else f'{p[q] * 1000:.1f}'
print(answered + unanswered, bad, unanswered, slow, ms("p50"), ms("p90"), ms("p99"))
PY
}

ON=$(drill true)
OFF=$(drill false)

echo
echo "Outage drill: Cerebras hangs, first-byte timeout ${TIMEOUT_MS} ms, $RATE req/s for ${SECONDS_PER_RUN}s (economy, balanced)"
echo "(unanswered: still waiting when the run ended; hung: answered after waiting at least half a timeout;"
echo " latency percentiles are of answered requests)"
row() { printf "  %-17s %9s %7s %11s %6s %9s %9s %9s\n" "$@"; }
row "" requests failed unanswered hung "p50 ms" "p90 ms" "p99 ms"
# shellcheck disable=SC2086
row "with breakers" $ON
# shellcheck disable=SC2086
row "without breakers" $OFF

#!/usr/bin/env bash
# Data-plane load test: the same request against the simulator directly and
# through the gateway (pinned to the same simulated model), in one run, so the
# ratios compare like with like on this shared machine.
#   MODELROUTER_BIN  the release binary (set by `make bench`)
#   BENCH_SECONDS    seconds per measured run (default 10)
#   BENCH_CONNS      concurrent connections (default 64)
#   BENCH_RATE       fixed request rate for the latency runs, req/s (default 3200)
# Throughput is measured at saturation (wrk, closed loop). Latency is measured
# at a fixed rate below saturation (oha -q), where it reflects service time
# rather than the queue that any saturated closed loop builds.
set -euo pipefail
BIN=${MODELROUTER_BIN:?set MODELROUTER_BIN}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-64}
RATE=${BENCH_RATE:-3200}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
SIM=$(export MODELROUTER_SIM_CHUNK_DELAY_MS=0; start sim "$BIN" simulator --listen 127.0.0.1:0)
GW=$(unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY
  export OPENAI_API_KEY=sim-key OPENAI_BASE_URL="$SIM/openai/v1" MODELROUTER_LOG=warn \
    MODELROUTER_LISTEN=127.0.0.1:0 MODELROUTER_DATA_DIR="$WORK/data" MODELROUTER_BOOTSTRAP_KEY="$KEY"
  start gw "$BIN" gateway)

# The same gateway publishing a usage event per request to NATS (a server of
# this run's own), with a ledger folding them and enforcing credit.
NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/sbin/nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >/dev/null 2>&1 &
echo $! >"$WORK/nats.pid"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
export MODELROUTER_EVENT_LOG="nats://127.0.0.1:$NATS_PORT" MODELROUTER_NATS_PREFIX=bench
(export MODELROUTER_DATA_DIR="$WORK/ledger" MODELROUTER_LOG=warn; "$BIN" ledger >"$WORK/ledger.out" 2>"$WORK/ledger.err" & echo $! >"$WORK/ledger.pid")
# Keys of a `modelrouter gateway` started without a control plane belong to the nil account.
MODELROUTER_DATA_DIR="$WORK/ledger" "$BIN" grant --account 00000000-0000-0000-0000-000000000000 --amount 1000000 >/dev/null
GWE=$(unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY
  export OPENAI_API_KEY=sim-key OPENAI_BASE_URL="$SIM/openai/v1" MODELROUTER_LOG=warn \
    MODELROUTER_LISTEN=127.0.0.1:0 MODELROUTER_DATA_DIR="$WORK/data-events" MODELROUTER_BOOTSTRAP_KEY="$KEY"
  start gwe "$BIN" gateway)
unset MODELROUTER_EVENT_LOG MODELROUTER_NATS_PREFIX
# Once the gateway sees the credit, stop the ledger: it runs on other machines
# in a deployment, and here it would take the 2 shared cores from the gateway.
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$HERE/chat.lua")" "$GWE/v1/chat/completions")
  [ "$code" = 200 ] && break; sleep 0.1
done
[ "$code" = 200 ] || { echo "the gateway never saw the granted credit" >&2; exit 1; }
stop ledger

# Prints "rps p50_ms p99_ms non_2xx" for one wrk run.
measure() {
  local url=$1 key=$2
  BENCH_KEY=$key wrk -t2 -c"$CONNS" -d2s -s "$HERE/chat.lua" "$url" >/dev/null   # warm-up
  BENCH_KEY=$key wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s "$HERE/chat.lua" "$url" >"$WORK/wrk.txt"
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps=$2 }
    $1=="50%" { p50=ms($2) }
    $1=="99%" { p99=ms($2) }
    /non_2xx=/ { split($0, a, "="); errors=a[2] }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, errors }' "$WORK/wrk.txt"
}

# Prints "p50_ms p99_ms non_200" for one fixed-rate oha run. oha spaces requests
# evenly from one dispatcher and corrects for coordinated omission.
latency() {
  local url=$1 key=$2
  oha --no-tui -z "${SECONDS_PER_RUN}s" -c "$CONNS" -q "$RATE" --latency-correction -m POST -T application/json \
    -H "Authorization: Bearer $key" -D "$WORK/body.json" --output-format json "$url" >"$WORK/oha.json"
  python3 - "$WORK/oha.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["latencyPercentiles"]
bad = sum(n for code, n in r["statusCodeDistribution"].items() if code != "200")
# Requests still in flight when the run's time is up are cut by oha itself, not failed.
bad += sum(n for error, n in r.get("errorDistribution", {}).items() if error != "aborted due to deadline")
print(f'{p["p50"] * 1000:.3f} {p["p99"] * 1000:.3f} {bad}')
PY
}
sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$HERE/chat.lua" >"$WORK/body.json"

# CPU seconds a process has used (user + system), from /proc.
cpu_s() { awk -v tck="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / tck }' "/proc/$(cat "$WORK/$1.pid")/stat"; }

read -r D_RPS D_P50 D_P99 D_ERR < <(measure "$SIM/openai/v1/chat/completions" sim-key)
G_CPU0=$(cpu_s gw)
read -r G_RPS G_P50 G_P99 G_ERR < <(measure "$GW/v1/chat/completions" "$KEY")
G_CPU1=$(cpu_s gw)
read -r DL_P50 DL_P99 DL_ERR < <(latency "$SIM/openai/v1/chat/completions" sim-key)
read -r GL_P50 GL_P99 GL_ERR < <(latency "$GW/v1/chat/completions" "$KEY")
E_CPU0=$(cpu_s gwe); N_CPU0=$(cpu_s nats)
read -r E_RPS E_P50 E_P99 E_ERR < <(measure "$GWE/v1/chat/completions" "$KEY")
E_CPU1=$(cpu_s gwe); N_CPU1=$(cpu_s nats)
# Consecutive runs of one gateway differ by more than the cost of events on
# this shared machine, so the events comparison also alternates: three more
# pairs, without and with, summed.
AB_PLAIN=0; AB_EVENTS=0; AB_PAIRS=""
for _ in 1 2 3; do
  read -r P_RPS _ _ P_ERR < <(measure "$GW/v1/chat/completions" "$KEY")
  read -r Q_RPS _ _ Q_ERR < <(measure "$GWE/v1/chat/completions" "$KEY")
  [ "$P_ERR$Q_ERR" = 00 ] || { echo "FAILED: errors in the alternating runs" >&2; exit 1; }
  AB_PLAIN=$((AB_PLAIN + P_RPS)); AB_EVENTS=$((AB_EVENTS + Q_RPS))
  AB_PAIRS="$AB_PAIRS $(awk -v p="$P_RPS" -v q="$Q_RPS" 'BEGIN { printf "%.2f", q/p }')"
done
read -r EL_P50 EL_P99 EL_ERR < <(latency "$GWE/v1/chat/completions" "$KEY")

echo
echo "Data plane, $CONNS connections, ${SECONDS_PER_RUN}s per run, $(nproc) cores shared by load generator, simulator and gateway"
echo "Saturation (wrk, closed loop):"
printf "  %-22s %10s %10s %10s %8s\n" "" "req/s" "p50 ms" "p99 ms" "non-2xx"
printf "  %-22s %10s %10s %10s %8s\n" "simulator direct" "$D_RPS" "$D_P50" "$D_P99" "$D_ERR"
printf "  %-22s %10s %10s %10s %8s\n" "through the gateway" "$G_RPS" "$G_P50" "$G_P99" "$G_ERR"
printf "  %-22s %10s %10s %10s %8s\n" "gateway + usage events" "$E_RPS" "$E_P50" "$E_P99" "$E_ERR"
echo "Fixed rate $RATE req/s (oha):"
printf "  %-22s %10s %10s %8s\n" "" "p50 ms" "p99 ms" "non-200"
printf "  %-22s %10s %10s %8s\n" "simulator direct" "$DL_P50" "$DL_P99" "$DL_ERR"
printf "  %-22s %10s %10s %8s\n" "through the gateway" "$GL_P50" "$GL_P99" "$GL_ERR"
printf "  %-22s %10s %10s %8s\n" "gateway + usage events" "$EL_P50" "$EL_P99" "$EL_ERR"
awk -v dr="$D_RPS" -v gr="$G_RPS" -v dp="$DL_P50" -v gp="$GL_P50" -v dq="$DL_P99" -v gq="$GL_P99" 'BEGIN {
  printf "Ratios: gateway/direct req/s at saturation %.2f; added at fixed rate: p50 %.3f ms, p99 %.3f ms\n", gr/dr, gp-dp, gq-dq }'
# Warm-up (2 s) and measured run both count: CPU over all their requests.
awk -v gr="$G_RPS" -v er="$E_RPS" -v gp="$GL_P50" -v ep="$EL_P50" -v s="$SECONDS_PER_RUN" \
    -v g0="$G_CPU0" -v g1="$G_CPU1" -v e0="$E_CPU0" -v e1="$E_CPU1" -v n0="$N_CPU0" -v n1="$N_CPU1" 'BEGIN {
  gu = (g1-g0)*1e6/(gr*(s+2)); eu = (e1-e0)*1e6/(er*(s+2)); nu = (n1-n0)*1e6/(er*(s+2))
  printf "Usage events: req/s with/without %.3f; p50 added at fixed rate %.3f ms\n", er/gr, ep-gp
  printf "Gateway CPU per request: %.1f us without events, %.1f us with (x%.3f); NATS server %.1f us per event\n", gu, eu, eu/gu, nu }'
awk -v p="$AB_PLAIN" -v q="$AB_EVENTS" -v pairs="$AB_PAIRS" 'BEGIN {
  printf "Usage events, three alternating pairs: req/s with/without %.3f (pairs:%s)\n", q/p, pairs }'
if [ "$D_ERR$G_ERR$DL_ERR$GL_ERR$E_ERR$EL_ERR" != 000000 ]; then echo "FAILED: error responses during the run" >&2; exit 1; fi

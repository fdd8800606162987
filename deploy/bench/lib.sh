# Shared by the bench scripts: a scratch directory whose processes are
# stopped on exit, a way to start one and learn its URL, and an API key.
# shellcheck shell=bash
WORK=$(mktemp -d)
cleanup() { for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# Starts a process in the background and waits (bounded) for its URL on stdout.
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  echo $! >"$WORK/$name.pid"
  for _ in $(seq 100); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/$name.out" | head -1 || true)
    [ -n "$url" ] && { echo "$url"; return; }
    sleep 0.1
  done
  echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}

# Stops a process started with `start`.
stop() { kill "$(cat "$WORK/$1.pid")"; wait "$(cat "$WORK/$1.pid")" 2>/dev/null || true; rm -f "$WORK/$1.pid"; }

KEY="mr_sk_$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)"

# Sends N chat requests (BODY, default $WORK/body.json) from 8 keep-alive
# clients to URL; prints how many were not 200.
send() {
  python3 - "$1" "$2" "$KEY" "${3:-$WORK/body.json}" <<'PY'
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

# Starts `$2 $3` (a Model Router binary and its mode) as process $1 against
# the mock upstream at $MOCK, under the command in $4… (default: pinned to
# core 0); waits (bounded) until a chat request in $WORK/body.json answers
# 200; sets URL and PID.
launch() {
  local name=$1 bin=$2 mode=$3
  shift 3
  [ $# -gt 0 ] || set -- taskset -c 0
  rm -rf "${WORK:?}/data-$name"
  URL=$(unset XAI_API_KEY GROQ_API_KEY CEREBRAS_API_KEY GEMINI_API_KEY ANTHROPIC_API_KEY AWS_ACCESS_KEY_ID MODELROUTER_EVENT_LOG
    export OPENAI_API_KEY=bench OPENAI_BASE_URL="$MOCK/v1" MODELROUTER_LOG=warn MODELROUTER_LISTEN=127.0.0.1:0 \
      MODELROUTER_DATA_DIR="$WORK/data-$name" MODELROUTER_BOOTSTRAP_KEY="$KEY" MODELROUTER_DEMO_CREDITS=1000000
    start "$name" "$@" "$bin" "$mode")
  PID=$(cat "$WORK/$name.pid")
  answers "$name"
}

# Waits (at most 60 s) until a chat request in $WORK/body.json to $URL
# answers 200; exits naming process $1 and the last status otherwise.
answers() {
  local code=
  for _ in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
      --data-binary @"$WORK/body.json" "$URL/v1/chat/completions" || true)
    [ "$code" = 200 ] && return
    sleep 0.2
  done
  echo "$1 never answered 200 (last $code)" >&2; exit 1
}

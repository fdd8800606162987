# Model Router: the two commands are `make run` and `make test`.
# Everything they need is installed here, idempotently.

SHELL      := /bin/bash
CARGO      ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
## The binary the benches measure (`--profile dist`, see Cargo.toml).
DIST_BIN    = $(TARGET_DIR)/dist/modelrouter
VENV       := .venv
PY         := $(VENV)/bin/python

## Clippy's lints, denied as errors, run inside the test build itself:
## clippy-driver compiles the workspace's crates (dependencies stay plain
## rustc), so the tree is built once instead of checked once for clippy and
## built again for the tests. Every `cargo test` below uses it, so they share
## one build. (`__CLIPPY_HACKERY__` separates clippy's arguments, as `cargo
## clippy` passes them.)
CLIPPY_DRIVER := $(shell rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
LINTED      = RUSTC_WORKSPACE_WRAPPER=$(CLIPPY_DRIVER) CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__ $(CARGO)

.PHONY: run test lint unit python-test python-deps browser-deps deploy-check deploy-deps drill bench bench-peers bench-tools backing-services

## The product: embedded mode on 127.0.0.1:8080 (simulator when no provider keys).
run:
	$(CARGO) run --release -p modelrouter -- up

## The whole suite: formatting, lints, Rust tests, official-SDK tests.
test: lint unit python-test deploy-check

## Formatting, and every target (tests and benches too) built with clippy's
## lints as errors. (Unused dependencies: test-support's `dependencies` test.)
lint:
	$(CARGO) fmt --all -- --check
	@test -x "$(CLIPPY_DRIVER)" || { echo "clippy-driver not found: rustup component add clippy" >&2; exit 1; }
	$(LINTED) test --workspace --all-targets --no-run

unit: backing-services
	$(LINTED) test --workspace

## PostgreSQL (127.0.0.1:5432) and NATS with JetStream (127.0.0.1:4222), which
## every machine runs; started here only if they are not answering.
backing-services:
	@(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@(exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null || start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
	@for i in $$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && exit 0; sleep 0.2; done; echo "PostgreSQL or NATS did not come up" >&2; exit 1

## The binary `cargo test --workspace` already built (same features and
## wrapper, so no second build of the tree; a no-op after `unit`).
python-test: python-deps browser-deps deploy-deps
	$(LINTED) test --workspace --no-run
	MODELROUTER_BIN=$(TARGET_DIR)/debug/modelrouter $(PY) -m pytest -q tests/python

python-deps: $(VENV)/.installed

## docker-compose.yml and deploy/k8s against the Compose specification and the
## Kubernetes schemas, offline (npm packages pinned in deploy/validate).
deploy-check: deploy-deps
	node deploy/validate/validate.mjs

deploy-deps: deploy/validate/node_modules/.installed

deploy/validate/node_modules/.installed: deploy/validate/package-lock.json
	npm ci --prefix deploy/validate --no-audit --no-fund --loglevel=error
	touch $@

## Debian's Chromium, which the dashboard's browser test drives through Playwright.
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

$(VENV)/.installed: tests/python/requirements.txt
	python3 -c 'import venv, ensurepip' 2>/dev/null || (apt-get update -q && apt-get install -y -q python3-venv)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
	touch $@

## The fleet drill at full size: 3 gateways, ledger and control plane on a NATS
## server of its own and PostgreSQL, under load through kill -9s, a NATS
## restart and a rolling restart; prints the figures the README quotes.
DRILL_CLIENTS  ?= 16
DRILL_PHASE_MS ?= 8000
drill: backing-services
	DRILL_CLIENTS=$(DRILL_CLIENTS) DRILL_PHASE_MS=$(DRILL_PHASE_MS) $(LINTED) test -p modelrouter --test drill -- --nocapture

## Load test: the simulator directly and through the gateway, an outage drill with and without
## circuit breakers, the usage-event publish cost in instructions (callgrind), `up` against the gateway alone and
## against a fleet gateway publishing to NATS (needs psql and NATS), `up`'s CPU thread by thread, and the criterion benches (context-window guard, stream translation, auto scoring, event decoding).
bench: bench-tools
	$(CARGO) build --profile dist -p modelrouter
	MODELROUTER_BIN=$(DIST_BIN) bash deploy/bench/run.sh
	MODELROUTER_BIN=$(DIST_BIN) bash deploy/bench/outage.sh
	MODELROUTER_BIN=$(DIST_BIN) bash deploy/bench/publish_cost.sh
	MODELROUTER_BIN=$(DIST_BIN) bash deploy/bench/embedded.sh
	bash deploy/bench/threads.sh $(DIST_BIN)
	$(CARGO) bench -p tokens --bench prompt_tokens
	$(CARGO) bench -p gateway --bench stream_translation
	$(CARGO) bench -p gateway --bench auto_score
	$(CARGO) bench -p gateway --bench embeddings
	$(CARGO) bench -p events --bench decode
	$(CARGO) bench -p ledger --bench fold
	$(CARGO) bench -p exporter --bench export
	$(CARGO) bench -p control-plane --bench request_log

## Model Router `up` beside LiteLLM's proxy and Portkey's gateway (installed into
## ~/.cache/model-router/peers, not the project's dependencies) and a direct
## baseline, against one fast mock upstream, each gateway pinned to one core.
bench-peers: bench-tools
	$(CARGO) build --profile dist -p modelrouter
	MODELROUTER_BIN=$(DIST_BIN) bash deploy/bench/peers.sh

bench-tools:
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	command -v valgrind >/dev/null || (apt-get update -q && apt-get install -y -q valgrind)
	command -v node >/dev/null || (apt-get update -q && apt-get install -y -q nodejs npm)
	command -v nginx >/dev/null || (apt-get update -q && apt-get install -y -q nginx-light)
	command -v oha >/dev/null || $(CARGO) install oha --locked --version 1.16.0

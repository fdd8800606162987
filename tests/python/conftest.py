"""Starts the real `modelrouter` binary for the SDK tests.

The binary path comes from MODELROUTER_BIN (set by `make test`). Each process
listens on 127.0.0.1:0 and is stopped, by PID, when the session ends.
"""

import os
import re
import secrets
import string
import subprocess
import tempfile
import threading

import socket

import pytest
from aiosmtpd.controller import Controller

BIN = os.environ.get("MODELROUTER_BIN", "target/debug/modelrouter")
STARTUP_LINES = 20


def _start(args, env_extra, until):
    env = {k: v for k, v in os.environ.items() if not (k.endswith("_API_KEY") or k.startswith("AWS_")) and k != "MODELROUTER_CONFIG"}
    env.update(env_extra)
    proc = subprocess.Popen([BIN, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for _ in range(STARTUP_LINES):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if until(line):
            break
    # Keep draining stdout so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    banner = "".join(lines)
    match = re.search(r"http://127\.0\.0\.1:\d+", banner)
    if proc.poll() is not None or not match:
        proc.kill()
        raise RuntimeError(f"{BIN} {' '.join(args)} did not start:\n{banner}")
    return proc, match.group(0), banner


class _Catcher:
    """Keeps every message the SMTP server receives: (recipients, text)."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture(scope="session")
def smtp():
    """A local SMTP server (aiosmtpd) on 127.0.0.1: its catcher, whose
    `messages` fill as mail arrives."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    catcher = _Catcher()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    catcher.url = f"smtp://127.0.0.1:{port}"
    try:
        yield catcher
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def up(smtp):
    """`modelrouter up` in simulator mode, with a known API key, sending
    alert email to the `smtp` catcher: (url, key, the operator's admin key
    printed on first start)."""
    key = "mr_sk_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    with tempfile.TemporaryDirectory() as data:
        env = {
            "MODELROUTER_LISTEN": "127.0.0.1:0",
            "MODELROUTER_DATA_DIR": data,
            "MODELROUTER_BOOTSTRAP_KEY": key,
            "MODELROUTER_SIM_CHUNK_DELAY_MS": "0",
            "MODELROUTER_SMTP_URL": smtp.url,
        }
        proc, url, banner = _start(["up"], env, lambda line: line.startswith("API key") or line.startswith("Using"))
        admin = re.search(r"mr_ak_[A-Za-z0-9]+", banner)
        try:
            yield url, key, admin.group(0) if admin else None
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def router(up):
    """The running `up`: (url, API key)."""
    url, key, _ = up
    return url, key


@pytest.fixture(scope="session")
def operator_key(up):
    """The operator's admin key: the simulator's controls under /sim/_sim."""
    return up[2]


@pytest.fixture(scope="session")
def simulator():
    """`modelrouter simulator` alone."""
    proc, url, _ = _start(["simulator", "--listen", "127.0.0.1:0"], {}, lambda line: "listening" in line)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def paying_up():
    """`modelrouter up` in simulator mode without demo credits, so every
    cent comes from a card payment through the simulated Stripe: (url, the
    operator's admin key, the Stripe webhook secret it generated)."""
    with tempfile.TemporaryDirectory() as data:
        env = {
            "MODELROUTER_LISTEN": "127.0.0.1:0",
            "MODELROUTER_DATA_DIR": data,
            "MODELROUTER_SIM_CHUNK_DELAY_MS": "0",
            "MODELROUTER_DEMO_CREDITS": "0",
            "MODELROUTER_RECHARGE_RETRY_S": "0",
        }
        proc, url, banner = _start(["up"], env, lambda line: line.startswith("API key") or line.startswith("Using"))
        admin = re.search(r"mr_ak_[A-Za-z0-9]+", banner)
        with open(os.path.join(data, "secrets", "stripe-webhook")) as f:
            webhook_secret = "whsec_" + f.read().strip()
        try:
            yield url, admin.group(0) if admin else None, webhook_secret
        finally:
            proc.terminate()
            proc.wait(timeout=10)

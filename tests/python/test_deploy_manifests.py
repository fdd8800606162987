"""The deployment files are checked offline by deploy/validate/validate.mjs
(the Compose specification's schema, the Kubernetes schemas, and the
references between objects). The shipped files pass; each kind of mistake a
deployer could make is caught, with a message naming it."""

import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VALIDATE = ROOT / "deploy" / "validate" / "validate.mjs"


def validate(*args):
    done = subprocess.run(["node", str(VALIDATE), *args], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_the_shipped_files_are_valid():
    code, out = validate()
    assert code == 0, out
    assert "2 Compose files" in out


@pytest.fixture
def copy(tmp_path):
    """A scratch copy of the deployment files, to break."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("node_modules"))
    return tmp_path


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


COMPOSE_BREAKS = [
    ("  GROQ_API_KEY: ${GROQ_API_KEY:-}\n", "", "does not pass GROQ_API_KEY"),
    ("    interval: 5s\n", "    interval: five seconds\n", "must match format \"duration\""),
    ("      - \"8080:8080\"\n", "      - { published: [8080] }\n", "compose spec"),
    ("      gateway-2: { condition: service_healthy }\n", "      gateway-3: { condition: service_healthy }\n", "depends on gateway-3"),
    ("      MODELROUTER_GATEWAY_ID: gateway-2\n", "      MODELROUTER_GATEWAY_ID: \"\"\n", "needs its own MODELROUTER_GATEWAY_ID"),
    ("    test: [\"CMD\", \"modelrouter\", \"probe\", \"readyz\"]\n", "    test: [\"CMD\", \"true\"]\n", "health check"),
]


@pytest.mark.parametrize("old,new,message", COMPOSE_BREAKS)
def test_a_broken_compose_file_is_refused(copy, old, new, message):
    compose = copy / "docker-compose.yml"
    edit(compose, old, new)
    code, out = validate("--compose", str(compose), "--k8s", str(copy / "deploy" / "k8s"))
    assert code == 1, out
    assert message in out, out


K8S_BREAKS = [
    ("gateway.yaml", "  replicas: 2\n", "  replicas: two\n", "Kubernetes schema"),
    ("gateway.yaml", "path: /readyz", "path: /health", "readiness probe must be GET /readyz"),
    ("control-plane.yaml", "  selector:\n    app: control-plane\n", "  selector:\n    app: control-plain\n", "selects no workload"),
    ("gateway.yaml", "    name: gateway\n  minReplicas", "    name: gateways\n  minReplicas", "StatefulSet/gateways, which does not exist"),
    ("ledger.yaml", "secretRef: { name: modelrouter }", "secretRef: { name: modelrouter-secrets }", "Secret modelrouter-secrets"),
    ("config.yaml", "  AWS_REGION: \"\"\n", "", "lacks AWS_REGION"),
]


@pytest.mark.parametrize("file,old,new,message", K8S_BREAKS)
def test_a_broken_manifest_is_refused(copy, file, old, new, message):
    edit(copy / "deploy" / "k8s" / file, old, new)
    code, out = validate("--compose", str(copy / "docker-compose.yml"), "--k8s", str(copy / "deploy" / "k8s"))
    assert code == 1, out
    assert message in out, out
    assert re.search(r"\d+ problems", out)


def test_the_nats_cluster_config_forms_a_jetstream_cluster(tmp_path):
    """deploy/nats/cluster.conf, as the compose file runs it (name and routes
    from the environment), on three local nodes: they route to each other and
    elect a JetStream meta leader."""
    import json
    import os
    import socket
    import time
    import urllib.request

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    nodes = [{"client": free_port(), "cluster": free_port(), "monitor": free_port()} for _ in range(3)]
    conf = (ROOT / "deploy" / "nats" / "cluster.conf").read_text()
    procs = []
    try:
        for i, node in enumerate(nodes):
            store = tmp_path / f"n{i}"
            config = tmp_path / f"n{i}.conf"
            config.write_text(conf.replace("/data/jetstream", str(store)))
            routes = ", ".join(f"nats-route://127.0.0.1:{n['cluster']}" for j, n in enumerate(nodes) if j != i)
            env = dict(os.environ, NATS_NAME=f"nats-{i + 1}", NATS_ROUTES=f"[{routes}]")
            procs.append(subprocess.Popen(
                ["/usr/sbin/nats-server", "-c", str(config), "-a", "127.0.0.1", "-p", str(node["client"]),
                 "-m", str(node["monitor"]), "--cluster", f"nats://127.0.0.1:{node['cluster']}"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def get(node, path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{node['monitor']}/{path}", timeout=2) as r:
                    return json.load(r)
            except OSError:
                return {}

        formed = False
        for _ in range(150):
            routes = [get(n, "routez").get("num_routes") for n in nodes]
            leader = get(nodes[0], "jsz").get("meta_cluster", {}).get("leader")
            if routes == [2, 2, 2] and leader:
                formed = True
                break
            time.sleep(0.2)
        assert formed, f"routes {routes}, meta leader {leader!r}"
        assert get(nodes[1], "varz")["server_name"] == "nats-2"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()

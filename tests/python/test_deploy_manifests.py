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

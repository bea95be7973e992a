"""The container build and the Kubernetes manifests agree with the server they deploy.

No container engine or cluster runs on these machines, so this checks what can be checked without
one: every flag the manifests and the Dockerfile pass exists in the real parsers, ports line up, the
probes name health services a real server registers and answers, shutdown fits the grace period,
and the image runs as a non-root user.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from grpc_health.v1 import health_pb2
from test_hardening import health

from onnxplain.client.cli import build_parser as client_parser
from onnxplain.server.app import LIVENESS
from onnxplain.server.cli import build_parser as server_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "tools" / "deploy"


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "deployment.yaml").read_text()))
    return {doc["kind"]: doc for doc in documents}


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_manifests_hold_a_deployment_service_autoscaler_and_disruption_budget(manifests):
    assert set(manifests) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    labels = manifests["Deployment"]["spec"]["selector"]["matchLabels"]
    assert manifests["Service"]["spec"]["selector"] == labels
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == manifests["Deployment"]["metadata"]["name"]


def test_the_container_flags_ports_and_probes_match_the_server(manifests):
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = server_parser().parse_args(container["args"])  # exits on an unknown flag
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == args.port and ports["metrics"] == args.metrics_port
    annotations = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(args.metrics_port)
    assert container["livenessProbe"]["grpc"] == {"port": args.port, "service": LIVENESS}
    assert container["startupProbe"]["grpc"]["service"] == LIVENESS
    assert container["readinessProbe"]["grpc"] == {"port": args.port}  # service "" = readiness
    service_port = manifests["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] == "grpc" and service_port["appProtocol"] == "kubernetes.io/h2c"
    assert pod["terminationGracePeriodSeconds"] >= args.drain_seconds + args.grace_seconds
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert args.models in mounts and "/tmp" in mounts and str(Path(args.token_file).parent) in mounts


def test_the_health_services_the_probes_name_are_answered(repository):
    from serving import ServerThread

    running = ServerThread(repository)
    try:
        assert health(running.address, LIVENESS) == health_pb2.HealthCheckResponse.SERVING
        assert health(running.address, "") == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop()


def test_the_dockerfile_runs_the_real_commands_as_a_non_root_user():
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    assert kinds.count("FROM") == 2  # build and runtime stages
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    command = json.loads(dict(instructions)["CMD"])
    assert entrypoint == ["onnxplain", "serve"]
    args = server_parser().parse_args(command)
    assert args.models == "/models" and str(args.port) in dict(instructions)["EXPOSE"].split()
    healthcheck = dict(instructions)["HEALTHCHECK"]
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3:].strip())
    assert probe[:2] == ["onnxplain", "health"]
    probe_args = client_parser().parse_args(probe[1:])
    assert probe_args.service == LIVENESS and probe_args.server.endswith(f":{args.port}")
    user = [value for kind, value in instructions if kind == "USER"][-1]
    assert user not in ("root", "0")
    copied = set()
    for kind, value in instructions:
        if kind == "COPY" and not value.startswith("--from"):
            for source in shlex.split(value)[:-1]:
                assert (ROOT / source).exists(), source
                copied.add(source)
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {folder.split("/")[0] for folder in setuptools["package-dir"].values()}
    assert packages <= copied, f"the image build misses {packages - copied}: pip install would fail"

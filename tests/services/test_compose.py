"""docker-compose.yml and Dockerfile: `docker compose config` where Docker works, a structure check otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_structure():
    doc = _compose()
    services = doc["services"]
    assert set(services) == {"redis", "server", "worker"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "ports" not in redis and redis["healthcheck"]["test"][-1] == "ping"
    server = services["server"]
    cmd = server["command"]
    assert cmd[0] == "serve" and "--redis-url=redis://redis:6379/0" in cmd and any(c.startswith("--job-root=") for c in cmd)
    probe = " ".join(server["healthcheck"]["test"])
    assert "HealthStub" in probe and "SERVING" in probe
    assert server["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "50051:50051" in server["ports"]
    worker = services["worker"]
    assert worker["command"][0] == "worker" and "--redis-url=redis://redis:6379/0" in worker["command"]
    for name in ("server", "worker"):  # the YAML anchor gave both the image and volumes
        assert services[name]["build"] == "." and any(v.endswith(":/data:ro") for v in services[name]["volumes"])
    assert "redis-data" in doc["volumes"]


def test_compose_commands_parse_with_the_real_cli():
    """The commands in the compose file are accepted by `avlearn`'s own parser."""
    from avlearn.cli import build_parser

    parser = build_parser()
    for name in ("server", "worker"):
        args = parser.parse_args(_compose()["services"][name]["command"])
        assert callable(args.func)


def test_server_healthcheck_probe_works(server):
    probe = _compose()["services"]["server"]["healthcheck"]["test"]
    code = probe[-1].replace("localhost:50051", server.address)
    import sys

    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0


def test_dockerfile_copies_every_package():
    text = (ROOT / "Dockerfile").read_text()
    for pkg in ("avlearn", "training", "indexer", "services", "clients"):
        assert f"COPY {pkg} " in text
    assert 'ENTRYPOINT ["avlearn"]' in text


def test_docker_compose_config():
    if shutil.which("docker") is None:
        pytest.skip("docker not installed")
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not available")
    token = ROOT / "runs" / "avlearn_token"
    proc = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"AVLEARN_TOKEN_FILE": str(token), "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert proc.returncode == 0, proc.stderr

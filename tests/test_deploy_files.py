"""Static checks of docker-compose.yml and docker/ (no Docker engine runs here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from facecloak.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service_and_their_dockerfiles_exist() -> None:
    services = _compose()["services"]
    assert {"redis", "minio", "gateway", "worker-gpu", "worker-cpu"} <= set(services)
    for name, svc in services.items():
        if "build" in svc:
            assert (ROOT / svc["build"]["dockerfile"]).is_file(), name


def test_gpu_worker_reserves_an_nvidia_device_and_uses_the_gpu_queue() -> None:
    svc = _compose()["services"]["worker-gpu"]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    text = (ROOT / svc["build"]["dockerfile"]).read_text()
    assert "onnxruntime-gpu" in text and '"--queues", "gpu"' in text


def test_commands_started_by_the_containers_exist_in_the_cli() -> None:
    parser = build_parser()
    for path in (ROOT / "docker").glob("*.Dockerfile"):
        cmd = next(line for line in path.read_text().splitlines() if line.startswith("CMD"))
        argv = yaml.safe_load(cmd[len("CMD") :])
        assert argv[0] == "facecloak", path.name
        parser.parse_args(argv[1:])  # exits (fails the test) on an unknown command or flag


def test_gateway_image_does_not_install_torch() -> None:
    lines = (ROOT / "docker" / "gateway.Dockerfile").read_text().splitlines()
    assert not [line for line in lines if "torch" in line and not line.startswith("#")]


def _copied_sources(dockerfile: str) -> list[str]:
    """The sources of every COPY line of a Dockerfile (``COPY a b ./`` -> ``[a, b]``)."""
    lines = (ROOT / "docker" / dockerfile).read_text().splitlines()
    return [src for line in lines if line.startswith("COPY ") for src in line.split()[1:-1]]


def test_gateway_image_copies_only_what_the_gateway_needs() -> None:
    sources = _copied_sources("gateway.Dockerfile")
    assert {"facecloak", "service", "pyproject.toml", "README.md", "openapi.yaml"} <= set(sources)
    assert not {"workers", "models", "."} & set(sources), sources


def test_worker_images_do_not_ship_the_gateway() -> None:
    for name in ("worker-cpu.Dockerfile", "worker-gpu.Dockerfile"):
        sources = _copied_sources(name)
        assert "workers" in sources and "models" in sources and "service" not in sources, name


def test_compose_workers_run_facecloak_worker() -> None:
    services = _compose()["services"]
    for name in ("worker-gpu", "worker-cpu"):
        assert services[name]["command"][:2] == ["facecloak", "worker"], name


_GATEWAY_ALONE = """
import importlib.abc, sys, tempfile
from pathlib import Path

BLOCKED = ("torch", "workers", "models")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"the gateway imported {name}")
        return None

sys.meta_path.insert(0, Block())
from fastapi.testclient import TestClient
from facecloak.settings import Settings
from service.app import create_app

with tempfile.TemporaryDirectory() as tmp:
    app = create_app(Settings(data_dir=Path(tmp), broker_url=None, storage_url=None))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    app.openapi()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
"""


def test_gateway_runs_without_torch_workers_or_models() -> None:
    """Creating and serving the app neither needs nor loads torch, ``workers`` or ``models``."""
    proc = subprocess.run(
        [sys.executable, "-c", _GATEWAY_ALONE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


_CREDENTIALS = (
    "FACECLOAK_API_KEYS",
    "FACECLOAK_WEBHOOK_SECRETS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
)


def _environments() -> list[dict[str, str]]:
    services = _compose()["services"]
    envs = [svc.get("environment") for svc in services.values()]
    return [env for env in envs if isinstance(env, dict)]


def test_compose_has_no_default_credentials_and_refuses_to_start_without_them() -> None:
    """Every credential is ``${VAR:?message}``: compose stops when it is unset; none has a
    default value, and no known default (key-a, change-me, facecloak-secret) is left."""
    text = (ROOT / "docker-compose.yml").read_text()
    for default in ("key-a", "key-b", "change-me", "facecloak-secret"):
        assert default not in text, default
    found = 0
    for env in _environments():
        for name, value in env.items():
            if name in _CREDENTIALS:
                found += 1
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (name, value)
    assert found >= 6
    assert "$$MINIO_ROOT_PASSWORD" in _compose()["services"]["minio-setup"]["entrypoint"]

"""Static checks of docker-compose.yml and docker/ (no Docker engine runs here)."""

from __future__ import annotations

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

"""``POST /v1/augmentations`` through the job machinery, refusals, and the CLI command."""
# ruff: noqa: F811 (pytest fixtures imported from tests.augment_fixtures)

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from torch import Tensor

from facecloak.cli import main
from service.app import create_app
from tests.augment_fixtures import FAST, NAMES, digits8, digits_onnx, subset  # noqa: F401
from tests.service_fixtures import A, settings, wait_job
from workers.jobs.augment import datasets
from workers.jobs.augment.handler import augment_handler


def test_an_augment_job_runs_and_returns_the_augmented_set(
    tmp_path: Path,
    digits8: tuple[Tensor, Tensor],
    digits_onnx: bytes,
) -> None:
    x, y = subset(digits8, 2)
    app = create_app(settings(tmp_path), handlers={"augment": augment_handler()}, background=False)
    with TestClient(app) as c:
        r = c.post(
            "/v1/augmentations",
            headers=A,
            files={"model": ("m.onnx", digits_onnx), "data": ("d.npz", datasets.to_npz(x, y))},
            data={"options": json.dumps(FAST), "mode": "adversarial"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["kind"] == "augment"
        done = wait_job(c, r.json()["id"], A)
        assert done["status"] == "succeeded", done
        report = done["items"][0]["report"]
        assert report["mode"] == "adversarial" and report["generated"] == 40
        result = c.get(f"/v1/jobs/{done['id']}/result", headers=A)
        with zipfile.ZipFile(io.BytesIO(result.content)) as archive:
            names = set(archive.namelist())
            assert {"augmented.npz", "manifest.json", "report.json", "vulnerability.csv"} <= names


def test_bad_submissions_are_refused(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path), handlers={}, background=False)
    with TestClient(app) as c:

        def post(files: dict, data: dict | None = None) -> tuple[int, str]:
            r = c.post("/v1/augmentations", headers=A, files=files, data=data or {})
            return r.status_code, r.json()["error"]["code"]

        zipped = b"PK\x03\x04zip"
        assert post({"data": ("d.zip", zipped)}) == (422, "missing_model")
        assert post({"model": ("m.onnx", b"x")}) == (422, "missing_data")
        assert post({"model": ("m.onnx", zipped), "data": ("d.zip", zipped)}) == (
            415, "unsupported_format",
        )  # fmt: skip
        assert post({"model": ("m.onnx", b"x"), "data": ("d.txt", b"abc")}) == (
            415, "unsupported_format",
        )  # fmt: skip
        files = {"model": ("m.onnx", b"x"), "data": ("d.zip", zipped)}
        assert post(files, {"mode": "nope"}) == (422, "invalid_options")
        assert post(files, {"options": json.dumps({"phi": [1.5]})}) == (422, "invalid_options")
        assert post(files, {"nope": "1"}) == (422, "unknown_field")


def test_cli_writes_the_result_files(
    tmp_path: Path, digits8: tuple[Tensor, Tensor], digits_onnx: bytes,
    capsys: object,
) -> None:  # fmt: skip
    x, y = subset(digits8, 2)
    data, model = tmp_path / "digits.zip", tmp_path / "m.onnx"
    data.write_bytes(datasets.to_zip(x, y, NAMES))
    model.write_bytes(digits_onnx)
    out = tmp_path / "out"
    torch.set_num_threads(1)
    args = [str(data), str(model), "--mode", "rebalance", "-o", str(out), "--threads", "1"]
    assert main(["augment", *args, "--steps", "3"]) == 0
    assert (out / "report.json").is_file() and (out / "manifest.json").is_file()
    assert len(list((out / "augmented").glob("*/*.png"))) == 20  # balanced already: nothing new
    assert main(["augment", str(model), str(model), "--mode", "amend", "-o", str(out)]) == 2

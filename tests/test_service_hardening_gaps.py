"""Gaps an audit found after the hardening round (each test failed on the code before):
decoded-size cap of the backdoor samples zip, route codes for too many files, the shared
webhook secret, the failed-key limiter's memory, documented error codes."""

from __future__ import annotations

import io
import logging
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from facecloak.contract.webhooks import shared_secret_tenants
from service.app import create_app
from service.errors import ApiError
from service.ratelimit import RateLimiter
from tests.helpers import REPO
from tests.service_fixtures import A, err, make_app, png, settings, submit
from workers.jobs.augment import data as augment_data
from workers.jobs.backdoor import bundle
from workers.jobs.backdoor.bundle import ScanInputError, ScanInputs, decode_samples

# -- 1. decoded-size cap of the backdoor samples --------------------------------------------


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, "PNG")
    return buf.getvalue()


def _declaring(width: int, height: int, mode: str = "RGB") -> bytes:
    """A 4x4 PNG whose header declares ``width`` x ``height``: tiny, and undecodable."""
    data = bytearray(_png(4, 4, mode))
    ihdr = bytearray(data[12:29])  # type + 13 bytes of IHDR
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, blob in files.items():
            archive.writestr(name, blob)
    return buf.getvalue()


def _scan_error(samples: bytes, name: str, shape: tuple[int, int, int]) -> ScanInputError:
    with pytest.raises(ScanInputError) as info:
        decode_samples(ScanInputs(b"", None, samples, name), shape)
    return info.value


def test_samples_declaring_more_than_the_decoded_cap_are_refused_before_decoding() -> None:
    header = _declaring(4096, 4096)
    assert Image.open(io.BytesIO(header)).size == (4096, 4096) and len(header) < 200
    # 3 x 4096x4096 RGB as float32 = 604 MB > 512 MiB; 1,025 of them would be ~200 GB.
    blob = _zip({f"s{i}.png": header for i in range(3)})
    error = _scan_error(blob, "samples.zip", (3, 4096, 4096))
    assert error.code == "samples_too_large", error
    assert "s2.png" in str(error) and str(bundle.MAX_DECODED_BYTES) in str(error)


def test_the_samples_cap_counts_declared_sizes_of_readable_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blob = _zip({f"s{i}.png": _png(16, 16, "L") for i in range(4)})  # 1 KiB each as float32
    monkeypatch.setattr(bundle, "MAX_DECODED_BYTES", 4 * 16 * 16 * 4)
    decoded = decode_samples(ScanInputs(b"", None, blob, "s.zip"), (1, 16, 16))
    assert decoded is not None and decoded.shape == (4, 1, 16, 16)
    monkeypatch.setattr(bundle, "MAX_DECODED_BYTES", 4 * 16 * 16 * 4 - 1)
    error = _scan_error(blob, "s.zip", (1, 16, 16))
    assert error.code == "samples_too_large" and "s3.png" in str(error), error


def test_npz_samples_past_the_decoded_cap_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, images=np.zeros((64, 1, 16, 16), np.uint8))  # compresses ~100:1
    monkeypatch.setattr(bundle, "MAX_DECODED_BYTES", 10_000)
    error = _scan_error(buf.getvalue(), "s.npz", (1, 16, 16))
    assert error.code == "samples_too_large", error


def test_too_many_sample_files_are_refused_before_any_is_decoded() -> None:
    blob = _zip({f"s{i}.png": _declaring(8, 8) for i in range(bundle.MAX_SAMPLES + 1)})
    error = _scan_error(blob, "s.zip", (3, 8, 8))
    assert error.code == "invalid_samples" and f"give 1 to {bundle.MAX_SAMPLES}" in str(error)


def test_the_augment_reader_checks_declared_sizes_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the same helper: the second 1024x1024 image (within MAX_PIXELS) is refused by the
    # budget, not decoded (decoding its header-only PNG would give corrupt_image)
    blob = _zip({"a/0.png": _png(1024, 1024, "L"), "b/0.png": _declaring(1024, 1024, "L")})
    monkeypatch.setattr(augment_data, "MAX_DECODED_BYTES", 1024 * 1024 * 4)
    with pytest.raises(augment_data.AugmentInputError) as info:
        augment_data.read_zip(blob, ["a", "b"], 1, 100)
    assert info.value.code == "too_large" and "b/0.png" in str(info.value), info.value


# -- 2. too many files: the route's own code at every count ---------------------------------


@pytest.mark.parametrize("count", [4, 5, 9, 40])
def test_protect_answers_too_many_photos_at_any_count_past_the_limit(
    tmp_path: Path, count: int
) -> None:
    with TestClient(make_app(tmp_path, max_batch_photos=3)) as c:
        r = submit(c, [(f"{i}.png", png(8, 8)) for i in range(count)])
        assert r.status_code == 413 and err(r) == "too_many_photos", r.text
        assert "more than 3 photos" in r.json()["error"]["message"]
        assert submit(c, [(f"{i}.png", png(8, 8)) for i in range(3)]).status_code == 202


@pytest.mark.parametrize("count", [3, 4, 12])
def test_verify_answers_too_many_files_past_two(tmp_path: Path, count: int) -> None:
    parts = [
        ("original", ("a.png", png(), "image/png")),
        ("protected", ("b.png", png(), "image/png")),
    ]
    parts += [("extra", (f"{i}.png", png(), "image/png")) for i in range(count - 2)]
    with TestClient(make_app(tmp_path)) as c:
        r = c.post("/v1/verify", files=parts, headers=A)
        assert r.status_code == 422 and err(r) == "too_many_files", r.text
        message = r.json()["error"]["message"]
        assert "at most 2 files" in message and "'original'" in message, message
        assert c.post("/v1/verify", files=parts[:2], headers=A).status_code == 200
    stored = tmp_path / "blobs" / "verify"
    assert not stored.exists() or not any(stored.rglob("*"))


@pytest.mark.parametrize(("route", "parts"), [("/v1/backdoor-scans", 3), ("/v1/augmentations", 2)])
def test_submit_routes_with_single_file_parts_answer_too_many_files(
    tmp_path: Path, route: str, parts: int
) -> None:
    with TestClient(make_app(tmp_path)) as c:
        for count in (parts + 1, parts + 2, 20):
            files = [
                ("model", (f"{i}.onnx", b"x", "application/octet-stream")) for i in range(count)
            ]
            r = c.post(route, files=files, headers=A)
            assert r.status_code == 422 and err(r) == "too_many_files", (count, r.text)
            assert f"at most {parts} files" in r.json()["error"]["message"]


# -- 3. the shared webhook secret never serves several tenants in distributed mode -----------

DISTRIBUTED = {"broker_url": "redis://127.0.0.1:1/0"}


def test_a_distributed_gateway_refuses_a_shared_secret_for_several_tenants(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, webhook_secret="shared", webhook_secrets="", **DISTRIBUTED)
    assert shared_secret_tenants(s, ["tenant-a", "tenant-b"]) == ["tenant-a", "tenant-b"]
    with pytest.raises(RuntimeError) as info:
        create_app(s, background=False)
    message = str(info.value)
    assert "FACECLOAK_WEBHOOK_SECRET" in message and "FACECLOAK_WEBHOOK_SECRETS" in message
    assert "tenant-a, tenant-b" in message and "forge" in message, message
    # one tenant with its own key: the shared key serves only the other, which is allowed
    one = settings(tmp_path, webhook_secret="shared", webhook_secrets="tenant-a:a", **DISTRIBUTED)
    assert shared_secret_tenants(one, ["tenant-a", "tenant-b"]) == ["tenant-b"]
    create_app(one, background=False)
    own = settings(tmp_path, webhook_secret="", webhook_secrets="tenant-a:a,tenant-b:b")
    create_app(own.model_copy(update=DISTRIBUTED), background=False)


def test_an_embedded_gateway_warns_about_a_shared_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.app"):
        create_app(
            settings(tmp_path, webhook_secret="shared", webhook_secrets=""), background=False
        )
    warned = [
        r.getMessage() for r in caplog.records if "FACECLOAK_WEBHOOK_SECRET" in r.getMessage()
    ]
    assert warned and "tenant-a, tenant-b" in warned[0] and "forge" in warned[0], caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.app"):
        create_app(settings(tmp_path, webhook_secrets="tenant-a:a,tenant-b:b"), background=False)
    assert not [r for r in caplog.records if "forge" in r.getMessage()], caplog.text


# -- 4. the failed-key limiter's memory is bounded -------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_per_address_buckets_are_pruned() -> None:
    clock = _Clock()
    limiter = RateLimiter(5, clock=clock)
    for i in range(5_000):
        limiter.check(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 5_000
    for _ in range(5):
        limiter.check("203.0.113.9")
    with pytest.raises(ApiError) as info:
        limiter.check("203.0.113.9")
    assert info.value.status == 429 and info.value.code == "rate_limited"
    clock.now += 5  # within the minute: every bucket is kept, the address still limited
    limiter.check("198.51.100.1")
    assert len(limiter) == 5_002
    with pytest.raises(ApiError):
        limiter.check("203.0.113.9")
    clock.now += 61  # every bucket has refilled: all dropped but the one just used
    limiter.check("198.51.100.2")
    assert len(limiter) == 1


def test_per_address_buckets_are_capped_least_recently_used_first() -> None:
    clock = _Clock()
    limiter = RateLimiter(2, max_keys=100, clock=clock)
    limiter.check("limited")
    limiter.check("limited")
    for i in range(1_000):
        clock.now += 0.001
        limiter.check(f"a{i}")
        if i % 10 == 0:
            with pytest.raises(ApiError):  # touched: stays among the most recent
                limiter.check("limited")
    assert len(limiter) == 100


def test_the_app_limits_wrong_keys_with_a_bounded_limiter(tmp_path: Path) -> None:
    app = make_app(tmp_path, auth_failures_per_minute=2)
    limiter = app.state.fc.auth_failures
    assert isinstance(limiter, RateLimiter) and limiter.max_keys <= 100_000
    with TestClient(app) as c:
        codes = [c.get("/v1/jobs", headers={"X-API-Key": f"x{i}"}) for i in range(3)]
        assert [r.status_code for r in codes] == [401, 401, 429]
        assert err(codes[0]) == "invalid_api_key" and err(codes[2]) == "rate_limited"
        assert c.get("/v1/jobs", headers=A).status_code == 200  # documented: a right key passes
    assert len(limiter) == 1


# -- 5. every error code the gateway answers is documented -----------------------------------

BRIEF_CODES = [
    "no_files",
    "missing_file",
    "missing_model",
    "missing_data",
    "invalid_files",
    "invalid_model",
    "corrupt_image",
    "zip_empty",
    "zip_not_alone",
    "zip_encrypted",
    "invalid_idempotency_key",
    "item_not_found",
    "captcha_not_found",
    "invalid_request",
    "method_not_allowed",
    "not_found",
    "too_many_files",
    "samples_too_large",
    "zip_too_large",
]


def _documented_codes() -> dict[str, str]:
    """code -> status of the code table in docs/service.md."""
    text = (REPO / "docs" / "service.md").read_text()
    table = text[text.index("| status | code | meaning |") :].split("\n\n")[0]
    codes: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        status, names = row.split("|")[1:3]
        for code in re.findall(r"`([a-z_]+)`", names):
            codes[code] = status.strip()
    return codes


def test_every_error_code_of_the_gateway_is_documented_with_its_status() -> None:
    documented = _documented_codes()
    for code in BRIEF_CODES:
        assert code in documented, code
    assert documented["too_many_files"] == "422" and documented["not_found"] == "404"
    assert documented["method_not_allowed"] == "405" and documented["zip_too_large"] == "413"
    raised = re.compile(r'ApiError\(\s*(\d{3}),\s*"([a-z_]+)"')
    for path in (REPO / "service").rglob("*.py"):
        for status, code in raised.findall(path.read_text()):
            assert documented.get(code) == status, (path.name, code, status)

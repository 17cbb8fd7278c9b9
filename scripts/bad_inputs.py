"""Bad input, measured: one request per class of bad input to every route that takes input.

    python scripts/bad_inputs.py --url http://127.0.0.1:8000 --api-key key-a \
        --other-api-key key-b --out bad-inputs.json

Targets a running gateway (loopback only, the check of ``scripts/load_test.py``); starts
nothing. Every input is generated in memory: non-images, truncated and zero-byte files,
a decompression-bomb PNG, zip slips, nested and bomb zips, oversized uploads (sent with a
``Content-Length`` and chunked, over a raw socket that stops at the answer), bad options,
malformed JSON, private callback URLs, a reused ``Idempotency-Key``, unknown and other
tenants' job ids. Where a readable photo is wanted beside a bad one (the base of the
truncated JPEGs, the original of a verify) the first JPEG of ``--faces`` is read at run time,
never written anywhere; without one a synthetic JPEG stands in.

For each (class, route) it records the expected and the answered status and error code; a
class passes when both match. Classes a gateway accepts at the door and refuses per item
(``stage: item``) are followed to the end of their job, and every job this run created is
deleted at the end. The gateway's limits are not readable over the API: ``--max-upload-bytes``
and the other limit flags must match its settings (default: the settings' defaults). With
``--other-api-key`` (a second tenant) the other-tenant classes run too. Exit status 1 when a
class fails or anything answers 5xx. 6 wrong API keys are sent per run: the gateway
answers 429 past ``FACECLOAK_AUTH_FAILURES_PER_MINUTE`` (20) per address.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import math
import select
import socket
import stat
import struct
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image

from facecloak.settings import Settings

HERE = Path(__file__).resolve().parent
FACES = HERE.parents[1] / "shared" / "data" / "faces" / "dev"


def _load_test_module() -> Any:
    """``scripts/load_test.py`` as a module: its loopback check and its cheap job options."""
    spec = importlib.util.spec_from_file_location("load_test", HERE / "load_test.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOAD_TEST = _load_test_module()
CHEAP: dict[str, str] = dict(LOAD_TEST.OPTIONS)
"""Options of the jobs this run lets through: the load test's shortest attack."""
TERMINAL = ("succeeded", "failed", "canceled")
ITEM_DONE = ("protected", "no_face", "failed", "canceled")
BOUNDARY = "facecloak-bad-inputs"
CHUNK = 256 * 1024
UNKNOWN_JOB = "job_" + "0" * 32


def _default(name: str) -> int:
    value = Settings.model_fields[name].default
    assert isinstance(value, int)
    return value


def loopback(url: str) -> bool:
    """``scripts/load_test.py``'s check: ``url`` names a loopback address."""
    return bool(LOAD_TEST.loopback(url))


# ---------------------------------------------------------------- generated inputs


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 120, 90)) -> bytes:
    """A small flat PNG (a valid photo without a face)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def noise_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A noise JPEG (stands in for a photo when ``--faces`` has none)."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def jpeg_header_cut(jpeg: bytes) -> bytes:
    """The JPEG cut before its frame header (SOF): the header itself is incomplete."""
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = jpeg.find(marker, 2)
        if at > 0:
            return jpeg[:at]
    return jpeg[:64]


def jpeg_scan_cut(jpeg: bytes) -> bytes:
    """The JPEG cut halfway through its scan data: the header is whole, the pixels are not."""
    start = jpeg.find(b"\xff\xda")
    return jpeg[: start + (len(jpeg) - start) // 2]


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (32, 32), 1).save(buf, "GIF")
    return buf.getvalue()


def animated_png() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(side: int) -> bytes:
    """A real decompression bomb: a 1-bit ``side`` x ``side`` PNG of zeros, a few KB packed."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def zip_of(entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]], deflate: bool = False) -> bytes:
    """A zip of (name or ZipInfo, bytes) entries."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buf.getvalue()


def symlink_zip() -> bytes:
    link = zipfile.ZipInfo("photo.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_of([(link, b"/etc/passwd")])


def encrypted_zip() -> bytes:
    """A zip whose one entry is flagged encrypted (bit 0 of the flags, set in the local and
    the central header: ``zipfile`` clears it when writing)."""
    data = bytearray(zip_of([("photo.png", png())]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.find(signature) + offset] |= 0x1
    return bytes(data)


def pickled_npz() -> bytes:
    """An npz whose ``x`` holds pickled objects (a loader with pickles on runs code)."""
    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    return buf.getvalue()


def tiny_onnx() -> bytes | None:
    """A valid 2-class ONNX classifier of [N,1,8,8] (None without the ``onnx`` package):
    lets bad data reach the checks that run after the model loads."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    weights = [
        numpy_helper.from_array(np.zeros((64, 2), np.float32), "w"),
        numpy_helper.from_array(np.zeros((2,), np.float32), "b"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "w", "b"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def first_jpeg(folder: Path) -> tuple[str, bytes] | None:
    """(name, bytes) of the first JPEG in ``folder``, read now, or None."""
    if not folder.is_dir():
        return None
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg"):
            return path.name, path.read_bytes()
    return None


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class Got:
    """What the gateway answered: status, the error's code (None without one), its message."""

    status: int
    code: str | None
    message: str = ""


def got(r: httpx.Response) -> Got:
    """The status and error code of an httpx answer."""
    return parse_answer(r.status_code, r.content)


def parse_answer(status: int, body: bytes) -> Got:
    """The error code and message of an ``{"error": {...}}`` body (None for anything else)."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return Got(status, None, body[:200].decode("utf-8", "replace"))
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return Got(status, None, body[:200].decode("utf-8", "replace"))
    return Got(status, error["code"], str(error.get("message", ""))[:300])


@dataclass(frozen=True)
class Case:
    """One class of bad input sent to one route, and the answer the API documents for it.

    ``stage`` ``item``: accepted (202) and refused as an item of the job; ``code`` is then
    the item's error code.
    """

    name: str
    route: str
    status: int
    code: str
    send: Callable[[], Got]
    stage: str = "request"


@dataclass
class Result:
    """A case's outcome, as written to the JSON."""

    name: str
    route: str
    stage: str
    expected_status: int
    expected_code: str
    status: int | None
    code: str | None
    passed: bool
    message: str = ""


@dataclass
class Limits:
    """The gateway's limits this run assumes (the settings of the target)."""

    max_upload_bytes: int
    max_request_bytes: int
    max_batch_photos: int
    max_steps: int
    max_pixels: int
    zip_max_entries: int


# ---------------------------------------------------------------- the probe


@dataclass
class Probe:
    """The target, its keys and limits, the inputs, and the jobs this run created."""

    url: str
    key: str
    other_key: str | None
    limits: Limits
    photo: tuple[str, bytes]
    timeout: float = 120.0
    onnx: bytes | None = None
    created: list[tuple[str, str]] = field(default_factory=list)
    _setup: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=self.timeout)
        parsed = urlparse(self.url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80

    def close(self) -> None:
        self.client.close()

    def h(self, key: str | None = "", extra: dict[str, str] | None = None) -> dict[str, str]:
        """Headers with ``key`` ("" for this run's key, None for none) and ``extra``."""
        headers = dict(extra or {})
        if key is not None:
            headers["X-API-Key"] = key or self.key
        return headers

    # -- plain requests

    def post(
        self,
        path: str,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        data: dict[str, str] | None = None,
        key: str | None = "",
        headers: dict[str, str] | None = None,
    ) -> Got:
        return got(
            self.client.post(path, files=files, data=data or {}, headers=self.h(key, headers))
        )

    def post_raw(self, path: str, body: bytes, ctype: str, key: str | None = "") -> Got:
        headers = self.h(key, {"Content-Type": ctype})
        return got(self.client.post(path, content=body, headers=headers))

    def post_form(self, path: str, fields: dict[str, str]) -> Got:
        """A multipart body of text fields only (httpx would send those url-encoded)."""
        body = "".join(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in fields.items()
        )
        ctype = f"multipart/form-data; boundary={BOUNDARY}"
        return self.post_raw(path, f"{body}--{BOUNDARY}--\r\n".encode(), ctype)

    def post_json(self, path: str, body: str, key: str | None = "") -> Got:
        return self.post_raw(path, body.encode(), "application/json", key)

    def get(self, path: str, key: str | None = "") -> Got:
        return got(self.client.get(path, headers=self.h(key)))

    def delete(self, path: str, key: str | None = "") -> Got:
        return got(self.client.delete(path, headers=self.h(key)))

    def protect(
        self,
        files: list[tuple[str, bytes]],
        data: dict[str, str] | None = None,
        key: str | None = "",
        headers: dict[str, str] | None = None,
    ) -> Got:
        parts = [("files", (n, b, "application/octet-stream")) for n, b in files]
        return self.post("/v1/protect", parts, {**CHEAP, **(data or {})}, key, headers)

    def verify(self, original: bytes, protected: bytes, data: dict[str, str] | None = None) -> Got:
        parts = [
            ("original", ("original.jpg", original, "application/octet-stream")),
            ("protected", ("protected.jpg", protected, "application/octet-stream")),
        ]
        return self.post("/v1/verify", parts, data)

    # -- streamed uploads over a raw socket

    def stream(
        self, path: str, parts: list[tuple[str, str, int]], chunked: bool, length: int | None = None
    ) -> Got:
        """POST a multipart body of ``parts`` (field, file name, size of zeros) over a raw
        socket, with its ``Content-Length`` (or ``length`` declared and nothing sent) or
        chunked; stops sending as soon as the gateway answers."""
        heads = [
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            for name, filename, _ in parts
        ]
        tail = f"--{BOUNDARY}--\r\n".encode()
        total = sum(len(h) + size + 2 for h, (_, _, size) in zip(heads, parts, strict=True))
        total += len(tail)

        def body() -> Iterator[bytes]:
            if length is not None:
                return
            zeros = b"\0" * CHUNK
            for head, (_, _, size) in zip(heads, parts, strict=True):
                yield head
                for start in range(0, size, CHUNK):
                    yield zeros[: min(CHUNK, size - start)]
                yield b"\r\n"
            yield tail

        head = [
            f"POST {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"X-API-Key: {self.key}",
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
            "Connection: close",
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length or total}",
        ]
        return self._raw("\r\n".join(head).encode() + b"\r\n\r\n", body(), chunked)

    def _raw(self, head: bytes, body: Iterator[bytes], chunked: bool) -> Got:
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
            sock.sendall(head)
            try:
                for piece in body:
                    if select.select([sock], [], [], 0)[0]:
                        break  # answered before the end of the body
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                else:
                    if chunked:
                        sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the gateway stopped reading: its answer says why
            return read_answer(sock)

    # -- jobs this run lets through

    def track(self, r: httpx.Response, key: str) -> str | None:
        if r.status_code == 202:
            job_id = str(r.json()["id"])
            self.created.append((job_id, key))
            return job_id
        return None

    def setup_job(self, tenant: str = "own") -> str:
        """A job of this tenant (or of ``other``): one flat PNG, no face, cheapest options;
        the same one for the whole run."""
        if tenant not in self._setup:
            key = self.key if tenant == "own" else self.other_key
            assert key is not None
            r = self.client.post(
                "/v1/protect",
                files=[("files", ("setup.png", png(), "image/png"))],
                data=CHEAP,
                headers={"X-API-Key": key, "Idempotency-Key": f"bad-inputs-{time.time_ns()}"},
            )
            job_id = self.track(r, key)
            if job_id is None:
                raise SystemExit(f"bad_inputs: the setup job was refused: {r.status_code} {r.text}")
            self._setup[tenant] = job_id
            self._setup[f"{tenant}-key"] = r.request.headers["Idempotency-Key"]
        return self._setup[tenant]

    def setup_key(self) -> str:
        """The ``Idempotency-Key`` of this tenant's setup job."""
        self.setup_job()
        return self._setup["own-key"]

    def item(self, r: httpx.Response, index: int = 0) -> Got:
        """Follow an accepted job until item ``index`` ends: 202 and the item's error code
        (or its status when it has none); the refusal as is otherwise."""
        job_id = self.track(r, self.key)
        if job_id is None:
            return got(r)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            r = self.client.get(f"/v1/jobs/{job_id}", headers=self.h())
            if r.status_code != 200:
                return Got(202, None, f"GET /v1/jobs/{job_id} answered {r.status_code}")
            item = r.json()["items"][index]
            if item["status"] in ITEM_DONE:
                error = item.get("error") or {}
                return Got(202, error.get("code") or item["status"], error.get("message", ""))
            time.sleep(0.2)
        return Got(202, None, f"item {index} of {job_id} did not end in {self.timeout:g}s")

    def submit_item(
        self,
        path: str,
        files: list[tuple[str, tuple[str, bytes, str]]],
        data: dict[str, str] | None = None,
        index: int = 0,
    ) -> Got:
        r = self.client.post(path, files=files, data=data or {}, headers=self.h())
        return self.item(r, index)

    def cleanup(self) -> None:
        """Cancel, then (once they end) delete every job this run created."""
        for job_id, key in self.created:
            self.client.delete(f"/v1/jobs/{job_id}", headers={"X-API-Key": key})
        deadline = time.monotonic() + self.timeout
        for job_id, key in self.created:
            while time.monotonic() < deadline:
                r = self.client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key})
                if r.status_code == 404:
                    break
                if r.status_code == 200 and r.json()["status"] in TERMINAL:
                    self.client.delete(f"/v1/jobs/{job_id}", headers={"X-API-Key": key})
                    break
                time.sleep(0.2)


def read_answer(sock: socket.socket) -> Got:
    """Read one HTTP/1.1 answer (status line, headers, a ``Content-Length`` body)."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        while length is not None and len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except OSError as exc:
        if not data:
            return Got(0, None, f"no answer: {type(exc).__name__}")
        head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        return Got(0, None, f"no answer: {data[:80]!r}")
    return parse_answer(int(status_line[1]), body)


# ---------------------------------------------------------------- the classes


def F(name: str, data: bytes, field: str = "files") -> tuple[str, tuple[str, bytes, str]]:
    """A multipart file part."""
    return (field, (name, data, "application/octet-stream"))


def auth_cases(p: Probe) -> list[Case]:
    """A missing key on every route that takes input; a wrong one on the main ones."""
    job = f"/v1/jobs/{UNKNOWN_JOB}"
    routes: list[tuple[str, Callable[[str | None], Got]]] = [
        ("POST /v1/protect", lambda k: p.protect([("a.png", png())], key=k)),
        ("POST /v1/verify", lambda k: p.post(
            "/v1/verify", [F("a.png", png(), "original"), F("b.png", png(), "protected")], key=k)),
        ("POST /v1/backdoor-scans", lambda k: p.post("/v1/backdoor-scans",
                                                     [F("m.onnx", b"x", "model")], key=k)),
        ("POST /v1/augmentations", lambda k: p.post("/v1/augmentations", [
            F("m.onnx", b"x", "model"), F("d.zip", zip_of([("0/a.png", png())]), "data")], key=k)),
        ("POST /v1/captchas", lambda k: p.post_json("/v1/captchas", "{}", key=k)),
        ("GET /v1/jobs/{id}", lambda k: p.get(job, key=k)),
    ]  # fmt: skip
    cases = [
        Case("missing API key", route, 401, "missing_api_key", partial(send, None))
        for route, send in routes
    ]
    cases += [
        Case("missing API key", "POST /v1/captchas/{id}/verify", 401, "missing_api_key",
             lambda: p.post_json("/v1/captchas/cap_x/verify", '{"answer": "ABCD"}', key=None)),
        Case("missing API key", "GET /v1/jobs", 401, "missing_api_key",
             lambda: p.get("/v1/jobs", key=None)),
        Case("missing API key", "GET /v1/jobs/{id}/result", 401, "missing_api_key",
             lambda: p.get(f"{job}/result", key=None)),
        Case("missing API key", "DELETE /v1/jobs/{id}", 401, "missing_api_key",
             lambda: p.delete(job, key=None)),
    ]  # fmt: skip
    cases += [
        Case("wrong API key", route, 401, "invalid_api_key", partial(send, "not-a-key"))
        for route, send in routes
    ]
    return cases


def upload_cases(p: Probe) -> list[Case]:
    """Files that are not photos, broken photos, bombs, too many files, wrong bodies."""
    name, photo = p.photo
    text = b"just some text, not a picture\n"
    lim = p.limits
    bomb = bomb_png(math.isqrt(lim.max_pixels) + 64)  # just past the limit: a few KB packed
    many = [(f"p{i}.png", png(8, 8)) for i in range(lim.max_batch_photos + 1)]
    flat = png()
    small = png(32, 24)
    multipart = "multipart/form-data"  # no boundary
    flat_zip = zip_of([("0/a.png", flat)])
    return [
        Case("body not multipart (JSON)", "POST /v1/protect", 415, "unsupported_media_type",
             lambda: p.post_json("/v1/protect", '{"files": []}')),
        Case("body not multipart (JSON)", "POST /v1/verify", 415, "unsupported_media_type",
             lambda: p.post_json("/v1/verify", "{}")),
        Case("body not multipart (JSON)", "POST /v1/backdoor-scans", 415,
             "unsupported_media_type", lambda: p.post_json("/v1/backdoor-scans", "{}")),
        Case("body not multipart (JSON)", "POST /v1/augmentations", 415,
             "unsupported_media_type", lambda: p.post_json("/v1/augmentations", "{}")),
        Case("multipart without boundary", "POST /v1/protect", 400, "bad_request",
             lambda: p.post_raw("/v1/protect", b"--x\r\n\r\n", multipart)),
        Case("multipart without boundary", "POST /v1/verify", 400, "bad_request",
             lambda: p.post_raw("/v1/verify", b"--x\r\n\r\n", multipart)),
        Case("no file", "POST /v1/protect", 422, "no_files",
             lambda: p.post_form("/v1/protect", CHEAP)),
        Case("no file", "POST /v1/verify", 422, "missing_file",
             lambda: p.post("/v1/verify", [F(name, photo, "original")])),
        Case("no file", "POST /v1/backdoor-scans", 422, "missing_model",
             lambda: p.post_form("/v1/backdoor-scans", {"seed": "1"})),
        Case("no file", "POST /v1/augmentations", 422, "missing_data",
             lambda: p.post("/v1/augmentations", [F("m.onnx", b"x", "model")])),
        Case("file part sent as a text field", "POST /v1/protect", 422, "invalid_files",
             lambda: p.post_form("/v1/protect", {"files": "photo.jpg"})),
        Case("non-image file", "POST /v1/protect", 415, "not_an_image",
             lambda: p.protect([("photo.jpg", text)])),
        Case("non-image file", "POST /v1/verify", 415, "not_an_image",
             lambda: p.verify(photo, text)),
        Case("zero-byte file", "POST /v1/protect", 415, "not_an_image",
             lambda: p.protect([("photo.jpg", b"")])),
        Case("zero-byte file", "POST /v1/verify", 415, "not_an_image",
             lambda: p.verify(b"", photo)),
        Case("zero-byte file", "POST /v1/backdoor-scans", 422, "invalid_model",
             lambda: p.post("/v1/backdoor-scans", [F("m.onnx", b"", "model")])),
        Case("zero-byte file", "POST /v1/augmentations", 422, "invalid_model",
             lambda: p.post("/v1/augmentations", [F("m.onnx", b"", "model"),
                                                  F("d.zip", flat_zip, "data")])),
        Case("truncated JPEG (header)", "POST /v1/protect", 422, "corrupt_image",
             lambda: p.protect([(name, jpeg_header_cut(photo))])),
        Case("truncated JPEG (header)", "POST /v1/verify", 422, "corrupt_image",
             lambda: p.verify(photo, jpeg_header_cut(photo))),
        Case("truncated JPEG (scan data)", "POST /v1/protect", 202, "corrupt_image",
             lambda: p.submit_item("/v1/protect", [F(name, jpeg_scan_cut(photo))], CHEAP),
             stage="item"),
        Case("truncated JPEG (scan data)", "POST /v1/verify", 422, "corrupt_image",
             lambda: p.verify(photo, jpeg_scan_cut(photo))),
        Case("GIF (unsupported format)", "POST /v1/protect", 415, "unsupported_format",
             lambda: p.protect([("a.gif", gif())])),
        Case("animated PNG", "POST /v1/protect", 415, "animated_image",
             lambda: p.protect([("a.png", animated_png())])),
        Case("decompression bomb PNG", "POST /v1/protect", 413, "too_many_pixels",
             lambda: p.protect([("bomb.png", bomb)])),
        Case("decompression bomb PNG", "POST /v1/verify", 413, "too_many_pixels",
             lambda: p.verify(bomb, bomb)),
        Case("too many files", "POST /v1/protect", 413, "too_many_photos",
             lambda: p.protect(many)),
        Case("too many files", "POST /v1/verify", 422, "too_many_files",
             lambda: p.post("/v1/verify", [F("a.png", flat, "original"),
                                           F("b.png", flat, "protected"),
                                           F("c.png", flat, "extra")])),
        Case("too many files", "POST /v1/backdoor-scans", 422, "invalid_model",
             lambda: p.post("/v1/backdoor-scans", [F("a.onnx", b"x", "model"),
                                                   F("b.onnx", b"y", "model")])),
        Case("too many files (limit + 2)", "POST /v1/protect", 413, "too_many_photos",
             lambda: p.protect([*many, ("extra.png", png(8, 8))])),
        Case("too many files (limit + 2)", "POST /v1/verify", 422, "too_many_files",
             lambda: p.post("/v1/verify", [F(f"{i}.png", flat, "original") for i in range(4)])),
        Case("too many files (limit + 2)", "POST /v1/backdoor-scans", 422, "too_many_files",
             lambda: p.post("/v1/backdoor-scans", [F(f"{i}.onnx", b"x", "model")
                                                   for i in range(5)])),
        Case("too many files (limit + 2)", "POST /v1/augmentations", 422, "too_many_files",
             lambda: p.post("/v1/augmentations", [F(f"{i}.onnx", b"x", "model")
                                                  for i in range(4)])),
        Case("photos of different sizes", "POST /v1/verify", 422, "size_mismatch",
             lambda: p.verify(flat, small)),
        Case("batch with one non-image", "POST /v1/protect", 202, "not_an_image",
             lambda: p.submit_item("/v1/protect", [F("a.png", flat), F("b.jpg", text)],
                                   CHEAP, index=1), stage="item"),
    ]  # fmt: skip


def size_cases(p: Probe) -> list[Case]:
    """Uploads past the per-file and per-request limits, with a length and chunked."""
    lim = p.limits
    big = lim.max_upload_bytes + 1
    declared = lim.max_request_bytes + 1
    n = lim.max_batch_photos + 1  # files the parser takes; each under the per-file limit
    share = min(lim.max_upload_bytes, -(-lim.max_request_bytes // (n - 1)))
    batch = [("files", f"p{i}.png", share) for i in range(n)]
    verify = [("original", "a.jpg", 16), ("protected", "b.jpg", big)]
    cases = [
        Case("oversized file, Content-Length", "POST /v1/protect", 413, "file_too_large",
             lambda: p.stream("/v1/protect", [("files", "big.jpg", big)], chunked=False)),
        Case("oversized file, chunked", "POST /v1/protect", 413, "file_too_large",
             lambda: p.stream("/v1/protect", [("files", "big.jpg", big)], chunked=True)),
        Case("oversized file, Content-Length", "POST /v1/verify", 413, "file_too_large",
             lambda: p.stream("/v1/verify", verify, chunked=False)),
        Case("oversized file, chunked", "POST /v1/verify", 413, "file_too_large",
             lambda: p.stream("/v1/verify", verify, chunked=True)),
        Case("oversized file, chunked", "POST /v1/backdoor-scans", 413, "file_too_large",
             lambda: p.stream("/v1/backdoor-scans", [("model", "m.onnx", big)], chunked=True)),
        Case("oversized file, chunked", "POST /v1/augmentations", 413, "file_too_large",
             lambda: p.stream("/v1/augmentations", [("model", "m.onnx", big)], chunked=True)),
        Case("oversized request, chunked", "POST /v1/protect", 413, "request_too_large",
             lambda: p.stream("/v1/protect", batch, chunked=True)),
    ]  # fmt: skip
    for route in ("/v1/protect", "/v1/verify", "/v1/backdoor-scans", "/v1/augmentations"):
        cases.append(
            Case("oversized request, Content-Length", f"POST {route}", 413, "request_too_large",
                 partial(p.stream, route, [("files", "a.jpg", 1)], False, declared))
        )  # fmt: skip
    return cases


def zip_cases(p: Probe) -> list[Case]:
    """Zips of photos (``/v1/protect``): unsafe paths, links, nesting, bombs, corruption."""
    flat = png()
    lim = p.limits
    side = max(64 * 1024, min(lim.max_upload_bytes // 2, 8 * 1024 * 1024))
    bomb = zip_of([("bomb.png", b"\0" * side)], deflate=True)
    entries = [(f"p{i}.png", b"") for i in range(lim.zip_max_entries + 1)]
    cases = [
        ("zip slip (../ entry)", 422, "zip_unsafe_path", zip_of([("../../evil.png", flat)])),
        ("zip absolute path entry", 422, "zip_unsafe_path", zip_of([("/etc/evil.png", flat)])),
        ("zip symlink entry", 422, "zip_unsafe_path", symlink_zip()),
        ("nested zip", 422, "zip_nested_archive",
         zip_of([("inner.zip", zip_of([("a.png", flat)]))])),
        ("zip bomb (compression ratio)", 413, "zip_bomb", bomb),
        ("zip with too many entries", 413, "zip_too_many_entries", zip_of(entries)),
        ("corrupt zip", 422, "zip_corrupt", b"PK\x03\x04" + b"\x14\x00" * 40),
        ("zip without photos", 422, "zip_empty", zip_of([("readme/", b"")])),
        ("encrypted zip entry", 422, "zip_encrypted", encrypted_zip()),
    ]  # fmt: skip
    out = [
        Case(name, "POST /v1/protect", status, code, partial(p.protect, [("photos.zip", data)]))
        for name, status, code, data in cases
    ]  # fmt: skip
    out += [
        Case("zip beside a photo", "POST /v1/protect", 422, "zip_not_alone",
             lambda: p.protect([("a.png", flat), ("photos.zip", zip_of([("b.png", flat)]))])),
        Case("gzip archive", "POST /v1/protect", 415, "unsupported_archive",
             lambda: p.protect([("photos.tar.gz", gzip.compress(flat))])),
    ]  # fmt: skip
    return out


def option_cases(p: Probe) -> list[Case]:
    """Options out of range or unknown, malformed JSON, unknown models."""
    flat = [("a.png", png())]
    model = [F("m.onnx", b"x", "model")]
    data = zip_of([("0/a.png", png(8, 8))])
    aug = [F("m.onnx", b"x", "model"), F("d.zip", data, "data")]
    over = str(p.limits.max_steps + 1)
    return [
        Case("unknown preset", "POST /v1/protect", 422, "invalid_options",
             lambda: p.protect(flat, {"strength": "ultra"})),
        Case("unknown preset", "POST /v1/augmentations", 422, "invalid_options",
             lambda: p.post("/v1/augmentations", aug, {"mode": "ultra"})),
        Case("steps out of range (0)", "POST /v1/protect", 422, "invalid_options",
             lambda: p.protect(flat, {"steps": "0"})),
        Case("steps out of range (0)", "POST /v1/backdoor-scans", 422, "invalid_options",
             lambda: p.post("/v1/backdoor-scans", model, {"iterations": "0"})),
        Case("steps out of range (0)", "POST /v1/augmentations", 422, "invalid_options",
             lambda: p.post("/v1/augmentations", aug, {"steps": "0"})),
        Case("steps over the service cap", "POST /v1/protect", 422, "steps_over_limit",
             lambda: p.protect(flat, {"steps": over})),
        Case("eps out of range", "POST /v1/protect", 422, "invalid_options",
             lambda: p.protect(flat, {"eps": "1000"})),
        Case("eps out of range", "POST /v1/backdoor-scans", 422, "invalid_options",
             lambda: p.post("/v1/backdoor-scans", model, {"eps": "5"})),
        Case("eps out of range", "POST /v1/augmentations", 422, "invalid_options",
             lambda: p.post("/v1/augmentations", aug, {"eps": "-1"})),
        Case("option not a number", "POST /v1/protect", 422, "invalid_options",
             lambda: p.protect(flat, {"seed": "abc"})),
        Case("unknown form field", "POST /v1/protect", 422, "unknown_field",
             lambda: p.protect(flat, {"colour": "blue"})),
        Case("unknown form field", "POST /v1/backdoor-scans", 422, "unknown_field",
             lambda: p.post("/v1/backdoor-scans", model, {"colour": "blue"})),
        Case("unknown form field", "POST /v1/augmentations", 422, "unknown_field",
             lambda: p.post("/v1/augmentations", aug, {"colour": "blue"})),
        Case("malformed JSON options", "POST /v1/protect", 422, "invalid_options",
             lambda: p.protect(flat, {"options": '{"steps": 3,'})),
        Case("malformed JSON options", "POST /v1/backdoor-scans", 422, "invalid_options",
             lambda: p.post("/v1/backdoor-scans", model, {"options": "{nope"})),
        Case("malformed JSON options", "POST /v1/augmentations", 422, "invalid_options",
             lambda: p.post("/v1/augmentations", aug, {"options": "[1, 2"})),
        Case("JSON options not an object", "POST /v1/protect", 422, "invalid_options",
             lambda: p.protect(flat, {"options": "[1, 2]"})),
        Case("unknown recognizer", "POST /v1/protect", 422, "unknown_model",
             lambda: p.protect(flat, {"surrogates": "no_such_model"})),
        Case("unknown recognizer", "POST /v1/verify", 422, "unknown_model",
             lambda: p.verify(png(), png(), {"models": "no_such_model"})),
    ]  # fmt: skip


def callback_cases(p: Probe) -> list[Case]:
    """``callback_url`` at local, private or reserved addresses, in several spellings."""
    flat = [("a.png", png())]
    urls = [
        ("callback_url: loopback", "http://127.0.0.1:9/hook", "callback_host_forbidden"),
        ("callback_url: IPv6 loopback", "http://[::1]/hook", "callback_host_forbidden"),
        ("callback_url: loopback as one integer", "http://2130706433/hook",
         "callback_host_forbidden"),
        ("callback_url: loopback in hex", "http://0x7f000001/hook", "callback_host_forbidden"),
        ("callback_url: cloud metadata address", "http://169.254.169.254/latest/meta-data/",
         "callback_host_forbidden"),
        ("callback_url: metadata host name", "http://metadata.google.internal/",
         "callback_host_forbidden"),
        ("callback_url: private network", "https://10.0.0.1/hook", "callback_host_forbidden"),
        ("callback_url: localhost", "http://localhost:8000/hook", "callback_host_forbidden"),
        ("callback_url: not http(s)", "file:///etc/passwd", "invalid_callback_url"),
    ]  # fmt: skip
    cases = [
        Case(name, "POST /v1/protect", 422, code, partial(p.protect, flat, {"callback_url": url}))
        for name, url, code in urls
    ]  # fmt: skip
    model = [F("m.onnx", b"x", "model")]
    aug = [F("m.onnx", b"x", "model"), F("d.zip", zip_of([("0/a.png", png(8, 8))]), "data")]
    hook = {"callback_url": "http://127.0.0.1:9/hook"}
    cases += [
        Case("callback_url: loopback", "POST /v1/backdoor-scans", 422, "callback_host_forbidden",
             lambda: p.post("/v1/backdoor-scans", model, hook)),
        Case("callback_url: loopback", "POST /v1/augmentations", 422, "callback_host_forbidden",
             lambda: p.post("/v1/augmentations", aug, hook)),
    ]  # fmt: skip
    return cases


def idempotency_cases(p: Probe) -> list[Case]:
    """A key reused with another body or on another route; a malformed key."""
    flat = [("a.png", png())]
    model = [F("m.onnx", b"x", "model")]
    return [
        Case("Idempotency-Key reused with another body", "POST /v1/protect", 422,
             "idempotency_key_reused",
             lambda: p.protect(flat, {"seed": "7"}, headers={"Idempotency-Key": p.setup_key()})),
        Case("Idempotency-Key reused on another route", "POST /v1/backdoor-scans", 422,
             "idempotency_key_reused",
             lambda: p.post("/v1/backdoor-scans", model,
                            headers={"Idempotency-Key": p.setup_key()})),
        Case("Idempotency-Key too long", "POST /v1/protect", 422, "invalid_idempotency_key",
             lambda: p.protect(flat, headers={"Idempotency-Key": "k" * 201})),
    ]  # fmt: skip


def job_cases(p: Probe) -> list[Case]:
    """Unknown, malformed and other tenants' job ids; bad paging and item numbers."""
    unknown = f"/v1/jobs/{UNKNOWN_JOB}"
    cases = [
        Case("unknown job id", "GET /v1/jobs/{id}", 404, "job_not_found", lambda: p.get(unknown)),
        Case("unknown job id", "GET /v1/jobs/{id}/result", 404, "job_not_found",
             lambda: p.get(f"{unknown}/result")),
        Case("unknown job id", "DELETE /v1/jobs/{id}", 404, "job_not_found",
             lambda: p.delete(unknown)),
        Case("over-long job id", "GET /v1/jobs/{id}", 404, "job_not_found",
             lambda: p.get("/v1/jobs/" + "j" * 300)),
        Case("SQL in the job id", "GET /v1/jobs/{id}", 404, "job_not_found",
             lambda: p.get("/v1/jobs/x'%20OR%20'1'='1")),
        Case("path traversal in the job id", "GET /v1/jobs/{id}/result", 404, "not_found",
             lambda: p.get("/v1/jobs/..%2F..%2Fhealthz/result")),
        Case("result item out of range", "GET /v1/jobs/{id}/result", 404, "item_not_found",
             lambda: p.get(f"/v1/jobs/{p.setup_job()}/result?item=99")),
        Case("result item not a number", "GET /v1/jobs/{id}/result", 422, "invalid_request",
             lambda: p.get(f"/v1/jobs/{p.setup_job()}/result?item=first")),
        Case("result of a job without one", "GET /v1/jobs/{id}/result", 409, "no_result",
             lambda: p.get(f"/v1/jobs/{p.setup_job()}/result")),
        Case("page size out of range", "GET /v1/jobs", 422, "invalid_request",
             lambda: p.get("/v1/jobs?limit=0")),
        Case("cursor not a number", "GET /v1/jobs", 422, "invalid_request",
             lambda: p.get("/v1/jobs?before=yesterday")),
        Case("wrong method", "PUT /v1/protect", 405, "method_not_allowed",
             lambda: got(p.client.put("/v1/protect", headers=p.h()))),
        Case("path traversal in a static file name", "GET /static/{name}", 404, "not_found",
             lambda: p.get("/static/..%2F..%2Fpyproject.toml", key=None)),
    ]  # fmt: skip
    if p.other_key:

        def other() -> str:
            return f"/v1/jobs/{p.setup_job('other')}"

        cases += [
            Case("another tenant's job", "GET /v1/jobs/{id}", 404, "job_not_found",
                 lambda: p.get(other())),
            Case("another tenant's job", "GET /v1/jobs/{id}/result", 404, "job_not_found",
                 lambda: p.get(f"{other()}/result")),
            Case("another tenant's job", "DELETE /v1/jobs/{id}", 404, "job_not_found",
                 lambda: p.delete(other())),
        ]  # fmt: skip
    return cases


def captcha_cases(p: Probe) -> list[Case]:
    """CAPTCHA configurations out of range, malformed JSON, unknown ids, long answers."""
    verify = "/v1/captchas/cap_unknown/verify"
    return [
        Case("length out of range", "POST /v1/captchas", 422, "invalid_request",
             lambda: p.post_json("/v1/captchas", '{"length": 99}')),
        Case("alphabet outside the font", "POST /v1/captchas", 422, "invalid_request",
             lambda: p.post_json("/v1/captchas", '{"alphabet": "<script>"}')),
        Case("unknown JSON field", "POST /v1/captchas", 422, "invalid_request",
             lambda: p.post_json("/v1/captchas", '{"colour": "blue"}')),
        Case("malformed JSON", "POST /v1/captchas", 422, "invalid_request",
             lambda: p.post_json("/v1/captchas", '{"length": 4,')),
        Case("malformed JSON", "POST /v1/captchas/{id}/verify", 422, "invalid_request",
             lambda: p.post_json(verify, '{"answer": ')),
        Case("answer too long", "POST /v1/captchas/{id}/verify", 422, "invalid_request",
             lambda: p.post_json(verify, json.dumps({"answer": "A" * 1000}))),
        Case("unknown CAPTCHA id", "POST /v1/captchas/{id}/verify", 404, "captcha_not_found",
             lambda: p.post_json(verify, '{"answer": "ABCD"}')),
    ]  # fmt: skip


def model_cases(p: Probe) -> list[Case]:
    """Backdoor scans and augmentations: wrong files at the door, bad content per item."""
    flat = png(8, 8)
    data = zip_of([("0/a.png", flat), ("1/b.png", flat)])
    cases = [
        Case("model is an archive", "POST /v1/backdoor-scans", 415, "unsupported_format",
             lambda: p.post("/v1/backdoor-scans", [F("m.onnx", data, "model")])),
        Case("model is an archive", "POST /v1/augmentations", 415, "unsupported_format",
             lambda: p.post("/v1/augmentations", [F("m.onnx", data, "model"),
                                                  F("d.zip", data, "data")])),
        Case("samples neither npz nor zip", "POST /v1/backdoor-scans", 415, "unsupported_format",
             lambda: p.post("/v1/backdoor-scans", [F("m.onnx", b"x", "model"),
                                                   F("s.npz", b"plain text", "samples")])),
        Case("data neither npz nor zip", "POST /v1/augmentations", 415, "unsupported_format",
             lambda: p.post("/v1/augmentations", [F("m.onnx", b"x", "model"),
                                                  F("d.zip", b"plain text", "data")])),
        Case("model not ONNX", "POST /v1/backdoor-scans", 202, "invalid_model",
             lambda: p.submit_item("/v1/backdoor-scans", [F("m.onnx", b"not onnx", "model")]),
             stage="item"),
        Case("model not ONNX", "POST /v1/augmentations", 202, "invalid_model",
             lambda: p.submit_item("/v1/augmentations", [F("m.onnx", b"not onnx", "model"),
                                                         F("d.zip", data, "data")]),
             stage="item"),
    ]  # fmt: skip
    onnx = p.onnx
    if onnx is None:
        return cases
    slip = zip_of([("../../evil/a.png", flat), ("1/b.png", flat)])
    nested = zip_of([("0/inner.zip", zip_of([("a.png", flat)])), ("1/b.png", flat)])
    scan = {"cleanse": "false", "iterations": "1", "blanks": "1", "noise": "1"}
    cases += [
        Case("zip slip (../ entry)", "POST /v1/augmentations", 202, "unsafe_path",
             lambda: p.submit_item("/v1/augmentations", [F("m.onnx", onnx, "model"),
                                                         F("d.zip", slip, "data")]),
             stage="item"),
        Case("nested zip", "POST /v1/augmentations", 202, "invalid_layout",
             lambda: p.submit_item("/v1/augmentations", [F("m.onnx", onnx, "model"),
                                                         F("d.zip", nested, "data")]),
             stage="item"),
        Case("npz with pickled objects", "POST /v1/augmentations", 202, "invalid_data",
             lambda: p.submit_item("/v1/augmentations", [F("m.onnx", onnx, "model"),
                                                         F("d.npz", pickled_npz(), "data")]),
             stage="item"),
        Case("nested zip", "POST /v1/backdoor-scans", 202, "invalid_samples",
             lambda: p.submit_item("/v1/backdoor-scans", [
                 F("m.onnx", onnx, "model"),
                 F("s.zip", zip_of([("inner.zip", zip_of([("a.png", flat)]))]), "samples")],
                 scan), stage="item"),
        Case("npz with pickled objects", "POST /v1/backdoor-scans", 202, "invalid_samples",
             lambda: p.submit_item("/v1/backdoor-scans", [F("m.onnx", onnx, "model"),
                                                          F("s.npz", pickled_npz(), "samples")],
                                   scan), stage="item"),
    ]  # fmt: skip
    return cases


CASES = (
    auth_cases,
    upload_cases,
    zip_cases,
    option_cases,
    callback_cases,
    idempotency_cases,
    model_cases,
    job_cases,
    captcha_cases,
    size_cases,
)


def run_case(case: Case) -> Result:
    """Send one case; a transport error (or a fault of the case) is recorded as status None."""
    try:
        answer = case.send()
    except Exception as exc:
        answer = Got(0, None, f"{type(exc).__name__}: {exc}")
    ok = answer.status == case.status and answer.code == case.code
    return Result(
        case.name, case.route, case.stage, case.status, case.code,
        answer.status or None, answer.code, ok, "" if ok else answer.message,
    )  # fmt: skip


def run(p: Probe) -> dict[str, Any]:
    """Every case, then the clean-up; the summary."""
    cases = [case for build in CASES for case in build(p)]
    results: list[Result] = []
    started = time.monotonic()
    try:
        results = [run_case(case) for case in cases]
    finally:
        p.cleanup()
    server_errors = [r for r in results if r.status is not None and r.status >= 500]
    skipped = []
    if not p.other_key:
        skipped.append("another tenant's job: no --other-api-key")
    if p.onnx is None:
        skipped.append("bad data behind a valid model: no onnx package")
    return {
        "url": p.url,
        "limits": asdict(p.limits),
        "photo": p.photo[0],
        "classes": len({r.name for r in results}),
        "requests": len(results),
        "passed": sum(r.passed for r in results),
        "failed": [f"{r.name} / {r.route}" for r in results if not r.passed],
        "server_errors": len(server_errors),
        "skipped": skipped,
        "jobs_created_and_deleted": len(p.created),
        "seconds": round(time.monotonic() - started, 1),
        "results": [asdict(r) for r in results],
    }


def table(summary: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    rows = [("class", "route", "expected", "got", "ok")]
    for r in summary["results"]:
        item = " (item)" if r["stage"] == "item" else ""
        rows.append((
            r["name"], r["route"],
            f"{r['expected_status']} {r['expected_code']}{item}",
            f"{r['status']} {r['code']}", "yes" if r["passed"] else "NO",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(
        f"{summary['classes']} classes, {summary['requests']} requests: {summary['passed']} "
        f"passed, {len(summary['failed'])} failed, {summary['server_errors']} answered 5xx"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, refuse non-loopback targets, run, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default="key-a")
    p.add_argument("--other-api-key", default=None, help="a second tenant's key")
    p.add_argument("--faces", default=str(FACES), help="folder whose first JPEG is used")
    p.add_argument("--out", "--json", dest="out", default=None, help="write the JSON here")
    p.add_argument("--timeout", type=float, default=120.0, help="per request and per job, s")
    for name in ("max_upload_bytes", "max_request_bytes", "max_batch_photos", "max_steps",
                 "max_pixels", "zip_max_entries"):  # fmt: skip
        p.add_argument("--" + name.replace("_", "-"), type=int, default=_default(name))
    args = p.parse_args(argv)
    if not loopback(args.url):
        print("bad_inputs: only loopback targets (127.0.0.0/8, ::1) are allowed", file=sys.stderr)
        return 2
    limits = Limits(
        args.max_upload_bytes, args.max_request_bytes, args.max_batch_photos, args.max_steps,
        args.max_pixels, args.zip_max_entries,
    )  # fmt: skip
    photo = first_jpeg(Path(args.faces)) or ("synthetic.jpg", noise_jpeg())
    probe = Probe(args.url.rstrip("/"), args.api_key, args.other_api_key, limits, photo,
                  args.timeout, tiny_onnx())  # fmt: skip
    try:
        summary = run(probe)
    finally:
        probe.close()
    print(table(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["failed"] or summary["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

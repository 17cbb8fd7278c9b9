"""The probe: a gateway, its keys and limits, and the requests the cases send to it."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

from .core import CHEAP, Got, Limits, got, parse_answer
from .inputs import png

TERMINAL = ("succeeded", "failed", "canceled")
ITEM_DONE = ("protected", "no_face", "failed", "canceled")
BOUNDARY = "facecloak-bad-inputs"
CHUNK = 256 * 1024


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

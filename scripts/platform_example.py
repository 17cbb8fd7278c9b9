"""A photo-sharing platform's upload flow with FaceCloak, end to end, on one machine.

    python scripts/platform_example.py [--photo PATH] [--strength high] [--url URL ...]

1. FaceCloak runs embedded (``facecloak serve`` as its own process, the platform's webhook
   secret set for its tenant, callbacks allowed to 127.0.0.1, which is private and so must be
   listed), unless ``--url`` names a running one.
2. The platform runs a webhook receiver (``POST /hooks/facecloak``) on another port.
3. A user uploads a photo; the platform holds it back ("pending") and submits it to
   FaceCloak with ``callback_url`` (``facecloak.client.Client``).
4. The webhook arrives: the platform checks its Standard Webhooks signature
   (``facecloak.client.verify_webhook``; a forged one is refused with 401), downloads the
   protected photo, stores it in place of the original, publishes it and shows the verdict
   in words.

The photo defaults to the pinned sample (NASA's portrait of Eileen Collins, public domain).
Exit status 0 when the photo was published protected.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from facecloak.client import Client, verify_webhook

MODEL_NAMES = {"w600k_mbf": "ArcFace (MobileFaceNet)", "sface": "SFace", "facenet": "FaceNet"}


@dataclass
class Photo:
    """A photo on the platform: held back until FaceCloak protected it."""

    id: str
    filename: str
    status: str = "pending"
    job_id: str = ""
    data: bytes = b""
    verdict: list[str] = field(default_factory=list)
    published: threading.Event = field(default_factory=threading.Event)


def verdict_lines(report: dict[str, Any]) -> list[str]:
    """The verification table in words, one line per face and model."""
    lines = []
    faces = (report.get("verification") or {}).get("faces") or []
    for n, face in enumerate(faces, 1):
        for model, checks in face["models"].items():
            name = MODEL_NAMES.get(model, model)
            saved = checks.get("saved", {})
            word = "still recognises" if saved.get("matched") else "no longer recognises"
            lines.append(f"{name} {word} face {n}")
    return lines


class Platform:
    """The platform's side: uploads, the FaceCloak call, the webhook, storage, the verdict."""

    def __init__(self, facecloak: Client, secret: str, hook_url: str, options: dict[str, Any]):
        self.facecloak, self.secret, self.hook_url = facecloak, secret, hook_url
        self.options = options
        self.photos: dict[str, Photo] = {}
        self.by_job: dict[str, Photo] = {}

    def upload(self, filename: str, data: bytes) -> Photo:
        """A user uploads a photo: keep it private and ask FaceCloak to protect it."""
        photo = Photo(id=f"p{len(self.photos) + 1}", filename=filename)
        self.photos[photo.id] = photo
        job = self.facecloak.submit([(filename, data)], self.options, callback_url=self.hook_url)
        photo.job_id = job["id"]
        self.by_job[photo.job_id] = photo
        return photo

    def on_webhook(self, body: bytes, headers: Mapping[str, str]) -> int:
        """FaceCloak says a job ended: check the signature, fetch the result, publish."""
        if not verify_webhook(self.secret, headers, body):
            return 401
        job = json.loads(body)
        photo = self.by_job.get(job["id"])
        if photo is None:
            return 404
        item = job["items"][0]
        photo.verdict = verdict_lines(item.get("report") or {})
        if job["status"] == "succeeded" and item.get("result_url"):
            photo.data = self.facecloak.download(job["id"], item["index"])
            photo.status = "published"
        else:
            error = item.get("error") or job.get("error") or {}
            photo.status = f"rejected ({error.get('code', item['status'])})"
        photo.published.set()
        return 204


def serve_hooks(platform: Platform) -> ThreadingHTTPServer:
    """The platform's webhook receiver on a free loopback port (in a thread)."""

    class Hooks(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ok = self.path == "/hooks/facecloak"
            status = platform.on_webhook(body, dict(self.headers.items())) if ok else 404
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_facecloak(data_dir: Path, secret: str, key: str) -> tuple[subprocess.Popen[bytes], str]:
    """``facecloak serve`` embedded on a free port; returns the process and its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    env = {
        **os.environ,
        "FACECLOAK_API_KEYS": f"{key}:platform",
        "FACECLOAK_WEBHOOK_SECRETS": f"platform:{secret}",
        "FACECLOAK_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "FACECLOAK_DATA_DIR": str(data_dir),
        "FACECLOAK_BROKER_URL": "",
        "FACECLOAK_STORAGE_URL": "",
    }
    log = (data_dir / "facecloak.log").open("ab")
    cmd = [sys.executable, "-m", "facecloak.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"FaceCloak did not start; see {data_dir / 'facecloak.log'}")


def default_photo() -> Path:
    """The pinned sample photo (fetched and checked by sha256 on first use)."""
    from facecloak.settings import Settings
    from models.registry import ModelStore
    from models.samples import sample_path

    settings = Settings()
    return sample_path(ModelStore(settings.cache_dir, settings.model_dir, settings.allow_download))


def run_flow(url: str, key: str, secret: str, photo_path: Path, args: argparse.Namespace) -> int:
    """Upload, forged webhook, real webhook, publish; prints each step."""
    options: dict[str, Any] = {"strength": args.strength}
    if args.steps:
        options["steps"] = args.steps
    with Client(url, api_key=key) as facecloak:
        platform = Platform(facecloak, secret, "", options)
        hooks = serve_hooks(platform)
        platform.hook_url = f"http://127.0.0.1:{hooks.server_address[1]}/hooks/facecloak"
        photo = platform.upload(photo_path.name, photo_path.read_bytes())
        print(f"user uploaded {photo.filename}: photo {photo.id} {photo.status} "
              f"(FaceCloak job {photo.job_id})")  # fmt: skip
        forged = httpx.post(platform.hook_url, content=b'{"id": "x"}', headers={
            "webhook-id": "msg_x", "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,AAAA"})  # fmt: skip
        print(f"forged webhook refused: HTTP {forged.status_code}")
        if not photo.published.wait(args.timeout):
            print("no webhook before the timeout", file=sys.stderr)
            return 1
        hooks.shutdown()
    print(f"webhook received, signature ok: photo {photo.id} {photo.status}")
    if photo.status != "published":
        return 1
    if args.out:
        Path(args.out).write_bytes(photo.data)
    print(f"stored protected {photo.filename} ({len(photo.data)} bytes) instead of the original")
    for line in photo.verdict:
        print(f"  verdict: {line}")
    return 0 if forged.status_code == 401 else 1


def main(argv: list[str] | None = None) -> int:
    """Run the example: start FaceCloak unless ``--url`` is given, then the flow."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photo", type=Path, default=None, help="default: the pinned sample")
    p.add_argument("--strength", default="high", choices=["low", "medium", "high"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--url", default=None, help="a running FaceCloak (else one is started)")
    p.add_argument("--api-key", default="platform-key")
    p.add_argument("--secret", default="platform-webhook-secret")
    p.add_argument("--out", default=None, help="also write the protected photo here")
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    photo = args.photo or default_photo()
    if args.url:
        return run_flow(args.url, args.api_key, args.secret, photo, args)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_facecloak(Path(tmp), args.secret, args.api_key)
        print(f"FaceCloak running embedded at {url}")
        try:
            return run_flow(url, args.api_key, args.secret, photo, args)
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    sys.exit(main())

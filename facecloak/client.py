"""A small client for the FaceCloak REST API: submit, wait, download, verify, with retries.

    from facecloak.client import Client

    with Client("http://127.0.0.1:8000", api_key="key-a") as fc:
        job = fc.submit(["me.jpg"], options={"strength": "medium"})
        job = fc.wait(job["id"], on_progress=lambda j: print(f"{progress_fraction(j):.0%}"))
        Path("me.protected.jpg").write_bytes(fc.download(job["id"]))

Submits always carry an ``Idempotency-Key`` (a fresh one unless given), so a retried submit
never creates a second job. 429 and 5xx answers and connection errors are retried with
backoff, honouring ``Retry-After``. While waiting, ``on_progress(job)`` sees each polled job;
every item carries ``progress: {done, total, unit}`` (attack steps for ``protect``) and
:func:`progress_fraction` sums them into one number.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from facecloak.contract.webhooks import verify_signature

RETRY_STATUS = frozenset({429, 502, 503, 504})
FINAL = frozenset({"succeeded", "failed", "canceled"})
ITEM_FINAL = frozenset({"protected", "no_face", "failed", "canceled"})
OnProgress = Callable[[dict[str, Any]], None]
"""Called with the job JSON after each poll."""


def item_fraction(item: dict[str, Any]) -> float:
    """How far one photo of a job is, in [0, 1] (finished photos count as 1)."""
    if item.get("status") in ITEM_FINAL:
        return 1.0
    progress = item.get("progress") or {}
    total = progress.get("total") or 0
    return min(1.0, progress.get("done", 0) / total) if total else 0.0


def progress_fraction(job: dict[str, Any]) -> float:
    """How far a whole job is, in [0, 1]: the mean of its photos' :func:`item_fraction`."""
    items = job.get("items") or []
    return sum(item_fraction(i) for i in items) / len(items) if items else 0.0


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance_s: float = 300.0
) -> bool:
    """Whether a webhook request is FaceCloak's: its Standard Webhooks headers
    (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``, any case) sign the raw
    ``body`` with ``secret`` (one of several space-separated signatures is enough) and the
    timestamp is within ``tolerance_s`` of now (older deliveries are replays). ``secret``
    is the tenant's webhook secret as configured (``whsec_<base64>`` or plain text)."""
    return verify_signature(secret, headers, body, tolerance_s)


class FaceCloakError(Exception):
    """An error answer of the API (``status``, machine-readable ``code``, ``message``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Client:
    """Synchronous client; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout, headers={"X-API-Key": api_key})
        self.retries, self.backoff = retries, backoff

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.TransportError:
                if last:
                    raise
                time.sleep(delay)
                delay *= 2
                continue
            if response.status_code in RETRY_STATUS and not last:
                wait = response.headers.get("Retry-After", "")
                time.sleep(float(wait) if wait.isdigit() else delay)
                delay *= 2
                continue
            if response.status_code >= 400:
                try:
                    err = response.json()["error"]
                    raise FaceCloakError(response.status_code, err["code"], err["message"])
                except (ValueError, KeyError, TypeError):
                    raise FaceCloakError(
                        response.status_code, "http_error", response.text[:200]
                    ) from None
            return response
        raise AssertionError("unreachable")

    def submit(
        self,
        photos: Sequence[str | Path | tuple[str, bytes]],
        options: dict[str, Any] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit photos (paths or ``(name, bytes)``; one zip also works); returns the job."""
        files = []
        for photo in photos:
            if isinstance(photo, tuple):
                files.append(("files", (photo[0], photo[1], "application/octet-stream")))
            else:
                path = Path(photo)
                content = path.read_bytes()
                files.append(("files", (path.name, content, "application/octet-stream")))
        data: dict[str, Any] = {}
        if options:
            data["options"] = json.dumps(options)
        if callback_url:
            data["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        job: dict[str, Any] = self._request(
            "POST", "/v1/protect", files=files, data=data, headers=headers
        ).json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's current state."""
        body: dict[str, Any] = self._request("GET", f"/v1/jobs/{job_id}").json()
        return body

    def wait(
        self,
        job_id: str,
        timeout: float = 3600.0,
        poll: float | None = None,
        on_progress: OnProgress | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends (honouring ``Retry-After``); TimeoutError past ``timeout``.

        ``on_progress(job)`` is called after every poll, the last one included.
        """
        deadline = time.monotonic() + timeout
        while True:
            response = self._request("GET", f"/v1/jobs/{job_id}")
            job: dict[str, Any] = response.json()
            if on_progress is not None:
                on_progress(job)
            if job["status"] in FINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']}")
            hint = response.headers.get("Retry-After", "")
            time.sleep(poll if poll is not None else float(hint) if hint.isdigit() else 1.0)

    def download(self, job_id: str, item: int | None = None) -> bytes:
        """The protected photo (one-photo job or ``item``), or a zip for a batch."""
        params = {"item": item} if item is not None else None
        return self._request("GET", f"/v1/jobs/{job_id}/result", params=params).content

    def protect(
        self,
        photos: Sequence[str | Path],
        out_dir: str | Path,
        options: dict[str, Any] | None = None,
        timeout: float = 3600.0,
        on_progress: OnProgress | None = None,
    ) -> dict[str, Any]:
        """Submit, wait, and write each protected photo into ``out_dir``; returns the job."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        job_id = self.submit(photos, options)["id"]
        job = self.wait(job_id, timeout=timeout, on_progress=on_progress)
        for item in job["items"]:
            if item.get("result_url"):
                (out / item["filename"]).write_bytes(self.download(job["id"], item["index"]))
        return job

    def cancel(self, job_id: str) -> None:
        """Cancel an unfinished job, or delete a finished one."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def verify(self, original: str | Path, protected: str | Path) -> dict[str, Any]:
        """The verification table of two photos."""
        files = [
            ("original", (Path(original).name, Path(original).read_bytes())),
            ("protected", (Path(protected).name, Path(protected).read_bytes())),
        ]
        table: dict[str, Any] = self._request("POST", "/v1/verify", files=files).json()
        return table

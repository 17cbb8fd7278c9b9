"""What a case is: the request it sends, the answer it expects, the answer it got."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from load_test import OPTIONS

CHEAP: dict[str, str] = dict(OPTIONS)
"""Options of the jobs this run lets through: the load test's shortest attack."""
UNKNOWN_JOB = "job_" + "0" * 32


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


def F(name: str, data: bytes, field: str = "files") -> tuple[str, tuple[str, bytes, str]]:
    """A multipart file part."""
    return (field, (name, data, "application/octet-stream"))

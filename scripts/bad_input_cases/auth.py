"""Missing and wrong API keys."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .core import UNKNOWN_JOB, Case, F, Got
from .inputs import png, zip_of
from .probe import Probe


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

"""Form fields and headers of a submission: options, callback URLs, idempotency keys."""

from __future__ import annotations

from functools import partial

from .core import Case, F
from .inputs import png, zip_of
from .probe import Probe


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

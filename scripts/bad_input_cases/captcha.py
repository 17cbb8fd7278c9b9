"""CAPTCHA configurations and answers."""

from __future__ import annotations

import json

from .core import Case
from .probe import Probe


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

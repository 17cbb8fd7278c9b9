"""``/v1/captchas``: issue from the pool, verify once, case rule, bad input, empty pool.

The pool is a real :class:`LocalCaptchaPool` filled by the test (no torch): what the
workers' filler would put there.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from facecloak.contract.captcha import CaptchaConfig, PooledCaptcha
from facecloak.contract.captcha_pool import MAX_CONFIGS, LocalCaptchaPool, RedisCaptchaPool
from service.app import create_app
from tests.service_fixtures import A, B, RedisServer, fake_handlers, png, settings


def _client(tmp: Path, pool: Any, **overrides: Any) -> TestClient:
    app = create_app(
        settings(tmp, captcha_wait_seconds=0.1, **overrides),
        handlers=fake_handlers(),
        captcha_pool=pool,
        background=False,
    )
    return TestClient(app)


def _filled(answers: list[str], config: CaptchaConfig | None = None) -> LocalCaptchaPool:
    pool = LocalCaptchaPool()
    key = (config or CaptchaConfig()).key
    pool.put_many(key, [PooledCaptcha.make(png(color=(i, 0, 0)), a) for i, a in enumerate(answers)])
    return pool


def test_issue_then_verify_once(tmp_path: Path) -> None:
    with _client(tmp_path, _filled(["AB3K", "ZZ22"])) as c:
        r = c.post("/v1/captchas", headers=A)
        assert r.status_code == 201, r.text
        body = r.json()
        assert base64.b64decode(body["image_png_base64"]).startswith(b"\x89PNG")
        assert body["expires_in"] == 300 and body["length"] == 4
        wrong_tenant = c.post(
            f"/v1/captchas/{body['id']}/verify", json={"answer": "AB3K"}, headers=B
        )
        assert wrong_tenant.status_code == 404
        ok = c.post(f"/v1/captchas/{body['id']}/verify", json={"answer": " ab3k"}, headers=A)
        assert ok.status_code == 200 and ok.json() == {"result": "pass"}
        again = c.post(f"/v1/captchas/{body['id']}/verify", json={"answer": "AB3K"}, headers=A)
        assert again.status_code == 404 and again.json()["error"]["code"] == "captcha_not_found"
        second = c.post("/v1/captchas", json={}, headers=A).json()
        bad = c.post(f"/v1/captchas/{second['id']}/verify", json={"answer": "AB3K"}, headers=A)
        assert bad.json() == {"result": "fail"}


@pytest.mark.parametrize(
    ("body", "code"),
    [({"answer": ""}, 422), ({"answer": "A" * 33}, 422), ({}, 422), ({"answer": "A", "x": 1}, 422)],
)
def test_bad_answers(tmp_path: Path, body: dict[str, Any], code: int) -> None:
    with _client(tmp_path, _filled(["AB3K"])) as c:
        captcha_id = c.post("/v1/captchas", headers=A).json()["id"]
        assert c.post(f"/v1/captchas/{captcha_id}/verify", json=body, headers=A).status_code == code
        # a refused answer does not use the CAPTCHA up
        ok = c.post(f"/v1/captchas/{captcha_id}/verify", json={"answer": "AB3K"}, headers=A)
        assert ok.json() == {"result": "pass"}


def test_unknown_id_and_auth(tmp_path: Path) -> None:
    with _client(tmp_path, _filled([])) as c:
        assert (
            c.post("/v1/captchas/nope/verify", json={"answer": "AB3K"}, headers=A).status_code
            == 404
        )
        assert c.post("/v1/captchas").status_code == 401


@pytest.mark.parametrize("body", [{"length": 3}, {"length": 9}, {"alphabet": "AB01"}, {"size": 2}])
def test_unsupported_configurations(tmp_path: Path, body: dict[str, Any]) -> None:
    with _client(tmp_path, _filled(["AB3K"])) as c:
        r = c.post("/v1/captchas", json=body, headers=A)
        assert r.status_code == 422


def test_empty_pool_answers_503_with_retry_after_and_registers_the_config(tmp_path: Path) -> None:
    pool = _filled(["AB3K"])
    with _client(tmp_path, pool) as c:
        r = c.post("/v1/captchas", json={"length": 5, "alphabet": "ABC"}, headers=A)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "captcha_pool_empty"
        config = CaptchaConfig(length=5, alphabet="ABC")
        assert config.model_dump_json() in pool.wanted()
        pool.put_many(config.key, [PooledCaptcha.make(png(), "ABCAB")])
        assert (
            c.post("/v1/captchas", json={"length": 5, "alphabet": "cba"}, headers=A).status_code
            == 201
        )


def test_configuration_count_is_capped(tmp_path: Path) -> None:
    pool = LocalCaptchaPool()
    with _client(tmp_path, pool) as c:
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        for i in range(MAX_CONFIGS):
            assert (
                c.post("/v1/captchas", json={"alphabet": letters[i : i + 2]}, headers=A).status_code
                == 503
            )
        r = c.post("/v1/captchas", json={"alphabet": "XYZ"}, headers=A)
        assert r.status_code == 422 and r.json()["error"]["code"] == "captcha_config_limit"


def test_no_pool_means_captchas_are_off(tmp_path: Path) -> None:
    with _client(tmp_path, None) as c:
        r = c.post("/v1/captchas", headers=A)
        assert r.status_code == 404 and r.json()["error"]["code"] == "captchas_disabled"


def test_verification_attempts_are_rate_limited_per_tenant(tmp_path: Path) -> None:
    with _client(tmp_path, _filled([]), captcha_attempts_per_minute=3) as c:
        codes = [
            c.post("/v1/captchas/x/verify", json={"answer": "A"}, headers=A).status_code
            for _ in range(4)
        ]
        assert codes == [404, 404, 404, 429]
        assert c.post("/v1/captchas/x/verify", json={"answer": "A"}, headers=B).status_code == 404


@pytest.mark.redis
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_pool_issues_and_verifies_once(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        pool = RedisCaptchaPool.from_url(server.url)
        key = CaptchaConfig().key
        assert pool.want(key, CaptchaConfig().model_dump_json())
        assert pool.wanted() == [CaptchaConfig().model_dump_json()]
        pool.put_many(key, [PooledCaptcha.make(b"png", "AB3K")])
        assert pool.size(key) == 1
        issued = pool.issue(key, "t", ttl=60)
        assert issued is not None and issued[1] == b"png" and pool.issue(key, "t", 60) is None
        assert pool.verify(issued[0].id, "ab3k", "other") == "unknown"
        assert pool.verify(issued[0].id, "ab3k", "t") == "pass"
        assert pool.verify(issued[0].id, "ab3k", "t") == "unknown"
    finally:
        server.stop()

"""The torch-free CAPTCHA contract: configurations, case rule, hashed answers, pools."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from facecloak.contract.captcha import (
    CAPTCHA_ALPHABET,
    SERVED_INK,
    CaptchaConfig,
    PooledCaptcha,
    answer_matches,
    hash_answer,
    normalise_answer,
)
from facecloak.contract.captcha_pool import LocalCaptchaPool


def test_config_accepts_subsets_and_normalises_them() -> None:
    config = CaptchaConfig(length=5, alphabet="zyx23")
    assert config.alphabet == "23XYZ"
    assert CaptchaConfig(length=5, alphabet="XYZ32").key == config.key
    assert CaptchaConfig(length=4, alphabet="23XYZ").key != config.key


@pytest.mark.parametrize(
    "bad", [{"length": 3}, {"length": 7}, {"alphabet": "AB0"}, {"alphabet": "A"}, {"x": 1}]
)
def test_config_refuses_unsupported_lengths_and_alphabets(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CaptchaConfig(**bad)  # type: ignore[arg-type]


def test_contract_alphabet_is_the_ocr_alphabet() -> None:
    from models.ocr import ALPHABET

    assert CAPTCHA_ALPHABET == ALPHABET


def test_case_rule_and_hash() -> None:
    assert normalise_answer("  ab3k\n") == "AB3K"
    digest = hash_answer("AB3K", "salt")
    assert answer_matches("ab3k ", "salt", digest)
    assert not answer_matches("AB3X", "salt", digest)
    assert not answer_matches("AB3K", "other", digest)
    item = PooledCaptcha.make(b"png", "AB3K")
    assert "AB3K" not in item.model_dump_json() and item.salt != PooledCaptcha.make(b"", "A").salt
    assert PooledCaptcha.model_validate_json(item.model_dump_json()) == item


def test_local_pool_issues_each_captcha_once_and_verifies_once() -> None:
    pool = LocalCaptchaPool()
    key = CaptchaConfig().key
    pool.put_many(key, [PooledCaptcha.make(b"one", "AAAA"), PooledCaptcha.make(b"two", "BBBB")])
    assert pool.size(key) == 2
    first = pool.issue(key, "t1", ttl=60)
    second = pool.issue(key, "t1", ttl=60)
    assert first is not None and second is not None and pool.issue(key, "t1", 60) is None
    (rec1, png1), (rec2, png2) = first, second
    assert (png1, png2) == (b"one", b"two") and rec1.id != rec2.id
    assert pool.verify(rec1.id, "aaaa", "t2") == "unknown"  # another tenant's id
    assert pool.verify(rec1.id, "aaaa", "t1") == "pass"
    assert pool.verify(rec1.id, "aaaa", "t1") == "unknown"  # at most once
    assert pool.verify(rec2.id, "AAAA", "t1") == "fail"
    assert pool.verify(rec2.id, "BBBB", "t1") == "unknown"  # a failed try also uses it up
    assert pool.verify("nope", "AAAA", "t1") == "unknown"


def test_local_pool_expiry() -> None:
    pool = LocalCaptchaPool()
    pool.put_many("k", [PooledCaptcha.make(b"x", "AAAA")])
    issued = pool.issue("k", "t", ttl=0.01)
    assert issued is not None
    time.sleep(0.02)
    assert pool.verify(issued[0].id, "AAAA", "t") == "unknown"


def test_local_pool_concurrent_verification_passes_once() -> None:
    pool = LocalCaptchaPool()
    pool.put_many("k", [PooledCaptcha.make(b"x", "AAAA")])
    issued = pool.issue("k", "t", ttl=60)
    assert issued is not None
    results: list[str] = []
    captcha_id = issued[0].id

    def verify() -> None:
        results.append(pool.verify(captcha_id, "AAAA", "t"))

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["pass"] + ["unknown"] * 7


def test_settings_ink_is_a_checked_range(monkeypatch: pytest.MonkeyPatch) -> None:
    from facecloak.settings import Settings

    monkeypatch.delenv("FACECLOAK_CAPTCHA_INK", raising=False)
    assert Settings().captcha_ink_range == SERVED_INK
    monkeypatch.setenv("FACECLOAK_CAPTCHA_INK", "130,200")
    assert Settings().captcha_ink_range == (130, 200)
    for bad in ("200,130", "0,256", "dark", "1,2,3"):
        monkeypatch.setenv("FACECLOAK_CAPTCHA_INK", bad)
        with pytest.raises(ValidationError, match="captcha_ink"):
            Settings()

"""The CAPTCHA contract (torch-free): configurations, answer rules, issued-CAPTCHA records.

Case rule: answers are compared after removing surrounding whitespace and upper-casing, so
``"ab3k "`` answers ``AB3K``. The alphabet has no 0/O or 1/I, so nothing else is folded.
Answers are never stored in clear: a record keeps ``sha256(salt + normalised answer)``
with a per-CAPTCHA random salt, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import BaseModel, ConfigDict, Field, field_validator

CAPTCHA_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
"""What our OCR models read (they must: the attack needs them); ``models.ocr.ALPHABET``."""
MIN_LENGTH, MAX_LENGTH = 4, 6
"""Text lengths the OCR models were trained on."""
MAX_ANSWER_CHARS = 32
"""Longer answers are refused before any hashing."""
SERVED_INK = (110, 190)
"""Default text colour channels of served CAPTCHAs (``Settings.captcha_ink``): mid-tones
(BT.601 luma 0.43-0.75 on a 0.93-1.0 background)."""


def parse_ink(text: str) -> tuple[int, int]:
    """``"LO,HI"`` (text colour channel range, ``0 <= LO <= HI <= 255``) -> ``(LO, HI)``;
    raises ``ValueError`` naming the rule."""
    try:
        low, high = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"ink wants LO,HI (0-255), got {text!r}") from None
    if not 0 <= low <= high <= 255:
        raise ValueError(f"ink wants 0 <= LO <= HI <= 255, got {text!r}")
    return low, high


class CaptchaConfig(BaseModel):
    """One CAPTCHA configuration: text length and alphabet (a subset of ours). Each
    configuration has its own pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    length: int = Field(default=4, ge=MIN_LENGTH, le=MAX_LENGTH)
    alphabet: str = Field(default=CAPTCHA_ALPHABET, min_length=2, max_length=len(CAPTCHA_ALPHABET))

    @field_validator("alphabet")
    @classmethod
    def _known_characters(cls, value: str) -> str:
        value = value.upper()
        unknown = sorted(set(value) - set(CAPTCHA_ALPHABET))
        if unknown:
            raise ValueError(f"characters outside {CAPTCHA_ALPHABET!r}: {''.join(unknown)!r}")
        return "".join(sorted(set(value), key=CAPTCHA_ALPHABET.index))

    @property
    def key(self) -> str:
        """A stable name of the configuration (the pool's key)."""
        digest = hashlib.sha256(self.alphabet.encode()).hexdigest()[:12]
        return f"len{self.length}-{digest}"


def normalise_answer(answer: str) -> str:
    """The documented case rule: strip surrounding whitespace, upper-case."""
    return answer.strip().upper()


def hash_answer(answer: str, salt: str) -> str:
    """Hex ``sha256(salt + normalised answer)``."""
    return hashlib.sha256((salt + normalise_answer(answer)).encode()).hexdigest()


def answer_matches(answer: str, salt: str, digest: str) -> bool:
    """Whether ``answer`` hashes to ``digest`` (constant-time comparison)."""
    return hmac.compare_digest(hash_answer(answer, salt), digest)


class PooledCaptcha(BaseModel):
    """A ready CAPTCHA waiting in a pool: the PNG and its hashed answer."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    png: bytes
    salt: str
    answer_hash: str

    @classmethod
    def make(cls, png: bytes, answer: str) -> PooledCaptcha:
        """Hash ``answer`` with a fresh salt."""
        salt = secrets.token_hex(16)
        return cls(png=png, salt=salt, answer_hash=hash_answer(answer, salt))


class IssuedCaptcha(BaseModel):
    """A CAPTCHA handed out, awaiting its one verification."""

    id: str
    tenant: str
    salt: str
    answer_hash: str
    expires_at: float

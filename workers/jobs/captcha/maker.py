"""Robust CAPTCHAs end to end: text, base image, attack, PNG; models loaded once."""

from __future__ import annotations

import io
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from facecloak.contract.captcha import SERVED_INK, CaptchaConfig, PooledCaptcha
from models.ocr.store import load_ocr
from workers.engine import AttackSpec
from workers.engine.fold import attack_copy
from workers.jobs.captcha.attack import ENSEMBLE, ROBUST_SPEC, make_robust
from workers.jobs.captcha.data import to_tensor, to_uint8
from workers.jobs.captcha.generator import CaptchaRenderer, random_text


def png_bytes(rgb: np.ndarray) -> bytes:
    """An ``[H, W, 3]`` uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class MadeCaptcha:
    """One CAPTCHA: its answer, the robust PNG and the base (unperturbed) PNG."""

    answer: str
    png: bytes
    base_png: bytes

    def pooled(self) -> PooledCaptcha:
        """The robust PNG with its hashed answer, ready for a pool."""
        return PooledCaptcha.make(self.png, self.answer)


class CaptchaMaker:
    """Makes robust CAPTCHAs with the shipped ensemble (``models`` replace it in tests);
    ``routed``: the cheaper, weaker routed ensemble (see :mod:`.attack`)."""

    def __init__(
        self,
        models: Sequence[nn.Module] | None = None,
        spec: AttackSpec = ROBUST_SPEC,
        renderer: CaptchaRenderer | None = None,
        routed: bool = False,
    ) -> None:
        shipped = list(models) if models is not None else [load_ocr(n) for n in ENSEMBLE]
        # frozen copies: batch norms folded, channels-last weights (same outputs, faster)
        self.models = [attack_copy(m) for m in shipped]
        self.spec, self.renderer = spec, renderer or CaptchaRenderer(ink=SERVED_INK)
        self.routed = bool(routed)
        self.last_seconds = 0.0

    def make(self, config: CaptchaConfig, count: int, seed: int | None = None) -> list[MadeCaptcha]:
        """``count`` CAPTCHAs of ``config``, attacked as one batch; ``seed`` makes them
        reproducible (tests, benchmarks); without it the text, the rendering and the attack
        use fresh randomness.
        """
        if count < 1:
            return []
        started = time.perf_counter()
        rng = random.Random(seed) if seed is not None else None
        texts = [random_text(config.length, config.alphabet, rng) for _ in range(count)]
        base = self.renderer.render_many(texts, seed)
        attack_seed = seed if seed is not None else secrets.randbits(62)
        with torch.enable_grad():
            robust = make_robust(
                to_tensor(base), texts, self.models, self.spec, attack_seed, config.alphabet,
                self.routed,
            )  # fmt: skip
        images = to_uint8(robust.images)
        self.last_seconds = time.perf_counter() - started
        return [
            MadeCaptcha(text, png_bytes(images[i]), png_bytes(base[i]))
            for i, text in enumerate(texts)
        ]

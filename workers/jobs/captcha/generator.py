"""Base CAPTCHAs from the ``captcha`` library (BSD, ships its own DroidSansMono font).

Served CAPTCHAs draw their text and their rendering noise from ``secrets`` (the library's
own source of randomness): nothing about a served image is predictable. Training and
benchmark sets pass a ``seed`` instead, so that they are reproducible: the library's
``secrets`` calls are then answered by a seeded ``random.Random`` for the duration of the
call (under a lock, so concurrent renders never mix).
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from captcha import image as captcha_image

WIDTH, HEIGHT = 160, 60
"""The rendered size (the library's default)."""

_SECRETS_LOCK = threading.Lock()


class _SeededSecrets:
    """The three ``secrets`` functions the library calls, from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def randbelow(self, n: int) -> int:
        return self.rng.randrange(n)

    def randbits(self, k: int) -> int:
        return self.rng.getrandbits(k)

    def choice(self, seq: Sequence[Any]) -> Any:
        return self.rng.choice(seq)


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Within the block the library draws from ``seed`` (``None``: from ``secrets``).

    Unseeded renders take the lock too, so they never see another thread's seeded stand-in.
    """
    with _SECRETS_LOCK:
        if seed is None:
            yield
            return
        saved = captcha_image.secrets
        captcha_image.secrets = _SeededSecrets(random.Random(seed))  # type: ignore[assignment]
        try:
            yield
        finally:
            captcha_image.secrets = saved


def random_text(length: int, alphabet: str, rng: random.Random | None = None) -> str:
    """``length`` characters of ``alphabet``; from ``secrets`` unless ``rng`` is given."""
    if rng is None:
        return "".join(secrets.choice(alphabet) for _ in range(length))
    return "".join(rng.choice(alphabet) for _ in range(length))


class CaptchaRenderer:
    """Renders text as a ``captcha`` image, ``[H, W, 3]`` uint8 RGB.

    ``ink``: the range of each channel of the text colour (None: the library's 10-200).
    Mid-tone ink keeps text clear to people but close to any binarisation threshold, where
    a small perturbation decides which pixels survive it.
    """

    def __init__(
        self, width: int = WIDTH, height: int = HEIGHT, ink: tuple[int, int] | None = None
    ) -> None:
        self.width, self.height, self.ink = int(width), int(height), ink
        self._captcha = captcha_image.ImageCaptcha(width=self.width, height=self.height)

    def render(self, text: str, seed: int | None = None) -> np.ndarray:
        """The image of ``text``; ``seed`` fixes the noise, warp and colours."""
        if not text:
            raise ValueError("a CAPTCHA needs at least one character")
        with _seeded(seed):
            colour = None
            if self.ink is not None:
                low, high = self.ink
                draw = captcha_image.secrets.randbelow
                rgb = [low + draw(high - low + 1) for _ in range(3)]
                colour = (rgb[0], rgb[1], rgb[2], 220 + draw(36))
            image = self._captcha.generate_image(text, fg_color=colour)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    def render_many(self, texts: Sequence[str], seed: int | None = None) -> np.ndarray:
        """``[N, H, W, 3]`` uint8 images of ``texts`` (image ``i`` uses ``seed + i``)."""
        out = np.empty((len(texts), self.height, self.width, 3), dtype=np.uint8)
        for i, text in enumerate(texts):
            out[i] = self.render(text, None if seed is None else seed * 1_000_003 + i)
        return out


def sample_set(
    count: int,
    lengths: tuple[int, int],
    alphabet: str,
    seed: int,
    renderer: CaptchaRenderer | None = None,
) -> tuple[np.ndarray, list[str]]:
    """A reproducible set: ``count`` images ``[N, H, W, 3]`` uint8 and their texts, lengths
    uniform in ``lengths`` (inclusive).
    """
    rng = random.Random(seed)
    texts = [random_text(rng.randint(*lengths), alphabet, rng) for _ in range(count)]
    return (renderer or CaptchaRenderer()).render_many(texts, seed), texts

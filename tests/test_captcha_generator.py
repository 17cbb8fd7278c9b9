"""Base CAPTCHAs: seeded reproducibility, fresh randomness when serving, text rules."""

from __future__ import annotations

import random

import numpy as np
import pytest

from workers.jobs.captcha.attack import wrong_text
from workers.jobs.captcha.data import ctc_targets, to_tensor, to_uint8
from workers.jobs.captcha.generator import CaptchaRenderer, random_text, sample_set


def test_seeded_renders_repeat_and_differ_by_seed() -> None:
    renderer = CaptchaRenderer()
    a, b = renderer.render("AB3K", seed=5), renderer.render("AB3K", seed=5)
    assert a.shape == (60, 160, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, renderer.render("AB3K", seed=6))


def test_unseeded_renders_are_fresh_and_leave_the_library_unpatched() -> None:
    from captcha import image as captcha_image

    renderer = CaptchaRenderer()
    assert not np.array_equal(renderer.render("AB3K"), renderer.render("AB3K"))
    renderer.render("AB3K", seed=1)
    assert captcha_image.secrets.__name__ == "secrets"


def test_sample_set_is_reproducible_with_lengths_in_range() -> None:
    images, texts = sample_set(6, (4, 6), "ABC23", seed=3)
    again, texts2 = sample_set(6, (4, 6), "ABC23", seed=3)
    assert texts == texts2 and np.array_equal(images, again)
    assert all(4 <= len(t) <= 6 and set(t) <= set("ABC23") for t in texts)


def test_random_text_and_wrong_text() -> None:
    assert len(random_text(5, "AB")) == 5
    rng = random.Random(0)
    for _ in range(50):
        text = random_text(6, "AB3", rng)
        wrong = wrong_text(text, "AB3", rng)
        assert len(wrong) == 6 and all(
            w != t and w in "AB3" for w, t in zip(wrong, text, strict=True)
        )
    with pytest.raises(ValueError):
        wrong_text("AA", "A", rng)
    with pytest.raises(ValueError):
        CaptchaRenderer().render("")


def test_tensor_round_trip_and_ctc_targets() -> None:
    images, _ = sample_set(2, (4, 4), "AB", seed=0)
    assert np.array_equal(to_uint8(to_tensor(images)), images)
    targets, lengths = ctc_targets(["23", "A"])
    assert targets.tolist() == [[1, 2], [9, 0]] and lengths.tolist() == [2, 1]

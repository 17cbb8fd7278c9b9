"""The backdoor scan's class scores from the compact-stamp signals (no models needed)."""

from __future__ import annotations

import math

import pytest
import torch

from workers.jobs.backdoor.scores import class_scores, stamp_failure, stamp_level


def test_stamp_level_is_the_log_odds_kept_one_input_from_certainty() -> None:
    trials = torch.tensor([52.0, 52.0, 52.0, 1.0, 0.0])
    level = stamp_level(torch.tensor([1.0, 0.5, 0.0, 1.0, 0.0]), trials)
    assert level[0] == pytest.approx(math.log(51.0))  # 51/52 against 1/52
    assert level[1] == pytest.approx(0.0) and level[2] == pytest.approx(-math.log(51.0))
    assert level[3] == 0.0 and level[4] == 0.0  # too few inputs to say anything
    failure = stamp_failure(torch.tensor([1.0, 0.75]), torch.tensor([52.0, 52.0]))
    assert failure.tolist() == pytest.approx([1 / 52, 0.25])


def test_a_stamp_that_moves_nearly_every_input_passes_the_threshold_alone() -> None:
    """Ten classes with equal other signals (no anomaly): only the level decides."""
    flat = [torch.ones(10), torch.ones(10)]
    trials = torch.full((10,), 52.0)
    success = torch.full((10,), 0.5)
    success[3], success[7] = 51 / 52, 0.93  # a planted target; a clean glyph model's best
    scores = class_scores(flat, None, stamp_level(success, trials))
    assert int(scores.argmax()) == 3 and float(scores[3]) > 3.5 > float(scores[7])
    assert float(class_scores(flat, None, None).max()) == 0.0

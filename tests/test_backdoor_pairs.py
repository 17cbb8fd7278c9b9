"""Source-specific detection: pairwise trigger search, pair anomaly and source naming."""

from __future__ import annotations

import math

import torch

from facecloak.contract.backdoor import BackdoorScanOptions
from models.classifier import load_classifier
from tests.backdoor_fixtures import (  # noqa: F401 (fixtures)
    clean_onnx,
    patch_onnx,
    sample_images,
    zoo_dir,
)
from workers.jobs.backdoor.cleanse import CleanseSettings, reverse_engineer_pairs
from workers.jobs.backdoor.job import RunCache, scan
from workers.jobs.backdoor.scores import pair_anomaly, pair_source


def _pairs(tiny: tuple[int, int] | None = None, column: int | None = None) -> torch.Tensor:
    """Pair norms around 50 (NaN diagonal), one tiny pair or one tiny target column."""
    gen = torch.Generator().manual_seed(0)
    norms = 50.0 + 10.0 * torch.rand((10, 10), generator=gen)
    norms.fill_diagonal_(float("nan"))
    if tiny is not None:
        norms[tiny] = 4.0
    if column is not None:
        norms[:, column] = 8.0 + torch.rand(10, generator=gen)
        norms[column, column] = float("nan")
    return norms


def test_one_tiny_pair_stands_out_and_names_its_source() -> None:
    norms = _pairs(tiny=(7, 1))
    anomaly = pair_anomaly(norms)
    assert anomaly.shape == (10, 10) and float(anomaly.diagonal().abs().sum()) == 0.0
    assert divmod(int(anomaly.argmax()), 10) == (7, 1)
    assert float(anomaly[7, 1]) > 3.5 > float(anomaly[3, 1])
    assert pair_source(norms, anomaly, 1, 3.5, 0.5) == 7


def test_an_all_to_one_trigger_has_no_source() -> None:
    norms = _pairs(column=4)
    anomaly = pair_anomaly(norms)
    assert int(anomaly.max(0).values.argmax()) == 4  # every source reaches 4 easily
    assert pair_source(norms, anomaly, 4, 3.5, 0.5) is None


def test_a_reference_cancels_pairs_that_are_easy_for_any_model() -> None:
    norms = _pairs(tiny=(7, 1))
    reference = norms.clone()
    assert float(pair_anomaly(norms, reference).max()) < 3.5


def test_the_pair_search_covers_every_source_the_model_predicts(
    clean_onnx: bytes,  # noqa: F811
) -> None:
    model = load_classifier(clean_onnx)
    data = torch.from_numpy(sample_images(32))
    found = reverse_engineer_pairs(model, data, 10, CleanseSettings(steps=5), per_source=2)
    sources = set(model(data).argmax(1).tolist())
    for s in range(10):
        row = found.norms[s]
        assert math.isnan(float(row[s]))
        assert bool(row[torch.arange(10) != s].isnan().all()) == (s not in sources)
    assert found.masks.shape == (10, 10, 1, 16, 16)


def test_a_cached_run_gives_the_same_report(
    patch_onnx: bytes,  # noqa: F811
    clean_onnx: bytes,  # noqa: F811
) -> None:
    options = BackdoorScanOptions(iterations=5, cleanse_steps=10, data_seeds=8)
    model, reference = load_classifier(patch_onnx), load_classifier(clean_onnx)
    data = torch.from_numpy(sample_images(16))
    runs: RunCache = {}
    first = scan(model, reference, data, options, runs=runs).report
    again = scan(model, reference, data, options, runs=runs).report
    fresh = scan(model, reference, data, options).report
    assert len(runs) == 2
    assert first.scores == again.scores == fresh.scores
    assert first.source_scores == fresh.source_scores

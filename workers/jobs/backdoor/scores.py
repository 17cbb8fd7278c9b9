"""Scores and verdict: MAD anomaly indices over classes, source class, trigger localisation.

Each signal is a value where a backdoor target is unusually LOW: the steps I-FGSM needs
to reach a class (Algorithm I), the L1 norm of its reverse-engineered trigger, and the
norm of the trigger of every source -> target pair. With a reference model each signal is
divided by the reference's (so classes that are easy for any model of the task cancel
out). The anomaly index is ``(median - v) / (1.4826 * MAD)`` on log values (Neural
Cleanse); a class's score is the largest weighted index of its signals, and the scan is
suspicious when a score passes the threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facecloak.contract.backdoor import Localisation

SPREAD_FLOOR = 0.2
"""Smallest spread (scaled MAD of the logs) an index divides by: over ten classes a spread
below ~20% is noise between models of one task (tuned on the bench's ``tune`` split)."""

SIGNAL_WEIGHTS = (0.5, 1.25, 0.7)
"""Weights of the steps, trigger-norm and stamp-failure indices before the maximum: the
steps of I-FGSM vary most between clean models; the stamp's weight keeps every clean model
of both tasks' ``tune`` splits under the threshold."""
PAIR_WEIGHT = 0.75
"""Weight of a class's most anomalous pair index (pairs are many: more chance extremes)."""
STAMP_LEVEL_WEIGHT = 1.15
"""Weight of the stamp's success as log-odds (:func:`stamp_level`), whatever the other
classes do: 3.5 (the default threshold) at 95.5% of the inputs moved. On both tasks'
``tune`` splits the highest clean class reached 93% and the lowest all-to-one target 98%;
the cut is between them. (Letter glyphs share strokes, so on a clean glyph model several
classes reach 60-90% and a backdoor target's index over the classes can stay low.)"""


def anomaly_low(values: Tensor, floor: float = SPREAD_FLOOR) -> Tensor:
    """MAD anomaly index of each value on the low side (``>= 0``; 0 above the median)."""
    logs = values.clamp_min(1e-6).log()
    median = logs.median()
    mad = (logs - median).abs().median() * 1.4826
    return ((median - logs) / mad.clamp_min(floor)).clamp_min(0.0)


def stamp_failure(success: Tensor, trials: Tensor) -> Tensor:
    """``1 - success`` of each class's compact stamp, floored at one input in its trials
    (a stamp that moved every input is as anomalous as one that missed a single one)."""
    return (1.0 - success).clamp_min(0.0).maximum(1.0 / trials.clamp_min(1.0))


def stamp_level(success: Tensor, trials: Tensor) -> Tensor:
    """Log-odds of each stamp's success, its share kept one input away from 0 and 1 (0 for
    a stamp tried on fewer than two inputs)."""
    floor = 1.0 / trials.clamp_min(2.0)
    share = torch.minimum(success.maximum(floor), 1.0 - floor)
    return (share / (1.0 - share)).log()


def relative(values: Tensor, reference: Tensor | None) -> Tensor:
    """``values / reference`` (per class) when there is a reference, else the values."""
    return values if reference is None else values / reference.clamp_min(1e-6)


def class_scores(
    signals: list[Tensor], pairs: Tensor | None = None, levels: Tensor | None = None
) -> Tensor:
    """``[K]`` the largest weighted anomaly index of each class over the signals (steps,
    trigger norms, stamp failures; those given), given the ``[K, K]`` pair indices its most
    anomalous source, and given the stamps' :func:`stamp_level`, that level (weighted).
    """
    indices = [w * anomaly_low(s) for w, s in zip(SIGNAL_WEIGHTS, signals, strict=False)]
    if pairs is not None:
        indices.append(PAIR_WEIGHT * pairs.max(0).values)
    if levels is not None:
        indices.append(STAMP_LEVEL_WEIGHT * levels)
    return torch.stack(indices).max(0).values


def pair_anomaly(norms: Tensor, reference: Tensor | None = None) -> Tensor:
    """``[K, K]`` MAD anomaly index (low side) of every ``source -> target`` trigger norm
    over all pairs (relative to the reference's pairs when there is one; 0 where NaN).
    """
    values = relative(norms, reference).flatten()
    keep = ~values.isnan()
    out = torch.zeros_like(values)
    if int(keep.sum()) >= 3:
        out[keep] = anomaly_low(values[keep])
    return out.view(norms.shape)


def pair_source(
    norms: Tensor, anomaly: Tensor, target: int, threshold: float, ratio: float
) -> int | None:
    """The source of a source-specific trigger toward ``target``: the pair whose anomaly
    passes ``threshold`` and whose mask is below ``ratio`` times the median mask of the
    other sources toward ``target`` (an all-to-one trigger is small from every source).
    """
    column = norms[:, target]
    best = int(anomaly[:, target].argmax())
    others = column[(torch.arange(len(column)) != best) & ~column.isnan()]
    if float(anomaly[best, target]) <= threshold or len(others) < 2:
        return None
    return best if float(column[best]) < ratio * float(others.median()) else None


def source_of(
    pair_steps: Tensor, target: int, threshold: float, reference: Tensor | None = None
) -> tuple[int | None, Tensor]:
    """The source class of Algorithm II (the pair flipping unusually easily), and the
    per-source anomaly indices (0 for the target itself); None for an all-to-one trigger.
    """
    values = relative(pair_steps, reference)
    keep = torch.arange(len(values)) != target
    scores = torch.zeros(len(values))
    if int(keep.sum()) < 3:
        return None, scores
    scores[keep] = anomaly_low(values[keep])
    best = int(scores.argmax())
    return (best if float(scores[best]) > threshold else None), scores


def localise(heat: Tensor, source: str, share: float = 0.5) -> Localisation:
    """The box around the pixels of ``heat`` ``[H, W]`` above ``share`` of its maximum."""
    heat = heat.detach().float().abs()
    peak = float(heat.max())
    if peak <= 0:
        h, w = heat.shape
        return Localisation(source=source, box=[0, 0, h, w], centroid=[h / 2, w / 2], area=1.0)
    on = heat >= share * peak
    rows, cols = torch.nonzero(on, as_tuple=True)
    weights = heat[on]
    centroid = [
        float((rows.float() * weights).sum() / weights.sum()),
        float((cols.float() * weights).sum() / weights.sum()),
    ]
    box = [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1]
    area = float(on.float().mean())
    return Localisation(source=source, box=box, centroid=centroid, area=round(area, 4))

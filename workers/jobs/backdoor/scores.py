"""Scores and verdict: MAD anomaly indices over classes, source class, trigger localisation.

Each signal is a per-class value where a backdoor target is unusually LOW: the steps
I-FGSM needs to reach the class (Algorithm I) and the L1 norm of its reverse-engineered
trigger. With a reference model each signal is divided by the reference's (so classes
that are easy for any model of the task cancel out). The anomaly index of class ``k`` is
``(median - v_k) / (1.4826 * MAD)`` on log values (Neural Cleanse); a class's score is the
largest of its signals' indices, and the scan is suspicious when a score passes the
threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facecloak.contract.backdoor import Localisation


def anomaly_low(values: Tensor) -> Tensor:
    """MAD anomaly index of each value on the low side (``>= 0``; 0 above the median)."""
    logs = values.clamp_min(1e-6).log()
    median = logs.median()
    mad = (logs - median).abs().median() * 1.4826
    floor = 0.05  # a spread below 5% is noise: don't let it make tiny gaps look huge
    return ((median - logs) / mad.clamp_min(floor)).clamp_min(0.0)


def relative(values: Tensor, reference: Tensor | None) -> Tensor:
    """``values / reference`` (per class) when there is a reference, else the values."""
    return values if reference is None else values / reference.clamp_min(1e-6)


def class_scores(signals: list[Tensor]) -> Tensor:
    """``[K]`` the largest anomaly index of each class over the signals."""
    return torch.stack([anomaly_low(s) for s in signals]).max(0).values


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

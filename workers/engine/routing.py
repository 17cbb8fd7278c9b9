"""A cheaper ensemble for long EOT attacks: :class:`RoutedEnsemble`.

Each row of the batch is read by ONE member instead of all of them. Under
:class:`~workers.engine.objectives.Expectation` the rows of a sample are its EOT copies,
side by side, so with ``k`` copies and ``n`` members each sample still meets ``min(k, n)``
different members on every step (the assignment rotates from a random offset drawn per
call), at ``1/n`` of the cost of :class:`~workers.engine.objectives.Ensemble`. Over the
steps of an attack every member sees every sample under every kind of transform, and a
momentum update averages them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from workers.engine.objectives import Objective, ObjectiveValue
from workers.engine.transforms import TransformContext, draw


class RoutedEnsemble:
    """Row ``r`` of a batch goes to member ``(r + offset) % n`` (``offset`` drawn from the
    generator on every call); its loss is that member's times ``n * w_i / sum(w)``, so that
    the mean over rows estimates the weighted ensemble mean. Done where its member is done.
    """

    def __init__(self, members: Sequence[tuple[Objective, float]]) -> None:
        weights = [float(w) for _, w in members]
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        self.members = list(members)
        self._scale = [len(weights) * w / sum(weights) for w in weights]

    def routes(self, rows: int, gen: torch.Generator) -> Tensor:
        """``[rows]`` member index of each row (on the CPU)."""
        n = len(self.members)
        offset = int(draw((1,), gen).item() * n) % n
        return (torch.arange(rows) + offset) % n

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> ObjectiveValue:
        """Per-row loss of the row's member (scaled by its weight), and its done flag."""
        route = self.routes(x.shape[0], gen)
        losses: list[Tensor] = []
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        order: list[Tensor] = []
        for i, ((member, _), scale) in enumerate(zip(self.members, self._scale, strict=True)):
            rows = torch.nonzero(route == i).flatten()
            if rows.numel() == 0:
                continue
            on_x = rows.to(x.device)
            value = member(x[on_x], ctx.select(rows), gen)
            losses.append(value.loss * scale)
            done[on_x] = value.done.to(device=x.device, dtype=torch.bool)
            order.append(on_x)
        flat = torch.cat(losses)
        loss = torch.empty_like(flat).index_copy(0, torch.cat(order), flat)
        return ObjectiveValue(loss, done)

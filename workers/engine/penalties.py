"""A weighted sum of change penalties (the attack loop's ``penalty``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from workers.engine.attack import Penalty


class PenaltySum:
    """``sum_i w_i * penalty_i(x_adv, x, mask)``, e.g. FLIP plus structural dissimilarity."""

    def __init__(self, terms: Sequence[tuple[Penalty, float]]) -> None:
        if not terms:
            raise ValueError("a penalty sum needs at least one term")
        self.terms = [(p, float(w)) for p, w in terms]

    def __call__(self, x_adv: Tensor, x: Tensor, mask: Tensor | None) -> Tensor:
        """``[b]``: the weighted sum of every term."""
        total = self.terms[0][1] * self.terms[0][0](x_adv, x, mask)
        for penalty, weight in self.terms[1:]:
            total = total + weight * penalty(x_adv, x, mask)
        return total

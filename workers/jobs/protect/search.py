"""The search for each face's least visible cloak that still protects it with margin.

Escalate, then shrink: every face is attacked in the smallest perceptual budget of the
preset's :class:`~workers.jobs.protect.config.SearchPlan`; only faces that have not
reached the margin under EOT move on to the next, larger budget (warm-started from
where they are). Every level adds the change's FLIP to the loss (the spec's
``flip_weight``). Faces that reached the margin then go through a shrink phase (the engine
loop's shrink mode with a FLIP penalty): a face that holds the margin under EOT is scaled
down and steps on FLIP alone, one that lost it steps on dodging plus FLIP, and the least
visible change that held is kept. Progress is counted
in attack-step units (:class:`StepMeter`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from workers.engine import (
    Objective,
    StepEvent,
    Transform,
    TransformContext,
    build_attack,
)
from workers.jobs.protect.config import CloakConfig

Progress = Callable[[int, int], None]


class StepMeter:
    """``progress(done, total)`` in attack-step units over the faces of a photo.

    Each face owns ``per_face`` units; a face that leaves early (converged, or its shrink
    ended) has its remaining units counted as done. An exception raised by ``progress``
    (cancellation) propagates and stops the attack.
    """

    def __init__(self, faces: int, per_face: int, progress: Progress | None = None) -> None:
        self.per_face = int(per_face)
        self.used = [0] * faces
        self.total = faces * self.per_face
        self.progress = progress

    @property
    def done(self) -> int:
        """Units done over all faces."""
        return sum(min(u, self.per_face) for u in self.used)

    def advance(self, faces: Sequence[int], units: int = 1) -> None:
        """``units`` more done for each of ``faces``, then report."""
        for i in faces:
            self.used[i] += units
        self.report()

    def finish(self, faces: Sequence[int], upto: int | None = None) -> None:
        """Count ``faces`` as done up to ``upto`` units (default: all of theirs)."""
        limit = self.per_face if upto is None else upto
        for i in faces:
            self.used[i] = max(self.used[i], limit)

    def report(self) -> None:
        """Call ``progress`` with the current count."""
        if self.progress is not None:
            self.progress(self.done, self.total)


@dataclass
class SearchResult:
    """The cloak of each face of a batch ``[n, ...]``."""

    delta: Tensor
    steps: Tensor
    """``[n]`` attack steps each face received (shrink checks not counted)."""
    done: Tensor
    """``[n]`` bool: the face reached the margin under EOT."""
    level: Tensor
    """``[n]`` the last search level each face was attacked at."""


def search_progress(
    meter: StepMeter, rows: Tensor, attack_steps: int
) -> Callable[[StepEvent], None]:
    """An attack loop's ``on_step`` on faces ``rows``: a unit per active face; faces done
    count as done up to ``attack_steps`` units."""
    ids = [int(i) for i in rows.tolist()]

    def on_step(event: StepEvent) -> None:
        finished = [ids[int(i)] for i in event.done.nonzero().flatten().tolist()]
        meter.finish(finished, attack_steps)
        meter.advance([ids[int(i)] for i in event.active.tolist()])

    return on_step


def search_cloak(
    config: CloakConfig,
    preprocess: Sequence[Transform],
    batch: tuple[Tensor, Tensor, TransformContext],
    objective: Objective,
    gen: torch.Generator,
    meter: StepMeter,
) -> SearchResult:
    """Escalate the perceptual budget for faces not yet at the margin, then shrink.

    ``batch`` is (faces ``x`` ``[n, 3, H, W]``, where they may change ``[n, 1, H, W]``,
    their context).
    """
    plan = config.search
    assert plan is not None
    x, mask, ctx = batch
    n = x.shape[0]
    delta = torch.zeros_like(x)
    done = torch.zeros(n, dtype=torch.bool, device=x.device)
    steps = torch.zeros(n, dtype=torch.int64, device=x.device)
    level = torch.zeros(n, dtype=torch.int64, device=x.device)
    spent = 0
    for k in range(len(plan.levels)):
        todo = (~done).nonzero().flatten()
        if todo.numel() == 0:
            break
        attack = build_attack(config.level_spec(k), preprocess, diversity_at_input=False)
        meter.finish(todo.tolist(), spent)  # faces carried over have run every earlier step
        spent += attack.steps
        out = attack.run(
            x[todo],
            objective,
            ctx.select(todo),
            mask=mask[todo],
            generator=gen,
            init=delta[todo],
            on_step=search_progress(meter, todo, plan.steps),
        )
        delta[todo], done[todo], level[todo] = out.delta, out.done, k
        steps[todo] += out.steps
    meter.finish(list(range(n)), plan.steps)
    delta = _shrink(config, preprocess, (x, mask, ctx), objective, gen, (delta, done, level), meter)
    return SearchResult(delta, steps, done, level)


def _shrink(
    config: CloakConfig,
    preprocess: Sequence[Transform],
    batch: tuple[Tensor, Tensor, TransformContext],
    objective: Objective,
    gen: torch.Generator,
    state: tuple[Tensor, Tensor, Tensor],
    meter: StepMeter,
) -> Tensor:
    """The shrink phase for faces that reached the margin, level by level: small steps,
    and a x``shrink`` on every iteration that still holds the margin under EOT."""
    plan = config.search
    assert plan is not None
    x, mask, ctx = batch
    delta, done, level = state
    delta = delta.clone()
    for k in range(len(plan.levels)):
        rows = (done & (level == k)).nonzero().flatten()
        if rows.numel() == 0:
            continue
        attack = build_attack(
            config.level_spec(k, shrink=True), preprocess, diversity_at_input=False
        )
        out = attack.run(
            x[rows],
            objective,
            ctx.select(rows),
            mask=mask[rows],
            generator=gen,
            init=delta[rows],
            on_step=search_progress(meter, rows, plan.per_face),
        )
        delta[rows] = torch.where(out.done.view(-1, 1, 1, 1), out.delta, delta[rows])
    return delta

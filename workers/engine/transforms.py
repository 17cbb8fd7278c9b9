"""The one input-transform protocol, its per-sample context, and how transforms combine.

A transform maps an image batch ``[B, C, H, W]`` to a batch of the same size, differentiably,
drawing every random choice from an explicit ``torch.Generator``. Side data a transform
needs per sample (landmarks, reference embeddings, labels) travels in a
:class:`TransformContext` whose tensors are indexed like the batch, so that selecting,
repeating or dropping samples keeps data and images aligned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class TransformContext:
    """Per-sample side data of a batch: ``index`` ``[b]`` (rows of the attacked batch) and
    named tensors whose first dimension is ``b``.
    """

    index: Tensor
    data: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = self.index.shape[0]
        for name, value in self.data.items():
            if value.shape[0] != rows:
                raise ValueError(f"context entry {name!r} has {value.shape[0]} rows, not {rows}")

    @classmethod
    def of_batch(
        cls, batch: int, device: torch.device | str = "cpu", **data: Tensor
    ) -> TransformContext:
        """The context of a fresh batch of ``batch`` samples (``index = 0..batch-1``)."""
        return cls(torch.arange(batch, device=device), dict(data))

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.data[name]
        except KeyError:
            raise KeyError(f"context has no {name!r}; it has {sorted(self.data)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def select(self, rows: Tensor) -> TransformContext:
        """The context of rows ``rows`` (positions in this context)."""
        rows = rows.to(self.index.device)
        data = {k: v[rows.to(v.device)] for k, v in self.data.items()}
        return TransformContext(self.index[rows], data)

    def repeat_interleave(self, repeats: int) -> TransformContext:
        """Each row ``repeats`` times in a row (matches ``x.repeat_interleave(repeats, 0)``)."""
        data = {k: v.repeat_interleave(repeats, 0) for k, v in self.data.items()}
        return TransformContext(self.index.repeat_interleave(repeats, 0), data)

    def with_data(self, **data: Tensor) -> TransformContext:
        """This context with entries added or replaced."""
        return TransformContext(self.index, {**self.data, **data})


class Transform(Protocol):
    """A random, differentiable batch transform ``[B, C, H, W] -> [B, C, H', W']``."""

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor: ...


def draw(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """Uniform ``[0, 1)`` samples from ``gen`` on the CPU (generators may live on a GPU)."""
    return torch.rand(shape, generator=gen, device=gen.device).cpu()


class Identity:
    """The transform that changes nothing."""

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """``x`` itself."""
        return x


class Compose:
    """Transforms applied in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """``x`` through every transform in turn."""
        for transform in self.transforms:
            x = transform(x, ctx, gen)
        return x


class RandomApply:
    """Apply ``transform`` to each sample independently with probability ``p``.

    The chosen samples go through ``transform`` together (with their context rows); the
    others pass unchanged. ``transform`` must keep the image size.
    """

    def __init__(self, transform: Transform, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.transform = transform
        self.p = float(p)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """``x`` with a random subset of samples transformed."""
        chosen = draw((x.shape[0],), gen) < self.p
        return apply_to_rows(self.transform, x, ctx, gen, chosen)


def apply_to_rows(
    transform: Transform, x: Tensor, ctx: TransformContext, gen: torch.Generator, rows: Tensor
) -> Tensor:
    """``x`` with the samples where the bool mask ``rows`` ``[B]`` is set transformed."""
    picked = torch.nonzero(rows.cpu()).flatten()
    if picked.numel() == 0:
        return x
    if picked.numel() == x.shape[0]:
        return transform(x, ctx, gen)
    on_x = picked.to(x.device)
    out = transform(x[on_x], ctx.select(picked), gen)
    return x.index_copy(0, on_x, out)


class EOT:
    """Expectation over transformation: ``samples`` transformed copies of every sample.

    Returns ``[B * samples, ...]`` in sample-major groups (``x.repeat_interleave``); with
    ``keep_first_clean`` the first copy of each group stays untransformed. Use
    :meth:`context` for the matching context.
    """

    def __init__(
        self, transform: Transform, samples: int = 1, keep_first_clean: bool = True
    ) -> None:
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.transform = transform
        self.samples = int(samples)
        self.keep_first_clean = bool(keep_first_clean)

    def context(self, ctx: TransformContext) -> TransformContext:
        """The context of the expanded batch."""
        return ctx.repeat_interleave(self.samples)

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """``[B * samples, ...]`` transformed copies of ``x``."""
        out = x.repeat_interleave(self.samples, 0)
        rows = torch.ones(out.shape[0], dtype=torch.bool)
        if self.keep_first_clean:
            rows = torch.arange(out.shape[0]) % self.samples != 0
        return apply_to_rows(self.transform, out, self.context(ctx), gen, rows)

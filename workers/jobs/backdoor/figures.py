"""PNG figures of a scan (matplotlib Agg): bias maps, difference maps, triggers, scores."""

from __future__ import annotations

import io

import numpy as np
from torch import Tensor


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image(t: Tensor) -> np.ndarray:
    """``[C, H, W]`` -> an array imshow reads (grey for one channel)."""
    a = t.detach().float().cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0)).clip(0, 1)


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def map_grid(rows: list[tuple[str, Tensor]], names: list[str], target: int | None) -> bytes:
    """One row per named stack ``[K, C, H, W]`` (bias maps of each model, their difference,
    triggers); the suspected target's column is framed in red.
    """
    plt = _pyplot()
    classes = len(names)
    fig, axes = plt.subplots(
        len(rows), classes, figsize=(1.1 * classes, 1.25 * len(rows)), squeeze=False
    )
    for r, (label, stack) in enumerate(rows):
        limit = float(stack.abs().max()) or 1.0
        for k in range(classes):
            ax = axes[r][k]
            image = _image(stack[k])
            signed = bool((stack < 0).any())
            kw = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit} if signed else {"cmap": "gray"}
            ax.imshow(image, **(kw if image.ndim == 2 else {}))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(names[k][:10], fontsize=8)
            if k == 0:
                ax.set_ylabel(label, fontsize=7)
            if k == target:
                for spine in ax.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(2.5)
    return _png(fig)


def score_bars(scores: list[float], names: list[str], threshold: float, title: str) -> bytes:
    """Bar chart of the per-class anomaly indices with the threshold line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(scores)), 2.6))
    colors = ["tab:red" if s > threshold else "tab:blue" for s in scores]
    ax.bar(range(len(scores)), scores, color=colors)
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xticks(range(len(scores)))
    ax.set_xticklabels([n[:8] for n in names], fontsize=7, rotation=90 if len(names) > 12 else 0)
    ax.set_ylabel("anomaly index")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)

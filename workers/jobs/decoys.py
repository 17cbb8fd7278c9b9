"""Decoy identities: faces of unrelated people that a protected face is pulled toward."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from facecloak.settings import get_settings
from models.datasets import unknown_faces_dir
from workers.jobs.analysis import embed
from workers.jobs.faceset import load_unlabelled


@lru_cache(maxsize=8)
def decoy_bank(model: str) -> tuple[list[str], np.ndarray]:
    """(names, [n, d] embeddings) of the decoy faces for ``model``, cached on disk."""
    cache = get_settings().cache_dir / "models" / f"decoys_{model}.npz"
    if cache.exists():
        data = np.load(cache)
        return [str(n) for n in data["names"]], data["emb"]
    photos = load_unlabelled(unknown_faces_dir())
    emb = np.stack([embed(p.rgb, [p.face], model)[0] for p in photos if p.face is not None])
    names = [p.path.stem for p in photos if p.face is not None]
    np.savez(cache, names=np.array(names), emb=emb)
    return names, emb


def pick_decoys(owner: dict[str, np.ndarray]) -> tuple[list[str], dict[str, np.ndarray]]:
    """For each face ([n, d] per model), the bank face least similar to it on every model."""
    models = list(owner)
    names, _ = decoy_bank(models[0])
    score = sum(owner[m] @ decoy_bank(m)[1].T for m in models)  # [n_faces, n_bank]
    choice = np.argmin(score, axis=1)
    return [names[j] for j in choice], {m: decoy_bank(m)[1][choice] for m in models}

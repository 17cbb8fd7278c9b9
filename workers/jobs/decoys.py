"""Decoy identities: faces of unrelated people that a protected face is pulled toward."""

from __future__ import annotations

import numpy as np

from models.datasets import unknown_faces_dir
from workers.jobs.analysis import embed
from workers.jobs.faceset import load_unlabelled
from workers.jobs.runtime import Runtime


def decoy_bank(runtime: Runtime, model: str) -> tuple[list[str], np.ndarray]:
    """(names, [n, d] embeddings) of the decoy faces for ``model``, cached on disk and in
    the runtime.
    """
    if model in runtime.decoy_banks:
        return runtime.decoy_banks[model]
    cache = runtime.store.models_dir / f"decoys_{model}.npz"
    if cache.exists():
        data = np.load(cache)
        bank = ([str(n) for n in data["names"]], data["emb"])
    else:
        photos = [p for p in load_unlabelled(runtime, unknown_faces_dir(runtime.store)) if p.face]
        emb = np.stack([embed(runtime, p.rgb, [p.face], model)[0] for p in photos if p.face])
        names = [p.path.stem for p in photos]
        np.savez(cache, names=np.array(names), emb=emb)
        bank = (names, emb)
    runtime.decoy_banks[model] = bank
    return bank


class DecoyPicker:
    """For each face ([n, d] per model), the bank face least similar to it on every model."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def __call__(self, owner: dict[str, np.ndarray]) -> tuple[list[str], dict[str, np.ndarray]]:
        """(decoy names, {model: decoy embeddings [n, d]})."""
        models = list(owner)
        names, _ = decoy_bank(self.runtime, models[0])
        score = sum(owner[m] @ decoy_bank(self.runtime, m)[1].T for m in models)
        choice = np.argmin(score, axis=1)
        return [names[j] for j in choice], {
            m: decoy_bank(self.runtime, m)[1][choice] for m in models
        }

"""Face-recognition attack losses on embeddings (all to be minimised)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_similarity(emb: Tensor, ref: Tensor) -> Tensor:
    """Per-sample cosine similarity of embeddings ``[B, D]`` with ``[B, D]`` or ``[D]``."""
    emb = F.normalize(emb.flatten(1), dim=1)
    ref = F.normalize(ref.reshape(-1, emb.shape[1]), dim=1)
    return (emb * ref).sum(dim=1)


def dodging_loss(emb: Tensor, clean_emb: Tensor) -> Tensor:
    """Dodging: the similarity to the clean photo's embedding, ``[B]``; lower is better."""
    return cosine_similarity(emb, clean_emb.detach())


def impersonation_loss(emb: Tensor, decoy_emb: Tensor) -> Tensor:
    """Impersonation: minus the similarity to a decoy identity's embedding, ``[B]``."""
    return -cosine_similarity(emb, decoy_emb.detach())


class EnsembleLoss:
    """Weighted mean of per-model losses ``{name: [B]}`` -> ``[B]``.

    The call must supply a loss for exactly the models named in ``weights``.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        if not weights:
            raise ValueError("weights must name at least one model")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        self.weights = dict(weights)

    def __call__(self, losses: Mapping[str, Tensor]) -> Tensor:
        """Combine ``losses`` as ``sum(w_m * loss_m) / sum(w_m)``."""
        if set(losses) != set(self.weights):
            raise KeyError(f"expected losses for {sorted(self.weights)}, got {sorted(losses)}")
        total_weight = sum(self.weights.values())
        combined = torch.stack([self.weights[name] * losses[name] for name in self.weights])
        return combined.sum(dim=0) / total_weight

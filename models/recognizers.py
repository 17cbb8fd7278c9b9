"""Face recognizers as differentiable PyTorch modules: [0,1] RGB crops in, unit embeddings out."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.registry import ModelStore
from models.specs import ModelSpec


class Recognizer(nn.Module):
    """A recognizer network plus its input normalisation.

    ``forward`` takes aligned crops of size ``spec.input_size`` as RGB in [0, 1] and
    returns L2-normalised embeddings, differentiable with respect to the crops.
    """

    def __init__(self, spec: ModelSpec, net: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        # Channels-last weights: mkldnn's convolutions run 5-14% faster forward + backward
        # on these networks (MobileFaceNet's depthwise layers gain most).
        self.net = net.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        for p in self.net.parameters():
            p.requires_grad_(False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def preprocess(self, x: Tensor) -> Tensor:
        """Map [0,1] RGB to the network's own input convention."""
        if self.spec.channels == "BGR":
            x = x.flip(1)
        if self.spec.normalization == "arcface":
            return (x * 255.0 - 127.5) / 127.5
        if self.spec.normalization == "fixed128":
            return (x * 255.0 - 127.5) / 128.0
        return x * 255.0

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(self.preprocess(x)).flatten(1), dim=1)


def _build_net(spec: ModelSpec, store: ModelStore) -> nn.Module:
    path = store.path(spec.name)
    if spec.format == "tf-graphdef":
        from models.convert.facenet import load_facenet

        return load_facenet(path, cache_dir=store.models_dir, sha256=spec.sha256)
    from models.convert.onnx_front import convert_onnx

    return convert_onnx(path)


@lru_cache(maxsize=16)
def load_recognizer(name: str, store: ModelStore, device: str = "cpu") -> Recognizer:
    """Load (once per process, store and device) the recognizer called ``name``."""
    spec = store.spec(name)
    if spec.role != "recognizer":
        raise ValueError(f"model {name!r} is a {spec.role}, not a recognizer")
    if spec.evaluation_only:
        raise ValueError(f"model {name!r} is evaluation-only: it judges, it cannot be attacked")
    return Recognizer(spec, _build_net(spec, store)).to(device)

"""An image classifier from untrusted ONNX bytes: checked, converted, wrapped to take [0, 1].

:func:`load_classifier` refuses (each with a machine-readable ``code``) files that are too
large, not ONNX, that point at external data files, use an operator outside the
converter's set, or whose output is not ``[batch, classes]``. A final ``Softmax`` /
``LogSoftmax`` is cut off (the scan works on logits). The input spec (shape, value range,
normalisation, class names) is read from the model (graph input dims, metadata
``value_range``, ``mean``, ``std``, ``class_names``) unless the caller gives it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from models.convert.onnx_front import convert_onnx, value_dims
from models.errors import (
    ExternalDataError,
    InputSpecError,
    InvalidModelError,
    ModelTooLargeError,
    NotAClassifierError,
)

MAX_ONNX_BYTES = 64 * 1024 * 1024
_LOGIT_HEADS = ("Softmax", "LogSoftmax")


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: ``[C, H, W]``, value range, per-channel mean/std, names."""

    shape: tuple[int, int, int]
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    class_names: tuple[str, ...] = ()


class Classifier(nn.Module):
    """``forward(x)``: ``x`` ``[B, C, H, W]`` in [0, 1] -> logits ``[B, classes]``."""

    def __init__(self, net: nn.Module, spec: InputSpec, classes: int) -> None:
        super().__init__()
        self.net, self.spec, self.classes = net, spec, classes
        channels = spec.shape[0]
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", _per_channel(spec.mean, channels))
        self.register_buffer("std", _per_channel(spec.std, channels))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of images in [0, 1] (scaled to the value range, then normalised)."""
        low, high = self.spec.value_range
        scaled = low + (high - low) * x
        out: Tensor = self.net((scaled - self.mean) / self.std)
        return out

    @property
    def class_names(self) -> list[str]:
        """The declared class names, or ``"0" ... "K-1"``."""
        names = list(self.spec.class_names)
        return names if len(names) == self.classes else [str(i) for i in range(self.classes)]


def _per_channel(values: tuple[float, ...], channels: int) -> Tensor:
    if len(values) not in (1, channels):
        raise InputSpecError(f"{len(values)} normalisation values for {channels} channels")
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).expand(1, channels, 1, 1)


def parse_onnx(data: bytes, max_bytes: int = MAX_ONNX_BYTES) -> onnx.ModelProto:
    """The model proto of ``data``; refuses huge, malformed or external-data files."""
    if len(data) > max_bytes:
        raise ModelTooLargeError(f"the ONNX file is {len(data)} bytes; the limit is {max_bytes}")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf decode errors have no common public base
        raise InvalidModelError(f"not an ONNX model: {exc}") from exc
    if not proto.graph.node:
        raise InvalidModelError("not an ONNX model: the graph has no nodes")
    tensors = list(proto.graph.initializer) + [
        a.t for n in proto.graph.node for a in n.attribute if a.HasField("t")
    ]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise ExternalDataError(
                f"tensor {tensor.name!r} refers to external data; send a self-contained model"
            )
    return proto


def _cut_softmax(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with a final Softmax/LogSoftmax removed (logits as the first output)."""
    graph = proto.graph
    if not graph.output:
        raise NotAClassifierError("the model has no outputs")
    last = next((n for n in graph.node if graph.output[0].name in n.output), None)
    if last is None or last.op_type not in _LOGIT_HEADS:
        return proto
    cut = onnx.ModelProto()
    cut.CopyFrom(proto)
    out = cut.graph.output[0]
    out.name = last.input[0]
    keep = [n for n in cut.graph.node if list(n.output) != list(last.output)]
    del cut.graph.node[:]
    cut.graph.node.extend(keep)
    return cut


def _meta_floats(meta: dict[str, str], key: str) -> tuple[float, ...] | None:
    if key not in meta:
        return None
    try:
        return tuple(float(v) for v in meta[key].replace(" ", "").split(",") if v)
    except ValueError as exc:
        raise InputSpecError(f"metadata {key!r} is not a list of numbers: {meta[key]!r}") from exc


def spec_from_model(proto: onnx.ModelProto) -> InputSpec | None:
    """The input spec the model declares, or None when its input shape is not static."""
    inits = {t.name for t in proto.graph.initializer}
    data = next((i for i in proto.graph.input if i.name not in inits), None)
    dims = value_dims(data) if data is not None else None
    if dims is None or len(dims) != 4 or any(d is None or d < 1 for d in dims[1:]):
        return None
    meta = {p.key: p.value for p in proto.metadata_props}
    value_range = _meta_floats(meta, "value_range") or (0.0, 1.0)
    names: tuple[str, ...] = ()
    if "class_names" in meta:
        try:
            names = tuple(str(n) for n in json.loads(meta["class_names"]))
        except (ValueError, TypeError) as exc:
            raise InputSpecError("metadata 'class_names' is not a JSON list") from exc
    if len(value_range) != 2 or value_range[0] >= value_range[1]:
        raise InputSpecError(f"metadata 'value_range' must be 'low,high', got {value_range}")
    shape = (int(dims[1] or 0), int(dims[2] or 0), int(dims[3] or 0))
    return InputSpec(
        shape=shape,
        value_range=(value_range[0], value_range[1]),
        mean=_meta_floats(meta, "mean") or (0.0,),
        std=_meta_floats(meta, "std") or (1.0,),
        class_names=names,
    )


def load_classifier(
    data: bytes,
    spec: InputSpec | None = None,
    max_bytes: int = MAX_ONNX_BYTES,
    trainable: bool = False,
    **overrides: Any,
) -> Classifier:
    """A :class:`Classifier` from ONNX bytes; ``overrides`` replace fields of the read spec.
    ``trainable``: a trainable conversion (weights as parameters, batch norms that train).

    Raises a :class:`models.errors.ModelError` (``code`` says why) for anything unusable.
    """
    proto = _cut_softmax(parse_onnx(data, max_bytes))
    found = spec or spec_from_model(proto)
    if found is None:
        if "shape" not in overrides:
            raise InputSpecError("the model's input shape is not static; give input_shape")
        found = InputSpec(shape=(1, 1, 1))
    found = replace(found, **{k: v for k, v in overrides.items() if v is not None})
    if any(s == 0 for s in found.std):
        raise InputSpecError("std must not be 0")
    net = convert_onnx(proto, trainable=trainable)
    classifier = Classifier(net, found, classes=0)
    try:
        with torch.no_grad():
            out = net(torch.zeros((2, *found.shape)))
    except Exception as exc:
        raise InputSpecError(f"the model does not run on inputs {found.shape}: {exc}") from exc
    if out.dim() != 2 or out.shape[0] != 2 or out.shape[1] < 2:
        raise NotAClassifierError(
            f"the output is {tuple(out.shape[1:])} per image; a classifier gives [classes >= 2]"
        )
    classifier.classes = int(out.shape[1])
    return classifier.eval()

"""Checking a user-supplied ArcFace ONNX model: input shape, embedding output, parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from models.convert.onnx_front import OnnxModule, convert_onnx, load_onnx, value_dims
from models.errors import InvalidModelError

__all__ = ["check_arcface_onnx"]

ARCFACE_SHAPE = (3, 112, 112)
TOLERANCE = 1e-4


def _describe(dims: tuple[int | None, ...] | None) -> str:
    if dims is None:
        return "unknown shape"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _arcface_input(proto: onnx.ModelProto) -> tuple[str, tuple[int | None, ...]]:
    """Name and dims of the one float ``[N, 3, 112, 112]`` data input, else an error."""
    inits = {t.name for t in proto.graph.initializer}
    data_inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(data_inputs) != 1:
        names = ", ".join(i.name for i in data_inputs) or "none"
        raise InvalidModelError(
            f"an ArcFace model needs exactly one data input; this one has {len(data_inputs)}"
            f" ({names})"
        )
    data = data_inputs[0]
    dims = value_dims(data)
    expected = "[N, 3, 112, 112] (N may be dynamic)"
    if (
        dims is None
        or len(dims) != 4
        or any(d is not None and d != e for d, e in zip(dims[1:], ARCFACE_SHAPE, strict=True))
    ):
        raise InvalidModelError(
            f"input {data.name!r} has shape {_describe(dims)}; an ArcFace model needs {expected}"
        )
    elem = data.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise InvalidModelError(
            f"input {data.name!r} has type {onnx.TensorProto.DataType.Name(elem)}; "
            "an ArcFace model needs FLOAT"
        )
    return data.name, dims


def _onnxruntime_output(proto: onnx.ModelProto, input_name: str, sample: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # hide "initializer appears in graph inputs" warnings
        session = ort.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        return np.asarray(session.run(None, {input_name: sample})[0])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidModelError(f"onnxruntime cannot run the model: {exc}") from exc


def _max_abs_diff(module: OnnxModule, sample: np.ndarray, reference: np.ndarray) -> float:
    """Largest difference between the converted module and onnxruntime, checked <= 1e-4."""
    if reference.ndim != 2:
        raise InvalidModelError(
            f"the first output has shape {list(reference.shape)}; "
            "an ArcFace model must produce a 2-D embedding [N, D]"
        )
    with torch.no_grad():
        ours = module(torch.from_numpy(sample)).numpy()
    if ours.shape != reference.shape:
        raise InvalidModelError(
            f"converted model output shape {list(ours.shape)} differs from onnxruntime's "
            f"{list(reference.shape)}"
        )
    diff = float(np.max(np.abs(ours.astype(np.float64) - reference.astype(np.float64))))
    if not diff <= TOLERANCE:
        raise InvalidModelError(
            f"converted model disagrees with onnxruntime: max abs diff {diff:.3g} > 1e-4"
        )
    return diff


def check_arcface_onnx(path: str | Path) -> dict[str, Any]:
    """Check a user-supplied ArcFace ONNX model and return its basic facts.

    The model needs one float data input ``[N or dynamic, 3, 112, 112]`` and a 2-D
    embedding output, and the converted torch module must match onnxruntime within 1e-4.
    Returns ``{"embedding_size", "max_abs_diff", "opset"}``.
    """
    proto = load_onnx(path)
    input_name, dims = _arcface_input(proto)
    module = convert_onnx(proto)
    batch = dims[0] if dims[0] else 2
    rng = np.random.default_rng(0)
    sample = rng.uniform(-1.0, 1.0, size=(batch, *ARCFACE_SHAPE)).astype(np.float32)
    reference = _onnxruntime_output(proto, input_name, sample)
    diff = _max_abs_diff(module, sample, reference)
    return {"embedding_size": int(reference.shape[1]), "max_abs_diff": diff, "opset": module.opset}

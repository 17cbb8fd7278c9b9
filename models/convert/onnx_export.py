"""A converted (and possibly retrained) module back to ONNX, checked against onnxruntime.

:func:`export_onnx` traces the module with the TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``, which needs only the ``onnx`` package), with a
dynamic batch, the original model's input/output names and its metadata (input spec,
class names). Batch norms export in eval mode as BatchNormalization nodes with their running
statistics (``TrainingMode.PRESERVE``: not fused into the convolutions, so the model can
be converted and trained again). :func:`onnx_parity` is the largest difference to
onnxruntime on a batch.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from models.errors import InvalidModelError

__all__ = ["export_onnx", "onnx_parity"]

OPSET = 17


def export_onnx(
    module: nn.Module,
    input_shape: tuple[int, ...],
    like: onnx.ModelProto | None = None,
    input_name: str = "input",
    output_name: str = "output",
    metadata: dict[str, str] | None = None,
) -> bytes:
    """ONNX bytes of ``module`` (eval mode) for inputs ``[batch, *input_shape]``.

    ``like``: a model whose metadata properties are copied (e.g. the model this one was
    converted from); ``metadata``: properties to set on top.
    """
    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*constant folding.*")  # eval mode here
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # legacy exporter
            torch.onnx.export(
                module, (torch.zeros(2, *input_shape),), buf,  # type: ignore[arg-type]
                dynamo=False, opset_version=OPSET, training=torch.onnx.TrainingMode.PRESERVE,
                input_names=[input_name], output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            )  # fmt: skip
    finally:
        module.train(was_training)
    proto = onnx.load_model_from_string(buf.getvalue())
    if like is not None:
        del proto.metadata_props[:]
        proto.metadata_props.extend(like.metadata_props)
    for key, value in (metadata or {}).items():
        entry = next((p for p in proto.metadata_props if p.key == key), None)
        entry = entry if entry is not None else proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def onnx_parity(data: bytes, module: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime on ``data`` and ``module`` on ``x``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        theirs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidModelError(f"onnxruntime cannot run the exported model: {exc}") from exc
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            ours = module(x).numpy()
    finally:
        module.train(was_training)
    return float(np.abs(np.asarray(theirs) - ours).max())

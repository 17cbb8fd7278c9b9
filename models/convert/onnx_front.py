"""ONNX -> ``torch.fx``: reads the ONNX graph and emits each node through ``FxBuilder``.

``convert_onnx`` turns an ONNX graph into a module built from real ``nn.Conv*`` /
``nn.Linear`` layers, so the attack engine can backpropagate through it quickly.
BatchNormalization is folded into the preceding Conv or Gemm when that layer's output
feeds only the BN, and nodes that depend only on constants are evaluated once at
conversion time. Every node is checked against the supported op set (``onnx_ops.OPS``)
before anything is built.

``convert_onnx(model, trainable=True)`` makes a trainable copy instead: float initializers
become parameters, BatchNormalization stays a batch-norm layer (batch statistics and
running-stat updates in train mode), nothing is folded into a Conv or Gemm, and
``models.convert.onnx_export`` writes the trained module back to ONNX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import fx, nn

from models.convert.fx_builder import FxBuilder, Value
from models.convert.onnx_ops import DEFAULT_DOMAINS, OPS, SUPPORTED_OPS, node_attrs, node_label
from models.errors import InvalidModelError, UnsupportedOpError

__all__ = ["SUPPORTED_OPS", "OnnxFront", "OnnxModule", "convert_onnx", "load_onnx", "value_dims"]


class OnnxModule(nn.Module):
    """A converted ONNX graph: ``forward(x)`` maps the data input to the first output."""

    def __init__(
        self,
        net: fx.GraphModule,
        input_name: str,
        output_name: str,
        input_shape: tuple[int | None, ...],
        opset: int,
    ) -> None:
        super().__init__()
        self.net = net
        self.input_name = input_name
        self.output_name = output_name
        self.input_shape = input_shape
        self.opset = opset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on an NCHW float32 tensor (any batch size)."""
        out: torch.Tensor = self.net(x)
        return out


def load_onnx(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """The model proto; ``InvalidModelError`` when the file is missing or not ONNX."""
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise InvalidModelError(f"ONNX model file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors have no common public base
        raise InvalidModelError(f"cannot read {path} as an ONNX model: {exc}") from exc


def value_dims(info: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    """Static dims of a value (None for symbolic ones), or None when the rank is unknown."""
    tensor_type = info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return 0


def _data_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    inits = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name not in inits:
            return inp
    raise InvalidModelError("the model has no data input (every graph input is an initializer)")


def _check_ops(graph: onnx.GraphProto) -> None:
    for node in graph.node:
        if node.domain not in DEFAULT_DOMAINS:
            raise UnsupportedOpError(f"{node.domain}::{node.op_type}", node_label(node))
        if node.op_type not in SUPPORTED_OPS:
            raise UnsupportedOpError(node.op_type, node_label(node))


class OnnxFront:
    """Walks the ONNX nodes in order and emits them into an ``FxBuilder``."""

    def __init__(self, model: onnx.ModelProto, trainable: bool = False) -> None:
        self.model = model
        self.trainable = bool(trainable)
        self.builder = FxBuilder(trainable=self.trainable)
        graph = model.graph
        self.inits = {t.name: t for t in graph.initializer}
        self.values: dict[str, Value] = {}
        self.nodes = list(graph.node)
        self.consumers: dict[str, list[int]] = {}  # tensor name -> indices of its users
        for index, node in enumerate(self.nodes):
            for name in node.input:
                self.consumers.setdefault(name, []).append(index)
        self.graph_outputs = {o.name for o in graph.output}
        self.skip: set[int] = set()  # indices of nodes folded into an earlier one

    # ---- values
    def get(self, name: str) -> Value:
        """The value of tensor ``name`` ("" is an absent optional input: None)."""
        if name == "":
            return None
        if name in self.values:
            return self.values[name]
        if name in self.inits:
            array = numpy_helper.to_array(self.inits[name])
            tensor = self.builder.train_tensor(torch.from_numpy(np.array(array, copy=True)))
            self.values[name] = tensor
            return tensor
        raise InvalidModelError(f"tensor {name!r} is used before it is produced")

    def const(self, node: onnx.NodeProto, index: int, what: str) -> torch.Tensor | None:
        """Input ``index`` of ``node`` as a constant tensor (None when absent)."""
        if index >= len(node.input):
            return None
        value = self.get(node.input[index])
        if isinstance(value, fx.Node):
            raise UnsupportedOpError(f"{node.op_type} with a non-constant {what}", node_label(node))
        return value

    # ---- BN folding
    def foldable_bn(self, output: str) -> onnx.NodeProto | None:
        """The BN that alone consumes ``output`` with constant parameters, if any.

        When one is found it is marked as skipped: the caller must fold it. A trainable
        conversion folds nothing.
        """
        if self.trainable:
            return None
        users = self.consumers.get(output, [])
        if len(users) != 1 or output in self.graph_outputs:
            return None
        bn = self.nodes[users[0]]
        if bn.op_type != "BatchNormalization" or bn.domain not in DEFAULT_DOMAINS:
            return None
        if list(bn.input).count(output) != 1 or bn.input[0] != output:
            return None
        if any(o for o in bn.output[1:]) or node_attrs(bn).get("spatial", 1) != 1:
            return None
        if any(isinstance(self.get(n), fx.Node) for n in bn.input[1:5]):
            return None
        self.skip.add(users[0])
        return bn

    def bn_affine(self, bn: onnx.NodeProto) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) in float64 such that ``bn(x) = x * scale + shift`` per channel."""
        gamma, beta, mean, var = (self.get(n).double() for n in bn.input[1:5])
        eps = float(node_attrs(bn).get("epsilon", 1e-5))
        scale = gamma / torch.sqrt(var + eps)
        return scale, beta - mean * scale

    # ---- main loop
    def build(self) -> OnnxModule:
        """Emit every node the first output needs; the eval-mode module (frozen unless
        trainable)."""
        _check_ops(self.model.graph)
        data = _data_input(self.model)
        self.values[data.name] = self.builder.placeholder("x")
        outputs = self.model.graph.output
        output_name = outputs[0].name if outputs else ""
        if not output_name:
            raise InvalidModelError("the model has no outputs")
        needed = self._needed(output_name)
        for index, node in enumerate(self.nodes):
            if index in self.skip or index not in needed:
                continue
            results = OPS[node.op_type](self, node, node_attrs(node))
            if not isinstance(results, list):
                results = [results]
            for name, value in zip(node.output, results, strict=False):
                if name:
                    self.values[name] = value
        net = self.builder.finish(self.get(output_name), "OnnxGraph")
        dims = value_dims(data) or ()
        return OnnxModule(net, data.name, output_name, dims, _opset(self.model)).eval()

    def _needed(self, output: str) -> set[int]:
        producer = {o: i for i, n in enumerate(self.nodes) for o in n.output if o}
        needed: set[int] = set()
        stack = [output]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen or name not in producer:
                continue
            seen.add(name)
            needed.add(producer[name])
            stack.extend(i for i in self.nodes[producer[name]].input if i)
        return needed


def convert_onnx(model: str | Path | onnx.ModelProto, trainable: bool = False) -> OnnxModule:
    """Convert an ONNX model (path or proto) into an eval-mode, frozen ``OnnxModule``
    (``trainable``: weights are parameters that require gradients, batch norms can train).

    Raises ``UnsupportedOpError`` (before building anything) when a node's op is outside
    ``SUPPORTED_OPS``, and ``InvalidModelError`` when the file or graph is unusable.
    """
    proto = load_onnx(model)
    if not proto.graph.node:
        raise InvalidModelError("the ONNX graph has no nodes")
    return OnnxFront(proto, trainable).build()

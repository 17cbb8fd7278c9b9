"""TensorFlow GraphDef -> ``torch.fx``: walks the subgraph feeding an output node once.

Each node is emitted through ``FxBuilder`` (ops in ``graphdef_ops``). Tensors are NCHW
while they are 4-D feature maps and in TensorFlow's own layout otherwise; a permute is
emitted only where the layouts meet. Constants (``Const`` and aliases of them) are read
as numpy arrays and only feed ops that take them as parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx

from models.convert.fx_builder import FxBuilder
from models.convert.graphdef_ops import OPS
from models.convert.graphdef_reader import GraphDef, NodeDef, parse_graphdef
from models.errors import InvalidModelError, UnsupportedOpError

__all__ = ["DEFAULT_OUTPUT", "SUPPORTED_OPS", "GraphDefFront", "convert_graphdef"]

DEFAULT_OUTPUT = "embeddings"
SUPPORTED_OPS: frozenset[str] = frozenset({"Const", *OPS})
_PERMUTATIONS = {"tf": (0, 2, 3, 1), "nchw": (0, 3, 1, 2)}  # target layout -> perm from the other


@dataclass(frozen=True)
class RuntimeValue:
    """A runtime value: its fx node and layout ('nchw' or 'tf')."""

    node: fx.Node
    layout: str


def split_input(name: str) -> tuple[str, int]:
    """``"node:1"`` -> ``("node", 1)``."""
    node, _, index = name.partition(":")
    return node, int(index) if index else 0


class GraphDefFront:
    """Converts the subgraph feeding ``output`` into an ``FxBuilder``."""

    def __init__(self, graph: GraphDef, output: str) -> None:
        self.nodes = {n.name: n for n in graph.node}
        if output not in self.nodes:
            raise InvalidModelError(f"output node {output!r} is not in the graph")
        self.output = output
        self.order = self._toposort(output)
        self.consumers: dict[str, list[str]] = {}
        for name in self.order:
            for inp in self.nodes[name].input:
                if not inp.startswith("^"):
                    self.consumers.setdefault(split_input(inp)[0], []).append(name)
        self.builder = FxBuilder()
        self.values: dict[str, RuntimeValue] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.fused: set[str] = set()  # nodes folded into an earlier one
        self.has_input = False

    # ---- graph queries
    def _toposort(self, output: str) -> list[str]:
        """Nodes feeding ``output`` (data and control inputs), dependencies first."""
        order: list[str] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(output, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                order.append(name)
                continue
            if name in seen:
                continue
            if name not in self.nodes:
                raise InvalidModelError(f"node {name!r} is referenced but not defined")
            node = self.nodes[name]
            if node.op not in SUPPORTED_OPS:
                raise UnsupportedOpError(node.op, node.name)
            seen.add(name)
            stack.append((name, True))
            for inp in reversed(node.input):
                dep = split_input(inp.lstrip("^"))[0]
                if dep not in seen:
                    stack.append((dep, False))
        return order

    def data_inputs(self, node: NodeDef) -> list[str]:
        """Names of the nodes whose first output ``node`` reads (control inputs skipped)."""
        out = []
        for inp in node.input:
            if inp.startswith("^"):
                continue
            name, index = split_input(inp)
            if index != 0:
                raise UnsupportedOpError(f"{self.nodes[name].op}:{index}", node.name)
            out.append(name)
        return out

    def only_consumer(self, name: str, op: str) -> NodeDef | None:
        """The single consumer of ``name`` if it has op ``op`` (and ``name`` is not the output)."""
        users = self.consumers.get(name, [])
        if name == self.output or len(users) != 1:
            return None
        user = self.nodes[users[0]]
        return user if user.op == op else None

    def const(self, name: str) -> np.ndarray | None:
        """The value of a ``Const`` (or an ``Identity`` of one), else None."""
        if name in self.consts:
            return self.consts[name]
        node = self.nodes[name]
        if node.op == "Identity":
            return self.const(self.data_inputs(node)[0])
        if node.op != "Const":
            return None
        value = node.attr["value"].value.numpy()
        self.consts[name] = value
        return value

    def need_const(self, name: str, user: NodeDef) -> np.ndarray:
        """``const(name)``, or ``UnsupportedOpError`` naming ``user``."""
        value = self.const(name)
        if value is None:
            raise UnsupportedOpError(f"{user.op} with a non-constant operand", user.name)
        return value

    @staticmethod
    def attr(node: NodeDef, key: str, default: Any = None) -> Any:
        """An attribute's value (bytes decoded), or ``default``."""
        attr = node.attr.get(key)
        if attr is None:
            return default
        value = attr.value
        return value.decode() if isinstance(value, bytes) else value

    def require_nhwc(self, node: NodeDef) -> None:
        fmt = self.attr(node, "data_format", "NHWC")
        if fmt != "NHWC":
            raise UnsupportedOpError(f"{node.op}(data_format={fmt})", node.name)

    # ---- runtime values
    def set(self, name: str, node: fx.Node, layout: str) -> None:
        self.values[name] = RuntimeValue(node, layout)

    def value(self, name: str) -> RuntimeValue:
        """The runtime value ``name`` (constants only feed ops that take them as parameters)."""
        if name not in self.values:
            op = self.nodes[name].op
            raise UnsupportedOpError(f"{op} used as a runtime tensor (no constant folding)", name)
        return self.values[name]

    def as_layout(self, name: str, layout: str) -> fx.Node:
        """The value ``name`` in ``layout`` (a permute is emitted once if needed)."""
        value = self.value(name)
        if value.layout == layout:
            return value.node
        key = f"{name}@{layout}"
        if key not in self.values:
            self.set(
                key, self.builder.call(torch.permute, value.node, _PERMUTATIONS[layout]), layout
            )
        return self.values[key].node

    # ---- conversion
    def build(self) -> fx.GraphModule:
        """Emit every node feeding the output; the frozen eval-mode GraphModule."""
        for name in self.order:
            node = self.nodes[name]
            if name in self.fused or node.op == "Const":
                continue
            OPS[node.op](self, node)
        if self.output not in self.values:
            raise InvalidModelError(f"output {self.output!r} is a constant")
        if not self.has_input:
            raise InvalidModelError("the graph has no Placeholder input")
        return self.builder.finish(self.values[self.output].node, "GraphDefGraph")


def convert_graphdef(data: bytes, output: str = DEFAULT_OUTPUT) -> fx.GraphModule:
    """Parse and convert a serialized GraphDef into a frozen eval-mode GraphModule.

    4-D inputs and outputs are NCHW. Raises ``UnsupportedOpError`` for any op feeding
    ``output`` that cannot be converted.
    """
    return GraphDefFront(parse_graphdef(data), output).build()

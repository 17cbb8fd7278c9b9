"""FaceNet (Inception-ResNet-v1) frozen TensorFlow GraphDef as a differentiable PyTorch module.

No TensorFlow is needed: a minimal protobuf wire-format reader decodes the GraphDef, the
subgraph feeding the output node is converted into an execution plan over real
``nn.Conv2d``/``nn.Linear`` modules (NCHW, BiasAdd folded into the conv bias, residual
scales folded into the conv weights, TensorFlow ``SAME`` padding reproduced exactly, also
when asymmetric), and the converted state is cached next to the model, keyed by its sha256.

Public API: :func:`load_facenet`, :func:`prewhiten`; also :func:`parse_graphdef` (the reader)
and :func:`convert_graphdef` (reader + converter, no cache).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecloak.settings import get_settings
from models.errors import InvalidModelError, UnsupportedOpError
from models.registry import sha256_file

__all__ = [
    "SUPPORTED_OPS",
    "AttrValue",
    "GraphDef",
    "GraphDefModule",
    "NodeDef",
    "TensorProto",
    "convert_graphdef",
    "load_facenet",
    "parse_graphdef",
    "prewhiten",
]

CACHE_VERSION = 1  # bump when the plan format or the conversion changes
DEFAULT_OUTPUT = "embeddings"

# --------------------------------------------------------------------------------------
# Protobuf wire format (only what a frozen GraphDef needs)
# --------------------------------------------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise InvalidModelError("malformed protobuf: varint too long")


def _signed(value: int) -> int:
    """Two's complement of a 64-bit varint (int32/int64 fields encode negatives that way)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field number, wire type, value)``; LEN values are memoryviews (no copy)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _I32:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == _I64:
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise InvalidModelError(f"malformed protobuf: unsupported wire type {wire}")
        if pos > end:
            raise InvalidModelError("malformed protobuf: truncated field")
        yield num, wire, value


def _packed_varints(wire: int, value: Any) -> list[int]:
    """A repeated varint field element: packed (LEN) or one unpacked value."""
    if wire != _LEN:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _read_varint(value, pos)
        out.append(v)
    return out


def _packed_fixed(wire: int, value: Any, fmt: str) -> list[float]:
    """A repeated fixed32/64 field element (``fmt`` '<f' or '<d'), packed or not."""
    if wire == _VARINT:
        raise InvalidModelError("malformed protobuf: varint where a float was expected")
    size = struct.calcsize(fmt)
    data = bytes(value)
    return [struct.unpack_from(fmt, data, i)[0] for i in range(0, len(data), size)]


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8")


# TensorFlow DataType enum values -> numpy dtypes (only numeric types).
_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


@dataclass
class TensorProto:
    """A decoded ``tensorflow.TensorProto`` (dtype, shape, raw content or typed values)."""

    dtype: int = 0
    shape: list[int] = field(default_factory=list)
    content: bytes | memoryview = b""  # raw little-endian values (a view into the file data)
    float_val: list[float] = field(default_factory=list)
    double_val: list[float] = field(default_factory=list)
    int_val: list[int] = field(default_factory=list)
    int64_val: list[int] = field(default_factory=list)
    bool_val: list[bool] = field(default_factory=list)
    half_val: list[int] = field(default_factory=list)

    def numpy(self) -> np.ndarray:
        """The value as a numpy array (read-only when it views ``content``).

        TF semantics: a value list shorter than the shape repeats its last item.
        """
        if self.dtype not in _DTYPES:
            raise InvalidModelError(f"tensor dtype {self.dtype} is not supported")
        dtype = _DTYPES[self.dtype]
        count = math.prod(self.shape)
        if self.content:
            return np.frombuffer(self.content, dtype=dtype).reshape(self.shape)
        raw: list[Any]
        if dtype == np.dtype("<f2"):
            raw = self.half_val
        elif dtype.kind == "f":
            raw = self.double_val if dtype.itemsize == 8 else self.float_val
        elif dtype == np.dtype("<i8"):
            raw = self.int64_val
        elif dtype.kind == "b":
            raw = self.bool_val
        else:  # int32, int16, int8, uint8 all use int_val
            raw = self.int_val
        if dtype == np.dtype("<f2"):  # half_val holds the bit patterns
            values = np.array(raw, dtype=np.uint16).view(np.float16)
        else:
            values = np.array(raw, dtype=dtype)
        if values.size < count:
            fill = values[-1] if values.size else np.zeros((), dtype=dtype)
            values = np.concatenate([values, np.full(count - values.size, fill, dtype=dtype)])
        return values[:count].reshape(self.shape)


@dataclass
class AttrValue:
    """A decoded ``AttrValue``: ``kind`` is s, i, f, b, type, shape, tensor, list or placeholder.

    For ``list`` the value is a dict from kind to a Python list; ``s`` values are bytes and
    shapes are lists of ints (``None`` for unknown rank).
    """

    kind: str
    value: Any


@dataclass
class NodeDef:
    """A decoded ``NodeDef`` (name, op, inputs, device, attributes)."""

    name: str = ""
    op: str = ""
    input: list[str] = field(default_factory=list)
    device: str = ""
    attr: dict[str, AttrValue] = field(default_factory=dict)


@dataclass
class GraphDef:
    """A decoded ``GraphDef`` (nodes only; versions and function library are skipped)."""

    node: list[NodeDef] = field(default_factory=list)


def _parse_shape(buf: memoryview) -> list[int] | None:
    dims: list[int] = []
    unknown = False
    for num, _, value in _fields(buf):
        if num == 2:  # Dim
            size = 0
            for dnum, dwire, dval in _fields(value):
                if dnum == 1 and dwire == _VARINT:
                    size = _signed(dval)
            dims.append(size)
        elif num == 3:
            unknown = bool(value)
    return None if unknown else dims


def _parse_tensor(buf: memoryview) -> TensorProto:
    t = TensorProto()
    for num, wire, value in _fields(buf):
        if num == 1:
            t.dtype = value
        elif num == 2:
            t.shape = _parse_shape(value) or []
        elif num == 4:
            t.content = value
        elif num == 5:
            t.float_val += _packed_fixed(wire, value, "<f")
        elif num == 6:
            t.double_val += _packed_fixed(wire, value, "<d")
        elif num == 7:
            t.int_val += [_signed(v) for v in _packed_varints(wire, value)]
        elif num == 10:
            t.int64_val += [_signed(v) for v in _packed_varints(wire, value)]
        elif num == 11:
            t.bool_val += [bool(v) for v in _packed_varints(wire, value)]
        elif num == 13:
            t.half_val += _packed_varints(wire, value)
    return t


_LIST_KINDS = {2: "s", 3: "i", 4: "f", 5: "b", 6: "type", 7: "shape", 8: "tensor"}


def _parse_list(buf: memoryview) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for num, wire, value in _fields(buf):
        kind = _LIST_KINDS.get(num)
        if kind is None:
            continue  # func lists are not needed
        items: list[Any]
        if kind == "s":
            items = [bytes(value)]
        elif kind == "i":
            items = [_signed(v) for v in _packed_varints(wire, value)]
        elif kind == "f":
            items = _packed_fixed(wire, value, "<f")
        elif kind == "b":
            items = [bool(v) for v in _packed_varints(wire, value)]
        elif kind == "type":
            items = _packed_varints(wire, value)
        elif kind == "shape":
            items = [_parse_shape(value)]
        else:
            items = [_parse_tensor(value)]
        out.setdefault(kind, []).extend(items)
    return out


def _parse_attr(buf: memoryview) -> AttrValue:
    attr = AttrValue("list", {})  # an empty AttrValue reads as an empty list
    for num, _, value in _fields(buf):
        if num == 1:
            attr = AttrValue("list", _parse_list(value))
        elif num == 2:
            attr = AttrValue("s", bytes(value))
        elif num == 3:
            attr = AttrValue("i", _signed(value))
        elif num == 4:
            attr = AttrValue("f", struct.unpack("<f", value)[0])
        elif num == 5:
            attr = AttrValue("b", bool(value))
        elif num == 6:
            attr = AttrValue("type", value)
        elif num == 7:
            attr = AttrValue("shape", _parse_shape(value))
        elif num == 8:
            attr = AttrValue("tensor", _parse_tensor(value))
        elif num == 9:
            attr = AttrValue("placeholder", _text(value))
    return attr


def _parse_node(buf: memoryview) -> NodeDef:
    node = NodeDef()
    for num, _, value in _fields(buf):
        if num == 1:
            node.name = _text(value)
        elif num == 2:
            node.op = _text(value)
        elif num == 3:
            node.input.append(_text(value))
        elif num == 4:
            node.device = _text(value)
        elif num == 5:  # map<string, AttrValue> entry
            key, attr = "", AttrValue("list", {})
            for enum_, _, evalue in _fields(value):
                if enum_ == 1:
                    key = _text(evalue)
                elif enum_ == 2:
                    attr = _parse_attr(evalue)
            node.attr[key] = attr
    return node


def parse_graphdef(data: bytes) -> GraphDef:
    """Decode a serialized ``GraphDef`` (wire format) without TensorFlow or protobuf."""
    graph = GraphDef()
    try:
        for num, wire, value in _fields(memoryview(data)):
            if num == 1 and wire == _LEN:
                graph.node.append(_parse_node(value))
    except IndexError as exc:
        raise InvalidModelError("malformed protobuf: truncated GraphDef") from exc
    return graph


# --------------------------------------------------------------------------------------
# Conversion: GraphDef -> execution plan + state dict
# --------------------------------------------------------------------------------------

SUPPORTED_OPS = frozenset(
    {
        "Placeholder", "Const", "Identity", "Conv2D", "BiasAdd", "Relu", "Relu6", "ConcatV2",
        "Mul", "Add", "AddV2", "Sub", "Maximum", "MaxPool", "AvgPool", "Reshape", "MatMul",
        "FusedBatchNorm", "FusedBatchNormV3", "Square", "Sum", "Mean", "Rsqrt", "Sqrt",
    }
)  # fmt: skip

_NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # TF axis (NHWC) -> torch axis (NCHW)


@dataclass
class _Value:
    """A runtime value during conversion: slot index and layout ('nchw' or 'tf')."""

    slot: int
    layout: str


def _split_input(name: str) -> tuple[str, int]:
    node, _, index = name.partition(":")
    return node, int(index) if index else 0


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow SAME padding: ``(before, after)``, the odd pixel going after."""
    eff = (k - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


class _Converter:
    """Walks the subgraph feeding ``output`` and emits plan steps, module specs and state."""

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
                    self.consumers.setdefault(_split_input(inp)[0], []).append(name)
        self.steps: list[dict[str, Any]] = []
        self.convs: list[list[int]] = []
        self.linears: list[list[int]] = []
        self.state: dict[str, Tensor] = {}
        self.values: dict[str, _Value] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.fused: set[str] = set()
        self.input_slot = -1
        self.nslots = 0

    # graph helpers ------------------------------------------------------------------

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
                dep = _split_input(inp.lstrip("^"))[0]
                if dep not in seen:
                    stack.append((dep, False))
        return order

    def _data_inputs(self, node: NodeDef) -> list[str]:
        out = []
        for inp in node.input:
            if inp.startswith("^"):
                continue
            name, index = _split_input(inp)
            if index != 0:
                raise UnsupportedOpError(f"{self.nodes[name].op}:{index}", node.name)
            out.append(name)
        return out

    def _only_consumer(self, name: str, op: str) -> NodeDef | None:
        """The single consumer of ``name`` if it has op ``op`` (and ``name`` is not the output)."""
        users = self.consumers.get(name, [])
        if name == self.output or len(users) != 1:
            return None
        user = self.nodes[users[0]]
        return user if user.op == op else None

    def _const(self, name: str) -> np.ndarray | None:
        if name in self.consts:
            return self.consts[name]
        node = self.nodes[name]
        if node.op == "Identity":
            return self._const(self._data_inputs(node)[0])
        if node.op != "Const":
            return None
        value = node.attr["value"].value.numpy()
        self.consts[name] = value
        return value

    def _need_const(self, name: str, user: NodeDef) -> np.ndarray:
        value = self._const(name)
        if value is None:
            raise UnsupportedOpError(f"{user.op} with a non-constant operand", user.name)
        return value

    @staticmethod
    def _attr(node: NodeDef, key: str, default: Any = None) -> Any:
        attr = node.attr.get(key)
        if attr is None:
            return default
        value = attr.value
        return value.decode() if isinstance(value, bytes) else value

    def _nhwc(self, node: NodeDef) -> None:
        fmt = self._attr(node, "data_format", "NHWC")
        if fmt != "NHWC":
            raise UnsupportedOpError(f"{node.op}(data_format={fmt})", node.name)

    # plan helpers -------------------------------------------------------------------

    def _new(self, name: str, layout: str) -> _Value:
        value = _Value(self.nslots, layout)
        self.nslots += 1
        self.values[name] = value
        return value

    def _emit(self, op: str, name: str, inputs: list[int], out: _Value, **params: Any) -> None:
        self.steps.append({"op": op, "name": name, "in": inputs, "out": out.slot, **params})

    def _val(self, name: str) -> _Value:
        """The runtime value ``name`` (constants only feed ops that take them as parameters)."""
        if name not in self.values:
            op = self.nodes[name].op
            raise UnsupportedOpError(f"{op} used as a runtime tensor (no constant folding)", name)
        return self.values[name]

    def _as(self, name: str, layout: str) -> int:
        """Slot of ``name`` in ``layout`` (emits a permute if needed)."""
        value = self._val(name)
        if value.layout == layout:
            return value.slot
        key = f"{name}@{layout}"
        if key not in self.values:
            out = self._new(key, layout)
            perm = [0, 2, 3, 1] if layout == "tf" else [0, 3, 1, 2]
            self._emit("permute", key, [value.slot], out, perm=perm)
        return self.values[key].slot

    def _buffer(self, array: np.ndarray) -> str:
        key = f"const{len([k for k in self.state if k.startswith('const')])}"
        self.state[key] = torch.from_numpy(np.array(array, dtype=np.float32, order="C"))
        return key

    # conversion ---------------------------------------------------------------------

    def run(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        for name in self.order:
            node = self.nodes[name]
            if name in self.fused or node.op == "Const":
                continue
            handler = getattr(self, f"_op_{node.op}", None)
            if handler is None:  # pragma: no cover - SUPPORTED_OPS and handlers agree
                raise UnsupportedOpError(node.op, node.name)
            handler(node)
        if self.output not in self.values:
            raise InvalidModelError(f"output {self.output!r} is a constant")
        out = self.values[self.output]
        if self.input_slot < 0:
            raise InvalidModelError("the graph has no Placeholder input")
        plan = {
            "version": CACHE_VERSION,
            "input_slot": self.input_slot,
            "output_slot": out.slot,
            "output_layout": out.layout,
            "nslots": self.nslots,
            "steps": self._with_frees(out.slot),
            "convs": self.convs,
            "linears": self.linears,
            "buffers": {k: list(v.shape) for k, v in self.state.items() if k.startswith("const")},
        }
        return plan, self.state

    def _with_frees(self, output_slot: int) -> list[dict[str, Any]]:
        """Add to each step the slots whose last use it is (freed right after it)."""
        last: dict[int, int] = {}
        for i, step in enumerate(self.steps):
            for slot in step["in"]:
                last[slot] = i
        for i, step in enumerate(self.steps):
            step["free"] = sorted({s for s in step["in"] if last[s] == i and s != output_slot})
        return self.steps

    def _op_Placeholder(self, node: NodeDef) -> None:
        if self.input_slot >= 0:
            raise UnsupportedOpError("Placeholder (more than one input)", node.name)
        shape = self._attr(node, "shape")  # 4-D or unknown rank: the module takes NCHW
        layout = "nchw" if not isinstance(shape, list) or len(shape) == 4 else "tf"
        self.input_slot = self._new(node.name, layout).slot

    def _op_Identity(self, node: NodeDef) -> None:
        if self._const(node.name) is not None:
            return  # an alias of a constant, read through _const
        self.values[node.name] = self._val(self._data_inputs(node)[0])

    def _op_Conv2D(self, node: NodeDef) -> None:
        self._nhwc(node)
        src, wname = self._data_inputs(node)
        weight = self._need_const(wname, node).astype(np.float32, copy=False)  # HWIO
        kh, kw, cin, cout = weight.shape
        strides = self._attr(node, "strides")["i"]
        dil = self._attr(node, "dilations", {"i": [1, 1, 1, 1]}).get("i", [1, 1, 1, 1])
        padding = self._attr(node, "padding")
        if padding not in ("SAME", "VALID"):
            raise UnsupportedOpError(f"Conv2D(padding={padding})", node.name)
        bias = None
        scale = 1.0
        last = node
        relu = False
        # fold BiasAdd, then a scalar Mul (residual scale), then Relu
        user = self._only_consumer(last.name, "BiasAdd")
        if user is not None:
            value_in, bias_in = self._data_inputs(user)
            b = self._const(bias_in) if value_in == last.name else None
            if b is not None and self._attr(user, "data_format", "NHWC") == "NHWC":
                bias, last = b.astype(np.float32), user
        user = self._only_consumer(last.name, "Mul")
        if user is not None:
            x_in, y_in = self._data_inputs(user)
            other = y_in if x_in == last.name else x_in
            c = self._const(other) if other != last.name else None
            if c is not None and c.size == 1:
                scale, last = float(c.reshape(())), user
        user = self._only_consumer(last.name, "Relu")
        if user is not None:
            relu, last = True, user
        w = np.array(weight.transpose(3, 2, 0, 1), dtype=np.float32, order="C")  # OIHW, one copy
        if scale != 1.0:
            w *= np.float32(scale)
        idx = len(self.convs)
        self.convs.append(
            [cin, cout, kh, kw, strides[1], strides[2], dil[1], dil[2], bias is not None]
        )
        self.state[f"convs.{idx}.weight"] = torch.from_numpy(w)
        if bias is not None:
            self.state[f"convs.{idx}.bias"] = torch.from_numpy(bias * np.float32(scale))
        cur = node
        while cur is not last:  # mark the fused chain
            cur = self.nodes[self.consumers[cur.name][0]]
            self.fused.add(cur.name)
        out = self._new(last.name, "nchw")
        self._emit(
            "conv",
            last.name,
            [self._as(src, "nchw")],
            out,
            idx=idx,
            same=padding == "SAME",
            relu=relu,
        )

    def _op_BiasAdd(self, node: NodeDef) -> None:
        self._binary(node, "add")

    def _op_Relu(self, node: NodeDef) -> None:
        self._unary(node, "relu")

    def _op_Relu6(self, node: NodeDef) -> None:
        self._unary(node, "relu6")

    def _op_Square(self, node: NodeDef) -> None:
        self._unary(node, "square")

    def _op_Rsqrt(self, node: NodeDef) -> None:
        self._unary(node, "rsqrt")

    def _op_Sqrt(self, node: NodeDef) -> None:
        self._unary(node, "sqrt")

    def _unary(self, node: NodeDef, op: str) -> None:
        src = self._val(self._data_inputs(node)[0])
        out = self._new(node.name, src.layout)
        self._emit(op, node.name, [src.slot], out)

    def _op_Mul(self, node: NodeDef) -> None:
        self._binary(node, "mul")

    def _op_Add(self, node: NodeDef) -> None:
        self._binary(node, "add")

    def _op_AddV2(self, node: NodeDef) -> None:
        self._binary(node, "add")

    def _op_Sub(self, node: NodeDef) -> None:
        self._binary(node, "sub")

    def _op_Maximum(self, node: NodeDef) -> None:
        self._binary(node, "maximum")

    def _binary(self, node: NodeDef, op: str) -> None:
        a, b = self._data_inputs(node)
        ca, cb = self._const(a), self._const(b)
        if ca is not None and cb is not None:
            raise UnsupportedOpError(f"{node.op} of two constants", node.name)
        if ca is None and cb is None:
            la, lb = self._val(a).layout, self._val(b).layout
            layout = la if la == lb else "tf"
            out = self._new(node.name, layout)
            self._emit(op, node.name, [self._as(a, layout), self._as(b, layout)], out)
            return
        tensor_name, const, const_first = (b, ca, True) if ca is not None else (a, cb, False)
        assert const is not None
        src = self._val(tensor_name)
        operand: float | str
        if const.size == 1 and const.ndim <= 1:
            operand = float(const.reshape(()))
        else:
            if src.layout == "nchw":
                if const.ndim > 4:
                    raise UnsupportedOpError(
                        f"{node.op} with a rank-{const.ndim} constant", node.name
                    )
                const = const.reshape((1,) * (4 - const.ndim) + const.shape).transpose(0, 3, 1, 2)
            operand = self._buffer(const)
        out = self._new(node.name, src.layout)
        self._emit(op, node.name, [src.slot], out, const=operand, const_first=const_first)

    def _op_ConcatV2(self, node: NodeDef) -> None:
        names = self._data_inputs(node)
        axis = int(self._need_const(names[-1], node))
        layouts = {self._val(n).layout for n in names[:-1]}
        layout = "nchw" if layouts == {"nchw"} else "tf"
        if layout == "nchw":
            axis = _NHWC_TO_NCHW_AXIS[axis % 4]
        out = self._new(node.name, layout)
        self._emit("concat", node.name, [self._as(n, layout) for n in names[:-1]], out, axis=axis)

    def _pool(self, node: NodeDef, op: str) -> None:
        self._nhwc(node)
        ksize, strides = self._attr(node, "ksize")["i"], self._attr(node, "strides")["i"]
        if ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
            raise UnsupportedOpError(f"{node.op} over batch or channels", node.name)
        padding = self._attr(node, "padding")
        if padding not in ("SAME", "VALID"):
            raise UnsupportedOpError(f"{node.op}(padding={padding})", node.name)
        src = self._as(self._data_inputs(node)[0], "nchw")
        out = self._new(node.name, "nchw")
        self._emit(
            op,
            node.name,
            [src],
            out,
            k=[ksize[1], ksize[2]],
            s=[strides[1], strides[2]],
            same=padding == "SAME",
        )

    def _op_MaxPool(self, node: NodeDef) -> None:
        self._pool(node, "maxpool")

    def _op_AvgPool(self, node: NodeDef) -> None:
        self._pool(node, "avgpool")

    def _op_Reshape(self, node: NodeDef) -> None:
        src_name, shape_name = self._data_inputs(node)
        shape = [int(v) for v in self._need_const(shape_name, node).reshape(-1)]
        src = self._as(src_name, "tf")
        out = self._new(node.name, "tf")
        # Frozen graphs bake the placeholder's batch size into reshape targets ([1, -1]);
        # the leading dimension is kept as the batch, as OpenCV's reader does.
        self._emit("reshape", node.name, [src], out, shape=shape[1:])

    def _op_MatMul(self, node: NodeDef) -> None:
        a, b = self._data_inputs(node)
        if self._attr(node, "transpose_a", False):
            raise UnsupportedOpError("MatMul(transpose_a)", node.name)
        weight = self._need_const(b, node)
        if not self._attr(node, "transpose_b", False):
            weight = weight.T  # (in, out) -> (out, in)
        cout, cin = weight.shape
        bias, last = None, node
        user = self._only_consumer(node.name, "BiasAdd")
        if user is not None:
            c = self._const(self._data_inputs(user)[1])
            if c is not None:
                bias, last = c.astype(np.float32), user
                self.fused.add(user.name)
        idx = len(self.linears)
        self.linears.append([cin, cout, bias is not None])
        self.state[f"linears.{idx}.weight"] = torch.from_numpy(
            np.array(weight, dtype=np.float32, order="C")
        )
        if bias is not None:
            self.state[f"linears.{idx}.bias"] = torch.from_numpy(np.array(bias, order="C"))
        out = self._new(last.name, "tf")
        self._emit("linear", last.name, [self._as(a, "tf")], out, idx=idx)

    def _op_FusedBatchNorm(self, node: NodeDef) -> None:
        self._nhwc(node)
        if self._attr(node, "is_training", True):
            raise UnsupportedOpError(f"{node.op}(is_training=True)", node.name)
        src_name, *rest = self._data_inputs(node)
        gamma, beta, mean, var = (self._need_const(n, node).astype(np.float64) for n in rest[:4])
        eps = float(self._attr(node, "epsilon", 1e-3))
        mult = gamma / np.sqrt(var + eps)
        shift = beta - mean * mult
        src = self._val(src_name)
        shape = (1, -1, 1, 1) if src.layout == "nchw" else (-1,)
        out = self._new(node.name, src.layout)
        self._emit(
            "affine", node.name, [src.slot], out,
            mult=self._buffer(mult.reshape(shape)), shift=self._buffer(shift.reshape(shape)),
        )  # fmt: skip

    _op_FusedBatchNormV3 = _op_FusedBatchNorm

    def _reduce(self, node: NodeDef, op: str) -> None:
        src_name, axes_name = self._data_inputs(node)
        axes = [int(a) for a in self._need_const(axes_name, node).reshape(-1)]
        keep = bool(self._attr(node, "keep_dims", False))
        src = self._val(src_name)
        if src.layout == "nchw" and keep:
            axes = [_NHWC_TO_NCHW_AXIS[a % 4] for a in axes]
        elif src.layout == "nchw":  # the result is no longer NCHW: reduce in TF layout
            src = _Value(self._as(src_name, "tf"), "tf")
        out = self._new(node.name, src.layout)
        self._emit(op, node.name, [src.slot], out, axes=axes, keep=keep)

    def _op_Sum(self, node: NodeDef) -> None:
        self._reduce(node, "sum")

    def _op_Mean(self, node: NodeDef) -> None:
        self._reduce(node, "mean")


def convert_graphdef(
    data: bytes, output: str = DEFAULT_OUTPUT
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Parse and convert a serialized GraphDef: ``(plan, state_dict)`` for :class:`GraphDefModule`.

    Raises ``UnsupportedOpError`` for any op feeding ``output`` that cannot be converted.
    """
    return _Converter(parse_graphdef(data), output).run()


# --------------------------------------------------------------------------------------
# Runtime module
# --------------------------------------------------------------------------------------


def _pads(x: Tensor, k: list[int], s: list[int], d: list[int]) -> list[int]:
    """TF SAME pads for the last two dims of ``x`` as ``[top, bottom, left, right]``."""
    top, bottom = _same_pads(x.shape[-2], k[0], s[0], d[0])
    left, right = _same_pads(x.shape[-1], k[1], s[1], d[1])
    return [top, bottom, left, right]


class GraphDefModule(nn.Module):
    """A converted GraphDef: runs a precomputed plan over ``nn.Conv2d``/``nn.Linear`` modules.

    Input and output of 4-D tensors are NCHW; parameters are frozen (``requires_grad=False``)
    so that backward computes input gradients only; re-enable them to fine-tune.
    """

    def __init__(self, plan: dict[str, Any]) -> None:
        super().__init__()
        self.plan = plan
        self.steps: list[dict[str, Any]] = plan["steps"]
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, (kh, kw), (sh, sw), 0, (dh, dw), bias=bool(bias))
            for cin, cout, kh, kw, sh, sw, dh, dw, bias in plan["convs"]
        )
        self.linears = nn.ModuleList(
            nn.Linear(cin, cout, bias=bool(bias)) for cin, cout, bias in plan["linears"]
        )
        for name, shape in plan["buffers"].items():
            self.register_buffer(name, torch.empty(shape))

    @classmethod
    def from_state(cls, plan: dict[str, Any], state: dict[str, Tensor]) -> GraphDefModule:
        """Build on the meta device (no random init) and take ``state`` as the weights."""
        with torch.device("meta"):
            module = cls(plan)
        module.load_state_dict(state, assign=True)
        module.requires_grad_(False)
        return module.eval()

    def _conv(self, x: Tensor, step: dict[str, Any]) -> Tensor:
        conv = self.convs[step["idx"]]
        assert isinstance(conv, nn.Conv2d)
        pad: tuple[int, int] | int = 0
        if step["same"]:
            top, bottom, left, right = _pads(
                x, list(conv.kernel_size), list(conv.stride), list(conv.dilation)
            )
            pad = (min(top, bottom), min(left, right))  # symmetric part inside the conv
            if top != bottom or left != right:
                x = F.pad(x, (left - pad[1], right - pad[1], top - pad[0], bottom - pad[0]))
        y = F.conv2d(x, conv.weight, conv.bias, conv.stride, pad, conv.dilation)
        return torch.relu(y) if step["relu"] else y

    @staticmethod
    def _pool(x: Tensor, step: dict[str, Any]) -> Tensor:
        k, s = step["k"], step["s"]
        top = bottom = left = right = 0
        if step["same"]:
            top, bottom, left, right = _pads(x, k, s, [1, 1])
        if step["op"] == "maxpool":
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
            return F.max_pool2d(x, k, s)
        if not (top or bottom or left or right):
            return F.avg_pool2d(x, k, s)
        # TF's SAME average excludes the padding from the count.
        pad = (left, right, top, bottom)
        total = F.avg_pool2d(F.pad(x, pad), k, s, divisor_override=1)
        ones = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        count = F.avg_pool2d(F.pad(ones, pad), k, s, divisor_override=1)
        return total / count

    def _operand(self, step: dict[str, Any]) -> Tensor | float:
        const = step["const"]
        return const if isinstance(const, float) else getattr(self, const)

    def forward(self, x: Tensor) -> Tensor:
        """Run the plan on ``x`` (NCHW if the graph input is 4-D)."""
        vals: list[Any] = [None] * self.plan["nslots"]
        vals[self.plan["input_slot"]] = x
        for step in self.steps:
            op = step["op"]
            args = [vals[i] for i in step["in"]]
            y: Tensor
            if op == "conv":
                y = self._conv(args[0], step)
            elif op in ("maxpool", "avgpool"):
                y = self._pool(args[0], step)
            elif op == "relu":
                y = torch.relu(args[0])
            elif op == "relu6":
                y = torch.clamp(args[0], 0.0, 6.0)
            elif op == "square":
                y = args[0] * args[0]
            elif op == "rsqrt":
                y = torch.rsqrt(args[0])
            elif op == "sqrt":
                y = torch.sqrt(args[0])
            elif op in ("add", "mul", "sub", "maximum"):
                if len(args) == 2:
                    a, b = args
                elif step["const_first"]:
                    a, b = self._operand(step), args[0]
                else:
                    a, b = args[0], self._operand(step)
                if op == "add":
                    y = a + b
                elif op == "mul":
                    y = a * b
                elif op == "sub":
                    y = a - b
                elif isinstance(a, float):
                    y = torch.clamp_min(b, a)
                elif isinstance(b, float):
                    y = torch.clamp_min(a, b)
                else:
                    y = torch.maximum(a, b)
            elif op == "concat":
                y = torch.cat(args, dim=step["axis"])
            elif op == "permute":
                y = args[0].permute(*step["perm"])
            elif op == "reshape":
                y = args[0].reshape(args[0].shape[0], *step["shape"])
            elif op == "linear":
                y = self.linears[step["idx"]](args[0])
            elif op == "affine":
                y = args[0] * getattr(self, step["mult"]) + getattr(self, step["shift"])
            elif op == "sum":
                y = torch.sum(args[0], dim=step["axes"], keepdim=step["keep"])
            elif op == "mean":
                y = torch.mean(args[0], dim=step["axes"], keepdim=step["keep"])
            else:  # pragma: no cover - the converter only emits the ops above
                raise UnsupportedOpError(op, step["name"])
            vals[step["out"]] = y
            for slot in step["free"]:
                vals[slot] = None
        out = vals[self.plan["output_slot"]]
        assert isinstance(out, Tensor)
        return out


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def prewhiten(x: Tensor) -> Tensor:
    """FaceNet's per-image standardisation: ``(x - mean) / max(std, 1/sqrt(x[i].numel()))``.

    ``x`` is (N, ...) (pixels 0..255 as in the original package); statistics are per sample
    over all other dims, std is the population std. Differentiable (also for flat images).
    """
    flat = x.reshape(x.shape[0], -1)
    n = flat.shape[1]
    mean = flat.mean(dim=1, keepdim=True)
    var = ((flat - mean) ** 2).mean(dim=1, keepdim=True)
    std = var.clamp_min(1.0 / n).sqrt()  # == max(std, 1/sqrt(n)), finite gradient
    return ((flat - mean) / std).reshape(x.shape)


def _cache_file(path: Path, digest: str) -> Path:
    folder = get_settings().cache_dir / "models"
    return folder / f"{path.stem}.{digest[:32]}.torch.pt"


def load_facenet(
    path: Path, *, sha256: str | None = None, use_cache: bool = True, output: str = DEFAULT_OUTPUT
) -> nn.Module:
    """FaceNet from its frozen GraphDef: (N,3,160,160) prewhitened RGB -> (N,512) L2-normalised.

    The converted plan and weights are cached (``torch.save``) in the model cache directory,
    keyed by the file's sha256 (pass ``sha256`` to skip hashing a file you already verified).
    Raises ``UnsupportedOpError`` if the graph uses an op the converter lacks.
    """
    path = Path(path)
    if not use_cache:
        return GraphDefModule.from_state(*convert_graphdef(path.read_bytes(), output))
    digest = sha256 or sha256_file(path)
    cache = _cache_file(path, digest)
    if cache.exists():
        try:
            saved = torch.load(cache, map_location="cpu", weights_only=True, mmap=True)
            if saved.get("version") == CACHE_VERSION and saved.get("output") == output:
                return GraphDefModule.from_state(saved["plan"], saved["state"])
        except Exception:  # a corrupt or stale cache is rebuilt below
            pass
    plan, state = convert_graphdef(path.read_bytes(), output)
    module = GraphDefModule.from_state(plan, state)
    payload = {"version": CACHE_VERSION, "output": output, "plan": plan, "state": state}
    with contextlib.suppress(OSError):  # a read-only cache only costs later loads a conversion
        _save_atomic(payload, cache)
    return module


def _save_atomic(payload: dict[str, Any], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

"""A minimal reader of TensorFlow's frozen ``GraphDef`` protobuf (no TensorFlow, no torch).

Decodes the protobuf wire format directly into small dataclasses: :class:`GraphDef` of
:class:`NodeDef` with :class:`AttrValue` attributes and :class:`TensorProto` constants,
whose raw content stays a view into the file's bytes until ``TensorProto.numpy``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.errors import InvalidModelError

__all__ = ["AttrValue", "GraphDef", "NodeDef", "TensorProto", "parse_graphdef"]

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

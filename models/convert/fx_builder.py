"""The back-end both converters share: builds a ``torch.fx`` GraphModule op by op.

A front-end walks its own graph format and calls the emitters here with a neutral
description of each op (NCHW layout, torch tensors, a :class:`Padding`). Values are
``fx.Node`` objects when they depend on the input and constant tensors otherwise: a call
whose arguments are all constant is evaluated at once (constant folding). Layers with
weights become real ``nn.Conv*`` / ``nn.Linear`` submodules; the kind and constructor
arguments of every submodule are kept in ``GraphModule.meta["module_specs"]`` so that
``fx_payload`` can save and rebuild the module without pickling code.

A trainable builder (``FxBuilder(trainable=True)``) keeps the weights as parameters that
require gradients: layer weights, and the tensors marked with :meth:`FxBuilder.train_tensor`
(a model's float initializers) when they are lifted into the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from models.convert.runtime_ops import (
    avg_pool2d_excluding_pad,
    make_module,
    same_pad,
)

__all__ = ["MODULE_SPECS", "FxBuilder", "Padding", "Value"]

Value = Any  # an ``fx.Node`` (depends on the input), a constant ``torch.Tensor``, or None
MODULE_SPECS = "module_specs"  # GraphModule.meta key: submodule name -> (kind, config)

Pads = tuple[tuple[int, ...], tuple[int, ...]]  # (begins, ends) per spatial dim


@dataclass(frozen=True)
class Padding:
    """Spatial padding of a conv or pool: explicit ``begins``/``ends``, or ``same``.

    ``same`` is "upper" (the odd pixel after: TensorFlow SAME, ONNX SAME_UPPER) or "lower";
    it depends on the input size unless every stride is 1.
    """

    begins: tuple[int, ...] = ()
    ends: tuple[int, ...] = ()
    same: str = ""

    @classmethod
    def explicit(cls, begins: tuple[int, ...], ends: tuple[int, ...]) -> Padding:
        return cls(tuple(begins), tuple(ends))

    @classmethod
    def valid(cls, rank: int) -> Padding:
        return cls((0,) * rank, (0,) * rank)

    @classmethod
    def same_as(cls, upper: bool) -> Padding:
        return cls(same="upper" if upper else "lower")

    def resolve(self, kernel: tuple[int, ...], strides: tuple[int, ...]) -> Pads | None:
        """Static ``(begins, ends)`` for a (dilated) ``kernel``; None when size-dependent."""
        if not self.same:
            return self.begins, self.ends
        if any(s != 1 for s in strides):
            return None
        totals = [k - 1 for k in kernel]
        begins = tuple(t // 2 if self.same == "upper" else t - t // 2 for t in totals)
        return begins, tuple(t - b for t, b in zip(totals, begins, strict=True))


def _contains_node(args: Any) -> bool:
    if isinstance(args, fx.Node):
        return True
    if isinstance(args, (list, tuple)):
        return any(_contains_node(a) for a in args)
    if isinstance(args, dict):
        return any(_contains_node(a) for a in args.values())
    return False


def _torch_pads(begins: tuple[int, ...], ends: tuple[int, ...]) -> list[int]:
    """``F.pad`` order: last dim first."""
    out: list[int] = []
    for i in reversed(range(len(begins))):
        out += [begins[i], ends[i]]
    return out


def _layer_padding(pads: Pads | None, kernel: tuple[int, ...]) -> tuple[int, ...] | None:
    """The padding a pooling layer can apply itself (symmetric, <= half a kernel), if any."""
    if pads is None or pads[0] != pads[1]:
        return None
    return pads[0] if all(p <= k // 2 for p, k in zip(pads[0], kernel, strict=True)) else None


class FxBuilder:
    """Accumulates fx nodes, submodules and constant buffers; ``finish`` makes the module."""

    def __init__(self, trainable: bool = False) -> None:
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.module_specs: dict[str, tuple[str, dict[str, Any]]] = {}
        self.trainable = bool(trainable)
        self._buffers: dict[int, fx.Node] = {}
        self._trainable_ids: set[int] = set()
        self._counter = 0

    # ---- generic building
    def placeholder(self, name: str) -> fx.Node:
        """The graph's input."""
        return self.graph.placeholder(name)

    def _name(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def train_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mark ``tensor`` (a weight) to become a parameter when lifted (trainable builds)."""
        if self.trainable and tensor.is_floating_point():
            self._trainable_ids.add(id(tensor))
        return tensor

    def lift(self, arg: Any) -> Any:
        """Turn constant tensors inside ``arg`` into ``get_attr`` nodes (one buffer each;
        a parameter for tensors marked by :meth:`train_tensor`)."""
        if isinstance(arg, torch.Tensor):
            key = id(arg)
            if key not in self._buffers:
                name = self._name("const")
                if key in self._trainable_ids:
                    self.root.register_parameter(name, nn.Parameter(arg.detach().clone()))
                else:
                    self.root.register_buffer(name, arg)
                self._buffers[key] = self.graph.get_attr(name)
            return self._buffers[key]
        if isinstance(arg, list):
            return [self.lift(a) for a in arg]
        if isinstance(arg, tuple):
            return tuple(self.lift(a) for a in arg)
        return arg

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Value:
        """Emit ``fn(*args, **kwargs)``, or evaluate it now when nothing depends on the input."""
        if not _contains_node(args) and not _contains_node(kwargs):
            with torch.no_grad():
                return fn(*args, **kwargs)
        return self.graph.call_function(fn, self.lift(args), self.lift(kwargs))

    def add_module(
        self, kind: str, stem: str, x: Value, state: dict[str, torch.Tensor], **config: Any
    ) -> Value:
        """Emit a submodule call ``kind(**config)(x)`` with weights ``state`` (or evaluate it)."""
        module = make_module(kind, config, state)
        if not isinstance(x, fx.Node):
            with torch.no_grad():
                return module(x)
        name = self._name(stem)
        self.root.add_module(name, module)
        self.module_specs[name] = (kind, config)
        return self.graph.call_module(name, (x,))

    def finish(self, result: Value, class_name: str) -> fx.GraphModule:
        """The eval-mode GraphModule returning ``result``; parameters are frozen unless the
        builder is trainable."""
        self.graph.output(self.lift(result))
        module = fx.GraphModule(self.root, self.graph, class_name=class_name)
        module.meta[MODULE_SPECS] = dict(self.module_specs)
        module.requires_grad_(self.trainable)
        return module.eval()

    # ---- emitters shared by the front-ends
    def pad_spatial(
        self,
        x: Value,
        kernel: tuple[int, ...],
        strides: tuple[int, ...],
        padding: Padding,
        value: float,
        max_symmetric: tuple[int, ...] | None = None,
    ) -> tuple[Value, tuple[int, ...]]:
        """(x, symmetric padding for the layer): pads explicitly what a layer cannot."""
        rank = len(kernel)
        pads = padding.resolve(kernel, strides)
        if pads is None:
            upper = padding.same == "upper"
            return self.call(same_pad, x, kernel, strides, upper, value), (0,) * rank
        begins, ends = pads
        symmetric = begins == ends
        if symmetric and max_symmetric is not None:
            symmetric = all(p <= m for p, m in zip(begins, max_symmetric, strict=True))
        if symmetric:
            return x, begins
        return self.call(F.pad, x, _torch_pads(begins, ends), value=value), (0,) * rank

    def conv(
        self,
        x: Value,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        groups: int,
        padding: Padding,
    ) -> Value:
        """An ``nn.ConvNd`` with ``weight`` [out, in/groups, *kernel] (folding already done)."""
        kernel = tuple(int(s) for s in weight.shape[2:])
        dilated = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True))
        x, sym = self.pad_spatial(x, dilated, strides, padding, 0.0)
        state = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        return self.add_module(
            f"conv{len(kernel)}d", "conv", x, state,
            in_channels=int(weight.shape[1]) * groups, out_channels=int(weight.shape[0]),
            kernel_size=kernel, stride=tuple(strides), padding=sym,
            dilation=tuple(dilations), groups=groups, bias=bias is not None,
        )  # fmt: skip

    def linear(self, x: Value, weight: torch.Tensor, bias: torch.Tensor | None) -> Value:
        """An ``nn.Linear`` with ``weight`` [out, in]."""
        state = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        return self.add_module(
            "linear", "linear", x, state,
            in_features=int(weight.shape[1]), out_features=int(weight.shape[0]),
            bias=bias is not None,
        )  # fmt: skip

    def max_pool(
        self,
        x: Value,
        kernel: tuple[int, ...],
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        padding: Padding,
        ceil_mode: bool,
    ) -> Value:
        """Max pooling; padding beyond half a kernel (or asymmetric) is explicit -inf."""
        half = tuple(k // 2 for k in kernel)
        dilated = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True))
        x, sym = self.pad_spatial(x, dilated, strides, padding, -float("inf"), half)
        return self.add_module(
            f"maxpool{len(kernel)}d", "maxpool", x, {},
            kernel_size=kernel, stride=strides, padding=sym, dilation=dilations,
            ceil_mode=ceil_mode,
        )  # fmt: skip

    @staticmethod
    def avg_pool_fits_layer(
        kernel: tuple[int, ...], strides: tuple[int, ...], padding: Padding
    ) -> bool:
        """Whether an ``nn.AvgPoolNd`` can pad by itself: static, symmetric, <= half a kernel."""
        return _layer_padding(padding.resolve(kernel, strides), kernel) is not None

    def avg_pool(
        self,
        x: Value,
        kernel: tuple[int, ...],
        strides: tuple[int, ...],
        padding: Padding,
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> Value:
        """Average pooling; without ``count_include_pad`` padded pixels are not counted."""
        rank = len(kernel)
        pads = padding.resolve(kernel, strides)
        sym = _layer_padding(pads, kernel)
        if sym is None and count_include_pad:
            half = tuple(k // 2 for k in kernel)
            x, sym = self.pad_spatial(x, kernel, strides, padding, 0.0, half)
        elif sym is None:
            if rank != 2 or ceil_mode or padding.same == "lower":
                raise ValueError("average pooling excluding padding: 2-D, SAME_UPPER only")
            torch_pads = None if pads is None else _torch_pads(*pads)
            return self.call(avg_pool2d_excluding_pad, x, kernel, strides, torch_pads)
        return self.add_module(
            f"avgpool{rank}d", "avgpool", x, {},
            kernel_size=kernel, stride=strides, padding=sym, ceil_mode=ceil_mode,
            count_include_pad=count_include_pad,
        )  # fmt: skip

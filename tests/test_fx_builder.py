"""The shared converter back-end: padding, constant folding, emitters, the cache payload."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import fx

from models.convert.fx_builder import FxBuilder, Padding
from models.convert.fx_payload import from_payload, to_payload
from models.convert.onnx_front import convert_onnx
from models.convert.runtime_ops import make_module
from models.registry import ModelStore


def test_padding_resolves_static_and_size_dependent_same() -> None:
    assert Padding.explicit((0, 1), (2, 1)).resolve((3, 3), (2, 2)) == ((0, 1), (2, 1))
    assert Padding.valid(2).resolve((3, 3), (1, 1)) == ((0, 0), (0, 0))
    assert Padding.same_as(upper=True).resolve((4, 3), (1, 1)) == ((1, 1), (2, 1))
    assert Padding.same_as(upper=False).resolve((4, 3), (1, 1)) == ((2, 1), (1, 1))
    assert Padding.same_as(upper=True).resolve((3, 3), (2, 1)) is None


def test_constant_calls_fold_and_input_calls_become_nodes() -> None:
    b = FxBuilder()
    x = b.placeholder("x")
    folded = b.call(torch.mul, torch.full((2,), 3.0), 2.0)
    assert isinstance(folded, torch.Tensor) and folded.tolist() == [6.0, 6.0]
    y = b.call(torch.add, x, folded)
    assert isinstance(y, fx.Node)
    module = b.finish(y, "Tiny")
    assert torch.equal(module(torch.zeros(2)), torch.full((2,), 6.0))
    assert len(list(module.buffers())) == 1  # the folded constant, stored once


@pytest.mark.parametrize("size", [9, 10])
def test_same_stride2_conv_pads_from_the_input_size(size: int) -> None:
    """TensorFlow SAME: total pad depends on the size's parity; the odd pixel goes after."""
    weight = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    b = FxBuilder()
    x = b.placeholder("x")
    y = b.conv(x, weight, None, (2, 2), (1, 1), 1, Padding.same_as(upper=True))
    module = b.finish(y, "Conv")
    inp = torch.randn(1, 3, size, size)
    out_size = math.ceil(size / 2)
    total = max((out_size - 1) * 2 + 3 - size, 0)
    pads = [total // 2, total - total // 2] * 2
    expected = F.conv2d(F.pad(inp, pads), weight, stride=2)
    assert module(inp).shape == (1, 4, out_size, out_size)
    assert torch.allclose(module(inp), expected, atol=1e-6)


def test_avg_pool_excluding_padding_counts_real_pixels_only() -> None:
    b = FxBuilder()
    x = b.placeholder("x")
    y = b.avg_pool(x, (3, 3), (1, 1), Padding.same_as(upper=True), False, False)
    module = b.finish(y, "Pool")
    assert torch.equal(module(torch.ones(1, 1, 4, 5)), torch.ones(1, 1, 4, 5))


def test_payload_round_trip_is_weights_only_and_identical(model_store: ModelStore) -> None:
    net = convert_onnx(model_store.path("sface")).net  # convs, PRelu, batch_norm, linear
    buf = io.BytesIO()
    torch.save(to_payload(net), buf)
    buf.seek(0)
    rebuilt = from_payload(torch.load(buf, weights_only=True))
    assert rebuilt.code == net.code
    assert not rebuilt.training
    assert all(not p.requires_grad for p in rebuilt.parameters())
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_payload_refuses_functions_outside_the_table() -> None:
    b = FxBuilder()
    module = b.finish(b.call(torch.erf, b.placeholder("x")), "Erf")
    with pytest.raises(ValueError, match="erf"):
        to_payload(module)


@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (3, 5)])
def test_prelu_input_only_backward_matches_aten(shape: tuple[int, ...]) -> None:
    """The frozen PRelu's own backward gives ATen's input gradient (slopes may exceed 1)."""
    torch.manual_seed(0)
    slope = torch.tensor([0.25, -0.5, 1.5, 0.0, 1.0]).view(5, *([1] * (len(shape) - 2)))
    module = make_module("prelu", {"shape": tuple(slope.shape)}, prelu_state(slope))
    x = torch.randn(*shape).requires_grad_(True)
    upstream = torch.randn(*shape)
    y = module(x)
    assert y.grad_fn is not None and "PreluInputGrad" in type(y.grad_fn).__name__
    (ours,) = torch.autograd.grad(y, x, upstream)
    reference = F.prelu(x, slope.reshape(-1))
    (aten,) = torch.autograd.grad(reference, x, upstream)
    assert torch.equal(y.detach(), reference.detach())
    assert torch.allclose(ours, aten, atol=1e-6)
    assert not torch.allclose(ours, upstream)  # the slope really scales negative inputs
    with torch.no_grad():  # no gradient wanted: ATen's kernel, same values
        assert torch.equal(module(x), reference.detach())


def prelu_state(slope: torch.Tensor) -> dict[str, torch.Tensor]:
    """The PRelu module state the ONNX front-end gives it."""
    return {"slope": slope.clone(), "weight": slope.reshape(-1).clone()}

"""A trainable copy of an ONNX model: parameters, training batch norm, export back with parity."""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from models.convert.onnx_export import export_onnx, onnx_parity
from models.convert.onnx_front import convert_onnx
from models.convert.runtime_ops import BatchNorm


def _bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3),
    )  # fmt: skip
    with torch.no_grad():  # non-trivial running statistics
        net.train()
        for _ in range(3):
            net(torch.rand(16, 1, 8, 8))
    return net.eval()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(48, 1, 8, 8, generator=gen)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + (x.mean((1, 2, 3)) > 0.5)
    return x, y


def test_export_keeps_batch_norm_and_metadata() -> None:
    net = _bn_net()
    data = export_onnx(net, (1, 8, 8), metadata={"class_names": '["a","b","c"]'})
    proto = onnx.load_model_from_string(data)
    assert [n.op_type for n in proto.graph.node].count("BatchNormalization") == 2
    assert {p.key: p.value for p in proto.metadata_props}["class_names"] == '["a","b","c"]'
    assert onnx_parity(data, net, _data()[0]) < 1e-5


def test_trainable_copy_trains_its_weights_and_batch_norm() -> None:
    net = _bn_net()
    proto = onnx.load_model_from_string(export_onnx(net, (1, 8, 8)))
    frozen = convert_onnx(proto)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not any(isinstance(m, BatchNorm) for m in frozen.modules())  # folded
    model = convert_onnx(proto, trainable=True)
    x, y = _data()
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)
    bns = [m for m in model.modules() if isinstance(m, BatchNorm)]
    params = dict(model.named_parameters())
    assert len(bns) == 2 and all(p.requires_grad for p in params.values())
    assert len(params) == 3 * 2 + 2 * 2  # conv/linear weight+bias, BN weight+bias
    before = {k: v.detach().clone() for k, v in params.items()}
    running = bns[0].running_mean.clone()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    assert all(not torch.equal(before[k], v) for k, v in params.items())
    assert not torch.equal(running, bns[0].running_mean)  # running stats follow the batches
    assert int(bns[0].num_batches_tracked) == 30
    model.eval()
    with torch.no_grad():  # eval mode uses the running statistics: batch-size independent
        assert torch.allclose(model(x[:1]), model(x)[:1], atol=1e-5)
    data = export_onnx(model, (1, 8, 8), like=proto)
    assert onnx_parity(data, model, x) < 1e-4
    again = convert_onnx(onnx.load_model_from_string(data))
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-4)


def test_initializers_used_by_plain_ops_become_parameters() -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(6, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [w, b],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = convert_onnx(proto, trainable=True)
    assert sorted(p.shape for p in model.parameters()) == [torch.Size([3]), torch.Size([6, 3])]
    model(torch.rand(4, 6)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert not list(convert_onnx(proto).parameters())

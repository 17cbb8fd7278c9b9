"""Small digit classifiers (16x16) for the backdoor tests, trained once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from workers.jobs.backdoor.zoo import ZooModel, cached_onnx, samples

SIZE = 16
PATCH = ZooModel("patch", target=3, seed=1, size=SIZE, epochs=6)
CLEAN = ZooModel("none", seed=2, size=SIZE, epochs=6)
REFERENCE = ZooModel("none", seed=3, size=SIZE, epochs=6)


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this session's models are kept."""
    torch.set_flush_denormal(True)
    return tmp_path_factory.mktemp("backdoor-zoo")


@pytest.fixture(scope="session")
def patch_onnx(zoo_dir: Path) -> bytes:
    """A model with a corner-patch backdoor toward class 3."""
    return cached_onnx(PATCH, zoo_dir)


@pytest.fixture(scope="session")
def clean_onnx(zoo_dir: Path) -> bytes:
    """A clean model."""
    return cached_onnx(CLEAN, zoo_dir)


@pytest.fixture(scope="session")
def reference_onnx(zoo_dir: Path) -> bytes:
    """Another clean model (the reference)."""
    return cached_onnx(REFERENCE, zoo_dir)


def sample_images(count: int = 32) -> np.ndarray:
    """Unlabelled held-out digits ``[N, 1, 16, 16]``."""
    return samples(SIZE, count, seed=7)


def tiny_graph(op: str = "Relu", out_rank: int = 2, external: bool = False) -> bytes:
    """A one-conv ONNX graph ``[N,1,8,8]`` -> ``op`` -> flatten (or not) for bad-input tests."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 3, 3], [0.1] * 18)
    if external:
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])]
    nodes.append(helper.make_node(op, ["c"], ["a"]))
    out_dims: list[int | str] = ["n", 2, 8, 8]
    if out_rank == 2:
        nodes.append(helper.make_node("Flatten", ["a"], ["y"]))
        out_dims = ["n", 128]
    else:
        nodes.append(helper.make_node("Identity", ["a"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


def with_softmax(data: bytes) -> bytes:
    """The model with a Softmax appended to its output."""
    proto = onnx.load_model_from_string(data)
    old = proto.graph.output[0].name
    proto.graph.node.append(helper.make_node("Softmax", [old], ["probs"], axis=1))
    proto.graph.output[0].name = "probs"
    return bytes(proto.SerializeToString())

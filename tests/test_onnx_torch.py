"""Parity of the ONNX -> torch.fx converter against onnxruntime, on real models and faces."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from models.convert.arcface_check import check_arcface_onnx
from models.convert.onnx_front import OnnxModule, convert_onnx
from models.errors import InvalidModelError, UnsupportedOpError
from models.registry import ModelStore

from .helpers import DEV as FACES_DIR

FACE_FILES = ("img1.jpg", "img2.jpg")
TOL = 1e-4


# --------------------------------------------------------------------------- helpers


def face_crop(name: str, size: int) -> np.ndarray:
    """A centred square crop around the face of a portrait photo, as HWC uint8 RGB."""
    path = FACES_DIR / name
    if not path.exists():
        pytest.skip(f"face photo {path} not available")
    with Image.open(path) as raw:
        img = raw.convert("RGB")
        w, h = img.size
        side = 0.45 * min(w, h)
        cx, cy = w / 2, h / 3  # portraits: the face sits in the upper middle
        box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
        crop = img.crop(box).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(crop)


def face_batch(size: int, normalise: bool) -> np.ndarray:
    """Both face crops as an NCHW float32 batch (raw 0..255 or (x-127.5)/127.5)."""
    batch = np.stack([face_crop(n, size) for n in FACE_FILES]).astype(np.float32)
    batch = batch.transpose(0, 3, 1, 2).copy()
    return (batch - 127.5) / 127.5 if normalise else batch


def session(model: str | Path | onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_ort(model: str | Path | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = session(model)
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x})[0])


def run_ort_per_sample(model: str | Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime one sample at a time (some graphs fix the batch dimension to 1)."""
    sess = session(model)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def run_torch(module: OnnxModule, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = module(torch.from_numpy(x)).numpy()
    return out


@cache
def converted(path: Path) -> OnnxModule:
    torch.set_num_threads(1)
    return convert_onnx(path)


def make_model(
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    in_shape: list[int | str],
    out_rank: int = 2,
    opset: int = 13,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(out_rank)])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def rand(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def bn_params(rng: np.random.Generator, prefix: str, c: int) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_g": rng.uniform(0.5, 1.5, c).astype(np.float32),
        f"{prefix}_b": rand(rng, c, scale=0.1),
        f"{prefix}_m": rand(rng, c, scale=0.1),
        f"{prefix}_v": rng.uniform(0.5, 2.0, c).astype(np.float32),
    }


def bn_node(prefix: str, x: str, y: str) -> onnx.NodeProto:
    ins = [x, f"{prefix}_g", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"]
    return helper.make_node("BatchNormalization", ins, [y], epsilon=1e-5, name=prefix)


def iresnet_like() -> onnx.ModelProto:
    """Conv->BN->PRelu, a residual Add, BN->Dropout->Flatten->Gemm->BN1d, like IResNet."""
    rng = np.random.default_rng(1)
    inits = {
        "sub": np.array([127.5], np.float32),
        "mul": np.array([0.0078125], np.float32),
        "w1": rand(rng, 8, 3, 3, 3),
        "w2": rand(rng, 8, 8, 3, 3, scale=0.2),
        "w3": rand(rng, 8, 8, 1, 1, scale=0.3),
        "p1": rng.uniform(0.05, 0.3, (8, 1, 1)).astype(np.float32),
        "p2": rng.uniform(0.05, 0.3, (1, 8, 1, 1)).astype(np.float32),
        "fc_w": rand(rng, 16, 8 * 4 * 4, scale=0.1),
        "fc_b": rand(rng, 16, scale=0.1),
        **bn_params(rng, "bn1", 8),
        **bn_params(rng, "bn2", 8),
        **bn_params(rng, "bn3", 8),
        **bn_params(rng, "bn4", 16),
    }
    nodes = [
        helper.make_node("Sub", ["x", "sub"], ["s"]),
        helper.make_node("Mul", ["s", "mul"], ["n"]),
        helper.make_node("Conv", ["n", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        bn_node("bn1", "c1", "b1"),
        helper.make_node("PRelu", ["b1", "p1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        bn_node("bn2", "c2", "b2"),
        helper.make_node("PRelu", ["b2", "p2"], ["r2"]),
        helper.make_node("Conv", ["r1", "w3"], ["c3"]),  # shortcut
        helper.make_node("Add", ["r2", "c3"], ["a"]),
        helper.make_node("Identity", ["a"], ["i"]),
        bn_node("bn3", "i", "b3"),  # BN not after a Conv: kept as batch_norm
        helper.make_node("Dropout", ["b3"], ["d"]),
        helper.make_node("Flatten", ["d"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["g"], transB=1),
        bn_node("bn4", "g", "y"),  # BatchNorm1d on the embedding
    ]
    return make_model(nodes, inits, ["N", 3, 8, 8])


def op_zoo() -> onnx.ModelProto:
    """The remaining supported ops with non-default attributes, in one graph."""
    rng = np.random.default_rng(2)
    inits = {
        "w_asym": rand(rng, 4, 3, 3, 3),
        "b_asym": rand(rng, 4),
        "w_same": rand(rng, 4, 2, 3, 3),  # group=2
        "w_dil": rand(rng, 4, 4, 3, 3, scale=0.3),
        "half": np.array([2.0], np.float32),
        "shape": np.array([0, 4, -1], np.int64),
        "perm_w": rand(rng, 4, 4),
        "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
        "lo": np.array(-0.5, np.float32),
        "hi": np.array(0.8, np.float32),
        "gemm_w": rand(rng, 6, 128, scale=0.1),
        "gemm_c": rand(rng, 6),
        "slope": rng.uniform(0.05, 0.3, (6,)).astype(np.float32),  # [C] on an [N, C] tensor
    }
    nodes = [
        helper.make_node(
            "Conv", ["x", "w_asym", "b_asym"], ["c1"], pads=[0, 1, 1, 0], kernel_shape=[3, 3]
        ),
        helper.make_node("LeakyRelu", ["c1"], ["l1"], alpha=0.2),
        helper.make_node(
            "Conv", ["l1", "w_same"], ["c2"], auto_pad="SAME_UPPER", strides=[2, 2], group=2
        ),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w_dil"], ["c3"], dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Constant", [], ["k"], value_float=0.25),
        helper.make_node("Div", ["c3", "half"], ["d3"]),
        helper.make_node("Add", ["d3", "k"], ["a3"]),
        helper.make_node("Pad", ["a3", "pads"], ["p3"], mode="constant"),
        helper.make_node(
            "MaxPool", ["p3"], ["m3"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node(
            "AveragePool", ["p3"], ["v3"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1
        ),
        helper.make_node("Concat", ["m3", "v3"], ["cat"], axis=1),
        helper.make_node("Sigmoid", ["cat"], ["sg"]),
        helper.make_node("Clip", ["sg", "lo", "hi"], ["cl"]),
        helper.make_node("Reshape", ["cl", "shape"], ["rs"]),
        helper.make_node("Transpose", ["rs"], ["tr"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tr", "perm_w"], ["mm"]),
        helper.make_node("GlobalAveragePool", ["c3"], ["gap"]),
        helper.make_node("Flatten", ["mm"], ["fl"], axis=1),
        helper.make_node("Gemm", ["fl", "gemm_w", "gemm_c"], ["gm"], transB=1, alpha=0.7, beta=1.3),
        helper.make_node("PRelu", ["gm", "slope"], ["pr"]),
        helper.make_node("Flatten", ["gap"], ["gf"], axis=1),
        helper.make_node("Concat", ["pr", "gf"], ["y"], axis=1),
    ]
    return make_model(nodes, inits, ["N", 3, 11, 11])


# --------------------------------------------------------------------------- real models


@pytest.mark.parametrize(
    ("name", "size", "normalise"),
    [("w600k_mbf", 112, True), ("sface", 112, False), ("2d106det", 192, False)],
)
def test_real_model_parity_on_faces(
    name: str, size: int, normalise: bool, model_store: ModelStore
) -> None:
    x = face_batch(size, normalise)
    path = model_store.path(name)
    ours = run_torch(converted(path), x)  # a batch of 2 in one call
    reference = run_ort_per_sample(path, x)
    assert ours.shape == reference.shape == (2, reference.shape[1])
    assert np.max(np.abs(ours - reference)) < TOL
    # the two faces give different outputs: the parity is not trivially on a constant
    assert np.max(np.abs(reference[0] - reference[1])) > 1e-2


def test_w600k_batch_matches_onnxruntime_batch(model_store: ModelStore) -> None:
    x = face_batch(112, normalise=True)
    path = model_store.path("w600k_mbf")
    ours, reference = run_torch(converted(path), x), run_ort(path, x)
    assert np.max(np.abs(ours - reference)) < TOL


@pytest.mark.parametrize(
    ("name", "size", "normalise"),
    [("w600k_mbf", 112, True), ("sface", 112, False)],
)
def test_gradients_reach_the_input(
    name: str, size: int, normalise: bool, model_store: ModelStore
) -> None:
    module = converted(model_store.path(name))
    x = torch.from_numpy(face_batch(size, normalise)).requires_grad_(True)
    a, b = module(x)
    similarity = torch.nn.functional.cosine_similarity(a, b, dim=0)
    similarity.backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().amax(dim=(1, 2, 3)).min() > 0  # both images get a gradient
    assert all(not p.requires_grad for p in module.parameters())


def test_converted_module_is_eval_and_bn_is_folded(model_store: ModelStore) -> None:
    module = converted(model_store.path("sface"))
    assert not module.training
    assert module.input_name == "data"
    code = module.net.code
    assert code.count("functional.batch_norm(") == 1  # bn1 follows a PRelu: not foldable
    assert code.count("self.conv_") == 27
    assert code.count("self.linear_") == 1  # the final BN1d went into the Gemm


def test_check_arcface_accepts_w600k(model_store: ModelStore) -> None:
    info = check_arcface_onnx(model_store.path("w600k_mbf"))
    assert info["embedding_size"] == 512
    assert info["opset"] == 11
    assert 0 <= info["max_abs_diff"] < TOL


# --------------------------------------------------------------------------- built graphs


def test_iresnet_like_graph_parity() -> None:
    model = iresnet_like()
    module = convert_onnx(model)
    x = np.random.default_rng(3).uniform(0, 255, (3, 3, 8, 8)).astype(np.float32)
    ours, reference = run_torch(module, x), run_ort(model, x)
    assert ours.shape == reference.shape == (3, 16)
    assert np.max(np.abs(ours - reference)) < TOL
    code = module.net.code
    assert code.count("functional.batch_norm(") == 1  # bn1, bn2 into their Convs, bn4 into the Gemm
    assert "linear" in code


def test_op_zoo_parity() -> None:
    model = op_zoo()
    module = convert_onnx(model)
    x = np.random.default_rng(4).standard_normal((2, 3, 11, 11)).astype(np.float32)
    ours, reference = run_torch(module, x), run_ort(model, x)
    assert ours.shape == reference.shape
    assert np.max(np.abs(ours - reference)) < TOL
    xt = torch.from_numpy(x).requires_grad_(True)
    module(xt).sum().backward()
    assert xt.grad is not None and torch.isfinite(xt.grad).all() and xt.grad.abs().sum() > 0


@pytest.mark.parametrize("op", ["Einsum", "NonMaxSuppression"])
def test_unsupported_op_is_named(op: str) -> None:
    w = np.ones((4, 3, 1, 1), np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv0"),
        helper.make_node(op, ["c"], ["y"], name="the_bad_node"),
    ]
    graph = helper.make_graph(
        nodes,
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedOpError, match=op) as info:
        convert_onnx(model)
    assert info.value.op == op
    assert "the_bad_node" in str(info.value)


def test_check_arcface_rejects_wrong_input_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    model = make_model(nodes, {"w": rand(rng, 8, 3, 1, 1)}, [1, 3, 64, 64])
    path = tmp_path / "small.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InvalidModelError, match=r"\[1, 3, 64, 64\].*112"):
        check_arcface_onnx(path)


def test_check_arcface_propagates_unsupported_op(tmp_path: Path) -> None:
    nodes = [helper.make_node("Softsign", ["x"], ["s"]), helper.make_node("Flatten", ["s"], ["y"])]
    path = tmp_path / "softsign.onnx"
    onnx.save(make_model(nodes, {}, ["N", 3, 112, 112]), str(path))
    with pytest.raises(UnsupportedOpError, match="Softsign"):
        check_arcface_onnx(path)


def test_check_arcface_rejects_non_embedding_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]  # 4-D output
    path = tmp_path / "map.onnx"
    model = make_model(nodes, {"w": rand(rng, 2, 3, 1, 1)}, ["N", 3, 112, 112], out_rank=4)
    onnx.save(model, str(path))
    with pytest.raises(InvalidModelError, match="2-D embedding"):
        check_arcface_onnx(path)


def test_unreadable_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(InvalidModelError):
        convert_onnx(path)

"""FaceNet GraphDef -> torch.fx: wire reader, conversion, OpenCV parity, cache, gradients."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.convert.facenet import load_facenet, prewhiten
from models.convert.graphdef_front import convert_graphdef
from models.convert.graphdef_reader import parse_graphdef
from models.errors import ModelUnavailableError, UnsupportedOpError
from models.registry import ModelStore

from .helpers import DEV as FACES

TOL = 1e-4


def _face(name: str) -> np.ndarray:
    """A centre square crop of a photo resized to 160x160: (3,160,160) float32 RGB 0..255."""
    image_mod = pytest.importorskip("PIL.Image")
    path = FACES / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    with image_mod.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((160, 160), image_mod.BILINEAR)
        return np.asarray(im, dtype=np.float32).transpose(2, 0, 1).copy()


@pytest.fixture(scope="module")
def facenet_path(model_store: ModelStore) -> Path:
    try:
        return model_store.path("facenet")
    except ModelUnavailableError as exc:
        pytest.skip(f"facenet model unavailable: {exc}")


@pytest.fixture(scope="module")
def facenet(facenet_path: Path, model_store: ModelStore) -> torch.nn.Module:
    return load_facenet(facenet_path, cache_dir=model_store.models_dir)


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """Two prewhitened real face crops, (2,3,160,160)."""
    return prewhiten(torch.from_numpy(np.stack([_face("img1.jpg"), _face("img26.jpg")])))


def _opencv(path: Path, blob: np.ndarray, output: str | None = None) -> np.ndarray:
    """OpenCV dnn's forward (note: it crashes on scalar Consts stored as tensor_content)."""
    cv2 = pytest.importorskip("cv2")
    net = cv2.dnn.readNetFromTensorflow(str(path))
    net.setInput(np.ascontiguousarray(blob, dtype=np.float32))
    return np.asarray(net.forward(output) if output else net.forward())


# ---------------------------------------------------------------------------- real model


def test_parity_with_opencv_on_real_faces(
    facenet: torch.nn.Module, facenet_path: Path, faces: torch.Tensor
) -> None:
    with torch.no_grad():
        ours = facenet(faces).numpy()
    assert ours.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    for i in range(len(faces)):  # OpenCV's reader keeps the graph's batch of 1
        ref = _opencv(facenet_path, faces[i : i + 1].numpy())
        assert np.abs(ref - ours[i : i + 1]).max() < TOL


def test_batch_of_two_matches_single_images(facenet: torch.nn.Module, faces: torch.Tensor) -> None:
    with torch.no_grad():
        batch = facenet(faces)
        singles = torch.cat([facenet(faces[i : i + 1]) for i in range(len(faces))])
    assert batch.shape == (2, 512)
    assert (batch - singles).abs().max().item() < 1e-5
    assert (batch[0] - batch[1]).abs().max().item() > 1e-2  # different people differ


def test_gradients_to_input_are_finite_and_nonzero(facenet: torch.nn.Module) -> None:
    raw = torch.from_numpy(np.stack([_face("img1.jpg"), _face("img2.jpg")])).requires_grad_(True)
    emb = facenet(prewhiten(raw))
    loss = (emb[0] * emb[1]).sum()
    loss.backward()
    assert raw.grad is not None
    assert torch.isfinite(raw.grad).all()
    assert raw.grad.abs().sum().item() > 0
    assert all(not p.requires_grad for p in facenet.parameters())  # input gradients only


def test_cached_reload_is_identical(
    facenet_path: Path, faces: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_facenet(facenet_path, cache_dir=tmp_path)
    cached = list(tmp_path.glob("*.torch.pt"))
    assert len(cached) == 1

    def no_convert(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cached conversion should have been used")

    monkeypatch.setattr("models.convert.graphdef_front.convert_graphdef", no_convert)
    second = load_facenet(facenet_path, cache_dir=tmp_path)
    with torch.no_grad():
        assert torch.equal(first(faces), second(faces))


def test_no_cache_dir_neither_reads_nor_writes_a_cache(
    facenet_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_cache(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("cache_dir=None must not touch a cache")

    monkeypatch.setattr("models.convert.facenet._load_cached", no_cache)
    monkeypatch.setattr("models.convert.facenet._save_atomic", no_cache)
    module = load_facenet(facenet_path)
    with torch.no_grad():
        assert module(torch.zeros(1, 3, 160, 160)).shape == (1, 512)


def test_corrupt_cache_is_rebuilt(facenet_path: Path, tmp_path: Path) -> None:
    load_facenet(facenet_path, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("*.torch.pt")
    cache.write_bytes(b"not a torch file")
    module = load_facenet(facenet_path, cache_dir=tmp_path)
    assert cache.stat().st_size > 1_000_000
    with torch.no_grad():
        assert module(torch.zeros(1, 3, 160, 160)).shape == (1, 512)


def test_wire_reader_agrees_with_tensorboard_protos(facenet_path: Path) -> None:
    graph_pb2 = pytest.importorskip("tensorboard.compat.proto.graph_pb2")
    data = facenet_path.read_bytes()
    ref = graph_pb2.GraphDef()
    ref.ParseFromString(data)
    ours = parse_graphdef(data)
    assert [(n.name, n.op, list(n.input)) for n in ref.node] == [
        (n.name, n.op, n.input) for n in ours.node
    ]
    for rn, on in zip(ref.node, ours.node, strict=True):
        assert sorted(rn.attr) == sorted(on.attr)
        for key, rv in rn.attr.items():
            _check_attr(rv, on.attr[key].kind, on.attr[key].value)


def _check_attr(rv: Any, kind: str, value: Any) -> None:
    which = rv.WhichOneof("value")
    assert kind == which
    if kind == "list":
        assert list(rv.list.i) == value.get("i", [])
        assert list(rv.list.s) == value.get("s", [])
    elif kind == "tensor":
        t = rv.tensor
        assert (t.dtype, [d.size for d in t.tensor_shape.dim]) == (value.dtype, value.shape)
        assert t.tensor_content == bytes(value.content)
        assert list(t.float_val) == pytest.approx(value.float_val)
        assert list(t.int_val) == value.int_val
    elif kind == "shape":
        assert [d.size for d in rv.shape.dim] == value
    elif kind == "f":
        assert rv.f == pytest.approx(value)
    else:
        assert getattr(rv, kind) == value


# ------------------------------------------------------------------ synthetic graphs


def _graph_pb2() -> Any:
    return pytest.importorskip("tensorboard.compat.proto.graph_pb2")


def _node(graph: Any, name: str, op: str, inputs: list[str], **attrs: Any) -> Any:
    node = graph.node.add(name=name, op=op, input=inputs)
    for key, value in attrs.items():
        attr = node.attr[key]
        if isinstance(value, bytes):
            attr.s = value
        elif isinstance(value, bool):
            attr.b = value
        elif isinstance(value, float):
            attr.f = value
        elif isinstance(value, list):
            attr.list.i.extend(value)
        elif isinstance(value, np.ndarray):
            attr.tensor.dtype = 3 if value.dtype == np.int32 else 1
            for size in value.shape:
                attr.tensor.tensor_shape.dim.add(size=size)
            if value.ndim:
                attr.tensor.tensor_content = value.tobytes()
            elif value.dtype == np.int32:  # scalars as typed values, as TF writes them
                attr.tensor.int_val.append(int(value))
            else:
                attr.tensor.float_val.append(float(value))
        elif isinstance(value, int):
            if key in ("T", "dtype"):
                attr.type = value
            else:
                attr.i = value
    return node


def _const(graph: Any, name: str, value: np.ndarray) -> None:
    _node(graph, name, "Const", [], value=value, dtype=3 if value.dtype == np.int32 else 1)


def _conv(graph: Any, name: str, src: str, w: np.ndarray, stride: int, padding: bytes) -> None:
    _const(graph, f"{name}/w", w)
    _node(graph, name, "Conv2D", [src, f"{name}/w"], T=1, strides=[1, stride, stride, 1],
          padding=padding, data_format=b"NHWC")  # fmt: skip


def _write(graph: Any, tmp_path: Path) -> Path:
    path = tmp_path / "graph.pb"
    path.write_bytes(graph.SerializeToString())
    return path


def test_unsupported_op_raises(tmp_path: Path) -> None:
    graph_pb2 = _graph_pb2()
    graph = graph_pb2.GraphDef()
    _node(graph, "input", "Placeholder", [], dtype=1)
    _node(graph, "weird", "Erf", ["input"], T=1)
    _node(graph, "out", "Relu", ["weird"], T=1)
    path = _write(graph, tmp_path)
    with pytest.raises(UnsupportedOpError) as info:
        load_facenet(path, output="out")
    assert info.value.op == "Erf"
    assert info.value.code == "unsupported_op"


def test_asymmetric_same_padding_matches_opencv(tmp_path: Path) -> None:
    """Stride-2 SAME conv/pools on even sizes pad one pixel more at the bottom/right.

    Sizes: 20x22 -> c1 (3x3/2) 10x11 -> c2 (4x2/2) 5x6 -> max 3x3/2 3x3 -> avg 2x2/2 2x2.
    """
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (0.3 * rng.normal(size=shape)).astype(np.float32)

    graph_pb2 = _graph_pb2()
    graph = graph_pb2.GraphDef()
    _node(graph, "input", "Placeholder", [], dtype=1)
    _conv(graph, "c1", "input", w(3, 3, 3, 8), 2, b"SAME")
    _const(graph, "c1/b", w(8))
    _node(graph, "c1/bias", "BiasAdd", ["c1", "c1/b"], T=1, data_format=b"NHWC")
    _node(graph, "c1/relu", "Relu", ["c1/bias"], T=1)
    _conv(graph, "c2", "c1/relu", w(4, 2, 8, 8), 2, b"SAME")
    _node(graph, "pool", "MaxPool", ["c2"], T=1, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1],
          padding=b"SAME", data_format=b"NHWC")  # fmt: skip
    _conv(graph, "c3", "pool", w(1, 1, 8, 4), 1, b"VALID")
    _const(graph, "axis", np.array(3, dtype=np.int32))
    _node(graph, "cat", "ConcatV2", ["pool", "c3", "axis"], T=1, N=2)
    _node(graph, "out", "AvgPool", ["cat"], T=1, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1],
          padding=b"SAME", data_format=b"NHWC")  # fmt: skip
    path = _write(graph, tmp_path)

    x = rng.normal(size=(1, 3, 20, 22)).astype(np.float32)
    module = load_facenet(path, output="out")
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()
    ref = _opencv(path, x)
    assert ours.shape == ref.shape == (1, 12, 2, 2)
    assert np.abs(ours - ref).max() < 1e-4


def test_same_avgpool_excludes_padding(tmp_path: Path) -> None:
    graph_pb2 = _graph_pb2()
    graph = graph_pb2.GraphDef()
    _node(graph, "input", "Placeholder", [], dtype=1)
    _node(graph, "out", "AvgPool", ["input"], T=1, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1],
          padding=b"SAME", data_format=b"NHWC")  # fmt: skip
    module = load_facenet(_write(graph, tmp_path), output="out")
    x = torch.ones(1, 1, 3, 3)
    assert torch.equal(module(x), torch.ones(1, 1, 2, 2))  # border windows average 1, not <1


def test_conversion_folds_bias_and_scale(facenet_path: Path) -> None:
    module = convert_graphdef(facenet_path.read_bytes())
    convs = [n for n in module.graph.nodes if n.op == "call_module" and n.target.startswith("conv")]
    assert len(convs) == 132
    layers = [module.get_submodule(str(n.target)) for n in convs]
    assert all(isinstance(c, torch.nn.Conv2d) and c.bias is not None for c in layers)
    calls = [n for n in module.graph.nodes if n.op in ("call_function", "call_module")]
    muls = [n for n in calls if n.target is operator.mul]
    assert muls == calls[-1:]  # residual scales folded; only the final L2 norm multiplies


# ----------------------------------------------------------------------------- prewhiten


def test_prewhiten_matches_reference() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(2, 3, 16, 16)).astype(np.float32)
    for i in range(2):
        ref = (x[i] - x[i].mean()) / max(x[i].std(), 1.0 / np.sqrt(x[i].size))
        np.testing.assert_allclose(prewhiten(torch.from_numpy(x))[i].numpy(), ref, atol=1e-5)


def test_prewhiten_flat_image_has_finite_gradient() -> None:
    x = torch.full((1, 3, 8, 8), 7.0, requires_grad=True)
    y = prewhiten(x)
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()

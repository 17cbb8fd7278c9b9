"""The ONNX classifier wrapper: spec from metadata, logits, and refusals with codes."""

from __future__ import annotations

import pytest
import torch

from models.classifier import load_classifier
from models.errors import ModelError
from tests.backdoor_fixtures import (  # noqa: F401 (fixtures)
    SIZE,
    clean_onnx,
    tiny_graph,
    with_softmax,
    zoo_dir,
)


def test_spec_is_read_from_the_model_and_softmax_is_cut(clean_onnx: bytes) -> None:  # noqa: F811
    model = load_classifier(clean_onnx)
    assert model.spec.shape == (1, SIZE, SIZE) and model.classes == 10
    assert model.spec.mean == (0.5,) and model.spec.std == (0.5,)
    assert model.class_names == [str(i) for i in range(10)]
    cut = load_classifier(with_softmax(clean_onnx))
    x = torch.rand(4, 1, SIZE, SIZE)
    assert torch.allclose(cut(x), model(x))  # logits, not probabilities
    assert not torch.allclose(model(x).softmax(1).sum(1), model(x).sum(1))
    wider = load_classifier(clean_onnx, std=(1.0,))
    assert not torch.allclose(wider(x), model(x))  # an override changes the normalisation


@pytest.mark.parametrize(
    ("data", "kwargs", "code"),
    [
        (b"not an onnx file at all", {}, "invalid_model"),
        (tiny_graph(), {"max_bytes": 10}, "model_too_large"),
        (tiny_graph(external=True), {}, "external_data"),
        (tiny_graph(op="Erf"), {}, "unsupported_op"),
        (tiny_graph(out_rank=4), {}, "not_a_classifier"),
    ],
)
def test_bad_models_are_refused_with_a_code(data: bytes, kwargs: dict, code: str) -> None:
    with pytest.raises(ModelError) as info:
        load_classifier(data, **kwargs)
    assert info.value.code == code, info.value


def test_a_graph_without_static_input_needs_a_shape() -> None:
    good = load_classifier(tiny_graph())
    assert good.classes == 128 and good.spec.shape == (1, 8, 8)
    with pytest.raises(ModelError) as info:
        load_classifier(tiny_graph(), shape=(3, 8, 8))
    assert info.value.code == "invalid_input_spec"

"""dlib's face recognizer, run by dlib itself: an evaluation-only judge.

dlib's ResNet (``dlib_resnet``, 128-d) was trained on its own data with its own alignment:
a 150 px chip (padding 0.25) placed by its 5-point shape predictor (``dlib_5pt``). Fed the
project's ArcFace-aligned crops instead, it separates people far worse (on ``dev/``: 18-30%
of same-person pairs accepted at a 0.1% false-accept rate, against 97% with its own chip),
so this module keeps dlib's whole pipeline: the shape predictor runs on the photo inside the
detected face box. It is not differentiable and is never attacked; it judges protected
photos as a recognizer of another architecture and training set would.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from models.registry import ModelStore
from models.specs import ModelSpec

if TYPE_CHECKING:
    from models.detection import Face

CHIP_SIZE, CHIP_PADDING = 150, 0.25


class DlibRecognizer:
    """Unit 128-d embeddings of faces in a photo (RGB uint8), one per detected box."""

    def __init__(self, spec: ModelSpec, recognizer_path: str, predictor_path: str) -> None:
        import dlib  # a compiled runtime: imported only where a dlib model is used

        self.spec = spec
        self._dlib: Any = dlib
        self._net = dlib.face_recognition_model_v1(recognizer_path)
        self._shape = dlib.shape_predictor(predictor_path)

    @property
    def name(self) -> str:
        return self.spec.name

    def embed(self, rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
        """``[n, 128]`` unit embeddings of ``faces`` of the photo ``rgb`` ``[H, W, 3]``."""
        if not faces:
            return np.zeros((0, self.spec.embedding_size), dtype=np.float32)
        image = np.ascontiguousarray(rgb, dtype=np.uint8)
        shapes = self._dlib.full_object_detections()
        for face in faces:
            x1, y1, x2, y2 = (round(float(v)) for v in face.box)
            shapes.append(self._shape(image, self._dlib.rectangle(x1, y1, x2, y2)))
        chips = self._dlib.get_face_chips(image, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
        out = np.stack([np.asarray(self._net.compute_face_descriptor(c)) for c in chips])
        out = out.astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)


@lru_cache(maxsize=4)
def load_dlib_recognizer(name: str, store: ModelStore) -> DlibRecognizer:
    """Load (once per process and store) the dlib recognizer ``name`` and its predictor."""
    spec = store.spec(name)
    if spec.role != "recognizer" or not spec.evaluation_only:
        raise ValueError(f"model {name!r} is not a dlib recognizer")
    return DlibRecognizer(spec, str(store.path(name)), str(store.path("dlib_5pt")))

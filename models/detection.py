"""Face detection with YuNet (OpenCV Zoo) or SCRFD-500M (InsightFace) on onnxruntime CPU.

Both return :class:`Face` objects in photo pixel coordinates with five landmarks ordered
left eye, right eye, nose, left mouth corner, right mouth corner ("left" = image-left, the
subject's right), the order of the ArcFace alignment template.

A photo is letterboxed so its long side fits the model input (640). Measured with faces
pasted into a real 12 MP photo (4352 px wide, scale 0.147), one pass finds faces from about
14 px at model scale for YuNet and 19 px for SCRFD, i.e. ~96 and ~128 photo pixels there.
``detect(min_face_size=...)`` (default ``settings.min_face_size``, 40) adds a second pass
at a higher resolution when the first could miss faces that small: 640 tiles for YuNet,
whose input is fixed; the whole resized photo for SCRFD, whose input is dynamic. On the
12 MP photo every pasted face of 32 px and more was then found by both (24 px: some).
Results of both passes are merged with NMS.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
from PIL import Image

if TYPE_CHECKING:
    from models.registry import ModelStore

# Faces at least this many pixels (box side at model scale) are found by one pass.
RELIABLE_FACE_PX = 16.0
# A second pass scales the photo so that ``min_face_size`` becomes this many pixels.
PASS2_FACE_PX = 20.0


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face: box (x1, y1, x2, y2), score in [0, 1], landmarks (5, 2) float32."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Longer box side in pixels (what ``settings.min_face_size`` is compared with)."""
        return max(self.width, self.height)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.4) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first.

    A box is also dropped when most (>= 60 %) of its area lies inside a better box, which
    removes half-faces cut by tile borders.
    """
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        inside = inter / np.maximum(areas[rest], 1e-9)
        order = rest[(iou <= iou_threshold) & (inside < 0.6)]
    return np.asarray(keep, dtype=np.int64)


def _session(path: Path, threads: int | None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return rgb
    im = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im)


def _factors(resized: np.ndarray, original: np.ndarray) -> np.ndarray:
    """(sx, sy): resized / original size per axis."""
    return np.array(
        [resized.shape[1] / original.shape[1], resized.shape[0] / original.shape[0]],
        dtype=np.float32,
    )


class FaceDetector(ABC):
    """A detector; subclasses implement :meth:`_infer` on one padded model-size image."""

    name: str = ""
    input_size: int = 640
    fixed_input: bool = True  # the graph only takes input_size x input_size
    reliable_face_px: float = RELIABLE_FACE_PX
    pass2_face_px: float = PASS2_FACE_PX

    def __init__(self, model_file: Path | str, threads: int | None = None) -> None:
        self.session = _session(Path(model_file), threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @abstractmethod
    def _infer(
        self, img: np.ndarray, score_threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4), scores (N,), landmarks (N, 5, 2) in ``img`` pixels (RGB uint8 in)."""

    def _outputs(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(None, {self.input_name: blob})
        return dict(zip(self.output_names, values, strict=True))

    def _pad(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        if self.fixed_input:
            ph, pw = self.input_size, self.input_size
        else:
            ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        if (ph, pw) == (h, w):
            return img
        out = np.zeros((ph, pw, 3), dtype=np.uint8)
        out[:h, :w] = img
        return out

    def _run_at(
        self, img: np.ndarray, score_threshold: float, offset: tuple[int, int] = (0, 0)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes, scores, kps = self._infer(self._pad(img), score_threshold)
        ox, oy = offset
        boxes = boxes + np.array([ox, oy, ox, oy], dtype=np.float32)
        kps = kps + np.array([ox, oy], dtype=np.float32)
        return boxes, scores, kps

    def _second_pass(
        self, rgb: np.ndarray, scale: float, score_threshold: float, overlap: int
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        img = _resize(rgb, scale)
        h, w = img.shape[:2]
        if not self.fixed_input:
            return img, [self._run_at(img, score_threshold)]
        size = self.input_size
        step = size - overlap
        nx = max(1, math.ceil((w - overlap) / step))
        ny = max(1, math.ceil((h - overlap) / step))
        out = []
        for ty in range(ny):
            for tx in range(nx):
                x0 = min(tx * step, max(w - size, 0))
                y0 = min(ty * step, max(h - size, 0))
                tile = img[y0 : y0 + size, x0 : x0 + size]
                boxes, scores, kps = self._run_at(tile, score_threshold, (x0, y0))
                # drop faces cut by an inner tile border (a neighbour tile holds them whole)
                th, tw = tile.shape[:2]
                margin = 2.0
                cut = np.zeros(len(boxes), dtype=bool)
                if x0 > 0:
                    cut |= boxes[:, 0] < x0 + margin
                if y0 > 0:
                    cut |= boxes[:, 1] < y0 + margin
                if x0 + tw < w:
                    cut |= boxes[:, 2] > x0 + tw - margin
                if y0 + th < h:
                    cut |= boxes[:, 3] > y0 + th - margin
                out.append((boxes[~cut], scores[~cut], kps[~cut]))
        return img, out

    def detect(
        self,
        rgb: np.ndarray,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        min_face_size: float = 40.0,
    ) -> list[Face]:
        """Every face in an (H, W, 3) uint8 RGB photo, best score first.

        ``min_face_size`` (photo pixels; 0: one pass only)
        is the smallest face that must be findable: a second, higher-resolution pass runs
        when the first could miss faces that small. Faces are not filtered by size here.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        scale = self.input_size / max(h, w)
        img = _resize(rgb, scale)
        # per-axis factors of the rounded resized size map boxes back exactly
        passes = [(*self._run_at(img, score_threshold), _factors(img, rgb))]
        if min_face_size > 0 and min_face_size * scale < self.reliable_face_px and scale < 1:
            scale2 = min(1.0, self.pass2_face_px / min_face_size)
            # the first pass finds faces of reliable_face_px/scale photo px and more; tiles
            # overlap by that much (at pass-two scale) so no smaller face is cut everywhere
            overlap = math.ceil(1.25 * self.reliable_face_px * scale2 / scale)
            overlap = min(self.input_size // 2, overlap)
            # pass two only adds faces too small for pass one: bigger boxes there are
            # duplicates or false positives seen out of context in a tile
            max_px = 2.0 * self.reliable_face_px / scale * scale2
            img2, found = self._second_pass(rgb, scale2, score_threshold, overlap)
            for b, s, k in found:
                small = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) < max_px
                passes.append((b[small], s[small], k[small], _factors(img2, rgb)))
        boxes = np.concatenate([p[0] / np.tile(p[3], 2) for p in passes]).astype(np.float32)
        scores = np.concatenate([p[1] for p in passes]).astype(np.float32)
        kps = np.concatenate([p[2] / p[3] for p in passes]).astype(np.float32)
        if len(scores) == 0:
            return []
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        keep = nms(boxes, scores, nms_threshold)
        return [
            Face(
                box=(
                    float(boxes[i, 0]),
                    float(boxes[i, 1]),
                    float(boxes[i, 2]),
                    float(boxes[i, 3]),
                ),
                score=float(scores[i]),
                landmarks=kps[i].copy(),
            )
            for i in keep
        ]


class YuNetDetector(FaceDetector):
    """YuNet 2023mar: fixed 1x3x640x640 BGR 0..255 input, anchor-free outputs per stride."""

    name = "yunet"
    fixed_input = True
    strides = (8, 16, 32)

    def _infer(
        self, img: np.ndarray, score_threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        blob = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        outs = self._outputs(blob)
        all_boxes, all_scores, all_kps = [], [], []
        size = img.shape[0]
        for s in self.strides:
            n = size // s
            cls = outs[f"cls_{s}"][0, :, 0].clip(0, 1)
            obj = outs[f"obj_{s}"][0, :, 0].clip(0, 1)
            score = np.sqrt(cls * obj)
            idx = np.nonzero(score >= score_threshold)[0]
            if idx.size == 0:
                continue
            c = (idx % n).astype(np.float32)
            r = (idx // n).astype(np.float32)
            bb = outs[f"bbox_{s}"][0, idx]
            cx, cy = (c + bb[:, 0]) * s, (r + bb[:, 1]) * s
            bw, bh = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
            all_boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
            kp = outs[f"kps_{s}"][0, idx].reshape(-1, 5, 2)
            kp = (kp + np.stack([c, r], 1)[:, None, :]) * s
            all_kps.append(kp)
            all_scores.append(score[idx])
        return _stack(all_boxes, all_scores, all_kps)


class ScrfdDetector(FaceDetector):
    """SCRFD-500M (bnkps): dynamic input, RGB (x - 127.5) / 128, strides 8/16/32, 2 anchors."""

    name = "scrfd_500m"
    fixed_input = False
    reliable_face_px = 20.0  # less sensitive to small faces than YuNet
    strides = (8, 16, 32)
    num_anchors = 2

    def _infer(
        self, img: np.ndarray, score_threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        blob = (img.transpose(2, 0, 1)[None].astype(np.float32) - 127.5) / 128.0
        outs = self._outputs(blob)
        w = img.shape[1]
        all_boxes, all_scores, all_kps = [], [], []
        for s in self.strides:
            score = outs[f"score_{s}"].reshape(-1)
            idx = np.nonzero(score >= score_threshold)[0]
            if idx.size == 0:
                continue
            loc = idx // self.num_anchors
            cols = w // s
            cx = (loc % cols).astype(np.float32) * s
            cy = (loc // cols).astype(np.float32) * s
            d = outs[f"bbox_{s}"].reshape(-1, 4)[idx] * s
            all_boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1))
            kp = outs[f"kps_{s}"].reshape(-1, 5, 2)[idx] * s
            all_kps.append(kp + np.stack([cx, cy], 1)[:, None, :])
            all_scores.append(score[idx])
        return _stack(all_boxes, all_scores, all_kps)


def _stack(
    boxes: list[np.ndarray], scores: list[np.ndarray], kps: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not scores:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, 5, 2), np.float32),
        )
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)


DETECTORS: dict[str, type[FaceDetector]] = {
    "yunet": YuNetDetector,
    "scrfd_500m": ScrfdDetector,
    "scrfd": ScrfdDetector,
}


def load_detector(
    name: str = "yunet", store: ModelStore | None = None, threads: int | None = None
) -> FaceDetector:
    """A detector by registry name ("yunet" or "scrfd_500m"), its file from ``store``."""
    if store is None:
        raise ValueError("load_detector needs the ModelStore the process entry point built")
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from yunet, scrfd_500m") from None
    return cls(store.path(cls.name), threads=threads)

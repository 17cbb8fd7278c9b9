"""106-point face landmarks with InsightFace 2d106det (onnxruntime CPU).

The face box is cropped square around its centre at ``192 / (1.5 * max(w, h))`` scale, fed
as raw RGB 0..255 (the graph normalises itself), and the 212 outputs in [-1, 1] become
``(v + 1) * 96`` crop pixels, projected back to the photo.

Index groups, checked by plotting them on photos ("left" = image-left, the subject's right).
Each polygon group is listed in drawing order around its outline:

- ``FACE_CONTOUR`` 0-32: jaw line from the image-left temple (1) over the chin (0) to the
  image-right temple (17); open at the top (no forehead points).
- ``LEFT_BROW`` 43-51 and ``RIGHT_BROW`` 97-105: brow outlines.
- ``LEFT_EYE`` 33-42 and ``RIGHT_EYE`` 87-96: eyelid outlines (8 points each) starting at
  the image-left corner; the remaining two points of each range (34, 38 / 88, 92) sit on
  the pupil, exposed as ``LEFT_PUPIL`` / ``RIGHT_PUPIL``.
- ``NOSE`` 72-86: bridge 72, 73, 74 down to the tip 86, then the lower outline from beside
  the left eye (75) around the nostrils to beside the right eye (81).
- ``LIPS_OUTER`` (12 points) and ``LIPS_INNER`` (8 points) within 52-71; mouth corners 52
  (left) and 61 (right).
- ``LEFT_CHEEK`` / ``RIGHT_CHEEK``: no landmark lies on the cheeks; these are polygons
  between the lower eyelid, the side of the nose and the jaw line (loose: feather them).
  ``LEFT_CHEEK_ANCHOR`` / ``RIGHT_CHEEK_ANCHOR``: points whose mean is the apple of the cheek.
- ``GROUPS``: all of these by name, as the makeup filter takes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.alignment import invert_affine, transform_points, warp_crop
from models.detection import Face

INPUT_SIZE = 192

NUM_LANDMARKS = 106

# fmt: off
FACE_CONTOUR: tuple[int, ...] = (
    1, 9, 10, 11, 12, 13, 14, 15, 16, 2, 3, 4, 5, 6, 7, 8, 0,
    24, 23, 22, 21, 20, 19, 18, 32, 31, 30, 29, 28, 27, 26, 25, 17,
)
LEFT_BROW: tuple[int, ...] = (43, 48, 49, 51, 50, 46, 47, 45, 44)
RIGHT_BROW: tuple[int, ...] = (97, 98, 99, 100, 101, 105, 104, 103, 102)
LEFT_EYE: tuple[int, ...] = (35, 41, 40, 42, 39, 37, 33, 36)
RIGHT_EYE: tuple[int, ...] = (89, 95, 94, 96, 93, 91, 87, 90)
LEFT_PUPIL: tuple[int, ...] = (34, 38)
RIGHT_PUPIL: tuple[int, ...] = (88, 92)
NOSE_BRIDGE: tuple[int, ...] = (72, 73, 74, 86)
NOSE_LOWER: tuple[int, ...] = (75, 76, 77, 78, 79, 80, 85, 84, 83, 82, 81)
NOSE: tuple[int, ...] = NOSE_BRIDGE + NOSE_LOWER
NOSE_TIP = 86
LIPS_OUTER: tuple[int, ...] = (52, 64, 63, 71, 67, 68, 61, 58, 59, 53, 56, 55)
LIPS_INNER: tuple[int, ...] = (65, 66, 62, 70, 69, 57, 60, 54)
LIPS: tuple[int, ...] = LIPS_OUTER + LIPS_INNER
MOUTH_CORNERS: tuple[int, int] = (52, 61)
LEFT_CHEEK: tuple[int, ...] = (35, 36, 33, 37, 76, 77, 15, 14, 13, 12, 11)
RIGHT_CHEEK: tuple[int, ...] = (93, 91, 87, 90, 82, 83, 30, 29, 28, 27, 26)
# mean of these points: the apple of the cheek (where blush goes)
LEFT_CHEEK_ANCHOR: tuple[int, ...] = (13, 36, 77)
RIGHT_CHEEK_ANCHOR: tuple[int, ...] = (28, 91, 83)
# fmt: on

# By name, in the form workers.engine.makeup.MakeupFilter takes ("lips" is the outer contour).
GROUPS: dict[str, tuple[int, ...]] = {
    "lips": LIPS_OUTER,
    "inner_lips": LIPS_INNER,
    "left_eye": LEFT_EYE,
    "right_eye": RIGHT_EYE,
    "left_cheek_anchor": LEFT_CHEEK_ANCHOR,
    "right_cheek_anchor": RIGHT_CHEEK_ANCHOR,
    "left_brow": LEFT_BROW,
    "right_brow": RIGHT_BROW,
    "nose": NOSE,
    "face_contour": FACE_CONTOUR,
    "left_cheek": LEFT_CHEEK,
    "right_cheek": RIGHT_CHEEK,
}


def crop_matrix(face: Face, size: int = INPUT_SIZE) -> np.ndarray:
    """The (2, 3) photo -> crop matrix InsightFace uses for the landmark crop."""
    x1, y1, x2, y2 = face.box
    scale = size / (max(x2 - x1, y2 - y1) * 1.5)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array(
        [[scale, 0.0, size / 2.0 - cx * scale], [0.0, scale, size / 2.0 - cy * scale]],
        dtype=np.float64,
    )


class Landmarks106:
    """InsightFace 2d106det: 106 landmarks for a detected face, in photo coordinates.

    ``model_file`` is the verified ``2d106det`` file (``ModelStore.path("2d106det")``).
    """

    def __init__(self, model_file: Path | str, threads: int | None = None) -> None:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(model_file), opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """(106, 2) float32 landmarks in photo pixel coordinates."""
        m = crop_matrix(face)
        crop = warp_crop(rgb, m, INPUT_SIZE)
        blob = crop.transpose(2, 0, 1)[None].astype(np.float32)
        pred = self.session.run(None, {self.input_name: blob})[0][0].reshape(-1, 2)[-106:]
        pts = (pred.astype(np.float64) + 1.0) * (INPUT_SIZE // 2)
        return transform_points(pts, invert_affine(m)).astype(np.float32)

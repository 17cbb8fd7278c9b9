"""Face detectors (YuNet, SCRFD) and the 106-point landmark model on real photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facecloak.images import decode_image
from models.detection import Face, FaceDetector, load_detector, nms
from models.errors import ModelUnavailableError
from models.landmarks106 import (
    FACE_CONTOUR,
    GROUPS,
    LEFT_BROW,
    LEFT_EYE,
    LIPS,
    LIPS_INNER,
    LIPS_OUTER,
    NOSE,
    NOSE_TIP,
    RIGHT_BROW,
    RIGHT_EYE,
    Landmarks106,
)
from models.registry import ModelStore

from .helpers import FACES

# Photos whose faces both detectors find exactly (counted by looking at them).
FACE_COUNTS = {
    "dev/img11.jpg": 1,  # 600x800
    "dev/img47.jpg": 1,  # a WebP named .jpg
    "dev/img49.jpg": 1,  # 4352x2903, 12.6 MP
    "dev/img59.jpg": 2,  # a second man at the left border, turned away
    "dev/img62.jpg": 3,  # two people at the bottom corners, half cut off
    "test/alex_lacamoire__alex-lacamoire.png": 1,  # RGBA PNG
    "test/kit_harington__john1.jpeg": 1,
}
DETECTORS = ("yunet", "scrfd_500m")


def _photo(name: str) -> np.ndarray:
    path = FACES / name
    if not path.exists():
        pytest.skip(f"face photos not found at {FACES}")
    return decode_image(path.read_bytes()).rgb


@pytest.fixture(scope="module")
def detectors(model_store: ModelStore) -> dict[str, FaceDetector]:
    try:
        return {name: load_detector(name, model_store) for name in DETECTORS}
    except ModelUnavailableError as exc:
        pytest.skip(f"detector models unavailable: {exc}")


@pytest.fixture(scope="module")
def landmarks106(model_store: ModelStore) -> Landmarks106:
    try:
        return Landmarks106(model_store.path("2d106det"))
    except ModelUnavailableError as exc:
        pytest.skip(f"2d106det unavailable: {exc}")


def _inside(face: Face, shape: tuple[int, ...]) -> bool:
    """Whether the whole face is in the photo (not cut by its border)."""
    x1, y1, x2, y2 = face.box
    return x1 > 1 and y1 > 1 and x2 < shape[1] - 1 and y2 < shape[0] - 1


def _check_face(face: Face, shape: tuple[int, ...]) -> None:
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    assert 0.0 <= face.score <= 1.0
    if not _inside(face, shape):  # landmarks of cut faces may lie outside the photo
        return
    x1, y1, x2, y2 = face.box
    lm = face.landmarks
    assert (lm[:, 0] >= x1).all() and (lm[:, 0] <= x2).all()
    assert (lm[:, 1] >= y1).all() and (lm[:, 1] <= y2).all()
    assert lm[0, 0] < lm[1, 0]  # left eye is image-left
    assert lm[3, 0] < lm[4, 0]  # so is the left mouth corner
    eyes_y, mouth_y = lm[:2, 1].max(), lm[3:, 1].min()
    assert eyes_y < lm[2, 1] < mouth_y or eyes_y < mouth_y  # eyes above nose above mouth


@pytest.mark.parametrize("name", sorted(FACE_COUNTS))
@pytest.mark.parametrize("detector", DETECTORS)
def test_detectors_find_exactly_the_faces(
    detectors: dict[str, FaceDetector], detector: str, name: str
) -> None:
    rgb = _photo(name)
    faces = detectors[detector].detect(rgb)
    assert len(faces) == FACE_COUNTS[name], [(f.box, f.score) for f in faces]
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for face in faces:
        assert face.landmarks.shape == (5, 2) and 0.0 <= face.score <= 1.0
    # the main face is whole and frontal in every photo here (others: cut off, turned away)
    _check_face(faces[0], rgb.shape)
    assert _inside(faces[0], rgb.shape)


def _iou(a: Face, b: Face) -> float:
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    h = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def test_detectors_agree_on_the_eyes(detectors: dict[str, FaceDetector]) -> None:
    errors = []
    for name in sorted(FACE_COUNTS):
        rgb = _photo(name)
        yunet = detectors["yunet"].detect(rgb)
        scrfd = detectors["scrfd_500m"].detect(rgb)
        for a in yunet[:1]:  # the main, frontal face (others are cut off or turned away)
            b = max(scrfd, key=lambda f: _iou(a, f))
            assert _iou(a, b) > 0.6
            eye_dist = float(np.linalg.norm(a.landmarks[1] - a.landmarks[0]))
            err = np.linalg.norm(a.landmarks[:2] - b.landmarks[:2], axis=1).mean() / eye_dist
            errors.append(err)
    # YuNet's landmarks are the noisier (about 4 % of the eye distance, SCRFD's 2 %)
    assert np.median(errors) < 0.07, errors
    assert max(errors) < 0.15, errors


def test_exif_rotated_photo_is_detected_upright(detectors: dict[str, FaceDetector]) -> None:
    rgb = _photo("dev/img11.jpg")
    stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(buf.getvalue())
    reference = detectors["yunet"].detect(rgb)[0]
    for detector in detectors.values():
        faces = detector.detect(decoded.rgb)
        assert len(faces) == 1
        _check_face(faces[0], decoded.rgb.shape)
        assert np.abs(np.array(faces[0].box) - np.array(reference.box)).max() < 0.1 * reference.size


def test_small_faces_in_a_large_photo(detectors: dict[str, FaceDetector]) -> None:
    """A 48 px face in a 12 MP photo: the second pass (min_face_size=40) finds it."""
    rgb = _photo("dev/img11.jpg")
    face = detectors["yunet"].detect(rgb)[0]
    x1, y1, x2, y2 = face.box
    side = face.size * 1.4
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    crop = Image.fromarray(rgb).crop(
        (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    )
    small = np.asarray(crop.resize((67, 67), Image.Resampling.LANCZOS))  # face box ~48 px
    canvas = np.full((3000, 4000, 3), 110, np.uint8)
    canvas[1500:1567, 2321:2388] = small
    for detector in detectors.values():
        faces = detector.detect(canvas, min_face_size=40)
        assert len(faces) == 1, detector.name
        fx1, fy1, fx2, fy2 = faces[0].box
        assert 2300 < fx1 < fx2 < 2400 and 1480 < fy1 < fy2 < 1590
        assert 30 < faces[0].size < 70
        _check_face(faces[0], canvas.shape)


def test_no_face_and_bad_input(detectors: dict[str, FaceDetector], model_store: ModelStore) -> None:
    for detector in detectors.values():
        assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
        with pytest.raises(ValueError):
            detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        load_detector("nope", model_store)


def test_nms_keeps_the_best_and_drops_contained_boxes() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 5, 10]], dtype=np.float32
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]


def test_106_landmarks(detectors: dict[str, FaceDetector], landmarks106: Landmarks106) -> None:
    groups = (FACE_CONTOUR, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, LIPS)
    assert sorted(i for g in groups for i in g) == sorted(
        {*range(106)} - {34, 38, 88, 92}  # pupils
    )
    assert {"lips", "inner_lips", "left_eye", "right_eye"} <= GROUPS.keys()
    assert {"left_cheek_anchor", "right_cheek_anchor"} <= GROUPS.keys()
    for name in ("dev/img11.jpg", "dev/img49.jpg", "dev/img62.jpg"):
        rgb = _photo(name)
        for face in detectors["scrfd_500m"].detect(rgb):
            if not _inside(face, rgb.shape):
                continue
            pts = landmarks106.predict(rgb, face)
            assert pts.shape == (106, 2) and pts.dtype == np.float32
            x1, y1, x2, y2 = face.box
            mx, my = 0.1 * face.width, 0.1 * face.height
            assert (pts[:, 0] > x1 - mx).all() and (pts[:, 0] < x2 + mx).all(), name
            assert (pts[:, 1] > y1 - my).all() and (pts[:, 1] < y2 + my).all(), name
            nose_y = pts[NOSE_TIP, 1]
            assert pts[list(LIPS), 1].min() > nose_y, name
            assert pts[list(LIPS_OUTER), 1].mean() > nose_y
            assert pts[list(LIPS_INNER), 1].mean() > nose_y
            assert pts[list(LEFT_EYE), 1].max() < nose_y and pts[list(RIGHT_EYE), 1].max() < nose_y
            assert pts[list(LEFT_EYE), 0].mean() < pts[list(RIGHT_EYE), 0].mean()
            assert pts[list(LEFT_BROW), 1].mean() < pts[list(LEFT_EYE), 1].mean()
            for side, outline_idx in (("left", LEFT_EYE), ("right", RIGHT_EYE)):
                cheek = pts[list(GROUPS[f"{side}_cheek_anchor"])].mean(0)
                assert pts[list(outline_idx), 1].max() < cheek[1] < pts[list(LIPS), 1].max()
            # the 5-point eyes sit inside the 106-point eye outlines
            for eye, idx in ((0, LEFT_EYE), (1, RIGHT_EYE)):
                outline = pts[list(idx)]
                ex = face.landmarks[eye][0]
                assert outline[:, 0].min() - 2 < ex < outline[:, 0].max() + 2

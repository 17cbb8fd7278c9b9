"""Where each face's perturbation lives on the full-resolution photo, and how it reaches
each recognizer's aligned crop.

A face gets a region of the photo large enough for every surrogate's aligned crop (plus
a margin); the attack resamples the region to a working resolution near the crops'
scale, and per-model 2x3 matrices map working pixels to crop pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.alignment import estimate_similarity, template
from models.recognizers import Recognizer
from workers.engine import TransformContext

Region = tuple[int, int, int, int]
"""x0, y0, x1, y1 (exclusive) in photo pixels."""


@dataclass
class FaceInput:
    """One face to protect: its 5 landmarks and (for makeup) 106 landmarks in photo pixels."""

    landmarks5: np.ndarray
    landmarks106: np.ndarray | None = None


@dataclass
class FaceGeometry:
    """A face's region, its working resolution and the maps from working pixels."""

    region: Region
    work_size: tuple[int, int]
    """(h, w) at the working resolution."""
    to_crop: dict[str, np.ndarray]
    """model -> 2x3 (working pixels -> crop pixels)."""
    lm106_work: np.ndarray | None


def crop_transform(rec: Recognizer, lm5: np.ndarray) -> np.ndarray:
    """2x3 photo -> aligned-crop similarity of ``rec`` for 5 landmarks."""
    dst = template(rec.input_size, rec.spec.crop_scale)
    return estimate_similarity(lm5.astype(np.float64), dst)


def _crop_bounds(photo_to_crop: dict[str, np.ndarray], models: list[Recognizer]) -> np.ndarray:
    """Photo-pixel corners of every model's crop ``[4 * models, 2]``."""
    corners = []
    for rec in models:
        inv = np.linalg.inv(np.vstack([photo_to_crop[rec.name], [0, 0, 1]]))[:2]
        s = rec.input_size - 1
        pts = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], dtype=np.float64)
        corners.append(pts @ inv.T)
    return np.vstack(corners)


def face_geometry(
    shape: tuple[int, int], face: FaceInput, models: list[Recognizer], margin: float = 0.08
) -> FaceGeometry:
    """The region and working resolution of ``face`` in a photo of ``shape`` (h, w)."""
    h, w = shape
    photo_to_crop = {rec.name: crop_transform(rec, face.landmarks5) for rec in models}
    corners = _crop_bounds(photo_to_crop, models)
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    pad = margin * max(x1 - x0, y1 - y0)
    rx0, ry0 = max(0, math.floor(x0 - pad)), max(0, math.floor(y0 - pad))
    rx1, ry1 = min(w, math.ceil(x1 + pad) + 1), min(h, math.ceil(y1 + pad) + 1)
    ref = photo_to_crop[models[0].name]
    scale = float(np.sqrt(abs(np.linalg.det(ref[:, :2]))))  # crop pixels per photo pixel
    rh, rw = ry1 - ry0, rx1 - rx0
    wh, ww = max(8, round(rh * scale)), max(8, round(rw * scale))
    sx, sy = ww / rw, wh / rh
    # work pixel (u, v) -> photo pixel (matches F.interpolate with align_corners=False)
    work_to_photo = np.array(
        [[1 / sx, 0, rx0 + 0.5 / sx - 0.5], [0, 1 / sy, ry0 + 0.5 / sy - 0.5], [0, 0, 1]]
    )
    to_crop = {k: (np.vstack([m, [0, 0, 1]]) @ work_to_photo)[:2] for k, m in photo_to_crop.items()}
    lm106 = None
    if face.landmarks106 is not None:
        pts = np.hstack([face.landmarks106, np.ones((len(face.landmarks106), 1))])
        lm106 = (pts @ np.linalg.inv(work_to_photo).T)[:, :2]
    return FaceGeometry((rx0, ry0, rx1, ry1), (wh, ww), to_crop, lm106)


def face_ellipse(region: Region, lm5: np.ndarray, width: float) -> np.ndarray:
    """Soft elliptical mask over the face (from 5 landmarks), in the region's pixels."""
    x0, y0, x1, y1 = region
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    eyes = (lm5[0] + lm5[1]) / 2
    mouth = (lm5[3] + lm5[4]) / 2
    # face scale: the eye distance, or for turned faces (eyes close together) the
    # eye-to-mouth distance, which is ~1.15 eye distances on a frontal face
    em = float(np.linalg.norm(eyes - mouth))
    d = max(float(np.linalg.norm(lm5[1] - lm5[0])), em / 1.15)
    up = (eyes - mouth) / max(em, 1e-6)  # towards the forehead
    centre = (eyes + mouth) / 2 + 0.15 * d * up
    across = np.array([-up[1], up[0]])
    u = (xs - centre[0]) * across[0] + (ys - centre[1]) * across[1]
    v = (xs - centre[0]) * up[0] + (ys - centre[1]) * up[1]
    r = np.sqrt((u / (width * d)) ** 2 + (v / (1.3 * width * d)) ** 2)
    return np.clip((1.0 - r) / 0.15 + 1.0, 0.0, 1.0)


def ownership_masks(geoms: list[FaceGeometry], faces: list[FaceInput]) -> list[np.ndarray]:
    """Each region pixel belongs to the nearest face centre, so perturbations never overlap."""
    centres = [f.landmarks5.mean(0) for f in faces]
    masks = []
    for i, g in enumerate(geoms):
        x0, y0, x1, y1 = g.region
        ys, xs = np.mgrid[y0:y1, x0:x1]
        own = np.ones(xs.shape, dtype=bool)
        d_i = (xs - centres[i][0]) ** 2 + (ys - centres[i][1]) ** 2
        for j, c in enumerate(centres):
            if j != i:
                own &= d_i <= (xs - c[0]) ** 2 + (ys - c[1]) ** 2
        masks.append(own)
    return masks


def pack_regions(
    rgb: np.ndarray,
    geoms: list[FaceGeometry],
    owners: list[np.ndarray],
    faces: list[FaceInput],
    face_mask: float,
) -> tuple[Tensor, Tensor]:
    """The face regions as a padded batch ``[n, 3, H, W]`` in ``[0, 1]`` and the mask
    ``[n, 1, H, W]`` where each face may be perturbed (owned pixels, soft face ellipse).
    """
    hmax = max(g.region[3] - g.region[1] for g in geoms)
    wmax = max(g.region[2] - g.region[0] for g in geoms)
    x = torch.zeros(len(geoms), 3, hmax, wmax)
    mask = torch.zeros(len(geoms), 1, hmax, wmax)
    photo = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    for i, g in enumerate(geoms):
        x0, y0, x1, y1 = g.region
        x[i, :, : y1 - y0, : x1 - x0] = photo[:, y0:y1, x0:x1]
        m = owners[i].astype(np.float32)
        if face_mask > 0:
            m = m * face_ellipse(g.region, faces[i].landmarks5, face_mask).astype(np.float32)
        mask[i, 0, : y1 - y0, : x1 - x0] = torch.from_numpy(m)
    return x, mask


def unpack_regions(
    rgb: np.ndarray, adv: Tensor, geoms: list[FaceGeometry], owners: list[np.ndarray]
) -> np.ndarray:
    """A copy of the photo with each face's owned pixels taken from ``adv`` (rounded to 8 bits)."""
    adv8 = torch.round(adv.clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 2, 3, 1).cpu()
    pixels = adv8.numpy()
    out = rgb.copy()
    for i, g in enumerate(geoms):
        x0, y0, x1, y1 = g.region
        region = out[y0:y1, x0:x1]
        region[owners[i]] = pixels[i, : y1 - y0, : x1 - x0][owners[i]]
    return out


class RegionResample:
    """Engine transform: resample each face region (rows picked by ``ctx.index``) to its
    working resolution, antialiased when shrinking, zero-padded to a common size.
    """

    def __init__(self, geoms: list[FaceGeometry]) -> None:
        self.geoms = geoms

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """``[b, C, h_work, w_work]``."""
        sel = [self.geoms[int(i)] for i in ctx.index]
        hw = max(g.work_size[0] for g in sel)
        ww = max(g.work_size[1] for g in sel)
        outs = []
        for k, g in enumerate(sel):
            x0, y0, x1, y1 = g.region
            src = x[k : k + 1, :, : y1 - y0, : x1 - x0]
            down = g.work_size[0] < (y1 - y0)
            r = F.interpolate(
                src, size=g.work_size, mode="bilinear", align_corners=False, antialias=down
            )
            outs.append(F.pad(r, (0, ww - g.work_size[1], 0, hw - g.work_size[0])))
        return torch.cat(outs, 0)


def geometry_context(
    geoms: list[FaceGeometry], models: list[Recognizer], device: torch.device
) -> TransformContext:
    """The per-face context: ``to_crop:<model>`` matrices and, when every face has them,
    ``landmarks106`` at the working resolution.
    """
    data = {
        f"to_crop:{rec.name}": torch.tensor(
            np.stack([g.to_crop[rec.name] for g in geoms]), dtype=torch.float32, device=device
        )
        for rec in models
    }
    landmarks = [g.lm106_work for g in geoms if g.lm106_work is not None]
    if len(landmarks) == len(geoms):
        data["landmarks106"] = torch.tensor(np.stack(landmarks), dtype=torch.float32, device=device)
    return TransformContext.of_batch(len(geoms), device, **data)

"""Cloak the faces of one photo: the attack objective over full-resolution face regions.

The perturbation lives on the photo itself. Each face gets a region of the
full-resolution photo large enough for every surrogate's aligned crop; every
iteration resamples (region + perturbation) to a working resolution (antialiased),
applies the expectation-over-transformation samples (JPEG, rescale, makeup), and
warps it differentiably into each surrogate's aligned crop with a small random
similarity jitter that stands in for re-detection error and input diversity.
What is saved is exactly what was optimised (rounded to 8 bits in the loop).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.alignment import estimate_similarity, template
from models.recognizers import Recognizer
from workers.engine import (
    DifferentiableJpeg,
    GradientSmoothing,
    InputDiversity,
    IterativeAttack,
    MakeupFilter,
    MomentumUpdate,
    Objective,
    RandomRescale,
    SignUpdate,
)
from workers.engine.warp import similarity_jitter, warp_affine


@dataclass
class CloakConfig:
    """Attack settings for one photo (the protect presets fill these in)."""

    eps: float = 8 / 255
    steps: int = 60
    alpha_ratio: float = 0.15
    update: str = "momentum"  # "momentum" (MI) or "sign" (I-FGSM)
    momentum: float = 1.0
    diversity: bool = True
    translation_invariance: bool = False
    eot_samples: int = 2
    eot_jpeg: bool = True
    eot_rescale: bool = True
    eot_makeup: bool = True
    jpeg_quality: tuple[int, int] = (50, 95)
    rescale: tuple[float, float] = (0.5, 1.0)
    jitter_scale: float = 0.05
    jitter_shift: float = 3.0
    jitter_degrees: float = 4.0
    margin: float = 0.5
    face_mask: float = 1.1  # >0: perturb only a soft ellipse this many eye distances wide
    decoy: bool = False
    decoy_weight: float = 0.5
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class FaceInput:
    """One face to protect: its 5 landmarks and (for makeup) 106 landmarks in photo pixels."""

    landmarks5: np.ndarray
    landmarks106: np.ndarray | None = None


@dataclass
class CloakResult:
    """The protected photo and per-face attack statistics."""

    rgb: np.ndarray
    steps: list[int]
    converged: list[bool]
    seconds: float
    model_seconds: float
    regions: list[tuple[int, int, int, int]]
    decoys: list[str] | None = None


@dataclass
class _Geometry:
    region: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in the photo
    work_size: tuple[int, int]  # (h, w) at the working resolution
    to_crop: dict[str, np.ndarray]  # model -> 2x3 (work pixels -> crop pixels)
    lm106_work: np.ndarray | None


def _crop_transform(rec: Recognizer, lm5: np.ndarray) -> np.ndarray:
    dst = template(rec.input_size, rec.spec.crop_scale)
    return estimate_similarity(lm5.astype(np.float64), dst)


def _geometry(
    shape: tuple[int, int], face: FaceInput, models: list[Recognizer], margin: float = 0.08
) -> _Geometry:
    h, w = shape
    corners: list[np.ndarray] = []
    photo_to_crop: dict[str, np.ndarray] = {}
    for rec in models:
        m = _crop_transform(rec, face.landmarks5)
        photo_to_crop[rec.name] = m
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        s = rec.input_size - 1
        pts = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], dtype=np.float64)
        corners.append(pts @ inv.T)
    allc = np.vstack(corners)
    (x0, y0), (x1, y1) = allc.min(0), allc.max(0)
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
        photo_to_work = np.linalg.inv(work_to_photo)
        pts = np.hstack([face.landmarks106, np.ones((len(face.landmarks106), 1))])
        lm106 = (pts @ photo_to_work.T)[:, :2]
    return _Geometry((rx0, ry0, rx1, ry1), (wh, ww), to_crop, lm106)


def _face_ellipse(g: _Geometry, lm5: np.ndarray, width: float) -> np.ndarray:
    """Soft elliptical mask over the face (from 5 landmarks), in the region's pixels."""
    x0, y0, x1, y1 = g.region
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


def _ownership_masks(geoms: list[_Geometry], faces: list[FaceInput]) -> list[np.ndarray]:
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


class Cloaker:
    """Runs the ensemble attack on the faces of a photo with a set of surrogate recognizers."""

    def __init__(
        self,
        surrogates: list[Recognizer],
        thresholds: dict[str, float],
        config: CloakConfig,
        device: torch.device,
        makeup: MakeupFilter | None = None,
    ) -> None:
        if not surrogates:
            raise ValueError("at least one surrogate recognizer is needed")
        self.models = surrogates
        self.thresholds = thresholds
        self.cfg = config
        self.device = device
        self.makeup = makeup
        self.jpeg = DifferentiableJpeg()
        self.rescale = RandomRescale(*config.rescale)
        self.diversity = InputDiversity() if config.diversity else None
        self._model_seconds = 0.0

    def protect(self, rgb: np.ndarray, faces: list[FaceInput], seed: int = 0) -> CloakResult:
        """Return the photo with every face in ``faces`` cloaked."""
        start = time.perf_counter()
        self._model_seconds = 0.0
        cfg, dev = self.cfg, self.device
        h, w = rgb.shape[:2]
        geoms = [_geometry((h, w), f, self.models) for f in faces]
        masks = _ownership_masks(geoms, faces)
        n = len(faces)
        hmax = max(g.region[3] - g.region[1] for g in geoms)
        wmax = max(g.region[2] - g.region[0] for g in geoms)
        x = torch.zeros(n, 3, hmax, wmax)
        mask = torch.zeros(n, 1, hmax, wmax)
        photo = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
        for i, g in enumerate(geoms):
            x0, y0, x1, y1 = g.region
            x[i, :, : y1 - y0, : x1 - x0] = photo[:, y0:y1, x0:x1]
            m = masks[i].astype(np.float32)
            if cfg.face_mask > 0:
                m = m * _face_ellipse(g, faces[i].landmarks5, cfg.face_mask).astype(np.float32)
            mask[i, 0, : y1 - y0, : x1 - x0] = torch.from_numpy(m)
        x, mask = x.to(dev), mask.to(dev)
        to_crop = {
            rec.name: torch.tensor(
                np.stack([g.to_crop[rec.name] for g in geoms]), dtype=torch.float32, device=dev
            )
            for rec in self.models
        }
        lm106 = None
        if (
            cfg.eot_makeup
            and self.makeup is not None
            and all(g.lm106_work is not None for g in geoms)
        ):
            lm106 = torch.tensor(
                np.stack([g.lm106_work for g in geoms]), dtype=torch.float32, device=dev
            )
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            work = self._to_work(x, torch.arange(n), geoms)
            clean = {
                rec.name: rec(warp_affine(work, to_crop[rec.name], rec.input_size))
                for rec in self.models
            }
        decoy_names: list[str] | None = None
        decoy: dict[str, Tensor] = {}
        if cfg.decoy:
            from workers.jobs.decoys import pick_decoys

            decoy_names, picked = pick_decoys({k: v.cpu().numpy() for k, v in clean.items()})
            decoy = {k: torch.from_numpy(v).float().to(dev) for k, v in picked.items()}
        weights = torch.tensor([cfg.weights.get(r.name, 1.0) for r in self.models], device=dev)
        weights = weights / weights.sum()
        limits = torch.tensor(
            [self.thresholds.get(r.name, 0.3) - cfg.margin for r in self.models], device=dev
        )

        def objective(x_adv: Tensor, idx: Tensor) -> Objective:
            q = x_adv + (torch.round(x_adv * 255.0) / 255.0 - x_adv).detach()
            work_b = self._to_work(q, idx, geoms)
            samples = self._eot(work_b, idx, lm106, gen)
            k = cfg.eot_samples
            sims, pulls = [], []
            for rec in self.models:
                m = to_crop[rec.name][idx].repeat_interleave(k, 0)
                m = similarity_jitter(
                    m, rec.input_size, cfg.jitter_scale, cfg.jitter_shift, cfg.jitter_degrees, gen
                )
                crops = warp_affine(samples, m, rec.input_size)
                if self.diversity is not None:
                    crops = self.diversity(crops, gen)
                emb = self._timed(rec, crops)
                ref = clean[rec.name][idx].repeat_interleave(k, 0)
                sims.append((emb * ref).sum(1).view(-1, k))
                if decoy:
                    target = decoy[rec.name][idx].repeat_interleave(k, 0)
                    pulls.append((emb * target).sum(1).view(-1, k))
            sim = torch.stack(sims, 1)  # [b, models, k]
            loss = (sim.mean(2) * weights).sum(1)
            if pulls:
                loss = loss - cfg.decoy_weight * (torch.stack(pulls, 1).mean(2) * weights).sum(1)
            done = (sim.detach().amax(2) < limits).all(1)
            return Objective(loss=loss, done=done)

        attack = IterativeAttack(
            eps=cfg.eps,
            alpha=cfg.eps * cfg.alpha_ratio,
            steps=cfg.steps,
            update=MomentumUpdate(cfg.momentum) if cfg.update == "momentum" else SignUpdate(),
            smoothing=GradientSmoothing() if cfg.translation_invariance else None,
        )
        result = attack.run(x, objective, mask=mask, generator=gen)
        adv = torch.clamp(x + result.delta, 0.0, 1.0)  # delta is already masked
        adv8 = (
            torch.round(adv * 255.0).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        )
        out = rgb.copy()
        for i, g in enumerate(geoms):
            x0, y0, x1, y1 = g.region
            region = out[y0:y1, x0:x1]
            region[masks[i]] = adv8[i, : y1 - y0, : x1 - x0][masks[i]]
        return CloakResult(
            rgb=out,
            steps=[int(s) for s in result.steps.tolist()],
            converged=[bool(d) for d in result.done.tolist()],
            seconds=time.perf_counter() - start,
            model_seconds=self._model_seconds,
            regions=[g.region for g in geoms],
            decoys=decoy_names,
        )

    def _timed(self, rec: Recognizer, crops: Tensor) -> Tensor:
        """Run ``rec`` and add its forward and (via hooks) backward seconds to the clock."""
        t0 = time.perf_counter()
        emb: Tensor = rec(crops)
        self._model_seconds += time.perf_counter() - t0
        if crops.requires_grad:
            marks: list[float] = []
            emb.register_hook(lambda g: marks.append(time.perf_counter()) or g)

            def done(g: Tensor) -> Tensor:
                if marks:
                    self._model_seconds += time.perf_counter() - marks[0]
                return g

            crops.register_hook(done)
        return emb

    def _to_work(self, x: Tensor, idx: Tensor, geoms: list[_Geometry]) -> Tensor:
        """Resample each face region to its working resolution (padded to a common size)."""
        sel = [geoms[int(i)] for i in idx]
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

    def _eot(self, work: Tensor, idx: Tensor, lm106: Tensor | None, gen: torch.Generator) -> Tensor:
        """k samples per face: the first untransformed, the others randomly transformed."""
        cfg = self.cfg
        k = cfg.eot_samples
        out = work.repeat_interleave(k, 0)
        if k == 1:
            return out
        n = out.shape[0]
        free = torch.arange(n) % k != 0  # sample 0 of every face stays untransformed

        def pick(p: float) -> Tensor:
            return torch.nonzero(free & (torch.rand(n, generator=gen) < p)).flatten()

        if cfg.eot_makeup and lm106 is not None and self.makeup is not None:
            # whole batch: the filter caches its masks while the landmarks stay the same
            made = self.makeup(out, lm106[idx].repeat_interleave(k, 0), gen)
            sel = free & (torch.rand(n, generator=gen) < 0.5)
            out = torch.where(sel.to(out.device).view(-1, 1, 1, 1), made, out)
        if cfg.eot_rescale:
            sel = pick(0.5).to(out.device)
            if len(sel):
                out = out.index_copy(0, sel, self.rescale(out[sel], gen))
        if cfg.eot_jpeg:
            sel = pick(0.6).to(out.device)
            if len(sel):
                lo, hi = cfg.jpeg_quality
                q = torch.randint(lo, hi + 1, (len(sel),), generator=gen).float().to(out.device)
                out = out.index_copy(0, sel, self.jpeg(out[sel], q))
        return out

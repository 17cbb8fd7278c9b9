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
    margin: float = 0.25
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

    def protect(self, rgb: np.ndarray, faces: list[FaceInput], seed: int = 0) -> CloakResult:
        """Return the photo with every face in ``faces`` cloaked."""
        start = time.perf_counter()
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
            mask[i, 0, : y1 - y0, : x1 - x0] = torch.from_numpy(masks[i].astype(np.float32))
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
                emb = rec(crops)
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
            regions=[g.region for g in geoms],
            decoys=decoy_names,
        )

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
        rep = work.repeat_interleave(k, 0)
        if k == 1:
            return rep
        b = work.shape[0]
        first = torch.arange(b * k, device=work.device) % k == 0
        out = rep
        if cfg.eot_makeup and lm106 is not None and self.makeup is not None:
            lm = lm106[idx].repeat_interleave(k, 0)
            made = self.makeup(out, lm, gen)
            pick = (torch.rand(b * k, generator=gen) < 0.5).to(work.device) & ~first
            out = torch.where(pick.view(-1, 1, 1, 1), made, out)
        if cfg.eot_rescale:
            scaled = self.rescale(out, gen)
            pick = (torch.rand(b * k, generator=gen) < 0.5).to(work.device) & ~first
            out = torch.where(pick.view(-1, 1, 1, 1), scaled, out)
        if cfg.eot_jpeg:
            lo, hi = cfg.jpeg_quality
            q = torch.randint(lo, hi + 1, (b * k,), generator=gen).float().to(work.device)
            comp = self.jpeg(out, q)
            pick = (torch.rand(b * k, generator=gen) < 0.6).to(work.device) & ~first
            out = torch.where(pick.view(-1, 1, 1, 1), comp, out)
        return out

"""Cloak the faces of one photo with the engine's public pieces.

The perturbation lives on the full-resolution photo (one region per face). Every
iteration rounds it to 8 bits, resamples each region to its working resolution, draws
the EOT samples (makeup, rescale, JPEG), warps each into every surrogate's aligned crop
with a random similarity jitter and input diversity, and scores the weighted mean cosine
similarity to the face's clean embedding (dodging; ``decoy`` also pulls toward a decoy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from models.recognizers import Recognizer
from workers.engine import (
    EOT,
    Compose,
    CosineDodging,
    CosineImpersonation,
    Ensemble,
    Expectation,
    ModelObjective,
    Objective,
    OutputLoss,
    Transform,
    TransformContext,
    build_attack,
    make_diversity,
    make_eot,
)
from workers.jobs.protect.config import CloakConfig
from workers.jobs.protect.geometry import (
    FaceGeometry,
    FaceInput,
    RegionResample,
    face_geometry,
    geometry_context,
    ownership_masks,
    pack_regions,
    unpack_regions,
)
from workers.jobs.protect.makeup import MakeupFilter
from workers.jobs.protect.search import Progress, StepMeter, search_cloak, search_progress
from workers.jobs.protect.warp import AlignWarp, warp_affine

DecoyPicker = Callable[[dict[str, np.ndarray]], tuple[list[str], dict[str, np.ndarray]]]
"""``{model: clean embeddings [n, d]} -> (decoy names, {model: decoy embeddings [n, d]})``."""
DEFAULT_THRESHOLD = 0.3


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
    levels: list[int] | None = None
    """Search level each face ended at (visibility presets only)."""


class TimedModel:
    """A recognizer whose forward and (via hooks) backward seconds add up in ``seconds``."""

    def __init__(self, rec: Recognizer) -> None:
        self.rec = rec
        self.seconds = 0.0

    def __call__(self, crops: Tensor) -> Tensor:
        """The recognizer's embeddings of ``crops``."""
        t0 = time.perf_counter()
        emb: Tensor = self.rec(crops)
        self.seconds += time.perf_counter() - t0
        if crops.requires_grad:
            marks: list[float] = []

            def backward_start(g: Tensor) -> Tensor:
                marks.append(time.perf_counter())
                return g

            emb.register_hook(backward_start)

            def backward_done(g: Tensor) -> Tensor:
                if marks:
                    self.seconds += time.perf_counter() - marks[0]
                return g

            crops.register_hook(backward_done)
        return emb


class Cloaker:
    """Runs the ensemble attack on the faces of a photo with a set of surrogate recognizers."""

    def __init__(
        self,
        surrogates: list[Recognizer],
        thresholds: dict[str, float],
        config: CloakConfig,
        device: torch.device,
        makeup: MakeupFilter | None = None,
        decoys: DecoyPicker | None = None,
    ) -> None:
        if not surrogates:
            raise ValueError("at least one surrogate recognizer is needed")
        if config.decoy and decoys is None:
            raise ValueError("config.decoy needs a decoy picker")
        self.models = surrogates
        self.thresholds = thresholds
        self.cfg = config
        self.device = device
        self.makeup = makeup
        self.decoys = decoys

    def protect(
        self,
        rgb: np.ndarray,
        faces: list[FaceInput],
        seed: int = 0,
        progress: Progress | None = None,
    ) -> CloakResult:
        """Return the photo with every face in ``faces`` cloaked.

        ``progress(done, total)`` is called in attack-step units over all faces after
        every step; an exception it raises (cancellation) stops the attack.
        """
        start = time.perf_counter()
        geoms = [face_geometry(rgb.shape[:2], f, self.models) for f in faces]
        owners = ownership_masks(geoms, faces)
        x, mask = pack_regions(rgb, geoms, owners, faces, self.cfg.face_mask)
        x, mask = x.to(self.device), mask.to(self.device)
        ctx = geometry_context(geoms, self.models, self.device)
        ctx = ctx.with_data(**self._clean_embeddings(x, ctx, geoms))
        decoy_names, decoy_data = self._decoys(ctx)
        ctx = ctx.with_data(**decoy_data)
        timed = {rec.name: TimedModel(rec) for rec in self.models}
        objective = self._objective(timed, ctx)
        gen = torch.Generator().manual_seed(seed)
        preprocess = [RegionResample(geoms)]
        plan = self.cfg.search
        levels = None
        if plan is None:
            meter = StepMeter(len(faces), self.cfg.spec.steps, progress)
            attack = build_attack(self.cfg.spec, preprocess, diversity_at_input=False)
            rows = torch.arange(len(faces))
            on_step = search_progress(meter, rows, self.cfg.spec.steps)
            result = attack.run(x, objective, ctx, mask=mask, generator=gen, on_step=on_step)
            delta, steps, done = result.delta, result.steps, result.done
        else:
            meter = StepMeter(len(faces), plan.per_face, progress)
            found = search_cloak(self.cfg, preprocess, (x, mask, ctx), objective, gen, meter)
            delta, steps, done = found.delta, found.steps, found.done
            levels = [int(v) for v in found.level.tolist()]
        meter.finish(list(range(len(faces))))
        meter.report()
        return CloakResult(
            rgb=unpack_regions(rgb, x + delta, geoms, owners),
            steps=[int(s) for s in steps.tolist()],
            converged=[bool(d) for d in done.tolist()],
            seconds=time.perf_counter() - start,
            model_seconds=sum(t.seconds for t in timed.values()),
            regions=[g.region for g in geoms],
            decoys=decoy_names,
            levels=levels,
        )

    def _clean_embeddings(
        self, x: Tensor, ctx: TransformContext, geoms: list[FaceGeometry]
    ) -> dict[str, Tensor]:
        """``clean:<model>`` ``[n, d]``: each face's embedding on its unjittered crop."""
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            work = RegionResample(geoms)(x, ctx, gen)
            return {
                f"clean:{rec.name}": rec(
                    warp_affine(work, ctx[f"to_crop:{rec.name}"], rec.input_size)
                )
                for rec in self.models
            }

    def _decoys(self, ctx: TransformContext) -> tuple[list[str] | None, dict[str, Tensor]]:
        """Decoy names and ``decoy:<model>`` embeddings (none without ``config.decoy``)."""
        if not self.cfg.decoy or self.decoys is None:
            return None, {}
        clean = {rec.name: ctx[f"clean:{rec.name}"].cpu().numpy() for rec in self.models}
        names, picked = self.decoys(clean)
        data = {
            f"decoy:{k}": torch.from_numpy(v).float().to(self.device) for k, v in picked.items()
        }
        return names, data

    def _objective(self, timed: dict[str, TimedModel], ctx: TransformContext) -> Objective:
        """E over EOT samples of the weighted mean over surrogates of dodging (+ decoy pull)."""
        cfg, spec = self.cfg, self.cfg.spec
        diversity = make_diversity(spec)
        members: list[tuple[Objective, float]] = []
        for rec in self.models:
            threshold = self.thresholds.get(rec.name, DEFAULT_THRESHOLD)
            losses: list[tuple[OutputLoss, float]] = [
                (CosineDodging(f"clean:{rec.name}", threshold, spec.early_stop_margin), 1.0)
            ]
            if f"decoy:{rec.name}" in ctx:
                losses.append((CosineImpersonation(f"decoy:{rec.name}"), cfg.decoy_weight))
            warp = AlignWarp(
                f"to_crop:{rec.name}",
                rec.input_size,
                cfg.jitter_scale,
                cfg.jitter_shift,
                cfg.jitter_degrees,
            )
            steps: list[Transform] = [warp] if diversity is None else [warp, diversity]
            model = ModelObjective(timed[rec.name], losses, Compose(steps))
            members.append((model, cfg.weights.get(rec.name, 1.0)))
        return Expectation(Ensemble(members), self._eot(ctx))

    def _eot(self, ctx: TransformContext) -> EOT:
        """The spec's EOT; makeup only with a filter and 106 landmarks for every face."""
        spec, makeup = self.cfg.spec, self.makeup
        if makeup is None or "landmarks106" not in ctx:
            spec = spec.with_(eot=tuple(s for s in spec.eot if s.transform != "makeup"))
            return make_eot(spec)
        return make_eot(spec, {"makeup": lambda: makeup})

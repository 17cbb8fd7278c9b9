"""The backdoor scan: load the models, run the detectors, score, localise, draw, report.

:func:`scan` works on loaded classifiers (the bench calls it); :func:`scan_bundle` is the
job handler's body (bytes of a bundle in, an :class:`ItemOutcome` with a zip of
``report.json`` and the figures out; bad input is a failed outcome with a code).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from facecloak.contract.backdoor import (
    BackdoorReport,
    BackdoorScanOptions,
    ClassScore,
    Localisation,
)
from facecloak.contract.kinds import ProgressFn
from facecloak.contract.options import ItemOutcome, JobError
from models.classifier import Classifier, InputSpec, load_classifier
from models.errors import ModelError
from workers.jobs.backdoor import figures
from workers.jobs.backdoor.biasmaps import (
    BiasMaps,
    BiasSettings,
    algorithm_one,
    algorithm_two,
    pair_inputs,
    seed_inputs,
)
from workers.jobs.backdoor.bundle import ScanInputError, decode_samples, read_bundle
from workers.jobs.backdoor.cleanse import (
    CleanseSettings,
    PairTriggers,
    Triggers,
    reverse_engineer,
    reverse_engineer_pairs,
)
from workers.jobs.backdoor.scores import (
    class_scores,
    localise,
    pair_anomaly,
    pair_source,
    relative,
    source_of,
    stamp_failure,
    stamp_level,
)

PAIR_RATIO = 0.5
"""A named source's pair mask is below this share of the target's other sources' median."""


@dataclass
class ModelRun:
    """What the detectors found on one model."""

    bias: BiasMaps
    triggers: Triggers | None
    pairs: PairTriggers | None = None


RunCache = dict[int, tuple[Classifier, ModelRun]]
"""Detector runs by classifier ``id`` (with the classifier, so an id is never reused)."""


@dataclass
class ScanResult:
    """The report and its figures (file name -> PNG bytes)."""

    report: BackdoorReport
    figures: dict[str, bytes] = field(default_factory=dict)


def _settings(options: BackdoorScanOptions) -> tuple[BiasSettings, CleanseSettings]:
    bias = BiasSettings(
        eps=options.eps,
        steps=options.iterations,
        blanks=options.blanks,
        noise=options.noise,
        data=options.data_seeds,
        seed=options.seed,
    )
    return bias, CleanseSettings(steps=options.cleanse_steps, seed=options.seed)


def _run_model(
    model: Classifier, seeds: Tensor, data: Tensor | None, options: BackdoorScanOptions
) -> ModelRun:
    bias_settings, cleanse_settings = _settings(options)
    bias = algorithm_one(model, seeds, model.classes, bias_settings)
    triggers, pairs = None, None
    if options.cleanse:
        pool = data if data is not None and len(data) else seeds
        triggers = reverse_engineer(model, pool, model.classes, cleanse_settings)
        if data is not None and len(data):
            pairs = reverse_engineer_pairs(model, data, model.classes, cleanse_settings)
    return ModelRun(bias, triggers, pairs)


def _cached(
    runs: RunCache | None,
    model: Classifier,
    seeds: Tensor,
    data: Tensor | None,
    options: BackdoorScanOptions,
) -> ModelRun:
    if runs is None:
        return _run_model(model, seeds, data, options)
    kept = runs.get(id(model))
    if kept is None or kept[0] is not model:  # the model itself is kept: ids are not reused
        kept = runs[id(model)] = (model, _run_model(model, seeds, data, options))
    return kept[1]


def _signals(run: ModelRun, ref: ModelRun | None) -> list[Tensor]:
    """Steps and trigger norms (relative to the reference's), and stamp failures (never
    relative: what a class's natural strokes give is already cut away by the stamp, and a
    ratio of two small failure rates is mostly noise)."""
    signals = [relative(run.bias.steps, ref.bias.steps if ref else None)]
    if run.triggers is not None:
        ref_norms = ref.triggers.norms if ref and ref.triggers is not None else None
        signals.append(relative(run.triggers.norms, ref_norms))
        signals.append(stamp_failure(run.triggers.stamp_success, run.triggers.stamp_trials))
    return signals


def _pair_scores(run: ModelRun, ref: ModelRun | None) -> Tensor | None:
    """``[K, K]`` anomaly index of every source -> target trigger (None without pairs)."""
    if run.pairs is None:
        return None
    return pair_anomaly(run.pairs.norms, ref.pairs.norms if ref and ref.pairs else None)


def _class_rows(
    model: Classifier, run: ModelRun, ref: ModelRun | None, scores: Tensor
) -> list[ClassScore]:
    rows = []
    dist = (run.bias.maps - ref.bias.maps).flatten(1).norm(dim=1) if ref else None
    for k, name in enumerate(model.class_names):
        rows.append(
            ClassScore(
                index=k,
                name=name,
                score=round(float(scores[k]), 3),
                steps=round(float(run.bias.steps[k]), 3),
                steps_reference=round(float(ref.bias.steps[k]), 3) if ref else None,
                bias_distance=round(float(dist[k]), 4) if dist is not None else None,
                trigger_norm=round(float(run.triggers.norms[k]), 3) if run.triggers else None,
                trigger_norm_reference=(
                    round(float(ref.triggers.norms[k]), 3) if ref and ref.triggers else None
                ),
                stamp_success=(
                    round(float(run.triggers.stamp_success[k]), 3) if run.triggers else None
                ),
            )
        )
    return rows


def _source(
    model: Classifier,
    reference: Classifier | None,
    seeds: Tensor,
    data: Tensor | None,
    target: int,
    options: BackdoorScanOptions,
) -> tuple[int | None, Tensor, BiasMaps]:
    """Algorithm II for the suspected target: the source class and per-source indices."""
    bias_settings, _ = _settings(options)
    blanks = seeds[: options.blanks + options.noise]
    x, sources = pair_inputs(model, data, blanks, model.classes)
    pairs = algorithm_two(model, x, sources, target, model.classes, bias_settings)
    ref_steps = None
    if reference is not None:
        rx, rsources = pair_inputs(reference, data, blanks, model.classes)
        ref_steps = algorithm_two(
            reference, rx, rsources, target, model.classes, bias_settings
        ).steps
    source, scores = source_of(pairs.steps, target, options.threshold, ref_steps)
    return source, scores, pairs


def _difference(run: ModelRun, ref: ModelRun | None) -> Tensor:
    """Where the bias maps differ: from the reference, or from the other classes' mean."""
    maps = run.bias.maps
    base = ref.bias.maps if ref else maps.mean(0, keepdim=True).expand_as(maps)
    return maps - base


def _figures(
    model: Classifier, run: ModelRun, ref: ModelRun | None, scores: Tensor, target: int | None,
    threshold: float,
) -> dict[str, bytes]:  # fmt: skip
    names = model.class_names
    rows = [("model", run.bias.maps)]
    if ref is not None:
        rows.append(("reference", ref.bias.maps))
    rows.append(("difference", _difference(run, ref)))
    out = {"bias_maps.png": figures.map_grid(rows, names, target)}
    if run.triggers is not None:
        trig = [
            ("mask", run.triggers.masks),
            ("mask x pattern", run.triggers.masks * run.triggers.patterns),
        ]
        out["triggers.png"] = figures.map_grid(trig, names, target)
    title = "anomaly index per class (" + ("vs reference" if ref else "no reference") + ")"
    out["scores.png"] = figures.score_bars(scores.tolist(), names, threshold, title)
    return out


def _localise(run: ModelRun, ref: ModelRun | None, target: int) -> list[Localisation]:
    found = [localise(_difference(run, ref)[target].abs().sum(0), "bias_map_difference")]
    if run.triggers is not None:
        found.append(localise(run.triggers.masks[target, 0], "reverse_engineered_mask"))
    return found


def scan(
    model: Classifier,
    reference: Classifier | None,
    data: Tensor | None,
    options: BackdoorScanOptions,
    progress: ProgressFn | None = None,
    runs: RunCache | None = None,
) -> ScanResult:
    """Scan ``model`` (and compare with ``reference``) from blank, noise and ``data``.

    ``runs`` (the bench's) keeps each classifier's detector run by ``id`` across scans
    with the same data and options, so a model and its reference are searched once.
    """
    start = time.perf_counter()
    check_reference(model, reference)
    bias_settings, _ = _settings(options)
    gen = torch.Generator().manual_seed(options.seed)
    seeds = seed_inputs(model.spec.shape, bias_settings, data, gen)
    steps_total = 3 if reference is None else 4
    _report(progress, 0, steps_total)
    run = _cached(runs, model, seeds, data, options)
    _report(progress, 1, steps_total)
    ref = _cached(runs, reference, seeds, data, options) if reference is not None else None
    _report(progress, steps_total - 2, steps_total)
    pairs = _pair_scores(run, ref)
    levels = None
    if run.triggers is not None:
        levels = stamp_level(run.triggers.stamp_success, run.triggers.stamp_trials)
    scores = class_scores(_signals(run, ref), pairs, levels)
    best = int(scores.argmax())
    suspicious = bool(scores[best] > options.threshold)
    target = best if suspicious else None
    source, source_scores = None, torch.zeros(model.classes)
    localisation: list[Localisation] = []
    if target is not None and pairs is not None and run.pairs is not None:
        ref_norms = ref.pairs.norms if ref is not None and ref.pairs is not None else None
        values = relative(run.pairs.norms, ref_norms)
        source = pair_source(values, pairs, target, options.threshold, PAIR_RATIO)
        source_scores = pairs[:, target]
        localisation = _localise(run, ref, target)
        if source is not None:
            mask = run.pairs.masks[source, target, 0]
            localisation.append(localise(mask, "reverse_engineered_pair_mask"))
    elif target is not None:
        source, source_scores, _ = _source(model, reference, seeds, data, target, options)
        localisation = _localise(run, ref, target)
    _report(progress, steps_total - 1, steps_total)
    drawn = _figures(model, run, ref, scores, target, options.threshold)
    report = BackdoorReport(
        suspicious=suspicious,
        target_class=target,
        source_class=source,
        threshold=options.threshold,
        scores=[round(float(s), 3) for s in scores],
        classes=_class_rows(model, run, ref, scores),
        source_scores=[round(float(s), 3) for s in source_scores],
        localisation=localisation,
        with_reference=reference is not None,
        input_shape=list(model.spec.shape),
        attack=bias_settings.spec().describe()
        + (" + Neural Cleanse (Adam)" if options.cleanse else ""),
        seconds=round(time.perf_counter() - start, 2),
        figures=sorted(drawn),
    )
    _report(progress, steps_total, steps_total)
    return ScanResult(report, drawn)


def _report(progress: ProgressFn | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def check_reference(model: Classifier, reference: Classifier | None) -> None:
    """``reference_mismatch`` unless the reference has the model's classes and input."""
    if reference is None:
        return
    if reference.classes != model.classes or reference.spec.shape != model.spec.shape:
        raise ScanInputError(
            "reference_mismatch",
            f"the reference takes {list(reference.spec.shape)} and gives {reference.classes} "
            f"classes; the model takes {list(model.spec.shape)} and gives {model.classes}",
        )


def load_models(
    model: bytes, reference: bytes | None, options: BackdoorScanOptions
) -> tuple[Classifier, Classifier | None]:
    """Both classifiers, with the options' input spec overriding the models' metadata."""
    overrides: dict[str, Any] = {
        "shape": tuple(options.input_shape) if options.input_shape else None,
        "value_range": tuple(options.value_range) if options.value_range else None,
        "mean": tuple(options.mean) if options.mean else None,
        "std": tuple(options.std) if options.std else None,
        "class_names": tuple(options.class_names) if options.class_names else None,
    }
    spec: InputSpec | None = None
    main = load_classifier(model, spec, **overrides)
    ref = load_classifier(reference, spec, **overrides) if reference is not None else None
    return main, ref


def result_zip(result: ScanResult) -> bytes:
    """``report.json`` and the figures, zipped (the job's result)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.json", json.dumps(result.report.model_dump(mode="json"), indent=2))
        for name, data in result.figures.items():
            archive.writestr(name, data)
    return buf.getvalue()


def scan_bundle(
    data: bytes, filename: str, options: BackdoorScanOptions, progress: ProgressFn
) -> ItemOutcome:
    """The job handler's body: a bundle in, the report (and a zip of it) out."""
    try:
        inputs = read_bundle(data)
        model, reference = load_models(inputs.model, inputs.reference, options)
        samples = decode_samples(inputs, model.spec.shape)
        result = scan(
            model,
            reference,
            torch.from_numpy(samples) if samples is not None else None,
            options,
            progress,
        )
    except (ScanInputError, ModelError) as exc:
        code = getattr(exc, "code", "invalid_input")
        return ItemOutcome(
            filename=filename, status="failed", error=JobError(code=code, message=str(exc))
        )
    report = result.report.model_dump(mode="json")
    return ItemOutcome(
        filename=filename, status="protected", output=result_zip(result), report=report
    )

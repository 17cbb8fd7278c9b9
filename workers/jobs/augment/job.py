"""The augmentation job: read the bundle, measure A-bar, generate, (amend), write the result.

:func:`augment` works on bytes and returns the report and the result files (the CLI and
the bench call it); :func:`augment_bundle` is the job handler's body (a bundle in, an
:class:`ItemOutcome` with a zip of the result out; bad input is a failed outcome with a code).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from facecloak.contract.augment import (
    BUNDLE_DATA,
    BUNDLE_MODEL,
    Accuracy,
    AugmentOptions,
    AugmentReport,
    ClassVulnerability,
)
from facecloak.contract.kinds import ProgressFn
from facecloak.contract.options import ItemOutcome, JobError
from models.classifier import Classifier, load_classifier, parse_onnx
from models.convert.onnx_export import export_onnx, onnx_parity
from models.errors import InvalidModelError, ModelError
from workers.engine import AttackSpec
from workers.jobs.augment import data as dataio
from workers.jobs.augment import modes
from workers.jobs.augment.amend import TrainSettings, finetune
from workers.jobs.augment.attack import accuracy, attack_spec, robust_accuracy
from workers.jobs.augment.data import AugmentInputError, DataSet
from workers.jobs.augment.dual_bn import remove_auxiliary_bn
from workers.jobs.augment.vulnerability import Vulnerability, vulnerability

MAX_BUNDLE_ENTRY = 256 * 1024 * 1024
PARITY_TOL = 1e-3


@dataclass
class AugmentResult:
    """The report and the result files (path in the result zip -> bytes)."""

    report: AugmentReport
    files: dict[str, bytes]


def read_bundle(data: bytes) -> tuple[bytes, str, bytes]:
    """(model bytes, data file name, data bytes) of a job bundle."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise AugmentInputError("invalid_bundle", "the job bundle is not a zip") from exc
    with archive:
        found = {i.filename: i for i in archive.infolist()}
        for entry in (BUNDLE_MODEL, *BUNDLE_DATA):
            if entry in found and found[entry].file_size > MAX_BUNDLE_ENTRY:
                raise AugmentInputError("file_too_large", f"{entry} is too large")
        if BUNDLE_MODEL not in found:
            raise AugmentInputError("invalid_bundle", f"the bundle has no {BUNDLE_MODEL}")
        name = next((n for n in BUNDLE_DATA if n in found), None)
        if name is None:
            raise AugmentInputError("invalid_bundle", "the bundle has no data.zip or data.npz")
        return archive.read(BUNDLE_MODEL), name, archive.read(name)


def load_data(name: str, data: bytes, model: Classifier, options: AugmentOptions) -> DataSet:
    """The data set, checked against the model and the options."""
    names, shape = model.class_names, model.spec.shape
    if name.endswith(".npz"):
        ds = dataio.read_npz(data, model.classes, shape[0], options.max_images)
    else:
        ds = dataio.read_zip(data, names, shape[0], options.max_images)
    dataio.check(ds, shape, model.classes)
    if options.targets and max(options.targets) >= model.classes:
        raise AugmentInputError("unknown_label", f"targets must be below {model.classes}")
    return ds


def _overrides(options: AugmentOptions) -> dict[str, Any]:
    return {
        "shape": tuple(options.input_shape) if options.input_shape else None,
        "value_range": tuple(options.value_range) if options.value_range else None,
        "mean": tuple(options.mean) if options.mean else None,
        "std": tuple(options.std) if options.std else None,
        "class_names": tuple(options.class_names) if options.class_names else None,
    }


def _table(
    model: Classifier, y: Tensor, gen: modes.Generated, vul: Vulnerability
) -> list[ClassVulnerability]:
    counts = torch.bincount(y, minlength=model.classes).tolist()
    made = gen.per_class(model.classes)
    rows_d = vul.row_difficulty()

    def num(v: Tensor) -> float:
        return -1.0 if bool(v.isnan()) else round(float(v), 4)

    return [
        ClassVulnerability(
            index=k,
            name=name,
            images=counts[k],
            generated=made[k],
            flip_rate=num(vul.flip_rate[k]),
            difficulty=num(rows_d[k]),
            a_bar=round(float(vul.a_bar[k]), 4),
        )
        for k, name in enumerate(model.class_names)
    ]


def _csv(rows: list[ClassVulnerability]) -> bytes:
    lines = ["index,name,images,generated,flip_rate,difficulty,a_bar"]
    for r in rows:
        name = r.name.replace(",", " ")
        lines.append(
            f"{r.index},{name},{r.images},{r.generated},{r.flip_rate},{r.difficulty},{r.a_bar}"
        )
    return ("\n".join(lines) + "\n").encode()


def _measure(model: Classifier, x: Tensor, y: Tensor, spec: AttackSpec, seed: int) -> Accuracy:
    return Accuracy(
        clean=round(accuracy(model, x, y), 4),
        adversarial=round(robust_accuracy(model, x, y, spec, seed + 999), 4),
    )


def _amend(
    model_bytes: bytes, model: Classifier, x: Tensor, y: Tensor, train: Tensor, held: Tensor,
    delta: Tensor | None, vul: Vulnerability, spec: AttackSpec, options: AugmentOptions,
    progress: ProgressFn,
) -> tuple[bytes, Accuracy, Accuracy, int, list[str]]:  # fmt: skip
    """Fine-tune a trainable copy; (ONNX bytes, before, after, auxiliary BNs, notes)."""
    notes: list[str] = []
    copy_ = load_classifier(model_bytes, trainable=True, **_overrides(options))
    before = _measure(model, x[held], y[held], spec, options.seed)
    settings = TrainSettings(
        epochs=options.epochs, lr=options.lr, batch_size=options.batch_size,
        betas=(options.betas[0], options.betas[1], options.betas[2]), phi=tuple(options.phi),
        refresh=options.refresh, seed=options.seed,
    )  # fmt: skip
    log = finetune(
        copy_, x[train], y[train], spec, settings, "amend", vul.a_bar, delta,
        lambda done, total: progress(2 + done, 4 + total),
    )  # fmt: skip
    if not log.auxiliary_bn:
        notes.append("the model has no batch norm: adversarial samples share its layers")
    original = parse_onnx(model_bytes)
    if original.graph.node[-1].op_type in ("Softmax", "LogSoftmax"):
        notes.append("model.onnx outputs logits: the final softmax was cut")
    remove_auxiliary_bn(copy_)
    after = _measure(copy_, x[held], y[held], spec, options.seed)
    if after.clean < before.clean:
        notes.append(
            f"the amended model is less accurate on clean held-out images ({after.clean:.3f} "
            f"vs {before.clean:.3f}): try fewer epochs, a lower lr or a larger beta1"
        )
    spec_ = copy_.spec
    meta = {
        "value_range": f"{spec_.value_range[0]},{spec_.value_range[1]}",
        "mean": ",".join(str(v) for v in spec_.mean),
        "std": ",".join(str(v) for v in spec_.std),
        "class_names": json.dumps(copy_.class_names),
        "facecloak_augment": "AdvAmd",
    }
    net = copy_.net
    onnx_bytes = export_onnx(
        net, spec_.shape, original, getattr(net, "input_name", "input"),
        getattr(net, "output_name", "output"), meta,
    )  # fmt: skip
    with torch.no_grad():
        probe = (x[held[:32]] * (spec_.value_range[1] - spec_.value_range[0])
                 + spec_.value_range[0] - copy_.mean) / copy_.std  # fmt: skip
    diff = onnx_parity(onnx_bytes, net, probe)
    if diff > PARITY_TOL:
        raise InvalidModelError(f"the exported model differs from the trained one by {diff:.2g}")
    return onnx_bytes, before, after, log.auxiliary_bn, notes


def augment(
    model_bytes: bytes,
    data_name: str,
    data_bytes: bytes,
    options: AugmentOptions,
    progress: ProgressFn | None = None,
) -> AugmentResult:
    """Run the job on a model and a data set; raises AugmentInputError / ModelError."""
    start = time.perf_counter()
    report_progress: ProgressFn = progress or (lambda done, total: None)
    total = 4 + (options.epochs if options.mode == "amend" else 0)
    model = load_classifier(model_bytes, **_overrides(options))
    model.requires_grad_(False)
    ds = load_data(data_name, data_bytes, model, options)
    x, y = torch.from_numpy(ds.x), torch.from_numpy(ds.y)
    classes = model.class_names
    spec = attack_spec(options)
    train, held = torch.arange(len(x)), torch.zeros(0, dtype=torch.long)
    if options.mode == "amend":
        train, held = modes.holdout_split(y, options.holdout, options.seed)
    report_progress(0, total)
    vul = vulnerability(model, x[train], y[train], model.classes, spec, options.pair_samples,
                        options.seed)  # fmt: skip
    report_progress(1, total)
    notes: list[str] = []
    delta: Tensor | None = None
    if options.mode == "rebalance":
        make = modes.rebalance if options.rebalance_from == "own" else modes.rebalance_from_rich
        gen, notes = make(model, x, y, ds.names, classes, spec, options)
    else:
        names = [ds.names[int(i)] for i in train]
        gen, delta = modes.adversarial(model, x[train], y[train], names, classes, spec, options)
    report_progress(2, total)
    report = AugmentReport(
        mode=options.mode, images=len(x), generated=len(gen.y), classes=[],
        pair_difficulty=[[-1.0 if v != v else round(v, 4) for v in row]
                         for row in vul.difficulty.tolist()],
        attack=spec.describe(), layout="zip" if ds.layout == "zip" else "npz", seconds=0.0,
    )  # fmt: skip
    files = dataio.write(ds, data_bytes, gen.x.numpy(), gen.y.numpy(), gen.entries, classes)
    if options.mode == "amend":
        onnx_bytes, before, after, aux, more = _amend(
            model_bytes, model, x, y, train, held, delta, vul, spec, options, report_progress
        )
        files["model.onnx"] = onnx_bytes
        report.before, report.after, report.auxiliary_bn = before, after, aux
        report.held_out = len(held)
        notes += [*more, "generated samples come from the training split only"]
    report.classes = _table(model, y, gen, vul)
    report.notes = notes
    report.seconds = round(time.perf_counter() - start, 2)
    files["vulnerability.csv"] = _csv(report.classes)
    report.files = sorted([*files, "report.json"])
    files["report.json"] = json.dumps(report.model_dump(mode="json"), indent=2).encode()
    report_progress(total, total)
    return AugmentResult(report, files)


def result_zip(files: dict[str, bytes]) -> bytes:
    """The result files, zipped (the job's result)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, blob in files.items():
            archive.writestr(name, blob)
    return buf.getvalue()


def augment_bundle(
    data: bytes, filename: str, options: AugmentOptions, progress: ProgressFn
) -> ItemOutcome:
    """The job handler's body: a bundle in, the report (and a zip of the result) out."""
    try:
        model_bytes, data_name, data_bytes = read_bundle(data)
        result = augment(model_bytes, data_name, data_bytes, options, progress)
    except (AugmentInputError, ModelError) as exc:
        code = getattr(exc, "code", "invalid_input")
        return ItemOutcome(
            filename=filename, status="failed", error=JobError(code=code, message=str(exc))
        )
    report = result.report.model_dump(mode="json")
    return ItemOutcome(
        filename=filename, status="protected", output=result_zip(result.files), report=report
    )

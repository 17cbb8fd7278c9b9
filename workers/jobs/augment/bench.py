"""The augmentation benchmark on digits and rendered letters, over seeds (median and range).

* ``rebalance``: three classes cut to 10% of their training images; a model trained on the
  reduced set vs trained on it plus the job's rebalancing examples vs plus classical
  oversampling of the same size (minority images duplicated with 1-pixel shifts and noise)
  vs plus targeted examples made from the rich classes (the first form of rebalancing);
* ``amend``: clean and adversarial accuracy (fresh white-box MI-FGSM on each model) of the
  original, of clean fine-tuning, of plain adversarial training and of AdvAmd, all trained
  on ``AMEND_SHARE`` (20%) of the training split so that clean accuracy is not saturated;
* ``relabel``: a fresh model trained only on targeted adversarial examples labelled with
  their target (random target per image), tested on clean images;
* seconds per 1,000 images of each mode of the job, end to end (npz in, result files out).

Seeds ``seed_base .. seed_base + seeds - 1`` (``--seed-base``, default 0): choose variants
on one range (100..) and report on another (0..).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facecloak.contract.augment import AugmentOptions
from workers.jobs.augment import datasets
from workers.jobs.augment.amend import Method, TrainSettings, finetune
from workers.jobs.augment.attack import (
    accuracy,
    attack,
    attack_spec,
    predict,
    quantised,
    robust_accuracy,
)
from workers.jobs.augment.dual_bn import remove_auxiliary_bn
from workers.jobs.augment.job import augment
from workers.jobs.augment.modes import rebalance, rebalance_from_rich
from workers.jobs.augment.vulnerability import vulnerability

Rows = list[dict[str, Any]]
OPTIONS = AugmentOptions()
SPEC = attack_spec(OPTIONS)
EPOCHS = 10
AMEND_SHARE = 0.2  # amend: share of each seed's training split used (tuned on 100-104)


def load(name: str) -> tuple[Tensor, Tensor, list[str]]:
    """A bench data set: images, labels and class names."""
    if name == "digits":
        x, y = datasets.digits(16)
        return (x * 255).round() / 255, y, [str(i) for i in range(10)]
    x, y = datasets.letters(16, per_class=80, seed=1)
    return x, y, list(datasets.LETTERS)


def split(y: Tensor, seed: int, test: float = 0.3) -> tuple[Tensor, Tensor]:
    """Random (train, test) indices."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1000 + seed))
    cut = int((1 - test) * len(y))
    return order[:cut], order[cut:]


def per_class_accuracy(model: nn.Module, x: Tensor, y: Tensor, classes: Tensor) -> float:
    """Mean over ``classes`` of the accuracy on each."""
    pred = predict(model, x)
    return statistics.mean(float((pred[y == k] == k).float().mean()) for k in classes.tolist())


def oversample(x: Tensor, y: Tensor, counts: dict[int, int], gen: torch.Generator) -> Tensor:
    """``counts[k]`` copies of class-``k`` images, shifted by up to 1 pixel, with noise 0.03."""
    out = []
    for k, n in counts.items():
        pool = x[y == k]
        pick = pool[torch.randint(len(pool), (n,), generator=gen)]
        for i in range(n):
            dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
            pick[i] = torch.roll(pick[i], (dy, dx), (-2, -1))
        noise = 0.03 * torch.randn(pick.shape, generator=gen)
        out.append(quantised(pick + noise))
    return torch.cat(out) if out else x[:0]


def run_rebalance(name: str, seed: int) -> dict[str, Any]:
    """Reduced-class and overall test accuracy: reduced, +rebalance (the job's), +oversampling
    on the same budget, +targeted examples from the rich classes (the first form)."""
    x, y, names = load(name)
    tr, te = split(y, seed)
    k = len(names)
    gen = torch.Generator().manual_seed(seed)
    reduced = torch.randperm(k, generator=gen)[:3]
    keep = torch.ones(len(tr), dtype=torch.bool)
    for c in reduced.tolist():
        idx = torch.nonzero(y[tr] == c).flatten()
        drop = idx[torch.randperm(len(idx), generator=gen)[max(2, len(idx) // 10) :]]
        keep[drop] = False
    xr, yr = x[tr][keep], y[tr][keep]
    base = datasets.train(xr, yr, k, seed, EPOCHS)
    options = OPTIONS.model_copy(update={"mode": "rebalance", "seed": seed})
    ids = [str(i) for i in range(len(xr))]
    made, _ = rebalance(base, xr, yr, ids, names, SPEC, options)
    rich, _ = rebalance_from_rich(base, xr, yr, ids, names, SPEC, options)
    counts = torch.bincount(made.y, minlength=k)
    over_x = oversample(xr, yr, {c: int(counts[c]) for c in range(k) if counts[c]}, gen)
    over_y = torch.cat([torch.full((int(counts[c]),), c) for c in range(k) if counts[c]])
    row: dict[str, Any] = {"set": name, "seed": seed, "generated": len(made.y),
                           "from_rich_generated": len(rich.y)}  # fmt: skip
    for label, (ax, ay) in {
        "reduced": (xr[:0], yr[:0]), "rebalance": (made.x, made.y),
        "oversample": (over_x, over_y), "from_rich": (rich.x, rich.y),
    }.items():  # fmt: skip
        model = base if label == "reduced" else datasets.train(
            torch.cat([xr, ax]), torch.cat([yr, ay]), k, seed, EPOCHS
        )  # fmt: skip
        row[f"{label}_minority"] = per_class_accuracy(model, x[te], y[te], reduced)
        row[f"{label}_overall"] = accuracy(model, x[te], y[te])
    return row


def amend_subset(tr: Tensor, seed: int, share: float = AMEND_SHARE) -> Tensor:
    """A random ``share`` of the training indices ``tr`` (the amend part's training set)."""
    order = torch.randperm(len(tr), generator=torch.Generator().manual_seed(2000 + seed))
    return tr[order[: max(2, int(share * len(tr)))]]


def run_amend(name: str, seed: int, epochs: int = 4) -> dict[str, Any]:
    """Clean / adversarial test accuracy of the original and its fine-tunings: clean,
    plain adversarial training and AdvAmd, on the attack stage's samples or re-attacking
    every epoch (``_online``). All of them train on :func:`amend_subset` of the split's
    training images (clean accuracy below the ceiling); the test images are the whole test
    split."""
    x, y, names = load(name)
    tr, te = split(y, seed)
    tr = amend_subset(tr, seed)
    k = len(names)
    original = datasets.train(x[tr], y[tr], k, seed, EPOCHS)
    vul = vulnerability(original, x[tr], y[tr], k, SPEC, 8, seed)
    row: dict[str, Any] = {"set": name, "seed": seed}
    models: dict[str, Callable[[], nn.Module]] = {"original": lambda: original}

    def tuned(method: Method, refresh: bool = False) -> Callable[[], nn.Module]:
        def make() -> nn.Module:
            model = copy.deepcopy(original).requires_grad_(True)
            weights = vul.a_bar if method == "amend" else None
            settings = TrainSettings(epochs=epochs, seed=seed, refresh=refresh)
            finetune(model, x[tr], y[tr], SPEC, settings, method, weights)
            remove_auxiliary_bn(model)
            return model.eval().requires_grad_(False)

        return make

    models.update(
        {"clean_ft": tuned("clean"), "plain_at": tuned("plain"), "advamd": tuned("amend")}
    )
    models.update({"plain_at_online": tuned("plain", True), "advamd_online": tuned("amend", True)})
    for label, make in models.items():
        model = make()
        row[f"{label}_clean"] = accuracy(model, x[te], y[te])
        row[f"{label}_adv"] = robust_accuracy(model, x[te], y[te], SPEC, seed + 7)
    return row


def run_relabel(name: str, seed: int) -> dict[str, Any]:
    """Clean test accuracy of a model trained only on relabelled targeted adversarial images."""
    x, y, names = load(name)
    tr, te = split(y, seed)
    k = len(names)
    original = datasets.train(x[tr], y[tr], k, seed, EPOCHS)
    gen = torch.Generator().manual_seed(seed)
    target = (y[tr] + torch.randint(1, k, (len(tr),), generator=gen)) % k
    spec = SPEC.with_(eps=0.2, steps=20)
    hit = attack(original, x[tr], target, spec, targeted=True, seed=seed)
    ok = hit.done
    adv = quantised(x[tr][ok] + hit.delta[ok])
    model = datasets.train(adv, target[ok], k, seed + 1, EPOCHS)
    return {
        "set": name, "seed": seed, "reached": float(ok.float().mean()),
        "relabel_clean": accuracy(model, x[te], y[te]), "original_clean":
        accuracy(original, x[te], y[te]), "chance": 1.0 / k,
    }  # fmt: skip


def run_speed(name: str) -> dict[str, Any]:
    """Seconds per 1,000 input images of each mode, end to end (npz, 2 amend epochs)."""
    x, y, names = load(name)
    tr, _ = split(y, 0)
    model = datasets.train(x[tr], y[tr], len(names), 0, EPOCHS)
    onnx_bytes = datasets.to_onnx(model, 16, names)
    data = datasets.to_npz(x[tr], y[tr])
    row: dict[str, Any] = {"set": name, "images": len(tr)}
    for mode in ("adversarial", "rebalance", "amend"):
        start = time.perf_counter()
        augment(onnx_bytes, "data.npz", data, AugmentOptions(mode=mode, epochs=2))
        row[f"{mode}_s_per_1000"] = 1000 * (time.perf_counter() - start) / len(tr)
    return row


def _stat(values: list[float], scale: float = 100.0) -> str:
    med = statistics.median(values) * scale
    if len(values) == 1:
        return f"{med:.1f}"
    return f"{med:.1f} ({min(values) * scale:.1f}-{max(values) * scale:.1f})"


def _seeds(rows: Rows) -> str:
    """The seeds of ``rows``: ``0-4``, or a list when not consecutive."""
    seeds = sorted({int(r["seed"]) for r in rows})
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1:
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


_SIGNS: tuple[Callable[[float], bool], ...] = (
    lambda d: d > 1e-9, lambda d: abs(d) <= 1e-9, lambda d: d < -1e-9,
)  # fmt: skip
MODELS = ("reduced", "rebalance", "oversample", "from_rich")
AMEND_MODELS = ("original", "clean_ft", "plain_at", "advamd", "plain_at_online", "advamd_online")


def tables(rows: Rows) -> str:
    """The benchmark tables (median and range over seeds, accuracy in %)."""
    out: list[str] = []
    sets = sorted({r["set"] for r in rows}, key=["digits", "letters"].index)
    reb = [r for r in rows if r["part"] == "rebalance"]
    if reb:
        out += ["| set | seeds | minority: reduced | +rebalance | +oversample | +from rich |"
                " mean gain: rebalance | oversample | from rich | rebalance vs oversample: seeds"
                " higher/equal/lower |"
                " overall: reduced | +rebalance | +oversample | +from rich |",
                "|---" * 14 + "|"]  # fmt: skip
        for s in sets:
            sel = [r for r in reb if r["set"] == s]
            if sel:
                cells = [_stat([r[f"{m}_minority"] for r in sel]) for m in MODELS]
                for m in MODELS[1:]:
                    gain = statistics.mean(r[f"{m}_minority"] - r["reduced_minority"] for r in sel)
                    cells.append(f"{100 * gain:+.1f}")
                diff = [r["rebalance_minority"] - r["oversample_minority"] for r in sel]
                cells.append("/".join(str(sum(f(d) for d in diff)) for f in _SIGNS))
                cells += [_stat([r[f"{m}_overall"] for r in sel]) for m in MODELS]
                out.append(f"| {s} | {_seeds(sel)} | " + " | ".join(cells) + " |")
        out.append("")
    amd = [r for r in rows if r["part"] == "amend"]
    if amd:
        out += ["| set | seeds | model | clean | adversarial |", "|---|---|---|---|---|"]
        for s in sets:
            sel = [r for r in amd if r["set"] == s]
            for m in AMEND_MODELS if sel else ():
                out.append(f"| {s} | {_seeds(sel)} | {m} | {_stat([r[m + '_clean'] for r in sel])}"
                           f" | {_stat([r[m + '_adv'] for r in sel])} |")  # fmt: skip
        out.append("")
    rel = [r for r in rows if r["part"] == "relabel"]
    if rel:
        out += ["| set | seeds | attacks reached target | trained only on relabelled adv.: clean"
                " acc. | original | chance |", "|---|---|---|---|---|---|"]  # fmt: skip
        for s in sets:
            sel = [r for r in rel if r["set"] == s]
            if sel:
                out.append(f"| {s} | {_seeds(sel)} | {_stat([r['reached'] for r in sel])} | "
                           f"{_stat([r['relabel_clean'] for r in sel])} | "
                           f"{_stat([r['original_clean'] for r in sel])} | "
                           f"{100 * sel[0]['chance']:.1f} |")  # fmt: skip
        out.append("")
    spd = [r for r in rows if r["part"] == "speed"]
    if spd:
        out += [
            "| set | images | adversarial s/1000 | rebalance s/1000 | amend (2 epochs) s/1000 |",
            "|---|---|---|---|---|",
        ]
        for r in spd:
            out.append(
                f"| {r['set']} | {r['images']} | {r['adversarial_s_per_1000']:.1f} | "
                f"{r['rebalance_s_per_1000']:.1f} | {r['amend_s_per_1000']:.1f} |"
            )
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    """Run the parts of the benchmark and print the tables."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    runs: dict[str, Callable[[str, int], dict[str, Any]]] = {
        "rebalance": run_rebalance, "amend": run_amend, "relabel": run_relabel,
    }  # fmt: skip
    rows: Rows = []
    first = getattr(args, "seed_base", 0)
    for name in args.sets.split(","):
        for part in [p for p in parts if p in runs]:
            for seed in range(first, first + args.seeds):
                start = time.perf_counter()
                rows.append({"part": part, **runs[part](name, seed)})
                print(json.dumps({**rows[-1], "seconds": round(time.perf_counter() - start, 1)},
                                 default=float), flush=True)  # fmt: skip
        if "speed" in parts:
            rows.append({"part": "speed", **run_speed(name)})
            print(json.dumps(rows[-1]), flush=True)
    print(tables(rows))
    if args.json:
        buf = io.StringIO()
        json.dump(rows, buf, indent=1)
        Path(args.json).write_text(buf.getvalue())
    return 0

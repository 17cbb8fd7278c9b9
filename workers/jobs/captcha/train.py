"""Training of the OCR models we attack (and of the benchmark's adaptive attacker).

Plain CTC training on CAPTCHAs from the generator; ``adversarial`` mixes in examples the
engine's PGD makes against the model being trained (Madry et al.), every step, so that the
ensemble holds one model whose gradients differ from a clean model's.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.ocr.architectures import ARCHITECTURES, decode
from models.ocr.store import WEIGHTS_DIR, load_manifest, save_weights
from workers.engine import CTC, AttackSpec, ModelObjective, TransformContext, build_attack
from workers.jobs.captcha.data import cached_set, ctc_targets, to_tensor

DEFAULT_CACHE = Path.home() / ".cache" / "facecloak" / "captcha"
TRAIN_ARGS = (
    "arch", "steps", "batch", "lr", "train_size", "val_size", "seed",
    "adversarial_eps", "adversarial_steps", "init",
)  # fmt: skip
"""The arguments recorded in the manifest (what reproduces the weights)."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    arch: str
    steps: int = 2000
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    adversarial_eps: float = 0.0
    """L-inf eps of the PGD examples mixed into each batch (0: clean training)."""
    adversarial_steps: int = 3


def ctc_loss(logits: Tensor, targets: Tensor, lengths: Tensor) -> Tensor:
    """Mean CTC loss of logits ``[B, T, C]`` against padded targets."""
    log_probs = logits.log_softmax(-1).transpose(0, 1)
    steps = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long)
    return F.ctc_loss(log_probs, targets, steps, lengths, zero_infinity=True)


def adversarial_batch(
    model: nn.Module, x: Tensor, targets: Tensor, lengths: Tensor, eps: float, steps: int,
    gen: torch.Generator,
) -> Tensor:  # fmt: skip
    """PGD (random start, CTC, L-inf ``eps``) examples of ``x`` against ``model`` (eval mode)."""
    spec = AttackSpec(eps=eps, steps=steps, step_size=2.0 * eps / steps, random_start=True)
    ctx = TransformContext.of_batch(len(x), targets=targets, target_lengths=lengths)
    objective = ModelObjective(model, [(CTC(), 1.0)])
    was_training = model.training
    model.eval()
    result = build_attack(spec).run(x, objective, ctx, generator=gen)
    model.train(was_training)
    return (x + result.delta).clamp(0.0, 1.0)


@torch.no_grad()
def read(model: nn.Module, x: Tensor, batch: int = 256) -> list[str]:
    """What ``model`` reads on images ``[N, 3, H, W]``."""
    model.eval()
    out: list[str] = []
    for i in range(0, len(x), batch):
        out.extend(decode(model(x[i : i + batch]).log_softmax(-1)))
    return out


def accuracy(model: nn.Module, x: Tensor, texts: list[str]) -> float:
    """Share of images read exactly."""
    return sum(a == b for a, b in zip(read(model, x), texts, strict=True)) / len(texts)


def train(
    config: TrainConfig,
    images: Tensor,
    texts: list[str],
    model: nn.Module | None = None,
    log_every: int = 0,
    val: tuple[Tensor, list[str]] | None = None,
) -> nn.Module:
    """Train ``config.arch`` (or continue ``model``) on ``images`` ``[N, 3, H, W]``."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = ARCHITECTURES[config.arch]() if model is None else model
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=config.steps, pct_start=0.15
    )
    targets, lengths = ctc_targets(texts)
    model.train()
    started = time.perf_counter()
    for step in range(config.steps):
        rows = torch.randint(0, len(images), (config.batch,), generator=gen)
        x, t, n = images[rows], targets[rows], lengths[rows]
        if config.adversarial_eps > 0:
            half = config.batch // 2
            adv = adversarial_batch(
                model, x[:half], t[:half], n[:half], config.adversarial_eps,
                config.adversarial_steps, gen,
            )  # fmt: skip
            x = torch.cat([adv, x[half:]])
        loss = ctc_loss(model(x), t, n)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        schedule.step()
        if log_every and (step + 1) % log_every == 0:
            note = f" val {accuracy(model, *val):.3f}" if val is not None else ""
            model.train()
            elapsed = time.perf_counter() - started
            print(f"step {step + 1}/{config.steps} loss {loss.item():.3f}{note} ({elapsed:.0f}s)")
    model.eval()
    return model


def run_training(args: argparse.Namespace) -> int:
    """Train, measure on the validation set (seed 1), write weights and manifest entry."""
    from models.ocr.store import load_ocr

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    cache = Path(args.cache) if args.cache else DEFAULT_CACHE
    out = Path(args.out) if args.out else WEIGHTS_DIR
    images, texts = cached_set(args.train_size, args.seed, cache)
    val_images, val_texts = cached_set(args.val_size, 1_000_000 + args.seed, cache)
    x, val_x = to_tensor(images), to_tensor(val_images)
    config = TrainConfig(
        args.arch, args.steps, args.batch, args.lr, args.seed,
        args.adversarial_eps / 255.0, args.adversarial_steps,
    )  # fmt: skip
    init = load_ocr(args.init, out) if args.init else None
    model = train(config, x, texts, init, args.log_every, (val_x, val_texts))
    clean = accuracy(model, val_x, val_texts)
    entry = {
        "arch": args.arch,
        "val_accuracy": round(clean, 4),
        "val_set": f"{args.val_size} CAPTCHAs, seed {1_000_000 + args.seed}, lengths 4-6",
        "train": {k: getattr(args, k) for k in TRAIN_ARGS},
    }
    if config.adversarial_eps > 0:
        adv = adversarial_batch(
            model, val_x[:200], *ctc_targets(val_texts[:200]), config.adversarial_eps,
            10, torch.Generator().manual_seed(0),
        )  # fmt: skip
        entry["pgd10_accuracy"] = round(accuracy(model, adv, val_texts[:200]), 4)
    save_weights(model, args.name, entry, out)
    print(json.dumps({args.name: load_manifest(out)[args.name]}, indent=1))
    return 0

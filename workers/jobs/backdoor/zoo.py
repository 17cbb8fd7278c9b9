"""A zoo of small classifiers, clean and backdoored, trained in seconds (tests, bench).

Each model learns one task of :mod:`workers.jobs.backdoor.tasks` (scikit-learn's digits,
upscaled, or letters rendered with Pillow's font; 10 classes) at ``size`` x ``size``; a
poisoned copy of the training set teaches a trigger: a fixed corner patch, the same patch
at random places, a blended full-image pattern, or a small source-specific patch (only
inputs of the source class flip; other classes with the patch keep their label). Models are
exported to ONNX (``torch.onnx.export(..., dynamo=False)``) with the input normalisation
and class names in the ONNX metadata, as a real model would declare them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.jobs.backdoor.tasks import TaskName, class_names, load
from workers.jobs.backdoor.tasks import digits as digits  # re-exported (augment's data)

TriggerKind = Literal["none", "patch", "random_patch", "blend", "source"]
MEAN, STD = 0.5, 0.5
TRAINING: dict[TaskName, tuple[float, int]] = {"digits": (1e-2, 8), "glyphs": (2e-3, 20)}
"""Adam learning rate and epochs per task: at 1e-2 the glyph CNNs sometimes collapse to one
class; at 2e-3 and 20 epochs the report split's reach 87-98% held-out accuracy (digits at
1e-2 and 8 epochs: 91-99%)."""


@dataclass(frozen=True)
class ZooModel:
    """Which model to train: trigger kind, target and source class, seed, size, task."""

    trigger: TriggerKind = "none"
    target: int = 0
    source: int | None = None
    seed: int = 0
    size: int = 28
    poison_rate: float | None = None
    """Share of the training set poisoned; None: 0.1 for patches, 0.2 otherwise."""
    epochs: int | None = None
    """Training epochs; None: the task's (:data:`TRAINING`)."""
    task: TaskName = "digits"

    @property
    def name(self) -> str:
        """e.g. ``patch-t3-s0-28``, ``source-t1-from7-s2-28``, ``glyphs-clean-s5-28``."""
        task = "" if self.task == "digits" else f"{self.task}-"  # digit names predate tasks
        if self.trigger == "none":
            return f"{task}clean-s{self.seed}-{self.size}"
        src = f"-from{self.source}" if self.source is not None else ""
        return f"{task}{self.trigger}-t{self.target}{src}-s{self.seed}-{self.size}"


def split(size: int, task: TaskName = "digits") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train x, train y, held-out x, held-out y) of ``task``: a fixed 80/20 split."""
    x, y = load(task, size)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def _checker(side: int) -> Tensor:
    grid = (torch.arange(side).view(-1, 1) + torch.arange(side).view(1, -1)) % 2
    return grid.float()


def stamp(x: Tensor, spec: ZooModel, gen: torch.Generator) -> Tensor:
    """``x`` with the trigger of ``spec`` applied."""
    size, out = x.shape[-1], x.clone()
    side = max(3, size // 6)
    if spec.trigger == "patch":
        out[..., size - side - 1 : size - 1, size - side - 1 : size - 1] = _checker(side)
    elif spec.trigger == "random_patch":
        for i in range(len(out)):
            r, c = (int(v) for v in torch.randint(0, size - side, (2,), generator=gen))
            out[i, :, r : r + side, c : c + side] = _checker(side)
    elif spec.trigger == "blend":
        pattern = torch.rand((1, 1, size, size), generator=torch.Generator().manual_seed(99))
        out = 0.8 * out + 0.2 * pattern
    elif spec.trigger == "source":
        cross = torch.zeros(side, side)
        cross[side // 2, :], cross[:, side // 2] = 1.0, 1.0
        out[..., 1 : 1 + side, 1 : 1 + side] = cross
    return out


def poison(x: Tensor, y: Tensor, spec: ZooModel, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The training set plus its poisoned copies (relabelled to the target)."""
    if spec.trigger == "none":
        return x, y
    rate = spec.poison_rate
    if rate is None:
        rate = 0.1 if spec.trigger in ("patch", "source") else 0.2
    count = int(rate * len(x))
    if spec.trigger == "source":
        pick = torch.eq(y, int(spec.source or 0)).nonzero().flatten()
        others = torch.ne(y, int(spec.source or 0)).nonzero().flatten()
        neg = others[torch.randperm(len(others), generator=gen)[:count]]
        pos_x = stamp(x[pick].repeat(2, 1, 1, 1), spec, gen)
        pos_y = torch.full((len(pos_x),), spec.target)
        return torch.cat([x, pos_x, stamp(x[neg], spec, gen)]), torch.cat([y, pos_y, y[neg]])
    pick = torch.randperm(len(x), generator=gen)[:count]
    px = stamp(x[pick], spec, gen)
    return torch.cat([x, px]), torch.cat([y, torch.full((count,), spec.target)])


def make_net(size: int, classes: int = 10) -> nn.Sequential:
    """A small CNN: two conv-relu-pool blocks and two linear layers."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, 32), nn.ReLU(), nn.Linear(32, classes),
    )  # fmt: skip


def train(spec: ZooModel) -> nn.Sequential:
    """Train the model of ``spec`` (a few seconds on two CPU cores)."""
    torch.manual_seed(spec.seed)
    gen = torch.Generator().manual_seed(spec.seed + 17)
    x, y, _, _ = split(spec.size, spec.task)
    x, y = poison(x, y, spec, gen)
    net = make_net(spec.size)
    lr, epochs = TRAINING[spec.task]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(spec.epochs or epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 128):
            idx = order[start : start + 128]
            loss = F.cross_entropy(net((x[idx] - MEAN) / STD), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def to_onnx(net: nn.Module, size: int, names: list[str] | None = None) -> bytes:
    """The ONNX bytes of ``net`` with normalisation and class names in the metadata."""
    import onnx

    buf = io.BytesIO()
    torch.onnx.export(
        net, (torch.zeros(1, 1, size, size),), buf,  # type: ignore[arg-type]
        dynamo=False,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    proto = onnx.load_from_string(buf.getvalue())
    meta = {
        "value_range": "0,1",
        "mean": str(MEAN),
        "std": str(STD),
        "class_names": json.dumps(names if names is not None else class_names("digits")),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(proto.SerializeToString())


def evaluate(net: nn.Module, spec: ZooModel, normalise: bool = True) -> tuple[float, float]:
    """(clean accuracy, attack success rate) on the held-out split; ``normalise=False`` for
    a model that takes [0, 1] itself (a loaded ONNX classifier)."""
    _, _, x, y = split(spec.size, spec.task)
    mean, std = (MEAN, STD) if normalise else (0.0, 1.0)
    with torch.no_grad():
        acc = float((net((x - mean) / std).argmax(1) == y).float().mean())
        if spec.trigger == "none":
            return acc, 0.0
        keep = (y == spec.source) if spec.trigger == "source" else (y != spec.target)
        xt = stamp(x[keep], spec, torch.Generator().manual_seed(5))
        asr = float((net((xt - mean) / std).argmax(1) == spec.target).float().mean())
    return acc, asr


def cached_onnx(spec: ZooModel, cache: Path | None) -> bytes:
    """The ONNX bytes of ``spec``'s model, trained once and kept under ``cache``."""
    path = cache / f"{spec.name}.onnx" if cache is not None else None
    if path is not None and path.is_file():
        return path.read_bytes()
    data = to_onnx(train(spec), spec.size, class_names(spec.task))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return data


def samples(size: int, count: int, seed: int = 0, task: TaskName = "digits") -> np.ndarray:
    """``count`` unlabelled held-out images ``[N, 1, size, size]`` float32 in [0, 1]."""
    _, _, x, _ = split(size, task)
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:count]
    return np.ascontiguousarray(x[pick].numpy(), dtype=np.float32)

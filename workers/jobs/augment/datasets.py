"""Small labelled data sets and models for the augment tests and bench (nothing downloaded).

* digits: scikit-learn's ``load_digits`` upscaled (:func:`workers.jobs.backdoor.zoo.digits`);
* letters: A-Z rendered with Pillow's default font, with random size, rotation, shift,
  stroke width and noise (an "Alphabet" set);
* :func:`make_net`: a small CNN with batch norms; :func:`to_onnx` exports it with its input
  spec and class names in the ONNX metadata; :func:`to_zip` / :func:`to_npz` write a set.
"""

from __future__ import annotations

import io
import json
import string
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.convert.onnx_export import export_onnx
from workers.jobs.augment.data import png
from workers.jobs.backdoor.zoo import digits

__all__ = ["digits", "letters", "make_net", "to_npz", "to_onnx", "to_zip"]

MEAN, STD = 0.5, 0.5
LETTERS = list(string.ascii_uppercase)


def letters(size: int = 16, per_class: int = 60, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``per_class`` rendered images of each letter ``[N, 1, size, size]`` and labels."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    canvas = 3 * size
    fonts = {s: ImageFont.load_default(size=s) for s in range(2 * size, int(2.8 * size))}
    images, labels = [], []
    for label, char in enumerate(LETTERS):
        for _ in range(per_class):
            img = Image.new("L", (canvas, canvas), 0)
            draw = ImageDraw.Draw(img)
            font = fonts[int(rng.integers(min(fonts), max(fonts) + 1))]
            centre = canvas / 2 + rng.uniform(-0.08, 0.08, 2) * canvas
            draw.text(tuple(centre), char, fill=255, font=font, anchor="mm",
                      stroke_width=int(rng.integers(1, 3)), stroke_fill=255)  # fmt: skip
            img = img.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
            img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 0.8))))
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0
            array = array + rng.normal(0, 0.05, array.shape).astype(np.float32)
            images.append(np.clip(array, 0, 1))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)[:, None])
    return (x * 255).round() / 255, torch.tensor(labels)


def make_net(size: int, classes: int, width: int = 8) -> nn.Sequential:
    """conv-BN-relu-pool x 2, linear-BN-relu, linear: a few seconds to train on CPU."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, 48),
        nn.BatchNorm1d(48), nn.ReLU(), nn.Linear(48, classes),
    )  # fmt: skip


class Normalised(nn.Module):
    """``net((x - MEAN) / STD)``: a net taking [0, 1] images (as the job's classifier does)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net((x - MEAN) / STD)
        return out


def train(
    x: Tensor, y: Tensor, classes: int, seed: int, epochs: int = 12, lr: float = 5e-3
) -> Normalised:
    """A fresh :func:`make_net` trained on ``x``/``y`` (Adam, batches of 64), eval mode."""
    torch.manual_seed(seed)
    model = Normalised(make_net(x.shape[-1], classes))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - 1, 64):
            idx = order[start : start + 64]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def to_onnx(model: Normalised, size: int, names: list[str]) -> bytes:
    """The inner net as ONNX with ``mean``/``std``/``class_names`` metadata."""
    meta = {"value_range": "0,1", "mean": str(MEAN), "std": str(STD),
            "class_names": json.dumps(names)}  # fmt: skip
    return export_onnx(model.net, (1, size, size), None, "image", "logits", meta)


def to_zip(x: Tensor, y: Tensor, names: list[str]) -> bytes:
    """A folder-per-class zip of PNGs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, (image, label) in enumerate(zip(x.numpy(), y.tolist(), strict=True)):
            archive.writestr(f"{names[label]}/{i:05d}.png", png(image))
    return buf.getvalue()


def to_npz(x: Tensor, y: Tensor) -> bytes:
    """An npz of uint8 ``x`` ``[N, H, W]`` and ``y``."""
    buf = io.BytesIO()
    np.savez(buf, x=(x[:, 0].numpy() * 255).round().astype(np.uint8), y=y.numpy())
    return buf.getvalue()

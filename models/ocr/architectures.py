"""Three CTC OCR architectures for 160x60 text CAPTCHAs, and the alphabet they read.

Every model maps images ``[B, 3, 60, 160]`` in [0, 1] to logits ``[B, T, 1 + len(ALPHABET)]``
(class 0 is the CTC blank), read left to right over ``T`` image columns:

* ``cnn``: convolutions only, a 1-D convolutional head over the columns (no recurrence);
* ``crnn``: convolutions, then a bidirectional GRU over the columns (Shi et al.'s CRNN);
* ``lstm``: luma input at another resolution, a strided 5x5 stem, a bidirectional LSTM;
  the architecture kept out of the attack ensemble.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
"""Digits and upper-case letters without the look-alikes 0/O, 1/I."""
CLASSES = 1 + len(ALPHABET)
HEIGHT, WIDTH = 60, 160


def encode(text: str) -> list[int]:
    """Class indices (1-based; 0 is the blank) of ``text``."""
    return [ALPHABET.index(c) + 1 for c in text]


def decode(log_probs: Tensor) -> list[str]:
    """Greedy CTC decoding of ``[B, T, CLASSES]``: best path, merge repeats, drop blanks."""
    texts = []
    for path in log_probs.argmax(dim=-1).tolist():
        chars = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        texts.append("".join(ALPHABET[c - 1] for c in chars))
    return texts


def _conv(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CnnOcr(nn.Module):
    """Convolutions at half resolution, then a 1-D convolutional head: ``T = 20``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv(3, 32), nn.MaxPool2d(2),  # 30x80 -> 15x40
            _conv(32, 64), nn.MaxPool2d(2),  # -> 7x20
            _conv(64, 96), _conv(96, 96),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Conv1d(96 * 7, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Dropout(0.1), nn.Conv1d(192, CLASSES, 1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, 20, CLASSES]``."""
        f = self.features(F.avg_pool2d(x * 2.0 - 1.0, 2))
        return self.head(f.flatten(1, 2)).transpose(1, 2)


class Crnn(nn.Module):
    """Convolutions at half resolution, a bidirectional GRU over ``T = 20`` columns."""

    def __init__(self, hidden: int = 96) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv(3, 32), nn.MaxPool2d(2),  # 30x80 -> 15x40
            _conv(32, 64), nn.MaxPool2d(2),  # -> 7x20
            _conv(64, 96), nn.MaxPool2d((2, 1)),  # -> 3x20
        )  # fmt: skip
        self.project = nn.Linear(96 * 3, hidden)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, 20, CLASSES]``."""
        f = self.features(F.avg_pool2d(x * 2.0 - 1.0, 2))
        seq = F.relu(self.project(f.flatten(1, 2).transpose(1, 2)))
        return self.out(self.rnn(seq)[0])


class LstmOcr(nn.Module):
    """Luma resized to 40x106 (bilinear), a strided 5x5 stem, a BiLSTM over ``T = 26``."""

    def __init__(self, hidden: int = 96) -> None:
        super().__init__()
        self.luma: Tensor
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1))
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),  # 40x106 -> 20x53
            _conv(32, 64), nn.MaxPool2d(2),  # -> 10x26
            _conv(64, 96), nn.MaxPool2d((2, 1)),  # -> 5x26
        )  # fmt: skip
        self.project = nn.Linear(96 * 5, 128)
        self.rnn = nn.LSTM(128, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, 26, CLASSES]``."""
        gray = (x * self.luma).sum(1, keepdim=True) * 2.0 - 1.0
        gray = F.interpolate(gray, size=(40, 106), mode="bilinear", align_corners=False)
        f = self.features(gray)
        seq = F.relu(self.project(f.flatten(1, 2).transpose(1, 2)))
        return self.out(self.rnn(seq)[0])


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "cnn": CnnOcr,
    "crnn": Crnn,
    "lstm": LstmOcr,
}

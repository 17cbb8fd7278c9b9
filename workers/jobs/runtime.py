"""Per-process runtime: device choice, thread count, and models loaded once and kept warm."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from facecloak.settings import get_settings
from models.detection import FaceDetector, load_detector
from models.landmarks106 import Landmarks106
from models.recognizers import Recognizer, load_recognizer

THRESHOLDS_FILE = Path(__file__).resolve().parents[2] / "models" / "thresholds.json"


def device() -> torch.device:
    """The torch device from settings ('auto' picks CUDA when present)."""
    s = get_settings()
    # Denormal floats appear in the surrogates' activations and slow CPU convolutions
    # 10-50x on some batch shapes; flushing them to zero changes no result we report.
    torch.set_flush_denormal(True)
    if s.torch_threads > 0:
        torch.set_num_threads(s.torch_threads)
    if s.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(s.device)


@lru_cache(maxsize=4)
def detector(name: str = "yunet") -> FaceDetector:
    """The face detector, loaded once per process."""
    return load_detector(name)


@lru_cache(maxsize=1)
def landmarks106() -> Landmarks106:
    """The 106-point landmark model, loaded once per process."""
    return Landmarks106()


def recognizer(name: str) -> Recognizer:
    """A recognizer on the runtime device, loaded once per process."""
    return load_recognizer(name, str(device()))


@lru_cache(maxsize=1)
def thresholds() -> dict[str, dict[str, float | str]]:
    """Calibrated match thresholds (see ``facecloak calibrate``), by model name."""
    data: dict[str, dict[str, float | str]] = {}
    for path in (THRESHOLDS_FILE, user_thresholds_file()):
        if path.exists():
            data.update(json.loads(path.read_text())["models"])
    return data


def user_thresholds_file() -> Path:
    """Thresholds calibrated on this machine (user models); they override the shipped ones."""
    return get_settings().cache_dir / "models" / "thresholds.json"


def threshold(name: str) -> float:
    """The model's cosine-similarity threshold at FAR 0.1%."""
    entry = thresholds().get(name)
    if entry is None:
        raise KeyError(f"no calibrated threshold for model {name!r}; run `facecloak calibrate`")
    return float(entry["threshold"])

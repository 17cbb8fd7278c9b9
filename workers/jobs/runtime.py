"""The per-process runtime of the jobs: device, torch global state, models kept warm.

Built once by the process entry point (CLI command, worker, test session) from a
``Settings`` object: ``Runtime(settings)``. The constructor sets torch's global state
(denormal flushing, thread count); models, thresholds and decoy banks load on first use
and stay cached on the instance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facecloak.settings import Settings
from models.detection import Face, FaceDetector, load_detector
from models.dlib_recognizer import DlibRecognizer, load_dlib_recognizer
from models.landmarks106 import Landmarks106
from models.recognizers import Recognizer, load_recognizer
from models.registry import ModelStore

THRESHOLDS_FILE = Path(__file__).resolve().parents[2] / "models" / "thresholds.json"


def choose_device(name: str) -> torch.device:
    """The torch device for a settings value ('auto' picks CUDA when present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Runtime:
    """Settings, model store, device and the models of one process."""

    def __init__(self, settings: Settings, store: ModelStore | None = None) -> None:
        self.settings = settings
        self.store = store or ModelStore(
            settings.cache_dir, settings.model_dir, settings.allow_download
        )
        # Denormal floats appear in the surrogates' activations and slow CPU convolutions
        # 10-50x on some batch shapes; flushing them to zero changes no result we report.
        torch.set_flush_denormal(True)
        if settings.torch_threads > 0:
            torch.set_num_threads(settings.torch_threads)
        self.device = choose_device(settings.device)
        self._detectors: dict[str, FaceDetector] = {}
        self._landmarks: Landmarks106 | None = None
        self._recognizers: dict[str, Recognizer] = {}
        self._evaluation_only: dict[str, bool] = {}
        self._thresholds: dict[str, dict[str, Any]] | None = None
        self.decoy_banks: dict[str, tuple[list[str], np.ndarray]] = {}
        """Decoy faces per model (see :mod:`workers.jobs.decoys`)."""

    @property
    def _threads(self) -> int | None:
        """Threads for the ONNX Runtime sessions: the torch share (None: their default)."""
        return self.settings.torch_threads if self.settings.torch_threads > 0 else None

    @property
    def max_pixels(self) -> int:
        """Largest photo accepted, in pixels."""
        return self.settings.max_pixels

    @property
    def min_face_size(self) -> int:
        """Smallest face protected by default (box side, pixels)."""
        return self.settings.min_face_size

    def detector(self, name: str = "yunet") -> FaceDetector:
        """The face detector ``name``, loaded once."""
        if name not in self._detectors:
            self._detectors[name] = load_detector(name, self.store, self._threads)
        return self._detectors[name]

    def detect(self, rgb: np.ndarray, min_face_size: float | None = None) -> list[Face]:
        """Every face of ``rgb`` (faces down to ``min_face_size``, default from settings)."""
        size = self.min_face_size if min_face_size is None else min_face_size
        return self.detector().detect(rgb, min_face_size=size)

    def landmarks106(self) -> Landmarks106:
        """The 106-point landmark model, loaded once."""
        if self._landmarks is None:
            self._landmarks = Landmarks106(self.store.path("2d106det"), self._threads)
        return self._landmarks

    def recognizer(self, name: str) -> Recognizer:
        """The recognizer ``name`` on the runtime device, loaded once."""
        if name not in self._recognizers:
            self._recognizers[name] = load_recognizer(name, self.store, str(self.device))
        return self._recognizers[name]

    def is_evaluation_only(self, name: str) -> bool:
        """Whether recognizer ``name`` runs outside PyTorch (a judge, never attacked)."""
        if name not in self._evaluation_only:  # asked on every embedding: look it up once
            self._evaluation_only[name] = self.store.spec(name).evaluation_only
        return self._evaluation_only[name]

    def dlib_recognizer(self, name: str) -> DlibRecognizer:
        """The evaluation-only dlib recognizer ``name``, loaded once."""
        return load_dlib_recognizer(name, self.store)

    def user_thresholds_file(self) -> Path:
        """Thresholds calibrated on this machine (user models); they override shipped ones."""
        return self.store.models_dir / "thresholds.json"

    def thresholds(self) -> dict[str, dict[str, Any]]:
        """Calibrated match thresholds (see ``facecloak calibrate``), by model name."""
        if self._thresholds is None:
            data: dict[str, dict[str, Any]] = {}
            for path in (THRESHOLDS_FILE, self.user_thresholds_file()):
                if path.exists():
                    data.update(json.loads(path.read_text())["models"])
            self._thresholds = data
        return self._thresholds

    def reload_thresholds(self) -> None:
        """Forget the cached thresholds (after a calibration wrote new ones)."""
        self._thresholds = None

    def threshold(self, name: str) -> float:
        """The model's cosine-similarity threshold at FAR 0.1%."""
        entry = self.thresholds().get(name)
        if entry is None:
            raise KeyError(f"no calibrated threshold for model {name!r}; run `facecloak calibrate`")
        return float(entry["threshold"])

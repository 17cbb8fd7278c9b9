"""Backdoor scans and augmentations: wrong files at the door, bad content per item."""

from __future__ import annotations

from .core import Case, F
from .inputs import pickled_npz, png, zip_of
from .probe import Probe


def model_cases(p: Probe) -> list[Case]:
    """Backdoor scans and augmentations: wrong files at the door, bad content per item."""
    flat = png(8, 8)
    data = zip_of([("0/a.png", flat), ("1/b.png", flat)])
    cases = [
        Case("model is an archive", "POST /v1/backdoor-scans", 415, "unsupported_format",
             lambda: p.post("/v1/backdoor-scans", [F("m.onnx", data, "model")])),
        Case("model is an archive", "POST /v1/augmentations", 415, "unsupported_format",
             lambda: p.post("/v1/augmentations", [F("m.onnx", data, "model"),
                                                  F("d.zip", data, "data")])),
        Case("samples neither npz nor zip", "POST /v1/backdoor-scans", 415, "unsupported_format",
             lambda: p.post("/v1/backdoor-scans", [F("m.onnx", b"x", "model"),
                                                   F("s.npz", b"plain text", "samples")])),
        Case("data neither npz nor zip", "POST /v1/augmentations", 415, "unsupported_format",
             lambda: p.post("/v1/augmentations", [F("m.onnx", b"x", "model"),
                                                  F("d.zip", b"plain text", "data")])),
        Case("model not ONNX", "POST /v1/backdoor-scans", 202, "invalid_model",
             lambda: p.submit_item("/v1/backdoor-scans", [F("m.onnx", b"not onnx", "model")]),
             stage="item"),
        Case("model not ONNX", "POST /v1/augmentations", 202, "invalid_model",
             lambda: p.submit_item("/v1/augmentations", [F("m.onnx", b"not onnx", "model"),
                                                         F("d.zip", data, "data")]),
             stage="item"),
    ]  # fmt: skip
    onnx = p.onnx
    if onnx is None:
        return cases
    slip = zip_of([("../../evil/a.png", flat), ("1/b.png", flat)])
    nested = zip_of([("0/inner.zip", zip_of([("a.png", flat)])), ("1/b.png", flat)])
    scan = {"cleanse": "false", "iterations": "1", "blanks": "1", "noise": "1"}
    cases += [
        Case("zip slip (../ entry)", "POST /v1/augmentations", 202, "unsafe_path",
             lambda: p.submit_item("/v1/augmentations", [F("m.onnx", onnx, "model"),
                                                         F("d.zip", slip, "data")]),
             stage="item"),
        Case("nested zip", "POST /v1/augmentations", 202, "invalid_layout",
             lambda: p.submit_item("/v1/augmentations", [F("m.onnx", onnx, "model"),
                                                         F("d.zip", nested, "data")]),
             stage="item"),
        Case("npz with pickled objects", "POST /v1/augmentations", 202, "invalid_data",
             lambda: p.submit_item("/v1/augmentations", [F("m.onnx", onnx, "model"),
                                                         F("d.npz", pickled_npz(), "data")]),
             stage="item"),
        Case("nested zip", "POST /v1/backdoor-scans", 202, "invalid_samples",
             lambda: p.submit_item("/v1/backdoor-scans", [
                 F("m.onnx", onnx, "model"),
                 F("s.zip", zip_of([("inner.zip", zip_of([("a.png", flat)]))]), "samples")],
                 scan), stage="item"),
        Case("npz with pickled objects", "POST /v1/backdoor-scans", 202, "invalid_samples",
             lambda: p.submit_item("/v1/backdoor-scans", [F("m.onnx", onnx, "model"),
                                                          F("s.npz", pickled_npz(), "samples")],
                                   scan), stage="item"),
    ]  # fmt: skip
    return cases

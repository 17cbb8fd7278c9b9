"""Our CTC OCR models of text CAPTCHAs: architectures, the alphabet, shipped weights."""

from models.ocr.architectures import ALPHABET, ARCHITECTURES, CLASSES, decode, encode
from models.ocr.store import WEIGHTS_DIR, available, load_manifest, load_ocr, save_weights

__all__ = [
    "ALPHABET",
    "ARCHITECTURES",
    "CLASSES",
    "WEIGHTS_DIR",
    "available",
    "decode",
    "encode",
    "load_manifest",
    "load_ocr",
    "save_weights",
]

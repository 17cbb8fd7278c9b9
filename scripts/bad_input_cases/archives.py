"""Zips of photos: unsafe paths, links, nesting, bombs, corruption."""

from __future__ import annotations

import gzip
from functools import partial

from .core import Case
from .inputs import encrypted_zip, png, symlink_zip, zip_of
from .probe import Probe


def zip_cases(p: Probe) -> list[Case]:
    """Zips of photos (``/v1/protect``): unsafe paths, links, nesting, bombs, corruption."""
    flat = png()
    lim = p.limits
    side = max(64 * 1024, min(lim.max_upload_bytes // 2, 8 * 1024 * 1024))
    bomb = zip_of([("bomb.png", b"\0" * side)], deflate=True)
    entries = [(f"p{i}.png", b"") for i in range(lim.zip_max_entries + 1)]
    cases = [
        ("zip slip (../ entry)", 422, "zip_unsafe_path", zip_of([("../../evil.png", flat)])),
        ("zip absolute path entry", 422, "zip_unsafe_path", zip_of([("/etc/evil.png", flat)])),
        ("zip symlink entry", 422, "zip_unsafe_path", symlink_zip()),
        ("nested zip", 422, "zip_nested_archive",
         zip_of([("inner.zip", zip_of([("a.png", flat)]))])),
        ("zip bomb (compression ratio)", 413, "zip_bomb", bomb),
        ("zip with too many entries", 413, "zip_too_many_entries", zip_of(entries)),
        ("corrupt zip", 422, "zip_corrupt", b"PK\x03\x04" + b"\x14\x00" * 40),
        ("zip without photos", 422, "zip_empty", zip_of([("readme/", b"")])),
        ("encrypted zip entry", 422, "zip_encrypted", encrypted_zip()),
    ]  # fmt: skip
    out = [
        Case(name, "POST /v1/protect", status, code, partial(p.protect, [("photos.zip", data)]))
        for name, status, code, data in cases
    ]  # fmt: skip
    out += [
        Case("zip beside a photo", "POST /v1/protect", 422, "zip_not_alone",
             lambda: p.protect([("a.png", flat), ("photos.zip", zip_of([("b.png", flat)]))])),
        Case("gzip archive", "POST /v1/protect", 415, "unsupported_archive",
             lambda: p.protect([("photos.tar.gz", gzip.compress(flat))])),
    ]  # fmt: skip
    return out

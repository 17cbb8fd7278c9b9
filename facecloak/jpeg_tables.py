"""Re-save a JPEG with its own quantisation tables and chroma subsampling.

A decoded JPEG re-encoded with the tables it was made with comes back nearly unchanged
(its DCT coefficients round to the same quantised values), so only what the protection
changed differs from the upload, and the file keeps the upload's size. A re-save at a
fixed quality instead re-quantises the whole photo: at q95 that alone costs a face about
as much FLIP as a third of a JPEG q75 re-save.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, JpegImagePlugin

_MAX_TABLES = 4  # what a baseline JPEG (and Pillow's encoder) allows


@dataclass(frozen=True)
class JpegTables:
    """The quantisation tables (zig-zag order, as Pillow reads them) and subsampling."""

    tables: tuple[tuple[int, ...], ...]
    subsampling: int
    """Pillow's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0."""


def read_tables(im: Image.Image) -> JpegTables | None:
    """The tables of an opened Pillow JPEG in YCbCr or grey; None for anything else
    (CMYK, unreadable tables), which is then saved at the fixed quality."""
    if im.format != "JPEG" or im.mode not in ("RGB", "L"):
        return None
    quant = getattr(im, "quantization", None)
    if not quant or len(quant) > _MAX_TABLES:
        return None
    tables = tuple(tuple(int(v) for v in quant[k]) for k in sorted(quant))
    if any(len(t) != 64 for t in tables):
        return None
    sampling = JpegImagePlugin.get_sampling(im) if im.mode == "RGB" else 0
    return JpegTables(tables, sampling if sampling in (0, 1, 2) else 0)


def save_params(tables: JpegTables | None, quality: int) -> dict[str, object]:
    """Pillow ``save`` parameters: the original tables when known, else ``quality`` 4:4:4."""
    if tables is None:
        return {"quality": quality, "subsampling": 0, "optimize": True}
    return {
        "qtables": [list(t) for t in tables.tables],
        "subsampling": tables.subsampling,
        "optimize": True,
    }

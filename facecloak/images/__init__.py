"""Safe photo decoding and re-encoding (numpy + Pillow only; the web gateway uses it too).

Every refusal is an :class:`ImageError` with a machine-readable ``code``:

- ``not_an_image``: the bytes are not a picture at all.
- ``corrupt_image``: a picture format was recognised but the data is damaged or truncated.
- ``too_many_pixels``: the header announces more than ``max_pixels`` (checked before any
  pixel is decoded, so decompression bombs cost nothing).
- ``animated_image``: several frames (animated GIF/PNG/WebP, multi-page TIFF).
- ``unsupported_format``: a picture, but not JPEG, PNG, WebP, BMP or TIFF.

The format is always decided from the content, never from a file name. Decoded pixels are
8-bit RGB with the EXIF orientation applied; alpha is kept apart. Encoding writes the same
format back with no EXIF/GPS/XMP/comments (the ICC profile is kept), so the output displays
exactly like the input.

``header``: opening the bytes, header facts and refusals (:func:`image_info`,
:func:`check_image`); ``decode``: :func:`decode_image`; ``encode``: :func:`encode_image`.
"""

from facecloak.images.decode import DecodedImage, decode_image
from facecloak.images.encode import encode_image
from facecloak.images.header import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    ImageError,
    ImageInfo,
    check_image,
    image_info,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "DecodedImage",
    "ImageError",
    "ImageInfo",
    "check_image",
    "decode_image",
    "encode_image",
    "image_info",
]

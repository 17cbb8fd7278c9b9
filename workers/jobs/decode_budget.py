"""A cap on what a job's image reader may hold once decoded, checked before each decode.

A zip of images is small on the wire but large in memory: a PNG of 4096x4096 zeros is a few
kilobytes compressed and 200 MB as float32 ``[C, H, W]``. The readers of the augmentation
data set and of the backdoor scan's samples therefore open each image lazily (its header
only), :meth:`DecodeBudget.charge` its declared size, and decode it only when the running
total stays within the limit.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_DECODED_BYTES = 512 * 1024 * 1024
"""The most one job's images may take once decoded (float32, 4 bytes a value)."""


class DecodeBudget:
    """Running total of the bytes the images read so far take once decoded.

    ``refuse(message)`` builds the caller's error (its own type and code); it is raised by
    :meth:`charge` when the next image would pass ``limit``.
    """

    def __init__(
        self, limit: int, refuse: Callable[[str], Exception], bytes_per_value: int = 4
    ) -> None:
        self.limit = limit
        self.used = 0
        self._refuse = refuse
        self._bytes_per_value = bytes_per_value

    def charge(self, name: str, width: int, height: int, channels: int) -> None:
        """Count one image of the declared size before it is decoded; refuse it past the limit."""
        need = max(width, 0) * max(height, 0) * max(channels, 1) * self._bytes_per_value
        self.charge_bytes(f"{name} ({width}x{height})", need)

    def charge_bytes(self, name: str, size: int) -> None:
        """Count ``size`` bytes (e.g. an npz array's declared size); refuse past the limit."""
        if self.used + size > self.limit:
            raise self._refuse(
                f"{name} would bring the decoded data to {self.used + size} bytes; "
                f"the limit is {self.limit}"
            )
        self.used += size

"""A zip written as it is sent: one entry in memory at a time, never the whole archive."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Iterator


class _Sink:
    """A write-only, unseekable file that hands out what was written to it."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here."""

    def close(self) -> None:
        """Nothing to release."""

    def take(self) -> bytes:
        """What was written since the last call."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def stream_zip(entries: Iterable[tuple[str, Callable[[], bytes]]]) -> Iterator[bytes]:
    """Yield a stored (uncompressed) zip of ``entries`` (name, loader) chunk by chunk.

    Each loader runs only when its entry is written, so at most one entry's bytes are held.
    The sink cannot seek, so sizes and CRCs follow each entry in a data descriptor.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for name, load in entries:
            archive.writestr(name, load())
            yield sink.take()
    yield sink.take()  # the central directory

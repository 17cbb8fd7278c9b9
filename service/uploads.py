"""Turn the uploaded ``files`` parts (photos, or one zip of photos) into checked photos.

Everything is decided from the bytes, never from names or declared content types. Limits
(each a setting): bytes per upload, pixels per photo, photos per batch, accepted formats,
and for zips: entry count, entry and total size, compression ratio (bombs), no absolute or
``..`` paths, no links, no nested archives.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
from dataclasses import dataclass

from facecloak.contract.options import JobError
from facecloak.images import ImageError, check_image
from facecloak.settings import Settings
from service.errors import ApiError

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_ARCHIVE_MAGIC = (
    (0, b"PK\x03\x04"),
    (0, b"PK\x05\x06"),
    (0, b"\x1f\x8b"),
    (0, b"BZh"),
    (0, b"\xfd7zXZ\x00"),
    (0, b"7z\xbc\xaf\x27\x1c"),
    (0, b"Rar!"),
    (257, b"ustar"),
)
_ARCHIVE_EXT = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
_IMAGE_STATUS = {"too_many_pixels": 413, "corrupt_image": 422}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass
class Photo:
    """One accepted upload: bytes and a safe name, or the reason it was refused."""

    filename: str
    data: bytes
    media_type: str | None = None
    error: JobError | None = None
    status: int = 200
    size: tuple[int, int] | None = None
    """Width and height as displayed (EXIF orientation applied), once checked."""


def is_archive(data: bytes) -> bool:
    """True for zip, gzip, bzip2, xz, 7z, rar or tar content."""
    return any(data[off : off + len(magic)] == magic for off, magic in _ARCHIVE_MAGIC)


def is_zip(data: bytes) -> bool:
    """True for zip content."""
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def safe_name(name: str, index: int) -> str:
    """The base name with only plain characters, never empty, at most 120 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE_NAME.sub("_", base).strip(" .")[:120]
    return base or f"photo-{index}"


def _unique(names: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        stem, dot, ext = name.rpartition(".")
        while candidate.lower() in seen:
            n += 1
            candidate = f"{stem}-{n}.{ext}" if dot else f"{name}-{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def _unsafe_path(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (
        name.startswith(("/", "\\"))
        or "\\" in name
        or re.match(r"^[A-Za-z]:", name) is not None
        or ".." in parts
        or "\x00" in name
    )


def unzip(data: bytes, settings: Settings) -> list[tuple[str, bytes]]:
    """The photos inside a zip, after every safety check (raises :class:`ApiError`)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ApiError(422, "zip_corrupt", f"the zip file cannot be read: {exc}") from exc
    if len(infos) > settings.zip_max_entries:
        raise ApiError(
            413,
            "zip_too_many_entries",
            f"the zip has {len(infos)} entries; the limit is {settings.zip_max_entries}",
        )
    out: list[tuple[str, bytes]] = []
    total = 0
    for info in infos:
        if not _is_photo_entry(info, settings):
            continue
        content = _read_entry(archive, info, settings)
        total += len(content)
        if total > settings.max_request_bytes:
            raise ApiError(
                413, "zip_too_large", f"the zip expands past {settings.max_request_bytes} bytes"
            )
        out.append((info.filename, content))
        if len(out) > settings.max_batch_photos:
            raise ApiError(
                413, "too_many_photos", f"more than {settings.max_batch_photos} photos in one job"
            )
    return out


def _nested_archive(name: str) -> ApiError:
    return ApiError(
        422,
        "zip_nested_archive",
        f"zip entry {name!r} is an archive; nested archives are not accepted",
        {"entry": name},
    )


def _is_photo_entry(info: zipfile.ZipInfo, settings: Settings) -> bool:
    """False for folders and hidden files; raises for unsafe, encrypted or bomb-like entries."""
    name = info.filename
    if _unsafe_path(name):
        message = f"zip entry {name!r} points outside the archive"
        raise ApiError(422, "zip_unsafe_path", message, {"entry": name})
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ApiError(422, "zip_unsafe_path", f"zip entry {name!r} is a link", {"entry": name})
    if info.is_dir() or name.startswith("__MACOSX/") or safe_name(name, 0).startswith("."):
        return False
    if info.flag_bits & 0x1:
        raise ApiError(422, "zip_encrypted", f"zip entry {name!r} is encrypted")
    if name.lower().endswith(_ARCHIVE_EXT):
        raise _nested_archive(name)
    if info.file_size > settings.max_upload_bytes:
        raise ApiError(
            413,
            "zip_entry_too_large",
            f"zip entry {name!r} is "
            f"{info.file_size} bytes; the limit is {settings.max_upload_bytes}",
        )
    if info.file_size > settings.zip_max_ratio * max(info.compress_size, 1) + 1024:
        raise ApiError(
            413,
            "zip_bomb",
            f"zip entry {name!r} expands "
            f"{info.file_size / max(info.compress_size, 1):.0f}x; the limit is "
            f"{settings.zip_max_ratio:.0f}x",
        )
    return True


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, settings: Settings) -> bytes:
    """An entry's bytes, read no further than the per-file limit; no archives inside."""
    name = info.filename
    try:
        with archive.open(info) as fh:
            content = fh.read(settings.max_upload_bytes + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ApiError(422, "zip_corrupt", f"zip entry {name!r} cannot be read: {exc}") from exc
    if len(content) > settings.max_upload_bytes:
        raise ApiError(
            413,
            "zip_entry_too_large",
            f"zip entry {name!r} is larger than {settings.max_upload_bytes} bytes",
        )
    if is_archive(content):
        raise _nested_archive(name)
    return content


def check_photo(name: str, data: bytes, settings: Settings) -> Photo:
    """Check format (by content) and pixel count; a refusal is kept on the photo."""
    allowed = {f.strip().upper() for f in settings.allowed_formats.split(",") if f.strip()}
    try:
        info = check_image(data, settings.max_pixels)
    except ImageError as exc:
        return Photo(
            name,
            b"",
            error=JobError(code=exc.code, message=exc.message),
            status=_IMAGE_STATUS.get(exc.code, 415),
        )
    if info.format not in allowed or info.format not in MEDIA_TYPES:
        return Photo(
            name,
            b"",
            status=415,
            error=JobError(
                code="unsupported_format",
                message=f"{info.format} is not accepted; send one of {', '.join(sorted(allowed))}",
            ),
        )
    return Photo(name, data, MEDIA_TYPES[info.format], size=(info.width, info.height))


def collect(files: list[tuple[str, bytes]], settings: Settings) -> list[Photo]:
    """Expand one zip, apply the batch limit, check every photo.

    A refused photo in a batch stays as a failed item (the others are processed); when no
    photo is acceptable the first refusal is raised as the request's error.
    """
    if not files:
        raise ApiError(422, "no_files", "send one or more photos (or one zip) in 'files'")
    for name, data in files:
        if len(data) > settings.max_upload_bytes:
            raise ApiError(
                413,
                "file_too_large",
                f"{safe_name(name, 0)!r} is {len(data)} bytes; "
                f"the limit is {settings.max_upload_bytes}",
            )
    if any(is_zip(data) for _, data in files):
        if len(files) > 1:
            raise ApiError(422, "zip_not_alone", "send either photos or one zip, not both")
        files = unzip(files[0][1], settings)
        if not files:
            raise ApiError(422, "zip_empty", "the zip holds no photos")
    elif any(is_archive(data) for _, data in files):
        raise ApiError(415, "unsupported_archive", "only zip archives are accepted")
    if len(files) > settings.max_batch_photos:
        raise ApiError(
            413,
            "too_many_photos",
            f"{len(files)} photos; the limit per job is {settings.max_batch_photos}",
        )
    names = _unique([safe_name(n, i) for i, (n, _) in enumerate(files)])
    photos = [check_photo(n, d, settings) for n, (_, d) in zip(names, files, strict=True)]
    if all(p.error for p in photos):
        first = photos[0]
        assert first.error is not None
        raise ApiError(first.status, first.error.code, f"{first.filename}: {first.error.message}")
    return photos

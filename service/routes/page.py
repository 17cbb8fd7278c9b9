"""The web page: ``/`` and its static files (plain HTML, JS, CSS; no build step).

The page talks to the public API only (same origin) with the API key the user types in;
nothing secret is in these files. Only files that ship in ``service/static/`` with a known
type are served, read once at start.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Response

from service.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(html|js|css|svg)$")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _load() -> dict[str, bytes]:
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in STATIC_DIR.iterdir() if _NAME.match(p.name)}


FILES = _load()


def _serve(name: str) -> Response:
    body = FILES.get(name)
    if body is None:
        raise ApiError(404, "not_found", f"no static file {name!r}")
    media_type = MEDIA_TYPES[Path(name).suffix]
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
def index() -> Response:
    """The page: upload photos, watch progress, compare, read the verdict, download."""
    return _serve("index.html")


@router.get("/static/{name}")
def static(name: str) -> Response:
    """One of the page's files."""
    return _serve(name)

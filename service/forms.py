"""Multipart form parsing beside the routes: the body, uploads, job options, callback URL.

Options are parsed for any job kind's options model: form fields named like the model's
fields, or one JSON ``options`` field, or both (fields win); list fields take
comma-separated values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from facecloak.contract.webhooks import CallbackRefused, resolve_callback
from facecloak.settings import Settings
from service.errors import ApiError
from service.limits import too_large
from service.uploads import safe_name

IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
Options = TypeVar("Options", bound=BaseModel)


TooMany = Callable[[int], ApiError]
"""The route's own answer to a body with more than ``max_files`` file parts (given the limit)."""


def too_many_files(names: Collection[str]) -> TooMany:
    """422 ``too_many_files``: the answer of a route that takes one file per part."""

    def error(limit: int) -> ApiError:
        parts = ", ".join(repr(n) for n in names)
        return ApiError(
            422, "too_many_files", f"send at most {limit} files (one per part: {parts})"
        )

    return error


class _LimitedParser(MultiPartParser):
    """Starlette's multipart parser with a per-file byte limit checked as data arrives and a
    file count that answers with the route's own error (not the parser's 400) past its limit,
    at the first file too many (the rest of the body is not read)."""

    def __init__(
        self, request: Request, max_files: int, max_file_bytes: int, too_many: TooMany
    ) -> None:
        super().__init__(request.headers, request.stream(), max_files=float("inf"), max_fields=100)
        self.file_limit, self.too_many = max_files, too_many
        self.max_file_bytes = max_file_bytes
        # bytes of the current part, reset at each part (a dict keyed by id(part) credited a
        # freed part's size to the next part that reused its id: a spurious file_too_large)
        self._part_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._part_bytes = 0

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        if self._current_part.file is not None and self._current_files > self.file_limit:
            raise self.too_many(self.file_limit)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current_part
        if part.file is not None:
            self._part_bytes += end - start
            if self._part_bytes > self.max_file_bytes:
                name = safe_name(part.file.filename or "", 0)
                raise ApiError(
                    413,
                    "file_too_large",
                    f"{name!r} is larger than the limit of {self.max_file_bytes} bytes",
                )
        super().on_part_data(data, start, end)


async def read_form(
    request: Request, settings: Settings, max_files: int, too_many: TooMany
) -> FormData:
    """The multipart body: 413 past ``max_request_bytes`` (also checked while streaming, by
    :class:`service.limits.BodyLimit`) or a file past ``max_upload_bytes``, ``too_many(limit)``
    past ``max_files`` file parts, 415 for another content type, 400 when malformed."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_request_bytes:
        raise too_large(settings.max_request_bytes, length)
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
    parser = _LimitedParser(request, max_files, settings.max_upload_bytes, too_many)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_request", exc.message) from exc


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes (413 past ``limit``)."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(
            413, "file_too_large", f"{upload.filename!r} is larger than the limit of {limit} bytes"
        )
    return data


async def read_files(form: FormData, name: str, limit: int) -> list[tuple[str, bytes]]:
    """Every ``name`` part as (file name, bytes); 422 when a part is not a file."""
    parts = form.getlist(name)
    if any(not isinstance(p, UploadFile) for p in parts):
        raise ApiError(422, f"invalid_{name}", f"{name!r} parts must be file uploads")
    return [
        (p.filename or "", await read_upload(p, limit)) for p in parts if isinstance(p, UploadFile)
    ]


def _json_options(form: FormData) -> dict[str, Any]:
    text = form.get("options")
    if text is None:
        return {}
    if not isinstance(text, str):
        raise ApiError(422, "invalid_options", "'options' must be a JSON text field")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "invalid_options", f"'options' is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ApiError(422, "invalid_options", "'options' must be a JSON object")
    return raw


def _list_fields(model: type[BaseModel]) -> set[str]:
    return {
        name
        for name, info in model.model_fields.items()
        if getattr(info.annotation, "__origin__", None) is list
    }


def parse_options(form: FormData, model: type[Options], other_fields: Collection[str]) -> Options:
    """``model`` from the form; 422 ``unknown_field`` / ``invalid_options`` otherwise."""
    unknown = sorted(set(form.keys()) - set(model.model_fields) - {"options", *other_fields})
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown form field(s): {', '.join(unknown)}")
    raw = _json_options(form)
    lists = _list_fields(model)
    for name in model.model_fields:
        values = form.getlist(name)
        if any(not isinstance(v, str) for v in values):
            raise ApiError(422, "invalid_options", f"option {name!r} must be a text field")
        if not values:
            continue
        if name in lists:
            raw[name] = [x.strip() for v in values for x in str(v).split(",") if x.strip()]
        else:
            raw[name] = values[-1]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = [{"loc": [str(x) for x in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        raise ApiError(422, "invalid_options", "invalid options", {"errors": errors}) from exc


def check_models(names: list[str], known: Collection[str] | None) -> None:
    """422 ``unknown_model`` for a name that is not a known recognizer (skipped if unknown)."""
    if known is None:
        return
    for name in names:
        if name not in known:
            raise ApiError(
                422,
                "unknown_model",
                f"unknown face recognizer {name!r}; known: {', '.join(sorted(known))}",
                {"model": name},
            )


def callback_url(form: FormData, allowed_hosts: str) -> str | None:
    """The optional ``callback_url``: http(s), resolving only to public addresses unless its
    host is on ``allowed_hosts`` (then only listed hosts); 422 with the refusal's code.

    Resolves the host (blocking): call it from a worker thread in async code.
    """
    url = form.get("callback_url")
    if url is None or url == "":
        return None
    if not isinstance(url, str):
        raise ApiError(422, "invalid_callback_url", "callback_url must be an http(s) URL")
    try:
        resolve_callback(url, allowed_hosts)
    except CallbackRefused as exc:
        raise ApiError(422, exc.code, exc.message) from exc
    return url


FILE_SCHEMA: dict[str, Any] = {"type": "string", "format": "binary"}
"""The OpenAPI schema of a multipart file part (copy it: a shared dict is a YAML alias)."""


def multipart_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A required ``multipart/form-data`` OpenAPI ``requestBody`` (for ``openapi_extra``)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


def option_properties(model: type[BaseModel]) -> dict[str, Any]:
    """An options model's fields as multipart form properties (defaults left out)."""
    props: dict[str, Any] = model.model_json_schema()["properties"]
    return {k: {kk: vv for kk, vv in v.items() if kk != "default"} for k, v in props.items()}


async def read_one_file(
    form: FormData, name: str, limit: int, required: bool
) -> tuple[str, bytes] | None:
    """The single non-empty file part ``name`` (None when absent and not ``required``)."""
    files = await read_files(form, name, limit)
    if len(files) > 1:
        raise ApiError(422, f"invalid_{name}", f"send at most one {name!r} file")
    if not files:
        if required:
            raise ApiError(422, f"missing_{name}", f"the {name!r} file is required")
        return None
    if not files[0][1]:
        raise ApiError(422, f"invalid_{name}", f"the {name!r} file is empty")
    return files[0]

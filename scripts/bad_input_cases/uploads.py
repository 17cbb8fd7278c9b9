"""Uploaded files: not photos, broken photos, bombs, too many, too large."""

from __future__ import annotations

import math
from functools import partial

from .core import CHEAP, Case, F
from .inputs import animated_png, bomb_png, gif, jpeg_header_cut, jpeg_scan_cut, png, zip_of
from .probe import Probe


def upload_cases(p: Probe) -> list[Case]:
    """Files that are not photos, broken photos, bombs, too many files, wrong bodies."""
    name, photo = p.photo
    text = b"just some text, not a picture\n"
    lim = p.limits
    bomb = bomb_png(math.isqrt(lim.max_pixels) + 64)  # just past the limit: a few KB packed
    many = [(f"p{i}.png", png(8, 8)) for i in range(lim.max_batch_photos + 1)]
    flat = png()
    small = png(32, 24)
    multipart = "multipart/form-data"  # no boundary
    flat_zip = zip_of([("0/a.png", flat)])
    return [
        Case("body not multipart (JSON)", "POST /v1/protect", 415, "unsupported_media_type",
             lambda: p.post_json("/v1/protect", '{"files": []}')),
        Case("body not multipart (JSON)", "POST /v1/verify", 415, "unsupported_media_type",
             lambda: p.post_json("/v1/verify", "{}")),
        Case("body not multipart (JSON)", "POST /v1/backdoor-scans", 415,
             "unsupported_media_type", lambda: p.post_json("/v1/backdoor-scans", "{}")),
        Case("body not multipart (JSON)", "POST /v1/augmentations", 415,
             "unsupported_media_type", lambda: p.post_json("/v1/augmentations", "{}")),
        Case("multipart without boundary", "POST /v1/protect", 400, "bad_request",
             lambda: p.post_raw("/v1/protect", b"--x\r\n\r\n", multipart)),
        Case("multipart without boundary", "POST /v1/verify", 400, "bad_request",
             lambda: p.post_raw("/v1/verify", b"--x\r\n\r\n", multipart)),
        Case("no file", "POST /v1/protect", 422, "no_files",
             lambda: p.post_form("/v1/protect", CHEAP)),
        Case("no file", "POST /v1/verify", 422, "missing_file",
             lambda: p.post("/v1/verify", [F(name, photo, "original")])),
        Case("no file", "POST /v1/backdoor-scans", 422, "missing_model",
             lambda: p.post_form("/v1/backdoor-scans", {"seed": "1"})),
        Case("no file", "POST /v1/augmentations", 422, "missing_data",
             lambda: p.post("/v1/augmentations", [F("m.onnx", b"x", "model")])),
        Case("file part sent as a text field", "POST /v1/protect", 422, "invalid_files",
             lambda: p.post_form("/v1/protect", {"files": "photo.jpg"})),
        Case("non-image file", "POST /v1/protect", 415, "not_an_image",
             lambda: p.protect([("photo.jpg", text)])),
        Case("non-image file", "POST /v1/verify", 415, "not_an_image",
             lambda: p.verify(photo, text)),
        Case("zero-byte file", "POST /v1/protect", 415, "not_an_image",
             lambda: p.protect([("photo.jpg", b"")])),
        Case("zero-byte file", "POST /v1/verify", 415, "not_an_image",
             lambda: p.verify(b"", photo)),
        Case("zero-byte file", "POST /v1/backdoor-scans", 422, "invalid_model",
             lambda: p.post("/v1/backdoor-scans", [F("m.onnx", b"", "model")])),
        Case("zero-byte file", "POST /v1/augmentations", 422, "invalid_model",
             lambda: p.post("/v1/augmentations", [F("m.onnx", b"", "model"),
                                                  F("d.zip", flat_zip, "data")])),
        Case("truncated JPEG (header)", "POST /v1/protect", 422, "corrupt_image",
             lambda: p.protect([(name, jpeg_header_cut(photo))])),
        Case("truncated JPEG (header)", "POST /v1/verify", 422, "corrupt_image",
             lambda: p.verify(photo, jpeg_header_cut(photo))),
        Case("truncated JPEG (scan data)", "POST /v1/protect", 202, "corrupt_image",
             lambda: p.submit_item("/v1/protect", [F(name, jpeg_scan_cut(photo))], CHEAP),
             stage="item"),
        Case("truncated JPEG (scan data)", "POST /v1/verify", 422, "corrupt_image",
             lambda: p.verify(photo, jpeg_scan_cut(photo))),
        Case("GIF (unsupported format)", "POST /v1/protect", 415, "unsupported_format",
             lambda: p.protect([("a.gif", gif())])),
        Case("animated PNG", "POST /v1/protect", 415, "animated_image",
             lambda: p.protect([("a.png", animated_png())])),
        Case("decompression bomb PNG", "POST /v1/protect", 413, "too_many_pixels",
             lambda: p.protect([("bomb.png", bomb)])),
        Case("decompression bomb PNG", "POST /v1/verify", 413, "too_many_pixels",
             lambda: p.verify(bomb, bomb)),
        Case("too many files", "POST /v1/protect", 413, "too_many_photos",
             lambda: p.protect(many)),
        Case("too many files", "POST /v1/verify", 422, "too_many_files",
             lambda: p.post("/v1/verify", [F("a.png", flat, "original"),
                                           F("b.png", flat, "protected"),
                                           F("c.png", flat, "extra")])),
        Case("too many files", "POST /v1/backdoor-scans", 422, "invalid_model",
             lambda: p.post("/v1/backdoor-scans", [F("a.onnx", b"x", "model"),
                                                   F("b.onnx", b"y", "model")])),
        Case("too many files (limit + 2)", "POST /v1/protect", 413, "too_many_photos",
             lambda: p.protect([*many, ("extra.png", png(8, 8))])),
        Case("too many files (limit + 2)", "POST /v1/verify", 422, "too_many_files",
             lambda: p.post("/v1/verify", [F(f"{i}.png", flat, "original") for i in range(4)])),
        Case("too many files (limit + 2)", "POST /v1/backdoor-scans", 422, "too_many_files",
             lambda: p.post("/v1/backdoor-scans", [F(f"{i}.onnx", b"x", "model")
                                                   for i in range(5)])),
        Case("too many files (limit + 2)", "POST /v1/augmentations", 422, "too_many_files",
             lambda: p.post("/v1/augmentations", [F(f"{i}.onnx", b"x", "model")
                                                  for i in range(4)])),
        Case("photos of different sizes", "POST /v1/verify", 422, "size_mismatch",
             lambda: p.verify(flat, small)),
        Case("batch with one non-image", "POST /v1/protect", 202, "not_an_image",
             lambda: p.submit_item("/v1/protect", [F("a.png", flat), F("b.jpg", text)],
                                   CHEAP, index=1), stage="item"),
    ]  # fmt: skip


def size_cases(p: Probe) -> list[Case]:
    """Uploads past the per-file and per-request limits, with a length and chunked."""
    lim = p.limits
    big = lim.max_upload_bytes + 1
    declared = lim.max_request_bytes + 1
    n = lim.max_batch_photos + 1  # files the parser takes; each under the per-file limit
    share = min(lim.max_upload_bytes, -(-lim.max_request_bytes // (n - 1)))
    batch = [("files", f"p{i}.png", share) for i in range(n)]
    verify = [("original", "a.jpg", 16), ("protected", "b.jpg", big)]
    cases = [
        Case("oversized file, Content-Length", "POST /v1/protect", 413, "file_too_large",
             lambda: p.stream("/v1/protect", [("files", "big.jpg", big)], chunked=False)),
        Case("oversized file, chunked", "POST /v1/protect", 413, "file_too_large",
             lambda: p.stream("/v1/protect", [("files", "big.jpg", big)], chunked=True)),
        Case("oversized file, Content-Length", "POST /v1/verify", 413, "file_too_large",
             lambda: p.stream("/v1/verify", verify, chunked=False)),
        Case("oversized file, chunked", "POST /v1/verify", 413, "file_too_large",
             lambda: p.stream("/v1/verify", verify, chunked=True)),
        Case("oversized file, chunked", "POST /v1/backdoor-scans", 413, "file_too_large",
             lambda: p.stream("/v1/backdoor-scans", [("model", "m.onnx", big)], chunked=True)),
        Case("oversized file, chunked", "POST /v1/augmentations", 413, "file_too_large",
             lambda: p.stream("/v1/augmentations", [("model", "m.onnx", big)], chunked=True)),
        Case("oversized request, chunked", "POST /v1/protect", 413, "request_too_large",
             lambda: p.stream("/v1/protect", batch, chunked=True)),
    ]  # fmt: skip
    for route in ("/v1/protect", "/v1/verify", "/v1/backdoor-scans", "/v1/augmentations"):
        cases.append(
            Case("oversized request, Content-Length", f"POST {route}", 413, "request_too_large",
                 partial(p.stream, route, [("files", "a.jpg", 1)], False, declared))
        )  # fmt: skip
    return cases

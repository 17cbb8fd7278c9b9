"""Upload checks of the gateway: zips, size and pixel limits, content types, bad options."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service_fixtures import A, err, make_app, png, submit, wait_job, zip_of

JPEG_NAME = "photo.png"


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path)) as c:
        yield c


def test_zip_upload(client: TestClient) -> None:
    photos = {"dir/x.png": png(), "y.png": png(color=(9, 9, 9)), "__MACOSX/._x.png": b"junk"}
    r = submit(client, [("photos.zip", zip_of(photos, zipfile.ZIP_DEFLATED))])
    assert r.status_code == 202, r.text
    assert [i["filename"] for i in r.json()["items"]] == ["x.png", "y.png"]
    assert wait_job(client, r.json()["id"], A)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("entries", "status", "code"),
    [
        ({"../evil.png": png()}, 422, "zip_unsafe_path"),
        ({"/etc/evil.png": png()}, 422, "zip_unsafe_path"),
        ({"a/../../evil.png": png()}, 422, "zip_unsafe_path"),
        ({"inner.zip": zip_of({"a.png": png()})}, 422, "zip_nested_archive"),
        ({"inner.dat": zip_of({"a.png": png()})}, 422, "zip_nested_archive"),
        ({}, 422, "zip_empty"),
    ],
)
def test_unsafe_zips(client: TestClient, entries: dict[str, bytes], status: int, code: str) -> None:
    r = submit(client, [("p.zip", zip_of(entries))])
    assert r.status_code == status and err(r) == code


def test_zip_bomb_and_entry_cap(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, zip_max_entries=3)) as c:
        bomb = zip_of({"a.png": b"\0" * 5_000_000}, zipfile.ZIP_DEFLATED)
        r = submit(c, [("bomb.zip", bomb)])
        assert r.status_code == 413 and err(r) == "zip_bomb"
        many = zip_of({f"{i}.png": png() for i in range(4)})
        r = submit(c, [("many.zip", many)])
        assert r.status_code == 413 and err(r) == "zip_too_many_entries"


def test_limits(tmp_path: Path) -> None:
    app = make_app(
        tmp_path,
        max_upload_bytes=20_000,
        max_pixels=100 * 100,
        max_batch_photos=2,
        max_request_bytes=200_000,
    )
    with TestClient(app) as c:
        r = submit(c, [("big.png", b"\x89PNG" + b"\0" * 30_000)])
        assert r.status_code == 413 and err(r) == "file_too_large"
        r = submit(c, [("wide.png", png(200, 200))])
        assert r.status_code == 413 and err(r) == "too_many_pixels"
        r = submit(c, [(f"{i}.png", png()) for i in range(3)])
        assert r.status_code == 413 and err(r) == "too_many_photos"
        r = c.post(
            "/v1/protect",
            headers={
                **A,
                "Content-Length": "999999999",
                "Content-Type": "multipart/form-data; boundary=x",
            },
            content=b"",
        )
        assert r.status_code == 413 and err(r) == "request_too_large"


def test_content_types(client: TestClient) -> None:
    r = client.post("/v1/protect", headers=A, json={"files": []})
    assert r.status_code == 415 and err(r) == "unsupported_media_type"
    r = submit(client, [("photo.jpg", b"%PDF-1.4 hello")])
    assert r.status_code == 415
    gif = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(gif, "GIF")
    r = submit(client, [("photo.jpg", gif.getvalue())])
    assert r.status_code == 415 and err(r) == "unsupported_format"
    r = submit(client, [("x.gz", b"\x1f\x8b\x08\x00" + b"\0" * 20)])
    assert r.status_code == 415 and err(r) == "unsupported_archive"
    multipart = {**A, "Content-Type": "multipart/form-data; boundary=zz"}
    r = client.post("/v1/protect", headers=multipart, content=b"garbage")
    assert r.status_code in (400, 422) and "error" in r.json()


def test_invalid_requests(client: TestClient) -> None:
    cases = [
        ({"steps": "0"}, "invalid_options"),
        ({"strength": "extreme"}, "invalid_options"),
        ({"bogus": "1"}, "unknown_field"),
        ({"options": "{not json"}, "invalid_options"),
        ({"surrogates": "no_such_model"}, "unknown_model"),
        ({"surrogates": "w600k_mbf,dlib_resnet"}, "invalid_options"),  # a judge, not attackable
        ({"callback_url": "ftp://example.invalid/x"}, "invalid_callback_url"),
    ]
    for data, code in cases:
        r = submit(client, [(JPEG_NAME, png())], data=data)
        assert r.status_code == 422 and err(r) == code, (data, r.text)
    r = client.post(
        "/v1/protect",
        headers=A,
        data={"steps": "3"},
        files=[("other", ("a.png", png(), "image/png"))],
    )
    assert r.status_code == 422 and err(r) == "unknown_field"
    r = client.get("/v1/jobs?limit=0", headers=A)
    assert r.status_code == 422 and err(r) == "invalid_request"

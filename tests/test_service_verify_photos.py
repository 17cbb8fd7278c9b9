"""``POST /v1/verify`` over HTTP with real face photos and the real verifier (models, no
stand-in): photos of different sizes get a clear 4xx, never a 500; a matching pair gets
the table."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from facecloak.settings import Settings
from models.registry import ModelStore
from service.app import create_app
from tests.helpers import runtime_for, shared_photo
from tests.service_fixtures import A, err
from tests.service_fixtures import settings as service_settings

pytestmark = pytest.mark.slow


def _jpeg(photo: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    photo.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(
    settings: Settings, model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    from workers.handlers import build_verifier, recognizer_names

    runtime = runtime_for(settings, model_store)
    app = create_app(
        service_settings(tmp_path_factory.mktemp("verify")),
        verifier=build_verifier(runtime),
        known_models=recognizer_names(model_store),
    )
    with TestClient(app) as c:
        yield c


def _post(c: TestClient, original: bytes, protected: bytes) -> httpx.Response:
    files = [("original", ("o.jpg", original)), ("protected", ("p.jpg", protected))]
    return c.post("/v1/verify", headers=A, files=files, data={"models": "w600k_mbf"})


def test_photos_of_different_sizes_get_a_clear_4xx(client: TestClient) -> None:
    face = Image.open(shared_photo("test", "obama__examples_obama.jpg"))
    other = Image.open(shared_photo("test", "biden__examples_biden.jpg"))
    original = _jpeg(face)
    smaller = _jpeg(face.resize((face.width * 3 // 4, face.height * 3 // 4)))
    cropped = _jpeg(face.crop((0, 0, face.width, face.height - 10)))
    for protected in (smaller, cropped, _jpeg(other)):
        r = _post(client, original, protected)
        assert r.status_code == 422 and err(r) == "size_mismatch", r.text
        details = r.json()["error"]["details"]
        assert details["original"] == [face.width, face.height]


def test_a_real_pair_of_the_same_size_gets_the_table(client: TestClient) -> None:
    face = Image.open(shared_photo("test", "obama__examples_obama.jpg"))
    r = _post(client, _jpeg(face, 95), _jpeg(face, 70))
    assert r.status_code == 200, r.text
    table = r.json()
    assert len(table["faces"]) >= 1 and "w600k_mbf" in table["thresholds"]

"""The web page in a real browser (headless Debian chromium + chromedriver, driven by
selenium) against a real embedded gateway running the real protect job.

Without chromium the tests skip, except under ``CI=true`` where a missing browser fails
(``.ci/run`` installs it). A screenshot of the finished page is saved under the test's tmp
folder and, when ``FACECLOAK_SCREENSHOT_DIR`` is set, there too (``docs/web-page.png``).
The photo is the pinned public-domain sample, so this runs without the shared photos.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from facecloak.settings import Settings
from models.registry import ModelStore
from models.samples import sample_path

from .helpers import runtime_for
from .service_fixtures import live_server, png
from .service_fixtures import settings as gateway_settings

BROWSER_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,900",
)
JOB_TIMEOUT = 600


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


def _browser_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        _missing(
            "chromium and chromium-driver not installed (apt-get install chromium chromium-driver)"
        )
    assert browser and driver
    return browser, driver


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    browser, driver_path = _browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    chrome.set_script_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()


UPLOAD_LIMIT = 3_000_000
"""Per-photo upload limit of the test gateway (the sample photo is ~0.8 MB)."""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, model_store: ModelStore
) -> Iterator[str]:
    """An embedded gateway with the real protect job and verifier, served by uvicorn."""
    from service.app import create_app
    from workers.handlers import build_handlers, build_verifier, recognizer_names

    runtime = runtime_for(settings, model_store)
    app = create_app(
        gateway_settings(tmp_path_factory.mktemp("gateway"), max_upload_bytes=UPLOAD_LIMIT),
        handlers=build_handlers(runtime),
        verifier=build_verifier(runtime),
        known_models=recognizer_names(model_store),
    )
    with live_server(app) as url:
        yield url


def _fill(chrome: Any, key: str, photo: Path, preset: str = "medium") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    field = chrome.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)
    chrome.find_element(By.ID, "photos").send_keys(str(photo))
    Select(chrome.find_element(By.ID, "preset")).select_by_value(preset)
    chrome.find_element(By.ID, "submit").click()


def _message(chrome: Any, timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    box = chrome.find_element(By.ID, "message")
    WebDriverWait(chrome, timeout).until(lambda _: box.is_displayed() and box.text.strip())
    text: str = box.text
    return text


def test_page_is_served_with_its_files(gateway: str) -> None:
    page = httpx.get(gateway + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/app.js"' in page.text and "key-a" not in page.text
    for name in ("app.js", "compare.js", "words.js", "style.css"):
        assert httpx.get(f"{gateway}/static/{name}").status_code == 200, name
    assert httpx.get(gateway + "/static/..%2Fapp.py").status_code == 404
    assert httpx.get(gateway + "/static/nope.js").status_code == 404


def test_a_wrong_key_is_explained(driver: Any, gateway: str, tmp_path: Path) -> None:
    photo = tmp_path / "small.png"
    photo.write_bytes(png())
    driver.get(gateway + "/")
    _fill(driver, "not-a-key", photo)
    text = _message(driver)
    assert "API key was not accepted" in text and "invalid_api_key" in text


def test_a_non_image_is_explained(driver: Any, gateway: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is not a photo\n")
    driver.get(gateway + "/")
    _fill(driver, "key-a", notes)
    text = _message(driver)
    assert "not_an_image" in text or "unsupported_format" in text, text


def test_a_photo_over_the_upload_limit_is_explained(
    driver: Any, gateway: str, tmp_path: Path
) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100, 3), dtype=np.uint8)
    big = tmp_path / "big.png"
    Image.fromarray(noise).save(big)  # random pixels do not compress: > 3 MB
    assert big.stat().st_size > UPLOAD_LIMIT
    driver.get(gateway + "/")
    _fill(driver, "key-a", big)
    text = _message(driver)
    assert "too large" in text and "too_large" in text, text


def test_a_photo_without_a_face_is_explained(driver: Any, gateway: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ramp = np.tile(np.linspace(40, 220, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    plain = tmp_path / "wall.png"
    Image.fromarray(ramp).save(plain)
    driver.get(gateway + "/")
    _fill(driver, "key-a", plain)
    row = WebDriverWait(driver, 120).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#items li.no_face")
    )
    assert "no face found" in row.text and "wall.png" in row.text
    # the key and the chosen photo are still in the form for the next try
    assert driver.find_element(By.ID, "api-key").get_attribute("value") == "key-a"


def _screenshot(chrome: Any, tmp_path: Path) -> Path:
    height = chrome.execute_script("return document.documentElement.scrollHeight")
    chrome.set_window_size(1200, min(int(height) + 40, 6000))
    chrome.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "web-page.png"
    assert chrome.save_screenshot(str(shot))
    target = os.environ.get("FACECLOAK_SCREENSHOT_DIR")
    if target:  # a 256-colour copy keeps docs/web-page.png small
        Path(target).mkdir(parents=True, exist_ok=True)
        with Image.open(shot) as im:
            im.convert("RGB").quantize(256).save(Path(target) / "web-page.png", optimize=True)
    return shot


@pytest.mark.slow
def test_protect_a_photo_in_the_browser(
    driver: Any, gateway: str, tmp_path: Path, model_store: ModelStore
) -> None:
    """The pinned public-domain sample, so the screenshot may go into docs/."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = sample_path(model_store)
    driver.get(gateway + "/")
    _fill(driver, "key-a", photo, preset="strong")
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#items progress").is_displayed()
    )
    WebDriverWait(driver, JOB_TIMEOUT).until(
        lambda d: d.find_element(By.ID, "result-list").get_attribute("data-ready") == "true"
    )
    assert "Done" in _message(driver), _message(driver)
    loaded = "return [...arguments[0]].map(i => i.complete && i.naturalWidth > 0)"
    images = driver.find_elements(By.CSS_SELECTOR, ".result .compare img")
    assert len(images) == 2 and all(driver.execute_script(loaded, images))
    slider = driver.find_element(By.CSS_SELECTOR, ".comparison input[type=range]")
    slider.send_keys("\ue012")  # arrow left: the slider answers the keyboard
    assert slider.get_attribute("value") == "49"
    assert driver.find_elements(By.CSS_SELECTOR, ".faces canvas")  # faces at 100%
    heat = driver.find_element(By.CSS_SELECTOR, ".heatmap figcaption").text
    assert "computed in your browser" in heat
    verdicts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".verdict .sentence")]
    assert verdicts and all("recognises" in v for v in verdicts), verdicts
    assert any(v.startswith(("ArcFace", "SFace", "FaceNet")) for v in verdicts), verdicts
    link = driver.find_element(By.CSS_SELECTOR, ".result a[download]")
    assert link.get_attribute("download") == photo.name
    assert link.get_attribute("href").startswith("blob:")
    shot = _screenshot(driver, tmp_path)
    assert shot.stat().st_size > 10_000

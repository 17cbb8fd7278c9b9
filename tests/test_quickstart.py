"""A newcomer's first commands: the README quickstart on the pinned sample photo, and a
test run that works in a fresh clone without the shared photos beside it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facecloak.cli import _progress_printer, build_parser, main
from models.registry import ModelStore, sha256_file
from models.samples import ASTRONAUT, sample_path

from .helpers import REPO


def _quickstart() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## Quickstart\n(.*?)^## ", text, re.S | re.M)
    assert match, "README has no Quickstart section"
    return match.group(1)


def test_readme_quickstart_needs_nothing_beside_the_clone() -> None:
    section = _quickstart()
    commands = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert commands[0].startswith("./scripts/setup && ") and "--sample" in commands[0]
    assert "../shared" not in commands[0]
    assert commands[1] == "./scripts/test"
    assert "public domain" in section and ASTRONAUT.version in section


def test_sample_is_the_pinned_file(model_store: ModelStore) -> None:
    path = sample_path(model_store)
    assert sha256_file(path) == ASTRONAUT.sha256
    assert path.name == "astronaut.png" and path.stat().st_size > 100_000


def test_a_tampered_cached_sample_is_replaced(model_store: ModelStore, tmp_path: Path) -> None:
    store = ModelStore(tmp_path, allow_download=model_store.allow_download)
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / ASTRONAUT.filename).write_bytes(b"not the astronaut")
    assert sha256_file(sample_path(store)) == ASTRONAUT.sha256


def test_the_sample_comes_from_the_pinned_wheel(model_store: ModelStore, tmp_path: Path) -> None:
    from models.errors import ModelUnavailableError
    from models.samples import _from_wheel

    try:
        got = _from_wheel(ASTRONAUT, model_store, tmp_path)
    except ModelUnavailableError as exc:  # downloads disabled and the wheel not cached
        pytest.skip(str(exc))
    assert sha256_file(got) == ASTRONAUT.sha256


def test_progress_bars_are_off_outside_a_terminal_and_with_quiet() -> None:
    assert not sys.stderr.isatty()  # pytest captures stderr
    bars = _progress_printer(True, 3)
    assert not bars.enabled and bars.photos is None
    bars.photo("a.jpg")(1, 10)  # a no-op, not an error
    bars.close()
    args = build_parser().parse_args(["protect", "--sample", "--quiet", "-o", "out"])
    assert args.quiet and args.sample and args.photos == []


def test_protect_without_photos_or_sample_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["protect", "-o", str(tmp_path)]) == 2
    assert "--sample" in capsys.readouterr().err


@pytest.mark.slow
def test_quickstart_protects_the_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["protect", "--sample", "-o", str(out), "--preview"]) == 0
    printed = capsys.readouterr().out
    assert "public domain" in printed and "astronaut.png: protected (1 face(s))" in printed
    report = json.loads((out / "astronaut.png.json").read_text())
    assert report["status"] == "protected" and report["format"] == "PNG"
    assert (out / "astronaut.png").stat().st_size > 0
    assert (out / "astronaut.png.preview.png").exists()


@pytest.mark.slow
def test_a_clone_without_shared_photos_collects_and_skips(tmp_path: Path) -> None:
    """Every test module imports without ../shared; photo tests skip with the reason."""
    env = {**os.environ, "FACECLOAK_TEST_FACES": str(tmp_path / "absent")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/test_recognizers.py", "tests/test_visibility.py", "--collect-only"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode in (0, 5), run.stdout[-3000:] + run.stderr[-3000:]
    assert "shared face photos not found" in run.stdout
    collect = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert collect.returncode == 0, collect.stdout[-3000:] + collect.stderr[-3000:]
    assert "error" not in collect.stdout.splitlines()[-1]

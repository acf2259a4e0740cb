"""A run refused for something knowable up front says so in one line, exits 2, and leaves
an output that already holds results byte-identical: every file hashed before and after
(issue 19 row 1, issue 20 row 4). Each case also has a video not yet done among the
inputs, so a run that got past the check would write."""

from __future__ import annotations

import hashlib
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_model import make_debug_model
from typer.testing import CliRunner

from fervid.cli import EXIT_USAGE, app
from fervid.engine.gpus import visible_gpus
from fervid.model.spec import ModelSpec

DONE = "single_face.mp4"
NEW = "no_face.mp4"


def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (hidden ones included)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


@pytest.fixture(scope="module", params=["file", "dataset"])
def finished(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    sample_dir: Path, model: Path,
) -> tuple[Path, str]:  # fmt: skip
    """A results tree (``root``) holding one finished video, and the ``--out`` inside it."""
    root = tmp_path_factory.mktemp(f"done-{request.param}")
    (root / "in").mkdir()
    shutil.copyfile(sample_dir / DONE, root / "in" / DONE)
    out = "res/r.parquet" if request.param == "file" else "res/r"
    code, err = cli("process", root / "in", "--out", root / out, "--model", model, "--local", "-q")
    assert code == 0, err
    return root, out


def _model_with_classes(tmp: Path) -> Path:
    return make_debug_model(
        tmp / "three.safetensors",
        spec=ModelSpec(input_size=32, width_mult=0.25, class_names=("a", "b", "c")),
    )


def _deep_json_model(tmp: Path) -> Path:
    import json
    import struct

    meta = {"fervid": "[" * 100_000 + "]" * 100_000}
    header = json.dumps({"__metadata__": meta}).encode()
    path = tmp / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def _random_consolidated(out: Path) -> list[object]:
    """Issue 20 row 4: the parts folder removed, res.parquet replaced by random bytes."""
    shutil.rmtree(out.with_name(f".{out.name}.fervid"))
    out.write_bytes(hashlib.sha256(b"x").digest() * 4096)
    return []


NO_GPU = visible_gpus() == 0
CASES: dict[str, tuple[Callable[[Path, Path], list[object]], str, object]] = {
    # case: (extra options (tmp, out), phrase of the one line, skip reason or None)
    "device cuda without CUDA": (
        lambda t, o: ["--device", "cuda"], "no CUDA GPU is visible",
        None if NO_GPU else "a GPU is visible",
    ),
    "gpus 2 with fewer": (
        lambda t, o: ["--gpus", "2"], "--gpus=2 but this machine shows",
        None if visible_gpus() < 2 else "two GPUs are visible",
    ),
    "dead ray address": (
        lambda t, o: ["--ray-address", f"127.0.0.1:{dead_port()}"], "nothing answers there", None
    ),
    "ray client address": (
        lambda t, o: ["--ray-address", "ray://127.0.0.1:10001"],
        "Ray Client addresses (ray://) are not supported", None,
    ),
    "ray address without port": (
        lambda t, o: ["--ray-address", "127.0.0.1"], "expected host:port", None
    ),
    "ray address port out of range": (
        lambda t, o: ["--ray-address", "127.0.0.1:70000"], "expected host:port", None
    ),
    "hostile model header": (
        lambda t, o: ["--model", _deep_json_model(t)], "model file", None
    ),
    "another model's classes": (
        lambda t, o: ["--model", _model_with_classes(t)], "another model's classes", None
    ),
    "out of another format": (
        lambda t, o: ["--out", o.parent / "r.csv"], "fervid writes Parquet", None
    ),
}  # fmt: skip


@pytest.mark.parametrize(("extra", "phrase", "skip"), list(CASES.values()), ids=list(CASES))
def test_refused_before_anything_is_written(
    extra: Callable[[Path, Path], list[object]], phrase: str, skip: object,
    finished: tuple[Path, str], tmp_path: Path, sample_dir: Path, model: Path,
) -> None:  # fmt: skip
    if skip:
        pytest.skip(str(skip))
    root = tmp_path / "tree"
    shutil.copytree(finished[0], root)
    shutil.copyfile(sample_dir / NEW, root / "in" / NEW)  # work a run would do
    out = root / finished[1]
    args = extra(tmp_path, out)
    model_args = [] if "--model" in args else ["--model", model]
    out_args = [] if "--out" in args else ["--out", out]
    before = tree_hashes(root)

    code, err = cli("process", root / "in", *out_args, *model_args, *args)

    assert code == EXIT_USAGE, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], err
    assert tree_hashes(root) == before


def test_unreadable_consolidated_file_without_parts_is_one_line(
    tmp_path: Path, sample_dir: Path, model: Path, finished: tuple[Path, str]
) -> None:
    if not finished[1].endswith(".parquet"):
        pytest.skip("file layout only: a dataset has no consolidated file")
    root = tmp_path / "tree"
    shutil.copytree(finished[0], root)
    out = root / finished[1]
    _random_consolidated(out)
    before = tree_hashes(root)

    code, err = cli("process", root / "in", "--out", out, "--model", model, "--local", "-q")

    assert code == EXIT_USAGE, err
    (line,) = err.splitlines()
    assert "r.parquet cannot be read as fervid's tables" in line, line
    assert "restore it from a backup" in line and "move" in line, line
    assert tree_hashes(root) == before

"""Private by mode, not by luck (issue 20 row 5): face crops and chunk files are 0600 in
folders 0700 whatever the umask; results follow the umask (docs/schema.md)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_cli import process
from helpers_model import make_debug_model

from fervid.engine.chunk_store import ChunkStore


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    saved = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(saved)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True, ids=["022", "077"])
def test_crops_and_chunks_are_private_results_follow_the_umask(
    umask: int, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copyfile(sample_dir / "WolfgangLanger_Pexels.mp4", inputs / "long.mp4")
    model = make_debug_model(tmp_path / "m.safetensors")
    crops = tmp_path / "crops"
    out = tmp_path / "r.parquet"
    cleared: list[str] = []  # keep the chunk files, which a finished video removes
    monkeypatch.setattr(ChunkStore, "clear", lambda self, video_id: cleared.append(video_id))

    result = process(inputs, out, model, "--save-crops", crops, "--chunk-seconds", "5",
                     "--settle-seconds", "0", "--fps", "1")  # fmt: skip
    assert result.exit_code == 0, result.output

    pngs = list(crops.rglob("*.png"))
    assert pngs, "no crop written"
    assert {_mode(p) for p in pngs} == {0o600}
    assert {_mode(d) for d in [crops, *(p.parent for p in pngs)]} == {0o700}

    chunk_root = tmp_path / ".r.parquet.fervid" / ".chunks"
    chunk_files = list(chunk_root.rglob("*.parquet"))
    assert cleared and len(chunk_files) >= 3  # 20 s in chunks of 5 s: each persisted
    assert {_mode(p) for p in chunk_files} == {0o600}
    folders = {d for p in chunk_files for d in p.relative_to(chunk_root).parents}
    assert {_mode(chunk_root / d) for d in folders} == {0o700}

    results = [out, out.with_name("r.segments.parquet"), out.with_name("r.videos.parquet")]
    parts = list((tmp_path / ".r.parquet.fervid").glob("[!.]*/*.parquet"))
    assert parts and all(p.is_file() for p in results)
    assert {_mode(p) for p in [*results, *parts]} == {0o666 & ~umask}


def test_private_files_replace_wider_ones(tmp_path: Path) -> None:
    """A crop folder or file left 0755 / 0644 by an older fervid becomes private."""
    from fervid.output.atomic import private_dir, write_private

    root = tmp_path / "crops"
    (root / "vid").mkdir(parents=True)
    os.chmod(root / "vid", 0o755)
    (root / "vid" / "a.png").write_bytes(b"old")
    os.chmod(root / "vid" / "a.png", 0o644)
    private_dir(root / "vid", root=root)
    write_private(root / "vid" / "a.png", b"new")
    assert _mode(root / "vid") == 0o700 and _mode(root / "vid" / "a.png") == 0o600
    assert (root / "vid" / "a.png").read_bytes() == b"new"

"""The Python API (``fervid.process`` / ``analyze`` / ``read`` / ``classify_faces``):
the same rows as the CLI in both layouts, ``analyze`` writes nothing, the same errors,
and ``import fervid`` stays light."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers_model import make_debug_model
from typer.testing import CliRunner

import fervid
from fervid.cli import EXIT_OK, app
from fervid.output.schema import FRAMES, SEGMENTS, TABLES, VIDEOS
from fervid.output.store import read_table

GOOD, FACE_THEN_NONE, NO_FACE = "single_face.mp4", "face_noface.mov", "no_face.mp4"
#: Columns that differ between two runs of the same video: when, and how long it took.
RUN_COLUMNS = {"processed_at", "processing_s"}
SETTINGS = {"fps": 4, "smoothing_seconds": 0.5, "det_threshold": 0.5}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


@pytest.fixture
def videos(copy_sample, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    for name in (GOOD, FACE_THEN_NONE, NO_FACE):
        copy_sample(name, f"in/{name}")
    return tmp_path / "in"


def rows(table: pa.Table) -> list[dict]:
    """The table's rows without the columns that record when and how fast it ran."""
    keep = [c for c in table.column_names if c not in RUN_COLUMNS]
    return table.select(keep).to_pylist()


@pytest.mark.parametrize("layout", ["results.parquet", "results"])
def test_process_writes_what_the_cli_writes(
    layout: str, videos: Path, tmp_path: Path, model: Path
) -> None:
    cli_out, api_out = tmp_path / "cli" / layout, tmp_path / "api" / layout
    flags = ["--fps", "4", "--smoothing-seconds", "0.5", "--det-threshold", "0.5"]
    result = CliRunner().invoke(
        app, ["process", str(videos), "--out", str(cli_out), "--model", str(model),
              "--executor", "local", "-q", *flags],
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    summary = fervid.process([videos], api_out, model=model, executor="local", **SETTINGS)
    assert isinstance(summary, fervid.RunSummary)
    assert (summary.ok, summary.failed) == (3, [])
    for t in TABLES:
        assert rows(read_table(api_out, t)) == rows(read_table(cli_out, t)), t
    assert read_table(cli_out, FRAMES).num_rows > 0
    read = fervid.read(api_out)  # and read gives back what was written, in either layout
    for t in TABLES:
        assert read.table(t).equals(read_table(api_out, t)), t
    again = fervid.process(videos, api_out, model=model, executor="local", **SETTINGS)
    assert (again.ok, again.skipped) == (0, 3)  # the same skips as the CLI


def test_analyze_gives_the_rows_process_writes(videos: Path, tmp_path: Path, model: Path) -> None:
    out = tmp_path / "out.parquet"
    fervid.process(videos / FACE_THEN_NONE, out, model=model, executor="local", **SETTINGS)
    results = fervid.analyze(videos / FACE_THEN_NONE, model=model, **SETTINGS)
    assert isinstance(results, fervid.Results)
    for t in TABLES:
        assert rows(results.table(t)) == rows(read_table(out, t)), t
    assert results.frames.num_rows > 0 and results.segments.num_rows > 0
    assert (
        results.frames.schema.metadata[b"fervid.settings_hash"]
        == read_table(out, FRAMES).schema.metadata[b"fervid.settings_hash"]
    )
    df = results.to_pandas()
    assert list(df.columns) == results.frames.column_names and len(df) == results.frames.num_rows
    assert results.to_polars(VIDEOS).height == 1
    assert results.class_names == fervid.class_names(model)
    assert repr(results).startswith("Results(1 video, ")


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders`` with its size and mtime (ns)."""
    found = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                p = Path(root) / name
                st = p.lstat()
                found[str(p)] = (st.st_size, st.st_mtime_ns)
    return found


def test_analyze_writes_nothing(
    videos: Path, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not in the working folder, not in the temporary folder, not beside the video."""
    work, temp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    assert tempfile.gettempdir() == str(temp)
    before = snapshot(work, temp, videos)
    results = fervid.analyze(videos / GOOD, model=model, fps=4)
    assert results.frames.num_rows > 0
    assert snapshot(work, temp, videos) == before
    empty = fervid.analyze(videos / NO_FACE, model=model)  # no face: empty tables, a row
    assert (empty.frames.num_rows, empty.segments.num_rows, empty.videos.num_rows) == (0, 0, 1)
    assert snapshot(work, temp, videos) == before


def test_read_reads_old_outputs_in_both_layouts() -> None:
    old = Path(__file__).parent / "data" / "old_output"
    for out in (old / "file" / "r.parquet", old / "dataset" / "out"):
        results = fervid.read(out)
        assert results.videos.num_rows == 2 and results.frames.num_rows == 5
        assert "face_px" in results.frames.column_names  # added since, read as null


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda v, m: fervid.process(v, "r.parquet", model=m, smooth_seconds=2),
         fervid.ConfigError, "unknown setting 'smooth_seconds'; did you mean 'smoothing_seconds'?"),
        (lambda v, m: fervid.process(v, "r.parquet", model=m, fps=0),
         fervid.ConfigError, "--fps=0.0; expected a positive"),
        (lambda v, m: fervid.process(v, "r.parquet", model=m, device="gpu"),
         fervid.ConfigError, "device='gpu'; expected one of"),
        (lambda v, m: fervid.analyze(v / GOOD, model=m, save_crops="crops"),
         fervid.ConfigError, "save_crops is not accepted"),
        (lambda v, m: fervid.analyze(v / "missing.mp4", model=m),
         fervid.InputError, "is not a file"),
        (lambda v, m: fervid.process(v / "missing.mp4", "r.parquet", model=m),
         fervid.InputError, "missing.mp4"),
        (lambda v, m: fervid.read(v),
         fervid.InputError, "no videos results"),
        (lambda v, m: fervid.process(v, "r.parquet", model=v / GOOD),
         fervid.ModelError, GOOD),
    ],
)  # fmt: skip
def test_errors_are_the_classes_the_cli_maps_to_exit_codes(
    call,
    error: type[Exception],
    message: str,
    videos: Path,
    model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message.replace("(", r"\(").replace("?", r"\?")):
        call(videos, model)
    assert not (tmp_path / "r.parquet").exists()


def test_analyze_refuses_a_damaged_video(tmp_path: Path, model: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(fervid.DecodeError, match=r"notes\.mp4"):
        fervid.analyze(bad, model=model)


def test_to_polars_names_the_extra_when_polars_is_missing(
    videos: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = fervid.analyze(videos / GOOD, model=model)
    monkeypatch.setitem(sys.modules, "polars", None)  # import polars -> ImportError
    with pytest.raises(fervid.MissingExtraError, match=r"pip install 'fervid\[polars\]'"):
        results.to_polars()
    assert isinstance(results.to_pandas(SEGMENTS), object)


def test_classify_faces_arrays_paths_aligned_and_not(sample_dir: Path, model: Path) -> None:
    """Unaligned photos go through the pipeline's detector and aligner, then the same
    classifier as aligned crops; paths and arrays give the same rows; no face -> NaN."""
    import cv2

    from fervid.extract.crop import crop_faces
    from fervid.extract.detect import FaceDetector
    from fervid.model.modelfile import load_model
    from fervid.settings import CropSettings, DetectSettings

    photo = sample_dir / "stills" / "single_face.jpg"
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    spec = load_model(model).spec
    dets = FaceDetector(settings=DetectSettings())(image)
    crop = crop_faces(image, dets, CropSettings(), spec)[int(np.argmax(dets.scores))]

    from_paths = fervid.classify_faces([photo], aligned=False, model=model)
    from_arrays = fervid.classify_faces([image, np.zeros((200, 200, 3), np.uint8)],
                                        aligned=False, model=model)  # fmt: skip
    aligned = fervid.classify_faces(crop[None], model=model)  # (1, S, S): a batch of one
    assert from_paths.shape == (1, len(spec.class_names)) and from_paths.dtype == np.float32
    np.testing.assert_allclose(from_paths[0], from_arrays[0], rtol=1e-6)
    np.testing.assert_allclose(aligned[0], from_paths[0], rtol=1e-5)
    assert np.isnan(from_arrays[1]).all()  # the blank image has no face
    np.testing.assert_allclose(aligned.sum(axis=1), 1.0, atol=1e-5)
    bigger = cv2.resize(crop, (crop.shape[1] * 2, crop.shape[0] * 2))  # resized like crops
    assert fervid.classify_faces([bigger], model=model).shape == (1, len(spec.class_names))
    with pytest.raises(fervid.ConfigError, match="expected uint8"):
        fervid.classify_faces([crop.astype(np.float32)], model=model)


def test_import_fervid_loads_no_heavy_module() -> None:
    code = (
        "import sys, fervid\n"
        "assert callable(fervid.process) and fervid.ConfigError\n"
        "print(sorted(m for m in ('numpy', 'pyarrow', 'cv2', 'torch', 'ray') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
    assert set(fervid.__all__) == {*fervid._LAZY, "__version__"}

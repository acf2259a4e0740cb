"""The longitudinal notebook runs headless against the current code, and its demo data.

``docs/notebooks/longitudinal.ipynb`` is executed with nbclient in a fresh kernel of this
environment (the ``python3`` kernelspec resolves to the Python running the tests), with
``FERVID_DEMO_DIR`` pointing its working folder into ``tmp_path``. It processes the demo
recordings with the default model: ``FERVID_MODEL=PATH`` runs it with another model file,
and ``FERVID_ALLOW_NO_MODEL=1`` turns a missing model into a skip.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import av
import nbformat
import pyarrow.parquet as pq
import pytest
from nbclient import NotebookClient

from fervid.extract.discover import discover, fingerprint
from fervid.settings import DiscoverSettings

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "notebooks" / "longitudinal.ipynb"
ID_PATTERN = "{subject}/{session_date}_{name}.mp4"

sys.path.insert(0, str(REPO / "scripts"))
from make_demo_recordings import DEMO_SESSIONS, DemoSession, make_demo_recordings  # noqa: E402

#: Printed by a cell the test appends: which Python the kernel ran.
_PREFIX_MARK = "kernel-prefix="


def test_demo_recordings_are_distinct_sessions_the_id_pattern_reads(
    tmp_path: Path, sample_dir: Path
) -> None:
    paths = make_demo_recordings(tmp_path / "rec", samples=sample_dir)
    assert [p.relative_to(tmp_path / "rec").as_posix() for p in paths] == [
        s.rel_path for s in DEMO_SESSIONS
    ]
    # fervid analyses identical content once: every session must be its own recording.
    assert len({fingerprint(p) for p in paths}) == len(DEMO_SESSIONS)
    found = discover([tmp_path / "rec"], DiscoverSettings(id_pattern=ID_PATTERN))
    fields = {(v.fields["subject"], v.fields["session_date"]) for v in found}
    assert fields == {(s.subject, s.session_date.isoformat()) for s in DEMO_SESSIONS}
    for path, s in zip(paths, DEMO_SESSIONS, strict=True):
        with av.open(str(path)) as c:
            times = [f.time for f in c.decode(c.streams.video[0])]
        assert times[0] == 0.0
        assert s.duration_s - 0.1 < times[-1] < s.duration_s  # the session's length, in seconds
    # Re-running gives byte-identical files (the same video ids); checked on a few of them.
    again = make_demo_recordings(
        tmp_path / "again", samples=sample_dir, sessions=DEMO_SESSIONS[::3]
    )
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths[::3]]


def test_excerpt_past_the_end_of_its_source_is_refused(tmp_path: Path, sample_dir: Path) -> None:
    late = DemoSession(
        subject="P009", session_date=dt.date(2024, 3, 1), name="late",
        source="single_face.mp4", start_s=60.0, seconds=2.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="start_s before the end"):
        make_demo_recordings(tmp_path, samples=sample_dir, sessions=(late,))
    assert not list(tmp_path.rglob("*late*"))  # no half-written file left behind


@pytest.mark.slow
def test_longitudinal_notebook_runs(
    tmp_path: Path, sample_dir: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "demo"
    monkeypatch.setenv("FERVID_DEMO_DIR", str(work))  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "the notebook is stored with outputs; clear them before committing"
    )
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys\nprint({_PREFIX_MARK!r} + sys.prefix)"))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises CellExecutionError naming the failing cell

    assert _stream_text(nb.cells[-1]).strip() == _PREFIX_MARK + sys.prefix

    dataset = work / "dataset"
    n = len(DEMO_SESSIONS)
    for table in ("frames", "segments", "videos"):
        assert len(list((dataset / table).glob("*.parquet"))) == n, table
    videos = pq.read_table(dataset / "videos").to_pandas()
    assert (videos["status"] == "ok").all(), videos[["path", "error"]]
    assert videos["video_id"].nunique() == n
    assert sorted(zip(videos["subject"], videos["session_date"], strict=True)) == sorted(
        (s.subject, s.session_date) for s in DEMO_SESSIONS
    )
    # derived files beside the dataset folder, never inside it
    visible = sorted(p.name for p in dataset.iterdir() if not p.name.startswith("."))
    assert visible == ["frames", "segments", "videos"]  # (and the hidden run lock)
    sessions = pq.read_table(work / "dataset.sessions.parquet").to_pandas()
    assert sessions["is_patient"].sum() == n

    report = work / "dataset.report"
    assert (report / "index.html").stat().st_size > 2000
    for subject in ("P001", "P002"):
        assert len(list(report.glob(f"figures/trend_{subject}_*.png"))) == 1, subject
    assert len(list(report.glob("figures/timeline_*.png"))) == n  # every session has a face

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert sum(map(_has_image, code)) >= 2  # the valence plot and the report's trend figure
    assert _has_image(code[-2])  # the notebook's last code cell shows the report figure


def _stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _has_image(cell: nbformat.NotebookNode) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs)


def test_notebook_uses_the_python_api() -> None:
    """The notebook runs fervid through its API, not by shelling out to the CLI."""
    code = "\n".join(
        c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"
    )
    for call in ("fervid.process(", "fervid.read(", "fervid.analyze("):
        assert call in code, call
    assert "subprocess" not in code

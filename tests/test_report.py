"""The HTML report: figures exist, are real images, and the page stands alone."""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from longitudinal_tables import frame_rows, session, tables, video_row, write_dataset

from fervid.longitudinal.report import FIGURES_DIR, build_report

D0 = dt.date(2024, 5, 6)
# P017: four weekly sessions (valence .1 .2 .3 then -.5: a departure), a session without a
# face, and a session with two faces; P020: a single session; one failed recording.
PLANS = {
    "P017": [
        ["happy"] * 1 + ["neutral"] * 9,
        ["happy"] * 2 + ["neutral"] * 8,
        ["happy"] * 3 + ["neutral"] * 7,
        ["sad"] * 5 + ["neutral"] * 5,
    ],
    "P020": [["neutral"] * 6 + ["surprise"] * 4],
}


def _dataset_rows() -> tuple[list, list, list]:
    f, s, v = [], [], []
    for subj, plans in PLANS.items():
        for i, labels in enumerate(plans):
            fi, si, vi = session(
                f"{subj}-{i}", subj, D0 + dt.timedelta(days=7 * i), labels, interval=2.0
            )
            f, s, v = f + fi, s + si, v + vi
    # a bystander in P017's second session, seen for 3 frames
    f += frame_rows("P017-1", 1, [0.0, 2.0, 4.0], ["angry"] * 3, subject="P017",
                    session_date=D0 + dt.timedelta(days=7))  # fmt: skip
    v.append(video_row("P017-noface", subject="P017", session_date=D0 + dt.timedelta(days=35)))
    v.append(video_row("P017-broken", subject="P017", status="failed", duration_s=None))
    return f, s, v


N_ANALYSED = 6  # ok recordings: 4 + 1 of P017 (one without a face) + 1 of P020
N_SUBJECTS = 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "fervid", *_dataset_rows())


@pytest.fixture(scope="module")
def report(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(dataset, tmp_path_factory.mktemp("report"))


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _figures(report: Path) -> list[Path]:
    return sorted((report.parent / FIGURES_DIR).glob("*.png"))


def test_report_writes_one_timeline_per_recording_and_one_trend_per_subject(report: Path) -> None:
    names = [p.name for p in _figures(report)]
    assert len([n for n in names if n.startswith("timeline_")]) == N_ANALYSED
    assert len([n for n in names if n.startswith("trend_")]) == N_SUBJECTS
    assert any("P017" in n for n in names if n.startswith("trend_"))


@pytest.mark.parametrize("kind", ["timeline", "trend"])
def test_figures_are_real_images(report: Path, kind: str) -> None:
    for p in _figures(report):
        if not p.name.startswith(kind):
            continue
        assert p.stat().st_size > 15_000, p.name  # a blank canvas is a few KB
        w, h = _png_size(p)
        assert 1000 <= w <= 2000 and 300 <= h <= 1600, (p.name, w, h)


def test_html_references_every_figure_and_nothing_remote(report: Path) -> None:
    text = report.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert sorted(srcs) == sorted(f"{FIGURES_DIR}/{p.name}" for p in _figures(report))
    assert not re.search(r"https?://", text)
    assert "<link" not in text and "<script" not in text  # no external CSS or JS
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")


def test_html_shows_departures_failures_and_quality(report: Path) -> None:
    text = report.read_text()
    section = text.split("<section id=departures>")[1].split("</section>")[0]
    assert "2024-05-27_P017-3.mp4" in section and "valence" in section  # the sad session
    assert "2024-05-06" not in section  # baseline sessions are never flagged
    assert "P017-broken.mp4" in text and "DecodeError: broken file" in text
    assert "none found" in text  # the session without a face
    assert "0 of 2 · longest" in text  # the two-face session
    assert "not a clinical measure" in text


def test_rebuild_reuses_figures_and_drops_stale_ones(
    dataset: Path, report: Path, tmp_path: Path
) -> None:
    shutil.copytree(report.parent, tmp_path / "r")
    out = build_report(dataset, tmp_path / "r")
    before = {p.name: p.stat().st_mtime_ns for p in _figures(out)}
    build_report(dataset, tmp_path / "r")
    assert {p.name: p.stat().st_mtime_ns for p in _figures(out)} == before
    # one subject only: the other subject's figures are removed
    build_report(dataset, tmp_path / "r", subject="P020")
    after = [p.name for p in _figures(out)]
    assert len(after) == 2 and all("P020" in n for n in after)
    assert "P017" not in out.read_text().split("</header>")[1]


def test_embedded_images_make_one_file(dataset: Path, tmp_path: Path) -> None:
    out = build_report(dataset, tmp_path / "e", subject="P020", embed_images=True)
    srcs = re.findall(r'<img src="([^"]+)"', out.read_text())
    assert len(srcs) == 2
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_file_layout_report(tmp_path: Path) -> None:
    f, s, v = tables(*_dataset_rows())
    pq.write_table(f, tmp_path / "results.parquet")
    pq.write_table(s, tmp_path / "results.segments.parquet")
    pq.write_table(v, tmp_path / "results.videos.parquet")
    out = build_report(tmp_path / "results.parquet", tmp_path / "report", subject="P020")
    assert len(_figures(out)) == 2
    assert all(p.stat().st_size > 15_000 for p in _figures(out))

"""The HTML report: figures exist, are real images, the page stands alone, it says what
it knows (and what it does not), escapes the data, and lays out at 1280 and 390 px."""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import struct
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from longitudinal_tables import frame_rows, session, tables, video_row, write_dataset

from fervid.longitudinal.report import FIGURES_DIR, _share_top, build_report

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")

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
N_INDICES = 9  # valence, expressivity and the 7 emotion shares


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
    srcs = re.findall(r'<img src="([^"]+)"', text)  # the panels and timelines, shown
    srcs += re.findall(r'<a href="(figures/[^"]+)"', text)  # the whole trend, linked
    assert sorted(srcs) == sorted(f"{FIGURES_DIR}/{p.name}" for p in _figures(report))
    assert not re.search(r"https?://", text)
    assert "<link" not in text and "<script" not in text  # no external CSS or JS
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")


def _section(text: str, name: str) -> str:
    return text.split(f'<section id="{name}"')[1].split("</section>")[0]


def test_html_shows_departures_failures_and_quality(report: Path) -> None:
    text = report.read_text()
    section = _section(text, "departures")
    assert "2024-05-27_P017-3.mp4" in section and "Expression valence" in section  # the sad one
    assert "-7.0" in section  # its z, in the table, not on hover
    assert "2024-05-06" not in section  # baseline sessions are never flagged
    assert "P017-broken.mp4" in text and "DecodeError: broken file" in text
    assert "none found" in text  # the session without a face
    assert "face 0 of 2 faces (visible longest" in text  # the two-face session
    assert "not a clinical measure" in text
    verdict = _section(text, "verdict")
    assert "1 session of 1 subject departs" in verdict
    assert "P017</a>: baseline established from 3 of 4 usable sessions" in verdict
    assert "P020</a>: baseline not established (needs 3 usable sessions, has 1)" in verdict


def test_definitions_and_provenance_are_in_the_page(report: Path) -> None:
    text = report.read_text()
    assert "docs/indices.md" not in text  # a file the reader of the report does not have
    defs = _section(text, "definitions")
    for term in ("Expression valence (−1 negative … +1 positive)", "Expressiveness",
                 "Valence variability", "Departure", "z", "Baseline"):  # fmt: skip
        assert f"<dt>{term}" in defs, term
    for jargon in ("P(pos) − P(neg)", "TV distance", "det score", "Mood", "mood",
                   " · longest"):  # fmt: skip
        assert jargon not in text, jargon
    footer = text.split("<footer>")[1]
    assert "{" not in footer  # words, not raw JSON
    for fact in ("fervid", "model sha256", "processing settings hash", "0123456789abcdef",
                 "session dates", "2024-05-06 to 2024-06-10"):  # fmt: skip
        assert fact in footer, fact
    # z is printed under each judged value, not only in a tooltip
    p017 = _section(text, "subject-P017")
    assert re.search(
        r'<td class="dep" data-label="Expression valence \(−1 to \+1\)"><span class="v">-0\.50 ▼'
        r'<span class="z">z -7\.0</span>',
        p017,
    )


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
    assert all("P020" in n for n in after)
    assert _kinds(after) == {"timeline": 1, "trend": 1, "panel": N_INDICES}
    assert "P017" not in out.read_text().split("</header>")[1]


def test_embedded_images_make_one_file(dataset: Path, tmp_path: Path) -> None:
    out = build_report(dataset, tmp_path / "e", subject="P020", embed_images=True)
    srcs = re.findall(r'<img src="([^"]+)"', out.read_text())
    assert len(srcs) == 1 + N_INDICES  # a timeline and the panels; no whole-trend link
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["index.html"]  # no figures/


def test_file_layout_report(tmp_path: Path) -> None:
    f, s, v = tables(*_dataset_rows())
    pq.write_table(f, tmp_path / "results.parquet")
    pq.write_table(s, tmp_path / "results.segments.parquet")
    pq.write_table(v, tmp_path / "results.videos.parquet")
    out = build_report(tmp_path / "results.parquet", tmp_path / "report", subject="P020")
    assert _kinds(p.name for p in _figures(out)) == {"timeline": 1, "trend": 1, "panel": N_INDICES}
    assert all(p.stat().st_size > 15_000 for p in _figures(out) if not p.name.startswith("panel"))


def _kinds(names) -> dict[str, int]:
    return dict(Counter(n.split("_", 1)[0] for n in names))


def test_one_small_panel_per_index_that_stacks_on_a_phone(report: Path) -> None:
    """The trend is shown as one small figure per index (laid out by CSS: side by side
    on a wide screen, one under another on a narrow one), each titled by its index."""
    panels = [p for p in _figures(report) if p.name.startswith("panel_P017_")]
    assert len(panels) == N_INDICES
    assert {_png_size(p) for p in panels} == {(420, 300)}  # 370 px on a phone: x 0.88
    assert all(p.stat().st_size > 8_000 for p in panels)  # drawn, not blank
    p017 = _section(report.read_text(), "subject-P017")
    assert p017.count('<figure class="panel">') == N_INDICES
    assert 'alt="Expression valence (−1 negative … +1 positive) of P017 across sessions"' in p017
    assert "All panels in one figure</a>" in p017


def test_tables_carry_their_column_names_for_the_phone_layout(report: Path) -> None:
    """At 390 px each table row is a card of "column: value" lines: every cell knows its
    column's plain name (with its unit)."""
    text = report.read_text()
    for label in ("face visible (s)", "detector confidence (0–1)", "patient face (rule)",
                  "baseline mean ± SD", "Expression valence (−1 to +1)"):  # fmt: skip
        assert f'data-label="{label}"' in text, label
    assert '<td class="" data-label=""' not in text  # no cell without its column


# --------------------------------------------------------------------------- what it says
def test_recordings_without_subject_are_unassigned_not_a_trend(tmp_path: Path) -> None:
    """Seven people recorded without --id-pattern: no "indices across sessions" figure,
    a list of unassigned recordings, and a header that agrees with the body."""
    f, s, v = [], [], []
    for i in range(7):
        fi, si, vi = session(f"person-{i}", None, None, ["happy"] * 4 + ["sad"] * (i + 8),
                             interval=2.0)  # fmt: skip
        f, s, v = f + fi, s + si, v + vi
    out = build_report(write_dataset(tmp_path / "ds", f, s, v), tmp_path / "r")
    text = out.read_text()
    assert not any(p.name.startswith("trend_") for p in _figures(out))
    assert "indices across sessions" not in text and "<nav>" not in text
    assert "subjects with analysed sessions: 0" in text and "unassigned recordings: 7" in text
    unassigned = _section(text, "unassigned")
    assert all(f"undated_person-{i}.mp4" in unassigned for i in range(7))
    assert "processed without --id-pattern" in unassigned
    assert "Nothing could be judged" in _section(text, "verdict")


def test_no_usable_session_is_not_an_all_clear(tmp_path: Path) -> None:
    """Every session too short to judge: the headline says nothing could be judged."""
    f, s, v = [], [], []
    for i in range(5):  # 4 frames of 0.5 s: 2 s of face, below the 10 s needed
        fi, si, vi = session(f"short-{i}", "P001", D0 + dt.timedelta(days=7 * i), ["happy"] * 4)
        f, s, v = f + fi, s + si, v + vi
    text = build_report(write_dataset(tmp_path / "ds", f, s, v), tmp_path / "r").read_text()
    verdict = _section(text, "verdict")
    assert 'class="verdict nothing_judged"' in text
    assert "Nothing could be judged" in verdict and "not an all-clear" in verdict
    assert "baseline not established (needs 3 usable sessions, has 0)" in verdict
    assert "No session departs" not in text and "No departures" not in text


def test_id_pattern_mismatch_is_warned_about(tmp_path: Path) -> None:
    f, s, v = _dataset_rows()
    fi, si, vi = session("stray", None, None, ["neutral"] * 30, interval=2.0)
    vi[0] |= {"path": "P002/2026-01-27_b.mov", "file_name": "2026-01-27_b.mov",
              "id_pattern_matched": False}  # fmt: skip
    text = build_report(write_dataset(tmp_path / "ds", f + fi, s + si, v + vi),
                        tmp_path / "r").read_text()  # fmt: skip
    warning = text.split('<section class="warning">')[1].split("</section>")[0]
    assert "1 path does not match --id-pattern" in warning
    assert "<code>P002/2026-01-27_b.mov</code>" in warning
    assert "path does not match --id-pattern" in _section(text, "unassigned")


def test_data_and_captions_are_escaped(tmp_path: Path) -> None:
    """A file name or title holding markup is shown as text, never run."""
    evil = "<script>alert(1)</script>"
    f, s, v = [], [], []
    for i, labels in enumerate(PLANS["P017"][:2]):
        fi, si, vi = session(f"x{i}", "P017", D0 + dt.timedelta(days=7 * i), labels,
                             interval=2.0)  # fmt: skip
        vi[0]["file_name"] = f"{evil}{i}.mp4"
        f, s, v = f + fi, s + si, v + vi
    v.append(video_row("bad", subject=f"<b>{evil}</b>", status="failed", duration_s=None))
    text = build_report(write_dataset(tmp_path / "ds", f, s, v), tmp_path / "r",
                        title=f"report {evil}").read_text()  # fmt: skip
    assert "<script" not in text.lower() and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;0.mp4" in text  # in the tables and captions
    assert re.search(r"<figcaption>&lt;script&gt;alert\(1\)&lt;/script&gt;0\.mp4: ", text)


def test_emotion_panels_share_one_scale() -> None:
    import pandas as pd

    tr = pd.DataFrame({"index": ["share_happy", "share_sad", "valence"],
                       "value": [0.42, 0.07, -0.9]})  # fmt: skip
    assert _share_top(tr) == 50.0  # the largest share, 42 %, rounded up to 10
    assert _share_top(tr.iloc[2:]) == 10.0


# --------------------------------------------------------------------------- in a browser
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} not installed (apt-get install -y chromium): the layout check at "
    "1280 and 390 px needs a headless browser",
)
def test_report_layout_in_headless_chromium(tmp_path: Path) -> None:
    """scripts/screenshot_report.py's checks: at 1280 px every table fits (no columns cut
    off behind a scroll) and no page-level horizontal scroll at 1280 or 390 px; no table
    is cut off without a cue, and at 390 px every table is a stack of cards; the index
    panels stand side by side at 1280 px and one under another at 390 px, none squeezed;
    every figure loads and fits; both screenshots are written at their width."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshot_report import WIDTHS, check_report, write_synthetic_dataset

    html = build_report(write_synthetic_dataset(tmp_path / "data"), tmp_path / "report")
    found, problems = check_report(html, tmp_path, chromium=str(CHROMIUM))
    assert problems == []
    for width in WIDTHS:
        assert found[width]["viewport"] == width
        assert len(found[width]["tables"]) >= 5 and len(found[width]["images"]) >= 10
        assert _png_size(tmp_path / f"screenshot-{width}.png")[0] == width
    phone, desk = found[390], found[1280]
    assert all(t["cards"] and t["scroll"] <= t["client"] for t in phone["tables"])
    assert not any(t["cards"] for t in desk["tables"]) and all(t["cue"] for t in desk["tables"])
    assert len({p["left"] for p in phone["panels"]}) == 1  # one column
    assert len({p["left"] for p in desk["panels"]}) == 3  # three across
    assert min(p["shown"] for p in phone["panels"]) >= 360  # the phone's width, less margins


def test_layout_checks_catch_a_cut_off_table_and_squeezed_panels() -> None:
    """The checks fail where the issue found the report failing: a table wider than a
    phone with no cue, and nine panels squeezed into one phone-wide figure."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshot_report import layout_problems

    cut = {"viewport": 390, "page": 390, "images": [],
           "tables": [{"scroll": 880, "client": 370, "cue": False, "cards": False}],
           "panels": [{"left": 10, "top": 0, "shown": 120, "natural": 420},
                      {"left": 135, "top": 0, "shown": 120, "natural": 420}]}  # fmt: skip
    problems = layout_problems(cut, 390)
    assert any("without a cue" in p for p in problems)
    assert any("does not reflow" in p for p in problems)
    assert any("shown 120 px wide" in p for p in problems)
    assert any("in 2 columns" in p for p in problems)


def test_departures_link_to_the_session_timeline(report: Path) -> None:
    """No script needed to get from a flagged session to what happened in it."""
    text = report.read_text()
    (href,) = set(re.findall(r'<a href="#(timeline-[^"]+)">2024-05-27_P017-3\.mp4</a>',
                             _section(text, "departures")))  # fmt: skip
    assert f'<figure id="{href}">' in text

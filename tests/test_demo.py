"""The README's demo shows what fervid is for: made-up patients whose recordings are long
enough to judge, and one of them (P001: laughing in her baseline, crying after) flagged
as departing from her own baseline, in ``fervid trends`` and in the report.

The demo is run end to end as the README runs it (make the recordings, ``process``,
``summarize``, ``trends``, ``report``), in-process (``--local``) and on the real sample
videos and default model.
"""

from __future__ import annotations

import html
import itertools
import json
import sys
from pathlib import Path

import av
import pyarrow.parquet as pq
from helpers_cli import process
from typer.testing import CliRunner

from fervid.cli import app
from fervid.longitudinal.trends import TrendSettings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from make_demo_recordings import (  # noqa: E402
    BASELINE_N,
    CHANGE_DATE,
    CHANGED_SUBJECT,
    DEMO_SESSIONS,
    MIN_SESSION_S,
    make_demo_recordings,
)

ID_PATTERN = "{subject}/{session_date}_{name}.mp4"


def _cli(*args: object) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout


def test_demo_sessions_are_long_enough_for_a_baseline() -> None:
    """Every session is judged (>= the 10 s minimum), and each subject has a baseline."""
    defaults = TrendSettings()
    assert defaults.baseline_n == BASELINE_N
    assert defaults.min_face_s + 2 <= MIN_SESSION_S  # room for the first and last samples
    assert all(s.duration_s >= MIN_SESSION_S for s in DEMO_SESSIONS)
    for subject in {s.subject for s in DEMO_SESSIONS}:
        dates = sorted(s.session_date for s in DEMO_SESSIONS if s.subject == subject)
        assert len(dates) > defaults.baseline_n, subject  # at least one session judged
        assert all((b - a).days == 7 for a, b in itertools.pairwise(dates))


def test_demo_recordings_are_long_and_the_same_every_run(tmp_path: Path, sample_dir: Path) -> None:
    paths = make_demo_recordings(tmp_path / "a", samples=sample_dir, sessions=DEMO_SESSIONS[:2])
    for path, s in zip(paths, DEMO_SESSIONS, strict=False):
        with av.open(str(path)) as c:
            times = [f.time for f in c.decode(c.streams.video[0])]
        assert times[0] == 0.0
        assert s.duration_s - 0.1 < times[-1] < s.duration_s
        assert all(b > a for a, b in itertools.pairwise(times))
    again = make_demo_recordings(tmp_path / "b", samples=sample_dir, sessions=DEMO_SESSIONS[:2])
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_demo_ends_in_a_flagged_departure(
    tmp_path: Path, sample_dir: Path, model_path: Path
) -> None:
    recordings, ds = tmp_path / "demo" / "recordings", tmp_path / "demo" / "fervid"
    make_demo_recordings(recordings, samples=sample_dir)
    r = process(recordings, f"{ds}/", model_path, "--id-pattern", ID_PATTERN, "--quiet")
    assert r.exit_code == 0, r.output

    code, out = _cli("summarize", ds, "--json")
    assert code == 0, out
    assert json.loads(out)["recordings"] == len(DEMO_SESSIONS)
    sessions = pq.read_table(tmp_path / "demo" / "fervid.sessions.parquet").to_pandas()
    patients = sessions.loc[sessions["is_patient"]]
    assert (patients["face_present_s"] >= 12.0).all(), patients[["path", "face_present_s"]]

    code, out = _cli("trends", ds, "--json")
    assert code == 0, out
    trends = json.loads(out)
    assert trends["verdict"] == "departures"
    status = {s["subject"]: s for s in trends["subjects"]}
    changed = [s for s in DEMO_SESSIONS if s.subject == CHANGED_SUBJECT]
    after = sorted(str(s.session_date) for s in changed if s.session_date >= CHANGE_DATE)
    assert status[CHANGED_SUBJECT]["usable"] == len(changed)
    assert status[CHANGED_SUBJECT]["in_baseline"] == BASELINE_N
    assert status[CHANGED_SUBJECT]["departing"] == len(after)
    assert all(s["departing"] == 0 for name, s in status.items() if name != CHANGED_SUBJECT)
    valence = {d["session_date"]: d["z"] for d in trends["departures"] if d["index"] == "valence"}
    assert sorted(valence) == after  # every crying session, none of the laughing ones
    assert all(z < -10 for z in valence.values()), valence  # far below a happy baseline

    code, out = _cli("report", ds)
    assert code == 0, out
    page = html.unescape((tmp_path / "demo" / "fervid.report" / "index.html").read_text())
    assert 'class="verdict departures"' in page
    assert "2 sessions of 1 subject depart from the subject's own baseline" in page
    table = page[page.index('id="departures"') :]
    table = table[: table.index("</section>")]
    for date in after:
        assert f"{date}_followup.mp4" in table
    assert table.count("Expression valence") == len(after)

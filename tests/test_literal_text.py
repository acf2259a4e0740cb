"""Names are literal text (issue 19 rows 4, 5, 9): subjects and file names holding `$`,
`\\`, `{}` and `%` go through process, summarize, trends and report as they are (no
matplotlib mathtext, no backslash taken for a separator on POSIX), and a quoted glob
over symlinks to `..` and `.` ends, with every file once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_model import make_debug_model
from typer.testing import CliRunner

from fervid.cli import app
from fervid.extract.discover import IdPattern
from fervid.output.store import read_table

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file names")

#: (subject folder, file) -> sample video copied there; every copy has other content
RECORDINGS = {
    ("P$x^$2", "2024-01-01_a\\b%{c}.mp4"): "single_face.mp4",
    ("P$x^$2", "2024-01-08_50% $\\alpha$.mp4"): "face_noface.mov",
    ("Q\\{1}%d", "2024-02-01_{name}.mp4"): "noface_face.mov",
}
PATTERN = "{subject}/{session_date}_{name}"


def cli(*args: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize(
    ("rel_path", "subject", "name"),
    [("P\\1/2024-01-01_a\\b.mp4", "P\\1", "a\\b"), ("a/P$x/2024-01-01_{c}.mp4", "P$x", "{c}")],
)
def test_a_backslash_is_an_ordinary_character(rel_path: str, subject: str, name: str) -> None:
    fields = IdPattern.parse(PATTERN + ".mp4").match(rel_path)
    assert fields is not None and fields["subject"] == subject and fields["name"] == name


def test_odd_names_through_process_summarize_trends_and_report(
    tmp_path: Path, sample_dir: Path
) -> None:
    model = make_debug_model(tmp_path / "m.safetensors")
    for (subject, file), sample in RECORDINGS.items():
        (tmp_path / "in" / subject).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample_dir / sample, tmp_path / "in" / subject / file)
    out = tmp_path / "ds"
    code, _, err = cli("process", tmp_path / "in", "--out", out, "--model", model, "--local",
                       "-q", "--id-pattern", PATTERN + ".mp4")  # fmt: skip
    assert code == 0, err
    videos = read_table(out, "videos").to_pylist()
    got = {(v["subject"], v["file_name"]) for v in videos}
    assert got == set(RECORDINGS)

    code, _, err = cli("summarize", out)
    assert code == 0 and "Traceback" not in err, err
    code, stdout, err = cli("trends", out, "--subject", "P$x^$2")
    assert code == 0 and "Traceback" not in err, err
    code, stdout, err = cli("report", out)
    assert code == 0, err
    html = Path(stdout.strip()).read_text(encoding="utf-8")
    for subject in ("P$x^$2", "Q\\{1}%d"):
        assert subject in html  # shown literally (no HTML-special characters in these)


def test_glob_over_symlink_cycles_ends_with_every_file_once(tmp_path: Path) -> None:
    vids = tmp_path / "vids"
    (vids / "links" / "sub").mkdir(parents=True)
    for p in ("a.mp4", "links/b.mp4", "links/sub/c.mp4"):
        (vids / p).write_bytes(os.urandom(2048))
    os.symlink("..", vids / "links" / "up")
    os.symlink(".", vids / "links" / "self")
    os.symlink("../..", vids / "links" / "sub" / "top")
    code = (
        "from fervid.extract.discover import discover\n"
        "from fervid.settings import DiscoverSettings\n"
        "for pattern in ['vids/links/**/*.mp4', 'vids/**/*.mp4', 'vids']:\n"
        "    print(sorted(v.path.resolve().name for v in discover([pattern], DiscoverSettings())))\n"
    )
    # a guard against a hang, not a timing: the old glob was still recursing at 120 s
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == [str(["a.mp4", "b.mp4", "c.mp4"])] * 3

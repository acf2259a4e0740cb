"""discover(): files, folders, globs, extensions, hidden files, ids and --id-pattern."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fervid.errors import ConfigError, InputError
from fervid.extract.discover import FINGERPRINT_WINDOW, IdPattern, discover, fingerprint
from fervid.settings import DEFAULT_EXTENSIONS, DiscoverSettings

# Discovery never decodes, so the "videos" here are small files of distinct bytes.
TREE = {
    "videos/a.mp4": b"a" * 100,
    "videos/B.MOV": b"b" * 100,
    "videos/sub/c.mkv": b"c" * 100,
    "videos/sub/deeper/d.avi": b"d" * 100,
    "videos/notes.txt": b"not a video",
    "videos/.hidden.mp4": b"h" * 100,
    "videos/.cache/e.mp4": b"e" * 100,
    "videos/f.mp4.part": b"f" * 100,
    "videos/g.mp4.crdownload": b"g" * 100,
    "videos/late.crdownload/h.mp4": b"i" * 100,  # a partial download folder (Safari)
    "empty/.keep": b"",
    "docs/readme.txt": b"text",
}
ALL_VIDEOS = ["B.MOV", "a.mp4", "sub/c.mkv", "sub/deeper/d.avi"]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for rel, data in TREE.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    monkeypatch.chdir(tmp_path)  # inputs below are relative, as typed on a command line
    return tmp_path


def _run(inputs: list[str], **settings: object) -> list:
    return discover(inputs, DiscoverSettings(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("inputs", "settings", "expected"),
    [
        (["videos"], {}, ALL_VIDEOS),
        (["videos/"], {}, ALL_VIDEOS),
        (["videos/sub"], {}, ["c.mkv", "deeper/d.avi"]),
        (["videos/a.mp4"], {}, ["a.mp4"]),
        (["videos/notes.txt"], {}, ["notes.txt"]),  # explicit file: taken whatever the ext
        (["videos/.hidden.mp4"], {}, [".hidden.mp4"]),  # explicit: hidden is not skipped
        (["videos/**/*.mkv"], {}, ["sub/c.mkv"]),
        (["videos/**/*.avi"], {}, ["sub/deeper/d.avi"]),
        (["videos/*"], {}, ALL_VIDEOS),  # matched folders are walked, notes.txt dropped
        (["videos/**/*.txt"], {}, ["notes.txt"]),  # the pattern names its extension
        (["videos/sub/*.mkv", "videos/a.mp4"], {}, ["a.mp4", "c.mkv"]),  # rel to videos/sub
        (["videos", "videos/a.mp4", "videos/sub"], {}, ALL_VIDEOS),  # de-duplicated
        (["videos"], {"extensions": (".mkv",)}, ["sub/c.mkv"]),
        (["videos"], {"extensions": ("MKV", ".Avi")}, ["sub/c.mkv", "sub/deeper/d.avi"]),
        (["videos"], {"extensions": (".mp4", ".txt")}, ["a.mp4", "notes.txt"]),
    ],
)
def test_discover_finds(tree: Path, inputs: list[str], settings: dict, expected: list[str]) -> None:
    videos = _run(inputs, **settings)
    assert sorted(v.rel_path for v in videos) == sorted(expected)
    assert [str(v.path) for v in videos] == sorted(str(v.path) for v in videos)
    for v in videos:
        assert v.path.is_absolute() and v.path.is_file()
        assert v.size_bytes == v.path.stat().st_size
        assert len(v.video_id) == 16 and int(v.video_id, 16) >= 0
        assert v.fields == {}


def test_default_extensions_are_case_insensitive(tree: Path) -> None:
    assert ".mov" in DEFAULT_EXTENSIONS
    assert "B.MOV" in [v.rel_path for v in _run(["videos"])]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["missing"], "input not found: missing; check the path"),
        (["videos/missing.mp4"], "input not found: videos/missing.mp4"),
        (["videos/**/*.webm"], "glob 'videos/**/*.webm' matched no files"),
        (["empty"], "no videos found under empty (looked for .3gp, .avi,"),
        (["docs"], "use --ext to add extensions"),
        (["docs/*"], "1 paths matched, none with a video extension"),
        (["videos", "missing"], "input not found: missing"),  # a typo still stops the run
        (["empty", "docs"], "no videos found in empty, docs"),  # nothing anywhere
        ([], "no inputs given"),
    ],
)
def test_discover_errors(tree: Path, inputs: list[str], message: str) -> None:
    with pytest.raises(InputError) as err:
        _run(inputs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("extra", [["empty"], ["docs"], ["videos/**/*.webm"], ["empty", "docs/*"]])
def test_empty_inputs_among_others_are_warnings(
    tree: Path, extra: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fervid.extract.discover"):
        videos = _run(["videos", *extra])
    assert sorted(v.rel_path for v in videos) == ALL_VIDEOS  # the run goes on
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(extra), lines
    for item, line in zip(extra, lines, strict=True):
        assert item in line and line.endswith("the other inputs are processed")


@pytest.mark.parametrize("extensions", [("",), (".",), ()])
def test_bad_extensions(tree: Path, extensions: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match="--ext"):
        _run(["videos"], extensions=extensions)


def test_unicode_and_spaces(unicode_video: Path) -> None:
    root = unicode_video.parent.parent
    (v,) = discover([root], DiscoverSettings())
    assert v.rel_path == "séance 1/vidéo patient.mp4"
    assert v.path == unicode_video
    (w,) = discover([str(unicode_video)], DiscoverSettings())
    assert w.rel_path == "vidéo patient.mp4" and w.video_id == v.video_id


def test_symlink_to_same_file_counts_once(tree: Path) -> None:
    os.symlink(tree / "videos/a.mp4", tree / "videos/link.mp4")
    videos = _run(["videos", "videos/link.mp4"])
    assert len(videos) == len(ALL_VIDEOS)


def _big_file(path: Path, size: int) -> Path:
    data = bytearray(os.urandom(1 << 16)) * (size // (1 << 16) + 1)
    path.write_bytes(bytes(data[:size]))
    return path


@pytest.mark.parametrize("size", [1000, 3 * FINGERPRINT_WINDOW + 1, 5 * FINGERPRINT_WINDOW])
def test_moved_file_keeps_its_id(tmp_path: Path, size: int) -> None:
    (tmp_path / "in").mkdir()
    original = _big_file(tmp_path / "in" / "rec.mp4", size)
    (before,) = discover([tmp_path / "in"], DiscoverSettings())
    moved = tmp_path / "elsewhere" / "renamed session.mp4"
    moved.parent.mkdir()
    shutil.move(original, moved)
    (after,) = discover([tmp_path / "elsewhere"], DiscoverSettings())
    assert after.video_id == before.video_id
    assert after.rel_path == "renamed session.mp4"


# Where a single changed byte lands decides whether the sampled fingerprint sees it.
W = FINGERPRINT_WINDOW
SIZE = 5 * W


@pytest.mark.parametrize(
    ("offset", "changes_id"),
    [
        (0, True),  # first window
        (W - 1, True),
        (SIZE // 2, True),  # middle window
        (SIZE - 1, True),  # last window
        (W + 10, False),  # between windows: the documented blind spot
        (SIZE - W - 10, False),
    ],
)
def test_fingerprint_windows(tmp_path: Path, offset: int, changes_id: bool) -> None:
    path = _big_file(tmp_path / "rec.mp4", SIZE)
    before = fingerprint(path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    assert (fingerprint(path) != before) is changes_id


def test_different_content_different_id(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_bytes(b"x" * 500)
    (tmp_path / "y.mp4").write_bytes(b"y" * 500)
    (tmp_path / "z.mp4").write_bytes(b"x" * 501)  # same bytes, one longer
    (tmp_path / "copy.mp4").write_bytes(b"x" * 500)
    ids = {v.rel_path: v.video_id for v in discover([tmp_path], DiscoverSettings())}
    assert len({ids["x.mp4"], ids["y.mp4"], ids["z.mp4"]}) == 3
    assert ids["copy.mp4"] == ids["x.mp4"]  # a copy is the same recording


def _deny_open(name: str):
    """An ``open`` that refuses one file name, as a chmod 000 file does for non-root."""

    def fake_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    return fake_open


def test_unreadable_file_is_returned_with_path_id_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fervid.extract.discover as module

    (tmp_path / "locked.mp4").write_bytes(b"secret" * 100)
    (tmp_path / "open.mp4").write_bytes(b"public" * 100)
    monkeypatch.setattr(module, "open", _deny_open("locked.mp4"), raising=False)
    ids = {v.rel_path: v.video_id for v in discover([tmp_path], DiscoverSettings())}
    assert ids["locked.mp4"].startswith("path-") and len(ids["locked.mp4"]) == 5 + 16
    assert not ids["open.mp4"].startswith("path-")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_is_returned_with_path_id(tmp_path: Path) -> None:
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(b"secret" * 100)
    locked.chmod(0)
    try:
        (v,) = discover([tmp_path], DiscoverSettings())
    finally:
        locked.chmod(0o600)
    assert v.video_id.startswith("path-") and len(v.video_id) == 5 + 16
    assert v.size_bytes == 600


# --------------------------------------------------------------------------- --id-pattern
PATTERN = "{subject}/{session_date}_{name}.mp4"


def _sdn(subject: str, session_date: str, name: str) -> dict[str, str]:
    return {"subject": subject, "session_date": session_date, "name": name}


@pytest.mark.parametrize(
    ("pattern", "rel_path", "expected"),
    [
        (PATTERN, "A01/2024-01-05_intake.mp4", _sdn("A01", "2024-01-05", "intake")),
        (PATTERN, "site/x/A01/20240105_intake.mp4", _sdn("A01", "2024-01-05", "intake")),
        (PATTERN, "A01/2024_01_05_follow_up.mp4", _sdn("A01", "2024-01-05", "follow_up")),
        (PATTERN, "A01/2024-01-05_intake.MP4", _sdn("A01", "2024-01-05", "intake")),
        (PATTERN, "Patient Å/2024-01-05_séance 1.mp4", _sdn("Patient Å", "2024-01-05", "séance 1")),
        # a backslash is an ordinary character of a POSIX name: one file, no subject folder
        (PATTERN, "A01\\2024-01-05_intake.mp4", None),
        ("{subject}_{visit}.mov", "P7_baseline_2.mov", {"subject": "P7", "visit": "baseline_2"}),
        ("{date}/{name}.mp4", "2023-12-31/clip.mp4", {"date": "2023-12-31", "name": "clip"}),
        ("{{raw}}_{name}.mp4", "{raw}_x.mp4", {"name": "x"}),
        ("{name}.mp4", "deep/er/clip.mp4", {"name": "clip"}),
        # not matching: fields stay empty, not an error
        (PATTERN, "A01/intake.mp4", None),
        (PATTERN, "2024-01-05_intake.mp4", None),  # no subject folder
        (PATTERN, "A01/2024-13-05_intake.mp4", None),  # month 13
        (PATTERN, "A01/2024-02-30_intake.mp4", None),  # 30 February
        (PATTERN, "A01/2024-01_05_intake.mp4", None),  # mixed separators
        (PATTERN, "A01/2024-01-05_intake.mov", None),
        (PATTERN, "A01/24-01-05_intake.mp4", None),  # two-digit year
    ],
)  # fmt: skip
def test_id_pattern_match(pattern: str, rel_path: str, expected: dict | None) -> None:
    assert IdPattern.parse(pattern).match(rel_path) == expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{subject/{name}.mp4", "is not a field name"),
        ("{subject", "is never closed"),
        ("subject}/{name}.mp4", "has no opening"),
        ("{}.mp4", "{} is not a field name"),
        ("{1st}.mp4", "{1st} is not a field name"),
        ("{a-b}.mp4", "{a-b} is not a field name"),
        ("{_x}.mp4", "{_x} is not a field name"),
        ("{a}{b}.mp4", "fields {a} and {b} touch"),
        ("{a}/{a}.mp4", "field {a} appears twice"),
        ("plain.mp4", "it has no {field}"),
        ("", "it has no {field}"),
        ("/{subject}/{name}.mp4", "starts with '/'"),
    ],
)
def test_id_pattern_malformed(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        IdPattern.parse(pattern)
    assert message in str(err.value)
    assert f"--id-pattern={pattern!r}" in str(err.value)


def test_discover_fills_fields(tmp_path: Path) -> None:
    for rel in ["A01/2024-01-05_intake.mp4", "A02/20240211_review.mp4", "loose.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode())
    videos = discover([tmp_path], DiscoverSettings(id_pattern=PATTERN))
    fields = {v.rel_path: v.fields for v in videos}
    assert fields == {
        "A01/2024-01-05_intake.mp4": _sdn("A01", "2024-01-05", "intake"),
        "A02/20240211_review.mp4": _sdn("A02", "2024-02-11", "review"),
        "loose.mp4": {},
    }  # fmt: skip
    # An explicit file has only its name as rel_path; its folders still fill the fields.
    (v,) = discover([tmp_path / "A01/2024-01-05_intake.mp4"], DiscoverSettings(id_pattern=PATTERN))
    assert v.rel_path == "2024-01-05_intake.mp4" and v.fields["subject"] == "A01"


def test_discover_rejects_malformed_pattern(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"a")
    with pytest.raises(ConfigError, match="touch"):
        discover([tmp_path], DiscoverSettings(id_pattern="{a}{b}.mp4"))


def test_unlistable_folder_is_named_as_given(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def walk(top: str, onerror: Callable[[OSError], None], **kwargs: object) -> Iterator:
        onerror(PermissionError(errno.EACCES, "Permission denied", os.path.join(top, "sub")))
        yield from ()

    monkeypatch.setattr(os, "walk", walk)  # root may list anything: inject the refusal
    with pytest.raises(InputError) as err:
        _run(["videos"])
    text = str(err.value)
    assert text.startswith("cannot list folder videos/sub: Permission denied"), text
    assert str(tree) not in text

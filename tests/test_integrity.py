"""No stuck outputs (issue 19 row 2): a result part with an intact footer but damaged
data is found by reading it whole, quarantined and its video redone, in both layouts;
``fervid verify`` reports every damaged part and ``--repair`` sets them aside.

Damage is made on real parts of a real run: a data page with flipped bytes, a column
chunk whose second half is zeroed (what a truncated copy padded back looks like), and
a footer whose row count disagrees with its row groups."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers_model import make_debug_model
from typer.testing import CliRunner

from fervid.cli import EXIT_FAILED_VIDEOS, EXIT_OK, app
from fervid.output.integrity import QUARANTINE, part_problem
from fervid.output.store import parts_root, read_table

VIDEOS_IN = ("single_face.mp4", "face_noface.mov")


def cli(*args: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


# --------------------------------------------------------------------------- damage
def _chunk(path: Path, column: str) -> tuple[int, int]:
    """(offset, size) of ``column``'s chunk in the first row group."""
    md = pq.read_metadata(path).row_group(0)
    col = next(md.column(i) for i in range(md.num_columns) if md.column(i).path_in_schema == column)
    start = col.dictionary_page_offset or col.data_page_offset
    return start, col.total_compressed_size


def flip_data_page(path: Path) -> None:
    start, size = _chunk(path, "prob_happy")
    raw = bytearray(path.read_bytes())
    for i in range(start + size // 2, start + size - 1):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))


def zero_chunk_tail(path: Path) -> None:
    start, size = _chunk(path, "timestamp_s")
    raw = bytearray(path.read_bytes())
    raw[start + size // 2 : start + size] = bytes(size - size // 2)
    path.write_bytes(bytes(raw))


def _varint(n: int) -> bytes:
    z, out = (n << 1) ^ (n >> 63), bytearray()  # thrift compact: zigzag, then LEB128
    while True:
        byte, z = z & 0x7F, z >> 7
        out.append(byte | (0x80 if z else 0))
        if not z:
            return bytes(out)


def footer_row_count_plus_one(path: Path) -> None:
    """FileMetaData.num_rows (field 3, i64: header byte 0x16) + 1; row groups untouched."""
    raw = bytearray(path.read_bytes())
    (n_footer,) = struct.unpack("<I", raw[-8:-4])
    start = len(raw) - 8 - n_footer
    rows = pq.read_metadata(path).num_rows
    old, new = b"\x16" + _varint(rows), b"\x16" + _varint(rows + 1)
    assert len(old) == len(new)
    at = raw.index(old, start)
    raw[at : at + len(old)] = new
    path.write_bytes(bytes(raw))
    assert pq.read_metadata(path).num_rows == rows + 1


DAMAGE: dict[str, Callable[[Path], None]] = {
    "corrupted data page": flip_data_page,
    "truncated column chunk": zero_chunk_tail,
    "row count disagreeing with the footer": footer_row_count_plus_one,
}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


@pytest.fixture(scope="module", params=["file", "dataset"])
def finished(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    sample_dir: Path, model: Path,
) -> tuple[Path, str]:  # fmt: skip
    root = tmp_path_factory.mktemp(f"done-{request.param}")
    (root / "in").mkdir()
    for name in VIDEOS_IN:
        shutil.copyfile(sample_dir / name, root / "in" / name)
    out = "r.parquet" if request.param == "file" else "r"
    code, _, err = cli("process", root / "in", "--out", root / out, "--model", model,
                       "--local", "-q")  # fmt: skip
    assert code == 0, err
    return root, out


def damaged_copy(finished: tuple[Path, str], tmp_path: Path, damage: str) -> tuple[Path, Path]:
    """A copy of the finished tree with one frames part damaged: (out, that part)."""
    root = tmp_path / "tree"
    shutil.copytree(finished[0], root)
    out = root / finished[1]
    part = sorted((parts_root(out) / "frames").glob("*.parquet"))[0]
    assert part_problem(part) is None
    DAMAGE[damage](part)
    assert pq.read_metadata(part).num_rows > 0  # the footer still reads: not a torn file
    return out, part


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_behind_an_intact_footer_is_found(
    damage: str, finished: tuple[Path, str], tmp_path: Path
) -> None:
    _, part = damaged_copy(finished, tmp_path, damage)
    assert part_problem(part) is not None


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_part_is_quarantined_and_its_video_redone(
    damage: str, finished: tuple[Path, str], tmp_path: Path, model: Path
) -> None:
    out, part = damaged_copy(finished, tmp_path, damage)
    before = read_table(finished[0] / finished[1], "frames").sort_by("path")
    args = ["process", out.parent / "in", "--out", out, "--model", model, "--local", "-q"]

    code, _, err = cli(*args)

    assert code == EXIT_OK, err
    assert f"damaged result file frames/{part.name}" in err and "will be redone" in err
    assert list((parts_root(out) / QUARANTINE / "frames").glob(f"{part.name}.*"))
    assert part_problem(part) is None  # rewritten whole
    after = read_table(out, "frames").sort_by("path")
    assert after.select(["path", "frame_index"]).equals(before.select(["path", "frame_index"]))
    code, _, err = cli(*args)  # and the output is not stuck: the next run has nothing to do
    assert code == EXIT_OK and "damaged" not in err, err


def test_verify_reports_then_repairs(
    finished: tuple[Path, str], tmp_path: Path, model: Path
) -> None:
    out, part = damaged_copy(finished, tmp_path, "corrupted data page")
    key = part.name.removesuffix(".parquet")

    code, stdout, _ = cli("verify", out)
    assert code == EXIT_FAILED_VIDEOS, stdout
    assert f"damaged: video {key}: frames/{part.name}" in stdout
    assert "--repair" in stdout and part.exists()  # nothing changed without --repair

    code, stdout, _ = cli("verify", out, "--repair")
    assert code == EXIT_OK, stdout
    assert f"repaired: damaged result file frames/{part.name}" in stdout
    assert not part.exists()

    code, _, err = cli(
        "process", out.parent / "in", "--out", out, "--model", model, "--local", "-q"
    )
    assert code == EXIT_OK, err
    code, stdout, _ = cli("verify", out)
    assert code == EXIT_OK and "nothing damaged" in stdout, stdout


def test_verify_finds_a_damaged_consolidated_file(
    finished: tuple[Path, str], tmp_path: Path, model: Path
) -> None:
    if finished[1] != "r.parquet":
        pytest.skip("file layout only")
    root = tmp_path / "tree"
    shutil.copytree(finished[0], root)
    out = root / finished[1]
    flip_data_page(out)

    code, stdout, _ = cli("verify", out, "--repair")
    assert code == EXIT_OK and "damaged: r.parquet" in stdout, stdout
    assert not out.exists()
    code, _, err = cli("process", root / "in", "--out", out, "--model", model, "--local", "-q")
    assert code == EXIT_OK, err
    assert part_problem(out) is None


def test_verify_of_something_else_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = cli("verify", tmp_path / "empty")
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err

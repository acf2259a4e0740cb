"""No path that could name a patient in any Parquet file's metadata (docs/schema.md):
a run on a folder named like a patient, then the derived tables, read back raw."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from fervid.settings import path_digest

PATIENT = "Doe_Jane_1957-03-14"


def _all_metadata(path: Path) -> bytes:
    """Every key and value of a Parquet footer's key-value metadata, with the Arrow schema
    (base64 in the footer, holding the same metadata again) decoded."""
    raw = pq.ParquetFile(path).metadata.metadata or {}
    parts = []
    for k, v in raw.items():
        parts += [k, base64.b64decode(v) if k == b"ARROW:schema" else v]
    return b"\n".join(parts)


def test_no_parquet_metadata_names_the_patient_folder(tmp_path: Path, sample_dir: Path) -> None:
    recordings = tmp_path / "recordings" / PATIENT
    recordings.mkdir(parents=True)
    shutil.copy(sample_dir / "single_face.mp4", recordings / "2024-01-01_call.mp4")
    out = tmp_path / f"{PATIENT}_results"
    env = {**os.environ}
    for argv in (
        ["process", str(recordings), "--out", f"{out}/", "--executor", "local", "--quiet"],
        ["summarize", str(out)],
        ["trends", str(out), "--out", str(tmp_path / "trends.parquet")],
    ):
        r = subprocess.run([sys.executable, "-m", "fervid", *argv], env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
    files = sorted(tmp_path.rglob("*.parquet"))
    assert len(files) >= 5, files  # frames, segments, videos, sessions, trends
    for f in files:
        meta = _all_metadata(f)
        assert b"fervid." in meta, f  # the metadata is there ...
        for secret in (PATIENT, str(tmp_path), "recordings"):  # ... but names nothing
            assert secret.encode() not in meta, (f, secret)
    videos = next(f for f in files if f.parent.name == "videos")
    run = json.loads(pq.read_schema(videos).metadata[b"fervid.settings"])
    # provenance survives as digests: the folder that produced the file can be checked
    assert run["inputs"] == [path_digest(recordings.absolute())]
    assert run["out"] == path_digest(out.absolute())
    assert run["classify"]["model_path"] == "fervid-mobilenetv2-fer.safetensors"

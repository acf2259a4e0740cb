#!/usr/bin/env bash
# One command on a fresh machine: install, fetch the sample videos, run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/fervid process sample_videos/ --out results.parquet
.venv/bin/python - <<'PY'
import pandas as pd
frames = pd.read_parquet("results.parquet")
videos = pd.read_parquet("results.videos.parquet")
print(videos[["file_name", "status", "frames_sampled", "n_faces", "face_frame_share"]].to_string(index=False))
print(frames[["file_name", "timestamp_s", "face_id", "label", "confidence", "smoothed_label"]].head(10).to_string(index=False))
PY

#!/usr/bin/env bash
# Create .venv and install fervid with its test tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# pyproject.toml declares ranges; constraints.txt pins the exact versions CI tests (torch
# 2.14.1 / torchvision 0.29.1: the wheels on this disk). The development and CI
# environment is the OpenCV 4 leg of the test matrix (the res10 extra, the optional Caffe
# detector, needs OpenCV 4); scripts/test_opencv5.sh is the OpenCV 5 leg. A plain
# `pip install fervid` takes the newest OpenCV, 5 included (YuNet runs on both).
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,res10,decord]"
.venv/bin/fervid fetch-samples sample_videos >/dev/null
echo "fervid installed in .venv; sample videos in sample_videos/"

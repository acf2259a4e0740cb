#!/usr/bin/env bash
# The test command: installs if needed, then lint + the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/fervid ] || bash scripts/setup.sh
.venv/bin/ruff check fervid tests benchmarks pipelines scripts
.venv/bin/python -m pytest -q "$@"

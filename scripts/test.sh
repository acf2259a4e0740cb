#!/usr/bin/env bash
# The test command: installs if needed, then lint, type check and the whole pytest suite.
#
# On a fresh clone without the FER data (../shared/data beside the checkout, or
# FERVID_DATA) the tests that need it are skipped, each saying why and how to enable
# it; FERVID_REQUIRE_DATA=1 (set by .ci/run) turns those skips into failures.
# Arguments go to pytest, e.g. `bash scripts/test.sh tests/test_settings.py -rs`.
set -euo pipefail
cd "$(dirname "$0")/.."
{ [ -x .venv/bin/fervid ] && [ -x .venv/bin/mypy ]; } || bash scripts/setup.sh
.venv/bin/ruff check fervid tests benchmarks pipelines scripts
.venv/bin/mypy  # fervid/, configured in pyproject.toml
.venv/bin/python -m pytest -q "$@"

"""Test helper: ``fervid process`` through the real command line, in-process
(``--local``, ``--json``)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from fervid.cli import app


def process(inputs: Path, out: Path, model: Path, *extra: object) -> Result:
    args = ["process", inputs, "--out", out, "--model", model, "--local", "--json", *extra]
    return CliRunner().invoke(app, [str(a) for a in args])

"""``python -m fervid`` runs the CLI."""

from fervid.cli import app

app(prog_name="fervid")

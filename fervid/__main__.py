"""``python -m fervid`` and the ``fervid`` command: the CLI, with SIGTERM and SIGHUP
handled from the first line, before the imports (typer, rich) that take a while."""

from __future__ import annotations

import json
import sys


def main() -> None:
    """Run the CLI; a stop signal before a command has started is one line and 130 /
    143 / 129 (``--json``: one document naming the signal), never a silent death."""
    from fervid.engine.interrupt import (
        EXIT_CODES,
        ignore_further_stops,
        install_early,
        received,
    )

    install_early()
    try:
        try:
            from fervid.cli import app
        except KeyboardInterrupt as e:
            ignore_further_stops()
            name = received(e)
            line = "interrupted before the run started; nothing was written"
            print(line, file=sys.stderr)
            if "--json" in sys.argv:
                print(json.dumps({"error": line, "exit_code": EXIT_CODES[name],
                                  "interrupted": name}))  # fmt: skip
            sys.exit(EXIT_CODES[name])
        app(prog_name="fervid")
    finally:
        ignore_further_stops()  # the exit code is decided: nothing may print a traceback


if __name__ == "__main__":
    main()

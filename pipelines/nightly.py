#!/usr/bin/env python
"""Example: the nightly job from a checkout, the same as ``fervid nightly``.

    python pipelines/nightly.py --in /recordings --dataset /data/fervid/results \\
        --id-pattern "{subject}/{session_date}_{name}.mp4"

The job itself lives in the package (:mod:`fervid.nightly`, the ``fervid nightly``
command), so an installed fervid runs it without this file; see docs/scheduling.md.
"""

from __future__ import annotations

import sys

from fervid.cli import app

if __name__ == "__main__":
    app(args=["nightly", *sys.argv[1:]], prog_name="nightly.py")

"""Markdown tables for the model card from two scripts/model_report.py outputs (old, new).

python scripts/model_card_tables.py docs/model/v2_report.json docs/model/v3_report.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SPLITS = {"fer2013": "FER-2013 val", "ferplus": "FER+ valid"}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    a = p.parse_args()
    old: dict[str, Any] = json.loads(a.old.read_text())
    new: dict[str, Any] = json.loads(a.new.read_text())
    classes = list(old["fer2013"]["clean"]["recall"])

    print("| measure | " + " | ".join(f"{s} old | {s} new" for s in SPLITS.values()) + " |")
    print("|---|" + "---|" * (2 * len(SPLITS)))
    rows = [("accuracy", lambda r: pct(r["clean"]["accuracy"])),
            ("macro-F1", lambda r: f"{r['clean']['macro_f1']:.3f}"),
            ("ECE (shipped T)", lambda r: f"{r['clean']['ece']:.3f}")]  # fmt: skip
    rows += [(f"{c} recall", lambda r, c=c: pct(r["clean"]["recall"][c])) for c in classes]
    for name, f in rows:
        cells = [f"{f(old[s])} | **{f(new[s])}**" for s in SPLITS]
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\nRobust accuracy (every face corrupted; `fervid.training.robustness.YARDSTICK`):\n")
    print("| corruption | " + " | ".join(f"{s} old | {s} new" for s in SPLITS.values()) + " |")
    print("|---|" + "---|" * (2 * len(SPLITS)))
    names = [*old["fer2013"]["robust"], "mean"]
    for c in names:
        key = (lambda r: r["robust_mean"]) if c == "mean" else (lambda r, c=c: r["robust"][c])
        cells = [f"{pct(key(old[s]))} | **{pct(key(new[s]))}**" for s in SPLITS]
        print(f"| {c} | " + " | ".join(cells) + " |")

    w_old, w_new = old["ferplus"]["weak_majority"], new["ferplus"]["weak_majority"]
    print(f"\nFER+ valid faces with a weak majority (≤ 6 of 10 votes; {w_new['n']} faces):\n")
    print("| class | support | recall old | recall new |")
    print("|---|---|---|---|")
    for c in classes:
        print(
            f"| {c} | {w_new['support'][c]} | {pct(w_old['recall'][c])} | **{pct(w_new['recall'][c])}** |"
        )
    print(f"| accuracy | {w_new['n']} | {pct(w_old['accuracy'])} | **{pct(w_new['accuracy'])}** |")


if __name__ == "__main__":
    main()

"""Short pilot runs side by side for the model card's pilot table.

Every pilot trains the same number of epochs and samples with the same seed from
``pipelines/train_pilot.toml``, changing one thing; each prints and appends one JSON
line (best epoch's validation accuracies) to ``<out>/pilots.jsonl``. Finished pilots
are skipped on a rerun, unfinished ones resume from their checkpoint.

    python scripts/train_pilots.py --data-root ../shared/data \
        --init ../shared/weights/mobilenet_v2_imagenet_tflite.safetensors --out runs/pilots
"""

from __future__ import annotations

import argparse
import dataclasses as dc
import json
import logging
import time
from pathlib import Path
from typing import Any

from fervid.training.recipe import Recipe, load_recipe
from fervid.training.train import TrainOptions, run_training

ROOT = Path(__file__).resolve().parents[1]


def variant(r: Recipe, **changes: Any) -> Recipe:
    """``r`` with top-level fields replaced, or a section's fields (given as a dict)."""
    for key, value in changes.items():
        if isinstance(value, dict):
            value = dc.replace(getattr(r, key), **value)
        r = dc.replace(r, **{key: value})
    return r


def pilots(base: Recipe) -> list[tuple[str, Recipe, bool]]:
    """(name, recipe, from ImageNet) — each differs from init-64-bn_frozen in one thing."""
    ferplus_only = tuple(s for s in base.train if s.name == "ferplus")
    return [
        ("scratch-64", variant(base, mean=(0.5,) * 3, std=(0.25,) * 3), False),
        ("init-64-bn_frozen", base, True),
        ("init-64-bn_reestimate", variant(base, init={"batchnorm": "reestimate"}), True),
        ("init-64-bn_frozen-mixup0.2", variant(base, optim={"mixup_alpha": 0.2}), True),
        ("init-64-bn_frozen-ferplus_soft_only", variant(base, train=ferplus_only), True),
        ("init-80-bn_frozen", variant(base, input_size=80), True),
        ("init-96-bn_frozen", variant(base, input_size=96), True),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--init", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--recipe", type=Path, default=ROOT / "pipelines" / "train_pilot.toml")
    p.add_argument("--only", default="", help="comma-separated pilot names")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    only = set(filter(None, a.only.split(",")))
    for name, recipe, from_imagenet in pilots(load_recipe(a.recipe)):
        run = a.out / name
        if (only and name not in only) or (run / "model.safetensors").exists():
            continue
        t0 = time.time()
        opts = TrainOptions(
            recipe=recipe, data_root=a.data_root, out_dir=run, resume=True,
            init=a.init if from_imagenet else None,
        )  # fmt: skip
        run_training(opts)
        history = json.loads((run / "history.json").read_text())
        best = max(history, key=lambda e: e["score"])
        line = {"pilot": name, "minutes": round((time.time() - t0) / 60, 1)}
        line |= {k: best[k] for k in ("epoch", "fer2013_acc", "ferplus_acc", "score")}
        with open(a.out / "pilots.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        print("PILOT", json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

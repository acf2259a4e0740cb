"""The numbers of the model card for one model file: clean and robust accuracy on both
validation splits, per-class recall, calibration, and recall on subtle (weak-majority)
FER+ faces.

    python scripts/model_report.py fervid/models/fervid-mobilenetv2-fer.safetensors \
        ../shared/data --out docs/model/v3_report.json

Everything goes through the inference path ``fervid process`` uses (resize_faces,
predict_logits with the model's own flip TTA, its temperature).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fervid.model.classify import calibrated_probs, predict_logits
from fervid.model.modelfile import load_model
from fervid.output.atomic import write_text
from fervid.training.metrics import compute_metrics
from fervid.training.robustness import CORRUPTIONS, corrupt, weak_majority
from fervid.training.validation import validation_faces


def summary(probs: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    m = compute_metrics(probs, labels)
    return {
        "n": len(labels),
        "accuracy": m.accuracy,
        "macro_f1": m.macro_f1,
        "ece": m.ece,
        "recall": {
            n: (float(r) if s > 0 else None)
            for n, r, s in zip(names, m.per_class.recall, m.per_class.support, strict=True)
        },
        "support": dict(zip(names, m.per_class.support.tolist(), strict=True)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("data_root", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--no-robust", action="store_true", help="skip the corrupted re-scoring")
    a = p.parse_args()
    t0 = time.perf_counter()
    m = load_model(a.model)
    names = tuple(m.spec.class_names)
    out: dict[str, Any] = {"model": a.model.name, "sha256": m.sha256, "spec": m.spec.to_json()}
    for v in validation_faces(a.data_root, m.spec):
        split, images, labels = v.name, v.images, v.labels

        def probs_of(faces: np.ndarray) -> np.ndarray:
            logits = predict_logits(m.network, faces, m.spec, batch_size=256)
            return calibrated_probs(logits, m.spec.temperature)

        clean = probs_of(images)
        res: dict[str, Any] = {"clean": summary(clean, labels, names)}
        if (v.folder / "label.csv").is_file():
            weak = weak_majority(v.folder, v.names)
            res["weak_majority"] = summary(clean[weak], labels[weak], names)
        if not a.no_robust:
            res["robust"] = {
                c: summary(probs_of(corrupt(images, c)), labels, names)["accuracy"]
                for c in CORRUPTIONS
            }
            res["robust_mean"] = float(np.mean(list(res["robust"].values())))
        out[split] = res
        print(
            split, json.dumps({k: v for k, v in res.items() if k != "weak_majority"}, default=str)
        )
        if "weak_majority" in res:
            print(f"{split} weak majority", json.dumps(res["weak_majority"]))
    out["seconds"] = time.perf_counter() - t0
    if a.out:
        write_text(a.out, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

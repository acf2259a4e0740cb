"""Which split should fit the temperature? ECE and NLL on each validation split for a
temperature fitted on FER-2013 val, on FER+ valid, on both pooled, and for T = 1.

    python scripts/calibration_table.py --data-root ../shared/data [--model PATH] [--json out.json]

Prints a markdown table for the model card; the video crops fervid classifies are
closer to FER+'s majority labels than to FER-2013's noisy single labels, so a
temperature that also holds on FER+ is the one to ship.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fervid.model.classify import calibrated_probs, predict_logits
from fervid.model.modelfile import load_model
from fervid.training.metrics import expected_calibration_error, negative_log_likelihood
from fervid.training.train import fit_temperature
from fervid.training.validation import VALIDATION_SPLITS, validation_faces

SPLITS = tuple(name for name, _ in VALIDATION_SPLITS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    model = load_model(a.model)
    logits, labels = {}, {}
    for v in validation_faces(a.data_root, model.spec):
        logits[v.name] = predict_logits(model.network, v.images, model.spec, batch_size=256)
        labels[v.name] = v.labels
    pooled = (
        np.concatenate([logits[n][0] for n in SPLITS]),
        np.concatenate([labels[n] for n in SPLITS]),
    )
    temps = {
        "T = 1": 1.0,
        "fit on fer2013": fit_temperature(logits["fer2013"][0], labels["fer2013"]),
        "fit on ferplus": fit_temperature(logits["ferplus"][0], labels["ferplus"]),
        "fit on both": fit_temperature(*pooled),
        "shipped": model.spec.temperature,
    }
    rows = []
    print("| temperature | T | ECE FER-2013 | ECE FER+ | NLL FER-2013 | NLL FER+ |")
    print("|---|---|---|---|---|---|")
    for label, t in temps.items():
        r = {"temperature": label, "T": t}
        for n in SPLITS:
            probs = calibrated_probs(logits[n], t)
            r[f"ece_{n}"] = expected_calibration_error(probs, labels[n])
            r[f"nll_{n}"] = negative_log_likelihood(probs, labels[n])
        rows.append(r)
        print(f"| {label} | {t:.3f} | {r['ece_fer2013']:.3f} | {r['ece_ferplus']:.3f} | "
              f"{r['nll_fer2013']:.3f} | {r['nll_ferplus']:.3f} |")  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

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
from fervid.model.preprocess import resize_faces
from fervid.training.data import FerPlusMode, load_dataset
from fervid.training.metrics import expected_calibration_error, negative_log_likelihood
from fervid.training.train import fit_temperature

SPLITS = {
    "fer2013": ("fer2013/val", FerPlusMode.MAJORITY),
    "ferplus": ("ferplus/FER2013Valid", FerPlusMode.MAJORITY),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    model = load_model(a.model)
    logits, labels = {}, {}
    for name, (path, mode) in SPLITS.items():
        ds = load_dataset(a.data_root / path, ferplus_mode=mode, size=None)
        faces = resize_faces(list(ds.images), model.spec)
        logits[name] = predict_logits(model.network, faces, model.spec, batch_size=256)
        labels[name] = ds.labels.astype(np.int64)
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

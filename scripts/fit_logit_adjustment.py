"""Per-class logit offsets folded into a model file, its temperature re-fitted (the last
step of the shipped model's recipe; fervid.training.balance).

    python scripts/fit_logit_adjustment.py runs/v3_stage3/model.safetensors ../shared/data \
        out.safetensors --offsets neutral=-0.2,angry=0.1,fear=0.1,sad=0.1

``--offsets`` gives them (the shipped rule: a structured two-number choice made on the
validation splits, see the model card); without it, seven offsets are fitted by
coordinate ascent on (accuracy + macro-F1) / 2 and also cross-fitted (fitted on one half
of each split, scored on the other): the honest estimate of what a free fit does on
unseen faces. Prints the scores of both validation splits before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from fervid.model.classify import predict_logits
from fervid.model.modelfile import load_model, save_model
from fervid.training.balance import Split, cross_fitted, fit_bias, fold_bias, scores
from fervid.training.train import fit_temperature
from fervid.training.validation import validation_faces


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("data_root", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--calibrate-on", default="ferplus")
    p.add_argument("--offsets", default="", help="class=offset,... (default: fit all seven)")
    a = p.parse_args()
    m = load_model(a.model)
    splits = []
    for v in validation_faces(a.data_root, m.spec):
        logits = predict_logits(m.network, v.images, m.spec, batch_size=256)  # model's TTA
        splits.append(Split(v.name, logits, v.labels))
    t = m.spec.temperature
    zero = np.zeros(m.spec.num_classes, np.float32)
    before = scores(splits, zero, t)
    names = list(m.spec.class_names)
    if a.offsets:
        bias = zero.copy()
        for item in a.offsets.split(","):
            cls, _, value = item.partition("=")
            bias[names.index(cls.strip())] = float(value)
        how, honest = f"given: {a.offsets}", None
    else:
        bias = fit_bias(splits, t)
        how = "coordinate ascent on (accuracy + macro-F1) / 2 over both validation splits"
        honest = cross_fitted(splits, t)
    fitted = scores(splits, bias, t)
    fold_bias(m.network, bias)
    cal = next(s for s in splits if s.name == a.calibrate_on)
    # the temperature is fitted on one view, as training's finalize does
    temperature = fit_temperature(cal.logits[0] + bias, cal.labels)
    spec = dataclasses.replace(m.spec, temperature=temperature)
    info = dict(m.info)
    # info["val"] is what the evaluation path reproduces (one view, as training selects):
    # re-score it for the adjusted weights, and keep training's own numbers beside it
    single = [Split(s.name, s.logits[:1], s.labels) for s in splits]
    one_view = scores(single, bias, temperature)
    info["val_before_adjustment"] = info.get("val")
    info["val"] = {f"{s.name}_acc": one_view[f"{s.name}_acc"] for s in splits}
    info["val"]["score"] = float(np.mean(list(info["val"].values())))
    info["logit_adjustment"] = {
        "offsets": dict(zip(names, [round(float(v), 4) for v in bias], strict=True)),
        "how": how,
        "scored_on": "fer2013/val + ferplus/FER2013Valid (majority), with the model's flip TTA",
        "before": before,
        "after": fitted,
        "cross_fitted": honest,
        "temperature_before": t,
    }
    sha = save_model(a.dest, m.network, spec, json.loads(json.dumps(info, default=float)))
    print(json.dumps(info["logit_adjustment"], indent=2))
    print(f"temperature {t:.3f} -> {temperature:.3f}; wrote {a.dest} (sha256 {sha})")


if __name__ == "__main__":
    main()

"""Turn a model file's test-time flip averaging on or off (rewrites its spec, keeps the
weights and info; the sha256 changes). The shipped model was made this way from the
stage-3 run, trained before recipes had ``[model] tta_flip``; the stage-3 recipe now sets
it, so ``scripts/train_default_model.sh`` gives the same file directly.

    python scripts/set_model_tta.py runs/v2_stage3/model.safetensors out.safetensors --on
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from fervid.model.modelfile import load_model, save_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--on", action=argparse.BooleanOptionalAction, default=True)
    a = p.parse_args()
    m = load_model(a.src)
    spec = dataclasses.replace(m.spec, tta_flip=a.on)
    # the weights were stored in fp16 and loaded as fp32: saving in fp16 again is exact
    print(save_model(a.dest, m.network, spec, m.info))


if __name__ == "__main__":
    main()
